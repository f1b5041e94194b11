package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
	"github.com/runnerd/runnerd/workflow"
)

// inlineWorkflowMax is the largest workflow JSON carried in the message
// itself; a larger one goes to S3 and the message carries its key. NATS
// refuses messages above max_payload (1 MiB by default), and vars and the
// envelope need room too. A variable so tests can cross it cheaply.
var inlineWorkflowMax = 256 << 10

// traceHeader is the W3C Trace Context header a run's messages carry.
const traceHeader = "traceparent"

func runSubmit(ctx context.Context, env *cmdEnv, args []string) int {
	var (
		cfg     clientConfig
		varList []string
		id      string
		wait    bool
		timeout time.Duration
		asJSON  bool
	)
	f := newFlags("submit", `usage: runnerd submit FILE [--var k=v]... [--id ID] [--wait] [--timeout DUR] [--json]

Creates a run of the workflow in FILE and queues it. The run id is printed alone
on the first line of stdout; progress goes to stderr. Submitting again with the
same --id while the run is still queued queues it again safely (the queue drops
the duplicate), so a submit that failed half-way can simply be repeated.

With --wait, follows the run to its end and exits like runexec run:
0 succeeded, 1 failed, 2 invalid usage or workflow, 3 paused, 4 cancelled.`, env.stderr)
	cfg.register(f)
	// What says how to reach the servers has a RUNNERD_* variable; what
	// describes one invocation does not: a RUNNERD_ID or RUNNERD_WAIT left in
	// the environment would silently apply to every later command.
	f.List(&varList, "var", "override a workflow var: k=v (repeatable)")
	f.fs.StringVar(&id, "id", "", "run id (default: a new time-ordered id)")
	f.fs.BoolVar(&wait, "wait", false, "follow the run until it finishes or pauses; exit with its status")
	f.fs.DurationVar(&timeout, "timeout", 0, "run deadline (0: the workflow's own timeout)")
	f.fs.BoolVar(&asJSON, "json", false, "with --wait, print the run's events as JSON lines on stdout (after the id line)")
	pos, code, ok := parseArgs(f, args, env.stderr)
	if !ok {
		return code
	}
	file, ok := oneArg("submit", "workflow file", pos, env.stderr)
	if !ok {
		return exitUsage
	}
	overrides, err := parseKV("var", varList)
	if err != nil {
		fmt.Fprintf(env.stderr, "submit: %v\n", err)
		return exitUsage
	}
	if timeout < 0 {
		fmt.Fprintf(env.stderr, "submit: --timeout %s: want 0 or more\n", timeout)
		return exitUsage
	}
	if id == "" {
		id = newRunID()
	} else if err := queue.ValidateRunID(id); err != nil {
		fmt.Fprintf(env.stderr, "submit: --id: %v\n", err)
		return exitUsage
	}

	run, err := newRun(file, id, cfg.Tenant, overrides, timeout)
	if err != nil {
		fmt.Fprintf(env.stderr, "submit: %v\n", err)
		return exitUsage
	}
	// Check the message a runner would get before anything is created, so
	// a bad tenant or a workflow the queue refuses never leaves a queued
	// run with no message.
	if err := newMessage(run, nil).Validate(); err != nil {
		fmt.Fprintf(env.stderr, "submit: %v\n", err)
		return exitUsage
	}

	c, err := connectClient(ctx, cfg, needMongo|needNATS, "runnerd submit")
	if err != nil {
		return fail(env, "submit", cfg, err)
	}
	defer c.Close()

	run, err = createOrReuse(ctx, env, c.st, run)
	if err != nil {
		return fail(env, "submit", cfg, err)
	}
	if _, err := publishRun(ctx, c, run, nil); err != nil {
		return fail(env, "submit", cfg, fmt.Errorf("%w\nrun %s was created but is not queued yet: repeat the command with --id %s to queue it", err, run.ID, run.ID))
	}
	fmt.Fprintln(env.stdout, run.ID)
	fmt.Fprintf(env.stderr, "run %s queued (workflow %q, %d steps, tenant %s)\n", run.ID, run.Workflow.Name, len(run.Workflow.Steps), run.TenantID)
	if !wait {
		return exitOK
	}
	return waitRun(ctx, env, c.st, run.ID, 0, asJSON)
}

// newRun loads and checks the workflow file and returns the run to create.
// Every error names what is wrong (file, line, step, field, var).
func newRun(file, id, tenant string, overrides map[string]string, timeout time.Duration) (*store.Run, error) {
	w, err := workflow.Load(file)
	if err != nil {
		return nil, err
	}
	// Load validated it with lines; Validate is what the queue and the
	// runner apply to the decoded message, and it must agree before the
	// run exists.
	if err := w.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	vars, err := w.ResolveVars(overrides)
	if err != nil {
		return nil, fmt.Errorf("--var: %w", err)
	}
	tp, err := newTraceParent()
	if err != nil {
		return nil, err
	}
	return &store.Run{
		ID:       id,
		TenantID: tenant,
		Workflow: w,
		// The resolved vars, not only the overrides: the run document then
		// shows every value the run uses, and resolving them again is a no-op.
		Vars:        vars,
		TimeoutSec:  int((timeout + time.Second - 1) / time.Second),
		TraceParent: tp,
	}, nil
}

// createOrReuse creates the run. If the id exists as a queued run of the
// same tenant with the same workflow and vars, it returns that run instead:
// its message may never have been published (the submit died between the
// two), and publishing it again under its generation is deduplicated by
// the stream.
func createOrReuse(ctx context.Context, env *cmdEnv, st *store.Store, r *store.Run) (*store.Run, error) {
	err := st.Create(ctx, r)
	if err == nil {
		return r, nil
	}
	if !errors.Is(err, store.ErrExists) {
		return nil, err
	}
	old, err := st.Get(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	switch {
	case old.TenantID != r.TenantID:
		return nil, fmt.Errorf("run %s already exists for tenant %q: choose another --id", r.ID, old.TenantID)
	case old.Status != runnerd.StatusQueued:
		return nil, fmt.Errorf("run %s already exists and is %s: choose another --id", r.ID, old.Status)
	case !sameSubmission(old, r):
		return nil, fmt.Errorf("run %s already exists with another workflow, vars or timeout: choose another --id", r.ID)
	}
	fmt.Fprintf(env.stderr, "run %s already exists and is queued: queueing it again (a duplicate message is dropped)\n", r.ID)
	return old, nil
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

// publishRun queues run r under its current generation, moving a large
// workflow to S3 first. duplicate reports that the stream already had this
// generation (a repeated submit or resume), which is not an error.
func publishRun(ctx context.Context, c *conns, r *store.Run, resume *queue.Resume) (duplicate bool, err error) {
	msg := newMessage(r, resume)
	data, err := json.Marshal(r.Workflow)
	if err != nil {
		return false, fmt.Errorf("encode the workflow of run %s: %w", r.ID, err)
	}
	if len(data) > inlineWorkflowMax {
		key := queue.WorkflowRef(data)
		blobs, err := c.blob(ctx)
		if err != nil {
			return false, fmt.Errorf("the workflow of run %s (%d bytes) goes to S3: %w", r.ID, len(data), err)
		}
		// Content-addressed: an object already there holds these bytes.
		if _, err := blobs.Head(ctx, key); errors.Is(err, blob.ErrNotFound) {
			if _, err := blobs.Put(ctx, key, bytes.NewReader(data)); err != nil {
				return false, fmt.Errorf("upload the workflow of run %s (%d bytes) to %s: %w", r.ID, len(data), key, err)
			}
		} else if err != nil {
			return false, fmt.Errorf("check %s for the workflow of run %s: %w", key, r.ID, err)
		}
		msg.Workflow, msg.WorkflowRef = nil, key
	}
	hdr := nats.Header{}
	if r.TraceParent != "" {
		hdr.Set(traceHeader, r.TraceParent)
	}
	err = c.q.Publish(ctx, msg, r.Generation, hdr)
	if errors.Is(err, queue.ErrDuplicate) {
		return true, nil
	}
	return false, err
}

// newRunID returns an id that sorts by creation time and is unique without
// coordination: UTC time to the millisecond, then 48 random bits.
// Lower-case, so it reads the same in S3 keys, subjects and file names.
func newRunID() string {
	t := time.Now().UTC()
	b := make([]byte, 6)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return fmt.Sprintf("%s%03d-%s", t.Format("20060102-150405-"), t.Nanosecond()/1e6, hex.EncodeToString(b))
}

// newTraceParent starts a W3C trace for the run: version 00, a random trace
// id and parent id, sampled.
func newTraceParent() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("trace id: %w", err)
	}
	return "00-" + hex.EncodeToString(b[:16]) + "-" + hex.EncodeToString(b[16:]) + "-01", nil
}
