package queue

import (
	"context"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
)

// Cancels travel on core NATS, at most once: a cancel sent while no runner
// listens is lost here, which is why the run document's cancel_requested
// flag exists too (checked at pickup).

func (q *Queue) cancelSubject(runID string) string { return q.cfg.CancelPrefix + "." + runID }

// PublishCancel asks the runner of runID to cancel it. It returns once the
// server has the message, not once a runner acted on it.
func (q *Queue) PublishCancel(ctx context.Context, runID string) error {
	if err := ValidateRunID(runID); err != nil {
		return fmt.Errorf("publish cancel: %w", err)
	}
	if err := q.nc.Publish(q.cancelSubject(runID), nil); err != nil {
		return fmt.Errorf("publish cancel for run %s: %w", runID, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		// nats.go refuses to flush on a context without a deadline.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, flushTimeout)
		defer cancel()
	}
	if err := q.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("publish cancel for run %s: flush: %w", runID, err)
	}
	return nil
}

// SubscribeCancel calls fn (at most once, on a NATS goroutine) when a cancel
// for runID arrives. The subscription is active on the server when it
// returns. unsubscribe is safe to call more than once.
func (q *Queue) SubscribeCancel(runID string, fn func()) (unsubscribe func(), err error) {
	if err := ValidateRunID(runID); err != nil {
		return nil, fmt.Errorf("subscribe cancel: %w", err)
	}
	var once sync.Once
	sub, err := q.nc.Subscribe(q.cancelSubject(runID), func(*nats.Msg) { once.Do(fn) })
	if err != nil {
		return nil, fmt.Errorf("subscribe cancel for run %s: %w", runID, err)
	}
	if err := q.nc.FlushTimeout(flushTimeout); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe cancel for run %s: flush: %w", runID, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}
