package bench

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/supervisor"
)

// Each benchmark below does a fixed amount of work whatever b.N is; run
// them with -benchtime 1x (make bench does). The run counts keep `make
// bench` within a few minutes; each can be changed through the variable
// named beside it.

// BenchmarkE2ELatency: submit → terminal status of a one-step workflow
// (`true`), 200 runs one after the other, on a fresh devstack with a
// supervisor of concurrency 1 in this process and real runexec children.
func BenchmarkE2ELatency(b *testing.B) { benchLatency(b, 0) }

// BenchmarkE2ELatencyPrestart is the same with `--prestart 1`: the runexec
// of each run was started before the run arrived.
func BenchmarkE2ELatencyPrestart(b *testing.B) { benchLatency(b, 1) }

func benchLatency(b *testing.B, prestart int) {
	for b.Loop() {
		e := newEnv(b)
		e.serve(1, func(c *supervisor.Config) { c.Prestart = prestart })
		e.sequential("warm", 5) // first exec of runexec, connections
		client, stored := e.sequential("lat", benchRuns(b, "RUNNERD_BENCH_LATENCY_RUNS", 200))
		reportLatency(b, client, stored)
	}
}

// BenchmarkThroughput: 2,000 runs (RUNNERD_BENCH_THROUGHPUT_RUNS) created
// and published first, then a supervisor with concurrency 2 is started and
// the drain timed.
func BenchmarkThroughput(b *testing.B) {
	n := benchRuns(b, "RUNNERD_BENCH_THROUGHPUT_RUNS", 2000)
	for b.Loop() {
		drain(b, 2, n, 0)
	}
}

// BenchmarkThroughputPrestart is the same with `--prestart 2`.
func BenchmarkThroughputPrestart(b *testing.B) {
	n := benchRuns(b, "RUNNERD_BENCH_THROUGHPUT_RUNS", 2000)
	for b.Loop() {
		drain(b, 2, n, 2)
	}
}

// BenchmarkConcurrency is the curve: 100 runs (RUNNERD_BENCH_CURVE_RUNS)
// drained at concurrency 1, 2, 4 and 8, each on a fresh devstack.
func BenchmarkConcurrency(b *testing.B) {
	n := benchRuns(b, "RUNNERD_BENCH_CURVE_RUNS", 100)
	for _, c := range []int{1, 2, 4, 8} {
		b.Run(fmt.Sprintf("c=%d", c), func(b *testing.B) {
			for b.Loop() {
				drain(b, c, n, 0)
			}
		})
	}
}

// drain creates and publishes n runs, then starts a supervisor of the given
// concurrency and times it until the stream is empty.
func drain(b *testing.B, concurrency, n, prestart int) {
	e := newEnv(b)
	for i := range n {
		e.submit(fmt.Sprintf("tp-%05d", i), trueWorkflow)
	}
	start := time.Now()
	e.serve(concurrency, func(c *supervisor.Config) { c.Prestart = prestart })
	e.waitDrained(10*time.Millisecond, 10*time.Minute)
	elapsed := time.Since(start)
	if got := e.countStatus("tp-", runnerd.StatusSucceeded); got != int64(n) {
		b.Fatalf("%d of %d runs succeeded\nsupervisor log:\n%s", got, n, testutil.Tail(e.logs.String(), 30))
	}
	b.ReportMetric(float64(n)/elapsed.Seconds(), "runs/s")
	b.ReportMetric(elapsed.Seconds(), "drain-s")
	b.ReportMetric(float64(n), "runs")
}

// BenchmarkStoredRuns: the sequential latency when the store (FerretDB on
// SQLite) already holds 1k or 10k finished runs with their events. A run
// costs seconds at 10k, hence few runs (RUNNERD_BENCH_STORED_RUNS sets both).
func BenchmarkStoredRuns(b *testing.B) {
	for _, tc := range []struct {
		seeded, runs int
	}{{1000, benchRuns(b, "RUNNERD_BENCH_STORED_RUNS", 20)}, {10000, benchRuns(b, "RUNNERD_BENCH_STORED_RUNS", 5)}} {
		b.Run(fmt.Sprintf("stored=%d", tc.seeded), func(b *testing.B) {
			for b.Loop() {
				e := newEnv(b)
				e.seedFinished(tc.seeded)
				e.serve(1, nil)
				e.sequential("warm", 1)
				client, stored := e.sequential("lat", tc.runs)
				reportLatency(b, client, stored)
			}
		})
	}
}

// benchRuns is the run count of a benchmark: the variable if set, else def.
func benchRuns(b *testing.B, env string, def int) int {
	v := os.Getenv(env)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive number", env, v)
	}
	return n
}
