package child

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/testbin"
	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/workflow"
)

func TestMain(m *testing.M) {
	testbin.Main(m, "runexec")
}

func startChild(t *testing.T, mtls bool) *Process {
	t.Helper()
	cmd := exec.Command(testbin.MustPath(t, "runexec"))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TMPDIR=" + t.TempDir()}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c, err := Start(Config{Cmd: cmd, SocketDir: shortDir(t), AutoMTLS: mtls})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Kill)
	return c
}

// shortDir keeps the Unix socket path under its 108-byte limit.
func shortDir(t testing.TB) string {
	d, err := os.MkdirTemp("", "pt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func request(t testing.TB, yaml string) *Request {
	t.Helper()
	wf, err := workflow.Parse([]byte(yaml), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return &Request{RunID: "r1", Workflow: wf, Workdir: t.TempDir(), LogDir: t.TempDir(), KillGrace: time.Second}
}

func TestExecuteStreamsEventsOverGRPC(t *testing.T) {
	for _, mtls := range []bool{false, true} {
		t.Run(fmt.Sprintf("mtls=%v", mtls), func(t *testing.T) {
			c := startChild(t, mtls)
			var events []runnerd.Event
			req := request(t, `
steps:
  - id: a
    shell: printf 'caf\351 bytes\n'; echo "k=v" >> "$RUNEXEC_OUTPUT"; echo "tmp=$TMPDIR" >> "$RUNEXEC_OUTPUT"
`)
			// The request's variables win over the child's own (TMPDIR).
			req.Env = map[string]string{"TMPDIR": "/run-tmp"}
			err := c.Execute(context.Background(), req, func(batch []runnerd.Event) error {
				events = append(events, batch...)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			state := runnerd.StepStates{}
			var last runnerd.Event
			sawLog := false
			for _, e := range events {
				state.Apply(e)
				last = e
				if e.Type == runnerd.EventLog && e.Text == "caf\xe9 bytes\n" {
					sawLog = true // not UTF-8, carried byte for byte
				}
			}
			if last.Type != runnerd.EventRunFinished || last.Status != string(runnerd.StatusSucceeded) {
				t.Fatalf("last event %+v", last)
			}
			if !sawLog || state["a"].Outputs["k"] != "v" || state["a"].Outputs["tmp"] != "/run-tmp" {
				t.Fatalf("log seen %v, state %+v", sawLog, state["a"])
			}
			c.Close()
			if c.ProcessState() == nil {
				t.Fatal("child not reaped after Close")
			}
		})
	}
}

func TestCancelStopsTheRun(t *testing.T) {
	c := startChild(t, false)
	go func() {
		time.Sleep(500 * time.Millisecond)
		_ = c.Cancel(context.Background(), "test")
	}()
	var last runnerd.Event
	err := c.Execute(context.Background(), request(t, "steps: [{id: a, shell: sleep 1000.6161}]"), func(b []runnerd.Event) error {
		last = b[len(b)-1]
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if last.Status != string(runnerd.StatusCancelled) {
		t.Fatalf("last event %+v", last)
	}
}

// A SIGSTOPped child must neither hang Ping (it has a deadline) nor Kill.
func TestStoppedChildPingFailsAndKillReturns(t *testing.T) {
	c := startChild(t, false)
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(c.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// kill(2) returns before the child's threads have stopped: one of them
	// could still answer a ping. Wait until every thread is stopped.
	testutil.Eventually(t, 5*time.Second, func() bool { return allThreadsStopped(c.Pid()) }, "child not stopped after SIGSTOP")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := c.Ping(ctx); err == nil {
		t.Fatal("ping of a stopped child succeeded")
	}
	done := make(chan struct{})
	go func() { c.Kill(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Kill of a stopped child hung")
	}
	if ps := c.ProcessState(); ps == nil || ps.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child exit: %v", ps)
	}
}

// allThreadsStopped reports whether every thread of pid is in state T.
func allThreadsStopped(pid int) bool {
	stats, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			return false
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
			return false
		}
	}
	return len(stats) > 0
}
