package main

import (
	"context"
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/client"
	"github.com/runnerd/runnerd/internal/cli"
)

// listBudget bounds the store's search for a filtered list (on FerretDB,
// where a status few runs have means walking many runs).
const listBudget = 150 * time.Millisecond

var allStatuses = client.Statuses

func listCmd(env *cmdEnv) *cobra.Command {
	var (
		cfg        clientConfig
		status     string
		limit      int
		allTenants bool
		asJSON     bool
	)
	c := &cobra.Command{
		Use:   "list [--status S] [--limit N] [--all-tenants] [--json]",
		Short: "list runs, newest first",
		Long:  "Lists the runs of --tenant, newest first, one line per run (--json: one JSON object per line).",
		Args:  cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if status != "" && !slices.Contains(allStatuses, runnerd.Status(status)) {
				return cli.Usagef("--status %q: want one of %v", status, allStatuses)
			}
			if limit <= 0 {
				return cli.Usagef("--limit %d: want 1 or more", limit)
			}
			opts := client.ListOptions{Status: runnerd.Status(status), Limit: limit}
			if !allTenants {
				opts.TenantID = cfg.Tenant
			}
			return list(c.Context(), env, cfg, opts, asJSON)
		},
	}
	f := cli.FlagsOf(c)
	cfg.register(f)
	f.String(&status, "status", "", "only runs in this status: queued, running, paused, succeeded, failed or cancelled").NoEnv()
	f.Int(&limit, "limit", 20, "at most this many runs").NoEnv()
	f.Bool(&allTenants, "all-tenants", false, "list the runs of every tenant").NoEnv()
	f.Bool(&asJSON, "json", false, "print one JSON object per run, one per line").NoEnv()
	return c
}

func list(ctx context.Context, env *cmdEnv, cfg clientConfig, opts client.ListOptions, asJSON bool) error {
	c, err := connectClient(ctx, cfg, needMongo, "runnerd list")
	if err != nil {
		return cfg.classify(err)
	}
	defer c.Close()
	cl, err := c.client()
	if err != nil {
		return cfg.classify(err)
	}
	opts.Budget = listBudget
	page, err := cl.ListPage(ctx, opts)
	if err != nil {
		return cfg.classify(err)
	}
	runs := page.Runs
	if len(runs) < opts.Limit && page.Next != "" {
		fmt.Fprintf(env.stderr, "list: searched the newest runs for %s and found %d of %d; older runs were not searched\n", listBudget, len(runs), opts.Limit)
	}
	if asJSON {
		enc := jsonLines(env.stdout)
		for _, r := range runs {
			if err := enc.Encode(client.LineOf(r)); err != nil {
				return err
			}
		}
		return nil
	}
	if len(runs) == 0 {
		fmt.Fprintln(env.stderr, "no runs")
		return nil
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tREASON\tATTEMPT\tWORKFLOW\tCREATED\tFINISHED")
	for _, r := range runs {
		l := client.LineOf(r)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", l.ID, l.Status, dash(string(l.Reason)),
			l.Attempt, dash(l.Workflow), fmtTime(l.CreatedAt), fmtTime(l.FinishedAt))
	}
	return tw.Flush()
}
