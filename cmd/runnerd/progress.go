package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/store"
	"github.com/runnerd/runnerd/workflow"
)

// What the client subcommands share: following a run's events in the store, and printing its progress.

// A follower polls the store for new events (FerretDB has no change
// stream): every 10 ms at first and after anything new, slowing down to
// 250 ms while nothing moves, so a short run is seen finished at once and a
// long one costs the store four reads a second; never more often than a
// poll takes.
const (
	pollFirst = 10 * time.Millisecond
	pollMax   = 250 * time.Millisecond
)

// eventPage bounds one Events call; a full page is followed at once by the
// next one, so a follower that fell behind catches up without sleeping.
const eventPage = 500

// settled reports whether a follower can stop: the run will not move until
// someone acts (paused) or ever again (terminal).
func settled(s runnerd.Status) bool { return s.Terminal() || s == runnerd.StatusPaused }

// follow calls fn for each event of run id after seq, in order, until the
// run is settled, and returns the settled run; onRun, when set, sees the
// run document at every poll. The run document, not the event stream, says
// when to stop: a child that crashed sends no run_finished, and its run
// goes back to the queue and continues.
func follow(ctx context.Context, st *store.Store, id string, seq int64, fn func(store.StoredEvent), onRun func(*store.Run)) (*store.Run, error) {
	drain := func() error {
		for {
			events, err := st.Events(ctx, id, seq, eventPage)
			if err != nil {
				return err
			}
			for _, e := range events {
				fn(e)
				seq = e.Seq
			}
			if len(events) < eventPage {
				return nil
			}
		}
	}
	wait := pollFirst
	for {
		before, polled := seq, time.Now()
		if err := drain(); err != nil {
			return nil, err
		}
		if seq != before {
			wait = pollFirst
		}
		r, err := st.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if onRun != nil {
			onRun(r)
		}
		if settled(r.Status) {
			// Events appended between the drain and the read of the status.
			if err := drain(); err != nil {
				return nil, err
			}
			return r, nil
		}
		// Never poll more often than a poll takes: on FerretDB an events
		// query scans the collection, and a follower must not hog it.
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(max(wait, time.Since(polled))):
		}
		wait = min(wait*3/2, pollMax)
	}
}

// waitOptions say how --wait shows a run.
type waitOptions struct {
	json bool // events as JSON lines on stdout
	logs bool // step output live, prefixed by step
}

// register adds --json and --logs; --json says what it prints without
// --wait.
func (o *waitOptions) register(f cli.Flags, jsonWithout string) {
	f.Bool(&o.json, "json", false, "print JSON on stdout: "+jsonWithout+"; with --wait, the run's events as JSON lines").NoEnv()
	f.Bool(&o.logs, "logs", false, "with --wait, stream the steps' output live, each line prefixed by its step").NoEnv()
}

// waitRun follows a run from seq until it settles and returns its outcome
// (cli.Outcome). Under opt.json each event is a JSON line on stdout;
// otherwise the progress goes to stderr.
func waitRun(ctx context.Context, env *cmdEnv, c *conns, id string, seq int64, opt waitOptions) error {
	p := cli.NewProgress(env.stderr, cli.ProgressOptions{Logs: opt.logs,
		Terminal: !opt.json && cli.IsTerminal(env.stderr), Colour: cli.Colour(env.stderr)})
	fn := func(e store.StoredEvent) { p.Event(e.Event) }
	if opt.json {
		enc := jsonLines(env.stdout)
		fn = func(e store.StoredEvent) { _ = enc.Encode(e) }
	}
	w := newWaitNotes(c, id)
	r, err := follow(ctx, c.st, id, seq, fn, func(r *store.Run) {
		if line := w.note(ctx, r); line != "" && !opt.json {
			p.Note(line)
		}
	})
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
	for _, id := range stepOrder(r) {
		if st := r.Steps[id]; st != nil && st.Status == runnerd.StepWaiting {
			fmt.Fprintf(w, "continue with: runnerd resume %s --answer %s.<key>=<value>\n", r.ID, id)
		}
	}
}

// stepOrder lists the run's steps in workflow order, then any step with
// saved state the workflow does not name (sorted), so every listing of a
// run reads top to bottom like its file.
func stepOrder(r *store.Run) []string {
	var ids []string
	seen := map[string]bool{}
	if r.Workflow != nil {
		for _, s := range r.Workflow.Steps {
			ids = append(ids, s.ID)
			seen[s.ID] = true
		}
	}
	var extra []string
	for id := range r.Steps {
		if !seen[id] {
			extra = append(extra, id)
		}
	}
	sort.Strings(extra)
	return append(ids, extra...)
}

// humanStep reports whether the run's workflow has a human step id.
func humanStep(w *workflow.Workflow, id string) bool {
	if w == nil {
		return false
	}
	s := w.Step(id)
	return s != nil && s.Kind == workflow.KindHuman
}
