package store

import (
	"context"
	"fmt"
	"hash/fnv"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/runnerd/runnerd"
)

// StoredEvent is an event as stored: its run and its place in the run's
// stream. Seq starts at 1 and grows by one per event.
type StoredEvent struct {
	RunID         string `bson:"run_id" json:"run_id"`
	Seq           int64  `bson:"seq" json:"seq"`
	runnerd.Event `bson:",inline"`
}

// AppendEvents appends a batch of events to the run's stream and returns the
// seq of the last one; fenced by epoch. Seqs are allocated by one atomic,
// fenced increment of the run's event_seq, then the batch is inserted in one
// ordered call, so events of one run never share a seq (the unique
// (run_id, seq) index guards it too). Appends to one run are serialized in
// this process, so a reader following the stream by seq sees a prefix and
// never skips an event still being written. An append that fails after the
// allocation leaves a gap in the seqs; nothing is ever written twice.
// An empty batch appends nothing and returns 0.
func (s *Store) AppendEvents(ctx context.Context, id string, epoch uint64, events []runnerd.Event) (int64, error) {
	return s.Record(ctx, id, epoch, events, nil)
}

// Record is AppendEvents that also saves the run's step state (when steps
// is not nil) in the same fenced write that allocates the seqs: one write
// per batch of events instead of two.
func (s *Store) Record(ctx context.Context, id string, epoch uint64, events []runnerd.Event, steps runnerd.StepStates) (int64, error) {
	if len(events) == 0 {
		if steps != nil {
			return 0, s.SaveSteps(ctx, id, epoch, steps)
		}
		return 0, nil
	}
	mu := s.appends.lock(id)
	mu.Lock()
	defer mu.Unlock()

	n := int64(len(events))
	set := bson.D{{Key: "updated_at", Value: now()}}
	if steps != nil {
		set = append(set, bson.E{Key: "steps", Value: steps})
	}
	update := bson.D{
		{Key: "$inc", Value: bson.D{{Key: "event_seq", Value: n}}},
		{Key: "$set", Value: set},
	}
	r, err := s.apply(ctx, id, guard{epoch: &epoch}, update, withDoc)
	if err != nil {
		return 0, fmt.Errorf("append %d events to run %s: %w", n, id, err)
	}
	last := r.EventSeq
	docs := make([]any, len(events))
	for i, e := range events {
		docs[i] = StoredEvent{RunID: id, Seq: last - n + int64(i) + 1, Event: e}
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	if _, err := s.events.InsertMany(ctx, docs, options.InsertMany().SetOrdered(true)); err != nil {
		return 0, fmt.Errorf("append events %d-%d to run %s: %w", last-n+1, last, id, err)
	}
	return last, nil
}

// Events returns up to limit events of the run with seq > afterSeq, in seq
// order (DefaultEventsLimit when limit <= 0). `logs --follow` calls it again
// with the last seq it got.
func (s *Store) Events(ctx context.Context, id string, afterSeq int64, limit int) ([]StoredEvent, error) {
	if limit <= 0 {
		limit = DefaultEventsLimit
	}
	filter := bson.D{{Key: "run_id", Value: id}, {Key: "seq", Value: bson.D{{Key: "$gt", Value: afterSeq}}}}
	opts := options.Find().SetSort(bson.D{{Key: "seq", Value: 1}}).SetLimit(int64(limit))
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	cur, err := s.events.Find(ctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("read events of run %s: %w", id, err)
	}
	out := make([]StoredEvent, 0, limit)
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("read events of run %s: %w", id, err)
	}
	return out, nil
}

// DeleteEvents removes the run's events (retention, tests).
func (s *Store) DeleteEvents(ctx context.Context, id string) error {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	if _, err := s.events.DeleteMany(ctx, bson.D{{Key: "run_id", Value: id}}); err != nil {
		return fmt.Errorf("delete events of run %s: %w", id, err)
	}
	return nil
}

// stripedLocks serializes work per run id with a fixed set of mutexes, so no
// map of per-run locks has to be cleaned up.
type stripedLocks [64]sync.Mutex

func (l *stripedLocks) lock(id string) *sync.Mutex {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return &l[h.Sum32()%uint32(len(l))]
}
