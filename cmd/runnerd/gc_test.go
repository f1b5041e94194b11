package main

import (
	"strings"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/cli"
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

	r := e.mustRun(cli.ExitOK, "gc", "--older-than", "5ms", "--dry-run")
	if !strings.Contains(r.stdout, "would remove run gc-done (succeeded") || strings.Contains(r.stdout, "gc-paused") {
		t.Errorf("gc --dry-run printed:\n%s", r.stdout)
	}
	e.get(done) // still there
	r = e.mustRun(cli.ExitOK, "gc", "--older-than", "5ms")
	if !strings.Contains(r.stdout, "removed run gc-done (succeeded") || !strings.Contains(r.stderr, "removed 1 run finished") {
		t.Errorf("gc printed:\n%s\n%s", r.stdout, r.stderr)
	}
	if r := e.run("status", done); r.code != cli.ExitNotFound || !strings.Contains(r.stderr, `no run "gc-done"`) {
		t.Errorf("status of a removed run: exit %d\n%s", r.code, r.stderr)
	}
	e.get(paused)
	r = e.mustRun(cli.ExitUsage, "gc")
	if !strings.Contains(r.stderr, "want --older-than DURATION or --retention DURATION (RUNNERD_RETENTION)") {
		t.Errorf("gc without a bound: %s", r.stderr)
	}
	e.mustRun(cli.ExitUsage, "gc", "--older-than", "0s")

	// Without --older-than, the bound is the fleet's retention: the
	// variable serve reads, or --retention; --older-than wins.
	again := e.submitted("gc-again", helloYAML)
	e.claim(again, 1)
	e.finish(again, 1, runnerd.StatusSucceeded, runnerd.ReasonCompleted, nil)
	time.Sleep(10 * time.Millisecond)
	r = e.mustRun(cli.ExitOK, "gc", "--dry-run", "--retention", "5ms")
	if !strings.Contains(r.stdout, "would remove run gc-again") {
		t.Errorf("gc --dry-run --retention 5ms printed:\n%s", r.stdout)
	}
	t.Setenv("RUNNERD_RETENTION", "1h")
	r = e.mustRun(cli.ExitOK, "gc", "--dry-run")
	if strings.Contains(r.stdout, "gc-again") || !strings.Contains(r.stderr, "would remove 0 runs") {
		t.Errorf("gc --dry-run with RUNNERD_RETENTION=1h printed:\n%s\n%s", r.stdout, r.stderr)
	}
	r = e.mustRun(cli.ExitOK, "gc", "--older-than", "5ms")
	if !strings.Contains(r.stdout, "removed run gc-again") {
		t.Errorf("gc --older-than 5ms with RUNNERD_RETENTION=1h printed:\n%s", r.stdout)
	}
	t.Setenv("RUNNERD_RETENTION", "5ms")
	e.mustRun(cli.ExitOK, "gc") // nothing left; the variable alone is enough
}
