package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/store"
	"github.com/runnerd/runnerd/workflow"
)

// BenchmarkList: `runnerd list` (the binary, as a user runs it: connect,
// query, print) with RUNNERD_BENCH_LIST_RUNS (50,000) runs stored on the
// embedded stack (FerretDB on SQLite): the default listing, --status
// succeeded (most runs), --status failed (one run in 50) and --status
// paused (none: the whole index is walked, up to the list budget), each
// with --limit 100, and `runnerd status` of one run. Each command runs 10
// times; reported: p50 and the slowest, and the in-process store call
// beside it. The targets: list ≤ 200 ms and never a failure, status ≤ 40 ms.
func BenchmarkList(b *testing.B) {
	n := benchRuns(b, "RUNNERD_BENCH_LIST_RUNS", 50000)
	const tries = 10
	for b.Loop() {
		e := newEnv(b)
		seedStart := time.Now()
		e.seedMixed(n)
		// A store opened on runs stored without the run index indexes them.
		st, err := store.Open(context.Background(), store.Config{URI: e.stack.MongoURI})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = st.Close(context.Background()) })
		b.Logf("seeded %d runs and indexed them in %s", n, time.Since(seedStart).Round(time.Millisecond))

		t := newTargets("list")
		cases := []struct {
			name string
			args []string
			opts store.ListOptions
		}{
			{"list", []string{"list", "--limit", "100", "--all-tenants"}, store.ListOptions{Limit: 100}},
			{"list --status succeeded", []string{"list", "--limit", "100", "--all-tenants", "--status", "succeeded"}, store.ListOptions{Limit: 100, Status: runnerd.StatusSucceeded}},
			{"list --status failed", []string{"list", "--limit", "100", "--all-tenants", "--status", "failed"}, store.ListOptions{Limit: 100, Status: runnerd.StatusFailed}},
			{"list --status paused", []string{"list", "--limit", "100", "--all-tenants", "--status", "paused"}, store.ListOptions{Limit: 100, Status: runnerd.StatusPaused}},
			{"status", []string{"status", fmt.Sprintf("mix-%06d", n/2)}, store.ListOptions{}},
		}
		for _, c := range cases {
			var cli, call []time.Duration
			failures := 0
			shown := 0
			for range tries {
				start := time.Now()
				out, err := e.client(c.args...)
				cli = append(cli, time.Since(start))
				if err != nil {
					failures++
					b.Logf("%s: %v\n%s", c.name, err, testutil.Tail(out, 15))
				}
				shown = strings.Count(out, "\n")
				start = time.Now()
				if c.name == "status" {
					_, err = st.Get(context.Background(), c.args[1])
				} else {
					var p *store.Page
					p, err = st.ListPage(context.Background(), c.opts)
					if err == nil && c.name != "list --status paused" && len(p.Runs) != 100 {
						b.Logf("%s: %d runs, want 100 (%s)", c.name, len(p.Runs), time.Since(start))
					}
				}
				call = append(call, time.Since(start))
				if err != nil {
					b.Fatal(err)
				}
			}
			p50, worst := percentile(cli, 50), percentile(cli, 100)
			key := strings.NewReplacer(" --status ", "-", " ", "-").Replace(c.name)
			b.ReportMetric(ms(p50), key+"-p50-ms")
			t.note("%s: CLI p50 %.1f ms, slowest %.1f ms, %d failed of %d (%d lines shown); store call p50 %.1f ms",
				c.name, ms(p50), ms(worst), failures, tries, shown, ms(percentile(call, 50)))
			limit := 200.0
			if c.name == "status" {
				limit = 40
			}
			t.atMost(fmt.Sprintf("`runnerd %s` with %d runs stored, slowest of %d (ms)", c.name, n, tries), ms(worst), limit)
			if failures > 0 {
				t.note("TARGET %s never fails: %d of %d failed  MISSED", c.name, failures, tries)
			}
		}
		t.print()
	}
}

// client runs a `runnerd` client command against the devstack.
func (e *env) client(args ...string) (string, error) {
	args = append(args, "--mongo-uri", e.stack.MongoURI, "--nats-url", e.stack.NATSURL)
	cmd := exec.Command(runnerdBin(e.b), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RUNNERD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// seedMixed inserts n runs in bulk, straight into the runs collection as
// an older store holds them: one in 50 failed, the rest succeeded, one
// step each.
func (e *env) seedMixed(n int) {
	e.b.Helper()
	ctx := context.Background()
	wf, err := workflow.Parse([]byte(trueWorkflow), "seed.yaml")
	if err != nil {
		e.b.Fatal(err)
	}
	t := time.Now().UTC().Add(-24 * time.Hour).Truncate(time.Millisecond)
	const batch = 1000
	runs := make([]any, 0, batch)
	for i := range n {
		id := fmt.Sprintf("mix-%06d", i)
		at := t.Add(time.Duration(i) * time.Second)
		status, reason, step := runnerd.StatusSucceeded, runnerd.ReasonCompleted, runnerd.StepSucceeded
		if i%50 == 7 {
			status, reason, step = runnerd.StatusFailed, runnerd.ReasonStepFailed, runnerd.StepFailed
		}
		runs = append(runs, &store.Run{
			ID: id, TenantID: "t", Workflow: wf, Status: status, Reason: reason,
			Attempt: 1, Epoch: uint64(i + 1), RunnerID: "seed", EventSeq: 4,
			Steps: runnerd.StepStates{"a": {Status: step, Attempts: 1, StartedAt: at, FinishedAt: at,
				LogKey: blob.StepLogKey(id, 1, "a")}},
			CreatedAt: at, UpdatedAt: at, StartedAt: at, FinishedAt: at,
		})
		if len(runs) == batch || i == n-1 {
			if _, err := e.runs.InsertMany(ctx, runs); err != nil {
				e.b.Fatal(err)
			}
			runs = runs[:0]
		}
	}
}
