package cli

import (
	"strings"
	"testing"

	"github.com/creack/pty"

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

// On a terminal the status line is redrawn in place; TERM=dumb gets plain
// lines (no "\r\x1b[K") and no colour. Live output's prefixes are padded to
// the longest step id.
func TestProgressOnATerminal(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	t.Setenv("NO_COLOR", "")
	for term, want := range map[string]bool{"xterm": true, "dumb": false} {
		t.Setenv("TERM", term)
		if Redraws(tty) != want || Colour(tty) != want {
			t.Errorf("TERM=%s: redraws %v, colour %v; want %v", term, Redraws(tty), Colour(tty), want)
		}
	}
	var b strings.Builder
	if Redraws(&b) {
		t.Error("a buffer is not a terminal")
	}
	p := NewProgress(&b, ProgressOptions{Logs: true, Steps: []string{"a", "build", "go"}})
	p.Event(runnerd.Event{Type: runnerd.EventLog, Step: "a", Text: "one\n"})
	p.Event(runnerd.Event{Type: runnerd.EventLog, Step: "build", Text: "two\n"})
	p.Close()
	if want := "a     | one\nbuild | two\n"; b.String() != want {
		t.Errorf("live output %q, want %q", b.String(), want)
	}
}
