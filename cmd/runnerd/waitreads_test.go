package main

import (
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/internal/wirefault"
)

// TestSubmitWaitReadsTheStoreRarely: submit --wait of a run that waits
// seconds in its concurrency group behind a running holder, then runs for
// seconds, reads the store a bounded number of times: at the start, when
// its progress and its end are announced, and not on a timer while it
// waits or runs. The commands are counted at a proxy in front of the
// store.
func TestSubmitWaitReadsTheStoreRarely(t *testing.T) {
	if testing.Short() {
		t.Skip("starts runexec children")
	}
	e := startEnv(t)
	e.startServe()
	group := func(sleep string) string {
		return writeFile(t, "g.yaml", "name: deploy\nconcurrency: {group: reads, limit: 1}\nsteps:\n  - id: s\n    shell: sleep "+sleep+"\n")
	}
	e.mustRun(cli.ExitOK, "submit", group("8"), "--id", "rr-holder")
	testutil.Eventually(t, 20*time.Second, func() bool { return e.get("rr-holder").Status == runnerd.StatusRunning },
		"the holder never started")

	u, err := url.Parse(os.Getenv("RUNNERD_MONGO_URI"))
	if err != nil {
		t.Fatal(err)
	}
	proxy := wirefault.Start(t, u.Host)
	u.Host = proxy.Addr()
	t.Setenv("RUNNERD_MONGO_URI", u.String())
	type read struct {
		at  time.Duration // since the submit began
		cmd string
	}
	var (
		mu    sync.Mutex
		reads []read
		start = time.Now()
	)
	counted := map[string]bool{"find": true, "aggregate": true, "getMore": true, "count": true, "distinct": true,
		"insert": true, "update": true, "delete": true, "findAndModify": true}
	proxy.Watch(func(cmd, coll string, _ []byte) {
		if counted[cmd] {
			mu.Lock()
			reads = append(reads, read{time.Since(start), cmd + " " + coll})
			mu.Unlock()
		}
	})
	r := e.mustRun(cli.ExitOK, "submit", group("3"), "--id", "rr-waiter", "--wait")
	took := time.Since(start)
	if !strings.Contains(r.stderr, `queued: waits in concurrency group "reads"`) {
		t.Errorf("submit --wait never said where the run waits:\n%s", r.stderr)
	}
	w := e.get("rr-waiter")
	queuedFor, ranFor := w.StartedAt.Sub(w.CreatedAt), w.FinishedAt.Sub(w.StartedAt)
	mu.Lock()
	defer mu.Unlock()
	var lines []string
	whileQueued := 0 // after the first second, before the run started
	for _, rd := range reads {
		lines = append(lines, rd.at.Round(100*time.Millisecond).String()+" "+rd.cmd)
		if rd.at > time.Second && rd.at < queuedFor-300*time.Millisecond {
			whileQueued++
		}
	}
	t.Logf("submit --wait: %d store commands in %s (queued %s, running %s):\n%s", len(reads), took.Round(100*time.Millisecond),
		queuedFor.Round(100*time.Millisecond), ranFor.Round(100*time.Millisecond), strings.Join(lines, "\n"))
	if queuedFor < 4*time.Second || ranFor < 2*time.Second {
		t.Fatalf("the run was queued %s and ran %s: want seconds of each for the count to mean anything", queuedFor, ranFor)
	}
	// While it waits, only the slow fallback may read the run (every 10 s;
	// a read of the run is two commands on FerretDB: the document and its
	// revision).
	if most := 2 * int(queuedFor/(10*time.Second)); whileQueued > most {
		t.Errorf("submit --wait sent %d commands to the store while the run was queued for %s, want at most %d (the 10 s fallback)",
			whileQueued, queuedFor.Round(100*time.Millisecond), most)
	}
	// Overall: the submit (create, read back), the start (the run, its
	// events), a read per announced batch of events of this quiet run, the
	// slow fallback, the end.
	if most := 40; len(reads) > most {
		t.Errorf("submit --wait sent %d commands to the store, want at most %d", len(reads), most)
	}
}
