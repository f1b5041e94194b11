package main

import (
	"context"
	"fmt"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/client"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/store"
)

// notesEvery is how often a waiting client looks where its run waits (in
// NATS: the admission bucket and the stream, client.Waiting); storeEvery is
// how often it reads the run document again, for the server a runner says
// it waits on.
const (
	notesEvery = 2 * time.Second
	storeEvery = 10 * time.Second
)

// waitNotes says why a followed run is not running yet, and where it
// waits: its place in its concurrency group's or tenant's line, in the
// queue, or the server it waits on.
type waitNotes struct {
	c  *conns
	cl *client.Client
	id string
}

func newWaitNotes(c *conns, cl *client.Client, id string) *waitNotes {
	return &waitNotes{c: c, cl: cl, id: id}
}

// run calls note with a line about the run at once and every notesEvery
// while it is queued, until stop closes or ctx ends. The lines come from
// NATS; the run document is read at the start and then only every
// storeEvery (the follower's Watch reads it when a notice says it settled).
func (w *waitNotes) run(ctx context.Context, stop <-chan struct{}, note func(string)) {
	t := time.NewTimer(0)
	defer t.Stop()
	var (
		r      *store.Run
		readAt time.Time
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-stop:
			return
		case <-t.C:
		}
		if r == nil || time.Since(readAt) >= storeEvery {
			if got, err := w.cl.Get(ctx, w.id); err == nil {
				r, readAt = got, time.Now()
			}
		}
		if r != nil {
			if line := w.note(ctx, r); line != "" {
				note(line)
			}
		}
		t.Reset(notesEvery)
	}
}

// note is the line for run r, or "" when it is not queued.
func (w *waitNotes) note(ctx context.Context, r *store.Run) string {
	if r.Status != runnerd.StatusQueued {
		return ""
	}
	if wt := r.Waiting; wt != nil {
		return fmt.Sprintf("queued: waiting for %s since %s: %s", wt.On, fmtTime(wt.Since), wt.Error)
	}
	if w.c.q == nil {
		return "queued"
	}
	// A concurrency group or a tenant limit holds it back before the queue.
	wt, places, err := w.cl.Waiting(ctx, r)
	switch {
	case err != nil:
		return "queued"
	case wt == nil:
		return "queued: taken by a runner, starting"
	case wt.Kind != client.WaitRunnerSlot:
		for _, p := range places {
			if p.Position > 0 {
				return "queued: " + placeLine(p)
			}
		}
		return "queued"
	case wt.AtLeast:
		return fmt.Sprintf("queued: more than %d runs ahead in the queue (%d in flight)", client.PositionScan, wt.InFlight)
	case wt.Position == 1:
		return fmt.Sprintf("queued: next in the queue, waiting for a free runner slot (%s in flight)", cli.Count(wt.InFlight, "run", ""))
	}
	return fmt.Sprintf("queued: position %d in the queue (%s ahead, %d in flight)", wt.Position, cli.Count(wt.Position-1, "run", ""), wt.InFlight)
}
