package supervisor

import (
	"context"
	"errors"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/proto"
	"github.com/runnerd/runnerd/queue"
)

// monitor watches one running child until ctx ends: it heartbeats the lease
// (and the message's AckWait) every TTL/3, pings the child with a deadline,
// and stops the child for a lost lease, silence, the run deadline, a cancel
// flag on the run document, or shutdown.
func (a *attempt) monitor(ctx context.Context, child *proto.Child, deadline time.Time) {
	s := a.sup
	ttl := s.q.Config().LeaseTTL
	heartbeat := time.NewTicker(ttl / 3)
	defer heartbeat.Stop()
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
	lastRenew := time.Now()
	// The watchdog expects a beat at every turn of this loop: the ping ticker
	// turns it every ping interval even when nothing else happens.
	beat := "lease heartbeat of run " + a.runID
	defer s.hl.Forget(beat)

	kill := func(c stopCause, reason runnerd.Reason, msg string) {
		if a.stopFor(c) || c == stopShutdown {
			a.log.Warn().Str("reason", string(reason)).Msg(msg)
		}
		child.Kill()
	}
	for {
		s.hl.Beat(beat)
		if a.stopCause() == stopCancel && cancelGrace == nil {
			cancelGrace = time.After(s.cfg.KillGrace + 10*time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-heartbeat.C:
			rctx, cancel := context.WithTimeout(ctx, ttl/6)
			err := a.lease.Renew(rctx)
			cancel()
			if err != nil {
				s.m.heartbeatFailure.Inc()
			}
			switch {
			case err == nil:
				lastRenew = time.Now()
			case errors.Is(err, queue.ErrLeaseLost) || time.Since(lastRenew) > ttl-ttl/3:
				// Stop the child before the lease can expire under it.
				kill(stopLeaseLost, runnerd.ReasonLeaseLost, "lease lost: killing runexec")
				return
			default:
				a.log.Warn().Err(err).Msg("lease heartbeat failed: retrying")
				continue
			}
			if err := a.d.InProgress(); err != nil {
				a.log.Debug().Err(err).Msg("in progress")
			}
			// Bounded like the renewal: with the store's own timeout (10 s),
			// an unreachable MongoDB would hold this loop past the lease TTL
			// and a healthy run would be killed as lease_lost.
			gctx, cancel := context.WithTimeout(ctx, ttl/6)
			run, err := s.st.Get(gctx, a.runID)
			cancel()
			if err == nil && run.CancelRequested {
				a.cancelByUser(child)
			}
			if ctx.Err() == nil {
				s.m.storeError(opCheckCancel, err)
			}
		case <-ping.C:
			pctx, cancel := context.WithTimeout(ctx, s.cfg.PingTimeout)
			err := child.Ping(pctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				select {
				case <-child.Exited():
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
			go func() {
				cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = child.Cancel(cctx, string(runnerd.ReasonRunnerShutdown))
			}()
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
