package supervisor

import (
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/runnerd/runnerd"
	tu "github.com/runnerd/runnerd/internal/testutil"
)

// TestPanicInAnAttemptLeaksNothing: a supervisor bug that panics while a
// run's child runs is contained to that delivery: the child is killed, the
// spare's place is refilled, the slot is given back, the delivery is
// redelivered, and the run then succeeds on this runner.
func TestPanicInAnAttemptLeaksNothing(t *testing.T) {
	e := newEnv(t, nil)
	cfg := e.config("panics")
	cfg.Concurrency, cfg.Prestart = 1, 1
	sup, err := New(cfg, e.q, e.st, e.blobs)
	if err != nil {
		t.Fatal(err)
	}
	var (
		once     sync.Once
		panicked = make(chan int, 1) // the pid of the child the panic left
	)
	sup.childHook = func(a *attempt) {
		if a.runID != "panic1" {
			return
		}
		once.Do(func() {
			panicked <- a.currentChild().Pid()
			panic("injected supervisor bug")
		})
	}
	r := e.run(sup, cfg)
	waitSpares(t, r, 1)

	e.submit("panic1", `steps: [{id: a, run: ["true"]}]`, nil)
	var pid int
	select {
	case pid = <-panicked:
	case <-time.After(30 * time.Second):
		t.Fatal("the injected panic never ran")
	}
	run := e.waitStatus("panic1", runnerd.StatusSucceeded, 60*time.Second)
	if run.Attempt < 2 {
		t.Errorf("run succeeded at attempt %d, want a later attempt than the one that panicked", run.Attempt)
	}
	tu.Eventually(t, 5*time.Second, func() bool {
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	}, "runexec %d of the attempt that panicked is still there", pid)
	if n := testutil.ToFloat64(sup.m.deliveries.WithLabelValues(actNakDelay.String())); n < 1 {
		t.Errorf("runnerd_deliveries_total{action=%q} = %v, want the panicked delivery counted", actNakDelay, n)
	}
	// The spare's place came back, and the one slot serves the next run.
	waitSpares(t, r, 1)
	e.submit("panic2", `steps: [{id: a, run: ["true"]}]`, nil)
	e.waitStatus("panic2", runnerd.StatusSucceeded, 30*time.Second)
}
