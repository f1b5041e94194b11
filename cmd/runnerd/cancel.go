package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/runnerd/runnerd/client"
)

func runCancel(ctx context.Context, env *cmdEnv, args []string) int {
	var cfg clientConfig
	f := newFlags("cancel", `usage: runnerd cancel ID

Cancels a run. A running run is stopped now by its runner; a queued run is
cancelled when a runner picks it up; a paused run is cancelled at once.

Exit 0 when the run is cancelled or will be (also when it already was);
exit 1 when it does not exist or already finished otherwise (succeeded, failed).`, env.stderr)
	cfg.register(f)
	pos, code, ok := parseArgs(f, args, env.stderr)
	if !ok {
		return code
	}
	id, ok := oneArg("cancel", "run id", pos, env.stderr)
	if !ok {
		return exitUsage
	}
	c, err := connectClient(ctx, cfg, needMongo|needNATS, "runnerd cancel")
	if err != nil {
		return fail(env, "cancel", cfg, err)
	}
	defer c.Close()
	cl, err := c.client()
	if err != nil {
		return fail(env, "cancel", cfg, err)
	}
	outcome, err := cl.Cancel(ctx, id)
	if errors.Is(err, client.ErrNotFound) {
		err = fmt.Errorf("no run %q (runnerd list shows the recent ones)", id)
	}
	if err != nil {
		return fail(env, "cancel", cfg, err)
	}
	fmt.Fprintln(env.stdout, cancelMessage(id, outcome))
	return exitOK
}

// cancelMessage says what will happen to the cancelled run.
func cancelMessage(id string, o client.CancelOutcome) string {
	switch o {
	case client.CancelledAlready:
		return fmt.Sprintf("run %s was already cancelled", id)
	case client.CancelledNow:
		return fmt.Sprintf("run %s cancelled (it was paused)", id)
	case client.CancelRunning:
		return fmt.Sprintf("run %s: cancel requested; its runner stops it now", id)
	}
	return fmt.Sprintf("run %s: cancel requested; it is cancelled when a runner picks it up", id)
}
