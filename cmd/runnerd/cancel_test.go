package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/cli"
)

// TestCancelQueuedCancelsNow: a queued run has no runner: cancel ends it
// at once (its message, when picked up, changes nothing).
func TestCancelQueuedCancelsNow(t *testing.T) {
	e := startEnv(t)
	id := e.submitted("c-queued", helloYAML)
	r := e.mustRun(cli.ExitOK, "cancel", id)
	if !strings.Contains(r.stderr, "cancelled (it was queued)") || r.stdout != "" {
		t.Errorf("stdout = %q, stderr = %q", r.stdout, r.stderr)
	}
	run := e.get(id)
	if !run.CancelRequested || run.Status != runnerd.StatusCancelled || run.Reason != runnerd.ReasonCancelled {
		t.Errorf("run: cancel_requested %v, %s/%s, want true and cancelled/cancelled", run.CancelRequested, run.Status, run.Reason)
	}
}

func TestCancelRunningPublishes(t *testing.T) {
	e := startEnv(t)
	id := e.submitted("c-running", helloYAML)
	e.claim(id, 1)
	got := make(chan struct{}, 1)
	unsub, err := e.c.q.SubscribeCancel(id, func() { got <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	r := e.mustRun(cli.ExitOK, "cancel", id)
	if !strings.Contains(r.stderr, "its runner stops it now") {
		t.Errorf("stderr = %q", r.stderr)
	}
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("no message on the cancel subject")
	}
	if run := e.get(id); !run.CancelRequested || run.Status != runnerd.StatusRunning {
		t.Errorf("run: cancel_requested %v status %s, want true and still running (its runner ends it)", run.CancelRequested, run.Status)
	}
}

func TestCancelPausedCancelsNow(t *testing.T) {
	e := startEnv(t)
	id := e.submitted("c-paused", approvalYAML)
	e.pause(id, 1)
	e.mustRun(cli.ExitOK, "cancel", id)
	run := e.get(id)
	if run.Status != runnerd.StatusCancelled || run.Reason != runnerd.ReasonCancelled || run.FinishedAt.IsZero() {
		t.Errorf("run: status %s reason %s finished %v, want cancelled/cancelled", run.Status, run.Reason, run.FinishedAt)
	}
	// Cancelling again is not an error: the run is where the user wants it.
	r := e.mustRun(cli.ExitOK, "cancel", id, "--json")
	var res cancelled
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.Status != runnerd.StatusCancelled || !strings.Contains(res.Message, "already cancelled") {
		t.Errorf("second cancel --json: %q (%v)", r.stdout, err)
	}
	// And it cannot be resumed any more: a conflict.
	e.mustRun(cli.ExitConflict, "resume", id, "--answer", "approve.ok=yes")
}

func TestCancelFinishedOrMissing(t *testing.T) {
	e := startEnv(t)
	id := e.submitted("c-done", helloYAML)
	e.claim(id, 1)
	if _, err := e.c.st.Finish(ctxT(t), id, 1, runnerd.StatusSucceeded, runnerd.ReasonCompleted, nil); err != nil {
		t.Fatal(err)
	}
	r := e.mustRun(cli.ExitConflict, "cancel", id)
	if !strings.Contains(r.stderr, "already finished: succeeded") {
		t.Errorf("stderr = %q", r.stderr)
	}
	if e.get(id).CancelRequested {
		t.Error("a finished run got cancel_requested")
	}
	r = e.mustRun(cli.ExitNotFound, "cancel", "nope")
	if !strings.Contains(r.stderr, `no run "nope"`) {
		t.Errorf("stderr = %q", r.stderr)
	}
}
