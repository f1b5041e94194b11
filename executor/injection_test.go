package executor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runnerd/runnerd"
)

// Values that would run code if pasted into a script.
var hostile = map[string]string{
	"quotes":    `'; touch pwned-q; "`,
	"subst":     `$(touch pwned-s)`,
	"backticks": "`touch pwned-b`",
	"newline":   "a\ntouch pwned-n\nb",
	"template":  "${{ vars.other }}",
	"params":    `$HOME ${PATH} $1 * ?`,
	"long":      strings.Repeat(`x'"$(id)`+"`id`\\;|&<>", 700), // ~10 KiB
}

// In a shell script, a template is one word that means exactly its value,
// unquoted, inside double quotes and in an unquoted here-document; in run:
// argv it is one argument. Nothing of the value runs.
func TestTemplatesNeverInject(t *testing.T) {
	for name, v := range hostile {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			o := h.opts(`
vars: {v: "", other: "OTHER"}
steps:
  - id: sh
    shell: |
      printf '%s' ${{ vars.v }} > unquoted
      printf '%s' "<${{ vars.v }}>" > double
      printf '%s' "$(printf '%s' ${{ vars.v }})" > subst
      cat > heredoc <<EOF
      [${{ vars.v }}]
      EOF
      # a comment with ${{ vars.v }} and a quote ' is not code
  - id: argv
    run: ["sh", "-c", "printf '%s' \"$1\" > argv", "sh", "${{ vars.v }}"]
`)
			o.Vars = map[string]string{"v": v, "other": "OTHER"}
			res := h.run(context.Background(), o)
			wantStatus(t, res, runnerd.StatusSucceeded, runnerd.ReasonCompleted)
			for file, want := range map[string]string{
				"unquoted": v, "double": "<" + v + ">", "subst": v, "heredoc": "[" + v + "]\n", "argv": v,
			} {
				if got := h.read(file); got != want {
					t.Errorf("%s: the step received %q, want %q", file, got, want)
				}
			}
			noneRan(t, h.workdir)
		})
	}
}

// Outputs of earlier steps and answers to human steps get the same
// treatment as vars.
func TestOutputsAndAnswersNeverInject(t *testing.T) {
	v := hostile["quotes"] + hostile["subst"] + hostile["backticks"]
	src := `
vars: {v: ""}
steps:
  - id: produce
    env: {V: "${{ vars.v }}"}
    shell: printf 'val=%s\n' "$V" >> "$RUNEXEC_OUTPUT"
  - id: approve
    needs: [produce]
    kind: human
    prompt: go?
  - id: consume
    needs: [approve]
    shell: |
      printf '%s' ${{ steps.produce.outputs.val }} > out
      printf '%s' "${{ steps.approve.answers.ok }}" > answer
`
	h := newHarness(t)
	o := h.opts(src)
	o.Vars = map[string]string{"v": v}
	res := h.run(context.Background(), o)
	wantStatus(t, res, runnerd.StatusPaused, runnerd.ReasonPaused)
	o2 := h.opts(src)
	o2.Vars = o.Vars
	o2.State = res.Steps
	o2.Answers = map[string]map[string]string{"approve": {"ok": v + " yes"}}
	res = h.run(context.Background(), o2)
	wantStatus(t, res, runnerd.StatusSucceeded, runnerd.ReasonCompleted)
	if got := h.read("out"); got != v {
		t.Errorf("output: the step received %q, want %q", got, v)
	}
	if got := h.read("answer"); got != v+" yes" {
		t.Errorf("answer: the step received %q, want %q", got, v+" yes")
	}
	noneRan(t, h.workdir)
}

func noneRan(t *testing.T, dir string) {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "pwned*"))
	if len(m) > 0 {
		t.Fatalf("a value ran as code: %v", m)
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned-q")); err == nil {
		t.Fatal("a value ran as code")
	}
}

// Outputs past the limits fail their step with a message naming the limit,
// rather than a document the store refuses later.
func TestOutputLimits(t *testing.T) {
	h := newHarness(t)
	res := h.runSrc(`
steps:
  - id: big
    shell: printf 'v=%070000d\n' 0 >> "$RUNEXEC_OUTPUT"
`)
	wantStatus(t, res, runnerd.StatusFailed, runnerd.ReasonStepFailed)
	st := res.Steps["big"]
	if st.Reason != runnerd.StepReasonOutputs || st.Outputs != nil {
		t.Fatalf("step: %+v", st)
	}
	fin := h.eventsOf(runnerd.EventStepFinished, "big")
	if len(fin) != 1 || !strings.Contains(fin[0].Message, "the limit is 65536 (64 KiB)") {
		t.Fatalf("step_finished: %+v", fin)
	}
}
