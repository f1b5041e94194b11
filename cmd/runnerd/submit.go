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
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
)

// inlineWorkflowMax is the largest workflow JSON carried in the message
// itself; a larger one goes to S3 and the message carries its key. NATS
// refuses messages above max_payload (1 MiB by default), and vars and the
// envelope need room too. A variable so tests can cross it cheaply.
var inlineWorkflowMax = 256 << 10

// traceHeader is the W3C Trace Context header a run's messages carry.
const traceHeader = "traceparent"

func submitCmd(env *cmdEnv) *cobra.Command {
	var (
		cfg     clientConfig
		varList []string
		id      string
		wait    bool
		timeout time.Duration
		opt     waitOptions
	)
	c := &cobra.Command{
		Use:   "submit FILE [--var k=v]... [--id ID] [--wait [--logs]] [--timeout DUR] [--json]",
		Short: "create a run from a workflow file and queue it",
		Long: `Creates a run of the workflow in FILE ("-": stdin) and queues it. The run id is
printed alone on the first line of stdout (--json: the run document instead);
progress goes to stderr. Submitting again with the same --id while the run is
still queued queues it again safely (the queue drops the duplicate), so a
submit that failed half-way can simply be repeated.

With --wait, follows the run to its end and exits like runexec run:
0 succeeded, 1 failed, 2 invalid usage or workflow, 3 paused, 4 cancelled.`,
		Args: cli.ExactArgs(1, "workflow file"),
		RunE: func(c *cobra.Command, args []string) error {
			return submit(c.Context(), env, cfg, args[0], varList, id, timeout, wait, opt)
		},
	}
	f := cli.FlagsOf(c)
	cfg.register(f)
	// What says how to reach the servers has a RUNNERD_* variable; what
	// describes one invocation does not: a RUNNERD_ID or RUNNERD_WAIT left in
	// the environment would silently apply to every later command.
	f.List(&varList, "var", "override a workflow var: k=v (repeatable)")
	f.String(&id, "id", "", "run id (default: a new time-ordered id)").NoEnv()
	f.Bool(&wait, "wait", false, "follow the run until it finishes or pauses; exit with its status").NoEnv()
	f.Duration(&timeout, "timeout", 0, "run deadline (0: the workflow's own timeout)").NoEnv()
	opt.register(f, "the run document")
	return c
}

func submit(ctx context.Context, env *cmdEnv, cfg clientConfig, file string, varList []string, id string, timeout time.Duration, wait bool, opt waitOptions) error {
	overrides, err := cli.ParseVars("var", varList)
	if err != nil {
		return err
	}
	if id == "" {
		id = cli.NewRunID()
	} else if err := queue.ValidateRunID(id); err != nil {
		return cli.Usagef("--id: %w", err)
	}

	run, err := newRun(file, id, cfg.Tenant, overrides, timeout)
	if err != nil {
		return cli.Usage(err)
	}
	// Check the message a runner would get before anything is created, so
	// a bad tenant or a workflow the queue refuses never leaves a queued
	// run with no message.
	if err := newMessage(run, nil).Validate(); err != nil {
		return cli.Usage(err)
	}

	c, err := connectClient(ctx, cfg, needMongo|needNATS, "runnerd submit")
	if err != nil {
		return cfg.classify(err)
	}
	defer c.Close()

	run, err = createOrReuse(ctx, env, c.st, run)
	if err != nil {
		return cfg.classify(err)
	}
	if _, err := publishRun(ctx, c, run, nil); err != nil {
		return cfg.classify(fmt.Errorf("%w\nrun %s was created but is not queued yet: repeat the command with --id %s to queue it", err, run.ID, run.ID))
	}
	switch {
	case opt.json && !wait:
		if err := writeRunJSON(env.stdout, withPendingSteps(run)); err != nil {
			return err
		}
	case !opt.json:
		fmt.Fprintln(env.stdout, run.ID)
	}
	fmt.Fprintf(env.stderr, "run %s queued (workflow %q, %d steps, tenant %s)\n", run.ID, run.Workflow.Name, len(run.Workflow.Steps), run.TenantID)
	if !wait {
		return nil
	}
	return waitRun(ctx, env, c, run.ID, 0, opt)
}

// newRun loads and checks the workflow file and returns the run to create.
// Every error names what is wrong (file, line, step, field, var).
func newRun(file, id, tenant string, overrides map[string]string, timeout time.Duration) (*store.Run, error) {
	w, err := cli.LoadWorkflow(file, os.Stdin)
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
		return nil, fmt.Errorf("run %s already exists for tenant %q: choose another --id: %w", r.ID, old.TenantID, store.ErrExists)
	case old.Status != runnerd.StatusQueued:
		return nil, fmt.Errorf("run %s already exists and is %s: choose another --id: %w", r.ID, old.Status, store.ErrExists)
	case !sameSubmission(old, r):
		return nil, fmt.Errorf("run %s already exists with another workflow, vars or timeout: choose another --id: %w", r.ID, store.ErrExists)
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

// newTraceParent starts a W3C trace for the run: version 00, a random trace
// id and parent id, sampled.
func newTraceParent() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("trace id: %w", err)
	}
	return "00-" + hex.EncodeToString(b[:16]) + "-" + hex.EncodeToString(b[16:]) + "-01", nil
}
