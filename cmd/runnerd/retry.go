package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/store"
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
	c, err := connectClient(ctx, cfg, needMongo|needNATS, "runnerd retry")
	if err != nil {
		return cfg.classify(err)
	}
	defer c.Close()

	r, err := getRun(ctx, c.st, id)
	if err != nil {
		return cfg.classify(err)
	}
	from := r.EventSeq // --wait shows what happens from here on
	r, err = retryOrReuse(ctx, env, c.st, r, fromScratch)
	if err != nil {
		return cfg.classify(err)
	}
	if _, err := publishRun(ctx, c, r, nil); err != nil {
		return cfg.classify(fmt.Errorf("%w\nrun %s was retried but is not queued yet: repeat the command to queue it", err, id))
	}
	fmt.Fprintf(env.stderr, "run %s queued again\n", id)
	if opt.json && !wait {
		return writeRunJSON(env.stdout, withPendingSteps(r))
	}
	if !wait {
		return nil
	}
	return waitRun(ctx, env, c, id, from, opt)
}

// retryOrReuse retries a failed or cancelled run. A queued run whose last
// round ended and that no runner has claimed since was retried by an
// earlier command whose publish may have failed: it is returned as it is,
// to be published again under its generation (the stream drops the
// duplicate).
func retryOrReuse(ctx context.Context, env *cmdEnv, st *store.Store, r *store.Run, fromScratch bool) (*store.Run, error) {
	if r.Status == runnerd.StatusQueued && len(r.History) > 0 && r.History[len(r.History)-1].Attempt == r.Attempt {
		fmt.Fprintf(env.stderr, "run %s was retried already and is queued: queueing it again (a duplicate message is dropped)\n", r.ID)
		return r, nil
	}
	retried, err := st.Retry(ctx, r.ID, fromScratch)
	if err == nil {
		return retried, nil
	}
	if errors.Is(err, store.ErrIllegalTransition) {
		what := string(r.Status)
		if r.Reason != "" {
			what += " (" + string(r.Reason) + ")"
		}
		return nil, fmt.Errorf("run %s is %s: only a failed or cancelled run can be retried: %w", r.ID, what, store.ErrIllegalTransition)
	}
	return nil, err
}
