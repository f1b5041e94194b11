package workflow

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse. It must never panic; a
// workflow it accepts must validate again, survive a JSON round trip
// unchanged, and have templates that Expand can at least attempt.
func FuzzParse(f *testing.F) {
	seeds := []string{
		designExample,
		`{"name": "j", "steps": [{"id": "a", "run": ["echo", "${{ vars.x }}"]}], "vars": {"x": "1"}}`,
		"steps: [{id: a, run: [x]}, {id: b, needs: [a], if: \"steps.a.status == 'succeeded'\", shell: 'echo ${{ steps.a.outputs.v }}'}]",
		"steps:\n  - &s {id: a, run: [x]}\n  - <<: *s\n    id: b\n",
		"steps: [{id: a, needs: [b], run: [x]}, {id: b, needs: [a], run: [x]}]",
		"steps: [{id: a, kind: human, prompt: '${{ run.id }}', artifacts: [../x]}]",
		"timeout: -1\nmax_parallel: -2\nsteps: [{id: 'a b', retries: 1000, backoff: x}]",
		"steps: [{id: a, run: ['${{ steps[vars.x].outputs.y }}', '${{ 1 +'], artifacts: ['/x', '[', 'a/../../b']}]",
		`{"steps": [{"id": "a", "run": ["x"], "timeout": 1e300}], "bogus": {"deep": [[[]]]}}`,
		"steps: [{id: a, env: {'A=B': '${{ len(steps) }}'}, shell: x, if: '${{ 1 }} ${{ 2 }}'}]",
		"- a\n",
		"",
		"{",
		"steps:\n  - id: a\n    run: [x]\n---\nx: 1\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := Parse(data, "fuzz.yaml")
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error is not a non-empty Errors: %T %v", err, err)
			}
			_ = err.Error()
			return
		}
		if err := w.Validate(); err != nil {
			t.Fatalf("Parse accepted what Validate rejects: %v", err)
		}
		js, err := json.Marshal(w)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		back, err := Parse(js, "wire.json")
		if err != nil {
			t.Fatalf("JSON round trip rejected: %v\n%s", err, js)
		}
		if !reflect.DeepEqual(back, w) {
			t.Fatalf("JSON round trip changed the workflow:\n got  %#v\n want %#v", back, w)
		}
		sc := Scope{RunID: "r", Vars: w.Vars, Steps: map[string]StepScope{}}
		for _, s := range w.Steps {
			for _, a := range s.Run {
				_, _ = Expand(a, sc)
			}
			_, _ = Expand(s.Shell, sc)
			_, _ = Expand(s.Prompt, sc)
			if s.If != "" {
				_, _ = Condition(s.If, sc)
			}
			w.Ancestors(s.ID)
		}
	})
}
