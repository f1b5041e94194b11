package supervisor

import (
	"strconv"

	"github.com/runnerd/runnerd"
)

// What happened to one delivery: the rows of the exit table.
type outcome int

const (
	outSucceeded           outcome = iota // child reports success
	outStepFailed                         // a step failed after its retries
	outPaused                             // a human step is waiting
	outCancelled                          // user cancel
	outTimeout                            // run deadline passed
	outChildCrashed                       // child died without a final event
	outChildOOM                           // child killed by the memory limit
	outChildUnresponsive                  // child stopped answering
	outAttemptsSpent                      // the run's crash budget was spent before this attempt
	outExecutorStartFailed                // runexec could not be started
	outLeaseLost                          // heartbeat CAS failed, or a fenced write
	outShutdown                           // runnerd shutting down
	outInvalidMessage                     // undecodable, unknown v, invalid
	outInvalidWorkflow                    // the run's workflow does not validate
	outSecretMissing                      // a secret the workflow declares is not configured
	outRunNotFound                        // no run document
	outTenantMismatch                     // run belongs to another tenant
	outStale                              // a delivery for a finished or paused run
	outLeaseHeld                          // another runner holds the lease, or may still
	outStoreUnavailable                   // MongoDB, S3 or NATS unreachable
	outAdmissionWait                      // its concurrency group or tenant has no place for it yet
	numOutcomes
)

// outAdopted is not a row: the delivery was handed to the attempt of this
// process that is already running the run (see attempt.adopt).
const outAdopted outcome = -1

var outcomeNames = [numOutcomes]string{
	outSucceeded:           "succeeded",
	outStepFailed:          "step_failed",
	outPaused:              "paused",
	outCancelled:           "cancelled",
	outTimeout:             "timeout",
	outChildCrashed:        "child_crashed",
	outChildOOM:            "child_oom",
	outChildUnresponsive:   "child_unresponsive",
	outAttemptsSpent:       "attempts_spent",
	outExecutorStartFailed: "executor_start_failed",
	outLeaseLost:           "lease_lost",
	outShutdown:            "runner_shutdown",
	outInvalidMessage:      "invalid_message",
	outInvalidWorkflow:     "invalid_workflow",
	outSecretMissing:       "secret_missing",
	outRunNotFound:         "run_not_found",
	outTenantMismatch:      "tenant_mismatch",
	outStale:               "stale",
	outLeaseHeld:           "lease_held",
	outStoreUnavailable:    "store_unavailable",
	outAdmissionWait:       "admission_wait",
}

func (o outcome) String() string {
	if o < 0 || o >= numOutcomes || outcomeNames[o] == "" {
		return "outcome(" + strconv.Itoa(int(o)) + ")"
	}
	return outcomeNames[o]
}

// action is what is done with the NATS delivery. The zero action is
// invalid, so a row left out of the table cannot ack a message by accident.
type action int

const (
	actInvalid   action = iota
	actAck              // remove the message
	actNakRetry         // redeliver after the crash backoff for the run's crashes
	actNakDelay         // redeliver after a delay (waiting on infrastructure or a lease)
	actNakNow           // redeliver at once (another runner may take it)
	actTerm             // never redeliver
	actRepublish        // publish the run again under a new id, then ack this one
)

func (a action) String() string {
	names := [...]string{"invalid", "ack", "nak_retry", "nak_delay", "nak", "term", "republish"}
	if a < 0 || int(a) >= len(names) {
		return "action(" + strconv.Itoa(int(a)) + ")"
	}
	return names[a]
}

// naks reports whether the action hands the message back to the server.
func (a action) naks() bool { return a == actNakRetry || a == actNakDelay || a == actNakNow }

// verdict is one row's consequence: the run's new status and reason (write
// false: the run document is left untouched) and the delivery's action.
type verdict struct {
	write  bool
	status runnerd.Status
	reason runnerd.Reason
	action action
	// crash rows count against the run's attempts (--max-attempts): the
	// child started and then crashed, was OOM-killed or stopped answering.
	// Nothing else does: waiting on a server or a lease never spends one.
	crash bool
}

// exitTable is the one place that says what runnerd does with a delivery;
// the rules below it are the only adjustments made to a row.
var exitTable = [numOutcomes]verdict{
	outSucceeded:           {write: true, status: runnerd.StatusSucceeded, reason: runnerd.ReasonCompleted, action: actAck},
	outStepFailed:          {write: true, status: runnerd.StatusFailed, reason: runnerd.ReasonStepFailed, action: actAck},
	outPaused:              {write: true, status: runnerd.StatusPaused, reason: runnerd.ReasonPaused, action: actAck},
	outCancelled:           {write: true, status: runnerd.StatusCancelled, reason: runnerd.ReasonCancelled, action: actAck},
	outTimeout:             {write: true, status: runnerd.StatusFailed, reason: runnerd.ReasonTimeout, action: actAck},
	outChildCrashed:        {write: true, status: runnerd.StatusQueued, reason: runnerd.ReasonChildCrashed, action: actNakRetry, crash: true},
	outChildOOM:            {write: true, status: runnerd.StatusQueued, reason: runnerd.ReasonChildOOM, action: actNakRetry, crash: true},
	outChildUnresponsive:   {write: true, status: runnerd.StatusQueued, reason: runnerd.ReasonChildUnresponsive, action: actNakRetry, crash: true},
	outAttemptsSpent:       attemptsSpent,
	outExecutorStartFailed: {write: true, status: runnerd.StatusQueued, reason: runnerd.ReasonExecutorStartFailed, action: actNakDelay},
	outLeaseLost:           {reason: runnerd.ReasonLeaseLost, action: actNakNow},
	outShutdown:            {write: true, status: runnerd.StatusQueued, reason: runnerd.ReasonRunnerShutdown, action: actRepublish},
	outInvalidMessage:      {write: true, status: runnerd.StatusFailed, reason: runnerd.ReasonInvalidMessage, action: actTerm},
	outInvalidWorkflow:     {write: true, status: runnerd.StatusFailed, reason: runnerd.ReasonInvalidWorkflow, action: actTerm},
	outSecretMissing:       {write: true, status: runnerd.StatusFailed, reason: runnerd.ReasonSecretMissing, action: actTerm},
	outRunNotFound:         {reason: runnerd.ReasonRunNotFound, action: actTerm},
	outTenantMismatch:      {reason: runnerd.ReasonTenantMismatch, action: actTerm},
	outStale:               {action: actAck},
	outLeaseHeld:           {action: actNakDelay},
	outStoreUnavailable:    {reason: runnerd.ReasonStoreUnavailable, action: actNakDelay},
	outAdmissionWait:       {action: actNakDelay},
}

// attemptsSpent fails the run for good: its crash budget is spent, or the
// far backstop of deliveries was reached.
var attemptsSpent = verdict{write: true, status: runnerd.StatusFailed, reason: runnerd.ReasonMaxAttemptsExceeded, action: actTerm}

// budget is what the rules need to know about the run and the delivery.
type budget struct {
	crashes      int  // crash rows counted so far in the run document
	maxAttempts  int  // --max-attempts
	lastDelivery bool // the server will not deliver this message again
}

// decide looks the outcome up and applies the rules that depend on the
// run's budget:
//
//   - crash budget: a crash row that spends the run's last attempt fails it
//     with max_attempts_exceeded;
//   - backstop: a row that would hand the message back on its last delivery
//     (the consumer's MaxDeliver, when the operator set one) fails the run
//     instead, so no run waits on a message the server dropped.
func decide(o outcome, b budget) verdict {
	v := exitTable[o]
	if v.crash && b.crashes+1 >= b.maxAttempts {
		spent := attemptsSpent
		spent.crash = true // this crash is counted too
		return spent
	}
	if b.lastDelivery && v.action.naks() {
		return attemptsSpent
	}
	return v
}

// afterFailedWrite is the rule for a verdict whose run document write
// failed: nothing is acked before its state is saved, so the message comes
// back — at once if another runner holds the run now (the write was fenced),
// after a delay if the store is down.
func afterFailedWrite(fenced bool) action {
	if fenced {
		return actNakNow
	}
	return actNakDelay
}

// afterFailedRepublish is the rule for a republish that did not land: the
// old message is handed back instead, which spends a delivery but loses
// nothing.
const afterFailedRepublish = actNakNow

// afterFailedUpload is the rule for an attempt whose interrupted steps' logs
// could not reach S3 before it had to end (the shutdown grace ran out, or
// the lease was lost): its outcome is not written, and the run comes back.
func afterFailedUpload(o outcome) outcome {
	if o == outLeaseLost {
		return o
	}
	return outStoreUnavailable
}

// stopCause is why the supervisor itself stopped a child, if it did.
type stopCause int

const (
	stopNone stopCause = iota
	stopLeaseLost
	stopUnresponsive
	stopShutdown
	stopDeadline
	stopCancel           // user cancel; the child is asked, and killed if it does not stop
	stopStoreUnavailable // a write or upload could not be made before the attempt had to end
	stopFileRefused      // a succeeded step's artifact or log could not be uploaded safely: that step failed
)

// observation is what the supervisor saw of one attempt. The exit is
// classified from these facts, never from what the child claims alone: a
// final event counts only with a clean end of stream.
type observation struct {
	finished   *runnerd.Event // the run_finished event, if the stream carried one
	cleanEnd   bool           // the stream ended without error
	oomKilled  bool           // the cgroup counted an OOM kill
	stoppedFor stopCause
}

// classify turns an observation into a row of the exit table. A run that
// reached its end cleanly keeps that end even if a stop was under way (a
// shutdown that came a moment too late does not re-queue a finished run).
func classify(o observation) outcome {
	switch o.stoppedFor {
	case stopLeaseLost:
		return outLeaseLost
	case stopStoreUnavailable:
		return outStoreUnavailable
	case stopFileRefused:
		// The step is saved failed (reason artifact): the run fails like
		// for any failed step, whatever the child reported after it.
		return outStepFailed
	}
	finished := runnerd.Status("")
	if o.finished != nil && o.cleanEnd {
		finished = runnerd.Status(o.finished.Status)
	}
	if finished == runnerd.StatusSucceeded {
		return outSucceeded
	}
	if o.oomKilled {
		return outChildOOM
	}
	switch finished {
	case runnerd.StatusPaused:
		return outPaused
	case runnerd.StatusFailed:
		if runnerd.Reason(o.finished.Reason) == runnerd.ReasonTimeout {
			return outTimeout
		}
		return outStepFailed
	case runnerd.StatusCancelled:
		if o.stoppedFor == stopShutdown {
			return outShutdown
		}
		return outCancelled
	}
	switch o.stoppedFor {
	case stopShutdown:
		return outShutdown
	case stopUnresponsive:
		return outChildUnresponsive
	case stopDeadline:
		return outTimeout
	case stopCancel:
		return outCancelled
	}
	return outChildCrashed
}
