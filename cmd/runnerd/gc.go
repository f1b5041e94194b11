package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/retention"
)

func gcCmd(env *cmdEnv) *cobra.Command {
	var (
		cfg       clientConfig
		olderThan time.Duration
		kept      time.Duration
		dryRun    bool
		asJSON    bool
	)
	c := &cobra.Command{
		Use:   "gc [--dry-run] [--older-than DURATION] [--json]",
		Short: "remove finished runs older than a bound (documents, events, S3 objects)",
		Long: `Removes the runs that finished (succeeded, failed or cancelled) more than
DURATION ago: the run document, its events and its S3 objects (step logs,
artifacts). Queued, running and paused runs are never removed. Prints one line
per run removed (--json: one JSON object per line), then a total on stderr.
With --dry-run, prints what it would remove and removes nothing. Without
--older-than, DURATION is the fleet's --retention (RUNNERD_RETENTION, as
runnerd serve reads it), which serve applies continuously.`,
		Args: cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			bound := olderThan
			if !c.Flags().Changed("older-than") {
				bound = kept
			}
			if bound <= 0 {
				return cli.Usagef("want --older-than DURATION or --retention DURATION (RUNNERD_RETENTION), more than 0 (e.g. 720h)")
			}
			return gc(c.Context(), env, cfg, bound, dryRun, asJSON)
		},
	}
	f := cli.FlagsOf(c)
	cfg.register(f)
	// Flags of one invocation have no RUNNERD_* variable (see submit);
	// --retention is the fleet's setting, read from serve's variable.
	f.Duration(&olderThan, "older-than", 0, "remove runs finished longer ago than this (e.g. 720h for 30 days; default: --retention)").NoEnv()
	f.Duration(&kept, "retention", 0, "the fleet's retention (as runnerd serve --retention), the default of --older-than")
	f.Bool(&dryRun, "dry-run", false, "print what would be removed; remove nothing").NoEnv()
	f.Bool(&asJSON, "json", false, `print {"id", "status", "finished_at", "objects", "events", "dry_run"} per run, one per line`).NoEnv()
	return c
}

// gcLine is one removed run as gc --json prints it.
type gcLine struct {
	ID         string         `json:"id"`
	Status     runnerd.Status `json:"status"`
	FinishedAt time.Time      `json:"finished_at"`
	Objects    []string       `json:"objects"`
	Events     int64          `json:"events"`
	DryRun     bool           `json:"dry_run"`
}

func gc(ctx context.Context, env *cmdEnv, cfg clientConfig, olderThan time.Duration, dryRun, asJSON bool) error {
	c, err := connectClient(ctx, cfg, needMongo, "runnerd gc")
	if err != nil {
		return cfg.classify(err)
	}
	defer c.Close()
	blobs, err := c.blob(ctx)
	if err != nil {
		return cfg.classify(err)
	}
	before := time.Now().Add(-olderThan)
	verb := "removed"
	if dryRun {
		verb = "would remove"
	}
	enc := jsonLines(env.stdout)
	objects := 0
	n, err := retention.Sweep(ctx, c.st, blobs, retention.Options{Before: before, DryRun: dryRun, OnRemoved: func(rm retention.Removed) {
		objects += len(rm.Objects)
		if asJSON {
			_ = enc.Encode(gcLine{ID: rm.Run.ID, Status: rm.Run.Status, FinishedAt: rm.Run.FinishedAt.UTC(),
				Objects: append([]string{}, rm.Objects...), Events: rm.Events, DryRun: dryRun})
			return
		}
		line := fmt.Sprintf("%s run %s (%s, finished %s): %d S3 objects", verb, rm.Run.ID, rm.Run.Status, fmtTime(rm.Run.FinishedAt), len(rm.Objects))
		if !dryRun {
			line += fmt.Sprintf(", %d events", rm.Events)
		}
		fmt.Fprintln(env.stdout, line)
	}})
	fmt.Fprintf(env.stderr, "gc: %s %d runs finished before %s, %d S3 objects\n", verb, n, fmtTime(before), objects)
	return cfg.classify(err)
}
