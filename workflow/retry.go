package workflow

import (
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// RetryRules say which failed attempts of a step are retried (within
// Step.Retries). Written as the long form of `retries:`
//
//	retries: {limit: 3, backoff: 2s, max_backoff: 1m, on_exit_codes: [75],
//	          except_exit_codes: [2], on_signals: [SIGKILL], on_timeout: false}
//
// and carried on the wire as the step's retries and backoff plus these rules.
// Without on_exit_codes and on_signals every failure is retried but the
// except_exit_codes; with either, only the failures they name are.
type RetryRules struct {
	MaxBackoff      Duration `json:"max_backoff,omitempty" yaml:"max_backoff,omitempty" bson:"max_backoff,omitempty"`
	OnExitCodes     []int    `json:"on_exit_codes,omitempty" yaml:"on_exit_codes,omitempty" bson:"on_exit_codes,omitempty"`
	ExceptExitCodes []int    `json:"except_exit_codes,omitempty" yaml:"except_exit_codes,omitempty" bson:"except_exit_codes,omitempty"`
	OnSignals       []string `json:"on_signals,omitempty" yaml:"on_signals,omitempty" bson:"on_signals,omitempty"`
	// OnTimeout: is an attempt stopped by the step's timeout retried? nil:
	// yes, as any failure.
	OnTimeout *bool `json:"on_timeout,omitempty" yaml:"on_timeout,omitempty" bson:"on_timeout,omitempty"`
}

// Failure is how an attempt failed, for RetryDecision.
type Failure struct {
	ExitCode int    // when it exited
	Signal   string // when a signal ended it: "SIGKILL", …
	TimedOut bool   // the step's timeout stopped it
}

// RetryDecision says whether a failed attempt of s is retried by its rules
// (not counting the retries left), and why, in words for the step's log and
// state.
func (s *Step) RetryDecision(f Failure) (retry bool, why string) {
	r := s.RetryRules
	if r == nil {
		return true, "every failure is retried"
	}
	if f.TimedOut {
		if r.OnTimeout != nil && !*r.OnTimeout {
			return false, "on_timeout is false"
		}
		return true, "a timeout is retried"
	}
	if f.Signal != "" {
		switch {
		case slices.Contains(r.OnSignals, f.Signal):
			return true, fmt.Sprintf("%s is in on_signals", f.Signal)
		case len(r.OnSignals) > 0 || len(r.OnExitCodes) > 0:
			return false, fmt.Sprintf("%s is not in on_signals", f.Signal)
		}
		return true, "every failure is retried"
	}
	switch {
	case slices.Contains(r.ExceptExitCodes, f.ExitCode):
		return false, fmt.Sprintf("exit code %d is in except_exit_codes", f.ExitCode)
	case slices.Contains(r.OnExitCodes, f.ExitCode):
		return true, fmt.Sprintf("exit code %d is in on_exit_codes", f.ExitCode)
	case len(r.OnExitCodes) > 0 || len(r.OnSignals) > 0:
		return false, fmt.Sprintf("exit code %d is not in on_exit_codes", f.ExitCode)
	}
	return true, "every failure is retried"
}

// retries decodes `retries:`: an integer, or the long form.
func (d *decoder) retries(n *yaml.Node, i int, label string, s *Step) {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		s.Retries = d.int(n, i, label, "retries")
		return
	}
	rules := &RetryRules{}
	for _, e := range d.entries(n, i, label, 0) {
		field := "retries." + e.key
		switch e.key {
		case "limit":
			s.Retries = d.int(e.val, i, label, field)
		case "backoff":
			s.Backoff = d.duration(e.val, i, label, field)
		default:
			if !d.retryRule(e.key, e.val, i, label, field, rules) {
				d.fail(i, label, field, e.line, "unknown field%s", suggest(e.key, retryFields))
			}
		}
	}
	if !rules.empty() {
		s.RetryRules = rules
	}
}

// retryRulesField decodes `retry_rules:`, the wire form of the rules.
func (d *decoder) retryRulesField(n *yaml.Node, i int, label string, s *Step) {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		d.fail(i, label, "retry_rules", n.Line, "want a mapping, got %s", describe(n))
		return
	}
	rules := &RetryRules{}
	for _, e := range d.entries(n, i, label, 0) {
		if !d.retryRule(e.key, e.val, i, label, "retry_rules."+e.key, rules) {
			d.fail(i, label, "retry_rules."+e.key, e.line, "unknown field%s", suggest(e.key, retryFields[2:]))
		}
	}
	if !rules.empty() {
		s.RetryRules = rules
	}
}

var retryFields = []string{"limit", "backoff", "max_backoff", "on_exit_codes", "except_exit_codes", "on_signals", "on_timeout"}

func (d *decoder) retryRule(key string, n *yaml.Node, i int, label, field string, r *RetryRules) bool {
	switch key {
	case "max_backoff":
		r.MaxBackoff = d.duration(n, i, label, field)
	case "on_exit_codes":
		r.OnExitCodes = d.intList(n, i, label, field)
	case "except_exit_codes":
		r.ExceptExitCodes = d.intList(n, i, label, field)
	case "on_signals":
		r.OnSignals = d.plainStrList(n, i, label, field)
	case "on_timeout":
		n = deref(n)
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.fail(i, label, field, n.Line, "want true or false, got %s", describe(n))
			return true
		}
		r.OnTimeout = &b
	default:
		return false
	}
	return true
}

func (r *RetryRules) empty() bool {
	return r.MaxBackoff == 0 && len(r.OnExitCodes) == 0 && len(r.ExceptExitCodes) == 0 && len(r.OnSignals) == 0 && r.OnTimeout == nil
}

func (d *decoder) intList(n *yaml.Node, i int, label, field string) []int {
	return decodeList(d, n, i, label, field, "integers", func(en *yaml.Node, f string) int { return d.int(en, i, label, f) })
}

func (d *decoder) plainStrList(n *yaml.Node, i int, label, field string) []string {
	return decodeList(d, n, i, label, field, "strings", func(en *yaml.Node, f string) string {
		s, _ := d.scalar(en, i, label, f, "a string")
		return s
	})
}

// decodeList decodes a sequence of what item decodes, each element named
// field[k] in errors.
func decodeList[T any](d *decoder, n *yaml.Node, i int, label, field, what string, item func(*yaml.Node, string) T) []T {
	n = deref(n)
	if n.Kind != yaml.SequenceNode {
		d.fail(i, label, field, n.Line, "want a list of %s, got %s", what, describe(n))
		return nil
	}
	out := make([]T, 0, len(n.Content))
	for k, en := range n.Content {
		out = append(out, item(en, fmt.Sprintf("%s[%d]", field, k)))
	}
	return out
}

// signalNames are the signals on_signals may name.
var signalNames = []string{"SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
	"SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGXCPU", "SIGXFSZ", "SIGSYS"}

// retryProblems lists what is wrong with a step's retry rules.
func retryProblems(s *Step) []string {
	r := s.RetryRules
	if r == nil {
		return nil
	}
	var out []string
	if r.MaxBackoff < 0 {
		out = append(out, fmt.Sprintf("max_backoff must not be negative, got %s", r.MaxBackoff))
	}
	if r.MaxBackoff > 0 && s.Backoff > r.MaxBackoff {
		out = append(out, fmt.Sprintf("backoff %s is longer than max_backoff %s", s.Backoff, r.MaxBackoff))
	}
	for _, c := range append(append([]int(nil), r.OnExitCodes...), r.ExceptExitCodes...) {
		if c < 1 || c > 255 {
			out = append(out, fmt.Sprintf("exit code %d: want 1 to 255 (0 is success)", c))
		}
	}
	for _, c := range r.OnExitCodes {
		if slices.Contains(r.ExceptExitCodes, c) {
			out = append(out, fmt.Sprintf("exit code %d is in both on_exit_codes and except_exit_codes", c))
		}
	}
	for _, sig := range r.OnSignals {
		if !slices.Contains(signalNames, sig) {
			out = append(out, fmt.Sprintf("signal %q: want one of %s", sig, strings.Join(signalNames, ", ")))
		}
	}
	if s.Retries == 0 {
		out = append(out, "rules without a limit retry nothing: set limit")
	}
	return out
}
