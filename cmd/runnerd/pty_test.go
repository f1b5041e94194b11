package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/internal/testbin"
	"github.com/runnerd/runnerd/internal/testutil"
)

// submit --wait --logs on a terminal: while no runner is there it says the
// run is queued and where; once a runner takes it, the step's output shows
// up live (before the step ends: the step waits for the test to have seen
// it), prefixed by the step and in colour; then the run's end, exit 0.
func TestSubmitWaitOnATerminal(t *testing.T) {
	e := startEnv(t) // no runner yet: the run stays queued
	gateDir := t.TempDir()
	gate := filepath.Join(gateDir, "go")
	wf := writeFile(t, "live.yaml", "name: live\nsteps:\n  - id: talk\n    shell: |\n      echo first line\n      while [ ! -e "+gate+" ]; do sleep 0.05; done\n      echo second line\n")
	cmd := exec.Command(testbin.MustPath(t, "runnerd"), "submit", wf, "--id", "pty-1", "--wait", "--logs")
	cmd.Env = append(os.Environ(), "TERM=xterm", "NO_COLOR=")
	tty, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); tty.Close() })
	out := &testutil.SyncBuffer{}
	go func() { _, _ = io.Copy(out, tty) }()

	testutil.Eventually(t, 30*time.Second, func() bool { return strings.Contains(out.String(), "queued: next in the queue") },
		"no queued line on the terminal:\n%q", out.String)
	e.startServe("--sandbox-ro", gateDir)
	testutil.Eventually(t, 30*time.Second, func() bool { return strings.Contains(out.String(), "talk |\x1b[0m first line") },
		"the step's output does not show while it runs:\n%q", out.String)
	if strings.Contains(out.String(), "second line") || strings.Contains(out.String(), "ok     talk") {
		t.Fatalf("the step ended before the test let it:\n%q", out.String())
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("submit --wait did not end:\n%q", out.String())
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return strings.Contains(out.String(), "run pty-1 succeeded") },
		"no end of the run on the terminal:\n%q", out.String)
	s := out.String()
	for _, want := range []string{"talk |\x1b[0m second line", "\x1b[32mok    \x1b[0m", "\r\x1b[K"} { // colour, the redrawn status line
		if !strings.Contains(s, want) {
			t.Errorf("the terminal lacks %q:\n%q", want, s)
		}
	}
	if code := cmd.ProcessState.ExitCode(); code != cli.ExitOK {
		t.Errorf("exit %d, want 0:\n%q", code, s)
	}
}
