package main

import (
	"bytes"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/internal/testbin"
	"github.com/runnerd/runnerd/internal/testutil"
)

func TestLogsFromS3(t *testing.T) {
	e := startEnv(t)
	id := e.submitted("logs-1", helloYAML)
	e.claim(id, 1)
	logs := map[string]string{"greet": "hello, world\n", "bye": "bye\nsecond line\n"}
	steps := runnerd.StepStates{}
	for step, text := range logs {
		key := blob.StepLogKey(id, 1, step)
		if _, err := e.c.blobs.Put(ctxT(t), key, strings.NewReader(text)); err != nil {
			t.Fatal(err)
		}
		steps[step] = &runnerd.StepState{Status: runnerd.StepSucceeded, Reason: runnerd.StepReasonCompleted, Attempts: 1, LogKey: key}
	}
	if _, err := e.c.st.Finish(ctxT(t), id, 1, runnerd.StatusSucceeded, runnerd.ReasonCompleted, steps); err != nil {
		t.Fatal(err)
	}

	r := e.mustRun(cli.ExitOK, "logs", id)
	want := "==> greet (succeeded) <==\nhello, world\n\n==> bye (succeeded) <==\nbye\nsecond line\n"
	if r.stdout != want {
		t.Errorf("logs =\n%q\nwant (workflow order)\n%q", r.stdout, want)
	}
	if r = e.mustRun(cli.ExitOK, "logs", id, "--step", "bye"); r.stdout != logs["bye"] {
		t.Errorf("logs --step bye = %q, want %q", r.stdout, logs["bye"])
	}
	r = e.mustRun(cli.ExitNotFound, "logs", id, "--step", "nope")
	if !strings.Contains(r.stderr, `no step "nope"`) || !strings.Contains(r.stderr, "greet, bye") {
		t.Errorf("stderr = %q", r.stderr)
	}
}

func TestLogsMissingObjectFails(t *testing.T) {
	e := startEnv(t)
	id := e.submitted("logs-gone", helloYAML)
	e.claim(id, 1)
	steps := runnerd.StepStates{"greet": {Status: runnerd.StepFailed, LogKey: blob.StepLogKey(id, 1, "greet")}}
	if _, err := e.c.st.Finish(ctxT(t), id, 1, runnerd.StatusFailed, runnerd.ReasonStepFailed, steps); err != nil {
		t.Fatal(err)
	}
	r := e.mustRun(cli.ExitSoftware, "logs", id)
	if !strings.Contains(r.stderr, "missing from S3") {
		t.Errorf("stderr = %q", r.stderr)
	}
}

// TestLogsFollow follows a running run's log events until it finishes.
func TestLogsFollow(t *testing.T) {
	e := startEnv(t)
	id := e.submitted("logs-f", helloYAML)
	e.claim(id, 1)
	e.appendEvents(id, 1,
		runnerd.Event{Type: runnerd.EventStepStarted, Step: "greet", Attempt: 1},
		runnerd.Event{Type: runnerd.EventLog, Step: "greet", Text: "hel"},
	)
	done := make(chan result, 1)
	go func() {
		var out, errb bytes.Buffer
		code := Main([]string{"logs", id}, &out, &errb) // running: follows without --follow
		done <- result{out.String(), errb.String(), code}
	}()
	time.Sleep(750 * time.Millisecond)
	e.appendEvents(id, 1,
		runnerd.Event{Type: runnerd.EventLog, Step: "greet", Text: "lo\nworld"},
		runnerd.Event{Type: runnerd.EventStepStarted, Step: "bye", Attempt: 1},
		runnerd.Event{Type: runnerd.EventLog, Step: "bye", Text: "bye\n"},
		runnerd.Event{Type: runnerd.EventStepFinished, Step: "greet", Status: "succeeded"},
	)
	e.finish(id, 1, runnerd.StatusSucceeded, runnerd.ReasonCompleted, nil)
	var r result
	select {
	case r = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("logs did not return after the run finished")
	}
	if r.code != cli.ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if want := "greet | hello\nbye   | bye\ngreet | world\n"; r.stdout != want {
		t.Errorf("logs =\n%q\nwant\n%q", r.stdout, want)
	}

	// --follow on a finished run prints its events and returns; --step
	// prints that step's output as it came.
	if r = e.mustRun(cli.ExitOK, "logs", id, "--follow", "--step", "greet"); r.stdout != "hello\nworld" {
		t.Errorf("logs --follow --step greet = %q", r.stdout)
	}
}

// Ctrl-C on logs --follow of a running run exits 130 and says the run goes
// on, after printing what it followed.
func TestLogsFollowInterruptedExits130(t *testing.T) {
	e := startEnv(t)
	id := e.submitted("logs-int", helloYAML)
	e.claim(id, 1)
	e.appendEvents(id, 1,
		runnerd.Event{Type: runnerd.EventStepStarted, Step: "greet", Attempt: 1},
		runnerd.Event{Type: runnerd.EventLog, Step: "greet", Text: "hello\n"},
	)
	cmd := exec.Command(testbin.MustPath(t, "runnerd"), "logs", id, "--follow")
	out, errb := &testutil.SyncBuffer{}, &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	// Following once it printed the log (its signal handler is set up before).
	testutil.Eventually(t, 30*time.Second, func() bool { return strings.Contains(out.String(), "greet | hello\n") },
		"logs --follow printed no log line:\n%s", errb.String)
	_ = cmd.Process.Signal(syscall.SIGINT)
	_ = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != cli.ExitInterrupted || !strings.Contains(errb.String(), "stopped following run "+id) {
		t.Errorf("exit %d, want %d\nstderr:\n%s", code, cli.ExitInterrupted, errb.String())
	}
	if got := e.get(id).Status; got != runnerd.StatusRunning {
		t.Errorf("the run is %s after the interrupted follow, want it still running", got)
	}
}
