package cli

import (
	"strings"
	"testing"

	"github.com/runnerd/runnerd"
)

// A failed step's progress line shows its exit status only when its
// process exited: the signal of one killed at its timeout, nothing for one
// that could not start (whatever exit code the event carries).
func TestProgressFailedStepExit(t *testing.T) {
	var b strings.Builder
	p := NewProgress(&b, ProgressOptions{})
	for _, e := range []runnerd.Event{
		{Type: runnerd.EventStepFinished, Step: "nope", Attempt: 1, Status: "failed", Reason: "start_error", ExitCode: -1},
		{Type: runnerd.EventStepFinished, Step: "slow", Attempt: 1, Status: "failed", Reason: "timeout", ExitCode: -1, Signal: "SIGKILL"},
		{Type: runnerd.EventStepFinished, Step: "three", Attempt: 1, Status: "failed", Reason: "exit_code", ExitCode: 3},
	} {
		p.Event(e)
	}
	p.Close()
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("progress lines: %q", lines)
	}
	for i, want := range []string{"start_error", "timeout (SIGKILL)", "exit_code (exit 3)"} {
		if !strings.HasSuffix(lines[i], want) {
			t.Errorf("line %d = %q, want it to end in %q", i, lines[i], want)
		}
	}
}
