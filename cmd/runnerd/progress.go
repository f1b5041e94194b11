package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/client"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/store"
)

// waitOptions say how --wait shows a run.
type waitOptions struct {
	json bool // events as JSON lines on stdout
	logs bool // step output live, prefixed by step
}

// register adds --json and --logs; jsonWithout says what --json prints
// without --wait.
func (o *waitOptions) register(f cli.Flags, jsonWithout string) {
	f.Bool(&o.json, "json", false, "print JSON on stdout: "+jsonWithout+"; with --wait, the run's events as JSON lines").NoEnv()
	f.Bool(&o.logs, "logs", false, "with --wait, stream the steps' output live, each line prefixed by its step").NoEnv()
}

// waitRun follows a run from seq until it settles and returns its outcome
// (cli.Outcome). Under opt.json each event is a JSON line on stdout;
// otherwise the progress goes to stderr, with a note while the run waits
// to start.
func waitRun(ctx context.Context, env *cmdEnv, c *conns, cl *client.Client, id string, seq int64, opt waitOptions) error {
	var steps []string // for the prefixes' width: one read, only for --logs
	if opt.logs && !opt.json {
		if r, err := cl.Get(ctx, id); err == nil {
			steps = client.StepOrder(r)
		}
	}
	p := cli.NewProgress(env.stderr, cli.ProgressOptions{Logs: opt.logs, Steps: steps,
		Terminal: !opt.json && cli.Redraws(env.stderr), Colour: cli.Colour(env.stderr)})
	fn := func(e store.StoredEvent) { p.Event(e.Event) }
	if opt.json {
		enc := jsonLines(env.stdout)
		fn = func(e store.StoredEvent) { _ = enc.Encode(e) }
	}
	var started sync.Once
	notes := make(chan struct{})
	stopNotes := func() { started.Do(func() { close(notes) }) }
	var wg sync.WaitGroup
	if !opt.json {
		wg.Go(func() { newWaitNotes(c, cl, id).run(ctx, notes, p.Note) })
	}
	r, err := cl.Watch(ctx, id, seq, func(e store.StoredEvent) error {
		if e.Type == runnerd.EventRunStarted {
			stopNotes()
		}
		fn(e)
		return nil
	})
	stopNotes()
	wg.Wait()
	p.Close()
	if errors.Is(err, context.Canceled) {
		return cli.Class(cli.ErrInterrupted, fmt.Errorf("stopped following run %s; it goes on (runnerd status %s)", id, id))
	}
	var sel topology.ServerSelectionError
	if errors.As(err, &sel) {
		return cli.Class(cli.ErrUnavailable, fmt.Errorf("follow run %s: lost MongoDB: %v; the run goes on (runnerd status %s)", id, sel.Wrapped, id))
	}
	if err != nil {
		return fmt.Errorf("follow run %s: %w", id, err)
	}
	summary(env.stderr, r, p.Elapsed())
	return cli.Outcome(r.Status)
}

// summary prints how the run settled and, for a paused run, how to go on.
func summary(w io.Writer, r *store.Run, elapsed time.Duration) {
	line := fmt.Sprintf("run %s %s", r.ID, r.Status)
	if r.Reason != "" {
		line += fmt.Sprintf(" (%s)", r.Reason)
	}
	line += fmt.Sprintf(" after %s", elapsed.Round(time.Millisecond))
	fmt.Fprintln(w, line)
	if r.Status != runnerd.StatusPaused {
		return
	}
	for _, id := range client.StepOrder(r) {
		if st := r.Steps[id]; st != nil && st.Status == runnerd.StepWaiting {
			fmt.Fprintf(w, "continue with: runnerd resume %s --answer %s.<key>=<value>\n", r.ID, id)
		}
	}
}
