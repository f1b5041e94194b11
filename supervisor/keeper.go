package supervisor

import (
	"context"
	"errors"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
)

// keepLease holds the run's lease from its acquisition to the end of the
// attempt (ctx): every TTL/3 it renews the lease and marks the delivery in
// progress. An unreachable NATS does not end the run: the renewal is
// retried every second, and once NATS is back the lease is renewed, or
// re-taken if the server dropped it meanwhile (an outage longer than the
// TTL). Only another runner holding the lease ends it (ErrLeaseLost). While
// renewals fail, the store's copy of the epoch is checked: a runner that
// claimed the run since fences every write of ours anyway, and the child is
// stopped at once rather than at its next write.
func (a *attempt) keepLease(ctx context.Context) {
	s := a.sup
	ttl := s.q.Config().LeaseTTL
	beat := "lease heartbeat of run " + a.runID
	defer s.health.Forget(beat)
	failingSince := time.Time{}
	noted := false
	timer := time.NewTimer(ttl / 3)
	defer timer.Stop()
	defer func() {
		if !failingSince.IsZero() {
			s.m.waiting.WithLabelValues(onNATS).Dec()
		}
	}()
	for {
		s.health.Beat(beat)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		rctx, cancel := context.WithTimeout(ctx, max(ttl/6, time.Second))
		err := a.lease.Renew(rctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil:
			if !failingSince.IsZero() {
				a.log.Info().Dur("after_ms", time.Since(failingSince).Round(time.Millisecond)).Msg("lease renewed again")
				failingSince = time.Time{}
				s.m.waiting.WithLabelValues(onNATS).Dec()
				if noted {
					noted = a.noteWait(nil) != nil
				}
			}
			if err := a.delivery().InProgress(); err != nil {
				a.log.Debug().Err(err).Msg("in progress")
			}
			timer.Reset(ttl / 3)
			continue
		case errors.Is(err, queue.ErrLeaseLost):
			s.m.heartbeatFailure.Inc()
			a.loseLease("lease taken by another runner: stopping the run")
			return
		}
		s.m.heartbeatFailure.Inc()
		if failingSince.IsZero() {
			failingSince = time.Now()
			s.m.waits.WithLabelValues(onNATS).Inc()
			s.m.waiting.WithLabelValues(onNATS).Inc()
			a.log.Warn().Err(err).Msg("lease heartbeat failed: retrying; the run goes on")
		}
		if !noted && a.epoch != 0 && time.Since(failingSince) >= waitNoteAfter {
			noted = a.noteWait(&store.Wait{On: onNATS, Since: failingSince.UTC(), Error: err.Error()}) == nil
		}
		if time.Since(failingSince) > ttl && a.claimedElsewhere(ctx) {
			a.loseLease("the run was claimed by another runner while NATS was unreachable: stopping it")
			return
		}
		timer.Reset(time.Second)
	}
}

// claimedElsewhere reports whether the store says another claim took the
// run (a newer epoch). An unreachable store says nothing.
func (a *attempt) claimedElsewhere(ctx context.Context) bool {
	gctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	run, err := a.sup.store.Get(gctx, a.runID)
	return err == nil && run.Epoch != a.epoch
}

// loseLease ends the attempt for a lost lease: in-place waits stop, the
// child is killed, and nothing more is written (it would be fenced).
func (a *attempt) loseLease(msg string) {
	if a.stopFor(stopLeaseLost) {
		a.log.Warn().Str("reason", string(runnerd.ReasonLeaseLost)).Msg(msg)
	}
	a.cancel(errLeaseLost)
	if c := a.currentChild(); c != nil {
		c.Kill()
	}
}

var errLeaseLost = errors.New("lease lost")
