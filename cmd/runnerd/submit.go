package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/client"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
)

// inlineWorkflowMax is the largest workflow JSON carried in the message
// itself (client.Options.InlineWorkflowMax); a variable so tests can cross
// it cheaply.
var inlineWorkflowMax = client.DefaultInlineWorkflowMax

func submitCmd(env *cmdEnv) *cobra.Command {
	var (
		cfg     clientConfig
		varList []string
		id      string
		wait    bool
		timeout time.Duration
		opt     waitOptions
	)
	c := &cobra.Command{
		Use:   "submit FILE [--var k=v]... [--id ID] [--wait [--logs]] [--timeout DUR] [--json]",
		Short: "create a run from a workflow file and queue it",
		Long: `Creates a run of the workflow in FILE ("-": stdin) and queues it. The run id is
printed alone on the first line of stdout (--json: the run document instead);
progress goes to stderr. Submitting again with the same --id while the run is
still queued queues it again safely (the queue drops the duplicate), so a
submit that failed half-way can simply be repeated.

With --wait, follows the run to its end and exits like runexec run:
0 succeeded, 1 failed, 2 invalid usage or workflow, 3 paused, 4 cancelled.`,
		Args: cli.ExactArgs(1, "workflow file"),
		RunE: func(c *cobra.Command, args []string) error {
			return submit(c.Context(), env, cfg, args[0], varList, id, timeout, wait, opt)
		},
	}
	f := cli.FlagsOf(c)
	cfg.register(f)
	// What says how to reach the servers has a RUNNERD_* variable; what
	// describes one invocation does not: a RUNNERD_ID or RUNNERD_WAIT left in
	// the environment would silently apply to every later command.
	f.List(&varList, "var", "override a workflow var: k=v (repeatable)")
	f.String(&id, "id", "", "run id (default: a new time-ordered id)").NoEnv()
	f.Bool(&wait, "wait", false, "follow the run until it finishes or pauses; exit with its status").NoEnv()
	f.Duration(&timeout, "timeout", 0, "run deadline (0: the workflow's own timeout)").NoEnv()
	opt.register(f, "the run document")
	return c
}

func submit(ctx context.Context, env *cmdEnv, cfg clientConfig, file string, varList []string, id string, timeout time.Duration, wait bool, opt waitOptions) error {
	overrides, err := cli.ParseVars("var", varList)
	if err != nil {
		return err
	}
	if id == "" {
		id = client.NewRunID()
	} else if err := queue.ValidateRunID(id); err != nil {
		return cli.Usagef("--id: %w", err)
	}
	sub, err := newSubmission(file, id, cfg.Tenant, overrides, timeout)
	if err != nil {
		return cli.Usage(err)
	}

	c, err := connectClient(ctx, cfg, needMongo|needNATS, "runnerd submit")
	if err != nil {
		return cfg.classify(err)
	}
	defer c.Close()
	cl, err := c.client()
	if err != nil {
		return cfg.classify(err)
	}
	queued, err := cl.Submit(ctx, sub)
	if err != nil {
		return cfg.classify(err)
	}
	run := queued.Run
	if queued.Again {
		fmt.Fprintf(env.stderr, "run %s already exists and is queued: queueing it again (a duplicate message is dropped)\n", run.ID)
	}
	if run.Status.Terminal() { // on_conflict: cancel_new, its group full
		if opt.json {
			if err := writeRunJSON(env.stdout, client.Shown(run), nil, nil); err != nil {
				return err
			}
		} else {
			fmt.Fprintln(env.stdout, run.ID)
		}
		fmt.Fprintf(env.stderr, "run %s %s at once: %s\n", run.ID, run.Status, settledWhy(run))
		return cli.Outcome(run.Status)
	}
	switch {
	case opt.json && !wait:
		if err := writeRunJSON(env.stdout, client.Shown(run), nil, nil); err != nil {
			return err
		}
	case !opt.json:
		fmt.Fprintln(env.stdout, run.ID)
	}
	fmt.Fprintf(env.stderr, "run %s queued (workflow %q, %d steps, tenant %s)\n", run.ID, run.Workflow.Name, len(run.Workflow.Steps), run.TenantID)
	if !wait {
		return nil
	}
	return waitRun(ctx, env, c, cl, run.ID, 0, opt)
}

// newSubmission loads and checks the workflow file ("-": stdin) and the
// vars, so that every error names what is wrong (file, line, step, field,
// --var) before anything is connected to.
func newSubmission(file, id, tenant string, overrides map[string]string, timeout time.Duration) (client.Submission, error) {
	w, err := cli.LoadWorkflow(file, os.Stdin)
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

// settledWhy says why a run ended as it was submitted.
func settledWhy(r *store.Run) string {
	if r.Reason == runnerd.ReasonGroupFull && r.Workflow != nil && r.Workflow.Concurrency != nil {
		return fmt.Sprintf("%s: concurrency group %q already has its limit of %d runs (on_conflict: cancel_new)",
			r.Reason, groupName(r), r.Workflow.Concurrency.EffectiveLimit())
	}
	return string(r.Reason)
}
