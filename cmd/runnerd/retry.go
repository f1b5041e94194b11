package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/runnerd/runnerd/client"
)

func runRetry(ctx context.Context, env *cmdEnv, args []string) int {
	var (
		cfg         clientConfig
		fromScratch bool
		wait        bool
		asJSON      bool
	)
	f := newFlags("retry", `usage: runnerd retry ID [--from-scratch] [--wait] [--json]

Queues a failed or cancelled run again. Steps that succeeded keep their
outputs and are not run again (--from-scratch runs every step); the run keeps
the history of its earlier rounds (runnerd status --json: history). Repeating
a retry whose message was not published queues it again safely. With --wait,
follows the run and exits like submit --wait: 0 succeeded, 1 failed,
2 invalid usage, 3 paused, 4 cancelled.`, env.stderr)
	cfg.register(f)
	f.fs.BoolVar(&fromScratch, "from-scratch", false, "run every step again, succeeded ones included")
	f.fs.BoolVar(&wait, "wait", false, "follow the run until it finishes or pauses; exit with its status")
	f.fs.BoolVar(&asJSON, "json", false, "with --wait, print the run's events as JSON lines on stdout")
	pos, code, ok := parseArgs(f, args, env.stderr)
	if !ok {
		return code
	}
	id, ok := oneArg("retry", "run id", pos, env.stderr)
	if !ok {
		return exitUsage
	}
	c, err := connectClient(ctx, cfg, needMongo|needNATS, "runnerd retry")
	if err != nil {
		return fail(env, "retry", cfg, err)
	}
	defer c.Close()

	cl, err := c.client()
	if err != nil {
		return fail(env, "retry", cfg, err)
	}
	r, err := getRun(ctx, cl, id)
	if err != nil {
		return fail(env, "retry", cfg, err)
	}
	from := r.EventSeq // --wait shows what happens from here on
	queued, err := cl.Retry(ctx, id, client.RetryOptions{FromScratch: fromScratch})
	if errors.Is(err, client.ErrConflict) {
		fmt.Fprintf(env.stderr, "retry: %v\n", err)
		return exitUsage
	}
	if err != nil {
		return fail(env, "retry", cfg, err)
	}
	if queued.Again {
		fmt.Fprintf(env.stderr, "run %s was retried already and is queued: queueing it again (a duplicate message is dropped)\n", id)
	}
	fmt.Fprintf(env.stdout, "run %s queued again\n", id)
	if !wait {
		return exitOK
	}
	return waitRun(ctx, env, cl, id, from, asJSON)
}
