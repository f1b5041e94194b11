package supervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/testutil"
)

// serveWithSpare starts a supervisor of one slot and one spare child, and
// waits until the spare is ready.
func serveWithSpare(t *testing.T, e *env, name string) (*running, Config) {
	t.Helper()
	cfg := e.config(name)
	cfg.Concurrency, cfg.Prestart = 1, 1
	r := e.serve(cfg)
	waitSpares(t, r, 1)
	return r, cfg
}

// waitSpares waits until n started children wait for a run.
func waitSpares(t *testing.T, r *running, n int) {
	t.Helper()
	waiting := func() int {
		if p := r.sup.spares; p != nil {
			return len(p.ready)
		}
		return 0
	}
	testutil.Eventually(t, 20*time.Second, func() bool { return waiting() >= n }, "%d spares waiting, want %d",
		func() string { return strconv.Itoa(waiting()) }, n)
}

// With --prestart, each run still gets a runexec of its own, started before
// the run, and its steps see the run's dirs, not the spare's.
func TestSpareChildrenServeOneRunEach(t *testing.T) {
	e := newEnv(t, nil)
	r, cfg := serveWithSpare(t, e, "spares")

	ids := []string{"sp1", "sp2", "sp3"}
	for _, id := range ids {
		e.submit(id, fmt.Sprintf(`
steps:
  - id: where
    shell: echo "$PPID:$(readlink /proc/self/ns/pid):$(cut -d' ' -f22 /proc/$PPID/stat) $HOME $TMPDIR $PWD" > %s
`, e.sideFile(id)), nil)
		e.waitStatus(id, runnerd.StatusSucceeded, 30*time.Second)
	}
	parents := map[string]string{}
	for _, id := range ids {
		b, err := os.ReadFile(e.sideFile(id))
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(b))
		if len(f) != 4 {
			t.Fatalf("run %s: %q", id, b)
		}
		root := filepath.Join(cfg.RunDirRoot, cfg.RunnerID, id)
		if f[1] != filepath.Join(root, "home") || f[2] != filepath.Join(root, "tmp") || f[3] != filepath.Join(root, "work") {
			t.Fatalf("run %s: HOME %s TMPDIR %s PWD %s, want the dirs of %s", id, f[1], f[2], f[3], root)
		}
		if other, ok := parents[f[0]]; ok {
			// A PID namespace's inode is reused once it is gone: the
			// runexec's start time tells two of them apart.
			t.Fatalf("runs %s and %s ran in the same runexec (pid:namespace:start %s)", other, id, f[0])
		}
		parents[f[0]] = id
	}
	// The log is the only record of a spare's use (no metric counts it).
	if n := strings.Count(e.logs.String(), "runexec taken from the spares"); n < len(ids)-1 {
		t.Fatalf("%d of %d runs used a spare\n%s", n, len(ids), e.logs.String())
	}

	// Drain: the spare that waits is killed with the supervisor.
	waitSpares(t, r, 1)
	pids := children.list()
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Fatalf("runexec %d still alive after the drain", pid)
		}
	}
}

// A spare that died while it waited is discarded, and the run starts a
// child of its own.
func TestDeadSpareIsNotUsed(t *testing.T) {
	e := newEnv(t, nil)
	serveWithSpare(t, e, "deadspare")
	pids := children.list()
	if len(pids) != 1 {
		t.Fatalf("children %v, want the one spare", pids)
	}
	if err := syscall.Kill(-pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // reaped by its go-plugin runner
	e.submit("afterdead", `steps: [{id: a, run: ["true"]}]`, nil)
	run := e.waitStatus("afterdead", runnerd.StatusSucceeded, 30*time.Second)
	if run.Attempt != 1 {
		t.Fatalf("attempt %d, want 1", run.Attempt)
	}
	// No metric counts discarded spares: the log line is the record.
	if !strings.Contains(e.logs.String(), "a spare runexec had exited: discarded") {
		t.Fatalf("dead spare not noticed:\n%s", e.logs.String())
	}
}
