package main

import (
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/client"
	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/store"
)

// TestProcessRetention: two runnerd serve --retention 3s processes remove a
// finished run (document, events, S3 objects) within seconds of its
// retention, while a paused run and a queued one (waiting in its group
// behind a running holder), both older than the retention, keep everything
// through a later sweep.
func TestProcessRetention(t *testing.T) {
	if testing.Short() {
		t.Skip("two runnerd serve processes")
	}
	f := startFleet(t, "--retention", "3s")
	blobs, err := f.e.c.blob(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	holder := f.submit(t, "ret-holder", "acme", groupYAML("queue", "60"), nil)
	f.waitFor(t, holder.ID, "running", func(r *client.Run) bool { return r.Status == runnerd.StatusRunning })
	queued := f.submit(t, "ret-queued", "acme", groupYAML("queue", "0.1"), nil)
	paused := f.submit(t, "ret-paused", "acme", approvalYAML, nil)
	f.waitFor(t, paused.ID, "paused", func(r *client.Run) bool { return r.Status == runnerd.StatusPaused })

	kept := map[string]struct {
		events  int
		objects int
	}{}
	for _, id := range []string{queued.ID, paused.ID} {
		evs, err := f.e.c.st.Events(ctxT(t), id, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := blobs.List(ctxT(t), "runs/"+id+"/")
		if err != nil {
			t.Fatal(err)
		}
		kept[id] = struct{ events, objects int }{len(evs), len(objs)}
	}
	if kept[paused.ID].events == 0 || kept[paused.ID].objects == 0 {
		t.Fatalf("paused run: %d events, %d S3 objects; want some of each to see kept", kept[paused.ID].events, kept[paused.ID].objects)
	}

	// A run that finishes after the paused and queued runs stopped
	// changing: once a sweep removed it, that sweep's bound was past their
	// last writes.
	done := f.submit(t, "ret-done", "acme", helloYAML, nil)
	r := f.wait(t, done.ID)
	if r.Status != runnerd.StatusSucceeded {
		t.Fatalf("run %s: %s/%s", done.ID, r.Status, r.Reason)
	}
	finished := r.FinishedAt
	testutil.Eventually(t, 30*time.Second, func() bool {
		_, err := f.e.c.st.Get(ctxT(t), done.ID)
		return errors.Is(err, store.ErrNotFound)
	}, "finished run %s still stored 30s after it finished (retention 3s)", done.ID)
	age := time.Since(finished)
	t.Logf("finished run removed %s after it finished (retention 3s)", age.Round(100*time.Millisecond))
	// Seen gone no later than it went: seen before 3 s, it went before its
	// retention was over.
	if age < 3*time.Second {
		t.Errorf("run %s removed %s after it finished: before its retention of 3s", done.ID, age.Round(time.Millisecond))
	}

	// The removal was whole: the sweeper's log counts what it removed, and
	// nothing of the run is left.
	removed := regexp.MustCompile(`"run_id":"` + done.ID + `"[^\n]*"objects":([1-9][0-9]*),"events":([1-9][0-9]*)[^\n]*retention: run removed`)
	// The sweeper logs after its purge returns, so the line can trail the
	// document's removal by a moment.
	if !testutil.Wait(5*time.Second, func() bool {
		return removed.MatchString(f.serves[0].stderr.String() + f.serves[1].stderr.String())
	}) {
		t.Errorf("no runner logged removing run %s with its S3 objects and events", done.ID)
	}
	if evs, err := f.e.c.st.Events(ctxT(t), done.ID, 0, 0); err != nil || len(evs) != 0 {
		t.Errorf("run %s: %d events left (%v)", done.ID, len(evs), err)
	}
	if objs, err := blobs.List(ctxT(t), "runs/"+done.ID+"/"); err != nil || len(objs) != 0 {
		t.Errorf("run %s: S3 objects left %v (%v)", done.ID, objs, err)
	}

	for id, want := range map[string]runnerd.Status{queued.ID: runnerd.StatusQueued, paused.ID: runnerd.StatusPaused} {
		r, err := f.c.Get(ctxT(t), id)
		if err != nil || r.Status != want {
			t.Errorf("run %s: %v %v, want it kept, %s", id, r, err, want)
			continue
		}
		if age := time.Since(r.UpdatedAt); age < 3*time.Second {
			t.Errorf("run %s last changed %s ago: not older than the retention, the check shows nothing", id, age)
		}
		evs, _ := f.e.c.st.Events(ctxT(t), id, 0, 0)
		objs, _ := blobs.List(ctxT(t), "runs/"+id+"/")
		if len(evs) != kept[id].events || len(objs) != kept[id].objects {
			t.Errorf("run %s: %d events and %d S3 objects, want %d and %d kept", id, len(evs), len(objs), kept[id].events, kept[id].objects)
		}
	}
}
