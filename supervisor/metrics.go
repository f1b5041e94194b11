package supervisor

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/store"
)

// metrics are the supervisor's Prometheus series, all named runnerd_*.
// Labels take values from closed sets (statuses, stop reasons, actions and
// the operation names below), never a run id: a fleet's series count stays
// fixed however many runs it executes. docs/operations.md lists them.
type metrics struct {
	runsStarted      prometheus.Counter
	runsFinished     *prometheus.CounterVec   // status, reason
	runDuration      *prometheus.HistogramVec // status
	stepDuration     *prometheus.HistogramVec // status
	runsInFlight     prometheus.Gauge
	freeSlots        prometheus.Gauge
	childExits       *prometheus.CounterVec // reason
	heartbeatFailure prometheus.Counter
	deliveries       *prometheus.CounterVec // action
	consumerPending  prometheus.Gauge
	eventBytes       prometheus.Counter
	uploadBytes      *prometheus.CounterVec // kind: log, artifact
	storeErrors      *prometheus.CounterVec // op
	s3Errors         *prometheus.CounterVec // op
	waiting          *prometheus.GaugeVec   // on: mongodb, s3, nats, admission
	waits            *prometheus.CounterVec // on
	sandboxLayer     *prometheus.GaugeVec   // layer (sandbox.go)
	queueWait        prometheus.Histogram
}

// What a run waits on (label "on" of runnerd_runs_waiting and
// runnerd_waits_total).
const (
	onMongoDB = "mongodb"
	onS3      = "s3"
	onNATS    = "nats"
	onLease   = "lease"
)

// statusUnchanged labels an attempt that left the run document as it was
// (lease lost, run not found, store unreachable, ...).
const statusUnchanged = "unchanged"

// Operation labels of runnerd_store_errors_total and runnerd_s3_errors_total.
const (
	opGetRun        = "get_run"
	opClaim         = "claim"
	opPersistEvents = "persist_events"
	opWriteOutcome  = "write_outcome"
	opCheckCancel   = "check_cancel"
	opGetWorkflow   = "get_workflow"
	opPutLog        = "put_log"
	opPutArtifact   = "put_artifact"
)

// newMetrics makes the series, each registered on reg as it is made
// (promauto); a nil reg keeps them unregistered (they still count, nobody
// scrapes them). A series reg has already is an error.
func newMetrics(reg prometheus.Registerer) (m *metrics, err error) {
	defer func() {
		// promauto panics on a failed registration; New reports it.
		if p := recover(); p != nil {
			e, ok := p.(error)
			if !ok {
				panic(p)
			}
			m, err = nil, fmt.Errorf("register metrics: %w", e)
		}
	}()
	f := promauto.With(reg)
	// A one-step run takes tens of milliseconds, a build hours: one set of
	// buckets from 5 ms to 6 h for runs, steps and the queue wait.
	runBuckets, stepBuckets := durationBuckets, durationBuckets
	m = &metrics{
		runsStarted: f.NewCounter(prometheus.CounterOpts{
			Name: "runnerd_runs_started_total",
			Help: "Run attempts claimed by this process (the run turned running).",
		}),
		runsFinished: f.NewCounterVec(prometheus.CounterOpts{
			Name: "runnerd_runs_finished_total",
			Help: "Run attempts concluded, by the status written to the run (unchanged: not written) and the stop reason.",
		}, []string{"status", "reason"}),
		runDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "runnerd_run_duration_seconds",
			Help:    "Duration of claimed run attempts, from pickup to the action on the message, by the status written.",
			Buckets: runBuckets,
		}, []string{"status"}),
		stepDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "runnerd_step_duration_seconds",
			Help:    "Duration of finished steps (as the executor measured them), by step status.",
			Buckets: stepBuckets,
		}, []string{"status"}),
		runsInFlight: f.NewGauge(prometheus.GaugeOpts{
			Name: "runnerd_runs_in_flight",
			Help: "Deliveries being handled by this process (each holds a run slot).",
		}),
		freeSlots: f.NewGauge(prometheus.GaugeOpts{
			Name: "runnerd_free_slots",
			Help: "Run slots of this process not in use.",
		}),
		childExits: f.NewCounterVec(prometheus.CounterOpts{
			Name: "runnerd_child_exits_total",
			Help: "runexec children that ended, by how the supervisor classified the end (a stop reason).",
		}, []string{"reason"}),
		heartbeatFailure: f.NewCounter(prometheus.CounterOpts{
			Name: "runnerd_lease_heartbeat_failures_total",
			Help: "Lease renewals that failed (retried while the lease can still be renewed; a lost lease kills the child).",
		}),
		deliveries: f.NewCounterVec(prometheus.CounterOpts{
			Name: "runnerd_deliveries_total",
			Help: "Actions taken on run messages: ack, nak_retry, nak_delay, nak, term, republish (republished and the old one acked).",
		}, []string{"action"}),
		consumerPending: f.NewGauge(prometheus.GaugeOpts{
			Name: "runnerd_consumer_pending",
			Help: "The shared consumer's backlog, sampled: messages not yet delivered plus delivered and not yet acked.",
		}),
		eventBytes: f.NewCounter(prometheus.CounterOpts{
			Name: "runnerd_event_bytes_total",
			Help: "Payload bytes (log text, outputs, messages) of the events appended to the store.",
		}),
		uploadBytes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "runnerd_upload_bytes_total",
			Help: "Bytes uploaded to S3, by kind: log (step logs) or artifact.",
		}, []string{"kind"}),
		storeErrors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "runnerd_store_errors_total",
			Help: "MongoDB calls that failed (not counting refusals such as fenced or not found), by operation.",
		}, []string{"op"}),
		s3Errors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "runnerd_s3_errors_total",
			Help: "S3 calls that failed, by operation.",
		}, []string{"op"}),
		waiting: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "runnerd_runs_waiting",
			Help: "Claimed runs whose runner is waiting, retrying in place, for a server to come back (mongodb, s3, nats); admission: deliveries of queued runs parked until their group or tenant has a place.",
		}, []string{"on"}),
		waits: f.NewCounterVec(prometheus.CounterOpts{
			Name: "runnerd_waits_total",
			Help: "Times a run was delayed by an unreachable server, a held lease or a full group or tenant (on: mongodb, s3, nats, lease, admission): an in-place wait or a delayed redelivery. None spends an attempt.",
		}, []string{"on"}),
		sandboxLayer: newSandboxMetric(f),
		queueWait: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "runnerd_queue_wait_seconds",
			Help:    "Time runs waited before they first started: from creation (submit) to their first claim.",
			Buckets: durationBuckets,
		}),
	}
	m.zero()
	return m, nil
}

// durationBuckets are the upper bounds, in seconds, of every duration
// histogram: 5 ms to 6 h.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600}

// zero creates every series of a closed label set at 0, so that each one
// docs/operations.md names is scraped from the start (an alert on a rate
// of a series that does not exist yet never fires).
func (m *metrics) zero() {
	for _, op := range []string{opGetRun, opClaim, opPersistEvents, opWriteOutcome, opCheckCancel} {
		m.storeErrors.WithLabelValues(op)
	}
	for _, op := range []string{opGetWorkflow, opPutLog, opPutArtifact} {
		m.s3Errors.WithLabelValues(op)
	}
	for _, on := range []string{onMongoDB, onS3, onNATS, onLease, onAdmission} {
		m.waits.WithLabelValues(on)
	}
	for _, on := range []string{onMongoDB, onS3, onNATS, onAdmission} {
		m.waiting.WithLabelValues(on)
	}
	for _, kind := range []string{"log", "artifact"} {
		m.uploadBytes.WithLabelValues(kind)
	}
	for a := actAck; a <= actRepublish; a++ {
		m.deliveries.WithLabelValues(a.String())
	}
	m.deliveries.WithLabelValues(deliveryAdopted)
	m.deliveries.WithLabelValues(deliveryDeleteExhausted)
	for o := range numOutcomes {
		v := exitTable[o]
		if v.reason == "" {
			continue
		}
		// A row that writes counts as unchanged when nothing was written:
		// a message naming no run, or a failed write.
		m.runsFinished.WithLabelValues(statusUnchanged, string(v.reason))
		if v.write {
			m.runsFinished.WithLabelValues(string(v.status), string(v.reason))
		}
	}
	m.runsFinished.WithLabelValues(string(runnerd.StatusFailed), string(runnerd.ReasonMaxAttemptsExceeded))
	for _, r := range []runnerd.Reason{runnerd.ReasonCompleted, runnerd.ReasonStepFailed, runnerd.ReasonPaused,
		runnerd.ReasonCancelled, runnerd.ReasonTimeout, runnerd.ReasonChildCrashed, runnerd.ReasonChildOOM,
		runnerd.ReasonChildUnresponsive, runnerd.ReasonLeaseLost, runnerd.ReasonRunnerShutdown} { // how a child can end
		m.childExits.WithLabelValues(string(r))
	}
	for _, s := range []runnerd.Status{runnerd.StatusSucceeded, runnerd.StatusFailed, runnerd.StatusCancelled, runnerd.StatusPaused, runnerd.StatusQueued} {
		m.runDuration.WithLabelValues(string(s))
	}
	m.runDuration.WithLabelValues(statusUnchanged)
	for _, s := range []runnerd.StepStatus{runnerd.StepSucceeded, runnerd.StepFailed, runnerd.StepSkipped, runnerd.StepCancelled} {
		m.stepDuration.WithLabelValues(string(s))
	}
}

// Actions of runnerd_deliveries_total that are not a row's action.
const (
	deliveryAdopted         = "adopted"          // a redelivery taken over by the attempt running the run
	deliveryDeleteExhausted = "delete_exhausted" // a message whose last delivery died with its runner
)

// storeError counts a failed MongoDB call. A refusal (fenced, not found, an
// illegal transition) is the store working as meant, not an error.
func (m *metrics) storeError(op string, err error) {
	if err == nil || errors.Is(err, store.ErrFenced) || errors.Is(err, store.ErrNotFound) ||
		errors.Is(err, store.ErrTerminal) || errors.Is(err, store.ErrIllegalTransition) {
		return
	}
	m.storeErrors.WithLabelValues(op).Inc()
}

func (m *metrics) s3Error(op string, err error) {
	if err != nil {
		m.s3Errors.WithLabelValues(op).Inc()
	}
}

// finished records a concluded attempt: the verdict's status and reason
// (status unchanged when the run document was not written).
func (m *metrics) finished(status runnerd.Status, reason runnerd.Reason) {
	if reason == "" {
		return // a stale delivery or a lease held elsewhere: no attempt ended
	}
	m.runsFinished.WithLabelValues(statusLabel(status), string(reason)).Inc()
}

func statusLabel(s runnerd.Status) string {
	if s == "" {
		return statusUnchanged
	}
	return string(s)
}

// eventPayload is the size of what an event carries besides its fixed
// fields; counted instead of encoding each event a second time.
func eventPayload(e runnerd.Event) int {
	return len(e.Text) + len(e.Key) + len(e.Value) + len(e.Path) + len(e.Message) + len(e.Prompt)
}
