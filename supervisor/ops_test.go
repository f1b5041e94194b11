package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
)

// ops is a supervisor with its own registry, watchdog and ops endpoints.
type ops struct {
	*running
	srv *httptest.Server
}

// serveOps starts a supervisor whose metrics and probes are served by a
// test HTTP server. hook, if not nil, runs at each turn of the consumer loop.
func (e *env) serveOps(cfg Config, stall time.Duration, hook func()) *ops {
	e.t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	cfg.Health = NewHealth(stall, time.Minute)
	cfg.SampleInterval = 100 * time.Millisecond
	sup, err := New(cfg, e.q, e.st, e.blobs)
	if err != nil {
		e.t.Fatal(err)
	}
	sup.loopHook = hook
	srv := httptest.NewServer(OpsHandler(cfg.Health, reg))
	e.t.Cleanup(srv.Close) // after the supervisor's stop (cleanups run last first)
	return &ops{running: e.run(sup, cfg), srv: srv}
}

// get returns the status code and body of one endpoint.
func (o *ops) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(o.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// scrape reads /metrics into name{label="v",...} → value; a histogram gives
// its _count and _sum.
func (o *ops) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	code, body := o.get(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(labels)
			key := name
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				out[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[key] = m.Gauge.GetValue()
			case m.Histogram != nil:
				out[strings.Replace(key, name, name+"_count", 1)] = float64(m.Histogram.GetSampleCount())
				out[strings.Replace(key, name, name+"_sum", 1)] = m.Histogram.GetSampleSum()
			}
		}
	}
	return out
}

// waitMetrics scrapes until every wanted series has its value.
func (o *ops) waitMetrics(t *testing.T, e *env, what string, want map[string]float64) map[string]float64 {
	t.Helper()
	var got map[string]float64
	var wrong []string
	testutil.Eventually(t, 10*time.Second, func() bool {
		got, wrong = o.scrape(t), nil
		for k, v := range want {
			if got[k] != v {
				wrong = append(wrong, fmt.Sprintf("%s = %v, want %v", k, got[k], v))
			}
		}
		return len(wrong) == 0
	}, "%s:\n%s\nlogs:\n%s", what, func() string { sort.Strings(wrong); return strings.Join(wrong, "\n") }, e.logs.String)
	return got
}

// waitProbe polls an endpoint until it answers code with a body containing want.
func (o *ops) waitProbe(t *testing.T, path string, code int, want string, timeout time.Duration) {
	t.Helper()
	var got int
	var body string
	testutil.Eventually(t, timeout, func() bool {
		got, body = o.get(t, path)
		return got == code && strings.Contains(body, want)
	}, "%s: %d %q, want %d with %q", path, func() string { return strconv.Itoa(got) }, func() string { return body }, code, want)
}

func TestMetricsCountRealRuns(t *testing.T) {
	e := newEnv(t, nil)
	o := e.serveOps(e.config("m1"), time.Minute, nil)
	o.waitProbe(t, "/readyz", http.StatusOK, "ok", 10*time.Second)

	// A run that waits for a file, so it can be seen in flight; its message
	// carries a trace context.
	gate := e.sideFile("gate")
	wf := mustWorkflow(t, fmt.Sprintf(`
steps:
  - id: wait
    shell: while [ ! -e %s ]; do sleep 0.05; done; echo through
`, gate))
	ctx := context.Background()
	if err := e.st.Create(ctx, &store.Run{ID: "met1", TenantID: "t", Workflow: wf}); err != nil {
		t.Fatal(err)
	}
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	hdr := nats.Header{}
	hdr.Set("traceparent", tp)
	msg := &queue.Message{V: queue.Version, RunID: "met1", TenantID: "t", Workflow: wf, PublishedAt: time.Now().UTC()}
	if err := e.q.Publish(ctx, msg, 0, hdr); err != nil {
		t.Fatal(err)
	}
	e.waitRun("met1", 30*time.Second, "running its step", func(r *store.Run) bool {
		return r.Steps["wait"] != nil && r.Steps["wait"].Status == runnerd.StepRunning
	})
	o.waitMetrics(t, e, "during the run", map[string]float64{
		"runnerd_runs_started_total": 1,
		"runnerd_runs_in_flight":     1,
		"runnerd_free_slots":         1,
		"runnerd_consumer_pending":   1, // delivered, not yet acked
	})
	if code, body := o.get(t, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz during a run: %d %s", code, body)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e.waitStatus("met1", runnerd.StatusSucceeded, 30*time.Second)

	e.submit("met2", `
steps:
  - id: ok
    shell: echo fine
  - id: boom
    needs: [ok]
    shell: echo oops >&2; exit 3
`, nil)
	e.waitStatus("met2", runnerd.StatusFailed, 30*time.Second)
	e.waitQueueEmpty(10 * time.Second)

	got := o.waitMetrics(t, e, "after two runs", map[string]float64{
		"runnerd_runs_started_total":                                         2,
		`runnerd_runs_finished_total{reason="completed",status="succeeded"}`: 1,
		`runnerd_runs_finished_total{reason="step_failed",status="failed"}`:  1,
		`runnerd_run_duration_seconds_count{status="succeeded"}`:             1,
		`runnerd_run_duration_seconds_count{status="failed"}`:                1,
		`runnerd_step_duration_seconds_count{status="succeeded"}`:            2,
		`runnerd_step_duration_seconds_count{status="failed"}`:               1,
		`runnerd_child_exits_total{reason="completed"}`:                      1,
		`runnerd_child_exits_total{reason="step_failed"}`:                    1,
		`runnerd_deliveries_total{action="ack"}`:                             2,
		"runnerd_runs_in_flight":                                             0,
		"runnerd_free_slots":                                                 2,
		"runnerd_consumer_pending":                                           0,
		"runnerd_lease_heartbeat_failures_total":                             0,
		"runnerd_queue_wait_seconds_count":                                   2,
	})
	for _, k := range []string{"runnerd_event_bytes_total", `runnerd_upload_bytes_total{kind="log"}`} {
		if got[k] <= 0 {
			t.Errorf("%s = %v, want more than 0", k, got[k])
		}
	}
	for k, v := range got {
		if (strings.HasPrefix(k, "runnerd_store_errors_total") || strings.HasPrefix(k, "runnerd_s3_errors_total")) && v != 0 {
			t.Errorf("%s = %v, want 0", k, v)
		}
	}

	// The trace context reaches the run's events and every log line of the run.
	events, err := e.st.Events(ctx, "met1", 0, 100)
	if err != nil || len(events) == 0 || events[0].Type != runnerd.EventRunStarted || events[0].TraceParent != tp {
		t.Fatalf("first event of met1: %+v (err %v), want run_started with trace_parent %s", events, err, tp)
	}
	var sawStep bool
	for _, line := range strings.Split(e.logs.String(), "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) != nil || l["run_id"] != "met1" {
			continue
		}
		if l["trace_id"] != "4bf92f3577b34da6a3ce929d0e0e4736" || l["runner_id"] != testutil.UniqueID("m1") {
			t.Errorf("log line of met1 without its trace_id or runner_id: %s", line)
		}
		if l["message"] == "step finished" {
			_, ms := l["duration_ms"].(float64)
			sawStep = l["step"] == "wait" && l["reason"] == "completed" && l["attempt"] == 1.0 && ms
		}
	}
	if !sawStep {
		t.Errorf("no step finished line with step, reason, attempt and duration_ms for met1:\n%s", e.logs.String())
	}
}

func TestHealthzFailsWhenTheLoopIsWedged(t *testing.T) {
	e := newEnv(t, nil)
	var wedged atomic.Bool
	release := make(chan struct{})
	o := e.serveOps(e.config("w1"), 500*time.Millisecond, func() {
		if wedged.Load() {
			<-release
		}
	})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	o.waitProbe(t, "/healthz", http.StatusOK, "ok", 10*time.Second)
	o.waitProbe(t, "/readyz", http.StatusOK, "ok", 10*time.Second)

	wedged.Store(true)
	o.waitProbe(t, "/healthz", http.StatusServiceUnavailable, "consumer loop: no progress", 5*time.Second)
	wedged.Store(false)
	close(release)
	o.waitProbe(t, "/healthz", http.StatusOK, "ok", 5*time.Second)
}

func TestReadyzFalseWhileDraining(t *testing.T) {
	e := newEnv(t, nil)
	o := e.serveOps(e.config("d1"), time.Minute, nil)
	o.waitProbe(t, "/readyz", http.StatusOK, "ok", 10*time.Second)
	// The step ignores SIGTERM: the drain lasts until runexec kills it
	// after the kill grace (1 s).
	started := e.sideFile("started")
	e.submit("drain1", fmt.Sprintf(`
steps:
  - id: stubborn
    shell: trap '' TERM; touch %s; sleep 30
`, started), nil)
	testutil.Eventually(t, 30*time.Second, func() bool { _, err := os.Stat(started); return err == nil },
		"step never started\n%s", e.logs.String)

	o.cancel() // the first SIGTERM
	o.waitProbe(t, "/readyz", http.StatusServiceUnavailable, "draining", 5*time.Second)
	select {
	case <-o.done:
		t.Fatal("the drain ended before /readyz was seen false")
	default:
	}
	<-o.done
	o.waitProbe(t, "/readyz", http.StatusServiceUnavailable, "stopped", time.Second)
	if code, body := o.get(t, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz after a clean drain: %d %s", code, body)
	}
	o.waitMetrics(t, e, "after the drain", map[string]float64{
		`runnerd_deliveries_total{action="republish"}`:                          1,
		`runnerd_runs_finished_total{reason="runner_shutdown",status="queued"}`: 1,
		`runnerd_child_exits_total{reason="runner_shutdown"}`:                   1,
	})
}

func TestTraceID(t *testing.T) {
	for tp, want := range map[string]string{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01": "4bf92f3577b34da6a3ce929d0e0e4736",
		"":        "",
		"garbage": "",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01": "",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01": "",
		"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01":  "",
	} {
		if got := traceID(tp); got != want {
			t.Errorf("traceID(%q) = %q, want %q", tp, got, want)
		}
	}
}

// The child's hclog lines reach zerolog with the run's fields and levels.
func TestHCLogLinesCarryTheRunsFields(t *testing.T) {
	var buf bytes.Buffer
	zl := zerolog.New(&buf).Level(zerolog.InfoLevel).With().Str("run_id", "r1").Int("attempt", 2).Logger()
	hl := newHCLogger(zl).Named("runexec")
	hl.Warn("rlimit not applied", "step", "build", "variable", "RUNEXEC_RLIMIT_FSIZE")
	hl.Debug("dropped at info")
	var line map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(buf.Bytes()), &line); err != nil {
		t.Fatalf("want one JSON line, got %q: %v", buf.String(), err)
	}
	for k, want := range map[string]any{
		"level": "warn", "message": "rlimit not applied", "run_id": "r1", "attempt": 2.0,
		"step": "build", "module": "plugin.runexec", "variable": "RUNEXEC_RLIMIT_FSIZE",
	} {
		if line[k] != want {
			t.Errorf("%s = %v, want %v (line %s)", k, line[k], want, buf.String())
		}
	}
	if hl.GetLevel() != hclog.Info {
		t.Errorf("hclog level %s, want info like the zerolog logger", hl.GetLevel())
	}
}
