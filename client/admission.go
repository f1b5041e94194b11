package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/admission"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
	"github.com/runnerd/runnerd/workflow"
)

// Concurrency groups from the client's side: a run's place in its group's
// line is taken at submit (and again at resume and retry), so the line is in
// submission order; on_conflict is applied there too.

func (c *Client) lines() *admission.Lines {
	if c.q == nil {
		return admission.New(nil)
	}
	return admission.New(c.q.AdmissionKV())
}

// group is a run's concurrency group: its line, limit and on_conflict.
type group struct {
	scope      admission.Scope
	limit      int
	onConflict string
}

// groupOf is the run's group line, if its workflow has one (as stored on
// the run at submit).
func groupOf(r *store.Run) (group, bool, error) {
	name, limit, mode, ok, err := r.Group()
	if !ok || err != nil {
		return group{}, false, err
	}
	return group{scope: admission.Group(r.TenantID, name), limit: limit, onConflict: mode}, true, nil
}

// joinGroup puts a run about to be queued at the end of its group's line and
// applies on_conflict: cancel_in_progress cancels the group's oldest other
// runs (running or waiting ahead), as many as it takes to leave this one a
// place; cancel_new cancels this one when the group is full, and returns it
// so.
func (c *Client) joinGroup(ctx context.Context, r *store.Run) (*store.Run, error) {
	g, ok, err := groupOf(r)
	if err != nil {
		return nil, mark(ErrInvalid, err)
	}
	if !ok {
		return r, nil
	}
	scope := g.scope
	lines := c.lines()
	rev, err := lines.Join(ctx, scope, admission.Ticket{RunID: r.ID, Limit: g.limit, Tenant: r.TenantID})
	if err != nil {
		return nil, classify(fmt.Errorf("run %s: concurrency group %q: %w", r.ID, scope.Name, err))
	}
	if g.onConflict == workflow.OnConflictQueue {
		return r, nil
	}
	members, err := lines.Members(ctx, scope)
	if err != nil {
		return nil, classify(fmt.Errorf("run %s: concurrency group %q: %w", r.ID, scope.Name, err))
	}
	var others []admission.Member
	for _, m := range members {
		if m.RunID != r.ID && (m.Rev < rev || m.Holding) {
			others = append(others, m)
		}
	}
	switch g.onConflict {
	case workflow.OnConflictCancelNew:
		if len(others) < g.limit {
			return r, nil
		}
		if err := lines.Leave(ctx, scope, r.ID); err != nil {
			return nil, classify(err)
		}
		at, err := c.st.SetStatusUnfenced(ctx, r.ID, runnerd.StatusCancelled, runnerd.ReasonGroupFull)
		if err != nil {
			return nil, classify(fmt.Errorf("cancel run %s (group %q full): %w", r.ID, scope.Name, err))
		}
		c.announce(r.Written(runnerd.StatusCancelled, runnerd.ReasonGroupFull, at))
		return c.Get(ctx, r.ID)
	case workflow.OnConflictCancelInProgress:
		// As many of the oldest as it takes to make room for this one: with
		// limit 2 and one running, nothing is cancelled.
		n := len(others) - g.limit + 1
		for _, m := range others[:max(n, 0)] {
			if _, err := c.Cancel(ctx, m.RunID); err != nil && !errors.Is(err, ErrConflict) && !errors.Is(err, ErrNotFound) {
				return nil, fmt.Errorf("run %s: cancel run %s of group %q: %w", r.ID, m.RunID, scope.Name, err)
			}
		}
	}
	return r, nil
}

// leaveGroup takes a run out of its group's line (best effort, bounded).
func (c *Client) leaveGroup(ctx context.Context, r *store.Run) {
	if g, ok, err := groupOf(r); ok && err == nil {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_ = c.lines().Leave(lctx, g.scope, r.ID)
	}
}

// leaveLines takes a queued run that is cancelled out of its lines, so the
// runs behind it need not wait for its message to come round.
func (c *Client) leaveLines(ctx context.Context, r *store.Run) {
	lines := c.lines()
	if g, ok, err := groupOf(r); ok && err == nil {
		_ = lines.Leave(ctx, g.scope, r.ID)
	}
	_ = lines.Leave(ctx, admission.Tenant(r.TenantID), r.ID)
}

// Place is where a run stands in one of its lines.
type Place struct {
	Kind     string `json:"kind"` // group or tenant
	Name     string `json:"name"` // the group, or the tenant id
	Limit    int    `json:"limit,omitempty"`
	Running  int    `json:"running"`  // members holding a place (their runner alive)
	Position int    `json:"position"` // 1 + the members waiting ahead; 0 when holding a place
	Waiting  int    `json:"waiting"`  // members waiting, this run included
}

// Places says where a run stands in its lines (its concurrency group, and
// its tenant's line when the fleet limits tenants): for a queued run, which
// group it waits for and its position. A fleet with no admission bucket, or
// a run in no line, has none.
func (c *Client) Places(ctx context.Context, r *Run) ([]Place, error) {
	if c.q == nil || c.q.AdmissionKV() == nil {
		return nil, nil
	}
	var scopes []admission.Scope
	limits := map[admission.Scope]int{}
	if g, ok, err := groupOf(r); ok && err == nil {
		scopes = append(scopes, g.scope)
		limits[g.scope] = g.limit
	}
	scopes = append(scopes, admission.Tenant(r.TenantID))
	var out []Place
	for _, s := range scopes {
		members, err := c.lines().Members(ctx, s)
		if err != nil {
			return nil, classify(err)
		}
		p := Place{Kind: s.Kind, Name: s.Name, Limit: limits[s]}
		in := false
		for _, m := range members {
			holding := m.Holding && c.leaseHeld(ctx, m.RunID)
			if m.RunID == r.ID {
				in = true
				if !holding {
					p.Position = p.Waiting + 1
				}
			}
			switch {
			case holding:
				p.Running++
			case m.Rev > 0:
				p.Waiting++
			}
			if m.Limit > 0 && p.Limit == 0 {
				p.Limit = m.Limit
			}
		}
		if in {
			out = append(out, p)
		}
	}
	return out, nil
}

func (c *Client) leaseHeld(ctx context.Context, runID string) bool {
	_, err := c.q.LeaseHolder(ctx, runID)
	return !errors.Is(err, queue.ErrNoLease)
}
