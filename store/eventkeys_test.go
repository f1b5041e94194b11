package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/runnerd/runnerd"
)

// Events are stored under the _id "<run id>:<seq>", and where the server
// would scan for a filter on run_id (FerretDB on SQLite, which finds
// documents fast by _id alone) a run's events are read, reconciled and
// purged by those _ids: no command on the events collection filters on
// anything else.
func TestEventsAreKeyedAndReadByID(t *testing.T) {
	s, uri := openTestURI(t)
	ps, proxy := openProxied(t, s, uri)
	if os.Getenv("RUNNERD_TEST_MONGO_URI") == "" && !s.eventKeys {
		t.Fatal("the embedded FerretDB (SQLite) scans for a filter on run_id, but the store does not read events by key there")
	}
	ctx := context.Background()
	var mu sync.Mutex
	var byQuery []string
	proxy.Watch(func(cmd, coll string, msg []byte) {
		if coll == eventsCollection && (cmd == "find" || cmd == "delete") && bytes.Contains(msg, []byte("run_id")) {
			mu.Lock()
			byQuery = append(byQuery, cmd)
			mu.Unlock()
		}
	})
	mustCreate(t, ps, "keyed")
	if _, err := ps.Claim(ctx, "keyed", "r", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := ps.Record(ctx, "keyed", 1, logBatch(1, 40, "a")); err != nil {
		t.Fatal(err)
	}
	// Leftovers of an insert never made visible, then replaced.
	if err := ps.insertEvents(ctx, "keyed", 1, logBatch(41, 3, "leftover")); err != nil {
		t.Fatal(err)
	}
	if _, err := ps.Record(ctx, "keyed", 1, logBatch(41, 2, "b")); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []int64{1, 40, 42} {
		var e StoredEvent
		if err := s.events.FindOne(ctx, bson.D{{Key: "_id", Value: eventID("keyed", seq)}}).Decode(&e); err != nil || e.Seq != seq {
			t.Fatalf("event %d under _id %q: %+v %v", seq, eventID("keyed", seq), e, err)
		}
	}
	evs, err := ps.Events(ctx, "keyed", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, evs, 1, 42)
	if evs[40].Text != "b 0" || evs[41].Text != "b 1" {
		t.Fatalf("events 41, 42: %q %q, want the second batch's", evs[40].Text, evs[41].Text)
	}
	if evs, err = ps.Events(ctx, "keyed", 30, 5); err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, evs, 31, 35)
	if err := ps.Finish(ctx, "keyed", 1, runnerd.StatusSucceeded, runnerd.ReasonCompleted, nil); err != nil {
		t.Fatal(err)
	}
	p, err := ps.Purge(ctx, "keyed", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// The 42 visible events and the leftover at 43.
	if n, err := s.events.CountDocuments(ctx, bson.D{{Key: "run_id", Value: "keyed"}}); err != nil || n != 0 || p.Events != 43 {
		t.Fatalf("after the purge: %d events left (%v); purge removed %d, want 43", n, err, p.Events)
	}
	mu.Lock()
	defer mu.Unlock()
	if s.eventKeys && len(byQuery) != 0 {
		t.Fatalf("commands on events by run_id where the server scans for them: %v, want none", byQuery)
	}
}

// Events stored before they were keyed (an ObjectID _id, as the driver
// gives) are still read, reconciled over and purged, by queries on run and
// seq.
func TestEventsStoredBeforeKeysStillWork(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	mustCreate(t, s, "old")
	if _, err := s.Claim(ctx, "old", "r", 1); err != nil {
		t.Fatal(err)
	}
	// As the store used to write them: events 1-3 visible, 4 a leftover.
	b := logBatch(1, 4, "old")
	for i, e := range b.Events {
		if _, err := s.events.InsertOne(ctx, StoredEvent{RunID: "old", Seq: int64(i + 1), Epoch: 1, Event: e}); err != nil {
			t.Fatal(err)
		}
	}
	// The batch that wrote them, retried: it finds 1-3 landed.
	if _, err := s.Record(ctx, "old", 1, Batch{First: 1, Events: b.Events[:3]}); err != nil {
		t.Fatalf("a retry over events stored without keys: %v", err)
	}
	// The next batch replaces the leftover 4.
	if _, err := s.Record(ctx, "old", 1, logBatch(4, 2, "new")); err != nil {
		t.Fatalf("a batch over a leftover stored without a key: %v", err)
	}
	evs, err := s.Events(ctx, "old", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, evs, 1, 5)
	var got []string
	for _, e := range evs {
		got = append(got, e.Text)
	}
	if want := "[old 0 old 1 old 2 new 0 new 1]"; fmt.Sprint(got) != want {
		t.Fatalf("events %v, want %s", got, want)
	}
	if evs, err = s.Events(ctx, "old", 3, 0); err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, evs, 4, 5)
	if err := s.Finish(ctx, "old", 1, runnerd.StatusSucceeded, runnerd.ReasonCompleted, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Purge(ctx, "old", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.events.CountDocuments(ctx, bson.D{{Key: "run_id", Value: "old"}}); err != nil || n != 0 {
		t.Fatalf("after the purge: %d events left (%v)", n, err)
	}
}

func checkSeqs(t *testing.T, evs []StoredEvent, first, last int64) {
	t.Helper()
	if int64(len(evs)) != last-first+1 {
		t.Fatalf("%d events, want seqs %d-%d", len(evs), first, last)
	}
	for i, e := range evs {
		if e.Seq != first+int64(i) || e.RunID == "" {
			t.Fatalf("event %d: seq %d run %q, want seq %d", i, e.Seq, e.RunID, first+int64(i))
		}
	}
}
