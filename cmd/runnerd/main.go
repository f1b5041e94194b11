// Command runnerd is the runnerd supervisor and its command-line client.
//
//	runnerd serve      consume runs from NATS and execute them (the container entrypoint)
//	runnerd dev        embedded NATS, MongoDB-wire and S3 servers plus serve, in one process
//	runnerd submit     create a run and queue it (--wait follows it to the end)
//	runnerd status     show a run
//	runnerd list       list runs
//	runnerd cancel     cancel a run
//	runnerd logs       print a run's step logs (--follow while it runs)
//	runnerd resume     answer a paused run's human steps and queue it again
//	runnerd version    print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit codes shared with `runexec run` (for submit --wait).
const (
	exitOK        = 0
	exitFailed    = 1
	exitUsage     = 2
	exitPaused    = 3
	exitCancelled = 4
)

type command struct {
	name  string
	about string
	run   func(ctx context.Context, env *cmdEnv, args []string) int
}

// cmdEnv is what a subcommand gets besides its arguments.
type cmdEnv struct {
	stdout, stderr io.Writer
	// signals delivers SIGINT/SIGTERM after the first (serve uses the
	// second one to skip the shutdown grace).
	signals <-chan os.Signal
}

var commands = []command{
	{"serve", "consume runs from NATS and execute them", runServe},
	{"dev", "embedded NATS, MongoDB-wire and S3 servers plus serve, in one process", runDev},
	{"submit", "create a run from a workflow file and queue it", runSubmit},
	{"status", "show a run", runStatus},
	{"list", "list runs, newest first", runList},
	{"cancel", "cancel a run", runCancel},
	{"logs", "print a run's step logs", runLogs},
	{"resume", "answer a paused run's human steps and queue it again", runResume},
	{"retry", "queue a failed or cancelled run again; succeeded steps are not run again", runRetry},
	{"gc", "remove finished runs older than a bound (documents, events, S3 objects)", runGC},
	{"version", "print the version", runVersion},
}

func main() {
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}

// Main runs one subcommand and returns the process exit code. The first
// SIGINT/SIGTERM cancels the context; later ones reach env.signals.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		sigs := make(chan os.Signal, 4)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
		defer signal.Stop(sigs)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		later := make(chan os.Signal, 4)
		go func() {
			<-sigs
			cancel()
			for s := range sigs {
				later <- s
			}
		}()
		return c.run(ctx, &cmdEnv{stdout: stdout, stderr: stderr, signals: later}, args[1:])
	}
	fmt.Fprintf(stderr, "runnerd: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: runnerd <command> [flags] [args]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.about)
	}
	fmt.Fprintln(w, "\nrunnerd <command> --help lists a command's flags and their RUNNERD_* variables.")
}

// parseOrExit parses flags; ok false means return code (help or usage error).
func parseOrExit(f *flags, args []string, stderr io.Writer) (code int, ok bool) {
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			f.help()
			return exitOK, false
		}
		for _, line := range strings.Split(err.Error(), "\n") { // one per bad value
			fmt.Fprintf(stderr, "%s: %s\n", f.fs.Name(), line)
		}
		return exitUsage, false
	}
	return 0, true
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func runVersion(_ context.Context, env *cmdEnv, _ []string) int {
	fmt.Fprintf(env.stdout, "runnerd %s\n", version)
	return exitOK
}
