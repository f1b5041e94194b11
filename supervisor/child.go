package supervisor

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/rs/zerolog"

	"github.com/runnerd/runnerd/child"
	"github.com/runnerd/runnerd/contain"
)

// runDir is the directory of one attempt of one run; all of it is removed
// when the attempt ends.
type runDir struct {
	root string
}

func (d runDir) work() string { return filepath.Join(d.root, "work") }
func (d runDir) logs() string { return filepath.Join(d.root, "logs") }
func (d runDir) tmp() string  { return filepath.Join(d.root, "tmp") }
func (d runDir) home() string { return filepath.Join(d.root, "home") }

func (s *Supervisor) makeRunDir(runID string) (runDir, error) {
	d := runDir{root: filepath.Join(s.cfg.RunDirRoot, s.cfg.RunnerID, runID)}
	_ = os.RemoveAll(d.root)
	for _, dir := range []string{d.work(), d.logs(), d.tmp(), d.home()} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return d, fmt.Errorf("run dir of run %s: %w", runID, err)
		}
	}
	return d, nil
}

// childEnv is the child's whole environment. It is built, never inherited,
// so no credential of runnerd reaches a workflow. home and tmp are the run
// dir's, or a spare child's own directory until its run's are given in the
// request.
func (s *Supervisor) childEnv(home, tmp string) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	env := []string{
		"PATH=" + s.sandbox.FilterPath(path),
		"HOME=" + home,
		"TMPDIR=" + tmp,
		"LANG=C.UTF-8",
	}
	env = append(env, contain.Limits{NoFile: s.cfg.NoFileLimit, FileSize: s.cfg.FileSizeMax, CPUTime: s.cfg.CPUTimeMax}.Env()...)
	return append(env, s.sandbox.Env()...)
}

// childCmd is the runexec command: its own process group (every kill is a
// group kill), killed if runnerd dies, stdin from /dev/null, in the
// namespaces of the sandbox.
func (s *Supervisor) childCmd(dir, home, tmp string) *exec.Cmd {
	cmd := exec.Command(s.cfg.RunexecPath)
	cmd.Env = s.childEnv(home, tmp)
	cmd.Dir = dir
	cmd.SysProcAttr = s.sandbox.Attr()
	return cmd
}

// startChild gives the attempt its runexec: a spare one started ahead when
// there is one, else one started now, inside a cgroup where one can be made.
// The cgroup may be nil.
func (s *Supervisor) startChild(a *attempt) (*child.Process, *contain.Cgroup, error) {
	if sp := s.spares.take(); sp != nil {
		sp.setLog(a.log.With().Str("source", "runexec").Logger())
		a.sockDir = sp.dir
		a.tookSpare = true
		a.log.Debug().Int("pid", sp.proc.Pid()).Msg("runexec taken from the spares")
		return sp.proc, sp.cg, nil
	}
	cg, err := contain.NewCgroup(filepath.Join(s.cgroupParentName(), fmt.Sprintf("%s-%d", a.runID, a.attemptNo)), s.cfg.MemoryLimit, s.cfg.PidsLimit)
	if err != nil {
		a.log.Debug().Err(err).Msg("no cgroup: containment by process group and rlimits only")
		cg = nil
	}
	// A Unix socket path is limited to 108 bytes, which a run dir can exceed:
	// the socket gets a short directory of its own.
	sockDir, err := s.newSocketDir()
	if err != nil {
		cg.Discard()
		return nil, nil, fmt.Errorf("socket dir: %w", err)
	}
	a.sockDir = sockDir
	cmd := s.childCmd(a.dir.work(), a.dir.home(), a.dir.tmp())
	proc, err := s.launch(cmd, sockDir, cg, newHCLogger(a.log.With().Str("source", "runexec").Logger()), a.log)
	if err != nil {
		cg.Discard()
		return nil, nil, err
	}
	return proc, cg, nil
}

// launch starts runexec and connects to it. Moving a process into a cgroup
// waits for an RCU grace period (milliseconds on cgroup v1 (docs/benchmarks.md, "Figures behind the code")):
// it runs while go-plugin does its handshake. The child does not fork before Execute is
// called, so its steps are all born inside the cgroup.
func (s *Supervisor) launch(cmd *exec.Cmd, sockDir string, cg *contain.Cgroup, pluginLog hclog.Logger, log zerolog.Logger) (*child.Process, error) {
	var joined chan error
	var joining sync.WaitGroup // awaited also when the start fails: the caller discards cg
	started := func(int) {}
	if cg != nil {
		joined = make(chan error, 1)
		started = func(pid int) { joining.Go(func() { joined <- cg.Add(pid) }) }
	}
	proc, err := child.Start(child.Config{
		Cmd:       cmd,
		SocketDir: sockDir,
		AutoMTLS:  s.cfg.AutoMTLS,
		Logger:    pluginLog,
		Started:   started,
	})
	if err != nil {
		joining.Wait()
		return nil, err
	}
	children.add(proc.Pid())
	if joined != nil {
		if err := <-joined; err != nil {
			log.Warn().Err(err).Msg("cgroup: child left outside")
		}
	}
	return proc, nil
}

// newSocketDir makes a short directory for one child's go-plugin socket (a
// Unix socket path is limited to 108 bytes) under this runner's socket root,
// which prepareHost empties at start: a crash leaves nothing behind for long.
func (s *Supervisor) newSocketDir() (string, error) {
	return os.MkdirTemp(s.sockRoot, "")
}

// socketRoot is $TMPDIR/rds-<8 hex digits of the runner id>: short whatever
// the id's length, and owned by this runner id (locked by claimRunnerID).
func socketRoot(runnerID string) string {
	sum := sha256.Sum256([]byte(runnerID))
	return filepath.Join(os.TempDir(), "rds-"+hex.EncodeToString(sum[:4]))
}

func (s *Supervisor) cgroupParentName() string { return "runnerd-" + s.cfg.RunnerID }

// children are the runexec processes this process started and waits for
// itself; the orphan reaper leaves them alone.
var children = &pidSet{m: map[int]bool{}}

type pidSet struct {
	mu sync.Mutex
	m  map[int]bool
}

func (p *pidSet) add(pid int)    { p.mu.Lock(); p.m[pid] = true; p.mu.Unlock() }
func (p *pidSet) remove(pid int) { p.mu.Lock(); delete(p.m, pid); p.mu.Unlock() }
func (p *pidSet) list() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]int, 0, len(p.m))
	for pid := range p.m {
		out = append(out, pid)
	}
	return out
}

func (p *pidSet) has(pid int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[pid]
}

// reapOrphans makes orphaned descendants (a step that escaped a dead child)
// reparent to runnerd instead of init, and reaps them as they exit, until
// the returned stop is called.
func (s *Supervisor) reapOrphans() (stop func()) {
	stop, err := contain.ReapOrphans(children.has)
	if err != nil {
		s.log.Warn().Err(err).Msg("cannot become child subreaper")
	}
	return stop
}
