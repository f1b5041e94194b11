//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/testutil"
)

// stepMarker is in every chaos step's command line (its sleep), so leftover
// step processes can be found.
const stepMarker = "9173"

// wfKind is one of the mixed workflows of the chaos suite.
type wfKind struct {
	name   string
	weight int
	want   runnerd.Status // the run's final status without chaos
	steps  func(rid, side string) string
}

// sideStep records a line per execution of a step in a file outside every
// workdir: "<run> <step> start <unix time>", then "... done <unix time>"
// when its work is complete.
func sideStep(side, rid, step, sleep string) string {
	return fmt.Sprintf(`echo "%[2]s %[3]s start $(date +%%s.%%N)" >> %[1]s
      sleep %[4]s
      echo "%[2]s %[3]s done $(date +%%s.%%N)" >> %[1]s`, side, rid, step, sleep)
}

func yamlStep(id string, needs []string, script string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  - id: %s\n", id)
	if len(needs) > 0 {
		fmt.Fprintf(&b, "    needs: [%s]\n", strings.Join(needs, ", "))
	}
	for _, e := range extra {
		fmt.Fprintf(&b, "    %s\n", e)
	}
	fmt.Fprintf(&b, "    shell: |\n      %s\n", script)
	return b.String()
}

var kinds = []wfKind{
	{"chain", 30, runnerd.StatusSucceeded, func(rid, side string) string {
		return "steps:\n" + yamlStep("a", nil, sideStep(side, rid, "a", "0.29173")) +
			yamlStep("b", []string{"a"}, sideStep(side, rid, "b", "0.59173")) +
			yamlStep("c", []string{"b"}, sideStep(side, rid, "c", "0.29173"))
	}},
	{"fanout", 20, runnerd.StatusSucceeded, func(rid, side string) string {
		return "max_parallel: 2\nsteps:\n" + yamlStep("a", nil, sideStep(side, rid, "a", "0.19173")) +
			yamlStep("b1", []string{"a"}, sideStep(side, rid, "b1", "0.49173")) +
			yamlStep("b2", []string{"a"}, sideStep(side, rid, "b2", "0.49173")) +
			yamlStep("b3", []string{"a"}, sideStep(side, rid, "b3", "0.49173")) +
			yamlStep("d", []string{"b1", "b2", "b3"}, sideStep(side, rid, "d", "0.19173"))
	}},
	{"outputs", 20, runnerd.StatusSucceeded, func(rid, side string) string {
		return "steps:\n" + yamlStep("a", nil, sideStep(side, rid, "a", "0.39173")+"\n      echo \"v="+rid+"\" >> \"$RUNEXEC_OUTPUT\"") +
			yamlStep("b", []string{"a"}, "test \"${{ steps.a.outputs.v }}\" = \""+rid+"\"\n      "+sideStep(side, rid, "b", "0.39173"))
	}},
	{"fail", 10, runnerd.StatusFailed, func(rid, side string) string {
		return "steps:\n" + yamlStep("a", nil, sideStep(side, rid, "a", "0.39173")) +
			yamlStep("b", []string{"a"}, fmt.Sprintf(`echo "%s b start $(date +%%s.%%N)" >> %s; sleep 0.19173; exit 3`, rid, side))
	}},
	{"retry", 10, runnerd.StatusSucceeded, func(rid, side string) string {
		// The first execution of step a fails (once per run, across crashes):
		// a retry by design, not a rerun after a crash.
		return "steps:\n" + yamlStep("a", nil, fmt.Sprintf(`if [ ! -e %[1]s.m ]; then touch %[1]s.m; echo "%[2]s a retryfail $(date +%%s.%%N)" >> %[1]s; exit 1; fi
      `, side, rid)+sideStep(side, rid, "a", "0.39173"), "retries: 2", "backoff: 100ms")
	}},
	{"single", 10, runnerd.StatusSucceeded, func(rid, side string) string {
		return "steps:\n" + yamlStep("only", nil, sideStep(side, rid, "only", "0.79173"))
	}},
}

func pickKind(r *rand.Rand) wfKind {
	total := 0
	for _, k := range kinds {
		total += k.weight
	}
	n := r.IntN(total)
	for _, k := range kinds {
		if n < k.weight {
			return k
		}
		n -= k.weight
	}
	return kinds[0]
}

// crashLog records which runs each injected kill hit, and when.
type crashLog struct {
	mu      sync.Mutex
	byRun   map[string][]time.Time
	runnerd int
	runexec int
}

func (c *crashLog) add(rid string, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byRun[rid] = append(c.byRun[rid], at)
}

// runIDOfRunexec reads the run id from a runexec's working directory
// (<run-dir>/<runner id>/<run id>/work).
func runIDOfRunexec(pid int) string {
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return ""
	}
	return filepath.Base(filepath.Dir(cwd))
}

func runexecProcs() []testutil.Proc {
	var out []testutil.Proc
	for _, p := range testutil.Procs(runexecBin) {
		if strings.HasPrefix(p.Cmdline, runexecBin) {
			out = append(out, p)
		}
	}
	return out
}

func TestChaos(t *testing.T) {
	const (
		nRunners    = 3
		maxChaos    = 4 * time.Minute
		drainBudget = 20 * time.Minute
	)
	nRuns := 300
	if n, err := strconv.Atoi(os.Getenv("CHAOS_RUNS")); err == nil && n > 0 {
		nRuns = n // a quick smoke run
	}
	maxDeliver := 20
	if n, err := strconv.Atoi(os.Getenv("CHAOS_MAX_DELIVER")); err == nil && n > 0 {
		maxDeliver = n // low: runners die on last deliveries (max-deliveries advisories)
	}
	s := newStack(t, chaosQueue(maxDeliver, 6*time.Second, 10*time.Second))
	side := filepath.Join(s.stepsDir(), "side")
	if err := os.MkdirAll(side, 0o755); err != nil {
		t.Fatal(err)
	}
	var runners []*runner
	for i := 1; i <= nRunners; i++ {
		args := []string{"--concurrency", "2"}
		if i == nRunners {
			// One runner keeps spare children: SIGKILLs then also hit
			// children that wait for a run, and its restarts orphan them.
			args = append(args, "--prestart", "2")
		}
		r := s.newRunner(fmt.Sprintf("chaos%d", i), args...)
		r.start()
		runners = append(runners, r)
	}

	rng := rand.New(rand.NewPCG(6, 300))
	want := map[string]wfKind{}
	var ids []string
	start := time.Now()
	for i := range nRuns {
		k := pickKind(rng)
		rid := fmt.Sprintf("c%03d-%s", i, k.name)
		s.submit(rid, k.steps(rid, filepath.Join(side, rid+".log")))
		want[rid] = k
		ids = append(ids, rid)
	}
	t.Logf("submitted %d runs in %s", nRuns, time.Since(start).Round(time.Millisecond))

	crashes := &crashLog{byRun: map[string][]time.Time{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // a random runnerd every 3-6 s, restarted half a second later
		defer wg.Done()
		r := rand.New(rand.NewPCG(1, 2))
		for {
			select {
			case <-stop:
				return
			case <-time.After(3*time.Second + time.Duration(r.IntN(3000))*time.Millisecond):
			}
			victim := runners[r.IntN(len(runners))]
			now := time.Now()
			entries, _ := os.ReadDir(filepath.Join(s.dir, "runs", victim.id))
			for _, e := range entries {
				crashes.add(e.Name(), now)
			}
			victim.kill()
			crashes.mu.Lock()
			crashes.runnerd++
			crashes.mu.Unlock()
			time.Sleep(500 * time.Millisecond)
			victim.start()
		}
	}()
	go func() { // a random runexec every second
		defer wg.Done()
		r := rand.New(rand.NewPCG(3, 4))
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
			ps := runexecProcs()
			if len(ps) == 0 {
				continue
			}
			p := ps[r.IntN(len(ps))]
			rid := runIDOfRunexec(p.PID)
			if syscall.Kill(p.PID, syscall.SIGKILL) == nil {
				crashes.add(rid, time.Now())
				crashes.mu.Lock()
				crashes.runexec++
				crashes.mu.Unlock()
			}
		}
	}()

	// Chaos until 90% of the runs are terminal or maxChaos, then drain.
	final := map[string]runnerd.Status{}
	countTerminal := func() int {
		for _, id := range ids {
			if _, ok := final[id]; ok {
				continue
			}
			if r := s.get(id); r != nil && r.Status.Terminal() {
				final[id] = r.Status
			}
		}
		return len(final)
	}
	testutil.Poll(2*time.Second, maxChaos-time.Since(start), func() bool { return countTerminal() >= nRuns*9/10 })
	close(stop)
	wg.Wait()
	chaosStop := time.Now()
	terminalAtStop := countTerminal()
	t.Logf("chaos stopped after %s: %d/%d terminal, %d runnerd kills, %d runexec kills",
		chaosStop.Sub(start).Round(time.Second), terminalAtStop, nRuns, crashes.runnerd, crashes.runexec)
	for _, r := range runners {
		if !r.alive() {
			r.start()
		}
	}
	testutil.Poll(2*time.Second, drainBudget-time.Since(chaosStop), func() bool { return countTerminal() >= nRuns })
	queueEmpty := s.waitQueueEmpty(time.Minute)
	drain := time.Since(chaosStop)

	// Lost runs: not terminal after the drain budget.
	var lost []string
	stuckRunning := 0
	for _, id := range ids {
		if _, ok := final[id]; ok {
			continue
		}
		r := s.get(id)
		if r == nil {
			lost = append(lost, id+" (no document)")
			continue
		}
		if r.Status == runnerd.StatusRunning {
			stuckRunning++
		}
		lost = append(lost, fmt.Sprintf("%s (%s/%s attempt %d runner %s)", id, r.Status, r.Reason, r.Attempt, r.RunnerID))
	}

	// Stop the fleet (SIGTERM: drain), then look for leftovers.
	for _, r := range runners {
		if !r.stop(30 * time.Second) {
			t.Errorf("runner %s did not stop within 30 s of SIGTERM", r.id)
		}
	}
	leftover := append(waitNoProcs(stepMarker, 10*time.Second), runexecProcs()...)

	// Terminal transitions, from the logs and the documents.
	var logs [][]map[string]any
	for _, r := range runners {
		logs = append(logs, r.logs())
	}
	done := terminalDone(logs...)
	exhausted := 0 // runs failed by a runner on a max-deliveries advisory
	for _, l := range logs {
		for _, m := range l {
			if str(m, "message") == "run failed: its last delivery ended with its runner" {
				exhausted++
			}
		}
	}
	multi := 0
	for id, n := range done {
		if n > 1 {
			multi++
			t.Errorf("run %s: %d terminal transitions in the runnerd logs", id, n)
		}
	}
	reasons, attempts, unexpected := map[string]int{}, map[string]int{}, 0
	totalAttempts := 0
	for _, id := range ids {
		r := s.get(id)
		if r == nil {
			continue
		}
		reasons[string(r.Status)+"/"+string(r.Reason)]++
		totalAttempts += r.Attempt
		switch {
		case r.Attempt <= 1:
			attempts["1"]++
		case r.Attempt <= 3:
			attempts["2-3"]++
		default:
			attempts[">3"]++
		}
		if r.Status.Terminal() && r.Status != want[id].want && r.Reason != runnerd.ReasonMaxAttemptsExceeded {
			unexpected++
			t.Errorf("run %s (%s): %s/%s, want %s", id, want[id].name, r.Status, r.Reason, want[id].want)
		}
		if r.Status.Terminal() && done[id] == 0 {
			// The runner that wrote it was killed before its log line.
			reasons["(terminal write without a log line)"]++
		}
	}

	// Step executions from the side-effect files.
	sx := analyzeSide(t, side, ids, crashes)
	// Successes runnerd stored more than once for one step: the
	// step_finished event is appended right before the step state is saved,
	// so a second stored success means the step ran again after its success
	// reached the store (only a kill between those two writes excuses it).
	storedTwice := s.successesStoredTwice(t, ids)

	rows := [][2]string{
		{"machine", "2 cores, 24 GiB; devstack (NATS, FerretDB/SQLite, gofakes3) in its own process"},
		{"runs submitted (chain 30%, fan-out 20%, outputs 20%, fail 10%, retry 10%, single 10%)", itoa(nRuns)},
		{"runners", fmt.Sprintf("%d × `runnerd serve --concurrency 2 --max-deliver %d --lease-ttl 6s --ack-wait 10s`, the last with `--prestart 2`", nRunners, maxDeliver)},
		{"chaos window", fmt.Sprintf("%s (stopped at 90%% terminal or 4 min)", chaosStop.Sub(start).Round(time.Second))},
		{"runnerd SIGKILLs (then restarted 0.5 s later)", itoa(crashes.runnerd)},
		{"runexec SIGKILLs", itoa(crashes.runexec)},
		{"runs terminal", fmt.Sprintf("%d / %d (%d at the end of the chaos)", len(final), nRuns, terminalAtStop)},
		{"final status/reason", countBy(reasons)},
		{"runs with an unexpected final status", itoa(unexpected)},
		{"runs failed on a max-deliveries advisory (their runner died on the last delivery)", itoa(exhausted)},
		{"claims per run", fmt.Sprintf("%s (mean %.2f)", countBy(attempts), float64(totalAttempts)/float64(nRuns))},
		{"runs lost (not terminal after the drain)", fmt.Sprintf("%d (of which `running`: %d)", len(lost), stuckRunning)},
		{"runs with more than one terminal transition (logs)", itoa(multi)},
		{"stream empty at the end", strconv.FormatBool(queueEmpty)},
		{"time to drain (last fault → all terminal, stream empty)", drain.Round(time.Second).String()},
		{"step executions (start lines)", itoa(sx.executions)},
		{"extra executions of interrupted steps (killed before done)", itoa(sx.rerunInterrupted)},
		{"succeeded steps re-run (an earlier execution wrote done)", itoa(sx.rerunAfterDone)},
		{"… of which the run was hit by a kill < 2 s after done (window before the state save)", itoa(sx.rerunAfterDoneNear)},
		{"… of which no kill within 2 s after done (saved state ignored?)", itoa(sx.rerunAfterDoneFar)},
		{"succeeded steps re-run after their success was stored (events: step_finished succeeded > 1)", itoa(storedTwice)},
		{"leftover processes (runexec or steps) after SIGTERM of the fleet", itoa(len(leftover))},
	}
	table(t, "Chaos", rows)
	if len(lost) > 0 {
		t.Errorf("%d runs lost: %s", len(lost), strings.Join(lost, "; "))
	}
	for _, p := range leftover {
		parent, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.PPID))
		t.Errorf("process left behind: %+v; parent: %q", p, strings.ReplaceAll(string(parent), "\x00", " "))
	}
	if !queueEmpty {
		t.Errorf("stream not empty after the drain")
	}
	for _, d := range sx.details {
		t.Log(d)
	}
	// A saved success is never run again: a re-run long after its "done"
	// (no kill in the window before the state save) or a second stored
	// success (events and step state are one write) means it was.
	if sx.rerunAfterDoneFar > 0 {
		t.Errorf("%d succeeded steps ran again with no kill in the window before their state was saved", sx.rerunAfterDoneFar)
	}
	if storedTwice > 0 {
		t.Errorf("%d succeeded steps ran again after their success was stored", storedTwice)
	}
}

type sideStats struct {
	executions         int
	rerunInterrupted   int
	rerunAfterDone     int
	rerunAfterDoneNear int
	rerunAfterDoneFar  int
	details            []string
}

// analyzeSide reads every run's side-effect file. For each step, executions
// after the first are reruns; a rerun after an execution that wrote "done"
// re-ran a step whose work was complete. That is legitimate only when the
// run was killed between the step's end and the save of its state (the
// step_finished event travels child → runnerd → MongoDB): the kill that hit
// the run must come shortly after "done". A rerun long after "done" would
// mean saved state was ignored.
func analyzeSide(t *testing.T, side string, ids []string, crashes *crashLog) sideStats {
	var st sideStats
	for _, rid := range ids {
		data, err := os.ReadFile(filepath.Join(side, rid+".log"))
		if err != nil {
			continue
		}
		type exec struct {
			start, done float64
		}
		bySteps := map[string][]*exec{}
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			f := strings.Fields(l)
			if len(f) != 4 || f[0] != rid {
				continue
			}
			ts, _ := strconv.ParseFloat(f[3], 64)
			xs := bySteps[f[1]]
			switch f[2] {
			case "start":
				bySteps[f[1]] = append(xs, &exec{start: ts})
				st.executions++
			case "done":
				if len(xs) > 0 {
					xs[len(xs)-1].done = ts
				}
			}
		}
		kills := crashes.byRun[rid]
		sort.Slice(kills, func(i, j int) bool { return kills[i].Before(kills[j]) })
		for step, xs := range bySteps {
			for i := 1; i < len(xs); i++ {
				var doneBefore float64
				for _, p := range xs[:i] {
					if p.done > 0 {
						doneBefore = p.done
					}
				}
				if doneBefore == 0 {
					st.rerunInterrupted++
					continue
				}
				st.rerunAfterDone++
				gap := -1.0
				for _, k := range kills {
					kt := float64(k.UnixNano()) / 1e9
					if kt >= doneBefore {
						gap = kt - doneBefore
						break
					}
				}
				if gap >= 0 && gap < 2 {
					st.rerunAfterDoneNear++
				} else {
					st.rerunAfterDoneFar++
					st.details = append(st.details, fmt.Sprintf("run %s step %s re-ran after done; first kill after done: %+.2fs (-1: none recorded)", rid, step, gap))
				}
			}
		}
	}
	return st
}

// successesStoredTwice counts the step_finished events with status succeeded
// beyond the first, per step, over the runs: runexec skips a step whose
// success reached the store, so each one is a re-run of a saved success.
func (s *stack) successesStoredTwice(t *testing.T, ids []string) int {
	n := 0
	for _, id := range ids {
		evs, err := s.st.Events(context.Background(), id, 0, 100000)
		if err != nil {
			t.Errorf("events of %s: %v", id, err)
			continue
		}
		ok := map[string]int{}
		for _, e := range evs {
			if e.Type == runnerd.EventStepFinished && e.Status == string(runnerd.StepSucceeded) {
				ok[e.Step]++
			}
		}
		for step, c := range ok {
			if c > 1 {
				n += c - 1
				t.Logf("run %s step %s: %d successes stored", id, step, c)
			}
		}
	}
	return n
}
