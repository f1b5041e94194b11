package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/devstack"
	"github.com/runnerd/runnerd/devstack/devstacktest"
	"github.com/runnerd/runnerd/workflow"
)

// openTest opens a store on a database of its own: on the MongoDB named by
// RUNNERD_TEST_MONGO_URI when set (the database is dropped afterwards), else
// on a fresh devstack; with the write path named by RUNNERD_TEST_WRITE_PATH
// (auto when unset).
func openTest(t testing.TB) *Store {
	t.Helper()
	s, _ := openTestURI(t)
	return s
}

// openTestURI is openTest that also returns the server's URI.
func openTestURI(t testing.TB) (*Store, string) {
	t.Helper()
	uri := os.Getenv("RUNNERD_TEST_MONGO_URI")
	var stack *devstack.Stack
	if uri == "" {
		stack = devstacktest.Start(t)
		uri = stack.MongoURI
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	db := "runnerd_test_" + regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "_") + "_" + hex.EncodeToString(b[:])
	if len(db) > 60 {
		db = db[len(db)-60:]
	}
	s, err := Open(context.Background(), Config{URI: uri, Database: db, Timeout: 30 * time.Second, WritePath: testWritePath(t)})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	if stack != nil {
		// As runnerd dev does once its store is open.
		if err := stack.IndexIDLookups(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx := context.Background()
		_ = s.runs.Database().Drop(ctx)
		_ = s.Close(ctx)
	})
	return s, uri
}

// testWritePath is the write path RUNNERD_TEST_WRITE_PATH names.
func testWritePath(t testing.TB) WritePath {
	t.Helper()
	p, err := ParseWritePath(os.Getenv("RUNNERD_TEST_WRITE_PATH"))
	if err != nil {
		t.Fatalf("RUNNERD_TEST_WRITE_PATH: %v", err)
	}
	return p
}

func testRun(id string) *Run {
	return &Run{
		ID:       id,
		TenantID: "acme",
		Workflow: &workflow.Workflow{
			Name:    "build",
			Timeout: workflow.Duration(30 * time.Minute),
			Steps: []workflow.Step{
				{ID: "fetch", Run: []string{"git", "clone", "${{ vars.repo }}"}},
				{ID: "approve", Kind: workflow.KindHuman, Needs: []string{"fetch"}, Prompt: "ok?"},
			},
		},
		Vars:       map[string]string{"repo": "https://example.invalid/x.git"},
		TimeoutSec: 60,
	}
}

func mustCreate(t *testing.T, s *Store, id string) *Run {
	t.Helper()
	r := testRun(id)
	if err := s.Create(context.Background(), r); err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	return r
}

func mustGet(t *testing.T, s *Store, id string) *Run {
	t.Helper()
	r, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return r
}

func TestCreateGetList(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	created := mustCreate(t, s, "r1")
	mustCreate(t, s, "r2")
	mustCreate(t, s, "r3")

	got := mustGet(t, s, "r1")
	if !reflect.DeepEqual(got, created) {
		t.Fatalf("loaded run differs from created one:\n got %+v\nwant %+v", got, created)
	}
	if got.Status != runnerd.StatusQueued || got.Epoch != 0 || got.Attempt != 0 {
		t.Fatalf("new run: status %s epoch %d attempt %d", got.Status, got.Epoch, got.Attempt)
	}

	all, err := s.List(ctx, ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ids := runIDs(all); !reflect.DeepEqual(ids, []string{"r3", "r2", "r1"}) {
		t.Fatalf("list: %v, want newest first", ids)
	}
	if _, err := s.Claim(ctx, "r2", "runner-a", 1); err != nil {
		t.Fatal(err)
	}
	running, err := s.List(ctx, ListOptions{Status: runnerd.StatusRunning})
	if err != nil {
		t.Fatal(err)
	}
	if ids := runIDs(running); !reflect.DeepEqual(ids, []string{"r2"}) {
		t.Fatalf("list running: %v", ids)
	}
	two, err := s.List(ctx, ListOptions{Status: runnerd.StatusQueued, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if ids := runIDs(two); !reflect.DeepEqual(ids, []string{"r3"}) {
		t.Fatalf("list queued limit 1: %v", ids)
	}
	none, err := s.List(ctx, ListOptions{TenantID: "other"})
	if err != nil || len(none) != 0 {
		t.Fatalf("list other tenant: %v %v", runIDs(none), err)
	}
}

func TestCreateDuplicateRefused(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	mustCreate(t, s, "dup")
	err := s.Create(context.Background(), testRun("dup"))
	if !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	if _, err := s.Get(context.Background(), "missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get missing: %v, want ErrNotFound", err)
	}
}

func TestClaimBumpsEpoch(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	mustCreate(t, s, "c")

	r, err := s.Claim(ctx, "c", "runner-a", 5)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != runnerd.StatusRunning || r.Epoch != 5 || r.Attempt != 1 || r.RunnerID != "runner-a" || r.StartedAt.IsZero() {
		t.Fatalf("after claim: %+v", r)
	}
	// The same claim again (a retry after a timeout) changes nothing.
	again, err := s.Claim(ctx, "c", "runner-a", 5)
	if err != nil || again.Attempt != 1 {
		t.Fatalf("repeated claim: attempt %d err %v", again.Attempt, err)
	}
	// A crashed runner's run is re-claimed by a newer epoch.
	r, err = s.Claim(ctx, "c", "runner-b", 9)
	if err != nil {
		t.Fatal(err)
	}
	if r.Epoch != 9 || r.Attempt != 2 || r.RunnerID != "runner-b" {
		t.Fatalf("after re-claim: %+v", r)
	}
	for _, e := range []uint64{5, 8, 9} {
		if _, err := s.Claim(ctx, "c", "runner-a", e); !errors.Is(err, ErrFenced) {
			t.Fatalf("claim at epoch %d: %v, want ErrFenced", e, err)
		}
	}
	if _, err := s.Claim(ctx, "missing", "runner-a", 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("claim missing: %v", err)
	}
}

func TestOldEpochIsFencedAndChangesNothing(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	mustCreate(t, s, "f")
	if _, err := s.Claim(ctx, "f", "old", 3); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendEvents(ctx, "f", 3, []runnerd.Event{{Type: runnerd.EventRunStarted}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, "f", "new", 4); err != nil {
		t.Fatal(err)
	}
	before := mustGet(t, s, "f")

	steps := runnerd.StepStates{"fetch": {Status: runnerd.StepSucceeded}}
	writes := map[string]func() error{
		"SaveSteps": func() error { return s.SaveSteps(ctx, "f", 3, steps) },
		"SetStatus": func() error {
			_, err := s.SetStatus(ctx, "f", 3, runnerd.StatusSucceeded, runnerd.ReasonCompleted)
			return err
		},
		"Finish": func() error {
			_, err := s.Finish(ctx, "f", 3, runnerd.StatusFailed, runnerd.ReasonStepFailed, steps)
			return err
		},
		"Requeue": func() error {
			_, err := s.Requeue(ctx, "f", 3, runnerd.ReasonRunnerShutdown)
			return err
		},
		"AppendEvents": func() error {
			_, err := s.AppendEvents(ctx, "f", 3, []runnerd.Event{{Type: runnerd.EventLog, Text: "stale"}})
			return err
		},
		// An epoch that never claimed the run is refused as well.
		"SaveSteps/unclaimed epoch": func() error { return s.SaveSteps(ctx, "f", 99, steps) },
	}
	for name, write := range writes {
		if err := write(); !errors.Is(err, ErrFenced) {
			t.Errorf("%s with old epoch: %v, want ErrFenced", name, err)
		}
	}
	if after := mustGet(t, s, "f"); !reflect.DeepEqual(after, before) {
		t.Fatalf("fenced writes changed the run:\nbefore %+v\n after %+v", before, after)
	}
	evs, err := s.Events(ctx, "f", 0, 0)
	if err != nil || len(evs) != 1 {
		t.Fatalf("events after fenced append: %d %v", len(evs), err)
	}
	// The owner still writes.
	if _, err := s.Finish(ctx, "f", 4, runnerd.StatusSucceeded, runnerd.ReasonCompleted, steps); err != nil {
		t.Fatal(err)
	}
	r := mustGet(t, s, "f")
	if r.Status != runnerd.StatusSucceeded || r.Reason != runnerd.ReasonCompleted || r.FinishedAt.IsZero() || r.Steps["fetch"].Status != runnerd.StepSucceeded {
		t.Fatalf("after finish: %+v", r)
	}
}

func TestIllegalTransitionsRefused(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	const epoch = 10

	// setup brings a fresh run to the given status by legal moves.
	n := 0
	setup := func(status runnerd.Status) string {
		n++
		id := fmt.Sprintf("t%d", n)
		mustCreate(t, s, id)
		if status == runnerd.StatusQueued {
			return id
		}
		if _, err := s.Claim(ctx, id, "r", epoch); err != nil {
			t.Fatal(err)
		}
		if status != runnerd.StatusRunning {
			if _, err := s.SetStatus(ctx, id, epoch, status, ""); err != nil {
				t.Fatalf("setup %s: %v", status, err)
			}
		}
		return id
	}

	type move struct {
		from, to runnerd.Status
		fenced   bool
	}
	illegal := []move{
		{runnerd.StatusQueued, runnerd.StatusSucceeded, false},
		{runnerd.StatusQueued, runnerd.StatusPaused, false},
		{runnerd.StatusQueued, runnerd.StatusRunning, false},
		{runnerd.StatusRunning, runnerd.StatusRunning, true},
		{runnerd.StatusRunning, runnerd.StatusFailed, false}, // owned: unfenced writes refused
		{runnerd.StatusPaused, runnerd.StatusSucceeded, true},
		{runnerd.StatusPaused, runnerd.StatusFailed, false},
		{runnerd.StatusPaused, runnerd.StatusRunning, true},
		{runnerd.StatusSucceeded, runnerd.StatusQueued, true},
		{runnerd.StatusSucceeded, runnerd.StatusFailed, true},
		{runnerd.StatusFailed, runnerd.StatusRunning, true},
		{runnerd.StatusCancelled, runnerd.StatusQueued, false},
	}
	for _, m := range illegal {
		id := setup(m.from)
		before := mustGet(t, s, id)
		var err error
		if m.fenced {
			_, err = s.SetStatus(ctx, id, epoch, m.to, runnerd.ReasonCompleted)
		} else {
			_, err = s.SetStatusUnfenced(ctx, id, m.to, runnerd.ReasonCompleted)
		}
		if !errors.Is(err, ErrIllegalTransition) {
			t.Errorf("%s → %s (fenced %v): %v, want ErrIllegalTransition", m.from, m.to, m.fenced, err)
		}
		if m.from.Terminal() && m.to != runnerd.StatusRunning && !errors.Is(err, ErrTerminal) {
			t.Errorf("%s → %s: %v, want ErrTerminal too", m.from, m.to, err)
		}
		if after := mustGet(t, s, id); !reflect.DeepEqual(after, before) {
			t.Errorf("%s → %s refused but the run changed", m.from, m.to)
		}
	}

	// Claim refuses paused and terminal runs.
	if _, err := s.Claim(ctx, setup(runnerd.StatusPaused), "r", epoch+1); !errors.Is(err, ErrIllegalTransition) {
		t.Errorf("claim paused: %v", err)
	}
	if _, err := s.Claim(ctx, setup(runnerd.StatusFailed), "r", epoch+1); !errors.Is(err, ErrTerminal) {
		t.Errorf("claim failed: %v", err)
	}
	// Resume only from paused.
	if _, err := s.Resume(ctx, setup(runnerd.StatusRunning), nil); !errors.Is(err, ErrIllegalTransition) {
		t.Errorf("resume running: %v", err)
	}
}

func TestLegalLifecycle(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	mustCreate(t, s, "l")
	if _, err := s.Claim(ctx, "l", "r", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetStatus(ctx, "l", 1, runnerd.StatusPaused, runnerd.ReasonPaused); err != nil {
		t.Fatal(err)
	}
	r, err := s.Resume(ctx, "l", map[string]map[string]string{"approve": {"ok": "yes"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != runnerd.StatusQueued || r.Reason != "" || r.Generation != 1 || r.Answers["approve"]["ok"] != "yes" {
		t.Fatalf("after resume: %+v", r)
	}
	if _, err := s.Resume(ctx, "l", map[string]map[string]string{"approve": {"a.b": "x"}}); err == nil {
		t.Fatal("resume with a dotted key accepted")
	}
	if _, err := s.Claim(ctx, "l", "r", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetStatus(ctx, "l", 2, runnerd.StatusPaused, runnerd.ReasonPaused); err != nil {
		t.Fatal(err)
	}
	// Second resume merges into the first answers.
	r, err = s.Resume(ctx, "l", map[string]map[string]string{"approve": {"who": "ann"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Generation != 2 || !reflect.DeepEqual(r.Answers["approve"], map[string]string{"ok": "yes", "who": "ann"}) {
		t.Fatalf("after second resume: gen %d answers %v", r.Generation, r.Answers)
	}
	if _, err := s.Claim(ctx, "l", "r", 3); err != nil {
		t.Fatal(err)
	}
	r, err = s.Requeue(ctx, "l", 3, runnerd.ReasonRunnerShutdown)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != runnerd.StatusQueued || r.Reason != runnerd.ReasonRunnerShutdown || r.Generation != 3 {
		t.Fatalf("after requeue: %+v", r)
	}
	if r, err = s.RequestCancel(ctx, "l"); err != nil || !r.CancelRequested {
		t.Fatalf("request cancel: %v %+v", err, r)
	}
	if _, err := s.SetStatusUnfenced(ctx, "l", runnerd.StatusCancelled, runnerd.ReasonCancelled); err != nil {
		t.Fatal(err)
	}
	r = mustGet(t, s, "l")
	if r.Status != runnerd.StatusCancelled || r.FinishedAt.IsZero() || r.Attempt != 3 {
		t.Fatalf("after cancel: %+v", r)
	}
	if _, err := s.RequestCancel(ctx, "l"); !errors.Is(err, ErrTerminal) {
		t.Fatalf("cancel a cancelled run: %v", err)
	}
	if _, err := s.RequestCancel(ctx, "missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("cancel a missing run: %v", err)
	}

	// `status --json` relies on these names.
	b, _ := json.Marshal(mustGet(t, s, "l"))
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	for _, k := range []string{"id", "status", "reason", "attempt"} {
		if _, ok := m[k]; !ok {
			t.Errorf("run JSON lacks %q: %s", k, b)
		}
	}
}

// appendAll appends total events to run id in batches and checks the returned
// seqs.
func appendAll(ctx context.Context, s *Store, id string, epoch uint64, total, batch int) error {
	for i := 0; i < total; i += batch {
		evs := make([]runnerd.Event, 0, batch)
		for j := i; j < i+batch && j < total; j++ {
			evs = append(evs, runnerd.Event{Type: runnerd.EventLog, Step: "s", Stream: "stdout", Text: fmt.Sprintf("%s line %d", id, j+1)})
		}
		last, err := s.AppendEvents(ctx, id, epoch, evs)
		if err != nil {
			return err
		}
		if want := int64(i + len(evs)); last != want {
			return fmt.Errorf("append to %s: last seq %d, want %d", id, last, want)
		}
	}
	return nil
}

// readAll reads the stream the way `logs --follow` does and checks that seqs
// run 1..total with matching content.
func readAll(ctx context.Context, s *Store, id string, total int) error {
	var after int64
	for {
		page, err := s.Events(ctx, id, after, 5000)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			if e.Seq != after+1 {
				return fmt.Errorf("run %s: seq %d after %d", id, e.Seq, after)
			}
			if want := fmt.Sprintf("%s line %d", id, e.Seq); e.Text != want || e.RunID != id {
				return fmt.Errorf("run %s seq %d: text %q", id, e.Seq, e.Text)
			}
			after = e.Seq
		}
	}
	if after != int64(total) {
		return fmt.Errorf("run %s: read %d events, want %d", id, after, total)
	}
	return nil
}

const eventCount = 10_000

func TestEventsInOrder(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	mustCreate(t, s, "e")
	if _, err := s.Claim(ctx, "e", "r", 1); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := appendAll(ctx, s, "e", 1, eventCount, 200); err != nil {
		t.Fatal(err)
	}
	appended := time.Since(start)
	if err := readAll(ctx, s, "e", eventCount); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d events: appended in %v (batches of 200), read in %v", eventCount, appended, time.Since(start)-appended)
	if r := mustGet(t, s, "e"); r.EventSeq != eventCount {
		t.Fatalf("event_seq %d", r.EventSeq)
	}
}

func TestEventsTwoConcurrentWriters(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	ids := []string{"w1", "w2"}
	for i, id := range ids {
		mustCreate(t, s, id)
		if _, err := s.Claim(ctx, id, "r", uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(ids))
	for i, id := range ids {
		wg.Go(func() { errs[i] = appendAll(ctx, s, id, uint64(i+1), eventCount, 250) })
	}
	wg.Wait()
	for i, id := range ids {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if err := readAll(ctx, s, id, eventCount); err != nil {
			t.Fatal(err)
		}
	}
}

func TestEventsConcurrentAppendsToOneRun(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	mustCreate(t, s, "one")
	if _, err := s.Claim(ctx, "one", "r", 1); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for range 10 {
				evs := make([]runnerd.Event, 10)
				for i := range evs {
					evs[i] = runnerd.Event{Type: runnerd.EventLog, Step: fmt.Sprint(g)}
				}
				if _, err := s.AppendEvents(ctx, "one", 1, evs); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	evs, err := s.Events(ctx, "one", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d", i, e.Seq)
		}
	}
	if len(evs) != 400 {
		t.Fatalf("%d events, want 400", len(evs))
	}
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	if os.Getenv("RUNNERD_TEST_MONGO_URI") != "" {
		t.Skip("needs the embedded server, to stop it")
	}
	ctx := context.Background()
	if _, err := Open(ctx, Config{URI: "mongodb://127.0.0.1:1/", Timeout: 300 * time.Millisecond}); !IsUnavailable(err) {
		t.Fatalf("open on a closed port: %v, want unavailable", err)
	}
	stack := devstacktest.Start(t)
	s, err := Open(ctx, Config{URI: stack.MongoURI, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if err := stack.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = s.Get(ctx, "x")
	if !IsUnavailable(err) {
		t.Fatalf("get after the server stopped: %v, want unavailable", err)
	}
	if IsUnavailable(fmt.Errorf("x: %w", ErrFenced)) || IsUnavailable(ErrNotFound) {
		t.Fatal("refusals reported as unavailable")
	}
}

func runIDs(rs []*Run) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

func TestOpenTwiceKeepsIndexes(t *testing.T) {
	t.Parallel()
	s, uri := openTestURI(t)
	ctx := context.Background()
	again, err := Open(ctx, Config{URI: uri, Database: s.runs.Database().Name()})
	if err != nil {
		t.Fatalf("second open of the same database: %v", err)
	}
	_ = again.Close(ctx)
	// The unique (run_id, seq) index holds.
	ev := StoredEvent{RunID: "r", Seq: 1, Event: runnerd.Event{Type: runnerd.EventLog}}
	if _, err := s.events.InsertOne(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if _, err := s.events.InsertOne(ctx, ev); !mongo.IsDuplicateKeyError(err) {
		t.Fatalf("second event with seq 1: %v, want a duplicate key error", err)
	}
}

// auto picks the revision path on FerretDB and the conditional one
// elsewhere; a path named in Config is used as named.
func TestWritePathFollowsTheServer(t *testing.T) {
	t.Parallel()
	s, uri := openTestURI(t)
	ctx := context.Background()
	ferret := s.isFerretDB(ctx)
	if want := testWritePath(t); want != WritePathAuto {
		if s.WritePath() != want {
			t.Fatalf("write path %s, want %s as configured", s.WritePath(), want)
		}
	} else if s.revision != ferret {
		t.Fatalf("auto: write path %s on FerretDB = %v", s.WritePath(), ferret)
	}
	for _, p := range []WritePath{WritePathConditional, WritePathRevision} {
		o, err := Open(ctx, Config{URI: uri, Database: s.runs.Database().Name(), WritePath: p})
		if err != nil {
			t.Fatal(err)
		}
		if o.WritePath() != p {
			t.Errorf("opened with %s: write path %s", p, o.WritePath())
		}
		_ = o.Close(ctx)
	}
	if _, err := Open(ctx, Config{URI: uri, WritePath: "fast"}); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("write path fast: %v, want ErrBadConfig", err)
	}
}

func TestRecordSavesEventsAndStepsInOneWrite(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	mustCreate(t, s, "rec")
	if _, err := s.Claim(ctx, "rec", "runner-a", 3); err != nil {
		t.Fatal(err)
	}
	steps := runnerd.StepStates{"a": {Status: runnerd.StepRunning, Attempts: 1}}
	last, err := s.Record(ctx, "rec", 3, Batch{First: 1, Events: []runnerd.Event{{Type: runnerd.EventStepStarted, Step: "a", Attempt: 1}}, Steps: steps})
	if err != nil || last != 1 {
		t.Fatalf("record: last %d, %v", last, err)
	}
	r, err := s.Get(ctx, "rec")
	if err != nil || r.Steps["a"].Status != runnerd.StepRunning || r.EventSeq != 1 {
		t.Fatalf("after record: %+v %v", r, err)
	}
	// Fenced like every write of a claimed run: nothing lands.
	if _, err := s.Record(ctx, "rec", 2, Batch{First: 2, Events: []runnerd.Event{{Type: runnerd.EventLog, Step: "a"}}, Steps: runnerd.StepStates{}}); !errors.Is(err, ErrFenced) {
		t.Fatalf("record with an old epoch: %v, want ErrFenced", err)
	}
	if r, _ := s.Get(ctx, "rec"); r.EventSeq != 1 || r.Steps["a"] == nil {
		t.Fatalf("a fenced record changed the run: %+v", r)
	}
}
