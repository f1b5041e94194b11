package retention_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/devstack/devstacktest"
	"github.com/runnerd/runnerd/internal/storetest"
	"github.com/runnerd/runnerd/retention"
	"github.com/runnerd/runnerd/store"
	"github.com/runnerd/runnerd/workflow"
)

type world struct {
	t     *testing.T
	ctx   context.Context
	st    *store.Store
	blobs *blob.Store
	db    *mongo.Database // the same database, read directly
	wf    *workflow.Workflow
	epoch uint64
}

func newWorld(t *testing.T) *world {
	s := devstacktest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	cfg := storetest.Config(t, s.MongoURI)
	st := storetest.OpenConfig(t, cfg)
	blobs, err := blob.New(ctx, blob.Config{Endpoint: s.S3Endpoint, Region: s.S3Region, Bucket: s.S3Bucket,
		AccessKey: s.S3AccessKey, SecretKey: s.S3SecretKey, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	mc, err := mongo.Connect(options.Client().ApplyURI(cfg.URI))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mc.Disconnect(context.Background()) })
	wf, err := workflow.Parse([]byte("name: w\nsteps:\n  - id: a\n    run: [\"true\"]\n"), "w.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return &world{t: t, ctx: ctx, st: st, blobs: blobs, db: mc.Database(st.Database()), wf: wf}
}

// run creates a run and takes it to status (queued: as created), with two
// events and two S3 objects once it was claimed.
func (w *world) run(id string, status runnerd.Status) {
	w.t.Helper()
	if err := w.st.Create(w.ctx, &store.Run{ID: id, TenantID: "t", Workflow: w.wf}); err != nil {
		w.t.Fatal(err)
	}
	if status == runnerd.StatusQueued {
		return
	}
	w.epoch++
	if _, err := w.st.Claim(w.ctx, id, "runner", w.epoch); err != nil {
		w.t.Fatal(err)
	}
	if _, err := w.st.AppendEvents(w.ctx, id, w.epoch, []runnerd.Event{
		{Type: runnerd.EventRunStarted, Time: time.Now()},
		{Type: runnerd.EventLog, Step: "a", Text: "x", Time: time.Now()},
	}); err != nil {
		w.t.Fatal(err)
	}
	for _, k := range []string{blob.StepLogKey(id, 1, "a"), blob.ArtifactKey(id, "a", "out.txt")} {
		if _, err := w.blobs.Put(w.ctx, k, bytes.NewReader([]byte("data"))); err != nil {
			w.t.Fatal(err)
		}
	}
	if status == runnerd.StatusRunning {
		return
	}
	if _, err := w.st.Finish(w.ctx, id, w.epoch, status, "", nil); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) count(coll, id string) int64 {
	w.t.Helper()
	n, err := w.db.Collection(coll).CountDocuments(w.ctx, bson.D{{Key: "run_id", Value: id}})
	if err != nil {
		w.t.Fatal(err)
	}
	return n
}

func (w *world) objects(id string) int {
	w.t.Helper()
	objs, err := w.blobs.List(w.ctx, "runs/"+id+"/")
	if err != nil {
		w.t.Fatal(err)
	}
	return len(objs)
}

// TestSweepRemovesExactlyWhatIsOlder: finished runs before the bound go —
// document, events, revisions, S3 objects — and nothing else: not the runs
// finished after it, nor queued, running or paused runs however old, nor
// the shared workflow objects.
func TestSweepRemovesExactlyWhatIsOlder(t *testing.T) {
	w := newWorld(t)
	old := []string{"old-ok", "old-failed", "old-cancelled"}
	w.run("old-ok", runnerd.StatusSucceeded)
	w.run("old-failed", runnerd.StatusFailed)
	w.run("old-queued", runnerd.StatusQueued)
	w.run("old-running", runnerd.StatusRunning)
	w.run("old-paused", runnerd.StatusPaused)
	w.run("old-cancelled", runnerd.StatusCancelled)
	time.Sleep(20 * time.Millisecond) // the store keeps milliseconds
	bound := time.Now()
	time.Sleep(20 * time.Millisecond)
	w.run("new-ok", runnerd.StatusSucceeded)
	w.run("new-failed", runnerd.StatusFailed)
	kept := []string{"old-queued", "old-running", "old-paused", "new-ok", "new-failed"}
	shared := "workflows/" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" + ".json"
	if _, err := w.blobs.Put(w.ctx, shared, bytes.NewReader([]byte("{}"))); err != nil {
		t.Fatal(err)
	}

	if w.st.WritePath() == store.WritePathRevision && w.count("run_revisions", "old-ok") == 0 {
		t.Fatal("no revisions of old-ok before the sweep: the check of their removal would prove nothing")
	}
	var listed []string
	n, err := retention.Sweep(w.ctx, w.st, w.blobs, retention.Options{Before: bound, DryRun: true, Batch: 2,
		OnRemoved: func(rm retention.Removed) {
			listed = append(listed, rm.Run.ID)
			if len(rm.Objects) != 2 {
				t.Errorf("dry run: %s has %d objects listed, want 2", rm.Run.ID, len(rm.Objects))
			}
		}})
	if err != nil || n != 3 || !same(listed, old) {
		t.Fatalf("dry run listed %v (%d, %v), want %v", listed, n, err, old)
	}
	for _, id := range old {
		if _, err := w.st.Get(w.ctx, id); err != nil || w.objects(id) != 2 {
			t.Errorf("dry run removed something of %s: %v, %d objects", id, err, w.objects(id))
		}
	}

	var removed []string
	n, err = retention.Sweep(w.ctx, w.st, w.blobs, retention.Options{Before: bound, Batch: 2, OnRemoved: func(rm retention.Removed) {
		removed = append(removed, rm.Run.ID)
		if rm.Events != 2 {
			t.Errorf("%s: %d events removed, want 2", rm.Run.ID, rm.Events)
		}
	}})
	if err != nil || n != 3 || !same(removed, old) {
		t.Fatalf("sweep removed %v (%d, %v), want %v", removed, n, err, old)
	}
	for _, id := range old {
		if _, err := w.st.Get(w.ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: still there (%v)", id, err)
		}
		if e, r, o := w.count("events", id), w.count("run_revisions", id), w.objects(id); e+r != 0 || o != 0 {
			t.Errorf("%s: %d events, %d revisions, %d S3 objects left", id, e, r, o)
		}
	}
	for _, id := range kept {
		r, err := w.st.Get(w.ctx, id)
		if err != nil {
			t.Errorf("%s was removed: %v", id, err)
			continue
		}
		wantObjs, wantEvents := 2, int64(2)
		if r.Status == runnerd.StatusQueued {
			wantObjs, wantEvents = 0, 0
		}
		if o, e := w.objects(id), w.count("events", id); o != wantObjs || e != wantEvents {
			t.Errorf("%s (%s): %d S3 objects, %d events, want %d and %d", id, r.Status, o, e, wantObjs, wantEvents)
		}
	}
	if _, err := w.blobs.Head(w.ctx, shared); err != nil {
		t.Errorf("the shared workflow object: %v", err)
	}
	// Nothing more to do: a second sweep removes nothing.
	if n, err := retention.Sweep(w.ctx, w.st, w.blobs, retention.Options{Before: bound}); n != 0 || err != nil {
		t.Errorf("second sweep: %d, %v", n, err)
	}
	// A purge of a run that is not finished before the bound is refused.
	if _, err := w.st.Purge(w.ctx, "old-paused", time.Now()); !errors.Is(err, store.ErrNotExpired) {
		t.Errorf("purge of a paused run: %v, want ErrNotExpired", err)
	}
	if _, err := w.st.Purge(w.ctx, "new-ok", bound); !errors.Is(err, store.ErrNotExpired) {
		t.Errorf("purge of a run finished after the bound: %v, want ErrNotExpired", err)
	}
}

func same(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, x := range a {
		seen[x]++
	}
	for _, x := range b {
		seen[x]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

// A sweeper sweeps every tenth of the retention, 1 s to 1 h, and first
// within a second of its start (or of its interval, where shorter).
func TestInterval(t *testing.T) {
	for bound, want := range map[time.Duration]time.Duration{
		time.Millisecond: time.Second, 3 * time.Second: time.Second, 100 * time.Second: 10 * time.Second,
		720 * time.Hour: time.Hour,
	} {
		if got := retention.Interval(bound); got != want {
			t.Errorf("Interval(%s) = %s, want %s", bound, got, want)
		}
	}
	for _, interval := range []time.Duration{time.Second, time.Hour, 500 * time.Millisecond} {
		for range 100 {
			if d := retention.FirstSweep(interval); d < 0 || d >= min(interval, time.Second) {
				t.Fatalf("FirstSweep(%s) = %s, want from 0 to under %s", interval, d, min(interval, time.Second))
			}
		}
	}
}
