// Package devstack starts, inside the current process, the three servers
// runnerd talks to: NATS with JetStream, a MongoDB-wire server (FerretDB on
// SQLite) and an S3 server on a folder. `runnerd dev` serves on it and every
// test in the project gets real servers from it, so no code path has a
// hand-written imitation of NATS, MongoDB or S3.
//
// Every server requires credentials, generated for the data dir at its
// first start and kept in Dir/credentials.json (0600): NATS a user and
// password, MongoDB a SCRAM user (see mongoAuth), S3 a Signature V4 with
// the stack's key pair (see sigV4). A process that can connect to the
// ports but not read the data dir gains nothing.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3afero"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
	"github.com/spf13/afero"
)

// Defaults of Config.
const (
	DefaultHost   = "127.0.0.1"
	DefaultBucket = "runnerd" // blob.DefaultBucket, which a runnerd uses unless told (tested)

	// S3Region is the region clients sign for; any region is accepted.
	S3Region = "us-east-1"
)

// ErrNoDir is returned by Start when Config.Dir is empty: the servers keep
// their data on disk and must be told where.
var ErrNoDir = errors.New("devstack: Config.Dir is required")

// readyTimeout bounds how long Start waits for NATS to accept connections.
const readyTimeout = 10 * time.Second

// Config says where the servers keep their data and where they listen.
type Config struct {
	// Dir holds all data: Dir/nats (JetStream store), Dir/mongo (SQLite
	// files), Dir/s3 (objects). Required.
	Dir string
	// Host is the address every server binds; DefaultHost when empty.
	Host string
	// Ports; 0 picks a free port.
	NATSPort, MongoPort, S3Port int
	// Bucket is created at start; DefaultBucket when empty.
	Bucket string
	// Logger receives the servers' logs. The zero value discards them, so
	// tests and `runnerd dev` stay quiet unless asked otherwise.
	Logger zerolog.Logger
}

// Stack is a set of running servers and what a client needs to reach them.
// NATSURL and MongoURI carry the credentials, so that passing them to
// nats.Connect or the MongoDB driver is enough; Credentials has them apart.
type Stack struct {
	NATSURL     string // nats://user:password@host:port
	MongoURI    string // mongodb://user:password@host:port/
	S3Endpoint  string // http://host:port (path-style addressing)
	S3Bucket    string
	S3Region    string
	S3AccessKey string
	S3SecretKey string

	creds Credentials

	cfg Config
	log zerolog.Logger

	natsMu   sync.Mutex
	nats     *server.Server
	natsPort int // fixed after the first start, so a restart keeps the URL

	ferretStop context.CancelFunc
	ferretDone chan struct{}
	mongoLn    net.Listener // the authenticating front's, bound by Start
	mongoAuth  *mongoAuth

	s3srv    *http.Server
	s3ln     net.Listener
	s3served sync.WaitGroup // the S3 server's accept loop

	lock *os.File // the data dir's lock, held until Close
}

// Start starts the three servers. It first takes the data dir's lock
// (ErrDataDirInUse names the holder's pid) and checks every fixed port
// (ErrAddrInUse names the address and the server), so that nothing touches
// the data when it cannot serve it. On error, whatever was started is
// stopped.
func Start(ctx context.Context, cfg Config) (*Stack, error) {
	if cfg.Dir == "" {
		return nil, ErrNoDir
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	cfg.Dir = dir
	if cfg.Host == "" {
		cfg.Host = DefaultHost
	}
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	s := &Stack{
		cfg:      cfg,
		log:      cfg.Logger.With().Str("component", "devstack").Logger(),
		natsPort: cfg.NATSPort,
		S3Bucket: cfg.Bucket,
		S3Region: S3Region,
	}
	if s.natsPort == 0 {
		s.natsPort = server.RANDOM_PORT
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.lock, err = lockDataDir(cfg.Dir); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = s.Close()
		}
	}()
	if s.creds, err = loadOrCreateSecrets(cfg.Dir); err != nil {
		return nil, err
	}
	// Every port before any server starts. NATS binds its own listener, so
	// its port is only probed; the MongoDB and S3 listeners are kept.
	if cfg.NATSPort != 0 {
		if err := probePort("NATS", s.hostPort(cfg.NATSPort)); err != nil {
			return nil, err
		}
	}
	if s.mongoLn, err = listen("MongoDB", s.hostPort(cfg.MongoPort)); err != nil {
		return nil, err
	}
	if s.s3ln, err = listen("S3", s.hostPort(cfg.S3Port)); err != nil {
		return nil, err
	}
	if err := s.StartNATS(); err != nil {
		return nil, err
	}
	if err := s.startFerret(); err != nil {
		return nil, err
	}
	if err := s.startS3(); err != nil {
		return nil, err
	}
	s.creds.DataDir = cfg.Dir
	s.creds.NATSURL = s.natsURL(false)
	s.creds.MongoURI = "mongodb://" + s.mongoLn.Addr().String() + "/"
	s.creds.S3Endpoint, s.creds.S3Bucket, s.creds.S3Region = s.S3Endpoint, s.S3Bucket, s.S3Region
	s.MongoURI = "mongodb://" + url.UserPassword(s.creds.MongoUser, s.creds.MongoPassword).String() + "@" + s.mongoLn.Addr().String() + "/"
	s.S3AccessKey, s.S3SecretKey = s.creds.S3AccessKey, s.creds.S3SecretKey
	if err := WriteCredentials(filepath.Join(cfg.Dir, CredentialsFile), s.creds); err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	ok = true
	return s, nil
}

// Credentials returns the stack's addresses (without credentials in them)
// and its secrets: what Dir/credentials.json holds.
func (s *Stack) Credentials() Credentials { return s.creds }

// natsURL is the client URL of the NATS server, with the user and password
// when withAuth.
func (s *Stack) natsURL(withAuth bool) string {
	u := url.URL{Scheme: "nats", Host: s.hostPort(s.natsPort)}
	if withAuth {
		u.User = url.UserPassword(s.creds.NATSUser, s.creds.NATSPassword)
	}
	return u.String()
}

func (s *Stack) hostPort(port int) string {
	return net.JoinHostPort(s.cfg.Host, strconv.Itoa(port))
}

// Dir returns the absolute directory holding the servers' data.
func (s *Stack) Dir() string { return s.cfg.Dir }

// StartNATS starts the NATS server, or starts it again after StopNATS on the
// same port and store directory, so clients reconnect and find their streams.
func (s *Stack) StartNATS() error {
	s.natsMu.Lock()
	defer s.natsMu.Unlock()
	if s.nats != nil {
		return nil
	}
	opts := &server.Options{
		ServerName: "runnerd-dev",
		Host:       s.cfg.Host,
		Port:       s.natsPort,
		JetStream:  true,
		StoreDir:   filepath.Join(s.cfg.Dir, "nats"),
		NoSigs:     true, // the embedding process owns its signals
		// Without it the server also listens on an HTTP monitoring port.
		HTTPPort:               0,
		DisableJetStreamBanner: true,
		Username:               s.creds.NATSUser,
		Password:               s.creds.NATSPassword,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("devstack: nats: %w", err)
	}
	fatal := make(chan string, 1)
	ns.SetLoggerV2(natsLogger{l: s.cfg.Logger.With().Str("component", "nats").Logger(), fatal: fatal}, false, false, false)
	ns.Start()
	// A listen error is logged as fatal, and the server then never gets
	// ready: report it at once rather than after readyTimeout.
	for deadline := time.Now().Add(readyTimeout); !ns.ReadyForConnections(50 * time.Millisecond); {
		select {
		case msg := <-fatal:
			ns.Shutdown()
			if strings.Contains(msg, "address already in use") {
				return fmt.Errorf("%w: address %s in use (NATS)", ErrAddrInUse, s.hostPort(s.natsPort))
			}
			return fmt.Errorf("devstack: nats: %s", msg)
		default:
		}
		if time.Now().After(deadline) {
			ns.Shutdown()
			return fmt.Errorf("devstack: nats not ready after %s on %s:%d", readyTimeout, s.cfg.Host, s.natsPort)
		}
	}
	s.nats = ns
	if s.natsPort == server.RANDOM_PORT {
		s.natsPort = ns.Addr().(*net.TCPAddr).Port
	}
	s.NATSURL = s.natsURL(true)
	return nil
}

// StopNATS shuts the NATS server down and waits until it is gone; the data
// stays in Dir/nats for StartNATS.
func (s *Stack) StopNATS() {
	s.natsMu.Lock()
	defer s.natsMu.Unlock()
	if s.nats == nil {
		return
	}
	s.nats.Shutdown()
	s.nats.WaitForShutdown()
	s.nats = nil
}

// NATSServer returns the running NATS server, or nil while it is stopped.
func (s *Stack) NATSServer() *server.Server {
	s.natsMu.Lock()
	defer s.natsMu.Unlock()
	return s.nats
}

func (s *Stack) startFerret() error {
	dir := filepath.Join(s.cfg.Dir, "mongo")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("devstack: ferretdb: %w", err)
	}
	// FerretDB replies to every failed command with a WARN log line (a
	// duplicate key is an expected outcome for us), so only errors pass.
	logger := slog.New(slog.NewTextHandler(
		s.cfg.Logger.With().Str("component", "ferretdb").Logger(),
		&slog.HandlerOptions{Level: slog.LevelError},
	))
	inner, err := newInnerTLS(filepath.Join(s.cfg.Dir, "mongo-tls"))
	if err != nil {
		return fmt.Errorf("devstack: ferretdb TLS: %w", err)
	}
	f, err := ferretdb.New(&ferretdb.Config{
		// Only the authenticating front can connect: see mongoAuth.
		Listener: ferretdb.ListenerConfig{
			TLS: "127.0.0.1:0", TLSCertFile: inner.certFile, TLSKeyFile: inner.keyFile, TLSCAFile: inner.caFile,
		},
		Logger:  logger,
		Handler: "sqlite",
		// WAL with synchronous=NORMAL: a commit is safe from a crash of any
		// process (the chaos suites kill them all); only a power loss can
		// take back the last commits. FULL (the default) fsyncs the WAL on
		// every commit, several per run.
		SQLiteURL: "file:" + dir + "/?_pragma=synchronous(normal)",
	})
	if err != nil {
		return fmt.Errorf("devstack: ferretdb: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.ferretStop = cancel
	s.ferretDone = make(chan struct{})
	go func() {
		defer close(s.ferretDone)
		_ = f.Run(ctx) // returns nil once ctx is cancelled
	}()
	// New has already bound the listener, so the address is known now.
	u, err := url.Parse(f.MongoDBURI())
	if err != nil {
		return fmt.Errorf("devstack: ferretdb URI: %w", err)
	}
	s.mongoAuth, err = newMongoAuth(s.mongoLn, u.Host, inner.client, s.creds.MongoUser, s.creds.MongoPassword,
		s.cfg.Logger.With().Str("component", "mongo-auth").Logger())
	if err != nil {
		return err
	}
	s.mongoAuth.start()
	return nil
}

func (s *Stack) startS3() error {
	dir := filepath.Join(s.cfg.Dir, "s3")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("devstack: s3: %w", err)
	}
	// MultiBucket refuses a bare OsFs: it wants a filesystem rooted at dir.
	backend, err := s3afero.MultiBucket(afero.NewBasePathFs(afero.NewOsFs(), dir))
	if err != nil {
		return fmt.Errorf("devstack: s3: %w", err)
	}
	if err := backend.CreateBucket(s.cfg.Bucket); err != nil && !gofakes3.IsAlreadyExists(err) {
		return fmt.Errorf("devstack: s3: create bucket %s: %w", s.cfg.Bucket, err)
	}
	fake := gofakes3.New(backend,
		gofakes3.WithLogger(s3Logger{s.cfg.Logger.With().Str("component", "s3").Logger()}),
		// Clients on a laptop that slept would otherwise be refused.
		gofakes3.WithTimeSkewLimit(0),
	)
	ln := s.s3ln // bound by Start
	srv := &http.Server{
		Handler:           newSigV4(s.creds.S3AccessKey, s.creds.S3SecretKey, fake.Server()),
		ReadHeaderTimeout: 30 * time.Second,
	}
	s.s3srv = srv
	s.s3served.Go(func() { _ = srv.Serve(ln) })
	s.S3Endpoint = "http://" + ln.Addr().String()
	return nil
}

// Close stops all servers and waits for them; data stays in Dir.
func (s *Stack) Close() error {
	var errs []error
	if s.s3srv != nil { // serving: Shutdown closes s3ln
		s.s3ln = nil
		// Clients keep spare connections open that never carry a request;
		// Shutdown counts those as busy for 5 s, so after a short grace for
		// requests in flight the rest are closed.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err := s.s3srv.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) {
			err = s.s3srv.Close()
			if err != nil {
				errs = append(errs, fmt.Errorf("devstack: s3 close: %w", err))
			}
		} else if err != nil {
			errs = append(errs, fmt.Errorf("devstack: s3 shutdown: %w", err))
		}
		cancel()
		s.s3served.Wait()
		s.s3srv = nil
	}
	if s.mongoAuth != nil {
		s.mongoAuth.close() // closes mongoLn too
		s.mongoAuth = nil
	} else if s.mongoLn != nil {
		_ = s.mongoLn.Close() // bound, never served
	}
	s.mongoLn = nil
	if s.ferretStop != nil {
		s.ferretStop()
		<-s.ferretDone
		s.ferretStop = nil
	}
	if s.s3ln != nil {
		_ = s.s3ln.Close() // bound, never served
		s.s3ln = nil
	}
	s.StopNATS()
	if s.lock != nil {
		_ = s.lock.Close() // drops the flock
		s.lock = nil
	}
	return errors.Join(errs...)
}

// natsLogger sends the NATS server's log lines to zerolog, and the first
// fatal one to fatal.
type natsLogger struct {
	l     zerolog.Logger
	fatal chan<- string
}

func (n natsLogger) Noticef(format string, v ...any) { n.l.Info().Msgf(format, v...) }
func (n natsLogger) Warnf(format string, v ...any)   { n.l.Warn().Msgf(format, v...) }
func (n natsLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	n.l.Error().Msg(msg)
	select {
	case n.fatal <- msg:
	default:
	}
}
func (n natsLogger) Errorf(format string, v ...any) { n.l.Error().Msgf(format, v...) }
func (n natsLogger) Debugf(format string, v ...any) { n.l.Debug().Msgf(format, v...) }
func (n natsLogger) Tracef(format string, v ...any) { n.l.Trace().Msgf(format, v...) }

// s3Logger sends gofakes3's log lines to zerolog.
type s3Logger struct{ l zerolog.Logger }

func (g s3Logger) Print(level gofakes3.LogLevel, v ...any) {
	var e *zerolog.Event
	switch level {
	case gofakes3.LogErr:
		e = g.l.Error()
	case gofakes3.LogWarn:
		e = g.l.Warn()
	case gofakes3.LogInfo:
		e = g.l.Info()
	default:
		e = g.l.Debug()
	}
	e.Msg(fmt.Sprint(v...))
}
