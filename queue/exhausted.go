package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A message whose last delivery was never settled (its runner died during
// it) stays in the work-queue stream and is not delivered again: JetStream
// only says so with a max-deliveries advisory. These helpers let a runner
// act on that advisory: read the message, settle its run, delete it.

// ErrMessageGone means the stream no longer holds the message (another runner
// settled it first).
var ErrMessageGone = errors.New("queue: message no longer in the stream")

// StoredMessage is a run message read from the stream by its sequence.
type StoredMessage struct {
	Seq    uint64
	Data   []byte
	Header nats.Header
}

// RunID is the run named by the message's Nats-Msg-Id, or "".
func (m *StoredMessage) RunID() string {
	return runIDFromMsgID(m.Header.Get(jetstream.MsgIDHeader))
}

// Generation is the run generation named by the message's Nats-Msg-Id, or
// -1 if it names none.
func (m *StoredMessage) Generation() int {
	if _, g, ok := parseMsgID(m.Header.Get(jetstream.MsgIDHeader)); ok {
		return g
	}
	return -1
}

// maxDeliveriesAdvisory is the part of JetStream's
// io.nats.jetstream.advisory.v1.max_deliver event runnerd reads.
type maxDeliveriesAdvisory struct {
	StreamSeq uint64 `json:"stream_seq"`
}

// SubscribeExhausted calls fn (on its own goroutine per call) with the
// stream sequence of every run message that used up its deliveries on the
// runners' consumer. Advisories are core NATS: one published while no runner
// listens is lost.
func (q *Queue) SubscribeExhausted(fn func(streamSeq uint64)) (unsubscribe func(), err error) {
	subject := "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + q.cfg.Stream + "." + q.cfg.Consumer
	sub, err := q.nc.Subscribe(subject, func(m *nats.Msg) {
		var adv maxDeliveriesAdvisory
		if json.Unmarshal(m.Data, &adv) != nil || adv.StreamSeq == 0 {
			return
		}
		fn(adv.StreamSeq) // fn returns at once: it hands the work to its owner
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to max-deliveries advisories: %w", err)
	}
	if err := q.nc.FlushTimeout(flushTimeout); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe to max-deliveries advisories: flush: %w", err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// Message reads the run message at seq, or ErrMessageGone.
func (q *Queue) Message(ctx context.Context, seq uint64) (*StoredMessage, error) {
	stream, err := q.streamHandle(ctx)
	if err != nil {
		return nil, err
	}
	raw, err := stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, ErrMessageGone
	}
	if err != nil {
		return nil, fmt.Errorf("read message %d of stream %s: %w", seq, q.cfg.Stream, err)
	}
	return &StoredMessage{Seq: seq, Data: raw.Data, Header: raw.Header}, nil
}

// DeleteMessage removes the message at seq; one already gone is not an
// error.
func (q *Queue) DeleteMessage(ctx context.Context, seq uint64) error {
	stream, err := q.streamHandle(ctx)
	if err != nil {
		return err
	}
	err = stream.DeleteMsg(ctx, seq)
	// nats.go flattens the server's error into the text of
	// ErrMsgDeleteUnsuccessful: "no message found" is its only trace.
	if err != nil && !(errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) && strings.Contains(err.Error(), "no message found")) {
		return fmt.Errorf("delete message %d of stream %s: %w", seq, q.cfg.Stream, err)
	}
	return nil
}

// streamHandle is the stream Setup made, or, for a queue from Open, looked
// up now.
func (q *Queue) streamHandle(ctx context.Context) (jetstream.Stream, error) {
	if q.stream != nil {
		return q.stream, nil
	}
	stream, err := q.js.Stream(ctx, q.cfg.Stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", q.cfg.Stream, err)
	}
	return stream, nil
}
