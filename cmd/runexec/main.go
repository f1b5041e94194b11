// Command runexec executes one workflow run. On its own it runs a workflow
// on the local machine for debugging (`runexec run`); under runnerd it is the
// isolated child process that executes a run.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/child"
	"github.com/runnerd/runnerd/contain"
)

// Exit codes of `runexec run`, shared with `runnerd submit --wait`.
const (
	ExitSucceeded = 0
	ExitFailed    = 1
	ExitUsage     = 2 // invalid usage or workflow
	ExitPaused    = 3
	ExitCancelled = 4
)

const usage = `runexec executes one workflow run.

Usage:
  runexec run FILE [--var k=v]... [--workdir DIR] [--logdir DIR] [--state FILE]
                   [--answer step.key=v]... [--secret NAME=VALUE]... [--secrets-dir DIR]
                   [--json] [--sandbox MODE]
                   [--sandbox-ro PATH]... [--sandbox-rw PATH]... [--step-network N]
  runexec validate FILE
  runexec --help

run       runs the workflow on this machine and prints one line per step.
          --var k=v          override a declared var (repeatable)
          --workdir DIR      the steps' working directory (created if missing);
                             default: the one saved in --state, else a new
                             temporary directory (printed)
          --logdir DIR       per-step logs (<step>.log) and output files;
                             default: DIR.logs next to the workdir
          --state FILE       saved step state (and run id, workdir): read at
                             start if it exists, rewritten after every step;
                             the same command plus --answer continues a
                             paused or interrupted run
          --answer s.k=v     answer k of human step s (repeatable)
          --secret N=V       a secret steps declare (secrets: [N]); masked as
                             *** in all output (repeatable)
          --secrets-dir DIR  secrets as files DIR/NAME
          --json             print one JSON event per line on stdout
          --sandbox MODE     auto (default: every layer this machine allows,
                             as runnerd serve), required or off; in the
                             sandbox steps get HOME DIR.home, TMPDIR DIR.tmp
          --sandbox-ro PATH  a path steps may read and execute (repeatable)
          --sandbox-rw PATH  a path steps may read and write (repeatable)
          --step-network N   host (default) or none, when the workflow
                             sets no network:
validate  checks a workflow file and prints every problem.

Exit codes:
  0  succeeded
  1  failed (a step failed, or the run deadline passed)
  2  invalid usage or workflow
  3  paused (a human step waits for --answer)
  4  cancelled (SIGINT/SIGTERM)
`

func main() {
	if contain.IsProbe(os.Getenv) {
		os.Exit(contain.RunProbe()) // runnerd finding out what sandbox this machine allows
	}
	// Orphans that escape a step's process group are reparented here, so
	// the executor can find and kill them.
	if err := contain.BecomeSubreaper(); err != nil {
		fmt.Fprintf(os.Stderr, "runexec: warning: cannot become child subreaper: %v\n", err)
	}
	if os.Getenv(envLocalRun) == "1" {
		os.Exit(serveLocalRun()) // the sandboxed child of `runexec run`
	}
	if child.IsChild(os.Getenv) {
		// Started by runnerd: serve the Executor over go-plugin, not the CLI.
		os.Exit(servePlugin())
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Main runs one runexec command and returns its exit code. Cancelling ctx
// cancels the run.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return ExitUsage
	}
	switch args[0] {
	case "run":
		return runCommand(ctx, args[1:], stdout, stderr)
	case "validate":
		return validateCommand(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return ExitSucceeded
	default:
		fmt.Fprintf(stderr, "runexec: unknown command %q\n\n%s", args[0], usage)
		return ExitUsage
	}
}

// exitCode is the exit table of `runexec run`: one code per final status.
func exitCode(s runnerd.Status) int {
	switch s {
	case runnerd.StatusSucceeded:
		return ExitSucceeded
	case runnerd.StatusPaused:
		return ExitPaused
	case runnerd.StatusCancelled:
		return ExitCancelled
	default:
		return ExitFailed
	}
}
