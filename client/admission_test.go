package client_test

import (
	"fmt"
	"testing"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/client"
)

// groupYAML is a workflow of group deploy-<env> whose step sleeps.
func groupYAML(limit int, onConflict, sleep string) string {
	return fmt.Sprintf(`name: deploy
vars: {env: dev}
concurrency: {group: "deploy-${{ vars.env }}", limit: %d, on_conflict: %s}
steps:
  - id: work
    shell: sleep %s
`, limit, onConflict, sleep)
}

// submitAs submits a run of tenant.
func (w *world) submitAs(id, tenant, yaml string, vars map[string]string) *client.Run {
	w.t.Helper()
	q, err := w.c.Submit(ctxT(w.t), client.Submission{ID: id, TenantID: tenant, Workflow: w.workflow(yaml), Vars: vars})
	if err != nil {
		w.t.Fatalf("submit %s: %v", id, err)
	}
	return q.Run
}

// TestGroupStoredOnRun: the group as evaluated at submit, its limit and
// on_conflict are on the run document, and stay there once it ended.
func TestGroupStoredOnRun(t *testing.T) {
	w := newWorld(t)
	w.serve()
	r := w.submit("stored-1", groupYAML(2, "cancel_new", "0.1"), map[string]string{"env": "prod"})
	if r.ConcurrencyGroup != "deploy-prod" || r.ConcurrencyLimit != 2 || r.OnConflict != "cancel_new" {
		t.Errorf("submitted run: group %q limit %d on_conflict %q, want deploy-prod 2 cancel_new", r.ConcurrencyGroup, r.ConcurrencyLimit, r.OnConflict)
	}
	done, err := w.c.Wait(ctxT(t), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != runnerd.StatusSucceeded || done.ConcurrencyGroup != "deploy-prod" || done.ConcurrencyLimit != 2 || done.OnConflict != "cancel_new" {
		t.Errorf("ended run: %s, group %q limit %d on_conflict %q", done.Status, done.ConcurrencyGroup, done.ConcurrencyLimit, done.OnConflict)
	}
	plain := w.submit("stored-2", helloYAML, nil)
	if plain.ConcurrencyGroup != "" || plain.ConcurrencyLimit != 0 || plain.OnConflict != "" {
		t.Errorf("a run in no group: group %q limit %d on_conflict %q", plain.ConcurrencyGroup, plain.ConcurrencyLimit, plain.OnConflict)
	}
}
