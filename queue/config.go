package queue

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Config names the JetStream objects runnerd uses and sets their limits.
// Every runnerd process of a fleet must use the same Config: they share one
// stream, one durable consumer and one lease bucket, and the last Setup wins.
type Config struct {
	Stream       string // work-queue stream holding the run messages
	Subject      string // subject runs are published on
	Consumer     string // durable pull consumer shared by every runnerd process
	CancelPrefix string // core NATS subject prefix; a run's cancel goes to <prefix>.<run_id>
	LeaseBucket  string // KV bucket holding one lease key per running run
	// AdmissionBucket is the KV bucket of concurrency groups and tenant
	// limits: the line of each group and who holds its places (package
	// admission).
	AdmissionBucket string

	// LeaseTTL is the lease bucket's TTL: a lease not renewed within it
	// expires. Holders renew every LeaseTTL/3.
	LeaseTTL time.Duration

	// AckWait is how long the server waits for an ack before it redelivers.
	// A runner keeps a long run's delivery alive with InProgress, so AckWait
	// bounds how long a silently dead runner holds a run, not how long a run
	// may take.
	AckWait time.Duration

	// MaxDeliver is how many times a message is delivered at most, or -1 for
	// no limit (the default). It is a far backstop only: a run's crash budget
	// is counted in its run document (supervisor Config.MaxAttempts), since
	// a delivery is also spent by every wait on a server or a lease, which
	// must never fail a run. When set, the supervisor fails the run on its
	// last delivery (Delivery.LastAttempt) rather than let the server drop it.
	MaxDeliver int

	// Backoff is the delay before a Nak'ed run is delivered again: delivery n
	// uses Backoff[n-1], the last entry repeating. Empty means no delay.
	//
	// It is deliberately not the consumer's BackOff: the server would then
	// use BackOff[n-1] as the ack wait of delivery n (AckWait is ignored), so
	// a running run would need InProgress faster than the shortest backoff,
	// and len(BackOff) would have to stay below MaxDeliver. The consumer
	// keeps one AckWait and the supervisor Naks with Delivery.NakWithBackoff.
	Backoff []time.Duration

	// MaxAckPending bounds the runs in flight in the whole fleet (every
	// process shares the durable consumer), so it must be large; a process
	// bounds its own concurrency by fetching only for its free slots.
	MaxAckPending int

	// DuplicateWindow is how long the stream remembers a Nats-Msg-Id.
	DuplicateWindow time.Duration

	// Replicas is the replica count of the stream, consumer and lease
	// bucket: 1 on a single server, 3 on a production cluster.
	Replicas int
}

// DefaultConfig returns the documented names and limits (docs/architecture.md,
// "Contracts the code keeps").
func DefaultConfig() Config {
	return Config{
		Stream:          "RUNNERD_RUNS",
		Subject:         "runnerd.runs",
		Consumer:        "runnerd",
		CancelPrefix:    "runnerd.cancel",
		LeaseBucket:     "runnerd_leases",
		AdmissionBucket: "runnerd_admission",
		LeaseTTL:        30 * time.Second,
		AckWait:         60 * time.Second,
		MaxDeliver:      -1,
		Backoff:         []time.Duration{10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute},
		MaxAckPending:   1000,
		DuplicateWindow: 2 * time.Minute,
		Replicas:        1,
	}
}

var (
	// Stream, consumer and bucket names: no subject tokens, no wildcards;
	// at most 64 bytes (validName).
	namePattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	// Literal subjects: dot-separated non-empty tokens, no wildcards.
	subjectPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
)

// Validate reports every field that cannot work, joined in one error.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(validName(c.Stream), "stream %q: want 1-64 letters, digits, '_' or '-'", c.Stream)
	check(subjectPattern.MatchString(c.Subject), "subject %q: want a literal subject like runnerd.runs", c.Subject)
	check(validName(c.Consumer), "consumer %q: want 1-64 letters, digits, '_' or '-'", c.Consumer)
	check(subjectPattern.MatchString(c.CancelPrefix), "cancel prefix %q: want a literal subject like runnerd.cancel", c.CancelPrefix)
	check(c.CancelPrefix != c.Subject && !strings.HasPrefix(c.Subject, c.CancelPrefix+"."),
		"cancel prefix %q overlaps the run subject %q", c.CancelPrefix, c.Subject)
	check(validName(c.LeaseBucket), "lease bucket %q: want 1-64 letters, digits, '_' or '-'", c.LeaseBucket)
	check(c.AdmissionBucket == "" || validName(c.AdmissionBucket), "admission bucket %q: want 1-64 letters, digits, '_' or '-'", c.AdmissionBucket)
	// A heartbeat every TTL/3 needs some room; the server's TTL granularity is about a second.
	check(c.LeaseTTL >= time.Second, "lease TTL %s: want at least 1s", c.LeaseTTL)
	check(c.AckWait > 0, "ack wait %s: want more than 0", c.AckWait)
	check(c.MaxDeliver == -1 || c.MaxDeliver >= 1, "max deliver %d: want -1 (no limit) or at least 1", c.MaxDeliver)
	for i, d := range c.Backoff {
		check(d > 0, "backoff[%d] %s: want more than 0", i, d)
	}
	check(c.MaxAckPending >= 1, "max ack pending %d: want at least 1 (it is fleet-wide: size it for the whole fleet)", c.MaxAckPending)
	check(c.DuplicateWindow > 0, "duplicate window %s: want more than 0", c.DuplicateWindow)
	check(c.Replicas >= 1 && c.Replicas <= 5, "replicas %d: want 1 to 5", c.Replicas)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("queue config: %w", err)
	}
	return nil
}

// RetryDelay is the delay before delivery numDelivered+1 of a Nak'ed run.
func (c Config) RetryDelay(numDelivered uint64) time.Duration {
	if len(c.Backoff) == 0 {
		return 0
	}
	if numDelivered <= 1 {
		return c.Backoff[0]
	}
	if numDelivered > uint64(len(c.Backoff)) {
		return c.Backoff[len(c.Backoff)-1]
	}
	return c.Backoff[numDelivered-1]
}

func validName(s string) bool { return len(s) <= 64 && namePattern.MatchString(s) }
