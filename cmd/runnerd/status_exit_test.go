package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/store"
)

// The EXIT column shows an exit status only for a step whose process
// exited: "-" for an answered human step and a step that could not start,
// the signal for one killed at its timeout; each failed try says how it
// ended and when it started and finished.
func TestStatusExitColumn(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	three := 3
	r := &store.Run{ID: "r1", Status: runnerd.StatusFailed, Reason: runnerd.ReasonStepFailed, Steps: runnerd.StepStates{
		"approve": {Status: runnerd.StepSucceeded, Reason: runnerd.StepReasonCompleted, Answers: map[string]string{"ok": "yes"},
			StartedAt: at, FinishedAt: at},
		"nope": {Status: runnerd.StepFailed, Reason: runnerd.StepReasonStartError, Attempts: 1, ExitCode: -1,
			StartedAt: at, FinishedAt: at, Tries: []runnerd.Try{{Attempt: 1, Reason: runnerd.StepReasonStartError, StartedAt: at, FinishedAt: at.Add(time.Millisecond)}}},
		"slow": {Status: runnerd.StepFailed, Reason: runnerd.StepReasonTimeout, Attempts: 1, ExitCode: -1, Signal: "SIGKILL",
			StartedAt: at, FinishedAt: at.Add(time.Second)},
		"three": {Status: runnerd.StepFailed, Reason: runnerd.StepReasonExitCode, Attempts: 2, ExitCode: 3, StartedAt: at, FinishedAt: at.Add(3 * time.Second),
			Tries: []runnerd.Try{{Attempt: 1, ExitCode: &three, Reason: runnerd.StepReasonExitCode, Retried: true, StartedAt: at, FinishedAt: at.Add(time.Second)}}},
	}}
	var b bytes.Buffer
	printRun(&b, r, nil, nil)
	out := b.String()
	for step, exit := range map[string]string{"approve": "-", "nope": "-", "slow": "SIGKILL", "three": "3"} {
		row := regexp.MustCompile(`(?m)^  ` + step + ` +\S+ +\S+ +\S+ +(\S+)`).FindStringSubmatch(out)
		if row == nil || row[1] != exit {
			t.Errorf("step %s: EXIT %v, want %q:\n%s", step, row, exit, out)
		}
	}
	for _, want := range []string{
		"failed attempts of nope:\n  attempt 1: did not exit (start_error), not retried: \n    started " + fmtTime(at) + ", finished " + fmtTime(at.Add(time.Millisecond)),
		"failed attempts of three:\n  attempt 1: exit 3 (exit_code), retried: \n    started " + fmtTime(at) + ", finished " + fmtTime(at.Add(time.Second)),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks\n%s\nin:\n%s", want, out)
		}
	}
	if strings.Contains(out, "exit -1") {
		t.Errorf("status shows exit -1:\n%s", out)
	}
}
