package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestProcsFindsByCmdlineAndCwdAndSkipsZombies(t *testing.T) {
	m := Marker()
	dir := t.TempDir()
	byArg := exec.Command("sleep", m)
	byCwd := exec.Command("sleep", "1000")
	byCwd.Dir = dir
	for _, c := range []*exec.Cmd{byArg, byCwd} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Process.Kill(); _ = c.Wait() }()
	}
	Eventually(t, 5*time.Second, func() bool { return len(Procs(m)) == 1 && len(Procs(dir)) == 1 },
		"want one process by its argument and one by its cwd, got %v and %v", func() string { return procList(Procs(m)) }, func() string { return procList(Procs(dir)) })
	if p := Procs(m)[0]; p.PID != byArg.Process.Pid || p.PPID != os.Getpid() {
		t.Fatalf("found %v, want pid %d with parent %d", p, byArg.Process.Pid, os.Getpid())
	}
	// Killed but not yet reaped: a zombie, which holds nothing.
	if err := byArg.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 5*time.Second, func() bool { return len(Procs(m)) == 0 }, "a zombie is still listed: %v", func() string { return procList(Procs(m)) })
	if _, err := os.Stat(filepath.Join("/proc", itoa(byArg.Process.Pid))); err != nil {
		t.Fatalf("the killed child was reaped already (%v): the zombie case was not tested", err)
	}
}

func TestWaitGivesUp(t *testing.T) {
	calls := 0
	if Wait(100*time.Millisecond, func() bool { calls++; return false }) {
		t.Fatal("Wait reported true for a condition that never holds")
	}
	if calls < 2 {
		t.Fatalf("cond called %d times in 100 ms, want it polled", calls)
	}
	if !Wait(time.Second, func() bool { return true }) {
		t.Fatal("Wait reported false for a condition that holds")
	}
}

func TestCountLinesOfMissingFileIsZero(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if n := CountLines(t, p); n != 0 {
		t.Fatalf("missing file: %d lines", n)
	}
	if err := os.WriteFile(p, []byte("a\nb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if n := CountLines(t, p); n != 2 {
		t.Fatalf("%d lines, want 2", n)
	}
}

func procList(ps []Proc) string {
	s := ""
	for _, p := range ps {
		s += p.String() + "\n"
	}
	return s
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestWaitLogTakesWhatAnEndedProcessWrote(t *testing.T) {
	exited := make(chan struct{})
	close(exited)
	WaitLog(t, time.Second, "p", `"ready"`, 5, func() string { return "a\nready\n" }, exited, Contains("ready"))
}
