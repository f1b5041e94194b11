package workflow

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// Concurrency puts a workflow's runs in a group of which at most Limit run
// at once across the fleet:
//
//	concurrency: {group: "deploy-${{ vars.env }}", limit: 1, on_conflict: queue}
//
// The group is a template over vars, evaluated when a run is submitted.
type Concurrency struct {
	Group      string `json:"group" yaml:"group" bson:"group"`
	Limit      int    `json:"limit,omitempty" yaml:"limit,omitempty" bson:"limit,omitempty"`                   // 1 when 0
	OnConflict string `json:"on_conflict,omitempty" yaml:"on_conflict,omitempty" bson:"on_conflict,omitempty"` // OnConflictQueue when ""
}

// What a new run does when its group is full (Concurrency.OnConflict).
const (
	// OnConflictQueue: it waits, queued, for its turn (FIFO in the group).
	OnConflictQueue = "queue"
	// OnConflictCancelInProgress: the group's other runs are cancelled.
	OnConflictCancelInProgress = "cancel_in_progress"
	// OnConflictCancelNew: the new run is cancelled at once.
	OnConflictCancelNew = "cancel_new"
)

// MaxGroupBytes bounds a group's name once its templates are expanded.
const MaxGroupBytes = 256

// MaxConcurrencyLimit bounds a group's limit.
const MaxConcurrencyLimit = 1000

// EffectiveLimit is the limit, 1 when unset.
func (c *Concurrency) EffectiveLimit() int {
	if c.Limit <= 0 {
		return 1
	}
	return c.Limit
}

// Mode is on_conflict, OnConflictQueue when unset.
func (c *Concurrency) Mode() string {
	if c.OnConflict == "" {
		return OnConflictQueue
	}
	return c.OnConflict
}

// GroupOf evaluates the workflow's group with a run's resolved vars; "" when
// the workflow has no concurrency.
func (w *Workflow) GroupOf(vars map[string]string) (string, error) {
	if w.Concurrency == nil {
		return "", nil
	}
	g, err := Expand(w.Concurrency.Group, Scope{Vars: vars})
	if err != nil {
		return "", fmt.Errorf("concurrency.group: %w", err)
	}
	switch {
	case g == "":
		return "", fmt.Errorf("concurrency.group %q is empty with these vars", w.Concurrency.Group)
	case len(g) > MaxGroupBytes:
		return "", fmt.Errorf("concurrency.group is %d bytes with these vars: at most %d", len(g), MaxGroupBytes)
	}
	return g, nil
}

var concurrencyFields = []string{"group", "limit", "on_conflict"}

func (d *decoder) concurrency(n *yaml.Node, line int) *Concurrency {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		d.fail(-1, "", "concurrency", line, "want a mapping {group, limit, on_conflict}, got %s", describe(n))
		return nil
	}
	c := &Concurrency{}
	for _, e := range d.entries(n, -1, "", 0) {
		field := "concurrency." + e.key
		switch e.key {
		case "group":
			c.Group = d.str(e.val, -1, "", field)
		case "limit":
			c.Limit = d.int(e.val, -1, "", field)
			if c.Limit == 0 {
				c.Limit = -1 // written as 0: refused by validation, not taken as unset
			}
		case "on_conflict":
			c.OnConflict = d.str(e.val, -1, "", field)
		default:
			d.fail(-1, "", field, e.line, "unknown field%s", suggest(e.key, concurrencyFields))
		}
	}
	return c
}

// concurrency checks the workflow's concurrency: a group that is not empty,
// whose templates read only declared vars; a limit from 1 to
// MaxConcurrencyLimit; a known on_conflict.
func (v *validator) concurrency() {
	c := v.w.Concurrency
	if c == nil {
		return
	}
	line := v.fieldLine(-1, "concurrency")
	if c.Group == "" {
		v.addAt(-1, "concurrency.group", line, "a concurrency needs a group")
	} else if segs, err := segments(c.Group); err != nil {
		v.addAt(-1, "concurrency.group", line, "%v", err)
	} else {
		none := func() map[string]bool { return nil }
		for _, seg := range segs {
			if seg.isExpr {
				v.expr(-1, "concurrency.group", line, "${{ "+seg.text+" }}", seg.text, false, none)
			}
		}
	}
	if c.Limit < 0 || c.Limit > MaxConcurrencyLimit {
		l := c.Limit
		if l < 0 && l == -1 {
			l = 0
		}
		v.addAt(-1, "concurrency.limit", line, "want 1 to %d, got %d", MaxConcurrencyLimit, l)
	}
	switch c.OnConflict {
	case "", OnConflictQueue, OnConflictCancelInProgress, OnConflictCancelNew:
	default:
		v.addAt(-1, "concurrency.on_conflict", line, "want %s, %s or %s, got %q", OnConflictQueue, OnConflictCancelInProgress, OnConflictCancelNew, c.OnConflict)
	}
}
