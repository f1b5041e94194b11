package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/runnerd/runnerd/devstack/devstacktest"
	"github.com/runnerd/runnerd/internal/testutil"
)

// acquireWhenExpired retries until the previous holder's lease expired.
func acquireWhenExpired(t *testing.T, q *Queue, runID, runnerID string) *Lease {
	t.Helper()
	var l *Lease
	var err error
	testutil.Eventually(t, 10*time.Second, func() bool {
		l, err = q.AcquireLease(ctxT(t), runID, runnerID)
		if err != nil && !errors.Is(err, ErrLeaseHeld) {
			t.Fatalf("AcquireLease by %s: %v", runnerID, err)
		}
		return err == nil
	}, "AcquireLease by %s: %v", runnerID, func() string { return fmt.Sprint(err) })
	return l
}

func TestLeaseHeld(t *testing.T) {
	t.Parallel()
	q := setup(t, testConfig())
	ctx := ctxT(t)
	a, err := q.AcquireLease(ctx, "run-1", "runner-a")
	if err != nil {
		t.Fatalf("AcquireLease: %v", err)
	}
	if a.Epoch() == 0 || a.RunID() != "run-1" {
		t.Fatalf("lease epoch %d, run %q", a.Epoch(), a.RunID())
	}
	if _, err := q.AcquireLease(ctx, "run-1", "runner-b"); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("second AcquireLease = %v, want ErrLeaseHeld", err)
	}
	entry, err := q.leases.Get(ctx, "run-1")
	if err != nil {
		t.Fatal(err)
	}
	var v leaseValue
	if err := json.Unmarshal(entry.Value(), &v); err != nil || v.RunnerID != "runner-a" || v.AcquiredAt.IsZero() {
		t.Fatalf("lease value %s (%v)", entry.Value(), err)
	}
	if _, err := q.AcquireLease(ctx, "run-2", "runner-b"); err != nil {
		t.Fatalf("AcquireLease of another run: %v", err)
	}
	if _, err := q.AcquireLease(ctx, "../x", "runner-b"); err == nil {
		t.Fatal("AcquireLease with a bad run id succeeded")
	}
}

func TestLeaseRenewKeepsIt(t *testing.T) {
	t.Parallel()
	q := setup(t, testConfig()) // TTL 1s
	ctx := ctxT(t)
	a, err := q.AcquireLease(ctx, "run-1", "runner-a")
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(2500 * time.Millisecond); time.Now().Before(end); {
		time.Sleep(250 * time.Millisecond)
		if err := a.Renew(ctx); err != nil {
			t.Fatalf("Renew: %v", err)
		}
	}
	if _, err := q.AcquireLease(ctx, "run-1", "runner-b"); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("AcquireLease after 2.5 TTLs of renewals = %v, want ErrLeaseHeld", err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

func TestLeaseExpiresAndEpochGrows(t *testing.T) {
	t.Parallel()
	q := setup(t, testConfig())
	ctx := ctxT(t)
	a, err := q.AcquireLease(ctx, "run-1", "runner-a")
	if err != nil {
		t.Fatal(err)
	}
	// Other keys' writes in between must not matter: epochs are stream sequences.
	if _, err := q.AcquireLease(ctx, "run-2", "runner-a"); err != nil {
		t.Fatal(err)
	}
	b := acquireWhenExpired(t, q, "run-1", "runner-b") // a stopped renewing
	if b.Epoch() <= a.Epoch() {
		t.Fatalf("epoch after expiry %d, want more than %d", b.Epoch(), a.Epoch())
	}

	// a wakes up: its lease is gone, and it cannot touch b's.
	if err := a.Renew(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Renew after another runner took the lease = %v, want ErrLeaseLost", err)
	}
	if err := a.Release(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Release of a lost lease = %v, want ErrLeaseLost", err)
	}
	if err := b.Renew(ctx); err != nil {
		t.Fatalf("b's Renew after a's Release: %v (a deleted b's lease)", err)
	}

	// Released, the lease can be taken at once, with a greater epoch again.
	if err := b.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if err := b.Release(ctx); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	if err := b.Renew(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Renew after Release = %v, want ErrLeaseLost", err)
	}
	c, err := q.AcquireLease(ctx, "run-1", "runner-c")
	if err != nil {
		t.Fatalf("AcquireLease after Release: %v", err)
	}
	if c.Epoch() <= b.Epoch() {
		t.Fatalf("epoch after release %d, want more than %d", c.Epoch(), b.Epoch())
	}
}

// A lease that expired with nobody else taking it (its holder could not
// reach NATS for longer than the TTL) is re-taken by the holder's next
// Renew, keeping its epoch: a runner that claimed the run meanwhile would
// have a newer epoch in the store, which fences the holder's writes.
func TestLeaseExpiredIsRetakenByItsHolder(t *testing.T) {
	t.Parallel()
	q := setup(t, testConfig())
	ctx := ctxT(t)
	a, err := q.AcquireLease(ctx, "run-1", "runner-a")
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { _, err := q.leases.Get(ctx, "run-1"); return err != nil },
		"lease never expired")
	epoch := a.Epoch()
	if err := a.Renew(ctx); err != nil {
		t.Fatalf("Renew of an expired lease nobody took = %v, want it re-taken", err)
	}
	if h, err := q.LeaseHolder(ctx, "run-1"); err != nil || h.RunnerID != "runner-a" || a.Epoch() != epoch {
		t.Fatalf("after the re-take: holder %+v (%v), epoch %d (was %d)", h, err, a.Epoch(), epoch)
	}
	if _, err := q.AcquireLease(ctx, "run-1", "runner-b"); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("AcquireLease by another runner after the re-take = %v, want ErrLeaseHeld", err)
	}
}

// A lease whose key vanished (the server dropped it after an outage longer
// than the TTL) is re-taken by its holder's next Renew, with the same epoch;
// one taken by another runner meanwhile is lost.
func TestRenewRetakesAnExpiredLease(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.LeaseTTL = time.Hour
	q := setup(t, cfg)
	ctx := ctxT(t)
	l, err := q.AcquireLease(ctx, "run-x", "r1")
	if err != nil {
		t.Fatal(err)
	}
	if err := q.leases.Purge(ctx, "run-x"); err != nil { // as the server's expiry does
		t.Fatal(err)
	}
	if err := l.Renew(ctx); err != nil {
		t.Fatalf("renew after the key vanished: %v", err)
	}
	h, err := q.LeaseHolder(ctx, "run-x")
	if err != nil || h.RunnerID != "r1" {
		t.Fatalf("holder %+v, %v", h, err)
	}
	if err := l.Renew(ctx); err != nil {
		t.Fatalf("renew after the re-take: %v", err)
	}
	// Another runner takes it over after a purge: ours is lost for good.
	if err := q.leases.Purge(ctx, "run-x"); err != nil {
		t.Fatal(err)
	}
	other, err := q.AcquireLease(ctx, "run-x", "r2")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Renew(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("renew of a lease another runner holds: %v, want ErrLeaseLost", err)
	}
	if other.Epoch() <= l.Epoch() {
		t.Fatalf("epochs: other %d, ours %d", other.Epoch(), l.Epoch())
	}
	// TakeOverLease replaces a given revision only.
	h, _ = q.LeaseHolder(ctx, "run-x")
	if _, err := q.TakeOverLease(ctx, "run-x", "r3", h.Revision-1); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("take over at a stale revision: %v, want ErrLeaseHeld", err)
	}
	l3, err := q.TakeOverLease(ctx, "run-x", "r3", h.Revision)
	if err != nil || l3.Epoch() <= other.Epoch() {
		t.Fatalf("take over: %v (epoch %v)", err, l3)
	}
	if err := other.Renew(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("renew after a take-over: %v, want ErrLeaseLost", err)
	}
}

// A lease whose holder is gone expires within its TTL after NATS restarts,
// even when NATS was away for longer than the TTL (the server drops expired
// keys when it recovers the bucket): the next runner gets it at once.
func TestLeaseOfAGoneHolderExpiresAfterARestart(t *testing.T) {
	t.Parallel()
	stack := devstacktest.Start(t)
	_, js := devstacktest.JetStream(t, stack.NATSURL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	cfg := testConfig()
	cfg.LeaseTTL = 2 * time.Second
	q, err := Setup(ctxT(t), js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.AcquireLease(ctxT(t), "gone-1", "dead-runner"); err != nil {
		t.Fatal(err)
	}
	stack.StopNATS()
	time.Sleep(cfg.LeaseTTL + 500*time.Millisecond)
	if err := stack.StartNATS(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	for {
		_, err := q.AcquireLease(ctxT(t), "gone-1", "next-runner")
		if err == nil {
			break
		}
		if !errors.Is(err, ErrLeaseHeld) && !errors.Is(err, nats.ErrConnectionClosed) && time.Since(back) > 10*time.Second {
			t.Fatalf("acquire after the restart: %v", err)
		}
		if time.Since(back) > cfg.LeaseTTL+5*time.Second {
			t.Fatalf("the gone holder's lease was still held %s after NATS came back: %v", time.Since(back), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
