package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Lease is a runner's claim on a run: the run's key in the lease bucket.
// The bucket TTL expires a lease its holder stops renewing; every write
// changes the key's revision, so a holder that fell behind finds out on its
// next Renew.
//
// The epoch is the key's revision when the lease was first taken. A holder
// that re-takes its own lease after an outage (the key expired while NATS was
// away) gets a new revision but keeps its epoch: any other runner that takes
// the lease later gets a greater revision than both, so fencing by the first
// one is enough.
type Lease struct {
	kv       jetstream.KeyValue
	runID    string
	runnerID string
	epoch    uint64
	value    []byte

	mu       sync.Mutex
	rev      uint64 // the key's revision as we last wrote it
	released bool
}

// leaseValue is the JSON stored under the run's key. AcquiredAt makes the
// value of each acquisition unique, so a holder recognises its own write.
type leaseValue struct {
	RunnerID   string    `json:"runner_id"`
	AcquiredAt time.Time `json:"acquired_at"`
}

// Holder is what the lease bucket says about a run's lease.
type Holder struct {
	RunnerID string
	Revision uint64
	// Age is how long ago the key was last written, by the server's clock
	// against ours: only a hint.
	Age time.Duration
}

// AcquireLease creates the run's key for runnerID, or returns ErrLeaseHeld
// if it exists (another runner holds the run, or held it and its lease has
// not expired yet).
func (q *Queue) AcquireLease(ctx context.Context, runID, runnerID string) (*Lease, error) {
	l, err := q.newLease(runID, runnerID)
	if err != nil {
		return nil, fmt.Errorf("acquire lease: %w", err)
	}
	rev, err := q.leases.Create(ctx, runID, l.value)
	if isCASConflict(err) {
		return nil, fmt.Errorf("acquire lease for run %s: %w", runID, ErrLeaseHeld)
	}
	if err != nil {
		return nil, fmt.Errorf("acquire lease for run %s: %w", runID, err)
	}
	l.epoch, l.rev = rev, rev
	return l, nil
}

// TakeOverLease replaces the lease at revision rev with a new one of
// runnerID's, if the key is still at rev: for a lease whose holder is known
// to be gone (a previous process with the same runner id) without waiting
// for the TTL. ErrLeaseHeld if the key moved on meanwhile.
func (q *Queue) TakeOverLease(ctx context.Context, runID, runnerID string, rev uint64) (*Lease, error) {
	l, err := q.newLease(runID, runnerID)
	if err != nil {
		return nil, fmt.Errorf("take over lease: %w", err)
	}
	newRev, err := q.leases.Update(ctx, runID, l.value, rev)
	if isCASConflict(err) {
		return nil, fmt.Errorf("take over lease for run %s at revision %d: %w", runID, rev, ErrLeaseHeld)
	}
	if err != nil {
		return nil, fmt.Errorf("take over lease for run %s: %w", runID, err)
	}
	l.epoch, l.rev = newRev, newRev
	return l, nil
}

// LeaseHolder reads who holds the run's lease; ErrNoLease if nobody does.
func (q *Queue) LeaseHolder(ctx context.Context, runID string) (Holder, error) {
	e, err := q.leases.Get(ctx, runID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Holder{}, fmt.Errorf("lease of run %s: %w", runID, ErrNoLease)
	}
	if err != nil {
		return Holder{}, fmt.Errorf("lease of run %s: %w", runID, err)
	}
	var v leaseValue
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return Holder{}, fmt.Errorf("lease of run %s: unreadable value: %w", runID, err)
	}
	return Holder{RunnerID: v.RunnerID, Revision: e.Revision(), Age: time.Since(e.Created())}, nil
}

func (q *Queue) newLease(runID, runnerID string) (*Lease, error) {
	if err := ValidateRunID(runID); err != nil {
		return nil, err
	}
	if runnerID == "" {
		return nil, fmt.Errorf("run %s: empty runner id", runID)
	}
	value, err := json.Marshal(leaseValue{RunnerID: runnerID, AcquiredAt: time.Now().UTC()})
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", runID, err)
	}
	return &Lease{kv: q.leases, runID: runID, runnerID: runnerID, value: value}, nil
}

// isCASConflict reports a write refused because the key's revision was not
// the expected one. ErrKeyRevisionMismatch is tested first: a stale Update
// also matches ErrKeyExists, and replicated streams report the conflict
// under another code that only the first one maps.
func isCASConflict(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// RunID is the leased run.
func (l *Lease) RunID() string { return l.runID }

// Epoch is the key's revision at acquire: the run's fencing epoch. KV
// revisions are sequence numbers of the bucket's stream, so every later
// acquisition of any key gets a greater one; every store write for the run
// is conditional on it. (Deleting and re-creating the bucket would restart
// the sequence: never do that with runs in flight.)
func (l *Lease) Epoch() uint64 { return l.epoch }

// Renew rewrites the key if it is still at our last revision, which restarts
// the bucket TTL. If the key moved, Renew finds out why:
//   - the key is gone (it expired, e.g. while NATS was down longer than the
//     TTL, and the server dropped it at restart): nobody else holds the run,
//     so Renew creates it again, keeping the epoch;
//   - the key holds our own value at another revision (an earlier renewal
//     landed but its reply was lost): Renew adopts that revision;
//   - another runner holds it: ErrLeaseLost, stop the run.
//
// Any other error (timeout, connection) leaves the lease in doubt: retry.
func (l *Lease) Renew(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released {
		return fmt.Errorf("renew lease for run %s: released: %w", l.runID, ErrLeaseLost)
	}
	rev, err := l.kv.Update(ctx, l.runID, l.value, l.rev)
	if err == nil {
		l.rev = rev
		return nil
	}
	if !isCASConflict(err) {
		return fmt.Errorf("renew lease for run %s (epoch %d): %w", l.runID, l.epoch, err)
	}
	return l.retake(ctx)
}

// retake is Renew after a revision conflict; l.mu is held.
func (l *Lease) retake(ctx context.Context) error {
	e, err := l.kv.Get(ctx, l.runID)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		rev, err := l.kv.Create(ctx, l.runID, l.value)
		if isCASConflict(err) { // another runner was faster
			return fmt.Errorf("renew lease for run %s (epoch %d): taken by another runner after it expired: %w", l.runID, l.epoch, ErrLeaseLost)
		}
		if err != nil {
			return fmt.Errorf("re-take expired lease of run %s (epoch %d): %w", l.runID, l.epoch, err)
		}
		l.rev = rev
		return nil
	case err != nil:
		return fmt.Errorf("renew lease for run %s (epoch %d): read key: %w", l.runID, l.epoch, err)
	case bytes.Equal(e.Value(), l.value):
		l.rev = e.Revision()
		return nil
	}
	return fmt.Errorf("renew lease for run %s (epoch %d): held by another runner: %w", l.runID, l.epoch, ErrLeaseLost)
}

// Release deletes the key if it is still ours, so the next delivery need not
// wait for the TTL. If it is not (expired, or another runner holds it now)
// nothing is deleted and ErrLeaseLost is returned. Releasing twice is a no-op.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released {
		return nil
	}
	err := l.kv.Delete(ctx, l.runID, jetstream.LastRevision(l.rev))
	if isCASConflict(err) {
		l.released = true
		return fmt.Errorf("release lease for run %s (epoch %d): %w", l.runID, l.epoch, ErrLeaseLost)
	}
	if err != nil {
		return fmt.Errorf("release lease for run %s (epoch %d): %w", l.runID, l.epoch, err)
	}
	l.released = true
	return nil
}
