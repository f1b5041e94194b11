package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/runnerd/runnerd/client"
	"github.com/runnerd/runnerd/internal/cli"
)

func retryCmd(env *cmdEnv) *cobra.Command {
	var (
		cfg         clientConfig
		fromScratch bool
		wait        bool
		opt         waitOptions
	)
	c := &cobra.Command{
		Use:   "retry ID [--from-scratch] [--wait [--logs]] [--json]",
		Short: "queue a failed or cancelled run again; succeeded steps are not run again",
		Long: `Queues a failed or cancelled run again. Steps that succeeded keep their
outputs and are not run again (--from-scratch runs every step); the run keeps
the history of its earlier rounds (runnerd status --json: history). Repeating
a retry whose message was not published queues it again safely. With --wait,
follows the run and exits like submit --wait: 0 succeeded, 1 failed,
2 invalid usage, 3 paused, 4 cancelled. A run in another status: exit 6.`,
		Args: cli.ExactArgs(1, "run id"),
		RunE: func(c *cobra.Command, args []string) error {
			return retry(c.Context(), env, cfg, args[0], fromScratch, wait, opt)
		},
	}
	f := cli.FlagsOf(c)
	cfg.register(f)
	f.Bool(&fromScratch, "from-scratch", false, "run every step again, succeeded ones included").NoEnv()
	f.Bool(&wait, "wait", false, "follow the run until it finishes or pauses; exit with its status").NoEnv()
	opt.register(f, "the run document")
	return c
}

func retry(ctx context.Context, env *cmdEnv, cfg clientConfig, id string, fromScratch, wait bool, opt waitOptions) error {
	c, cl, r, err := openRun(ctx, cfg, needMongo|needNATS, "runnerd retry", id)
	if err != nil {
		return err
	}
	defer c.Close()
	from := r.EventSeq // --wait shows what happens from here on
	queued, err := cl.Retry(ctx, id, client.RetryOptions{FromScratch: fromScratch})
	if err != nil {
		return cfg.classify(err)
	}
	if queued.Again {
		fmt.Fprintf(env.stderr, "run %s was retried already and is queued: queueing it again (a duplicate message is dropped)\n", id)
	}
	fmt.Fprintf(env.stderr, "run %s queued again\n", id)
	if opt.json && !wait {
		return writeRunJSON(env.stdout, client.Shown(queued.Run), nil, nil)
	}
	if !wait {
		return nil
	}
	return waitRun(ctx, env, c, cl, id, from, opt)
}
