package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/devstack"
	"github.com/runnerd/runnerd/devstack/devstacktest"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
)

// Helpers shared by the client subcommands' tests. Every test gets its own
// embedded servers; the commands reach them through the RUNNERD_* variables,
// as a user's shell would.

// testEnv is a stack the commands are pointed at, and connections the test
// uses to look at (or play the runner on) what the commands did.
type testEnv struct {
	t     *testing.T
	c     *conns
	stack *devstack.Stack
	side  string // a directory the steps of startServe's runner may write (--sandbox-rw)
}

func startEnv(t *testing.T) *testEnv {
	t.Helper()
	return startEnvWith(t, queue.DefaultConfig())
}

// startEnvWith sets the queue up with qcfg, as a runnerd serve of a fleet
// with those settings would.
func startEnvWith(t *testing.T, qcfg queue.Config) *testEnv {
	t.Helper()
	s := devstacktest.Start(t)
	for k, v := range map[string]string{
		"RUNNERD_NATS_URL":      s.NATSURL,
		"RUNNERD_MONGO_URI":     s.MongoURI,
		"RUNNERD_S3_ENDPOINT":   s.S3Endpoint,
		"RUNNERD_S3_BUCKET":     s.S3Bucket,
		"RUNNERD_S3_REGION":     s.S3Region,
		"RUNNERD_S3_ACCESS_KEY": s.S3AccessKey,
		"RUNNERD_S3_SECRET_KEY": s.S3SecretKey,
		"RUNNERD_TENANT":        "acme",
	} {
		t.Setenv(k, v)
	}
	cfg := clientConfig{
		NATSURL: s.NATSURL, MongoURI: s.MongoURI, MongoDB: store.DefaultDatabase,
		S3Endpoint: s.S3Endpoint, S3Bucket: s.S3Bucket, S3Region: s.S3Region,
		S3AccessKey: s.S3AccessKey, S3SecretKey: s.S3SecretKey, S3PathStyle: true,
		Tenant: "acme", Timeout: 10 * time.Second,
	}
	c, err := connectServe(context.Background(), cfg, qcfg, "test")
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(c.Close) // before the stack stops
	return &testEnv{t: t, c: c, stack: s}
}

type result struct {
	stdout, stderr string
	code           int
}

// run calls Main as the binary would be called.
func (e *testEnv) run(args ...string) result {
	e.t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// mustRun runs a command that must exit with want.
func (e *testEnv) mustRun(want int, args ...string) result {
	e.t.Helper()
	return wantCode(e.t, e.run(args...), want, args)
}

// wantCode fails the test unless r, the result of `runnerd args`, exited
// with want.
func wantCode(t testing.TB, r result, want int, args []string) result {
	t.Helper()
	if r.code != want {
		t.Fatalf("runnerd %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, want, r.stdout, r.stderr)
	}
	return r
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// writeFile writes a workflow file into the test's directory.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fetch takes the messages waiting on the stream, as a runner would, and
// acks them so the next fetch sees only new ones.
func (e *testEnv) fetch(wait time.Duration) []*queue.Delivery {
	e.t.Helper()
	ds, err := e.c.q.Fetch(ctxT(e.t), 10, wait)
	if err != nil {
		e.t.Fatalf("Fetch: %v", err)
	}
	for _, d := range ds {
		if err := d.Ack(ctxT(e.t)); err != nil {
			e.t.Fatalf("Ack: %v", err)
		}
	}
	return ds
}

// fetchOne expects exactly one message and decodes it.
func (e *testEnv) fetchOne() (*queue.Delivery, *queue.Message) {
	e.t.Helper()
	ds := e.fetch(5 * time.Second)
	if len(ds) != 1 {
		e.t.Fatalf("got %d messages on the stream, want 1", len(ds))
	}
	m, err := queue.Decode(ds[0].Data())
	if err != nil {
		e.t.Fatalf("Decode: %v\n%s", err, ds[0].Data())
	}
	return ds[0], m
}

func (e *testEnv) expectNoMessage() {
	e.t.Helper()
	if ds := e.fetch(300 * time.Millisecond); len(ds) != 0 {
		e.t.Fatalf("got %d messages on the stream (first: run %s), want none", len(ds), ds[0].RunID())
	}
}

func (e *testEnv) get(id string) *store.Run {
	e.t.Helper()
	r, err := e.c.st.Get(ctxT(e.t), id)
	if err != nil {
		e.t.Fatalf("Get %s: %v", id, err)
	}
	return r
}

// claim plays the runner: it takes the queued run with the given epoch.
func (e *testEnv) claim(id string, epoch uint64) {
	e.t.Helper()
	if _, err := e.c.st.Claim(ctxT(e.t), id, "test-runner", epoch); err != nil {
		e.t.Fatalf("Claim %s: %v", id, err)
	}
}

func (e *testEnv) appendEvents(id string, epoch uint64, events ...runnerd.Event) {
	e.t.Helper()
	for i := range events {
		if events[i].Time.IsZero() {
			events[i].Time = time.Now().UTC()
		}
	}
	seq, err := e.c.st.AppendEvents(ctxT(e.t), id, epoch, events)
	if err != nil {
		e.t.Fatalf("AppendEvents %s: %v", id, err)
	}
	// As a runner does after each batch: followers read on it.
	if err := e.c.q.PublishProgress(id, seq); err != nil {
		e.t.Fatalf("PublishProgress %s: %v", id, err)
	}
}

// finish plays the runner's conclusion: the status written, then the
// notice published.
func (e *testEnv) finish(id string, epoch uint64, status runnerd.Status, reason runnerd.Reason, steps runnerd.StepStates) {
	e.t.Helper()
	if _, err := e.c.st.Finish(ctxT(e.t), id, epoch, status, reason, steps); err != nil {
		e.t.Fatalf("finish %s: %v", id, err)
	}
	if err := e.c.q.PublishNotice(runnerd.Notice{RunID: id, Status: string(status), Reason: string(reason), Attempt: 1}); err != nil {
		e.t.Fatalf("PublishNotice %s: %v", id, err)
	}
}

// pause makes a queued run paused on its human step "approve", as a runner
// would: claim, save the waiting step, set paused.
func (e *testEnv) pause(id string, epoch uint64) {
	e.t.Helper()
	e.claim(id, epoch)
	steps := runnerd.StepStates{
		"build":   {Status: runnerd.StepSucceeded, Reason: runnerd.StepReasonCompleted, Attempts: 1},
		"approve": {Status: runnerd.StepWaiting, Prompt: "ship it?"},
	}
	e.finish(id, epoch, runnerd.StatusPaused, runnerd.ReasonPaused, steps)
}

const helloYAML = `name: hello
vars: {who: world}
steps:
  - id: greet
    run: ["echo", "hello, ${{ vars.who }}"]
  - id: bye
    needs: [greet]
    shell: echo bye
`

const approvalYAML = `name: approval
steps:
  - id: build
    shell: echo built
  - id: approve
    kind: human
    needs: [build]
    prompt: "ship it?"
  - id: deploy
    needs: [approve]
    if: ${{ steps.approve.answers.ok == 'yes' }}
    shell: echo deploying
`

// submitted submits a workflow with --id, takes its message off the stream
// and returns the id.
func (e *testEnv) submitted(id, content string) string {
	e.t.Helper()
	e.mustRun(cli.ExitOK, "submit", writeFile(e.t, "wf.yaml", content), "--id", id)
	e.fetchOne()
	return id
}
