// Package supervisor is runnerd's core: the consumer loop with its run slots,
// and for each delivery the lease, the claim, one isolated runexec child, the
// persisted event stream, the uploads, and the exit table (exittable.go) that
// decides what happens to the run and to the message.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/contain"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
)

// Config is the supervisor's configuration; zero fields take the defaults
// of DefaultConfig.
type Config struct {
	RunnerID string // names this process in leases, run documents and run dirs
	// RunnerIDFallback lets New take id-2 … id-9 when RunnerID is held by
	// another runnerd on this machine; set it when the id is the default.
	RunnerIDFallback bool
	Concurrency      int    // run slots: runs executed at once by this process
	RunDirRoot       string // run dirs live in <root>/<runner id>/<run id>
	RunexecPath      string // the runexec binary
	// SecretsDir holds the tenants' secrets as <dir>/<tenant>/<NAME> ("":
	// only RUNNERD_SECRET_<NAME> of runnerd's environment).
	SecretsDir string

	ShutdownGrace time.Duration // first SIGTERM: how long children get to save and stop
	KillGrace     time.Duration // a step's SIGTERM → SIGKILL grace inside the child
	PingInterval  time.Duration // child health checks
	PingTimeout   time.Duration // a child that does not answer within it is killed
	FetchWait     time.Duration // long-poll of one fetch
	RetryDelay    time.Duration // delay of a Nak for a transient condition (store down, lease held)
	// MaxAttempts is a run's crash budget: attempts whose child crashed, was
	// OOM-killed or stopped answering (or whose runner vanished). The next
	// such end fails the run max_attempts_exceeded. Waiting never counts.
	MaxAttempts int

	MemoryLimit int64  // bytes for a child and its steps (cgroup); 0: none
	PidsLimit   int    // processes for a child and its steps (cgroup); 0: none
	NoFileLimit uint64 // RLIMIT_NOFILE of the child and its steps
	FileSizeMax uint64 // RLIMIT_FSIZE in bytes of the child and its steps; 0: unlimited
	CPUTimeMax  uint64 // RLIMIT_CPU in seconds of each process of a run; 0: unlimited
	LogLimit    int64  // bytes of log kept per step (in S3); 0: executor default
	EventLogMax int64  // bytes of a step's log also stored as events (for `logs --follow`)
	AutoMTLS    bool   // go-plugin mutual TLS between runnerd and runexec
	// Sandbox is what each run is confined to (contain.Probe finds what
	// this machine allows); the zero Mode is auto.
	Sandbox contain.Options
	// Prestart keeps this many runexec children started ahead of runs (each
	// still serves one run), so a run does not wait for a child's start.
	Prestart int
	// TenantConcurrency is how many runs of one tenant run at once across
	// the fleet (0: no limit); TenantLimits overrides it per tenant. Every
	// runner of a fleet must be given the same values.
	TenantConcurrency int
	TenantLimits      map[string]int
	// MaxWaiting and TenantWaiting bound the deliveries of waiting runs this
	// process parks (all, and per tenant); beyond, they are Nak'ed with a
	// delay. 0: DefaultMaxWaiting, DefaultTenantWaiting.
	MaxWaiting, TenantWaiting int

	Logger zerolog.Logger
	// Registerer receives the runnerd_* metrics (nil: not registered).
	Registerer prometheus.Registerer
	// Health is the watchdog the loops beat (nil: one with the defaults).
	Health *Health
	// SampleInterval is how often the consumer's backlog is sampled.
	SampleInterval time.Duration
}

// DefaultFileSizeMax is the default RLIMIT_FSIZE of a run's processes: no
// single file larger, a bound on a runaway write that still fits any sane
// build output.
const DefaultFileSizeMax = 10 << 30

// DefaultConfig returns the defaults documented in `runnerd serve --help`.
func DefaultConfig() Config {
	return Config{
		RunnerID:      defaultRunnerID(),
		Concurrency:   1,
		RunDirRoot:    filepath.Join(os.TempDir(), "runnerd"),
		ShutdownGrace: 25 * time.Second,
		KillGrace:     5 * time.Second,
		PingInterval:  5 * time.Second,
		PingTimeout:   5 * time.Second,
		FetchWait:     5 * time.Second,
		RetryDelay:    5 * time.Second,
		MaxAttempts:   5,
		MemoryLimit:   2 << 30,
		PidsLimit:     1024,
		NoFileLimit:   4096,
		FileSizeMax:   DefaultFileSizeMax,
		EventLogMax:   1 << 20,
		Logger:        zerolog.Nop(),

		SampleInterval: 10 * time.Second,
	}
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.RunnerID == "" {
		c.RunnerID = d.RunnerID
	}
	if c.Concurrency == 0 {
		c.Concurrency = d.Concurrency
	}
	if c.RunDirRoot == "" {
		c.RunDirRoot = d.RunDirRoot
	}
	for _, p := range []struct{ v, d *time.Duration }{
		{&c.ShutdownGrace, &d.ShutdownGrace}, {&c.KillGrace, &d.KillGrace},
		{&c.PingInterval, &d.PingInterval}, {&c.PingTimeout, &d.PingTimeout},
		{&c.FetchWait, &d.FetchWait}, {&c.RetryDelay, &d.RetryDelay},
		{&c.SampleInterval, &d.SampleInterval},
	} {
		if *p.v == 0 {
			*p.v = *p.d
		}
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = d.MaxAttempts
	}
	if c.NoFileLimit == 0 {
		c.NoFileLimit = d.NoFileLimit
	}
	if c.EventLogMax == 0 {
		c.EventLogMax = d.EventLogMax
	}
	if c.MaxWaiting == 0 {
		c.MaxWaiting = DefaultMaxWaiting
	}
	if c.TenantWaiting == 0 {
		c.TenantWaiting = DefaultTenantWaiting
	}
	if c.Sandbox.Mode == "" {
		c.Sandbox.Mode = contain.ModeAuto
	}
	if c.Health == nil {
		c.Health = NewHealth(DefaultStallTimeout, DefaultNATSDownTimeout)
	}
}

// Validate names every invalid field at once.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.RunnerID != "", "runner id: must not be empty")
	check(queue.ValidateRunID(c.RunnerID) == nil, "runner id %q: use 1-128 letters, digits, '_' and '-'", c.RunnerID)
	check(c.Concurrency >= 1 && c.Concurrency <= 1024, "concurrency %d: want 1 to 1024", c.Concurrency)
	check(c.MaxAttempts >= 1, "max attempts %d: want at least 1", c.MaxAttempts)
	check(c.RunexecPath != "", "runexec path: must not be empty")
	if c.RunexecPath != "" {
		fi, err := os.Stat(c.RunexecPath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			errs = append(errs, fmt.Errorf("runexec binary %s: no such file", c.RunexecPath))
		case err != nil:
			errs = append(errs, fmt.Errorf("runexec binary: %w", err))
		case fi.IsDir() || fi.Mode()&0o111 == 0:
			errs = append(errs, fmt.Errorf("runexec binary %s: not an executable file", c.RunexecPath))
		}
	}
	check(c.ShutdownGrace > 0, "shutdown grace %s: want more than 0", c.ShutdownGrace)
	check(c.PingTimeout > 0 && c.PingInterval > 0, "ping interval and timeout: want more than 0")
	check(c.MemoryLimit >= 0, "memory limit %d: want 0 (none) or more", c.MemoryLimit)
	check(c.Prestart >= 0 && c.Prestart <= 1024, "prestart %d: want 0 (none) to 1024", c.Prestart)
	check(c.TenantConcurrency >= 0, "tenant concurrency %d: want 0 (no limit) or more", c.TenantConcurrency)
	for t, n := range c.TenantLimits {
		check(queue.ValidateRunID(t) == nil && n >= 0, "tenant limit %s=%d: want a tenant id and 0 (no limit) or more", t, n)
	}
	if err := c.Sandbox.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Supervisor consumes run messages and executes each run in a runexec child.
type Supervisor struct {
	idLock    *os.File // held from New until Close
	closeOnce sync.Once
	cfg       Config
	q         *queue.Queue
	store     *store.Store
	blobs     *blob.Store
	log       zerolog.Logger
	m         *metrics
	health    *Health

	// loopHook, when set by a test, runs at each turn of the consumer loop.
	loopHook func()
	// childHook, when set by a test, runs in each attempt once its child
	// has started, before the run is handed to it.
	childHook func(a *attempt)

	sandbox *contain.Sandbox // what every child is started in (setUpSandbox)
	layers  []contain.Layer  // the sandbox's, the cgroup's and the rlimits', as logged at start

	spares   *spares // nil unless cfg.Prestart > 0, between Run's start and its drain
	sockRoot string  // where the children's go-plugin socket dirs are made

	draining    <-chan struct{} // closed at the first SIGTERM (or StopNow): stop fetching, ask children to stop
	drainCtx    context.Context // ends with draining
	drainCancel context.CancelFunc
	hardStop    <-chan struct{} // closed when the grace is over or at a second SIGTERM
	hardCtx     context.Context // ends with hardStop: in-place waits on servers end
	hardCancel  context.CancelFunc

	conn connClock // how long NATS has been connected

	adm    *admitter       // nil without an admission bucket (admission.go)
	runCtx context.Context // Run's: ends at the first SIGTERM

	activeMu sync.Mutex
	active   map[string]*attempt // run id → the attempt of this process running it
}

// New checks the configuration and prepares a supervisor.
func New(cfg Config, q *queue.Queue, runs *store.Store, blobs *blob.Store) (*Supervisor, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("supervisor config: %w", err)
	}
	lock, id, err := claimRunnerID(cfg.RunnerID, cfg.RunnerIDFallback)
	if err != nil {
		return nil, err
	}
	cfg.RunnerID = id
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	drainCtx, drainCancel := context.WithCancel(context.Background())
	hardCtx, hardCancel := context.WithCancel(context.Background())
	s := &Supervisor{
		drainCtx:    drainCtx,
		drainCancel: drainCancel,
		draining:    drainCtx.Done(),
		hardCtx:     hardCtx,
		hardCancel:  hardCancel,
		hardStop:    hardCtx.Done(),
		active:      map[string]*attempt{},
		idLock:      lock,
		cfg:         cfg,
		q:           q,
		store:       runs,
		blobs:       blobs,
		log:         cfg.Logger.With().Str("runner_id", cfg.RunnerID).Logger(),
		m:           m,
		health:      cfg.Health,
		sockRoot:    socketRoot(cfg.RunnerID),
	}
	if err := s.setUpSandbox(); err != nil {
		lock.Close()
		return nil, err
	}
	return s, nil
}

// Run serves until ctx is cancelled (the first SIGTERM), then drains: no new
// fetch, every child is asked to save its state and stop, and after the
// shutdown grace (or StopNow) what remains is killed. Each interrupted run is
// republished. Run returns when every slot is free.
func (s *Supervisor) Run(ctx context.Context) error {
	if err := s.prepareHost(); err != nil {
		return err
	}
	defer s.reapOrphans()() // deferred first: it ends after every attempt
	slots := make(chan struct{}, s.cfg.Concurrency)
	freed := make(chan struct{}, 1) // a slot was given back
	var wg sync.WaitGroup           // the attempts
	// Background work Run owns and awaits: the backlog sampler and the
	// settling of exhausted messages, which end with ctx.
	var bg sync.WaitGroup
	defer bg.Wait()
	// A drain (StopNow) ends the loop as the end of ctx does: a caller that
	// stops the supervisor without cancelling ctx gets Run back, and no
	// message is fetched meanwhile.
	ctx, stopLoop := context.WithCancel(ctx)
	defer stopLoop()
	defer context.AfterFunc(s.drainCtx, stopLoop)()
	// Work that runs to the end of an attempt, even after ctx: a draining
	// run still saves its state and acts on its message.
	workCtx := context.WithoutCancel(ctx)
	bg.Go(func() { s.samplePending(ctx) })
	defer s.conn.watch(s.q.Conn())()

	if s.cfg.Prestart > 0 {
		s.spares = s.startSpares(s.cfg.Prestart)
	}
	unsubscribe, err := s.q.SubscribeExhausted(func(seq uint64) {
		if ctx.Err() == nil {
			bg.Go(func() { s.settleExhausted(ctx, seq) })
		}
	})
	if err != nil {
		s.log.Warn().Err(err).Msg("no max-deliveries advisories: a run whose runner dies during its last delivery stays running")
		unsubscribe = func() {}
	}
	defer unsubscribe()

	s.runCtx = ctx
	if err := s.startAdmission(ctx); err != nil {
		return err
	}
	defer s.stopAdmission()
	s.logSandbox()
	s.log.Info().Int("concurrency", s.cfg.Concurrency).Msg("serving")
	s.m.freeSlots.Set(float64(s.cfg.Concurrency))
	s.health.SetNotReady("")
	for ctx.Err() == nil {
		s.health.Beat(loopName)
		if s.loopHook != nil {
			s.loopHook()
		}
		free := s.cfg.Concurrency - len(slots)
		if free == 0 {
			if !s.waitSlot(ctx, slots, freed) {
				break
			}
			continue
		}
		// Parked runs whose turn came go before new messages.
		deliveries := s.readyParked(free)
		var err error
		if len(deliveries) == 0 {
			deliveries, err = s.fetch(ctx, free)
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			s.log.Warn().Err(err).Msg("fetch runs")
			sleep(ctx, time.Second)
			continue
		}
		for _, d := range deliveries {
			slots <- struct{}{}
			s.slotTaken(1)
			wg.Go(func() {
				var once sync.Once
				free := func() {
					once.Do(func() {
						<-slots
						s.slotTaken(-1)
						select {
						case freed <- struct{}{}:
						default: // a wake-up is already pending
						}
					})
				}
				defer free()
				s.process(workCtx, d, free)
			})
		}
	}
	// The loop ends on purpose: no longer watched, no longer ready.
	s.health.SetNotReady("draining")
	s.health.Forget(loopName)
	s.spares.close()

	s.drain()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.cfg.ShutdownGrace):
		s.log.Warn().Dur("grace_ms", s.cfg.ShutdownGrace).Msg("shutdown grace over: killing the remaining children")
		s.StopNow()
		<-done
	case <-s.hardStop:
		<-done
	}
	_ = os.Remove(s.sockRoot) // empty once every child is gone
	// This runner's run dir, empty once every run is gone (no leftover
	// after a clean stop); the next start makes it again.
	_ = os.Remove(filepath.Join(s.cfg.RunDirRoot, s.cfg.RunnerID))
	s.log.Info().Msg("stopped")
	s.health.SetNotReady("stopped")
	return nil
}

// Close frees the runner id New locked on this machine, for the next
// process. Call it once Run has returned (or instead of Run).
func (s *Supervisor) Close() error {
	var err error
	s.closeOnce.Do(func() { err = unlockRunnerID(s.idLock) })
	return err
}

// RunnerID is the runner id this supervisor holds on this machine.
func (s *Supervisor) RunnerID() string { return s.cfg.RunnerID }

// loopName is the consumer loop's name in the watchdog (and /healthz).
const loopName = "consumer loop"

// slotTaken moves n slots from free to in flight (negative: back).
func (s *Supervisor) slotTaken(n int) {
	s.m.runsInFlight.Add(float64(n))
	s.m.freeSlots.Sub(float64(n))
}

// samplePending copies the consumer's backlog into a gauge until ctx ends:
// the figure an autoscaler also reads, seen from this process.
func (s *Supervisor) samplePending(ctx context.Context) {
	t := time.NewTicker(s.cfg.SampleInterval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := s.q.Pending(pctx)
		cancel()
		if err == nil {
			s.m.consumerPending.Set(float64(n))
		} else if ctx.Err() == nil {
			s.log.Debug().Err(err).Msg("sample consumer pending")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// drain tells every running attempt to stop and save its state.
func (s *Supervisor) drain() {
	s.drainCancel()
}

// StopNow skips the rest of the shutdown grace: children are killed at once
// (their runs are still republished) and Run returns, whether or not its
// context ended. The second SIGTERM calls it.
func (s *Supervisor) StopNow() {
	s.drain()
	s.hardCancel()
}

// track registers a as the attempt of this process running a.runID; if
// another one already is, it returns that one and registers nothing.
func (s *Supervisor) track(a *attempt) *attempt {
	s.activeMu.Lock()
	defer s.activeMu.Unlock()
	if cur := s.active[a.runID]; cur != nil && cur != a {
		return cur
	}
	s.active[a.runID] = a
	return nil
}

// untrack removes a's registration, if it is a's.
func (s *Supervisor) untrack(a *attempt) {
	s.activeMu.Lock()
	defer s.activeMu.Unlock()
	if s.active[a.runID] == a {
		delete(s.active, a.runID)
	}
}

// waitSlot waits until a slot frees; false if ctx ended first. It beats
// the watchdog while it waits: a loop waiting for slots is not stuck.
func (s *Supervisor) waitSlot(ctx context.Context, slots, freed chan struct{}) bool {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for len(slots) == cap(slots) {
		s.health.Beat(loopName)
		select {
		case <-ctx.Done():
			return false
		case <-freed:
		case <-t.C:
		}
	}
	return true
}

// prepareHost makes the run dir root and removes what a previous process
// with this runner id left behind: it crashed, so its runs are redelivered
// and will run in fresh dirs.
func (s *Supervisor) prepareHost() error {
	own := filepath.Join(s.cfg.RunDirRoot, s.cfg.RunnerID)
	if err := os.MkdirAll(own, 0o755); err != nil {
		return fmt.Errorf("run dir root: %w", err)
	}
	stale, _ := os.ReadDir(own)
	for _, e := range stale {
		s.log.Info().Str("run_id", e.Name()).Msg("removing stale run dir")
		_ = os.RemoveAll(filepath.Join(own, e.Name()))
	}
	// Socket dirs of a crashed predecessor go with its run dirs.
	_ = os.RemoveAll(s.sockRoot)
	if err := os.MkdirAll(s.sockRoot, 0o700); err != nil {
		return fmt.Errorf("socket dir root: %w", err)
	}
	contain.SweepCgroups(s.cgroupParentName())
	// A non-dumpable process's /proc files belong to root, so an
	// unprivileged runnerd could no longer write its children's uid_map:
	// there the user and PID namespaces, which keep steps from seeing
	// runnerd at all, take the place of the non-dumpable flag.
	if !s.sandbox.UserNS || os.Geteuid() == 0 {
		if err := contain.ProtectEnviron(); err != nil {
			s.log.Warn().Err(err).Msg("cannot make runnerd non-dumpable: steps of its uid can read its environment")
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
