package supervisor

import (
	"context"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/store"
)

// TestNoGoroutineOutlivesRun: once Run has returned and Close is done, no
// goroutine the supervisor started (directly, or through the libraries it
// calls: go-plugin, gRPC, the NATS client) is left, after runs that took a
// spare child, waited in a concurrency group, were cancelled and drained.
// Every goroutine has an owner that stops and awaits it.
func TestNoGoroutineOutlivesRun(t *testing.T) {
	e := newEnv(t, nil)
	before := testutil.Goroutines()
	cfg := e.config("leaks")
	cfg.Concurrency, cfg.Prestart = 2, 1
	r := e.serve(cfg)
	waitSpares(t, r, 1)

	group := "concurrency: {group: leaks, limit: 1}\nsteps: [{id: s, shell: sleep 1000.7373}]"
	e.submit("leak-holder", group, nil)
	e.waitStatus("leak-holder", runnerd.StatusRunning, 30*time.Second)
	e.submit("leak-waiter", group, nil)
	e.submit("leak-quick", `steps: [{id: a, run: ["true"]}]`, nil)
	e.waitStatus("leak-quick", runnerd.StatusSucceeded, 30*time.Second)
	if _, err := e.st.RequestCancel(context.Background(), "leak-holder"); err != nil {
		t.Fatal(err)
	}
	if err := e.q.PublishCancel(context.Background(), "leak-holder"); err != nil {
		t.Fatal(err)
	}
	e.waitStatus("leak-holder", runnerd.StatusCancelled, 30*time.Second)
	e.waitRun("leak-waiter", 30*time.Second, "running its step", func(r *store.Run) bool {
		return r.Steps["s"] != nil && r.Steps["s"].Status == runnerd.StepRunning
	})
	if err := r.stop(); err != nil { // drains leak-waiter: republished
		t.Fatal(err)
	}
	if err := r.sup.Close(); err != nil {
		t.Fatal(err)
	}

	testutil.NoGoroutineLeft(t, 5*time.Second, before, "TestNoGoroutineOutlivesRun")
}
