//go:build chaos

// Package chaos holds runnerd's reliability suites: chaos (SIGKILLed runners
// and children), fencing, dependency faults, misbehaving workflows and bad
// input. They run real binaries (runnerd serve, runexec) against real servers
// (devstack in a process of its own, cmd stackd) and print a summary table
// each. They are slow and take the machine: `make chaos`, never `make test`.
package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
	"github.com/runnerd/runnerd/workflow"
)

var runnerdBin, runexecBin, stackdBin, natsServerBin string

// TestMain uses the binaries `make build` left in $RUNNERD_BIN, or builds
// them; stackd (the servers in their own process) is always built.
func TestMain(m *testing.M) {
	tmp, err := os.MkdirTemp("", "chaos-bin")
	if err != nil {
		panic(err)
	}
	build := func(tags, out string, pkgs ...string) {
		args := append([]string{"build", "-tags", tags, "-o", out}, pkgs...)
		if b, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go %s: %v\n%s", strings.Join(args, " "), err, b)
			os.Exit(1)
		}
	}
	if dir := os.Getenv("RUNNERD_BIN"); dir != "" {
		runnerdBin, runexecBin = filepath.Join(dir, "runnerd"), filepath.Join(dir, "runexec")
	} else {
		build("ferretdb_no_postgresql", tmp+"/", "github.com/runnerd/runnerd/cmd/runnerd", "github.com/runnerd/runnerd/cmd/runexec")
		runnerdBin, runexecBin = filepath.Join(tmp, "runnerd"), filepath.Join(tmp, "runexec")
	}
	stackdBin = filepath.Join(tmp, "stackd")
	build("ferretdb_no_postgresql chaos", stackdBin, "github.com/runnerd/runnerd/chaos/internal/stackd")
	natsServerBin = filepath.Join(tmp, "nats-server") // the cluster suite's nodes
	build("", natsServerBin, "github.com/nats-io/nats-server/v2")
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// tenant of the suites' runs; mongoMarker is a distinctive option value of
// runnerd's MongoDB URI that the environment suite checks never reaches a
// workflow (as it does the stack's credentials).
const (
	tenant      = "t"
	mongoMarker = "chaosMongoMarker5R8T"
)

// stack is one suite's world: the servers in their own process, TCP proxies
// in front of MongoDB and S3 (cut to make them unreachable), the test's own
// clients (straight to the servers), and the runnerd processes.
type stack struct {
	t      *testing.T
	dir    string
	cmd    *exec.Cmd   // stackd; replaced by startStackd
	lines  chan string // stackd's stdout after the URLs
	urls   map[string]string
	mongoP *proxy
	s3P    *proxy

	nc    *nats.Conn
	js    jetstream.JetStream
	q     *queue.Queue
	qcfg  queue.Config
	st    *store.Store
	blobs *blob.Store

	mu      sync.Mutex
	runners []*runner
	cmdDone chan struct{} // closed when stackd exited
}

// startStackd starts the servers' process: on free ports the first time,
// on the same ports (and the same data) after killStack.
func (s *stack) startStackd() {
	t := s.t
	t.Helper()
	args := []string{"--dir", filepath.Join(s.dir, "data")}
	if s.urls != nil {
		port := func(raw string) string { u, _ := url.Parse(raw); return u.Port() }
		args = append(args, "--nats-port", port(s.urls["nats"]), "--mongo-port", port(s.urls["mongo"]), "--s3-port", port(s.urls["s3"]))
	}
	cmd := exec.Command(stackdBin, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	lines := make(chan string, 16)
	sc := bufio.NewScanner(out)
	if !sc.Scan() {
		t.Fatalf("stackd printed nothing")
	}
	var urls map[string]string
	if err := json.Unmarshal(sc.Bytes(), &urls); err != nil {
		t.Fatalf("stackd: %v: %s", err, sc.Text())
	}
	go func() {
		for sc.Scan() {
			lines <- sc.Text()
		}
		_ = cmd.Wait()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.cmdDone, s.lines, s.urls = cmd, done, lines, urls
	s.mu.Unlock()
}

// killStack SIGKILLs the servers' process (NATS, MongoDB-wire and S3 at
// once) and waits for it; startStackd brings them back.
func (s *stack) killStack() {
	s.mu.Lock()
	cmd, done := s.cmd, s.cmdDone
	s.mu.Unlock()
	_ = cmd.Process.Kill()
	<-done
}

func newStack(t *testing.T, qcfg queue.Config) *stack {
	t.Helper()
	s := &stack{t: t, dir: t.TempDir(), qcfg: qcfg}
	s.startStackd()
	t.Cleanup(func() {
		s.mu.Lock()
		cmd, done := s.cmd, s.cmdDone
		s.mu.Unlock()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	var err error
	mongoURL, err := url.Parse(s.urls["mongo"])
	if err != nil {
		t.Fatal(err)
	}
	s.mongoP = newProxy(t, mongoURL.Host)
	s.s3P = newProxy(t, strings.TrimPrefix(s.urls["s3"], "http://"))

	ctx := context.Background()
	if s.nc, err = nats.Connect(s.urls["nats"], nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.nc.Close)
	if s.js, err = jetstream.New(s.nc); err != nil {
		t.Fatal(err)
	}
	if s.q, err = queue.Setup(ctx, s.js, qcfg); err != nil {
		t.Fatal(err)
	}
	if s.st, err = store.Open(ctx, store.Config{URI: s.urls["mongo"]}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.st.Close(context.Background()) })
	s.blobs, err = blob.New(ctx, blob.Config{
		Endpoint: s.urls["s3"], Region: s.urls["region"], Bucket: s.urls["bucket"],
		AccessKey: s.urls["access_key"], SecretKey: s.urls["secret_key"], PathStyle: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// chaosQueue is the queue configuration of the suites: short lease and ack
// wait so a dead runner's runs come back within seconds.
func chaosQueue(maxDeliver int, leaseTTL, ackWait time.Duration) queue.Config {
	c := queue.DefaultConfig()
	c.MaxDeliver, c.LeaseTTL, c.AckWait = maxDeliver, leaseTTL, ackWait
	return c
}

// stopNATS and startNATS signal stackd and wait for its answer.
func (s *stack) stopNATS()  { s.natsSignal(syscall.SIGUSR1, "nats stopped") }
func (s *stack) startNATS() { s.natsSignal(syscall.SIGUSR2, "nats started") }

func (s *stack) natsSignal(sig syscall.Signal, want string) {
	s.t.Helper()
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
	select {
	case l := <-s.lines:
		if l != want {
			s.t.Fatalf("stackd: %q, want %q", l, want)
		}
	case <-time.After(30 * time.Second):
		s.t.Fatalf("stackd: no %q", want)
	}
}

// runner is one `runnerd serve` process, restartable; its JSON log (stderr)
// is appended to one file across restarts.
type runner struct {
	s       *stack
	id      string
	args    []string
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	starts int
}

// stepsDir is where steps may write outside their run dirs (side files,
// markers): the runners give it with --sandbox-rw.
func (s *stack) stepsDir() string {
	d := filepath.Join(s.dir, "rw")
	if err := os.MkdirAll(d, 0o755); err != nil {
		s.t.Fatal(err)
	}
	return d
}

// newRunner prepares a runnerd serve; extra flags override the suite's.
func (s *stack) newRunner(id string, extra ...string) *runner {
	q := s.qcfg
	args := []string{"serve", "--runner-id", id, "--runexec", runexecBin,
		"--run-dir", filepath.Join(s.dir, "runs"),
		"--lease-ttl", q.LeaseTTL.String(), "--ack-wait", q.AckWait.String(),
		"--max-deliver", strconv.Itoa(q.MaxDeliver),
		"--ping-interval", "1s", "--ping-timeout", "2s", "--kill-grace", "2s", "--grace", "10s",
		"--metrics-addr", "127.0.0.1:0", // several runners on one host
		// Steps record side effects in one directory outside every run dir
		// (stepsDir); the sandbox keeps them out of everything else.
		"--sandbox-rw", s.stepsDir(),
	}
	r := &runner{s: s, id: id, args: append(args, extra...), logPath: filepath.Join(s.dir, id+".log")}
	s.mu.Lock()
	s.runners = append(s.runners, r)
	s.mu.Unlock()
	s.t.Cleanup(func() {
		r.kill()
		if dir := os.Getenv("CHAOS_REPORT_DIR"); dir != "" { // keep the log for a post-mortem
			if data, err := os.ReadFile(r.logPath); err == nil {
				name := strings.NewReplacer("/", "_", " ", "_").Replace(s.t.Name()) + "-" + id + ".log"
				_ = os.WriteFile(filepath.Join(dir, name), data, 0o644)
			}
		}
	})
	return r
}

// env gives runnerd its connections the way a pod would: variables, the
// store and S3 through the proxies.
func (s *stack) env() []string {
	return append(os.Environ(),
		"RUNNERD_NATS_URL="+s.urls["nats"],
		"RUNNERD_MONGO_URI="+s.mongoURI(),
		"RUNNERD_S3_ENDPOINT=http://"+s.s3P.addr(),
		"RUNNERD_S3_BUCKET="+s.urls["bucket"],
		"RUNNERD_S3_ACCESS_KEY="+s.urls["access_key"],
		"RUNNERD_S3_SECRET_KEY="+s.urls["secret_key"],
	)
}

// mongoURI is the URI runnerd gets, through the proxy, with a distinctive
// option value that must never reach a workflow.
func (s *stack) mongoURI() string {
	u, _ := url.Parse(s.urls["mongo"]) // with the stack's credentials
	u.Host, u.Path, u.RawQuery = s.mongoP.addr(), "/", "appName="+mongoMarker
	return u.String()
}

func (r *runner) start() {
	r.s.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	logf, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		r.s.t.Fatal(err)
	}
	cmd := exec.Command(runnerdBin, r.args...)
	cmd.Env = r.s.env()
	cmd.Stdout, cmd.Stderr = logf, logf // a file, not a pipe: nothing is lost at a SIGKILL
	if err := cmd.Start(); err != nil {
		r.s.t.Fatal(err)
	}
	logf.Close()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.cmd, r.done = cmd, done
	r.starts++
}

func (r *runner) pid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

func (r *runner) alive() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return false
	}
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

func (r *runner) signal(sig syscall.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		_ = r.cmd.Process.Signal(sig)
	}
}

// kill SIGKILLs the process and waits for it.
func (r *runner) kill() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT)
	_ = cmd.Process.Kill()
	<-done
}

// stop is a SIGTERM (drain), then waits; a SIGKILL after timeout.
func (r *runner) stop(timeout time.Duration) (exited bool) {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	if cmd == nil {
		return true
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		r.kill()
		return false
	}
}

// logs parses the runner's JSON log lines.
func (r *runner) logs() []map[string]any { return parseLog(r.s.t, r.logPath) }

func parseLog(t *testing.T, path string) []map[string]any {
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range bytes.Split(data, []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(l, &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

func str(m map[string]any, k string) string { s, _ := m[k].(string); return s }

// submit creates a run and publishes its message, as `runnerd submit` does.
func (s *stack) submit(id, yaml string) {
	s.t.Helper()
	wf, err := workflow.Parse([]byte(yaml), id+".yaml")
	if err != nil {
		s.t.Fatalf("workflow of %s: %v\n%s", id, err, yaml)
	}
	ctx := context.Background()
	if err := s.st.Create(ctx, &store.Run{ID: id, TenantID: tenant, Workflow: wf}); err != nil {
		s.t.Fatal(err)
	}
	msg := &queue.Message{V: queue.Version, RunID: id, TenantID: tenant, Workflow: wf, PublishedAt: time.Now().UTC()}
	if err := s.q.Publish(ctx, msg, 0, nil); err != nil {
		s.t.Fatal(err)
	}
}

func (s *stack) get(id string) *store.Run {
	r, err := s.st.Get(context.Background(), id)
	if err != nil {
		return nil
	}
	return r
}

// waitRun polls the run until ok says so; nil after timeout.
func (s *stack) waitRun(id string, timeout time.Duration, ok func(*store.Run) bool) *store.Run {
	var r *store.Run
	if testutil.Wait(timeout, func() bool { r = s.get(id); return r != nil && ok(r) }) {
		return r
	}
	return nil
}

func (s *stack) mustTerminal(id string, timeout time.Duration) *store.Run {
	s.t.Helper()
	r := s.waitRun(id, timeout, func(r *store.Run) bool { return r.Status.Terminal() })
	if r == nil {
		last := s.get(id)
		if last != nil {
			s.t.Fatalf("run %s not terminal after %s: %s/%s attempt %d", id, timeout, last.Status, last.Reason, last.Attempt)
		}
		s.t.Fatalf("run %s not found", id)
	}
	return r
}

// streamMsgs is the number of messages in the work-queue stream: not yet
// acked or termed.
func (s *stack) streamMsgs() (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, s.qcfg.Stream)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

func (s *stack) waitQueueEmpty(timeout time.Duration) bool {
	return testutil.Wait(timeout, func() bool { n, err := s.streamMsgs(); return err == nil && n == 0 })
}

func (s *stack) readBlob(key string) (string, error) {
	rc, err := s.blobs.Get(context.Background(), key)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}

// proxy is a TCP proxy in front of a real server; cut makes the server
// unreachable (open connections are closed, new ones are closed at once)
// until restore.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]bool
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go p.serve()
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		go p.pipe(c)
	}
}

func (p *proxy) pipe(c net.Conn) {
	u, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		c.Close()
		u.Close()
		return
	}
	p.conns[c], p.conns[u] = true, true
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		dst.Close()
		src.Close()
	}
	go cp(u, c)
	go cp(c, u)
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, u)
	p.mu.Unlock()
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
}

func (p *proxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// vmRSS is a process's resident set in bytes (VmRSS), 0 if gone.
func vmRSS(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// table prints a suite's summary: a markdown table, so it can be pasted
// into docs/reliability.md as is.
func table(t *testing.T, title string, rows [][2]string) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n### %s\n\n| figure | value |\n|---|---|\n", title)
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s |\n", r[0], r[1])
	}
	t.Log(b.String())
	if dir := os.Getenv("CHAOS_REPORT_DIR"); dir != "" {
		f, err := os.OpenFile(filepath.Join(dir, "chaos-summary.md"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err == nil {
			fmt.Fprintf(f, "%s\n", b.String())
			f.Close()
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// countBy counts values, sorted by key for the tables.
func countBy(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	if len(parts) == 0 {
		return "—"
	}
	return strings.Join(parts, ", ")
}

// terminalDone counts, per run id, the "run attempt done" lines with a
// terminal status in the given logs.
func terminalDone(logs ...[]map[string]any) map[string]int {
	out := map[string]int{}
	for _, l := range logs {
		for _, m := range l {
			if str(m, "message") == "run attempt done" && runnerd.Status(str(m, "status")).Terminal() {
				out[str(m, "run_id")]++
			}
		}
	}
	return out
}

// waitNoProcs waits up to timeout for no process with marker; it returns
// those left.
func waitNoProcs(marker string, timeout time.Duration) []testutil.Proc {
	var left []testutil.Proc
	testutil.Wait(timeout, func() bool { left = testutil.Procs(marker); return len(left) == 0 })
	return left
}
