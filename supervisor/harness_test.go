package supervisor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/contain"
	"github.com/runnerd/runnerd/devstack"
	"github.com/runnerd/runnerd/devstack/devstacktest"
	"github.com/runnerd/runnerd/internal/storetest"
	"github.com/runnerd/runnerd/internal/testbin"
	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
	"github.com/runnerd/runnerd/workflow"
)

// TestMain uses the runexec that `make test` built, or builds one.
func TestMain(m *testing.M) {
	testbin.Main(m, "runexec")
}

// env is one test's world: real servers, a queue, the stores and
// supervisors started on them.
type env struct {
	t     *testing.T
	stack *devstack.Stack
	nc    *nats.Conn
	js    jetstream.JetStream
	q     *queue.Queue
	qcfg  queue.Config
	st    *store.Store
	blobs *blob.Store
	logs  *testutil.SyncBuffer
	side  string // a directory outside every run dir, for steps' side effects
	runs  string // the run dir root
}

func newEnv(t *testing.T, tweak func(*queue.Config)) *env {
	t.Helper()
	e := &env{t: t, stack: devstacktest.Start(t), logs: &testutil.SyncBuffer{}, side: t.TempDir(), runs: t.TempDir()}
	ctx := context.Background()
	var err error
	e.nc, e.js = devstacktest.JetStream(t, e.stack.NATSURL)
	e.qcfg = queue.DefaultConfig()
	e.qcfg.LeaseTTL = 3 * time.Second
	e.qcfg.Backoff = []time.Duration{100 * time.Millisecond}
	if tweak != nil {
		tweak(&e.qcfg)
	}
	if e.q, err = queue.Setup(ctx, e.js, e.qcfg); err != nil {
		t.Fatal(err)
	}
	e.st = storetest.Open(t, e.stack.MongoURI) // RUNNERD_TEST_MONGO_URI and RUNNERD_TEST_WRITE_PATH apply
	e.blobs, err = blob.New(ctx, blob.Config{
		Endpoint: e.stack.S3Endpoint, Region: e.stack.S3Region, Bucket: e.stack.S3Bucket,
		AccessKey: e.stack.S3AccessKey, SecretKey: e.stack.S3SecretKey, PathStyle: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// running is one supervisor serving in the background.
type running struct {
	sup    *Supervisor
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned, with err set
	err    error
}

// stop is the first SIGTERM: drain and wait for Run to return.
func (r *running) stop() error {
	r.cancel()
	<-r.done
	return r.err
}

func (e *env) config(id string) Config {
	return Config{
		RunnerID:      testutil.UniqueID(id),
		Concurrency:   2,
		RunDirRoot:    e.runs,
		RunexecPath:   testbin.MustPath(e.t, "runexec"),
		ShutdownGrace: 10 * time.Second,
		KillGrace:     time.Second,
		PingInterval:  300 * time.Millisecond,
		PingTimeout:   time.Second,
		FetchWait:     500 * time.Millisecond,
		RetryDelay:    200 * time.Millisecond,
		MaxAttempts:   3,
		MemoryLimit:   256 << 20,
		PidsLimit:     256,
		Logger:        zerolog.New(e.logs).With().Timestamp().Logger(),
		// Steps record side effects outside their run dir.
		Sandbox: contain.Options{RW: []string{e.side}},
	}
}

func (e *env) serve(cfg Config) *running {
	e.t.Helper()
	sup, err := New(cfg, e.q, e.st, e.blobs)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.run(sup, cfg)
}

// run serves sup (made with cfg) in the background; at the test's end it
// stops it at once and checks it left nothing behind.
func (e *env) run(sup *Supervisor, cfg Config) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{sup: sup, cancel: cancel, done: make(chan struct{})}
	go func() { r.err = sup.Run(ctx); close(r.done) }()
	e.t.Cleanup(func() {
		cancel()
		sup.StopNow()
		<-r.done
		_ = sup.Close()
		// A stopped supervisor leaves neither its run dir nor its lock file.
		for _, p := range []string{filepath.Join(cfg.RunDirRoot, sup.RunnerID()), filepath.Join(lockDir(), sup.RunnerID()+".lock")} {
			if _, err := os.Stat(p); r.err == nil && !errors.Is(err, os.ErrNotExist) {
				e.t.Errorf("%s left after a clean stop: %v", p, err)
			}
		}
	})
	return r
}

// submit creates a run and publishes its message, as `runnerd submit` does.
func (e *env) submit(id, yaml string, vars map[string]string) {
	e.t.Helper()
	wf, err := workflow.Parse([]byte(yaml), id+".yaml")
	if err != nil {
		e.t.Fatalf("workflow of %s: %v", id, err)
	}
	ctx := context.Background()
	run := &store.Run{ID: id, TenantID: "t", Workflow: wf, Vars: vars}
	if err := e.st.Create(ctx, run); err != nil {
		e.t.Fatal(err)
	}
	got, err := e.st.Get(ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	e.publish(&queue.Message{V: queue.Version, RunID: id, TenantID: "t", Workflow: wf, Vars: vars}, got.Generation)
}

func (e *env) publish(msg *queue.Message, generation int) {
	e.t.Helper()
	msg.PublishedAt = time.Now().UTC()
	if err := e.q.Publish(context.Background(), msg, generation, nil); err != nil {
		e.t.Fatal(err)
	}
}

// waitRun polls the run until ok says so.
func (e *env) waitRun(id string, timeout time.Duration, what string, ok func(*store.Run) bool) *store.Run {
	e.t.Helper()
	var last *store.Run
	found := testutil.Wait(timeout, func() bool {
		r, err := e.st.Get(context.Background(), id)
		if err == nil {
			last = r
		}
		return err == nil && ok(r)
	})
	switch {
	case found:
		return last
	case last != nil:
		e.t.Fatalf("run %s: not %s after %s: status %s reason %s attempt %d\nlogs:\n%s", id, what, timeout, last.Status, last.Reason, last.Attempt, e.logs.String())
	default:
		e.t.Fatalf("run %s: never found\nlogs:\n%s", id, e.logs.String())
	}
	return nil
}

func (e *env) waitStatus(id string, status runnerd.Status, timeout time.Duration) *store.Run {
	e.t.Helper()
	return e.waitRun(id, timeout, string(status), func(r *store.Run) bool { return r.Status == status })
}

// waitQueueEmpty waits until no message is pending or unacknowledged.
func (e *env) waitQueueEmpty(timeout time.Duration) {
	e.t.Helper()
	testutil.Eventually(e.t, timeout, func() bool {
		info, err := e.js.Stream(context.Background(), e.qcfg.Stream)
		if err != nil {
			return false
		}
		si, err := info.Info(context.Background())
		return err == nil && si.State.Msgs == 0
	}, "queue not empty\nlogs:\n%s", e.logs.String)
}

// sideFile is a file outside every run dir, for steps to record side effects.
func (e *env) sideFile(name string) string { return filepath.Join(e.side, name) }
