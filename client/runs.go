package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
	"github.com/runnerd/runnerd/workflow"
)

// Get returns the run, or ErrNotFound.
func (c *Client) Get(ctx context.Context, id string) (*Run, error) {
	r, err := c.st.Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("no run %q: %w", id, ErrNotFound)
	}
	return r, classify(err)
}

// ListOptions filter List; zero values mean "any". Tenant empty lists every
// tenant's runs.
type ListOptions = store.ListOptions

// Page is one page of runs, newest first, and the cursor of the next one
// (ListOptions.Cursor). A page can be short and still have a Next: on
// FerretDB the search stops at ListOptions.Budget.
type Page = store.Page

// List returns runs, newest first: the first page of ListPage.
func (c *Client) List(ctx context.Context, o ListOptions) ([]*Run, error) {
	p, err := c.ListPage(ctx, o)
	if err != nil {
		return nil, err
	}
	return p.Runs, nil
}

// ListPage returns one page of runs matching o (status, tenant, from
// o.Cursor on), newest first, with the cursor of the next page.
func (c *Client) ListPage(ctx context.Context, o ListOptions) (*Page, error) {
	if o.Status != "" && !knownStatus(o.Status) {
		return nil, fmt.Errorf("%w: status %q: want one of %v", ErrInvalid, o.Status, Statuses)
	}
	p, err := c.st.ListPage(ctx, o)
	if err != nil {
		return nil, classify(err)
	}
	return p, nil
}

// Statuses are every run status, in the order a run goes through them.
var Statuses = []runnerd.Status{
	runnerd.StatusQueued, runnerd.StatusRunning, runnerd.StatusPaused,
	runnerd.StatusSucceeded, runnerd.StatusFailed, runnerd.StatusCancelled,
}

func knownStatus(s runnerd.Status) bool { return slices.Contains(Statuses, s) }

// CancelOutcome says what a Cancel did.
type CancelOutcome int

const (
	// CancelledAlready: the run was cancelled before this call.
	CancelledAlready CancelOutcome = iota + 1
	// CancelledNow: the run was paused and is cancelled now.
	CancelledNow
	// CancelRunning: the run's runner was told and stops it now.
	CancelRunning
	// CancelQueued: the run was queued and is cancelled now (its message,
	// when a runner picks it up, changes nothing).
	CancelQueued
)

// cancelTimeout bounds the round trip that hands the cancel to the server.
const cancelTimeout = 10 * time.Second

// Cancel cancels the run. A run that already finished otherwise is
// ErrConflict.
//
// The flag comes first: it is what makes a cancel land when no runner is
// listening (a runner restarting), since the supervisor checks it at pickup
// and while running. The cancel subject then stops a running run now. A
// paused or queued run has no runner: it is cancelled here (and its notice
// published), so a queued run does not wait for its message to come round,
// which may be behind a long line of its group or tenant. A queued run a
// runner claims meanwhile is running, and is stopped as one.
func (c *Client) Cancel(ctx context.Context, id string) (CancelOutcome, error) {
	q, err := c.queue("cancel")
	if err != nil {
		return 0, err
	}
	r, err := c.st.RequestCancel(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return 0, fmt.Errorf("no run %q: %w", id, ErrNotFound)
	case errors.Is(err, store.ErrTerminal):
		cur, gerr := c.Get(ctx, id)
		if gerr != nil {
			return 0, gerr
		}
		if cur.Status == runnerd.StatusCancelled {
			return CancelledAlready, nil
		}
		return 0, mark(ErrConflict, fmt.Errorf("run %s already finished: %s (%s)", id, cur.Status, cur.Reason))
	case err != nil:
		return 0, classify(err)
	}

	// The write applies to a queued or paused run only, never to one a
	// runner claimed since (the claim needs a queued run, this write a run
	// that is not running: one of the two wins). A paused run resumed
	// meanwhile is queued, and tried again.
	for try := 0; try < 3 && (r.Status == runnerd.StatusPaused || r.Status == runnerd.StatusQueued); try++ {
		at, err := c.st.SetStatusUnfenced(ctx, id, runnerd.StatusCancelled, runnerd.ReasonCancelled)
		if err == nil {
			c.leaveLines(ctx, r)
			c.announce(r.Written(runnerd.StatusCancelled, runnerd.ReasonCancelled, at))
			if r.Status == runnerd.StatusQueued {
				// A runner that has the run's message parked looks again
				// when its lines change, and drops it.
				return CancelQueued, nil
			}
			return CancelledNow, nil
		}
		if !errors.Is(err, store.ErrIllegalTransition) {
			return 0, classify(err)
		}
		cur, gerr := c.st.Get(ctx, id)
		if gerr != nil {
			return 0, classify(gerr)
		}
		r = cur
	}
	switch {
	case r.Status == runnerd.StatusCancelled:
		return CancelledAlready, nil
	case r.Status.Terminal():
		return 0, mark(ErrConflict, fmt.Errorf("run %s already finished: %s (%s)", id, r.Status, r.Reason))
	}
	// A flush waits for the server only under a deadline.
	pctx, cancel := context.WithTimeout(ctx, cancelTimeout)
	defer cancel()
	if err := q.PublishCancel(pctx, id); err != nil {
		return 0, classify(fmt.Errorf("run %s has cancel requested, but telling its runner failed (it will see the flag): %w", id, err))
	}
	if r.Status == runnerd.StatusRunning {
		return CancelRunning, nil
	}
	c.leaveLines(ctx, r)
	return CancelQueued, nil
}

// announce publishes the notice of a run this client settled itself, r as
// the write stored it (store.Run.Written).
func (c *Client) announce(r *store.Run) {
	if c.nc == nil {
		return
	}
	_ = queue.PublishNotice(c.nc, r.Notice())
}

// Resume answers a paused run's human steps (step id → key → value) and
// queues it again. A run that is not paused is ErrConflict, except a queued
// run that already holds these answers: an earlier Resume whose publish may
// have failed, published again (Again).
func (c *Client) Resume(ctx context.Context, id string, answers map[string]map[string]string) (*Queued, error) {
	q, err := c.queue("resume")
	if err != nil {
		return nil, err
	}
	if len(answers) == 0 {
		return nil, fmt.Errorf("%w: resume run %s: no answers", ErrInvalid, id)
	}
	r, err := c.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := CheckAnswers(r, answers); err != nil {
		return nil, mark(ErrInvalid, err)
	}
	again := false
	resumed, err := c.st.Resume(ctx, id, answers)
	if errors.Is(err, store.ErrIllegalTransition) {
		cur, gerr := c.Get(ctx, id)
		if gerr != nil {
			return nil, gerr
		}
		if cur.Status != runnerd.StatusQueued || !hasAnswers(cur.Answers, answers) {
			return nil, mark(ErrConflict, fmt.Errorf("run %s is %s, not paused: only a paused run can be resumed", id, describe(cur)))
		}
		resumed, err, again = cur, nil, true
	}
	if err != nil {
		return nil, classify(err)
	}
	if resumed, err = c.joinGroup(ctx, resumed); err != nil {
		return nil, err
	}
	if resumed.Status == runnerd.StatusCancelled {
		return &Queued{Run: resumed, Again: again}, nil
	}
	if _, err := c.publish(ctx, q, resumed, &queue.Resume{Answers: resumed.Answers}); err != nil {
		return nil, fmt.Errorf("%w\nrun %s was resumed but is not queued yet: repeat the resume to queue it", err, id)
	}
	return &Queued{Run: resumed, Again: again}, nil
}

// CheckAnswers refuses answers to steps that are not human steps of the
// run's workflow (they would be stored and never read), keys MongoDB would
// read as paths, and values over the limit.
func CheckAnswers(r *Run, answers map[string]map[string]string) error {
	var bad []string
	for step, kv := range answers {
		if !humanStep(r.Workflow, step) {
			bad = append(bad, fmt.Sprintf("%q is not a human step of run %s", step, r.ID))
			continue
		}
		for k, v := range kv {
			if strings.ContainsAny(k, ".$") {
				bad = append(bad, fmt.Sprintf("answer key %q of step %q: no '.' or '$'", k, step))
			}
			if len(v) > workflow.MaxAnswerBytes {
				bad = append(bad, fmt.Sprintf("answer %s.%s is %d bytes: the limit is %d (%d KiB)", step, k, len(v), workflow.MaxAnswerBytes, workflow.MaxAnswerBytes>>10))
			}
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	var waiting []string
	for _, id := range StepOrder(r) {
		if humanStep(r.Workflow, id) {
			waiting = append(waiting, id)
		}
	}
	human := strings.Join(waiting, ", ")
	if human == "" {
		human = "-"
	}
	return fmt.Errorf("--answer: %s (human steps: %s)", strings.Join(bad, "; "), human)
}

func hasAnswers(have, want map[string]map[string]string) bool {
	for step, kv := range want {
		for k, v := range kv {
			if got, ok := have[step][k]; !ok || got != v {
				return false
			}
		}
	}
	return true
}

// RetryOptions change what Retry does.
type RetryOptions struct {
	// FromScratch runs every step again, succeeded ones included.
	FromScratch bool
}

// Retry queues a failed or cancelled run again: steps that succeeded keep
// their outputs and are not run again (unless FromScratch); the run's
// History keeps how the earlier round ended. Any other status is
// ErrConflict, except a queued run whose last round ended and that no
// runner claimed since: an earlier Retry whose publish may have failed,
// published again (Again).
func (c *Client) Retry(ctx context.Context, id string, o RetryOptions) (*Queued, error) {
	q, err := c.queue("retry")
	if err != nil {
		return nil, err
	}
	r, err := c.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	again := false
	if r.Status == runnerd.StatusQueued && len(r.History) > 0 && r.History[len(r.History)-1].Attempt == r.Attempt {
		again = true
	} else {
		retried, err := c.st.Retry(ctx, id, o.FromScratch)
		if errors.Is(err, store.ErrIllegalTransition) {
			return nil, mark(ErrConflict, fmt.Errorf("run %s is %s: only a failed or cancelled run can be retried", id, describe(r)))
		}
		if err != nil {
			return nil, classify(err)
		}
		r = retried
	}
	if r, err = c.joinGroup(ctx, r); err != nil {
		return nil, err
	}
	if r.Status == runnerd.StatusCancelled {
		return &Queued{Run: r, Again: again}, nil
	}
	if _, err := c.publish(ctx, q, r, nil); err != nil {
		return nil, fmt.Errorf("%w\nrun %s was retried but is not queued yet: repeat the retry to queue it", err, id)
	}
	return &Queued{Run: r, Again: again}, nil
}

func describe(r *Run) string {
	what := string(r.Status)
	if r.Reason != "" {
		what += " (" + string(r.Reason) + ")"
	}
	return what
}

// StepOrder lists the run's steps in workflow order, then any step with
// saved state the workflow does not name (sorted), so every listing of a
// run reads top to bottom like its file.
func StepOrder(r *Run) []string {
	var ids []string
	seen := map[string]bool{}
	if r.Workflow != nil {
		for _, s := range r.Workflow.Steps {
			ids = append(ids, s.ID)
			seen[s.ID] = true
		}
	}
	var extra []string
	for id := range r.Steps {
		if !seen[id] {
			extra = append(extra, id)
		}
	}
	sort.Strings(extra)
	return append(ids, extra...)
}

// humanStep reports whether the workflow has a human step id.
func humanStep(w *workflow.Workflow, id string) bool {
	if w == nil {
		return false
	}
	s := w.Step(id)
	return s != nil && s.Kind == workflow.KindHuman
}

// RunLine is one run as the lists show it (runnerd list --json, the web
// UI's runs page): the columns of the table, not the whole document (which
// carries the workflow).
type RunLine struct {
	ID         string         `json:"id"`
	TenantID   string         `json:"tenant_id"`
	Workflow   string         `json:"workflow"`
	Status     runnerd.Status `json:"status"`
	Reason     runnerd.Reason `json:"reason"`
	Attempt    int            `json:"attempt"`
	CreatedAt  time.Time      `json:"created_at"`
	StartedAt  time.Time      `json:"started_at,omitzero"`
	FinishedAt time.Time      `json:"finished_at,omitzero"`
}

// LineOf is r's line in a list; StartedAt is the first attempt's start.
func LineOf(r *store.Run) RunLine {
	l := RunLine{
		ID: r.ID, TenantID: r.TenantID, Status: r.Status, Reason: r.Reason, Attempt: r.Attempt,
		CreatedAt: r.CreatedAt, StartedAt: utc(firstStart(r)), FinishedAt: r.FinishedAt,
	}
	if r.Workflow != nil {
		l.Workflow = r.Workflow.Name
	}
	return l
}

// Attempt is one attempt of a run: its claim and, once its runner wrote
// how it ended, that end.
type Attempt struct {
	Attempt    int            `json:"attempt"`
	Epoch      uint64         `json:"epoch"`
	RunnerID   string         `json:"runner_id,omitempty"`
	StartedAt  time.Time      `json:"started_at"`
	FinishedAt time.Time      `json:"finished_at,omitzero"` // none while it runs, nor when its runner vanished
	Status     runnerd.Status `json:"status,omitempty"`     // the status its end wrote
	Reason     runnerd.Reason `json:"reason,omitempty"`
}

// Attempts lists r's attempts as the run document records them, first
// first (nil for a run stored before it recorded them).
func Attempts(r *store.Run) []Attempt {
	var out []Attempt
	for i, s := range r.AttemptStarts {
		a := Attempt{Attempt: r.Attempt - len(r.AttemptStarts) + i + 1, Epoch: s.Epoch, RunnerID: s.RunnerID, StartedAt: utc(s.At)}
		for _, e := range r.AttemptEnds {
			if e.Epoch == s.Epoch {
				a.FinishedAt, a.Status, a.Reason = utc(e.At), e.Status, e.Reason
				break
			}
		}
		out = append(out, a)
	}
	return out
}

// firstStart is when r first started: its first recorded claim, else (a run
// stored before claims were recorded) its latest.
func firstStart(r *store.Run) time.Time {
	if len(r.AttemptStarts) > 0 {
		return r.AttemptStarts[0].At
	}
	return r.StartedAt
}

// Shown is r as `runnerd status` and the web API show it: every workflow
// step without saved state is pending, so readers see the whole workflow,
// not only what has run; a cancelled run's waiting steps (a paused run
// cancelled) say cancelled, since nothing waits any more; StartedAt is the
// first attempt's start (Attempts lists each); times are in UTC, as run ids
// are. It changes r and returns it.
func Shown(r *store.Run) *store.Run {
	r.StartedAt = firstStart(r)
	if r.Workflow != nil {
		for _, s := range r.Workflow.Steps {
			if r.Steps == nil {
				r.Steps = runnerd.StepStates{}
			}
			if r.Steps[s.ID] == nil {
				r.Steps[s.ID] = &runnerd.StepState{Status: runnerd.StepPending}
			}
		}
	}
	for _, st := range r.Steps {
		if r.Status == runnerd.StatusCancelled && st.Status == runnerd.StepWaiting {
			st.Status, st.Reason = runnerd.StepCancelled, runnerd.StepReason(runnerd.ReasonCancelled)
		}
		st.StartedAt, st.FinishedAt = utc(st.StartedAt), utc(st.FinishedAt)
		for i := range st.Tries {
			st.Tries[i].StartedAt, st.Tries[i].FinishedAt = utc(st.Tries[i].StartedAt), utc(st.Tries[i].FinishedAt)
		}
	}
	r.CreatedAt, r.UpdatedAt, r.StartedAt, r.FinishedAt = utc(r.CreatedAt), utc(r.UpdatedAt), utc(r.StartedAt), utc(r.FinishedAt)
	for i := range r.History {
		r.History[i].StartedAt, r.History[i].FinishedAt = utc(r.History[i].StartedAt), utc(r.History[i].FinishedAt)
	}
	return r
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}
