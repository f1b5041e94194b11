//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/store"
)

// TestFencing SIGSTOPs the runner of a run past the lease TTL while a step
// runs, lets a sibling take the run over, then SIGCONTs the first: nothing
// the old runner (old epoch) does may land after the takeover. Each stored
// log event names the runner whose child produced it (the step prints its
// working directory, <run-dir>/<runner id>/<run id>/work), so the old
// runner's writes are countable.
func TestFencing(t *testing.T) {
	const ttl = 3 * time.Second
	s := newStack(t, chaosQueue(5, ttl, 5*time.Second))
	a := s.newRunner("fenceA", "--concurrency", "1")
	b := s.newRunner("fenceB", "--concurrency", "1")
	a.start()
	side := filepath.Join(s.stepsDir(), "fence.side")
	s.submit("fence1", fmt.Sprintf(`steps:
  - id: first
    shell: echo "first $(pwd)" >> %[1]s
  - id: long
    needs: [first]
    shell: |
      for i in $(seq 1 50); do echo "tick $i $(pwd)"; echo "long $i $(pwd)" >> %[1]s; sleep 0.2111; done
`, side))
	ctx := context.Background()
	running := s.waitRun("fence1", 30*time.Second, func(r *store.Run) bool {
		return r.RunnerID == "fenceA" && r.Steps["long"] != nil && r.Steps["long"].Status == runnerd.StepRunning
	})
	if running == nil {
		t.Fatalf("run never ran its long step on fenceA")
	}
	epochA := running.Epoch
	time.Sleep(time.Second) // a few ticks stored by A
	a.signal(syscall.SIGSTOP)
	stoppedAt := time.Now()
	b.start()

	taken := s.waitRun("fence1", 60*time.Second, func(r *store.Run) bool { return r.RunnerID == "fenceB" })
	if taken == nil {
		a.signal(syscall.SIGCONT)
		t.Fatalf("fenceB never took the run over")
	}
	takeover := time.Since(stoppedAt)
	epochB := taken.Epoch
	time.Sleep(time.Second) // B stores some of its own ticks

	countA := func() (n int, maxSeq int64, all []store.StoredEvent) {
		evs, err := s.st.Events(ctx, "fence1", 0, 100000)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if strings.Contains(e.Text, "/fenceA/") {
				n++
				maxSeq = max(maxSeq, e.Seq)
			}
		}
		return n, maxSeq, evs
	}
	aBefore, _, _ := countA()
	a.signal(syscall.SIGCONT)
	stoppedFor := time.Since(stoppedAt)

	final := s.mustTerminal("fence1", 60*time.Second)
	// A's verdict on its attempt.
	var aDone map[string]any
	testutil.Poll(200*time.Millisecond, 20*time.Second, func() bool {
		for _, m := range a.logs() {
			if str(m, "message") == "run attempt done" && str(m, "run_id") == "fence1" && m["attempt"] != nil && aDone == nil {
				aDone = m // its own attempt (later deliveries to it find the lease held)
			}
		}
		return aDone != nil
	}) // the checks below say what is missing
	var aLater []string
	for _, m := range a.logs() {
		if str(m, "message") == "run attempt done" && str(m, "run_id") == "fence1" && m["attempt"] == nil {
			aLater = append(aLater, fmt.Sprintf("delivery %v: %s", m["delivery"], str(m, "action")))
		}
	}
	aAfter, aMaxSeq, evs := countA()
	var minB int64 = -1
	nB := 0
	for _, e := range evs {
		if strings.Contains(e.Text, "/fenceB/") {
			nB++
			if minB < 0 {
				minB = e.Seq
			}
		}
	}
	// Each stored event carries the epoch of the write that stored it: the
	// old epoch's end before the new one's begin, with no gap or repeat.
	byEpoch := map[uint64]int{}
	var lastOfA, firstOfB int64 = 0, -1
	var epochErrs []string
	for i, e := range evs {
		if e.Seq != int64(i+1) {
			epochErrs = append(epochErrs, fmt.Sprintf("seq %d at position %d", e.Seq, i+1))
		}
		byEpoch[e.Epoch]++
		switch e.Epoch {
		case epochA:
			lastOfA = e.Seq
		case epochB:
			if firstOfB < 0 {
				firstOfB = e.Seq
			}
			if strings.Contains(e.Text, "/fenceA/") {
				epochErrs = append(epochErrs, fmt.Sprintf("seq %d: fenceA's output stored at fenceB's epoch", e.Seq))
			}
		default:
			epochErrs = append(epochErrs, fmt.Sprintf("seq %d stored at epoch %d", e.Seq, e.Epoch))
		}
	}
	if firstOfB < 0 || lastOfA > firstOfB {
		epochErrs = append(epochErrs, fmt.Sprintf("last event of epoch %d at seq %d, first of epoch %d at seq %d", epochA, lastOfA, epochB, firstOfB))
	}
	if final.EventSeq != int64(len(evs)) {
		epochErrs = append(epochErrs, fmt.Sprintf("event_seq %d, %d events", final.EventSeq, len(evs)))
	}
	_, errA1 := s.blobs.Head(ctx, blob.StepLogKey("fence1", 1, "long"))
	logB, errB2 := s.readBlob(blob.StepLogKey("fence1", 2, "long"))
	left := waitNoProcs("0.2111", 10*time.Second)

	aReason := "(no line)"
	if aDone != nil {
		aReason = str(aDone, "reason") + " / " + str(aDone, "action")
	}
	table(t, "Fencing", [][2]string{
		{"lease TTL / ack wait", "3 s / 5 s"},
		{"fenceA SIGSTOPped for", stoppedFor.Round(100 * time.Millisecond).String()},
		{"takeover by fenceB after the SIGSTOP", takeover.Round(100 * time.Millisecond).String()},
		{"epoch of fenceA / fenceB", fmt.Sprintf("%d / %d", epochA, epochB)},
		{"final run document", fmt.Sprintf("%s/%s, runner %s, epoch %d, attempt %d", final.Status, final.Reason, final.RunnerID, final.Epoch, final.Attempt)},
		{"log events of fenceA's child stored before the SIGCONT / at the end", fmt.Sprintf("%d / %d", aBefore, aAfter)},
		{"log events of fenceB's child stored", itoa(nB)},
		{"last seq of a fenceA event < first seq of a fenceB event", fmt.Sprintf("%v (%d < %d)", aMaxSeq < minB, aMaxSeq, minB)},
		{"stored events by epoch (fenceA / fenceB)", fmt.Sprintf("%d / %d of %d", byEpoch[epochA], byEpoch[epochB], len(evs))},
		{"fenceA's verdict (reason / action)", aReason},
		{"later deliveries of the message to fenceA (its stale Nak redelivers it while fenceB runs it)", strings.Join(aLater, ", ")},
		{"fenceA's step log uploaded to S3 (attempt 1)", fmt.Sprintf("%v", errA1 == nil)},
		{"leftover step processes", itoa(len(left))},
	})
	if final.Status != runnerd.StatusSucceeded || final.RunnerID != "fenceB" || final.Epoch != epochB || final.Attempt != 2 {
		t.Errorf("final run: %s/%s runner %s epoch %d attempt %d; want succeeded by fenceB at epoch %d, attempt 2",
			final.Status, final.Reason, final.RunnerID, final.Epoch, final.Attempt, epochB)
	}
	if aAfter != aBefore {
		t.Errorf("%d events of the old runner landed after the takeover", aAfter-aBefore)
	}
	if len(epochErrs) > 0 {
		t.Errorf("stored events against their epochs: %s", strings.Join(epochErrs, "; "))
	}
	if minB < 0 || aMaxSeq > minB {
		t.Errorf("events of the old runner after the new one's: last A seq %d, first B seq %d", aMaxSeq, minB)
	}
	if aDone == nil || str(aDone, "reason") != string(runnerd.ReasonLeaseLost) || runnerd.Status(str(aDone, "status")).Terminal() {
		t.Errorf("fenceA's attempt: %v, want lease_lost with no status", aDone)
	}
	if errA1 == nil {
		t.Errorf("the old runner uploaded its step log after losing the lease")
	}
	if errB2 != nil || strings.Contains(logB, "/fenceA/") || !strings.Contains(logB, "/fenceB/") {
		t.Errorf("fenceB's step log: %v %q", errB2, logB[:min(len(logB), 200)])
	}
	if len(left) > 0 {
		t.Errorf("processes left: %+v", left)
	}
}
