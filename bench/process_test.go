package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/store"
	"github.com/runnerd/runnerd/supervisor"
)

// serveProc is `runnerd serve` in a process of its own (and its own
// process group), against the devstack of this process, so that its memory
// is its own: the S3 server (which keeps multipart parts in RAM) and the
// store are not counted in it.
type serveProc struct {
	b      testing.TB
	cmd    *exec.Cmd
	stderr *testutil.SyncBuffer
	done   chan struct{}
}

func (e *env) startServe(extra ...string) *serveProc {
	e.b.Helper()
	args := []string{"serve",
		"--nats-url", e.stack.NATSURL,
		"--mongo-uri", e.stack.MongoURI,
		"--s3-endpoint", e.stack.S3Endpoint,
		"--s3-bucket", e.stack.S3Bucket,
		"--s3-region", e.stack.S3Region,
		"--s3-access-key", e.stack.S3AccessKey,
		"--s3-secret-key", e.stack.S3SecretKey,
		"--runner-id", "bench-proc",
		"--run-dir", filepath.Join(e.dir, "proc-runs"),
		"--runexec", runexecBin(e.b),
		"--log-level", "info",
	}
	args = append(args, extra...)
	p := &serveProc{b: e.b, stderr: &testutil.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(runnerdBin(e.b), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RUNNERD_") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Stdout, p.cmd.Stderr = io.Discard, p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		e.b.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	e.b.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	})
	p.waitLog(`"serving"`, 30*time.Second)
	return p
}

func (p *serveProc) pid() int { return p.cmd.Process.Pid }

func (p *serveProc) waitLog(s string, timeout time.Duration) {
	p.b.Helper()
	testutil.WaitLog(p.b, timeout, "runnerd serve", s, 30, p.stderr.String, p.done, testutil.Contains(s))
}

// procStatus returns the kB figures of /proc/<pid>/status (VmRSS, VmHWM).
func procStatus(pid int) (map[string]int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || !strings.HasPrefix(k, "Vm") && !strings.HasPrefix(k, "Rss") {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 2 && f[1] == "kB" {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			out[k] = n
		}
	}
	return out, nil
}

func mib(kB int64) float64 { return float64(kB) / 1024 }

// smapsRollup returns the kB figures of /proc/<pid>/smaps_rollup (Pss,
// Pss_Anon, Pss_File, …): memory shared with other processes (the binary's
// pages, other runexec children) counted in proportion.
func smapsRollup(pid int) (map[string]int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for line := range strings.Lines(string(data)) {
		k, v, ok := strings.Cut(line, ":")
		f := strings.Fields(v)
		if ok && len(f) == 2 && f[1] == "kB" {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			out[k] = n
		}
	}
	return out, nil
}

// sampler records VmRSS of a process every 10 ms.
type sampler struct {
	mu      sync.Mutex
	samples []rssSample
	stop    chan struct{}
	done    chan struct{}
}

type rssSample struct {
	at  time.Time
	rss int64 // kB
}

func sampleRSS(pid int) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			if st, err := procStatus(pid); err == nil {
				s.mu.Lock()
				s.samples = append(s.samples, rssSample{time.Now(), st["VmRSS"]})
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) end() []rssSample {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples
}

// maxRSS is the largest sample taken in [from, to] (kB).
func maxRSS(samples []rssSample, from, to time.Time) int64 {
	var m int64
	for _, s := range samples {
		if !s.at.Before(from) && !s.at.After(to) {
			m = max(m, s.rss)
		}
	}
	return m
}

// childrenNamed lists the children of pid (any of its threads) whose
// command name is name.
func childrenNamed(pid int, name string) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		data, _ := os.ReadFile(t)
		for _, f := range strings.Fields(string(data)) {
			c, err := strconv.Atoi(f)
			if err != nil {
				continue
			}
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", c))
			if strings.TrimSpace(string(comm)) == name {
				out = append(out, c)
			}
		}
	}
	return out
}

const logSize = 200 << 20

// BenchmarkLogs200MiB: one step writes 200 MiB to stdout; `runnerd serve`
// (its own process, --log-limit 256MiB) runs it and uploads the log. The
// log must land complete in S3. Reported: MB/s of the whole run (submit to
// terminal status) and of the phase after the step (child close, upload,
// final write: run finished_at − step finished_at, ms precision), and
// runnerd's peak RSS (VmRSS sampled every 10 ms, overall and per phase, and
// VmHWM).
func BenchmarkLogs200MiB(b *testing.B) {
	for b.Loop() {
		e := newEnv(b)
		p := e.startServe("--log-limit", "256MiB", "--concurrency", "1")
		rss := sampleRSS(p.pid())
		run, total := e.logRun(b, "logs")
		samples := rss.end()
		st, err := procStatus(p.pid())
		if err != nil {
			b.Fatal(err)
		}
		step := run.Steps["a"]
		b.ReportMetric(mib(maxRSS(samples, time.Time{}, time.Now())), "RSS-MiB")
		b.ReportMetric(mib(maxRSS(samples, step.StartedAt, step.FinishedAt)), "step-RSS-MiB")
		b.ReportMetric(mib(maxRSS(samples, step.FinishedAt, run.FinishedAt)), "upload-RSS-MiB")
		b.ReportMetric(mib(st["VmHWM"]), "HWM-MiB")
		reportLogRun(b, run, total)
		t := newTargets("logs")
		after := run.FinishedAt.Sub(step.FinishedAt)
		t.note("200 MiB step: step %.0f ms, then %.0f ms to the run's end (the log complete in S3 before it); whole run %.1f MB/s",
			ms(step.FinishedAt.Sub(step.StartedAt)), ms(after), logSize/1e6/total.Seconds())
		t.note("runnerd VmRSS: during the step %.1f MiB, after it %.1f MiB, VmHWM %.1f MiB",
			mib(maxRSS(samples, step.StartedAt, step.FinishedAt)), mib(maxRSS(samples, step.FinishedAt, run.FinishedAt)), mib(st["VmHWM"]))
		t.atMost("200 MiB log in S3 after the step's end: step end -> run end (ms)", ms(after), 500)
		t.atMost("runnerd peak VmRSS during the 200 MiB run (MiB)", mib(maxRSS(samples, time.Time{}, time.Now())), 100)
		t.print()
	}
}

// BenchmarkLogs200MiBInProcess is the same run with the supervisor in this
// process (as `runnerd dev`), for a CPU profile of both sides of the upload.
func BenchmarkLogs200MiBInProcess(b *testing.B) {
	for b.Loop() {
		e := newEnv(b)
		e.serve(1, func(c *supervisor.Config) { c.LogLimit = 256 << 20 })
		run, total := e.logRun(b, "logs")
		reportLogRun(b, run, total)
	}
}

// logRun submits the 200 MiB run, waits for it and checks its log in S3.
func (e *env) logRun(b *testing.B, id string) (*store.Run, time.Duration) {
	line := strings.Repeat("0123456789abcdef", 6) + "runnerd"
	start := time.Now()
	e.submit(id, fmt.Sprintf(`steps: [{id: a, shell: "yes %s | head -c %d"}]`, line, logSize))
	e.waitDrained(10*time.Millisecond, 5*time.Minute)
	total := time.Since(start)
	run, err := e.st.Get(context.Background(), id)
	if err != nil {
		b.Fatal(err)
	}
	if run.Status != runnerd.StatusSucceeded {
		b.Fatalf("run: %s %s\n%s", run.Status, run.Reason, testutil.Tail(e.logs.String(), 30))
	}
	if got := logBytes(b, e.blobs, blob.StepLogKey(id, 1, "a")); got != logSize {
		b.Fatalf("log in S3 holds %d bytes of output, want %d", got, logSize)
	}
	return run, total
}

func reportLogRun(b *testing.B, run *store.Run, total time.Duration) {
	step := run.Steps["a"]
	upload := run.FinishedAt.Sub(step.FinishedAt)
	const mb = 1e6
	b.ReportMetric(logSize/mb/total.Seconds(), "MB/s")
	b.ReportMetric(logSize/mb/upload.Seconds(), "upload-MB/s")
	b.ReportMetric(ms(step.FinishedAt.Sub(step.StartedAt)), "step-ms")
	b.ReportMetric(ms(upload), "upload-ms")
}

// logBytes reads a step log from S3 and returns the bytes of output in it:
// the file's size less runexec's marker lines ("[runexec: ...]").
func logBytes(b *testing.B, bl *blob.Store, key string) int64 {
	b.Helper()
	rc, err := bl.Get(context.Background(), key)
	if err != nil {
		b.Fatal(err)
	}
	defer rc.Close()
	r := bufio.NewReaderSize(rc, 1<<20)
	first, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(first, "[runexec: attempt 1 started") {
		b.Fatalf("log starts with %q (%v)", first, err)
	}
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// BenchmarkMemory: `runnerd serve` (its own process) idle for 5 s, then
// the runexec child of a run whose step sleeps.
func BenchmarkMemory(b *testing.B) {
	for b.Loop() {
		e := newEnv(b)
		p := e.startServe("--concurrency", "1")
		time.Sleep(5 * time.Second)
		idle, err := procStatus(p.pid())
		if err != nil {
			b.Fatal(err)
		}

		e.submit("sleepy", `steps: [{id: a, run: ["sleep", "3"]}]`)
		var child int
		testutil.Eventually(b, 20*time.Second, func() bool {
			if c := childrenNamed(p.pid(), "runexec"); len(c) > 0 {
				child = c[0]
			}
			return child != 0
		}, "no runexec child\n%s", func() string { return testutil.Tail(p.stderr.String(), 30) })
		// The step sleeps from about 20 ms after the child starts; take the
		// figures mid-step.
		time.Sleep(1500 * time.Millisecond)
		rx, err := procStatus(child)
		if err != nil {
			b.Fatalf("runexec %d: %v", child, err)
		}
		rxRollup, err := smapsRollup(child)
		if err != nil {
			b.Fatalf("runexec %d: %v", child, err)
		}
		busy, _ := procStatus(p.pid())
		e.waitDrained(10*time.Millisecond, time.Minute)
		if r, err := e.st.Get(context.Background(), "sleepy"); err != nil || r.Status != runnerd.StatusSucceeded {
			b.Fatalf("run sleepy: %+v %v", r, err)
		}
		time.Sleep(3 * time.Second)
		after, _ := procStatus(p.pid())

		b.ReportMetric(mib(idle["VmRSS"]), "idle-RSS-MiB")
		b.ReportMetric(mib(rx["VmHWM"]), "runexec-RSS-MiB")
		b.ReportMetric(mib(rxRollup["Pss_Anon"]), "runexec-Pss-Anon-MiB")
		b.ReportMetric(mib(busy["VmRSS"]), "busy-RSS-MiB")
		b.ReportMetric(mib(after["VmRSS"]), "after-RSS-MiB")
		t := newTargets("memory")
		t.note("runexec while its step sleeps: VmRSS %.1f MiB, VmHWM %.1f MiB, Pss %.1f MiB (Pss_Anon %.1f, Pss_File %.1f)",
			mib(rx["VmRSS"]), mib(rx["VmHWM"]), mib(rxRollup["Pss"]), mib(rxRollup["Pss_Anon"]), mib(rxRollup["Pss_File"]))
		t.note("runnerd serve: busy %.1f MiB, 3 s after the run %.1f MiB", mib(busy["VmRSS"]), mib(after["VmRSS"]))
		// On kernels that map an executable's page cache in large folios
		// (6.18 here: FilePmdMapped in smaps), the whole text and rodata of
		// the binary are resident from the first touches: RssFile is about
		// the binary's loaded size, whatever the code does.
		t.note("idle runnerd serve: RssAnon %.1f MiB, RssFile %.1f MiB (the binary's own pages)", mib(idle["RssAnon"]), mib(idle["RssFile"]))
		t.atMost("idle `runnerd serve` VmRSS after 5 s (MiB)", mib(idle["VmRSS"]), 40)
		t.atMost("runexec anonymous memory per run, Pss_Anon (MiB)", mib(rxRollup["Pss_Anon"]), 4)
		t.print()
	}
}
