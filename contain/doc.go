// Package contain is everything about keeping a run's processes in their
// place: the process setup of a child and of its steps (process groups,
// death signals), the subreaper and the sweep of orphans, rlimits, cgroups
// (memory and pids limits, the OOM counter, a kill of everything left) and
// the hardening of runnerd itself (non-dumpable). runnerd uses it to start
// and stop runexec children; runexec uses it to start and stop steps.
package contain
