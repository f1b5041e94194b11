package client_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/admission"
	"github.com/runnerd/runnerd/client"
	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
	"github.com/runnerd/runnerd/supervisor"
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

// status is the run's status now ("" when it cannot be read).
func (w *world) status(id string) runnerd.Status {
	r, err := w.c.Get(ctxT(w.t), id)
	if err != nil {
		return ""
	}
	return r.Status
}

// waitStatus waits until the run has status want.
func (w *world) waitStatus(id string, want runnerd.Status, timeout time.Duration) {
	w.t.Helper()
	testutil.Eventually(w.t, timeout, func() bool { return w.status(id) == want },
		"run %s is %s, want %s\nlogs:\n%s", id, func() string { return string(w.status(id)) }, want, w.logs.String)
}

// TestGroupsPerTenant: two tenants' groups of one name are two lines: the
// second tenant's run starts while the first's runs, and its
// cancel_in_progress cancels only its own tenant's run.
func TestGroupsPerTenant(t *testing.T) {
	w := newWorld(t)
	w.serveWith(func(c *supervisor.Config) { c.Concurrency = 3 })
	vars := map[string]string{"env": "prod"}
	w.submitAs("a-1", "tenant-a", groupYAML(1, "queue", "60"), vars)
	w.waitStatus("a-1", runnerd.StatusRunning, 30*time.Second)
	w.submitAs("b-1", "tenant-b", groupYAML(1, "queue", "60"), vars)
	w.waitStatus("b-1", runnerd.StatusRunning, 30*time.Second)
	if s := w.status("a-1"); s != runnerd.StatusRunning {
		t.Fatalf("a-1 is %s while b-1 runs, want running", s)
	}
	w.submitAs("b-2", "tenant-b", groupYAML(1, "cancel_in_progress", "60"), vars)
	w.waitStatus("b-1", runnerd.StatusCancelled, 30*time.Second)
	w.waitStatus("b-2", runnerd.StatusRunning, 30*time.Second)
	if s := w.status("a-1"); s != runnerd.StatusRunning {
		t.Errorf("a-1 is %s after tenant-b's cancel_in_progress, want still running", s)
	}
	for _, id := range []string{"a-1", "b-2"} {
		if _, err := w.c.Cancel(ctxT(t), id); err != nil {
			t.Fatal(err)
		}
		w.waitStatus(id, runnerd.StatusCancelled, 30*time.Second)
	}
}

// TestCancelInProgressLimit: cancel_in_progress cancels only as many of
// the group's oldest runs as it takes to make room: with limit 2 and one
// running, the second starts beside it; the third cancels the first only.
func TestCancelInProgressLimit(t *testing.T) {
	w := newWorld(t)
	w.serveWith(func(c *supervisor.Config) { c.Concurrency = 3 })
	vars := map[string]string{"env": "prod"}
	yaml := groupYAML(2, "cancel_in_progress", "60")
	w.submit("cip-1", yaml, vars)
	w.waitStatus("cip-1", runnerd.StatusRunning, 30*time.Second)
	w.submit("cip-2", yaml, vars)
	w.waitStatus("cip-2", runnerd.StatusRunning, 30*time.Second)
	if s := w.status("cip-1"); s != runnerd.StatusRunning {
		t.Fatalf("cip-1 is %s after the second run of a group of 2, want running", s)
	}
	w.submit("cip-3", yaml, vars)
	w.waitStatus("cip-1", runnerd.StatusCancelled, 30*time.Second)
	w.waitStatus("cip-3", runnerd.StatusRunning, 30*time.Second)
	if s := w.status("cip-2"); s != runnerd.StatusRunning {
		t.Errorf("cip-2 is %s after the third run, want running (only the oldest makes room)", s)
	}
	for _, id := range []string{"cip-2", "cip-3"} {
		if _, err := w.c.Cancel(ctxT(t), id); err != nil {
			t.Fatal(err)
		}
		w.waitStatus(id, runnerd.StatusCancelled, 30*time.Second)
	}
}

// TestTenantMismatchLeavesLine: a message that names another tenant than
// its run's joins that tenant's line before the run is loaded; the
// delivery is termed (tenant_mismatch) and must leave the line, or the
// tenant's runs wait behind its ticket for good (the run itself stays
// queued, so no check of settled runs would drop it).
func TestTenantMismatchLeavesLine(t *testing.T) {
	w := newWorld(t)
	w.serveWith(func(c *supervisor.Config) { c.TenantLimits = map[string]int{"evil": 1} })
	ctx := ctxT(t)
	wf := w.workflow(helloYAML)
	if err := w.st.Create(ctx, &store.Run{ID: "x-1", TenantID: "acme", Workflow: wf}); err != nil {
		t.Fatal(err)
	}
	forged := &queue.Message{V: queue.Version, RunID: "x-1", TenantID: "evil", Workflow: wf, PublishedAt: time.Now().UTC()}
	if err := w.q.Publish(ctx, forged, 0, nil); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() bool { return has(w.logs.String(), `"message":"tenant mismatch"`) },
		"the forged message was not refused\nlogs:\n%s", w.logs.String)
	lines := admission.New(w.q.AdmissionKV())
	testutil.Eventually(t, 10*time.Second, func() bool {
		members, err := lines.Members(ctx, admission.Tenant("evil"))
		return err == nil && len(members) == 0
	}, "tenant evil's line keeps the termed delivery's ticket: %v", func() string {
		m, err := lines.Members(ctx, admission.Tenant("evil"))
		return fmt.Sprint(m, err)
	})
	w.submitAs("e-1", "evil", helloYAML, nil)
	w.waitStatus("e-1", runnerd.StatusSucceeded, 30*time.Second)
	if s := w.status("x-1"); s != runnerd.StatusQueued {
		t.Errorf("x-1 is %s: the forged message changed it", s)
	}
}

// TestLeftBehindTicketsDropped: tickets at the front of a group's line
// whose runs do not exist or have ended (left behind by a runner that died
// before it took them away) are dropped by a waiter once older than a few
// seconds, and the line moves.
func TestLeftBehindTicketsDropped(t *testing.T) {
	w := newWorld(t)
	w.serve()
	ctx := ctxT(t)
	lines := admission.New(w.q.AdmissionKV())
	g := admission.Group("acme", "deploy-prod")
	if err := w.st.Create(ctx, &store.Run{ID: "ended-1", TenantID: "acme", Workflow: w.workflow(helloYAML)}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.st.SetStatusUnfenced(ctx, "ended-1", runnerd.StatusCancelled, runnerd.ReasonCancelled); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"ghost-1", "ended-1"} {
		if _, err := lines.Join(ctx, g, admission.Ticket{RunID: id, Limit: 1, Tenant: "acme"}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	w.submit("after-1", groupYAML(1, "queue", "0.1"), map[string]string{"env": "prod"})
	w.waitStatus("after-1", runnerd.StatusSucceeded, 60*time.Second)
	t.Logf("the run behind two left-behind tickets finished %s after its submit", time.Since(start).Round(time.Millisecond))
	for _, id := range []string{"ghost-1", "ended-1"} {
		dropped := false
		for _, l := range strings.Split(w.logs.String(), "\n") {
			dropped = dropped || has(l, `"run_id":"`+id+`"`) && has(l, "dropped an admission ticket its run left behind")
		}
		if !dropped {
			t.Errorf("no log of the ticket of %s dropped\nlogs:\n%s", id, w.logs.String())
		}
	}
	if members, err := lines.Members(ctx, g); err != nil || len(members) != 0 {
		t.Errorf("the group's line after its run ended: %v %v, want empty", members, err)
	}
}

// TestCancelWaitingRun: a queued run waiting in its tenant's line (limit
// 1, two runs ahead of it) is cancelled at once by Cancel, not when its turn
// comes; its message is dropped without a new place in the line, and the
// line goes on.
func TestCancelWaitingRun(t *testing.T) {
	w := newWorld(t)
	w.serveWith(func(c *supervisor.Config) { c.TenantConcurrency = 1 })
	w.submit("cw-1", groupYAML(5, "queue", "60"), nil)
	w.waitStatus("cw-1", runnerd.StatusRunning, 30*time.Second)
	w.submit("cw-2", groupYAML(5, "queue", "0.1"), nil)
	w.submit("cw-3", groupYAML(5, "queue", "0.1"), nil)
	lines := admission.New(w.q.AdmissionKV())
	ctx := ctxT(t)
	inLine := func(id string) bool {
		members, _ := lines.Members(ctx, admission.Tenant("acme"))
		for _, m := range members {
			if m.RunID == id {
				return true
			}
		}
		return false
	}
	// cw-3 waits for the tenant (its group has room): parked with a ticket.
	testutil.Eventually(t, 30*time.Second, func() bool { return inLine("cw-3") }, "cw-3 never joined its tenant's line\nlogs:\n%s", w.logs.String)
	start := time.Now()
	o, err := w.c.Cancel(ctx, "cw-3")
	if err != nil || o != client.CancelQueued {
		t.Fatalf("cancel of a waiting run: %v %v", o, err)
	}
	w.waitStatus("cw-3", runnerd.StatusCancelled, 5*time.Second)
	t.Logf("the waiting run was cancelled %s after the call", time.Since(start).Round(time.Millisecond))
	if r, _ := w.c.Get(ctx, "cw-3"); r.Reason != runnerd.ReasonCancelled || r.Attempt != 0 {
		t.Errorf("cw-3: %s/%s attempt %d, want cancelled/cancelled, never claimed", r.Status, r.Reason, r.Attempt)
	}
	// Its parked delivery is dropped: no new ticket (which would wait ahead
	// of the line until its turn came).
	dropped := func() bool {
		for _, l := range strings.Split(w.logs.String(), "\n") {
			if has(l, `"run_id":"cw-3"`) && has(l, `"message":"run attempt done"`) {
				return true
			}
		}
		return false
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return dropped() && !inLine("cw-3") },
		"the cancelled run's delivery was not dropped\nlogs:\n%s", w.logs.String)
	time.Sleep(time.Second)
	if inLine("cw-3") {
		t.Errorf("the cancelled run joined its tenant's line again")
	}
	if _, err := w.c.Cancel(ctx, "cw-1"); err != nil {
		t.Fatal(err)
	}
	w.waitStatus("cw-2", runnerd.StatusSucceeded, 30*time.Second)
	// Its runner leaves the line just after the status write.
	testutil.Eventually(t, 10*time.Second, func() bool { return !inLine("cw-3") && !inLine("cw-2") && !inLine("cw-1") },
		"tickets left in the tenant's line\nlogs:\n%s", w.logs.String)
}

// TestGroupAndTenantLinesCross: x-1 is ahead of y-1 in their group (its
// ticket was made first, as at submit) but y-1's message came first, so
// y-1 would be ahead in their tenant's line (pickup order); with both
// limits 1, x-1 waiting for its tenant behind y-1 and y-1 for its group
// behind x-1 would never run. A run its group holds back takes no place in
// its tenant's line: both run, x-1 first.
func TestGroupAndTenantLinesCross(t *testing.T) {
	w := newWorld(t)
	w.serveWith(func(c *supervisor.Config) { c.TenantConcurrency = 1 })
	ctx := ctxT(t)
	yaml := groupYAML(1, "queue", "0.1")
	vars := map[string]string{"env": "prod"}
	wf := w.workflow(yaml)
	// x-1 as a submit makes it, its message not published yet.
	x := &store.Run{ID: "x-1", TenantID: "acme", Workflow: wf, Vars: vars, ConcurrencyGroup: "deploy-prod", ConcurrencyLimit: 1, OnConflict: "queue"}
	if err := w.st.Create(ctx, x); err != nil {
		t.Fatal(err)
	}
	lines := admission.New(w.q.AdmissionKV())
	if _, err := lines.Join(ctx, admission.Group("acme", "deploy-prod"), admission.Ticket{RunID: "x-1", Limit: 1, Tenant: "acme"}); err != nil {
		t.Fatal(err)
	}
	w.submit("y-1", yaml, vars)
	parked := func() bool {
		for _, l := range strings.Split(w.logs.String(), "\n") {
			if has(l, `"run_id":"y-1"`) && has(l, "waiting for its turn") {
				return true
			}
		}
		return false
	}
	testutil.Eventually(t, 30*time.Second, parked, "y-1 never waited behind x-1 in their group\nlogs:\n%s", w.logs.String)
	if err := w.q.Publish(ctx, &queue.Message{V: queue.Version, RunID: "x-1", TenantID: "acme", Workflow: wf, Vars: vars, PublishedAt: time.Now().UTC()}, 0, nil); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"x-1", "y-1"} {
		w.waitStatus(id, runnerd.StatusSucceeded, 30*time.Second)
	}
	xr, _ := w.c.Get(ctx, "x-1")
	yr, _ := w.c.Get(ctx, "y-1")
	if !xr.FinishedAt.Before(yr.StartedAt) && !xr.FinishedAt.Equal(yr.StartedAt) {
		t.Errorf("y-1 started at %s, before x-1 (ahead of it in the group) ended at %s", yr.StartedAt, xr.FinishedAt)
	}
}
