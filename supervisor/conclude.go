package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
)

// conclude applies the exit table: it writes the run's new status (and the
// step state) first, then acts on the message, so nothing is acked before its
// state is saved. Then it releases the lease and removes the run dir.
func (a *attempt) conclude(ctx context.Context, out outcome) {
	b := budget{maxAttempts: a.sup.cfg.MaxAttempts, lastDelivery: a.delivery().LastAttempt()}
	if a.run != nil {
		b.crashes = a.run.Crashes
	}
	v := decide(out, b)
	act := v.action
	var written runnerd.Status // for the metrics: "" when the run is untouched
	if v.write {
		if wrote, at, err := a.write(ctx, v); err != nil {
			a.log.Warn().Err(err).Str("reason", string(v.reason)).Msg("could not record the outcome: redelivering")
			act = afterFailedWrite(errors.Is(err, store.ErrFenced))
		} else if wrote {
			written = v.status
			a.sup.announce(a.run, written, v.reason, at)
		}
	}
	a.timeline.mark("write_outcome")
	republished := false
	if act == actRepublish {
		if err := a.republish(ctx); err != nil {
			a.log.Warn().Err(err).Msg("republish failed: redelivering instead")
			act = afterFailedRepublish
		} else {
			act, republished = actAck, true
		}
	}
	if err := a.act(ctx, act, v.reason); err != nil {
		a.log.Warn().Err(err).Str("action", act.String()).Msg("act on message")
	}
	a.timeline.mark("act")
	a.count(written, v.reason, act, republished)
	logEvent := a.log.Info()
	if v.status == runnerd.StatusFailed || act == actTerm {
		logEvent = a.log.Warn()
	}
	logEvent = logEvent.Str("status", string(v.status)).Str("reason", string(v.reason)).
		Str("action", act.String()).Float64("duration_ms", float64(time.Since(a.started).Microseconds())/1000)
	if a.log.GetLevel() <= zerolog.DebugLevel {
		logEvent = logEvent.Dict("phases_ms", a.timeline.dict())
	}
	logEvent.Msg("run attempt done")

	a.leaveLines(written, out, act)
	a.endKeeper()
	if a.lease != nil && a.stopCause() != stopLeaseLost {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := a.lease.Release(rctx); err != nil {
			a.log.Debug().Err(err).Msg("release lease")
		}
		cancel()
	}
	for _, dir := range []string{a.dir.root, a.sockDir} {
		if dir != "" {
			_ = os.RemoveAll(dir)
		}
	}
}

// write records the verdict in the run document: fenced by the epoch once
// claimed; before the claim only a queued run is touched (a run owned by
// another runner is never written without its epoch). wrote is false when
// there was nothing to write: a message naming no run, or a run not queued,
// is counted as unchanged, like run_not_found. at is the time the write
// stored, for a status the run stays in (terminal or paused).
func (a *attempt) write(ctx context.Context, v verdict) (wrote bool, at time.Time, err error) {
	runs := a.sup.store
	if a.epoch == 0 {
		if a.run == nil || a.run.Status != runnerd.StatusQueued {
			return false, at, nil
		}
		at, err = runs.SetStatusUnfenced(ctx, a.runID, v.status, v.reason)
		return true, at, err
	}
	if last := a.pending; last != nil && len(last.Events) > 0 && v.status.Terminal() && !v.crash {
		// The last events and the outcome in one write.
		a.pending = nil
		b := *last
		b.Steps = a.state
		err = a.withStore(opWriteOutcome, func(ctx context.Context) (err error) {
			if at, err = runs.FinishWith(ctx, a.runID, a.epoch, v.status, v.reason, b); err != nil {
				return err
			}
			a.recorded(b)
			return nil
		})
		return true, at, err
	}
	if err := a.flushPending(); err != nil {
		return true, at, err
	}
	err = a.withStore(opWriteOutcome, func(ctx context.Context) (err error) {
		switch {
		case v.status.Terminal() && v.crash:
			at, err = runs.FinishCrashed(ctx, a.runID, a.epoch, v.reason, a.state)
			return err
		case v.status.Terminal():
			at, err = runs.Finish(ctx, a.runID, a.epoch, v.status, v.reason, a.state)
			return err
		case v.crash:
			return runs.RequeueCrashed(ctx, a.runID, a.epoch, v.reason, a.state)
		case v.action == actRepublish:
			if err := runs.SaveSteps(ctx, a.runID, a.epoch, a.state); err != nil {
				return err
			}
			run, err := runs.Requeue(ctx, a.runID, a.epoch, v.reason)
			if err == nil {
				a.run.Generation = run.Generation
			}
			return err
		default:
			if err := runs.SaveSteps(ctx, a.runID, a.epoch, a.state); err != nil {
				return err
			}
			at, err = runs.SetStatus(ctx, a.runID, a.epoch, v.status, v.reason)
			return err
		}
	})
	return true, at, err
}

// count counts the concluded attempt: its delivery action, and for a
// reason-bearing outcome the status written (empty: none) and the reason.
func (a *attempt) count(status runnerd.Status, reason runnerd.Reason, act action, republished bool) {
	m := a.sup.m
	label := act.String()
	if republished {
		label = actRepublish.String()
	}
	m.deliveries.WithLabelValues(label).Inc()
	m.finished(status, reason)
	if a.epoch != 0 {
		m.runDuration.WithLabelValues(statusLabel(status)).Observe(time.Since(a.started).Seconds())
	}
}

// republish puts the run back on the queue under its new generation, with
// the original headers (trace context), so the next runner resumes it.
func (a *attempt) republish(ctx context.Context) error {
	msg := *a.msg
	msg.PublishedAt = time.Now().UTC()
	hdr := nats.Header{}
	for _, k := range []string{"traceparent", "tracestate"} {
		if v := a.delivery().Header().Get(k); v != "" {
			hdr.Set(k, v)
		}
	}
	err := a.sup.q.Publish(ctx, &msg, a.run.Generation, hdr)
	if errors.Is(err, queue.ErrDuplicate) {
		return nil // an earlier try of this republish landed
	}
	return err
}

func (a *attempt) act(ctx context.Context, act action, reason runnerd.Reason) error {
	d := a.delivery()
	switch act {
	case actAck:
		return d.Ack(ctx)
	case actNakRetry: // the backoff grows with the run's crashes, not its deliveries
		crashes := 1
		if a.run != nil {
			crashes = a.run.Crashes + 1
		}
		return d.NakWithDelay(a.sup.q.Config().RetryDelay(uint64(crashes)))
	case actNakDelay:
		delay := a.sup.cfg.RetryDelay
		if a.retryAfter > 0 {
			delay = a.retryAfter
		}
		return d.NakWithDelay(delay)
	case actNakNow:
		return d.Nak()
	case actTerm:
		return d.Term(string(reason))
	}
	return fmt.Errorf("no such action on a delivery: %s", act)
}
