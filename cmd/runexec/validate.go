package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/runnerd/runnerd/workflow"
)

// validateCommand parses and validates a workflow file. Every problem is
// printed, one per line, so they can all be fixed in one go.
func validateCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, "usage: runexec validate FILE\n") }
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return ExitSucceeded
	}
	if err != nil || len(pos) != 1 {
		fs.Usage()
		return ExitUsage
	}
	w, err := workflow.Load(pos[0])
	if err != nil {
		printWorkflowError(stderr, err)
		return ExitUsage
	}
	fmt.Fprintf(stdout, "%s: ok (%d steps)\n", pos[0], len(w.Steps))
	return ExitSucceeded
}

// printWorkflowError prints a load or validation error; workflow.Errors
// already renders one problem per line.
func printWorkflowError(w io.Writer, err error) {
	fmt.Fprintln(w, err)
}

// parseInterspersed parses flags that may come before or after positional
// arguments (`run FILE --var k=v` as well as `run --var k=v FILE`).
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
