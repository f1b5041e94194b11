package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/store"
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
	msg, err := cancelRun(ctx, c, id)
	if err != nil {
		return fail(env, "cancel", cfg, err)
	}
	fmt.Fprintln(env.stdout, msg)
	return exitOK
}

// cancelTimeout bounds the round trip that hands the cancel to the server.
const cancelTimeout = 10 * time.Second

// errFinished means the run finished some other way than cancelled before
// the cancel came.
var errFinished = errors.New("already finished")

// cancelRun cancels run id and says what will happen to it.
//
// The flag comes first: it is what makes a cancel land when no runner is
// listening (a queued run, a runner restarting), since the supervisor
// checks it at pickup and while running. The cancel subject then stops a
// running run now. A paused run has no message in flight to be picked up,
// so it is cancelled here.
func cancelRun(ctx context.Context, c *conns, id string) (string, error) {
	r, err := c.st.RequestCancel(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", fmt.Errorf("no run %q (runnerd list shows the recent ones)", id)
	case errors.Is(err, store.ErrTerminal):
		cur, gerr := c.st.Get(ctx, id)
		if gerr != nil {
			return "", gerr
		}
		if cur.Status == runnerd.StatusCancelled {
			return fmt.Sprintf("run %s was already cancelled", id), nil
		}
		return "", fmt.Errorf("run %s %w: %s (%s)", id, errFinished, cur.Status, cur.Reason)
	case err != nil:
		return "", err
	}

	if r.Status == runnerd.StatusPaused {
		err := c.st.SetStatusUnfenced(ctx, id, runnerd.StatusCancelled, runnerd.ReasonCancelled)
		if err == nil {
			return fmt.Sprintf("run %s cancelled (it was paused)", id), nil
		}
		// Resumed in the meantime: it is queued now, with the flag set,
		// and the paths below apply.
		if !errors.Is(err, store.ErrIllegalTransition) {
			return "", err
		}
	}
	// A flush waits for the server only under a deadline.
	pctx, cancel := context.WithTimeout(ctx, cancelTimeout)
	defer cancel()
	if err := c.q.PublishCancel(pctx, id); err != nil {
		return "", fmt.Errorf("run %s has cancel requested, but telling its runner failed (it will see the flag): %w", id, err)
	}
	if r.Status == runnerd.StatusRunning {
		return fmt.Sprintf("run %s: cancel requested; its runner stops it now", id), nil
	}
	return fmt.Sprintf("run %s: cancel requested; it is cancelled when a runner picks it up", id), nil
}
