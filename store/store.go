// Package store keeps runs and their events in MongoDB.
//
// runnerd is the only writer. Every write made on behalf of a claimed run is
// conditional on the run's fencing epoch (the lease revision at claim), so a
// runner that lost its lease changes nothing and gets ErrFenced. Status
// changes follow the transitions of DESIGN.md; an illegal one is refused with
// ErrIllegalTransition and nothing is applied.
//
// The same code runs against MongoDB and against FerretDB on SQLite (the
// embedded default). FerretDB only pushes a filter on a string _id down to
// SQLite; any other filter scans the collection. Run documents are therefore
// keyed by the run id, and each write touches one run.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
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
	// ErrNoURI: Config.URI is empty.
	ErrNoURI = errors.New("store: Config.URI is required")
)

// Defaults of Config.
const (
	DefaultDatabase = "runnerd"
	DefaultTimeout  = 10 * time.Second

	// DefaultEventsLimit bounds Events when the caller gives no limit.
	DefaultEventsLimit = 1000
)

// Collection names.
const (
	runsCollection   = "runs"
	eventsCollection = "events"
)

// Config says which server and database to use.
type Config struct {
	URI      string        // mongodb://host:port/
	Database string        // DefaultDatabase when empty
	Timeout  time.Duration // per call; DefaultTimeout when zero
}

// Store is a connection to the run store. It is safe for concurrent use.
type Store struct {
	client  *mongo.Client
	runs    *mongo.Collection
	events  *mongo.Collection
	timeout time.Duration
	appends stripedLocks
	writes  stripedLocks // conditional writes of one run, in checkThenWrite mode
	// checkThenWrite is set on FerretDB: see applyChecked.
	checkThenWrite bool
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
	// Server selection waits 30 s by default; an unreachable store must be
	// reported within one call's timeout so the delivery can be Nak'ed.
	opts := options.Client().ApplyURI(cfg.URI).SetServerSelectionTimeout(cfg.Timeout)
	client, err := mongo.Connect(opts)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	db := client.Database(cfg.Database)
	s := &Store{
		client:  client,
		runs:    db.Collection(runsCollection),
		events:  db.Collection(eventsCollection),
		timeout: cfg.Timeout,
	}
	if err := s.ensureIndexes(ctx); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, fmt.Errorf("open store: %w", err)
	}
	s.checkThenWrite = s.isFerretDB(ctx)
	return s, nil
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
