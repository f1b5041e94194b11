package bench

import (
	"fmt"
	"testing"
	"time"

	"github.com/runnerd/runnerd/contain"
	"github.com/runnerd/runnerd/supervisor"
)

// BenchmarkSandboxStart: what the per-run sandbox costs a run's start.
// Submit → terminal status of a one-step workflow (`true`), 100 runs
// (RUNNERD_BENCH_SANDBOX_RUNS) with --sandbox=auto and 100 with
// --sandbox=off on the same devstack, in alternating blocks of 25 so that a
// drift of the machine weighs on both alike; concurrency 1, no spares (the
// namespaces and Landlock are on the run's path). Reported: p50 and p99 of
// each and the p50 difference.
func BenchmarkSandboxStart(b *testing.B) {
	n := benchRuns(b, "RUNNERD_BENCH_SANDBOX_RUNS", 100)
	const block = 25
	for b.Loop() {
		e := newEnv(b)
		lat := map[contain.Mode][]time.Duration{}
		for round := 0; len(lat[contain.ModeOff]) < n; round++ {
			for _, mode := range []contain.Mode{contain.ModeOff, contain.ModeAuto} {
				stop := e.serveMode(fmt.Sprintf("sbx-%s-%d", mode, round), mode)
				e.sequential(fmt.Sprintf("warm-%s-%d", mode, round), 2)
				client, _ := e.sequential(fmt.Sprintf("sbx-%s-%d", mode, round), min(block, n-len(lat[mode])))
				lat[mode] = append(lat[mode], client...)
				stop()
			}
		}
		off, on := percentile(lat[contain.ModeOff], 50), percentile(lat[contain.ModeAuto], 50)
		b.ReportMetric(ms(off), "off-p50-ms")
		b.ReportMetric(ms(percentile(lat[contain.ModeOff], 99)), "off-p99-ms")
		b.ReportMetric(ms(on), "on-p50-ms")
		b.ReportMetric(ms(percentile(lat[contain.ModeAuto], 99)), "on-p99-ms")
		b.ReportMetric(ms(on-off), "cost-p50-ms")
		b.ReportMetric(float64(n), "runs-each")
	}
}

// serveMode starts a supervisor of concurrency 1 with the given sandbox
// mode under its own runner id; stop drains it.
func (e *env) serveMode(id string, mode contain.Mode) (stop func()) {
	return e.serveAs(id, func(c *supervisor.Config) { c.Sandbox.Mode = mode })
}
