package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/internal/testbin"
	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
	"github.com/runnerd/runnerd/workflow"
)

// End-to-end tests with real processes: `runnerd dev` and `runnerd serve`
// are the built binary in a process group of their own, the client commands
// are the built binary too, configured only through RUNNERD_* variables, as
// a user's shell or a pod would run them. Signals are real signals.

// binaries returns the runnerd and runexec binaries: the ones `make test`
// built (RUNNERD_BIN), or ones built once for the test binary.
func binaries(t *testing.T) (runnerdBin, runexecBin string) {
	t.Helper()
	return testbin.MustPath(t, "runnerd"), testbin.MustPath(t, "runexec")
}

// proc is a runnerd process started by a test, in its own process group.
type proc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdout *testutil.SyncBuffer
	stderr *testutil.SyncBuffer
	done   chan struct{} // closed when it exited; code is set then
	code   int
}

// startProc starts bin with args and exactly the environment env. It is
// SIGKILLed (its group) at the end of the test if it is still running.
// Without a TMPDIR in env it gets the test's own (shared by the test's
// processes), so whatever a killed one leaves there goes with the test.
func startProc(t *testing.T, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "TMPDIR=") }) {
		env = append(slices.Clip(env), "TMPDIR="+testTmp(t))
	}
	return startProcAs(t, name, env, nil, bin, args...)
}

var testTmps sync.Map // *testing.T → its processes' TMPDIR

// testTmp is the test's TMPDIR for its processes: short (a go-plugin socket
// path under it must fit in 108 bytes), removed after the test.
func testTmp(t *testing.T) string {
	t.Helper()
	if d, ok := testTmps.Load(t); ok {
		return d.(string)
	}
	d, err := os.MkdirTemp("", "rt-")
	if err != nil {
		t.Fatal(err)
	}
	testTmps.Store(t, d)
	t.Cleanup(func() {
		testTmps.Delete(t)
		_ = os.RemoveAll(d)
	})
	return d
}

// startProcAs is startProc as another user (cred nil: the test's own).
func startProcAs(t *testing.T, name string, env []string, cred *syscall.Credential, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, stdout: &testutil.SyncBuffer{}, stderr: &testutil.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	// A descendant that kept the output pipes open must not hang Wait: it
	// is found by the process scan instead.
	p.cmd.WaitDelay = 10 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		err := p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode() // -1 when killed by a signal
		if err != nil && p.code == 0 {
			p.code = -2 // exited 0, but its output could not be read to the end
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", p.name, testutil.Tail(p.stderr.String(), 200))
		}
	})
	return p
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %s: %v", p.name, err)
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(timeout):
		p.t.Fatalf("%s did not exit within %s\nstderr:\n%s", p.name, timeout, testutil.Tail(p.stderr.String(), 100))
		return 0
	}
}

// stop sends SIGTERM and expects exit 0 within timeout.
func (p *proc) stop(timeout time.Duration) {
	p.t.Helper()
	p.signal(syscall.SIGTERM)
	if code := p.wait(timeout); code != cli.ExitOK {
		p.t.Errorf("%s exited %d after SIGTERM, want 0\nstderr:\n%s", p.name, code, testutil.Tail(p.stderr.String(), 100))
	}
}

// waitLog waits until the process has written s to stderr.
func (p *proc) waitLog(s string, timeout time.Duration) {
	p.t.Helper()
	testutil.WaitLog(p.t, timeout, p.name, strconv.Quote(s), 100, p.stderr.String, p.done, testutil.Contains(s))
}

// baseEnv is the test's environment without any RUNNERD_* variable, plus vars.
// The ops endpoints take any free port: several processes run at once.
func baseEnv(vars map[string]string) []string {
	env := []string{"RUNNERD_METRICS_ADDR=127.0.0.1:0"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RUNNERD_") {
			env = append(env, kv)
		}
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}

// clientProc runs runnerd client commands as processes against one set of servers.
type clientProc struct {
	t   *testing.T
	bin string
	env []string
}

func (c *clientProc) run(args ...string) result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = c.env
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := cmd.ProcessState.ExitCode()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		c.t.Fatalf("runnerd %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

func (c *clientProc) mustRun(want int, args ...string) result {
	c.t.Helper()
	return wantCode(c.t, c.run(args...), want, args)
}

// submit submits a workflow file and returns the run id (stdout's first line).
func (c *clientProc) submit(want int, args ...string) (string, result) {
	c.t.Helper()
	r := c.mustRun(want, append([]string{"submit"}, args...)...)
	id, _, _ := strings.Cut(r.stdout, "\n")
	if id == "" {
		c.t.Fatalf("submit printed no run id\nstderr:\n%s", r.stderr)
	}
	return id, r
}

// statusDoc is what the tests read of `status --json`.
type statusDoc struct {
	ID       string                        `json:"id"`
	Status   runnerd.Status                `json:"status"`
	Reason   runnerd.Reason                `json:"reason"`
	Attempt  int                           `json:"attempt"`
	RunnerID string                        `json:"runner_id"`
	Steps    map[string]*runnerd.StepState `json:"steps"`
}

func (c *clientProc) status(id string) statusDoc {
	c.t.Helper()
	r := c.mustRun(cli.ExitOK, "status", id, "--json")
	var doc statusDoc
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		c.t.Fatalf("status %s --json: %v\n%s", id, err, r.stdout)
	}
	if doc.ID != id {
		c.t.Fatalf("status %s --json: id %q", id, doc.ID)
	}
	return doc
}

// waitStatus polls `status --json` until ok says so.
func (c *clientProc) waitStatus(id, what string, timeout time.Duration, ok func(statusDoc) bool) statusDoc {
	c.t.Helper()
	var doc statusDoc
	testutil.Eventually(c.t, timeout, func() bool { doc = c.status(id); return ok(doc) },
		"run %s not %s: %s", id, what, func() string { return fmt.Sprintf("%s/%s attempt %d", doc.Status, doc.Reason, doc.Attempt) })
	return doc
}

// checkRun checks a run's status, reason, attempt and that every step has
// the given status.
func checkRun(t *testing.T, doc statusDoc, status runnerd.Status, reason runnerd.Reason, attempt int, steps map[string]runnerd.StepStatus) {
	t.Helper()
	if doc.Status != status || doc.Reason != reason || doc.Attempt != attempt {
		t.Errorf("run %s: %s/%s attempt %d, want %s/%s attempt %d", doc.ID, doc.Status, doc.Reason, doc.Attempt, status, reason, attempt)
	}
	for step, want := range steps {
		if st := doc.Steps[step]; st == nil || st.Status != want {
			t.Errorf("run %s: step %s = %+v, want status %s", doc.ID, step, st, want)
		}
	}
	if len(doc.Steps) != len(steps) {
		t.Errorf("run %s: %d steps, want %d: %v", doc.ID, len(doc.Steps), len(steps), doc.Steps)
	}
}

// eventTypes returns the run's event types in order, from the store.
func eventTypes(t *testing.T, st *store.Store, id string) []string {
	t.Helper()
	evs, err := st.Events(ctxT(t), id, 0, 0)
	if err != nil {
		t.Fatalf("events of %s: %v", id, err)
	}
	var types []string
	for _, e := range evs {
		types = append(types, string(e.Type))
	}
	return types
}

// checkEvents checks the run's event stream from the store: it ends with
// run_finished, and steps (if set) are the steps started, in some order,
// counted with repeats.
func checkEvents(t *testing.T, st *store.Store, id string, finished bool, started map[string]int) {
	t.Helper()
	evs, err := st.Events(ctxT(t), id, 0, 0)
	if err != nil {
		t.Fatalf("events of %s: %v", id, err)
	}
	if len(evs) == 0 || evs[0].Type != runnerd.EventRunStarted {
		t.Errorf("run %s: events do not start with run_started: %v", id, eventTypes(t, st, id))
		return
	}
	if last := evs[len(evs)-1].Type; finished && last != runnerd.EventRunFinished {
		t.Errorf("run %s: last event %s, want run_finished: %v", id, last, eventTypes(t, st, id))
	}
	got := map[string]int{}
	for i, e := range evs {
		if e.Seq != int64(i+1) {
			t.Errorf("run %s: event %d has seq %d", id, i, e.Seq)
			break
		}
		if e.Type == runnerd.EventStepStarted {
			got[e.Step]++
		}
	}
	for step, n := range started {
		if got[step] != n {
			t.Errorf("run %s: step %s started %d times, want %d (all: %v)", id, step, got[step], n, got)
		}
	}
}

// readS3 reads an object, failing the test if it is missing.
func readS3(t *testing.T, blobs *blob.Store, key string) string {
	t.Helper()
	rc, err := blobs.Get(ctxT(t), key)
	if err != nil {
		t.Errorf("S3 %s: %v", key, err)
		return ""
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Errorf("S3 %s: %v", key, err)
	}
	return string(data)
}

var devVarLine = regexp.MustCompile(`(RUNNERD_[A-Z0-9_]+)=(\S+)`)

// devVars reads the RUNNERD_* variables `runnerd dev` printed.
func devVars(stderr string) map[string]string {
	vars := map[string]string{}
	for _, m := range devVarLine.FindAllStringSubmatch(stderr, -1) {
		if _, seen := vars[m[1]]; !seen {
			vars[m[1]] = m[2]
		}
	}
	return vars
}

// connectVars connects the test to the servers the variables name.
func connectVars(t *testing.T, vars map[string]string) *conns {
	t.Helper()
	cfg := clientConfig{
		NATSURL: vars["RUNNERD_NATS_URL"], MongoURI: vars["RUNNERD_MONGO_URI"], MongoDB: store.DefaultDatabase,
		S3Endpoint: vars["RUNNERD_S3_ENDPOINT"], S3Bucket: vars["RUNNERD_S3_BUCKET"], S3Region: "us-east-1",
		S3AccessKey: vars["RUNNERD_S3_ACCESS_KEY"], S3SecretKey: vars["RUNNERD_S3_SECRET_KEY"], S3PathStyle: true,
		Tenant: "default", Timeout: 10 * time.Second,
	}
	// As a client: the test must not set the queue up again with its own
	// defaults.
	c, err := connectClient(context.Background(), cfg, needMongo|needNATS, "e2e-test")
	if err != nil {
		t.Fatalf("connect to %v: %v", vars, err)
	}
	t.Cleanup(c.Close)
	if _, err := c.blob(context.Background()); err != nil {
		t.Fatalf("connect to S3 of %v: %v", vars, err)
	}
	return c
}

func example(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestProcessEndToEnd runs `runnerd dev` as a process and drives it with
// the client commands as processes: every example, a failing, a paused then
// resumed, a cancelled and a crashing (first attempt only) workflow; then
// SIGTERM stops dev with exit 0 and leaves no process behind.
func TestProcessEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts runnerd dev, runexec children and client processes")
	}
	bin, runexecBin := binaries(t)
	root := t.TempDir()
	side := filepath.Join(root, "side") // outside every run dir
	if err := os.Mkdir(side, 0o755); err != nil {
		t.Fatal(err)
	}
	const grace = 20 * time.Second
	dev := startProc(t, "runnerd dev", baseEnv(nil), bin, "dev",
		"--data", filepath.Join(root, "data"), "--nats-port", "0", "--mongo-port", "0", "--s3-port", "0",
		"--log-format", "json", "--runexec", runexecBin, "--run-dir", filepath.Join(root, "runs"),
		"--runner-id", testutil.UniqueID("e2e-dev"), "--metrics-addr", "127.0.0.1:0", "--ui-addr", "127.0.0.1:0", "--concurrency", "2", "--grace", grace.String(), "--kill-grace", "2s",
		"--sandbox-rw", side)
	dev.waitLog(`"message":"serving"`, 60*time.Second)
	vars := devVars(dev.stderr.String())
	for _, k := range []string{"RUNNERD_NATS_URL", "RUNNERD_MONGO_URI", "RUNNERD_S3_ENDPOINT", "RUNNERD_S3_BUCKET", "RUNNERD_S3_ACCESS_KEY", "RUNNERD_S3_SECRET_KEY"} {
		if vars[k] == "" {
			t.Fatalf("dev did not print %s:\n%s", k, dev.stderr.String())
		}
	}
	for _, k := range []string{"RUNNERD_NATS_URL", "RUNNERD_MONGO_URI", "RUNNERD_S3_ENDPOINT"} {
		if strings.HasSuffix(strings.TrimSuffix(vars[k], "/"), ":0") {
			t.Fatalf("dev printed %s=%s, not the port it listens on", k, vars[k])
		}
	}
	c := &clientProc{t: t, bin: bin, env: baseEnv(vars)}
	conn := connectVars(t, vars)
	// Unique sleep arguments, to find the steps' processes.
	napMarker, crashMarker := testutil.Marker(), testutil.SleepMarker(60)

	examples := []struct {
		file  string
		steps []string
		logs  []string // in `runnerd logs ID`, read from S3
		check func(t *testing.T, id string, doc statusDoc)
	}{
		{"hello.yaml", []string{"greet", "bye"}, []string{"hello, world", "is done in"}, nil},
		{"fanout.yaml", []string{"prepare", "part_a", "part_b", "part_c", "part_d", "merge"}, []string{"alpha\nbravo\ncharlie\ndelta"},
			func(t *testing.T, id string, doc statusDoc) {
				if got := readS3(t, conn.blobs, blob.ArtifactKey(id, "merge", "merged.txt")); got != "alpha\nbravo\ncharlie\ndelta\n" {
					t.Errorf("artifact merged.txt = %q", got)
				}
				if got := doc.Steps["merge"].Outputs["lines"]; got != "4" {
					t.Errorf("output lines = %q", got)
				}
			}},
		{"outputs.yaml", []string{"version", "build", "report"}, []string{"built dist/app-1.4.7.txt from commit c0ffee"},
			func(t *testing.T, id string, doc statusDoc) {
				if got := readS3(t, conn.blobs, blob.ArtifactKey(id, "build", "dist/app-1.4.7.txt")); got != "app 1.4.7\n" {
					t.Errorf("artifact dist/app-1.4.7.txt = %q", got)
				}
			}},
		{"retries.yaml", []string{"flaky", "after"}, []string{"failing on purpose", "flaky passed"},
			func(t *testing.T, id string, doc statusDoc) {
				if n := doc.Steps["flaky"].Attempts; n != 2 {
					t.Errorf("flaky attempts = %d, want 2", n)
				}
			}},
	}
	for _, ex := range examples {
		t.Run(strings.TrimSuffix(ex.file, ".yaml"), func(t *testing.T) {
			c := &clientProc{t: t, bin: bin, env: c.env}
			id, r := c.submit(cli.ExitOK, example(t, ex.file), "--wait")
			if !strings.Contains(r.stderr, "run "+id+" succeeded (completed)") {
				t.Errorf("progress lacks the end:\n%s", r.stderr)
			}
			doc := c.status(id)
			want := map[string]runnerd.StepStatus{}
			for _, s := range ex.steps {
				want[s] = runnerd.StepSucceeded
				if st := doc.Steps[s]; st != nil && st.LogKey != blob.StepLogKey(id, 1, s) {
					t.Errorf("step %s log key %q", s, st.LogKey)
				}
			}
			checkRun(t, doc, runnerd.StatusSucceeded, runnerd.ReasonCompleted, 1, want)
			logs := c.mustRun(cli.ExitOK, "logs", id).stdout
			for _, s := range append(ex.logs, ex.steps...) {
				if !strings.Contains(logs, s) {
					t.Errorf("runnerd logs %s lacks %q:\n%s", id, s, logs)
				}
			}
			started := map[string]int{}
			for _, s := range ex.steps {
				started[s] = 1
				if st := doc.Steps[s]; st != nil && st.Attempts > 1 {
					started[s] = st.Attempts // a step_started per try of a retried step
				}
			}
			checkEvents(t, conn.st, id, true, started)
			if ex.check != nil {
				ex.check(t, id, doc)
			}
		})
	}

	t.Run("fails", func(t *testing.T) {
		c := &clientProc{t: t, bin: bin, env: c.env}
		file := writeFile(t, "fail.yaml", "name: fail\nsteps:\n  - id: ok\n    shell: echo fine\n  - id: boom\n    needs: [ok]\n    shell: |\n      echo about to fail\n      exit 3\n  - id: never\n    needs: [boom]\n    shell: echo never\n")
		id, r := c.submit(cli.ExitFailed, file, "--wait")
		if !strings.Contains(r.stderr, "failed (step_failed)") {
			t.Errorf("progress lacks the end:\n%s", r.stderr)
		}
		doc := c.status(id)
		checkRun(t, doc, runnerd.StatusFailed, runnerd.ReasonStepFailed, 1, map[string]runnerd.StepStatus{
			"ok": runnerd.StepSucceeded, "boom": runnerd.StepFailed, "never": runnerd.StepSkipped,
		})
		if st := doc.Steps["boom"]; st != nil && st.ExitCode != 3 {
			t.Errorf("boom exit code %d, want 3", st.ExitCode)
		}
		if logs := c.mustRun(cli.ExitOK, "logs", id, "--step", "boom").stdout; !strings.Contains(logs, "about to fail") {
			t.Errorf("logs of boom: %q", logs)
		}
		checkEvents(t, conn.st, id, true, map[string]int{"ok": 1, "boom": 1, "never": 0})
	})

	t.Run("paused and resumed", func(t *testing.T) {
		c := &clientProc{t: t, bin: bin, env: c.env}
		id, _ := c.submit(cli.ExitPaused, example(t, "approval.yaml"), "--id", "e2e-approval", "--wait")
		checkRun(t, c.status(id), runnerd.StatusPaused, runnerd.ReasonPaused, 1, map[string]runnerd.StepStatus{
			"build": runnerd.StepSucceeded, "approve": runnerd.StepWaiting, "deploy": runnerd.StepPending,
		})
		r := c.mustRun(cli.ExitOK, "resume", id, "--answer", "approve.ok=yes", "--wait")
		if !strings.Contains(r.stderr, "succeeded (completed)") {
			t.Errorf("resume progress lacks the end:\n%s", r.stderr)
		}
		doc := c.status(id)
		checkRun(t, doc, runnerd.StatusSucceeded, runnerd.ReasonCompleted, 2, map[string]runnerd.StepStatus{
			"build": runnerd.StepSucceeded, "approve": runnerd.StepSucceeded, "deploy": runnerd.StepSucceeded,
		})
		if got := doc.Steps["approve"].Answers["ok"]; got != "yes" {
			t.Errorf("approve answers %v", doc.Steps["approve"].Answers)
		}
		if logs := c.mustRun(cli.ExitOK, "logs", id, "--step", "deploy").stdout; !strings.Contains(logs, "deploying 2.0.1 to staging") {
			t.Errorf("logs of deploy: %q", logs)
		}
		checkEvents(t, conn.st, id, true, map[string]int{"build": 1, "deploy": 1})
	})

	t.Run("cancelled", func(t *testing.T) {
		c := &clientProc{t: t, bin: bin, env: c.env}
		file := writeFile(t, "slow.yaml", fmt.Sprintf("name: slow\nsteps:\n  - id: nap\n    shell: sleep %[1]s & sleep %[1]s\n", napMarker))
		id, _ := c.submit(cli.ExitOK, file)
		c.waitStatus(id, "running its step", 60*time.Second, func(d statusDoc) bool {
			return d.Steps["nap"] != nil && d.Steps["nap"].Status == runnerd.StepRunning
		})
		c.mustRun(cli.ExitOK, "cancel", id)
		doc := c.waitStatus(id, "cancelled", 60*time.Second, func(d statusDoc) bool { return d.Status.Terminal() })
		checkRun(t, doc, runnerd.StatusCancelled, runnerd.ReasonCancelled, 1, map[string]runnerd.StepStatus{"nap": runnerd.StepCancelled})
		checkEvents(t, conn.st, id, false, map[string]int{"nap": 1})
		testutil.NoProcess(t, 10*time.Second, napMarker)
	})

	t.Run("crash on the first attempt", func(t *testing.T) {
		c := &clientProc{t: t, bin: bin, env: c.env}
		first, marker := filepath.Join(side, "first.count"), filepath.Join(side, "crashed")
		// The step crashes its runexec (its parent, the init of the run's PID
		// namespace: SIGABRT, since it gets no SIGKILL from a step) on the
		// first attempt only, after a pause: what runexec had not streamed yet when it
		// died (first's success, crash's start) would rightly not count,
		// and first would run again.
		file := writeFile(t, "crash.yaml", fmt.Sprintf(`name: crash
steps:
  - id: first
    shell: echo ran >> %[1]s
  - id: crash
    needs: [first]
    shell: |
      if [ ! -e %[2]s ]; then touch %[2]s; sleep 2; kill -ABRT $PPID; sleep %[3]s; fi
      echo survived
`, first, marker, crashMarker))
		id, _ := c.submit(cli.ExitOK, file, "--wait")
		doc := c.status(id)
		checkRun(t, doc, runnerd.StatusSucceeded, runnerd.ReasonCompleted, 2, map[string]runnerd.StepStatus{
			"first": runnerd.StepSucceeded, "crash": runnerd.StepSucceeded,
		})
		if n := testutil.CountLines(t, first); n != 1 {
			t.Errorf("step first ran %d times, want 1", n)
		}
		if st := doc.Steps["crash"]; st != nil && st.LogKey != blob.StepLogKey(id, 2, "crash") {
			t.Errorf("crash log key %q, want attempt 2's", st.LogKey)
		}
		if logs := c.mustRun(cli.ExitOK, "logs", id, "--step", "crash").stdout; !strings.Contains(logs, "survived") {
			t.Errorf("logs of crash: %q", logs)
		}
		if r, err := conn.st.Get(ctxT(t), id); err != nil || r.Crashes != 1 {
			t.Errorf("run %s: %v crashes (%v), want 1: the first attempt's", id, r.Crashes, err)
		}
		if n := counter(t, dev, "runnerd_child_exits_total", "reason", string(runnerd.ReasonChildCrashed)); n < 1 {
			t.Errorf("dev's runnerd_child_exits_total{reason=%q} is %v, want the crash counted", runnerd.ReasonChildCrashed, n)
		}
		checkEvents(t, conn.st, id, true, map[string]int{"first": 1, "crash": 2})
		testutil.NoProcess(t, 10*time.Second, crashMarker)
	})

	waitStreamEmpty(t, conn, 30*time.Second)
	checkOps(t, dev)
	// SIGTERM: dev drains (nothing runs now), stops its servers, exits 0.
	dev.stop(grace + 30*time.Second)
	// A stopped process serves no metrics: its last log line is the record.
	if !strings.Contains(dev.stderr.String(), `"message":"stopped"`) {
		t.Errorf("dev did not log its stop")
	}
	noErrorLogged(t, dev)
	testutil.NoProcess(t, 10*time.Second, root, napMarker, crashMarker)
}

// checkOps reads the process's /healthz, /readyz and /metrics (on the
// address it logged): healthy, ready, and the metrics are served.
func checkOps(t *testing.T, p *proc) {
	t.Helper()
	addr := opsAddr(p)
	if addr == "" {
		t.Errorf("%s logged no ops address", p.name)
		return
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		req, _ := http.NewRequestWithContext(ctxT(t), http.MethodGet, "http://"+addr+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("%s %s: %v", p.name, path, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s %s: %s\n%s", p.name, path, resp.Status, body)
		}
		if path == "/metrics" && !bytes.Contains(body, []byte("runnerd_build_info")) {
			t.Errorf("%s /metrics lacks runnerd_build_info", p.name)
		}
	}
}

// opsAddr is the address of the ops endpoints p logged ("" if none).
func opsAddr(p *proc) string {
	var addr string
	for _, line := range strings.Split(p.stderr.String(), "\n") {
		var l struct{ Addr, Message string }
		if json.Unmarshal([]byte(line), &l) == nil && strings.HasPrefix(l.Message, "serving /metrics") {
			addr = l.Addr
		}
	}
	return addr
}

// counter is the counter name{label="value"} on p's /metrics (0 if the
// series is not there yet).
func counter(t *testing.T, p *proc, name, label, value string) float64 {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(scrape(opsAddr(p))))
	if err != nil {
		t.Fatalf("%s /metrics: %v", p.name, err)
	}
	for _, m := range families[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// noErrorLogged fails on error-level lines in a process's JSON log: runs
// that succeed, fail, pause, crash or are cancelled are all expected.
func noErrorLogged(t *testing.T, p *proc) {
	t.Helper()
	var errs []string
	for _, line := range strings.Split(p.stderr.String(), "\n") {
		if strings.Contains(line, `"level":"error"`) {
			errs = append(errs, line)
		}
	}
	if len(errs) > 0 {
		t.Errorf("%s logged %d errors:\n%s", p.name, len(errs), testutil.Tail(strings.Join(errs, "\n"), 20))
	}
}

// TestProcessServeSIGTERMMidRun sends SIGTERM to a `runnerd serve` process
// while a run's second step sleeps: serve exits 0, the run is queued with
// reason runner_shutdown, and another serve process resumes it without
// running its first step again.
func TestProcessServeSIGTERMMidRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts runnerd serve processes and runexec children")
	}
	bin, runexecBin := binaries(t)
	e := startEnv(t) // servers in the test process; RUNNERD_* set for them
	vars := map[string]string{}
	for _, k := range []string{"RUNNERD_NATS_URL", "RUNNERD_MONGO_URI", "RUNNERD_S3_ENDPOINT", "RUNNERD_S3_BUCKET",
		"RUNNERD_S3_REGION", "RUNNERD_S3_ACCESS_KEY", "RUNNERD_S3_SECRET_KEY", "RUNNERD_TENANT"} {
		vars[k] = os.Getenv(k)
	}
	root, side := t.TempDir(), t.TempDir() // side: outside every run dir
	c := &clientProc{t: t, bin: bin, env: baseEnv(vars)}
	serve := func(id string) *proc {
		p := startProc(t, "runnerd serve "+id, baseEnv(vars), bin, "serve",
			"--runexec", runexecBin, "--run-dir", filepath.Join(root, "runs"), "--runner-id", id, "--metrics-addr", "127.0.0.1:0",
			"--log-format", "json", "--grace", "30s", "--kill-grace", "2s", "--sandbox-rw", side)
		p.waitLog(`"message":"serving"`, 60*time.Second)
		return p
	}

	first, marker := filepath.Join(side, "first.count"), filepath.Join(side, "slept")
	sleepMarker := testutil.Marker()
	file := writeFile(t, "twostep.yaml", fmt.Sprintf(`name: twostep
steps:
  - id: first
    shell: echo ran >> %[1]s
  - id: second
    needs: [first]
    shell: |
      if [ ! -e %[2]s ]; then touch %[2]s; sleep %[3]s; fi
      echo second done
`, first, marker, sleepMarker))

	a := serve(testutil.UniqueID("e2e-a"))
	id, _ := c.submit(cli.ExitOK, file)
	c.waitStatus(id, "running its second step", 60*time.Second, func(d statusDoc) bool {
		return d.Steps["second"] != nil && d.Steps["second"].Status == runnerd.StepRunning
	})
	a.stop(60 * time.Second)
	doc := c.status(id)
	if doc.Status != runnerd.StatusQueued || doc.Reason != runnerd.ReasonRunnerShutdown || doc.Attempt != 1 {
		t.Fatalf("after SIGTERM: %s/%s attempt %d, want queued/runner_shutdown attempt 1", doc.Status, doc.Reason, doc.Attempt)
	}
	if st := doc.Steps["first"]; st == nil || st.Status != runnerd.StepSucceeded {
		t.Fatalf("after SIGTERM: step first %+v", st)
	}
	if st := doc.Steps["second"]; st == nil || st.Status == runnerd.StepSucceeded || st.Status == runnerd.StepRunning {
		t.Errorf("after SIGTERM: step second %+v, want it saved as interrupted", st)
	}
	testutil.NoProcess(t, 10*time.Second, sleepMarker, filepath.Join(root, "runs"))

	b := serve(testutil.UniqueID("e2e-b"))
	doc = c.waitStatus(id, "finished", 90*time.Second, func(d statusDoc) bool { return d.Status.Terminal() })
	checkRun(t, doc, runnerd.StatusSucceeded, runnerd.ReasonCompleted, 2, map[string]runnerd.StepStatus{
		"first": runnerd.StepSucceeded, "second": runnerd.StepSucceeded,
	})
	if n := testutil.CountLines(t, first); n != 1 {
		t.Errorf("step first ran %d times, want 1", n)
	}
	if st := doc.Steps["first"]; st.Attempts != 1 || st.LogKey != blob.StepLogKey(id, 1, "first") {
		t.Errorf("step first: %d attempts, log %s; want 1 and attempt 1's", st.Attempts, st.LogKey)
	}
	if logs := c.mustRun(cli.ExitOK, "logs", id, "--step", "second").stdout; !strings.Contains(logs, "second done") {
		t.Errorf("logs of second: %q", logs)
	}
	checkEvents(t, e.c.st, id, true, map[string]int{"first": 1, "second": 2})
	waitStreamEmpty(t, e.c, 30*time.Second) // the old message acked, the republished one too
	b.stop(60 * time.Second)
	noErrorLogged(t, a)
	noErrorLogged(t, b)
	testutil.NoProcess(t, 10*time.Second, root, sleepMarker)
}

// TestProcessTwoServesDrainRuns has two `runnerd serve` processes drain 200
// one-step runs from one stack: every run ends succeeded, each exactly once
// (one terminal "run attempt done" line in the two processes' logs), and both
// processes did some.
func TestProcessTwoServesDrainRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts runnerd serve processes and 200 runexec children")
	}
	const runs = 200
	bin, runexecBin := binaries(t)
	e := startEnv(t)
	vars := map[string]string{}
	for _, k := range []string{"RUNNERD_NATS_URL", "RUNNERD_MONGO_URI", "RUNNERD_S3_ENDPOINT", "RUNNERD_S3_BUCKET",
		"RUNNERD_S3_REGION", "RUNNERD_S3_ACCESS_KEY", "RUNNERD_S3_SECRET_KEY"} {
		vars[k] = os.Getenv(k)
	}
	root := t.TempDir()
	var serves []*proc
	for _, id := range []string{testutil.UniqueID("drain-a"), testutil.UniqueID("drain-b")} {
		p := startProc(t, "runnerd serve "+id, baseEnv(vars), bin, "serve",
			"--runexec", runexecBin, "--run-dir", filepath.Join(root, "runs"), "--runner-id", id, "--metrics-addr", "127.0.0.1:0",
			"--concurrency", "2", "--log-format", "json", "--grace", "30s")
		serves = append(serves, p)
	}
	for _, p := range serves {
		p.waitLog(`"message":"serving"`, 60*time.Second)
	}

	wf, err := workflow.Parse([]byte("name: tiny\nsteps:\n  - id: t\n    run: [\"true\"]\n"), "tiny.yaml")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ids := make([]string, runs)
	for i := range ids {
		ids[i] = fmt.Sprintf("drain-%03d", i)
		r := &store.Run{ID: ids[i], TenantID: "acme", Workflow: wf}
		if err := e.c.st.Create(ctxT(t), r); err != nil {
			t.Fatal(err)
		}
		msg := &queue.Message{V: queue.Version, RunID: r.ID, TenantID: r.TenantID, Workflow: wf, PublishedAt: time.Now().UTC()}
		if err := e.c.q.Publish(ctxT(t), msg, r.Generation, nil); err != nil {
			t.Fatal(err)
		}
	}
	published := time.Since(start)

	// Done when the two logs name every run as terminal.
	var done map[string]int
	testutil.Eventually(t, 5*time.Minute, func() bool {
		done = map[string]int{}
		for _, p := range serves {
			for id, n := range terminalDone(t, p.stderr.String()) {
				done[id] += n
			}
		}
		return len(done) >= runs
	}, "%s of %d runs terminal", func() string { return strconv.Itoa(len(done)) }, runs)
	drained := time.Since(start)
	waitStreamEmpty(t, e.c, 30*time.Second)
	for _, p := range serves {
		p.signal(syscall.SIGTERM)
	}
	for _, p := range serves {
		if code := p.wait(60 * time.Second); code != cli.ExitOK {
			t.Errorf("%s exited %d after SIGTERM", p.name, code)
		}
	}

	total := map[string]int{}
	for _, p := range serves {
		noErrorLogged(t, p)
		mine := terminalDone(t, p.stderr.String())
		if len(mine) == 0 {
			t.Errorf("%s finished no run", p.name)
		}
		t.Logf("%s finished %d runs", p.name, len(mine))
		for id, n := range mine {
			total[id] += n
		}
	}
	for _, id := range ids {
		if total[id] != 1 {
			t.Errorf("run %s: %d terminal attempts logged, want 1", id, total[id])
		}
		r, err := e.c.st.Get(ctxT(t), id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != runnerd.StatusSucceeded || r.Reason != runnerd.ReasonCompleted || r.Attempt != 1 {
			t.Errorf("run %s: %s/%s attempt %d", id, r.Status, r.Reason, r.Attempt)
		}
	}
	if len(total) != runs {
		t.Errorf("%d runs logged terminal, want %d", len(total), runs)
	}
	t.Logf("%d runs: published in %s, all terminal after %s", runs, published.Round(time.Millisecond), drained.Round(time.Millisecond))
	testutil.NoProcess(t, 10*time.Second, root)
}

// waitStreamEmpty waits until the runs stream holds no message (work-queue
// retention: a message leaves it when acked or termed).
func waitStreamEmpty(t *testing.T, c *conns, timeout time.Duration) {
	t.Helper()
	var msgs uint64
	var err error
	if !testutil.Wait(timeout, func() bool {
		var s jetstream.Stream
		if s, err = c.js.Stream(ctxT(t), queue.DefaultConfig().Stream); err != nil {
			return false
		}
		var info *jetstream.StreamInfo
		if info, err = s.Info(ctxT(t)); err != nil {
			return false
		}
		msgs = info.State.Msgs
		return msgs == 0
	}) {
		t.Errorf("runs stream not empty after %s: %d messages (%v)", timeout, msgs, err)
	}
}

// terminalDone counts, per run id, the "run attempt done" lines of a JSON
// log with a terminal status.
func terminalDone(t *testing.T, log string) map[string]int {
	t.Helper()
	out := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte(`"run attempt done"`)) {
			continue
		}
		var l struct {
			Message string         `json:"message"`
			RunID   string         `json:"run_id"`
			Status  runnerd.Status `json:"status"`
		}
		if err := json.Unmarshal(line, &l); err != nil {
			continue // a line cut by the poll: read again on the next
		}
		if l.Message == "run attempt done" && l.Status.Terminal() {
			out[l.RunID]++
		}
	}
	return out
}
