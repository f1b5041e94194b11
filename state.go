package runnerd

import (
	"encoding/json"
	"time"
)

// Apply folds one event into the step states. The supervisor rebuilds a run's
// step state from the event stream it persisted, so what it saves is exactly
// what it observed; the executor keeps its own state the same way.
func (s StepStates) Apply(e Event) {
	if e.Step == "" {
		return
	}
	st := s[e.Step]
	if st == nil {
		st = &StepState{Status: StepPending}
		s[e.Step] = st
	}
	switch e.Type {
	case EventStepStarted:
		if st.Status != StepRunning || st.StartedAt.IsZero() {
			// A retry, or a restart after a crash, keeps the step's first start.
			st.StartedAt = e.Time
		}
		st.Status = StepRunning
		st.Reason = ""
		st.Attempts = e.Attempt
		st.ExitCode = 0
		st.Signal = ""
		st.Outputs = nil
		st.Artifacts = nil
		st.TryStartedAt = e.Time
		st.FinishedAt = time.Time{}
	case EventOutput:
		if st.Outputs == nil {
			st.Outputs = map[string]string{}
		}
		st.Outputs[e.Key] = e.Value
	case EventArtifact:
		st.Artifacts = append(st.Artifacts, e.Path)
	case EventAttemptFailed:
		st.AddTry(e)
	case EventPaused:
		st.Status = StepWaiting
		st.Prompt = e.Prompt
	case EventStepFinished:
		st.Status = StepStatus(e.Status)
		st.Reason = StepReason(e.Reason)
		st.ExitCode = e.ExitCode
		st.Signal = e.Signal
		if e.Attempt > st.Attempts {
			st.Attempts = e.Attempt
		}
		st.FinishedAt = e.Time
	}
}

// AddTry records the failed attempt an attempt_failed event reports (the
// executor calls it on its own state, Apply on a folded one).
func (st *StepState) AddTry(e Event) {
	if len(st.Tries) < maxTries {
		t := Try{Attempt: e.Attempt, Signal: e.Signal, Reason: StepReason(e.Reason), Retried: e.Status == AttemptRetried,
			Why: e.Message, StartedAt: st.TryStartedAt, FinishedAt: e.Time}
		if ranToExit(t.Reason, t.Signal, t.Attempt) {
			code := e.ExitCode
			t.ExitCode = &code
		}
		st.Tries = append(st.Tries, t)
	}
}

// MarshalJSON writes the state with exit_code only for a step whose process
// exited (succeeded, or failed with an exit status): a step that never ran
// (pending, waiting, skipped) or was killed by a signal has no exit code,
// and a 0 there would read as success.
func (st StepState) MarshalJSON() ([]byte, error) {
	type plain StepState // no MarshalJSON: no recursion
	var out struct {
		plain
		ExitCode *int `json:"exit_code,omitempty"`
	}
	out.plain = plain(st)
	if st.Exited() {
		out.ExitCode = &st.ExitCode
	}
	return json.Marshal(out)
}

// Exited reports whether the step's process ran to an exit status: not a
// human step, a step that could not start, or one a signal killed (a
// timeout's included; Signal names it).
func (st *StepState) Exited() bool {
	return (st.Status == StepSucceeded || st.Status == StepFailed) && ranToExit(st.Reason, st.Signal, st.Attempts) &&
		!st.StartedAt.IsZero()
}

// Exited reports whether the step_finished or attempt_failed event reports a
// process that exited by itself, so that its ExitCode means something.
func (e Event) Exited() bool {
	switch e.Type {
	case EventStepFinished:
		s := StepStatus(e.Status)
		return (s == StepSucceeded || s == StepFailed) && ranToExit(StepReason(e.Reason), e.Signal, e.Attempt)
	case EventAttemptFailed:
		return ranToExit(StepReason(e.Reason), e.Signal, e.Attempt)
	}
	return false
}

// ranToExit reports whether a step's try ran a process that exited by
// itself: it had a try (a human step has none), it started, and no signal
// ended it.
func ranToExit(reason StepReason, signal string, tries int) bool {
	return tries > 0 && signal == "" && reason != StepReasonStartError && reason != StepReasonTemplate
}
