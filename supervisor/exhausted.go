package supervisor

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
)

// settleExhausted handles a run message whose last delivery ended without
// an answer: its runner died during it, so no exit-table row ran, JetStream
// will not deliver it again, and the run would stay `running` with its
// message stuck in the stream. Every runner hears the advisory; the lease
// makes one of them the owner, the others find the run finished.
//
// The run fails with max_attempts_exceeded (as the exit table does on a last
// delivery) and the message is deleted.
func (s *Supervisor) settleExhausted(ctx context.Context, seq uint64) {
	ttl := s.q.Config().LeaseTTL
	ctx, cancel := context.WithTimeout(ctx, 5*ttl+time.Minute)
	defer cancel()
	log := s.log.With().Uint64("stream_seq", seq).Logger()
	msg, err := s.q.Message(ctx, seq)
	if errors.Is(err, queue.ErrMessageGone) {
		return
	}
	if err != nil {
		log.Warn().Err(err).Msg("exhausted message: read failed; it stays in the stream")
		return
	}
	runID := msg.RunID()
	if decoded, err := queue.Decode(msg.Data); err == nil {
		runID = decoded.RunID
	}
	log = log.With().Str("run_id", runID).Str("reason", string(runnerd.ReasonMaxAttemptsExceeded)).Logger()
	deleteMsg := func(why string) {
		if err := s.q.DeleteMessage(ctx, seq); err != nil {
			log.Warn().Err(err).Msg("exhausted message: delete failed")
			return
		}
		s.m.deliveries.WithLabelValues(deliveryDeleteExhausted).Inc()
		log.Info().Str("why", why).Msg("exhausted message deleted")
	}
	if runID == "" {
		deleteMsg("names no run") // a runner would have termed it
		return
	}
	run, err := s.store.Get(ctx, runID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		deleteMsg("run not found")
		return
	case err != nil:
		log.Warn().Err(err).Msg("exhausted message: load run failed; it stays in the stream")
		return
	case run.Status.Settled():
		deleteMsg("run already " + string(run.Status))
		return
	case msg.Generation() >= 0 && msg.Generation() < run.Generation:
		deleteMsg("stale generation")
		return
	}

	// The dead runner's lease expires within a TTL; a live holder means a
	// runner still works on the run (its message was redelivered after all).
	lease, err := backoff.Retry(ctx, func() (*queue.Lease, error) {
		l, err := s.q.AcquireLease(ctx, runID, s.cfg.RunnerID)
		if err != nil && !errors.Is(err, queue.ErrLeaseHeld) {
			return nil, backoff.Permanent(err)
		}
		return l, err
	}, backoff.WithBackOff(backoff.NewConstantBackOff(ttl/2)), backoff.WithMaxElapsedTime(0))
	switch {
	case errors.Is(err, queue.ErrLeaseHeld) || ctx.Err() != nil:
		log.Warn().Msg("exhausted message: the run's lease stayed held; left in the stream")
		return
	case err != nil:
		log.Warn().Err(err).Msg("exhausted message: lease failed; it stays in the stream")
		return
	}
	defer func() { _ = lease.Release(context.WithoutCancel(ctx)) }()
	claimed, err := s.store.Claim(ctx, runID, s.cfg.RunnerID, lease.Epoch())
	switch {
	case errors.Is(err, store.ErrTerminal), errors.Is(err, store.ErrIllegalTransition):
		deleteMsg("run settled meanwhile")
		return
	case err != nil:
		log.Warn().Err(err).Msg("exhausted message: claim failed; it stays in the stream")
		return
	}
	at, err := s.store.Finish(ctx, runID, lease.Epoch(), runnerd.StatusFailed, runnerd.ReasonMaxAttemptsExceeded, claimed.Steps)
	if err != nil {
		log.Warn().Err(err).Msg("exhausted message: could not fail the run; it stays in the stream")
		return
	}
	s.m.finished(runnerd.StatusFailed, runnerd.ReasonMaxAttemptsExceeded)
	s.announce(claimed, runnerd.StatusFailed, runnerd.ReasonMaxAttemptsExceeded, at)
	s.leaveAllLines(ctx, runID)
	log.Warn().Int("attempt", claimed.Attempt).Msg("run failed: its last delivery ended with its runner")
	deleteMsg("run failed")
}
