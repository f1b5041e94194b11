package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/store"
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

	r, err := getRun(ctx, c.st, id)
	if err != nil {
		return fail(env, "retry", cfg, err)
	}
	from := r.EventSeq // --wait shows what happens from here on
	r, err = retryOrReuse(ctx, env, c.st, r, fromScratch)
	if err != nil {
		if errors.Is(err, store.ErrIllegalTransition) {
			fmt.Fprintf(env.stderr, "retry: %v\n", err)
			return exitUsage
		}
		return fail(env, "retry", cfg, err)
	}
	if _, err := publishRun(ctx, c, r, nil); err != nil {
		return fail(env, "retry", cfg, fmt.Errorf("%w\nrun %s was retried but is not queued yet: repeat the command to queue it", err, id))
	}
	fmt.Fprintf(env.stdout, "run %s queued again\n", id)
	if !wait {
		return exitOK
	}
	return waitRun(ctx, env, c.st, id, from, asJSON)
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
