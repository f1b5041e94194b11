package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/client"
	"github.com/runnerd/runnerd/devstack/devstacktest"
	"github.com/runnerd/runnerd/internal/storetest"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
	"github.com/runnerd/runnerd/workflow"
)

// env is one test's world: its own devstack, the store, queue and bucket on
// it, and the API served on a loopback port.
type env struct {
	t     *testing.T
	st    *store.Store
	q     *queue.Queue
	blobs *blob.Store
	srv   *httptest.Server
}

func newEnv(t *testing.T) *env {
	t.Helper()
	stack := devstacktest.Start(t)
	ctx := context.Background()
	_, js := devstacktest.JetStream(t, stack.NATSURL)
	var err error
	e := &env{t: t}
	if e.q, err = queue.Setup(ctx, js, queue.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	e.st = storetest.Open(t, stack.MongoURI)
	e.blobs, err = blob.New(ctx, blob.Config{
		Endpoint: stack.S3Endpoint, Region: stack.S3Region, Bucket: stack.S3Bucket,
		AccessKey: stack.S3AccessKey, SecretKey: stack.S3SecretKey, PathStyle: true, CreateBucket: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	// No slow poll within a test's time: a stream that shows a line shows
	// it because the notice of its batch came.
	cl, err := client.New(client.Options{Store: e.st, Queue: e.q, PollInterval: time.Hour,
		Blob: func(context.Context) (*blob.Store, error) { return e.blobs, nil }})
	if err != nil {
		t.Fatal(err)
	}
	api, err := New(Config{Client: cl, Blobs: e.blobs, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(Protect(api, Auth{}))
	t.Cleanup(e.srv.Close)
	return e
}

const approvalYAML = `name: approval
steps:
  - id: build
    shell: echo built
    artifacts: [out/report.txt]
  - id: approve
    kind: human
    needs: [build]
    prompt: "Deploy?"
  - id: deploy
    needs: [approve]
    shell: echo deploying
`

// create stores a queued run of approvalYAML.
func (e *env) create(id, tenant string) *store.Run {
	e.t.Helper()
	w, err := workflow.Parse([]byte(approvalYAML), "approval.yaml")
	if err != nil {
		e.t.Fatal(err)
	}
	r := &store.Run{ID: id, TenantID: tenant, Workflow: w}
	if err := e.st.Create(context.Background(), r); err != nil {
		e.t.Fatal(err)
	}
	return r
}

// claim makes the run running under epoch 1, as a runner would.
func (e *env) claim(id string) *store.Run {
	e.t.Helper()
	r, err := e.st.Claim(context.Background(), id, "runner-test", 1)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// record appends events (and the step state they fold into).
func (e *env) record(id string, first int64, steps runnerd.StepStates, events ...runnerd.Event) int64 {
	e.t.Helper()
	for _, ev := range events {
		steps.Apply(ev)
	}
	last, err := e.st.Record(context.Background(), id, 1, store.Batch{First: first, Events: events, Steps: steps})
	if err != nil {
		e.t.Fatal(err)
	}
	// As a runner does after each batch.
	if err := e.q.PublishProgress(id, last); err != nil {
		e.t.Fatal(err)
	}
	return last
}

// finish writes the run's outcome and its notice, as a runner does.
func (e *env) finish(id string, to runnerd.Status, reason runnerd.Reason, steps runnerd.StepStates) {
	e.t.Helper()
	if _, err := e.st.Finish(context.Background(), id, 1, to, reason, steps); err != nil {
		e.t.Fatal(err)
	}
	if err := e.q.PublishNotice(runnerd.Notice{RunID: id, Status: string(to), Reason: string(reason), Attempt: 1}); err != nil {
		e.t.Fatal(err)
	}
}

// pause runs the build step and pauses on approve, with build's log and
// artifact in S3.
func (e *env) pause(id string) {
	e.t.Helper()
	ctx := context.Background()
	e.claim(id)
	now := time.Now().UTC()
	steps := runnerd.StepStates{}
	e.record(id, 1, steps,
		runnerd.Event{Type: runnerd.EventRunStarted, Time: now},
		runnerd.Event{Type: runnerd.EventStepStarted, Time: now, Step: "build", Attempt: 1},
		runnerd.Event{Type: runnerd.EventLog, Time: now, Step: "build", Stream: "stdout", Text: "built\n"},
		runnerd.Event{Type: runnerd.EventArtifact, Time: now, Step: "build", Path: "out/report.txt"},
		runnerd.Event{Type: runnerd.EventStepFinished, Time: now, Step: "build", Status: string(runnerd.StepSucceeded), Reason: string(runnerd.StepReasonCompleted), Attempt: 1},
		runnerd.Event{Type: runnerd.EventPaused, Time: now, Step: "approve", Prompt: "Deploy?"},
	)
	steps["build"].LogKey = blob.StepLogKey(id, 1, "build")
	for key, body := range map[string]string{
		blob.StepLogKey(id, 1, "build"):                 "[runexec: attempt 1]\nbuilt\n",
		blob.ArtifactKey(id, "build", "out/report.txt"): "the report\n",
	} {
		if _, err := e.blobs.Put(ctx, key, strings.NewReader(body)); err != nil {
			e.t.Fatal(err)
		}
	}
	e.finish(id, runnerd.StatusPaused, runnerd.ReasonPaused, steps)
}

// do makes a request and decodes a JSON answer into out (when not nil).
func (e *env) do(method, path, body string, out any) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	if out != nil && res.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			e.t.Fatalf("%s %s: decode %q: %v", method, path, data, err)
		}
	}
	return res.StatusCode, string(data)
}

func errorOf(t *testing.T, body string) string {
	t.Helper()
	var ae apiError
	if err := json.Unmarshal([]byte(body), &ae); err != nil || ae.Error == "" {
		t.Fatalf("not an API error: %q", body)
	}
	return ae.Error
}

// TestRunsList: newest first, filtered by status and tenant, in pages
// whose cursors walk the whole list once; bad filters are refused naming
// what is wrong.
func TestRunsList(t *testing.T) {
	e := newEnv(t)
	var ids []string
	for i := range 7 {
		tenant := "acme"
		if i%3 == 2 {
			tenant = "other"
		}
		id := fmt.Sprintf("run-%02d", i)
		e.create(id, tenant)
		ids = append(ids, id)
		time.Sleep(2 * time.Millisecond) // distinct creation times
	}
	e.claim("run-03")

	var all RunPage
	if code, body := e.do("GET", "/api/v1/runs", "", &all); code != 200 {
		t.Fatalf("list: %d %s", code, body)
	}
	if len(all.Runs) != 7 || all.Next != "" {
		t.Fatalf("list: %d runs, next %q; want 7 and no next page", len(all.Runs), all.Next)
	}
	for i, r := range all.Runs {
		if want := ids[len(ids)-1-i]; r.ID != want {
			t.Errorf("list[%d] = %s, want %s (newest first)", i, r.ID, want)
		}
		if r.Workflow != "approval" {
			t.Errorf("list[%d].workflow = %q", i, r.Workflow)
		}
	}

	var seen []string
	path := "/api/v1/runs?limit=2&tenant=acme"
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		var p RunPage
		if code, body := e.do("GET", path, "", &p); code != 200 {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		for _, r := range p.Runs {
			if r.TenantID != "acme" {
				t.Errorf("tenant filter let %s of %s through", r.ID, r.TenantID)
			}
			seen = append(seen, r.ID)
		}
		if p.Next == "" {
			break
		}
		path = "/api/v1/runs?limit=2&tenant=acme&cursor=" + p.Next
	}
	if want := "run-06 run-04 run-03 run-01 run-00"; strings.Join(seen, " ") != want {
		t.Errorf("pages of acme's runs: %v, want %s", seen, want)
	}

	var running RunPage
	e.do("GET", "/api/v1/runs?status=running", "", &running)
	if len(running.Runs) != 1 || running.Runs[0].ID != "run-03" || running.Runs[0].Status != runnerd.StatusRunning {
		t.Errorf("status=running: %+v", running.Runs)
	}

	for q, want := range map[string]string{
		"status=done": `status "done": want one of [queued running paused succeeded failed cancelled]`,
		"limit=0":     `limit "0": want 1 to 500`,
		"cursor=zz":   `cursor "zz": not a cursor this API returned`,
	} {
		code, body := e.do("GET", "/api/v1/runs?"+q, "", nil)
		if code != http.StatusBadRequest || errorOf(t, body) != want {
			t.Errorf("?%s: %d %s, want 400 %q", q, code, body, want)
		}
	}
}

// TestRunPage: one run with every workflow step (pending when not
// started), its events, the stored log of a step and its artifact; a
// missing run or step is a 404 in the CLI's words.
func TestRunPage(t *testing.T) {
	e := newEnv(t)
	e.create("r1", "acme")
	e.pause("r1")

	var doc struct {
		ID        string             `json:"id"`
		Status    runnerd.Status     `json:"status"`
		Reason    runnerd.Reason     `json:"reason"`
		Steps     runnerd.StepStates `json:"steps"`
		Artifacts []Artifact         `json:"artifacts"`
		Workflow  *workflow.Workflow `json:"workflow"`
	}
	if code, body := e.do("GET", "/api/v1/runs/r1", "", &doc); code != 200 {
		t.Fatalf("get: %d %s", code, body)
	}
	if doc.Status != runnerd.StatusPaused || doc.Reason != runnerd.ReasonPaused {
		t.Errorf("status %s (%s)", doc.Status, doc.Reason)
	}
	for step, want := range map[string]runnerd.StepStatus{"build": runnerd.StepSucceeded, "approve": runnerd.StepWaiting, "deploy": runnerd.StepPending} {
		if st := doc.Steps[step]; st == nil || st.Status != want {
			t.Errorf("step %s: %+v, want %s", step, st, want)
		}
	}
	if len(doc.Workflow.Steps) != 3 || doc.Workflow.Steps[1].Needs[0] != "build" {
		t.Errorf("workflow: %+v", doc.Workflow)
	}
	if len(doc.Artifacts) != 1 || doc.Artifacts[0].URL != "/api/v1/runs/r1/artifacts/build/out/report.txt" {
		t.Fatalf("artifacts: %+v", doc.Artifacts)
	}

	var page EventPage
	e.do("GET", "/api/v1/runs/r1/events?after=2&limit=2", "", &page)
	if len(page.Events) != 2 || page.Events[0].Seq != 3 || page.Events[0].Type != runnerd.EventLog || !page.More {
		t.Errorf("events after 2, limit 2: %+v", page)
	}

	if code, body := e.do("GET", "/api/v1/runs/r1/steps/build/log", "", nil); code != 200 || body != "[runexec: attempt 1]\nbuilt\n" {
		t.Errorf("build's log: %d %q", code, body)
	}
	if code, body := e.do("GET", doc.Artifacts[0].URL, "", nil); code != 200 || body != "the report\n" {
		t.Errorf("artifact: %d %q", code, body)
	}
	for path, want := range map[string]string{
		"/api/v1/runs/nope":                              `no run "nope" (runnerd list shows the recent ones)`,
		"/api/v1/runs/r1/steps/approve/log":              "step approve of run r1 has no log yet (step waiting, run paused)",
		"/api/v1/runs/r1/steps/zz/log":                   `run r1 has no step "zz"`,
		"/api/v1/runs/r1/artifacts/build/etc/passwd":     `step build of run r1 has no artifact "etc/passwd" (artifacts: [out/report.txt])`,
		"/api/v1/runs/r1/artifacts/build/../../x/y.json": "", // cleaned by the router: some 404
	} {
		code, body := e.do("GET", path, "", nil)
		if code != http.StatusNotFound {
			t.Errorf("GET %s: %d %s, want 404", path, code, body)
			continue
		}
		if want != "" && errorOf(t, body) != want {
			t.Errorf("GET %s: %q, want %q", path, errorOf(t, body), want)
		}
	}
}

// sseMsg is one server-sent event.
type sseMsg struct {
	id, event, data string
}

func readSSE(t *testing.T, r *bufio.Reader) (sseMsg, error) {
	t.Helper()
	var m sseMsg
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return m, err
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "":
			if m.event != "" {
				return m, nil
			}
		case strings.HasPrefix(line, "id: "):
			m.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			m.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			m.data = line[6:]
		}
	}
}

// TestEventStream: the stream sends the run, then each event as it is
// recorded (log lines of a running step arrive while it runs, on the
// notice of their batch: the client's slow poll is an hour), the run's
// changes, and ends with settled when the run pauses; a reconnect with
// Last-Event-ID gets only what came after.
func TestEventStream(t *testing.T) {
	e := newEnv(t)
	e.create("live", "acme")
	e.claim("live")
	steps := runnerd.StepStates{}
	now := time.Now().UTC()
	seq := e.record("live", 1, steps,
		runnerd.Event{Type: runnerd.EventRunStarted, Time: now},
		runnerd.Event{Type: runnerd.EventStepStarted, Time: now, Step: "build", Attempt: 1})

	// The deadline keeps a broken stream from hanging the test.
	sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sreq, _ := http.NewRequestWithContext(sctx, "GET", e.srv.URL+"/api/v1/runs/live/events/stream", nil)
	res, err := http.DefaultClient.Do(sreq)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	rd := bufio.NewReader(res.Body)
	next := func() sseMsg {
		t.Helper()
		m, err := readSSE(t, rd)
		if err != nil {
			t.Fatalf("read the stream: %v", err)
		}
		return m
	}
	if m := next(); m.event != "run" || !strings.Contains(m.data, `"status":"running"`) {
		t.Fatalf("first message: %+v", m)
	}
	for want := int64(1); want <= 2; want++ {
		if m := next(); m.event != "event" || m.id != fmt.Sprint(want) {
			t.Fatalf("message: %+v, want event %d", m, want)
		}
	}
	// Each line recorded now arrives on the open stream, one at a time.
	for i := 1; i <= 3; i++ {
		line := fmt.Sprintf("line %d\n", i)
		seq = e.record("live", seq+1, steps, runnerd.Event{Type: runnerd.EventLog, Time: time.Now().UTC(), Step: "build", Text: line})
		var m sseMsg
		for m = next(); m.event == "run"; m = next() {
		}
		var ev store.StoredEvent
		if err := json.Unmarshal([]byte(m.data), &ev); err != nil {
			t.Fatal(err)
		}
		if m.event != "event" || ev.Seq != seq || ev.Text != line {
			t.Fatalf("after recording %q: %+v", line, m)
		}
	}
	e.record("live", seq+1, steps,
		runnerd.Event{Type: runnerd.EventStepFinished, Time: time.Now().UTC(), Step: "build", Status: "succeeded", Attempt: 1},
		runnerd.Event{Type: runnerd.EventPaused, Time: time.Now().UTC(), Step: "approve", Prompt: "Deploy?"})
	e.finish("live", runnerd.StatusPaused, runnerd.ReasonPaused, steps)
	var got []string
	for {
		m := next()
		if m.event != "run" {
			got = append(got, m.event+":"+m.id)
		}
		if m.event == "settled" {
			if !strings.Contains(m.data, `"status":"paused"`) || !strings.Contains(m.data, `"approve":{"status":"waiting"`) {
				t.Errorf("settled: %s", m.data)
			}
			break
		}
	}
	if joined := strings.Join(got, " "); joined != "event:6 event:7 settled:" {
		t.Errorf("after the last line: %s, want events 6 and 7 before settled", joined)
	}
	if _, err := readSSE(t, rd); err != io.EOF {
		t.Errorf("the stream goes on after settled: %v", err)
	}

	req, _ := http.NewRequestWithContext(sctx, "GET", e.srv.URL+"/api/v1/runs/live/events/stream", nil)
	req.Header.Set("Last-Event-ID", "6")
	res2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res2.Body.Close()
	all, _ := io.ReadAll(res2.Body)
	if s := string(all); strings.Contains(s, "id: 6\n") || !strings.Contains(s, "id: 7\n") || !strings.Contains(s, "event: settled") {
		t.Errorf("reconnect after 6:\n%s", s)
	}
}

// TestActions: cancel, resume and retry change the store as the CLI's
// commands do, publish what they must, and refuse what the CLI refuses in
// its words.
func TestActions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var res ActionResult

	// A paused run answered: queued with the answers, its message on the
	// stream with them.
	e.create("p", "acme")
	e.pause("p")
	code, body := e.do("POST", "/api/v1/runs/p/resume", `{"answers":{"deploy":{"ok":"yes"}}}`, nil)
	if code != http.StatusBadRequest || errorOf(t, body) != `--answer: "deploy" is not a human step of run p (human steps: approve)` {
		t.Errorf("resume with a non-human step: %d %s", code, body)
	}
	if code, body := e.do("POST", "/api/v1/runs/p/resume", `{"answers":{"approve":{"ok":"yes"}}}`, &res); code != 200 || res.Message != "run p resumed" {
		t.Fatalf("resume: %d %s", code, body)
	}
	r, err := e.st.Get(ctx, "p")
	if err != nil || r.Status != runnerd.StatusQueued || r.Answers["approve"]["ok"] != "yes" || res.Run.Status != runnerd.StatusQueued {
		t.Fatalf("after resume: %+v %v; answer %+v", r, err, res.Run)
	}
	d := fetchOne(t, e.q)
	msg, err := d.Decode()
	if err != nil || msg.RunID != "p" || msg.Resume == nil || msg.Resume.Answers["approve"]["ok"] != "yes" {
		t.Fatalf("published: %+v %v", msg, err)
	}
	_ = d.Ack(ctx)
	code, body = e.do("POST", "/api/v1/runs/p/resume", `{"answers":{"approve":{"ok":"no"}}}`, nil)
	if code != http.StatusConflict || errorOf(t, body) != "run p is queued, not paused: only a paused run can be resumed" {
		t.Errorf("resume of a queued run: %d %s", code, body)
	}

	// Cancel: a queued or paused run is cancelled at once; a finished one
	// is refused.
	if code, body := e.do("POST", "/api/v1/runs/p/cancel", "", &res); code != 200 || res.Message != "run p cancelled (it was queued)" || res.Run.Status != runnerd.StatusCancelled {
		t.Errorf("cancel queued: %d %s", code, body)
	}
	if r, _ := e.st.Get(ctx, "p"); !r.CancelRequested || r.Status != runnerd.StatusCancelled || r.Reason != runnerd.ReasonCancelled {
		t.Errorf("cancel of a queued run: cancel_requested %v, %s/%s", r.CancelRequested, r.Status, r.Reason)
	}
	e.create("q", "acme")
	e.pause("q")
	if code, body := e.do("POST", "/api/v1/runs/q/cancel", "", &res); code != 200 || res.Message != "run q cancelled (it was paused)" || res.Run.Status != runnerd.StatusCancelled {
		t.Errorf("cancel paused: %d %s", code, body)
	}
	if code, body := e.do("POST", "/api/v1/runs/q/cancel", "", &res); code != 200 || res.Message != "run q was already cancelled" {
		t.Errorf("cancel again: %d %s", code, body)
	}
	// As runnerd status shows it: nothing waits in a cancelled run.
	var doc RunDoc
	if code, body := e.do("GET", "/api/v1/runs/q", "", &doc); code != 200 || doc.Steps["approve"] == nil ||
		doc.Steps["approve"].Status != runnerd.StepCancelled || doc.CreatedAt.Location() != time.UTC {
		t.Errorf("the cancelled paused run's document: %d %s", code, body)
	}
	e.create("ok", "acme")
	e.claim("ok")
	e.finish("ok", runnerd.StatusSucceeded, runnerd.ReasonCompleted, nil)
	code, body = e.do("POST", "/api/v1/runs/ok/cancel", "", nil)
	if code != http.StatusConflict || errorOf(t, body) != "run ok already finished: succeeded (completed)" {
		t.Errorf("cancel succeeded: %d %s", code, body)
	}

	// Retry: a cancelled run goes back to the queue with its history; a
	// succeeded one is refused.
	if code, body := e.do("POST", "/api/v1/runs/q/retry", `{"from_scratch":false}`, &res); code != 200 || res.Message != "run q queued again" {
		t.Fatalf("retry: %d %s", code, body)
	}
	if r, _ := e.st.Get(ctx, "q"); r.Status != runnerd.StatusQueued || len(r.History) != 1 || r.History[0].Status != runnerd.StatusCancelled {
		t.Errorf("after retry: %s, history %+v", r.Status, r.History)
	}
	if d := fetchOne(t, e.q); d.RunID() != "q" {
		t.Errorf("retry published run %s", d.RunID())
	}
	code, body = e.do("POST", "/api/v1/runs/ok/retry", "", nil)
	if code != http.StatusConflict || errorOf(t, body) != "run ok is succeeded (completed): only a failed or cancelled run can be retried" {
		t.Errorf("retry succeeded: %d %s", code, body)
	}
	code, body = e.do("POST", "/api/v1/runs/nope/cancel", "", nil)
	if code != http.StatusNotFound || errorOf(t, body) != `no run "nope" (runnerd list shows the recent ones)` {
		t.Errorf("cancel missing: %d %s", code, body)
	}
	code, body = e.do("POST", "/api/v1/runs/q/retry", `{"scratch":true}`, nil)
	if code != http.StatusBadRequest || !strings.Contains(errorOf(t, body), `unknown field "scratch"`) {
		t.Errorf("retry with an unknown field: %d %s", code, body)
	}
}

func fetchOne(t *testing.T, q *queue.Queue) *queue.Delivery {
	t.Helper()
	ds, err := q.Fetch(context.Background(), 1, 5*time.Second)
	if err != nil || len(ds) != 1 {
		t.Fatalf("fetch: %d messages, %v", len(ds), err)
	}
	return ds[0]
}

// TestRunPageSaysWhyItWaits: the run endpoint says what status --json says
// about waiting: a queued run's place in the queue for a runner slot, and a
// claimed run's wait for a server.
func TestRunPageSaysWhyItWaits(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r := e.create("queued-1", "acme")
	if err := e.q.Publish(ctx, &queue.Message{V: 1, RunID: r.ID, TenantID: r.TenantID, Workflow: r.Workflow}, 0, nil); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Status  runnerd.Status `json:"status"`
		Waiting map[string]any `json:"waiting"`
	}
	if code, body := e.do("GET", "/api/v1/runs/queued-1", "", &doc); code != 200 {
		t.Fatalf("get: %d %s", code, body)
	}
	if doc.Status != runnerd.StatusQueued || doc.Waiting["kind"] != client.WaitRunnerSlot || doc.Waiting["position"] != 1.0 {
		t.Errorf("queued run: status %s, waiting %v; want queued, waiting for a runner slot at position 1", doc.Status, doc.Waiting)
	}

	e.create("claimed-1", "acme")
	e.claim("claimed-1")
	if err := e.st.SetWaiting(ctx, "claimed-1", 1, &store.Wait{On: "mongodb", Since: time.Now(), Error: "no reachable servers"}); err != nil {
		t.Fatal(err)
	}
	doc.Waiting = nil
	if code, body := e.do("GET", "/api/v1/runs/claimed-1", "", &doc); code != 200 {
		t.Fatalf("get: %d %s", code, body)
	}
	if doc.Status != runnerd.StatusRunning || doc.Waiting["on"] != "mongodb" || doc.Waiting["error"] != "no reachable servers" {
		t.Errorf("claimed run: status %s, waiting %v; want running, waiting on mongodb", doc.Status, doc.Waiting)
	}
}
