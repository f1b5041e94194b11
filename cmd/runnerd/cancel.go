package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/client"
	"github.com/runnerd/runnerd/internal/cli"
)

func cancelCmd(env *cmdEnv) *cobra.Command {
	var (
		cfg    clientConfig
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "cancel ID [--json]",
		Short: "cancel a run",
		Long: `Cancels a run. A running run is stopped now by its runner; a queued or paused
run is cancelled at once (a queued one wherever it waits: its group's or its
tenant's line).

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
			cl, err := conn.client()
			if err != nil {
				return cfg.classify(err)
			}
			outcome, err := cl.Cancel(ctx, id)
			if err != nil {
				return cfg.classify(err)
			}
			res := cancelResult(id, outcome)
			if asJSON {
				return writeJSON(env.stdout, res)
			}
			fmt.Fprintln(env.stderr, res.Message)
			return nil
		},
	}
	f := cli.FlagsOf(c)
	cfg.register(f)
	f.Bool(&asJSON, "json", false, `print {"id", "status", "message"}: the run's status as the cancel left it`).NoEnv()
	return c
}

// cancelled is what cancel did, as --json prints it.
type cancelled struct {
	ID      string         `json:"id"`
	Status  runnerd.Status `json:"status"` // the run's status as the cancel left it
	Message string         `json:"message"`
}

// cancelResult says what will happen to the cancelled run.
func cancelResult(id string, o client.CancelOutcome) cancelled {
	switch o {
	case client.CancelledAlready:
		return cancelled{id, runnerd.StatusCancelled, fmt.Sprintf("run %s was already cancelled", id)}
	case client.CancelledNow:
		return cancelled{id, runnerd.StatusCancelled, fmt.Sprintf("run %s cancelled (it was paused)", id)}
	case client.CancelRunning:
		return cancelled{id, runnerd.StatusRunning, fmt.Sprintf("run %s: cancel requested; its runner stops it now", id)}
	}
	return cancelled{id, runnerd.StatusCancelled, fmt.Sprintf("run %s cancelled (it was queued)", id)}
}
