package store

import (
	"slices"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/workflow"
)

// Run is the run document. The store sets Status, Epoch, Attempt,
// Generation, EventSeq and the timestamps; callers set the rest at Create.
type Run struct {
	ID       string             `bson:"_id" json:"id"`
	TenantID string             `bson:"tenant_id,omitempty" json:"tenant_id,omitempty"`
	Workflow *workflow.Workflow `bson:"workflow,omitempty" json:"workflow,omitempty"`
	Vars     map[string]string  `bson:"vars,omitempty" json:"vars,omitempty"`
	// ConcurrencyGroup is the run's concurrency group as evaluated at submit
	// (its workflow's concurrency.group with the run's vars; groups are per
	// tenant), with the limit and on_conflict it was submitted under. Empty
	// when the workflow has no concurrency. It stays after the run ends.
	ConcurrencyGroup string `bson:"concurrency_group,omitempty" json:"concurrency_group,omitempty"`
	ConcurrencyLimit int    `bson:"concurrency_limit,omitempty" json:"concurrency_limit,omitempty"`
	OnConflict       string `bson:"on_conflict,omitempty" json:"on_conflict,omitempty"`

	Status   runnerd.Status `bson:"status" json:"status"`
	Reason   runnerd.Reason `bson:"reason,omitempty" json:"reason,omitempty"`
	Attempt  int            `bson:"attempt" json:"attempt"` // claims so far; 1 during the first attempt
	Epoch    uint64         `bson:"epoch" json:"epoch"`     // fencing epoch of the last claim
	RunnerID string         `bson:"runner_id,omitempty" json:"runner_id,omitempty"`
	// Crashes counts the attempts whose child crashed, was OOM-killed or
	// stopped answering, or whose runner vanished: the budget of
	// --max-attempts. Waiting on a server or a lease never counts.
	Crashes int `bson:"crashes" json:"crashes"`
	// History keeps how earlier rounds ended, one entry per `runnerd retry`.
	History []PastRun `bson:"history,omitempty" json:"history,omitempty"`
	// Waiting is set while the run's runner waits for a server to come back.
	Waiting *Wait `bson:"waiting,omitempty" json:"waiting,omitempty"`

	Steps runnerd.StepStates `bson:"steps,omitempty" json:"steps,omitempty"`
	// Answers are given to human steps by Resume: step id → key → value.
	Answers map[string]map[string]string `bson:"answers,omitempty" json:"answers,omitempty"`

	CancelRequested bool `bson:"cancel_requested" json:"cancel_requested"`
	// Generation counts publications of the run's message; the message's
	// dedup id is the run id plus it, so a re-publish is not dropped as a
	// duplicate.
	Generation  int    `bson:"generation" json:"generation"`
	TimeoutSec  int    `bson:"timeout_sec,omitempty" json:"timeout_sec,omitempty"`
	TraceParent string `bson:"trace_parent,omitempty" json:"trace_parent,omitempty"`
	EventSeq    int64  `bson:"event_seq" json:"event_seq"` // seq of the last appended event

	CreatedAt  time.Time `bson:"created_at" json:"created_at"`
	UpdatedAt  time.Time `bson:"updated_at" json:"updated_at"`
	StartedAt  time.Time `bson:"started_at,omitempty" json:"started_at,omitzero"` // start of the latest attempt (client.Shown: the first)
	FinishedAt time.Time `bson:"finished_at,omitempty" json:"finished_at,omitzero"`
	// AttemptStarts has one mark per claim (its epoch, runner and time),
	// AttemptEnds one per fenced write that ended an attempt (the status it
	// wrote): an attempt whose runner vanished has none. client.Attempts
	// pairs them by epoch.
	AttemptStarts []AttemptMark `bson:"attempt_starts,omitempty" json:"-"`
	AttemptEnds   []AttemptMark `bson:"attempt_ends,omitempty" json:"-"`
}

// AttemptMark is the start or the end of one attempt of a run.
type AttemptMark struct {
	Epoch    uint64         `bson:"epoch"`
	RunnerID string         `bson:"runner_id,omitempty"`
	At       time.Time      `bson:"at"`
	Status   runnerd.Status `bson:"status,omitempty"` // an end: the status written
	Reason   runnerd.Reason `bson:"reason,omitempty"`
}

// transitions lists, for each status, the statuses a run may come from
// (docs/architecture.md, "Contracts the code keeps"). running→running is absent on purpose: only Claim with a newer
// epoch re-takes a running run, e.g. after its runner crashed.
var transitions = map[runnerd.Status][]runnerd.Status{
	runnerd.StatusRunning:   {runnerd.StatusQueued},
	runnerd.StatusSucceeded: {runnerd.StatusRunning},
	runnerd.StatusPaused:    {runnerd.StatusRunning},
	runnerd.StatusQueued:    {runnerd.StatusRunning, runnerd.StatusPaused},
	runnerd.StatusFailed:    {runnerd.StatusRunning, runnerd.StatusQueued},
	runnerd.StatusCancelled: {runnerd.StatusRunning, runnerd.StatusQueued, runnerd.StatusPaused},
}

// CanTransition reports whether a run may go from one status to another by a
// status write (Claim aside).
func CanTransition(from, to runnerd.Status) bool {
	return slices.Contains(transitions[to], from)
}

// Group is the run's concurrency group, limit and on_conflict: as stored
// at submit, or evaluated from its workflow and vars for a run submitted
// before they were stored. ok is false when the run is in no group.
func (r *Run) Group() (name string, limit int, onConflict string, ok bool, err error) {
	if r.ConcurrencyGroup != "" {
		limit = r.ConcurrencyLimit
		if limit <= 0 {
			limit = 1
		}
		onConflict = r.OnConflict
		if onConflict == "" {
			onConflict = workflow.OnConflictQueue
		}
		return r.ConcurrencyGroup, limit, onConflict, true, nil
	}
	if r.Workflow == nil || r.Workflow.Concurrency == nil {
		return "", 0, "", false, nil
	}
	name, err = r.Workflow.GroupOf(r.Vars)
	if err != nil {
		return "", 0, "", false, err
	}
	c := r.Workflow.Concurrency
	return name, c.EffectiveLimit(), c.Mode(), true, nil
}

// Notice is the notice of r as stored: its status, reason, attempt and
// times. A paused run has no finished_at; its paused_at is the document's
// updated_at, the time of the write that paused it.
func (r *Run) Notice() runnerd.Notice {
	n := runnerd.Notice{
		RunID: r.ID, Tenant: r.TenantID, TenantID: r.TenantID, Status: string(r.Status), Reason: string(r.Reason),
		Attempt: r.Attempt, CreatedAt: utc(r.CreatedAt), StartedAt: utc(r.StartedAt),
	}
	switch {
	case r.Status.Terminal():
		n.FinishedAt = utc(r.FinishedAt)
	case r.Status == runnerd.StatusPaused:
		n.PausedAt = utc(r.UpdatedAt)
	}
	return n
}

// Written returns a copy of r as the write that moved it to status to (with
// reason) at time at stored it: the copy's Notice is that write's notice,
// without reading the run back.
func (r *Run) Written(to runnerd.Status, reason runnerd.Reason, at time.Time) *Run {
	c := *r
	c.Status, c.Reason, c.UpdatedAt = to, reason, at
	if to.Terminal() {
		c.FinishedAt = at
	}
	return &c
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}
