package queue

import (
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
// next Renew (ErrLeaseLost).
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

// leaseValue is the JSON stored under the run's key.
type leaseValue struct {
	RunnerID   string    `json:"runner_id"`
	AcquiredAt time.Time `json:"acquired_at"`
}

// AcquireLease creates the run's key for runnerID, or returns ErrLeaseHeld
// if it exists (another runner holds the run, or held it and its lease has
// not expired yet).
func (q *Queue) AcquireLease(ctx context.Context, runID, runnerID string) (*Lease, error) {
	if err := ValidateRunID(runID); err != nil {
		return nil, fmt.Errorf("acquire lease: %w", err)
	}
	if runnerID == "" {
		return nil, fmt.Errorf("acquire lease for run %s: empty runner id", runID)
	}
	value, err := json.Marshal(leaseValue{RunnerID: runnerID, AcquiredAt: time.Now().UTC()})
	if err != nil {
		return nil, fmt.Errorf("acquire lease for run %s: %w", runID, err)
	}
	rev, err := q.leases.Create(ctx, runID, value)
	if isCASConflict(err) {
		return nil, fmt.Errorf("acquire lease for run %s: %w", runID, ErrLeaseHeld)
	}
	if err != nil {
		return nil, fmt.Errorf("acquire lease for run %s: %w", runID, err)
	}
	return &Lease{kv: q.leases, runID: runID, runnerID: runnerID, epoch: rev, value: value, rev: rev}, nil
}

// isCASConflict reports a write refused because the key's revision was not
// the expected one. ErrKeyRevisionMismatch is tested first (NOTES.md): a
// stale Update also matches ErrKeyExists, and replicated streams report
// the conflict under another code that only the first one maps.
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
// the bucket TTL. ErrLeaseLost means the key expired or another runner took
// it: stop the run. Any other error (timeout, connection) leaves the lease
// in doubt; retry while the TTL allows.
func (l *Lease) Renew(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released {
		return fmt.Errorf("renew lease for run %s: released: %w", l.runID, ErrLeaseLost)
	}
	rev, err := l.kv.Update(ctx, l.runID, l.value, l.rev)
	if isCASConflict(err) {
		return fmt.Errorf("renew lease for run %s (epoch %d): %w", l.runID, l.epoch, ErrLeaseLost)
	}
	if err != nil {
		return fmt.Errorf("renew lease for run %s (epoch %d): %w", l.runID, l.epoch, err)
	}
	l.rev = rev
	return nil
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
