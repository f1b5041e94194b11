package supervisor

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/contain"
	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
	"github.com/runnerd/runnerd/workflow"
)

func TestSucceededRunIsAckedWithEventsAndLogs(t *testing.T) {
	e := newEnv(t, nil)
	e.serve(e.config("r1"))
	e.submit("ok1", `
steps:
  - id: hello
    shell: echo "hello ${{ vars.who }}"; echo "v=42" >> "$RUNEXEC_OUTPUT"
  - id: after
    needs: [hello]
    run: ["echo", "got ${{ steps.hello.outputs.v }}"]
vars: {who: world}
`, map[string]string{"who": "runnerd"})

	run := e.waitStatus("ok1", runnerd.StatusSucceeded, 30*time.Second)
	if run.Reason != runnerd.ReasonCompleted || run.Attempt != 1 {
		t.Fatalf("reason %s attempt %d, want completed 1", run.Reason, run.Attempt)
	}
	if got := run.Steps["hello"].Outputs["v"]; got != "42" {
		t.Fatalf("output v = %q", got)
	}
	e.waitQueueEmpty(10 * time.Second)

	events, err := e.st.Events(context.Background(), "ok1", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, ev := range events {
		types = append(types, string(ev.Type))
	}
	joined := strings.Join(types, ",")
	if !strings.HasPrefix(joined, "run_started") || !strings.HasSuffix(joined, "run_finished") {
		t.Fatalf("events: %s", joined)
	}
	if got := readBlob(t, e.blobs, blob.StepLogKey("ok1", 1, "after")); !strings.Contains(got, "got 42") {
		t.Fatalf("log of step after in S3: %q", got)
	}
	if got := readBlob(t, e.blobs, blob.StepLogKey("ok1", 1, "hello")); !strings.Contains(got, "hello runnerd") {
		t.Fatalf("log of step hello in S3: %q", got)
	}
	if run.Steps["after"].LogKey != blob.StepLogKey("ok1", 1, "after") {
		t.Fatalf("log key %q", run.Steps["after"].LogKey)
	}
}

func TestStepFailedFailsTheRun(t *testing.T) {
	e := newEnv(t, nil)
	e.serve(e.config("r1"))
	e.submit("bad1", `
steps:
  - id: boom
    shell: echo "about to fail" >&2; exit 3
`, nil)
	run := e.waitStatus("bad1", runnerd.StatusFailed, 30*time.Second)
	if run.Reason != runnerd.ReasonStepFailed || run.Steps["boom"].ExitCode != 3 {
		t.Fatalf("reason %s exit %d", run.Reason, run.Steps["boom"].ExitCode)
	}
	e.waitQueueEmpty(10 * time.Second)
}

func TestPausedRunResumesWithoutRerunningSucceededSteps(t *testing.T) {
	e := newEnv(t, nil)
	e.serve(e.config("r1"))
	side := e.sideFile("build.count")
	e.submit("hum1", fmt.Sprintf(`
steps:
  - id: build
    shell: echo built >> %s
  - id: approve
    needs: [build]
    kind: human
    prompt: "Ship it?"
  - id: deploy
    needs: [approve]
    if: ${{ steps.approve.answers.ok == 'yes' }}
    shell: echo deployed
`, side), nil)
	run := e.waitStatus("hum1", runnerd.StatusPaused, 30*time.Second)
	if run.Steps["approve"].Status != runnerd.StepWaiting || run.Steps["approve"].Prompt != "Ship it?" {
		t.Fatalf("approve step: %+v", run.Steps["approve"])
	}
	e.waitQueueEmpty(10 * time.Second)

	answers := map[string]map[string]string{"approve": {"ok": "yes"}}
	resumed, err := e.st.Resume(context.Background(), "hum1", answers)
	if err != nil {
		t.Fatal(err)
	}
	e.publish(&queue.Message{V: queue.Version, RunID: "hum1", TenantID: "t", Workflow: resumed.Workflow,
		Resume: &queue.Resume{Answers: answers}}, resumed.Generation)
	run = e.waitStatus("hum1", runnerd.StatusSucceeded, 30*time.Second)
	if run.Steps["deploy"].Status != runnerd.StepSucceeded {
		t.Fatalf("deploy: %+v", run.Steps["deploy"])
	}
	if n := testutil.CountLines(t, side); n != 1 {
		t.Fatalf("build ran %d times, want 1", n)
	}
}

func TestCancelStopsARunningRun(t *testing.T) {
	e := newEnv(t, nil)
	e.serve(e.config("r1"))
	e.submit("can1", `
steps:
  - id: long
    shell: sleep 1000.4242 & sleep 1000.4242
`, nil)
	e.waitRun("can1", 30*time.Second, "running its step", func(r *store.Run) bool {
		return r.Steps["long"] != nil && r.Steps["long"].Status == runnerd.StepRunning
	})
	if _, err := e.st.RequestCancel(context.Background(), "can1"); err != nil {
		t.Fatal(err)
	}
	if err := e.q.PublishCancel(context.Background(), "can1"); err != nil {
		t.Fatal(err)
	}
	run := e.waitStatus("can1", runnerd.StatusCancelled, 30*time.Second)
	if run.Reason != runnerd.ReasonCancelled {
		t.Fatalf("reason %s", run.Reason)
	}
	e.waitQueueEmpty(10 * time.Second)
	testutil.NoProcess(t, 5*time.Second, "1000.4242")
}

func TestRunDeadlineFailsWithTimeout(t *testing.T) {
	e := newEnv(t, nil)
	e.serve(e.config("r1"))
	e.submit("slow1", `
timeout: 1s
steps:
  - id: long
    shell: sleep 1000.4343
`, nil)
	run := e.waitStatus("slow1", runnerd.StatusFailed, 30*time.Second)
	if run.Reason != runnerd.ReasonTimeout {
		t.Fatalf("reason %s", run.Reason)
	}
	testutil.NoProcess(t, 5*time.Second, "1000.4343")
}

func TestChildCrashIsRetriedWithoutRerunningSucceededSteps(t *testing.T) {
	e := newEnv(t, nil)
	cfg := e.config("r1")
	// A Go process aborting prints every goroutine's stack before it dies:
	// on a loaded machine that outlasts the suite's 1 s ping timeout, and the
	// child would be killed as unresponsive before it crashed.
	cfg.PingTimeout = 15 * time.Second
	r := e.serve(cfg)
	first, marker := e.sideFile("first.count"), e.sideFile("crashed")
	// The step crashes its runexec (its parent; as the init of the run's PID
	// namespace it gets no SIGKILL from a step) on the first attempt only.
	e.submit("crash1", fmt.Sprintf(`
steps:
  - id: first
    shell: echo ran >> %[1]s
  - id: crash
    needs: [first]
    shell: |
      if [ ! -e %[2]s ]; then touch %[2]s; kill -ABRT $PPID; sleep 5; fi
      echo survived
`, first, marker), nil)
	run := e.waitStatus("crash1", runnerd.StatusSucceeded, 60*time.Second)
	if run.Attempt != 2 {
		t.Fatalf("attempt %d, want 2", run.Attempt)
	}
	if n := testutil.CountLines(t, first); n != 1 {
		t.Fatalf("step first ran %d times, want 1", n)
	}
	if n := promtest.ToFloat64(r.sup.m.childExits.WithLabelValues(string(runnerd.ReasonChildCrashed))); run.Crashes != 1 || n != 1 {
		t.Fatalf("crashes %d in the run, %v child_crashed exits counted: want 1, 1\nlogs:\n%s", run.Crashes, n, e.logs.String())
	}
}

func TestLastAttemptFailsWithMaxAttemptsExceeded(t *testing.T) {
	e := newEnv(t, nil)
	cfg := e.config("r1")
	cfg.MaxAttempts = 2
	e.serve(cfg)
	e.submit("crash2", `
steps:
  - id: crash
    shell: kill -ABRT $PPID; sleep 5
`, nil)
	run := e.waitStatus("crash2", runnerd.StatusFailed, 60*time.Second)
	if run.Reason != runnerd.ReasonMaxAttemptsExceeded || run.Attempt != 2 || run.Crashes != 2 {
		t.Fatalf("reason %s attempt %d crashes %d; want max_attempts_exceeded, 2, 2", run.Reason, run.Attempt, run.Crashes)
	}
	e.waitQueueEmpty(10 * time.Second)
}

// A runner that dies during a run's last delivery answers nothing, and
// JetStream will not deliver the message again: the max-deliveries advisory
// lets a live runner fail the run and delete the message.
func TestRunnerDeadOnLastDeliveryIsSettledByAnother(t *testing.T) {
	e := newEnv(t, func(c *queue.Config) { c.MaxDeliver = 1; c.AckWait = time.Second })
	e.submit("orphan", "steps: [{id: a, run: [\"true\"]}]", nil)
	ctx := context.Background()

	// The dying runner: fetches, leases and claims the run, then is gone
	// (no ack, no heartbeat, no exit-table row).
	ds, err := e.q.Fetch(ctx, 1, 5*time.Second)
	if err != nil || len(ds) != 1 {
		t.Fatalf("fetch: %d deliveries, %v", len(ds), err)
	}
	if !ds[0].LastAttempt() {
		t.Fatal("the first delivery should be the last with MaxDeliver 1")
	}
	lease, err := e.q.AcquireLease(ctx, "orphan", "dead-runner")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Claim(ctx, "orphan", "dead-runner", lease.Epoch()); err != nil {
		t.Fatal(err)
	}

	r := e.serve(e.config("live"))
	run := e.waitStatus("orphan", runnerd.StatusFailed, 30*time.Second)
	if run.Reason != runnerd.ReasonMaxAttemptsExceeded || run.Epoch <= lease.Epoch() {
		t.Fatalf("reason %s epoch %d (dead runner's %d)", run.Reason, run.Epoch, lease.Epoch())
	}
	e.waitQueueEmpty(10 * time.Second)
	if n := promtest.ToFloat64(r.sup.m.deliveries.WithLabelValues(deliveryDeleteExhausted)); n != 1 {
		t.Fatalf("runnerd_deliveries_total{action=%q} = %v, want 1\nlogs:\n%s", deliveryDeleteExhausted, n, e.logs.String())
	}
}

func TestStoppedChildIsKilledAsUnresponsive(t *testing.T) {
	e := newEnv(t, nil)
	r := e.serve(e.config("r1"))
	marker := e.sideFile("stopped")
	e.submit("stop1", fmt.Sprintf(`
steps:
  - id: freeze
    shell: |
      if [ ! -e %[1]s ]; then touch %[1]s; sleep 1000.4444; fi
      echo thawed
`, marker), nil)
	// A step cannot stop the init of its PID namespace: the test does, from
	// outside, once the step runs.
	e.waitRun("stop1", 30*time.Second, "running its step", func(*store.Run) bool {
		_, err := os.Stat(marker)
		return err == nil
	})
	for _, pid := range children.list() {
		_ = syscall.Kill(pid, syscall.SIGSTOP)
	}
	run := e.waitStatus("stop1", runnerd.StatusSucceeded, 60*time.Second)
	if run.Attempt != 2 {
		t.Fatalf("attempt %d, want 2", run.Attempt)
	}
	if n := promtest.ToFloat64(r.sup.m.childExits.WithLabelValues(string(runnerd.ReasonChildUnresponsive))); run.Crashes != 1 || n != 1 {
		t.Fatalf("crashes %d in the run, %v child_unresponsive exits counted: want 1, 1\nlogs:\n%s", run.Crashes, n, e.logs.String())
	}
	testutil.NoProcess(t, 5*time.Second, "1000.4444")
}

func TestMemoryHogIsChildOOM(t *testing.T) {
	if _, mem, _ := contain.Roots(); mem == "" {
		if v2, _, _ := contain.Roots(); v2 == "" {
			t.Skip("no writable memory cgroup on this machine")
		}
	}
	e := newEnv(t, nil)
	cfg := e.config("r1")
	cfg.MaxAttempts = 2
	cfg.MemoryLimit = 64 << 20
	r := e.serve(cfg)
	// tail keeps a whole line in memory: 512 MiB without a newline.
	e.submit("oom1", `
steps:
  - id: hog
    shell: head -c 536870912 /dev/zero | tail -n 1 > /dev/null
`, nil)
	run := e.waitStatus("oom1", runnerd.StatusFailed, 90*time.Second)
	if run.Reason != runnerd.ReasonMaxAttemptsExceeded {
		t.Fatalf("reason %s", run.Reason)
	}
	if n := promtest.ToFloat64(r.sup.m.childExits.WithLabelValues(string(runnerd.ReasonChildOOM))); run.Crashes != 2 || n != 2 {
		t.Fatalf("crashes %d in the run, %v child_oom exits counted: want 2, 2\nlogs:\n%s", run.Crashes, n, e.logs.String())
	}
}

func TestStolenLeaseKillsTheChildAndWritesNothing(t *testing.T) {
	e := newEnv(t, nil)
	r := e.serve(e.config("r1"))
	e.submit("steal1", `
steps:
  - id: long
    shell: sleep 1000.4545
`, nil)
	e.waitRun("steal1", 30*time.Second, "running its step", func(r *store.Run) bool {
		return r.Steps["long"] != nil && r.Steps["long"].Status == runnerd.StepRunning
	})
	// Another runner takes over, as after an expiry: a new lease (a newer
	// epoch) and a claim with it. It keeps its lease for the whole test.
	ctx := context.Background()
	kv, err := e.js.KeyValue(ctx, e.qcfg.LeaseBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "steal1"); err != nil {
		t.Fatal(err)
	}
	thief, err := e.q.AcquireLease(ctx, "steal1", "thief")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
				_ = thief.Renew(ctx)
			}
		}
	}()
	taken, err := e.st.Claim(ctx, "steal1", "thief", thief.Epoch())
	if err != nil {
		t.Fatal(err)
	}

	testutil.NoProcess(t, 5*time.Second, "1000.4545")
	testutil.Eventually(t, 10*time.Second, func() bool {
		return promtest.ToFloat64(r.sup.m.childExits.WithLabelValues(string(runnerd.ReasonLeaseLost))) == 1
	}, "r1 never gave the run up for lease_lost\nlogs:\n%s", e.logs.String)
	after, err := e.st.Get(ctx, "steal1")
	if err != nil {
		t.Fatal(err)
	}
	if after.Status != runnerd.StatusRunning || after.RunnerID != "thief" || after.Epoch != taken.Epoch ||
		after.EventSeq != taken.EventSeq || after.Steps["long"].Status != runnerd.StepRunning {
		t.Fatalf("the old runner wrote after the takeover: %+v (taken: %+v)", after, taken)
	}
}

func TestRejectedDeliveriesAreTermed(t *testing.T) {
	e := newEnv(t, nil)
	e.serve(e.config("r1"))
	ctx := context.Background()

	// Garbage.
	if _, err := e.js.Publish(ctx, e.qcfg.Subject, []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	// Unknown version.
	if _, err := e.js.Publish(ctx, e.qcfg.Subject, []byte(`{"v":99,"run_id":"x"}`)); err != nil {
		t.Fatal(err)
	}
	// A run that does not exist.
	e.publish(&queue.Message{V: queue.Version, RunID: "ghost", TenantID: "t",
		Workflow: mustWorkflow(t, "steps: [{id: a, run: [\"true\"]}]")}, 1)
	// A run of another tenant: it must stay untouched.
	e.submit("other1", "steps: [{id: a, run: [\"true\"]}]", nil)
	// ... and the real one, published again under a lying tenant id.
	e.waitStatus("other1", runnerd.StatusSucceeded, 30*time.Second)
	if err := e.st.Create(ctx, &store.Run{ID: "tenant1", TenantID: "alice", Workflow: mustWorkflow(t, "steps: [{id: a, run: [\"true\"]}]")}); err != nil {
		t.Fatal(err)
	}
	e.publish(&queue.Message{V: queue.Version, RunID: "tenant1", TenantID: "mallory",
		Workflow: mustWorkflow(t, "steps: [{id: a, run: [\"true\"]}]")}, 1)

	e.waitQueueEmpty(20 * time.Second)
	run, err := e.st.Get(ctx, "tenant1")
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != runnerd.StatusQueued || run.Attempt != 0 {
		t.Fatalf("run of another tenant was touched: %s attempt %d", run.Status, run.Attempt)
	}
	// And the runner still serves good runs.
	e.submit("after1", "steps: [{id: a, run: [\"true\"]}]", nil)
	e.waitStatus("after1", runnerd.StatusSucceeded, 30*time.Second)
}

func TestShutdownRepublishesAndTheNextRunnerResumes(t *testing.T) {
	e := newEnv(t, nil)
	r1 := e.serve(e.config("r1"))
	first := e.sideFile("first.count")
	e.submit("shut1", fmt.Sprintf(`
steps:
  - id: first
    shell: echo ran >> %s
  - id: long
    needs: [first]
    shell: sleep 1000.4646
`, first), nil)
	e.waitRun("shut1", 30*time.Second, "running its long step", func(r *store.Run) bool {
		return r.Steps["long"] != nil && r.Steps["long"].Status == runnerd.StepRunning
	})
	if err := r1.stop(); err != nil {
		t.Fatal(err)
	}
	run := e.waitStatus("shut1", runnerd.StatusQueued, 10*time.Second)
	if run.Reason != runnerd.ReasonRunnerShutdown {
		t.Fatalf("reason %s", run.Reason)
	}
	testutil.NoProcess(t, 5*time.Second, "1000.4646")

	// The next runner takes the republished message and runs the long step
	// again, but not the first one; then the test cancels the run.
	e.serve(e.config("r2"))
	e.waitRun("shut1", 30*time.Second, "re-running its long step", func(r *store.Run) bool {
		return r.Attempt == 2 && r.Steps["long"] != nil && r.Steps["long"].Status == runnerd.StepRunning
	})
	if n := testutil.CountLines(t, first); n != 1 {
		t.Fatalf("step first ran %d times, want 1", n)
	}
	if _, err := e.st.RequestCancel(context.Background(), "shut1"); err != nil {
		t.Fatal(err)
	}
	_ = e.q.PublishCancel(context.Background(), "shut1")
	e.waitStatus("shut1", runnerd.StatusCancelled, 30*time.Second)
}

func mustWorkflow(t *testing.T, y string) *workflow.Workflow {
	t.Helper()
	wf, err := workflow.Parse([]byte(y), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return wf
}

func readBlob(t *testing.T, bl *blob.Store, key string) string {
	t.Helper()
	rc, err := bl.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestStopNowWithoutCancelReturns: StopNow alone (Run's context still live)
// kills the running child, republishes its run and makes Run return; the
// loop fetches nothing after it, so a run submitted then stays queued with
// its message in the stream.
func TestStopNowWithoutCancelReturns(t *testing.T) {
	e := newEnv(t, nil)
	r := e.serve(e.config("stopnow"))
	e.submit("stopnow1", "steps: [{id: long, shell: sleep 1000.5151}]", nil)
	e.waitRun("stopnow1", 30*time.Second, "running its long step", func(r *store.Run) bool {
		return r.Steps["long"] != nil && r.Steps["long"].Status == runnerd.StepRunning
	})
	r.sup.StopNow()
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of StopNow while its context was live")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if run := e.waitStatus("stopnow1", runnerd.StatusQueued, 10*time.Second); run.Reason != runnerd.ReasonRunnerShutdown {
		t.Fatalf("reason %s, want %s", run.Reason, runnerd.ReasonRunnerShutdown)
	}
	testutil.NoProcess(t, 5*time.Second, "1000.5151")

	e.submit("stopnow2", "steps: [{id: a, run: [\"true\"]}]", nil)
	time.Sleep(time.Second) // a loop still fetching would have claimed it by now
	if run, err := e.st.Get(context.Background(), "stopnow2"); err != nil || run.Status != runnerd.StatusQueued || run.Attempt != 0 {
		t.Fatalf("run submitted after StopNow: %+v %v, want queued and never claimed", run, err)
	}
	if n, err := e.q.Pending(context.Background()); err != nil || n != 2 {
		t.Fatalf("messages waiting in the stream: %d %v, want 2 (the republished run and the new one)", n, err)
	}
}
