package store

// The revision write path (WritePathRevision), for FerretDB.
//
// FerretDB v1 runs an update or findAndModify as a query, then a rewrite of
// each matching document by _id in a transaction of its own: the filter is
// not checked again when the document is written, and the whole document is
// written back as it was read plus the update. Two processes updating one
// run can therefore both pass a guard, and the later rewrite undoes the
// earlier one. What FerretDB does make atomic, on SQLite and on PostgreSQL,
// is an insert against a unique index.
//
// So every write of a run is an insert of its next revision: a document
// {_id: "<run id>:<incarnation>:<n>", set, unset} in run_revisions holding
// the top-level fields the write changed. Revision n+1 is computed from the
// run as of revision n; of two writers that read revision n only one can
// insert n+1, the other reads again and checks its guard against the
// winner's state. Then the run document is rewritten as of revision n+1
// (field "revision"). That rewrite is unconditional and may be lost or
// arrive late, so a reader takes the run document and applies the
// revisions after its "revision" until the next one is missing: one more
// lookup by _id per read, which is the lookup FerretDB is fast at. The
// incarnation (random per Create) keeps the revisions of a run id that was
// created again from meeting older ones.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Fields of a run document that only the store reads.
const (
	revisionField    = "revision"    // the revision the document holds (0: as created)
	incarnationField = "incarnation" // random per Create; part of the revisions' ids
)

// maxRevisionTries bounds the inserts of one write that lose to a
// concurrent write of the same run. The next try reads the revision that
// won and is made at once; a try refused on the document alone is read
// again at its latest, hence a loop of its own rather than backoff.Retry.
const maxRevisionTries = 16

// revision is one write of a run on the revision path.
type revision struct {
	ID    string   `bson:"_id"`
	RunID string   `bson:"run_id"`
	Set   bson.Raw `bson:"set"`             // top-level fields and their new values
	Unset []string `bson:"unset,omitempty"` // top-level fields removed
}

func revisionID(id, incarnation string, n int64) string {
	return id + ":" + incarnation + ":" + strconv.FormatInt(n, 10)
}

func newIncarnation() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// current is a run as of its latest revision.
type current struct {
	doc         bson.M // the run document as of rev, revisionField included
	rev         int64
	incarnation string
	run         *Run
}

// resolve reads run id as of its latest revision. A run document found
// behind its revisions is rewritten (best effort; the next reader would
// follow them again).
func (s *Store) resolve(ctx context.Context, id string) (*current, error) {
	return s.read(ctx, id, true)
}

// read reads run id, as of its latest revision when latest is set, else as
// of the revision its document holds (which a writer may use for a write
// its guard allows: the insert of the next revision fails if the document
// was behind).
func (s *Store) read(ctx context.Context, id string, latest bool) (*current, error) {
	raw, err := s.runs.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Raw()
	if err != nil {
		if errors.Is(err, mongo.ErrNoDocuments) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	doc, err := decodeM(raw)
	if err != nil {
		return nil, fmt.Errorf("decode run %s: %w", id, err)
	}
	behind := false
	if latest {
		if behind, err = s.follow(ctx, id, doc); err != nil {
			return nil, err
		}
	}
	c := &current{doc: doc, rev: asInt64(doc[revisionField])}
	c.incarnation, _ = doc[incarnationField].(string)
	if c.run, err = decodeRun(doc); err != nil {
		return nil, err
	}
	if behind {
		_ = s.putDoc(ctx, id, doc)
	}
	return c, nil
}

// follow applies to doc the revisions of run id after the one it holds and
// reports whether there were any.
func (s *Store) follow(ctx context.Context, id string, doc bson.M) (bool, error) {
	rev := asInt64(doc[revisionField])
	inc, _ := doc[incarnationField].(string)
	behind := false
	for {
		var r revision
		err := s.revisions.FindOne(ctx, bson.D{{Key: "_id", Value: revisionID(id, inc, rev+1)}}).Decode(&r)
		if errors.Is(err, mongo.ErrNoDocuments) {
			return behind, nil
		}
		if err != nil {
			return false, fmt.Errorf("read revision %d of run %s: %w", rev+1, id, err)
		}
		set, err := decodeM(r.Set)
		if err != nil {
			return false, fmt.Errorf("decode revision %d of run %s: %w", rev+1, id, err)
		}
		for k, v := range set {
			doc[k] = v
		}
		for _, k := range r.Unset {
			delete(doc, k)
		}
		rev++
		doc[revisionField] = rev
		behind = true
	}
}

// writeRevision makes one write of run id on the revision path. check sees
// the run as of its latest revision and refuses the write (err), finds it
// already made (done, returned as is), or lets it through (both nil); then
// update is applied as MongoDB would apply it and stored as the next
// revision. It returns the run after the write.
func (s *Store) writeRevision(ctx context.Context, id string, check func(*Run) (*Run, error), update bson.D) (*Run, error) {
	mu := s.writes.lock(id) // spares this process's writes of one run a lost race against each other
	mu.Lock()
	defer mu.Unlock()
	// The first try reads the run document alone: if it is behind its
	// revisions, the insert of the next one fails and the run is read
	// again as of its latest. A refusal is always checked against the
	// latest.
	latest := false
	for range maxRevisionTries {
		cur, err := s.read(ctx, id, latest)
		if err != nil {
			return nil, err
		}
		done, err := check(cur.run)
		if err != nil || done != nil {
			if !latest {
				latest = true
				continue
			}
			return done, err
		}
		set, unset, err := applyUpdate(cur.doc, update)
		if err != nil {
			return nil, fmt.Errorf("update of run %s: %w", id, err)
		}
		rev := cur.rev + 1
		setRaw, err := bson.Marshal(set)
		if err != nil {
			return nil, err
		}
		_, err = s.revisions.InsertOne(ctx, revision{ID: revisionID(id, cur.incarnation, rev), RunID: id, Set: setRaw, Unset: unset})
		if mongo.IsDuplicateKeyError(err) {
			latest = true
			continue // another write took this revision: check again against it
		}
		if err != nil {
			return nil, err
		}
		cur.doc[revisionField] = rev
		// The write is made; readers follow the revision if this is lost.
		_ = s.putDoc(ctx, id, cur.doc)
		return decodeRun(cur.doc)
	}
	return nil, errContended
}

// putDoc rewrites the run document.
func (s *Store) putDoc(ctx context.Context, id string, doc bson.M) error {
	_, err := s.runs.ReplaceOne(ctx, bson.D{{Key: "_id", Value: id}}, doc)
	return err
}

// applyUpdate applies a MongoDB update ($set, $unset, $inc, $push) to doc
// and returns the top-level fields it set and removed. $set takes top-level
// fields and dotted paths into subdocuments; $unset, $inc and $push (of one
// value) top-level fields. Anything else is refused: the store's writes use
// no more.
func applyUpdate(doc bson.M, update bson.D) (bson.M, []string, error) {
	set := bson.M{}
	var unset []string
	for _, op := range update {
		raw, err := bson.Marshal(op.Value)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", op.Key, err)
		}
		fields, err := decodeM(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", op.Key, err)
		}
		for k, v := range fields {
			top, rest, dotted := strings.Cut(k, ".")
			switch {
			case op.Key == "$set" && !dotted:
				doc[k] = v
			case op.Key == "$set":
				sub, _ := doc[top].(bson.M)
				if sub == nil {
					sub = bson.M{}
				}
				setPath(sub, rest, v)
				doc[top] = sub
			case op.Key == "$unset" && !dotted:
				delete(doc, k)
				unset = append(unset, k)
				delete(set, k)
				continue
			case op.Key == "$push" && !dotted:
				arr, isArr := doc[k].(bson.A)
				if doc[k] != nil && !isArr {
					return nil, nil, fmt.Errorf("$push %s: the field is not an array", k)
				}
				if m, ok := v.(bson.M); ok && hasOperator(m) {
					return nil, nil, fmt.Errorf("$push %s: modifiers are not supported on the revision path", k)
				}
				doc[k] = append(append(bson.A{}, arr...), v)
			case op.Key == "$inc" && !dotted:
				n, ok := asNumber(v)
				if !ok {
					return nil, nil, fmt.Errorf("$inc %s: %v is not a number", k, v)
				}
				doc[k] = asInt64(doc[k]) + n
			default:
				return nil, nil, fmt.Errorf("%s %s: not supported on the revision path", op.Key, k)
			}
			set[top] = doc[top]
			unset = slices.DeleteFunc(unset, func(u string) bool { return u == top })
		}
	}
	return set, unset, nil
}

func hasOperator(m bson.M) bool {
	for k := range m {
		if strings.HasPrefix(k, "$") {
			return true
		}
	}
	return false
}

// setPath sets a dotted path inside m, making the subdocuments it lacks.
func setPath(m bson.M, path string, v any) {
	for {
		k, rest, more := strings.Cut(path, ".")
		if !more {
			m[k] = v
			return
		}
		sub, _ := m[k].(bson.M)
		if sub == nil {
			sub = bson.M{}
			m[k] = sub
		}
		m, path = sub, rest
	}
}

// decodeM decodes a document with every subdocument as a bson.M.
func decodeM(raw []byte) (bson.M, error) {
	dec := bson.NewDecoder(bson.NewDocumentReader(bytes.NewReader(raw)))
	dec.DefaultDocumentM()
	var m bson.M
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

func decodeRun(doc bson.M) (*Run, error) {
	raw, err := bson.Marshal(doc)
	if err != nil {
		return nil, err
	}
	var r Run
	if err := bson.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("decode run: %w", err)
	}
	return &r, nil
}

func asNumber(v any) (int64, bool) {
	switch n := v.(type) {
	case int32:
		return int64(n), true
	case int64:
		return n, true
	case float64:
		return int64(n), true
	}
	return 0, false
}

// asInt64 reads a stored number; absent is 0.
func asInt64(v any) int64 {
	n, _ := asNumber(v)
	return n
}
