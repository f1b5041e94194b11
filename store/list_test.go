package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
)

// listAll pages through List with o and returns every run id, in order.
func listAll(t *testing.T, s *Store, o ListOptions) []string {
	t.Helper()
	var ids []string
	for range 10000 {
		p, err := s.ListPage(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Runs) > o.Limit && o.Limit > 0 {
			t.Fatalf("page of %d runs, limit %d", len(p.Runs), o.Limit)
		}
		ids = append(ids, runIDs(p.Runs)...)
		if p.Next == "" {
			return ids
		}
		o.Cursor = p.Next
	}
	t.Fatal("List never returned an empty cursor")
	return nil
}

func TestListPagesNewestFirst(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	var want, wantOther, wantRunning []string
	for i := range 23 {
		r := testRun(fmt.Sprintf("r%02d", i))
		if i%3 == 0 {
			r.TenantID = "other"
		}
		if err := s.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
		want = append([]string{r.ID}, want...)
		if r.TenantID == "other" {
			wantOther = append([]string{r.ID}, wantOther...)
		}
		if i%4 == 1 {
			if _, err := s.Claim(ctx, r.ID, "runner-a", uint64(i+1)); err != nil {
				t.Fatal(err)
			}
			wantRunning = append([]string{r.ID}, wantRunning...)
		}
	}
	for _, limit := range []int{1, 5, 100} {
		if got := listAll(t, s, ListOptions{Limit: limit}); !reflect.DeepEqual(got, want) {
			t.Fatalf("all runs, pages of %d:\n got %v\nwant %v", limit, got, want)
		}
	}
	if got := listAll(t, s, ListOptions{Limit: 2, TenantID: "other"}); !reflect.DeepEqual(got, wantOther) {
		t.Fatalf("tenant other:\n got %v\nwant %v", got, wantOther)
	}
	if got := listAll(t, s, ListOptions{Limit: 2, Status: runnerd.StatusRunning}); !reflect.DeepEqual(got, wantRunning) {
		t.Fatalf("running:\n got %v\nwant %v", got, wantRunning)
	}
	// A walk cut short by its budget goes on from its cursor: every page,
	// short or empty, ends up listing every run once.
	if got := listAll(t, s, ListOptions{Limit: 3, Budget: time.Nanosecond}); !reflect.DeepEqual(got, want) {
		t.Fatalf("budget-cut pages:\n got %v\nwant %v", got, want)
	}
	first, err := s.ListPage(ctx, ListOptions{Limit: 23})
	if err != nil || len(first.Runs) != 23 || first.Next != "" {
		t.Fatalf("one page of all 23: %d runs, next %q, %v", len(first.Runs), first.Next, err)
	}
}

func TestListRefusesBadInput(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	mustCreate(t, s, "r1")
	for _, c := range []string{"x", "i", "i0", "t12", "t:abc", "tabc:r1"} {
		if _, err := s.ListPage(context.Background(), ListOptions{Cursor: c}); !errors.Is(err, ErrBadCursor) {
			t.Fatalf("cursor %q: %v, want ErrBadCursor", c, err)
		}
	}
	if _, err := s.ListPage(context.Background(), ListOptions{Limit: MaxListLimit + 1}); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("limit above the maximum: %v", err)
	}
}

// A second Create of an id fails after its index entry is in (the entry
// goes first): the run is listed once, as first created.
func TestListAfterDuplicateCreate(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	mustCreate(t, s, "dup")
	if err := s.Create(context.Background(), testRun("dup")); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v", err)
	}
	mustCreate(t, s, "next")
	if got := listAll(t, s, ListOptions{}); !reflect.DeepEqual(got, []string{"next", "dup"}) {
		t.Fatalf("list: %v", got)
	}
}

// Runs stored before the run index existed get their entries when a store
// opens the database (the revision path; MongoDB has no run index).
func TestListBackfillsOlderRuns(t *testing.T) {
	t.Parallel()
	s, uri := openTestURI(t)
	ctx := context.Background()
	var want []string
	base := now().Add(-time.Hour)
	for i := range 30 {
		r := testRun(fmt.Sprintf("old-%02d", i))
		r.Status, r.CreatedAt, r.UpdatedAt = runnerd.StatusQueued, base.Add(time.Duration(i)*time.Second), base
		doc, err := createDoc(r, newIncarnation())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.runs.InsertOne(ctx, doc); err != nil {
			t.Fatal(err)
		}
		want = append([]string{r.ID}, want...)
	}
	o, err := Open(ctx, Config{URI: uri, Database: s.Database(), Timeout: 30 * time.Second, WritePath: testWritePath(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.Close(context.Background()) })
	if err := o.Create(ctx, testRun("new")); err != nil {
		t.Fatal(err)
	}
	want = append([]string{"new"}, want...)
	if got := listAll(t, o, ListOptions{Limit: 7}); !reflect.DeepEqual(got, want) {
		t.Fatalf("list:\n got %v\nwant %v", got, want)
	}
	if !slices.Equal(listAll(t, s, ListOptions{Limit: 100}), want) {
		t.Fatal("the first store lists otherwise")
	}
}

func TestFinishWithRecordsAndFinishesInOneWrite(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	mustCreate(t, s, "fw")
	if _, err := s.Claim(ctx, "fw", "runner-a", 3); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Record(ctx, "fw", 3, Batch{First: 1, Events: []runnerd.Event{{Type: runnerd.EventRunStarted}}}); err != nil {
		t.Fatal(err)
	}
	steps := runnerd.StepStates{"fetch": {Status: runnerd.StepSucceeded}}
	last := Batch{First: 2, Events: []runnerd.Event{{Type: runnerd.EventStepFinished, Step: "fetch"}, {Type: runnerd.EventRunFinished}}, Steps: steps}
	if _, err := s.FinishWith(ctx, "fw", 2, runnerd.StatusSucceeded, runnerd.ReasonCompleted, last); !errors.Is(err, ErrFenced) {
		t.Fatalf("stale epoch: %v, want ErrFenced", err)
	}
	if _, err := s.FinishWith(ctx, "fw", 3, runnerd.StatusSucceeded, runnerd.ReasonCompleted, Batch{First: 5, Events: last.Events, Steps: steps}); !errors.Is(err, ErrSeqConflict) {
		t.Fatalf("a gap in the seqs: %v, want ErrSeqConflict", err)
	}
	var ats []time.Time
	for range 2 { // the second is a retry of a write that landed
		time.Sleep(5 * time.Millisecond) // so that the retry's own clock differs
		at, err := s.FinishWith(ctx, "fw", 3, runnerd.StatusSucceeded, runnerd.ReasonCompleted, last)
		if err != nil {
			t.Fatal(err)
		}
		ats = append(ats, at)
	}
	r := mustGet(t, s, "fw")
	if r.Status != runnerd.StatusSucceeded || r.Reason != runnerd.ReasonCompleted || r.EventSeq != 3 || r.FinishedAt.IsZero() ||
		r.Steps["fetch"] == nil || r.Steps["fetch"].Status != runnerd.StepSucceeded {
		t.Fatalf("run after FinishWith: %+v", r)
	}
	// Both the write and its retry return the time the write stored.
	for i, at := range ats {
		if !at.Equal(r.FinishedAt) || !at.Equal(r.UpdatedAt) {
			t.Errorf("FinishWith try %d returned %s; stored finished_at %s, updated_at %s", i+1, at, r.FinishedAt, r.UpdatedAt)
		}
	}
	evs, err := s.Events(ctx, "fw", 0, 0)
	if err != nil || len(evs) != 3 || evs[2].Type != runnerd.EventRunFinished {
		t.Fatalf("events: %d %v", len(evs), err)
	}
}
