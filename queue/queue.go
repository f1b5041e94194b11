package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var (
	// ErrLeaseHeld means another runner holds the run's lease.
	ErrLeaseHeld = errors.New("lease held by another runner")
	// ErrLeaseLost means the lease is no longer ours: it expired, or another
	// runner acquired it since. Writes fenced by its epoch must stop.
	ErrLeaseLost = errors.New("lease lost")
	// ErrNoLease means nobody holds the run's lease.
	ErrNoLease = errors.New("no lease")
	// ErrUnknownVersion means the message's v is not Version.
	ErrUnknownVersion = errors.New("unknown message version")
	// ErrInvalidMessage means the message cannot be read or is incomplete;
	// it wraps a FieldError naming the field where one is to blame.
	ErrInvalidMessage = errors.New("invalid message")
	// ErrDuplicate means the stream already holds a message with this run id
	// and generation (within the duplicate window): nothing was published.
	ErrDuplicate = errors.New("duplicate message")
	// ErrNoStream means Open found no run stream: no runnerd serve or dev
	// has set the queue up on this NATS.
	ErrNoStream = errors.New("no run stream")
)

// flushTimeout bounds the round trip that makes a cancel subscription
// effective on the server before SubscribeCancel returns.
const flushTimeout = 5 * time.Second

// Queue is a set-up stream, consumer and lease bucket.
type Queue struct {
	cfg      Config
	js       jetstream.JetStream
	nc       *nats.Conn
	consumer jetstream.Consumer
	leases   jetstream.KeyValue
	stream   jetstream.Stream
	admitKV  jetstream.KeyValue // nil when the fleet's serve did not make it
}

// Setup creates or updates the stream, the durable consumer and the lease
// bucket. Every runnerd process calls it at start: it is idempotent, and a
// changed limit updates the existing objects (a change the server cannot
// make in place, such as the storage type, is an error).
func Setup(ctx context.Context, js jetstream.JetStream, cfg Config) (*Queue, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "runnerd runs waiting for a runner",
		Subjects:    []string{cfg.Subject},
		// Work-queue retention: an acked or termed run leaves the stream, so
		// its size is the backlog.
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		Duplicates: cfg.DuplicateWindow,
		Replicas:   cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("set up stream %s: %w", cfg.Stream, err)
	}
	consumer, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       cfg.Consumer,
		Description:   "runnerd runners (shared by every process)",
		FilterSubject: cfg.Subject,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    cfg.MaxDeliver,
		MaxAckPending: cfg.MaxAckPending,
		Replicas:      cfg.Replicas,
		// No BackOff: see Config.Backoff.
	})
	if err != nil {
		return nil, fmt.Errorf("set up consumer %s on stream %s: %w", cfg.Consumer, cfg.Stream, err)
	}
	leases, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.LeaseBucket,
		Description: "runnerd run leases (key: run id)",
		// A bucket TTL, not a per-key TTL: an Update (the heartbeat) makes a
		// per-key TTL permanent, while it restarts the bucket TTL's clock.
		TTL:      cfg.LeaseTTL,
		History:  1,
		Storage:  jetstream.FileStorage,
		Replicas: cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("set up lease bucket %s: %w", cfg.LeaseBucket, err)
	}
	q := &Queue{cfg: cfg, js: js, nc: js.Conn(), consumer: consumer, leases: leases, stream: stream}
	if cfg.AdmissionBucket != "" {
		// No TTL: a run waits in its group's line as long as it is queued;
		// the places are held by marks that count only while the holder's
		// lease lives.
		q.admitKV, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      cfg.AdmissionBucket,
			Description: "runnerd concurrency groups and tenant limits (package admission)",
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
		})
		if err != nil {
			return nil, fmt.Errorf("set up admission bucket %s: %w", cfg.AdmissionBucket, err)
		}
	}
	return q, nil
}

// Open binds to a stream, consumer and lease bucket that Setup created,
// changing nothing. Clients (submit, cancel, resume) use it so that their
// defaults never overwrite the limits a fleet was set up with, and so that
// they need no JetStream admin rights. A missing stream is ErrNoStream.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Queue, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	stream, err := js.Stream(ctx, cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("open stream %s: %w", cfg.Stream, ErrNoStream)
	}
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", cfg.Stream, err)
	}
	consumer, err := stream.Consumer(ctx, cfg.Consumer)
	if err != nil {
		return nil, fmt.Errorf("open consumer %s on stream %s (is a runnerd serving?): %w", cfg.Consumer, cfg.Stream, err)
	}
	leases, err := js.KeyValue(ctx, cfg.LeaseBucket)
	if err != nil {
		return nil, fmt.Errorf("open lease bucket %s: %w", cfg.LeaseBucket, err)
	}
	q := &Queue{cfg: cfg, js: js, nc: js.Conn(), consumer: consumer, leases: leases, stream: stream}
	if cfg.AdmissionBucket != "" {
		// Missing on a fleet whose serve predates it: groups then fail at
		// submit, everything else works.
		if kv, err := js.KeyValue(ctx, cfg.AdmissionBucket); err == nil {
			q.admitKV = kv
		}
	}
	return q, nil
}

// AdmissionKV is the bucket of concurrency groups and tenant limits, or nil
// when the queue was opened on a fleet that has none.
func (q *Queue) AdmissionKV() jetstream.KeyValue { return q.admitKV }

// Conn is the NATS connection the queue uses.
func (q *Queue) Conn() *nats.Conn { return q.nc }

// Config returns the configuration the queue was set up with.
func (q *Queue) Config() Config {
	c := q.cfg
	c.Backoff = append([]time.Duration(nil), q.cfg.Backoff...)
	return c
}

// msgID is the dedup id of a publish: the same run published again (after a
// shutdown, a resume) needs a new generation, or the stream drops it.
func msgID(runID string, generation int) string {
	return runID + "-" + strconv.Itoa(generation)
}

// Publish puts a run on the stream. generation distinguishes publishes of
// the same run (0 for the first, +1 for each republish); a repeat of the same
// run id and generation within the duplicate window is ErrDuplicate. hdr is
// optional and carries e.g. traceparent. A zero V or PublishedAt is filled in
// on a copy; the message is validated as Decode would.
func (q *Queue) Publish(ctx context.Context, msg *Message, generation int, hdr nats.Header) error {
	if msg == nil {
		return fmt.Errorf("publish: %w: nil message", ErrInvalidMessage)
	}
	if generation < 0 {
		return fmt.Errorf("publish run %s: generation %d: want 0 or more", msg.RunID, generation)
	}
	m := *msg
	if m.V == 0 {
		m.V = Version
	}
	if m.PublishedAt.IsZero() {
		m.PublishedAt = time.Now().UTC()
	}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("publish run %s: %w", m.RunID, err)
	}
	data, err := json.Marshal(&m)
	if err != nil {
		return fmt.Errorf("publish run %s: encode: %w", m.RunID, err)
	}
	out := &nats.Msg{Subject: q.cfg.Subject, Data: data, Header: nats.Header{}}
	for k, vs := range hdr {
		out.Header[k] = append([]string(nil), vs...)
	}
	ack, err := q.js.PublishMsg(ctx, out,
		jetstream.WithMsgID(msgID(m.RunID, generation)),
		// Refuse to land in another stream that happens to bind the subject.
		jetstream.WithExpectStream(q.cfg.Stream))
	if err != nil {
		return fmt.Errorf("publish run %s generation %d: %w", m.RunID, generation, err)
	}
	if ack.Duplicate {
		return fmt.Errorf("publish run %s generation %d: %w", m.RunID, generation, ErrDuplicate)
	}
	return nil
}

// Fetch takes up to n deliveries (n: the caller's free run slots). It
// returns at once with what is waiting; if nothing is, it waits up to wait
// for a first message and then takes whatever else is already there, so a
// run never sits in a half-filled batch. An empty result with a nil error
// means nothing came. wait < 1ms does not wait.
//
// It may return fewer than are waiting: the server answers the no-wait pull
// from a pending count that lags messages published a moment before. A
// supervisor loops on Fetch anyway; the next call gets them.
//
// If ctx ends while waiting, deliveries already received are Nak'ed (another
// runner gets them at once instead of after AckWait) and ctx's error is
// returned.
func (q *Queue) Fetch(ctx context.Context, n int, wait time.Duration) ([]*Delivery, error) {
	if n <= 0 {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("fetch from %s: %w", q.cfg.Consumer, err)
	}
	out, err := q.fetchNoWait(n)
	// Below a millisecond the pull request would expire before it is sent.
	if err != nil || len(out) > 0 || wait < time.Millisecond {
		return out, err
	}

	waitCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	batch, err := q.consumer.Fetch(1, jetstream.FetchContext(waitCtx))
	if err != nil {
		return nil, fmt.Errorf("fetch from %s: %w", q.cfg.Consumer, err)
	}
	out = q.collect(batch)
	err = batch.Error()
	if ctx.Err() != nil {
		for _, d := range out {
			_ = d.Nak() // best effort: otherwise it comes back after AckWait
		}
		return nil, fmt.Errorf("fetch from %s: %w", q.cfg.Consumer, ctx.Err())
	}
	// Our own wait running out is the empty result, not an error.
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		if len(out) > 0 {
			return out, nil // keep what came; the next Fetch reports a lasting error
		}
		return nil, fmt.Errorf("fetch from %s: %w", q.cfg.Consumer, err)
	}
	if len(out) == 0 || n == 1 {
		return out, nil
	}
	more, err := q.fetchNoWait(n - 1)
	if err != nil {
		return out, nil // the first one is ours already; the rest can wait
	}
	return append(out, more...), nil
}

func (q *Queue) fetchNoWait(n int) ([]*Delivery, error) {
	batch, err := q.consumer.FetchNoWait(n)
	if err != nil {
		return nil, fmt.Errorf("fetch from %s: %w", q.cfg.Consumer, err)
	}
	out := q.collect(batch)
	if err := batch.Error(); err != nil && len(out) == 0 {
		return nil, fmt.Errorf("fetch from %s: %w", q.cfg.Consumer, err)
	}
	return out, nil
}

func (q *Queue) collect(batch jetstream.MessageBatch) []*Delivery {
	var out []*Delivery
	for msg := range batch.Messages() {
		out = append(out, newDelivery(msg, q.cfg, q.nc))
	}
	return out
}

// Pending is the consumer's backlog: messages not yet delivered plus those
// delivered and not yet acked (the figure to scale the fleet on).
func (q *Queue) Pending(ctx context.Context) (uint64, error) {
	info, err := q.consumer.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("consumer %s info: %w", q.cfg.Consumer, err)
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}
