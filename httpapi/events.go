package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/client"
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
	events, err := a.cfg.Client.Store().Events(r.Context(), id, after, limit)
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
// The run is followed with client.Watch, as `runnerd logs --follow` and
// `submit --wait` follow it: the store is read when a runner's notice on
// NATS says events were stored or the run settled (and, for a notice that
// was missed, every client.Options.PollInterval), never on a fast timer.
// The steps' state in the run messages is the stored one folded with the
// events since (runnerd.StepStates.Apply, as the supervisor folds them);
// the run is read again when an attempt starts or ends. The stream goes
// on across a run going back to the queue (a crash, a runner shutdown). A
// client that reconnects sends Last-Event-ID and gets what it missed.
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
	// The keep-alive is stopped and awaited before the handler returns:
	// no tick writes to a finished response.
	ctx, stop := context.WithCancel(r.Context())
	var keep sync.WaitGroup
	defer keep.Wait()
	defer stop()
	keep.Go(func() { s.keepAlive(ctx, keepAliveEvery) })
	if err := a.follow(ctx, s, run, after); err != nil && ctx.Err() == nil && !errors.Is(err, errGone) {
		a.cfg.Log.Warn().Err(err).Str("run_id", id).Msg("event stream ended")
		s.send("", "error", apiError{Error: err.Error()})
	}
}

// keepAliveEvery: a comment line this often keeps proxies from closing a
// quiet stream.
const keepAliveEvery = 15 * time.Second

// errGone: the stream's client went away.
var errGone = errors.New("stream closed by its client")

// follow sends run's summary, then its events after seq and its changes,
// until the run settles or ctx ends.
func (a *API) follow(ctx context.Context, s *sse, run *store.Run, seq int64) error {
	cur := summaryOf(run)
	s.send("", "run", cur)
	settled, err := a.cfg.Client.Watch(ctx, run.ID, seq, func(e client.Event) error {
		s.send(strconv.FormatInt(e.Seq, 10), "event", e)
		if e.Seq > cur.EventSeq { // not yet in the state read last
			switch e.Type {
			case runnerd.EventRunStarted, runnerd.EventRunFinished, runnerd.EventStepFinished, runnerd.EventPaused:
				// Status, attempt, runner, a finished step's log key:
				// read them.
				r, err := a.cfg.Client.Get(ctx, run.ID)
				if err != nil {
					return err
				}
				cur = summaryOf(r)
				if e.Seq > cur.EventSeq {
					cur.Steps.Apply(e.Event)
					cur.EventSeq = e.Seq
				}
				s.send("", "run", cur)
			case runnerd.EventStepStarted, runnerd.EventAttemptFailed, runnerd.EventOutput, runnerd.EventArtifact:
				cur.Steps.Apply(e.Event)
				cur.EventSeq = e.Seq
				s.send("", "run", cur)
			}
		}
		if s.failed() {
			return errGone
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.send("", "settled", summaryOf(settled))
	return nil
}

// sse writes server-sent events; err keeps the first write error. Writes
// come from the follower and the keep-alive, hence the lock.
type sse struct {
	mu  sync.Mutex
	w   http.ResponseWriter
	f   http.Flusher
	err error
}

func (s *sse) send(id, event string, v any) {
	data, err := json.Marshal(v)
	msg := ""
	if id != "" {
		msg = "id: " + id + "\n"
	}
	msg += "event: " + event + "\ndata: " + string(data) + "\n\n"
	s.write(msg, err)
}

func (s *sse) write(msg string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return
	}
	if err != nil {
		s.err = err
		return
	}
	if _, err := s.w.Write([]byte(msg)); err != nil {
		s.err = err
		return
	}
	s.f.Flush()
}

func (s *sse) failed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err != nil
}

func (s *sse) keepAlive(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.write(": keep-alive\n\n", nil)
		}
	}
}
