package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/workflow"
)

func validateCmd(stdout, stderr io.Writer) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "validate FILE [--json]",
		Short: "check a workflow file and print every problem",
		Long: `Checks the workflow in FILE ("-": stdin) and prints every problem, one per line
with its line number, so they can all be fixed in one go. Exit 2 when there is
any. --json prints {"file", "ok", "steps", "errors": [{"line", "step", "field",
"message"}]} on stdout.`,
		Args: cli.ExactArgs(1, "workflow file"),
		RunE: func(_ *cobra.Command, args []string) error {
			return validate(args[0], asJSON, stdout, stderr)
		},
	}
	cli.Flags{FS: c.Flags(), NoEnv: true}.Bool(&asJSON, "json", false, "print the result as one JSON document")
	return c
}

// problem is one validation error as --json prints it.
type problem struct {
	Line    int    `json:"line,omitempty"`
	Step    string `json:"step,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func validate(file string, asJSON bool, stdout, stderr io.Writer) error {
	w, err := cli.LoadWorkflow(file, os.Stdin)
	if !asJSON {
		if err != nil {
			fmt.Fprintln(stderr, err) // workflow.Errors renders one problem per line
			return cli.Quiet(cli.Usage(err))
		}
		fmt.Fprintf(stdout, "%s: ok (%s)\n", file, cli.Count(len(w.Steps), "step", ""))
		return nil
	}
	doc := struct {
		File   string    `json:"file"`
		OK     bool      `json:"ok"`
		Steps  int       `json:"steps"`
		Errors []problem `json:"errors"`
	}{File: file, OK: err == nil, Errors: []problem{}}
	if w != nil {
		doc.Steps = len(w.Steps)
	}
	var es workflow.Errors
	var e *workflow.Error
	switch {
	case errors.As(err, &es):
		for _, e := range es {
			doc.Errors = append(doc.Errors, problem{Line: e.Line, Step: e.Step, Field: e.Field, Message: e.Msg})
		}
	case errors.As(err, &e):
		doc.Errors = append(doc.Errors, problem{Line: e.Line, Step: e.Step, Field: e.Field, Message: e.Msg})
	case err != nil:
		doc.Errors = append(doc.Errors, problem{Message: err.Error()})
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if jerr := enc.Encode(doc); jerr != nil {
		return jerr
	}
	if err != nil {
		return cli.Quiet(cli.Usage(err))
	}
	return nil
}
