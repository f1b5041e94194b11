package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/wirefault"
)

// openProxied opens a second store on s's database through a proxy that
// can drop replies.
func openProxied(t *testing.T, s *Store, uri string) (*Store, *wirefault.Proxy) {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	p := wirefault.Start(t, u.Host)
	u.Host = p.Addr()
	ps, err := Open(context.Background(), Config{URI: u.String(), Database: s.runs.Database().Name(), Timeout: 10 * time.Second, WritePath: s.WritePath()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ps.Close(context.Background()) })
	return ps, p
}

func logBatch(first int64, n int, tag string) Batch {
	b := Batch{First: first, Steps: runnerd.StepStates{"s": {Status: runnerd.StepRunning, Outputs: map[string]string{"tag": tag}}}}
	for i := range n {
		b.Events = append(b.Events, runnerd.Event{Type: runnerd.EventLog, Step: "s", Text: fmt.Sprintf("%s %d", tag, i), Time: time.Now()})
	}
	return b
}

// A Record whose write reached the server but whose reply was lost is
// retried with the same batch: each event is stored once, under the seq
// the batch gave it, whichever of the batch's writes lost its reply.
func TestRecordRetriedAfterItsWriteLandedWritesOnce(t *testing.T) {
	t.Parallel()
	s, uri := openTestURI(t)
	ps, proxy := openProxied(t, s, uri)
	ctx := context.Background()
	mustCreate(t, s, "retry")
	if _, err := s.Claim(ctx, "retry", "r", 1); err != nil {
		t.Fatal(err)
	}
	commit := func(cmd, coll string, _ []byte) bool { return cmd == "update" && coll == runsCollection }
	if s.revision {
		commit = func(cmd, coll string, _ []byte) bool { return cmd == "insert" && coll == revisionsCollection }
	}
	cases := []struct {
		name  string
		match func(cmd, coll string, msg []byte) bool
	}{
		{"the events' insert", func(cmd, coll string, _ []byte) bool { return cmd == "insert" && coll == eventsCollection }},
		{"the write that makes them visible", commit},
		// On the revision path, the write after the revision's insert.
		{"the rewrite of the run document", func(cmd, coll string, _ []byte) bool { return cmd == "update" && coll == runsCollection }},
	}
	next, total := int64(1), 0
	for i, c := range cases {
		b := logBatch(next, 3+i, fmt.Sprintf("case%d", i))
		proxy.DropReplies(1, c.match)
		_, err := ps.Record(ctx, "retry", 1, b)
		dropped := len(proxy.Dropped())
		if dropped != i+1 {
			t.Fatalf("%s: no reply dropped (%v)", c.name, proxy.Dropped())
		}
		t.Logf("%s: reply dropped, first try: %v", c.name, err)
		if err != nil && !IsUnavailable(err) {
			t.Fatalf("%s: first try: %v, want unavailable", c.name, err)
		}
		last, err := ps.Record(ctx, "retry", 1, b)
		if err != nil || last != b.Last() {
			t.Fatalf("%s: retry: last %d, %v; want %d", c.name, last, err, b.Last())
		}
		next, total = b.Last()+1, total+len(b.Events)
	}
	evs, err := s.Events(ctx, "retry", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i, e := range evs {
		if e.Seq != int64(i+1) || seen[e.Text] || e.Epoch != 1 {
			t.Fatalf("event %d: seq %d epoch %d %q (seen before: %v)", i, e.Seq, e.Epoch, e.Text, seen[e.Text])
		}
		seen[e.Text] = true
	}
	r := mustGet(t, s, "retry")
	if len(evs) != total || r.EventSeq != int64(total) || r.Steps["s"].Outputs["tag"] != fmt.Sprintf("case%d", len(cases)-1) {
		t.Fatalf("%d events, event_seq %d, steps %+v; want %d events and the last batch's steps", len(evs), r.EventSeq, r.Steps["s"], total)
	}
	// A batch that does not follow the stored event_seq is refused.
	if _, err := s.Record(ctx, "retry", 1, logBatch(int64(total)+5, 1, "gap")); !errors.Is(err, ErrSeqConflict) {
		t.Fatalf("batch with a gap: %v, want ErrSeqConflict", err)
	}
	if _, err := s.Record(ctx, "retry", 1, logBatch(2, 1, "overlap")); !errors.Is(err, ErrSeqConflict) {
		t.Fatalf("batch over stored events: %v, want ErrSeqConflict", err)
	}
}

// Events inserted by a write that never made them visible (its runner lost
// the run, or gave up) are not returned, and the next owner's batch takes
// their seqs; an older epoch cannot take a newer one's.
func TestLeftoverEventsAreInvisibleAndReplaced(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	mustCreate(t, s, "left")
	if _, err := s.Claim(ctx, "left", "old", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Record(ctx, "left", 1, logBatch(1, 2, "old-visible")); err != nil {
		t.Fatal(err)
	}
	// The old owner's next batch: its events are inserted, then it is
	// stopped before the write that would make them visible.
	if err := s.insertEvents(ctx, "left", 1, logBatch(3, 4, "old-leftover")); err != nil {
		t.Fatal(err)
	}
	evs, err := s.Events(ctx, "left", 0, 0)
	if err != nil || len(evs) != 2 {
		t.Fatalf("events before the takeover: %d %v, want the 2 visible ones", len(evs), err)
	}
	r, err := s.Claim(ctx, "left", "new", 2)
	if err != nil {
		t.Fatal(err)
	}
	// The old owner goes on: fenced, and its events stay invisible.
	if _, err := s.Record(ctx, "left", 1, logBatch(3, 4, "old-leftover")); !errors.Is(err, ErrFenced) {
		t.Fatalf("old owner's retry: %v, want ErrFenced", err)
	}
	b := logBatch(r.EventSeq+1, 2, "new")
	if _, err := s.Record(ctx, "left", 2, b); err != nil {
		t.Fatalf("new owner's batch over the leftovers: %v", err)
	}
	// An old owner's insert over the new owner's events is fenced.
	if err := s.insertEvents(ctx, "left", 1, logBatch(3, 1, "old-late")); !errors.Is(err, ErrFenced) {
		t.Fatalf("old epoch over new events: %v, want ErrFenced", err)
	}
	evs, err = s.Events(ctx, "left", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, fmt.Sprintf("%d:%d:%s", e.Seq, e.Epoch, e.Text))
	}
	want := []string{"1:1:old-visible 0", "2:1:old-visible 1", "3:2:new 0", "4:2:new 1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}
