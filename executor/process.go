package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/contain"
)

// drainWait bounds how long output pipes are read after a step's process
// group is gone. Only a process that escaped the group (setsid) can still
// hold them open, and it must not hold the step forever.
const drainWait = 2 * time.Second

type attemptResult struct {
	exitCode   int
	signal     string
	reason     runnerd.StepReason
	msg        string
	outputFile string
}

// attempt runs the step's command once, in its own process group, and makes
// sure nothing of that group is left when it returns.
func (j *stepJob) attempt(ctx context.Context, n int, c command, lg *stepLog) attemptResult {
	res := attemptResult{outputFile: outputPath(j.opts.LogDir, j.step.ID, n)}
	startErr := func(err error) attemptResult {
		res.exitCode, res.reason, res.msg = -1, runnerd.StepReasonStartError, err.Error()
		lg.marker(fmt.Sprintf("[runexec: attempt %d could not start: %v]", n, err))
		return res
	}
	if t := j.step.Timeout.D(); t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, t, errStepTimeout)
		defer cancel()
	}
	lg.beginAttempt(n)
	// A fresh, empty file per attempt: outputs of a failed attempt never
	// leak into the next one.
	if err := os.WriteFile(res.outputFile, nil, 0o644); err != nil {
		return startErr(fmt.Errorf("create output file: %w", err))
	}
	env := j.env(c, n, res.outputFile)
	path, err := lookPath(c.argv[0], j.opts.Workdir, env)
	if err != nil {
		return startErr(err)
	}
	p, err := startProcess(j.reaper, j.opts.StartProcess, j.step.ID, path, c.argv, env, j.opts.Workdir)
	if err != nil {
		return startErr(err)
	}
	pumps := lg.pump(p.stdout, p.stderr)

	state, reason, msg := p.wait(ctx, j.opts.KillGrace)
	// Nothing of the step survives it, even after a clean exit: background
	// children (`sleep 1000 &`) die with their group, and orphans that left
	// it are reaped by the subreaper sweep.
	killGroup(p.pid, syscall.SIGKILL)
	j.reaper.Exited(j.step.ID, p.pid)
	j.reaper.Sweep()
	p.drain(pumps)
	lg.endAttempt()

	res.exitCode = state.ExitCode()
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		res.signal = unix.SignalName(ws.Signal())
	}
	switch {
	case reason != "":
		res.reason, res.msg = reason, msg
		if errors.Is(context.Cause(ctx), errStepTimeout) {
			res.msg = fmt.Sprintf("step timeout %s exceeded", j.step.Timeout)
		}
	case res.signal != "":
		res.reason, res.msg = runnerd.StepReasonSignal, "killed by "+res.signal
	case res.exitCode != 0:
		res.reason, res.msg = runnerd.StepReasonExitCode, fmt.Sprintf("exit code %d", res.exitCode)
	default:
		res.reason = runnerd.StepReasonCompleted
	}
	return res
}

// process is one started step process and the read ends of its pipes.
type process struct {
	cmd            *exec.Cmd
	pid            int
	stdout, stderr *os.File
	exited         chan error
}

// startProcess starts argv in its own process group with /dev/null as stdin
// and fresh pipes for stdout and stderr, never the executor's own fds: a
// grandchild holding our stdout would otherwise block whoever reads it.
func startProcess(rp *contain.Reaper, start func(*exec.Cmd) error, step, path string, argv, env []string, dir string) (*process, error) {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	cmd := &exec.Cmd{
		Path:   path,
		Args:   argv,
		Env:    env,
		Dir:    dir,
		Stdin:  devnull,
		Stdout: outW,
		Stderr: errW,
		// Its own group; if the executor dies, the main process dies with it.
		SysProcAttr: contain.ProcessAttr(),
	}
	err = rp.Start(step, cmd, start)
	// The child has its copies; ours must go or the readers never see EOF.
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, err
	}
	p := &process{cmd: cmd, pid: cmd.Process.Pid, stdout: outR, stderr: errR, exited: make(chan error, 1)}
	go func() { p.exited <- cmd.Wait() }()
	return p, nil
}

// wait waits for the main process to exit. When ctx ends first, the group
// gets SIGTERM, then SIGKILL after grace; reason and msg then say why.
func (p *process) wait(ctx context.Context, grace time.Duration) (*os.ProcessState, runnerd.StepReason, string) {
	select {
	case <-p.exited:
		return p.cmd.ProcessState, "", ""
	case <-ctx.Done():
	}
	reason, msg := stopReason(ctx)
	killGroup(p.pid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
		killGroup(p.pid, syscall.SIGKILL)
		<-p.exited
	}
	return p.cmd.ProcessState, reason, msg
}

// drain waits for the output readers to reach EOF, for at most drainWait,
// then closes the read ends so they stop.
func (p *process) drain(pumps <-chan struct{}) {
	t := time.NewTimer(drainWait)
	defer t.Stop()
	select {
	case <-pumps:
	case <-t.C:
		p.stdout.Close()
		p.stderr.Close()
		<-pumps
	}
	p.stdout.Close()
	p.stderr.Close()
}

func killGroup(pid int, sig syscall.Signal) { contain.KillGroup(pid, sig) }

// lookPath finds argv[0] the way the step's own environment would: a name
// with a slash is relative to the workdir, a bare name is searched in the
// step's PATH (which may differ from the executor's).
func lookPath(name, workdir string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		if !filepath.IsAbs(name) {
			name = filepath.Join(workdir, name)
		}
		return name, checkExecutable(name)
	}
	pathVar := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathVar = v
		}
	}
	if pathVar == "" {
		pathVar = "/usr/local/bin:/usr/bin:/bin"
	}
	for _, dir := range filepath.SplitList(pathVar) {
		if dir == "" {
			dir = "."
		}
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(workdir, dir)
		}
		cand := filepath.Join(dir, name)
		if checkExecutable(cand) == nil {
			return cand, nil
		}
	}
	return "", fmt.Errorf("%s: executable not found in PATH", name)
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s: %w", path, errors.New("not an executable file"))
	}
	return nil
}
