package executor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/contain"
	"github.com/runnerd/runnerd/workflow"
)

// Context causes that tell a deadline kill from a cancel.
var (
	errRunDeadline = errors.New("run deadline exceeded")
	errStepTimeout = errors.New("step timeout exceeded")
)

// stopKind records why the run stopped starting steps; the first one wins.
type stopKind int

const (
	stopNone stopKind = iota
	stopFailed
	stopDeadline
	stopCancelled
)

// message is what step goroutines send to the scheduler: either an event to
// forward to the sink, or the final state of a step. One channel for both
// keeps a step's events ahead of its end.
type message struct {
	event runnerd.Event
	done  *stepDone
}

type stepDone struct {
	id    string
	state runnerd.StepState
	msg   string // a human-readable detail for step_finished
}

// run is the state of one Run call. Only the scheduler goroutine touches
// its fields; step goroutines get copies and report back through msgs.
type run struct {
	opts    Options
	wf      *workflow.Workflow
	states  runnerd.StepStates
	msgs    chan message
	reaper  *contain.Reaper
	running int
	stop    stopKind
	failMsg string
}

func newRun(opts Options) *run {
	r := &run{
		opts:   opts,
		wf:     opts.Workflow,
		states: make(runnerd.StepStates, len(opts.Workflow.Steps)),
		msgs:   make(chan message, 256),
		reaper: contain.NewReaper("RUNEXEC_STEP"),
	}
	saved := opts.State.Clone()
	for _, s := range r.wf.Steps {
		st := saved[s.ID]
		if st == nil || !keepSaved(st) {
			prev := st
			st = &runnerd.StepState{Status: runnerd.StepPending}
			if prev != nil {
				// Keep counting attempts so log markers and output files
				// of a resumed run do not reuse the earlier numbers, and
				// keep answers a paused human step may already have.
				st.Attempts = prev.Attempts
				st.Answers = prev.Answers
			}
		}
		r.states[s.ID] = st
	}
	return r
}

// keepSaved reports whether a saved step is final for this run. Succeeded
// steps and steps skipped by their own `if` are not run again; a step skipped
// because a need failed is evaluated again, since that need runs again.
func keepSaved(st *runnerd.StepState) bool {
	switch st.Status {
	case runnerd.StepSucceeded:
		return true
	case runnerd.StepSkipped:
		return st.Reason != runnerd.StepReasonDependency
	}
	return false
}

func (r *run) emit(e runnerd.Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	r.opts.Sink(e)
}

func (r *run) checkpoint() {
	if r.opts.Checkpoint != nil {
		r.opts.Checkpoint(r.states.Clone())
	}
}

// execute is the scheduler loop. It returns once no step runs and none can
// start.
func (r *run) execute(parent context.Context) Result {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	if !r.opts.Deadline.IsZero() {
		var cancelDeadline context.CancelFunc
		ctx, cancelDeadline = context.WithDeadlineCause(ctx, r.opts.Deadline, errRunDeadline)
		defer cancelDeadline()
	}

	r.emit(runnerd.Event{Type: runnerd.EventRunStarted})
	done := ctx.Done()
	for {
		if ctx.Err() != nil {
			r.stopFor(ctx)
			done = nil
		}
		r.schedule(ctx)
		if r.running == 0 {
			break
		}
		select {
		case m := <-r.msgs:
			if ctx.Err() != nil {
				// A step killed by the run deadline must not be taken
				// for an ordinary step failure.
				r.stopFor(ctx)
				done = nil
			}
			r.handle(m)
		case <-done:
			// Running steps see the same context and stop themselves;
			// keep draining their messages until they have.
			r.stopFor(ctx)
			done = nil
		}
	}
	// Whatever escaped a step and was reparented to us goes now.
	r.reaper.Sweep()
	res := r.result()
	r.checkpoint()
	r.emit(runnerd.Event{Type: runnerd.EventRunFinished, Status: string(res.Status), Reason: string(res.Reason), Message: res.Message})
	return res
}

func (r *run) stopFor(ctx context.Context) {
	if r.stop != stopNone {
		return
	}
	if errors.Is(context.Cause(ctx), errRunDeadline) {
		r.stop = stopDeadline
		r.failMsg = "run deadline exceeded"
	} else {
		r.stop = stopCancelled
	}
}

func (r *run) handle(m message) {
	if m.done == nil {
		r.emit(m.event)
		return
	}
	r.running--
	st := m.done.state
	r.states[m.done.id] = &st
	r.finished(m.done.id, startedAt(st), m.done.msg)
	if st.Status == runnerd.StepFailed && r.stop == stopNone {
		r.stop = stopFailed
		r.failMsg = fmt.Sprintf("step %s failed", m.done.id)
		if m.done.msg != "" {
			r.failMsg += ": " + m.done.msg
		}
	}
}

// startedAt is when a step began, for its duration.
func startedAt(st runnerd.StepState) time.Time {
	if st.StartedAt.IsZero() {
		return st.FinishedAt
	}
	return st.StartedAt
}

// finished emits step_finished for a step whose state is final and saves a
// checkpoint.
func (r *run) finished(id string, started time.Time, msg string) {
	st := r.states[id]
	e := runnerd.Event{
		Type:    runnerd.EventStepFinished,
		Step:    id,
		Attempt: st.Attempts,
		Status:  string(st.Status),
		Reason:  string(st.Reason),
		Signal:  st.Signal,
		Message: msg,
	}
	if st.Exited() { // a step that never started or was killed has no exit code
		e.ExitCode = st.ExitCode
	}
	if !started.IsZero() && !st.FinishedAt.IsZero() {
		e.DurationMS = st.FinishedAt.Sub(started).Milliseconds()
	}
	r.emit(e)
	r.checkpoint()
}

// schedule settles every step that can be settled without a process
// (skips, answered or waiting human steps) and starts ready steps while
// slots are free. Settling one step can make another ready, so it loops
// until nothing changes.
func (r *run) schedule(ctx context.Context) {
	for changed := true; changed; {
		changed = false
		for i := range r.wf.Steps {
			s := &r.wf.Steps[i]
			st := r.states[s.ID]
			if st.Status != runnerd.StepPending {
				continue
			}
			ready, blocked := r.needsState(s)
			if blocked != "" {
				r.skip(s.ID, runnerd.StepReasonDependency, fmt.Sprintf("need %s did not succeed", blocked))
				changed = true
				continue
			}
			if !ready || r.stop != stopNone {
				continue
			}
			if s.Kind != workflow.KindHuman && r.wf.MaxParallel > 0 && r.running >= r.wf.MaxParallel {
				continue
			}
			r.begin(ctx, s)
			changed = true
		}
	}
}

// needsState reports whether every need of s has succeeded, or names a need
// that is done without succeeding (which skips s).
func (r *run) needsState(s *workflow.Step) (ready bool, blocked string) {
	ready = true
	for _, n := range s.Needs {
		st := r.states[n]
		switch {
		case st == nil:
			return false, n
		case st.Status == runnerd.StepSucceeded:
		case st.Status.Terminal():
			return false, n
		default:
			ready = false
		}
	}
	return ready, ""
}

func (r *run) skip(id string, reason runnerd.StepReason, msg string) {
	st := r.states[id]
	now := time.Now()
	st.Status, st.Reason, st.FinishedAt = runnerd.StepSkipped, reason, now
	r.finished(id, time.Time{}, msg)
}

// begin settles or starts one ready step.
func (r *run) begin(ctx context.Context, s *workflow.Step) {
	st := r.states[s.ID]
	sc := r.scope()
	if s.If != "" {
		ok, err := workflow.Condition(s.If, sc)
		if err != nil {
			r.failNow(s.ID, runnerd.StepReasonTemplate, fmt.Sprintf("if: %v", err))
			return
		}
		if !ok {
			r.skip(s.ID, runnerd.StepReasonCondition, "if was false")
			return
		}
	}
	if s.Kind == workflow.KindHuman {
		r.human(s, sc)
		return
	}
	st.Status = runnerd.StepRunning
	st.StartedAt = time.Now()
	r.running++
	job := &stepJob{
		step:   s,
		state:  *st,
		scope:  sc,
		opts:   &r.opts,
		reaper: r.reaper,
		send: func(m message) {
			r.msgs <- m
		},
	}
	go job.run(ctx)
}

// failNow fails a step that could not be started (template or `if` error).
func (r *run) failNow(id string, reason runnerd.StepReason, msg string) {
	st := r.states[id]
	st.Status, st.Reason, st.FinishedAt = runnerd.StepFailed, reason, time.Now()
	r.finished(id, time.Time{}, msg)
	if r.stop == stopNone {
		r.stop = stopFailed
		r.failMsg = fmt.Sprintf("step %s failed: %s", id, msg)
	}
}

// human settles a human step: answered steps succeed with their answers,
// others wait and the run pauses once nothing else can run.
func (r *run) human(s *workflow.Step, sc workflow.Scope) {
	st := r.states[s.ID]
	answers := r.opts.Answers[s.ID]
	if len(answers) == 0 {
		answers = st.Answers
	}
	now := time.Now()
	if len(answers) > 0 {
		st.Status, st.Reason = runnerd.StepSucceeded, runnerd.StepReasonCompleted
		st.Answers = maps.Clone(answers)
		st.StartedAt, st.FinishedAt = now, now
		st.Prompt = ""
		r.finished(s.ID, now, "answered")
		return
	}
	prompt, err := workflow.Expand(s.Prompt, sc)
	if err != nil {
		r.failNow(s.ID, runnerd.StepReasonTemplate, fmt.Sprintf("prompt: %v", err))
		return
	}
	st.Status, st.Prompt = runnerd.StepWaiting, prompt
	r.emit(runnerd.Event{Type: runnerd.EventPaused, Step: s.ID, Prompt: prompt})
	r.checkpoint()
}

// scope is what templates and `if` of a step starting now can read.
func (r *run) scope() workflow.Scope {
	sc := workflow.Scope{
		RunID: r.opts.RunID,
		Vars:  r.opts.Vars,
		Steps: make(map[string]workflow.StepScope, len(r.states)),
	}
	for id, st := range r.states {
		sc.Steps[id] = workflow.StepScope{
			Status:  string(st.Status),
			Outputs: maps.Clone(st.Outputs),
			Answers: maps.Clone(st.Answers),
		}
	}
	return sc
}

// result classifies the end of the run. The first stop wins: a step that
// failed before a cancel leaves the run failed.
func (r *run) result() Result {
	res := Result{Steps: r.states.Clone()}
	switch r.stop {
	case stopFailed:
		res.Status, res.Reason, res.Message = runnerd.StatusFailed, runnerd.ReasonStepFailed, r.failMsg
		return res
	case stopDeadline:
		res.Status, res.Reason, res.Message = runnerd.StatusFailed, runnerd.ReasonTimeout, r.failMsg
		return res
	case stopCancelled:
		res.Status, res.Reason, res.Message = runnerd.StatusCancelled, runnerd.ReasonCancelled, "run cancelled"
		return res
	}
	var waiting []string
	for _, s := range r.wf.Steps {
		if r.states[s.ID].Status == runnerd.StepWaiting {
			waiting = append(waiting, s.ID)
		}
	}
	if len(waiting) > 0 {
		res.Status, res.Reason = runnerd.StatusPaused, runnerd.ReasonPaused
		res.Message = fmt.Sprintf("waiting for answers to %v", waiting)
		return res
	}
	for _, s := range r.wf.Steps {
		if !r.states[s.ID].Status.Terminal() {
			// Unreachable with a validated DAG; say so rather than lie.
			res.Status, res.Reason = runnerd.StatusFailed, runnerd.ReasonStepFailed
			res.Message = fmt.Sprintf("step %s never became ready", s.ID)
			return res
		}
	}
	res.Status, res.Reason = runnerd.StatusSucceeded, runnerd.ReasonCompleted
	return res
}
