package supervisor

import (
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/store"
)

// announce publishes the notice of a run that reached a status it stays in
// (terminal or paused), after the store write that made it so: a client
// waiting for the run reads the store on the notice instead of polling it.
// The notice carries run as that write stored it, with the time the write
// returned (at), so announcing costs no read. A notice that is lost costs
// the waiter its slow poll, nothing more.
func (s *Supervisor) announce(run *store.Run, status runnerd.Status, reason runnerd.Reason, at time.Time) {
	if run == nil || !status.Settled() {
		return
	}
	if err := s.q.PublishNotice(run.Written(status, reason, at).Notice()); err != nil {
		s.log.Debug().Err(err).Str("run_id", run.ID).Msg("publish notice")
	}
}
