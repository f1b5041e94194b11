package main

import (
	"context"
	"fmt"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/store"
)

// positionScan bounds how far a waiting client looks for its run's
// message; positionEvery how often it looks.
const (
	positionScan  = 100
	positionEvery = 2 * time.Second
)

// waitNotes says why a followed run is not running yet, and where it
// waits: its place in the queue, or the server or lease it waits on.
type waitNotes struct {
	c      *conns
	id     string
	last   string
	lookAt time.Time
}

func newWaitNotes(c *conns, id string) *waitNotes { return &waitNotes{c: c, id: id} }

// note is the line for run r, or "" while it runs or nothing changed.
func (w *waitNotes) note(ctx context.Context, r *store.Run) string {
	if r.Status != runnerd.StatusQueued {
		return ""
	}
	if wt := r.Waiting; wt != nil {
		w.last = fmt.Sprintf("queued: waiting for %s since %s: %s", wt.On, fmtTime(wt.Since), wt.Error)
		return w.last
	}
	if w.c.q == nil || time.Now().Before(w.lookAt) {
		return w.last
	}
	w.lookAt = time.Now().Add(positionEvery)
	p, err := w.c.q.Position(ctx, w.id, positionScan)
	switch {
	case err != nil:
		w.last = "queued"
	case p.Found && p.Ahead == 0:
		w.last = fmt.Sprintf("queued: next in the queue, waiting for a free runner slot (%d runs in flight)", p.InFlight)
	case p.Found:
		w.last = fmt.Sprintf("queued: position %d in the queue (%d runs ahead, %d in flight)", p.Ahead+1, p.Ahead, p.InFlight)
	case p.Ahead > positionScan:
		w.last = fmt.Sprintf("queued: more than %d runs ahead in the queue (%d in flight)", positionScan, p.InFlight)
	default:
		w.last = "queued: taken by a runner, starting"
	}
	return w.last
}
