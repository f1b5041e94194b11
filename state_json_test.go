package runnerd

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// A step that never exited has no exit_code in JSON; one that did keeps
// it, and the state reads back the same.
func TestStepStateJSONExitCode(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		st   StepState
		want bool
	}{
		{StepState{Status: StepPending}, false},
		{StepState{Status: StepWaiting, Prompt: "ok?"}, false},
		{StepState{Status: StepSkipped}, false},
		{StepState{Status: StepCancelled, Signal: "SIGTERM", StartedAt: at}, false},
		{StepState{Status: StepSucceeded, Attempts: 1, StartedAt: at, FinishedAt: at}, true},
		{StepState{Status: StepFailed, Attempts: 1, Reason: StepReasonExitCode, ExitCode: 3, StartedAt: at, FinishedAt: at}, true},
		// A human step answered: no process.
		{StepState{Status: StepSucceeded, Answers: map[string]string{"ok": "yes"}, StartedAt: at, FinishedAt: at}, false},
		// Could not start, or killed at its timeout.
		{StepState{Status: StepFailed, Attempts: 1, Reason: StepReasonStartError, ExitCode: -1, StartedAt: at, FinishedAt: at}, false},
		{StepState{Status: StepFailed, Attempts: 1, Reason: StepReasonTimeout, Signal: "SIGKILL", ExitCode: -1, StartedAt: at, FinishedAt: at}, false},
	} {
		b, err := json.Marshal(tc.st)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(b), `"exit_code"`); got != tc.want {
			t.Errorf("%s: exit_code in JSON %v, want %v: %s", tc.st.Status, got, tc.want, b)
		}
		var back StepState
		if err := json.Unmarshal(b, &back); err != nil || (tc.want && back.ExitCode != tc.st.ExitCode) || back.Status != tc.st.Status {
			t.Errorf("%s: read back %+v (%v) from %s", tc.st.Status, back, err, b)
		}
	}
}
