package client

import (
	"context"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/admission"
)

// Kinds of wait of a queued run, Waiting.Kind.
const (
	WaitConcurrencyGroup = "concurrency_group" // its concurrency group is at its limit
	WaitTenantLimit      = "tenant_limit"      // its tenant is at its limit (serve --tenant-concurrency)
	WaitRunnerSlot       = "runner_slot"       // its message waits in the queue for a free runner slot
)

// Reasons of a queued run while it waits in a line: derived when a run is
// read (Waiting.Reason), never stored, so not among runnerd.Reasons (which
// say why a run stopped).
const (
	ReasonConcurrencyGroup runnerd.Reason = "concurrency_group"
	ReasonTenantLimit      runnerd.Reason = "tenant_limit"
)

// PositionScan bounds how many queued messages Waiting reads to find a
// run's place in the queue.
const PositionScan = 100

// Waiting says why a queued run has not started: the line it waits in and
// its place there.
type Waiting struct {
	Kind     string `json:"kind"`           // WaitConcurrencyGroup, WaitTenantLimit or WaitRunnerSlot
	Name     string `json:"name,omitempty"` // the group, or the tenant id; none for a runner slot
	Position int    `json:"position"`       // 1: next
	Of       int    `json:"of,omitempty"`   // runs waiting in the line, this one included (unknown for a runner slot)
	Limit    int    `json:"limit,omitempty"`
	// InFlight: for a runner slot, the runs the runners hold now.
	InFlight int `json:"in_flight,omitempty"`
	// AtLeast: the queue holds more runs ahead than were read; Position is
	// a lower bound.
	AtLeast bool `json:"at_least,omitempty"`
}

// Reason is the run's derived reason while it waits: concurrency_group or
// tenant_limit; "" for a runner slot.
func (w *Waiting) Reason() runnerd.Reason {
	switch {
	case w == nil:
		return ""
	case w.Kind == WaitConcurrencyGroup:
		return ReasonConcurrencyGroup
	case w.Kind == WaitTenantLimit:
		return ReasonTenantLimit
	}
	return ""
}

// WaitingIn is where a run waits among its admission places (its group's
// line first), or nil when it waits in none.
func WaitingIn(places []Place) *Waiting {
	for _, p := range places {
		if p.Position == 0 {
			continue
		}
		kind := WaitTenantLimit
		if p.Kind == admission.KindGroup {
			kind = WaitConcurrencyGroup
		}
		return &Waiting{Kind: kind, Name: p.Name, Position: p.Position, Of: p.Waiting, Limit: p.Limit}
	}
	return nil
}

// Waiting says why queued run r waits, read from NATS: its place in its
// concurrency group's or tenant's line, else in the queue for a runner
// slot. It returns the places too (Places). nil: the run is not queued,
// the client has no NATS, or a runner has taken its message and it is
// about to start.
func (c *Client) Waiting(ctx context.Context, r *Run) (*Waiting, []Place, error) {
	if r.Status != runnerd.StatusQueued || c.q == nil {
		return nil, nil, nil
	}
	places, err := c.Places(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	if w := WaitingIn(places); w != nil {
		return w, places, nil
	}
	p, err := c.q.Position(ctx, r.ID, PositionScan)
	switch {
	case err != nil:
		return nil, places, classify(err)
	case p.Found:
		return &Waiting{Kind: WaitRunnerSlot, Position: p.Ahead + 1, InFlight: p.InFlight}, places, nil
	case p.Ahead > PositionScan:
		return &Waiting{Kind: WaitRunnerSlot, Position: p.Ahead + 1, AtLeast: true, InFlight: p.InFlight}, places, nil
	}
	return nil, places, nil
}

// WaitingDoc is the "waiting" of a run document as runnerd status --json
// and the web API show it: where queued run r waits in line (w, from
// Waiting), else the server r's runner waits for (the stored r.Waiting),
// else nil. One key for both, since a run is never in both at once.
func WaitingDoc(r *Run, w *Waiting) any {
	switch {
	case w != nil:
		return w
	case r.Waiting != nil:
		return r.Waiting
	}
	return nil
}
