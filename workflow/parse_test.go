package workflow

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// designExample is the workflow example of the design brief's IR.
const designExample = `name: build-and-test
vars: {repo: "https://example.invalid/x.git"}   # defaults; the message's vars override
max_parallel: 4
timeout: 30m
steps:
  - id: fetch
    run: ["git", "clone", "${{ vars.repo }}", "src"]
  - id: test
    needs: [fetch]
    shell: cd src && go test ./... | tee report.txt
    timeout: 10m
    retries: 2
    env: {GOFLAGS: -mod=mod}
    artifacts: ["src/report.txt"]
  - id: approve
    needs: [test]
    kind: human
    prompt: "Deploy ${{ steps.test.outputs.version }}?"
  - id: deploy
    needs: [approve]
    if: ${{ steps.approve.answers.ok == 'yes' }}
    run: ["./deploy.sh"]
`

func TestParseDesignExample(t *testing.T) {
	t.Parallel()
	w, err := Parse([]byte(designExample), "wf.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Workflow{
		Name:        "build-and-test",
		Vars:        map[string]string{"repo": "https://example.invalid/x.git"},
		MaxParallel: 4,
		Timeout:     Duration(30 * time.Minute),
		Steps: []Step{
			{ID: "fetch", Run: []string{"git", "clone", "${{ vars.repo }}", "src"}},
			{ID: "test", Needs: []string{"fetch"}, Shell: "cd src && go test ./... | tee report.txt",
				Timeout: Duration(10 * time.Minute), Retries: 2, Env: map[string]string{"GOFLAGS": "-mod=mod"},
				Artifacts: []string{"src/report.txt"}},
			{ID: "approve", Needs: []string{"test"}, Kind: KindHuman, Prompt: "Deploy ${{ steps.test.outputs.version }}?"},
			{ID: "deploy", Needs: []string{"approve"}, If: "${{ steps.approve.answers.ok == 'yes' }}", Run: []string{"./deploy.sh"}},
		},
	}
	if !reflect.DeepEqual(w, want) {
		t.Errorf("got  %#v\nwant %#v", w, want)
	}
	if err := w.Validate(); err != nil {
		t.Errorf("Validate of a parsed workflow: %v", err)
	}
}

// fullWorkflow sets every field of Workflow and Step, so a field the decoder
// forgets shows up as an unknown field or a difference.
var fullWorkflow = &Workflow{
	Name:        "full",
	Vars:        map[string]string{"a": "1", "b-c": "x y", "empty": ""},
	MaxParallel: 3,
	Timeout:     Duration(90 * time.Second),
	Steps: []Step{
		{ID: "build", Run: []string{"make", "${{ vars.a }}", ""}, Env: map[string]string{"X": "${{ vars['b-c'] }}"},
			Timeout: Duration(1500 * time.Millisecond), Retries: 3, Backoff: Duration(2 * time.Second),
			RetryRules: &RetryRules{MaxBackoff: Duration(time.Minute), OnExitCodes: []int{75, 76}, ExceptExitCodes: []int{2},
				OnSignals: []string{"SIGKILL"}, OnTimeout: new(false)},
			Artifacts: []string{"out/*.tar.gz", "report.txt"}, If: "vars.a == '1'"},
		{ID: "ask-me", Kind: KindHuman, Needs: []string{"build"}, Prompt: "ok ${{ steps.build.outputs.v }}?", Timeout: Duration(time.Hour)},
		{ID: "_last", Needs: []string{"ask-me", "build"}, Shell: "echo ${{ steps[\"ask-me\"].answers.ok }}\necho done\n",
			If: "${{ steps['ask-me'].status == 'succeeded' }}"},
	},
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	if err := fullWorkflow.Validate(); err != nil {
		t.Fatalf("fullWorkflow is invalid: %v", err)
	}
	for _, w := range []*Workflow{fullWorkflow, mustParse(t, designExample)} {
		js, err := json.Marshal(w)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Parse(js, "wire.json")
		if err != nil {
			t.Fatalf("parse JSON %s: %v", js, err)
		}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("JSON round trip:\n got  %#v\n want %#v\n via %s", got, w, js)
		}
		// encoding/json must agree with Parse on the wire format.
		var direct Workflow
		if err := json.Unmarshal(js, &direct); err != nil || !reflect.DeepEqual(&direct, w) {
			t.Errorf("json.Unmarshal differs (err %v):\n got  %#v\n want %#v", err, &direct, w)
		}
		ym, err := yaml.Marshal(w)
		if err != nil {
			t.Fatal(err)
		}
		got, err = Parse(ym, "wf.yaml")
		if err != nil {
			t.Fatalf("parse YAML %s: %v", ym, err)
		}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("YAML round trip:\n got  %#v\n want %#v\n via %s", got, w, ym)
		}
	}
}

func mustParse(t *testing.T, src string) *Workflow {
	t.Helper()
	w, err := Parse([]byte(src), "wf.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestParseAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, src string
		check     func(*Workflow) bool
	}{
		{"numeric seconds", "timeout: 90\nsteps: [{id: a, run: [x], backoff: 0.5}]",
			func(w *Workflow) bool {
				return w.Timeout.D() == 90*time.Second && w.Steps[0].Backoff.D() == 500*time.Millisecond
			}},
		{"JSON numeric seconds", `{"timeout": 2.5, "steps": [{"id": "a", "run": ["x"]}]}`,
			func(w *Workflow) bool { return w.Timeout.D() == 2500*time.Millisecond }},
		{"scalars in argv", "steps: [{id: a, run: [sleep, 5, true]}]",
			func(w *Workflow) bool { return reflect.DeepEqual(w.Steps[0].Run, []string{"sleep", "5", "true"}) }},
		{"anchors and merge", "steps:\n  - &base {id: a, run: [x], retries: 2, env: {A: '1'}}\n  - <<: *base\n    id: b\n    needs: [a]\n",
			func(w *Workflow) bool {
				b := w.Steps[1]
				return b.ID == "b" && b.Retries == 2 && b.Env["A"] == "1" && b.Run[0] == "x"
			}},
		{"BOM and CRLF", "\xef\xbb\xbfsteps:\r\n  - id: a\r\n    shell: echo hi\r\n",
			func(w *Workflow) bool { return w.Steps[0].Shell == "echo hi" }},
		{"dash id read with index form", "steps:\n  - id: make-it\n    run: [x]\n  - id: b\n    needs: [make-it]\n    run: [\"${{ steps['make-it'].outputs.v }}\"]\n", nil},
		{"vars index form and dynamic vars", "vars: {a-b: x, k: a-b}\nsteps: [{id: a, run: [\"${{ vars['a-b'] }}${{ vars[vars.k] }}\"]}]", nil},
		{"output key dynamic", "vars: {k: v}\nsteps: [{id: a, run: [x]}, {id: b, needs: [a], run: [\"${{ steps.a.outputs[vars.k] }}\"]}]", nil},
		{"transitive needs", "steps: [{id: a, run: [x]}, {id: b, needs: [a], run: [x]}, {id: c, needs: [b], if: \"steps.a.status == 'succeeded'\", run: [x]}]", nil},
		{"optional chaining and builtins", "steps: [{id: a, run: [x]}, {id: b, needs: [a], run: [\"${{ upper(steps.a?.outputs?.v ?? 'none') }}\", \"${{ len(steps.a.outputs) }}\"]}]", nil},
		{"human step with timeout and if", "steps: [{id: a, kind: human, prompt: 'ok?', timeout: 1h, if: 'true'}]", nil},
		{"zero backoff", "steps: [{id: a, run: [x], backoff: 0s}]", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := Parse([]byte(tt.src), "wf.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil && !tt.check(w) {
				t.Errorf("unexpected result %#v", w)
			}
		})
	}
}

// TestParseErrors covers each validation class. Each want is a full line of
// the error, so file, line, step and field are all checked.
func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		src  string
		want []string // each must be a line of the error, or a prefix of one
	}{
		// syntax and shape
		{"empty", "", []string{"wf.yaml: empty workflow"}},
		{"YAML syntax", "steps:\n  - id: a\n    run: [x\n  - id: b\n", []string{"wf.yaml:2: invalid YAML: did not find expected"}},
		{"JSON syntax", "{\"steps\": [\n{\"id\": \"a\",}]}", []string{"wf.yaml:2: invalid JSON:"}},
		{"JSON trailing data", "{\"steps\": []}\n{}", []string{"wf.yaml:2: invalid JSON: data after the workflow object"}},
		{"two documents", "steps: [{id: a, run: [x]}]\n---\nsteps: []\n", []string{"wf.yaml:2: more than one YAML document"}},
		{"not a mapping", "- a\n- b\n", []string{"wf.yaml:1: a workflow must be a mapping"}},
		{"step not a mapping", "steps: [fetch]", []string{`wf.yaml:1: step #1: want a mapping with an ` + "`id`"}},
		{"steps not a list", "steps: {a: 1}", []string{"wf.yaml:1: steps: want a list of steps, got a mapping"}},
		{"duplicate key", "steps:\n  - id: a\n    run: [x]\n    run: [y]\n", []string{`wf.yaml:4: step "a": run: set twice (first at line 3)`}},
		// unknown fields
		{"unknown top-level field", "name: x\nstpes: []\nsteps: [{id: a, run: [x]}]\n",
			[]string{`wf.yaml:2: stpes: unknown field (did you mean "steps"?)`}},
		{"unknown step field", "steps:\n  - id: a\n    run: [x]\n    retry: 3\n",
			[]string{`wf.yaml:4: step "a": retry: unknown field (did you mean "retries"?)`}},
		{"unknown JSON fields, all of them", "{\"steps\": [{\"id\": \"a\", \"run\": [\"x\"],\n \"Retries\": 1}],\n \"bogus\": true}",
			[]string{`wf.yaml:2: step "a": Retries: unknown field (did you mean "retries"?)`, `wf.yaml:3: bogus: unknown field`}},
		// types
		{"type errors", "max_parallel: many\ntimeout: soon\nsteps:\n  - id: a\n    run: make\n    retries: [1]\n    env: {A: [1]}\n",
			[]string{
				`wf.yaml:1: max_parallel: want an integer, got "many"`,
				`wf.yaml:2: timeout: invalid duration "soon"`,
				`wf.yaml:5: step "a": run: want a list of strings, got "make" (run is an argv list; use ` + "`shell:`",
				`wf.yaml:6: step "a": retries: want an integer, got a list`,
				`wf.yaml:7: step "a": env.A: want a string, got a list`,
			}},
		{"network", "network: lan\nsteps: [{id: a, run: [x]}]\n", []string{`wf.yaml:1: network: want "host" or "none", got "lan"`}},
		// ids
		{"missing id", "steps:\n  - run: [x]\n", []string{"wf.yaml:2: step #1: id: missing; every step needs an id"}},
		{"duplicate id", "steps:\n  - id: a\n    run: [x]\n  - id: a\n    run: [y]\n",
			[]string{`wf.yaml:4: step "a": id: duplicate id "a" (also step #1 at line 2)`}},
		{"id syntax", "steps:\n  - id: \"a b\"\n    run: [x]\n  - id: 9lives\n    run: [x]\n  - id: ../etc\n    run: [x]\n",
			[]string{`wf.yaml:2: step #1: id: "a b" is not a valid id`, `wf.yaml:4: step #2: id: "9lives" is not a valid id`, `wf.yaml:6: step #3: id: "../etc" is not a valid id`}},
		{"id too long", "steps: [{id: " + strings.Repeat("a", 65) + ", run: [x]}]", []string{`wf.yaml:1: step #1: id: "aaaa`}},
		// kinds
		{"run and shell", "steps:\n  - id: a\n    run: [x]\n    shell: y\n", []string{`wf.yaml:4: step "a": shell: set both run and shell`}},
		{"neither run nor shell", "steps:\n  - id: a\n    retries: 1\n", []string{`wf.yaml:2: step "a": run: a command step needs ` + "`run`"}},
		{"empty argv", "steps:\n  - id: a\n    run: []\n", []string{`wf.yaml:3: step "a": run: empty argv`}},
		{"empty program", "steps:\n  - id: a\n    run: ['', x]\n", []string{`wf.yaml:3: step "a": run[0]: empty program name`}},
		{"prompt on a command step", "steps: [{id: a, run: [x], prompt: hi}]", []string{`wf.yaml:1: step "a": prompt: only a ` + "`kind: human`"}},
		{"human step", "steps:\n  - id: a\n    kind: human\n    run: [x]\n    shell: y\n    retries: 1\n    artifacts: [z]\n",
			[]string{
				`wf.yaml:2: step "a": prompt: missing; a human step asks a question`,
				`wf.yaml:4: step "a": run: a human step runs no command`,
				`wf.yaml:5: step "a": shell: a human step runs no command`,
				`wf.yaml:6: step "a": retries: a human step is not retried`,
				`wf.yaml:7: step "a": artifacts: a human step produces no artifacts`,
			}},
		{"unknown kind", "steps:\n  - id: a\n    kind: docker\n    run: [x]\n", []string{`wf.yaml:3: step "a": kind: unknown kind "docker"`}},
		// needs and cycles
		{"needs no step", "steps:\n  - id: fetch\n    run: [x]\n  - id: test\n    needs:\n      - fetch\n      - fetch2\n    run: [x]\n",
			[]string{`wf.yaml:7: step "test": needs[1]: "fetch2" names no step (did you mean "fetch"?)`}},
		{"needs itself", "steps:\n  - id: a\n    needs: [a]\n    run: [x]\n", []string{`wf.yaml:3: step "a": needs[0]: a step cannot need itself`}},
		{"needs twice", "steps: [{id: a, run: [x]}, {id: b, needs: [a, a], run: [x]}]", []string{`wf.yaml:1: step "b": needs[1]: "a" is listed twice`}},
		{"cycle", "steps:\n  - id: a\n    needs: [c]\n    run: [x]\n  - id: b\n    needs: [a]\n    run: [x]\n  - id: c\n    needs: [b]\n    run: [x]\n  - id: d\n    needs: [a]\n    run: [x]\n",
			[]string{`wf.yaml:3: step "a": needs: cycle: a -> c -> b -> a`}},
		{"two cycles", "steps:\n  - {id: a, needs: [b], run: [x]}\n  - {id: b, needs: [a], run: [x]}\n  - {id: c, needs: [d], run: [x]}\n  - {id: d, needs: [c, a], run: [x]}\n",
			[]string{`wf.yaml:2: step "a": needs: cycle: a -> b -> a`, `wf.yaml:4: step "c": needs: cycle: c -> d -> c`}},
		// templates
		{"template does not compile", "steps:\n  - id: a\n    run: [echo, '${{ 1 + }}']\n", []string{`wf.yaml:3: step "a": run[1]: ${{ 1 + }}: unexpected token EOF`}},
		{"unterminated template", "steps:\n  - id: a\n    shell: echo ${{ vars.x\n", []string{`wf.yaml:3: step "a": shell: unterminated ${{`}},
		{"unknown var", "vars: {repo: r}\nsteps:\n  - id: a\n    env:\n      R: ${{ vars.rep }}\n    run: [x]\n",
			[]string{`wf.yaml:5: step "a": env.R: ${{ vars.rep }}: unknown var "rep" (declared: repo)`}},
		{"unknown name", "steps:\n  - id: a\n    run: ['${{ foo }}']\n", []string{`wf.yaml:3: step "a": run[0]: ${{ foo }}: unknown name foo`}},
		{"unknown step", "steps:\n  - id: a\n    prompt: '${{ steps.nope.outputs.x }}'\n    kind: human\n",
			[]string{`wf.yaml:3: step "a": prompt: ${{ steps.nope.outputs.x }}: "nope" names no step`}},
		{"step not in needs", "steps:\n  - id: a\n    run: [x]\n  - id: b\n    run: [x]\n  - id: c\n    needs: [b]\n    shell: echo ${{ steps.a.outputs.v }}\n",
			[]string{`wf.yaml:8: step "c": shell: ${{ steps.a.outputs.v }}: step "a" is not in this step's needs`}},
		{"own outputs", "steps:\n  - id: a\n    if: steps.a.status == 'x'\n    run: [x]\n", []string{`wf.yaml:3: step "a": if: "steps.a.status == 'x'": step "a" is not in this step's needs`}},
		{"bad step field", "steps: [{id: a, run: [x]}, {id: b, needs: [a], run: ['${{ steps.a.output.v }}', '${{ steps.a }}']}]",
			[]string{`wf.yaml:1: step "b": run[0]: ${{ steps.a.output.v }}: steps.a: only .outputs.<key>, .answers.<key> and .status can be read`,
				`wf.yaml:1: step "b": run[1]: ${{ steps.a }}: steps.a: want steps.a.outputs.<key>`}},
		{"dynamic step", "vars: {s: a}\nsteps: [{id: a, run: [x]}, {id: b, needs: [a], run: ['${{ steps[vars.s].status }}']}]",
			[]string{`wf.yaml:2: step "b": run[0]: ${{ steps[vars.s].status }}: a step must be named literally`}},
		{"bare steps", "steps: [{id: a, run: ['${{ len(steps) }}']}]", []string{"wf.yaml:1: step \"a\": run[0]: ${{ len(steps) }}: `steps` must be followed by a step id"}},
		{"dash id as member", "steps: [{id: a-b, run: [x]}, {id: c, needs: [a-b], run: ['${{ steps.a-b.status }}']}]",
			[]string{`wf.yaml:1: step "c": run[0]: ${{ steps.a-b.status }}: steps.a: want steps.a.outputs.<key>`, `"a" names no step`}},
		{"if not bool", "vars: {x: y}\nsteps:\n  - id: a\n    if: ${{ vars.x }}\n    run: [x]\n", []string{`wf.yaml:4: step "a": if: "vars.x": expected bool, but got string`}},
		{"if two templates", "steps:\n  - id: a\n    if: ${{ true }} && ${{ false }}\n    run: [x]\n", []string{`wf.yaml:3: step "a": if: condition "${{ true }} && ${{ false }}": want a bare expression or a single ${{ expr }}`}},
		{"if empty", "steps:\n  - id: a\n    if: ' '\n    run: [x]\n", []string{`wf.yaml:3: step "a": if: empty condition`}},
		{"type error in template", "vars: {n: '1'}\nsteps: [{id: a, run: ['${{ vars.n + 1 }}']}]", []string{`wf.yaml:2: step "a": run[0]: ${{ vars.n + 1 }}: invalid operation: + (mismatched types string and int)`}},
		// artifacts
		{"artifacts", "steps:\n  - id: a\n    run: [x]\n    artifacts:\n      - /etc/passwd\n      - ../up\n      - a/../../b\n      - '[oops'\n      - ''\n      - ok/*.txt\n      - a/../b\n",
			[]string{
				`wf.yaml:5: step "a": artifacts[0]: "/etc/passwd" is absolute`,
				`wf.yaml:6: step "a": artifacts[1]: "../up" leaves the workdir`,
				`wf.yaml:7: step "a": artifacts[2]: "a/../../b" leaves the workdir`,
				`wf.yaml:8: step "a": artifacts[3]: "[oops" is not a valid glob`,
				`wf.yaml:9: step "a": artifacts[4]: empty path`,
			}},
		// numbers and durations
		{"zero and negative durations", "timeout: 0\nsteps:\n  - id: a\n    run: [x]\n    timeout: -5s\n    backoff: -1s\n",
			[]string{`wf.yaml:1: timeout: must be positive when set, got 0s`, `wf.yaml:5: step "a": timeout: must be positive when set, got -5s`, `wf.yaml:6: step "a": backoff: must not be negative, got -1s`}},
		{"retries", "steps:\n  - {id: a, run: [x], retries: -1}\n  - {id: b, run: [x], retries: 101}\n",
			[]string{`wf.yaml:2: step "a": retries: must be between 0 and 100, got -1`, `wf.yaml:3: step "b": retries: must be between 0 and 100, got 101`}},
		{"max_parallel", "max_parallel: -1\nsteps: [{id: a, run: [x]}]", []string{`wf.yaml:1: max_parallel: must not be negative, got -1`}},
		{"huge duration", "timeout: 1e300\nsteps: [{id: a, run: [x]}]", []string{`wf.yaml:1: timeout: duration of 1e+300 seconds is out of range`}},
		{"no steps", "name: x\nsteps: []\n", []string{`wf.yaml:2: steps: no steps`}},
		{"steps missing", "name: x\n", []string{`wf.yaml: steps: no steps`}},
		{"env names", "steps:\n  - id: a\n    run: [x]\n    env:\n      A=B: x\n      '': y\n",
			[]string{`wf.yaml:5: step "a": env: "A=B" is not a valid variable name`, `wf.yaml:6: step "a": env: "" is not a valid variable name`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := Parse([]byte(tt.src), "wf.yaml")
			if err == nil {
				t.Fatalf("no error; parsed %#v", w)
			}
			if w != nil {
				t.Errorf("got a workflow along with the error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid) is false")
			}
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %T is not Errors", err)
			}
			lines := strings.Split(err.Error(), "\n")
			for _, want := range tt.want {
				if !hasLinePrefix(lines, want) {
					t.Errorf("missing %q in:\n%s", want, err)
				}
			}
		})
	}
}

func hasLinePrefix(lines []string, want string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, want) || (!strings.HasPrefix(want, "wf.yaml") && strings.Contains(l, want)) {
			return true
		}
	}
	return false
}

// TestNoFollowOnErrors checks that a field rejected while decoding is not
// reported again by validation.
func TestNoFollowOnErrors(t *testing.T) {
	t.Parallel()
	_, err := Parse([]byte("steps:\n  - id: a\n    run: make test\n"), "wf.yaml")
	if got := len(err.(Errors)); got != 1 {
		t.Errorf("want 1 problem, got %d:\n%v", got, err)
	}
}

func TestErrorFields(t *testing.T) {
	t.Parallel()
	_, err := Parse([]byte("steps:\n  - id: fetch\n    run: [x]\n  - id: test\n    needs: [fetch2]\n    run: [x]\n"), "wf.yaml")
	errs := err.(Errors)
	want := &Error{File: "wf.yaml", Line: 5, Step: "test", Field: "needs[0]", Msg: `"fetch2" names no step (did you mean "fetch"?)`}
	if len(errs) != 1 || !reflect.DeepEqual(errs[0], want) {
		t.Errorf("got %#v, want %#v", errs, want)
	}
	if got := (&Error{File: "wf.yaml", Line: 12, Step: "test", Field: "needs", Msg: `"fetch2" names no step`}).Error(); got != `wf.yaml:12: step "test": needs: "fetch2" names no step` {
		t.Errorf("Error() = %s", got)
	}
	if got := (&Error{Step: "#2", Field: "id", Msg: "missing"}).Error(); got != `step #2: id: missing` {
		t.Errorf("Error() = %s", got)
	}
}

func TestErrorsTruncated(t *testing.T) {
	t.Parallel()
	var src strings.Builder
	src.WriteString("steps:\n")
	for range 80 {
		src.WriteString("  - run: [x]\n")
	}
	_, err := Parse([]byte(src.String()), "wf.yaml")
	if n := len(err.(Errors)); n != 80 {
		t.Fatalf("want 80 problems, got %d", n)
	}
	msg := err.Error()
	if lines := strings.Count(msg, "\n") + 1; lines != maxErrorLines+1 || !strings.HasSuffix(msg, "... and 30 more problems") {
		t.Errorf("message has %d lines, ends %q", lines, msg[len(msg)-40:])
	}
}

// TestValidateStruct checks a workflow built in memory (as decoded from a
// queue message): same rules, no lines.
func TestValidateStruct(t *testing.T) {
	t.Parallel()
	w := &Workflow{
		Timeout: Duration(-time.Second),
		Steps: []Step{
			{ID: "a", Run: []string{"x"}},                        // zero timeout: unset, fine
			{ID: "b", Needs: []string{"a", "zz"}, Kind: "human"}, // no prompt
			{ID: "c", Needs: []string{"b"}, Run: []string{"${{ steps.a.outputs.v }}${{ vars.q }}"}, Artifacts: []string{"../x"}},
		},
	}
	err := w.Validate()
	want := []string{
		`timeout: must be positive when set, got -1s`,
		`step "b": prompt: missing; a human step asks a question`,
		`step "b": needs[1]: "zz" names no step`,
		`step "c": artifacts[0]: "../x" leaves the workdir`,
		`step "c": run[0]: ${{ vars.q }}: unknown var "q" (declared: none)`,
	}
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	for _, wl := range want {
		found := false
		for _, l := range lines {
			found = found || strings.HasPrefix(l, wl)
		}
		if !found {
			t.Errorf("missing %q in:\n%s", wl, err)
		}
	}
	for _, e := range err.(Errors) {
		if e.Line != 0 || e.File != "" {
			t.Errorf("unexpected position in %#v", e)
		}
	}
	if err := (&Workflow{Steps: []Step{{ID: "a", Run: []string{"x"}}}}).Validate(); err != nil {
		t.Errorf("minimal workflow: %v", err)
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "wf.yaml")
	if err := os.WriteFile(p, []byte("steps:\n  - id: a\n    run: [x]\n    bogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil || !strings.HasPrefix(err.Error(), p+":4: step \"a\": bogus: unknown field") {
		t.Errorf("Load error: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v", err)
	}
}

func TestAncestors(t *testing.T) {
	t.Parallel()
	w := mustParse(t, designExample)
	got := w.Ancestors("deploy")
	want := map[string]bool{"approve": true, "test": true, "fetch": true}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Ancestors(deploy) = %v", got)
	}
	if got := w.Ancestors("fetch"); len(got) != 0 {
		t.Errorf("Ancestors(fetch) = %v", got)
	}
	if got := w.Ancestors("nope"); got == nil || len(got) != 0 {
		t.Errorf("Ancestors(nope) = %v", got)
	}
	// A cycle must not loop forever.
	cyc := &Workflow{Steps: []Step{{ID: "a", Needs: []string{"b"}}, {ID: "b", Needs: []string{"a"}}}}
	if got := cyc.Ancestors("a"); !got["a"] || !got["b"] {
		t.Errorf("Ancestors in a cycle = %v", got)
	}
}

func TestLimits(t *testing.T) {
	t.Parallel()
	// A "billion laughs": each step is an alias to a step with a long argv.
	var b strings.Builder
	b.WriteString("x: &argv [")
	for range 2000 {
		b.WriteString("a,")
	}
	b.WriteString("a]\nsteps:\n  - &s {id: a, run: *argv}\n")
	for range 1000 {
		b.WriteString("  - *s\n")
	}
	_, err := Parse([]byte(b.String()), "wf.yaml")
	if err == nil || !strings.Contains(err.Error(), "workflow too large") || len(err.(Errors)) > 2 {
		t.Errorf("alias expansion: %.300v", err)
	}

	w := &Workflow{}
	for i := range MaxSteps + 1 {
		w.Steps = append(w.Steps, Step{ID: fmt.Sprintf("s%d", i), Run: []string{"x"}})
	}
	if err := w.Validate(); err == nil || err.Error() != "steps: 1001 steps; at most 1000 are allowed" {
		t.Errorf("too many steps: %v", err)
	}
	w.Steps = w.Steps[:MaxSteps]
	if err := w.Validate(); err != nil {
		t.Errorf("MaxSteps steps: %.200v", err)
	}
}
