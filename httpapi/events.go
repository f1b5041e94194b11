package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/store"
)

// EventPage is the answer of GET /api/v1/runs/{id}/events: events with seq
// > after, in order. More says that another page follows at once (ask again
// with after = the last seq).
type EventPage struct {
	Events []store.StoredEvent `json:"events"`
	More   bool                `json:"more"`
}

// Event page sizes.
const (
	DefaultEventPage = 500
	MaxEventPage     = 5000
)

func parseSeq(name, v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s %q: want a seq, 0 or more%w", name, v, silent{errBadRequest})
	}
	return n, nil
}

func (a *API) listEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	after, err := parseSeq("after", r.URL.Query().Get("after"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	limit := DefaultEventPage
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxEventPage {
			a.fail(w, r, fmt.Errorf("limit %q: want 1 to %d%w", v, MaxEventPage, silent{errBadRequest}))
			return
		}
		limit = n
	}
	if _, err := a.loadRun(r.Context(), id); err != nil {
		a.fail(w, r, err)
		return
	}
	events, err := a.cfg.Store.Events(r.Context(), id, after, limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if events == nil {
		events = []store.StoredEvent{}
	}
	writeJSON(w, http.StatusOK, EventPage{Events: events, More: len(events) == limit})
}

// RunSummary is the `run` message of an event stream: the run document
// without its workflow and vars, which do not change.
type RunSummary struct {
	ID              string             `json:"id"`
	Status          runnerd.Status     `json:"status"`
	Reason          runnerd.Reason     `json:"reason"`
	Attempt         int                `json:"attempt"`
	Crashes         int                `json:"crashes"`
	RunnerID        string             `json:"runner_id,omitempty"`
	CancelRequested bool               `json:"cancel_requested"`
	Waiting         *store.Wait        `json:"waiting,omitempty"`
	Steps           runnerd.StepStates `json:"steps"`
	EventSeq        int64              `json:"event_seq"`
	UpdatedAt       time.Time          `json:"updated_at"`
	StartedAt       time.Time          `json:"started_at,omitzero"`
	FinishedAt      time.Time          `json:"finished_at,omitzero"`
}

func summaryOf(r *store.Run) RunSummary {
	d := docOf(r)
	return RunSummary{
		ID: r.ID, Status: r.Status, Reason: r.Reason, Attempt: r.Attempt, Crashes: r.Crashes,
		RunnerID: r.RunnerID, CancelRequested: r.CancelRequested, Waiting: r.Waiting, Steps: d.Steps,
		EventSeq: r.EventSeq, UpdatedAt: r.UpdatedAt, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt,
	}
}

// streamEvents is the live view of a run, as server-sent events:
//
//	event: run     data: RunSummary      (at once, then whenever the run changes)
//	id: <seq>
//	event: event   data: StoredEvent     (each event with seq > after, in order)
//	event: settled data: RunSummary      (the run is paused or finished; the stream ends)
//
// The run is followed in the store as `runnerd logs --follow` does: new
// events are asked for after the last seq sent, often while they come and
// less often while nothing moves, and the run document says when to stop.
// The stream goes on across a run going back to the queue (a crash, a
// runner shutdown). A client that reconnects sends Last-Event-ID and gets
// what it missed.
func (a *API) streamEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	after, err := parseSeq("after", r.URL.Query().Get("after"))
	if err == nil && r.Header.Get("Last-Event-ID") != "" {
		after, err = parseSeq("Last-Event-ID", r.Header.Get("Last-Event-ID"))
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	run, err := a.loadRun(r.Context(), id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		a.fail(w, r, fmt.Errorf("this connection cannot stream"))
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &sse{w: w, f: flusher}
	if err := a.follow(r.Context(), s, run, after); err != nil && r.Context().Err() == nil {
		a.cfg.Log.Warn().Err(err).Str("run_id", id).Msg("event stream ended")
		s.send("", "error", apiError{Error: err.Error()})
	}
}

// follow sends run's summary, then its events after seq and its changes,
// until the run settles or ctx ends.
func (a *API) follow(ctx context.Context, s *sse, run *store.Run, seq int64) error {
	id := run.ID
	s.send("", "run", summaryOf(run))
	last := run.UpdatedAt
	wait := a.cfg.PollMin
	// A comment line now and then keeps proxies from closing a quiet
	// stream.
	keepAlive := time.Now()
	for {
		moved := false
		for run.EventSeq > seq {
			events, err := a.cfg.Store.Events(ctx, id, seq, DefaultEventPage)
			if err != nil {
				return err
			}
			if len(events) == 0 {
				break
			}
			for _, e := range events {
				s.send(strconv.FormatInt(e.Seq, 10), "event", e)
				seq = e.Seq
			}
			moved = true
		}
		if !run.UpdatedAt.Equal(last) {
			s.send("", "run", summaryOf(run))
			last = run.UpdatedAt
			moved = true
		}
		// The events up to the settling write were sent above.
		if run.Status.Settled() {
			s.send("", "settled", summaryOf(run))
			return nil
		}
		if s.err != nil {
			return nil // the client went away
		}
		if moved {
			wait = a.cfg.PollMin
		} else {
			wait = min(wait*3/2, a.cfg.PollMax)
		}
		if time.Since(keepAlive) > 15*time.Second {
			s.comment("keep-alive")
			keepAlive = time.Now()
		}
		polled := time.Now()
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		var err error
		if run, err = a.cfg.Store.Get(ctx, id); err != nil {
			return err
		}
		// Never ask more often than an answer takes: on FerretDB a query of
		// the events scans the collection.
		if took := time.Since(polled) - wait; took > wait {
			wait = min(took, a.cfg.PollMax)
		}
	}
}

// sse writes server-sent events; err keeps the first write error.
type sse struct {
	w   http.ResponseWriter
	f   http.Flusher
	err error
}

func (s *sse) send(id, event string, v any) {
	if s.err != nil {
		return
	}
	data, err := json.Marshal(v)
	if err != nil {
		s.err = err
		return
	}
	msg := ""
	if id != "" {
		msg = "id: " + id + "\n"
	}
	msg += "event: " + event + "\ndata: " + string(data) + "\n\n"
	if _, err := s.w.Write([]byte(msg)); err != nil {
		s.err = err
		return
	}
	s.f.Flush()
}

func (s *sse) comment(text string) {
	if s.err == nil {
		_, s.err = s.w.Write([]byte(": " + text + "\n\n"))
		s.f.Flush()
	}
}
