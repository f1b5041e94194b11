// Package admission holds the lines of runs that may not all run at once:
// concurrency groups (a workflow's `concurrency:`) and tenant limits. It is
// enforced across the fleet through one NATS KV bucket, without a process
// of its own:
//
//   - a ticket, key q.<scope>.<run id>, is a run's place in a line. Tickets
//     are created once (KV Create) and never updated, so the bucket's
//     revision of a ticket orders the line: FIFO. A group's tickets (groups
//     are per tenant) are made by the client at submit, in submission order;
//     a tenant's by the first runner to pick the run up, once the run's group
//     lets it through. A ticket goes when its run settles (terminal or
//     paused), its delivery is termed, or it is cancelled while queued; a
//     run its group holds back withdraws its tenant ticket; a ticket left
//     behind anyway is dropped by a run waiting behind it once the store
//     says its run settled or does not exist.
//   - a mark, key h.<scope>.<run id>, says the run holds one of the line's
//     places. A runner writes it after it took the run's lease and before it
//     claims the run, and deletes it when the attempt ends. A mark counts
//     only while the run's lease lives: a runner that dies frees the place
//     when its lease expires, with no one to clean up.
//
// A run is admitted when the places held plus the runs waiting ahead of it
// are fewer than the limit; a runner whose run is admitted writes its marks,
// waits until its view of the bucket includes them, and checks again that
// the marks of the others leave it a place (else it steps back): of two
// runners that both saw a free place, the one that wrote later sees the
// other's mark.
package admission

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Kinds of line.
const (
	KindGroup  = "group"
	KindTenant = "tenant"
)

// ErrNoBucket means the fleet's NATS has no admission bucket (its runnerd
// serve predates concurrency groups).
var ErrNoBucket = errors.New("admission: no admission bucket on this NATS (is runnerd serve up to date?)")

// Scope names one line. Groups are per tenant: two tenants' groups of one
// name are two lines.
type Scope struct {
	Kind   string // KindGroup or KindTenant
	Name   string // the group as evaluated, or the tenant id
	Tenant string // a group's tenant ("" for a tenant's line: Name is the tenant)
	// key is the scope's key segment as found in the bucket, when it is not
	// the one computed from the fields (a ticket written by another version).
	key string
}

// Group and Tenant are the scopes of a tenant's group and of a tenant.
func Group(tenant, name string) Scope {
	return Scope{Kind: KindGroup, Name: name, Tenant: tenant}
}
func Tenant(tenant string) Scope { return Scope{Kind: KindTenant, Name: tenant} }

func (s Scope) String() string {
	if s.Kind == KindGroup && s.Tenant != "" {
		return s.Kind + " " + s.Name + " (tenant " + s.Tenant + ")"
	}
	return s.Kind + " " + s.Name
}

var tokenPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// token is the scope's key segment: a group's name is free text, so it is
// hashed with its tenant; a tenant id is already a key-safe id.
func (s Scope) token() string {
	if s.key != "" {
		return s.key
	}
	if s.Kind == KindTenant && tokenPattern.MatchString(s.Name) {
		return "t_" + s.Name
	}
	sum := sha256.Sum256([]byte(s.Kind + "\x00" + s.Tenant + "\x00" + s.Name))
	return "g_" + hex.EncodeToString(sum[:12])
}

// Ticket is the value of a run's place in a line.
type Ticket struct {
	RunID  string    `json:"run_id"`
	Kind   string    `json:"kind"`
	Name   string    `json:"name"`
	Limit  int       `json:"limit,omitempty"` // a group's limit (a tenant's comes from the runner's settings)
	Tenant string    `json:"tenant,omitempty"`
	At     time.Time `json:"at"`

	token string // the key segment it was found under (Mirror)
}

// Scope is the line the ticket is in.
func (t Ticket) Scope() Scope {
	s := Scope{Kind: t.Kind, Name: t.Name}
	if t.Kind == KindGroup {
		s.Tenant = t.Tenant
	}
	if t.token != "" && t.token != s.token() {
		s.key = t.token
	}
	return s
}

// Mark is the value saying a run holds a place.
type Mark struct {
	RunID    string    `json:"run_id"`
	RunnerID string    `json:"runner_id"`
	At       time.Time `json:"at"`
}

func ticketKey(s Scope, runID string) string { return "q." + s.token() + "." + runID }
func markKey(s Scope, runID string) string   { return "h." + s.token() + "." + runID }

// parseKey splits a key into its kind (q or h), scope token and run id.
func parseKey(k string) (kind, token, runID string, ok bool) {
	parts := strings.Split(k, ".")
	if len(parts) != 3 || (parts[0] != "q" && parts[0] != "h") {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// Lines is the bucket, for the calls a client and a runner both make.
type Lines struct{ kv jetstream.KeyValue }

// New returns the lines of kv; a nil kv gives ErrNoBucket on every call.
func New(kv jetstream.KeyValue) *Lines { return &Lines{kv: kv} }

func (l *Lines) bucket() (jetstream.KeyValue, error) {
	if l == nil || l.kv == nil {
		return nil, ErrNoBucket
	}
	return l.kv, nil
}

// Join gives the run a place at the end of the scope's line, or keeps the
// place it has. It returns the ticket's revision.
func (l *Lines) Join(ctx context.Context, s Scope, t Ticket) (uint64, error) {
	kv, err := l.bucket()
	if err != nil {
		return 0, err
	}
	t.Kind, t.Name = s.Kind, s.Name
	if s.Kind == KindGroup {
		t.Tenant = s.Tenant
	}
	if t.At.IsZero() {
		t.At = time.Now().UTC()
	}
	data, err := json.Marshal(t)
	if err != nil {
		return 0, fmt.Errorf("encode ticket of run %s: %w", t.RunID, err)
	}
	rev, err := kv.Create(ctx, ticketKey(s, t.RunID), data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		e, gerr := kv.Get(ctx, ticketKey(s, t.RunID))
		if gerr != nil {
			return 0, fmt.Errorf("join the line of %s for run %s: %w", s, t.RunID, gerr)
		}
		return e.Revision(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("join the line of %s for run %s: %w", s, t.RunID, err)
	}
	return rev, nil
}

// Leave removes the run's ticket and mark from the scope's line. The ticket
// goes first: a leave cut short after it leaves a mark, which counts only
// while the run's lease lives, where the other order would leave a ticket
// without a mark, waiting ahead of the line for good.
func (l *Lines) Leave(ctx context.Context, s Scope, runID string) error {
	kv, err := l.bucket()
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range []string{ticketKey(s, runID), markKey(s, runID)} {
		if err := kv.Delete(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			errs = append(errs, err)
			break
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("leave the line of %s for run %s: %w", s, runID, err)
	}
	return nil
}

// Withdraw removes the run's ticket from the scope's line, and keeps its
// mark if it has one: the run gives up its place in the line, not a place
// it holds.
func (l *Lines) Withdraw(ctx context.Context, s Scope, runID string) error {
	kv, err := l.bucket()
	if err != nil {
		return err
	}
	if err := kv.Delete(ctx, ticketKey(s, runID)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("withdraw from the line of %s for run %s: %w", s, runID, err)
	}
	return nil
}

// Hold writes the run's mark (it holds a place) and returns its revision.
func (l *Lines) Hold(ctx context.Context, s Scope, runID, runnerID string) (uint64, error) {
	kv, err := l.bucket()
	if err != nil {
		return 0, err
	}
	data, _ := json.Marshal(Mark{RunID: runID, RunnerID: runnerID, At: time.Now().UTC()})
	rev, err := kv.Put(ctx, markKey(s, runID), data)
	if err != nil {
		return 0, fmt.Errorf("hold a place of %s for run %s: %w", s, runID, err)
	}
	return rev, nil
}

// Release deletes the run's mark: it holds no place (its ticket stays).
func (l *Lines) Release(ctx context.Context, s Scope, runID string) error {
	kv, err := l.bucket()
	if err != nil {
		return err
	}
	if err := kv.Delete(ctx, markKey(s, runID)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("release the place of %s for run %s: %w", s, runID, err)
	}
	return nil
}

// Member is one run of a line, as Members lists it.
type Member struct {
	RunID   string
	Rev     uint64 // the ticket's revision: its order in the line
	Holding bool   // it has a mark (whether its lease lives is not checked)
	Limit   int
}

// Members lists the scope's line in order (runs holding a mark without a
// ticket, if any, first).
func (l *Lines) Members(ctx context.Context, s Scope) ([]Member, error) {
	kv, err := l.bucket()
	if err != nil {
		return nil, err
	}
	lister, err := kv.ListKeysFiltered(ctx, "q."+s.token()+".*", "h."+s.token()+".*")
	if err != nil {
		return nil, fmt.Errorf("list the line of %s: %w", s, err)
	}
	byRun := map[string]*Member{}
	get := func(id string) *Member {
		if m := byRun[id]; m != nil {
			return m
		}
		m := &Member{RunID: id}
		byRun[id] = m
		return m
	}
	for k := range lister.Keys() {
		kind, _, runID, ok := parseKey(k)
		if !ok {
			continue
		}
		if kind == "h" {
			get(runID).Holding = true
			continue
		}
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // left meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("read the line of %s: %w", s, err)
		}
		m := get(runID)
		m.Rev = e.Revision()
		var t Ticket
		if json.Unmarshal(e.Value(), &t) == nil {
			m.Limit = t.Limit
		}
	}
	out := make([]Member, 0, len(byRun))
	for _, m := range byRun {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Rev != out[j].Rev {
			return out[i].Rev < out[j].Rev
		}
		return out[i].RunID < out[j].RunID
	})
	return out, nil
}
