//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/store"
)

// TestDependencyFaults takes servers away while runs execute, for as long as
// issue-sized outages last: the whole stack (NATS, MongoDB-wire and S3 in
// one process) SIGKILLed and started again 8 s later on the same data and
// ports; S3 unreachable for 100 s; MongoDB unreachable for 5 minutes; NATS
// stopped for 2 minutes (stackd restarts it in place). MongoDB and S3 are
// made unreachable by the proxy in front of them (it closes every connection
// and refuses new ones). Waiting on infrastructure must never fail a healthy
// run or spend one of its attempts: every run ends succeeded at attempt 1
// with no crash counted; nothing is acked before its state is saved
// (checked all along: every run whose message left the stream is terminal
// in the store); nothing is lost; no step whose success was stored runs
// again. CHAOS_OUTAGE_SCALE (e.g. 0.2) shortens the outages for a quick look.
func TestDependencyFaults(t *testing.T) {
	scale := 1.0
	if v, err := strconv.ParseFloat(os.Getenv("CHAOS_OUTAGE_SCALE"), 64); err == nil && v > 0 {
		scale = v
	}
	outage := func(d time.Duration) time.Duration { return time.Duration(float64(d) * scale) }
	faults := []struct {
		name   string
		outage time.Duration
		cut    func(*stack)
		back   func(*stack)
	}{
		{"Stack SIGKILLed", 8 * time.Second, (*stack).killStack, (*stack).startStackd},
		{"S3 unreachable", outage(100 * time.Second), func(s *stack) { s.s3P.cut() }, func(s *stack) { s.s3P.restore() }},
		{"MongoDB unreachable", outage(5 * time.Minute), func(s *stack) { s.mongoP.cut() }, func(s *stack) { s.mongoP.restore() }},
		{"NATS stopped", outage(2 * time.Minute), (*stack).stopNATS, (*stack).startNATS},
	}
	for _, f := range faults {
		t.Run(strings.Fields(f.name)[0], func(t *testing.T) {
			const nRuns = 6
			s := newStack(t, chaosQueue(-1, 6*time.Second, 10*time.Second))
			r := s.newRunner("dep1", "--concurrency", "2")
			r.start()
			side := filepath.Join(s.stepsDir(), "side")
			_ = os.MkdirAll(side, 0o755)
			var ids []string
			start := time.Now()
			for i := range nRuns {
				rid := fmt.Sprintf("dep%d", i)
				sf := filepath.Join(side, rid+".log")
				s.submit(rid, "steps:\n"+yamlStep("a", nil, sideStep(sf, rid, "a", "1.59173")+"\n      echo hello-a")+
					yamlStep("b", []string{"a"}, sideStep(sf, rid, "b", "1.59173")+"\n      echo hello-b")+
					yamlStep("c", []string{"b"}, "echo c > out.txt\n      "+sideStep(sf, rid, "c", "1.59173"), "artifacts: [out.txt]"))
				ids = append(ids, rid)
			}

			// The invariant, sampled all along: read the stream first, then
			// the store (terminal counts only grow), from the test's own
			// connections (not through the proxies).
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var mu sync.Mutex
			samples, violations := 0, 0
			waitingSeen := map[string]int{} // runs seen with a wait note, by server
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					case <-time.After(250 * time.Millisecond):
					}
					msgs, err := s.streamMsgs()
					if err != nil {
						continue // NATS is down
					}
					terminal := 0
					for _, id := range ids {
						run := s.get(id)
						if run != nil && run.Status.Settled() {
							terminal++
						}
						if run != nil && run.Waiting != nil {
							mu.Lock()
							waitingSeen[run.Waiting.On]++
							mu.Unlock()
						}
					}
					mu.Lock()
					samples++
					if acked := nRuns - int(msgs); acked > terminal {
						violations++
						t.Errorf("%d runs acked but only %d terminal in the store", acked, terminal)
					}
					mu.Unlock()
				}
			}()

			time.Sleep(3 * time.Second) // the first runs are mid-step
			faultAt := time.Now()
			f.cut(s)
			time.Sleep(f.outage)
			f.back(s)
			restored := time.Now()

			statuses := map[string]int{}
			attempts, crashes, notTerminal := 0, 0, 0
			var notFirst []string
			for _, id := range ids {
				run := s.waitRun(id, 5*time.Minute, func(r *store.Run) bool { return r.Status.Terminal() })
				if run == nil {
					notTerminal++
					if last := s.get(id); last != nil {
						t.Errorf("run %s lost: %s/%s attempt %d", id, last.Status, last.Reason, last.Attempt)
					}
					continue
				}
				statuses[string(run.Status)+"/"+string(run.Reason)]++
				attempts += run.Attempt
				crashes += run.Crashes
				if run.Attempt != 1 || run.Crashes != 0 {
					notFirst = append(notFirst, fmt.Sprintf("%s: attempt %d, crashes %d", id, run.Attempt, run.Crashes))
				}
			}
			allDone := time.Now()
			empty := s.waitQueueEmpty(30 * time.Second)
			close(stop)
			wg.Wait()

			// Reruns of steps whose work was done, and artifacts in S3.
			sx := analyzeSide(t, side, ids, &crashLog{byRun: map[string][]time.Time{}})
			storedTwice := s.successesStoredTwice(t, ids)
			artifacts := 0
			for _, id := range ids {
				if got, err := s.readBlob(blob.ArtifactKey(id, "c", "out.txt")); err == nil && got == "c\n" {
					artifacts++
				}
			}
			logsOK, steps := 0, 0
			for _, id := range ids {
				if run := s.get(id); run != nil {
					for _, st := range run.Steps {
						steps++
						if st.LogKey != "" {
							if _, err := s.blobs.Head(context.Background(), st.LogKey); err == nil {
								logsOK++
							}
						}
					}
				}
			}
			// What runnerd said about it.
			events := map[string]int{}
			for _, m := range r.logs() {
				switch msg := str(m, "message"); msg {
				case "run attempt done":
					events["attempt done: "+str(m, "reason")+"→"+str(m, "action")]++
				case "store write failed: retrying", "lease heartbeat failed: retrying", "fetch runs",
					"upload logs and artifacts", "waiting for a server: retrying", "server back: going on", "upload of a finished step failed: its state is not saved",
					"could not record the outcome: redelivering", "load run", "act on message", "lease renewed again",
					"redelivery of a run this runner is executing: the running attempt takes it over",
					"run is running elsewhere and NATS was back only now: its runner may re-take its lease":
					events[msg]++
				}
			}
			table(t, "Dependency fault: "+f.name, [][2]string{
				{"runs (3 steps of 1.6 s, concurrency 2)", itoa(nRuns)},
				{"fault", fmt.Sprintf("at +%s for %s", faultAt.Sub(start).Round(100*time.Millisecond), f.outage)},
				{"final status/reason", countBy(statuses)},
				{"claims (attempts) over all runs", itoa(attempts)},
				{"crashes counted over all runs", itoa(crashes)},
				{"all terminal at", fmt.Sprintf("+%s (%s after the server came back)", allDone.Sub(start).Round(100*time.Millisecond), allDone.Sub(restored).Round(100*time.Millisecond))},
				{"runs lost", itoa(notTerminal)},
				{"stream empty at the end", fmt.Sprintf("%v", empty)},
				{"acked-before-saved violations (samples)", fmt.Sprintf("%d (%d)", violations, samples)},
				{"extra executions of interrupted steps", itoa(sx.rerunInterrupted)},
				{"steps re-run after they finished (their result was not saved)", itoa(sx.rerunAfterDone)},
				{"succeeded steps re-run after their success was stored", itoa(storedTwice)},
				{"artifacts in S3 (step c's out.txt)", fmt.Sprintf("%d / %d", artifacts, nRuns)},
				{"step logs in S3 (log_key set and present)", fmt.Sprintf("%d / %d", logsOK, steps)},
				{"runs seen waiting (wait note in the run document, samples by server)", countBy(waitingSeen)},
				{"runnerd log", countBy(events)},
				{"runnerd alive", fmt.Sprintf("%v", r.alive())},
			})
			if notTerminal > 0 || !empty || violations > 0 || !r.alive() {
				t.Errorf("lost %d, stream empty %v, violations %d, runnerd alive %v", notTerminal, empty, violations, r.alive())
			}
			if artifacts != nRuns || logsOK != steps {
				// See docs/reliability.md: an attempt whose upload does not
				// happen loses the artifacts and logs of the steps it saved.
				t.Errorf("lost in S3: %d/%d artifacts, %d/%d step logs present", artifacts, nRuns, logsOK, steps)
			}
			if storedTwice > 0 {
				t.Errorf("%d succeeded steps ran again after their success was stored", storedTwice)
			}
			if sx.rerunInterrupted > 0 {
				t.Errorf("%d interrupted steps ran again: an outage stopped a healthy step", sx.rerunInterrupted)
			}
			if sx.rerunAfterDone > 0 {
				t.Errorf("%d steps ran again after they had finished: %v", sx.rerunAfterDone, sx.details)
			}
			if f.name == "S3 unreachable" && waitingSeen["s3"] == 0 {
				t.Errorf("no run said it was waiting for S3 (status shows the wait note)")
			}
			if len(notFirst) > 0 {
				t.Errorf("waiting on a server spent attempts: %v", notFirst)
			}
			if statuses["succeeded/completed"] != nRuns {
				t.Errorf("not every run succeeded: %v", statuses)
			}
		})
	}
}
