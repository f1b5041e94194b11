package contain

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runnerd/runnerd/internal/testutil"
)

// A child inherits the limits, soft and hard, and cannot raise them; a
// write past the file size limit fails with EFBIG.
func TestLimitsAreInheritedAndHard(t *testing.T) {
	l := Limits{NoFile: 512, FileSize: 1 << 20, CPUTime: 3600}
	got, err := LimitsFromEnv(envOf(l.Env()))
	if err != nil || got != l {
		t.Fatalf("round trip through the environment: %+v %v", got, err)
	}
	if _, err := LimitsFromEnv(envOf([]string{envFileSize + "=lots"})); err == nil || !strings.Contains(err.Error(), envFileSize) {
		t.Fatalf("a bad value should be named: %v", err)
	}
	// In a child process, so the test process keeps its own limits.
	dir := t.TempDir()
	script := `grep -E '^Max (cpu time|file size|open files)' /proc/self/limits | tr -s ' '
ulimit -f unlimited 2>/dev/null && echo raised
head -c 2097152 /dev/zero > big 2>/dev/null; echo "exit $?"; wc -c < big`
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, l.Env()...)
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	out, err := runWithLimits(t, cmd)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	// 153 = 128 + SIGXFSZ: the write past the limit.
	want := "Max cpu time 3600 3600 seconds \nMax file size 1048576 1048576 bytes \nMax open files 512 512 files \nexit 153\n1048576\n"
	if out != want {
		t.Fatalf("limits seen by the child:\n%s\nwant:\n%s", out, want)
	}
}

// runWithLimits runs cmd under the limits its environment carries, as
// runexec does: this test binary applies them in a helper child.
func runWithLimits(t *testing.T, cmd *exec.Cmd) (string, error) {
	t.Helper()
	helper := exec.Command(os.Args[0], "-test.run=^TestLimitsHelper$")
	helper.Env = append(cmd.Env, "CONTAIN_LIMITS_HELPER=1", "CONTAIN_HELPER_DIR="+cmd.Dir, "CONTAIN_HELPER_SCRIPT="+cmd.Args[2])
	out, err := helper.CombinedOutput()
	s := string(out)
	if i := strings.Index(s, "PASS"); i >= 0 {
		s = s[:i]
	}
	return s, err
}

func TestLimitsHelper(t *testing.T) {
	if os.Getenv("CONTAIN_LIMITS_HELPER") == "" {
		t.Skip("helper of TestLimitsAreInheritedAndHard")
	}
	l, err := LimitsFromEnv(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Apply(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", "-c", os.Getenv("CONTAIN_HELPER_SCRIPT"))
	cmd.Dir = os.Getenv("CONTAIN_HELPER_DIR")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
}

func envOf(env []string) func(string) string {
	return func(name string) string {
		for _, kv := range env {
			if k, v, _ := strings.Cut(kv, "="); k == name {
				return v
			}
		}
		return ""
	}
}

// An orphan that left its task's process group is killed by a sweep once
// its task is over, and spared while it runs.
func TestReaperSweepsOrphansOfEndedTasks(t *testing.T) {
	rp := NewReaper("CONTAIN_TASK")
	if !rp.enabled {
		t.Fatal("the test process should be a subreaper")
	}
	pidFile := filepath.Join(t.TempDir(), "orphan.pid")
	// The task double-forks a sleeper into a session of its own and exits.
	cmd := exec.Command("/bin/sh", "-c", "setsid sh -c 'echo $$ > "+pidFile+"; exec sleep 1000.5151' & sleep 0.2")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "CONTAIN_TASK=a"}
	cmd.SysProcAttr = ProcessAttr()
	if err := rp.Start("a", cmd, nil); err != nil {
		t.Fatal(err)
	}
	// Another task still runs: its orphans are spared.
	other := exec.Command("/bin/sh", "-c", "sleep 1000.5252")
	other.Env = []string{"CONTAIN_TASK=b"}
	other.SysProcAttr = ProcessAttr()
	if err := rp.Start("b", other, nil); err != nil {
		t.Fatal(err)
	}
	defer func() { KillGroup(other.Process.Pid, syscall.SIGKILL); _ = other.Wait() }()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	rp.Exited("a", cmd.Process.Pid)
	pid := readPid(t, pidFile)
	if syscall.Kill(pid, 0) != nil {
		t.Fatalf("orphan %d should be alive before the sweep", pid)
	}
	rp.Sweep()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("orphan %d after the sweep: %v, want ESRCH", pid, err)
	}
	if err := syscall.Kill(other.Process.Pid, 0); err != nil {
		t.Fatalf("the running task's process was killed: %v", err)
	}
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	var pid int
	testutil.Eventually(t, 10*time.Second, func() bool {
		b, err := os.ReadFile(path)
		var perr error
		pid, perr = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && perr == nil
	}, "no pid in %s", path)
	return pid
}

// A cgroup holds its processes, counts nothing without an OOM and kills what
// is left, including a process that left the group (setsid).
func TestCgroupKillsEverythingInIt(t *testing.T) {
	v2, mem, pids := Roots()
	if v2 == "" && mem == "" && pids == "" {
		t.Skip("no cgroup hierarchy on this machine")
	}
	cg, err := NewCgroup(filepath.Join(testutil.UniqueID("contain-test"), "a"), 64<<20, 64)
	if err != nil {
		t.Skipf("no writable cgroup: %v", err)
	}
	defer cg.Discard()
	defer os.Remove(filepath.Dir(cg.dirs()[0]))
	pidFile := filepath.Join(t.TempDir(), "escaped.pid")
	cmd := exec.Command("/bin/sh", "-c", "read x")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.SysProcAttr = ProcessAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := cg.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	// Born inside the cgroup, then out of the group.
	if _, err := stdin.Write([]byte("x\n")); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	escape := exec.Command("/bin/sh", "-c", "echo $$ > "+pidFile+"; exec sleep 1000.5353")
	escape.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := escape.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = escape.Wait() }()
	if err := cg.Add(escape.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if n := len(cg.Procs()); n != 1 {
		t.Fatalf("%d processes in the cgroup, want 1", n)
	}
	if n := cg.OOMKills(); n != 0 {
		t.Fatalf("oom kills %d", n)
	}
	cg.Kill()
	if n := len(cg.Procs()); n != 0 {
		t.Fatalf("%d processes left after Kill", n)
	}
}

// PATH entries a step could not execute from under Landlock are dropped.
func TestFilterPath(t *testing.T) {
	sb := &Sandbox{Landlock: 7, RO: []string{"/srv/tools"}}
	got := sb.FilterPath("/root/.pyenv/shims:/usr/local/bin:/srv/tools/bin:/home/me/bin:/usr/bin:/bin")
	if want := "/usr/local/bin:/srv/tools/bin:/usr/bin:/bin"; got != want {
		t.Fatalf("FilterPath = %q, want %q", got, want)
	}
	if got := (&Sandbox{}).FilterPath("/root/bin"); got != "/root/bin" {
		t.Fatalf("without Landlock: %q", got)
	}
}

// --sandbox=required names every missing layer; the user namespace is a
// means to the others, not required by itself.
func TestRequiredNamesMissingLayers(t *testing.T) {
	full := &Sandbox{PIDNS: true, UserNS: true, NetNS: true, Landlock: 7}
	if err := full.required(); err != nil {
		t.Fatalf("every layer on: %v", err)
	}
	old := &Sandbox{PIDNS: true, UserNS: true, Landlock: 3, why: map[string]string{LayerScope: "Landlock ABI 3: signal scoping needs 6"}}
	err := old.required()
	if !errors.Is(err, ErrSandboxMissing) || !strings.Contains(err.Error(), "landlock_scope (Landlock ABI 3") || strings.Contains(err.Error(), LayerUserNS) {
		t.Fatalf("ABI 3, no network namespace: %v", err)
	}
	if !strings.Contains(err.Error(), LayerNetwork) {
		t.Fatalf("network none is missing too: %v", err)
	}
	if _, err := Probe("/nonexistent/runexec", Options{Mode: ModeOff}); err != nil {
		t.Fatalf("off probes nothing: %v", err)
	}
}

// The process's orphan sweep runs while one of its users has not stopped,
// and has ended when the last one's stop returns.
func TestReapOrphansEndsWithItsLastUser(t *testing.T) {
	own := func(int) bool { return true } // reap nothing of the test's
	stop1, err := ReapOrphans(own)
	if err != nil {
		t.Fatal(err)
	}
	stop2, err := ReapOrphans(own)
	if err != nil {
		t.Fatal(err)
	}
	done := orphanReaper.done
	stop1()
	stop1() // a second call changes nothing
	select {
	case <-done:
		t.Fatal("the sweep ended while a user still runs")
	default:
	}
	stop2()
	select {
	case <-done:
	default:
		t.Fatal("the sweep still runs after its last user stopped")
	}
}
