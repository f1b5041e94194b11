// Package runnerd holds the vocabulary every part of runnerd shares: run and
// step statuses, stop reasons, the saved step state and the event stream.
//
// The supervisor, the executor, the stores and the gRPC seam all speak these
// types, so a status or a reason means the same thing on the wire, in MongoDB
// and in a log line.
package runnerd

import (
	"maps"
	"slices"
	"time"
)

// Status is the status of a run. The transitions allowed between statuses are
// in docs/architecture.md, "Contracts the code keeps".
type Status string

const (
	StatusQueued    Status = "queued"
	StatusRunning   Status = "running"
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
	StatusCancelled Status = "cancelled"
	StatusPaused    Status = "paused"
)

// Terminal reports whether a run in this status will never run again.
func (s Status) Terminal() bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusCancelled
}

// Settled reports whether a run in this status stays as it is until someone
// acts on it: terminal, or paused for answers. A follower stops there.
func (s Status) Settled() bool { return s.Terminal() || s == StatusPaused }

// Reason says why a run stopped.
//
// Reasons are an API: users build retry rules and dashboards on them, so they
// are never renamed, and one is added only with care.
type Reason string

const (
	ReasonCompleted           Reason = "completed"
	ReasonStepFailed          Reason = "step_failed"
	ReasonTimeout             Reason = "timeout"
	ReasonCancelled           Reason = "cancelled"
	ReasonPaused              Reason = "paused"
	ReasonChildCrashed        Reason = "child_crashed"
	ReasonChildOOM            Reason = "child_oom"
	ReasonChildUnresponsive   Reason = "child_unresponsive"
	ReasonLeaseLost           Reason = "lease_lost"
	ReasonRunnerShutdown      Reason = "runner_shutdown"
	ReasonInvalidMessage      Reason = "invalid_message"
	ReasonInvalidWorkflow     Reason = "invalid_workflow"
	ReasonRunNotFound         Reason = "run_not_found"
	ReasonTenantMismatch      Reason = "tenant_mismatch"
	ReasonMaxAttemptsExceeded Reason = "max_attempts_exceeded"
	ReasonStoreUnavailable    Reason = "store_unavailable"
	ReasonExecutorStartFailed Reason = "executor_start_failed"
	// ReasonSecretMissing: a secret the workflow's steps declare is not
	// configured for the run's tenant (--secrets-dir, RUNNERD_SECRET_<NAME>).
	// Added in the second wave: the run fails at pickup, before any step.
	ReasonSecretMissing Reason = "secret_missing"
	// ReasonGroupFull: the run's concurrency group was full when it was
	// submitted and its on_conflict is cancel_new; it never ran. Added with
	// concurrency groups.
	ReasonGroupFull Reason = "group_full"
)

// Reasons lists every stop reason, in their documented order.
var Reasons = []Reason{
	ReasonCompleted, ReasonStepFailed, ReasonTimeout, ReasonCancelled, ReasonPaused,
	ReasonChildCrashed, ReasonChildOOM, ReasonChildUnresponsive, ReasonLeaseLost,
	ReasonRunnerShutdown, ReasonInvalidMessage, ReasonInvalidWorkflow, ReasonRunNotFound,
	ReasonTenantMismatch, ReasonMaxAttemptsExceeded, ReasonStoreUnavailable,
	ReasonExecutorStartFailed, ReasonSecretMissing, ReasonGroupFull,
}

// StepStatus is the status of one step of a run.
type StepStatus string

const (
	StepPending   StepStatus = "pending"
	StepRunning   StepStatus = "running"
	StepSucceeded StepStatus = "succeeded"
	StepFailed    StepStatus = "failed"
	StepSkipped   StepStatus = "skipped"
	StepWaiting   StepStatus = "waiting" // a human step waiting for answers
	StepCancelled StepStatus = "cancelled"
)

// Terminal reports whether the step will not run again in this run.
func (s StepStatus) Terminal() bool {
	return s == StepSucceeded || s == StepFailed || s == StepSkipped
}

// StepReason says why one step finished.
type StepReason string

const (
	StepReasonCompleted  StepReason = "completed"   // exit 0, or a human step answered
	StepReasonExitCode   StepReason = "exit_code"   // non-zero exit
	StepReasonSignal     StepReason = "signal"      // killed by a signal it did not ask for
	StepReasonTimeout    StepReason = "timeout"     // step or run deadline
	StepReasonCancelled  StepReason = "cancelled"   // run cancelled while the step ran
	StepReasonCondition  StepReason = "condition"   // skipped: its `if` was false
	StepReasonDependency StepReason = "dependency"  // skipped: a step it needs did not succeed
	StepReasonStartError StepReason = "start_error" // the process could not be started
	StepReasonArtifact   StepReason = "artifact"    // an artifact was missing or left the workdir
	StepReasonTemplate   StepReason = "template"    // a template or `if` failed to evaluate
	StepReasonOutputs    StepReason = "outputs"     // the step's outputs passed the size limits
)

// StepState is what is saved of one step so an interrupted or paused run
// continues without running again what already succeeded.
type StepState struct {
	Status    StepStatus        `json:"status" bson:"status"`
	Reason    StepReason        `json:"reason,omitempty" bson:"reason,omitempty"`
	Attempts  int               `json:"attempts,omitempty" bson:"attempts,omitempty"`
	ExitCode  int               `json:"exit_code" bson:"exit_code"`
	Signal    string            `json:"signal,omitempty" bson:"signal,omitempty"`
	Outputs   map[string]string `json:"outputs,omitempty" bson:"outputs,omitempty"`
	Answers   map[string]string `json:"answers,omitempty" bson:"answers,omitempty"`
	Prompt    string            `json:"prompt,omitempty" bson:"prompt,omitempty"`
	Artifacts []string          `json:"artifacts,omitempty" bson:"artifacts,omitempty"`
	LogKey    string            `json:"log_key,omitempty" bson:"log_key,omitempty"`
	// Tries records each failed attempt: its exit, and whether and why it
	// was retried (the step's retry rules).
	Tries []Try `json:"tries,omitempty" bson:"tries,omitempty"`
	// StartedAt is the step's first start in the run; a retry keeps it.
	StartedAt  time.Time `json:"started_at,omitzero" bson:"started_at,omitempty"`
	FinishedAt time.Time `json:"finished_at,omitzero" bson:"finished_at,omitempty"`
	// TryStartedAt is the start of the step's latest try: the start a
	// failed try records, and how a run attempt tells the steps it ran.
	TryStartedAt time.Time `json:"-" bson:"try_started_at,omitempty"`
}

// Try is one failed attempt of a step.
type Try struct {
	Attempt int `json:"attempt" bson:"attempt"`
	// ExitCode is nil when the try's process did not exit by itself: it
	// could not start, or a signal (also a timeout's) killed it.
	ExitCode  *int       `json:"exit_code,omitempty" bson:"exit_code,omitempty"`
	Signal    string     `json:"signal,omitempty" bson:"signal,omitempty"`
	Reason    StepReason `json:"reason,omitempty" bson:"reason,omitempty"`
	Retried   bool       `json:"retried" bson:"retried"`
	Why       string     `json:"why,omitempty" bson:"why,omitempty"`
	StartedAt time.Time  `json:"started_at,omitzero" bson:"started_at,omitempty"`
	// FinishedAt is stored as "at", its name before tries had a start.
	FinishedAt time.Time `json:"finished_at,omitzero" bson:"at,omitempty"`
}

// maxTries bounds the failed attempts a step's state keeps.
const maxTries = 100

// StepStates maps step ids to their saved state.
type StepStates map[string]*StepState

// Clone returns a deep copy, so a snapshot can be handed to another goroutine.
func (s StepStates) Clone() StepStates {
	if s == nil {
		return nil
	}
	out := make(StepStates, len(s))
	for id, st := range s {
		c := *st
		c.Outputs = maps.Clone(st.Outputs)
		c.Answers = maps.Clone(st.Answers)
		c.Artifacts = slices.Clone(st.Artifacts)
		c.Tries = slices.Clone(st.Tries)
		out[id] = &c
	}
	return out
}
