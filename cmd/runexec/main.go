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

	"github.com/spf13/cobra"

	"github.com/runnerd/runnerd/child"
	"github.com/runnerd/runnerd/contain"
	"github.com/runnerd/runnerd/internal/cli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

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

// Main runs one runexec command and returns its exit code (the table of
// internal/cli, shared with runnerd). Cancelling ctx cancels the run.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := cli.Root(&cobra.Command{
		Use:   "runexec",
		Short: "runexec executes one workflow run on this machine",
		Long: `runexec executes one workflow run on this machine, with no queue and no store:
the executor runnerd runs in each run's child process.

Exit codes (the same as runnerd submit --wait): 0 succeeded, 1 failed (a step
failed, or the run deadline passed), 2 invalid usage or workflow, 3 paused (a
human step waits for --answer), 4 cancelled (SIGINT/SIGTERM).`,
	}, version)
	root.AddCommand(runCmd(stdout, stderr), validateCmd(stdout, stderr), cli.VersionCmd("runexec", version, stdout))
	root.SetContext(ctx)
	return cli.Execute(root, args, stdout, stderr)
}
