package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/client"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/store"
)

func TestStatusJSON(t *testing.T) {
	e := startEnv(t)
	id := e.submitted("st-1", approvalYAML)
	e.pause(id, 1)

	r := e.mustRun(cli.ExitOK, "status", id, "--json")
	var doc map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("status --json is not JSON: %v\n%s", err, r.stdout)
	}
	for k, want := range map[string]any{"id": id, "status": "paused", "reason": "paused", "attempt": 1.0, "tenant_id": "acme"} {
		if doc[k] != want {
			t.Errorf("%s = %v, want %v", k, doc[k], want)
		}
	}
	steps, _ := doc["steps"].(map[string]any)
	for step, want := range map[string]string{"build": "succeeded", "approve": "waiting", "deploy": "pending"} {
		st, _ := steps[step].(map[string]any)
		if st["status"] != want {
			t.Errorf("steps.%s.status = %v, want %s", step, st["status"], want)
		}
	}

	// A run with no reason yet still has the key.
	e.submitted("st-2", helloYAML)
	r = e.mustRun(cli.ExitOK, "status", "--json", "st-2")
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatal(err)
	}
	if v, ok := doc["reason"]; !ok || v != "" {
		t.Errorf("reason of a queued run = %v (present %v), want \"\"", v, ok)
	}
}

func TestStatusText(t *testing.T) {
	e := startEnv(t)
	id := e.submitted("st-text", approvalYAML)
	e.pause(id, 1)
	r := e.mustRun(cli.ExitOK, "status", id)
	for _, want := range []string{"run:", id, "workflow:", "approval", "paused (paused)", "attempt:", "STEP", "build", "succeeded", "approve", "waiting", `"ship it?"`, "deploy", "pending"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.stdout)
		}
	}
	// Steps in workflow order.
	if b, a, d := strings.Index(r.stdout, "  build"), strings.Index(r.stdout, "  approve"), strings.Index(r.stdout, "  deploy"); !(b < a && a < d) {
		t.Errorf("steps out of workflow order:\n%s", r.stdout)
	}
}

func TestStatusNotFound(t *testing.T) {
	e := startEnv(t)
	r := e.mustRun(cli.ExitNotFound, "status", "nope")
	if !strings.Contains(r.stderr, `no run "nope"`) {
		t.Errorf("stderr = %q", r.stderr)
	}
	e.mustRun(cli.ExitUsage, "status")
}

func TestList(t *testing.T) {
	e := startEnv(t)
	for _, id := range []string{"l-1", "l-2", "l-3"} {
		e.submitted(id, helloYAML)
	}
	e.pause("l-2", 1)

	r := e.mustRun(cli.ExitOK, "list")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") {
		t.Fatalf("list = %d lines, want a header and 3 runs:\n%s", len(lines), r.stdout)
	}
	for i, id := range []string{"l-3", "l-2", "l-1"} { // newest first
		if !strings.HasPrefix(lines[i+1], id+" ") {
			t.Errorf("line %d = %q, want run %s", i+1, lines[i+1], id)
		}
	}

	r = e.mustRun(cli.ExitOK, "list", "--status", "paused", "--json")
	var l client.RunLine
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil || l.ID != "l-2" || l.Status != runnerd.StatusPaused || l.Workflow != "hello" {
		t.Errorf("list --status paused --json = %q (%v)", r.stdout, err)
	}

	r = e.mustRun(cli.ExitOK, "list", "--limit", "1")
	if n := strings.Count(strings.TrimSpace(r.stdout), "\n"); n != 1 {
		t.Errorf("--limit 1 printed %d runs:\n%s", n, r.stdout)
	}

	t.Setenv("RUNNERD_TENANT", "other")
	if r = e.mustRun(cli.ExitOK, "list"); r.stdout != "" {
		t.Errorf("another tenant's list = %q, want empty", r.stdout)
	}
	if r = e.mustRun(cli.ExitOK, "list", "--all-tenants", "--json"); strings.Count(r.stdout, "\n") != 3 {
		t.Errorf("--all-tenants = %q, want 3 runs", r.stdout)
	}

	e.mustRun(cli.ExitUsage, "list", "--status", "done")
	e.mustRun(cli.ExitUsage, "list", "--limit", "0")
}

// status tells the truth: steps that never ran have no exit code, a
// cancelled paused run's waiting step says cancelled, the first start is
// kept and each attempt listed, JSON times are UTC and people's carry a zone.
func TestStatusIsTruthful(t *testing.T) {
	e := startEnv(t)
	id := e.submitted("truth-1", approvalYAML)
	first := time.Now().UTC().Add(-time.Minute).Truncate(time.Millisecond)
	e.claim(id, 1)
	firstClaim := e.get(id).StartedAt // the run document records each claim
	e.appendEvents(id, 1, runnerd.Event{Type: runnerd.EventRunStarted, Time: first})
	e.claim(id, 2) // a second attempt: the first runner lost the run
	e.appendEvents(id, 2, runnerd.Event{Type: runnerd.EventRunStarted})
	steps := runnerd.StepStates{
		"build":   {Status: runnerd.StepSucceeded, Reason: runnerd.StepReasonCompleted, Attempts: 1, StartedAt: first, FinishedAt: first},
		"approve": {Status: runnerd.StepWaiting, Prompt: "ship it?"},
	}
	if _, err := e.c.st.Finish(ctxT(t), id, 2, runnerd.StatusPaused, runnerd.ReasonPaused, steps); err != nil {
		t.Fatal(err)
	}
	e.mustRun(cli.ExitOK, "cancel", id)

	r := e.mustRun(cli.ExitOK, "status", id, "--json")
	var doc struct {
		StartedAt string `json:"started_at"`
		CreatedAt string `json:"created_at"`
		Attempts  []struct {
			Attempt    int    `json:"attempt"`
			StartedAt  string `json:"started_at"`
			FinishedAt string `json:"finished_at"`
			Status     string `json:"status"`
		} `json:"attempts"`
		Steps map[string]map[string]any `json:"steps"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatal(err)
	}
	// The first runner lost the run (no end recorded); the second paused it.
	if a := doc.Attempts; len(a) == 2 && (a[0].Attempt != 1 || a[0].FinishedAt != "" || a[1].Attempt != 2 || a[1].Status != "paused" || a[1].FinishedAt == "") {
		t.Errorf("attempts %+v, want 1 with no end and 2 that ended paused", a)
	}
	if got, _ := time.Parse(time.RFC3339Nano, doc.StartedAt); !got.Equal(firstClaim) || len(doc.Attempts) != 2 {
		t.Errorf("started_at %s with %d attempts, want the first start %s and 2 attempts", doc.StartedAt, len(doc.Attempts), firstClaim)
	}
	if !strings.HasSuffix(doc.CreatedAt, "Z") || !strings.HasSuffix(doc.StartedAt, "Z") {
		t.Errorf("JSON times not in UTC: created %s started %s", doc.CreatedAt, doc.StartedAt)
	}
	if s := doc.Steps["approve"]; s["status"] != "cancelled" {
		t.Errorf("the waiting step of a cancelled run: %v", s)
	}
	for _, id := range []string{"approve", "deploy"} {
		if _, has := doc.Steps[id]["exit_code"]; has {
			t.Errorf("step %s never ran but has an exit code: %v", id, doc.Steps[id])
		}
	}
	if _, has := doc.Steps["build"]["exit_code"]; !has {
		t.Errorf("step build ran but has no exit code: %v", doc.Steps["build"])
	}
	human := e.mustRun(cli.ExitOK, "status", id).stdout
	zone := time.Now().Format("MST")
	if !strings.Contains(human, "attempts:") || !strings.Contains(human, " "+zone+"\n") {
		t.Errorf("status lacks the attempts or the zone %s:\n%s", zone, human)
	}
}

// A run claimed once is one attempt, timed by its document: status does not
// read its events for it (here it has none, so only the document can say).
func TestStatusOfARunClaimedOnce(t *testing.T) {
	e := startEnv(t)
	id := e.submitted("once-1", approvalYAML)
	e.claim(id, 1)
	steps := runnerd.StepStates{"build": {Status: runnerd.StepSucceeded, Reason: runnerd.StepReasonCompleted, Attempts: 1}}
	if _, err := e.c.st.Finish(ctxT(t), id, 1, runnerd.StatusFailed, runnerd.ReasonStepFailed, steps); err != nil {
		t.Fatal(err)
	}
	run, err := e.c.st.Get(ctxT(t), id)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Attempts []struct {
			Epoch      uint64    `json:"epoch"`
			StartedAt  time.Time `json:"started_at"`
			FinishedAt time.Time `json:"finished_at"`
		} `json:"attempts"`
	}
	if err := json.Unmarshal([]byte(e.mustRun(cli.ExitOK, "status", id, "--json").stdout), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Attempts) != 1 || doc.Attempts[0].Epoch != 1 ||
		!doc.Attempts[0].StartedAt.Equal(run.StartedAt) || !doc.Attempts[0].FinishedAt.Equal(run.FinishedAt) {
		t.Fatalf("attempts %+v, want one from %s to %s", doc.Attempts, run.StartedAt, run.FinishedAt)
	}
}

// A queued run says on its status line why it waits: its concurrency
// group's line, or the queue for a free runner slot; --json has the derived
// waiting object and reason. The group stays shown after the run ends.
func TestStatusSaysWhyAQueuedRunWaits(t *testing.T) {
	e := startEnv(t)
	group := writeFile(t, "deploy.yaml", "name: deploy\nvars: {env: dev}\n"+
		"concurrency: {group: \"deploy-${{ vars.env }}\", limit: 1}\nsteps:\n  - id: s\n    shell: echo hi\n")
	e.mustRun(cli.ExitOK, "submit", group, "--id", "wq-1", "--var", "env=prod")
	e.mustRun(cli.ExitOK, "submit", group, "--id", "wq-2", "--var", "env=prod")
	e.mustRun(cli.ExitOK, "submit", writeFile(t, "hello.yaml", helloYAML), "--id", "wq-3")

	type doc struct {
		Reason           string          `json:"reason"`
		ConcurrencyGroup string          `json:"concurrency_group"`
		Waiting          *client.Waiting `json:"waiting"`
	}
	read := func(id string) doc {
		t.Helper()
		var d doc
		if err := json.Unmarshal([]byte(e.mustRun(cli.ExitOK, "status", "--json", id).stdout), &d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	// No runner took wq-1's place: both wait in the group's line.
	if d := read("wq-2"); d.Reason != "concurrency_group" || d.ConcurrencyGroup != "deploy-prod" || d.Waiting == nil ||
		*d.Waiting != (client.Waiting{Kind: client.WaitConcurrencyGroup, Name: "deploy-prod", Position: 2, Of: 2, Limit: 1}) {
		t.Errorf("wq-2: reason %q group %q waiting %+v, want concurrency_group, deploy-prod, position 2 of 2", d.Reason, d.ConcurrencyGroup, d.Waiting)
	}
	out := e.mustRun(cli.ExitOK, "status", "wq-2").stdout
	if field(out, "status") != `queued (waiting in concurrency group "deploy-prod", position 2 of 2)` || field(out, "group") != "deploy-prod" {
		t.Errorf("status wq-2:\n%s", out)
	}
	// wq-3 is in no line: its message is third in the queue.
	if d := read("wq-3"); d.Reason != "" || d.ConcurrencyGroup != "" || d.Waiting == nil ||
		*d.Waiting != (client.Waiting{Kind: client.WaitRunnerSlot, Position: 3}) {
		t.Errorf("wq-3: reason %q group %q waiting %+v, want a runner slot, position 3", d.Reason, d.ConcurrencyGroup, d.Waiting)
	}
	if out := e.mustRun(cli.ExitOK, "status", "wq-3").stdout; field(out, "status") != "queued (waiting for a free runner slot, position 3)" || strings.Contains(out, "group:") {
		t.Errorf("status wq-3:\n%s", out)
	}

	// Ended: the group is still shown, nothing waits.
	e.fetch(time.Second)
	e.claim("wq-1", 1)
	e.finish("wq-1", 1, runnerd.StatusSucceeded, runnerd.ReasonCompleted, nil)
	if d := read("wq-1"); d.Reason != "completed" || d.ConcurrencyGroup != "deploy-prod" || d.Waiting != nil {
		t.Errorf("wq-1 ended: reason %q group %q waiting %+v", d.Reason, d.ConcurrencyGroup, d.Waiting)
	}
	if out := e.mustRun(cli.ExitOK, "status", "wq-1").stdout; field(out, "group") != "deploy-prod" || field(out, "status") != "succeeded (completed)" {
		t.Errorf("status wq-1:\n%s", out)
	}
}

// field is the value of a "name:  value" line of status's summary.
func field(out, name string) string {
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestStatusJSONShowsAServerWait: a claimed run whose runner waits for a
// server has that wait under "waiting" in status --json ({on, since,
// error}), as docs/operations.md says; a queued run's line wait takes the
// same key only while it is queued.
func TestStatusJSONShowsAServerWait(t *testing.T) {
	e := startEnv(t)
	id := e.submitted("srvwait-1", helloYAML)
	e.claim(id, 1)
	since := time.Now().UTC().Truncate(time.Millisecond)
	if err := e.c.st.SetWaiting(ctxT(t), id, 1, &store.Wait{On: "s3", Since: since, Error: "connection refused"}); err != nil {
		t.Fatal(err)
	}
	r := e.mustRun(cli.ExitOK, "status", id, "--json")
	var doc struct {
		Status  string `json:"status"`
		Waiting *struct {
			On    string    `json:"on"`
			Since time.Time `json:"since"`
			Error string    `json:"error"`
		} `json:"waiting"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	if doc.Status != "running" || doc.Waiting == nil || doc.Waiting.On != "s3" || !doc.Waiting.Since.Equal(since) || doc.Waiting.Error != "connection refused" {
		t.Fatalf("status --json of a run waiting for S3: %s", r.stdout)
	}
	if out := e.mustRun(cli.ExitOK, "status", id).stdout; !strings.Contains(out, "waiting:") || !strings.Contains(out, "for s3 since") {
		t.Errorf("status of a run waiting for S3 does not say so:\n%s", out)
	}
}
