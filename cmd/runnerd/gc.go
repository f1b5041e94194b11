package main

import (
	"context"
	"fmt"
	"time"

	"github.com/runnerd/runnerd/retention"
)

func runGC(ctx context.Context, env *cmdEnv, args []string) int {
	var (
		cfg       clientConfig
		olderThan time.Duration
		dryRun    bool
	)
	f := newFlags("gc", `usage: runnerd gc --older-than DURATION [--dry-run]

Removes the runs that finished (succeeded, failed or cancelled) more than
DURATION ago: the run document, its events and its S3 objects (step logs,
artifacts). Queued, running and paused runs are never removed. Prints one line
per run removed, then a total. With --dry-run, prints what it would remove and
removes nothing. runnerd serve --retention does the same every few minutes.`, env.stderr)
	cfg.register(f)
	// Flags of one invocation have no RUNNERD_* variable (see submit).
	f.fs.DurationVar(&olderThan, "older-than", 0, "remove runs finished longer ago than this (e.g. 720h for 30 days)")
	f.fs.BoolVar(&dryRun, "dry-run", false, "print what would be removed; remove nothing")
	pos, code, ok := parseArgs(f, args, env.stderr)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(env.stderr, "gc: unexpected argument %q (see runnerd gc --help)\n", pos[0])
		return exitUsage
	}
	if olderThan <= 0 {
		fmt.Fprintln(env.stderr, "gc: want --older-than DURATION, more than 0 (e.g. 720h)")
		return exitUsage
	}
	c, err := connectClient(ctx, cfg, needMongo, "runnerd gc")
	if err != nil {
		return fail(env, "gc", cfg, err)
	}
	defer c.Close()
	blobs, err := c.blob(ctx)
	if err != nil {
		return fail(env, "gc", cfg, err)
	}
	before := time.Now().Add(-olderThan)
	verb := "removed"
	if dryRun {
		verb = "would remove"
	}
	objects := 0
	n, err := retention.Sweep(ctx, c.st, blobs, retention.Options{Before: before, DryRun: dryRun, OnRemoved: func(rm retention.Removed) {
		objects += len(rm.Objects)
		line := fmt.Sprintf("%s run %s (%s, finished %s): %d S3 objects", verb, rm.Run.ID, rm.Run.Status, fmtTime(rm.Run.FinishedAt), len(rm.Objects))
		if !dryRun {
			line += fmt.Sprintf(", %d events", rm.Events)
		}
		fmt.Fprintln(env.stdout, line)
	}})
	fmt.Fprintf(env.stderr, "gc: %s %d runs finished before %s, %d S3 objects\n", verb, n, fmtTime(before), objects)
	if err != nil {
		return fail(env, "gc", cfg, err)
	}
	return exitOK
}
