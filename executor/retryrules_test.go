package executor

import (
	"strconv"
	"strings"
	"testing"

	"github.com/runnerd/runnerd"
)

// Exit-code and signal rules retry exactly what they say; a failure they do
// not name fails the step at once; each failed attempt is recorded with why
// it was (not) retried.
func TestRetryRules(t *testing.T) {
	for _, tc := range []struct {
		name      string
		retries   string
		script    string // exits with the code in the count file's order
		attempts  int
		status    runnerd.StepStatus
		lastWhy   string
		retriedOK []bool
	}{
		{"on_exit_codes retries the named code", "{limit: 3, backoff: 10ms, on_exit_codes: [75]}",
			"exit 75, exit 75, exit 0", 3, runnerd.StepSucceeded, "exit code 75 is in on_exit_codes", []bool{true, true}},
		{"on_exit_codes does not retry another code", "{limit: 3, backoff: 10ms, on_exit_codes: [75]}",
			"exit 75, exit 3, exit 0", 2, runnerd.StepFailed, "exit code 3 is not in on_exit_codes", []bool{true, false}},
		{"except_exit_codes never retries its codes", "{limit: 3, backoff: 10ms, except_exit_codes: [2]}",
			"exit 1, exit 2, exit 0", 2, runnerd.StepFailed, "exit code 2 is in except_exit_codes", []bool{true, false}},
		{"on_signals retries a kill", "{limit: 2, backoff: 10ms, on_signals: [SIGKILL]}",
			"kill -KILL $$, exit 0", 2, runnerd.StepSucceeded, "SIGKILL is in on_signals", []bool{true}},
		{"on_signals does not retry an exit", "{limit: 2, backoff: 10ms, on_signals: [SIGKILL]}",
			"exit 1, exit 0", 1, runnerd.StepFailed, "exit code 1 is not in on_exit_codes", []bool{false}},
		{"limit runs out", "{limit: 1, backoff: 10ms}",
			"exit 1, exit 1, exit 0", 2, runnerd.StepFailed, "no retries left (1)", []bool{true, false}},
		{"short form retries everything", "2",
			"exit 9, exit 0", 2, runnerd.StepSucceeded, "every failure is retried", []bool{true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			cases := strings.Split(tc.script, ", ")
			var sw strings.Builder
			for i, c := range cases {
				sw.WriteString("        " + strconv.Itoa(i+1) + ") " + c + " ;;\n")
			}
			res := h.runSrc(`
steps:
  - id: s
    retries: ` + tc.retries + `
    shell: |
      n=$(($(cat count 2>/dev/null || echo 0)+1)); echo $n > count
      case $n in
` + sw.String() + `      esac
`)
			st := res.Steps["s"]
			if st == nil || st.Status != tc.status || st.Attempts != tc.attempts {
				t.Fatalf("step: %+v; want %s after %d attempts", st, tc.status, tc.attempts)
			}
			if len(st.Tries) != len(tc.retriedOK) {
				t.Fatalf("tries recorded: %+v; want %d", st.Tries, len(tc.retriedOK))
			}
			for k, want := range tc.retriedOK {
				if st.Tries[k].Retried != want || st.Tries[k].Attempt != k+1 {
					t.Errorf("try %d: %+v; want retried %v", k+1, st.Tries[k], want)
				}
			}
			if last := st.Tries[len(st.Tries)-1]; last.Why != tc.lastWhy {
				t.Errorf("last try's why = %q, want %q", last.Why, tc.lastWhy)
			}
		})
	}
}
