package supervisor

import (
	"github.com/runnerd/runnerd"
)

// What happened to one delivery: the rows of the exit table in DESIGN.md.
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
	outExecutorStartFailed                // runexec could not be started
	outLeaseLost                          // heartbeat CAS failed
	outShutdown                           // runnerd shutting down
	outInvalidMessage                     // undecodable, unknown v, invalid
	outInvalidWorkflow                    // the run's workflow does not validate
	outRunNotFound                        // no run document
	outTenantMismatch                     // run belongs to another tenant
	outStale                              // a delivery for a finished or paused run
	outLeaseHeld                          // another runner holds the lease
	outStoreUnavailable                   // MongoDB or S3 unreachable
)

// action is what is done with the NATS delivery.
type action int

const (
	actAck       action = iota
	actNakRetry         // redeliver after the crash backoff for this delivery count
	actNakDelay         // redeliver after a short fixed delay (transient condition)
	actNakNow           // redeliver at once (another runner may take it)
	actTerm             // never redeliver
	actRepublish        // publish the run again under a new id, then ack this one
)

func (a action) String() string {
	return [...]string{"ack", "nak_retry", "nak_delay", "nak", "term", "republish"}[a]
}

// verdict is one row's consequence: the run's new status and reason (write
// false: the run document is left untouched) and the delivery's action.
type verdict struct {
	write  bool
	status runnerd.Status
	reason runnerd.Reason
	action action
	// retryable rows become max_attempts_exceeded on the last delivery.
	retryable bool
}

// exitTable is the one place that says what runnerd does with a delivery.
var exitTable = map[outcome]verdict{
	outSucceeded:           {true, runnerd.StatusSucceeded, runnerd.ReasonCompleted, actAck, false},
	outStepFailed:          {true, runnerd.StatusFailed, runnerd.ReasonStepFailed, actAck, false},
	outPaused:              {true, runnerd.StatusPaused, runnerd.ReasonPaused, actAck, false},
	outCancelled:           {true, runnerd.StatusCancelled, runnerd.ReasonCancelled, actAck, false},
	outTimeout:             {true, runnerd.StatusFailed, runnerd.ReasonTimeout, actAck, false},
	outChildCrashed:        {true, runnerd.StatusQueued, runnerd.ReasonChildCrashed, actNakRetry, true},
	outChildOOM:            {true, runnerd.StatusQueued, runnerd.ReasonChildOOM, actNakRetry, true},
	outChildUnresponsive:   {true, runnerd.StatusQueued, runnerd.ReasonChildUnresponsive, actNakRetry, true},
	outExecutorStartFailed: {true, runnerd.StatusQueued, runnerd.ReasonExecutorStartFailed, actNakRetry, true},
	outLeaseLost:           {false, "", runnerd.ReasonLeaseLost, actNakNow, false},
	outShutdown:            {true, runnerd.StatusQueued, runnerd.ReasonRunnerShutdown, actRepublish, false},
	outInvalidMessage:      {true, runnerd.StatusFailed, runnerd.ReasonInvalidMessage, actTerm, false},
	outInvalidWorkflow:     {true, runnerd.StatusFailed, runnerd.ReasonInvalidWorkflow, actTerm, false},
	outRunNotFound:         {false, "", runnerd.ReasonRunNotFound, actTerm, false},
	outTenantMismatch:      {false, "", runnerd.ReasonTenantMismatch, actTerm, false},
	outStale:               {false, "", "", actAck, false},
	outLeaseHeld:           {false, "", "", actNakDelay, false},
	outStoreUnavailable:    {false, "", runnerd.ReasonStoreUnavailable, actNakDelay, false},
}

// decide looks the outcome up; on the last delivery a retryable row fails the
// run for good, so no message loops forever.
func decide(o outcome, lastDelivery bool) verdict {
	v := exitTable[o]
	if v.retryable && lastDelivery {
		return verdict{true, runnerd.StatusFailed, runnerd.ReasonMaxAttemptsExceeded, actTerm, false}
	}
	return v
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
	stopStoreUnavailable // MongoDB stayed unreachable: the run is left for the next delivery
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
