package child

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"google.golang.org/grpc/health/grpc_health_v1"
)

// Config says how to start one runexec child.
type Config struct {
	// Cmd is the child's command, fully built by the caller: path, args, the
	// environment (go-plugin's variables are appended), working directory and
	// SysProcAttr. It must put the child in its own process group
	// (Setpgid), since every kill here is a group kill.
	Cmd *exec.Cmd
	// SocketDir is where go-plugin puts the child's Unix socket. A socket path
	// is limited to 108 bytes, so it is a short directory the caller owns and
	// removes, not the run dir.
	SocketDir string
	// AutoMTLS turns on go-plugin's mutual TLS: a certificate pair made per
	// child, tens of milliseconds a start (docs/benchmarks.md, "Figures behind the code").
	AutoMTLS     bool
	Logger       hclog.Logger
	StartTimeout time.Duration
	// Started, if set, is called with the child's pid as soon as the process
	// exists, before the go-plugin handshake: work on the process (moving it
	// into a cgroup) can overlap the handshake.
	Started func(pid int)
}

// Process is one running runexec. Its Executor speaks gRPC to the child; the
// rest is the process: its exit status, health and a kill that never blocks
// on a stopped or wedged child.
type Process struct {
	Executor
	client *plugin.Client
	proc   *childProcess
	health grpc_health_v1.HealthClient
}

// Start starts the child and connects to it.
func Start(cfg Config) (*Process, error) {
	if cfg.Cmd == nil || cfg.Cmd.SysProcAttr == nil || !cfg.Cmd.SysProcAttr.Setpgid {
		return nil, errors.New("start runexec: the command must run in its own process group (SysProcAttr.Setpgid)")
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	proc := &childProcess{cmd: cfg.Cmd, exited: make(chan struct{}), started: cfg.Started}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		Plugins:          plugin.PluginSet{pluginName: &executorPlugin{}},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         cfg.AutoMTLS,
		SkipHostEnv:      true,
		Logger:           cfg.Logger,
		StartTimeout:     cfg.StartTimeout,
		UnixSocketConfig: &plugin.UnixSocketConfig{TempDir: cfg.SocketDir},
		RunnerFunc: func(_ hclog.Logger, spec *exec.Cmd, _ string) (runner.Runner, error) {
			return proc.prepare(spec.Env)
		},
	})
	c := &Process{client: client, proc: proc}
	rpc, err := client.Client()
	if err != nil {
		c.Kill()
		return nil, fmt.Errorf("start runexec: %w", err)
	}
	raw, err := rpc.Dispense(pluginName)
	if err != nil {
		c.Kill()
		return nil, fmt.Errorf("dispense runexec executor: %w", err)
	}
	gc := raw.(*grpcClient)
	c.Executor = gc
	c.health = grpc_health_v1.NewHealthClient(gc.conn)
	return c, nil
}

// Pid is the child's process id, which is also its process group id.
func (c *Process) Pid() int { return c.proc.pid }

// Exited is closed once the child process has exited and been reaped.
func (c *Process) Exited() <-chan struct{} { return c.proc.exited }

// ProcessState is the child's exit status; nil until Exited is closed.
func (c *Process) ProcessState() *os.ProcessState {
	select {
	case <-c.proc.exited:
		return c.proc.cmd.ProcessState
	default:
		return nil
	}
}

// Ping checks the child answers within ctx's deadline; go-plugin's own Ping
// has none, and a stopped child would hang it.
func (c *Process) Ping(ctx context.Context) error {
	resp, err := c.health.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: plugin.GRPCServiceName})
	if err != nil {
		return fmt.Errorf("ping runexec pid %d: %w", c.proc.pid, err)
	}
	if resp.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
		return fmt.Errorf("ping runexec pid %d: status %s", c.proc.pid, resp.GetStatus())
	}
	return nil
}

// Kill SIGKILLs the child's whole process group first, so a stopped or wedged
// child cannot make go-plugin's Kill block, then lets go-plugin clean up.
func (c *Process) Kill() {
	c.proc.killGroup()
	c.client.Kill()
	<-c.proc.exitedOrNeverStarted()
}

// Close ends a child whose event stream has ended. The run's outcome is
// already known from the stream and the child holds nothing to flush (step
// logs are written straight to files), so it is killed rather than asked to
// exit: go-plugin's graceful path costs a round trip and a wait on every run.
func (c *Process) Close() { c.Kill() }

// childProcess is our go-plugin runner: it keeps the *exec.Cmd so that the
// exit status and the process group stay ours to read and to kill.
type childProcess struct {
	cmd            *exec.Cmd
	stdout, stderr io.ReadCloser
	pid            int
	running        bool
	started        func(pid int) // Config.Started
	exited         chan struct{}
	waitOnce       sync.Once
	waitErr        error
}

func (p *childProcess) prepare(pluginEnv []string) (runner.Runner, error) {
	p.cmd.Env = append(p.cmd.Env, pluginEnv...)
	var err error
	if p.stdout, err = p.cmd.StdoutPipe(); err != nil {
		return nil, err
	}
	if p.stderr, err = p.cmd.StderrPipe(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *childProcess) Start(context.Context) error {
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("exec %s: %w", p.cmd.Path, err)
	}
	p.pid = p.cmd.Process.Pid
	p.running = true
	if p.started != nil {
		p.started(p.pid)
	}
	return nil
}

func (p *childProcess) Wait(context.Context) error {
	p.waitOnce.Do(func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	})
	<-p.exited
	return p.waitErr
}

func (p *childProcess) Kill(context.Context) error {
	p.killGroup()
	return nil
}

func (p *childProcess) killGroup() {
	if p.pid > 0 {
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	}
}

// exitedOrNeverStarted lets Kill return for a child that never started.
func (p *childProcess) exitedOrNeverStarted() <-chan struct{} {
	if !p.running {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return p.exited
}

func (p *childProcess) Stdout() io.ReadCloser                            { return p.stdout }
func (p *childProcess) Stderr() io.ReadCloser                            { return p.stderr }
func (p *childProcess) Name() string                                     { return p.cmd.Path }
func (p *childProcess) ID() string                                       { return strconv.Itoa(p.pid) }
func (p *childProcess) Diagnose(context.Context) string                  { return "" }
func (p *childProcess) PluginToHost(n, a string) (string, string, error) { return n, a, nil }
func (p *childProcess) HostToPlugin(n, a string) (string, string, error) { return n, a, nil }
