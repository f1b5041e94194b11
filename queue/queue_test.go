package queue

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/runnerd/runnerd/devstack/devstacktest"
	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/workflow"
)

// testConfig shortens the timings so lease expiry fits in a test.
func testConfig() Config {
	c := DefaultConfig()
	c.LeaseTTL = time.Second
	c.Backoff = []time.Duration{100 * time.Millisecond}
	return c
}

// start gives the test its own NATS server and a JetStream client on it.
func start(t *testing.T) jetstream.JetStream {
	t.Helper()
	stack := devstacktest.Start(t)
	nc, err := nats.Connect(stack.NATSURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close) // runs before the stack stops
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return js
}

func setup(t *testing.T, cfg Config) *Queue {
	t.Helper()
	q, err := Setup(ctxT(t), start(t), cfg)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	return q
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testMessage(runID string) *Message {
	return &Message{
		RunID:    runID,
		TenantID: "acme",
		Workflow: &workflow.Workflow{Name: "hello", Steps: []workflow.Step{{ID: "a", Run: []string{"true"}}}},
		Vars:     map[string]string{"who": "world"},
	}
}

func publish(t *testing.T, q *Queue, runID string, generation int) {
	t.Helper()
	if err := q.Publish(ctxT(t), testMessage(runID), generation, nil); err != nil {
		t.Fatalf("Publish %s/%d: %v", runID, generation, err)
	}
}

// fetchOne fetches and expects exactly one delivery.
func fetchOne(t *testing.T, q *Queue, wait time.Duration) *Delivery {
	t.Helper()
	ds, err := q.Fetch(ctxT(t), 1, wait)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if len(ds) != 1 {
		t.Fatalf("Fetch got %d deliveries, want 1", len(ds))
	}
	return ds[0]
}

// fetchAll fetches until want deliveries came (a Fetch may return fewer
// than are waiting).
func fetchAll(t *testing.T, q *Queue, want int) []*Delivery {
	t.Helper()
	var out []*Delivery
	for calls := 0; len(out) < want; calls++ {
		ds, err := q.Fetch(ctxT(t), want-len(out), 2*time.Second)
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		if len(ds) == 0 || calls == 10 {
			t.Fatalf("got %d deliveries, want %d", len(out), want)
		}
		out = append(out, ds...)
	}
	return out
}

func expectNone(t *testing.T, q *Queue, wait time.Duration) {
	t.Helper()
	ds, err := q.Fetch(ctxT(t), 5, wait)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if len(ds) != 0 {
		t.Fatalf("Fetch got %d deliveries (first: run %s, delivery %d), want none", len(ds), ds[0].RunID(), ds[0].NumDelivered())
	}
}

func TestSetupIdempotent(t *testing.T) {
	t.Parallel()
	js := start(t)
	ctx := ctxT(t)
	cfg := testConfig()
	if _, err := Setup(ctx, js, cfg); err != nil {
		t.Fatalf("first Setup: %v", err)
	}
	q, err := Setup(ctx, js, cfg)
	if err != nil {
		t.Fatalf("second Setup, same config: %v", err)
	}
	publish(t, q, "kept", 0)

	cfg.MaxDeliver = 7
	cfg.MaxAckPending = 50
	cfg.AckWait = 90 * time.Second
	cfg.DuplicateWindow = time.Minute
	cfg.LeaseTTL = 5 * time.Second
	q, err = Setup(ctx, js, cfg)
	if err != nil {
		t.Fatalf("Setup with changed limits: %v", err)
	}
	info, err := q.consumer.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c := info.Config; c.MaxDeliver != 7 || c.MaxAckPending != 50 || c.AckWait != 90*time.Second || c.AckPolicy != jetstream.AckExplicitPolicy || len(c.BackOff) != 0 {
		t.Errorf("consumer config after update = %+v", c)
	}
	stream, err := js.Stream(ctx, cfg.Stream)
	if err != nil {
		t.Fatal(err)
	}
	sinfo, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c := sinfo.Config; c.Duplicates != time.Minute || c.Retention != jetstream.WorkQueuePolicy || c.Storage != jetstream.FileStorage {
		t.Errorf("stream config after update = %+v", c)
	}
	if sinfo.State.Msgs != 1 {
		t.Errorf("stream holds %d messages after the update, want the 1 published before", sinfo.State.Msgs)
	}
	status, err := q.leases.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if status.TTL() != 5*time.Second {
		t.Errorf("lease bucket TTL = %s, want 5s", status.TTL())
	}

	bad := cfg
	bad.Subject = "runnerd.*"
	if _, err := Setup(ctx, js, bad); err == nil {
		t.Error("Setup with an invalid config succeeded")
	}
}

func TestPublishFetchAck(t *testing.T) {
	t.Parallel()
	q := setup(t, testConfig())
	ctx := ctxT(t)
	hdr := nats.Header{}
	hdr.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if err := q.Publish(ctx, testMessage("run-1"), 0, hdr); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	waitPending(t, q, 1, "after publish")

	d := fetchOne(t, q, 2*time.Second)
	if d.RunID() != "run-1" {
		t.Errorf("RunID from the header = %q, want run-1", d.RunID())
	}
	if d.NumDelivered() != 1 || d.LastAttempt() {
		t.Errorf("NumDelivered = %d, LastAttempt = %v; want 1, false", d.NumDelivered(), d.LastAttempt())
	}
	if got := d.Header().Get("traceparent"); got != hdr.Get("traceparent") {
		t.Errorf("traceparent = %q", got)
	}
	if got := d.Header().Get(jetstream.MsgIDHeader); got != "run-1-0" {
		t.Errorf("Nats-Msg-Id = %q, want run-1-0", got)
	}
	m, err := d.Decode()
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if m.V != Version || m.RunID != "run-1" || m.TenantID != "acme" || m.Vars["who"] != "world" || m.PublishedAt.IsZero() || m.Workflow.Steps[0].ID != "a" {
		t.Errorf("decoded %+v", m)
	}
	// Pending counts the delivery until it is acked.
	waitPending(t, q, 1, "while in flight")
	if err := d.InProgress(); err != nil {
		t.Fatalf("InProgress: %v", err)
	}
	if err := d.Ack(ctx); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	waitPending(t, q, 0, "after ack")
	expectNone(t, q, 300*time.Millisecond)

	// A second ack reports the run.
	if err := d.Ack(ctx); err == nil || !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		t.Errorf("second Ack = %v, want ErrMsgAlreadyAckd", err)
	}
}

func TestPublishRefusesInvalid(t *testing.T) {
	t.Parallel()
	q := setup(t, testConfig())
	ctx := ctxT(t)
	m := testMessage("bad.id")
	if err := q.Publish(ctx, m, 0, nil); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("Publish with a bad run id = %v, want ErrInvalidMessage", err)
	}
	m = testMessage("ok")
	m.WorkflowRef = WorkflowRef([]byte("{}"))
	if err := q.Publish(ctx, m, 0, nil); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("Publish with workflow and ref = %v, want ErrInvalidMessage", err)
	}
	if n, err := q.Pending(ctx); err != nil || n != 0 {
		t.Fatalf("Pending = %d, %v; want nothing published", n, err)
	}
}

func TestPublishDuplicate(t *testing.T) {
	t.Parallel()
	q := setup(t, testConfig())
	ctx := ctxT(t)
	publish(t, q, "run-1", 0)
	if err := q.Publish(ctx, testMessage("run-1"), 0, nil); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("second Publish of generation 0 = %v, want ErrDuplicate", err)
	}
	publish(t, q, "run-1", 1) // a republish (shutdown, resume) is a new message

	ds := fetchAll(t, q, 2)
	expectNone(t, q, 300*time.Millisecond)
	for i, d := range ds {
		if want := msgID("run-1", i); d.Header().Get(jetstream.MsgIDHeader) != want {
			t.Errorf("delivery %d has id %q, want %q", i, d.Header().Get(jetstream.MsgIDHeader), want)
		}
	}
}

func TestFetchAtMostN(t *testing.T) {
	t.Parallel()
	q := setup(t, testConfig())
	ctx := ctxT(t)
	for i, id := range []string{"a", "b", "c", "d", "e"} {
		publish(t, q, id, i)
	}
	if ds, err := q.Fetch(ctx, 0, time.Second); err != nil || len(ds) != 0 {
		t.Fatalf("Fetch(0) = %d, %v; want nothing", len(ds), err)
	}
	// Never more than n; a call may return fewer than are waiting (see
	// Fetch), so drain in a loop, as the supervisor does.
	seen := map[string]bool{}
	for calls := 0; len(seen) < 5; calls++ {
		if calls == 20 {
			t.Fatalf("after 20 Fetch(2) calls got %d of 5 runs", len(seen))
		}
		began := time.Now()
		ds, err := q.Fetch(ctx, 2, 5*time.Second)
		if err != nil || len(ds) == 0 || len(ds) > 2 {
			t.Fatalf("Fetch(2) = %d deliveries, %v; want 1 or 2", len(ds), err)
		}
		if took := time.Since(began); took > 2*time.Second {
			t.Errorf("Fetch(2) with runs waiting took %s: it should not wait to fill the batch", took)
		}
		for _, d := range ds {
			if seen[d.RunID()] {
				t.Fatalf("run %s delivered twice", d.RunID())
			}
			seen[d.RunID()] = true
		}
	}
	began := time.Now()
	expectNone(t, q, 300*time.Millisecond)
	if took := time.Since(began); took < 200*time.Millisecond {
		t.Errorf("empty Fetch returned after %s, want it to wait ~300ms", took)
	}
}

func TestFetchWaitsForFirst(t *testing.T) {
	t.Parallel()
	q := setup(t, testConfig())
	go func() {
		time.Sleep(300 * time.Millisecond)
		_ = q.Publish(context.Background(), testMessage("late"), 0, nil)
	}()
	began := time.Now()
	ds, err := q.Fetch(ctxT(t), 3, 10*time.Second)
	if err != nil || len(ds) != 1 {
		t.Fatalf("Fetch = %d deliveries, %v; want 1", len(ds), err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("Fetch took %s: it should return as soon as the first message arrives", took)
	}
}

func TestFetchCancelled(t *testing.T) {
	t.Parallel()
	q := setup(t, testConfig())
	ctx, cancel := context.WithCancel(ctxT(t))
	time.AfterFunc(200*time.Millisecond, cancel)
	began := time.Now()
	ds, err := q.Fetch(ctx, 1, 10*time.Second)
	if !errors.Is(err, context.Canceled) || len(ds) != 0 {
		t.Fatalf("Fetch with a cancelled ctx = %d, %v; want context.Canceled", len(ds), err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("Fetch returned %s after the cancel", took)
	}
}

func TestNakWithDelay(t *testing.T) {
	t.Parallel()
	q := setup(t, testConfig())
	publish(t, q, "run-1", 0)
	d := fetchOne(t, q, time.Second)
	naked := time.Now()
	if err := d.NakWithDelay(800 * time.Millisecond); err != nil {
		t.Fatalf("NakWithDelay: %v", err)
	}
	expectNone(t, q, 0) // not before the delay

	d = fetchOne(t, q, 5*time.Second)
	if took := time.Since(naked); took < 600*time.Millisecond {
		t.Errorf("redelivered after %s, want about 800ms", took)
	}
	if d.NumDelivered() != 2 {
		t.Errorf("NumDelivered = %d, want 2", d.NumDelivered())
	}
	if d.RetryDelay() != 100*time.Millisecond {
		t.Errorf("RetryDelay = %s, want the test backoff 100ms", d.RetryDelay())
	}
	if err := d.NakWithBackoff(); err != nil {
		t.Fatalf("NakWithBackoff: %v", err)
	}
	if d = fetchOne(t, q, 5*time.Second); d.NumDelivered() != 3 {
		t.Errorf("NumDelivered = %d, want 3", d.NumDelivered())
	}
}

func TestTermStopsRedelivery(t *testing.T) {
	t.Parallel()
	q := setup(t, testConfig())
	publish(t, q, "run-1", 0)
	d := fetchOne(t, q, time.Second)
	if err := d.Term("invalid_message"); err != nil {
		t.Fatalf("Term: %v", err)
	}
	expectNone(t, q, 500*time.Millisecond)
	waitPending(t, q, 0, "after Term")
}

func TestMaxDeliver(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxDeliver = 3
	q := setup(t, cfg)
	publish(t, q, "run-1", 0)
	for i := uint64(1); i <= 3; i++ {
		d := fetchOne(t, q, 2*time.Second)
		if d.NumDelivered() != i || d.LastAttempt() != (i == 3) {
			t.Fatalf("delivery %d: NumDelivered = %d, LastAttempt = %v", i, d.NumDelivered(), d.LastAttempt())
		}
		if err := d.Nak(); err != nil {
			t.Fatalf("Nak: %v", err)
		}
	}
	expectNone(t, q, 500*time.Millisecond)
}

func TestCancel(t *testing.T) {
	t.Parallel()
	q := setup(t, testConfig())
	ctx := ctxT(t)
	var calls, otherCalls atomic.Int32
	done := make(chan struct{})
	unsubscribe, err := q.SubscribeCancel("run-1", func() { calls.Add(1); close(done) })
	if err != nil {
		t.Fatalf("SubscribeCancel: %v", err)
	}
	unsubOther, err := q.SubscribeCancel("run-2", func() { otherCalls.Add(1) })
	if err != nil {
		t.Fatalf("SubscribeCancel: %v", err)
	}
	defer unsubOther()

	for range 2 {
		if err := q.PublishCancel(ctx, "run-1"); err != nil {
			t.Fatalf("PublishCancel: %v", err)
		}
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("cancel not received")
	}
	if err := q.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if calls.Load() != 1 || otherCalls.Load() != 0 {
		t.Fatalf("calls = %d, other run's calls = %d; want 1, 0", calls.Load(), otherCalls.Load())
	}

	unsubscribe()
	unsubscribe()
	if err := q.PublishCancel(ctx, "bad.id"); err == nil {
		t.Error("PublishCancel with a bad run id succeeded")
	}
	if _, err := q.SubscribeCancel("run.*", func() {}); err == nil {
		t.Error("SubscribeCancel with a wildcard succeeded")
	}
}

func TestOpenChangesNothing(t *testing.T) {
	t.Parallel()
	js := start(t)
	ctx := ctxT(t)
	if _, err := Open(ctx, js, DefaultConfig()); err == nil {
		t.Fatal("Open before Setup succeeded")
	}
	cfg := testConfig()
	cfg.MaxDeliver = 9
	if _, err := Setup(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	q, err := Open(ctx, js, DefaultConfig()) // a client with the defaults
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	info, err := q.consumer.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxDeliver != 9 {
		t.Fatalf("MaxDeliver after Open = %d, want 9 (untouched)", info.Config.MaxDeliver)
	}
	publish(t, q, "via-open", 0)
	if err := q.PublishCancel(ctx, "via-open"); err != nil {
		t.Fatal(err)
	}
}

// waitPending waits until the consumer's backlog is want: the server
// updates a consumer's counts a moment after the stream stored or removed
// a message, so a read right after a publish or an ack may lag.
func waitPending(t *testing.T, q *Queue, want uint64, when string) {
	t.Helper()
	var n uint64
	var err error
	testutil.Eventually(t, 2*time.Second, func() bool {
		n, err = q.Pending(context.Background())
		return err == nil && n == want
	}, "Pending %s = %s; want %d", when, func() string { return fmt.Sprint(n, err) }, want)
}

// TestHold: a held delivery stays ours as long as it is held again in
// time (no redelivery, even past the first hold's deadline), can still be
// marked in progress and acked, and spends no delivery; one held and then
// left alone comes back after its hold, long before AckWait.
func TestHold(t *testing.T) {
	cfg := testConfig()
	cfg.AckWait = time.Minute
	q := setup(t, cfg)
	publish(t, q, "run-1", 0)
	d := fetchOne(t, q, time.Second)
	for range 6 { // 3 s, past the 1 s hold each time
		if err := d.Hold(time.Second); err != nil {
			t.Fatalf("Hold: %v", err)
		}
		expectNone(t, q, 500*time.Millisecond)
	}
	info, err := q.consumer.Info(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.NumRedelivered != 0 {
		t.Fatalf("held 6 times: %d messages redelivered, want 0", info.NumRedelivered)
	}
	if err := d.InProgress(); err != nil {
		t.Fatalf("InProgress after Hold: %v", err)
	}
	if err := d.Ack(ctxT(t)); err != nil {
		t.Fatalf("Ack after Hold: %v", err)
	}
	expectNone(t, q, 1500*time.Millisecond) // acked: gone for good
	waitPending(t, q, 0, "after the ack of a held delivery")

	publish(t, q, "run-2", 0)
	d = fetchOne(t, q, time.Second)
	held := time.Now()
	if err := d.Hold(time.Second); err != nil {
		t.Fatalf("Hold: %v", err)
	}
	d = fetchOne(t, q, 10*time.Second) // its holder gone: back after the hold, not AckWait
	if took := time.Since(held); took < 800*time.Millisecond || took > 5*time.Second {
		t.Errorf("redelivered %s after a hold of 1s (AckWait 1m)", took)
	}
	if d.RunID() != "run-2" || d.NumDelivered() != 2 {
		t.Errorf("redelivery: run %s, delivery %d, want run-2, 2", d.RunID(), d.NumDelivered())
	}
}
