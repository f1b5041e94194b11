package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/contain"
	"github.com/runnerd/runnerd/executor"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/workflow"
)

// envLocalRun tells runexec it is the sandboxed child of `runexec run`: it
// reads the run (localRun, JSON) on stdin and writes its events, one JSON
// line each, on stdout.
const envLocalRun = "RUNEXEC_LOCAL_RUN"

// localRun is what `runexec run` hands its sandboxed child.
type localRun struct {
	RunID    string                       `json:"run_id"`
	Workflow *workflow.Workflow           `json:"workflow"`
	Vars     map[string]string            `json:"vars"`
	Workdir  string                       `json:"workdir"`
	LogDir   string                       `json:"logdir"`
	Home     string                       `json:"home"`
	Tmp      string                       `json:"tmp"`
	State    runnerd.StepStates           `json:"state"`
	Answers  map[string]map[string]string `json:"answers"`
	Env      []string                     `json:"env"`
	Secrets  map[string]string            `json:"secrets,omitempty"` // on stdin only, never in the environment
}

// localLimits are the rlimits of a local run: runnerd serve's defaults.
var localLimits = contain.Limits{NoFile: 4096, FileSize: 10 << 30}

// sandboxFor finds the sandbox a local run gets, as runnerd serve does at
// start; nil when it is off.
func sandboxFor(ra *runArgs, stderr io.Writer) (*contain.Sandbox, error) {
	opts := contain.Options{Mode: contain.Mode(ra.sandbox), RO: ra.sandboxRO, RW: ra.sandboxRW, Network: contain.Network(ra.network)}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Mode == contain.ModeOff {
		return nil, nil
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("sandbox: find runexec: %w", err)
	}
	sb, err := contain.Probe(self, opts)
	if err != nil {
		return nil, err
	}
	var off []string
	for _, l := range sb.Layers() {
		if !l.On && l.Name != contain.LayerUserNS {
			off = append(off, l.Name+" ("+l.Detail+")")
		}
	}
	if len(off) > 0 {
		fmt.Fprintf(stderr, "runexec: sandbox without %s\n", strings.Join(off, "; "))
	}
	if !sb.On() {
		return nil, nil
	}
	return sb, nil
}

// runSandboxed runs the workflow in a runexec child started in the sandbox
// (the init of its PID namespace, under Landlock), the way runnerd runs one:
// this process keeps the state file and prints; the child only executes.
func runSandboxed(ctx context.Context, sb *contain.Sandbox, opts executor.Options, home, tmp string) (executor.Result, error) {
	self, err := os.Executable()
	if err != nil {
		return executor.Result{}, err
	}
	// Landlock rules are made on existing directories.
	if err := os.MkdirAll(opts.LogDir, 0o755); err != nil {
		return executor.Result{}, fmt.Errorf("%w: %w", executor.ErrNoLogDir, err)
	}
	in, err := json.Marshal(localRun{RunID: opts.RunID, Workflow: opts.Workflow, Vars: opts.Vars, Workdir: opts.Workdir,
		LogDir: opts.LogDir, Home: home, Tmp: tmp, State: opts.State, Answers: opts.Answers, Env: opts.Env, Secrets: opts.Secrets})
	if err != nil {
		return executor.Result{}, err
	}
	cmd := exec.Command(self)
	cmd.Env = append([]string{envLocalRun + "=1", "PATH=" + os.Getenv("PATH")}, sb.Env()...)
	cmd.Env = append(cmd.Env, localLimits.Env()...)
	cmd.Dir = opts.Workdir
	cmd.SysProcAttr = sb.Attr()
	cmd.Stdin = strings.NewReader(string(in))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return executor.Result{}, err
	}
	if err := cmd.Start(); err != nil {
		return executor.Result{}, fmt.Errorf("start the sandboxed runexec: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = cmd.Process.Signal(syscall.SIGTERM) })
	defer stop()

	states := opts.State.Clone()
	if states == nil {
		states = runnerd.StepStates{}
	}
	var fin *runnerd.Event
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var e runnerd.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			continue
		}
		states.Apply(e)
		opts.Sink(e)
		switch e.Type {
		case runnerd.EventStepFinished:
			// As the executor records them (and runnerd does).
			if ans := opts.Answers[e.Step]; ans != nil && e.Status == string(runnerd.StepSucceeded) {
				states[e.Step].Answers = ans
			}
			if opts.Checkpoint != nil {
				opts.Checkpoint(states.Clone())
			}
		case runnerd.EventRunFinished:
			ev := e
			fin = &ev
		}
	}
	waitErr := cmd.Wait()
	if fin == nil {
		if waitErr == nil {
			waitErr = errors.New("no final event")
		}
		return executor.Result{}, fmt.Errorf("the sandboxed runexec ended without finishing the run: %w", waitErr)
	}
	if opts.Checkpoint != nil {
		opts.Checkpoint(states.Clone())
	}
	return executor.Result{Status: runnerd.Status(fin.Status), Reason: runnerd.Reason(fin.Reason), Steps: states, Message: fin.Message}, nil
}

// serveLocalRun is the sandboxed child of `runexec run`.
func serveLocalRun() int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "runexec (sandboxed): %v\n", err)
		return cli.ExitUsage
	}
	sb, err := contain.FromEnv(os.Getenv)
	if err == nil {
		err = sb.Enter()
	}
	if err != nil {
		return fail(err)
	}
	limits, err := contain.LimitsFromEnv(os.Getenv)
	if err == nil {
		err = limits.Apply()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "runexec: warning: %v\n", err)
	}
	var lr localRun
	if err := json.NewDecoder(os.Stdin).Decode(&lr); err != nil {
		return fail(fmt.Errorf("read the run: %w", err))
	}
	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stopSignals()
	network := sb.Network
	if lr.Workflow != nil && lr.Workflow.Network != "" {
		network = contain.Network(lr.Workflow.Network)
	}
	start, err := sb.Restrict(contain.RunPaths{Workdir: lr.Workdir, LogDir: lr.LogDir, Home: lr.Home, Tmp: lr.Tmp}, network)
	if err != nil {
		return fail(err)
	}
	reserveThreads(reservedThreads)
	enc := json.NewEncoder(os.Stdout)
	_, err = executor.Run(ctx, executor.Options{
		RunID: lr.RunID, Workflow: lr.Workflow, Vars: lr.Vars, Workdir: lr.Workdir, LogDir: lr.LogDir,
		State: lr.State, Answers: lr.Answers, Env: lr.Env, Secrets: lr.Secrets,
		Sink:         func(e runnerd.Event) { _ = enc.Encode(e) },
		StartProcess: start,
	})
	if err != nil {
		return fail(err)
	}
	return cli.ExitOK
}

// sandboxDirs are a local run's HOME and TMPDIR in the sandbox, next to its
// workdir as the logs are, since the user's own are not writable there.
func sandboxDirs(workdir string) (home, tmp string, err error) {
	base := filepath.Clean(workdir)
	home, tmp = base+".home", base+".tmp"
	for _, d := range []string{home, tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", "", err
		}
	}
	return home, tmp, nil
}

// withHomeTmp is env with HOME and TMPDIR replaced.
func withHomeTmp(env []string, home, tmp string) []string {
	out := make([]string, 0, len(env)+2)
	for _, kv := range env {
		if !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "TMPDIR=") {
			out = append(out, kv)
		}
	}
	return append(out, "HOME="+home, "TMPDIR="+tmp)
}
