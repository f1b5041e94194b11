// Command runnerd is the runnerd supervisor and its command-line client.
//
//	runnerd serve      consume runs from NATS and execute them (the container entrypoint)
//	runnerd dev        embedded NATS, MongoDB-wire and S3 servers plus serve, in one process
//	runnerd submit     create a run and queue it (--wait follows it to the end)
//	runnerd status     show a run
//	runnerd list       list runs
//	runnerd cancel     cancel a run
//	runnerd logs       print a run's step logs (--follow while it runs)
//	runnerd artifacts  download a run's artifacts
//	runnerd resume     answer a paused run's human steps and queue it again
//	runnerd retry      queue a failed or cancelled run again
//	runnerd version    print the version
package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/runnerd/runnerd/client"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/store"
)

// cmdEnv is what a subcommand gets besides its arguments.
type cmdEnv struct {
	stdout, stderr io.Writer
	// signals delivers SIGINT/SIGTERM after the first (serve uses the
	// second one to skip the shutdown grace).
	signals <-chan os.Signal
}

// commands are runnerd's subcommands, in the order --help lists them; each
// is built by its own file.
var commands = []func(*cmdEnv) *cobra.Command{
	serveCmd, devCmd, submitCmd, statusCmd, listCmd, cancelCmd, logsCmd,
	artifactsCmd, resumeCmd, retryCmd, gcCmd,
	func(env *cmdEnv) *cobra.Command { return cli.VersionCmd("runnerd", version, env.stdout) },
}

func main() {
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}

// Main runs one subcommand and returns the process exit code. The first
// SIGINT/SIGTERM cancels the context; later ones reach env.signals.
func Main(args []string, stdout, stderr io.Writer) int {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	later := make(chan os.Signal, 4)
	// The forwarder stops when the command has returned (sigs is never
	// closed: signal.Stop only stops the delivery).
	done := make(chan struct{})
	var forwarder sync.WaitGroup
	defer forwarder.Wait()
	defer close(done)
	forwarder.Go(func() { forwardSignals(sigs, later, cancel, done) })
	return run(ctx, &cmdEnv{stdout: stdout, stderr: stderr, signals: later}, args)
}

// forwardSignals cancels on the first signal of sigs and hands the later
// ones to later, until done is closed.
func forwardSignals(sigs <-chan os.Signal, later chan<- os.Signal, cancel func(), done <-chan struct{}) {
	select {
	case <-sigs:
	case <-done:
		return
	}
	cancel()
	for {
		select {
		case s := <-sigs:
			select {
			case later <- s:
			case <-done:
				return
			}
		case <-done:
			return
		}
	}
}

// run runs the command args name with env and returns its exit code.
func run(ctx context.Context, env *cmdEnv, args []string) int {
	root := newRoot(env)
	root.SetContext(ctx)
	return cli.Execute(root, args, env.stdout, env.stderr)
}

func newRoot(env *cmdEnv) *cobra.Command {
	root := cli.Root(&cobra.Command{
		Use:   "runnerd",
		Short: "runnerd runs workflow runs from a NATS JetStream queue, each in an isolated runexec child",
		Long: `runnerd runs workflow runs from a NATS JetStream queue, each in an isolated
runexec child, keeping runs in MongoDB and logs and artifacts in S3.

Every connection and server flag also reads a RUNNERD_* variable (shown in
brackets); a flag on the command line wins. Data goes to stdout (--json: JSON
only), everything else to stderr. Exit codes: 0 succeeded, 1 failed, 2 usage,
3 paused, 4 cancelled, 5 not found, 6 conflict, 69 server unreachable,
77 credentials refused, 130 interrupted.`,
	}, version)
	for _, mk := range commands {
		root.AddCommand(mk(env))
	}
	return root
}

// classify gives the client's and the store's refusals their exit codes: a
// bad request is a usage error, a missing run "not found", a run that
// exists or whose status refuses the command a conflict.
func classify(err error) error {
	switch {
	case errors.Is(err, client.ErrInvalid):
		return cli.Usage(err)
	case errors.Is(err, client.ErrUnreachable):
		return cli.Class(cli.ErrUnavailable, err)
	case errors.Is(err, client.ErrNotFound):
		return cli.Class(cli.ErrNotFound, err)
	case errors.Is(err, client.ErrConflict):
		return cli.Class(cli.ErrConflict, err)
	case errors.Is(err, store.ErrNotFound):
		return cli.Class(cli.ErrNotFound, err)
	case errors.Is(err, store.ErrExists), errors.Is(err, store.ErrIllegalTransition), errors.Is(err, store.ErrTerminal):
		return cli.Class(cli.ErrConflict, err)
	}
	return err
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// writeJSON prints one JSON document on w, indented, with & and < as they
// are (shell scripts read better than "\u0026\u0026").
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// jsonLines prints values as JSON lines on w.
func jsonLines(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc
}
