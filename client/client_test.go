package client_test

import (
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/client"
	"github.com/runnerd/runnerd/store"
)

const helloYAML = `name: hello
vars: {who: world}
steps:
  - id: greet
    run: ["echo", "hello, ${{ vars.who }}"]
`

// sleepYAML runs long enough that a client polling the store every 250 ms
// would read it a dozen times.
const sleepYAML = `name: sleeper
steps:
  - id: nap
    shell: sleep 3
  - id: after
    needs: [nap]
    shell: echo awake
`

const approvalYAML = `name: approval
steps:
  - id: approve
    kind: human
    prompt: "ship it?"
  - id: deploy
    needs: [approve]
    if: ${{ steps.approve.answers.ok == 'yes' }}
    shell: echo deploying
`

// TestWaitUsesNotices: Wait reads the store when the run's notice comes,
// not on a timer, however long the run takes.
func TestWaitUsesNotices(t *testing.T) {
	w := newWorld(t)
	w.serve()
	run := w.submit("wait-1", sleepYAML, nil)
	before := w.reads.Load()
	r, err := w.c.Wait(ctxT(t), run.ID)
	if err != nil {
		t.Fatalf("Wait: %v\n%s", err, w.logs.String())
	}
	reads := w.reads.Load() - before
	if r.Status != runnerd.StatusSucceeded || r.Reason != runnerd.ReasonCompleted {
		t.Fatalf("run %s %s, want succeeded (completed)", r.Status, r.Reason)
	}
	if took := r.FinishedAt.Sub(r.CreatedAt); took < 3*time.Second {
		t.Fatalf("run took %s: the step sleeps 3 s", took)
	}
	// One Get at the start and one on the notice; a Get is two or three
	// finds on the revision path (the run, the revisions after it). A poll
	// every 250 ms would be a dozen Gets.
	t.Logf("store reads during Wait of a %s run: %d", r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond), reads)
	if reads > 6 {
		t.Errorf("Wait read the store %d times during a 3 s run: it polls", reads)
	}
}

// TestWatchFollowsEvents: Watch hands over every event in order as it is
// stored, reading when a progress notice says there is something new.
func TestWatchFollowsEvents(t *testing.T) {
	w := newWorld(t)
	w.serve()
	run := w.submit("watch-1", sleepYAML, nil)
	var events []client.Event
	var napStarted, napFinished int64 // reads counted when those events came
	r, err := w.c.Watch(ctxT(t), run.ID, 0, func(e client.Event) error {
		events = append(events, e)
		if e.Step == "nap" && e.Type == runnerd.EventStepStarted {
			napStarted = w.reads.Load()
		}
		if e.Step == "nap" && e.Type == runnerd.EventStepFinished {
			napFinished = w.reads.Load()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Watch: %v\n%s", err, w.logs.String())
	}
	if r.Status != runnerd.StatusSucceeded {
		t.Fatalf("run %s %s, want succeeded", r.Status, r.Reason)
	}
	if len(events) == 0 || int64(len(events)) != r.EventSeq {
		t.Fatalf("got %d events, the run has %d", len(events), r.EventSeq)
	}
	for i, e := range events {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d: out of order or missing", i, e.Seq)
		}
	}
	if last := events[len(events)-1]; last.Type != runnerd.EventRunFinished {
		t.Errorf("last event %s, want run_finished", last.Type)
	}
	var sawAwake bool
	for _, e := range events {
		if e.Type == runnerd.EventLog && e.Step == "after" && has(e.Text, "awake") {
			sawAwake = true
		}
	}
	if !sawAwake {
		t.Error("no log event of step after")
	}
	// While the step sleeps nothing is stored, so nothing is read but the
	// read of events that brings its end (the run, its revision, the
	// events: 3 commands), and on a loaded machine a read or two more when
	// the step's start came in more than one batch. Polling every 250 ms
	// would be a dozen such reads, 24 commands or more: 9 tells the two
	// apart with room for the load.
	reads := napFinished - napStarted
	t.Logf("store reads while a step slept 3 s: %d", reads)
	if napStarted == 0 || reads > 9 {
		t.Errorf("Watch read the store %d times while the step slept: it polls", reads)
	}
}

// TestErrors: each refusal matches its sentinel.
func TestErrors(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t)
	if _, err := w.c.Get(ctx, "nope"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Get of no run: %v, want ErrNotFound", err)
	}
	if _, err := w.c.Cancel(ctx, "nope"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Cancel of no run: %v, want ErrNotFound", err)
	}
	bad := w.workflow(helloYAML)
	bad.Steps[0].Needs = []string{"missing"}
	if _, err := w.c.Submit(ctx, client.Submission{Workflow: bad}); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("Submit of an invalid workflow: %v, want ErrInvalid", err)
	}
	if _, err := w.c.Submit(ctx, client.Submission{ID: "a.b", Workflow: w.workflow(helloYAML)}); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("Submit with id a.b: %v, want ErrInvalid", err)
	}
	if _, err := w.c.Submit(ctx, client.Submission{Workflow: w.workflow(helloYAML), Vars: map[string]string{"whom": "x"}}); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("Submit with an unknown var: %v, want ErrInvalid", err)
	}

	w.submit("e-1", helloYAML, nil)
	again, err := w.c.Submit(ctx, client.Submission{ID: "e-1", Workflow: w.workflow(helloYAML)})
	if err != nil || !again.Again {
		t.Errorf("the same submission again: %+v, %v; want Again", again, err)
	}
	if _, err := w.c.Submit(ctx, client.Submission{ID: "e-1", Workflow: w.workflow(helloYAML), Vars: map[string]string{"who": "else"}}); !errors.Is(err, client.ErrConflict) {
		t.Errorf("another submission under e-1: %v, want ErrConflict", err)
	}
	if _, err := w.c.Resume(ctx, "e-1", map[string]map[string]string{"greet": {"ok": "yes"}}); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("answers to a step that is not human: %v, want ErrInvalid", err)
	}
	if _, err := w.c.Retry(ctx, "e-1", client.RetryOptions{}); !errors.Is(err, client.ErrConflict) {
		t.Errorf("Retry of a queued run: %v, want ErrConflict", err)
	}
	if _, err := w.c.List(ctx, client.ListOptions{Status: "nope"}); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("List of status nope: %v, want ErrInvalid", err)
	}

	// A run that finished: cancel and resume conflict.
	w.serve()
	if r, err := w.c.Wait(ctx, "e-1"); err != nil || r.Status != runnerd.StatusSucceeded {
		t.Fatalf("Wait: %v, %v\n%s", r, err, w.logs.String())
	}
	if _, err := w.c.Cancel(ctx, "e-1"); !errors.Is(err, client.ErrConflict) {
		t.Errorf("Cancel of a succeeded run: %v, want ErrConflict", err)
	}

	// A server that is not there.
	_, err = client.Dial(ctx, client.Config{NATSURL: "nats://127.0.0.1:1",
		Mongo: store.Config{URI: w.stack.MongoURI + "&serverSelectionTimeoutMS=500", Timeout: time.Second}})
	if err == nil || !errors.Is(err, client.ErrUnreachable) {
		t.Errorf("Dial of a NATS that is not there: %v, want ErrUnreachable", err)
	}
}

// TestPauseResumeCancel: a paused run's Wait ends paused; Resume queues it
// with answers; Cancel of a paused run cancels it at once and its notice
// ends a Wait.
func TestPauseResumeCancel(t *testing.T) {
	w := newWorld(t)
	w.serve()
	ctx := ctxT(t)
	run := w.submit("p-1", approvalYAML, nil)
	r, err := w.c.Wait(ctx, run.ID)
	if err != nil || r.Status != runnerd.StatusPaused {
		t.Fatalf("Wait: %v %v, want paused\n%s", r, err, w.logs.String())
	}
	q, err := w.c.Resume(ctx, run.ID, map[string]map[string]string{"approve": {"ok": "yes"}})
	if err != nil || q.Again {
		t.Fatalf("Resume: %+v %v", q, err)
	}
	if _, err := w.c.Resume(ctx, run.ID, map[string]map[string]string{"approve": {"ok": "no"}}); !errors.Is(err, client.ErrConflict) && err != nil {
		t.Errorf("Resume with other answers of a queued run: %v, want ErrConflict", err)
	}
	if r, err = w.c.Wait(ctx, run.ID); err != nil || r.Status != runnerd.StatusSucceeded {
		t.Fatalf("Wait after resume: %v %v", r, err)
	}
	rc, err := w.c.Logs(ctx, run.ID, "deploy")
	if err != nil {
		t.Fatalf("Logs: %v", err)
	}
	text, _ := io.ReadAll(rc)
	rc.Close()
	if !has(string(text), "deploying") {
		t.Errorf("log of deploy = %q", text)
	}
	if _, err := w.c.Logs(ctx, run.ID, "nope"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Logs of no step: %v, want ErrNotFound", err)
	}

	// Paused, then cancelled by the client: a Wait begun before ends.
	run2 := w.submit("p-2", approvalYAML, nil)
	if r, err := w.c.Wait(ctx, run2.ID); err != nil || r.Status != runnerd.StatusPaused {
		t.Fatalf("Wait: %v %v, want paused", r, err)
	}
	got, err := w.c.Cancel(ctx, run2.ID)
	if err != nil || got != client.CancelledNow {
		t.Fatalf("Cancel of a paused run: %v %v, want CancelledNow", got, err)
	}
	if got, err := w.c.Cancel(ctx, run2.ID); err != nil || got != client.CancelledAlready {
		t.Errorf("Cancel again: %v %v, want CancelledAlready", got, err)
	}
	q, err = w.c.Retry(ctx, run2.ID, client.RetryOptions{})
	if err != nil {
		t.Fatalf("Retry of a cancelled run: %v", err)
	}
	if q.Run.Status != runnerd.StatusQueued {
		t.Errorf("retried run is %s, want queued", q.Run.Status)
	}
}

// TestWaitPollsWhenNoNoticeComes: a run settled without a notice (a runner
// that died between its write and its publish) is still seen, by the slow
// poll.
func TestWaitPollsWhenNoNoticeComes(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t)
	c, err := client.New(client.Options{Store: w.st, Queue: w.q, PollInterval: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	run := w.submit("silent-1", helloYAML, nil)
	done := make(chan error, 1)
	go func() {
		r, err := c.Wait(ctx, run.ID)
		if err == nil && r.Status != runnerd.StatusFailed {
			err = errors.New("settled as " + string(r.Status))
		}
		done <- err
	}()
	// Played runner: claimed and failed in the store, no notice sent.
	if _, err := w.st.Claim(ctx, run.ID, "silent-runner", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := w.st.Finish(ctx, run.ID, 1, runnerd.StatusFailed, runnerd.ReasonStepFailed, nil); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Wait: %v", err)
	}
}

// ListPage pages through runs newest first, by status and tenant; List is
// its first page.
func TestListPages(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t)
	for _, id := range []string{"lp-1", "lp-2", "lp-3"} {
		w.submit(id, helloYAML, nil)
	}
	var ids []string
	o := client.ListOptions{Status: runnerd.StatusQueued, Limit: 2}
	for range 3 {
		p, err := w.c.ListPage(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range p.Runs {
			ids = append(ids, r.ID)
		}
		if p.Next == "" {
			break
		}
		o.Cursor = p.Next
	}
	if fmt.Sprint(ids) != "[lp-3 lp-2 lp-1]" {
		t.Errorf("pages of 2 gave %v, want lp-3 lp-2 lp-1", ids)
	}
	if runs, err := w.c.List(ctx, client.ListOptions{Limit: 2}); err != nil || len(runs) != 2 || runs[0].ID != "lp-3" {
		t.Errorf("List limit 2: %v, %v", runs, err)
	}
	if p, err := w.c.ListPage(ctx, client.ListOptions{TenantID: "nobody"}); err != nil || len(p.Runs) != 0 {
		t.Errorf("another tenant's page: %v, %v", p, err)
	}
	if _, err := w.c.ListPage(ctx, client.ListOptions{Status: "nope"}); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("ListPage of status nope: %v, want ErrInvalid", err)
	}
}
