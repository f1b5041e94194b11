package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/runnerd/runnerd"
)

// Create stores a new run in status queued. It fills in the fields the store
// owns (status, reason, epoch, attempt, generation, event seq, timestamps) on
// r itself. A run with the same id gives ErrExists.
func (s *Store) Create(ctx context.Context, r *Run) error {
	if r.ID == "" {
		return errors.New("create run: empty id")
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	inc := newIncarnation()
	var hint chan struct{} // the run index's hint, written beside the run
	if s.revision {
		// The entry first: a run is never stored unlisted. An entry whose
		// Create fails after it is skipped by List (its incarnation is no
		// run's).
		n, err := s.indexRun(ctx, r, inc)
		if err != nil {
			return fmt.Errorf("create run %s: %w", r.ID, err)
		}
		hint = make(chan struct{})
		go func() { defer close(hint); s.writeIndexHint(ctx, n) }()
	}
	t := now()
	r.Status, r.Reason = runnerd.StatusQueued, ""
	r.Epoch, r.Attempt, r.Generation, r.EventSeq, r.RunnerID = 0, 0, 0, 0, ""
	r.CreatedAt, r.UpdatedAt = t, t
	r.StartedAt, r.FinishedAt = time.Time{}, time.Time{}
	doc, err := createDoc(r, inc)
	if err == nil {
		_, err = s.runs.InsertOne(ctx, doc)
	}
	if hint != nil {
		<-hint
	}
	if err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return fmt.Errorf("create run %s: %w", r.ID, ErrExists)
		}
		return fmt.Errorf("create run %s: %w", r.ID, err)
	}
	return nil
}

// createDoc is the document of a new run: r, at revision 0 of incarnation
// inc.
func createDoc(r *Run, inc string) (bson.D, error) {
	raw, err := bson.Marshal(r)
	if err != nil {
		return nil, err
	}
	var doc bson.D
	if err := bson.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	return append(doc, bson.E{Key: revisionField, Value: int64(0)}, bson.E{Key: incarnationField, Value: inc}), nil
}

// Get loads a run; ErrNotFound if there is none.
func (s *Store) Get(ctx context.Context, id string) (*Run, error) {
	r, err := s.get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("get run %s: %w", id, err)
	}
	return r, nil
}

func (s *Store) get(ctx context.Context, id string) (*Run, error) {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	if s.revision {
		c, err := s.resolve(ctx, id)
		if err != nil {
			return nil, err
		}
		return c.run, nil
	}
	var r Run
	if err := s.runs.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&r); err != nil {
		if errors.Is(err, mongo.ErrNoDocuments) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	return &r, nil
}

// RequestCancel sets cancel_requested on a run that has not finished and
// returns it. Status changes are left to the supervisor (it may own the run
// right now); the flag makes a cancel sent while no runner listens still land.
// A finished run gives ErrTerminal.
func (s *Store) RequestCancel(ctx context.Context, id string) (*Run, error) {
	r, err := s.apply(ctx, id, guard{from: []runnerd.Status{runnerd.StatusQueued, runnerd.StatusRunning, runnerd.StatusPaused}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "cancel_requested", Value: true}, {Key: "updated_at", Value: now()}}}}, withDoc)
	if err != nil {
		return nil, fmt.Errorf("request cancel of run %s: %w", id, err)
	}
	return r, nil
}

// Claim makes the caller the owner of the run for a new attempt: status
// running, runner id, attempt+1 and the fencing epoch. It is refused with
// ErrFenced when the stored epoch is not older than epoch, with ErrTerminal
// (which is also an ErrIllegalTransition) when the run has finished, and with
// ErrIllegalTransition when it is paused. A running run is re-claimed by a
// newer epoch: its former runner lost the lease.
//
// Repeating a claim that was applied (same epoch and runner, e.g. after a
// timeout whose write did land) returns the run unchanged.
func (s *Store) Claim(ctx context.Context, id, runnerID string, epoch uint64) (*Run, error) {
	t := now()
	filter := bson.D{
		{Key: "_id", Value: id},
		{Key: "epoch", Value: bson.D{{Key: "$lt", Value: int64(epoch)}}},
		{Key: "status", Value: bson.D{{Key: "$in", Value: []runnerd.Status{runnerd.StatusQueued, runnerd.StatusRunning}}}},
	}
	update := bson.D{
		{Key: "$set", Value: bson.D{
			{Key: "status", Value: runnerd.StatusRunning},
			{Key: "runner_id", Value: runnerID},
			{Key: "epoch", Value: int64(epoch)},
			{Key: "started_at", Value: t},
			{Key: "updated_at", Value: t},
		}},
		{Key: "$unset", Value: bson.D{{Key: "reason", Value: ""}}},
		{Key: "$inc", Value: bson.D{{Key: "attempt", Value: 1}}},
		{Key: "$push", Value: bson.D{{Key: "attempt_starts", Value: AttemptMark{Epoch: epoch, RunnerID: runnerID, At: t}}}},
	}
	if s.revision {
		ctx, cancel := s.callCtx(ctx)
		defer cancel()
		r, err := s.writeRevision(ctx, id, func(cur *Run) (*Run, error) {
			return claimRefused(cur, id, runnerID, epoch)
		}, update)
		if err != nil && !errors.Is(err, ErrFenced) && !errors.Is(err, ErrIllegalTransition) {
			return nil, fmt.Errorf("claim run %s: %w", id, err)
		}
		return r, err
	}
	return retryContended(ctx, func() (*Run, error) {
		r, err := s.update(ctx, filter, update, withDoc)
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, mongo.ErrNoDocuments) {
			return nil, fmt.Errorf("claim run %s: %w", id, err)
		}
		cur, err := s.get(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("claim run %s: %w", id, err)
		}
		if done, err := claimRefused(cur, id, runnerID, epoch); done != nil || err != nil {
			return done, err
		}
		// The run changed between the update and the read: try again.
		return nil, fmt.Errorf("claim run %s: %w", id, errContended)
	})
}

// claimRefused says why cur cannot be claimed at epoch, or returns cur when
// this very claim was already applied (a retry after a timeout). Both nil:
// nothing prevents the claim.
func claimRefused(cur *Run, id, runnerID string, epoch uint64) (*Run, error) {
	switch {
	case cur.Epoch == epoch && cur.RunnerID == runnerID && cur.Status == runnerd.StatusRunning:
		return cur, nil
	case cur.Epoch >= epoch:
		return nil, fmt.Errorf("claim run %s at epoch %d: stored epoch %d: %w", id, epoch, cur.Epoch, ErrFenced)
	case cur.Status.Terminal():
		return nil, fmt.Errorf("claim run %s: status %s: %w: %w", id, cur.Status, ErrIllegalTransition, ErrTerminal)
	case cur.Status != runnerd.StatusQueued && cur.Status != runnerd.StatusRunning:
		return nil, fmt.Errorf("claim run %s: %s → running: %w", id, cur.Status, ErrIllegalTransition)
	}
	return nil, nil
}

// SaveSteps replaces the run's step state; fenced by epoch.
func (s *Store) SaveSteps(ctx context.Context, id string, epoch uint64, steps runnerd.StepStates) error {
	_, err := s.apply(ctx, id, guard{epoch: &epoch},
		bson.D{{Key: "$set", Value: bson.D{{Key: "steps", Value: steps}, {Key: "updated_at", Value: now()}}}}, noDoc)
	if err != nil {
		return fmt.Errorf("save steps of run %s: %w", id, err)
	}
	return nil
}

// SetStatus changes the status of a claimed run; fenced by epoch and checked
// against the allowed transitions. A terminal status sets finished_at.
// Running is reached only through Claim.
//
// SetStatus and the other status writes (Finish, FinishWith, FinishCrashed,
// SetStatusUnfenced) return the time they stored as updated_at (and as
// finished_at for a terminal status), or, for a retry that found its write
// landed, the time that write stored: what a notice of the change carries.
func (s *Store) SetStatus(ctx context.Context, id string, epoch uint64, to runnerd.Status, reason runnerd.Reason) (time.Time, error) {
	_, at, err := s.transition(ctx, id, change{to: to, reason: reason, epoch: &epoch})
	if err != nil {
		return time.Time{}, fmt.Errorf("set status of run %s to %s: %w", id, to, err)
	}
	return at, nil
}

// Finish saves the final step state and the status in one write, so a reader
// never sees a finished run with stale steps; fenced by epoch.
func (s *Store) Finish(ctx context.Context, id string, epoch uint64, to runnerd.Status, reason runnerd.Reason, steps runnerd.StepStates) (time.Time, error) {
	set := bson.D{{Key: "steps", Value: steps}}
	_, at, err := s.transition(ctx, id, change{to: to, reason: reason, epoch: &epoch, set: set})
	if err != nil {
		return time.Time{}, fmt.Errorf("finish run %s as %s: %w", id, to, err)
	}
	return at, nil
}

// FinishWith is Record and Finish in one fenced write: the batch's events
// are inserted, then one write makes them visible, saves the step state
// (b.Steps, which must be set) and the terminal status. A short run's last
// events and its outcome so cost one write instead of two. A retry after a
// write that landed succeeds without changing anything.
func (s *Store) FinishWith(ctx context.Context, id string, epoch uint64, to runnerd.Status, reason runnerd.Reason, b Batch) (time.Time, error) {
	if !to.Terminal() || b.Steps == nil || len(b.Events) == 0 || b.First < 1 {
		return time.Time{}, fmt.Errorf("finish run %s as %s with events: want a terminal status, step state and events from seq 1 on", id, to)
	}
	mu := s.appends.lock(id)
	mu.Lock()
	defer mu.Unlock()
	first, last := b.First, b.Last()
	if err := s.insertEvents(ctx, id, epoch, b); err != nil {
		return time.Time{}, fmt.Errorf("finish run %s as %s: append events %d-%d: %w", id, to, first, last, err)
	}
	before := first - 1
	set := bson.D{{Key: "steps", Value: b.Steps}, {Key: "event_seq", Value: last}}
	c := change{to: to, reason: reason, epoch: &epoch, set: set, seq: &before,
		landed: func(r *Run) bool { return r.EventSeq == last && r.Status == to }}
	_, at, err := s.transition(ctx, id, c)
	if err != nil {
		return time.Time{}, fmt.Errorf("finish run %s as %s: %w", id, to, err)
	}
	s.copyVisible(ctx, id, epoch, b)
	return at, nil
}

// Requeue puts a running run back in the queue (running → queued) with a new
// publish generation, for a run that is re-published rather than redelivered
// (runner shutdown). It returns the run, whose Generation names the new
// message; fenced by epoch.
func (s *Store) Requeue(ctx context.Context, id string, epoch uint64, reason runnerd.Reason) (*Run, error) {
	inc := bson.D{{Key: "generation", Value: 1}}
	r, _, err := s.transition(ctx, id, change{to: runnerd.StatusQueued, reason: reason, epoch: &epoch, inc: inc, returnRun: true})
	if err != nil {
		return nil, fmt.Errorf("requeue run %s: %w", id, err)
	}
	return r, nil
}

// SetStatusUnfenced changes the status of a run nobody has claimed: a queued
// run whose message is invalid, a queued or paused run cancelled before it
// starts, a queued run out of attempts. A running run is owned by a runner
// and only fenced writes change it, so it gives ErrIllegalTransition here.
func (s *Store) SetStatusUnfenced(ctx context.Context, id string, to runnerd.Status, reason runnerd.Reason) (time.Time, error) {
	_, at, err := s.transition(ctx, id, change{to: to, reason: reason})
	if err != nil {
		return time.Time{}, fmt.Errorf("set status of run %s to %s: %w", id, to, err)
	}
	return at, nil
}

// Resume puts a paused run back in the queue with the answers for its human
// steps merged into Answers (step id → key → value) and a new publish
// generation, and returns it. It is not fenced: no runner owns a paused run.
func (s *Store) Resume(ctx context.Context, id string, answers map[string]map[string]string) (*Run, error) {
	set := bson.D{}
	for step, kv := range answers {
		if err := checkKey(step); err != nil {
			return nil, fmt.Errorf("resume run %s: step %q: %w", id, step, err)
		}
		for k, v := range kv {
			if err := checkKey(k); err != nil {
				return nil, fmt.Errorf("resume run %s: answer %q of step %q: %w", id, k, step, err)
			}
			// Dotted paths merge into earlier answers instead of replacing them.
			set = append(set, bson.E{Key: "answers." + step + "." + k, Value: v})
		}
	}
	inc := bson.D{{Key: "generation", Value: 1}}
	r, _, err := s.transition(ctx, id, change{to: runnerd.StatusQueued, set: set, inc: inc, returnRun: true})
	if err != nil {
		return nil, fmt.Errorf("resume run %s: %w", id, err)
	}
	return r, nil
}

// checkKey refuses names that MongoDB would read as a path or an operator.
func checkKey(k string) error {
	if k == "" || strings.ContainsAny(k, ".\x00") || strings.HasPrefix(k, "$") {
		return errBadKey
	}
	return nil
}

// change is one status change of a run: the status it goes to and why, and
// what else the same write sets and increments.
type change struct {
	to     runnerd.Status
	reason runnerd.Reason // "" removes the stored reason
	// epoch fences the write: the stored epoch must be this one. nil: an
	// unfenced write, which never applies to a running run (a runner owns it).
	epoch     *uint64
	set, inc  bson.D
	returnRun bool // return the updated run (noDoc / withDoc)
	// seq and landed, when set, go into the guard (see guard): a change
	// that also makes a batch of events visible.
	seq    *int64
	landed func(*Run) bool
}

// transition applies a status change with its guard: the allowed source
// statuses of c.to, and the epoch when fenced.
func (s *Store) transition(ctx context.Context, id string, c change) (*Run, time.Time, error) {
	to, reason, epoch, set := c.to, c.reason, c.epoch, c.set
	if to == runnerd.StatusRunning {
		return nil, time.Time{}, fmt.Errorf("%w: running is reached only by Claim", ErrIllegalTransition)
	}
	var from []runnerd.Status
	for _, f := range transitions[to] {
		if epoch == nil && f == runnerd.StatusRunning {
			continue
		}
		from = append(from, f)
	}
	if len(from) == 0 {
		return nil, time.Time{}, fmt.Errorf("%w: nothing may become %s without a claim", ErrIllegalTransition, to)
	}
	t := now()
	set = append(set, bson.E{Key: "status", Value: to}, bson.E{Key: "updated_at", Value: t})
	update := bson.D{}
	if to.Terminal() {
		set = append(set, bson.E{Key: "finished_at", Value: t})
	}
	if reason != "" {
		set = append(set, bson.E{Key: "reason", Value: reason})
	} else {
		update = append(update, bson.E{Key: "$unset", Value: bson.D{{Key: "reason", Value: ""}}})
	}
	update = append(update, bson.E{Key: "$set", Value: set})
	if len(c.inc) > 0 {
		update = append(update, bson.E{Key: "$inc", Value: c.inc})
	}
	if epoch != nil { // a fenced change leaves running: the attempt ends
		end := AttemptMark{Epoch: *epoch, At: t, Status: to, Reason: reason}
		update = append(update, bson.E{Key: "$push", Value: bson.D{{Key: "attempt_ends", Value: end}}})
	}
	r, err := s.apply(ctx, id, guard{epoch: epoch, from: from, to: to, seq: c.seq, landed: c.landed}, update, c.returnRun)
	if err != nil {
		return nil, time.Time{}, err
	}
	if r != nil { // the run as stored: by this write, or by the earlier one that landed
		t = r.UpdatedAt
	}
	return r, t, nil
}

// guard is what a conditional write requires of the stored run besides its id.
type guard struct {
	epoch *uint64          // fenced write: the stored epoch must be this one
	from  []runnerd.Status // the stored status must be one of these (nil: any)
	to    runnerd.Status   // for error messages
	seq   *int64           // the stored event_seq must be this one
	// landed, when set, recognises in the stored run a write that was made
	// already (a retry after a timeout whose write did land): the write
	// then succeeds without changing anything.
	landed func(*Run) bool
}

// Whether a conditional write returns the updated run. FerretDB refuses a
// projection on findAndModify, so a write that needs no document back is a
// plain update instead of a findAndModify carrying the whole run.
const (
	noDoc   = false
	withDoc = true
)

// maxAttempts bounds the tries of a conditional write whose diagnosis found
// nothing wrong (the run changed between the write and the read).
const maxAttempts = 3

// retryContended calls op up to maxAttempts times, at once (the next try
// meets the run as it now is: no reason to wait), while it fails with
// errContended; any other outcome is final.
func retryContended(ctx context.Context, op func() (*Run, error)) (*Run, error) {
	r, err := backoff.Retry(ctx, func() (*Run, error) {
		r, err := op()
		if err != nil && !errors.Is(err, errContended) {
			return r, backoff.Permanent(err)
		}
		return r, err
	}, backoff.WithMaxTries(maxAttempts), backoff.WithBackOff(&backoff.ZeroBackOff{}))
	var perm *backoff.PermanentError
	if errors.As(err, &perm) {
		return r, perm.Err
	}
	return r, err
}

var (
	errContended = errors.New("run changed concurrently, retries exhausted")
	errBadKey    = errors.New("empty, dotted or $-prefixed name")
)

// apply runs one conditional write on a run. When the guard does not hold
// it says why: ErrNotFound, ErrFenced, ErrTerminal, ErrIllegalTransition or
// ErrSeqConflict, in that order of precedence. A write the guard finds
// landed already returns the stored run.
func (s *Store) apply(ctx context.Context, id string, g guard, update bson.D, want bool) (*Run, error) {
	if s.revision {
		ctx, cancel := s.callCtx(ctx)
		defer cancel()
		return s.writeRevision(ctx, id, func(cur *Run) (*Run, error) {
			if err := g.check(cur); err != nil {
				if errors.Is(err, errLanded) {
					return cur, nil
				}
				return nil, err
			}
			return nil, nil
		}, update)
	}
	filter := bson.D{{Key: "_id", Value: id}}
	if g.epoch != nil {
		filter = append(filter, bson.E{Key: "epoch", Value: int64(*g.epoch)})
	}
	if g.from != nil {
		filter = append(filter, bson.E{Key: "status", Value: bson.D{{Key: "$in", Value: g.from}}})
	}
	if g.seq != nil {
		filter = append(filter, bson.E{Key: "event_seq", Value: *g.seq})
	}
	return retryContended(ctx, func() (*Run, error) {
		r, err := s.update(ctx, filter, update, want)
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, mongo.ErrNoDocuments) {
			return nil, err
		}
		cur, err := s.get(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := g.check(cur); err != nil {
			if errors.Is(err, errLanded) {
				return cur, nil
			}
			return nil, err
		}
		return nil, errContended
	})
}

// errLanded: the guard found its write made already.
var errLanded = errors.New("write landed already")

// check says why the stored run does not meet the guard, or nil.
func (g guard) check(cur *Run) error {
	if g.epoch != nil && cur.Epoch != *g.epoch {
		return fmt.Errorf("epoch %d, stored epoch %d: %w", *g.epoch, cur.Epoch, ErrFenced)
	}
	if g.landed != nil && g.landed(cur) {
		return errLanded
	}
	if g.from != nil && !slices.Contains(g.from, cur.Status) {
		if cur.Status.Terminal() {
			return fmt.Errorf("%s → %s: %w: %w", cur.Status, g.to, ErrIllegalTransition, ErrTerminal)
		}
		return fmt.Errorf("%s → %s: %w", cur.Status, g.to, ErrIllegalTransition)
	}
	if g.seq != nil && cur.EventSeq != *g.seq {
		return fmt.Errorf("batch after seq %d, stored last seq %d: %w", *g.seq, cur.EventSeq, ErrSeqConflict)
	}
	return nil
}

// update applies update to the run matching filter; mongo.ErrNoDocuments
// when none matches. Without want it returns a nil run.
func (s *Store) update(ctx context.Context, filter, update bson.D, want bool) (*Run, error) {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	if !want {
		res, err := s.runs.UpdateOne(ctx, filter, update)
		if err != nil {
			return nil, err
		}
		if res.MatchedCount == 0 {
			return nil, mongo.ErrNoDocuments
		}
		return nil, nil
	}
	opts := options.FindOneAndUpdate().SetReturnDocument(options.After)
	var r Run
	if err := s.runs.FindOneAndUpdate(ctx, filter, update, opts).Decode(&r); err != nil {
		return nil, err
	}
	return &r, nil
}
