package store

import (
	"bytes"
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/runnerd/runnerd"
)

// Where the server scans for a filter on run_id (the embedded FerretDB on
// SQLite), the visible events are copied under "<run id>:<seq>" and read
// by those keys: no command on the events collection filters on run_id to
// read them. A missing copy falls back to the query; a purge removes the
// copies; events never made visible get no copy.
func TestVisibleEventsAreCopiedAndReadByKey(t *testing.T) {
	t.Parallel()
	s, uri := openTestURI(t)
	if os.Getenv("RUNNERD_TEST_MONGO_URI") != "" {
		t.Skip("the copies are for FerretDB on SQLite, the embedded server")
	}
	ps, proxy := openProxied(t, s, uri)
	ctx := context.Background()
	if !ps.keyedEvents(ctx) {
		t.Fatal("the embedded FerretDB (SQLite) scans for a filter on run_id, but the store does not copy events by key there")
	}
	var mu sync.Mutex
	var queries int
	proxy.Watch(func(cmd, coll string, msg []byte) {
		if coll == eventsCollection && cmd == "find" && bytes.Contains(msg, []byte("run_id")) {
			mu.Lock()
			queries++
			mu.Unlock()
		}
	})
	mustCreate(t, ps, "copied")
	if _, err := ps.Claim(ctx, "copied", "r", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := ps.Record(ctx, "copied", 1, logBatch(1, 40, "a")); err != nil {
		t.Fatal(err)
	}
	// Inserted, never made visible: no copy.
	if err := ps.insertEvents(ctx, "copied", 1, logBatch(41, 3, "leftover")); err != nil {
		t.Fatal(err)
	}
	if n, err := s.copies.CountDocuments(ctx, bson.D{{Key: "_id", Value: eventCopyID("copied", 41)}}); err != nil || n != 0 {
		t.Fatalf("a copy of an event never made visible: %d %v", n, err)
	}
	if _, err := ps.Record(ctx, "copied", 1, logBatch(41, 2, "b")); err != nil {
		t.Fatal(err)
	}
	read := func(after int64, limit int, first, last int64) []StoredEvent {
		t.Helper()
		evs, err := ps.Events(ctx, "copied", after, limit)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(evs)) != last-first+1 {
			t.Fatalf("%d events after %d, want seqs %d-%d", len(evs), after, first, last)
		}
		for i, e := range evs {
			if e.Seq != first+int64(i) || e.RunID != "copied" || e.Epoch != 1 {
				t.Fatalf("event %d: %+v, want seq %d", i, e, first+int64(i))
			}
		}
		return evs
	}
	// The batch over the leftovers searched for them (the reconcile);
	// from here on only reads count.
	mu.Lock()
	queries = 0
	mu.Unlock()
	evs := read(0, 0, 1, 42)
	if evs[40].Text != "b 0" || evs[41].Text != "b 1" {
		t.Fatalf("events 41, 42: %q %q, want the second batch's", evs[40].Text, evs[41].Text)
	}
	read(30, 5, 31, 35)
	mu.Lock()
	if queries != 0 {
		t.Fatalf("%d queries of events by run_id with every copy there, want none", queries)
	}
	mu.Unlock()

	// A copy lost (its writer died between the two writes): the query.
	if _, err := s.copies.DeleteOne(ctx, bson.D{{Key: "_id", Value: eventCopyID("copied", 20)}}); err != nil {
		t.Fatal(err)
	}
	if evs := read(0, 0, 1, 42); evs[19].Text != "a 19" {
		t.Fatalf("event 20 read by the query: %q", evs[19].Text)
	}
	mu.Lock()
	if queries == 0 {
		t.Fatal("a missing copy did not make Events query the events")
	}
	mu.Unlock()

	if _, err := ps.Finish(ctx, "copied", 1, runnerd.StatusSucceeded, runnerd.ReasonCompleted, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ps.Purge(ctx, "copied", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.copies.CountDocuments(ctx, bson.D{{Key: "run_id", Value: "copied"}}); err != nil || n != 0 {
		t.Fatalf("after the purge: %d copies left (%v)", n, err)
	}
}

// The run's last batch, written with its outcome (FinishWith), is copied
// too.
func TestOutcomeBatchIsCopied(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	if !s.keyedEvents(ctx) {
		t.Skip("the server evaluates a filter on run_id itself: no copies")
	}
	mustCreate(t, s, "fin")
	if _, err := s.Claim(ctx, "fin", "r", 1); err != nil {
		t.Fatal(err)
	}
	b := logBatch(1, 3, "last")
	if _, err := s.FinishWith(ctx, "fin", 1, runnerd.StatusSucceeded, runnerd.ReasonCompleted, b); err != nil {
		t.Fatal(err)
	}
	if n, err := s.copies.CountDocuments(ctx, bson.D{{Key: "run_id", Value: "fin"}}); err != nil || n != 3 {
		t.Fatalf("%d copies of the outcome's batch (%v), want 3", n, err)
	}
}
