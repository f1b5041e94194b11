package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/client"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
	"github.com/runnerd/runnerd/workflow"
)

func TestSubmitCreatesAndQueues(t *testing.T) {
	e := startEnv(t)
	file := writeFile(t, "hello.yaml", helloYAML)
	// Flags after the file, as in `runnerd submit examples/hello.yaml --wait`.
	r := e.mustRun(cli.ExitOK, "submit", file, "--var", "who=you", "--timeout", "90s")

	id, rest, _ := strings.Cut(r.stdout, "\n")
	if rest != "" {
		t.Errorf("stdout after the id line = %q, want nothing (progress goes to stderr)", rest)
	}
	if err := queue.ValidateRunID(id); err != nil {
		t.Fatalf("first line %q is not a run id: %v", id, err)
	}
	if id != strings.ToLower(id) {
		t.Errorf("generated id %q is not lower-case", id)
	}

	run := e.get(id)
	if run.Status != runnerd.StatusQueued || run.TenantID != "acme" || run.Workflow == nil || run.Workflow.Name != "hello" {
		t.Errorf("run = status %s tenant %q workflow %v, want queued, acme, hello", run.Status, run.TenantID, run.Workflow)
	}
	if run.Vars["who"] != "you" || run.TimeoutSec != 90 {
		t.Errorf("run vars %v timeout %d, want who=you and 90", run.Vars, run.TimeoutSec)
	}
	if !regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-01$`).MatchString(run.TraceParent) {
		t.Errorf("trace parent %q is not a W3C traceparent", run.TraceParent)
	}

	d, m := e.fetchOne()
	if m.RunID != id || m.TenantID != "acme" || m.Workflow == nil || m.WorkflowRef != "" || m.Vars["who"] != "you" || m.TimeoutSec != 90 || m.Resume != nil {
		t.Errorf("message = %+v", m)
	}
	if got := d.Header().Get("traceparent"); got != run.TraceParent {
		t.Errorf("traceparent header %q, want the run's %q", got, run.TraceParent)
	}
	if got := d.Header().Get("Nats-Msg-Id"); got != id+"-0" {
		t.Errorf("Nats-Msg-Id %q, want %s-0 (generation 0)", got, id)
	}
}

func TestSubmitIDsAreOrdered(t *testing.T) {
	a := client.NewRunID()
	time.Sleep(2 * time.Millisecond)
	b := client.NewRunID()
	if !(a < b) || a == b {
		t.Errorf("ids %q then %q: want increasing", a, b)
	}
	for _, id := range []string{a, b} {
		if err := queue.ValidateRunID(id); err != nil {
			t.Error(err)
		}
	}
}

func TestSubmitAgainWithIDRepublishes(t *testing.T) {
	e := startEnv(t)
	file := writeFile(t, "hello.yaml", helloYAML)
	// A submit that died after creating the run: its message never made it.
	first := createdRun(t, file, "again-1", "acme")
	if err := e.c.st.Create(ctxT(t), first); err != nil {
		t.Fatal(err)
	}
	r := e.mustRun(cli.ExitOK, "submit", "--id", "again-1", file)
	if line := strings.SplitN(r.stdout, "\n", 2)[0]; line != "again-1" {
		t.Errorf("first line %q, want again-1", line)
	}
	if !strings.Contains(r.stderr, "already exists and is queued") {
		t.Errorf("stderr does not say the run was reused:\n%s", r.stderr)
	}
	d, m := e.fetchOne()
	if m.RunID != "again-1" || d.Header().Get("traceparent") != first.TraceParent {
		t.Errorf("republished message %+v with traceparent %q, want the run's %q", m, d.Header().Get("traceparent"), first.TraceParent)
	}

	// The message did make it: a repeat is dropped by the stream.
	e.mustRun(cli.ExitOK, "submit", "--id", "again-1", file)
	e.expectNoMessage()

	// Anything else under an existing id is refused.
	r = e.mustRun(cli.ExitConflict, "submit", "--id", "again-1", "--var", "who=else", file)
	if !strings.Contains(r.stderr, "another workflow, vars or timeout") {
		t.Errorf("different vars: stderr %q", r.stderr)
	}
	e.claim("again-1", 1)
	r = e.mustRun(cli.ExitConflict, "submit", "--id", "again-1", file)
	if !strings.Contains(r.stderr, "already exists and is running") {
		t.Errorf("running run: stderr %q", r.stderr)
	}
	t.Setenv("RUNNERD_TENANT", "other")
	r = e.mustRun(cli.ExitConflict, "submit", "--id", "again-1", file)
	if !strings.Contains(r.stderr, `tenant "acme"`) {
		t.Errorf("other tenant: stderr %q", r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("a refused submit printed %q on stdout", r.stdout)
	}
}

func TestSubmitInvalid(t *testing.T) {
	e := startEnv(t)
	bad := writeFile(t, "bad.yaml", `name: bad
steps:
  - id: a
    run: ["true"]
  - id: b
    needs: [nope]
    run: ["true"]
`)
	for _, tc := range []struct {
		name string
		args []string
		want []string // in stderr
	}{
		{"unknown need", []string{bad}, []string{"bad.yaml:6", `step "b"`, "needs", "nope"}},
		{"unknown var", []string{writeFile(t, "h.yaml", helloYAML), "--var", "whom=x"}, []string{"--var", `"whom"`, "who"}},
		{"bad var syntax", []string{writeFile(t, "h.yaml", helloYAML), "--var", "who"}, []string{"--var", "key=value"}},
		{"missing file", []string{"/nonexistent/wf.yaml"}, []string{"/nonexistent/wf.yaml"}},
		{"no file", nil, []string{"workflow file"}},
		{"bad id", []string{writeFile(t, "h.yaml", helloYAML), "--id", "a.b"}, []string{"--id", `"a.b"`}},
		{"negative timeout", []string{writeFile(t, "h.yaml", helloYAML), "--timeout", "-1s"}, []string{"--timeout"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.mustRun(cli.ExitUsage, append([]string{"submit"}, tc.args...)...)
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not name %q:\n%s", w, r.stderr)
				}
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
		})
	}
	if runs, err := e.c.st.List(ctxT(t), store.ListOptions{}); err != nil || len(runs) != 0 {
		t.Errorf("invalid submits created %d runs (%v), want none", len(runs), err)
	}
	e.expectNoMessage()
}

func TestSubmitLargeWorkflowGoesToS3(t *testing.T) {
	e := startEnv(t)
	old := inlineWorkflowMax
	inlineWorkflowMax = 100 // hello's JSON is larger
	t.Cleanup(func() { inlineWorkflowMax = old })

	e.mustRun(cli.ExitOK, "submit", "--id", "big", writeFile(t, "hello.yaml", helloYAML))
	_, m := e.fetchOne()
	if m.Workflow != nil || m.WorkflowRef == "" {
		t.Fatalf("message carries workflow %v, ref %q: want only a ref", m.Workflow, m.WorkflowRef)
	}
	rc, err := e.c.blobs.Get(ctxT(t), m.WorkflowRef)
	if err != nil {
		t.Fatalf("get %s: %v", m.WorkflowRef, err)
	}
	defer rc.Close()
	data, _ := io.ReadAll(rc)
	if queue.WorkflowRef(data) != m.WorkflowRef || !bytes.Contains(data, []byte(`"greet"`)) {
		t.Errorf("object %s holds %q", m.WorkflowRef, data)
	}
}

// TestSubmitWait plays the runner with store calls (claim, events, finish)
// and checks what --wait prints and the exit code of each final status.
func TestSubmitWait(t *testing.T) {
	e := startEnv(t)
	file := writeFile(t, "hello.yaml", helloYAML)
	for i, tc := range []struct {
		status runnerd.Status
		reason runnerd.Reason
		code   int
	}{
		{runnerd.StatusFailed, runnerd.ReasonStepFailed, cli.ExitFailed},
		{runnerd.StatusSucceeded, runnerd.ReasonCompleted, cli.ExitOK},
		{runnerd.StatusPaused, runnerd.ReasonPaused, cli.ExitPaused},
		{runnerd.StatusCancelled, runnerd.ReasonCancelled, cli.ExitCancelled},
	} {
		t.Run(string(tc.status), func(t *testing.T) {
			id := fmt.Sprintf("wait-%d", i)
			done := make(chan result, 1)
			go func() {
				var out, errb bytes.Buffer
				code := Main([]string{"submit", file, "--id", id, "--wait"}, &out, &errb)
				done <- result{out.String(), errb.String(), code}
			}()
			playRunner(t, e, id, tc.status, tc.reason)
			var r result
			select {
			case r = <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("submit --wait did not return")
			}
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", r.code, tc.code, r.stderr)
			}
			if r.stdout != id+"\n" {
				t.Errorf("stdout %q, want the id alone", r.stdout)
			}
			for _, want := range []string{"start  greet", "ok     greet", fmt.Sprintf("run %s %s (%s)", id, tc.status, tc.reason)} {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
				}
			}
			if tc.status == runnerd.StatusFailed {
				for _, want := range []string{"FAIL   bye", "exit_code (exit 3)", "| line 2 of bye", "| no newline"} {
					if !strings.Contains(r.stderr, want) {
						t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
					}
				}
			}
		})
	}
}

// playRunner waits for the run's message, then claims it and writes what a
// runner would, ending in status.
func playRunner(t *testing.T, e *testEnv, id string, status runnerd.Status, reason runnerd.Reason) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() bool { return len(e.fetch(time.Second)) > 0 }, "no message from submit")
	e.claim(id, 1)
	e.appendEvents(id, 1,
		runnerd.Event{Type: runnerd.EventRunStarted},
		runnerd.Event{Type: runnerd.EventStepStarted, Step: "greet", Attempt: 1},
		runnerd.Event{Type: runnerd.EventLog, Step: "greet", Text: "hello\n"},
		runnerd.Event{Type: runnerd.EventStepFinished, Step: "greet", Status: "succeeded", Reason: "completed", DurationMS: 12},
	)
	time.Sleep(500 * time.Millisecond) // let the follower see a run in progress
	e.appendEvents(id, 1,
		runnerd.Event{Type: runnerd.EventStepStarted, Step: "bye", Attempt: 1},
		runnerd.Event{Type: runnerd.EventLog, Step: "bye", Text: "line 1 of bye\nline 2 of bye\nno newline"},
	)
	if status == runnerd.StatusFailed {
		e.appendEvents(id, 1, runnerd.Event{Type: runnerd.EventStepFinished, Step: "bye", Status: "failed", Reason: "exit_code", Attempt: 1, ExitCode: 3, DurationMS: 40})
	}
	e.finish(id, 1, status, reason, nil)
}

// createdRun is the run a submit of file would create, before its publish.
func createdRun(t *testing.T, file, id, tenant string) *store.Run {
	t.Helper()
	w, err := workflow.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	vars, err := w.ResolveVars(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &store.Run{ID: id, TenantID: tenant, Workflow: w, Vars: vars,
		TraceParent: "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01"}
}

// A run that on_conflict: cancel_new cancels at once is no queued run:
// submit says so on stderr, with why, and exits 4 (cancelled); the id stays
// on stdout, --json prints the document.
func TestSubmitCancelledAtOnce(t *testing.T) {
	e := startEnv(t)
	file := writeFile(t, "cn.yaml", "name: deploy\nvars: {env: dev}\n"+
		"concurrency: {group: \"deploy-${{ vars.env }}\", limit: 1, on_conflict: cancel_new}\nsteps:\n  - id: s\n    shell: echo hi\n")
	r := e.mustRun(cli.ExitOK, "submit", file, "--id", "cn-1", "--var", "env=qa")
	if !strings.Contains(r.stderr, "run cn-1 queued") {
		t.Errorf("first run of the group:\n%s", r.stderr)
	}
	r = e.mustRun(cli.ExitCancelled, "submit", file, "--id", "cn-2", "--var", "env=qa")
	if r.stdout != "cn-2\n" || strings.Contains(r.stderr, "queued") ||
		!strings.Contains(r.stderr, `run cn-2 cancelled at once: group_full: concurrency group "deploy-qa" already has its limit of 1 runs (on_conflict: cancel_new)`) {
		t.Errorf("submit of a run cancel_new cancels: stdout %q\nstderr:\n%s", r.stdout, r.stderr)
	}
	if got := e.get("cn-2"); got.Status != runnerd.StatusCancelled || got.Reason != runnerd.ReasonGroupFull {
		t.Errorf("cn-2 stored as %s/%s, want cancelled/group_full", got.Status, got.Reason)
	}
	r = e.mustRun(cli.ExitCancelled, "submit", file, "--id", "cn-3", "--var", "env=qa", "--json")
	var doc struct{ ID, Status, Reason string }
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || doc.ID != "cn-3" || doc.Status != "cancelled" || doc.Reason != "group_full" {
		t.Errorf("submit --json of a run cancel_new cancels: %v\n%s", err, r.stdout)
	}
}
