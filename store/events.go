package store

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"reflect"
	"strconv"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/runnerd/runnerd"
)

// StoredEvent is an event as stored: its run, its place in the run's
// stream and the epoch of the attempt that wrote it. Seq starts at 1 and
// grows by one per event.
type StoredEvent struct {
	RunID         string `bson:"run_id" json:"run_id"`
	Seq           int64  `bson:"seq" json:"seq"`
	Epoch         uint64 `bson:"epoch,omitempty" json:"epoch,omitempty"`
	runnerd.Event `bson:",inline"`
}

// Batch is one write of a run's events, with its step state. A batch gets
// its seqs once, when it is made: First is the run's EventSeq + 1 for the
// first batch of an attempt (Claim returns the run) and the last seq of
// the batch before + 1 after it. A Record retried with the same batch
// (after a timeout whose write did land, wholly or in part) therefore
// writes each event once.
type Batch struct {
	First  int64 // seq of Events[0]
	Events []runnerd.Event
	Steps  runnerd.StepStates // saved with the events; nil: left as stored
}

// Last is the seq of the batch's last event (First-1 when it has none).
func (b Batch) Last() int64 { return b.First + int64(len(b.Events)) - 1 }

// Record appends a batch of events to the run's stream and saves its step
// state (when b.Steps is not nil), fenced by epoch; it returns the last
// seq. The events are inserted first, marked with the epoch, then made
// visible by one fenced write that moves the run's event_seq from
// b.First-1 to b.Last() and saves the steps: Events returns only seqs up to
// event_seq, so a runner that lost the run leaves nothing a reader sees,
// and events of one run never share a seq (the unique (run_id, seq) index
// guards it too). A retry of a batch finds the events that landed (same
// seq, same content) and inserts only the others; events left by an
// earlier attempt that never made them visible are replaced. Nothing is
// ever written twice.
//
// A batch whose First is not right after the stored event_seq (and that
// did not land already) gives ErrSeqConflict. A batch without events saves
// the steps alone and returns 0.
func (s *Store) Record(ctx context.Context, id string, epoch uint64, b Batch) (int64, error) {
	if len(b.Events) == 0 {
		if b.Steps != nil {
			return 0, s.SaveSteps(ctx, id, epoch, b.Steps)
		}
		return 0, nil
	}
	if b.First < 1 {
		return 0, fmt.Errorf("append events to run %s: first seq %d: seqs start at 1", id, b.First)
	}
	mu := s.appends.lock(id)
	mu.Lock()
	defer mu.Unlock()
	return s.record(ctx, id, epoch, b)
}

func (s *Store) record(ctx context.Context, id string, epoch uint64, b Batch) (int64, error) {
	first, last := b.First, b.Last()
	if err := s.insertEvents(ctx, id, epoch, b); err != nil {
		return 0, fmt.Errorf("append events %d-%d to run %s: %w", first, last, id, err)
	}
	set := bson.D{{Key: "event_seq", Value: last}, {Key: "updated_at", Value: now()}}
	if b.Steps != nil {
		set = append(set, bson.E{Key: "steps", Value: b.Steps})
	}
	before := first - 1
	g := guard{epoch: &epoch, seq: &before, landed: func(r *Run) bool { return r.EventSeq == last }}
	if _, err := s.apply(ctx, id, g, bson.D{{Key: "$set", Value: set}}, noDoc); err != nil {
		return 0, fmt.Errorf("append events %d-%d to run %s: %w", first, last, id, err)
	}
	s.copyVisible(ctx, id, epoch, b)
	return last, nil
}

// AppendEvents is Record of events alone, numbered after the run's stored
// event_seq. For callers that do not retry: a retry numbers the events
// again.
func (s *Store) AppendEvents(ctx context.Context, id string, epoch uint64, events []runnerd.Event) (int64, error) {
	if len(events) == 0 {
		return 0, nil
	}
	mu := s.appends.lock(id)
	mu.Lock()
	defer mu.Unlock()
	r, err := s.get(ctx, id)
	if err != nil {
		return 0, fmt.Errorf("append events to run %s: %w", id, err)
	}
	return s.record(ctx, id, epoch, Batch{First: r.EventSeq + 1, Events: events})
}

// maxInsertTries bounds the rounds of insertEvents that meet events in the
// way. A round is no plain retry (it inserts what the last one found
// missing), hence a loop of its own rather than backoff.Retry.
const maxInsertTries = 4

// insertEvents inserts the batch's events, stamped with epoch. Where a seq
// is taken already: by the same event from this epoch, it is the batch
// landing again and is skipped; by an event of this or an older epoch that
// no write made visible (seq > the run's event_seq), it is a leftover and
// is replaced; by a newer epoch, the caller lost the run (ErrFenced).
func (s *Store) insertEvents(ctx context.Context, id string, epoch uint64, b Batch) error {
	want := make([]StoredEvent, len(b.Events))
	for i, e := range b.Events {
		want[i] = StoredEvent{RunID: id, Seq: b.First + int64(i), Epoch: epoch, Event: e}
	}
	todo := want
	for range maxInsertTries {
		err := s.insertMany(ctx, todo)
		if err == nil || !mongo.IsDuplicateKeyError(err) {
			return err
		}
		if todo, err = s.reconcileEvents(ctx, id, epoch, b, want); err != nil {
			return err
		}
		if len(todo) == 0 {
			return nil
		}
	}
	return errContended
}

func (s *Store) insertMany(ctx context.Context, evs []StoredEvent) error {
	docs := make([]any, len(evs))
	for i := range evs {
		docs[i] = evs[i]
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	_, err := s.events.InsertMany(ctx, docs, options.InsertMany().SetOrdered(true))
	return err
}

// reconcileEvents reads what holds the batch's seqs, removes leftovers and
// returns the events still to insert.
func (s *Store) reconcileEvents(ctx context.Context, id string, epoch uint64, b Batch, want []StoredEvent) ([]StoredEvent, error) {
	run, err := s.get(ctx, id)
	if err != nil {
		return nil, err
	}
	if run.Epoch != epoch {
		return nil, fmt.Errorf("epoch %d, stored epoch %d: %w", epoch, run.Epoch, ErrFenced)
	}
	held, err := s.eventsBetween(ctx, id, b.First, b.Last())
	if err != nil {
		return nil, err
	}
	var todo []StoredEvent
	for _, w := range want {
		h, ok := held[w.Seq]
		switch {
		case !ok:
			todo = append(todo, w)
		case sameEvent(h.StoredEvent, w):
			// landed by an earlier try of this batch
		case h.Epoch > epoch:
			return nil, fmt.Errorf("seq %d written by epoch %d, caller's epoch %d: %w", w.Seq, h.Epoch, epoch, ErrFenced)
		case w.Seq <= run.EventSeq:
			return nil, fmt.Errorf("seq %d is stored with other content: %w", w.Seq, ErrSeqConflict)
		default:
			if err := s.deleteEvent(ctx, h.ID); err != nil {
				return nil, fmt.Errorf("remove the leftover event %d: %w", w.Seq, err)
			}
			todo = append(todo, w)
		}
	}
	return todo, nil
}

// Copies of the visible events, by key. FerretDB on SQLite finds a
// document without reading its whole collection only by a lone _id, so a
// run's events would cost a scan of every event stored (seconds at 100k).
// There the store also keeps a copy of each event once it is visible, in
// EventCopiesCollection under _id "<run id>:<seq>" (run ids have no ':'),
// and Events reads the copies by lookups. The events themselves cannot be
// keyed so: a leftover is replaced by a delete by _id, which on a key per
// seq could remove a newer attempt's event (FerretDB has no conditional
// delete). A visible event never changes, so its copy never conflicts: a
// copy is written only by the writer whose fenced write made the batch
// visible, and inserting it again (a retry) meets the same copy. A copy
// that is missing (the writer died between the two writes, or events older
// than the copies) makes Events fall back to the query.

// copyVisible copies the events of b, visible now, where they are read by
// key. Best effort: a copy that failed is a slower read, not a wrong one.
func (s *Store) copyVisible(ctx context.Context, id string, epoch uint64, b Batch) {
	if len(b.Events) == 0 || !s.keyedEvents(ctx) {
		return
	}
	docs := make([]any, len(b.Events))
	for i, e := range b.Events {
		docs[i] = EventCopy(StoredEvent{RunID: id, Seq: b.First + int64(i), Epoch: epoch, Event: e})
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	// Unordered: copies a retry made already are duplicates; the rest land.
	_, _ = s.copies.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
}

// EventCopy is e as EventCopiesCollection holds it: for tools that load
// events straight into the store's collections (benchmarks).
func EventCopy(e StoredEvent) any { return heldEvent{ID: eventCopyID(e.RunID, e.Seq), StoredEvent: e} }

func eventCopyID(id string, seq int64) string { return id + ":" + strconv.FormatInt(seq, 10) }

// lookupChunk is how many lookups of copies are in flight at once.
const lookupChunk = 16

// lookupCopies reads the copies of events first..last of run id; ok is
// false when one is missing.
func (s *Store) lookupCopies(ctx context.Context, id string, first, last int64) (out []StoredEvent, ok bool, err error) {
	if last < first {
		return nil, true, nil
	}
	found := make([]*heldEvent, last-first+1)
	err = inChunks(int64(len(found)), func(i int64) error {
		var h heldEvent
		err := s.copies.FindOne(ctx, bson.D{{Key: "_id", Value: eventCopyID(id, first+i)}}).Decode(&h)
		switch {
		case err == nil:
			found[i] = &h
		case !errors.Is(err, mongo.ErrNoDocuments):
			return err
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	out = make([]StoredEvent, 0, len(found))
	for _, h := range found {
		if h == nil {
			return nil, false, nil
		}
		out = append(out, h.StoredEvent)
	}
	return out, true, nil
}

// inChunks calls f(0) … f(n-1), lookupChunk calls at a time, and stops
// after the first chunk with an error.
func inChunks(n int64, f func(i int64) error) error {
	errs := make([]error, lookupChunk)
	for from := int64(0); from < n; from += lookupChunk {
		var wg sync.WaitGroup
		for i := from; i < min(from+lookupChunk, n); i++ {
			wg.Go(func() { errs[i-from] = f(i) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}
	return nil
}

// heldEvent is a stored event with its _id.
type heldEvent struct {
	ID          any `bson:"_id"`
	StoredEvent `bson:",inline"`
}

// eventsBetween reads the stored events of run id with first <= seq <= last,
// visible or not.
func (s *Store) eventsBetween(ctx context.Context, id string, first, last int64) (map[int64]heldEvent, error) {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	filter := bson.D{{Key: "run_id", Value: id}, {Key: "seq", Value: bson.D{{Key: "$gte", Value: first}, {Key: "$lte", Value: last}}}}
	cur, err := s.events.Find(ctx, filter)
	if err != nil {
		return nil, err
	}
	var held []heldEvent
	if err := cur.All(ctx, &held); err != nil {
		return nil, err
	}
	out := make(map[int64]heldEvent, len(held))
	for _, h := range held {
		out[h.Seq] = h
	}
	return out, nil
}

func (s *Store) deleteEvent(ctx context.Context, oid any) error {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	_, err := s.events.DeleteOne(ctx, bson.D{{Key: "_id", Value: oid}})
	return err
}

// sameEvent compares a stored event with one to store, as BSON holds it
// (times in milliseconds).
func sameEvent(stored, w StoredEvent) bool {
	raw, err := bson.Marshal(w)
	if err != nil {
		return false
	}
	var round StoredEvent
	if err := bson.Unmarshal(raw, &round); err != nil {
		return false
	}
	return reflect.DeepEqual(stored, round)
}

// Events returns up to limit events of the run with seq > afterSeq, in seq
// order (DefaultEventsLimit when limit <= 0), up to the run's event_seq:
// events whose write did not complete are not returned. `logs --follow`
// calls it again with the last seq it got.
func (s *Store) Events(ctx context.Context, id string, afterSeq int64, limit int) ([]StoredEvent, error) {
	if limit <= 0 {
		limit = DefaultEventsLimit
	}
	run, err := s.get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read events of run %s: %w", id, err)
	}
	if run.EventSeq <= afterSeq {
		return nil, nil
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	if s.keyedEvents(ctx) {
		out, ok, err := s.lookupCopies(ctx, id, afterSeq+1, min(run.EventSeq, afterSeq+int64(limit)))
		if err != nil {
			return nil, fmt.Errorf("read events of run %s: %w", id, err)
		}
		if ok {
			return out, nil
		}
	}
	filter := bson.D{{Key: "run_id", Value: id}, {Key: "seq", Value: bson.D{{Key: "$gt", Value: afterSeq}, {Key: "$lte", Value: run.EventSeq}}}}
	opts := options.Find().SetSort(bson.D{{Key: "seq", Value: 1}}).SetLimit(int64(limit))
	cur, err := s.events.Find(ctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("read events of run %s: %w", id, err)
	}
	out := make([]StoredEvent, 0, min(limit, int(run.EventSeq-afterSeq)))
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("read events of run %s: %w", id, err)
	}
	return out, nil
}

// stripedLocks serializes work per run id with a fixed set of mutexes, so no
// map of per-run locks has to be cleaned up.
type stripedLocks [64]sync.Mutex

func (l *stripedLocks) lock(id string) *sync.Mutex {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return &l[h.Sum32()%uint32(len(l))]
}
