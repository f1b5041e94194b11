package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/supervisor"
)

// BenchmarkFloors measures runnerd against the floors (floor_test.go) on
// one devstack, interleaved in blocks so that a drift of the shared machine
// weighs on all alike, and prints the targets of the performance issue
// computed within this one pass, each with its ratio and MET or MISSED:
//
//   - E2E: submit → terminal (store timestamps) of a one-step `true` run,
//     RUNNERD_BENCH_LATENCY_RUNS (200) sequential runs each for the durable
//     floor, the isolated floor, runnerd at concurrency 1, runnerd with
//     --prestart 1, and runnerd at concurrency 2 (the same sequential load:
//     a run that waits for the previous run's teardown is slower at 1 than
//     at 2);
//   - throughput: RUNNERD_BENCH_THROUGHPUT_RUNS (1,000) pre-published runs
//     drained at concurrency 2 by each floor and by runnerd, with the CPU
//     per run of all processes (this process with its embedded servers and
//     supervisor, and the runexec children and steps it reaped), less the
//     step's own CPU.
//
// The sandbox is on (--sandbox=auto, the default) for every runnerd figure.
func BenchmarkFloors(b *testing.B) {
	latRuns := benchRuns(b, "RUNNERD_BENCH_LATENCY_RUNS", 200)
	tpRuns := benchRuns(b, "RUNNERD_BENCH_THROUGHPUT_RUNS", 1000)
	const latBlock, tpRounds = 50, 2
	for b.Loop() {
		e := newEnv(b)
		durable, isolated := e.newFloor("durable", false), e.newFloor("isolated", true)
		step := stepCPU(b, 200)

		// E2E, in rounds of latBlock runs per contender.
		type contender struct {
			name string
			run  func(prefix string, n int) []time.Duration
		}
		floorSeq := func(f *floor) func(string, int) []time.Duration {
			return func(prefix string, n int) []time.Duration {
				stop := f.serve(1)
				defer stop()
				f.sequential(prefix+"-warm", 2)
				_, stored := f.sequential(prefix, n)
				return stored
			}
		}
		runnerdSeq := func(concurrency, prestart int) func(string, int) []time.Duration {
			return func(prefix string, n int) []time.Duration {
				stop := e.serveAs(prefix, func(c *supervisor.Config) { c.Concurrency, c.Prestart = concurrency, prestart })
				defer stop()
				e.sequential(prefix+"-warm", 2)
				_, stored := e.sequential(prefix, n)
				return stored
			}
		}
		contenders := []contender{
			{"durable", floorSeq(durable)},
			{"isolated", floorSeq(isolated)},
			{"runnerd", runnerdSeq(1, 0)},
			{"prestart", runnerdSeq(1, 1)},
			{"runnerd-c2", runnerdSeq(2, 0)},
		}
		lat := map[string][]time.Duration{}
		for round := 0; len(lat["durable"]) < latRuns; round++ {
			n := min(latBlock, latRuns-len(lat["durable"]))
			for _, c := range contenders {
				lat[c.name] = append(lat[c.name], c.run(fmt.Sprintf("lat-%s-%d", c.name, round), n)...)
			}
		}

		// Throughput at concurrency 2, in tpRounds rounds.
		type drained struct {
			runs    int
			elapsed time.Duration
			cpu     time.Duration // total over the runs, step included
		}
		tp := map[string]*drained{}
		add := func(name string, n int, rate float64, perRun time.Duration) {
			d := tp[name]
			if d == nil {
				d = &drained{}
				tp[name] = d
			}
			d.runs += n
			d.elapsed += time.Duration(float64(n) / rate * float64(time.Second))
			d.cpu += perRun * time.Duration(n)
		}
		for round := range tpRounds {
			n := tpRuns / tpRounds
			rate, cpu := durable.drain(fmt.Sprintf("tp-durable-%d", round), 2, n)
			add("durable", n, rate, cpu)
			rate, cpu = isolated.drain(fmt.Sprintf("tp-isolated-%d", round), 2, n)
			add("isolated", n, rate, cpu)
			rate, cpu = e.drainRunnerd(fmt.Sprintf("tp-runnerd-%d", round), 2, n, 0)
			add("runnerd", n, rate, cpu)
			rate, cpu = e.drainRunnerd(fmt.Sprintf("tp-prestart-%d", round), 2, n, 2)
			add("prestart", n, rate, cpu)
		}
		rate := func(name string) float64 { return float64(tp[name].runs) / tp[name].elapsed.Seconds() }
		cpuPerRun := func(name string) time.Duration { return tp[name].cpu/time.Duration(tp[name].runs) - step }

		p50 := func(name string) time.Duration { return percentile(lat[name], 50) }
		for _, name := range []string{"durable", "isolated", "runnerd", "prestart", "runnerd-c2"} {
			b.ReportMetric(ms(p50(name)), name+"-store-p50-ms")
		}
		for _, name := range []string{"durable", "isolated", "runnerd", "prestart"} {
			b.ReportMetric(rate(name), name+"-c2-runs/s")
			b.ReportMetric(ms(cpuPerRun(name)), name+"-cpu-ms/run")
		}

		t := newTargets("floors")
		t.note("E2E store p50 (ms): durable floor %.1f, isolated floor %.1f, runnerd %.1f, --prestart 1 %.1f, concurrency 2 %.1f; p99 runnerd %.1f, --prestart %.1f (%d runs each)",
			ms(p50("durable")), ms(p50("isolated")), ms(p50("runnerd")), ms(p50("prestart")), ms(p50("runnerd-c2")),
			ms(percentile(lat["runnerd"], 99)), ms(percentile(lat["prestart"], 99)), len(lat["runnerd"]))
		t.note("throughput c=2 (runs/s): durable floor %.1f, isolated floor %.1f, runnerd %.1f, --prestart 2 %.1f (%d runs each)",
			rate("durable"), rate("isolated"), rate("runnerd"), rate("prestart"), tp["runnerd"].runs)
		t.note("CPU per run at c=2, step (%.2f ms) excluded (ms): durable floor %.2f, isolated floor %.2f, runnerd %.2f, --prestart 2 %.2f",
			ms(step), ms(cpuPerRun("durable")), ms(cpuPerRun("isolated")), ms(cpuPerRun("runnerd")), ms(cpuPerRun("prestart")))
		t.ratio("E2E store p50 / isolated floor, no --prestart", ms(p50("runnerd")), ms(p50("isolated")), 2)
		t.ratio("E2E store p50 / isolated floor, --prestart 1", ms(p50("prestart")), ms(p50("isolated")), 1.5)
		t.atLeast("throughput c=2 (runs/s)", rate("runnerd"), 100)
		t.ratioAtLeast("throughput c=2 / durable floor's", rate("runnerd"), rate("durable"), 0.3)
		t.atMost("CPU per one-step run, c=2, all processes, step excluded (ms)", ms(cpuPerRun("runnerd")), 12)
		// A run that waits for the previous child's teardown before its slot
		// frees is slower at concurrency 1 than at 2 under sequential load.
		t.ratio("no teardown wait: sequential E2E p50 at c=1 / at c=2", ms(p50("runnerd")), ms(p50("runnerd-c2")), 1.1)
		t.print()
	}
}

// serveAs starts a supervisor in this process under runner id id (its
// defaults, the sandbox on, real runexec children); stop drains it.
func (e *env) serveAs(id string, tweak func(*supervisor.Config)) (stop func()) {
	e.b.Helper()
	cfg := supervisor.DefaultConfig()
	cfg.RunnerID = id
	cfg.Concurrency = 1
	cfg.RunDirRoot = filepath.Join(e.dir, "runs")
	cfg.RunexecPath = runexecBin(e.b)
	cfg.Logger = zerolog.New(e.logs).Level(zerolog.WarnLevel).With().Timestamp().Logger()
	if tweak != nil {
		tweak(&cfg)
	}
	sup, err := supervisor.New(cfg, e.q, e.st, e.blobs)
	if err != nil {
		e.b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = sup.Run(ctx); close(done) }()
	return func() {
		cancel()
		<-done
		_ = sup.Close()
	}
}

// drainRunnerd submits n runs, then starts a supervisor and times it until
// the stream is empty; it returns runs/s and the CPU per run (step
// included) of this process and its reaped children over the drain.
func (e *env) drainRunnerd(prefix string, concurrency, n, prestart int) (rate float64, cpu time.Duration) {
	e.b.Helper()
	for i := range n {
		e.submit(fmt.Sprintf("%s-%05d", prefix, i), trueWorkflow)
	}
	if path := os.Getenv("RUNNERD_BENCH_CPUPROFILE"); path != "" && prestart == 0 {
		// The drain alone (not the submits), of the first such drain.
		if f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); err == nil {
			if err := pprof.StartCPUProfile(f); err != nil {
				e.b.Fatal(err)
			}
			defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
		}
	}
	self0, children0 := processCPUSplit(e.b)
	start := time.Now()
	stop := e.serveAs(prefix, func(c *supervisor.Config) { c.Concurrency, c.Prestart = concurrency, prestart })
	e.waitDrained(10*time.Millisecond, 10*time.Minute)
	elapsed := time.Since(start)
	self1, children1 := processCPUSplit(e.b)
	cpu0, cpu1 := self0+children0, self1+children1
	e.b.Logf("%s: %d runs at concurrency %d: CPU per run %.2f ms in this process, %.2f ms in reaped children (runexec and steps)",
		prefix, n, concurrency, ms((self1-self0)/time.Duration(n)), ms((children1-children0)/time.Duration(n)))
	stop()
	if got := e.countStatus(prefix+"-", runnerd.StatusSucceeded); got != int64(n) {
		e.b.Fatalf("%d of %d runs succeeded\nsupervisor log:\n%s", got, n, testutil.Tail(e.logs.String(), 30))
	}
	return float64(n) / elapsed.Seconds(), (cpu1 - cpu0) / time.Duration(n)
}

// targets prints the targets of one benchmark, each with its figure, its
// ratio where it is one, and MET or MISSED.
type targets struct {
	bench string
	lines []string
}

func newTargets(bench string) *targets { return &targets{bench: bench} }

func (t *targets) note(format string, args ...any) {
	t.lines = append(t.lines, "  "+fmt.Sprintf(format, args...))
}

func verdict(ok bool) string {
	if ok {
		return "MET"
	}
	return "MISSED"
}

// ratio: got/base must be at most limit.
func (t *targets) ratio(name string, got, base, limit float64) {
	r := got / base
	t.lines = append(t.lines, fmt.Sprintf("  TARGET %-62s %8.2f / %8.2f = %5.2fx  (goal <= %.2fx)  %s", name, got, base, r, limit, verdict(r <= limit)))
}

// ratioAtLeast: got/base must be at least limit.
func (t *targets) ratioAtLeast(name string, got, base, limit float64) {
	r := got / base
	t.lines = append(t.lines, fmt.Sprintf("  TARGET %-62s %8.2f / %8.2f = %5.2fx  (goal >= %.2fx)  %s", name, got, base, r, limit, verdict(r >= limit)))
}

func (t *targets) atMost(name string, got, limit float64) {
	t.lines = append(t.lines, fmt.Sprintf("  TARGET %-62s %8.2f  (goal <= %g, %.2fx of it)  %s", name, got, limit, got/limit, verdict(got <= limit)))
}

func (t *targets) atLeast(name string, got, limit float64) {
	t.lines = append(t.lines, fmt.Sprintf("  TARGET %-62s %8.2f  (goal >= %g, %.2fx of it)  %s", name, got, limit, got/limit, verdict(got >= limit)))
}

// print writes the lines to stdout, which `go test -bench` shows whatever
// its flags, with the time and the machine's load.
func (t *targets) print() {
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("--- targets of %s (%s, load average %s)\n", t.bench, time.Now().UTC().Format(time.RFC3339), trimNL(string(load)))
	for _, l := range t.lines {
		fmt.Println(l)
	}
}

func trimNL(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n') {
		s = s[:len(s)-1]
	}
	return s
}
