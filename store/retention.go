package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/runnerd/runnerd"
)

// Retention: finished runs older than a bound are removed with their
// events and revisions (package retention removes their S3 objects first).
// A sweep, not a TTL index: a TTL index would remove run documents alone,
// leaving their events and objects behind, and FerretDB v1 has none.

// ErrNotExpired means the run is not finished before the bound (queued, running,
// paused, or finished later), so it is kept.
var ErrNotExpired = errors.New("run not finished before the retention bound")

var finishedStatuses = []runnerd.Status{runnerd.StatusSucceeded, runnerd.StatusFailed, runnerd.StatusCancelled}

// FinishedBefore lists up to limit runs finished (succeeded, failed,
// cancelled) before cutoff, oldest first, each as of its latest state.
func (s *Store) FinishedBefore(ctx context.Context, cutoff time.Time, limit int) ([]*Run, error) {
	filter := bson.D{
		{Key: "status", Value: bson.D{{Key: "$in", Value: finishedStatuses}}},
		{Key: "finished_at", Value: bson.D{{Key: "$lt", Value: cutoff}}},
	}
	opts := options.Find().SetSort(bson.D{{Key: "finished_at", Value: 1}, {Key: "_id", Value: 1}}).SetLimit(int64(limit))
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	cur, err := s.runs.Find(cctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("list runs finished before %s: %w", cutoff.Format(time.RFC3339), err)
	}
	var docs []*Run
	if err := cur.All(cctx, &docs); err != nil {
		return nil, fmt.Errorf("list runs finished before %s: %w", cutoff.Format(time.RFC3339), err)
	}
	if !s.revision {
		return docs, nil
	}
	// A document may be behind its revisions (a retried run is queued now).
	var out []*Run
	for _, d := range docs {
		r, err := s.Get(ctx, d.ID)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if expired(r, cutoff) {
			out = append(out, r)
		}
	}
	return out, nil
}

func expired(r *Run, cutoff time.Time) bool {
	return r.Status.Terminal() && !r.FinishedAt.IsZero() && r.FinishedAt.Before(cutoff)
}

// Purged is what Purge removed of one run.
type Purged struct {
	Events    int64
	Revisions int64
}

// Purge removes run id — its events, then its document, then its revisions
// — if it finished before cutoff; else ErrNotExpired and nothing is
// removed. A purge cut short leaves the document (the next one finishes
// it) or only revisions, which nothing reads without their document.
func (s *Store) Purge(ctx context.Context, id string, cutoff time.Time) (Purged, error) {
	var p Purged
	r, err := s.Get(ctx, id)
	if err != nil {
		return p, err
	}
	if !expired(r, cutoff) {
		return p, fmt.Errorf("purge run %s (%s, finished %s): %w", id, r.Status, r.FinishedAt.Format(time.RFC3339), ErrNotExpired)
	}
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	// The copies first (by key): a purge cut short leaves no copy of an
	// event that is gone.
	if s.keyedEvents(cctx) {
		err := inChunks(r.EventSeq, func(i int64) error {
			_, err := s.copies.DeleteOne(cctx, bson.D{{Key: "_id", Value: eventCopyID(id, i+1)}})
			return err
		})
		if err != nil {
			return p, fmt.Errorf("purge run %s: event copies: %w", id, err)
		}
	}
	res, err := s.events.DeleteMany(cctx, bson.D{{Key: "run_id", Value: id}})
	if err != nil {
		return p, fmt.Errorf("purge run %s: events: %w", id, err)
	}
	p.Events = res.DeletedCount
	// On MongoDB the document goes only if it is still finished before the
	// bound (a retry may have come meanwhile); FerretDB's filter is not
	// checked atomically, the read above is what decides there.
	filter := bson.D{{Key: "_id", Value: id}}
	if !s.revision {
		filter = append(filter,
			bson.E{Key: "status", Value: bson.D{{Key: "$in", Value: finishedStatuses}}},
			bson.E{Key: "finished_at", Value: bson.D{{Key: "$lt", Value: cutoff}}})
	}
	dres, err := s.runs.DeleteOne(cctx, filter)
	if err != nil {
		return p, fmt.Errorf("purge run %s: document: %w", id, err)
	}
	if dres.DeletedCount == 0 {
		return p, fmt.Errorf("purge run %s: changed meanwhile: %w", id, ErrNotExpired)
	}
	if s.revision {
		rres, err := s.revisions.DeleteMany(cctx, bson.D{{Key: "run_id", Value: id}})
		if err != nil {
			return p, fmt.Errorf("purge run %s: revisions: %w", id, err)
		}
		p.Revisions = rres.DeletedCount
	}
	return p, nil
}
