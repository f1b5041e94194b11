package main

import (
	"strings"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
)

// TestGC: gc --dry-run prints what gc then removes; a paused run stays.
func TestGC(t *testing.T) {
	e := startEnv(t)
	done := e.submitted("gc-done", helloYAML)
	e.claim(done, 1)
	e.finish(done, 1, runnerd.StatusSucceeded, runnerd.ReasonCompleted, nil)
	paused := e.submitted("gc-paused", approvalYAML)
	e.pause(paused, 2)
	time.Sleep(10 * time.Millisecond)

	r := e.mustRun(exitOK, "gc", "--older-than", "5ms", "--dry-run")
	if !strings.Contains(r.stdout, "would remove run gc-done (succeeded") || strings.Contains(r.stdout, "gc-paused") {
		t.Errorf("gc --dry-run printed:\n%s", r.stdout)
	}
	e.get(done) // still there
	r = e.mustRun(exitOK, "gc", "--older-than", "5ms")
	if !strings.Contains(r.stdout, "removed run gc-done (succeeded") || !strings.Contains(r.stderr, "removed 1 runs") {
		t.Errorf("gc printed:\n%s\n%s", r.stdout, r.stderr)
	}
	if r := e.run("status", done); r.code != exitNotFound || !strings.Contains(r.stderr, `no run "gc-done"`) {
		t.Errorf("status of a removed run: exit %d\n%s", r.code, r.stderr)
	}
	e.get(paused)
	e.mustRun(exitUsage, "gc")
}
