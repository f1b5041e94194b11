// Package store keeps runs and their events in MongoDB.
//
// runnerd is the only writer. Every write made on behalf of a claimed run is
// conditional on the run's fencing epoch (the lease revision at claim), so a
// runner that lost its lease changes nothing and gets ErrFenced. Status
// changes follow the documented transitions (CanTransition); an illegal one is refused with
// ErrIllegalTransition and nothing is applied.
//
// The same code runs against MongoDB and against FerretDB (on SQLite, the
// embedded default, or on PostgreSQL). The two differ in what is atomic, so
// the store has two write paths (WritePath): on MongoDB each conditional
// write is one conditional update; FerretDB runs an update as a read, then
// an unconditional rewrite of the whole document, so there each write is an
// insert of the run's next revision, which a unique _id makes atomic
// (revisions.go). FerretDB only pushes a filter on a string _id down to
// SQLite; any other filter scans the collection. Run documents and their
// revisions are therefore keyed by strings, and each write touches one run.
package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"
)

// Errors callers match with errors.Is. Each is returned wrapped with the
// operation and the run id.
var (
	// ErrNotFound: no run has this id.
	ErrNotFound = errors.New("run not found")
	// ErrExists: a run with this id was already created.
	ErrExists = errors.New("run already exists")
	// ErrFenced: the run was claimed with a newer epoch than the caller's (or
	// never claimed with the caller's); the caller lost the run and nothing
	// was written.
	ErrFenced = errors.New("fenced: run is owned by a newer epoch")
	// ErrTerminal: the run has finished (succeeded, failed or cancelled) and
	// will not change again.
	ErrTerminal = errors.New("run is terminal")
	// ErrIllegalTransition: the status change is not allowed from the run's
	// current status; nothing was written.
	ErrIllegalTransition = errors.New("illegal status transition")
	// ErrSeqConflict: a batch of events does not start right after the run's
	// last event (and is not a batch that landed already); nothing was
	// written.
	ErrSeqConflict = errors.New("event seq conflict")
	// ErrNoURI: Config.URI is empty.
	ErrNoURI = errors.New("store: Config.URI is required")
	// ErrBadConfig: a Config field has a value the store does not accept.
	ErrBadConfig = errors.New("store: bad config")
)

// Defaults of Config.
const (
	DefaultDatabase = "runnerd"
	DefaultTimeout  = 10 * time.Second

	// DefaultWriteConcern and DefaultReadConcern apply when neither Config
	// nor the URI names one.
	DefaultWriteConcern = "majority"
	DefaultReadConcern  = "majority"

	// DefaultEventsLimit bounds Events when the caller gives no limit.
	DefaultEventsLimit = 1000
)

// Collection names.
const (
	runsCollection      = "runs"
	eventsCollection    = "events"
	revisionsCollection = "run_revisions"
	// EventCopiesCollection holds, where the server scans for a run's
	// events (FerretDB on SQLite), a copy of each visible event under the
	// _id "<run id>:<seq>" (events.go).
	EventCopiesCollection = "event_copies"
)

// WritePath is how the store makes a conditional write atomic.
type WritePath string

const (
	// WritePathAuto picks WritePathRevision on FerretDB (it names itself in
	// buildInfo) and WritePathConditional on anything else.
	WritePathAuto WritePath = "auto"
	// WritePathConditional makes each write one conditional update (or
	// findAndModify) whose filter holds the guard: atomic on MongoDB, not
	// on FerretDB.
	WritePathConditional WritePath = "conditional"
	// WritePathRevision makes each write an insert of the run's next
	// revision (atomic wherever a unique _id is), then a rewrite of the run
	// document; readers follow the revisions past the document.
	WritePathRevision WritePath = "revision"
)

// ParseWritePath reads a WritePath; empty is WritePathAuto.
func ParseWritePath(s string) (WritePath, error) {
	switch p := WritePath(s); p {
	case "":
		return WritePathAuto, nil
	case WritePathAuto, WritePathConditional, WritePathRevision:
		return p, nil
	}
	return "", fmt.Errorf("%w: write path %q: want auto, conditional or revision", ErrBadConfig, s)
}

// Config says which server and database to use, and how writes are made.
type Config struct {
	URI      string        // mongodb://host:port/
	Database string        // DefaultDatabase when empty
	Timeout  time.Duration // per call; DefaultTimeout when zero

	// WritePath: WritePathAuto when empty. Every process writing to one
	// database must use the same path.
	WritePath WritePath

	// WriteConcern of every write: "majority" or a number of members, always
	// journaled. Empty: the URI's w (and journal) if it sets one, else
	// DefaultWriteConcern. w 0 is refused: an unacknowledged write cannot be
	// fenced.
	WriteConcern string
	// ReadConcern of every read: "majority", "linearizable" or "local".
	// Empty: the URI's readConcernLevel if set, else DefaultReadConcern.
	ReadConcern string

	// Monitor, when set, sees every command the driver sends (tests count
	// the reads a caller makes with it).
	Monitor *event.CommandMonitor
}

// Store is a connection to the run store. It is safe for concurrent use.
type Store struct {
	client    *mongo.Client
	runs      *mongo.Collection
	events    *mongo.Collection
	revisions *mongo.Collection
	copies    *mongo.Collection // EventCopiesCollection
	index     *mongo.Collection // the run index of List on the revision path (list.go)
	timeout   time.Duration
	appends   stripedLocks
	writes    stripedLocks // writes of one run in this process, on the revision path
	// revision is set on WritePathRevision: see revisions.go.
	revision bool
	// eventKeys says whether the server would read the whole events
	// collection for a run's events (FerretDB on SQLite), so that the store
	// keeps and reads copies of them by key (events.go): 0 not asked yet,
	// 1 yes, 2 no.
	eventKeys atomic.Int32
}

// Open connects, checks the server answers and creates the indexes (an index
// that already exists is left as it is).
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.URI == "" {
		return nil, ErrNoURI
	}
	if cfg.Database == "" {
		cfg.Database = DefaultDatabase
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	path, err := ParseWritePath(string(cfg.WritePath))
	if err != nil {
		return nil, err
	}
	// Server selection waits 30 s by default; an unreachable store must be
	// reported within one call's timeout so the delivery can be Nak'ed.
	opts := options.Client().ApplyURI(cfg.URI).SetServerSelectionTimeout(cfg.Timeout)
	if err := setConcerns(opts, cfg); err != nil {
		return nil, err
	}
	if cfg.Monitor != nil {
		opts.SetMonitor(cfg.Monitor)
	}
	client, err := mongo.Connect(opts)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	db := client.Database(cfg.Database)
	s := &Store{
		client:    client,
		runs:      db.Collection(runsCollection),
		events:    db.Collection(eventsCollection),
		revisions: db.Collection(revisionsCollection),
		copies:    db.Collection(EventCopiesCollection),
		index:     db.Collection(indexCollection),
		timeout:   cfg.Timeout,
	}
	if err := s.ensureIndexes(ctx); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, fmt.Errorf("open store: %w", err)
	}
	switch path {
	case WritePathAuto:
		s.revision = s.isFerretDB(ctx)
	case WritePathRevision:
		s.revision = true
	}
	if s.revision {
		if err := s.backfillIndex(ctx); err != nil {
			_ = client.Disconnect(context.Background())
			return nil, fmt.Errorf("open store: index the runs: %w", err)
		}
	}
	return s, nil
}

// Database is the name of the store's database.
func (s *Store) Database() string { return s.runs.Database().Name() }

// WritePath says which write path the store uses.
func (s *Store) WritePath() WritePath {
	if s.revision {
		return WritePathRevision
	}
	return WritePathConditional
}

// setConcerns gives the client the write and read concern of cfg, else of
// the URI, else the defaults. Run state must survive a failover: a write
// acknowledged by the primary alone (w:1, the implicit default of a
// primary-secondary-arbiter set) can be rolled back, and a read at "local"
// can see a write that will be.
func setConcerns(opts *options.ClientOptions, cfg Config) error {
	// ApplyURI has set opts.WriteConcern and opts.ReadConcern when the URI
	// names them.
	switch {
	case cfg.WriteConcern != "":
		w, err := parseWriteConcern(cfg.WriteConcern)
		if err != nil {
			return err
		}
		opts.SetWriteConcern(w)
	case opts.WriteConcern != nil:
		if !opts.WriteConcern.Acknowledged() {
			return fmt.Errorf("%w: the URI sets w=0: an unacknowledged write cannot be fenced", ErrBadConfig)
		}
	default:
		w, _ := parseWriteConcern(DefaultWriteConcern)
		opts.SetWriteConcern(w)
	}
	switch rc := cfg.ReadConcern; {
	case rc == "majority" || rc == "linearizable" || rc == "local":
		opts.SetReadConcern(&readconcern.ReadConcern{Level: rc})
	case rc != "":
		return fmt.Errorf("%w: read concern %q: want majority, linearizable or local", ErrBadConfig, rc)
	case opts.ReadConcern == nil:
		opts.SetReadConcern(&readconcern.ReadConcern{Level: DefaultReadConcern})
	}
	return nil
}

// parseWriteConcern reads "majority" or a member count; journaled either way.
func parseWriteConcern(v string) (*writeconcern.WriteConcern, error) {
	journal := true
	if v == "majority" {
		return &writeconcern.WriteConcern{W: "majority", Journal: &journal}, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 1 {
		return nil, fmt.Errorf("%w: write concern %q: want majority or a number of members >= 1", ErrBadConfig, v)
	}
	return &writeconcern.WriteConcern{W: n, Journal: &journal}, nil
}

// isFerretDB asks the server what it is: FerretDB names itself in buildInfo.
func (s *Store) isFerretDB(ctx context.Context) bool {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	var info bson.M
	err := s.client.Database("admin").RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info)
	_, ferret := info["ferretdbVersion"]
	return err == nil && ferret
}

// keyedEvents says whether the server would scan for a filter on run_id,
// so that the store keeps copies of the visible events under keys and reads
// those (events.go). It asks the server, with explain, the first time it
// needs to know, and again after an answer it could not get: FerretDB says
// in filterPushdown whether it evaluates a filter itself, false on its
// SQLite backend (only a lone _id is pushed down there) and true on
// PostgreSQL. Any other answer (MongoDB has no such field) means the query
// is the server's to serve.
func (s *Store) keyedEvents(ctx context.Context) bool {
	switch s.eventKeys.Load() {
	case 1:
		return true
	case 2:
		return false
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	var res bson.M
	cmd := bson.D{{Key: "explain", Value: bson.D{
		{Key: "find", Value: eventsCollection},
		{Key: "filter", Value: bson.D{{Key: "run_id", Value: "explain"}}},
	}}}
	if err := s.runs.Database().RunCommand(ctx, cmd).Decode(&res); err != nil {
		return false
	}
	if pushed, ok := res["filterPushdown"].(bool); ok && !pushed {
		s.eventKeys.Store(1)
		return true
	}
	s.eventKeys.Store(2)
	return false
}

func (s *Store) ensureIndexes(ctx context.Context) error {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	if err := s.client.Ping(ctx, nil); err != nil {
		return err
	}
	want := []struct {
		coll  *mongo.Collection
		name  string
		model mongo.IndexModel
	}{
		{s.events, "run_id_seq", mongo.IndexModel{
			Keys:    bson.D{{Key: "run_id", Value: 1}, {Key: "seq", Value: 1}},
			Options: options.Index().SetUnique(true).SetName("run_id_seq"),
		}},
		{s.runs, "status", mongo.IndexModel{Keys: bson.D{{Key: "status", Value: 1}}, Options: options.Index().SetName("status")}},
		{s.runs, "created_at", mongo.IndexModel{Keys: bson.D{{Key: "created_at", Value: -1}}, Options: options.Index().SetName("created_at")}},
		// Also creates the collection, so that runnerd dev indexes its _id
		// lookups at start (see devstack.IndexIDLookups).
		{s.revisions, "run_id", mongo.IndexModel{Keys: bson.D{{Key: "run_id", Value: 1}}, Options: options.Index().SetName("run_id")}},
		// Also creates the collection, for the same reason (the event
		// copies are read by _id).
		{s.copies, "run_id", mongo.IndexModel{Keys: bson.D{{Key: "run_id", Value: 1}}, Options: options.Index().SetName("run_id")}},
		// Also creates the collection, for the same reason (List on FerretDB
		// looks its entries up by _id).
		{s.index, "run_id", mongo.IndexModel{Keys: bson.D{{Key: "run_id", Value: 1}}, Options: options.Index().SetName("run_id")}},
	}
	for _, w := range want {
		name := w.name
		exists, err := hasIndex(ctx, w.coll, name)
		if err != nil {
			return fmt.Errorf("list indexes of %s: %w", w.coll.Name(), err)
		}
		// Only missing indexes are created, one per call: FerretDB drops
		// the connection when createIndexes names an index that exists.
		if exists {
			continue
		}
		if _, err := w.coll.Indexes().CreateOne(ctx, w.model); err != nil {
			return fmt.Errorf("create index %s.%s: %w", w.coll.Name(), name, err)
		}
	}
	return nil
}

func hasIndex(ctx context.Context, coll *mongo.Collection, name string) (bool, error) {
	specs, err := coll.Indexes().ListSpecifications(ctx)
	if err != nil {
		return false, err
	}
	for _, sp := range specs {
		if sp.Name == name {
			return true, nil
		}
	}
	return false, nil
}

// Close disconnects from the server.
func (s *Store) Close(ctx context.Context) error {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	if err := s.client.Disconnect(ctx); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// Ping reports whether the server answers within one call's timeout.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	if err := s.client.Ping(ctx, nil); err != nil {
		return fmt.Errorf("ping store: %w", err)
	}
	return nil
}

// IsUnavailable reports whether err means the server could not be reached or
// did not answer in time, as opposed to a refusal (fenced, not found, ...).
// The supervisor leaves the run untouched and Naks the delivery with a delay.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var sel topology.ServerSelectionError
	return mongo.IsNetworkError(err) ||
		mongo.IsTimeout(err) ||
		errors.As(err, &sel) ||
		errors.Is(err, mongo.ErrClientDisconnected)
}

func (s *Store) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// now is the store's clock, cut to what BSON dates hold so that a value
// returned by a call equals the stored one.
func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }
