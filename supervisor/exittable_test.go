package supervisor

import (
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
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
		{"a succeeded step's file refused", observation{finished: succeeded, cleanEnd: true, stoppedFor: stopFileRefused}, outStepFailed},
		{"shutdown, child saved and stopped", observation{finished: cancelled, cleanEnd: true, stoppedFor: stopShutdown}, outShutdown},
		{"shutdown, child killed", observation{stoppedFor: stopShutdown}, outShutdown},
		{"shutdown too late: run already done", observation{finished: succeeded, cleanEnd: true, stoppedFor: stopShutdown}, outSucceeded},
	} {
		if got := classify(tc.obs); got != tc.want {
			t.Errorf("%s: classify = %s, want %s", tc.name, got, tc.want)
		}
	}
}

// Every outcome has a row with a valid action and a name: an outcome added
// without one cannot ack (or do anything to) a message by accident.
func TestEveryOutcomeHasARow(t *testing.T) {
	for o := outcome(0); o < numOutcomes; o++ {
		v := exitTable[o]
		if v.action == actInvalid {
			t.Errorf("outcome %s has no row (or no action)", o)
		}
		if outcomeNames[o] == "" {
			t.Errorf("outcome %d has no name", int(o))
		}
		if v.write && v.status == "" {
			t.Errorf("outcome %s writes no status", o)
		}
		if v.crash && v.action != actNakRetry {
			t.Errorf("outcome %s counts a crash but does not redeliver with backoff", o)
		}
		if v.action == actNakRetry && !v.crash {
			t.Errorf("outcome %s redelivers with crash backoff but is not a crash", o)
		}
	}
	if got, want := outcome(numOutcomes).String(), "outcome("+strconv.Itoa(int(numOutcomes))+")"; got != want {
		t.Errorf("String of an unknown outcome = %q", got)
	}
}

func TestDecideBudget(t *testing.T) {
	for o := outcome(0); o < numOutcomes; o++ {
		v := exitTable[o]
		// Plenty of budget, not the last delivery: the row as it is.
		if got := decide(o, budget{crashes: 0, maxAttempts: 5}); got != v {
			t.Errorf("%s: decide changed the row: %+v", o, got)
		}
		// The last attempt of the crash budget.
		got := decide(o, budget{crashes: 4, maxAttempts: 5})
		if v.crash && (got.status != runnerd.StatusFailed || got.reason != runnerd.ReasonMaxAttemptsExceeded || got.action != actTerm || !got.crash) {
			t.Errorf("%s with the budget spent: %+v, want max_attempts_exceeded", o, got)
		}
		if !v.crash && got != v {
			t.Errorf("%s: a non-crash row changed with the crash budget spent: %+v", o, got)
		}
		// The backstop: the server will not redeliver.
		got = decide(o, budget{maxAttempts: 5, lastDelivery: true})
		if v.action.naks() && got != attemptsSpent {
			t.Errorf("%s on the last delivery: %+v, want max_attempts_exceeded", o, got)
		}
		if !v.action.naks() && got != v {
			t.Errorf("%s: a row that does not nak changed on the last delivery: %+v", o, got)
		}
	}
	// Waiting never spends the budget: no waiting row is a crash.
	for _, o := range []outcome{outLeaseHeld, outAdmissionWait, outStoreUnavailable, outExecutorStartFailed, outLeaseLost, outShutdown} {
		if exitTable[o].crash {
			t.Errorf("%s counts against the run's attempts", o)
		}
	}
}

// Every series is registered as it is made; a registry that has them
// already is refused with an error, not a panic.
func TestMetricsRegisterOnceAndRefuseTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := newMetrics(reg); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(families) == 0 {
		t.Fatal("no series registered")
	}
	if _, err := newMetrics(reg); err == nil {
		t.Fatal("a second registration on the same registry succeeded")
	}
	if _, err := newMetrics(nil); err != nil {
		t.Fatalf("unregistered metrics: %v", err)
	}
}
