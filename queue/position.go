package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Place is where a run's message waits in the stream.
type Place struct {
	Ahead    int  // messages not yet delivered before it
	InFlight int  // messages delivered to runners and not yet acked (runs executing or waiting on a retry)
	Found    bool // false: its message is not among the first messages waiting (delivered already, or further back than the scan)
}

// Position reads where run id's message waits for a runner, scanning at
// most limit undelivered messages from the consumer's delivered floor:
// one stream read per message, for clients that show a queued run's place
// (a few reads every couple of seconds). It changes nothing.
func (q *Queue) Position(ctx context.Context, runID string, limit int) (Place, error) {
	var p Place
	info, err := q.consumer.Info(ctx)
	if err != nil {
		return p, fmt.Errorf("consumer %s info: %w", q.cfg.Consumer, err)
	}
	p.InFlight = info.NumAckPending
	stream, err := q.streamHandle(ctx)
	if err != nil {
		return p, err
	}
	sinfo, err := stream.Info(ctx)
	if err != nil {
		return p, fmt.Errorf("stream %s info: %w", q.cfg.Stream, err)
	}
	for seq := info.Delivered.Stream + 1; seq <= sinfo.State.LastSeq && p.Ahead <= limit; seq++ {
		raw, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return p, fmt.Errorf("read message %d of stream %s: %w", seq, q.cfg.Stream, err)
		}
		var m struct {
			RunID string `json:"run_id"`
		}
		if json.Unmarshal(raw.Data, &m) == nil && m.RunID == runID {
			p.Found = true
			return p, nil
		}
		p.Ahead++
	}
	return p, nil
}
