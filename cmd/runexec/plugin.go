package main

import (
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/runnerd/runnerd/child"
	"github.com/runnerd/runnerd/contain"
)

// servePlugin is runexec started by runnerd: it applies the limits runnerd
// asked for, then serves the Executor over go-plugin gRPC until runnerd
// closes the connection.
func servePlugin() int {
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       "runexec",
		Output:     os.Stderr,
		JSONFormat: true,
		Level:      hclog.Info,
	})
	limits, err := contain.LimitsFromEnv(os.Getenv)
	if err == nil {
		err = limits.Apply()
	}
	if err != nil {
		logger.Warn("rlimits not all applied", "error", err)
	}
	sb, err := contain.FromEnv(os.Getenv)
	if err == nil {
		err = sb.Enter()
	}
	if err != nil {
		logger.Error("sandbox not set up", "error", err)
		return 1
	}
	if sb.PIDNS {
		// As the init of the run's PID namespace, runexec gets from its
		// steps only the signals it handles: these are handled by being
		// dropped. Not ignored: an ignored signal stays ignored in every
		// step runexec starts (a `yes | head` step would print "Broken
		// pipe", a step's SIGTERM to its own children would do nothing),
		// while a handled one is back to its default in the step.
		// The dropping goroutine lives as long as the process, which gets
		// such signals until it exits: nothing stops or awaits it.
		dropped := make(chan os.Signal, 8)
		signal.Notify(dropped, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGPIPE)
		go func() {
			for range dropped {
			}
		}()
	}
	// The spare threads are made while go-plugin does its handshake; a run
	// waits for them before its steps start.
	ready := make(chan struct{})
	go func() { reserveThreads(reservedThreads); close(ready) }()
	child.Serve(&local{Env: stepEnv(os.Environ()), Ready: ready, Prepare: sandboxRun(sb)}, logger)
	return 0
}

// stepEnv is the steps' base environment: the child's own, which runnerd
// built, without go-plugin's and runnerd's internal variables.
func stepEnv(environ []string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "PLUGIN_") || contain.IsLimitVar(name) || contain.IsSandboxVar(name) ||
			name == child.Handshake.MagicCookieKey {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// sandboxRun confines runexec and the steps it will start to the run of
// req, once, before its first step: a runexec serves one run.
func sandboxRun(sb *contain.Sandbox) func(req *child.Request) (func(*exec.Cmd) error, error) {
	return func(req *child.Request) (func(*exec.Cmd) error, error) {
		network := sb.Network
		if req.Workflow != nil && req.Workflow.Network != "" {
			network = contain.Network(req.Workflow.Network)
		}
		getenv := func(name string) string {
			if v, ok := req.Env[name]; ok {
				return v
			}
			return os.Getenv(name)
		}
		return sb.Restrict(contain.RunPaths{Workdir: req.Workdir, LogDir: req.LogDir, Home: getenv("HOME"), Tmp: getenv("TMPDIR")}, network)
	}
}
