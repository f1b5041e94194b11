package main

import (
	"strings"
	"testing"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/cli"
)

func TestResumePublishesNextGeneration(t *testing.T) {
	e := startEnv(t)
	id := e.submitted("res-1", approvalYAML)
	e.pause(id, 1)
	before := e.get(id)

	r := e.mustRun(cli.ExitOK, "resume", id, "--answer", "approve.ok=yes", "--answer", "approve.note=ship")
	if !strings.Contains(r.stderr, "resumed") {
		t.Errorf("stderr = %q", r.stderr)
	}
	run := e.get(id)
	if run.Status != runnerd.StatusQueued || run.Generation != before.Generation+1 {
		t.Errorf("run: status %s generation %d, want queued and %d", run.Status, run.Generation, before.Generation+1)
	}
	if run.Answers["approve"]["ok"] != "yes" || run.Answers["approve"]["note"] != "ship" {
		t.Errorf("run answers = %v", run.Answers)
	}
	d, m := e.fetchOne()
	if m.Resume == nil || m.Resume.Answers["approve"]["ok"] != "yes" || m.Resume.Answers["approve"]["note"] != "ship" {
		t.Errorf("message resume = %+v", m.Resume)
	}
	if m.RunID != id || m.Workflow == nil {
		t.Errorf("message = %+v", m)
	}
	if want := id + "-1"; d.Header().Get("Nats-Msg-Id") != want {
		t.Errorf("Nats-Msg-Id %q, want %q (the new generation)", d.Header().Get("Nats-Msg-Id"), want)
	}
	if d.Header().Get("traceparent") != before.TraceParent {
		t.Errorf("traceparent %q, want the run's %q", d.Header().Get("traceparent"), before.TraceParent)
	}

	// Repeating the same resume (as after a failed publish) republishes the
	// same generation, which the stream drops; it is not an error.
	r = e.mustRun(cli.ExitOK, "resume", id, "--answer", "approve.ok=yes")
	if !strings.Contains(r.stderr, "already has these answers") {
		t.Errorf("stderr = %q", r.stderr)
	}
	if e.get(id).Generation != run.Generation {
		t.Error("a repeated resume bumped the generation")
	}
	e.expectNoMessage()

	// Other answers to a run that is not paused are refused.
	r = e.mustRun(cli.ExitConflict, "resume", id, "--answer", "approve.ok=no")
	if !strings.Contains(r.stderr, "is queued, not paused") {
		t.Errorf("stderr = %q", r.stderr)
	}
}

func TestResumeRefusesBadAnswers(t *testing.T) {
	e := startEnv(t)
	id := e.submitted("res-bad", approvalYAML)
	e.pause(id, 1)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"resume", id}, "at least one --answer"},
		{[]string{"resume", id, "--answer", "approve=yes"}, "want step.key=value"},
		{[]string{"resume", id, "--answer", "build.ok=yes"}, `"build" is not a human step`},
		{[]string{"resume", id, "--answer", "nope.ok=yes"}, "human steps: approve"},
	} {
		r := e.mustRun(cli.ExitUsage, tc.args...)
		if !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: stderr %q, want %q", tc.args, r.stderr, tc.want)
		}
	}
	if run := e.get(id); run.Status != runnerd.StatusPaused || run.Generation != 0 {
		t.Errorf("refused resumes changed the run: %s generation %d", run.Status, run.Generation)
	}
	e.expectNoMessage()
	r := e.mustRun(cli.ExitNotFound, "resume", "nope", "--answer", "approve.ok=yes")
	if !strings.Contains(r.stderr, `no run "nope"`) {
		t.Errorf("stderr = %q", r.stderr)
	}
}
