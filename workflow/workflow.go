// Package workflow holds the workflow IR: its types, parsing from YAML or
// JSON, validation, and the templates and `if` expressions steps use.
//
// Templates (${{ expr }} in run, shell, env values and prompt) and `if`
// conditions are expr-lang expressions over three names: vars (the resolved
// vars), steps (id -> outputs, answers, status) and run (id). A step id with
// '-' is read with the index form, steps['deploy-prod'].status, since
// steps.deploy-prod is a subtraction. Validation rejects references to
// undeclared vars and to steps outside a step's transitive needs, so a
// template never reads a step that has not finished.
package workflow

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"go.yaml.in/yaml/v3"
)

// StepKind says how a step runs.
type StepKind string

const (
	KindCommand StepKind = ""      // run an argv or a shell script (the default)
	KindHuman   StepKind = "human" // pause the run until answers arrive
)

// Workflow is a DAG of steps.
type Workflow struct {
	Name        string            `json:"name,omitempty" yaml:"name,omitempty" bson:"name,omitempty"`
	Vars        map[string]string `json:"vars,omitempty" yaml:"vars,omitempty" bson:"vars,omitempty"` // defaults; a run's vars override
	MaxParallel int               `json:"max_parallel,omitempty" yaml:"max_parallel,omitempty" bson:"max_parallel,omitempty"`
	Timeout     Duration          `json:"timeout,omitempty" yaml:"timeout,omitempty" bson:"timeout,omitempty"`
	// Network is what the run's steps reach: NetworkHost, NetworkNone, or
	// "" for the runner's default (runnerd serve --step-network).
	Network string `json:"network,omitempty" yaml:"network,omitempty" bson:"network,omitempty"`
	// Concurrency, when set, limits how many of its runs run at once.
	Concurrency *Concurrency `json:"concurrency,omitempty" yaml:"concurrency,omitempty" bson:"concurrency,omitempty"`
	Steps       []Step       `json:"steps" yaml:"steps" bson:"steps"`
}

// Step is one node of the DAG.
type Step struct {
	ID      string            `json:"id" yaml:"id" bson:"id"`
	Kind    StepKind          `json:"kind,omitempty" yaml:"kind,omitempty" bson:"kind,omitempty"`
	Run     []string          `json:"run,omitempty" yaml:"run,omitempty" bson:"run,omitempty"`       // argv, templated per element
	Shell   string            `json:"shell,omitempty" yaml:"shell,omitempty" bson:"shell,omitempty"` // script for /bin/sh -e, templated
	Needs   []string          `json:"needs,omitempty" yaml:"needs,omitempty" bson:"needs,omitempty"`
	Env     map[string]string `json:"env,omitempty" yaml:"env,omitempty" bson:"env,omitempty"` // values templated
	Timeout Duration          `json:"timeout,omitempty" yaml:"timeout,omitempty" bson:"timeout,omitempty"`
	Retries int               `json:"retries,omitempty" yaml:"retries,omitempty" bson:"retries,omitempty"`
	Backoff Duration          `json:"backoff,omitempty" yaml:"backoff,omitempty" bson:"backoff,omitempty"` // first retry delay, doubled each retry
	// RetryRules (the long form of retries:) say which failures are retried.
	RetryRules *RetryRules `json:"retry_rules,omitempty" yaml:"retry_rules,omitempty" bson:"retry_rules,omitempty"`
	If         string      `json:"if,omitempty" yaml:"if,omitempty" bson:"if,omitempty"`
	Artifacts  []string    `json:"artifacts,omitempty" yaml:"artifacts,omitempty" bson:"artifacts,omitempty"`
	Prompt     string      `json:"prompt,omitempty" yaml:"prompt,omitempty" bson:"prompt,omitempty"` // human steps, templated
	// Secrets the step needs, by name: given to this step only.
	Secrets []SecretRef `json:"secrets,omitempty" yaml:"secrets,omitempty" bson:"secrets,omitempty"`
}

// The values of Workflow.Network.
const (
	NetworkHost = "host" // the host's network, loopback included
	NetworkNone = "none" // no network: a loopback of the run's own only
)

// DefaultBackoff is the first retry delay of a step that sets none.
const DefaultBackoff = time.Second

// Step returns the step with the given id, or nil.
func (w *Workflow) Step(id string) *Step {
	for i := range w.Steps {
		if w.Steps[i].ID == id {
			return &w.Steps[i]
		}
	}
	return nil
}

// Duration is a time.Duration written as a Go duration string ("90s", "10m").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string, or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		return d.parse(s)
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("duration must be a string like \"90s\" or a number of seconds, got %s", b)
	}
	return d.seconds(secs)
}

// UnmarshalYAML reads a duration string ("10m"), or a number of seconds.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode {
		switch n.ShortTag() {
		case "!!str":
			return d.parse(n.Value)
		case "!!int", "!!float":
			var secs float64
			if err := n.Decode(&secs); err == nil {
				return d.seconds(secs)
			}
		}
	}
	got := fmt.Sprintf("%q", n.Value)
	if n.Kind != yaml.ScalarNode {
		got = "a mapping or list"
	}
	return fmt.Errorf("duration must be a string like \"90s\" or a number of seconds, got %s", got)
}

// maxSeconds is the largest number of seconds a time.Duration holds.
const maxSeconds = float64(math.MaxInt64 / int64(time.Second))

func (d *Duration) seconds(secs float64) error {
	if math.IsNaN(secs) || math.Abs(secs) > maxSeconds {
		return fmt.Errorf("duration of %g seconds is out of range", secs)
	}
	*d = Duration(secs * float64(time.Second))
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

func (d *Duration) parse(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q (want e.g. \"90s\", \"10m\", \"1h30m\")", s)
	}
	*d = Duration(v)
	return nil
}
