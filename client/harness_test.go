package client_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/event"

	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/client"
	"github.com/runnerd/runnerd/devstack"
	"github.com/runnerd/runnerd/devstack/devstacktest"
	"github.com/runnerd/runnerd/internal/storetest"
	"github.com/runnerd/runnerd/internal/testbin"
	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
	"github.com/runnerd/runnerd/supervisor"
	"github.com/runnerd/runnerd/workflow"
)

var runexecPath string

func TestMain(m *testing.M) {
	var err error
	if runexecPath, err = testbin.Path("runexec"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// world is one test's servers, a runner serving on them, and a client.
type world struct {
	t     *testing.T
	stack *devstack.Stack
	q     *queue.Queue
	st    *store.Store
	blobs *blob.Store
	c     *client.Client
	reads *atomic.Int64 // read commands the client's store sent
	logs  *testutil.SyncBuffer
}

// newWorld starts the servers and a client on them; serve starts a runner.
func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, stack: devstacktest.Start(t), reads: &atomic.Int64{}, logs: &testutil.SyncBuffer{}}
	ctx := context.Background()
	_, js := devstacktest.JetStream(t, w.stack.NATSURL)
	var err error
	qcfg := queue.DefaultConfig()
	qcfg.LeaseTTL = 3 * time.Second
	if w.q, err = queue.Setup(ctx, js, qcfg); err != nil {
		t.Fatal(err)
	}
	w.st = storetest.Open(t, w.stack.MongoURI)
	w.blobs, err = blob.New(ctx, blob.Config{
		Endpoint: w.stack.S3Endpoint, Region: w.stack.S3Region, Bucket: w.stack.S3Bucket,
		AccessKey: w.stack.S3AccessKey, SecretKey: w.stack.S3SecretKey, PathStyle: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	// The client has a store of its own, whose reads are counted.
	cfg := storetest.Config(t, w.stack.MongoURI)
	cfg.Monitor = &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		switch e.CommandName {
		case "find", "aggregate", "count", "getMore":
			w.reads.Add(1)
		}
	}}
	cst := storetest.OpenConfig(t, cfg)
	// The client's own NATS connection, read-only queue, as a service has.
	cnc, err := nats.Connect(w.stack.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cnc.Close)
	cjs, _ := jetstream.New(cnc)
	cq, err := queue.Open(ctx, cjs, queue.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	w.c, err = client.New(client.Options{
		Store: cst, Queue: cq, Tenant: "acme",
		Blob: func(context.Context) (*blob.Store, error) { return w.blobs, nil },
		// A poll this slow never happens in a test: every read is a notice's.
		PollInterval: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// serve starts a runner on the world's servers until the test ends.
func (w *world) serve() { w.t.Helper(); w.serveWith(nil) }

// serveWith starts a runner whose config tweak changed.
func (w *world) serveWith(tweak func(*supervisor.Config)) {
	w.t.Helper()
	cfg := supervisor.Config{
		RunnerID:      testutil.UniqueID("client-test"),
		Concurrency:   2,
		RunDirRoot:    w.t.TempDir(),
		RunexecPath:   runexecPath,
		ShutdownGrace: 10 * time.Second,
		KillGrace:     time.Second,
		FetchWait:     500 * time.Millisecond,
		RetryDelay:    200 * time.Millisecond,
		Logger:        zerolog.New(w.logs).With().Timestamp().Logger(),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	sup, err := supervisor.New(cfg, w.q, w.st, w.blobs)
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = sup.Run(ctx); close(done) }()
	w.t.Cleanup(func() {
		cancel()
		sup.StopNow()
		<-done
		_ = sup.Close()
	})
}

func (w *world) workflow(yaml string) *workflow.Workflow {
	w.t.Helper()
	wf, err := workflow.Parse([]byte(yaml), "test.yaml")
	if err != nil {
		w.t.Fatal(err)
	}
	return wf
}

func (w *world) submit(id, yaml string, vars map[string]string) *client.Run {
	w.t.Helper()
	q, err := w.c.Submit(ctxT(w.t), client.Submission{ID: id, Workflow: w.workflow(yaml), Vars: vars})
	if err != nil {
		w.t.Fatalf("submit %s: %v", id, err)
	}
	return q.Run
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func has(s, sub string) bool { return strings.Contains(s, sub) }

func mustJetStream(url string) (*nats.Conn, jetstream.JetStream) {
	nc, err := nats.Connect(url)
	if err != nil {
		panic(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		panic(err)
	}
	return nc, js
}
