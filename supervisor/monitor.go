package supervisor

import (
	"context"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/child"
)

// monitor watches one running child until ctx ends: it pings the child with
// a deadline, checks the run document's cancel flag every lease TTL/3, and
// stops the child for silence, the run deadline, a cancel, or shutdown. The
// lease is kept by keepLease, which also stops the child if it is lost.
func (a *attempt) monitor(ctx context.Context, proc *child.Process, deadline time.Time) {
	s := a.sup
	ttl := s.q.Config().LeaseTTL
	cancelCheck := time.NewTicker(ttl / 3)
	defer cancelCheck.Stop()
	ping := time.NewTicker(s.cfg.PingInterval)
	defer ping.Stop()
	var hardDeadline <-chan time.Time
	if !deadline.IsZero() {
		// The executor enforces the deadline itself; this is the backstop
		// for a child that does not.
		t := time.NewTimer(time.Until(deadline) + s.cfg.KillGrace + 15*time.Second)
		defer t.Stop()
		hardDeadline = t.C
	}
	var cancelGrace <-chan time.Time
	draining := s.draining
	// The watchdog expects a beat at every turn of this loop: the ping ticker
	// turns it every ping interval even when nothing else happens.
	beat := "monitor of run " + a.runID
	defer s.health.Forget(beat)

	kill := func(c stopCause, reason runnerd.Reason, msg string) {
		if a.stopFor(c) || c == stopShutdown {
			a.log.Warn().Str("reason", string(reason)).Msg(msg)
		}
		proc.Kill()
	}
	for {
		s.health.Beat(beat)
		if a.stopCause() == stopCancel && cancelGrace == nil {
			cancelGrace = time.After(s.cfg.KillGrace + 10*time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-cancelCheck.C:
			// Bounded: an unreachable MongoDB must not hold this loop.
			gctx, cancel := context.WithTimeout(ctx, ttl/6)
			run, err := s.store.Get(gctx, a.runID)
			cancel()
			if err == nil && run.CancelRequested {
				a.cancelByUser(proc)
			}
			if ctx.Err() == nil {
				s.m.storeError(opCheckCancel, err)
			}
		case <-ping.C:
			pctx, cancel := context.WithTimeout(ctx, s.cfg.PingTimeout)
			err := proc.Ping(pctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				select {
				case <-proc.Exited():
					continue // it crashed; the broken stream reports that
				default:
				}
				kill(stopUnresponsive, runnerd.ReasonChildUnresponsive, "runexec stopped answering: killing it")
				return
			}
		case <-draining:
			draining = nil
			if a.stopFor(stopShutdown) {
				a.log.Info().Str("reason", string(runnerd.ReasonRunnerShutdown)).Msg("shutdown: asking runexec to save and stop")
			}
			a.askToStop(proc, string(runnerd.ReasonRunnerShutdown))
		case <-s.hardStop:
			kill(stopShutdown, runnerd.ReasonRunnerShutdown, "shutdown grace over: killing runexec")
			return
		case <-hardDeadline:
			kill(stopDeadline, runnerd.ReasonTimeout, "run deadline passed: killing runexec")
			return
		case <-cancelGrace:
			kill(stopCancel, runnerd.ReasonCancelled, "runexec did not stop after cancel: killing it")
			return
		}
	}
}
