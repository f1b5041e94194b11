package workflow

import (
	"strings"
	"testing"
)

func TestConcurrencyParse(t *testing.T) {
	t.Parallel()
	w, err := Parse([]byte(`name: deploy
vars: {env: dev}
concurrency: {group: "deploy-${{ vars.env }}", limit: 2, on_conflict: cancel_in_progress}
steps:
  - id: a
    run: ["true"]
`), "deploy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := w.Concurrency
	if c == nil || c.Group != "deploy-${{ vars.env }}" || c.EffectiveLimit() != 2 || c.Mode() != OnConflictCancelInProgress {
		t.Fatalf("concurrency = %+v", c)
	}
	if g, err := w.GroupOf(map[string]string{"env": "prod"}); err != nil || g != "deploy-prod" {
		t.Errorf("GroupOf(env=prod) = %q, %v", g, err)
	}
	w.Concurrency = &Concurrency{Group: "fixed"}
	if w.Concurrency.EffectiveLimit() != 1 || w.Concurrency.Mode() != OnConflictQueue {
		t.Errorf("defaults: limit %d mode %s, want 1 and queue", w.Concurrency.EffectiveLimit(), w.Concurrency.Mode())
	}
	if err := w.Validate(); err != nil {
		t.Errorf("a fixed group: %v", err)
	}
}

func TestConcurrencyErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, conc string
		want       []string
	}{
		{"unknown var", `{group: "d-${{ vars.nope }}"}`, []string{"wf.yaml:3", "concurrency.group", `unknown var "nope"`}},
		{"step ref", `{group: "d-${{ steps.a.outputs.x }}"}`, []string{"wf.yaml:3", "concurrency.group", "not in this step's needs"}},
		{"no group", `{limit: 1}`, []string{"wf.yaml:3", "needs a group"}},
		{"zero limit", `{group: g, limit: 0}`, []string{"wf.yaml:3", "concurrency.limit", "want 1 to 1000, got 0"}},
		{"bad mode", `{group: g, on_conflict: cancel}`, []string{"wf.yaml:3", "concurrency.on_conflict", `"cancel"`}},
		{"unknown field", `{group: g, limt: 1}`, []string{"wf.yaml:3", "concurrency.limt", "unknown field", "limit"}},
		{"not a mapping", `deploy`, []string{"wf.yaml:3", "concurrency", "want a mapping"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte("name: x\nvars: {env: dev}\nconcurrency: "+tc.conc+"\nsteps:\n  - id: a\n    run: [\"true\"]\n"), "wf.yaml")
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
		})
	}
}
