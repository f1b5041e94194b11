package supervisor

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
)

// A lease held elsewhere delays a run as long as it is held, and never
// spends one of its attempts: with a crash budget of one attempt, the run
// is naked many times and still runs, at attempt 1, once the lease is free.
func TestHeldLeaseNeverSpendsAnAttempt(t *testing.T) {
	e := newEnv(t, func(c *queue.Config) { c.LeaseTTL = 30 * time.Second })
	ctx := context.Background()
	e.submit("held1", `steps: [{id: a, shell: "echo ok"}]`, nil)
	other, err := e.q.AcquireLease(ctx, "held1", "someone-else")
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.config("r1")
	cfg.MaxAttempts = 1
	r := e.serve(cfg)
	waits := func() float64 { return promtest.ToFloat64(r.sup.m.waits.WithLabelValues(onLease)) }
	testutil.Eventually(t, 30*time.Second, func() bool { return waits() >= 5 },
		"the held lease delayed the run %s times, want 5\nlogs:\n%s", func() string { return fmt.Sprint(waits()) }, e.logs.String)
	if run, _ := e.st.Get(ctx, "held1"); run.Status != runnerd.StatusQueued || run.Attempt != 0 {
		t.Fatalf("while the lease is held: %s attempt %d, want queued, 0", run.Status, run.Attempt)
	}
	if err := other.Release(ctx); err != nil {
		t.Fatal(err)
	}
	run := e.waitStatus("held1", runnerd.StatusSucceeded, 30*time.Second)
	if run.Attempt != 1 || run.Crashes != 0 {
		t.Fatalf("attempt %d crashes %d, want 1, 0", run.Attempt, run.Crashes)
	}
	e.waitQueueEmpty(10 * time.Second)
}

// NATS redelivers a message whose AckWait passed without an in-progress
// mark (here: the lease heartbeat, which sends them, is slower than
// AckWait, as when an outage swallowed them). The runner executing the run
// recognises the redelivery, keeps running, and acks the message at the
// end: one attempt, no crash, nothing left in the stream.
func TestRedeliveryWhileRunningIsAdopted(t *testing.T) {
	e := newEnv(t, func(c *queue.Config) {
		c.LeaseTTL = 9 * time.Second // in-progress marks every 3 s
		c.AckWait = time.Second
	})
	r := e.serve(e.config("r1"))
	e.submit("adopt1", `steps: [{id: a, shell: "sleep 4.3107"}]`, nil)
	run := e.waitStatus("adopt1", runnerd.StatusSucceeded, 60*time.Second)
	if run.Attempt != 1 || run.Crashes != 0 {
		t.Fatalf("attempt %d crashes %d, want 1, 0\nlogs:\n%s", run.Attempt, run.Crashes, e.logs.String())
	}
	if n := promtest.ToFloat64(r.sup.m.deliveries.WithLabelValues("adopted")); n < 1 {
		t.Fatalf("no redelivery was adopted\nlogs:\n%s", e.logs.String())
	}
	e.waitQueueEmpty(10 * time.Second)
}

// A runner that restarts under the same id finds the leases its previous
// process held: it takes them over at once instead of waiting for their
// TTL, and the interrupted attempt counts as a crash.
func TestOwnLeaseOfAPreviousProcessIsTakenOver(t *testing.T) {
	e := newEnv(t, func(c *queue.Config) { c.LeaseTTL = time.Minute })
	ctx := context.Background()
	cfg := e.config("r1")
	e.submit("own1", `steps: [{id: a, shell: "echo ok"}]`, nil)
	// The previous process: leased and claimed the run, then died.
	lease, err := e.q.AcquireLease(ctx, "own1", cfg.RunnerID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Claim(ctx, "own1", cfg.RunnerID, lease.Epoch()); err != nil {
		t.Fatal(err)
	}
	ds, err := e.q.Fetch(ctx, 1, 5*time.Second)
	if err != nil || len(ds) != 1 {
		t.Fatalf("fetch: %d, %v", len(ds), err)
	}
	if err := ds[0].Nak(); err != nil { // as if its AckWait had passed
		t.Fatal(err)
	}
	e.serve(cfg)
	run := e.waitStatus("own1", runnerd.StatusSucceeded, 20*time.Second) // far less than the TTL
	if run.Attempt != 2 || run.Crashes != 1 || run.Epoch <= lease.Epoch() {
		t.Fatalf("attempt %d crashes %d epoch %d (old %d); want 2, 1, newer", run.Attempt, run.Crashes, run.Epoch, lease.Epoch())
	}
}

// A hard stop cuts a wait on S3 short: at a SIGTERM the interrupted step's
// log is uploaded to a server that never answers, a first try of up to 5
// minutes; once the shutdown grace is over (the hard stop) it gets
// hardStopTry more, and the supervisor stops well within the try.
func TestHardStopCutsAHangingUpload(t *testing.T) {
	e := newEnv(t, nil)
	e.blobs = hangingS3(t)
	r := e.serve(e.config("r1"))
	marker := testutil.Marker()
	e.submit("hang1", `steps: [{id: long, shell: "sleep `+marker+`"}]`, nil)
	e.waitRun("hang1", 30*time.Second, "running its step", func(r *store.Run) bool {
		return r.Steps["long"] != nil && r.Steps["long"].Status == runnerd.StepRunning
	})
	r.cancel() // the first SIGTERM: the grace (10 s) runs out in the upload
	// Without the cut the upload's first try lasts 5 minutes.
	const within = 2 * time.Minute
	select {
	case <-r.done:
	case <-time.After(within):
		t.Fatalf("Run still going %s after the SIGTERM\nlogs:\n%s", within, e.logs.String())
	}
	if !strings.Contains(e.logs.String(), "shutdown grace over") {
		t.Fatalf("the supervisor stopped before its grace was over: the hard stop was not tested\nlogs:\n%s", e.logs.String())
	}
	testutil.NoProcess(t, 5*time.Second, marker)
}

// hangingS3 is a blob store whose server accepts connections and never
// answers.
func hangingS3(t *testing.T) *blob.Store {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); conns.Wait() })
	conns.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() { _, _ = io.Copy(io.Discard, c); c.Close() })
		}
	})
	bl, err := blob.New(context.Background(), blob.Config{
		Endpoint: "http://" + ln.Addr().String(), Region: "us-east-1", Bucket: "runnerd",
		AccessKey: "k", SecretKey: "s", PathStyle: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return bl
}
