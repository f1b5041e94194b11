package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Mirror is a runner's copy of the whole bucket, kept by a KV watch: it
// decides admissions without a read per decision and tells waiters when a
// line moved (a place freed, a run left), so a waiting run starts within
// moments of its turn.
//
// The watch delivers the bucket's changes in order, so the mirror is always
// the bucket as of some revision: it may lag, never skip. Admission relies
// on that: a run whose ticket the mirror holds is seen with every ticket
// older than it.
type Mirror struct {
	mu      sync.Mutex
	rev     uint64                            // the last revision applied
	tickets map[string]map[string]ticketEntry // scope token → run id → ticket
	marks   map[string]map[string]bool        // scope token → run id → mark present
	byRun   map[string]map[string]bool        // run id → scope tokens it has a ticket in
	changed chan struct{}                     // closed and replaced at every change
	stop    func()
}

type ticketEntry struct {
	rev uint64
	at  time.Time // when the bucket stored it (the server's clock)
	t   Ticket
}

// Watch starts a mirror of kv and returns once it holds the bucket's
// current contents. It ends with ctx (or Stop).
func Watch(ctx context.Context, kv jetstream.KeyValue) (*Mirror, error) {
	if kv == nil {
		return nil, ErrNoBucket
	}
	wctx, cancel := context.WithCancel(ctx)
	w, err := kv.WatchAll(wctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watch the admission bucket: %w", err)
	}
	m := &Mirror{
		tickets: map[string]map[string]ticketEntry{},
		marks:   map[string]map[string]bool{},
		byRun:   map[string]map[string]bool{},
		changed: make(chan struct{}),
	}
	ready, done := make(chan struct{}), make(chan struct{})
	// Stopping the watcher closes Updates, which ends the goroutine.
	m.stop = func() { cancel(); _ = w.Stop(); <-done }
	go func() {
		defer close(done)
		initial := true
		for e := range w.Updates() {
			if e == nil { // the end of the current contents
				if initial {
					initial = false
					close(ready)
				}
				continue
			}
			m.apply(e)
		}
		if initial {
			close(ready)
		}
	}()
	select {
	case <-ready:
		return m, nil
	case <-time.After(30 * time.Second):
		m.Stop()
		return nil, fmt.Errorf("watch the admission bucket: no initial contents within 30s")
	case <-ctx.Done():
		m.Stop()
		return nil, ctx.Err()
	}
}

// Stop ends the watch and waits for its goroutine.
func (m *Mirror) Stop() { m.stop() }

func (m *Mirror) apply(e jetstream.KeyValueEntry) {
	kind, token, runID, ok := parseKey(e.Key())
	m.mu.Lock()
	defer m.mu.Unlock()
	if e.Revision() > m.rev {
		m.rev = e.Revision()
	}
	if ok {
		put := e.Operation() == jetstream.KeyValuePut
		switch kind {
		case "q":
			if put {
				var t Ticket
				_ = json.Unmarshal(e.Value(), &t)
				t.token = token
				inner(m.tickets, token)[runID] = ticketEntry{rev: e.Revision(), at: e.Created(), t: t}
				inner(m.byRun, runID)[token] = true
			} else {
				delete(m.tickets[token], runID)
				delete(m.byRun[runID], token)
				if len(m.byRun[runID]) == 0 {
					delete(m.byRun, runID)
				}
			}
		case "h":
			if put {
				inner(m.marks, token)[runID] = true
			} else {
				delete(m.marks[token], runID)
			}
		}
	}
	close(m.changed)
	m.changed = make(chan struct{})
}

func inner[V any](m map[string]map[string]V, k string) map[string]V {
	in := m[k]
	if in == nil {
		in = map[string]V{}
		m[k] = in
	}
	return in
}

// Changed is closed at the next change of the bucket.
func (m *Mirror) Changed() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}

// WaitRev waits until the mirror has applied revision rev.
func (m *Mirror) WaitRev(ctx context.Context, rev uint64) error {
	for {
		m.mu.Lock()
		got, ch := m.rev, m.changed
		m.mu.Unlock()
		if got >= rev {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("admission bucket view at revision %d, waiting for %d: %w", got, rev, ctx.Err())
		case <-ch:
		}
	}
}

// Tickets returns the scopes in which the run has a ticket, with the
// tickets (a group's limit is on its ticket).
func (m *Mirror) Tickets(runID string) []Ticket {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Ticket
	for token := range m.byRun[runID] {
		if e, ok := m.tickets[token][runID]; ok {
			out = append(out, e.t)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Kind+out[i].Name < out[j].Kind+out[j].Name })
	return out
}

// Standing is where a run stands in one line.
type Standing struct {
	Scope    Scope
	Limit    int
	Holders  int // places held by other runs (their lease alive)
	Position int // 1 + the runs waiting ahead; 0 when the run has no ticket
	Admitted bool
}

// Live reports whether a run's lease is held, i.e. whether its mark counts.
// An error should count as alive: waiting longer is safe, running two is not.
type Live func(runID string) bool

// Standing says whether runID may take a place in scope s of limit places.
// Other runs' marks count when their run's lease is alive (checked only when
// the answer depends on it); a run whose mark does not count is away (its
// runner died): it neither holds a place nor waits ahead.
func (m *Mirror) Standing(s Scope, runID string, limit int, live Live) Standing {
	token := s.token()
	m.mu.Lock()
	type waiter struct {
		id  string
		rev uint64
	}
	var line []waiter
	for id, e := range m.tickets[token] {
		line = append(line, waiter{id, e.rev})
	}
	var marked []string
	for id := range m.marks[token] {
		if id != runID {
			marked = append(marked, id)
		}
	}
	_, hasTicket := m.tickets[token][runID]
	m.mu.Unlock()

	st := Standing{Scope: s, Limit: limit}
	if !hasTicket {
		return st
	}
	sort.Slice(line, func(i, j int) bool {
		if line[i].rev != line[j].rev {
			return line[i].rev < line[j].rev
		}
		return line[i].id < line[j].id
	})
	isMarked := map[string]bool{}
	for _, id := range marked {
		isMarked[id] = true
	}
	position := func(away map[string]bool) int {
		p := 1
		for _, w := range line {
			if w.id == runID {
				return p
			}
			if !isMarked[w.id] && !away[w.id] {
				p++
			}
		}
		return p
	}
	// Every mark counted first: no lease read when the run is admitted anyway
	// or waits behind more live runs than there are places.
	st.Holders, st.Position = len(marked), position(nil)
	// Away runs are not counted as waiting ahead either way, so a run whose
	// position passes the limit waits whoever is alive.
	if st.Holders+st.Position <= limit || st.Position > limit || live == nil || len(marked) == 0 {
		st.Admitted = st.Holders+st.Position <= limit
		return st
	}
	away := map[string]bool{}
	holders := 0
	for _, id := range marked {
		if live(id) {
			holders++
		} else {
			away[id] = true
		}
	}
	// An away run is out of the line until its run is picked up again.
	for id := range away {
		delete(isMarked, id)
	}
	st.Holders, st.Position = holders, position(away)
	st.Admitted = st.Holders+st.Position <= limit
	return st
}

// Contended reports whether the other runs holding places of s (their lease
// alive) already fill its limit: the second check a runner makes once its own
// mark is in its view.
func (m *Mirror) Contended(s Scope, runID string, limit int, live Live) bool {
	token := s.token()
	m.mu.Lock()
	var marked []string
	for id := range m.marks[token] {
		if id != runID {
			marked = append(marked, id)
		}
	}
	m.mu.Unlock()
	n := 0
	for _, id := range marked {
		if live == nil || live(id) {
			n++
		}
	}
	return n >= limit
}

// Front lists the runs whose tickets wait ahead of runID in s among the
// line's first n waiting runs (a waiting run has a ticket and no mark), if
// their ticket is older than age: the ones to check when a line does not
// move, since a ticket its run left behind (a runner that died between the
// run's end and its leaving the line) would wait ahead of the line for good.
func (m *Mirror) Front(s Scope, runID string, n int, age time.Duration) []string {
	token := s.token()
	m.mu.Lock()
	defer m.mu.Unlock()
	type waiter struct {
		id  string
		rev uint64
		at  time.Time
	}
	var line []waiter
	for id, e := range m.tickets[token] {
		if !m.marks[token][id] {
			line = append(line, waiter{id, e.rev, e.at})
		}
	}
	sort.Slice(line, func(i, j int) bool {
		if line[i].rev != line[j].rev {
			return line[i].rev < line[j].rev
		}
		return line[i].id < line[j].id
	})
	var out []string
	for i, w := range line {
		if i >= n || w.id == runID {
			break
		}
		if time.Since(w.at) > age {
			out = append(out, w.id)
		}
	}
	return out
}
