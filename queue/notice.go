package queue

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/runnerd/runnerd"
)

// Notices travel on core NATS, at most once, after the store write they
// announce: a client that waits for a run subscribes first, then reads the
// run, and keeps a slow poll of the store for the notice it may miss (a
// reconnect, a runner that died between its write and its publish).
const (
	// FinishedPrefix: a run's terminal or paused transition is announced on
	// <prefix>.<run_id>, with a Notice as JSON.
	FinishedPrefix = "runnerd.finished"
	// ProgressPrefix: each batch of a run's events stored is announced on
	// <prefix>.<run_id>, with a Progress as JSON, so a follower reads the
	// events when there are new ones instead of polling for them.
	ProgressPrefix = "runnerd.events"
)

// Progress says that a run's events up to Seq are stored.
type Progress struct {
	RunID string `json:"id"`
	Seq   int64  `json:"seq"`
}

// FinishedSubject is the subject of run id's notices.
func FinishedSubject(runID string) string { return FinishedPrefix + "." + runID }

// ProgressSubject is the subject of run id's progress.
func ProgressSubject(runID string) string { return ProgressPrefix + "." + runID }

// PublishNotice sends n on its run's subject (FinishedSubject). It does not wait for the
// server: a notice is a hint, and the store holds the truth.
func (q *Queue) PublishNotice(n runnerd.Notice) error { return PublishNotice(q.nc, n) }

// PublishNotice sends n on nc (for callers holding a connection, not a Queue).
func PublishNotice(nc *nats.Conn, n runnerd.Notice) error {
	if err := ValidateRunID(n.RunID); err != nil {
		return fmt.Errorf("publish notice: %w", err)
	}
	if n.At.IsZero() {
		n.At = time.Now().UTC()
	}
	if n.Tenant == "" {
		n.Tenant = n.TenantID
	}
	if n.TenantID == "" {
		n.TenantID = n.Tenant
	}
	data, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("encode notice of run %s: %w", n.RunID, err)
	}
	if err := nc.Publish(FinishedSubject(n.RunID), data); err != nil {
		return fmt.Errorf("publish notice of run %s: %w", n.RunID, err)
	}
	return nil
}

// PublishProgress says that run id's events up to seq are stored.
func (q *Queue) PublishProgress(runID string, seq int64) error {
	data, err := json.Marshal(Progress{RunID: runID, Seq: seq})
	if err != nil {
		return fmt.Errorf("encode progress of run %s: %w", runID, err)
	}
	if err := q.nc.Publish(ProgressSubject(runID), data); err != nil {
		return fmt.Errorf("publish progress of run %s: %w", runID, err)
	}
	return nil
}

// DecodeNotice reads a notice; one that is not for runID is an error.
func DecodeNotice(runID string, data []byte) (runnerd.Notice, error) {
	var n runnerd.Notice
	if err := json.Unmarshal(data, &n); err != nil {
		return runnerd.Notice{}, fmt.Errorf("decode notice of run %s: %w", runID, err)
	}
	if n.RunID != runID {
		return runnerd.Notice{}, fmt.Errorf("notice on the subject of run %s names run %q", runID, n.RunID)
	}
	return n, nil
}
