package supervisor

import (
	"context"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
)

// announce publishes the notice of a run that reached a status it stays in
// (terminal or paused), after the store write that made it so: a client
// waiting for the run reads the store on the notice instead of polling it.
// The notice carries the document as stored (its finished_at, or the time it
// paused), read back by id; should that read fail, it carries what this
// runner knows, without the time of the write. A notice that is lost costs
// the waiter its slow poll, nothing more.
func (s *Supervisor) announce(run *store.Run, status runnerd.Status, reason runnerd.Reason) {
	if run == nil || !(status.Terminal() || status == runnerd.StatusPaused) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	stored, err := s.store.Get(ctx, run.ID)
	var n queue.Notice
	if err == nil && stored.Status == status {
		n = queue.NoticeOf(stored)
	} else {
		n = queue.NoticeOf(run)
		n.Status, n.Reason, n.FinishedAt, n.PausedAt = string(status), string(reason), time.Time{}, time.Time{}
	}
	if err := s.q.PublishNotice(n); err != nil {
		s.log.Debug().Err(err).Str("run_id", run.ID).Msg("publish notice")
	}
}
