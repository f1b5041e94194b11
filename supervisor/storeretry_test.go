package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/storetest"
	"github.com/runnerd/runnerd/internal/wirefault"
)

// The supervisor retries a store write that failed; when the write had in
// fact landed (its reply was lost), the retry must store nothing twice. The
// store is reached through a proxy that drops the replies of an insert of
// events and of the write that makes a batch visible.
func TestRetriedEventWritesStoreEachEventOnce(t *testing.T) {
	e := newEnv(t, nil)
	u, err := url.Parse(storetest.URI(e.stack.MongoURI))
	if err != nil {
		t.Fatal(err)
	}
	proxy := wirefault.Start(t, u.Host)
	u.Host = proxy.Addr()
	cfg := storetest.Config(t, e.stack.MongoURI)
	cfg.URI, cfg.Database = u.String(), e.st.Database()
	e.st = storetest.OpenConfig(t, cfg)
	inserts, commits := 0, 0
	// The write that makes a batch visible moves event_seq: an update with
	// $set on the conditional path, a revision's insert on the other.
	proxy.DropReplies(2, func(cmd, coll string, msg []byte) bool {
		switch {
		case cmd == "insert" && coll == "events":
			inserts++
			return inserts == 2 // a batch after the first
		case bytes.Contains(msg, []byte("event_seq")) &&
			((cmd == "update" && coll == "runs" && bytes.Contains(msg, []byte("$set"))) || (cmd == "insert" && coll == "run_revisions")):
			commits++
			return commits == 3
		}
		return false
	})
	r := e.serve(e.config("retry"))
	e.submit("retry1", `
steps:
  - id: talk
    shell: for i in $(seq 1 40); do echo "line $i"; sleep 0.01; done
  - id: after
    needs: [talk]
    run: ["echo", "done"]
`, nil)
	run := e.waitStatus("retry1", runnerd.StatusSucceeded, 60*time.Second)
	if got := proxy.Dropped(); len(got) != 2 {
		t.Fatalf("replies dropped: %v, want 2", got)
	}
	// Each dropped reply is one failed try, then retried. Which writes they
	// hit depends on how the step's output falls into batches: the last
	// batch goes with the outcome, and both drops can fall in one write (a
	// batch's insert, then its commit as it is retried), which then waits
	// once (runnerd_waits_total{on="mongodb"}); the run's success says each
	// wait ended.
	failed := promtest.ToFloat64(r.sup.m.storeErrors.WithLabelValues(opPersistEvents)) +
		promtest.ToFloat64(r.sup.m.storeErrors.WithLabelValues(opWriteOutcome))
	if waits := promtest.ToFloat64(r.sup.m.waits.WithLabelValues(onMongoDB)); failed != 2 || waits < 1 || waits > 2 {
		t.Fatalf("%v failed writes of events and %v waits on MongoDB, want 2 failed and retried\nlogs:\n%s", failed, waits, e.logs.String())
	}
	evs, err := e.st.Events(context.Background(), "retry1", 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	types := map[runnerd.EventType]int{}
	for i, ev := range evs {
		if ev.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d", i, ev.Seq)
		}
		types[ev.Type]++
		if ev.Type == runnerd.EventLog && ev.Step == "talk" {
			text.WriteString(ev.Text)
		}
	}
	var want strings.Builder
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&want, "line %d\n", i)
	}
	if text.String() != want.String() {
		t.Fatalf("the step's output as stored:\n%s", text.String())
	}
	if types[runnerd.EventRunStarted] != 1 || types[runnerd.EventRunFinished] != 1 || types[runnerd.EventStepFinished] != 2 {
		t.Fatalf("event types %v, want one run_started, one run_finished, two step_finished", types)
	}
	if run.EventSeq != int64(len(evs)) || run.Attempt != 1 {
		t.Fatalf("event_seq %d for %d events, attempt %d", run.EventSeq, len(evs), run.Attempt)
	}
}
