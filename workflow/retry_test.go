package workflow

import (
	"strings"
	"testing"
	"time"
)

func TestRetriesLongForm(t *testing.T) {
	t.Parallel()
	w, err := Parse([]byte(`
steps:
  - id: s
    shell: "true"
    retries: {limit: 4, backoff: 2s, max_backoff: 30s, on_exit_codes: [75], except_exit_codes: [2], on_signals: [SIGTERM], on_timeout: false}
`), "r.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := w.Steps[0]
	r := s.RetryRules
	if s.Retries != 4 || s.Backoff != Duration(2*time.Second) || r == nil || r.MaxBackoff != Duration(30*time.Second) ||
		len(r.OnExitCodes) != 1 || r.OnExitCodes[0] != 75 || r.ExceptExitCodes[0] != 2 || r.OnSignals[0] != "SIGTERM" ||
		r.OnTimeout == nil || *r.OnTimeout {
		t.Fatalf("parsed %+v rules %+v", s, r)
	}
	for f, want := range map[Failure]bool{
		{ExitCode: 75}: true, {ExitCode: 2}: false, {ExitCode: 1}: false,
		{Signal: "SIGTERM"}: true, {Signal: "SIGKILL"}: false, {TimedOut: true}: false,
	} {
		if got, why := s.RetryDecision(f); got != want {
			t.Errorf("%+v: retry %v (%s), want %v", f, got, why, want)
		}
	}
}

func TestRetriesLongFormErrors(t *testing.T) {
	t.Parallel()
	_, err := Parse([]byte(`
steps:
  - id: s
    shell: "true"
    retries: {limit: 2, on_exit_codes: [0, 3], except_exit_codes: [3], on_signals: [SIGFOO], backof: 1s, on_timeout: maybe}
`), "r.yaml")
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		`retries.backof: unknown field (did you mean "backoff"?)`,
		`retries.on_timeout: want true or false`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	_, err = Parse([]byte(`
steps:
  - id: s
    shell: "true"
    retries: {limit: 2, on_exit_codes: [0, 3], except_exit_codes: [3], on_signals: [SIGFOO]}
`), "r.yaml")
	for _, want := range []string{
		"exit code 0: want 1 to 255",
		"exit code 3 is in both on_exit_codes and except_exit_codes",
		`signal "SIGFOO": want one of`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}
