package supervisor

import (
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
)

// announce publishes the notice of a run that reached a status it stays in
// (terminal or paused), after the store write that made it so: a client
// waiting for the run reads the store on the notice instead of polling it.
// A notice that is lost costs the waiter its slow poll, nothing more.
func (s *Supervisor) announce(run *store.Run, status runnerd.Status, reason runnerd.Reason) {
	if run == nil || !(status.Terminal() || status == runnerd.StatusPaused) {
		return
	}
	now := time.Now().UTC()
	n := queue.Notice{
		RunID: run.ID, TenantID: run.TenantID, Status: string(status), Reason: string(reason),
		Attempt: run.Attempt, CreatedAt: run.CreatedAt, StartedAt: run.StartedAt, FinishedAt: now, At: now,
	}
	if err := s.q.PublishNotice(n); err != nil {
		s.log.Debug().Err(err).Str("run_id", run.ID).Msg("publish notice")
	}
}
