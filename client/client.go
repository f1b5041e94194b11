// Package client is runnerd's Go API: submit runs, read them, wait for them,
// follow their events, cancel, resume and retry them, read their logs.
//
// A Client talks to the fleet's servers directly — MongoDB for the runs and
// their events, NATS to queue runs, cancel them and hear when they finish,
// S3 for logs and large workflows — exactly as the runnerd commands do
// (they are built on this package). It never sets up or changes the stream,
// the consumer or the lease bucket: runnerd serve owns those.
//
// Every call takes a context. Errors are matched with errors.Is against
// ErrNotFound, ErrConflict, ErrInvalid and ErrUnreachable; their text says
// what and which run.
//
// Wait and Watch do not poll the store while a run goes on: runners publish
// a notice on runnerd.finished.<run id> after each terminal or paused
// transition, and one on runnerd.events.<run id> after each batch of events
// stored; the client reads the store when one arrives, and otherwise only
// every Options.PollInterval, for a notice it may have missed (core NATS
// delivers at most once).
package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
)

// Errors to match with errors.Is. Each is returned wrapped, with a message
// naming the run and what stands in the way.
var (
	// ErrNotFound: no run has this id (or, from Logs, the step has no log).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the run's state does not allow the call — the id is taken
	// by another submission, the run is not paused (Resume), not failed or
	// cancelled (Retry), or already finished otherwise (Cancel).
	ErrConflict = errors.New("conflict with the run's state")
	// ErrInvalid: the request itself is wrong (a bad id, a workflow or vars
	// that do not validate, answers to steps that are not human steps).
	ErrInvalid = errors.New("invalid request")
	// ErrUnreachable: a server (MongoDB, NATS or S3) could not be reached or
	// did not answer in time; the call may be repeated.
	ErrUnreachable = errors.New("server unreachable")
	// ErrNotConfigured: the call needs a connection the Client was not given
	// (Options.Queue for Submit, Cancel, Resume, Retry; Options.Blob for Logs).
	ErrNotConfigured = errors.New("client: connection not configured")
)

// Run is a run document; Event is one stored event of a run.
type (
	Run   = store.Run
	Event = store.StoredEvent
)

// Defaults of Options.
const (
	DefaultTenant            = "default"
	DefaultPollInterval      = 10 * time.Second
	DefaultInlineWorkflowMax = 256 << 10
)

// Options are the connections a Client uses and its defaults. Store is
// required; the others are needed only by the calls that use them.
type Options struct {
	Store *store.Store
	// Queue is opened read-only (queue.Open); it carries the NATS
	// connection used for notices and cancels.
	Queue *queue.Queue
	// Blob returns the S3 store, opened on first use; nil means none.
	Blob func(context.Context) (*blob.Store, error)
	// Tenant of submitted runs when a Submission names none.
	Tenant string
	// PollInterval: how often Wait and Watch read the store when no notice
	// came (DefaultPollInterval when zero). Without a Queue there are no
	// notices, and they read every 250 ms.
	PollInterval time.Duration
	// InlineWorkflowMax: the largest workflow (as JSON) carried in the run's
	// message; a larger one goes to S3 (DefaultInlineWorkflowMax when zero).
	InlineWorkflowMax int
}

// Client is safe for concurrent use.
type Client struct {
	st     *store.Store
	q      *queue.Queue
	nc     *nats.Conn
	blob   func(context.Context) (*blob.Store, error)
	tenant string
	poll   time.Duration
	inline int

	closers []func()
}

// New returns a client on connections the caller opened (and closes).
func New(o Options) (*Client, error) {
	if o.Store == nil {
		return nil, fmt.Errorf("%w: Options.Store is required", ErrNotConfigured)
	}
	c := &Client{st: o.Store, q: o.Queue, blob: o.Blob, tenant: o.Tenant, poll: o.PollInterval, inline: o.InlineWorkflowMax}
	if c.q != nil {
		c.nc = c.q.Conn()
	}
	if c.tenant == "" {
		c.tenant = DefaultTenant
	}
	if c.poll <= 0 {
		c.poll = DefaultPollInterval
	}
	if c.inline <= 0 {
		c.inline = DefaultInlineWorkflowMax
	}
	return c, nil
}

// Config says where the servers are, for Dial.
type Config struct {
	NATSURL     string        // one URL or a comma-separated list
	NATSOptions []nats.Option // credentials, TLS, name
	Mongo       store.Config
	S3          *blob.Config // nil: no S3 (Logs and workflows over the inline limit fail)
	Tenant      string
	// PollInterval and InlineWorkflowMax as in Options.
	PollInterval      time.Duration
	InlineWorkflowMax int
}

// Dial connects to the servers of cfg and returns a client that owns the
// connections (Close closes them).
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	var closers []func()
	fail := func(err error) (*Client, error) {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		return nil, err
	}
	// The two connections are made at once: each costs a few round trips
	// (MongoDB's SCRAM, NATS's INFO/CONNECT), and a command waits for both.
	var nc *nats.Conn
	var natsErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		nc, natsErr = nats.Connect(cfg.NATSURL, append([]nats.Option{nats.MaxReconnects(-1)}, cfg.NATSOptions...)...)
	})
	st, err := store.Open(ctx, cfg.Mongo)
	wg.Wait()
	if nc != nil {
		closers = append(closers, nc.Close)
	}
	if err != nil {
		return fail(classify(fmt.Errorf("connect to MongoDB: %w", err)))
	}
	closers = append(closers, func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = st.Close(cctx)
	})
	if natsErr != nil {
		return fail(unreachable(fmt.Errorf("connect to NATS at %s: %w", cfg.NATSURL, natsErr)))
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fail(fmt.Errorf("JetStream: %w", err))
	}
	q, err := queue.Open(ctx, js, queue.DefaultConfig())
	if err != nil {
		if errors.Is(err, queue.ErrNoStream) {
			return fail(unreachable(fmt.Errorf("no stream %s on %s: is runnerd serve or dev running? %w", queue.DefaultConfig().Stream, cfg.NATSURL, err)))
		}
		return fail(classify(fmt.Errorf("open the queue: %w", err)))
	}
	o := Options{Store: st, Queue: q, Tenant: cfg.Tenant, PollInterval: cfg.PollInterval, InlineWorkflowMax: cfg.InlineWorkflowMax}
	if cfg.S3 != nil {
		s3cfg := *cfg.S3
		var once sync.Once
		var bs *blob.Store
		var berr error
		o.Blob = func(ctx context.Context) (*blob.Store, error) {
			once.Do(func() {
				bs, berr = blob.New(ctx, s3cfg)
				if berr != nil {
					berr = unreachable(fmt.Errorf("connect to S3 at %s: %w", s3cfg.Endpoint, berr))
				}
			})
			return bs, berr
		}
	}
	c, err := New(o)
	if err != nil {
		return fail(err)
	}
	c.closers = closers
	return c, nil
}

// Close closes the connections Dial opened; for a client of New it does
// nothing.
func (c *Client) Close() {
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i]()
	}
	c.closers = nil
}

// Store is the store the client reads (for callers that need more of it).
func (c *Client) Store() *store.Store { return c.st }

func (c *Client) queue(what string) (*queue.Queue, error) {
	if c.q == nil {
		return nil, fmt.Errorf("%s: %w (no Options.Queue)", what, ErrNotConfigured)
	}
	return c.q, nil
}

func (c *Client) blobs(ctx context.Context, what string) (*blob.Store, error) {
	if c.blob == nil {
		return nil, fmt.Errorf("%s: %w (no Options.Blob)", what, ErrNotConfigured)
	}
	b, err := c.blob(ctx)
	if err != nil {
		return nil, classify(err)
	}
	return b, nil
}

// marked keeps an error's text and adds a sentinel to what it matches.
type marked struct {
	sentinel error
	err      error
}

func (m *marked) Error() string   { return m.err.Error() }
func (m *marked) Unwrap() []error { return []error{m.sentinel, m.err} }

func mark(sentinel, err error) error {
	if err == nil || errors.Is(err, sentinel) {
		return err
	}
	return &marked{sentinel: sentinel, err: err}
}

func unreachable(err error) error { return mark(ErrUnreachable, err) }

// classify marks the errors of the store, NATS and S3 that mean "could not
// ask": the server is away or did not answer.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return mark(ErrNotFound, err)
	case store.IsUnavailable(err),
		errors.Is(err, nats.ErrNoServers), errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrNoResponders):
		return unreachable(err)
	}
	return err
}
