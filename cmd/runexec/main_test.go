package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/internal/testutil"
)

// binary is the runexec under test: $RUNNERD_BIN/runexec (set by the
// Makefile), else built once here.
var binary string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		if dir := os.Getenv("RUNNERD_BIN"); dir != "" {
			binary = filepath.Join(dir, "runexec")
			return m.Run()
		}
		tmp, err := os.MkdirTemp("", "runexec-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(tmp)
		binary = filepath.Join(tmp, "runexec")
		out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build runexec: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}())
}

type result struct {
	code           int
	stdout, stderr string
}

// runexec runs the binary to completion (bounded, so a hang fails the test
// rather than the whole package).
func runexec(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("runexec %v: %v", args, err)
	}
	return result{cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()}
}

func wantCode(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExamples(t *testing.T) {
	for _, name := range []string{"hello", "fanout", "outputs", "retries"} {
		t.Run(name, func(t *testing.T) {
			r := runexec(t, "run", filepath.Join("..", "..", "examples", name+".yaml"), "--workdir", filepath.Join(t.TempDir(), "w"))
			wantCode(t, r, cli.ExitOK)
			if !strings.Contains(r.stderr, "run succeeded (completed)") {
				t.Fatalf("no summary line:\n%s", r.stderr)
			}
		})
	}
	t.Run("approval", func(t *testing.T) {
		dir := t.TempDir()
		file := filepath.Join("..", "..", "examples", "approval.yaml")
		state := filepath.Join(dir, "state.json")
		r := runexec(t, "run", file, "--state", state)
		wantCode(t, r, cli.ExitPaused)
		if !strings.Contains(r.stderr, `"Deploy 2.0.1 to staging? (answer ok=yes)"`) {
			t.Fatalf("no prompt in output:\n%s", r.stderr)
		}
		// The same command plus an answer; the workdir comes from the state.
		r = runexec(t, "run", file, "--state", state, "--answer", "approve.ok=yes")
		wantCode(t, r, cli.ExitOK)
		sf, err := loadState(state)
		if err != nil {
			t.Fatal(err)
		}
		if got := testutil.CountLines(t, filepath.Join(sf.Workdir, "build.log")); got != 1 {
			t.Fatalf("build ran %d times", got)
		}
		if b, err := os.ReadFile(filepath.Join(sf.Workdir, "deployed.txt")); err != nil || !strings.Contains(string(b), "deploying 2.0.1 to staging") {
			t.Fatalf("deployed.txt: %q %v", b, err)
		}
		os.RemoveAll(sf.Workdir)
		os.RemoveAll(sf.LogDir)
	})
}

func TestPausedRunResumes(t *testing.T) {
	dir := t.TempDir()
	wf := writeFile(t, dir, "wf.yaml", `
steps:
  - id: one
    shell: echo one >> count.one
  - id: two
    needs: [one]
    shell: |
      echo two >> count.two
      echo tag=v9 >> "$RUNEXEC_OUTPUT"
  - id: side
    shell: echo side >> count.side
  - id: gate
    kind: human
    needs: [two]
    prompt: "ship ${{ steps.two.outputs.tag }}?"
  - id: ship
    needs: [gate, side]
    if: steps.gate.answers.go == 'yes'
    shell: echo "ship ${{ steps.two.outputs.tag }} by ${{ steps.gate.answers.who }}" >> count.ship
`)
	work, state := filepath.Join(dir, "work"), filepath.Join(dir, "state.json")
	args := []string{"run", wf, "--workdir", work, "--state", state}
	r := runexec(t, args...)
	wantCode(t, r, cli.ExitPaused)
	if !strings.Contains(r.stderr, `"ship v9?"`) || !strings.Contains(r.stderr, "--answer gate.") {
		t.Fatalf("paused output lacks prompt or hint:\n%s", r.stderr)
	}
	// Still paused without an answer; nothing runs again.
	wantCode(t, runexec(t, args...), cli.ExitPaused)
	r = runexec(t, append(args, "--answer", "gate.go=yes", "--answer", "gate.who=ann")...)
	wantCode(t, r, cli.ExitOK)
	for f, want := range map[string]int{"count.one": 1, "count.two": 1, "count.side": 1, "count.ship": 1} {
		if got := testutil.CountLines(t, filepath.Join(work, f)); got != want {
			t.Errorf("%s has %d lines, want %d", f, got, want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(work, "count.ship")); string(b) != "ship v9 by ann\n" {
		t.Errorf("count.ship = %q", b)
	}
	sf, err := loadState(state)
	if err != nil {
		t.Fatal(err)
	}
	if st := sf.Steps["gate"]; st == nil || st.Status != runnerd.StepSucceeded || st.Answers["who"] != "ann" {
		t.Fatalf("saved gate state = %+v", st)
	}
}

// startJSON starts runexec --json and returns a channel of its events.
func startJSON(t *testing.T, args ...string) (*exec.Cmd, <-chan runnerd.Event) {
	t.Helper()
	cmd := exec.Command(binary, append(args, "--json")...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	events := make(chan runnerd.Event, 1024)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var e runnerd.Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Errorf("bad JSON line %q: %v", sc.Text(), err)
				continue
			}
			events <- e
		}
	}()
	return cmd, events
}

func waitFor(t *testing.T, events <-chan runnerd.Event, match func(runnerd.Event) bool) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatal("event stream ended early")
			}
			if match(e) {
				return
			}
		case <-timeout:
			t.Fatal("timed out waiting for an event")
		}
	}
}

func TestSIGTERMCancels(t *testing.T) {
	dir := t.TempDir()
	bg, escaped, fg := testutil.Marker(), testutil.Marker(), testutil.Marker()
	wf := writeFile(t, dir, "wf.yaml", fmt.Sprintf(`
steps:
  - id: done_first
    run: ["true"]
  - id: long
    needs: [done_first]
    shell: |
      sleep %s &
      setsid sleep %s &
      echo started
      sleep %s
`, bg, escaped, fg))
	state := filepath.Join(dir, "state.json")
	cmd, events := startJSON(t, "run", wf, "--workdir", filepath.Join(dir, "work"), "--state", state)
	waitFor(t, events, func(e runnerd.Event) bool { return e.Type == runnerd.EventLog && e.Step == "long" })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var last runnerd.Event
	for e := range events {
		last = e
	}
	err := cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != cli.ExitCancelled {
		t.Fatalf("exit code %d (%v), want %d", code, err, cli.ExitCancelled)
	}
	if last.Type != runnerd.EventRunFinished || last.Status != string(runnerd.StatusCancelled) {
		t.Fatalf("last event = %+v", last)
	}
	for _, m := range []string{bg, escaped, fg} {
		testutil.NoProcess(t, time.Second, m)
	}
	sf, err := loadState(state)
	if err != nil {
		t.Fatal(err)
	}
	if sf.Steps["done_first"].Status != runnerd.StepSucceeded || sf.Steps["long"].Status != runnerd.StepCancelled {
		t.Fatalf("saved state: done_first=%s long=%s", sf.Steps["done_first"].Status, sf.Steps["long"].Status)
	}
}

func TestFailureExitAndLogTail(t *testing.T) {
	dir := t.TempDir()
	wf := writeFile(t, dir, "wf.yaml", `
steps:
  - id: broken
    shell: |
      i=0
      while [ $i -lt 30 ]; do echo "noise $i"; i=$((i+1)); done
      sleep 0.2 # stdout and stderr are separate pipes: keep their order
      echo "the real problem" >&2
      exit 5
  - id: never
    needs: [broken]
    run: ["true"]
`)
	r := runexec(t, "run", wf, "--workdir", filepath.Join(dir, "work"), "--quiet")
	wantCode(t, r, cli.ExitFailed)
	for _, want := range []string{"FAIL", "exit code 5", "| the real problem", "| noise 29", "skip   never", "run failed (step_failed)"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "| noise 5\n") {
		t.Errorf("more than the last lines printed:\n%s", r.stderr)
	}
}

func TestJSONEvents(t *testing.T) {
	dir := t.TempDir()
	r := runexec(t, "run", filepath.Join("..", "..", "examples", "outputs.yaml"), "--json", "--var", "base=3.3",
		"--workdir", filepath.Join(dir, "work"))
	wantCode(t, r, cli.ExitOK)
	var evs []runnerd.Event
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var e struct {
			RunID   string `json:"run_id"`
			Workdir string `json:"workdir"`
			runnerd.Event
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("stdout line is not an event: %q", line)
		}
		if !strings.HasPrefix(e.RunID, "local-") || e.Workdir != filepath.Join(dir, "work") {
			t.Fatalf("event without its run id and workdir: %q", line)
		}
		evs = append(evs, e.Event)
	}
	if evs[0].Type != runnerd.EventRunStarted || evs[len(evs)-1].Type != runnerd.EventRunFinished {
		t.Fatalf("first %s, last %s", evs[0].Type, evs[len(evs)-1].Type)
	}
	var sawOutput, sawArtifact bool
	for _, e := range evs {
		sawOutput = sawOutput || (e.Type == runnerd.EventOutput && e.Key == "version" && e.Value == "3.3.7")
		sawArtifact = sawArtifact || (e.Type == runnerd.EventArtifact && e.Path == "dist/app-3.3.7.txt")
	}
	if !sawOutput || !sawArtifact {
		t.Fatalf("output seen %v, artifact seen %v:\n%s", sawOutput, sawArtifact, r.stdout)
	}
}

func TestValidateAndUsage(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.yaml", "steps:\n  - id: a\n    needs: [b]\n    run: [\"true\"]\n  - id: b\n    needs: [a]\n    run: [\"true\"]\n")
	cases := []struct {
		args []string
		code int
		out  string // in stdout or stderr
	}{
		{[]string{"validate", filepath.Join("..", "..", "examples", "hello.yaml")}, cli.ExitOK, "ok"},
		{[]string{"validate", bad}, cli.ExitUsage, "cycle"},
		{[]string{"run", bad}, cli.ExitUsage, "cycle"},
		{[]string{"validate", filepath.Join(dir, "missing.yaml")}, cli.ExitUsage, "missing.yaml"},
		{[]string{}, cli.ExitOK, "Usage"},
		{[]string{"frobnicate"}, cli.ExitUsage, "unknown command"},
		{[]string{"--help"}, cli.ExitOK, "3 paused"},
		{[]string{"--version"}, cli.ExitOK, "runexec "},
		{[]string{"run"}, cli.ExitUsage, "exactly one workflow file"},
		{[]string{"run", filepath.Join("..", "..", "examples", "hello.yaml"), "--var", "nokey"}, cli.ExitUsage, "want key=value"},
		{[]string{"run", filepath.Join("..", "..", "examples", "hello.yaml"), "--var", "undeclared=1"}, cli.ExitUsage, "undeclared"},
		{[]string{"run", filepath.Join("..", "..", "examples", "hello.yaml"), "--answer", "greet.ok=yes"}, cli.ExitUsage, "no human step"},
		{[]string{"run", filepath.Join("..", "..", "examples", "hello.yaml"), "--bogus"}, cli.ExitUsage, "bogus"},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), c.args, &stdout, &stderr)
		if code != c.code || !strings.Contains(stdout.String()+stderr.String(), c.out) {
			t.Errorf("runexec %q: exit %d, want %d with %q\nstdout: %s\nstderr: %s", c.args, code, c.code, c.out, stdout.String(), stderr.String())
		}
	}
}

// Without --quiet, runexec run shows each step's output live, every line
// prefixed by its step (parallel steps' lines never mix), and only that on
// stderr: stdout stays empty.
func TestRunShowsStepOutput(t *testing.T) {
	dir := t.TempDir()
	wf := writeFile(t, dir, "wf.yaml", `
steps:
  - id: left
    shell: for i in 1 2 3; do echo "left line $i"; done
  - id: right
    shell: printf 'right part'; echo ' whole'; printf 'no newline'
  - id: after
    needs: [left, right]
    shell: echo "after left and right"; exit 4
`)
	r := runexec(t, "run", wf, "--workdir", filepath.Join(dir, "work"), "--sandbox", "off")
	wantCode(t, r, cli.ExitFailed)
	if r.stdout != "" {
		t.Errorf("stdout is not empty:\n%s", r.stdout)
	}
	lines := strings.Split(r.stderr, "\n")
	for _, want := range []string{"left  | left line 1", "left  | left line 3", "right | right part whole", "right | no newline", "after | after left and right"} {
		if !slices.Contains(lines, want) {
			t.Errorf("stderr lacks the line %q:\n%s", want, r.stderr)
		}
	}
	// The output of a step comes between its start and its end.
	start, out, end := strings.Index(r.stderr, "start  after"), strings.Index(r.stderr, "after | after"), strings.Index(r.stderr, "FAIL   after")
	if start < 0 || out < start || end < out {
		t.Errorf("output of after is not between its start (%d) and end (%d): %d\n%s", start, end, out, r.stderr)
	}
	// The failed step's output was shown live: no tail repeats it.
	if strings.Count(r.stderr, "after left and right") != 1 {
		t.Errorf("the failed step's output is printed more than once:\n%s", r.stderr)
	}
}

// Every runexec command: --help on stdout with exit 0, a bad flag named
// GNU-style on stderr with exit 2, --json as JSON only on stdout (one
// document, or JSON lines for run's events), "-" reading stdin.
func TestEveryCommandConventions(t *testing.T) {
	hello := filepath.Join("..", "..", "examples", "hello.yaml")
	for _, name := range []string{"run", "validate", "version", ""} {
		var out, errb bytes.Buffer
		args := []string{name, "--help"}
		if name == "" {
			args = args[1:]
		}
		if code := Main(context.Background(), args, &out, &errb); code != cli.ExitOK || errb.Len() > 0 || !strings.Contains(out.String(), "Usage:") {
			t.Errorf("runexec %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, out.String(), errb.String())
		}
		out.Reset()
		errb.Reset()
		args = []string{name, "--no-such-flag"}
		if name == "" {
			args = args[1:]
		}
		want := strings.TrimSpace("runexec "+name) + ": unknown flag: --no-such-flag\n"
		if code := Main(context.Background(), args, &out, &errb); code != cli.ExitUsage || out.Len() > 0 || !strings.HasPrefix(errb.String(), want) {
			t.Errorf("runexec %v: exit %d, want %d and %q\nstdout:\n%s\nstderr:\n%s", args, code, cli.ExitUsage, want, out.String(), errb.String())
		}
	}
	isJSON := func(args []string, stdin string, code int) {
		t.Helper()
		cmd := exec.Command(binary, args...)
		cmd.Stdin = strings.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		_ = cmd.Run()
		if cmd.ProcessState.ExitCode() != code {
			t.Errorf("runexec %v: exit %d, want %d\nstderr:\n%s", args, cmd.ProcessState.ExitCode(), code, errb.String())
		}
		dec := json.NewDecoder(&out)
		n := 0
		for dec.More() {
			var v map[string]any
			if err := dec.Decode(&v); err != nil {
				t.Errorf("runexec %v: stdout is not JSON: %v", args, err)
				return
			}
			n++
		}
		if n == 0 {
			t.Errorf("runexec %v: no JSON on stdout", args)
		}
	}
	isJSON([]string{"version", "--json"}, "", cli.ExitOK)
	isJSON([]string{"validate", "--json", hello}, "", cli.ExitOK)
	isJSON([]string{"validate", "--json", "-"}, "steps:\n  - id: a\n    needs: [nope]\n    run: [\"true\"]\n", cli.ExitUsage)
	isJSON([]string{"run", "--json", "-", "--workdir", filepath.Join(t.TempDir(), "w"), "--sandbox", "off"}, "steps:\n  - id: a\n    shell: echo from stdin\n", cli.ExitOK)
	r := runexec(t, "validate", "--json", hello)
	var v struct {
		OK     bool  `json:"ok"`
		Steps  int   `json:"steps"`
		Errors []any `json:"errors"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || !v.OK || v.Steps == 0 || r.stderr != "" || strings.Count(r.stdout, "Usage") > 0 {
		t.Errorf("validate --json: %v %+v\nstdout:\n%s\nstderr:\n%s", err, v, r.stdout, r.stderr)
	}
}

// A bad --sandbox or --step-network exits 2 before anything is created: no
// banner, no workdir in TMPDIR, the problem said once.
func TestBadSandboxFlagCreatesNothing(t *testing.T) {
	wf := writeFile(t, t.TempDir(), "wf.yaml", "steps:\n  - id: a\n    run: [\"true\"]\n")
	for _, args := range [][]string{{"--sandbox", "bogus"}, {"--step-network", "bogus"}} {
		tmp := t.TempDir()
		cmd := exec.Command(binary, append([]string{"run", wf}, args...)...)
		cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		_ = cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != cli.ExitUsage {
			t.Errorf("runexec run %v: exit %d, want %d\n%s", args, code, cli.ExitUsage, stderr.String())
		}
		want := fmt.Sprintf("runexec run: %s %q: want", args[0], args[1])
		if n := strings.Count(stderr.String(), args[0]+" "); n != 1 || !strings.Contains(stderr.String(), want) || strings.Contains(stderr.String(), "workdir") {
			t.Errorf("runexec run %v: stderr %q, want %q once and no run banner", args, stderr.String(), want)
		}
		if left, _ := os.ReadDir(tmp); len(left) != 0 {
			t.Errorf("runexec run %v left %v in TMPDIR", args, left)
		}
	}
}
