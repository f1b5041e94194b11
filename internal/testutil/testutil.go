// Package testutil is what the test suites share: waiting for a condition,
// finding the processes a test left, a log buffer many goroutines write to,
// and names unique to one test process.
package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/procfs"
)

// pollEvery is how often Eventually and NoProcess look again.
const pollEvery = 25 * time.Millisecond

// Eventually waits until cond returns true, checking every 25 ms, and fails
// the test (t.Fatalf, from the test's goroutine only) if it is still false
// after timeout. The message is format and args; an arg that is a
// func() string (a log buffer's String, say) is called only on failure.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	if !Wait(timeout, cond) {
		t.Fatalf("after %s: "+format, append([]any{timeout}, lazy(args)...)...)
	}
}

// Wait is Eventually without a test: it reports whether cond became true
// within timeout. For goroutines other than the test's, and for conditions
// whose failure the caller words itself.
func Wait(timeout time.Duration, cond func() bool) bool {
	return Poll(pollEvery, timeout, cond)
}

// Poll is Wait checking every interval: for benchmarks, whose figures
// include the time to notice.
func Poll(interval, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
	return true
}

func lazy(args []any) []any {
	out := make([]any, len(args))
	for i, a := range args {
		if f, ok := a.(func() string); ok {
			a = f()
		}
		out[i] = a
	}
	return out
}

// WaitLog waits until found(log()) holds, where log is what a process
// named name wrote so far and exited is closed when it has ended. It fails
// the test (t.Fatalf) with the log's last tailLines lines if the process
// ends first or timeout passes; what says what was awaited.
func WaitLog(t testing.TB, timeout time.Duration, name, what string, tailLines int, log func() string, exited <-chan struct{}, found func(log string) bool) {
	t.Helper()
	gone := false
	ok := Wait(timeout, func() bool {
		select {
		case <-exited:
			gone = true
		default:
		}
		// Read after the exit check: what it wrote before ending counts.
		return found(log()) || gone
	})
	switch {
	case ok && (!gone || found(log())):
		return
	case gone:
		t.Fatalf("%s exited before writing %s:\n%s", name, what, Tail(log(), tailLines))
	default:
		t.Fatalf("%s did not write %s within %s:\n%s", name, what, timeout, Tail(log(), tailLines))
	}
}

// Contains is a WaitLog condition: the log holds s.
func Contains(s string) func(string) bool {
	return func(log string) bool { return strings.Contains(log, s) }
}

// Proc is a live process found by Procs.
type Proc struct {
	PID, PPID int
	Cmdline   string // arguments joined by spaces
	Cwd       string
}

func (p Proc) String() string {
	return fmt.Sprintf("pid %d (ppid %d, cwd %s): %s", p.PID, p.PPID, p.Cwd, p.Cmdline)
}

// Procs lists the live processes, this one aside, whose command line holds
// one of markers or whose working directory is under one (a run dir, a
// test's temp dir). Zombies are not listed: they hold nothing.
func Procs(markers ...string) []Proc {
	all, err := procfs.AllProcs()
	if err != nil {
		return nil
	}
	var out []Proc
	for _, p := range all {
		if p.PID == os.Getpid() {
			continue
		}
		args, err := p.CmdLine()
		if err != nil {
			continue
		}
		cmdline := strings.Join(args, " ")
		cwd, _ := p.Cwd()
		if !matches(cmdline, cwd, markers) {
			continue
		}
		stat, err := p.Stat()
		if err != nil || stat.State == "Z" {
			continue
		}
		out = append(out, Proc{PID: p.PID, PPID: stat.PPID, Cmdline: cmdline, Cwd: cwd})
	}
	return out
}

func matches(cmdline, cwd string, markers []string) bool {
	for _, m := range markers {
		if strings.Contains(cmdline, m) || (cwd != "" && strings.HasPrefix(cwd, m)) {
			return true
		}
	}
	return false
}

// NoProcess waits up to timeout for Procs(markers...) to be empty. If some
// are left it marks the test failed (t.Errorf: the test goes on) with their
// list, and SIGKILLs them so that they do not outlive the test.
func NoProcess(t testing.TB, timeout time.Duration, markers ...string) {
	t.Helper()
	var left []Proc
	if !Wait(timeout, func() bool { left = Procs(markers...); return len(left) == 0 }) {
		lines := make([]string, len(left))
		for i, p := range left {
			lines[i] = p.String()
		}
		t.Errorf("processes left behind after %s:\n%s", timeout, strings.Join(lines, "\n"))
		for _, p := range left {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
	}
}

// SyncBuffer is a bytes.Buffer safe for many writers: the logs of a
// supervisor or a server under test.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Tail is the last n lines of s (a process's output, for a failure
// message), after a line saying how many were left out.
func Tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d lines]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// CountLines counts the lines of a file; a missing file has none.
func CountLines(t testing.TB, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(data, []byte("\n"))
}

var seq atomic.Int64

// UniqueID is prefix made unique to this test process on this machine (the
// same prefix gives the same id): runner ids are locked machine-wide, and
// other test processes run at the same time.
func UniqueID(prefix string) string { return fmt.Sprintf("%s-%d", prefix, os.Getpid()) }

// Marker is SleepMarker(1000): a step that sleeps it outlives any test.
func Marker() string { return SleepMarker(1000) }

// SleepMarker is a number unique to this call in this test process, shaped
// as a sleep duration of a little over seconds ("<seconds>.<pid><seq>"): a
// step that runs `sleep <marker>` can be found in /proc by it.
func SleepMarker(seconds int) string {
	return fmt.Sprintf("%d.%d%03d", seconds, os.Getpid(), seq.Add(1))
}
