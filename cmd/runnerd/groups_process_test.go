package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/client"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/workflow"
)

// Concurrency groups and tenant limits with real processes: two runnerd
// serve processes share the test's servers; runs are submitted through the
// client package (what `runnerd submit` does).

// fleet is two runnerd serve processes on one stack.
type fleet struct {
	e      *testEnv
	c      *client.Client
	serves []*proc
	root   string
}

func startFleet(t *testing.T, extra ...string) *fleet {
	t.Helper()
	bin, runexecBin := binaries(t)
	e := startEnv(t)
	vars := map[string]string{}
	for _, k := range []string{"RUNNERD_NATS_URL", "RUNNERD_MONGO_URI", "RUNNERD_S3_ENDPOINT", "RUNNERD_S3_BUCKET",
		"RUNNERD_S3_REGION", "RUNNERD_S3_ACCESS_KEY", "RUNNERD_S3_SECRET_KEY"} {
		vars[k] = os.Getenv(k)
	}
	f := &fleet{e: e, root: t.TempDir()}
	for _, id := range []string{testutil.UniqueID("grp-a"), testutil.UniqueID("grp-b")} {
		args := append([]string{"serve", "--runexec", runexecBin, "--run-dir", filepath.Join(f.root, "runs"),
			"--runner-id", id, "--metrics-addr", "127.0.0.1:0", "--concurrency", "2", "--log-format", "json",
			"--log-level", "debug", "--grace", "10s", "--sandbox", "off"}, extra...)
		f.serves = append(f.serves, startProc(t, "runnerd serve "+id, baseEnv(vars), bin, args...))
	}
	for _, p := range f.serves {
		p.waitLog(`"message":"serving"`, 60*time.Second)
	}
	if dir := os.Getenv("RUNNERD_TEST_LOG_DIR"); dir != "" { // the whole logs, for a look after the test
		t.Cleanup(func() {
			for i, p := range f.serves {
				_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d.log", t.Name(), i)), []byte(p.stderr.String()), 0o644)
			}
		})
	}
	var err error
	if f.c, err = e.c.client(); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fleet) submit(t *testing.T, id, tenant, yaml string, vars map[string]string) *client.Run {
	t.Helper()
	wf, err := workflow.Parse([]byte(yaml), id+".yaml")
	if err != nil {
		t.Fatal(err)
	}
	q, err := f.c.Submit(ctxT(t), client.Submission{ID: id, TenantID: tenant, Workflow: wf, Vars: vars})
	if err != nil {
		t.Fatalf("submit %s: %v", id, err)
	}
	return q.Run
}

func (f *fleet) wait(t *testing.T, id string) *client.Run {
	t.Helper()
	r, err := f.c.Wait(ctxT(t), id)
	if err != nil {
		t.Fatalf("wait %s: %v", id, err)
	}
	return r
}

// waitFor polls the run until ok.
func (f *fleet) waitFor(t *testing.T, id, what string, ok func(*client.Run) bool) *client.Run {
	t.Helper()
	var r *client.Run
	var err error
	testutil.Eventually(t, 60*time.Second, func() bool {
		r, err = f.c.Get(ctxT(t), id)
		return err == nil && ok(r)
	}, "run %s not %s: %s", id, what, func() string { return fmt.Sprintf("%+v %v", r, err) })
	return r
}

// span is when a step said it started and ended (its own clock, in ns).
type span struct {
	id         string
	start, end int64
}

func stepSpan(t *testing.T, r *client.Run, step string) span {
	t.Helper()
	st := r.Steps[step]
	if st == nil {
		t.Fatalf("run %s has no step %s", r.ID, step)
	}
	start, err1 := strconv.ParseInt(st.Outputs["start"], 10, 64)
	end, err2 := strconv.ParseInt(st.Outputs["end"], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("run %s step %s outputs %v", r.ID, step, st.Outputs)
	}
	return span{r.ID, start, end}
}

// timedStep is a step that records its own start and end, in ns.
const timedStep = `
  - id: work
    shell: |
      echo "start=$(date +%%s%%N)" >> "$RUNEXEC_OUTPUT"
      sleep %s
      echo "end=$(date +%%s%%N)" >> "$RUNEXEC_OUTPUT"
`

func groupYAML(onConflict, sleep string) string {
	return `name: deploy
vars: {env: dev}
concurrency: {group: "deploy-${{ vars.env }}", limit: 1, on_conflict: ` + onConflict + `}
steps:` + fmt.Sprintf(timedStep, sleep)
}

// TestProcessGroupLimitOne: 50 runs of one group of limit 1 on two runners:
// never two at once, by the steps' own clocks, and in submission order; a
// run of another group is not held up by them.
func TestProcessGroupLimitOne(t *testing.T) {
	if testing.Short() {
		t.Skip("two runnerd serve processes and 50 runs")
	}
	f := startFleet(t)
	const n = 50
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("deploy-%02d", i)
		f.submit(t, ids[i], "acme", groupYAML("queue", "0.05"), map[string]string{"env": "prod"})
	}
	other := f.submit(t, "staging-1", "acme", groupYAML("queue", "0.05"), map[string]string{"env": "staging"})

	// The last one waits, and says where.
	if st := f.e.mustRun(cli.ExitOK, "status", ids[n-1]); !strings.Contains(st.stdout, `waits in concurrency group "deploy-prod": position`) {
		t.Logf("status of the last run (it may have started already):\n%s", st.stdout)
	}
	if r := f.wait(t, other.ID); r.Status != runnerd.StatusSucceeded {
		t.Errorf("run of group deploy-staging: %s/%s", r.Status, r.Reason)
	}
	var spans []span
	for _, id := range ids {
		r := f.wait(t, id)
		if r.Status != runnerd.StatusSucceeded || r.Attempt != 1 {
			t.Fatalf("run %s: %s/%s attempt %d", id, r.Status, r.Reason, r.Attempt)
		}
		spans = append(spans, stepSpan(t, r, "work"))
	}
	byStart := append([]span(nil), spans...)
	sort.Slice(byStart, func(i, j int) bool { return byStart[i].start < byStart[j].start })
	for i := range byStart {
		if byStart[i].id != ids[i] {
			t.Errorf("run %d to start was %s, want %s (submission order)", i, byStart[i].id, ids[i])
		}
		if i > 0 && byStart[i].start < byStart[i-1].end {
			t.Errorf("runs %s and %s ran at once: %s started %s before %s ended", byStart[i-1].id, byStart[i].id,
				byStart[i].id, time.Duration(byStart[i-1].end-byStart[i].start), byStart[i-1].id)
		}
	}
	var gaps []time.Duration
	for i := 1; i < len(byStart); i++ {
		gaps = append(gaps, time.Duration(byStart[i].start-byStart[i-1].end))
	}
	sort.Slice(gaps, func(i, j int) bool { return gaps[i] < gaps[j] })
	t.Logf("handoff between runs of the group (one ends, the next starts): p50 %s, max %s", gaps[len(gaps)/2].Round(time.Millisecond), gaps[len(gaps)-1].Round(time.Millisecond))
	// A run starts about a second after its turn comes; far more would be
	// a waiter that learns of its turn from a redelivery timer (the
	// lease TTL, AckWait), not from the line.
	if worst := gaps[len(gaps)-1]; worst > 10*time.Second {
		t.Errorf("a run of the group started %s after the one before it ended, want about a second", worst.Round(time.Millisecond))
	}
	// Both runners took part: the limit held across the fleet, not in one
	// process.
	ran := map[string]int{}
	for _, p := range f.serves {
		for id := range terminalDone(t, p.stderr.String()) {
			if strings.HasPrefix(id, "deploy-") {
				ran[p.name]++
			}
		}
	}
	t.Logf("runs of the group per runner: %v", ran)
	for _, p := range f.serves {
		if ran[p.name] == 0 {
			t.Errorf("runner %s ran none of the group's %d runs: the fleet-wide limit was not exercised", p.name, n)
		}
	}
}

// TestProcessGroupOnConflict: cancel_in_progress cancels the running member
// (reason cancelled); cancel_new cancels the new run (reason group_full)
// and leaves the running one alone.
func TestProcessGroupOnConflict(t *testing.T) {
	if testing.Short() {
		t.Skip("two runnerd serve processes")
	}
	f := startFleet(t)
	vars := map[string]string{"env": "prod"}

	f.submit(t, "cip-1", "acme", groupYAML("cancel_in_progress", "60"), vars)
	f.waitFor(t, "cip-1", "running", func(r *client.Run) bool { return r.Status == runnerd.StatusRunning })
	f.submit(t, "cip-2", "acme", groupYAML("cancel_in_progress", "0.1"), vars)
	if r := f.wait(t, "cip-1"); r.Status != runnerd.StatusCancelled || r.Reason != runnerd.ReasonCancelled {
		t.Errorf("the running member: %s/%s, want cancelled/cancelled", r.Status, r.Reason)
	}
	if r := f.wait(t, "cip-2"); r.Status != runnerd.StatusSucceeded {
		t.Errorf("the new run: %s/%s, want succeeded", r.Status, r.Reason)
	}

	f.submit(t, "cn-1", "acme", groupYAML("cancel_new", "60"), map[string]string{"env": "qa"})
	f.waitFor(t, "cn-1", "running", func(r *client.Run) bool { return r.Status == runnerd.StatusRunning })
	// submit --wait of the new run ends at once: cancelled, exit 4.
	r := f.e.mustRun(cli.ExitCancelled, "submit", writeFile(t, "cn.yaml", groupYAML("cancel_new", "0.1")), "--var", "env=qa", "--id", "cn-2", "--wait")
	if !strings.Contains(r.stderr, "group_full") {
		t.Errorf("submit --wait of a run cancelled by cancel_new:\n%s", r.stderr)
	}
	if cur := f.waitFor(t, "cn-1", "running", func(*client.Run) bool { return true }); cur.Status != runnerd.StatusRunning {
		t.Errorf("the running member after cancel_new: %s, want still running", cur.Status)
	}
	if _, err := f.c.Cancel(ctxT(t), "cn-1"); err != nil {
		t.Fatal(err)
	}
	if r := f.wait(t, "cn-1"); r.Status != runnerd.StatusCancelled {
		t.Errorf("cn-1: %s", r.Status)
	}

	// queue: the second waits, queued, never claimed, and status says where.
	f.submit(t, "q-1", "acme", groupYAML("queue", "60"), map[string]string{"env": "uat"})
	f.waitFor(t, "q-1", "running", func(r *client.Run) bool { return r.Status == runnerd.StatusRunning })
	f.submit(t, "q-2", "acme", groupYAML("queue", "0.1"), map[string]string{"env": "uat"})
	time.Sleep(time.Second) // a runner has seen q-2 by now
	st := f.e.mustRun(cli.ExitOK, "status", "q-2")
	if !strings.Contains(st.stdout, `waits in concurrency group "deploy-uat": position 1 of 1 waiting (1 running, limit 1)`) {
		t.Errorf("status of a waiting run does not say where it waits:\n%s", st.stdout)
	}
	if r, _ := f.c.Get(ctxT(t), "q-2"); r.Status != runnerd.StatusQueued || r.Attempt != 0 || r.Crashes != 0 {
		t.Errorf("waiting run: %s attempt %d crashes %d, want queued, never claimed", r.Status, r.Attempt, r.Crashes)
	}
	if _, err := f.c.Cancel(ctxT(t), "q-1"); err != nil {
		t.Fatal(err)
	}
	if r := f.wait(t, "q-2"); r.Status != runnerd.StatusSucceeded || r.Attempt != 1 {
		t.Errorf("q-2 after q-1 was cancelled: %s/%s attempt %d", r.Status, r.Reason, r.Attempt)
	}
}

// TestProcessGroupHolderKilled: the runner of a group's running member is
// SIGKILLed while the group's next member waits parked on that same runner
// (the other runner is stopped meanwhile, so that it does not pick the
// next member up). With the default AckWait (1 min), the next member starts
// on the other runner within about a lease TTL of the kill: its parked
// delivery was held for a lease TTL at a time, not for AckWait. The killed
// member runs again after it.
func TestProcessGroupHolderKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("two runnerd serve processes, one SIGKILLed")
	}
	const leaseTTL = 3 * time.Second
	f := startFleet(t, "--lease-ttl", leaseTTL.String())
	vars := map[string]string{"env": "prod"}
	f.submit(t, "held-1", "acme", groupYAML("queue", "15"), vars)
	r1 := f.waitFor(t, "held-1", "running", func(r *client.Run) bool { return r.Status == runnerd.StatusRunning })
	var holder, other *proc
	for _, p := range f.serves {
		if strings.Contains(p.name, r1.RunnerID) {
			holder = p
		} else {
			other = p
		}
	}
	if holder == nil || other == nil {
		t.Fatalf("no serve process named %s", r1.RunnerID)
	}
	// The other runner stops long enough for its pending fetch (5 s) to
	// expire on the server: held-2 can only go to the holder's runner.
	if err := syscall.Kill(other.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			_ = syscall.Kill(other.cmd.Process.Pid, syscall.SIGCONT)
		}
	}()
	time.Sleep(6 * time.Second)
	f.submit(t, "held-2", "acme", groupYAML("queue", "0.1"), vars)
	testutil.Eventually(t, 20*time.Second, func() bool {
		for _, l := range strings.Split(holder.stderr.String(), "\n") {
			if strings.Contains(l, `"run_id":"held-2"`) && strings.Contains(l, "waiting for its turn: parked") {
				return true
			}
		}
		return false
	}, "held-2 was not parked on the holder's runner\n%s", func() string { return testutil.Tail(holder.stderr.String(), 50) })
	if r, _ := f.c.Get(ctxT(t), "held-2"); r.Status != runnerd.StatusQueued {
		t.Fatalf("held-2 is %s while held-1 runs, want queued", r.Status)
	}
	killed := time.Now()
	if err := syscall.Kill(-holder.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(other.cmd.Process.Pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	r2 := f.wait(t, "held-2")
	if r2.Status != runnerd.StatusSucceeded || r2.Attempt != 1 {
		t.Fatalf("held-2: %s/%s attempt %d", r2.Status, r2.Reason, r2.Attempt)
	}
	s2 := stepSpan(t, r2, "work")
	after := time.Duration(s2.start - killed.UnixNano())
	t.Logf("held-2, parked on the killed runner, started %s after the kill (lease TTL %s, AckWait 1m)", after.Round(time.Millisecond), leaseTTL)
	if s2.start < killed.UnixNano() {
		t.Errorf("held-2 started before the holder's runner died")
	}
	// Liveness, not speed: a lease TTL for the parked delivery's hold, one
	// for the holder's lease, and a wide margin for a loaded machine; the
	// AckWait it waited before is a minute.
	if bound := 2*leaseTTL + 15*time.Second; after > bound {
		t.Errorf("held-2 started %s after the kill, want within %s: its parked delivery waited for AckWait", after, bound)
	}
	// held-1's own delivery was marked in progress while it ran: it comes
	// back after AckWait.
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	r1, err := f.c.Wait(ctx, "held-1")
	if err != nil {
		t.Fatal(err)
	}
	if r1.Status != runnerd.StatusSucceeded || r1.Attempt != 2 {
		t.Fatalf("held-1: %s/%s attempt %d, want succeeded on its second attempt", r1.Status, r1.Reason, r1.Attempt)
	}
	if s1 := stepSpan(t, r1, "work"); s1.start < s2.end {
		t.Errorf("held-1's second attempt started before held-2 ended: the group ran two at once")
	}
}

// TestProcessTenantFairness: with --tenant-concurrency 2, a tenant that
// queued 1,000 runs leaves places to another tenant's 10 runs queued after
// them: those all finish while the first tenant still has most of its
// backlog.
func TestProcessTenantFairness(t *testing.T) {
	if testing.Short() {
		t.Skip("two runnerd serve processes and 1,010 runs")
	}
	f := startFleet(t, "--tenant-concurrency", "2")
	const big, small = 1000, 10
	quick := "name: quick\nsteps:\n  - id: q\n    shell: sleep 0.2\n"
	start := time.Now()
	for i := range big {
		f.submit(t, fmt.Sprintf("big-%04d", i), "big", quick, nil)
	}
	submitted := time.Since(start)
	t.Logf("submitted %d runs of tenant big in %s", big, submitted.Round(time.Millisecond))
	var small0 time.Time
	for i := range small {
		if i == 0 {
			small0 = time.Now()
		}
		f.submit(t, fmt.Sprintf("small-%02d", i), "small", quick, nil)
	}
	for i := range small {
		if r := f.wait(t, fmt.Sprintf("small-%02d", i)); r.Status != runnerd.StatusSucceeded {
			t.Fatalf("small-%02d: %s/%s", i, r.Status, r.Reason)
		}
	}
	smallDone := time.Since(small0)
	done := 0
	for _, p := range f.serves {
		for id := range terminalDone(t, p.stderr.String()) {
			if strings.HasPrefix(id, "big-") {
				done++
			}
		}
	}
	t.Logf("1,000 runs of tenant big submitted in %s; tenant small's 10 runs, submitted after them, all finished %s later; tenant big had finished %d (%.1f%% of its backlog left)",
		submitted.Round(time.Millisecond), smallDone.Round(time.Millisecond), done, 100*float64(big-done)/big)
	// Most of the backlog: at least 80% of it still waits.
	if done > big/5 {
		t.Errorf("tenant big finished %d of %d runs before tenant small's 10: its flood held the fleet", done, big)
	}
}

// TestProcessTenantLimitPerTenant: --tenant-concurrency 2 for every tenant
// and, from a file, solo=1: tenant solo's runs never overlap, by the steps'
// own clocks, while tenant pair's run two at once and never three.
func TestProcessTenantLimitPerTenant(t *testing.T) {
	if testing.Short() {
		t.Skip("two runnerd serve processes")
	}
	limits := writeFile(t, "tenants", "# one at a time\nsolo=1\n")
	f := startFleet(t, "--tenant-concurrency", "2", "--tenant-concurrency", "@"+limits)
	yaml := "name: timed\nsteps:" + fmt.Sprintf(timedStep, "1")
	var solo, pair []string
	for i := range 4 {
		solo = append(solo, f.submit(t, fmt.Sprintf("solo-%d", i), "solo", yaml, nil).ID)
		pair = append(pair, f.submit(t, fmt.Sprintf("pair-%d", i), "pair", yaml, nil).ID)
	}
	// The last of solo's runs waits seconds behind three others of its
	// tenant, and status says so on its status line.
	var last struct {
		Reason  string          `json:"reason"`
		Waiting *client.Waiting `json:"waiting"`
	}
	testutil.Eventually(t, 20*time.Second, func() bool {
		r := f.e.run("status", "--json", solo[3])
		return r.code == cli.ExitOK && json.Unmarshal([]byte(r.stdout), &last) == nil && last.Waiting != nil && last.Waiting.Kind == client.WaitTenantLimit
	}, "status of %s never said it waits for its tenant's limit: %+v", solo[3], last.Waiting)
	// The limit is the runners' setting: the client knows it only where
	// the line's tickets carry it.
	if w := last.Waiting; last.Reason != "tenant_limit" || w.Name != "solo" || (w.Limit != 0 && w.Limit != 1) || w.Position < 1 || w.Position > 3 || w.Of < w.Position {
		t.Errorf("status --json of %s: reason %q waiting %+v, want tenant_limit, solo, position 1-3", solo[3], last.Reason, w)
	}
	if st := f.e.run("status", solo[3]); !regexp.MustCompile(`status: +queued \(waiting for tenant "solo"'s limit( of 1)?, position [1-3] of [1-4]\)\n`).MatchString(st.stdout) {
		t.Logf("status of %s (it may have started already):\n%s", solo[3], st.stdout)
	}
	most := func(ids []string) int {
		type edge struct {
			at    int64
			delta int
		}
		var edges []edge
		for _, id := range ids {
			r := f.wait(t, id)
			if r.Status != runnerd.StatusSucceeded {
				t.Fatalf("run %s: %s/%s", id, r.Status, r.Reason)
			}
			s := stepSpan(t, r, "work")
			edges = append(edges, edge{s.start, 1}, edge{s.end, -1})
		}
		sort.Slice(edges, func(i, j int) bool {
			if edges[i].at != edges[j].at {
				return edges[i].at < edges[j].at
			}
			return edges[i].delta < edges[j].delta // an end before a start at the same instant
		})
		n, top := 0, 0
		for _, e := range edges {
			n += e.delta
			top = max(top, n)
		}
		return top
	}
	if n := most(solo); n != 1 {
		t.Errorf("tenant solo (solo=1 from the file) had %d runs at once, want 1", n)
	}
	if n := most(pair); n != 2 {
		t.Errorf("tenant pair (the default, 2) had at most %d runs at once, want 2 (4 slots in the fleet)", n)
	}
}
