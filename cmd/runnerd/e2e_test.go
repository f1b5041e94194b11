package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/internal/testbin"
	"github.com/runnerd/runnerd/internal/testutil"
)

// The client commands against a real `serve` (supervisor and runexec
// children) on the same embedded servers.

func TestMain(m *testing.M) { testbin.Main(m) }

// runexec returns the runexec `make test` built (RUNNERD_BIN), or builds one
// once for the whole test binary.
func runexec(t *testing.T) string { return testbin.MustPath(t, "runexec") }

// startServe runs `runnerd serve` in the test process until the test ends.
func (e *testEnv) startServe(extra ...string) {
	t := e.t
	t.Helper()
	bin := runexec(t)
	e.side = t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &testutil.SyncBuffer{}
	done := make(chan int, 1)
	go func() {
		env := &cmdEnv{stdout: logs, stderr: logs, signals: make(chan os.Signal)}
		done <- run(ctx, env, append([]string{"serve",
			"--runexec", bin, "--run-dir", t.TempDir(), "--runner-id", testutil.UniqueID("cmd-test"),
			"--concurrency", "2", "--log-format", "console", "--log-level", "warn",
			"--metrics-addr", "127.0.0.1:0", "--sandbox-rw", e.side,
		}, extra...))
	}()
	t.Cleanup(func() { // before the stack stops
		cancel()
		select {
		case code := <-done:
			if code != cli.ExitOK {
				t.Errorf("serve exited %d\n%s", code, logs.String())
			}
		case <-time.After(30 * time.Second):
			t.Errorf("serve did not stop\n%s", logs.String())
		}
		if t.Failed() {
			t.Logf("serve log:\n%s", logs.String())
		}
	})
}

func TestEndToEndWithServe(t *testing.T) {
	if testing.Short() {
		t.Skip("starts runexec children")
	}
	e := startEnv(t)
	e.startServe()

	t.Run("succeeds", func(t *testing.T) {
		r := e.mustRun(cli.ExitOK, "submit", "../../examples/hello.yaml", "--var", "who=e2e", "--wait")
		id := strings.TrimSuffix(r.stdout, "\n")
		for _, want := range []string{"start  greet", "ok     greet", "ok     bye", "run " + id + " succeeded (completed)"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("progress lacks %q:\n%s", want, r.stderr)
			}
		}
		if r := e.mustRun(cli.ExitOK, "logs", id, "--step", "greet"); !strings.HasSuffix(r.stdout, "\nhello, e2e\n") {
			t.Errorf("logs of greet from S3 = %q", r.stdout)
		}
	})

	t.Run("fails", func(t *testing.T) {
		file := writeFile(t, "fail.yaml", "name: fail\nsteps:\n  - id: boom\n    shell: |\n      echo first\n      echo oops >&2\n      exit 3\n")
		r := e.mustRun(cli.ExitFailed, "submit", file, "--wait")
		for _, want := range []string{"FAIL   boom", "(exit 3)", "| first", "| oops", "failed (step_failed)"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("progress lacks %q:\n%s", want, r.stderr)
			}
		}
	})

	t.Run("retry re-runs only what failed", func(t *testing.T) {
		side := e.side
		flag := filepath.Join(side, "fixed")
		file := writeFile(t, "flaky.yaml", fmt.Sprintf(`name: flaky
steps:
  - id: first
    shell: echo once >> %[1]s/first.count
  - id: second
    needs: [first]
    shell: test -e %[2]s
`, side, flag))
		e.mustRun(cli.ExitFailed, "submit", file, "--id", "e2e-retry", "--wait")
		if r := e.run("retry", "e2e-approval-none"); r.code == cli.ExitOK {
			t.Errorf("retry of a missing run exited 0")
		}
		if err := os.WriteFile(flag, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		e.mustRun(cli.ExitOK, "retry", "e2e-retry", "--wait")
		if got, _ := os.ReadFile(filepath.Join(side, "first.count")); string(got) != "once\n" {
			t.Errorf("the succeeded step ran again: %q", got)
		}
		r := e.mustRun(cli.ExitConflict, "retry", "e2e-retry")
		if !strings.Contains(r.stderr, "only a failed or cancelled run can be retried") {
			t.Errorf("retry of a succeeded run: %s", r.stderr)
		}
		r = e.mustRun(cli.ExitOK, "status", "e2e-retry", "--json")
		var doc struct {
			Status  string
			History []struct{ Status, Reason string }
		}
		if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
			t.Fatal(err)
		}
		if doc.Status != "succeeded" || len(doc.History) != 1 || doc.History[0].Status != "failed" || doc.History[0].Reason != "step_failed" {
			t.Errorf("status after the retry = %+v", doc)
		}
	})

	t.Run("pauses and resumes", func(t *testing.T) {
		r := e.mustRun(cli.ExitPaused, "submit", "../../examples/approval.yaml", "--id", "e2e-approval", "--wait")
		if !strings.Contains(r.stderr, "continue with: runnerd resume e2e-approval --answer approve.<key>=<value>") {
			t.Errorf("no resume hint:\n%s", r.stderr)
		}
		r = e.mustRun(cli.ExitOK, "resume", "e2e-approval", "--answer", "approve.ok=yes", "--wait")
		if !strings.Contains(r.stderr, "ok     deploy") || strings.Contains(r.stderr, "start  build") {
			t.Errorf("after resume want deploy to run and build not to run again:\n%s", r.stderr)
		}
		r = e.mustRun(cli.ExitOK, "status", "e2e-approval", "--json")
		var doc struct {
			Status string
			Steps  map[string]struct{ Status string }
		}
		if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
			t.Fatal(err)
		}
		if doc.Status != "succeeded" || doc.Steps["deploy"].Status != "succeeded" || doc.Steps["approve"].Status != "succeeded" {
			t.Errorf("status = %+v", doc)
		}
	})

	t.Run("cancelled", func(t *testing.T) {
		file := writeFile(t, "slow.yaml", "name: slow\nsteps:\n  - id: nap\n    run: [\"sleep\", \"60\"]\n")
		done := make(chan result, 1)
		go func() {
			var out, errb bytes.Buffer
			code := Main([]string{"submit", file, "--id", "e2e-cancel", "--wait"}, &out, &errb)
			done <- result{out.String(), errb.String(), code}
		}()
		testutil.Eventually(t, 20*time.Second, func() bool {
			evs, err := e.c.st.Events(ctxT(t), "e2e-cancel", 0, 0)
			return err == nil && len(evs) > 0 && evs[len(evs)-1].Type == runnerd.EventStepStarted
		}, "run never started its step")
		e.mustRun(cli.ExitOK, "cancel", "e2e-cancel")
		select {
		case r := <-done:
			if r.code != cli.ExitCancelled {
				t.Errorf("submit --wait exit %d, want %d\n%s", r.code, cli.ExitCancelled, r.stderr)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("cancelled run did not end")
		}
	})
}
