package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
	"github.com/runnerd/runnerd/workflow"
)

// TraceHeader is the W3C Trace Context header a run's messages carry.
const TraceHeader = "traceparent"

// Submission is a run to create.
type Submission struct {
	// Workflow is the parsed workflow (workflow.Load keeps line numbers for
	// errors); it is validated again here, as a runner would.
	Workflow *workflow.Workflow
	// ID of the run; empty: NewRunID.
	ID string
	// TenantID; empty: Options.Tenant.
	TenantID string
	// Vars override the workflow's defaults.
	Vars map[string]string
	// Timeout is the run's deadline per attempt; 0: the workflow's own.
	Timeout time.Duration
}

// Queued is the run a Submit, Resume or Retry queued.
type Queued struct {
	Run *Run
	// Again: an earlier call with the same request had already created (or
	// resumed, or retried) the run but may have died before its message was
	// published; the message was published again under the same generation,
	// which the queue drops if it already has it.
	Again bool
}

// Submit creates the run and queues it. Repeating a Submit with the same ID,
// workflow, vars and timeout while the run is still queued is safe (Again);
// the same ID with anything else is ErrConflict.
func (c *Client) Submit(ctx context.Context, s Submission) (*Queued, error) {
	q, err := c.queue("submit")
	if err != nil {
		return nil, err
	}
	r, err := c.newRun(s)
	if err != nil {
		return nil, mark(ErrInvalid, err)
	}
	// Check the message a runner would get before anything is created, so a
	// bad tenant or a workflow the queue refuses never leaves a queued run
	// with no message.
	if err := newMessage(r, nil).Validate(); err != nil {
		return nil, mark(ErrInvalid, err)
	}
	r, again, err := c.createOrReuse(ctx, r)
	if err != nil {
		return nil, err
	}
	id := r.ID
	if r, err = c.joinGroup(ctx, r); err != nil {
		return nil, fmt.Errorf("%w\nrun %s was created but is not queued yet: repeat the submission with id %s to queue it", err, id, id)
	}
	if r.Status == runnerd.StatusCancelled { // on_conflict: cancel_new, and the group is full
		return &Queued{Run: r, Again: again}, nil
	}
	if _, err := c.publish(ctx, q, r, nil); err != nil {
		// Out of the group's line again, or its ticket would wait ahead of
		// the runs behind it until the submission is repeated. Should the
		// publish have landed after all, the runner that picks the run up
		// makes its ticket again.
		c.leaveGroup(context.WithoutCancel(ctx), r)
		return nil, fmt.Errorf("%w\nrun %s was created but is not queued yet: repeat the submission with id %s to queue it", err, r.ID, r.ID)
	}
	return &Queued{Run: r, Again: again}, nil
}

func (c *Client) newRun(s Submission) (*store.Run, error) {
	if s.Workflow == nil {
		return nil, errors.New("submission has no workflow")
	}
	if s.Timeout < 0 {
		return nil, fmt.Errorf("timeout %s: want 0 or more", s.Timeout)
	}
	id := s.ID
	if id == "" {
		id = NewRunID()
	} else if err := queue.ValidateRunID(id); err != nil {
		return nil, fmt.Errorf("id: %w", err)
	}
	tenant := s.TenantID
	if tenant == "" {
		tenant = c.tenant
	}
	w := s.Workflow
	// What the queue and the runner apply to the decoded message must agree
	// before the run exists.
	if err := w.Validate(); err != nil {
		return nil, err
	}
	vars, err := w.ResolveVars(s.Vars)
	if err != nil {
		return nil, fmt.Errorf("vars: %w", err)
	}
	tp, err := newTraceParent()
	if err != nil {
		return nil, err
	}
	r := &store.Run{
		ID:       id,
		TenantID: tenant,
		Workflow: w,
		// The resolved vars, not only the overrides: the run document then
		// shows every value the run uses, and resolving them again is a no-op.
		Vars:        vars,
		TimeoutSec:  int((s.Timeout + time.Second - 1) / time.Second),
		TraceParent: tp,
	}
	// The group as evaluated now, on the run: runners and status read it
	// rather than evaluate it again, and it stays visible once the run ended.
	if c := w.Concurrency; c != nil {
		g, err := w.GroupOf(vars)
		if err != nil {
			return nil, err
		}
		r.ConcurrencyGroup, r.ConcurrencyLimit, r.OnConflict = g, c.EffectiveLimit(), c.Mode()
	}
	return r, nil
}

// createOrReuse creates the run. If the id exists as a queued run of the
// same tenant with the same workflow and vars, it returns that run instead:
// its message may never have been published (the submit died between the
// two), and publishing it again under its generation is deduplicated by
// the stream.
func (c *Client) createOrReuse(ctx context.Context, r *store.Run) (*store.Run, bool, error) {
	err := c.st.Create(ctx, r)
	if err == nil {
		return r, false, nil
	}
	if !errors.Is(err, store.ErrExists) {
		return nil, false, classify(err)
	}
	old, err := c.st.Get(ctx, r.ID)
	if err != nil {
		return nil, false, classify(err)
	}
	switch {
	case old.TenantID != r.TenantID:
		return nil, false, mark(ErrConflict, fmt.Errorf("run %s already exists for tenant %q: choose another id", r.ID, old.TenantID))
	case old.Status != runnerd.StatusQueued:
		return nil, false, mark(ErrConflict, fmt.Errorf("run %s already exists and is %s: choose another id", r.ID, old.Status))
	case !sameSubmission(old, r):
		return nil, false, mark(ErrConflict, fmt.Errorf("run %s already exists with another workflow, vars or timeout: choose another id", r.ID))
	}
	return old, true, nil
}

// sameSubmission reports whether two runs were submitted with the same
// workflow, vars and deadline. The workflow is compared as JSON, the form
// the message carries, so a round trip through MongoDB does not matter.
func sameSubmission(a, b *store.Run) bool {
	ja, err1 := json.Marshal(a.Workflow)
	jb, err2 := json.Marshal(b.Workflow)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb) &&
		maps.Equal(a.Vars, b.Vars) && a.TimeoutSec == b.TimeoutSec
}

// newMessage is the message that queues run r; resume is set when a paused
// run continues.
func newMessage(r *store.Run, resume *queue.Resume) *queue.Message {
	return &queue.Message{
		V:           queue.Version,
		RunID:       r.ID,
		TenantID:    r.TenantID,
		Workflow:    r.Workflow,
		Vars:        r.Vars,
		TimeoutSec:  r.TimeoutSec,
		Resume:      resume,
		PublishedAt: time.Now().UTC(),
	}
}

// publish queues run r under its current generation, moving a large
// workflow to S3 first. duplicate reports that the stream already had this
// generation (a repeated submit or resume), which is not an error.
func (c *Client) publish(ctx context.Context, q *queue.Queue, r *store.Run, resume *queue.Resume) (duplicate bool, err error) {
	msg := newMessage(r, resume)
	data, err := json.Marshal(r.Workflow)
	if err != nil {
		return false, fmt.Errorf("encode the workflow of run %s: %w", r.ID, err)
	}
	if len(data) > c.inline {
		key := queue.WorkflowRef(data)
		blobs, err := c.blobs(ctx, "the workflow of run "+r.ID+" goes to S3")
		if err != nil {
			return false, fmt.Errorf("the workflow of run %s (%d bytes) goes to S3: %w", r.ID, len(data), err)
		}
		// Content-addressed: an object already there holds these bytes.
		if _, err := blobs.Head(ctx, key); errors.Is(err, blob.ErrNotFound) {
			if _, err := blobs.Put(ctx, key, bytes.NewReader(data)); err != nil {
				return false, classify(fmt.Errorf("upload the workflow of run %s (%d bytes) to %s: %w", r.ID, len(data), key, err))
			}
		} else if err != nil {
			return false, classify(fmt.Errorf("check %s for the workflow of run %s: %w", key, r.ID, err))
		}
		msg.Workflow, msg.WorkflowRef = nil, key
	}
	hdr := nats.Header{}
	if r.TraceParent != "" {
		hdr.Set(TraceHeader, r.TraceParent)
	}
	err = q.Publish(ctx, msg, r.Generation, hdr)
	if errors.Is(err, queue.ErrDuplicate) {
		return true, nil
	}
	return false, classify(err)
}

// NewRunID returns an id that sorts by creation time and is unique without
// coordination (runnerd.NewRunID).
func NewRunID() string { return runnerd.NewRunID() }

// newTraceParent starts a W3C trace for the run: a random trace id and
// parent id, sampled, written by OpenTelemetry's TraceContext propagator.
func newTraceParent() (string, error) {
	var sc trace.SpanContextConfig
	if _, err := rand.Read(sc.TraceID[:]); err != nil {
		return "", fmt.Errorf("trace id: %w", err)
	}
	if _, err := rand.Read(sc.SpanID[:]); err != nil {
		return "", fmt.Errorf("span id: %w", err)
	}
	sc.TraceFlags = trace.FlagsSampled
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(sc)), carrier)
	return carrier.Get(TraceHeader), nil
}
