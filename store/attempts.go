package store

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/runnerd/runnerd"
)

// Wait says why a claimed run is not making progress: its runner waits for a
// server to come back. It is written only while the store itself is
// reachable (a run waiting on MongoDB cannot say so).
type Wait struct {
	On    string    `bson:"on" json:"on"`                           // "s3", "nats", "mongodb"
	Since time.Time `bson:"since" json:"since"`                     // when the wait began
	Error string    `bson:"error,omitempty" json:"error,omitempty"` // the last error seen
}

// CountLostAttempt adds one to the run's crashes for an attempt whose runner
// vanished before it could record how the attempt ended (the run was still
// running when a new claim took it). Fenced by epoch; it returns the run.
func (s *Store) CountLostAttempt(ctx context.Context, id string, epoch uint64) (*Run, error) {
	r, err := s.apply(ctx, id, guard{epoch: &epoch},
		bson.D{
			{Key: "$inc", Value: bson.D{{Key: "crashes", Value: 1}}},
			{Key: "$set", Value: bson.D{{Key: "updated_at", Value: now()}}},
		}, withDoc)
	if err != nil {
		return nil, fmt.Errorf("count a lost attempt of run %s: %w", id, err)
	}
	return r, nil
}

// RequeueCrashed puts a claimed run back to queued after its child crashed,
// was OOM-killed or stopped answering, saving the step state and counting
// the crash against the run's attempts, in one fenced write.
func (s *Store) RequeueCrashed(ctx context.Context, id string, epoch uint64, reason runnerd.Reason, steps runnerd.StepStates) error {
	set := bson.D{{Key: "steps", Value: steps}}
	inc := bson.D{{Key: "crashes", Value: 1}}
	if _, _, err := s.transition(ctx, id, change{to: runnerd.StatusQueued, reason: reason, epoch: &epoch, set: set, inc: inc}); err != nil {
		return fmt.Errorf("requeue crashed run %s: %w", id, err)
	}
	return nil
}

// FinishCrashed fails a claimed run whose child crashed on its last allowed
// attempt: the step state, the status and the crash count in one fenced
// write.
func (s *Store) FinishCrashed(ctx context.Context, id string, epoch uint64, reason runnerd.Reason, steps runnerd.StepStates) (time.Time, error) {
	set := bson.D{{Key: "steps", Value: steps}}
	inc := bson.D{{Key: "crashes", Value: 1}}
	_, at, err := s.transition(ctx, id, change{to: runnerd.StatusFailed, reason: reason, epoch: &epoch, set: set, inc: inc})
	if err != nil {
		return time.Time{}, fmt.Errorf("fail crashed run %s: %w", id, err)
	}
	return at, nil
}

// SetWaiting records (w non-nil) or clears (nil) why a claimed run waits;
// fenced by epoch.
func (s *Store) SetWaiting(ctx context.Context, id string, epoch uint64, w *Wait) error {
	update := bson.D{{Key: "$set", Value: bson.D{{Key: "waiting", Value: w}, {Key: "updated_at", Value: now()}}}}
	if w == nil {
		update = bson.D{
			{Key: "$unset", Value: bson.D{{Key: "waiting", Value: ""}}},
			{Key: "$set", Value: bson.D{{Key: "updated_at", Value: now()}}},
		}
	}
	if _, err := s.apply(ctx, id, guard{epoch: &epoch}, update, noDoc); err != nil {
		return fmt.Errorf("record the wait of run %s: %w", id, err)
	}
	return nil
}
