package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/store"
)

// runLine is one run as list --json prints it: the fields of the table, not
// the whole document (which carries the workflow).
type runLine struct {
	ID         string         `json:"id"`
	TenantID   string         `json:"tenant_id"`
	Workflow   string         `json:"workflow"`
	Status     runnerd.Status `json:"status"`
	Reason     runnerd.Reason `json:"reason"`
	Attempt    int            `json:"attempt"`
	CreatedAt  time.Time      `json:"created_at"`
	FinishedAt time.Time      `json:"finished_at,omitzero"`
}

// listBudget bounds the store's search for a filtered list (on FerretDB,
// where a status few runs have means walking many runs).
const listBudget = 150 * time.Millisecond

var allStatuses = []runnerd.Status{
	runnerd.StatusQueued, runnerd.StatusRunning, runnerd.StatusPaused,
	runnerd.StatusSucceeded, runnerd.StatusFailed, runnerd.StatusCancelled,
}

func runList(ctx context.Context, env *cmdEnv, args []string) int {
	var (
		cfg        clientConfig
		status     string
		limit      int
		allTenants bool
		asJSON     bool
	)
	f := newFlags("list", `usage: runnerd list [--status S] [--limit N] [--json]

Lists the runs of --tenant, newest first, one line per run.`, env.stderr)
	cfg.register(f)
	f.fs.StringVar(&status, "status", "", "only runs in this status: queued, running, paused, succeeded, failed or cancelled")
	f.fs.IntVar(&limit, "limit", 20, "at most this many runs")
	f.fs.BoolVar(&allTenants, "all-tenants", false, "list the runs of every tenant")
	f.fs.BoolVar(&asJSON, "json", false, "print one JSON object per run")
	pos, code, ok := parseArgs(f, args, env.stderr)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(env.stderr, "list: unexpected argument %q (filters are flags: see runnerd list --help)\n", pos[0])
		return exitUsage
	}
	if status != "" && !knownStatus(runnerd.Status(status)) {
		fmt.Fprintf(env.stderr, "list: --status %q: want one of %v\n", status, allStatuses)
		return exitUsage
	}
	if limit <= 0 {
		fmt.Fprintf(env.stderr, "list: --limit %d: want 1 or more\n", limit)
		return exitUsage
	}
	c, err := connectClient(ctx, cfg, needMongo, "runnerd list")
	if err != nil {
		return fail(env, "list", cfg, err)
	}
	defer c.Close()
	opts := store.ListOptions{Status: runnerd.Status(status), Limit: limit, Budget: listBudget}
	if !allTenants {
		opts.TenantID = cfg.Tenant
	}
	page, err := c.st.ListPage(ctx, opts)
	if err != nil {
		return fail(env, "list", cfg, err)
	}
	runs := page.Runs
	if len(runs) < limit && page.Next != "" {
		fmt.Fprintf(env.stderr, "list: searched the newest runs for %s and found %d of %d; older runs were not searched\n", listBudget, len(runs), limit)
	}
	if asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetEscapeHTML(false)
		for _, r := range runs {
			if err := enc.Encode(lineOf(r)); err != nil {
				fmt.Fprintf(env.stderr, "list: %v\n", err)
				return exitFailed
			}
		}
		return exitOK
	}
	if len(runs) == 0 {
		fmt.Fprintln(env.stderr, "no runs")
		return exitOK
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tREASON\tATTEMPT\tWORKFLOW\tCREATED\tFINISHED")
	for _, r := range runs {
		l := lineOf(r)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", l.ID, l.Status, dash(string(l.Reason)),
			l.Attempt, dash(l.Workflow), fmtTime(l.CreatedAt), fmtTime(l.FinishedAt))
	}
	_ = tw.Flush()
	return exitOK
}

func lineOf(r *store.Run) runLine {
	l := runLine{
		ID: r.ID, TenantID: r.TenantID, Status: r.Status, Reason: r.Reason,
		Attempt: r.Attempt, CreatedAt: r.CreatedAt, FinishedAt: r.FinishedAt,
	}
	if r.Workflow != nil {
		l.Workflow = r.Workflow.Name
	}
	return l
}

func knownStatus(s runnerd.Status) bool {
	for _, k := range allStatuses {
		if k == s {
			return true
		}
	}
	return false
}
