package bench

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/devstack"
	"github.com/runnerd/runnerd/devstack/devstacktest"
	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
	"github.com/runnerd/runnerd/supervisor"
	"github.com/runnerd/runnerd/workflow"
)

// trueWorkflow is the empty-ish workflow of the end-to-end figures.
const trueWorkflow = `steps: [{id: a, run: ["true"]}]`

// env is one benchmark's world: a fresh devstack (NATS + JetStream,
// FerretDB on SQLite, gofakes3) in this process and clients of it.
type env struct {
	b      testing.TB
	stack  *devstack.Stack
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	q      *queue.Queue
	qcfg   queue.Config
	st     *store.Store
	blobs  *blob.Store
	runs   *mongo.Collection // the raw runs collection, for seeding and counting
	events *mongo.Collection
	logs   *testutil.SyncBuffer
	dir    string
}

func newEnv(b testing.TB) *env {
	b.Helper()
	e := &env{b: b, stack: devstacktest.Start(b), logs: &testutil.SyncBuffer{}, dir: b.TempDir()}
	ctx := context.Background()
	var err error
	if e.nc, err = nats.Connect(e.stack.NATSURL); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(e.nc.Close)
	if e.js, err = jetstream.New(e.nc); err != nil {
		b.Fatal(err)
	}
	e.qcfg = queue.DefaultConfig()
	if e.q, err = queue.Setup(ctx, e.js, e.qcfg); err != nil {
		b.Fatal(err)
	}
	if e.stream, err = e.js.Stream(ctx, e.qcfg.Stream); err != nil {
		b.Fatal(err)
	}
	if e.st, err = store.Open(ctx, store.Config{URI: e.stack.MongoURI}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.st.Close(context.Background()) })
	// As `runnerd dev` does: index FerretDB's lookups by _id.
	if err := e.stack.IndexIDLookups(ctx); err != nil {
		b.Fatal(err)
	}
	e.blobs, err = blob.New(ctx, blob.Config{
		Endpoint: e.stack.S3Endpoint, Region: e.stack.S3Region, Bucket: e.stack.S3Bucket,
		AccessKey: e.stack.S3AccessKey, SecretKey: e.stack.S3SecretKey, PathStyle: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	client, err := mongo.Connect(options.Client().ApplyURI(e.stack.MongoURI))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	db := client.Database(store.DefaultDatabase)
	e.runs, e.events = db.Collection("runs"), db.Collection("events")
	return e
}

// serve starts a supervisor in this process, as `runnerd dev` does (its
// defaults, real runexec children), and stops it when the benchmark ends.
func (e *env) serve(concurrency int, tweak func(*supervisor.Config)) {
	e.b.Helper()
	e.b.Cleanup(e.serveAs("bench", func(c *supervisor.Config) {
		c.Concurrency = concurrency
		if tweak != nil {
			tweak(c)
		}
	}))
}

// create stores a run as `runnerd submit` does and returns its generation.
func (e *env) create(id, yaml string) (*workflow.Workflow, int) {
	e.b.Helper()
	wf, err := workflow.Parse([]byte(yaml), id+".yaml")
	if err != nil {
		e.b.Fatal(err)
	}
	run := &store.Run{ID: id, TenantID: "t", Workflow: wf}
	if err := e.st.Create(context.Background(), run); err != nil {
		e.b.Fatal(err)
	}
	return wf, run.Generation
}

func (e *env) publish(id string, wf *workflow.Workflow, generation int) {
	e.b.Helper()
	msg := &queue.Message{V: queue.Version, RunID: id, TenantID: "t", Workflow: wf, PublishedAt: time.Now().UTC()}
	if err := e.q.Publish(context.Background(), msg, generation, nil); err != nil {
		e.b.Fatal(err)
	}
}

// submit is `runnerd submit`: create the run, publish its message.
func (e *env) submit(id, yaml string) {
	e.b.Helper()
	wf, gen := e.create(id, yaml)
	e.publish(id, wf, gen)
}

// queued is the number of messages in the work-queue stream: published and
// not yet acked or termed. The supervisor acks after the terminal status is
// written, so 0 means every run submitted so far has finished.
func (e *env) queued() uint64 {
	info, err := e.stream.Info(context.Background())
	if err != nil {
		e.b.Fatal(err)
	}
	return info.State.Msgs
}

// waitDrained polls the stream every interval until it is empty.
func (e *env) waitDrained(interval, timeout time.Duration) {
	e.b.Helper()
	if !testutil.Poll(interval, timeout, func() bool { return e.queued() == 0 }) {
		e.b.Fatalf("%d messages still queued after %s\nsupervisor log:\n%s", e.queued(), timeout, testutil.Tail(e.logs.String(), 30))
	}
}

// countStatus counts stored runs with the given status whose id has prefix.
func (e *env) countStatus(prefix string, status runnerd.Status) int64 {
	e.b.Helper()
	n, err := e.runs.CountDocuments(context.Background(), bson.D{
		{Key: "status", Value: status},
		{Key: "_id", Value: bson.D{{Key: "$regex", Value: "^" + prefix}}},
	})
	if err != nil {
		e.b.Fatal(err)
	}
	return n
}

// seedFinished inserts n finished runs (one succeeded step each) and their
// four events, as a store that has served for a while holds them.
func (e *env) seedFinished(n int) {
	e.b.Helper()
	ctx := context.Background()
	wf, err := workflow.Parse([]byte(trueWorkflow), "seed.yaml")
	if err != nil {
		e.b.Fatal(err)
	}
	t := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
	const batch = 500
	runs := make([]any, 0, batch)
	events := make([]any, 0, 4*batch)
	for i := range n {
		id := fmt.Sprintf("seed-%06d", i)
		runs = append(runs, &store.Run{
			ID: id, TenantID: "t", Workflow: wf, Status: runnerd.StatusSucceeded, Reason: runnerd.ReasonCompleted,
			Attempt: 1, Epoch: uint64(i + 1), RunnerID: "seed", EventSeq: 4,
			Steps: runnerd.StepStates{"a": {Status: runnerd.StepSucceeded, Attempts: 1, StartedAt: t, FinishedAt: t,
				LogKey: blob.StepLogKey(id, 1, "a")}},
			CreatedAt: t, UpdatedAt: t, StartedAt: t, FinishedAt: t,
		})
		for seq, typ := range []runnerd.EventType{runnerd.EventRunStarted, runnerd.EventStepStarted, runnerd.EventStepFinished, runnerd.EventRunFinished} {
			events = append(events, store.StoredEvent{RunID: id, Seq: int64(seq + 1), Event: runnerd.Event{Type: typ, Step: "a", Time: t}})
		}
		if len(runs) == batch || i == n-1 {
			if _, err := e.runs.InsertMany(ctx, runs); err != nil {
				e.b.Fatal(err)
			}
			if _, err := e.events.InsertMany(ctx, events); err != nil {
				e.b.Fatal(err)
			}
			runs, events = runs[:0], events[:0]
		}
	}
}

// sequential submits n runs one after the other, each once the previous
// one has finished, and returns two latencies per run: client-side (from
// the start of submit to the moment the stream is seen empty, polled every
// millisecond: the ack follows the terminal status write) and from the
// store's own timestamps (finished_at − created_at, millisecond precision).
func (e *env) sequential(prefix string, n int) (client, stored []time.Duration) {
	e.b.Helper()
	ctx := context.Background()
	for i := range n {
		id := fmt.Sprintf("%s-%05d", prefix, i)
		start := time.Now()
		e.submit(id, trueWorkflow)
		// Polled every 5 ms: at 1 ms the polling (a JetStream API request
		// each) took enough of the two cores to add 7 ms to the store's
		// figure. The store timestamps do not depend on the polling.
		e.waitDrained(5*time.Millisecond, time.Minute)
		client = append(client, time.Since(start))
		r, err := e.st.Get(ctx, id)
		if err != nil {
			e.b.Fatal(err)
		}
		if r.Status != runnerd.StatusSucceeded {
			e.b.Fatalf("run %s: %s %s\nsupervisor log:\n%s", id, r.Status, r.Reason, testutil.Tail(e.logs.String(), 30))
		}
		stored = append(stored, r.FinishedAt.Sub(r.CreatedAt))
	}
	return client, stored
}

func percentile(lat []time.Duration, p int) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), lat...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := len(s) * p / 100
	if i >= len(s) {
		i = len(s) - 1
	}
	return s[i]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// reportLatency reports the client-side p50/p99 as the headline and the
// store-timestamp ones beside them.
func reportLatency(b *testing.B, client, stored []time.Duration) {
	b.ReportMetric(ms(percentile(client, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(client, 99)), "p99-ms")
	b.ReportMetric(ms(percentile(stored, 50)), "store-p50-ms")
	b.ReportMetric(ms(percentile(stored, 99)), "store-p99-ms")
	b.ReportMetric(float64(len(client)), "runs")
}
