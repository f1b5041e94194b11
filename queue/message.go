package queue

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/runnerd/runnerd/workflow"
)

// Version is the message format this runner reads and writes. A message
// with another v is refused (ErrUnknownVersion), never guessed at.
const Version = 1

// Message is the body of a run message on the stream.
type Message struct {
	V           int                `json:"v"`
	RunID       string             `json:"run_id"`
	TenantID    string             `json:"tenant_id"`
	Workflow    *workflow.Workflow `json:"workflow,omitempty"`     // the workflow itself, or
	WorkflowRef string             `json:"workflow_ref,omitempty"` // its S3 key, for large ones
	Vars        map[string]string  `json:"vars,omitempty"`         // override the workflow's defaults
	TimeoutSec  int                `json:"timeout_sec,omitempty"`  // run deadline; 0: the workflow's
	Resume      *Resume            `json:"resume,omitempty"`       // set when a paused run continues
	PublishedAt time.Time          `json:"published_at"`
}

// Resume carries the answers that let a paused run continue.
type Resume struct {
	// Answers maps a human step's id to its answers (key → value).
	Answers map[string]map[string]string `json:"answers"`
}

// FieldError says which field of a message is wrong. Decode and Validate
// return it wrapped with ErrInvalidMessage; errors.As finds it.
type FieldError struct {
	Field string // the JSON name, e.g. "run_id" or "resume.answers"
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %w", ErrInvalidMessage, &FieldError{Field: field, Err: fmt.Errorf(format, args...)})
}

// idPattern is the syntax of run and tenant ids. They become KV keys, a
// token of the cancel subject, S3 key and file name segments, so they are
// one safe token: no '.' (a subject token separator, and the root of "." and
// ".."), no '/', no wildcard, at most 128 bytes. (The length is checked
// apart: a counted repetition compiles into one copy of its class per
// count, which every process would pay for at start.)
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)

func validID(id string) bool { return len(id) <= 128 && idPattern.MatchString(id) }

// ValidateRunID reports whether id can be a run id: 1-128 letters, digits,
// '_' or '-', starting with a letter or digit.
func ValidateRunID(id string) error {
	if !validID(id) {
		return fmt.Errorf("run id %q: want 1-128 letters, digits, '_' or '-', starting with a letter or digit", id)
	}
	return nil
}

// workflowRefPattern is the only S3 key a message may point the runner at:
// a runner reads it with its own credentials, so a free-form key would let
// a publisher make it read any object of the bucket.
var workflowRefPattern = regexp.MustCompile(`^workflows/[0-9a-f]{64}\.json$`)

// WorkflowRef returns the S3 key a workflow too large for a message is
// stored under: workflows/<sha256 of its JSON>.json.
func WorkflowRef(workflowJSON []byte) string {
	sum := sha256.Sum256(workflowJSON)
	return "workflows/" + hex.EncodeToString(sum[:]) + ".json"
}

// Decode reads a message strictly: exact field names, each at most once,
// nothing after the object, v first (a message of another version is
// ErrUnknownVersion even if it has fields this runner does not know), then
// what Validate checks. Every other refusal is ErrInvalidMessage wrapping a
// FieldError; a bad embedded workflow also matches workflow.ErrInvalid, so
// the supervisor can tell invalid_workflow from invalid_message.
func Decode(data []byte) (*Message, error) {
	fields, err := splitObject(data)
	if err != nil {
		return nil, err
	}
	rawV, ok := fields.get("v")
	if !ok {
		return nil, invalid("v", "missing")
	}
	var v int
	if err := json.Unmarshal(rawV, &v); err != nil {
		return nil, invalid("v", "want an integer, got %s", truncate(rawV))
	}
	if v != Version {
		return nil, fmt.Errorf("%w: v=%d (this runner reads v=%d)", ErrUnknownVersion, v, Version)
	}

	var m Message
	targets := map[string]any{
		"v":            &m.V,
		"run_id":       &m.RunID,
		"tenant_id":    &m.TenantID,
		"workflow_ref": &m.WorkflowRef,
		"vars":         &m.Vars,
		"timeout_sec":  &m.TimeoutSec,
		"resume":       &m.Resume,
		"published_at": &m.PublishedAt,
	}
	for _, f := range fields {
		if f.name == "workflow" {
			// The workflow package's own reader: exact-case field names,
			// every problem at once, and validation.
			if string(f.raw) == "null" {
				continue
			}
			w, err := workflow.Parse(f.raw, "")
			if err != nil {
				return nil, invalid("workflow", "%w", err)
			}
			m.Workflow = w
			continue
		}
		target, ok := targets[f.name]
		if !ok {
			return nil, invalid(f.name, "unknown field")
		}
		if err := unmarshalStrict(f.raw, target); err != nil {
			return nil, invalid(f.name, "%w", err)
		}
	}
	if err := m.validateEnvelope(); err != nil { // the workflow was validated by Parse
		return nil, err
	}
	return &m, nil
}

// Validate checks what Decode checks beyond the JSON shape, the embedded
// workflow included; Publish calls it so a message no runner would accept
// never reaches the stream.
func (m *Message) Validate() error {
	if err := m.validateEnvelope(); err != nil {
		return err
	}
	if m.Workflow != nil {
		if err := m.Workflow.Validate(); err != nil {
			return invalid("workflow", "%w", err)
		}
	}
	return nil
}

// validateEnvelope checks every field but the embedded workflow's content.
func (m *Message) validateEnvelope() error {
	if m.V != Version {
		return fmt.Errorf("%w: v=%d (this runner reads v=%d)", ErrUnknownVersion, m.V, Version)
	}
	if m.RunID == "" {
		return invalid("run_id", "missing")
	}
	if err := ValidateRunID(m.RunID); err != nil {
		return invalid("run_id", "%w", err)
	}
	if m.TenantID == "" {
		return invalid("tenant_id", "missing")
	}
	if !validID(m.TenantID) {
		return invalid("tenant_id", "%q: want 1-128 letters, digits, '_' or '-', starting with a letter or digit", m.TenantID)
	}
	switch {
	case m.Workflow == nil && m.WorkflowRef == "":
		return invalid("workflow", "missing: set workflow or workflow_ref")
	case m.Workflow != nil && m.WorkflowRef != "":
		return invalid("workflow", "both workflow and workflow_ref are set: set one")
	case m.WorkflowRef != "" && !workflowRefPattern.MatchString(m.WorkflowRef):
		return invalid("workflow_ref", "%q: want workflows/<sha256 hex>.json", m.WorkflowRef)
	}
	for k := range m.Vars {
		if k == "" {
			return invalid("vars", "empty variable name")
		}
	}
	if m.TimeoutSec < 0 {
		return invalid("timeout_sec", "%d: want 0 (no run deadline of its own) or more", m.TimeoutSec)
	}
	if m.Resume != nil {
		if len(m.Resume.Answers) == 0 {
			return invalid("resume.answers", "missing: a resume carries at least one step's answers")
		}
		for step := range m.Resume.Answers {
			if step == "" {
				return invalid("resume.answers", "empty step id")
			}
		}
	}
	if m.PublishedAt.IsZero() {
		return invalid("published_at", "missing")
	}
	return nil
}

type rawField struct {
	name string
	raw  json.RawMessage
}

type rawFields []rawField

func (fs rawFields) get(name string) (json.RawMessage, bool) {
	for _, f := range fs {
		if f.name == name {
			return f.raw, true
		}
	}
	return nil, false
}

// splitObject splits a JSON object into its fields, in order. It exists
// because encoding/json matches names case-insensitively and lets the last
// of two equal names win: a message other tools could read differently
// ("run_id" and "RUN_ID") is refused here instead.
func splitObject(data []byte) (rawFields, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%w: not JSON: %w", ErrInvalidMessage, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("%w: not a JSON object", ErrInvalidMessage)
	}
	var fields rawFields
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: not JSON: %w", ErrInvalidMessage, err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("%w: not JSON: object key is %v", ErrInvalidMessage, tok)
		}
		if _, dup := fields.get(name); dup {
			return nil, invalid(name, "appears twice")
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%w: not JSON: %w", ErrInvalidMessage, err)
		}
		fields = append(fields, rawField{name: name, raw: raw})
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, fmt.Errorf("%w: not JSON: %w", ErrInvalidMessage, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrInvalidMessage)
	}
	return fields, nil
}

// unmarshalStrict refuses unknown fields at every depth (resume's included).
func unmarshalStrict(raw json.RawMessage, target any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(target)
}

// truncate keeps error messages short when a field holds a large value.
func truncate(b []byte) string {
	const max = 64
	if len(b) <= max {
		return string(b)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(b[cut]) {
		cut--
	}
	return string(b[:cut]) + "…"
}
