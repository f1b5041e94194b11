package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/contain"
	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/workflow"
)

func TestMain(m *testing.M) {
	// Like runexec, so escaped grandchildren are reparented to the test
	// process and the executor's sweep can be tested for real.
	if err := contain.BecomeSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, "subreaper:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// harness runs one workflow in a fresh workdir and records its events.
type harness struct {
	t       *testing.T
	workdir string
	logdir  string
	mu      sync.Mutex
	events  []runnerd.Event
	inSink  atomic.Int32
	onEvent func(runnerd.Event)
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	root := t.TempDir()
	h := &harness{t: t, workdir: filepath.Join(root, "work"), logdir: filepath.Join(root, "logs")}
	if err := os.Mkdir(h.workdir, 0o755); err != nil {
		t.Fatal(err)
	}
	return h
}

func parse(t *testing.T, src string) *workflow.Workflow {
	t.Helper()
	w, err := workflow.Parse([]byte(src), t.Name()+".yaml")
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return w
}

func (h *harness) opts(src string) Options {
	return Options{
		RunID:     "run-" + strings.ReplaceAll(h.t.Name(), "/", "-"),
		Workflow:  parse(h.t, src),
		Workdir:   h.workdir,
		LogDir:    h.logdir,
		Env:       os.Environ(),
		KillGrace: 2 * time.Second,
		Sink:      h.sink,
	}
}

func (h *harness) sink(e runnerd.Event) {
	if h.inSink.Add(1) != 1 {
		h.t.Errorf("sink called concurrently")
	}
	defer h.inSink.Add(-1)
	h.mu.Lock()
	h.events = append(h.events, e)
	h.mu.Unlock()
	if h.onEvent != nil {
		h.onEvent(e)
	}
}

func (h *harness) run(ctx context.Context, o Options) Result {
	h.t.Helper()
	res, err := Run(ctx, o)
	if err != nil {
		h.t.Fatalf("Run: %v", err)
	}
	return res
}

func (h *harness) runSrc(src string) Result {
	h.t.Helper()
	return h.run(context.Background(), h.opts(src))
}

func (h *harness) eventsOf(typ runnerd.EventType, step string) []runnerd.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []runnerd.Event
	for _, e := range h.events {
		if e.Type == typ && (step == "" || e.Step == step) {
			out = append(out, e)
		}
	}
	return out
}

func (h *harness) read(name string) string {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(h.workdir, name))
	if err != nil {
		h.t.Fatal(err)
	}
	return string(b)
}

func wantStatus(t *testing.T, res Result, status runnerd.Status, reason runnerd.Reason) {
	t.Helper()
	if res.Status != status || res.Reason != reason {
		t.Fatalf("run = %s/%s (%s), want %s/%s; steps: %s", res.Status, res.Reason, res.Message, status, reason, describeSteps(res.Steps))
	}
}

func wantStep(t *testing.T, res Result, id string, status runnerd.StepStatus, reason runnerd.StepReason) *runnerd.StepState {
	t.Helper()
	st := res.Steps[id]
	if st == nil {
		t.Fatalf("no state for step %s", id)
	}
	if st.Status != status || st.Reason != reason {
		t.Fatalf("step %s = %s/%s, want %s/%s; steps: %s", id, st.Status, st.Reason, status, reason, describeSteps(res.Steps))
	}
	return st
}

func describeSteps(s runnerd.StepStates) string {
	ids := make([]string, 0, len(s))
	for id := range s {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var b strings.Builder
	for _, id := range ids {
		fmt.Fprintf(&b, "%s=%s/%s(exit %d %s) ", id, s[id].Status, s[id].Reason, s[id].ExitCode, s[id].Signal)
	}
	return b.String()
}

func TestMaxParallel(t *testing.T) {
	h := newHarness(t)
	var b strings.Builder
	b.WriteString("max_parallel: 2\nsteps:\n")
	for i := range 5 {
		fmt.Fprintf(&b, "  - id: s%d\n    shell: |\n      date +%%s%%N > $RUNEXEC_STEP.start\n      sleep 0.5\n      date +%%s%%N > $RUNEXEC_STEP.end\n", i)
	}
	res := h.runSrc(b.String())
	wantStatus(t, res, runnerd.StatusSucceeded, runnerd.ReasonCompleted)

	type edge struct {
		at    int64
		delta int
	}
	var edges []edge
	for i := range 5 {
		for _, f := range []struct {
			ext   string
			delta int
		}{{"start", 1}, {"end", -1}} {
			ns, err := strconv.ParseInt(strings.TrimSpace(h.read(fmt.Sprintf("s%d.%s", i, f.ext))), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			edges = append(edges, edge{ns, f.delta})
		}
	}
	// Ends sort before starts at the same instant: touching is not overlap.
	slices.SortFunc(edges, func(a, b edge) int {
		if a.at != b.at {
			return int(a.at - b.at)
		}
		return a.delta - b.delta
	})
	cur, peak := 0, 0
	for _, e := range edges {
		cur += e.delta
		peak = max(peak, cur)
	}
	if peak > 2 {
		t.Fatalf("%d steps overlapped, max_parallel is 2", peak)
	}
	if peak < 2 {
		t.Fatalf("steps never overlapped: max_parallel 2 not used")
	}
}

func TestOutputsFlow(t *testing.T) {
	h := newHarness(t)
	res := h.runSrc(`
vars: {greeting: hello}
steps:
  - id: produce
    shell: |
      echo "version=1.2.3" >> "$RUNEXEC_OUTPUT"
      echo "msg=${{ vars.greeting }} world=round" >> "$RUNEXEC_OUTPUT"
  - id: consume
    needs: [produce]
    env: {VERSION: "${{ steps.produce.outputs.version }}"}
    run: ["sh", "-c", "echo \"$VERSION|$1\" > got.txt", "sh", "${{ steps.produce.outputs.msg }}"]
`)
	wantStatus(t, res, runnerd.StatusSucceeded, runnerd.ReasonCompleted)
	st := wantStep(t, res, "produce", runnerd.StepSucceeded, runnerd.StepReasonCompleted)
	if st.Outputs["version"] != "1.2.3" || st.Outputs["msg"] != "hello world=round" {
		t.Fatalf("outputs = %v", st.Outputs)
	}
	if got := strings.TrimSpace(h.read("got.txt")); got != "1.2.3|hello world=round" {
		t.Fatalf("consume got %q", got)
	}
	if evs := h.eventsOf(runnerd.EventOutput, "produce"); len(evs) != 2 || evs[0].Key != "version" || evs[0].Value != "1.2.3" {
		t.Fatalf("output events = %+v", evs)
	}
}

func TestRetriesThenSuccess(t *testing.T) {
	h := newHarness(t)
	res := h.runSrc(`
steps:
  - id: flaky
    retries: 3
    backoff: 100ms
    shell: |
      n=$(cat count 2>/dev/null || echo 0)
      n=$((n+1))
      echo $n > count
      echo "attempt $RUNEXEC_ATTEMPT" >> attempts
      test $n -ge 2
`)
	wantStatus(t, res, runnerd.StatusSucceeded, runnerd.ReasonCompleted)
	st := wantStep(t, res, "flaky", runnerd.StepSucceeded, runnerd.StepReasonCompleted)
	if st.Attempts != 2 {
		t.Fatalf("attempts = %d, want 2", st.Attempts)
	}
	if got := h.read("attempts"); got != "attempt 1\nattempt 2\n" {
		t.Fatalf("RUNEXEC_ATTEMPT seen: %q", got)
	}
	starts := h.eventsOf(runnerd.EventStepStarted, "flaky")
	if len(starts) != 2 || starts[1].Attempt != 2 || !strings.Contains(starts[1].Message, "exit code 1") {
		t.Fatalf("step_started events = %+v", starts)
	}
	log, _ := os.ReadFile(filepath.Join(h.logdir, "flaky.log"))
	if n := strings.Count(string(log), "[runexec: attempt "); n < 2 {
		t.Fatalf("log has %d attempt markers:\n%s", n, log)
	}
}

func TestRetriesExhausted(t *testing.T) {
	h := newHarness(t)
	res := h.runSrc(`
steps:
  - id: bad
    retries: 1
    backoff: 50ms
    run: ["sh", "-c", "exit 7"]
`)
	wantStatus(t, res, runnerd.StatusFailed, runnerd.ReasonStepFailed)
	st := wantStep(t, res, "bad", runnerd.StepFailed, runnerd.StepReasonExitCode)
	if st.Attempts != 2 || st.ExitCode != 7 {
		t.Fatalf("attempts %d exit %d, want 2 and 7", st.Attempts, st.ExitCode)
	}
}

func TestIfSkip(t *testing.T) {
	h := newHarness(t)
	res := h.runSrc(`
vars: {deploy: "no"}
steps:
  - id: build
    run: ["true"]
  - id: deploy
    needs: [build]
    if: ${{ vars.deploy == 'yes' }}
    run: ["touch", "deployed"]
  - id: notify
    needs: [deploy]
    run: ["touch", "notified"]
  - id: always
    needs: [build]
    if: steps.build.status == 'succeeded'
    run: ["touch", "always"]
`)
	wantStatus(t, res, runnerd.StatusSucceeded, runnerd.ReasonCompleted)
	wantStep(t, res, "deploy", runnerd.StepSkipped, runnerd.StepReasonCondition)
	wantStep(t, res, "notify", runnerd.StepSkipped, runnerd.StepReasonDependency)
	wantStep(t, res, "always", runnerd.StepSucceeded, runnerd.StepReasonCompleted)
	for _, f := range []string{"deployed", "notified"} {
		if _, err := os.Stat(filepath.Join(h.workdir, f)); err == nil {
			t.Fatalf("%s exists: a skipped step ran", f)
		}
	}
}

func TestFailureSkipsDependentsAndStopsStarting(t *testing.T) {
	h := newHarness(t)
	res := h.runSrc(`
steps:
  - id: bad
    shell: sleep 0.2; exit 3
  - id: after_bad
    needs: [bad]
    run: ["touch", "after_bad"]
  - id: slow
    shell: sleep 1; touch slow
  - id: after_slow
    needs: [slow]
    run: ["touch", "after_slow"]
`)
	wantStatus(t, res, runnerd.StatusFailed, runnerd.ReasonStepFailed)
	if st := wantStep(t, res, "bad", runnerd.StepFailed, runnerd.StepReasonExitCode); st.ExitCode != 3 {
		t.Fatalf("exit code %d", st.ExitCode)
	}
	wantStep(t, res, "after_bad", runnerd.StepSkipped, runnerd.StepReasonDependency)
	// Independent work already running finishes; nothing new starts.
	wantStep(t, res, "slow", runnerd.StepSucceeded, runnerd.StepReasonCompleted)
	wantStep(t, res, "after_slow", runnerd.StepPending, "")
	if !strings.Contains(res.Message, "bad") {
		t.Fatalf("message %q does not name the failed step", res.Message)
	}
}

func TestStepTimeoutLeavesNoProcess(t *testing.T) {
	h := newHarness(t)
	bg, fg := testutil.Marker(), testutil.Marker()
	start := time.Now()
	res := h.runSrc(fmt.Sprintf(`
steps:
  - id: hang
    timeout: 1s
    shell: |
      sleep %s &
      sleep %s
`, bg, fg))
	wantStatus(t, res, runnerd.StatusFailed, runnerd.ReasonStepFailed)
	wantStep(t, res, "hang", runnerd.StepFailed, runnerd.StepReasonTimeout)
	testutil.NoProcess(t, time.Second, bg)
	testutil.NoProcess(t, time.Second, fg)
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("run took %s", d)
	}
}

func TestBackgroundChildrenDieWithTheirStep(t *testing.T) {
	h := newHarness(t)
	inGroup, escaped := testutil.Marker(), testutil.Marker()
	res := h.runSrc(fmt.Sprintf(`
steps:
  - id: spawn
    shell: |
      sleep %s &
      setsid sleep %s &
      echo spawned
`, inGroup, escaped))
	wantStatus(t, res, runnerd.StatusSucceeded, runnerd.ReasonCompleted)
	testutil.NoProcess(t, time.Second, inGroup)
	testutil.NoProcess(t, time.Second, escaped)
}

func TestEscalatesToSIGKILL(t *testing.T) {
	h := newHarness(t)
	m := testutil.Marker()
	o := h.opts(fmt.Sprintf(`
steps:
  - id: stubborn
    timeout: 500ms
    shell: |
      trap '' TERM
      sleep %s
`, m))
	o.KillGrace = 300 * time.Millisecond
	res := h.run(context.Background(), o)
	st := wantStep(t, res, "stubborn", runnerd.StepFailed, runnerd.StepReasonTimeout)
	if st.Signal != "SIGKILL" {
		t.Fatalf("signal = %q, want SIGKILL (TERM was ignored)", st.Signal)
	}
	testutil.NoProcess(t, time.Second, m)
}

func TestLogCap(t *testing.T) {
	h := newHarness(t)
	o := h.opts(`
steps:
  - id: chatty
    shell: |
      head -c 200000 /dev/zero | tr '\0' 'x'
      echo tail-line >&2
`)
	o.LogLimit = 1000
	res := h.run(context.Background(), o)
	wantStatus(t, res, runnerd.StatusSucceeded, runnerd.ReasonCompleted)
	log, err := os.ReadFile(filepath.Join(h.logdir, "chatty.log"))
	if err != nil {
		t.Fatal(err)
	}
	if len(log) > 1300 {
		t.Fatalf("log is %d bytes, cap 1000", len(log))
	}
	if !bytes.Contains(log, []byte("[runexec: log truncated at 1000 bytes")) {
		t.Fatalf("no truncation marker in log:\n%s", log)
	}
	if bytes.Contains(log, []byte("tail-line")) {
		t.Fatal("output past the cap was written")
	}
	var text strings.Builder
	for _, e := range h.eventsOf(runnerd.EventLog, "chatty") {
		text.WriteString(e.Text)
	}
	if !strings.Contains(text.String(), "log truncated") || text.Len() > 1200 {
		t.Fatalf("log events: %d bytes, marker present %v", text.Len(), strings.Contains(text.String(), "log truncated"))
	}
}

// Past LogEventLimit the output goes to the log file only: the events stop
// after one marker, the file has everything.
func TestLogEventLimit(t *testing.T) {
	h := newHarness(t)
	o := h.opts(`
steps:
  - id: chatty
    shell: head -c 500000 /dev/zero | tr '\0' 'x'; echo; echo tail-line
`)
	o.LogEventLimit = 50000
	res := h.run(context.Background(), o)
	wantStatus(t, res, runnerd.StatusSucceeded, runnerd.ReasonCompleted)
	log, err := os.ReadFile(filepath.Join(h.logdir, "chatty.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(log, []byte("tail-line")) || len(log) < 500000 {
		t.Fatalf("log file incomplete: %d bytes", len(log))
	}
	var text strings.Builder
	for _, e := range h.eventsOf(runnerd.EventLog, "chatty") {
		text.WriteString(e.Text)
	}
	if text.Len() > 50000+64<<10 || !strings.Contains(text.String(), "in its log file only") || strings.Contains(text.String(), "tail-line") {
		t.Fatalf("log events: %d bytes, marker %v", text.Len(), strings.Contains(text.String(), "in its log file only"))
	}
}

func TestLogEventsCoalesced(t *testing.T) {
	h := newHarness(t)
	res := h.runSrc(`
steps:
  - id: lines
    shell: |
      i=0
      while [ $i -lt 2000 ]; do echo "line $i"; i=$((i+1)); done
      printf 'caf\303\251\n' >&2
`)
	wantStatus(t, res, runnerd.StatusSucceeded, runnerd.ReasonCompleted)
	var stdout, stderr strings.Builder
	evs := h.eventsOf(runnerd.EventLog, "lines")
	for _, e := range evs {
		if e.Stream == "stdout" {
			stdout.WriteString(e.Text)
		} else {
			stderr.WriteString(e.Text)
		}
	}
	if n := strings.Count(stdout.String(), "\n"); n != 2000 {
		t.Fatalf("stdout events carry %d lines, want 2000", n)
	}
	if stderr.String() != "café\n" {
		t.Fatalf("stderr = %q", stderr.String())
	}
	if len(evs) > 200 {
		t.Fatalf("%d log events for 2000 lines: not coalesced", len(evs))
	}
}

func TestArtifacts(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, shell, artifacts string
		ok                     bool
		want                   []string
		msg                    string
	}{
		{"glob and dir", "mkdir -p out/sub real; echo a > out/a.txt; echo b > out/b.txt; echo c > out/sub/c.log; echo d > real/d.log; ln -s ../real out/linked",
			`["out/*.txt", "out/sub", "out/linked"]`, true, []string{"out/a.txt", "out/b.txt", "out/linked/d.log", "out/sub/c.log"}, ""},
		{"symlink in", "echo a > a.txt; ln -s a.txt link.txt", `["link.txt"]`, false, nil, "link.txt is a symbolic link: refused"},
		{"hard link in", "echo a > a.txt; ln a.txt b.txt", `["b.txt"]`, false, nil, "b.txt has 2 hard links: refused"},
		{"hard link out", "ln " + outside + "/secret shadow.txt", `["shadow.txt"]`, false, nil, "shadow.txt has 2 hard links: refused"},
		{"fifo", "mkfifo pipe", `["pipe"]`, false, nil, "pipe is not a regular file"},
		{"symlink out", "ln -s " + outside + "/secret leak", `["leak"]`, false, nil, `"leak"`},
		{"symlinked dir out", "ln -s " + outside + " dir", `["dir"]`, false, nil, "outside the workdir"},
		{"symlink in a dir", "mkdir d; echo x > d/ok; ln -s " + outside + "/secret d/leak", `["d"]`, false, nil, "d/leak"},
		{"missing", "true", `["nothing-*.bin"]`, false, nil, "matched nothing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			res := h.runSrc(fmt.Sprintf("steps:\n  - id: art\n    shell: %q\n    artifacts: %s\n", c.shell, c.artifacts))
			if c.ok {
				st := wantStep(t, res, "art", runnerd.StepSucceeded, runnerd.StepReasonCompleted)
				if !slices.Equal(st.Artifacts, c.want) {
					t.Fatalf("artifacts = %v, want %v", st.Artifacts, c.want)
				}
				if evs := h.eventsOf(runnerd.EventArtifact, "art"); len(evs) != len(c.want) {
					t.Fatalf("artifact events = %+v", evs)
				}
				return
			}
			wantStatus(t, res, runnerd.StatusFailed, runnerd.ReasonStepFailed)
			wantStep(t, res, "art", runnerd.StepFailed, runnerd.StepReasonArtifact)
			fin := h.eventsOf(runnerd.EventStepFinished, "art")
			if len(fin) != 1 || !strings.Contains(fin[0].Message, c.msg) {
				t.Fatalf("step_finished = %+v, want a message with %s", fin, c.msg)
			}
		})
	}
}

func TestRunDeadline(t *testing.T) {
	for _, viaOptions := range []bool{false, true} {
		t.Run(fmt.Sprintf("options=%v", viaOptions), func(t *testing.T) {
			h := newHarness(t)
			m := testutil.Marker()
			src := fmt.Sprintf("steps:\n  - id: quick\n    run: [\"true\"]\n  - id: long\n    needs: [quick]\n    shell: sleep %s\n  - id: later\n    needs: [long]\n    run: [\"true\"]\n", m)
			if !viaOptions {
				src = "timeout: 1s\n" + src
			}
			o := h.opts(src)
			if viaOptions {
				o.Deadline = time.Now().Add(time.Second)
			}
			res := h.run(context.Background(), o)
			wantStatus(t, res, runnerd.StatusFailed, runnerd.ReasonTimeout)
			wantStep(t, res, "quick", runnerd.StepSucceeded, runnerd.StepReasonCompleted)
			wantStep(t, res, "long", runnerd.StepFailed, runnerd.StepReasonTimeout)
			testutil.NoProcess(t, time.Second, m)
		})
	}
}

func TestCancel(t *testing.T) {
	h := newHarness(t)
	m := testutil.Marker()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.onEvent = func(e runnerd.Event) {
		if e.Type == runnerd.EventStepStarted && e.Step == "long" {
			time.AfterFunc(200*time.Millisecond, cancel)
		}
	}
	src := fmt.Sprintf(`
steps:
  - id: first
    shell: echo first >> first.count
  - id: long
    needs: [first]
    shell: test -e resumed || sleep %s
  - id: after
    needs: [long]
    run: ["true"]
`, m)
	res := h.run(ctx, h.opts(src))
	wantStatus(t, res, runnerd.StatusCancelled, runnerd.ReasonCancelled)
	wantStep(t, res, "first", runnerd.StepSucceeded, runnerd.StepReasonCompleted)
	wantStep(t, res, "long", runnerd.StepCancelled, runnerd.StepReasonCancelled)
	wantStep(t, res, "after", runnerd.StepPending, "")
	testutil.NoProcess(t, time.Second, m)
	fin := h.eventsOf(runnerd.EventRunFinished, "")
	if len(fin) != 1 || fin[0].Status != string(runnerd.StatusCancelled) {
		t.Fatalf("run_finished = %+v", fin)
	}

	// Resumed, the interrupted step runs again (attempt 2); the finished
	// one does not.
	if err := os.WriteFile(filepath.Join(h.workdir, "resumed"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	o := h.opts(src)
	o.State = res.Steps
	res = h.run(context.Background(), o)
	wantStatus(t, res, runnerd.StatusSucceeded, runnerd.ReasonCompleted)
	if st := wantStep(t, res, "long", runnerd.StepSucceeded, runnerd.StepReasonCompleted); st.Attempts != 2 {
		t.Fatalf("long attempts = %d, want 2", st.Attempts)
	}
	if got := h.read("first.count"); got != "first\n" {
		t.Fatalf("first ran again: %q", got)
	}
}

// An escaped process holding a step's pipe must not hold the step: the
// readers give up after drainWait.
func TestDrainIsBounded(t *testing.T) {
	lg, err := openStepLog(t.TempDir(), "s", DefaultLogLimit, func(runnerd.Event) {})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.close()
	outR, outW, _ := os.Pipe()
	errR, errW, _ := os.Pipe()
	defer outW.Close() // held open, like an escaped grandchild would
	errW.Close()
	p := &process{stdout: outR, stderr: errR}
	start := time.Now()
	p.drain(lg.pump(outR, errR))
	if d := time.Since(start); d < drainWait || d > drainWait+5*time.Second {
		t.Fatalf("drain took %s, want about %s", d, drainWait)
	}
}

func TestHumanPauseAndResume(t *testing.T) {
	src := `
steps:
  - id: build
    shell: |
      echo built >> build.count
      echo version=7 >> "$RUNEXEC_OUTPUT"
  - id: lint
    run: ["touch", "linted"]
  - id: approve
    kind: human
    needs: [build]
    prompt: "Deploy ${{ steps.build.outputs.version }}?"
  - id: deploy
    needs: [approve]
    if: ${{ steps.approve.answers.ok == 'yes' }}
    shell: echo "deploy ${{ steps.build.outputs.version }}" >> deploy.count
`
	h := newHarness(t)
	res := h.runSrc(src)
	wantStatus(t, res, runnerd.StatusPaused, runnerd.ReasonPaused)
	wantStep(t, res, "lint", runnerd.StepSucceeded, runnerd.StepReasonCompleted)
	if st := wantStep(t, res, "approve", runnerd.StepWaiting, ""); st.Prompt != "Deploy 7?" {
		t.Fatalf("prompt = %q", st.Prompt)
	}
	if p := h.eventsOf(runnerd.EventPaused, "approve"); len(p) != 1 || p[0].Prompt != "Deploy 7?" {
		t.Fatalf("paused events = %+v", p)
	}

	// Resume: same workdir, the saved state and an answer.
	o := h.opts(src)
	o.State = res.Steps
	o.Answers = map[string]map[string]string{"approve": {"ok": "yes"}}
	res2 := h.run(context.Background(), o)
	wantStatus(t, res2, runnerd.StatusSucceeded, runnerd.ReasonCompleted)
	if st := wantStep(t, res2, "approve", runnerd.StepSucceeded, runnerd.StepReasonCompleted); st.Answers["ok"] != "yes" {
		t.Fatalf("answers = %v", st.Answers)
	}
	wantStep(t, res2, "deploy", runnerd.StepSucceeded, runnerd.StepReasonCompleted)
	if got := h.read("build.count"); got != "built\n" {
		t.Fatalf("build ran again: %q", got)
	}
	if got := h.read("deploy.count"); got != "deploy 7\n" {
		t.Fatalf("deploy.count = %q", got)
	}
}

// The supervisor rebuilds step state from the events it stored; that must
// agree with the state the executor returns.
func TestEventsFoldIntoResultState(t *testing.T) {
	h := newHarness(t)
	res := h.runSrc(`
steps:
  - id: a
    retries: 1
    backoff: 10ms
    shell: |
      test -e once || { touch once; exit 1; }
      echo k=v >> "$RUNEXEC_OUTPUT"
      echo x > file.txt
    artifacts: [file.txt]
  - id: b
    needs: [a]
    if: "false"
    run: ["true"]
  - id: c
    run: ["sh", "-c", "exit 2"]
`)
	folded := runnerd.StepStates{}
	h.mu.Lock()
	for _, e := range h.events {
		folded.Apply(e)
	}
	h.mu.Unlock()
	for id, want := range res.Steps {
		got := folded[id]
		if got == nil {
			got = &runnerd.StepState{Status: runnerd.StepPending}
		}
		if got.Status != want.Status || got.Reason != want.Reason || got.Attempts != want.Attempts ||
			got.ExitCode != want.ExitCode || fmt.Sprint(got.Outputs) != fmt.Sprint(want.Outputs) ||
			!slices.Equal(got.Artifacts, want.Artifacts) || len(got.Tries) != len(want.Tries) {
			t.Errorf("step %s: folded %+v, result %+v", id, got, want)
		}
	}
}

func TestUnusableOptions(t *testing.T) {
	if _, err := Run(context.Background(), Options{}); !errors.Is(err, ErrNoWorkflow) {
		t.Fatalf("no workflow: %v", err)
	}
	w := parse(t, "steps:\n  - id: a\n    run: [\"true\"]\n")
	if _, err := Run(context.Background(), Options{Workflow: w, Workdir: "/nonexistent/dir", LogDir: t.TempDir()}); !errors.Is(err, ErrNoWorkdir) {
		t.Fatalf("bad workdir: %v", err)
	}
	bad := &workflow.Workflow{Steps: []workflow.Step{{ID: "a", Run: []string{"true"}, Needs: []string{"zz"}}}}
	if _, err := Run(context.Background(), Options{Workflow: bad, Workdir: t.TempDir(), LogDir: t.TempDir()}); !errors.Is(err, ErrInvalidWorkflow) {
		t.Fatalf("invalid workflow: %v", err)
	}
}

func TestStartError(t *testing.T) {
	h := newHarness(t)
	res := h.runSrc("steps:\n  - id: nope\n    run: [\"no-such-command-xyz\"]\n")
	wantStatus(t, res, runnerd.StatusFailed, runnerd.ReasonStepFailed)
	wantStep(t, res, "nope", runnerd.StepFailed, runnerd.StepReasonStartError)
}
