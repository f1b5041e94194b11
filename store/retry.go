package store

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/runnerd/runnerd"
)

// PastRun is how an earlier round of a run ended, kept when it was retried.
type PastRun struct {
	Attempt     int            `bson:"attempt" json:"attempt"`
	Status      runnerd.Status `bson:"status" json:"status"`
	Reason      runnerd.Reason `bson:"reason,omitempty" json:"reason,omitempty"`
	StartedAt   time.Time      `bson:"started_at,omitempty" json:"started_at,omitzero"`
	FinishedAt  time.Time      `bson:"finished_at,omitempty" json:"finished_at,omitzero"`
	RetriedAt   time.Time      `bson:"retried_at" json:"retried_at"`
	FromScratch bool           `bson:"from_scratch,omitempty" json:"from_scratch,omitempty"`
}

// Retry queues a failed or cancelled run again (`runnerd retry`), under a
// new publish generation, and returns it. The round that ended is appended
// to History; the crash count starts again. Succeeded steps keep their state
// and outputs, so they are not run again, unless fromScratch clears every
// step's state. It is not fenced: no runner owns a finished run. Any other
// status gives ErrIllegalTransition.
func (s *Store) Retry(ctx context.Context, id string, fromScratch bool) (*Run, error) {
	cur, err := s.get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("retry run %s: %w", id, err)
	}
	if cur.Status != runnerd.StatusFailed && cur.Status != runnerd.StatusCancelled {
		return nil, fmt.Errorf("retry run %s: it is %s: %w (only a failed or cancelled run is retried)", id, cur.Status, ErrIllegalTransition)
	}
	t := now()
	past := PastRun{Attempt: cur.Attempt, Status: cur.Status, Reason: cur.Reason, StartedAt: cur.StartedAt,
		FinishedAt: cur.FinishedAt, RetriedAt: t, FromScratch: fromScratch}
	set := bson.D{
		{Key: "status", Value: runnerd.StatusQueued},
		{Key: "cancel_requested", Value: false},
		{Key: "crashes", Value: 0},
		{Key: "updated_at", Value: t},
	}
	unset := bson.D{{Key: "reason", Value: ""}, {Key: "finished_at", Value: ""}, {Key: "waiting", Value: ""}}
	if fromScratch {
		unset = append(unset, bson.E{Key: "steps", Value: ""})
	}
	update := bson.D{
		{Key: "$set", Value: set},
		{Key: "$unset", Value: unset},
		{Key: "$inc", Value: bson.D{{Key: "generation", Value: 1}}},
		{Key: "$push", Value: bson.D{{Key: "history", Value: past}}},
	}
	// Guarded by the status just read: a retry racing another one (or
	// anything else) finds the run changed and is refused.
	r, err := s.apply(ctx, id, guard{from: []runnerd.Status{cur.Status}, to: runnerd.StatusQueued}, update, withDoc)
	if err != nil {
		return nil, fmt.Errorf("retry run %s: %w", id, err)
	}
	return r, nil
}
