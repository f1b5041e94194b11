package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/runnerd/runnerd/client"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/workflow"
)

// inlineWorkflowMax is the largest workflow JSON carried in the message
// itself (client.Options.InlineWorkflowMax); a variable so tests can cross
// it cheaply.
var inlineWorkflowMax = client.DefaultInlineWorkflowMax

func runSubmit(ctx context.Context, env *cmdEnv, args []string) int {
	var (
		cfg     clientConfig
		varList []string
		id      string
		wait    bool
		timeout time.Duration
		asJSON  bool
	)
	f := newFlags("submit", `usage: runnerd submit FILE [--var k=v]... [--id ID] [--wait] [--timeout DUR] [--json]

Creates a run of the workflow in FILE and queues it. The run id is printed alone
on the first line of stdout; progress goes to stderr. Submitting again with the
same --id while the run is still queued queues it again safely (the queue drops
the duplicate), so a submit that failed half-way can simply be repeated.

With --wait, follows the run to its end and exits like runexec run:
0 succeeded, 1 failed, 2 invalid usage or workflow, 3 paused, 4 cancelled.`, env.stderr)
	cfg.register(f)
	// What says how to reach the servers has a RUNNERD_* variable; what
	// describes one invocation does not: a RUNNERD_ID or RUNNERD_WAIT left in
	// the environment would silently apply to every later command.
	f.List(&varList, "var", "override a workflow var: k=v (repeatable)")
	f.fs.StringVar(&id, "id", "", "run id (default: a new time-ordered id)")
	f.fs.BoolVar(&wait, "wait", false, "follow the run until it finishes or pauses; exit with its status")
	f.fs.DurationVar(&timeout, "timeout", 0, "run deadline (0: the workflow's own timeout)")
	f.fs.BoolVar(&asJSON, "json", false, "with --wait, print the run's events as JSON lines on stdout (after the id line)")
	pos, code, ok := parseArgs(f, args, env.stderr)
	if !ok {
		return code
	}
	file, ok := oneArg("submit", "workflow file", pos, env.stderr)
	if !ok {
		return exitUsage
	}
	overrides, err := parseKV("var", varList)
	if err != nil {
		fmt.Fprintf(env.stderr, "submit: %v\n", err)
		return exitUsage
	}
	if timeout < 0 {
		fmt.Fprintf(env.stderr, "submit: --timeout %s: want 0 or more\n", timeout)
		return exitUsage
	}
	if id == "" {
		id = client.NewRunID()
	} else if err := queue.ValidateRunID(id); err != nil {
		fmt.Fprintf(env.stderr, "submit: --id: %v\n", err)
		return exitUsage
	}

	sub, err := newSubmission(file, id, cfg.Tenant, overrides, timeout)
	if err != nil {
		fmt.Fprintf(env.stderr, "submit: %v\n", err)
		return exitUsage
	}

	c, err := connectClient(ctx, cfg, needMongo|needNATS, "runnerd submit")
	if err != nil {
		return fail(env, "submit", cfg, err)
	}
	defer c.Close()
	cl, err := c.client()
	if err != nil {
		return fail(env, "submit", cfg, err)
	}
	queued, err := cl.Submit(ctx, sub)
	if errors.Is(err, client.ErrInvalid) {
		fmt.Fprintf(env.stderr, "submit: %v\n", err)
		return exitUsage
	}
	if err != nil {
		return fail(env, "submit", cfg, err)
	}
	run := queued.Run
	if queued.Again {
		fmt.Fprintf(env.stderr, "run %s already exists and is queued: queueing it again (a duplicate message is dropped)\n", run.ID)
	}
	fmt.Fprintln(env.stdout, run.ID)
	fmt.Fprintf(env.stderr, "run %s queued (workflow %q, %d steps, tenant %s)\n", run.ID, run.Workflow.Name, len(run.Workflow.Steps), run.TenantID)
	if !wait {
		return exitOK
	}
	return waitRun(ctx, env, cl, run.ID, 0, asJSON)
}

// newSubmission loads and checks the workflow file and the vars, so that
// every error names what is wrong (file, line, step, field, --var) before
// anything is connected to.
func newSubmission(file, id, tenant string, overrides map[string]string, timeout time.Duration) (client.Submission, error) {
	w, err := workflow.Load(file)
	if err != nil {
		return client.Submission{}, err
	}
	// Load validated it with lines; Validate is what the queue and the
	// runner apply to the decoded message, and it must agree before the
	// run exists.
	if err := w.Validate(); err != nil {
		return client.Submission{}, fmt.Errorf("%s: %w", file, err)
	}
	if _, err := w.ResolveVars(overrides); err != nil {
		return client.Submission{}, fmt.Errorf("--var: %w", err)
	}
	return client.Submission{Workflow: w, ID: id, TenantID: tenant, Vars: overrides, Timeout: timeout}, nil
}
