package queue

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Delivery is one delivery of a run message. Its methods are thin wrappers
// over jetstream.Msg whose errors name the run (or, before the run id is
// known, the stream sequence). They are safe to call from several goroutines
// (InProgress from a heartbeat while the run loop acks).
type Delivery struct {
	msg        jetstream.Msg
	nc         *nats.Conn             // for Hold
	meta       *jetstream.MsgMetadata // nil if the reply subject could not be parsed
	maxDeliver int
	retryDelay func(uint64) time.Duration

	mu    sync.Mutex
	runID string
}

func newDelivery(msg jetstream.Msg, cfg Config, nc *nats.Conn) *Delivery {
	d := &Delivery{msg: msg, nc: nc, maxDeliver: cfg.MaxDeliver, retryDelay: cfg.RetryDelay}
	d.meta, _ = msg.Metadata() // a pulled message always has it; NumDelivered reads 0 if not
	d.runID = runIDFromMsgID(msg.Headers().Get(jetstream.MsgIDHeader))
	return d
}

// runIDFromMsgID reads the run id back from a "<run_id>-<generation>"
// dedup id, for error messages before the body is decoded.
func runIDFromMsgID(id string) string {
	runID, _, _ := parseMsgID(id)
	return runID
}

// parseMsgID splits a "<run_id>-<generation>" dedup id; ok is false for
// anything else.
func parseMsgID(id string) (runID string, generation int, ok bool) {
	i := strings.LastIndexByte(id, '-')
	if i <= 0 || i == len(id)-1 || strings.Trim(id[i+1:], "0123456789") != "" {
		return "", 0, false
	}
	if ValidateRunID(id[:i]) != nil {
		return "", 0, false
	}
	g, err := strconv.Atoi(id[i+1:])
	if err != nil {
		return "", 0, false
	}
	return id[:i], g, true
}

// StreamSeq is the message's sequence in the stream: the same for every
// delivery of one message (0 if unknown).
func (d *Delivery) StreamSeq() uint64 {
	if d.meta == nil {
		return 0
	}
	return d.meta.Sequence.Stream
}

// Data is the message body.
func (d *Delivery) Data() []byte { return d.msg.Data() }

// Header is the message's headers (Nats-Msg-Id, traceparent, …).
func (d *Delivery) Header() nats.Header { return d.msg.Headers() }

// NumDelivered counts the deliveries of this message, this one included.
func (d *Delivery) NumDelivered() uint64 {
	if d.meta == nil {
		return 0
	}
	return d.meta.NumDelivered
}

// LastAttempt reports whether the server will not deliver this message
// again after a Nak (the consumer's MaxDeliver; never when unlimited): the
// exit table terms it instead.
func (d *Delivery) LastAttempt() bool {
	return d.maxDeliver > 0 && d.NumDelivered() >= uint64(d.maxDeliver)
}

// RetryDelay is the delay NakWithBackoff asks for.
func (d *Delivery) RetryDelay() time.Duration { return d.retryDelay(d.NumDelivered()) }

// RunID is the run id from the body once Decode succeeded, before that from
// the Nats-Msg-Id header, or "" if neither says.
func (d *Delivery) RunID() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.runID
}

// Decode decodes the body (see the package-level Decode) and names the
// delivery's errors after the run from then on.
func (d *Delivery) Decode() (*Message, error) {
	m, err := Decode(d.Data())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.what(), err)
	}
	d.mu.Lock()
	d.runID = m.RunID
	d.mu.Unlock()
	return m, nil
}

// Ack removes the message from the stream and waits for the server to
// confirm it, so a run is never reported done while its message can still
// come back.
func (d *Delivery) Ack(ctx context.Context) error {
	return d.wrap("ack", d.msg.DoubleAck(ctx))
}

// Nak asks for redelivery at once.
func (d *Delivery) Nak() error { return d.wrap("nak", d.msg.Nak()) }

// NakWithDelay asks for redelivery after delay.
func (d *Delivery) NakWithDelay(delay time.Duration) error {
	return d.wrap("nak", d.msg.NakWithDelay(delay))
}

// NakWithBackoff asks for redelivery after Config.Backoff's delay for this
// delivery (see Config.Backoff for why the consumer does not do it).
func (d *Delivery) NakWithBackoff() error { return d.NakWithDelay(d.RetryDelay()) }

// Term stops all redelivery; reason goes into the server's advisory.
func (d *Delivery) Term(reason string) error {
	return d.wrap("term", d.msg.TermWithReason(reason))
}

// InProgress restarts the server's AckWait clock for this delivery.
func (d *Delivery) InProgress() error { return d.wrap("in progress", d.msg.InProgress()) }

// Hold keeps the delivery for at most another ttl: the server redelivers
// the message ttl from now unless this delivery is held again, marked in
// progress, acked, nak'ed or termed before. It is how a delivery that waits
// in the process (a run waiting for its turn) comes back soon after its
// process died, however long AckWait is, and spends no delivery while held.
//
// It is a Nak with a delay sent without marking the message acknowledged on
// our side: the server keeps the message pending on this delivery and moves
// only its deadline (now + the delay), so every later call on the delivery
// still applies, and the delivery count does not grow unless the message is
// redelivered.
func (d *Delivery) Hold(ttl time.Duration) error {
	if d.nc == nil || d.msg.Reply() == "" {
		return d.wrap("hold", jetstream.ErrMsgNoReply)
	}
	body := fmt.Sprintf("-NAK {\"delay\": %d}", ttl.Nanoseconds())
	return d.wrap("hold", d.nc.Publish(d.msg.Reply(), []byte(body)))
}

func (d *Delivery) what() string {
	if id := d.RunID(); id != "" {
		return "run " + id
	}
	if d.meta != nil {
		return fmt.Sprintf("message seq %d", d.meta.Sequence.Stream)
	}
	return "message"
}

func (d *Delivery) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s %s: %w", op, d.what(), err)
}
