package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/store"
)

func cancelCmd(env *cmdEnv) *cobra.Command {
	var (
		cfg    clientConfig
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "cancel ID [--json]",
		Short: "cancel a run",
		Long: `Cancels a run. A running run is stopped now by its runner; a queued run is
cancelled when a runner picks it up; a paused run is cancelled at once.

Exit 0 when the run is cancelled or will be (also when it already was);
exit 5 when it does not exist, 6 when it already finished otherwise
(succeeded, failed).`,
		Args: cli.ExactArgs(1, "run id"),
		RunE: func(c *cobra.Command, args []string) error {
			ctx, id := c.Context(), args[0]
			conn, err := connectClient(ctx, cfg, needMongo|needNATS, "runnerd cancel")
			if err != nil {
				return cfg.classify(err)
			}
			defer conn.Close()
			res, err := cancelRun(ctx, conn, id)
			if err != nil {
				return cfg.classify(err)
			}
			if asJSON {
				return writeJSON(env.stdout, res)
			}
			fmt.Fprintln(env.stderr, res.Message)
			return nil
		},
	}
	f := cli.FlagsOf(c)
	cfg.register(f)
	f.Bool(&asJSON, "json", false, `print {"id", "status", "message"}: the run's status after the request`).NoEnv()
	return c
}

// cancelResult is what cancel did.
type cancelResult struct {
	ID      string         `json:"id"`
	Status  runnerd.Status `json:"status"` // the run's status as the cancel left it
	Message string         `json:"message"`
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
func cancelRun(ctx context.Context, c *conns, id string) (cancelResult, error) {
	res := cancelResult{ID: id}
	r, err := c.st.RequestCancel(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return res, cli.Class(cli.ErrNotFound, fmt.Errorf("no run %q (runnerd list shows the recent ones)", id))
	case errors.Is(err, store.ErrTerminal):
		cur, gerr := c.st.Get(ctx, id)
		if gerr != nil {
			return res, gerr
		}
		if cur.Status == runnerd.StatusCancelled {
			res.Status, res.Message = cur.Status, fmt.Sprintf("run %s was already cancelled", id)
			return res, nil
		}
		return res, cli.Class(cli.ErrConflict, fmt.Errorf("run %s %w: %s (%s)", id, errFinished, cur.Status, cur.Reason))
	case err != nil:
		return res, err
	}

	if r.Status == runnerd.StatusPaused {
		err := c.st.SetStatusUnfenced(ctx, id, runnerd.StatusCancelled, runnerd.ReasonCancelled)
		if err == nil {
			res.Status, res.Message = runnerd.StatusCancelled, fmt.Sprintf("run %s cancelled (it was paused)", id)
			return res, nil
		}
		// Resumed in the meantime: it is queued now, with the flag set,
		// and the paths below apply.
		if !errors.Is(err, store.ErrIllegalTransition) {
			return res, err
		}
		r.Status = runnerd.StatusQueued
	}
	// A flush waits for the server only under a deadline.
	pctx, cancel := context.WithTimeout(ctx, cancelTimeout)
	defer cancel()
	if err := c.q.PublishCancel(pctx, id); err != nil {
		return res, fmt.Errorf("run %s has cancel requested, but telling its runner failed (it will see the flag): %w", id, err)
	}
	res.Status = r.Status
	if r.Status == runnerd.StatusRunning {
		res.Message = fmt.Sprintf("run %s: cancel requested; its runner stops it now", id)
		return res, nil
	}
	res.Message = fmt.Sprintf("run %s: cancel requested; it is cancelled when a runner picks it up", id)
	return res, nil
}
