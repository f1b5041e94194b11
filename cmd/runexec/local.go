package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"sync"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/child"
	"github.com/runnerd/runnerd/executor"
)

// errCancelled is the cause given to the run's context by Cancel.
var errCancelled = errors.New("cancel requested by runnerd")

// local is the child.Executor runexec serves over gRPC: it runs a request
// with the executor in this process. The benchmarks call it directly to
// measure what isolation costs.
type local struct {
	// Env is the base environment of the steps.
	Env []string
	// Ready, if set, is waited for before the run's steps start (runexec
	// closes it once its spare threads exist).
	Ready <-chan struct{}
	// Prepare, if set, is called once before the run's steps start (runexec
	// applies its sandbox there); it returns how steps are started (nil:
	// exec.Cmd.Start). An error fails the Execute.
	Prepare func(req *child.Request) (start func(*exec.Cmd) error, err error)

	mu        sync.Mutex
	cancel    context.CancelCauseFunc
	cancelled error // a Cancel that came before Execute
}

// Execute runs the workflow to its end and streams the events to emit.
func (l *local) Execute(ctx context.Context, req *child.Request, emit func([]runnerd.Event) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	l.mu.Lock()
	l.cancel = cancel
	if l.cancelled != nil {
		cancel(l.cancelled)
	}
	l.mu.Unlock()

	if l.Ready != nil {
		select {
		case <-l.Ready:
		case <-ctx.Done():
		}
	}
	var start func(*exec.Cmd) error
	if l.Prepare != nil {
		var err error
		if start, err = l.Prepare(req); err != nil {
			return fmt.Errorf("run %s: %w", req.RunID, err)
		}
	}
	events := make(chan runnerd.Event, 4*child.MaxBatch)
	sent := make(chan error, 1)
	go func() { sent <- forward(events, emit, cancel) }()

	_, err := executor.Run(ctx, executor.Options{
		RunID:     req.RunID,
		Workflow:  req.Workflow,
		Vars:      req.Vars,
		Workdir:   req.Workdir,
		LogDir:    req.LogDir,
		State:     req.State,
		Answers:   req.Answers,
		Env:       withEnv(l.Env, req.Env),
		Secrets:   req.Secrets,
		Deadline:  req.Deadline,
		LogLimit:  req.LogLimit,
		KillGrace: req.KillGrace,
		Sink:      func(e runnerd.Event) { events <- e },

		StartProcess: start,

		LogEventLimit: req.LogEventLimit,
	})
	close(events)
	if sendErr := <-sent; sendErr != nil {
		return sendErr
	}
	if err != nil {
		return fmt.Errorf("run %s: %w", req.RunID, err)
	}
	return nil
}

// forward sends events in batches: it blocks for one event, then takes what
// else is already waiting. When the parent stops listening the run is
// cancelled, so no step outlives a lost parent. Events are still drained so
// the executor never blocks on a dead stream.
func forward(events <-chan runnerd.Event, emit func([]runnerd.Event) error, cancel context.CancelCauseFunc) error {
	batch := make([]runnerd.Event, 0, child.MaxBatch)
	var failed error
	for e := range events {
		batch = append(batch[:0], e)
	fill:
		for len(batch) < child.MaxBatch {
			select {
			case e, ok := <-events:
				if !ok {
					break fill
				}
				batch = append(batch, e)
			default:
				break fill
			}
		}
		if failed != nil {
			continue
		}
		if err := emit(batch); err != nil {
			failed = fmt.Errorf("send events: %w", err)
			cancel(failed)
		}
	}
	return failed
}

// Cancel stops the running Execute, if any.
func (l *local) Cancel(_ context.Context, reason string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cancelled = fmt.Errorf("%w: %s", errCancelled, reason)
	if l.cancel != nil {
		l.cancel(l.cancelled)
	}
	return nil
}

// withEnv is base with the variables of set added or replaced.
func withEnv(base []string, set map[string]string) []string {
	if len(set) == 0 {
		return base
	}
	out := make([]string, 0, len(base)+len(set))
	for _, kv := range base {
		name, _, _ := strings.Cut(kv, "=")
		if _, ok := set[name]; !ok {
			out = append(out, kv)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(set)) {
		out = append(out, name+"="+set[name])
	}
	return out
}
