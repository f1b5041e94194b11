package runnerd

import "time"

// EventType names one kind of event in a run's stream.
type EventType string

const (
	EventRunStarted   EventType = "run_started"
	EventStepStarted  EventType = "step_started"
	EventLog          EventType = "log"
	EventOutput       EventType = "output"
	EventArtifact     EventType = "artifact"
	EventStepFinished EventType = "step_finished"
	// EventAttemptFailed records one failed attempt of a step: its exit,
	// and whether (Status: AttemptRetried or AttemptNotRetried) and why
	// (Message) it is retried.
	EventAttemptFailed EventType = "attempt_failed"
	EventPaused        EventType = "paused"
	EventRunFinished   EventType = "run_finished"
)

// The Status of an attempt_failed event.
const (
	AttemptRetried    = "retried"
	AttemptNotRetried = "not_retried"
)

// Event is one entry of a run's event stream. It is flat on purpose: the same
// value is printed by `runexec --json`, carried over gRPC and stored in
// MongoDB, and each type uses the few fields that concern it.
type Event struct {
	Type    EventType `json:"type" bson:"type"`
	Time    time.Time `json:"time" bson:"time"`
	Step    string    `json:"step,omitempty" bson:"step,omitempty"`
	Attempt int       `json:"attempt,omitempty" bson:"attempt,omitempty"` // the step's attempt

	// log: Stream is "stdout" or "stderr"; Text is a chunk of the output.
	Stream string `json:"stream,omitempty" bson:"stream,omitempty"`
	Text   string `json:"text,omitempty" bson:"text,omitempty"`

	// output: one key=value the step wrote to $RUNEXEC_OUTPUT.
	Key   string `json:"key,omitempty" bson:"key,omitempty"`
	Value string `json:"value,omitempty" bson:"value,omitempty"`

	// artifact: a path relative to the workdir.
	Path string `json:"path,omitempty" bson:"path,omitempty"`

	// step_finished and run_finished.
	Status     string `json:"status,omitempty" bson:"status,omitempty"` // a StepStatus or a Status
	Reason     string `json:"reason,omitempty" bson:"reason,omitempty"` // a StepReason or a Reason
	ExitCode   int    `json:"exit_code,omitempty" bson:"exit_code,omitempty"`
	Signal     string `json:"signal,omitempty" bson:"signal,omitempty"`
	DurationMS int64  `json:"duration_ms,omitempty" bson:"duration_ms,omitempty"`
	Message    string `json:"message,omitempty" bson:"message,omitempty"` // a human-readable detail

	// paused: the human step's prompt.
	Prompt string `json:"prompt,omitempty" bson:"prompt,omitempty"`

	// run_started: the W3C trace context (traceparent) of the message that
	// started this attempt, added by runnerd so a run's events join its trace.
	TraceParent string `json:"trace_parent,omitempty" bson:"trace_parent,omitempty"`
}
