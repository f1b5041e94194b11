package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/admission"
	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/child"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
	"github.com/runnerd/runnerd/workflow"
)

// attempt is one delivery of one run, from pickup to the action on the
// message. Its fields are filled in the order of the pickup sequence.
type attempt struct {
	sup   *Supervisor
	log   zerolog.Logger
	runID string
	// ctx ends at a hard stop (second SIGTERM, grace over) or when the
	// lease is lost: in-place waits on servers end with it.
	ctx    context.Context
	cancel context.CancelCauseFunc

	dmu sync.Mutex
	d   *queue.Delivery // the latest delivery of the run's message (see adopt)

	msg        *queue.Message
	run        *store.Run // as loaded, then as claimed
	lease      *queue.Lease
	stopKeeper func() // ends keepLease and waits for it
	epoch      uint64 // 0 until claimed: writes before that are unfenced
	attemptNo  int
	started    time.Time
	retryAfter time.Duration       // the delay of a nak_delay, when not the default
	standing   *admission.Standing // where the run waits, when it must (admission.go)
	held       []line              // the admission places the attempt holds
	dir        runDir
	sockDir    string        // go-plugin's socket, outside the run dir (path length)
	tookSpare  bool          // the child was a spare: a new one may start at the end
	childGone  chan struct{} // closed when a child stopped in the background is gone
	trace      string        // the message's W3C traceparent, if any

	childMu sync.Mutex
	proc    *child.Process // the running child, nil before its start and after its end
	rpcs    sync.WaitGroup // Cancel RPCs in flight to the child (askToStop)

	// Owned by the goroutine that runs Execute.
	state      runnerd.StepStates
	answers    map[string]map[string]string
	finished   *runnerd.Event
	eventBytes map[string]int64      // per step: log text stored as events so far
	uploaded   map[string]bool       // steps whose log and artifacts are in S3
	streams    map[string]*logStream // big steps' logs being uploaded while they run (logstream.go)
	// Events not written yet (persist): a batch held for pendingWindow, or
	// the run's last one, kept for the outcome's write. pendingMu orders
	// persist and the window's timer.
	pendingMu    sync.Mutex
	pending      *store.Batch
	pendingTimer *time.Timer
	pendingErr   error // the timer's write failed
	streamDone   bool
	unsaved      bool              // a finished step's files could not be stored: its state must not be written
	secrets      map[string]string // the run's secrets, for the child only

	stopMu  sync.Mutex
	stopped stopCause

	timeline timeline // where the attempt's time went, logged at debug level
}

// delivery is the latest delivery of the run's message.
func (a *attempt) delivery() *queue.Delivery {
	a.dmu.Lock()
	defer a.dmu.Unlock()
	return a.d
}

// adopt takes over d, a redelivery of the message this attempt is running
// (NATS redelivers after AckWait when our in-progress marks did not reach it,
// e.g. during an outage): the run goes on, and it is d that is acked at the
// end. A delivery of another message of the same run is not adopted.
func (a *attempt) adopt(d *queue.Delivery) bool {
	a.dmu.Lock()
	defer a.dmu.Unlock()
	if a.d.StreamSeq() != d.StreamSeq() || a.d.StreamSeq() == 0 {
		return false
	}
	a.d = d
	_ = d.InProgress() // best effort: the keeper marks it again within TTL/3
	return true
}

func (a *attempt) setChild(c *child.Process) {
	a.childMu.Lock()
	a.proc = c
	a.childMu.Unlock()
}

func (a *attempt) currentChild() *child.Process {
	a.childMu.Lock()
	defer a.childMu.Unlock()
	return a.proc
}

// timeline records how long each phase of an attempt's sequence took.
type timeline struct {
	last   time.Time
	phases []phase
	inner  time.Duration // of execute: persisting the child's events
}

type phase struct {
	name string
	d    time.Duration
}

// mark ends the phase named name now.
func (t *timeline) mark(name string) {
	now := time.Now()
	t.phases = append(t.phases, phase{name, now.Sub(t.last)})
	t.last = now
}

// dict is the phases as a log field, in milliseconds.
func (t *timeline) dict() *zerolog.Event {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	d := zerolog.Dict()
	for _, p := range t.phases {
		d = d.Float64(p.name, ms(p.d))
	}
	return d.Float64("persist_within_execute", ms(t.inner))
}

// process handles one delivery end to end. It never panics the process: a
// bug in one run must not take the other slots down. free gives the run's
// slot back; process calls it once the delivery is settled and the run
// untracked, before it waits for the end of a succeeded run's child
// (reaping it, removing its cgroup: milliseconds), so the next run does not
// wait for that teardown. Run still awaits process, so a drain waits for it.
func (s *Supervisor) process(ctx context.Context, d *queue.Delivery, free func()) {
	a := &attempt{sup: s, d: d, runID: d.RunID(), started: time.Now()}
	a.ctx, a.cancel = context.WithCancelCause(s.hardCtx)
	defer a.cancel(nil)
	a.timeline.last = a.started
	a.trace = d.Header().Get(traceHeader)
	a.log = a.logger(a.runID).Logger()
	// Whatever happens, the spare's place and the child are given back.
	defer func() {
		if a.childGone != nil {
			<-a.childGone
		}
		if a.tookSpare {
			s.spares.refill()
		}
	}()
	// A panic while a child runs has killed and stopped it already
	// (runChild), before this recovers.
	defer func() {
		if p := recover(); p != nil {
			a.log.Error().Interface("panic", p).Msg("supervisor bug while handling a run: redelivering")
			a.endKeeper()
			s.m.deliveries.WithLabelValues(actNakDelay.String()).Inc()
			_ = a.delivery().NakWithDelay(s.cfg.RetryDelay)
		}
	}()
	defer free()       // after untrack, before the wait for the child's end above
	defer s.untrack(a) // a no-op unless a tracked the run itself
	out := a.pickUpAndRun(ctx)
	if out == outAdopted {
		return // the running attempt owns the delivery now
	}
	if out == outAdmissionWait {
		a.waitForTurn(ctx)
		return
	}
	a.conclude(ctx, out)
}

// pickUpAndRun is the pickup sequence (docs/architecture.md, "How a run
// flows"): decode, load, tenant and terminal checks, lease, claim, then the
// child.
func (a *attempt) pickUpAndRun(ctx context.Context) outcome {
	s := a.sup
	msg, err := a.d.Decode()
	if err != nil {
		a.log.Warn().Err(err).Str("reason", string(runnerd.ReasonInvalidMessage)).Msg("invalid message")
		if a.runID != "" {
			a.run, _ = s.store.Get(ctx, a.runID)
		}
		if errors.Is(err, workflow.ErrInvalid) {
			return outInvalidWorkflow
		}
		return outInvalidMessage
	}
	if msg.RunID != a.runID { // the message id named another run, or none
		a.log = a.logger(msg.RunID).Str("msg_id_run_id", a.runID).Logger()
	}
	a.msg, a.runID = msg, msg.RunID
	if running := s.track(a); running != nil {
		if running.adopt(a.d) {
			a.log.Info().Msg("redelivery of a run this runner is executing: the running attempt takes it over")
			s.m.deliveries.WithLabelValues(deliveryAdopted).Inc()
			return outAdopted
		}
		s.m.waits.WithLabelValues(onLease).Inc()
		return outLeaseHeld // another message of a run this runner is executing
	}
	a.timeline.mark("decode")
	if st, wait := a.mustWait(ctx, msg); wait {
		a.standing = &st
		return outAdmissionWait
	}

	run, err := s.store.Get(ctx, msg.RunID)
	a.timeline.mark("load")
	switch {
	case errors.Is(err, store.ErrNotFound):
		return outRunNotFound
	case err != nil:
		s.m.storeError(opGetRun, err)
		s.m.waits.WithLabelValues(onMongoDB).Inc()
		a.log.Warn().Err(err).Msg("load run")
		return outStoreUnavailable
	}
	a.run = run
	if run.TenantID != msg.TenantID {
		a.log.Warn().Str("tenant_id", msg.TenantID).Str("run_tenant_id", run.TenantID).Msg("tenant mismatch")
		return outTenantMismatch
	}
	if run.Status.Settled() {
		return outStale
	}
	if out, ok := a.acquireLease(ctx); !ok {
		return out
	}
	a.timeline.mark("lease")

	// The run is still running under a runner that is gone (its lease
	// expired or was its own, from before a restart): that attempt ended
	// without a word, and counts as a crash. Read again now that the lease
	// is ours: it may have concluded between the load and the lease.
	lostAttempt := false
	if run.Status == runnerd.StatusRunning {
		if cur, err := s.store.Get(ctx, a.runID); err == nil && cur.Status == runnerd.StatusRunning {
			lostAttempt = true
		}
	}
	if out, ok := a.admit(ctx); !ok {
		return out
	}
	a.timeline.mark("admission")
	run, err = s.store.Claim(ctx, a.runID, s.cfg.RunnerID, a.lease.Epoch())
	a.timeline.mark("claim")
	switch {
	case errors.Is(err, store.ErrFenced):
		return outLeaseLost
	case errors.Is(err, store.ErrTerminal), errors.Is(err, store.ErrIllegalTransition):
		return outStale
	case err != nil:
		s.m.storeError(opClaim, err)
		s.m.waits.WithLabelValues(onMongoDB).Inc()
		a.log.Warn().Err(err).Msg("claim run")
		return outStoreUnavailable
	}
	a.run, a.epoch, a.attemptNo = run, a.lease.Epoch(), run.Attempt
	a.log = a.log.With().Int("attempt", a.attemptNo).Uint64("epoch", a.epoch).Logger()
	a.startKeeper(ctx)
	s.m.runsStarted.Inc()
	if run.Attempt == 1 && !run.CreatedAt.IsZero() { // its first start: how long it was queued
		s.m.queueWait.Observe(max(time.Since(run.CreatedAt), 0).Seconds())
	}
	if a.trace == "" {
		a.trace = run.TraceParent // a message published without the header
	}
	a.state = run.Steps.Clone()
	if a.state == nil {
		a.state = runnerd.StepStates{}
	}
	if lostAttempt {
		err := a.withStore(opClaim, func(ctx context.Context) error {
			r, err := s.store.CountLostAttempt(ctx, a.runID, a.epoch)
			if err == nil {
				a.run.Crashes = r.Crashes
			}
			return err
		})
		if err != nil {
			return classify(observation{stoppedFor: a.stopCause()})
		}
		a.log.Warn().Int("crashes", a.run.Crashes).Msg("the previous attempt ended with its runner: counted as a crash")
	}
	if a.run.Crashes >= s.cfg.MaxAttempts {
		return outAttemptsSpent
	}
	if run.CancelRequested {
		return outCancelled
	}

	wf, vars, out := a.workflow(ctx)
	if wf == nil {
		return out
	}
	a.timeline.mark("workflow")
	return a.runChild(ctx, wf, vars)
}

// acquireLease takes the run's lease. ok false: not taken, and the outcome
// says why.
//
// Two cases are not a plain "held by another runner":
//   - the lease is held under this runner's own id, but no attempt of this
//     process runs the run: a previous process with the same id (the id is
//     locked per machine) died holding it. It is taken over at once instead
//     of after its TTL.
//   - no lease is held but the run is running under another runner, and
//     this process has been connected to NATS for less than a lease TTL: NATS
//     may just have come back from an outage longer than the TTL, in which
//     it dropped the leases of runs that are still executing. Their runners
//     re-take them within a TTL of NATS coming back; until then the run is
//     left alone (nak with delay).
func (a *attempt) acquireLease(ctx context.Context) (outcome, bool) {
	s := a.sup
	ttl := s.q.Config().LeaseTTL
	if a.run.Status == runnerd.StatusRunning && a.run.RunnerID != s.cfg.RunnerID {
		if wait := ttl - s.conn.connectedFor(); wait > 0 {
			a.retryAfter = wait
			s.m.waits.WithLabelValues(onLease).Inc()
			a.log.Info().Str("runner", a.run.RunnerID).Dur("retry_in_ms", wait).
				Msg("run is running elsewhere and NATS was back only now: its runner may re-take its lease")
			return outLeaseHeld, false
		}
	}
	lease, err := s.q.AcquireLease(ctx, a.runID, s.cfg.RunnerID)
	if errors.Is(err, queue.ErrLeaseHeld) {
		h, herr := s.q.LeaseHolder(ctx, a.runID)
		if herr != nil || h.RunnerID != s.cfg.RunnerID {
			s.m.waits.WithLabelValues(onLease).Inc()
			return outLeaseHeld, false
		}
		lease, err = s.q.TakeOverLease(ctx, a.runID, s.cfg.RunnerID, h.Revision)
		if err == nil {
			a.log.Info().Msg("took over the lease a previous process of this runner id held")
		}
	}
	switch {
	case errors.Is(err, queue.ErrLeaseHeld):
		s.m.waits.WithLabelValues(onLease).Inc()
		return outLeaseHeld, false
	case err != nil:
		s.m.waits.WithLabelValues(onNATS).Inc()
		a.log.Warn().Err(err).Msg("acquire lease")
		return outStoreUnavailable, false
	}
	a.lease = lease
	return 0, true
}

// startKeeper starts keepLease, once the run is claimed (a few
// milliseconds after the lease was taken, far less than TTL/3): from then on
// the attempt's epoch and logger do not change.
func (a *attempt) startKeeper(ctx context.Context) {
	kctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { defer close(done); a.keepLease(kctx) }()
	a.stopKeeper = func() { stop(); <-done }
}

// endKeeper stops the lease's renewal (before it is released).
func (a *attempt) endKeeper() {
	if a.stopKeeper != nil {
		a.stopKeeper()
		a.stopKeeper = nil
	}
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
		var data []byte
		err := a.waitOn(onS3, "read the workflow", time.Minute, func(ctx context.Context) error {
			var err error
			data, err = a.readBlob(ctx, a.msg.WorkflowRef)
			a.sup.m.s3Error(opGetWorkflow, err)
			return err
		}, func(err error) bool { return errors.Is(err, blob.ErrNotFound) })
		if errors.Is(err, blob.ErrNotFound) {
			a.log.Warn().Err(err).Str("key", a.msg.WorkflowRef).Msg("the run's workflow is not in S3")
			return nil, nil, outInvalidWorkflow
		}
		if err != nil {
			a.log.Warn().Err(err).Str("key", a.msg.WorkflowRef).Msg("load workflow")
			a.stopFor(stopStoreUnavailable)
			return nil, nil, classify(observation{stoppedFor: a.stopCause()})
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
	secrets, missing := a.sup.resolveSecrets(a.run.TenantID, wf.SecretNames())
	if len(missing) > 0 {
		a.log.Warn().Strs("secrets", missing).Str("reason", string(runnerd.ReasonSecretMissing)).
			Msg("secrets the workflow declares are not configured for its tenant")
		return nil, nil, outSecretMissing
	}
	a.secrets = secrets
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
	a.timeline.mark("run_dir")
	proc, cg, err := s.startChild(a)
	if err != nil {
		a.log.Error().Err(err).Str("reason", string(runnerd.ReasonExecutorStartFailed)).Msg("start runexec")
		return outExecutorStartFailed
	}
	// stopChild gives back what the child holds once it has ended.
	stopChild := func() (oom bool) {
		proc.Close()
		children.remove(proc.Pid())
		if cg != nil {
			oom = cg.OOMKills() > 0
		}
		cg.Discard() // whatever escaped the process group (setsid, double fork)
		return oom
	}
	a.setChild(proc)
	defer a.setChild(nil)
	defer a.abortLogStreams() // those no upload finished
	unsubscribe, stopMonitors := func() {}, func() {}
	// A panic from here on (a supervisor bug, which process recovers from)
	// must not leave the child running: it is killed and stopped here,
	// while this attempt still holds it.
	defer func() {
		if p := recover(); p != nil {
			proc.Kill()
			unsubscribe()
			stopMonitors()
			stopChild()
			panic(p)
		}
	}()
	if a.stopCause() == stopLeaseLost { // lost while the child started
		proc.Kill()
	}
	a.log.Debug().Int("pid", proc.Pid()).Msg("runexec started")
	a.timeline.mark("start_child")
	if s.childHook != nil {
		s.childHook(a)
	}

	deadline := a.deadline(wf)
	runCtx, cancelRun := context.WithCancel(ctx)
	monitorDone := make(chan struct{})
	go func() { defer close(monitorDone); a.monitor(runCtx, proc, deadline) }()
	stopMonitors = func() { cancelRun(); <-monitorDone }
	unsubscribe, err = s.q.SubscribeCancel(a.runID, func() { a.cancelByUser(proc) })
	if err != nil {
		a.log.Warn().Err(err).Msg("subscribe to cancel subject: cancel still lands through the run document")
		unsubscribe = func() {}
	}

	err = proc.Execute(runCtx, &child.Request{
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
		Env:     map[string]string{"HOME": dir.home(), "TMPDIR": dir.tmp()},
		Secrets: a.secrets,
	}, a.persist)
	a.endHolding()
	a.timeline.mark("execute")
	cleanEnd := err == nil
	if !cleanEnd {
		a.log.Debug().Err(err).Msg("event stream ended with an error")
		// The stream breaks a moment before the process is reaped.
		select {
		case <-proc.Exited():
		case <-time.After(2 * time.Second):
		}
	}
	unsubscribe()
	stopMonitors()
	a.setChild(nil) // no Cancel RPC starts from now on
	a.rpcs.Wait()   // and one sent to a child that is ending ends with it
	if ps := proc.ProcessState(); ps != nil && !cleanEnd {
		a.log.Warn().Str("exit", ps.String()).Msg("runexec exited without finishing")
	}
	oom := false
	if cleanEnd && a.finished != nil && a.finished.Status == string(runnerd.StatusSucceeded) && a.stopCause() == stopNone {
		// The outcome is known and nothing of the child can change it: its
		// exit (reaping a Go process, the cgroup's removal: milliseconds)
		// overlaps the writing of the outcome; the attempt waits for it
		// before it frees its slot. runexec killed the steps' escaped
		// processes when each step ended.
		a.childGone = make(chan struct{})
		go func() { defer close(a.childGone); stopChild() }()
	} else {
		oom = stopChild()
	}

	a.timeline.mark("stop_child")
	obs := observation{finished: a.finished, cleanEnd: cleanEnd, oomKilled: oom, stoppedFor: a.stopCause()}
	out := classify(obs)
	if a.unsaved {
		out = afterFailedUpload(out)
	}
	s.m.childExits.WithLabelValues(string(exitTable[out].reason)).Inc()
	if out != outLeaseLost && out != outStoreUnavailable {
		if err := a.upload(); err != nil {
			a.log.Warn().Err(err).Msg("upload logs and artifacts")
			return afterFailedUpload(out)
		}
		a.timeline.mark("upload")
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
func (a *attempt) cancelByUser(proc *child.Process) {
	if !a.stopFor(stopCancel) {
		return
	}
	a.log.Info().Str("reason", string(runnerd.ReasonCancelled)).Msg("cancel requested")
	a.askToStop(proc, "cancelled by user")
}

// askToStop sends the child a Cancel RPC without waiting for it: the
// caller's loop goes on. runChild awaits it before the child is gone.
func (a *attempt) askToStop(proc *child.Process, reason string) {
	a.childMu.Lock()
	defer a.childMu.Unlock()
	if a.proc != proc { // the child is gone: nothing to ask
		return
	}
	a.rpcs.Go(func() {
		ctx, cancel := context.WithTimeout(a.ctx, 5*time.Second)
		defer cancel()
		if err := proc.Cancel(ctx, reason); err != nil {
			a.log.Debug().Err(err).Msg("cancel RPC")
		}
	})
}

// persist stores one batch of the child's events, folds them into the step
// state and saves that state when a step finishes. It runs on the Execute
// goroutine; an error stops the stream.
func (a *attempt) persist(events []runnerd.Event) error {
	defer func(t time.Time) { a.timeline.inner += time.Since(t) }(time.Now())
	a.pendingMu.Lock()
	defer a.pendingMu.Unlock()
	if a.pendingErr != nil { // the held batch's write failed: stop the stream
		return a.pendingErr
	}
	if a.pendingTimer != nil {
		a.pendingTimer.Stop()
	}
	stored := make([]runnerd.Event, 0, len(events))
	saveState := false
	var refused error // a succeeded step's file refused (files.go)
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
			if err := a.uploadStep(e.Step); errors.Is(err, errFileRefused) {
				a.refuseStep(&e, err) // the step fails; the stream is stopped after this write
				refused, saveState = err, true
				break
			} else if err != nil {
				a.log.Warn().Err(err).Str("step", e.Step).Str("reason", string(runnerd.ReasonStoreUnavailable)).
					Msg("upload of a finished step failed: its state is not saved")
				a.unsaved = true
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
	// The batch's seqs are fixed before the first try, so a retry after a
	// write that did land stores nothing twice. A batch held back is
	// written with this one.
	batch := store.Batch{First: a.run.EventSeq + 1, Events: stored}
	if p := a.pending; p != nil {
		batch = store.Batch{First: p.First, Events: append(p.Events, stored...), Steps: p.Steps}
		a.pending = nil
	}
	if saveState {
		batch.Steps = a.state
	}
	switch {
	case len(batch.Events) == 0 && batch.Steps == nil:
		return refused
	case refused != nil:
		if err := a.record(batch); err != nil {
			return err
		}
		return refused // stops the stream: no step after the refused one runs
	case a.finished != nil:
		// The run's last batch: kept for the outcome's write, which makes
		// it visible with the final status in one write when the run
		// finishes (conclude); any other outcome records it first.
		a.pending = &batch
		return nil
	case !finishesStep(stored):
		// Starts and log lines wait a moment for what follows: a short
		// step's whole run then takes one write (above), a long one's
		// lines are written a window at a time.
		a.pending = &batch
		a.holdPending()
		return nil
	}
	return a.record(batch)
}

// pendingWindow is how long events that need no write of their own (a
// step's start, log lines) wait for the next batch before they are written.
const pendingWindow = 10 * time.Millisecond

// finishesStep reports whether events end or pause a step: such a batch
// is written at once (its step's files are in S3 already).
func finishesStep(events []runnerd.Event) bool {
	for _, e := range events {
		if e.Type == runnerd.EventStepFinished || e.Type == runnerd.EventPaused {
			return true
		}
	}
	return false
}

// holdPending arms the timer that writes the held batch if no other batch
// comes within pendingWindow. Called with pendingMu held.
func (a *attempt) holdPending() {
	if a.pendingTimer == nil {
		a.pendingTimer = time.AfterFunc(pendingWindow, a.writeHeld)
		return
	}
	a.pendingTimer.Reset(pendingWindow)
}

// writeHeld writes the batch held back, unless the stream has ended (the
// outcome's write takes it then) or a later batch took it.
func (a *attempt) writeHeld() {
	a.pendingMu.Lock()
	defer a.pendingMu.Unlock()
	if a.pending == nil || a.streamDone || a.finished != nil {
		return
	}
	b := *a.pending
	a.pending = nil
	if err := a.record(b); err != nil {
		a.pendingErr = err
	}
}

// endHolding stops the timer once the event stream has ended: what is held
// is the outcome's to write.
func (a *attempt) endHolding() {
	a.pendingMu.Lock()
	defer a.pendingMu.Unlock()
	a.streamDone = true
	if a.pendingTimer != nil {
		a.pendingTimer.Stop()
	}
}

// record stores one batch: the events and the step state in one fenced
// write.
func (a *attempt) record(batch store.Batch) error {
	return a.withStore(opPersistEvents, func(ctx context.Context) error {
		if _, err := a.sup.store.Record(ctx, a.runID, a.epoch, batch); err != nil {
			return err
		}
		a.recorded(batch)
		return nil
	})
}

// recorded notes a batch the store holds.
func (a *attempt) recorded(batch store.Batch) {
	a.run.EventSeq = batch.Last()
	_ = a.sup.q.PublishProgress(a.runID, batch.Last()) // a hint for followers: the store holds the events
	n := 0
	for _, e := range batch.Events {
		n += eventPayload(e)
	}
	a.sup.m.eventBytes.Add(float64(n))
}

// flushPending records the batch held back, if any, on its own. Called
// once the stream has ended.
func (a *attempt) flushPending() error {
	if a.pending == nil {
		return nil
	}
	b := *a.pending
	a.pending = nil
	return a.record(b)
}

// logger is the context of an attempt's log lines: the run (its id from
// the message body once decoded, from the message id before), the
// delivery and the trace.
func (a *attempt) logger(runID string) zerolog.Context {
	lc := a.sup.log.With().Str("run_id", runID).Uint64("delivery", a.d.NumDelivered())
	if id := traceID(a.trace); id != "" {
		lc = lc.Str("trace_id", id)
	}
	return lc
}

// stepFinished logs a step's end and observes its duration.
func (a *attempt) stepFinished(e runnerd.Event) {
	a.sup.m.stepDuration.WithLabelValues(e.Status).Observe(float64(e.DurationMS) / 1000)
	ev := a.log.Info()
	if e.Status == string(runnerd.StepFailed) {
		ev = a.log.Warn()
	}
	ev = ev.Str("step", e.Step).Str("status", e.Status).Str("reason", e.Reason).
		Int("step_attempt", e.Attempt).Int64("duration_ms", e.DurationMS)
	if e.Exited() {
		ev = ev.Int("exit_code", e.ExitCode)
	}
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
		a.startLogStream(e.Step) // a big log: to S3 while the step runs
		e.Text = fmt.Sprintf("\n[runnerd: the rest of this step's output is in its log: %s]\n",
			blob.StepLogKey(a.runID, a.attemptNo, e.Step))
	}
	return true
}

// withStore makes a fenced write, waiting in place while MongoDB is
// unreachable (see waitOn): a MongoDB outage must not fail a healthy run. A
// fenced write means the lease is lost. op names the write in
// runnerd_store_errors_total.
func (a *attempt) withStore(op string, write func(context.Context) error) error {
	err := a.waitOn(onMongoDB, op, 15*time.Second, func(ctx context.Context) error {
		err := write(ctx)
		a.sup.m.storeError(op, err)
		return err
	}, func(err error) bool { return errors.Is(err, store.ErrFenced) || errors.Is(err, store.ErrSeqConflict) })
	switch {
	case err == nil:
	case errors.Is(err, store.ErrFenced):
		a.loseLease("a fenced write was refused: another runner claimed the run")
	default:
		a.stopFor(stopStoreUnavailable)
	}
	return err
}

// upload copies to S3 what no step_finished event has uploaded yet: the
// logs of steps this attempt interrupted.
func (a *attempt) upload() error {
	for step := range a.state {
		if err := a.uploadStep(step); err != nil {
			return err
		}
	}
	return nil
}

// uploadStep copies a step's files to S3, waiting in place while S3 is
// unreachable, as withStore does for MongoDB.
func (a *attempt) uploadStep(step string) error {
	return a.waitOn(onS3, "upload step "+step, 5*time.Minute,
		func(ctx context.Context) error { return a.putStepFiles(ctx, step) },
		func(err error) bool { return errors.Is(err, errFileRefused) })
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
	// Artifacts are opened first (files.go: regular, one link, inside the
	// workdir): a refusal is noted in the log before the log is uploaded.
	var arts []*os.File
	var refused error
	if !st.TryStartedAt.Before(a.started) { // an earlier attempt uploaded its own
		var err error
		if arts, err = openArtifacts(a.dir.work(), st.Artifacts); errors.Is(err, errFileRefused) {
			refused = err
			noteInLog(a.dir.logs(), step+".log", fmt.Sprintf("[runnerd: %v: not uploaded; the step fails]", err))
		} else if err != nil {
			return fmt.Errorf("artifacts of step %s: %w", step, err)
		}
		defer closeAll(arts)
	}
	if key, n, ok := a.finishLogStream(step); ok {
		a.sup.m.uploadBytes.WithLabelValues("log").Add(float64(n))
		st.LogKey = key
	} else if f, err := openInside(a.dir.logs(), step+".log"); err == nil {
		key := blob.StepLogKey(a.runID, a.attemptNo, step)
		n, err := bl.Put(ctx, key, io.Reader(f))
		f.Close()
		a.sup.m.s3Error(opPutLog, err)
		if err != nil {
			return fmt.Errorf("log of step %s: %w", step, err)
		}
		a.sup.m.uploadBytes.WithLabelValues("log").Add(float64(n))
		st.LogKey = key
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("log of step %w", err)
	}
	if refused != nil {
		return refused
	}
	for i, f := range arts {
		rel := st.Artifacts[i]
		n, err := bl.Put(ctx, blob.ArtifactKey(a.runID, step, rel), io.Reader(f))
		a.sup.m.s3Error(opPutArtifact, err)
		if err != nil {
			return fmt.Errorf("artifact %s of step %s: %w", rel, step, err)
		}
		a.sup.m.uploadBytes.WithLabelValues("artifact").Add(float64(n))
	}
	if a.uploaded == nil {
		a.uploaded = map[string]bool{}
	}
	a.uploaded[step] = true
	return nil
}

// traceHeader is the W3C Trace Context header `runnerd submit` sets.
const traceHeader = "traceparent"

// traceID is the trace id of a W3C traceparent, or "" if tp is not a valid
// one (OpenTelemetry's TraceContext propagator parses it).
func traceID(tp string) string {
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{traceHeader: tp})
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String()
}
