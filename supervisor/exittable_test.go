package supervisor

import (
	"testing"

	"github.com/runnerd/runnerd"
)

// The rows of the table are each made to happen for real in
// supervisor_test.go; this checks the classification of every combination
// of facts the supervisor can observe, including the races.
func TestClassify(t *testing.T) {
	fin := func(status runnerd.Status, reason runnerd.Reason) *runnerd.Event {
		return &runnerd.Event{Type: runnerd.EventRunFinished, Status: string(status), Reason: string(reason)}
	}
	succeeded := fin(runnerd.StatusSucceeded, runnerd.ReasonCompleted)
	cancelled := fin(runnerd.StatusCancelled, runnerd.ReasonCancelled)
	for _, tc := range []struct {
		name string
		obs  observation
		want outcome
	}{
		{"success", observation{finished: succeeded, cleanEnd: true}, outSucceeded},
		{"success claimed on a broken stream", observation{finished: succeeded}, outChildCrashed},
		{"step failed", observation{finished: fin(runnerd.StatusFailed, runnerd.ReasonStepFailed), cleanEnd: true}, outStepFailed},
		{"deadline reported by the child", observation{finished: fin(runnerd.StatusFailed, runnerd.ReasonTimeout), cleanEnd: true}, outTimeout},
		{"deadline enforced by the supervisor", observation{stoppedFor: stopDeadline}, outTimeout},
		{"paused", observation{finished: fin(runnerd.StatusPaused, runnerd.ReasonPaused), cleanEnd: true}, outPaused},
		{"user cancel, child obeyed", observation{finished: cancelled, cleanEnd: true, stoppedFor: stopCancel}, outCancelled},
		{"user cancel, child killed", observation{stoppedFor: stopCancel}, outCancelled},
		{"crash", observation{}, outChildCrashed},
		{"crash after a clean end without final event", observation{cleanEnd: true}, outChildCrashed},
		{"oom", observation{oomKilled: true}, outChildOOM},
		{"oom-killed step failed the run", observation{finished: fin(runnerd.StatusFailed, runnerd.ReasonStepFailed), cleanEnd: true, oomKilled: true}, outChildOOM},
		{"success despite an oom kill", observation{finished: succeeded, cleanEnd: true, oomKilled: true}, outSucceeded},
		{"unresponsive", observation{stoppedFor: stopUnresponsive}, outChildUnresponsive},
		{"lease lost beats everything", observation{finished: succeeded, cleanEnd: true, stoppedFor: stopLeaseLost}, outLeaseLost},
		{"store down", observation{stoppedFor: stopStoreUnavailable}, outStoreUnavailable},
		{"shutdown, child saved and stopped", observation{finished: cancelled, cleanEnd: true, stoppedFor: stopShutdown}, outShutdown},
		{"shutdown, child killed", observation{stoppedFor: stopShutdown}, outShutdown},
		{"shutdown too late: run already done", observation{finished: succeeded, cleanEnd: true, stoppedFor: stopShutdown}, outSucceeded},
	} {
		if got := classify(tc.obs); got != tc.want {
			t.Errorf("%s: classify = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestDecideLastDelivery(t *testing.T) {
	for o, v := range exitTable {
		got := decide(o, true)
		if v.retryable {
			if got.status != runnerd.StatusFailed || got.reason != runnerd.ReasonMaxAttemptsExceeded || got.action != actTerm {
				t.Errorf("outcome %d on the last delivery: %+v", o, got)
			}
			continue
		}
		if got != v {
			t.Errorf("outcome %d: last delivery changed a non-retryable row: %+v", o, got)
		}
	}
	// Every row that re-queues a run must be retryable, so none loops forever.
	for o, v := range exitTable {
		if v.action == actNakRetry && !v.retryable {
			t.Errorf("outcome %d naks with backoff but is not retryable", o)
		}
	}
}
