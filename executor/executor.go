// Package executor runs one workflow run: it schedules the DAG, runs each
// step as a contained process group, and reports what happens as a stream of
// runnerd.Event values.
//
// It is used inside the runexec child, by the runexec CLI on its own and
// (through the gRPC seam) under runnerd. It holds no connection and no
// credential: everything it knows comes from Options, everything it says goes
// to Options.Sink and the Result.
package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/workflow"
)

// Defaults for Options fields left zero.
const (
	DefaultLogLimit  int64 = 64 << 20
	DefaultKillGrace       = 5 * time.Second

	// maxBackoff caps the doubling retry delay, so a step with many retries
	// does not sleep for hours between attempts.
	maxBackoff = time.Minute
)

// Errors returned by Run for options it cannot work with. Run outcomes
// (failed steps, timeouts, cancellation) are never errors: they are in Result.
var (
	ErrNoWorkflow      = errors.New("executor: no workflow")
	ErrInvalidWorkflow = errors.New("executor: invalid workflow")
	ErrNoWorkdir       = errors.New("executor: workdir is not a directory")
	ErrNoLogDir        = errors.New("executor: log dir unusable")
	ErrMissingSecret   = errors.New("executor: a secret the workflow declares was not given")
)

// Options says what to run and where.
type Options struct {
	RunID    string
	Workflow *workflow.Workflow
	Vars     map[string]string // already resolved (defaults + overrides); nil = the workflow's defaults

	// Workdir is every step's current directory; artifacts are resolved
	// inside it and may not leave it.
	Workdir string
	// LogDir receives <step>.log (every attempt appended, each after a marker
	// line) and the per-attempt $RUNEXEC_OUTPUT files <step>.<attempt>.out.
	// It is created if missing. Keep it outside Workdir so artifact globs do
	// not pick up logs.
	LogDir string

	State   runnerd.StepStates           // saved state; nil = a fresh run
	Answers map[string]map[string]string // step id -> answers for human steps
	Env     []string                     // base environment of every step
	// Secrets are the run's secrets by name; each step gets those it
	// declares (env or file) and every value is masked in all output.
	Secrets map[string]string
	// maskValues are the secret values masked in all output, longest
	// first (set by prepare).
	maskValues []string

	Deadline time.Time // run deadline (zero = none); the earlier of this and the workflow's timeout applies
	LogLimit int64     // per-step log cap in bytes; default DefaultLogLimit
	// LogEventLimit bounds the bytes of a step's output also sent as log
	// events (0: no bound); past it one marker event says the rest is only
	// in the log file. A supervisor that stores a bounded prefix of events
	// sets it so a step's flood of output is not streamed for nothing.
	LogEventLimit int64
	KillGrace     time.Duration // SIGTERM -> KillGrace -> SIGKILL; default DefaultKillGrace

	// StartProcess, if set, starts each step's process (default:
	// exec.Cmd.Start), e.g. from a thread in another network namespace.
	StartProcess func(*exec.Cmd) error

	// Sink receives every event, serially, from the goroutine that called Run.
	Sink func(runnerd.Event)
	// Checkpoint, if set, receives a snapshot of every step's state after
	// each step finishes (and at the end), on the same goroutine as Sink, so
	// callers can save progress that survives a crash of this process.
	Checkpoint func(runnerd.StepStates)
}

// Result is the outcome of a run.
type Result struct {
	Status  runnerd.Status
	Reason  runnerd.Reason
	Steps   runnerd.StepStates
	Message string // a human-readable detail, e.g. which step failed
}

// Run executes the workflow until it succeeds, fails, pauses on a human step
// or ctx is done. It returns an error only for unusable options.
//
// Scheduling rules: a step starts once every step it needs has succeeded, up
// to the workflow's max_parallel at once. A step whose need failed or was
// skipped is skipped (reason dependency). Once a step has failed (after its
// retries), no new step is started; steps already running finish, and the run
// ends failed/step_failed.
//
// Containment: when a step's main process exits, its process group is
// killed. If this process is a child subreaper (see contain.BecomeSubreaper), every
// other child of it that is not a running step's process (orphans that left
// their step's group) is killed when a step attempt ends and when the run
// ends; so in a subreaper, run one Run at a time.
func Run(ctx context.Context, opts Options) (Result, error) {
	if err := opts.prepare(); err != nil {
		return Result{}, err
	}
	r := newRun(opts)
	return r.execute(ctx), nil
}

// prepare checks the options and fills defaults.
func (o *Options) prepare() error {
	if o.Workflow == nil {
		return ErrNoWorkflow
	}
	if err := o.Workflow.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidWorkflow, err)
	}
	if missing := o.Workflow.MissingSecrets(o.Secrets); len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrMissingSecret, strings.Join(missing, ", "))
	}
	o.maskValues = maskValues(o.Secrets)
	if o.Vars == nil {
		vars, err := o.Workflow.ResolveVars(nil)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidWorkflow, err)
		}
		o.Vars = vars
	}
	wd, err := filepath.Abs(o.Workdir)
	if o.Workdir == "" || err != nil {
		return fmt.Errorf("%w: %q", ErrNoWorkdir, o.Workdir)
	}
	if fi, err := os.Stat(wd); err != nil || !fi.IsDir() {
		return fmt.Errorf("%w: %q", ErrNoWorkdir, o.Workdir)
	}
	o.Workdir = wd
	if o.LogDir == "" {
		return fmt.Errorf("%w: empty path", ErrNoLogDir)
	}
	if o.LogDir, err = filepath.Abs(o.LogDir); err != nil {
		return fmt.Errorf("%w: %w", ErrNoLogDir, err)
	}
	if err := os.MkdirAll(o.LogDir, 0o755); err != nil {
		return fmt.Errorf("%w: %w", ErrNoLogDir, err)
	}
	if o.LogLimit <= 0 {
		o.LogLimit = DefaultLogLimit
	}
	if o.KillGrace <= 0 {
		o.KillGrace = DefaultKillGrace
	}
	if o.Sink == nil {
		o.Sink = func(runnerd.Event) {}
	}
	if w := o.Workflow.Timeout.D(); w > 0 {
		if d := time.Now().Add(w); o.Deadline.IsZero() || d.Before(o.Deadline) {
			o.Deadline = d
		}
	}
	return nil
}
