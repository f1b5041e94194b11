package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/supervisor"
)

// serveConfig is everything `runnerd serve` reads from flags and variables.
type serveConfig struct {
	client    clientConfig
	sup       supervisor.Config
	queue     queue.Config
	logFormat string
	logLevel  string
}

// register adds the supervisor's flags; the connection flags are added by
// serve only (dev derives them from its embedded servers).
func (c *serveConfig) register(f *flags) {
	c.sup = supervisor.DefaultConfig()
	c.queue = queue.DefaultConfig()
	s, q := &c.sup, &c.queue
	f.String(&s.RunnerID, "runner-id", s.RunnerID, "this runner's id in leases, runs and run dirs")
	f.Int(&s.Concurrency, "concurrency", s.Concurrency, "runs executed at once by this process")
	f.String(&s.RunDirRoot, "run-dir", s.RunDirRoot, "root of the run dirs")
	f.String(&s.RunexecPath, "runexec", defaultRunexec(), "path of the runexec binary")
	f.Duration(&q.LeaseTTL, "lease-ttl", q.LeaseTTL, "run lease TTL; heartbeats every TTL/3")
	f.Int(&q.MaxDeliver, "max-deliver", q.MaxDeliver, "deliveries of a run message before it fails with max_attempts_exceeded")
	f.Duration(&q.AckWait, "ack-wait", q.AckWait, "JetStream AckWait, kept alive while a run executes")
	f.Duration(&s.ShutdownGrace, "grace", s.ShutdownGrace, "on SIGTERM, how long runs get to save and stop (keep below terminationGracePeriodSeconds)")
	f.Duration(&s.KillGrace, "kill-grace", s.KillGrace, "a step's SIGTERM → SIGKILL grace")
	f.Duration(&s.PingInterval, "ping-interval", s.PingInterval, "child health check interval")
	f.Duration(&s.PingTimeout, "ping-timeout", s.PingTimeout, "a child that does not answer a health check in this time is killed")
	f.Bytes(&s.MemoryLimit, "memory-limit", s.MemoryLimit, "memory of one run's child and steps (cgroup, where writable; 0: none)")
	f.Int(&s.PidsLimit, "pids-limit", s.PidsLimit, "processes of one run (cgroup, where writable; 0: none)")
	f.Bytes(&s.LogLimit, "log-limit", 64<<20, "bytes of log kept per step")
	f.Bool(&s.AutoMTLS, "auto-mtls", s.AutoMTLS, "mutual TLS between runnerd and runexec (costs ~14 ms per run)")
	f.String(&c.logFormat, "log-format", "json", "log format: json or console")
	f.String(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
}

// defaultRunexec is the runexec next to this binary.
func defaultRunexec() string {
	exe, err := os.Executable()
	if err != nil {
		return "runexec"
	}
	return filepath.Join(filepath.Dir(exe), "runexec")
}

func (c *serveConfig) logger(w io.Writer) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(c.logLevel)
	if err != nil || c.logLevel == "" {
		return zerolog.Nop(), fmt.Errorf("--log-level %q: want debug, info, warn or error", c.logLevel)
	}
	switch c.logFormat {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	default:
		return zerolog.Nop(), fmt.Errorf("--log-format %q: want json or console", c.logFormat)
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
}

func runServe(ctx context.Context, env *cmdEnv, args []string) int {
	var cfg serveConfig
	f := newFlags("serve", "usage: runnerd serve [flags]\n\nConsumes run requests from NATS JetStream and executes each run in an isolated runexec child.", env.stderr)
	cfg.client.register(f)
	cfg.register(f)
	if code, ok := parseOrExit(f, args, env.stderr); !ok {
		return code
	}
	return serve(ctx, env, cfg)
}

// serve runs the supervisor until the first signal, then drains it; a
// second signal skips the rest of the grace.
func serve(ctx context.Context, env *cmdEnv, cfg serveConfig) int {
	log, err := cfg.logger(env.stderr)
	if err != nil {
		fmt.Fprintf(env.stderr, "serve: %v\n", err)
		return exitUsage
	}
	cfg.sup.Logger = log
	if err := cfg.queue.Validate(); err != nil {
		fmt.Fprintf(env.stderr, "serve: %v\n", err)
		return exitUsage
	}
	c, err := connect(ctx, cfg.client, cfg.queue, "runnerd "+cfg.sup.RunnerID)
	if err != nil {
		log.Error().Err(err).Msg("start")
		return exitFailed
	}
	defer c.Close()
	sup, err := supervisor.New(cfg.sup, c.q, c.st, c.blobs)
	if err != nil {
		fmt.Fprintf(env.stderr, "serve: %v\n", err)
		return exitUsage
	}
	go func() {
		<-env.signals
		log.Warn().Msg("second signal: skipping the shutdown grace")
		sup.StopNow()
	}()
	if err := sup.Run(ctx); err != nil {
		log.Error().Err(err).Msg("serve")
		return exitFailed
	}
	return exitOK
}
