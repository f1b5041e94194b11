package store

// Listing runs, newest first, one page at a time.
//
// On MongoDB (the conditional write path) List is one query on the runs
// collection, its filter, sort and limit served by the indexes.
//
// FerretDB v1 on SQLite pushes down only a lookup of one string _id: any
// other filter, and any sort, is evaluated in Go over every document of the
// collection (seconds at 50k runs; docs/benchmarks.md). So on the
// revision path (FerretDB) the store keeps the creation order itself, in
// the small documents of run_index: entry n (_id "e:<n>", n = 1, 2, …
// dense) names the n-th run created, with its tenant and incarnation.
// Create claims the next n by inserting its entry (the unique _id makes
// the claim atomic; a lost race tries n+1) and leaves a hint of the newest
// n in the document "head" (a stale hint only costs lookups: readers and
// writers go forward from it). The hint cannot be written without waiting
// for its acknowledgement: FerretDB answers an unacknowledged write, and
// the driver then reads that answer as the reply to its next command. List walks the entries downwards from the
// newest, by _id lookups only, reading each run document to apply the
// status filter and bringing each match up to its latest revision. An entry whose run is missing, or
// is of another incarnation (a Create that failed after its entry, a run
// deleted and created again), is skipped. Create writes the hint while it
// inserts the run, and takes the run's creation time after its entry, so
// the index costs a run's latency one lookup and one insert.
//
// A status that few runs have can mean walking many entries; one call
// walks for at most ListOptions.Budget and then returns what it found with
// a cursor to go on from, so a page may be short and a call never outlasts
// the budget by more than one chunk of lookups (at least one chunk is
// walked, so paging always progresses).

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/runnerd/runnerd"
)

// Bounds of List.
const (
	DefaultListLimit = 100
	MaxListLimit     = 5000
	// DefaultListBudget is how long one List call walks the run index on
	// FerretDB before it returns a short page with a cursor: well within a
	// client's timeout. A caller that must answer fast (runnerd list) sets
	// a smaller one.
	DefaultListBudget = 2 * time.Second
)

// ErrBadCursor is returned for a ListOptions.Cursor that is not one List returned.
var ErrBadCursor = errors.New("bad list cursor")

// ListOptions filters and pages List. Zero values mean "any".
type ListOptions struct {
	Status   runnerd.Status
	TenantID string
	Limit    int // runs per page: DefaultListLimit when zero, at most MaxListLimit
	// Cursor is Page.Next of the previous page: the page goes on with the
	// runs created before that page's last one. Empty: the newest runs.
	Cursor string
	// Budget bounds the walk of one call on FerretDB (DefaultListBudget
	// when zero); MongoDB answers from its indexes and ignores it.
	Budget time.Duration
}

// Page is one page of runs, newest first.
type Page struct {
	Runs []*Run
	// Next is the cursor of the following (older) page; empty when no run
	// is left. A page can be short (even empty) and still have a Next: on
	// FerretDB the walk stopped at its budget.
	Next string
}

// List returns the first page of runs matching o, newest first.
func (s *Store) List(ctx context.Context, o ListOptions) ([]*Run, error) {
	p, err := s.ListPage(ctx, o)
	if err != nil {
		return nil, err
	}
	return p.Runs, nil
}

// ListPage returns one page of runs matching o, newest first, and the
// cursor of the next one.
func (s *Store) ListPage(ctx context.Context, o ListOptions) (*Page, error) {
	if o.Limit <= 0 {
		o.Limit = DefaultListLimit
	}
	if o.Limit > MaxListLimit {
		return nil, fmt.Errorf("list runs: %w: limit %d is above %d", ErrBadConfig, o.Limit, MaxListLimit)
	}
	var (
		p   *Page
		err error
	)
	if s.revision {
		p, err = s.listIndexed(ctx, o)
	} else {
		p, err = s.listQuery(ctx, o)
	}
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	return p, nil
}

// listQuery is List on MongoDB: one query; the cursor is the last run's
// creation time and id ("t<unix ms>:<id>").
func (s *Store) listQuery(ctx context.Context, o ListOptions) (*Page, error) {
	filter := bson.D{}
	if o.Status != "" {
		filter = append(filter, bson.E{Key: "status", Value: o.Status})
	}
	if o.TenantID != "" {
		filter = append(filter, bson.E{Key: "tenant_id", Value: o.TenantID})
	}
	if o.Cursor != "" {
		t, id, err := parseQueryCursor(o.Cursor)
		if err != nil {
			return nil, err
		}
		filter = append(filter, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "created_at", Value: bson.D{{Key: "$lt", Value: t}}}},
			bson.D{{Key: "created_at", Value: t}, {Key: "_id", Value: bson.D{{Key: "$lt", Value: id}}}},
		}})
	}
	opts := options.Find().
		SetSort(bson.D{{Key: "created_at", Value: -1}, {Key: "_id", Value: -1}}).
		SetLimit(int64(o.Limit + 1))
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	cur, err := s.runs.Find(ctx, filter, opts)
	if err != nil {
		return nil, err
	}
	var runs []*Run
	if err := cur.All(ctx, &runs); err != nil {
		return nil, err
	}
	p := &Page{Runs: runs}
	if len(runs) > o.Limit {
		p.Runs = runs[:o.Limit]
		last := p.Runs[o.Limit-1]
		p.Next = "t" + strconv.FormatInt(last.CreatedAt.UnixMilli(), 10) + ":" + last.ID
	}
	return p, nil
}

func parseQueryCursor(c string) (time.Time, string, error) {
	ms, id, ok := strings.Cut(strings.TrimPrefix(c, "t"), ":")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !strings.HasPrefix(c, "t") || !ok || err != nil || id == "" {
		return time.Time{}, "", fmt.Errorf("%w %q", ErrBadCursor, c)
	}
	return time.UnixMilli(n).UTC(), id, nil
}

// The run index (FerretDB): see the top of this file.
const (
	indexCollection = "run_index"
	indexHeadID     = "head"
	// indexChunk is how many entries List looks up at once.
	indexChunk = 16
	// maxIndexTries bounds the inserts of one Create that lose the race
	// for an entry. Each takes the next entry, so it is a search, not a
	// retry: no backoff.
	maxIndexTries = 1000
)

// indexEntry is entry n of the run index.
type indexEntry struct {
	ID       string `bson:"_id"` // "e:<n>"
	RunID    string `bson:"run_id"`
	TenantID string `bson:"tenant_id,omitempty"`
	// Incarnation is the run's (random per Create): an entry of a Create
	// that failed, or of a run deleted and created again, names none.
	Incarnation string `bson:"incarnation,omitempty"`
}

type indexHead struct {
	ID string `bson:"_id"`
	N  int64  `bson:"n"`
}

func indexEntryID(n int64) string { return "e:" + strconv.FormatInt(n, 10) }

// indexHint is the newest entry the head document names (0 if none).
func (s *Store) indexHint(ctx context.Context) (int64, error) {
	var h indexHead
	err := s.index.FindOne(ctx, bson.D{{Key: "_id", Value: indexHeadID}}).Decode(&h)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read the run index head: %w", err)
	}
	return h.N, nil
}

// indexRun gives run r, of incarnation inc, the next entry of the run
// index and returns its number.
func (s *Store) indexRun(ctx context.Context, r *Run, inc string) (int64, error) {
	n, err := s.indexHint(ctx)
	if err != nil {
		return 0, err
	}
	for range maxIndexTries {
		n++
		_, err := s.index.InsertOne(ctx, indexEntry{ID: indexEntryID(n), RunID: r.ID, TenantID: r.TenantID, Incarnation: inc})
		if mongo.IsDuplicateKeyError(err) {
			continue // taken: the hint was behind, or another Create won it
		}
		if err != nil {
			return 0, fmt.Errorf("insert run index entry %d: %w", n, err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("insert run index entry: %d entries after the head hint are taken", maxIndexTries)
}

// writeIndexHint makes the head document name entry n. Only a hint: its
// failure is no failure of the Create.
func (s *Store) writeIndexHint(ctx context.Context, n int64) {
	_, _ = s.index.ReplaceOne(ctx, bson.D{{Key: "_id", Value: indexHeadID}}, indexHead{ID: indexHeadID, N: n},
		options.Replace().SetUpsert(true))
}

// indexTop is the newest entry of the run index: the hint, then forward
// while the next entry exists.
func (s *Store) indexTop(ctx context.Context) (int64, error) {
	n, err := s.indexHint(ctx)
	if err != nil {
		return 0, err
	}
	for {
		err := s.index.FindOne(ctx, bson.D{{Key: "_id", Value: indexEntryID(n + 1)}}).Err()
		if errors.Is(err, mongo.ErrNoDocuments) {
			return n, nil
		}
		if err != nil {
			return 0, fmt.Errorf("read run index entry %d: %w", n+1, err)
		}
		n++
	}
}

// listed is what the walk found at one entry: a run to list, or nothing.
type listed struct {
	run *Run
	err error
}

// listIndexed is List on FerretDB: the walk of the run index. The cursor
// is the entry to go on below ("i<n>").
func (s *Store) listIndexed(ctx context.Context, o ListOptions) (*Page, error) {
	budget := o.Budget
	if budget <= 0 {
		budget = DefaultListBudget
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	start := time.Now()
	var top int64
	if o.Cursor != "" {
		n, err := strconv.ParseInt(strings.TrimPrefix(o.Cursor, "i"), 10, 64)
		if !strings.HasPrefix(o.Cursor, "i") || err != nil || n < 1 {
			return nil, fmt.Errorf("%w %q", ErrBadCursor, o.Cursor)
		}
		top = n - 1
	} else {
		var err error
		if top, err = s.indexTop(ctx); err != nil {
			return nil, err
		}
	}
	p := &Page{}
	n := top
	for n >= 1 {
		chunk := min(int64(indexChunk), n)
		found := make([]listed, chunk)
		var wg sync.WaitGroup
		for i := range chunk {
			wg.Go(func() { found[i] = s.listEntry(ctx, n-i, o) })
		}
		wg.Wait()
		for i, f := range found {
			if f.err != nil {
				return nil, f.err
			}
			if f.run == nil {
				continue
			}
			p.Runs = append(p.Runs, f.run)
			if len(p.Runs) == o.Limit {
				if at := n - int64(i); at > 1 {
					p.Next = "i" + strconv.FormatInt(at, 10)
				}
				return p, nil
			}
		}
		n -= chunk
		if n >= 1 && time.Since(start) > budget {
			p.Next = "i" + strconv.FormatInt(n+1, 10)
			return p, nil
		}
	}
	return p, nil
}

// listEntry reads entry n and its run, and returns the run if it matches.
func (s *Store) listEntry(ctx context.Context, n int64, o ListOptions) listed {
	var e indexEntry
	err := s.index.FindOne(ctx, bson.D{{Key: "_id", Value: indexEntryID(n)}}).Decode(&e)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return listed{}
	}
	if err != nil {
		return listed{err: fmt.Errorf("read run index entry %d: %w", n, err)}
	}
	if o.TenantID != "" && e.TenantID != o.TenantID {
		return listed{}
	}
	// The run document first: a run whose document does not match is not
	// followed to its latest revision (one lookup less per run walked; a
	// document lags its revisions only when a writer died between its
	// two writes, and the next read or write of the run brings it up).
	c, err := s.read(ctx, e.RunID, false)
	if errors.Is(err, ErrNotFound) {
		return listed{}
	}
	if err != nil {
		return listed{err: fmt.Errorf("read run %s: %w", e.RunID, err)}
	}
	match := func(r *Run) bool {
		return (o.Status == "" || r.Status == o.Status) && (o.TenantID == "" || r.TenantID == o.TenantID)
	}
	if c.incarnation != e.Incarnation || !match(c.run) {
		return listed{}
	}
	r := c.run
	behind, err := s.follow(ctx, e.RunID, c.doc)
	if err != nil {
		return listed{err: fmt.Errorf("read run %s: %w", e.RunID, err)}
	}
	if behind {
		if r, err = decodeRun(c.doc); err != nil {
			return listed{err: fmt.Errorf("read run %s: %w", e.RunID, err)}
		}
		if !match(r) {
			return listed{}
		}
	}
	return listed{run: r}
}

// backfillIndex gives the runs of a store made before the run index an
// entry each, oldest first. It runs once per database: the first process
// to insert the head document does it; a store without runs needs none.
func (s *Store) backfillIndex(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*s.timeout)
	defer cancel()
	if err := s.index.FindOne(ctx, bson.D{{Key: "_id", Value: indexHeadID}}).Err(); !errors.Is(err, mongo.ErrNoDocuments) {
		return err // indexed already, or the server did not answer
	}
	if err := s.runs.FindOne(ctx, bson.D{}).Err(); errors.Is(err, mongo.ErrNoDocuments) {
		return nil
	} else if err != nil {
		return err
	}
	if _, err := s.index.InsertOne(ctx, indexHead{ID: indexHeadID}); mongo.IsDuplicateKeyError(err) {
		return nil // another process does it
	} else if err != nil {
		return err
	}
	cur, err := s.runs.Find(ctx, bson.D{}, options.Find().
		SetProjection(bson.D{{Key: "tenant_id", Value: 1}, {Key: incarnationField, Value: 1}}).
		SetSort(bson.D{{Key: "created_at", Value: 1}, {Key: "_id", Value: 1}}))
	if err != nil {
		return err
	}
	var runs []struct {
		ID          string `bson:"_id"`
		TenantID    string `bson:"tenant_id"`
		Incarnation string `bson:"incarnation"`
	}
	if err := cur.All(ctx, &runs); err != nil {
		return err
	}
	batch := make([]any, 0, 1000)
	for i, r := range runs {
		batch = append(batch, indexEntry{ID: indexEntryID(int64(i + 1)), RunID: r.ID, TenantID: r.TenantID, Incarnation: r.Incarnation})
		if len(batch) == cap(batch) || i == len(runs)-1 {
			// Unordered: an entry a concurrent Create took is skipped.
			if _, err := s.index.InsertMany(ctx, batch, options.InsertMany().SetOrdered(false)); err != nil && !mongo.IsDuplicateKeyError(err) {
				return err
			}
			batch = batch[:0]
		}
	}
	_, err = s.index.ReplaceOne(ctx, bson.D{{Key: "_id", Value: indexHeadID}}, indexHead{ID: indexHeadID, N: int64(len(runs))})
	return err
}
