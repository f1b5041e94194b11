package workflow

import (
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
)

var testScope = Scope{
	RunID: "run-42",
	Vars:  map[string]string{"repo": "https://example.invalid/x.git", "n": "3", "a-b": "dash"},
	Steps: map[string]StepScope{
		"build":   {Status: "succeeded", Outputs: map[string]string{"version": "1.2.3", "k": "version"}},
		"approve": {Status: "succeeded", Answers: map[string]string{"ok": "yes"}},
		"my-step": {Status: "failed"},
	},
}

func TestExpand(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
	}{
		{"no template", "no template"},
		{"", ""},
		{"${{ vars.repo }}", "https://example.invalid/x.git"},
		{"v${{steps.build.outputs.version}}-${{ run.id }}", "v1.2.3-run-42"},
		{"[${{ steps.build.outputs.missing }}]", "[]"},                 // an output never written
		{"[${{ steps.never.outputs.x }}]", "[]"},                       // a step not in the scope at all
		{"[${{ steps.never.status }}]", "[]"},                          // ... and its status
		{"${{ steps['my-step'].status }}", "failed"},                   // index form for dashed ids
		{"${{ vars['a-b'] }}", "dash"},                                 // and for vars
		{"${{ steps.build.outputs[steps.build.outputs.k] }}", "1.2.3"}, // dynamic key
		{"${{ steps.approve.answers.ok == 'yes' }}", "true"},
		{"${{ int(vars.n) * 2 }}", "6"},
		{"${{ float(vars.n) / 2 }}", "1.5"},
		{"${{ 1e6 }}", "1000000"},
		{"${{ [1, 2] }}", "[1,2]"},
		{"${{ nil }}", ""},
		{"a ${{ '${{' }} b", "a ${{ b"},
		{"${{ upper(vars.n) }}${{ len(vars.repo) > 3 ? 'long' : 'short' }}", "3long"},
	}
	for _, tt := range tests {
		got, err := Expand(tt.in, testScope)
		if err != nil || got != tt.want {
			t.Errorf("Expand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestExpandErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"${{ vars.repo", "unterminated ${{"},
		{"${{ }}", "empty ${{ }}"},
		{"${{ 1 + }}", "template ${{ 1 + }}: unexpected token EOF"},
		{"${{ nosuch }}", "template ${{ nosuch }}: unknown name nosuch"},
		{"${{ int(vars.repo) }}", "template ${{ int(vars.repo) }}: "},
	}
	for _, tt := range tests {
		got, err := Expand(tt.in, testScope)
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Expand(%q) = %q, %v; want error containing %q on one line", tt.in, got, err, tt.want)
		}
	}
}

func TestCondition(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want bool
	}{
		{"${{ steps.approve.answers.ok == 'yes' }}", true},
		{"steps.approve.answers.ok == 'yes'", true},
		{"  ${{ steps.approve.answers.ok == 'no' }}  ", false},
		{"steps.build.status == 'succeeded' && vars.n == '3'", true},
		{"steps['my-step'].status != 'succeeded'", true},
		{"steps.never.outputs.x == ''", true},
		{"true", true},
		{"${{ false }}", false},
	}
	for _, tt := range tests {
		got, err := Condition(tt.in, testScope)
		if err != nil || got != tt.want {
			t.Errorf("Condition(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestConditionErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"vars.repo", `condition "vars.repo": expected bool, but got string`},
		{"${{ vars.n }}", `condition "vars.n": expected bool`},
		{"${{ true }} || ${{ false }}", "want a bare expression or a single ${{ expr }}"},
		{"", "empty condition"},
		{"${{ 1 + }}", `condition "1 +": unexpected token EOF`},
	}
	for _, tt := range tests {
		got, err := Condition(tt.in, testScope)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Condition(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.want)
		}
	}
}

func TestResolveVars(t *testing.T) {
	t.Parallel()
	w := &Workflow{Vars: map[string]string{"repo": "default", "branch": "main"}}
	got, err := w.ResolveVars(map[string]string{"branch": "dev"})
	if err != nil || !reflect.DeepEqual(got, map[string]string{"repo": "default", "branch": "dev"}) {
		t.Errorf("ResolveVars = %v, %v", got, err)
	}
	if w.Vars["branch"] != "main" {
		t.Errorf("ResolveVars changed the defaults")
	}
	got, err = w.ResolveVars(nil)
	if err != nil || !reflect.DeepEqual(got, w.Vars) {
		t.Errorf("ResolveVars(nil) = %v, %v", got, err)
	}
	_, err = w.ResolveVars(map[string]string{"brnach": "dev", "zz": "1", "repo": "r"})
	if !errors.Is(err, ErrUnknownVar) || !strings.Contains(err.Error(), `"brnach", "zz" (declared: branch, repo)`) {
		t.Errorf("unknown override: %v", err)
	}
	if got, err := (&Workflow{}).ResolveVars(nil); err != nil || got == nil {
		t.Errorf("no vars: %v, %v", got, err)
	}
}

// TestConcurrentEvaluation runs templates from many goroutines, as the
// executor does for parallel steps; run it with -race.
func TestConcurrentEvaluation(t *testing.T) {
	t.Parallel()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if s, err := Expand("${{ steps.build.outputs.version }}", testScope); err != nil || s != "1.2.3" {
					t.Errorf("Expand = %q, %v", s, err)
				}
				if ok, err := Condition("run.id == 'run-42'", testScope); err != nil || !ok {
					t.Errorf("Condition = %v, %v", ok, err)
				}
			}
		}()
	}
	wg.Wait()
}

func TestReferences(t *testing.T) {
	t.Parallel()
	refs, problems, err := references("steps.a.outputs.x + steps['b-c'].status + vars.v + vars['w-x'] + (steps?.d?.answers?.y ?? '')")
	if err != nil || len(problems) != 0 {
		t.Fatalf("references: %v %v", problems, err)
	}
	got := map[reference]bool{}
	for _, r := range refs {
		got[r] = true
	}
	want := map[reference]bool{
		{steps: true, name: "a"}: true, {steps: true, name: "b-c"}: true, {steps: true, name: "d"}: true,
		{name: "v"}: true, {name: "w-x"}: true,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("references = %v, want %v", got, want)
	}
}
