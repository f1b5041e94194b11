package executor

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/runnerd/runnerd"
)

// A step whose process never started or was killed has no exit code: not in
// its step_finished and attempt_failed events, not in its state's JSON, not
// in its tries; one that exited keeps its code.
func TestExitCodeOnlyWhenExited(t *testing.T) {
	h := newHarness(t)
	res := h.runSrc(`
steps:
  - id: nope
    retries: 1
    backoff: 10ms
    run: ["no-such-command-xyz"]
  - id: slow
    timeout: 300ms
    run: ["sleep", "30"]
  - id: three
    run: ["sh", "-c", "exit 3"]
`)
	wantStatus(t, res, runnerd.StatusFailed, runnerd.ReasonStepFailed)
	for id, want := range map[string]struct {
		exited bool
		reason runnerd.StepReason
	}{
		"nope":  {false, runnerd.StepReasonStartError},
		"slow":  {false, runnerd.StepReasonTimeout},
		"three": {true, runnerd.StepReasonExitCode},
	} {
		st := wantStep(t, res, id, runnerd.StepFailed, want.reason)
		if st.Exited() != want.exited {
			t.Errorf("%s: Exited() = %v, want %v", id, st.Exited(), want.exited)
		}
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(b), `"exit_code"`); got != want.exited {
			t.Errorf("%s: exit_code in its state's JSON %v, want %v: %s", id, got, want.exited, b)
		}
		fin := h.eventsOf(runnerd.EventStepFinished, id)
		if len(fin) != 1 || fin[0].Exited() != want.exited || (!want.exited && fin[0].ExitCode != 0) {
			t.Errorf("%s: step_finished %+v, want exited %v", id, fin, want.exited)
		}
		for _, tr := range st.Tries {
			if (tr.ExitCode != nil) != want.exited {
				t.Errorf("%s: try %d has exit code %v, want one: %v", id, tr.Attempt, tr.ExitCode, want.exited)
			}
		}
		for _, e := range h.eventsOf(runnerd.EventAttemptFailed, id) {
			if b, _ := json.Marshal(e); strings.Contains(string(b), `"exit_code"`) != want.exited {
				t.Errorf("%s: attempt_failed %s, want exit_code in it: %v", id, b, want.exited)
			}
		}
	}
	if st := res.Steps["three"]; len(st.Tries) != 1 || st.Tries[0].ExitCode == nil || *st.Tries[0].ExitCode != 3 {
		t.Errorf("three's tries %+v, want one with exit code 3", st.Tries)
	}
	if st := res.Steps["slow"]; st.Signal == "" {
		t.Errorf("slow timed out with no signal: %+v", st)
	}
}

// A retried step keeps its first start; each failed try records its own
// start and end, in order, in the executor's state and in the state folded
// from its events (what the supervisor stores).
func TestRetriedStepKeepsFirstStart(t *testing.T) {
	h := newHarness(t)
	res := h.runSrc(`
steps:
  - id: flaky
    retries: 2
    backoff: 50ms
    run: ["sh", "-c", "exit 4"]
`)
	wantStatus(t, res, runnerd.StatusFailed, runnerd.ReasonStepFailed)
	starts := h.eventsOf(runnerd.EventStepStarted, "flaky")
	if len(starts) != 3 {
		t.Fatalf("step_started events: %+v, want 3", starts)
	}
	folded := runnerd.StepStates{}
	h.mu.Lock()
	for _, e := range h.events {
		folded.Apply(e)
	}
	h.mu.Unlock()
	for name, st := range map[string]*runnerd.StepState{"executor": res.Steps["flaky"], "folded": folded["flaky"]} {
		if st.StartedAt.After(starts[0].Time) || len(st.Tries) != 3 {
			t.Fatalf("%s state: started %s, tries %+v; want the first start (%s) and 3 tries", name, st.StartedAt, st.Tries, starts[0].Time)
		}
		if name == "folded" && !st.StartedAt.Equal(starts[0].Time) {
			t.Errorf("folded state started %s, want the first step_started's time %s", st.StartedAt, starts[0].Time)
		}
		for i, tr := range st.Tries {
			if !tr.StartedAt.Equal(starts[i].Time) || tr.FinishedAt.Before(tr.StartedAt) {
				t.Errorf("%s: try %d started %s finished %s; want the start of step_started %d (%s), then its end",
					name, tr.Attempt, tr.StartedAt, tr.FinishedAt, i+1, starts[i].Time)
			}
			if i > 0 && tr.StartedAt.Before(st.Tries[i-1].FinishedAt) {
				t.Errorf("%s: try %d started before try %d finished", name, tr.Attempt, st.Tries[i-1].Attempt)
			}
		}
		if !st.FinishedAt.After(st.Tries[2].StartedAt) {
			t.Errorf("%s: finished %s, not after the last try's start", name, st.FinishedAt)
		}
	}
}
