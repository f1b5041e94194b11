// Package retention removes finished runs older than a bound: the run
// document, its events and revisions (store.Purge) and its S3 objects
// (everything under runs/<run id>/: step logs and artifacts). Queued,
// running and paused runs are never removed, whatever their age. Shared
// workflow objects (workflows/<sha256>.json, content-addressed, possibly
// used by other runs) are kept.
//
// `runnerd serve --retention D` sweeps every D/10, 1 s to 1 h (Sweeper);
// `runnerd gc` sweeps once (Sweep).
package retention

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/rs/zerolog"

	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/store"
)

// Removed is one run a sweep removed (or, in a dry run, would remove).
type Removed struct {
	Run     *store.Run
	Objects []string // S3 keys
	Events  int64    // 0 in a dry run
}

// Options of one sweep.
type Options struct {
	Before time.Time // runs finished before this are removed
	DryRun bool      // list, remove nothing
	Batch  int       // runs read at a time (default 100)
	// OnRemoved is called for each run removed, in finishing order.
	OnRemoved func(Removed)
}

// Sweep removes every run finished before o.Before, in batches, oldest
// first, and returns how many it removed. Its S3 objects go first, then the
// store's records, so a sweep cut short never leaves objects nobody lists.
// A run changed meanwhile (retried) is skipped.
func Sweep(ctx context.Context, st *store.Store, blobs *blob.Store, o Options) (int, error) {
	if o.Batch <= 0 {
		o.Batch = 100
	}
	n := 0
	skip := map[string]bool{} // dry run: listed already
	for {
		runs, err := st.FinishedBefore(ctx, o.Before, o.Batch+len(skip))
		if err != nil {
			return n, err
		}
		progress := false
		for _, r := range runs {
			if skip[r.ID] {
				continue
			}
			progress = true
			rm, err := removeRun(ctx, st, blobs, r, o)
			if errors.Is(err, store.ErrNotExpired) || errors.Is(err, store.ErrNotFound) {
				skip[r.ID] = true
				continue
			}
			if err != nil {
				return n, err
			}
			if o.DryRun {
				skip[r.ID] = true
			}
			n++
			if o.OnRemoved != nil {
				o.OnRemoved(rm)
			}
		}
		if !progress || len(runs) < o.Batch+len(skip)-countIn(skip, runs) {
			return n, nil
		}
	}
}

func countIn(skip map[string]bool, runs []*store.Run) int {
	n := 0
	for _, r := range runs {
		if skip[r.ID] {
			n++
		}
	}
	return n
}

func removeRun(ctx context.Context, st *store.Store, blobs *blob.Store, r *store.Run, o Options) (Removed, error) {
	rm := Removed{Run: r}
	prefix := "runs/" + r.ID + "/"
	if blobs != nil {
		objs, err := blobs.List(ctx, prefix)
		if err != nil {
			return rm, fmt.Errorf("retention of run %s: %w", r.ID, err)
		}
		for _, obj := range objs {
			rm.Objects = append(rm.Objects, obj.Key)
		}
	}
	if o.DryRun {
		return rm, nil
	}
	for _, k := range rm.Objects {
		if err := blobs.Delete(ctx, k); err != nil {
			return rm, fmt.Errorf("retention of run %s: %w", r.ID, err)
		}
	}
	p, err := st.Purge(ctx, r.ID, o.Before)
	if err != nil {
		return rm, err
	}
	rm.Events = p.Events
	return rm, nil
}

// Sweeper sweeps soon after it starts, then every Interval(retention),
// removing runs finished more than retention ago, until ctx ends. Every
// runner of a fleet may run one: the sweeps are idempotent.
func Sweeper(ctx context.Context, st *store.Store, blobs *blob.Store, retention time.Duration, log zerolog.Logger) {
	interval := Interval(retention)
	timer := time.NewTimer(FirstSweep(interval))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		before := time.Now().Add(-retention)
		start := time.Now()
		n, err := Sweep(ctx, st, blobs, Options{Before: before, OnRemoved: func(rm Removed) {
			log.Debug().Str("run_id", rm.Run.ID).Str("status", string(rm.Run.Status)).Time("finished_at", rm.Run.FinishedAt).
				Int("objects", len(rm.Objects)).Int64("events", rm.Events).Msg("retention: run removed")
		}})
		ev := log.Info()
		if err != nil && ctx.Err() == nil {
			ev = log.Warn().Err(err)
		}
		if n > 0 || err != nil {
			ev.Int("runs", n).Dur("retention", retention).Dur("took", time.Since(start)).Msg("retention sweep")
		}
		timer.Reset(interval)
	}
}

// Interval is how often a Sweeper sweeps: a tenth of the retention, from
// one second to one hour (so a run outlives its retention by at most a
// tenth of it, or a second, or an hour).
func Interval(retention time.Duration) time.Duration {
	return min(max(retention/10, time.Second), time.Hour)
}

// FirstSweep is how long a Sweeper waits before its first sweep: a random
// part of a second, or of the interval where that is shorter, so that a
// fleet started at once does not sweep in one instant, while a runner
// started after a long stop catches up at once.
func FirstSweep(interval time.Duration) time.Duration {
	return time.Duration(rand.Int64N(int64(min(interval, time.Second))))
}
