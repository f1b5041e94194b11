package client

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/queue"
)

// eventPage bounds one read of events; a full page is followed at once by
// the next one, so a watcher that fell behind catches up without waiting.
const eventPage = 500

// noNoticePoll is how often Wait and Watch read the store on a client with
// no NATS connection (Options.Queue unset): there is no notice to hear.
const noNoticePoll = 250 * time.Millisecond

// interval is how long Wait and Watch wait for a notice before they read.
func (c *Client) interval() time.Duration {
	if c.nc == nil {
		return noNoticePoll
	}
	return c.poll
}

// minGap is the least time between two reads of a run's events while its
// progress notices keep coming: a run logging fast costs the store a few
// reads a second, not one per batch.
const minGap = 50 * time.Millisecond

// Settled reports whether a run will not move until someone acts (paused)
// or ever again (terminal): where Wait and Watch stop.
func Settled(s runnerd.Status) bool { return s.Settled() }

// Wait blocks until the run is settled (succeeded, failed, cancelled or
// paused) and returns it. It reads the store once at the start, once per
// notice that the run settled, and every PollInterval otherwise; never on
// a timer faster than that while the run goes on.
func (c *Client) Wait(ctx context.Context, id string) (*Run, error) {
	if err := queue.ValidateRunID(id); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	notices, stop, err := c.listen(id, false)
	if err != nil {
		return nil, err
	}
	defer stop()
	tick := time.NewTimer(c.interval())
	defer tick.Stop()
	for {
		r, err := c.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if Settled(r.Status) {
			return r, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-notices:
		case <-tick.C:
		}
		tick.Reset(c.interval())
	}
}

// Watch calls fn for each event of the run with a seq after afterSeq, in
// order, as the events are stored, until the run is settled, and returns
// the settled run. The run document, not the event stream, says when to
// stop: a child that crashed sends no run_finished, and its run goes back
// to the queue and continues. An error from fn stops Watch and is returned.
func (c *Client) Watch(ctx context.Context, id string, afterSeq int64, fn func(Event) error) (*Run, error) {
	if err := queue.ValidateRunID(id); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	notices, stop, err := c.listen(id, true)
	if err != nil {
		return nil, err
	}
	defer stop()
	seq := afterSeq
	drain := func() error {
		for {
			events, err := c.st.Events(ctx, id, seq, eventPage)
			if err != nil {
				return classify(err)
			}
			for _, e := range events {
				if err := fn(e); err != nil {
					return err
				}
				seq = e.Seq
			}
			if len(events) < eventPage {
				return nil
			}
		}
	}
	// settledRun reads the run and, if it is settled, the events stored
	// between the last drain and that read.
	settledRun := func() (*Run, error) {
		r, err := c.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if !Settled(r.Status) {
			return nil, nil
		}
		if err := drain(); err != nil {
			return nil, err
		}
		return r, nil
	}
	if err := drain(); err != nil {
		return nil, err
	}
	if r, err := settledRun(); r != nil || err != nil {
		return r, err
	}
	tick := time.NewTimer(c.interval())
	defer tick.Stop()
	var known int64 // the highest seq a progress notice announced
	for {
		var n notice
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case n = <-notices:
		case <-tick.C:
			n = notice{finished: true} // the slow poll: as if it had settled
		}
		if n.seq > known {
			known = n.seq
		}
		if !n.finished && known <= seq {
			continue // announced events already read
		}
		read := time.Now()
		if err := drain(); err != nil {
			return nil, err
		}
		if n.finished {
			if r, err := settledRun(); r != nil || err != nil {
				return r, err
			}
			tick.Reset(c.interval())
		}
		// Never read more often than a read takes, nor than minGap: notices
		// that come meanwhile wait in the channel and are read together.
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(max(minGap, time.Since(read))):
		}
	}
}

// notice is what listen hands over: a run settled (finished), or events up
// to seq are stored.
type notice struct {
	finished bool
	seq      int64
}

// listen subscribes to run id's notices (and, with progress, to its
// progress) before the caller reads the store, so nothing published after
// the read is missed. Notices that come while the caller is busy are kept
// (the channel holds the latest few; a full channel drops, which the next
// read makes good). Without a queue there is nothing to hear: the caller
// polls.
func (c *Client) listen(id string, progress bool) (<-chan notice, func(), error) {
	ch := make(chan notice, 16)
	if c.nc == nil {
		return ch, func() {}, nil
	}
	send := func(n notice) {
		select {
		case ch <- n:
		default:
		}
	}
	var subs []*nats.Subscription
	stop := func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}
	sub, err := c.nc.Subscribe(queue.FinishedSubject(id), func(m *nats.Msg) {
		if _, err := queue.DecodeNotice(id, m.Data); err == nil {
			send(notice{finished: true})
		}
	})
	if err != nil {
		return nil, nil, classify(fmt.Errorf("subscribe to the notices of run %s: %w", id, err))
	}
	subs = append(subs, sub)
	if progress {
		sub, err := c.nc.Subscribe(queue.ProgressSubject(id), func(m *nats.Msg) {
			var p queue.Progress
			if json.Unmarshal(m.Data, &p) == nil && p.RunID == id {
				send(notice{seq: p.Seq})
			}
		})
		if err != nil {
			stop()
			return nil, nil, classify(fmt.Errorf("subscribe to the progress of run %s: %w", id, err))
		}
		subs = append(subs, sub)
	}
	// The subscriptions must be active on the server before the store is
	// read, or a notice sent in between is lost.
	if err := c.nc.FlushTimeout(5 * time.Second); err != nil {
		stop()
		return nil, nil, classify(fmt.Errorf("subscribe to the notices of run %s: flush: %w", id, err))
	}
	return ch, stop, nil
}
