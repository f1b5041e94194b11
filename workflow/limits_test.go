package workflow

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// Sizes past the documented limits are refused as invalid input, naming the
// limit, before anything is stored or sent.
func TestSizeLimits(t *testing.T) {
	t.Parallel()
	big := "steps:\n  - id: a\n    shell: |\n      " + strings.Repeat("echo aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n      ", MaxWorkflowBytes/36+1)
	_, err := Parse([]byte(big), "big.yaml")
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "the limit is 4194304 (4 MiB)") {
		t.Errorf("a %d-byte workflow: %v", len(big), err)
	}

	var b strings.Builder
	b.WriteString("steps:\n")
	for i := range MaxSteps + 1 {
		b.WriteString("  - {id: s" + strconv.Itoa(i) + ", run: [\"true\"]}\n")
	}
	if _, err := Parse([]byte(b.String()), "many.yaml"); err == nil || !strings.Contains(err.Error(), "1000") {
		t.Errorf("%d steps: %v", MaxSteps+1, err)
	}

	w, err := Parse([]byte("vars: {a: x, b: y}\nsteps: [{id: s, run: [\"true\"]}]\n"), "v.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.ResolveVars(map[string]string{"a": strings.Repeat("v", 10<<10)}); err != nil {
		t.Errorf("a 10 KiB var: %v", err)
	}
	if _, err := w.ResolveVars(map[string]string{"a": strings.Repeat("v", MaxVarBytes+1)}); !errors.Is(err, ErrVarTooLarge) || !strings.Contains(err.Error(), `var "a"`) {
		t.Errorf("a var past the limit: %v", err)
	}
	if _, err := w.ResolveVars(map[string]string{"a": strings.Repeat("v", MaxVarBytes), "b": strings.Repeat("v", MaxVarBytes)}); err != nil {
		t.Errorf("two vars at the limit: %v", err)
	}
}

func TestNestingLimit(t *testing.T) {
	t.Parallel()
	deep := "vars: {a: x}\nsteps:\n  - id: s\n    run: [\"true\"]\n    env: " + strings.Repeat("[", 80) + strings.Repeat("]", 80) + "\n"
	if _, err := Parse([]byte(deep), "deep.yaml"); err == nil || !strings.Contains(err.Error(), "nested deeper than 64 levels") {
		t.Fatalf("deep YAML: %v", err)
	}
}
