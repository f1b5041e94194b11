package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/internal/testutil"
)

// sandboxUsers are the users runnerd runs as in the sandbox tests: the
// test's own (root on CI), and nobody, with no privilege, where the test can
// switch to it.
func sandboxUsers(t *testing.T) []struct {
	name string
	cred *syscall.Credential
} {
	users := []struct {
		name string
		cred *syscall.Credential
	}{{"self", nil}}
	if os.Geteuid() == 0 {
		users[0].name = "root"
		users = append(users, struct {
			name string
			cred *syscall.Credential
		}{"nobody", &syscall.Credential{Uid: 65534, Gid: 65534}})
	} else {
		t.Log("not root: the unprivileged path is the test's own user")
	}
	return users
}

// sandboxWorld is a `runnerd dev` process, run as cred, with every
// directory it needs owned by that user.
type sandboxWorld struct {
	dev      *proc
	c        *clientProc
	runDir   string // --run-dir
	data     string // the embedded servers' data
	runnerID string
}

func startSandboxWorld(t *testing.T, cred *syscall.Credential, extra ...string) *sandboxWorld {
	t.Helper()
	bin, runexecBin := binaries(t)
	// A short path any user can enter (a go-plugin socket path under
	// TMPDIR must fit in 108 bytes).
	root, err := os.MkdirTemp("", "rsbx-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	// The binaries, where any user can execute them.
	binDir := filepath.Join(root, "bin")
	mkdirOwned(t, binDir, nil)
	for _, b := range []string{bin, runexecBin} {
		copyExecutable(t, b, filepath.Join(binDir, filepath.Base(b)))
	}
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	w := &sandboxWorld{runDir: filepath.Join(root, "runs"), data: filepath.Join(root, "data"), runnerID: testutil.UniqueID("sbx-" + credName(cred))}
	tmp := filepath.Join(root, "tmp")
	for _, d := range []string{w.runDir, w.data, tmp} {
		mkdirOwned(t, d, cred)
	}
	env := append(baseEnv(nil), "TMPDIR="+tmp)
	args := append([]string{"dev", "--data", w.data, "--nats-port", "0", "--mongo-port", "0", "--s3-port", "0",
		"--log-format", "json", "--runexec", filepath.Join(binDir, "runexec"), "--run-dir", w.runDir,
		"--runner-id", w.runnerID, "--metrics-addr", "127.0.0.1:0", "--ui-addr", "127.0.0.1:0", "--concurrency", "3", "--kill-grace", "1s"}, extra...)
	w.dev = startProcAs(t, "runnerd dev as "+credName(cred), env, cred, filepath.Join(binDir, "runnerd"), args...)
	w.dev.waitLog(`"message":"serving"`, 60*time.Second)
	w.c = &clientProc{t: t, bin: bin, env: baseEnv(devVars(w.dev.stderr.String()))}
	return w
}

// credName is the uid (digits only: it also goes into sleep markers).
func credName(c *syscall.Credential) string {
	if c == nil {
		return strconv.Itoa(os.Geteuid())
	}
	return strconv.Itoa(int(c.Uid))
}

func (w *sandboxWorld) workdir(runID string) string {
	return filepath.Join(w.runDir, w.runnerID, runID, "work")
}

// TestProcessSandboxAttacks makes a step of one run attack what lies outside
// it — another run's workdir and processes, runnerd's process and /proc
// entry, the embedded servers' data, a hard link to /etc/shadow, the host's
// loopback under network none — and checks each one fails with the
// kernel's error, as root and as an unprivileged user.
func TestProcessSandboxAttacks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts runnerd dev and runexec children")
	}
	for _, u := range sandboxUsers(t) {
		t.Run(u.name, func(t *testing.T) {
			w := startSandboxWorld(t, u.cred, "--file-size-limit", "1MiB", "--cpu-time-limit", "1h")
			layers := w.dev.stderr.String()
			for _, l := range []string{"pid_namespace", "no_capabilities", "landlock_fs", "landlock_scope", "network_none"} {
				if !strings.Contains(layers, `"`+l+`":"on:`) {
					t.Fatalf("layer %s is not on:\n%s", l, testutil.Tail(layers, 20))
				}
			}
			victimMarker := testutil.Marker()
			victim, _ := w.c.submit(cli.ExitOK, writeFile(t, "victim.yaml", fmt.Sprintf(`name: victim
steps:
  - id: hold
    shell: echo secret-of-b > secret; sleep %s
`, victimMarker)))
			w.c.waitStatus(victim, "running its step", 60*time.Second, func(d statusDoc) bool {
				return d.Steps["hold"] != nil && d.Steps["hold"].Status == runnerd.StepRunning
			})
			victimPids := pidsWith(victimMarker)
			if len(victimPids) == 0 {
				t.Fatal("the victim's sleep is not found")
			}
			bWork, runnerdPid := w.workdir(victim), w.dev.cmd.Process.Pid
			script := strings.Join([]string{
				"try() { echo \"== $1\"; shift; \"$@\" 2>&1 || echo \"rc=$?\"; }",
				"try read cat " + bWork + "/secret",
				"try write sh -c 'echo pwned > " + bWork + "/pwned'",
				fmt.Sprintf("try signal kill -TERM %d", victimPids[0]),
				fmt.Sprintf("try kill-runnerd kill -KILL %d", runnerdPid),
				fmt.Sprintf("try environ cat /proc/%d/environ", runnerdPid),
				"try data sh -c 'echo x > " + w.data + "/x'",
				"try runs sh -c 'ls " + w.runDir + "'",
				"try up sh -c 'echo x > ../../x'",
				"try tmp sh -c 'echo x > /tmp/x'",
				"try hardlink ln /etc/shadow shadow.txt",
				"try ps sh -c 'ls /proc | grep -c \"^[0-9]\"'",
				"try mine sh -c 'echo ok > mine.txt && cat mine.txt'",
				"try fsize sh -c 'head -c 2097152 /dev/zero > big; echo \"exit $?\"; wc -c < big'",
				// A host capability (CAP_SYS_ADMIN over the host's UTS namespace);
				// the same name, so that a failure of the sandbox changes nothing.
				"try caps hostname \"$(cat /proc/sys/kernel/hostname)\"",
			}, "\n      ")
			attack, _ := w.c.submit(cli.ExitOK, writeFile(t, "attack.yaml", fmt.Sprintf(`name: attack
steps:
  - id: attack
    shell: |
      %s
`, script)), "--wait")
			log := w.c.mustRun(cli.ExitOK, "logs", attack, "--step", "attack").stdout
			t.Logf("the attacks, as the step saw them:\n%s", log)
			got := sections(log)
			want := map[string]string{
				"read":  "Permission denied",
				"write": "Permission denied",
				// The victim's processes and runnerd are not in the
				// attacker's PID namespace: the pids name no process there.
				"signal":       "No such process",
				"kill-runnerd": "No such process",
				"environ":      "No such file or directory",
				"data":         "Permission denied",
				"runs":         "Permission denied",
				"up":           "Permission denied",
				"tmp":          "Permission denied",
				"mine":         "ok",
			}
			for name, w := range want {
				if !strings.Contains(got[name], w) {
					t.Errorf("attack %s: got %q, want %q", name, got[name], w)
				}
			}
			// Landlock refuses a link from a read-only hierarchy (EXDEV); as an
			// unprivileged user the kernel's protected_hardlinks refuses first.
			if h := got["hardlink"]; !strings.Contains(h, "Invalid cross-device link") && !strings.Contains(h, "Operation not permitted") {
				t.Errorf("hard link to /etc/shadow: %q", h)
			}
			// Past --file-size-limit the write fails and the writer gets
			// SIGXFSZ (exit 128+25): the file stops at the limit.
			if f := got["fsize"]; !strings.Contains(f, "exit 153") || !strings.Contains(f, "1048576") {
				t.Errorf("a 2 MiB write under a 1 MiB file size limit: %q", f)
			}
			// hostname(1) words EPERM as "you must be root".
			if c := got["caps"]; !strings.Contains(c, "Operation not permitted") && !strings.Contains(c, "you must be root") {
				t.Errorf("sethostname with a host capability: %q, want EPERM", c)
			}
			if n, err := strconv.Atoi(strings.TrimSpace(got["ps"])); err != nil || n > 10 {
				t.Errorf("the step sees %q processes in /proc; want the run's own few (runexec, the shells, ls, grep)", got["ps"])
			}
			// And nothing happened to the victim or to runnerd.
			if _, err := os.Stat(filepath.Join(bWork, "pwned")); err == nil {
				t.Error("the attacker wrote into the victim's workdir")
			}
			if syscall.Kill(victimPids[0], 0) != nil {
				t.Error("the victim's step died")
			}
			select {
			case <-w.dev.done:
				t.Fatal("runnerd died")
			default:
			}
			w.c.mustRun(cli.ExitOK, "cancel", victim)

			// Network none: not even the host's loopback, where the
			// embedded servers listen.
			natsPort := strings.TrimPrefix(devVars(w.dev.stderr.String())["RUNNERD_NATS_URL"], "nats://")
			_, port, _ := strings.Cut(natsPort[strings.LastIndex(natsPort, "@")+1:], ":")
			netRun, _ := w.c.submit(cli.ExitOK, writeFile(t, "net.yaml", fmt.Sprintf(`name: net
network: none
steps:
  - id: connect
    shell: |
      echo "== nats"; bash -c 'echo > /dev/tcp/127.0.0.1/%s' 2>&1 || true
      echo "== lo"; cat /sys/class/net/lo/operstate 2>&1 || ip -brief link 2>&1 || true
`, port)), "--wait")
			got = sections(w.c.mustRun(cli.ExitOK, "logs", netRun, "--step", "connect").stdout)
			if !strings.Contains(got["nats"], "Connection refused") {
				t.Errorf("network none: connect to the host's NATS port %s: %q, want Connection refused", port, got["nats"])
			}

			// The artifact leak: the link is refused by Landlock (or by
			// protected_hardlinks); had it been made, runexec and runnerd would
			// refuse a file of two links.
			leak, _ := w.c.submit(cli.ExitFailed, writeFile(t, "leak.yaml", `name: leak
steps:
  - id: leak
    shell: ln /etc/shadow shadow.txt || true
    artifacts: [shadow.txt]
`), "--wait")
			if st := w.c.status(leak).Steps["leak"]; st == nil || st.Status != runnerd.StepFailed || st.Reason != runnerd.StepReasonArtifact {
				t.Errorf("a hard link to /etc/shadow declared as an artifact: step %+v, want failed (artifact)", st)
			}

			// In the same sandbox, what workflows do still works.
			for _, ex := range []string{"hello.yaml", "fanout.yaml", "outputs.yaml", "retries.yaml"} {
				w.c.submit(cli.ExitOK, example(t, ex), "--wait")
			}
			w.c.submit(cli.ExitPaused, example(t, "approval.yaml"), "--wait")
			tools, _ := w.c.submit(cli.ExitOK, writeFile(t, "tools.yaml", `name: tools
steps:
  - id: tools
    shell: |
      echo "== workdir"; echo hi > f && cat f
      echo "== usr"; ls /usr/bin/env
      echo "== ssl"; ls /etc/ssl/certs | wc -l
      echo "== git"; git init -q repo && git -C repo -c user.email=a@b -c user.name=a commit -q --allow-empty -m x && git -C repo log --format=%s
      echo "== python"; if command -v python3 >/dev/null; then python3 -c 'print("py", 1 + 1)'; else echo py 2; fi
      echo "== go"; if command -v go >/dev/null; then go env GOROOT; else echo /usr/local/go; fi
      echo "== tmp"; mktemp -d >/dev/null && echo ok
      echo "== shm"; echo shm > /dev/shm/x && cat /dev/shm/x
      echo "== fsize"; ulimit -f
      echo "== cpu"; ulimit -t
`), "--wait")
			got = sections(w.c.mustRun(cli.ExitOK, "logs", tools, "--step", "tools").stdout)
			for name, want := range map[string]string{"workdir": "hi", "usr": "/usr/bin/env", "git": "x", "python": "py 2",
				"tmp": "ok", "shm": "shm"} {
				if strings.TrimSpace(got[name]) != want {
					t.Errorf("%s in the sandbox: %q, want %q", name, got[name], want)
				}
			}
			if g := strings.TrimSpace(got["go"]); !strings.HasPrefix(g, "/") || strings.Contains(g, "\n") {
				t.Errorf("go env GOROOT in the sandbox: %q", g)
			}
			if n, _ := strconv.Atoi(strings.TrimSpace(got["ssl"])); n == 0 {
				t.Errorf("no certificate readable in /etc/ssl/certs: %q", got["ssl"])
			}
			// dash counts -f in 512-byte blocks, bash in 1024-byte ones.
			if f := strings.TrimSpace(got["fsize"]); f != "2048" && f != "1024" {
				t.Errorf("ulimit -f in a step: %q, want the 1 MiB file size limit", f)
			}
			if c := strings.TrimSpace(got["cpu"]); c != "3600" {
				t.Errorf("ulimit -t in a step: %q, want the 1 h CPU time limit", c)
			}
		})
	}
}

// TestProcessKillRunnerdKillsTheRun SIGKILLs a runnerd process while a step
// sleeps: the kernel kills every process of the run (runexec dies of its
// death signal, and with it, as the init of the run's PID namespace, all
// of the run), with no runnerd coming back to sweep.
func TestProcessKillRunnerdKillsTheRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts runnerd dev and runexec children")
	}
	for _, u := range sandboxUsers(t) {
		t.Run(u.name, func(t *testing.T) {
			w := startSandboxWorld(t, u.cred)
			marker := testutil.SleepMarker(20)
			id, _ := w.c.submit(cli.ExitOK, writeFile(t, "sleep.yaml", fmt.Sprintf(`name: sleep
steps:
  - id: nap
    run: ["sh", "-c", "sleep %[1]s & setsid sleep %[1]s & sleep %[1]s"]
`, marker)))
			w.c.waitStatus(id, "running its step", 60*time.Second, func(d statusDoc) bool {
				return d.Steps["nap"] != nil && d.Steps["nap"].Status == runnerd.StepRunning
			})
			testutil.Eventually(t, 10*time.Second, func() bool { return len(pidsWith(marker)) >= 3 }, "%s sleeps found, want 3",
				func() string { return strconv.Itoa(len(pidsWith(marker))) })
			killed := time.Now()
			if err := syscall.Kill(w.dev.cmd.Process.Pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-w.dev.done
			testutil.NoProcess(t, 10*time.Second, marker)
			t.Logf("no process of the run left %s after the SIGKILL", time.Since(killed).Round(time.Millisecond))
		})
	}
}

// sections splits a log of "== name" headers into name -> text.
func sections(log string) map[string]string {
	out := map[string]string{}
	name := ""
	for _, line := range strings.Split(log, "\n") {
		if n, ok := strings.CutPrefix(line, "== "); ok {
			name = n
			continue
		}
		if name != "" {
			out[name] += line + "\n"
		}
	}
	return out
}

func mkdirOwned(t *testing.T, dir string, cred *syscall.Credential) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
}

func copyExecutable(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// pidsWith lists the live processes with marker in their command line.
func pidsWith(marker string) []int {
	var pids []int
	for _, p := range testutil.Procs(marker) {
		pids = append(pids, p.PID)
	}
	return pids
}
