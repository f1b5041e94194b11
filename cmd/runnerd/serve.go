package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/runnerd/runnerd/contain"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/retention"
	"github.com/runnerd/runnerd/supervisor"
)

// serveConfig is everything `runnerd serve` reads from flags and variables.
type serveConfig struct {
	client    clientConfig
	sup       supervisor.Config
	queue     queue.Config
	logFormat string
	logLevel  string

	// Sandbox and limits, copied into sup by finish.
	sandboxMode   string
	stepNetwork   string
	fileSizeLimit int64
	cpuTimeLimit  time.Duration
	openFiles     int

	tenantConcurrency *tenantConcurrency // N, tenant=N, @file; the default goes straight into sup
	tenantLimits      []string           // --tenant-limit tenant=N (an alias), merged into sup by validate
	tenantLimitsFile  string             // --tenant-limits-file (an alias)
	retention         time.Duration      // finished runs older than this are removed; 0: kept

	ui              uiConfig      // the web UI and /api/v1/
	metricsAddr     string        // /metrics, /healthz, /readyz; "" serves none
	stallTimeout    time.Duration // a loop silent this long makes /healthz fail
	natsDownTimeout time.Duration // NATS disconnected this long makes /healthz fail
}

// register adds the supervisor's flags; the connection flags are added by
// serve only (dev derives them from its embedded servers).
func (c *serveConfig) register(f cli.Flags) {
	c.sup = supervisor.DefaultConfig()
	c.queue = queue.DefaultConfig()
	s, q := &c.sup, &c.queue
	f.String(&s.RunnerID, "runner-id", s.RunnerID, "this runner's id in leases, runs and run dirs")
	f.Int(&s.Concurrency, "concurrency", s.Concurrency, "runs executed at once by this process")
	f.String(&s.RunDirRoot, "run-dir", s.RunDirRoot, "root of the run dirs")
	f.String(&s.RunexecPath, "runexec", defaultRunexec(), "path of the runexec binary")
	f.String(&s.SecretsDir, "secrets-dir", "", "tenants' secrets as <dir>/<tenant>/<NAME> (a mounted Kubernetes Secret per tenant); RUNNERD_SECRET_<NAME> also works for one tenant")
	f.Duration(&q.LeaseTTL, "lease-ttl", q.LeaseTTL, "run lease TTL; heartbeats every TTL/3")
	f.Int(&s.MaxAttempts, "max-attempts", s.MaxAttempts, "attempts of a run whose child crashed, was OOM-killed or stopped answering before it fails with max_attempts_exceeded (waiting on a server or a lease never counts)")
	f.Int(&q.MaxDeliver, "max-deliver", q.MaxDeliver, "far backstop: deliveries of a run message before it fails with max_attempts_exceeded, waits included (-1: no limit)")
	f.Int(&q.Replicas, "replicas", q.Replicas, "replicas of the stream, the consumer and the lease bucket (3 on a production NATS cluster)")
	f.Duration(&q.AckWait, "ack-wait", q.AckWait, "JetStream AckWait, kept alive while a run executes")
	f.Duration(&s.ShutdownGrace, "grace", s.ShutdownGrace, "on SIGTERM, how long runs get to save and stop (keep below terminationGracePeriodSeconds)")
	f.Duration(&s.KillGrace, "kill-grace", s.KillGrace, "a step's SIGTERM → SIGKILL grace")
	f.Duration(&s.PingInterval, "ping-interval", s.PingInterval, "child health check interval")
	f.Duration(&s.PingTimeout, "ping-timeout", s.PingTimeout, "a child that does not answer a health check in this time is killed")
	f.Bytes(&s.MemoryLimit, "memory-limit", s.MemoryLimit, "memory of one run's child and steps (cgroup, where writable; 0: none)")
	f.Int(&s.PidsLimit, "pids-limit", s.PidsLimit, "processes of one run (cgroup, where writable; 0: none)")
	f.Bytes(&s.LogLimit, "log-limit", 64<<20, "bytes of log kept per step")
	f.Bool(&s.AutoMTLS, "auto-mtls", s.AutoMTLS, "mutual TLS between runnerd and runexec (adds a certificate exchange to every run's start)")
	f.String(&c.sandboxMode, "sandbox", string(contain.ModeAuto), "per-run sandbox: auto (every layer this machine allows, missing ones logged), required (refuse to start without all of them), off (debugging)")
	f.Paths(&s.Sandbox.RO, "sandbox-ro", "a path steps may read and execute, beside the system paths (repeatable; the variable is colon-separated)")
	f.Paths(&s.Sandbox.RW, "sandbox-rw", "a path steps may read and write, beside their run dir (repeatable; the variable is colon-separated)")
	f.String(&c.stepNetwork, "step-network", string(contain.NetworkHost), "the steps' network when a workflow sets no `network:`: host or none (no host port, loopback included)")
	f.Bytes(&c.fileSizeLimit, "file-size-limit", supervisor.DefaultFileSizeMax, "largest file a step may write (RLIMIT_FSIZE; 0: unlimited)")
	f.Duration(&c.cpuTimeLimit, "cpu-time-limit", 0, "CPU time of each process of a run, whole seconds (RLIMIT_CPU; 0: unlimited)")
	f.Int(&c.openFiles, "open-files-limit", int(s.NoFileLimit), "open files of each process of a run (RLIMIT_NOFILE)")
	f.Int(&s.Prestart, "prestart", s.Prestart, "runexec children kept started ahead of runs, each still used for one run (takes the child's start off every run's path; 0: none)")
	c.tenantConcurrency = newTenantConcurrency(&s.TenantConcurrency)
	f.Var(c.tenantConcurrency, "tenant-concurrency", "", "runs of one tenant running at once across the fleet: N for every tenant (0: no limit), tenant=N for one tenant, @FILE (or a path with a /) for a file of tenant=N lines; repeatable, the variable comma-separated, a later value wins; give every runner the same values")
	f.List(&c.tenantLimits, "tenant-limit", "a tenant's own limit, tenant=N (repeatable; the same as --tenant-concurrency tenant=N)")
	f.String(&c.tenantLimitsFile, "tenant-limits-file", "", "file of tenant=N lines (# comments; the same as --tenant-concurrency @FILE)")
	f.Duration(&c.retention, "retention", 0, "remove finished runs (documents, events, S3 objects) this long after they finished; paused and queued runs are kept (0: keep everything)")
	f.String(&c.logFormat, "log-format", "json", "log format: json or console")
	f.String(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.String(&c.metricsAddr, "metrics-addr", ":9090", "address of /metrics, /healthz and /readyz (empty: none)")
	f.Duration(&c.stallTimeout, "stall-timeout", supervisor.DefaultStallTimeout, "/healthz fails when the consumer loop or a lease heartbeat loop makes no progress for this long")
	f.Duration(&c.natsDownTimeout, "nats-down-timeout", supervisor.DefaultNATSDownTimeout, "/healthz fails when NATS stays disconnected for this long")
}

// validate lists every invalid setting, each as one line, before anything
// is started.
func (c *serveConfig) validate() []string {
	var lines []string
	add := func(err error) {
		if err != nil {
			lines = append(lines, strings.Split(err.Error(), "\n")...)
		}
	}
	if _, err := zerolog.ParseLevel(c.logLevel); err != nil || c.logLevel == "" {
		add(fmt.Errorf("--log-level %q: want debug, info, warn or error", c.logLevel))
	}
	if c.logFormat != "json" && c.logFormat != "console" {
		add(fmt.Errorf("--log-format %q: want json or console", c.logFormat))
	}
	// --sandbox and --step-network: c.sup.Validate (the sandbox's options).
	if c.openFiles < 16 {
		add(fmt.Errorf("--open-files-limit %d: want at least 16", c.openFiles))
	}
	if c.cpuTimeLimit != 0 && c.cpuTimeLimit < time.Second {
		add(fmt.Errorf("--cpu-time-limit %s: want 0 (unlimited) or at least 1s", c.cpuTimeLimit))
	}
	if limits, err := tenantLimits(c.tenantConcurrency, c.tenantLimits, c.tenantLimitsFile); err != nil {
		add(err)
	} else {
		c.sup.TenantLimits = limits
	}
	if c.retention < 0 {
		add(fmt.Errorf("--retention %s: want 0 (keep everything) or a positive duration", c.retention))
	}
	c.finish()
	add(c.queue.Validate())
	add(c.sup.Validate())
	if c.metricsAddr != "" {
		_, port, err := net.SplitHostPort(c.metricsAddr)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
			add(fmt.Errorf("--metrics-addr %q: want host:port or :port (empty: none)", c.metricsAddr))
		}
	}
	// A healthy loop may wait this long in one turn: a fetch, a ping, a
	// lease renewal. A shorter stall timeout would restart healthy pods.
	longestTurn := max(c.sup.FetchWait, c.sup.PingInterval+c.sup.PingTimeout, c.queue.LeaseTTL/2)
	if c.stallTimeout <= longestTurn {
		add(fmt.Errorf("--stall-timeout %s: want more than %s (the longest wait of a healthy loop: fetch, ping interval + timeout, lease TTL/2)", c.stallTimeout, longestTurn))
	}
	if c.natsDownTimeout <= 0 {
		add(fmt.Errorf("--nats-down-timeout %s: want more than 0", c.natsDownTimeout))
	}
	lines = append(lines, c.ui.validate()...)
	return lines
}

// finish copies the sandbox and limit settings into the supervisor's
// configuration.
func (c *serveConfig) finish() {
	c.sup.Sandbox.Mode = contain.Mode(c.sandboxMode)
	c.sup.Sandbox.Network = contain.Network(c.stepNetwork)
	c.sup.FileSizeMax = uint64(max(c.fileSizeLimit, 0))
	c.sup.CPUTimeMax = uint64(c.cpuTimeLimit / time.Second)
	if c.openFiles > 0 {
		c.sup.NoFileLimit = uint64(c.openFiles)
	}
}

// invalid is every invalid setting, one line each, as a usage error (nil
// when all are valid).
func (c *serveConfig) invalid() error {
	lines := c.validate()
	if len(lines) == 0 {
		return nil
	}
	return cli.Usage(errors.New(strings.Join(lines, "\n")))
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
	// Milliseconds: a run's whole pickup sequence fits in one second.
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
}

// serveFlags adds the flags and variables of `runnerd serve` to fs (also
// read by the test that checks deploy/kubernetes against them).
func serveFlags(cfg *serveConfig, fs *pflag.FlagSet) {
	f := cli.Flags{FS: fs}
	cfg.client.register(f)
	cfg.register(f)
	cfg.ui.register(f, "")
}

func serveCmd(env *cmdEnv) *cobra.Command {
	var cfg serveConfig
	c := &cobra.Command{
		Use:   "serve [flags]",
		Short: "consume runs from NATS and execute them (the container entrypoint)",
		Long:  "Consumes run requests from NATS JetStream and executes each run in an isolated runexec child.",
		Args:  cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg.sup.RunnerIDFallback = !c.Flags().Changed("runner-id")
			return serve(c.Context(), env, cfg)
		},
	}
	serveFlags(&cfg, c.Flags())
	return c
}

// serve runs the supervisor until the first signal, then drains it; a
// second signal skips the rest of the grace.
func serve(ctx context.Context, env *cmdEnv, cfg serveConfig) error {
	if err := cfg.invalid(); err != nil {
		return err
	}
	log, err := cfg.logger(env.stderr)
	if err != nil {
		return cli.Usage(err)
	}
	cfg.sup.Logger = log

	// The probes answer from the start: not ready until the queue, the
	// store's indexes and the bucket are set up.
	reg := newRegistry()
	health := supervisor.NewHealth(cfg.stallTimeout, cfg.natsDownTimeout)
	health.SetNotReady("connecting to NATS, MongoDB and S3")
	stopOps, err := startOps(cfg.metricsAddr, health, reg, log)
	if err != nil {
		return err
	}
	defer stopOps()
	ui, err := startUI(&cfg.ui, log)
	if err != nil {
		return err
	}
	defer ui.stop()

	c, err := connectServe(ctx, cfg.client, cfg.queue, "runnerd "+cfg.sup.RunnerID)
	if err != nil {
		log.Error().Err(err).Msg("start")
		return cli.Quiet(err)
	}
	defer c.Close()
	// The background work below is stopped and awaited before the
	// connections close (the deferred calls run in reverse): a sweep never
	// meets a closed store.
	bgCtx, stopBg := context.WithCancel(ctx)
	var bg sync.WaitGroup
	defer bg.Wait()
	defer stopBg()
	if err := ui.serve(c, cfg.ui.auth, log); err != nil {
		return err
	}
	bg.Go(func() { health.WatchNATS(bgCtx, c.nc) })
	cfg.sup.Registerer, cfg.sup.Health = reg, health
	sup, err := supervisor.New(cfg.sup, c.q, c.st, c.blobs)
	if err != nil {
		return cli.Usage(err)
	}
	defer sup.Close()
	if cfg.retention > 0 {
		bg.Go(func() { retention.Sweeper(bgCtx, c.st, c.blobs, cfg.retention, log) })
	}
	serving := make(chan struct{})
	defer close(serving)
	bg.Go(func() {
		select {
		case <-env.signals:
			log.Warn().Msg("second signal: skipping the shutdown grace")
			sup.StopNow()
		case <-serving:
		}
	})
	if err := sup.Run(ctx); err != nil {
		log.Error().Err(err).Msg("serve")
		return cli.Quiet(err)
	}
	return nil
}

// newRegistry holds the runnerd_* series, the Go runtime's and the
// process's, and runnerd_build_info.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "runnerd_build_info",
			Help:        "Always 1; the version label is the build's (runnerd version).",
			ConstLabels: prometheus.Labels{"version": version},
		}, func() float64 { return 1 }),
	)
	return reg
}

// startOps serves /metrics, /healthz and /readyz on addr ("" serves none).
// It listens before returning, so a port in use fails the start.
func startOps(addr string, h *supervisor.Health, g prometheus.Gatherer, log zerolog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %s: %w", addr, err)
	}
	srv := &http.Server{Handler: supervisor.OpsHandler(h, g), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("ops endpoints stopped")
		}
	}()
	log.Info().Str("addr", ln.Addr().String()).Msg("serving /metrics, /healthz and /readyz")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
