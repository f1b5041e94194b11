package executor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/contain"
	"github.com/runnerd/runnerd/workflow"
)

// maxOutputFile bounds how much of $RUNEXEC_OUTPUT is read, so a step cannot
// make the executor hold an arbitrary file in memory.
const maxOutputFile = 1 << 20

// stepJob runs one command step, all its attempts, on its own goroutine. It
// works on a copy of the step's state and hands the final state back to the
// scheduler through send.
type stepJob struct {
	step   *workflow.Step
	state  runnerd.StepState
	scope  workflow.Scope
	opts   *Options // read only
	reaper *contain.Reaper
	send   func(message)
}

// command is a step's templated argv and environment.
type command struct {
	argv []string
	env  []string // the step's own variables, added after Options.Env
}

func (j *stepJob) run(ctx context.Context) {
	st := j.state
	msg := j.execute(ctx, &st)
	st.FinishedAt = time.Now()
	j.send(message{done: &stepDone{id: j.step.ID, state: st, msg: msg}})
}

func (j *stepJob) event(e runnerd.Event) {
	e.Step = j.step.ID
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	j.send(message{event: e})
}

// execute runs the attempts and sets the final status and reason of st. It
// returns a human-readable detail for step_finished.
func (j *stepJob) execute(ctx context.Context, st *runnerd.StepState) string {
	fail := func(reason runnerd.StepReason, msg string) string {
		st.Status, st.Reason = runnerd.StepFailed, reason
		return msg
	}
	cmd, err := j.expand()
	if err != nil {
		return fail(runnerd.StepReasonTemplate, err.Error())
	}
	secretEnv, cleanup, err := j.provideSecrets()
	if err != nil {
		return fail(runnerd.StepReasonStartError, err.Error())
	}
	defer cleanup()
	cmd.env = append(cmd.env, secretEnv...)
	lg, err := openStepLog(j.opts.LogDir, j.step.ID, j.opts.LogLimit, j.event)
	if lg != nil {
		lg.eventLimit = j.opts.LogEventLimit
		lg.secrets = j.opts.maskValues
	}
	if err != nil {
		return fail(runnerd.StepReasonStartError, err.Error())
	}
	defer lg.close()

	backoff := j.step.Backoff.D()
	if backoff <= 0 {
		backoff = workflow.DefaultBackoff
	}
	capBackoff := maxBackoff
	if r := j.step.RetryRules; r != nil && r.MaxBackoff > 0 {
		capBackoff = r.MaxBackoff.D()
	}
	var note string
	for try := 0; try <= j.step.Retries; try++ {
		if try > 0 {
			note += fmt.Sprintf("; retry after %s", backoff)
			if !sleepCtx(ctx, backoff) {
				return j.interrupted(ctx, st)
			}
			backoff = min(backoff*2, capBackoff)
		}
		st.Attempts++
		st.TryStartedAt = time.Now()
		j.event(runnerd.Event{Type: runnerd.EventStepStarted, Attempt: st.Attempts, Message: note, Time: st.TryStartedAt})
		res := j.attempt(ctx, st.Attempts, cmd, lg)
		st.ExitCode, st.Signal, st.Reason = res.exitCode, res.signal, res.reason
		switch {
		case res.reason == runnerd.StepReasonCompleted:
			return j.succeed(st, res.outputFile, lg)
		case res.reason == runnerd.StepReasonCancelled:
			st.Status = runnerd.StepCancelled
			return res.msg
		case ctx.Err() != nil:
			// The run deadline: no attempt can finish in time any more.
			st.Status = runnerd.StepFailed
			return res.msg
		}
		st.Status = runnerd.StepFailed
		retry, why := j.step.RetryDecision(workflow.Failure{
			ExitCode: res.exitCode, Signal: res.signal, TimedOut: res.reason == runnerd.StepReasonTimeout,
		})
		switch {
		case try == j.step.Retries && j.step.Retries > 0:
			retry, why = false, fmt.Sprintf("no retries left (%d)", j.step.Retries)
		case try == j.step.Retries:
			retry, why = false, "the step has no retries"
		}
		decision := runnerd.AttemptNotRetried
		if retry {
			decision = runnerd.AttemptRetried
		}
		failed := runnerd.Event{Type: runnerd.EventAttemptFailed, Attempt: st.Attempts,
			Signal: res.signal, Reason: string(res.reason), Status: decision, Message: why, Time: time.Now()}
		if failed.Exited() {
			failed.ExitCode = res.exitCode
		}
		st.AddTry(failed)
		j.event(failed)
		note = fmt.Sprintf("attempt %d failed: %s", st.Attempts, res.msg)
		if !retry {
			lg.marker(fmt.Sprintf("[runexec: %s; not retried: %s]", note, why))
			if try > 0 {
				return fmt.Sprintf("%s (after %d attempts; not retried: %s)", res.msg, try+1, why)
			}
			if j.step.Retries > 0 {
				return fmt.Sprintf("%s (not retried: %s)", res.msg, why)
			}
			return res.msg
		}
		lg.marker(fmt.Sprintf("[runexec: %s; retried: %s]", note, why))
	}
	return note
}

// interrupted settles a step whose retry wait was cut short by the run's
// context.
func (j *stepJob) interrupted(ctx context.Context, st *runnerd.StepState) string {
	reason, msg := stopReason(ctx)
	st.Reason = reason
	if reason == runnerd.StepReasonCancelled {
		st.Status = runnerd.StepCancelled
	} else {
		st.Status = runnerd.StepFailed
	}
	return msg
}

// succeed reads the outputs and artifacts of an attempt that exited 0. A
// missing or escaping artifact fails the step without a retry: running the
// same command again would declare the same paths.
func (j *stepJob) succeed(st *runnerd.StepState, outputFile string, lg *stepLog) string {
	outputs, bad, err := readOutputs(outputFile)
	if err != nil {
		st.Status, st.Reason = runnerd.StepFailed, runnerd.StepReasonStartError
		return fmt.Sprintf("read outputs: %v", err)
	}
	for _, line := range bad {
		lg.marker(fmt.Sprintf("[runexec: ignored output line without '=': %q]", line))
	}
	total := 0
	for _, kv := range outputs {
		total += len(kv[0]) + len(kv[1])
		if len(kv[1]) > workflow.MaxOutputBytes {
			st.Status, st.Reason = runnerd.StepFailed, runnerd.StepReasonOutputs
			return fmt.Sprintf("output %q is %d bytes: the limit is %d (%d KiB); put large results in an artifact", kv[0], len(kv[1]), workflow.MaxOutputBytes, workflow.MaxOutputBytes>>10)
		}
	}
	if total > workflow.MaxOutputsBytes {
		st.Status, st.Reason = runnerd.StepFailed, runnerd.StepReasonOutputs
		return fmt.Sprintf("outputs are %d bytes in all: the limit is %d (%d MiB); put large results in an artifact", total, workflow.MaxOutputsBytes, workflow.MaxOutputsBytes>>20)
	}
	st.Outputs = nil
	for _, kv := range outputs {
		if st.Outputs == nil {
			st.Outputs = make(map[string]string)
		}
		v := maskString(kv[1], j.opts.maskValues)
		st.Outputs[kv[0]] = v
		j.event(runnerd.Event{Type: runnerd.EventOutput, Attempt: st.Attempts, Key: kv[0], Value: v})
	}
	patterns := make([]string, 0, len(j.step.Artifacts))
	for _, p := range j.step.Artifacts {
		ep, err := workflow.Expand(p, j.scope)
		if err != nil {
			st.Status, st.Reason = runnerd.StepFailed, runnerd.StepReasonTemplate
			return fmt.Sprintf("artifacts: %v", err)
		}
		patterns = append(patterns, ep)
	}
	arts, err := collectArtifacts(j.opts.Workdir, patterns)
	if err != nil {
		st.Status, st.Reason = runnerd.StepFailed, runnerd.StepReasonArtifact
		return err.Error()
	}
	st.Artifacts = arts
	for _, a := range arts {
		j.event(runnerd.Event{Type: runnerd.EventArtifact, Attempt: st.Attempts, Path: a})
	}
	st.Status, st.Reason = runnerd.StepSucceeded, runnerd.StepReasonCompleted
	return ""
}

// expand applies templates to the step's command and environment once, so
// every attempt runs the same thing.
func (j *stepJob) expand() (command, error) {
	var c command
	var tplVars []string // the shell script's template values, after env: so they win
	s := j.step
	if s.Shell != "" {
		// Templates reach the script as environment variables it
		// references, never as text of the script (no injection).
		script, vars, err := workflow.ExpandShell(s.Shell, j.scope)
		if err != nil {
			return c, fmt.Errorf("shell: %w", err)
		}
		c.argv = []string{"/bin/sh", "-e", "-c", script}
		tplVars = vars
	} else {
		for i, a := range s.Run {
			ea, err := workflow.Expand(a, j.scope)
			if err != nil {
				return c, fmt.Errorf("run[%d]: %w", i, err)
			}
			c.argv = append(c.argv, ea)
		}
	}
	if len(c.argv) == 0 {
		return c, errors.New("nothing to run")
	}
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		v, err := workflow.Expand(s.Env[k], j.scope)
		if err != nil {
			return c, fmt.Errorf("env.%s: %w", k, err)
		}
		c.env = append(c.env, k+"="+v)
	}
	c.env = append(c.env, tplVars...)
	return c, nil
}

// env is the full environment of one attempt; later entries win.
func (j *stepJob) env(c command, attempt int, outputFile string) []string {
	env := make([]string, 0, len(j.opts.Env)+len(c.env)+4)
	env = append(env, j.opts.Env...)
	env = append(env, c.env...)
	return append(env,
		"RUNEXEC_OUTPUT="+outputFile,
		"RUNEXEC_RUN_ID="+j.opts.RunID,
		"RUNEXEC_STEP="+j.step.ID,
		"RUNEXEC_ATTEMPT="+strconv.Itoa(attempt),
	)
}

// readOutputs parses key=value lines in file order. Blank lines are ignored;
// lines without '=' are returned in bad so the log can say they were ignored.
func readOutputs(path string) (kvs [][2]string, bad []string, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, maxOutputFile))
	sc.Buffer(make([]byte, 64<<10), maxOutputFile)
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) == "" {
			bad = append(bad, line)
			continue
		}
		kvs = append(kvs, [2]string{strings.TrimSpace(k), v})
	}
	return kvs, bad, sc.Err()
}

func outputPath(logDir, step string, attempt int) string {
	return filepath.Join(logDir, fmt.Sprintf("%s.%d.out", step, attempt))
}

// sleepCtx sleeps for d, or returns false early when ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// stopReason says why ctx ended: a step timeout, the run deadline or a
// cancel.
func stopReason(ctx context.Context) (runnerd.StepReason, string) {
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errStepTimeout):
		return runnerd.StepReasonTimeout, "step timeout exceeded"
	case errors.Is(cause, errRunDeadline):
		return runnerd.StepReasonTimeout, "run deadline exceeded"
	default:
		return runnerd.StepReasonCancelled, "run cancelled"
	}
}
