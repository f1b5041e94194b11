package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/proto"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
	"github.com/runnerd/runnerd/workflow"
)

// attempt is one delivery of one run, from pickup to the action on the
// message. Its fields are filled in the order of the pickup sequence.
type attempt struct {
	sup   *Supervisor
	d     *queue.Delivery
	log   zerolog.Logger
	runID string

	msg       *queue.Message
	run       *store.Run // as loaded, then as claimed
	lease     *queue.Lease
	epoch     uint64 // 0 until claimed: writes before that are unfenced
	attemptNo int
	started   time.Time
	dir       runDir
	sockDir   string        // go-plugin's socket, outside the run dir (path length)
	tookSpare bool          // the child was a spare: a new one may start at the end
	childGone chan struct{} // closed when a child stopped in the background is gone
	trace     string        // the message's W3C traceparent, if any

	// Owned by the goroutine that runs Execute.
	state      runnerd.StepStates
	answers    map[string]map[string]string
	finished   *runnerd.Event
	eventBytes map[string]int64 // per step: log text stored as events so far
	uploaded   map[string]bool  // steps whose log and artifacts are in S3

	stopMu  sync.Mutex
	stopped stopCause

	laps phases // where the attempt's time went, logged at debug level
}

// phases records the duration of each step of an attempt's sequence.
type phases struct {
	last  time.Time
	laps  []lap
	inner time.Duration // of execute: persisting the child's events
}

type lap struct {
	name string
	d    time.Duration
}

// lap closes the phase named name at now.
func (p *phases) lap(name string) {
	now := time.Now()
	p.laps = append(p.laps, lap{name, now.Sub(p.last)})
	p.last = now
}

// dict is the phases as a log field, in milliseconds.
func (p *phases) dict() *zerolog.Event {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	d := zerolog.Dict()
	for _, l := range p.laps {
		d = d.Float64(l.name, ms(l.d))
	}
	return d.Float64("persist_within_execute", ms(p.inner))
}

// process handles one delivery end to end. It never panics the process: a
// bug in one run must not take the other slots down.
func (s *Supervisor) process(ctx context.Context, d *queue.Delivery) {
	a := &attempt{sup: s, d: d, runID: d.RunID(), started: time.Now()}
	a.laps.last = a.started
	lc := s.log.With().Str("run_id", a.runID).Uint64("delivery", d.NumDelivered())
	a.trace = d.Header().Get(traceHeader)
	if id := traceID(a.trace); id != "" {
		lc = lc.Str("trace_id", id)
	}
	a.log = lc.Logger()
	defer func() {
		if p := recover(); p != nil {
			a.log.Error().Interface("panic", p).Msg("supervisor bug while handling a run: redelivering")
			s.m.deliveries.WithLabelValues(actNakDelay.String()).Inc()
			_ = d.NakWithDelay(s.cfg.RetryDelay)
		}
	}()
	out := a.pickUpAndRun(ctx)
	a.conclude(ctx, out)
	if a.childGone != nil {
		<-a.childGone
	}
	if a.tookSpare {
		s.spares.refill()
	}
}

// pickUpAndRun is the pickup sequence of DESIGN.md: decode, load, tenant and
// terminal checks, lease, claim, then the child.
func (a *attempt) pickUpAndRun(ctx context.Context) outcome {
	s := a.sup
	msg, err := a.d.Decode()
	if err != nil {
		a.log.Warn().Err(err).Str("reason", string(runnerd.ReasonInvalidMessage)).Msg("invalid message")
		if a.runID != "" {
			a.run, _ = s.st.Get(ctx, a.runID)
		}
		if errors.Is(err, workflow.ErrInvalid) {
			return outInvalidWorkflow
		}
		return outInvalidMessage
	}
	if msg.RunID != a.runID { // the message id named another run
		a.log = a.log.With().Str("message_run_id", msg.RunID).Logger()
	}
	a.msg, a.runID = msg, msg.RunID
	a.laps.lap("decode")

	run, err := s.st.Get(ctx, msg.RunID)
	a.laps.lap("load")
	switch {
	case errors.Is(err, store.ErrNotFound):
		return outRunNotFound
	case err != nil:
		s.m.storeError(opGetRun, err)
		a.log.Warn().Err(err).Msg("load run")
		return outStoreUnavailable
	}
	a.run = run
	if run.TenantID != msg.TenantID {
		a.log.Warn().Str("tenant_id", msg.TenantID).Str("run_tenant_id", run.TenantID).Msg("tenant mismatch")
		return outTenantMismatch
	}
	if run.Status.Terminal() || run.Status == runnerd.StatusPaused {
		return outStale
	}

	lease, err := s.q.AcquireLease(ctx, a.runID, s.cfg.RunnerID)
	switch {
	case errors.Is(err, queue.ErrLeaseHeld):
		return outLeaseHeld
	case err != nil:
		a.log.Warn().Err(err).Msg("acquire lease")
		return outStoreUnavailable
	}
	a.lease = lease
	a.laps.lap("lease")

	run, err = s.st.Claim(ctx, a.runID, s.cfg.RunnerID, lease.Epoch())
	a.laps.lap("claim")
	switch {
	case errors.Is(err, store.ErrFenced):
		return outLeaseLost
	case errors.Is(err, store.ErrTerminal), errors.Is(err, store.ErrIllegalTransition):
		return outStale
	case err != nil:
		s.m.storeError(opClaim, err)
		a.log.Warn().Err(err).Msg("claim run")
		return outStoreUnavailable
	}
	a.run, a.epoch, a.attemptNo = run, lease.Epoch(), run.Attempt
	a.log = a.log.With().Int("attempt", a.attemptNo).Uint64("epoch", a.epoch).Logger()
	s.m.runsStarted.Inc()
	if a.trace == "" {
		a.trace = run.TraceParent // a message published without the header
	}
	a.state = run.Steps.Clone()
	if a.state == nil {
		a.state = runnerd.StepStates{}
	}
	if run.CancelRequested {
		return outCancelled
	}

	wf, vars, out := a.workflow(ctx)
	if wf == nil {
		return out
	}
	a.laps.lap("workflow")
	return a.runChild(ctx, wf, vars)
}

// workflow finds the run's workflow (the run document, the message, or S3
// for a large one) and resolves its vars. On failure it returns a nil
// workflow and the outcome.
func (a *attempt) workflow(ctx context.Context) (*workflow.Workflow, map[string]string, outcome) {
	wf := a.run.Workflow
	if wf == nil {
		wf = a.msg.Workflow
	}
	if wf == nil && a.msg.WorkflowRef != "" {
		data, err := a.readBlob(ctx, a.msg.WorkflowRef)
		if err != nil {
			a.sup.m.s3Error(opGetWorkflow, err)
			a.log.Warn().Err(err).Str("key", a.msg.WorkflowRef).Msg("load workflow")
			return nil, nil, outStoreUnavailable
		}
		if wf, err = workflow.Parse(data, a.msg.WorkflowRef); err != nil {
			a.log.Warn().Err(err).Msg("invalid workflow")
			return nil, nil, outInvalidWorkflow
		}
	}
	if wf == nil {
		a.log.Warn().Msg("run has no workflow")
		return nil, nil, outInvalidWorkflow
	}
	if err := wf.Validate(); err != nil {
		a.log.Warn().Err(err).Msg("invalid workflow")
		return nil, nil, outInvalidWorkflow
	}
	vars := a.run.Vars
	if vars == nil {
		vars = a.msg.Vars
	}
	resolved, err := wf.ResolveVars(vars)
	if err != nil {
		a.log.Warn().Err(err).Msg("invalid vars")
		return nil, nil, outInvalidWorkflow
	}
	a.answers = mergeAnswers(a.run.Answers, a.msg.Resume)
	return wf, resolved, 0
}

func (a *attempt) readBlob(ctx context.Context, key string) ([]byte, error) {
	rc, err := a.sup.blobs.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func mergeAnswers(saved map[string]map[string]string, resume *queue.Resume) map[string]map[string]string {
	out := map[string]map[string]string{}
	add := func(m map[string]map[string]string) {
		for step, kv := range m {
			if out[step] == nil {
				out[step] = map[string]string{}
			}
			for k, v := range kv {
				out[step][k] = v
			}
		}
	}
	add(saved)
	if resume != nil {
		add(resume.Answers)
	}
	return out
}

// runChild runs the workflow in a runexec child and observes how it ends.
func (a *attempt) runChild(ctx context.Context, wf *workflow.Workflow, vars map[string]string) outcome {
	s := a.sup
	select {
	case <-s.draining:
		return outShutdown // picked up just as the drain began: no child
	default:
	}
	dir, err := s.makeRunDir(a.runID)
	if err != nil {
		a.log.Error().Err(err).Msg("run dir")
		return outExecutorStartFailed
	}
	a.dir = dir
	a.laps.lap("run_dir")
	child, cg, err := s.startChild(a)
	if err != nil {
		a.log.Error().Err(err).Str("reason", string(runnerd.ReasonExecutorStartFailed)).Msg("start runexec")
		return outExecutorStartFailed
	}
	a.log.Debug().Int("pid", child.Pid()).Msg("runexec started")
	a.laps.lap("start_child")

	deadline := a.deadline(wf)
	runCtx, stopMonitors := context.WithCancel(ctx)
	monitorDone := make(chan struct{})
	go func() { defer close(monitorDone); a.monitor(runCtx, child, deadline) }()
	unsubscribe, err := s.q.SubscribeCancel(a.runID, func() { a.cancelByUser(child) })
	if err != nil {
		a.log.Warn().Err(err).Msg("subscribe to cancel subject: cancel still lands through the run document")
		unsubscribe = func() {}
	}

	err = child.Execute(runCtx, &proto.Request{
		RunID:    a.runID,
		Workflow: wf,
		Vars:     vars,
		State:    a.state.Clone(),
		Answers:  a.answers,
		Workdir:  dir.work(),
		LogDir:   dir.logs(),
		Deadline: deadline,
		LogLimit: s.cfg.LogLimit,
		// A little past what is stored as events, so the stored prefix ends
		// with runnerd's marker naming the log in S3; the rest of a flood
		// is not streamed for nothing.
		LogEventLimit: s.cfg.EventLogMax + 64<<10,
		KillGrace:     s.cfg.KillGrace,
		// A spare child was started with a HOME and TMPDIR of its own.
		Env: map[string]string{"HOME": dir.home(), "TMPDIR": dir.tmp()},
	}, a.persist)
	a.laps.lap("execute")
	cleanEnd := err == nil
	if !cleanEnd {
		a.log.Debug().Err(err).Msg("event stream ended with an error")
		// The stream breaks a moment before the process is reaped.
		select {
		case <-child.Exited():
		case <-time.After(2 * time.Second):
		}
	}
	unsubscribe()
	stopMonitors()
	<-monitorDone
	if ps := child.ProcessState(); ps != nil && !cleanEnd {
		a.log.Warn().Str("exit", ps.String()).Msg("runexec exited without finishing")
	}
	stop := func() (oom bool) {
		child.Close()
		children.remove(child.Pid())
		if cg != nil {
			oom = cg.OOMKills() > 0
		}
		cg.Discard() // whatever escaped the process group (setsid, double fork)
		return oom
	}
	oom := false
	if cleanEnd && a.finished != nil && a.finished.Status == string(runnerd.StatusSucceeded) && a.stopCause() == stopNone {
		// The outcome is known and nothing of the child can change it: its
		// exit (2–4 ms of reaping a Go process, the cgroup's removal)
		// overlaps the writing of the outcome; the attempt waits for it
		// before it frees its slot. runexec killed the steps' escaped
		// processes when each step ended.
		a.childGone = make(chan struct{})
		go func() { defer close(a.childGone); stop() }()
	} else {
		oom = stop()
	}

	a.laps.lap("stop_child")
	obs := observation{finished: a.finished, cleanEnd: cleanEnd, oomKilled: oom, stoppedFor: a.stopCause()}
	out := classify(obs)
	s.m.childExits.WithLabelValues(string(exitTable[out].reason)).Inc()
	if out != outLeaseLost && out != outStoreUnavailable {
		if err := a.upload(ctx); err != nil {
			a.log.Warn().Err(err).Msg("upload logs and artifacts")
			return outStoreUnavailable
		}
		a.laps.lap("upload")
	}
	return out
}

// deadline is the run's deadline for this attempt: the message's timeout
// or the workflow's, whichever is earlier.
func (a *attempt) deadline(wf *workflow.Workflow) time.Time {
	var d time.Time
	limit := func(t time.Duration) {
		if t > 0 && (d.IsZero() || a.started.Add(t).Before(d)) {
			d = a.started.Add(t)
		}
	}
	limit(time.Duration(a.msg.TimeoutSec) * time.Second)
	limit(time.Duration(a.run.TimeoutSec) * time.Second)
	limit(wf.Timeout.D())
	return d
}

// stopFor records why the supervisor stops the child; the first cause wins.
func (a *attempt) stopFor(c stopCause) bool {
	a.stopMu.Lock()
	defer a.stopMu.Unlock()
	if a.stopped != stopNone {
		return false
	}
	a.stopped = c
	return true
}

func (a *attempt) stopCause() stopCause {
	a.stopMu.Lock()
	defer a.stopMu.Unlock()
	return a.stopped
}

// cancelByUser asks the child to stop; monitor kills it if it does not.
func (a *attempt) cancelByUser(child *proto.Child) {
	if !a.stopFor(stopCancel) {
		return
	}
	a.log.Info().Str("reason", string(runnerd.ReasonCancelled)).Msg("cancel requested")
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := child.Cancel(ctx, "cancelled by user"); err != nil {
			a.log.Debug().Err(err).Msg("cancel RPC")
		}
	}()
}

// persist stores one batch of the child's events, folds them into the step
// state and saves that state when a step finishes. It runs on the Execute
// goroutine; an error stops the stream.
func (a *attempt) persist(events []runnerd.Event) error {
	defer func(t time.Time) { a.laps.inner += time.Since(t) }(time.Now())
	stored := make([]runnerd.Event, 0, len(events))
	saveState := false
	for _, e := range events {
		a.state.Apply(e)
		switch e.Type {
		case runnerd.EventRunStarted:
			e.TraceParent = a.trace
		case runnerd.EventStepFinished:
			if ans := a.answers[e.Step]; ans != nil && e.Status == string(runnerd.StepSucceeded) {
				a.state[e.Step].Answers = ans
			}
			a.stepFinished(e)
			// A finished step's files go to S3 before its state is saved:
			// once saved as succeeded it never runs again, so its log and
			// artifacts must not depend on this attempt ending well.
			if err := a.uploadStep(e.Step); err != nil {
				a.log.Warn().Err(err).Str("step", e.Step).Str("reason", string(runnerd.ReasonStoreUnavailable)).
					Msg("upload of a finished step failed: its state is not saved")
				a.stopFor(stopStoreUnavailable)
				return err
			}
			saveState = true
		case runnerd.EventStepStarted:
			a.log.Debug().Str("step", e.Step).Int("step_attempt", e.Attempt).Msg("step started")
			saveState = true // `runnerd status` shows which steps run
		case runnerd.EventPaused:
			a.log.Info().Str("step", e.Step).Str("reason", string(runnerd.ReasonPaused)).Msg("step waits for answers")
			saveState = true
		case runnerd.EventRunFinished:
			ev := e
			a.finished = &ev
		case runnerd.EventLog:
			if !a.keepLogEvent(&e) {
				continue
			}
		}
		stored = append(stored, e)
	}
	var steps runnerd.StepStates
	if saveState {
		steps = a.state
	}
	return a.withStore(opPersistEvents, func(ctx context.Context) error {
		// One fenced write: the events' seqs and the step state together.
		if _, err := a.sup.st.Record(ctx, a.runID, a.epoch, stored, steps); err != nil {
			return err
		}
		n := 0
		for _, e := range stored {
			n += eventPayload(e)
		}
		a.sup.m.eventBytes.Add(float64(n))
		return nil
	})
}

// stepFinished logs a step's end and observes its duration.
func (a *attempt) stepFinished(e runnerd.Event) {
	a.sup.m.stepDuration.WithLabelValues(e.Status).Observe(float64(e.DurationMS) / 1000)
	ev := a.log.Info()
	if e.Status == string(runnerd.StepFailed) {
		ev = a.log.Warn()
	}
	ev = ev.Str("step", e.Step).Str("status", e.Status).Str("reason", e.Reason).
		Int("exit_code", e.ExitCode).Int("step_attempt", e.Attempt).
		Dur("duration", time.Duration(e.DurationMS)*time.Millisecond)
	if e.Signal != "" {
		ev = ev.Str("signal", e.Signal)
	}
	ev.Msg("step finished")
}

// keepLogEvent applies the per-step budget of log text stored as events: the
// whole log is in S3; events serve `logs --follow`. At the limit one marker
// event says where the rest is.
func (a *attempt) keepLogEvent(e *runnerd.Event) bool {
	if a.eventBytes == nil {
		a.eventBytes = map[string]int64{}
	}
	used := a.eventBytes[e.Step]
	limit := a.sup.cfg.EventLogMax
	if used > limit {
		return false
	}
	a.eventBytes[e.Step] = used + int64(len(e.Text))
	if used+int64(len(e.Text)) > limit {
		e.Text = fmt.Sprintf("\n[runnerd: the rest of this step's output is in its log: %s]\n",
			blob.StepLogKey(a.runID, a.attemptNo, e.Step))
	}
	return true
}

// withStore runs a fenced write with a few retries: a brief MongoDB outage
// must not fail a healthy run. A fenced write means the lease is lost.
// op names the write in runnerd_store_errors_total.
func (a *attempt) withStore(op string, write func(context.Context) error) error {
	err := retry(a.log, "store write failed: retrying", 6, 15*time.Second, func(ctx context.Context) error {
		err := write(ctx)
		a.sup.m.storeError(op, err)
		return err
	}, func(err error) bool { return errors.Is(err, store.ErrFenced) || a.stopCause() == stopLeaseLost })
	switch {
	case err == nil:
	case errors.Is(err, store.ErrFenced):
		a.stopFor(stopLeaseLost)
	default:
		a.stopFor(stopStoreUnavailable)
	}
	return err
}

// retry calls f, each time with a fresh timeout, until it succeeds, stop says
// its error is final or tries calls are made; it sleeps 250 ms, 500 ms, …
// between calls, logging each retry with msg. It returns f's last error.
func retry(log zerolog.Logger, msg string, tries int, timeout time.Duration, f func(context.Context) error, stop func(error) bool) error {
	delay := 250 * time.Millisecond
	for try := 1; ; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := f(ctx)
		cancel()
		if err == nil || try >= tries || stop(err) {
			return err
		}
		log.Warn().Err(err).Int("try", try).Msg(msg)
		time.Sleep(delay)
		delay *= 2
	}
}

// upload copies to S3 what no step_finished event has uploaded yet: the
// logs of steps this attempt interrupted.
func (a *attempt) upload(ctx context.Context) error {
	for step := range a.state {
		if err := a.putStepFiles(ctx, step); err != nil {
			return err
		}
	}
	return nil
}

// uploadStep copies a finished step's files to S3, retrying a brief outage
// as withStore does for MongoDB.
func (a *attempt) uploadStep(step string) error {
	return retry(a.log.With().Str("step", step).Logger(), "upload failed: retrying", 4, 5*time.Minute,
		func(ctx context.Context) error { return a.putStepFiles(ctx, step) },
		func(error) bool { return a.stopCause() != stopNone })
}

// putStepFiles uploads the step's log of this attempt, records its key in
// the step state, and uploads the artifacts the step declared if it ran in
// this attempt. A step is uploaded once.
func (a *attempt) putStepFiles(ctx context.Context, step string) error {
	st := a.state[step]
	if st == nil || a.uploaded[step] {
		return nil
	}
	bl := a.sup.blobs
	logPath := filepath.Join(a.dir.logs(), step+".log")
	if _, err := os.Stat(logPath); err == nil {
		key := blob.StepLogKey(a.runID, a.attemptNo, step)
		n, err := putFile(ctx, bl, key, logPath)
		a.sup.m.s3Error(opPutLog, err)
		if err != nil {
			return fmt.Errorf("log of step %s: %w", step, err)
		}
		a.sup.m.uploadBytes.WithLabelValues("log").Add(float64(n))
		st.LogKey = key
	}
	if !st.StartedAt.Before(a.started) { // an earlier attempt uploaded its own
		for _, rel := range st.Artifacts {
			path, err := insideDir(a.dir.work(), rel)
			if err != nil {
				a.log.Warn().Err(err).Str("step", step).Msg("artifact refused")
				continue
			}
			n, err := putFile(ctx, bl, blob.ArtifactKey(a.runID, step, rel), path)
			a.sup.m.s3Error(opPutArtifact, err)
			if err != nil {
				return fmt.Errorf("artifact %s of step %s: %w", rel, step, err)
			}
			a.sup.m.uploadBytes.WithLabelValues("artifact").Add(float64(n))
		}
	}
	if a.uploaded == nil {
		a.uploaded = map[string]bool{}
	}
	a.uploaded[step] = true
	return nil
}

// putFile uploads the file at path and returns its size.
func putFile(ctx context.Context, bl *blob.Store, key, path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return bl.Put(ctx, key, io.Reader(f))
}

// insideDir resolves rel inside dir and refuses anything that leaves it,
// symlinks included: the step that made the file is dead by now, but the
// check is cheap and runnerd holds the S3 credentials.
func insideDir(dir, rel string) (string, error) {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	p, err := filepath.EvalSymlinks(filepath.Join(dir, rel))
	if err != nil {
		return "", err
	}
	if p != root && !strings.HasPrefix(p, root+string(filepath.Separator)) {
		return "", fmt.Errorf("artifact %q resolves outside the workdir", rel)
	}
	return p, nil
}

// traceHeader is the W3C Trace Context header `runnerd submit` sets.
const traceHeader = "traceparent"

// traceID is the trace id of a W3C traceparent (version-traceid-parentid-flags),
// or "" if tp is not one.
func traceID(tp string) string {
	parts := strings.Split(tp, "-")
	if len(parts) < 4 || len(parts[0]) != 2 || len(parts[1]) != 32 || len(parts[2]) != 16 || len(parts[3]) != 2 {
		return ""
	}
	id := parts[1]
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return ""
		}
	}
	if id == strings.Repeat("0", 32) {
		return ""
	}
	return id
}
