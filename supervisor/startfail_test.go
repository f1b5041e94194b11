package supervisor

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/store"
)

// A runexec that cannot be started (here: a program that exits before the
// go-plugin handshake, as a broken or mismatched binary does) is the runner's fault, not the run's: the run goes back to queued with
// executor_start_failed, its message is naked with a delay, and no attempt
// of its crash budget is spent. A healthy runner then runs it.
func TestExecutorStartFailedNaksAndSpendsNoAttempt(t *testing.T) {
	e := newEnv(t, nil)
	broken := filepath.Join(t.TempDir(), "runexec")
	if err := os.WriteFile(broken, []byte("#!/bin/sh\necho 'not runexec' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := e.config("startfail")
	cfg.RunexecPath = broken
	cfg.MaxAttempts = 1 // one counted crash would fail the run
	r := e.serve(cfg)
	e.submit("sf1", `steps: [{id: a, shell: "echo ok"}]`, nil)

	naks := func() float64 { return promtest.ToFloat64(r.sup.m.deliveries.WithLabelValues(actNakDelay.String())) }
	testutil.Eventually(t, 30*time.Second, func() bool { return naks() >= 3 },
		"want 3 delayed naks of the run\nlogs:\n%s", e.logs.String)
	run := e.waitRun("sf1", 10*time.Second, "queued with executor_start_failed", func(r *store.Run) bool {
		return r.Status == runnerd.StatusQueued && r.Reason == runnerd.ReasonExecutorStartFailed
	})
	if run.Crashes != 0 {
		t.Fatalf("crashes %d after start failures, want 0", run.Crashes)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	e.serve(e.config("startok"))
	run = e.waitStatus("sf1", runnerd.StatusSucceeded, 30*time.Second)
	if run.Crashes != 0 || run.Reason != runnerd.ReasonCompleted {
		t.Fatalf("crashes %d reason %s, want 0, completed", run.Crashes, run.Reason)
	}
	e.waitQueueEmpty(10 * time.Second)
}
