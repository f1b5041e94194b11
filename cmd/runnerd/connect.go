package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/auth"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/client"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
)

// clientConfig is how every subcommand reaches NATS, MongoDB and S3. The
// defaults are where `runnerd dev` listens.
type clientConfig struct {
	NATSURL     string // one URL or a comma-separated list of a cluster's servers
	MongoURI    string
	MongoDB     string
	MongoWC     string // write concern: majority or a member count (store.Config.WriteConcern)
	MongoRC     string // read concern (store.Config.ReadConcern)
	S3Endpoint  string
	S3Bucket    string
	S3Region    string
	S3AccessKey string
	S3SecretKey string
	S3PathStyle bool
	Tenant      string
	Timeout     time.Duration

	NATSUser, NATSPassword string // user and password for every server of the list
	NATSCreds              string // a .creds file (JWT and nkey seed)
	NATSNkey               string // a file holding an nkey seed
	Credentials            string // a runnerd dev stack's credentials file (see useDevCredentials)
}

func (c *clientConfig) register(f cli.Flags) {
	f.String(&c.NATSURL, "nats-url", "nats://127.0.0.1:4222", "NATS server URL, or a comma-separated list of a cluster's servers")
	f.String(&c.MongoURI, "mongo-uri", "mongodb://127.0.0.1:27017", "MongoDB URI")
	f.String(&c.MongoDB, "mongo-db", store.DefaultDatabase, "MongoDB database")
	f.String(&c.MongoWC, "mongo-write-concern", "", "write concern of every write: majority or a member count, journaled (empty: the URI's w, else majority)")
	f.String(&c.MongoRC, "mongo-read-concern", "", "read concern: majority, linearizable or local (empty: the URI's readConcernLevel, else majority)")
	f.String(&c.S3Endpoint, "s3-endpoint", "http://127.0.0.1:9000", "S3 endpoint URL (empty: AWS)")
	f.String(&c.S3Bucket, "s3-bucket", blob.DefaultBucket, "S3 bucket for logs and artifacts")
	f.String(&c.S3Region, "s3-region", "us-east-1", "S3 region")
	f.String(&c.S3AccessKey, "s3-access-key", "", "S3 access key (empty: the AWS default chain, or the --credentials file's for its endpoint)")
	f.String(&c.S3SecretKey, "s3-secret-key", "", "S3 secret key")
	f.Bool(&c.S3PathStyle, "s3-path-style", true, "path-style S3 addressing (MinIO, devstack)")
	f.String(&c.Tenant, "tenant", "default", "tenant id of submitted runs")
	f.Duration(&c.Timeout, "connect-timeout", 10*time.Second, "timeout to connect to each server (a server that refuses connections is reported within 2s)")
	f.String(&c.NATSUser, "nats-user", "", "NATS user (with --nats-password)")
	f.String(&c.NATSPassword, "nats-password", "", "NATS password")
	f.String(&c.NATSCreds, "nats-creds", "", "NATS credentials file (JWT and nkey seed, as nsc writes it)")
	f.String(&c.NATSNkey, "nats-nkey", "", "file holding a NATS nkey seed (SU...)")
	f.String(&c.Credentials, "credentials", defaultCredentialsPath(), "credentials file of a runnerd dev stack: its secrets are used for the servers it names that are given none")
}

// reachTimeout bounds the first TCP connection to each server a client
// command needs, so that a server that is down is reported at once rather
// than after the drivers' own retries.
const reachTimeout = 2 * time.Second

// ErrUnavailable is wrapped by every error meaning a server could not be
// reached or is not set up for runnerd: exit 69 (EX_UNAVAILABLE of
// sysexits.h), distinct from the run outcomes 0-4, so a script can tell
// "the run failed" from "runnerd could not ask".
var ErrUnavailable = cli.ErrUnavailable

// serverError says which server could not be used, where it was looked
// for, and which flag and variable set that address.
type serverError struct {
	server string // NATS, MongoDB or S3
	addr   string // redacted
	what   string // "cannot reach", "no answer from", ...
	hint   string
	err    error
	text   string // the whole message, when set
}

func (e *serverError) Error() string {
	if e.text != "" {
		return e.text
	}
	msg := fmt.Sprintf("%s %s at %s", e.what, e.server, e.addr)
	if e.err != nil {
		msg += ": " + e.err.Error()
	}
	if e.hint != "" {
		msg += "\n  " + e.hint
	}
	return msg
}

func (e *serverError) Unwrap() []error { return []error{ErrUnavailable, e.err} }

func addressHint(server, flag string) string {
	return fmt.Sprintf("is runnerd dev (or your %s) running there? The address comes from --%s or %s.", server, flag, cli.EnvName(flag))
}

// settingError is a connection setting found wrong only when it is used
// (a missing file): a usage error.
func settingError(err error) error { return cli.Usage(err) }

// classify makes err what a client command returns: a MongoDB that stops
// answering after the command connected is reported like one that was
// never reached, without the driver's topology dump; refused credentials
// name the server and how to set them; the store's refusals get their
// exit codes.
func (c clientConfig) classify(err error) error {
	if err == nil {
		return nil
	}
	return classify(classifyRefused(c, classifyMongo(c, err)))
}

// needs says which servers a client command uses.
type needs uint8

const (
	needMongo needs = 1 << iota
	needNATS        // NATS, and the queue opened (never set up)
)

// conns are the open connections of one command.
type conns struct {
	cfg   clientConfig
	nc    *nats.Conn
	js    jetstream.JetStream
	q     *queue.Queue
	st    *store.Store
	blobs *blob.Store

	blobOnce     sync.Once
	blobErr      error
	createBucket bool // serve creates the bucket; clients never do
}

func (c *conns) Close() {
	if c.st != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = c.st.Close(ctx)
		cancel()
	}
	if c.nc != nil {
		c.nc.Close()
	}
}

// client returns the Go client on these connections (the queue only when
// the command opened NATS; S3 on first use).
func (c *conns) client() (*client.Client, error) {
	o := client.Options{Store: c.st, Tenant: c.cfg.Tenant, InlineWorkflowMax: inlineWorkflowMax, Blob: c.blob}
	if c.q != nil {
		o.Queue = c.q
	}
	return client.New(o)
}

// connectClient opens what a client command uses, and nothing else: it
// never creates or changes the stream, the consumer or the lease bucket
// (the fleet's runnerd processes own their limits). S3 is opened on first
// use, by blob.
func connectClient(ctx context.Context, cfg clientConfig, n needs, name string) (*conns, error) {
	return openConns(cfg, func(c *conns) error {
		// The probes first: a server that is down is reported before the
		// drivers start their own retries.
		if n&needMongo != 0 {
			if err := probeMongo(ctx, c.cfg); err != nil {
				return err
			}
		}
		if n&needNATS != 0 {
			if err := probeNATS(ctx, c.cfg); err != nil {
				return err
			}
		}
		if n&needMongo != 0 {
			if err := c.openStore(ctx); err != nil {
				return err
			}
		}
		if n&needNATS != 0 {
			if err := c.openNATS(ctx, name); err != nil {
				return err
			}
			qctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
			defer cancel()
			var err error
			if c.q, err = queue.Open(qctx, c.js, queue.DefaultConfig()); err != nil {
				if errors.Is(err, queue.ErrNoStream) {
					return &serverError{text: fmt.Sprintf("no stream %s on %s: is runnerd serve or dev running?",
						queue.DefaultConfig().Stream, redactNATSURL(c.cfg.NATSURL))}
				}
				return fmt.Errorf("open the queue on %s: %w", redactNATSURL(c.cfg.NATSURL), err)
			}
		}
		return nil
	})
}

// tryNATS opens NATS and the queue on a command connected without them,
// for the notices a follower listens to; on any failure it leaves them
// unset and the follower polls the store instead.
func (c *conns) tryNATS(ctx context.Context, name string) {
	if c.q != nil || probeNATS(ctx, c.cfg) != nil || c.openNATS(ctx, name) != nil {
		return
	}
	qctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	if q, err := queue.Open(qctx, c.js, queue.DefaultConfig()); err == nil {
		c.q = q
	}
}

// connectServe opens NATS (setting up the stream, consumer and lease bucket
// with qcfg: runnerd serve and dev own them), MongoDB and S3.
func connectServe(ctx context.Context, cfg clientConfig, qcfg queue.Config, name string) (*conns, error) {
	return openConns(cfg, func(c *conns) error {
		if err := c.openNATS(ctx, name); err != nil {
			return err
		}
		qctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
		defer cancel()
		var err error
		if c.q, err = queue.Setup(qctx, c.js, qcfg); err != nil {
			return fmt.Errorf("set up the queue on %s: %w", redactNATSURL(c.cfg.NATSURL), err)
		}
		if err := c.openStore(ctx); err != nil {
			return err
		}
		c.createBucket = true
		if _, err := c.blob(ctx); err != nil {
			return classifyRefused(c.cfg, err)
		}
		return nil
	})
}

// openConns gives open new connections for cfg to fill in (c.cfg is cfg
// with the dev credentials applied: open reads that, not its own copy);
// when open fails it closes what open had opened.
func openConns(cfg clientConfig, open func(c *conns) error) (*conns, error) {
	if err := cfg.useDevCredentials(); err != nil {
		return nil, settingError(err)
	}
	c := &conns{cfg: cfg}
	if err := open(c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *conns) openNATS(ctx context.Context, name string) error {
	opts, err := c.cfg.natsOptions()
	if err != nil {
		return settingError(err)
	}
	opts = append(opts, nats.Name(name), nats.Timeout(c.cfg.Timeout), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(false))
	c.nc, err = nats.Connect(c.cfg.NATSURL, opts...)
	if err != nil {
		if err := classifyRefused(c.cfg, err); errors.Is(err, ErrRefused) {
			return err
		}
		se := &serverError{server: "NATS", addr: redactNATSURL(c.cfg.NATSURL), what: "cannot connect to",
			hint: addressHint("NATS", "nats-url"), err: err}
		if !errors.Is(err, nats.ErrNoServers) && !isNetError(err) {
			return fmt.Errorf("connect to NATS at %s: %w", redactNATSURL(c.cfg.NATSURL), err)
		}
		return se
	}
	if c.js, err = jetstream.New(c.nc); err != nil {
		return fmt.Errorf("JetStream: %w", err)
	}
	return nil
}

func (c *conns) openStore(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var err error
	c.st, err = store.Open(ctx, store.Config{URI: c.cfg.MongoURI, Database: c.cfg.MongoDB,
		WriteConcern: c.cfg.MongoWC, ReadConcern: c.cfg.MongoRC})
	if errors.Is(err, store.ErrBadConfig) {
		return fmt.Errorf("--mongo-write-concern, --mongo-read-concern or --mongo-uri: %w", err)
	}
	if err != nil {
		return classifyRefused(c.cfg, classifyMongo(c.cfg, fmt.Errorf("connect to MongoDB at %s: %w", redactURI(c.cfg.MongoURI), err)))
	}
	return nil
}

// blob returns the S3 store, connecting on the first call.
func (c *conns) blob(ctx context.Context) (*blob.Store, error) {
	c.blobOnce.Do(func() {
		if c.blobs != nil {
			return
		}
		if err := probeS3(ctx, c.cfg); err != nil {
			c.blobErr = err
			return
		}
		bctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
		defer cancel()
		var err error
		c.blobs, err = blob.New(bctx, blob.Config{
			Endpoint:     c.cfg.S3Endpoint,
			Region:       c.cfg.S3Region,
			Bucket:       c.cfg.S3Bucket,
			AccessKey:    c.cfg.S3AccessKey,
			SecretKey:    c.cfg.S3SecretKey,
			PathStyle:    c.cfg.S3PathStyle,
			CreateBucket: c.createBucket,
		})
		if err != nil {
			c.blobErr = fmt.Errorf("connect to S3 at %s: %w", c.cfg.S3Endpoint, err)
		}
	})
	return c.blobs, c.blobErr
}

// classifyMongo turns a MongoDB server selection failure (the server went
// away, or never answered) into a serverError without the driver's
// topology dump. Other errors pass unchanged.
func classifyMongo(cfg clientConfig, err error) error {
	var se *serverError
	if err == nil || errors.As(err, &se) {
		return err
	}
	var sel topology.ServerSelectionError
	if !errors.As(err, &sel) {
		return err
	}
	var ae *auth.Error
	if errors.As(err, &ae) {
		return err
	}
	cause := sel.Wrapped
	if cause == nil {
		for _, s := range sel.Desc.Servers {
			if s.LastError != nil {
				cause = s.LastError
				break
			}
		}
	}
	what := "no answer from"
	if cause == nil {
		cause = errors.New("no server answered in time")
	}
	return &serverError{server: "MongoDB", addr: redactURI(cfg.MongoURI), what: what,
		hint: addressHint("MongoDB", "mongo-uri"), err: cause}
}

// probeMongo checks that one of the URI's hosts accepts a TCP connection.
// An SRV URI is left to the driver: its hosts come from DNS.
func probeMongo(ctx context.Context, cfg clientConfig) error {
	cs, err := connstring.Parse(cfg.MongoURI)
	if err != nil {
		return fmt.Errorf("--mongo-uri %s: %w", redactURI(cfg.MongoURI), err)
	}
	if cs.Scheme == connstring.SchemeMongoDBSRV {
		return nil
	}
	var hosts []string
	for _, h := range cs.Hosts {
		hosts = append(hosts, withPort(h, "27017"))
	}
	return probeTCP(ctx, hosts, reachTimeout, "MongoDB", redactURI(cfg.MongoURI), "mongo-uri")
}

func probeNATS(ctx context.Context, cfg clientConfig) error {
	var hosts []string
	for _, s := range splitNATSURLs(cfg.NATSURL) {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			// nats.go also takes host:port without a scheme.
			if u, err = url.Parse("nats://" + s); err != nil || u.Host == "" {
				return fmt.Errorf("--nats-url %q: want nats://host:port, or a comma-separated list of them", redactNATSURL(s))
			}
		}
		hosts = append(hosts, withPort(u.Host, "4222"))
	}
	if len(hosts) == 0 {
		return errors.New("--nats-url is empty: want nats://host:port, or a comma-separated list of them")
	}
	return probeTCP(ctx, hosts, reachTimeout, "NATS", redactNATSURL(cfg.NATSURL), "nats-url")
}

func probeS3(ctx context.Context, cfg clientConfig) error {
	if cfg.S3Endpoint == "" {
		return nil // AWS: the SDK resolves the endpoint
	}
	u, err := url.Parse(cfg.S3Endpoint)
	if err != nil || u.Host == "" {
		return fmt.Errorf("--s3-endpoint %q: want http(s)://host:port", cfg.S3Endpoint)
	}
	port := "80"
	if u.Scheme == "https" {
		port = "443"
	}
	return probeTCP(ctx, []string{withPort(u.Host, port)}, reachTimeout, "S3", cfg.S3Endpoint, "s3-endpoint")
}

// probeTCP returns nil as soon as one of hosts accepts a TCP connection, and
// a serverError when none does within timeout. The other dials are
// cancelled and awaited before it returns.
func probeTCP(ctx context.Context, hosts []string, timeout time.Duration, server, addr, flag string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	var dials sync.WaitGroup
	defer dials.Wait()
	defer cancel()
	errs := make(chan error, len(hosts))
	for _, h := range hosts {
		dials.Go(func() {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "tcp", h)
			if err == nil {
				conn.Close()
			}
			errs <- err
		})
	}
	var last error
	for range hosts {
		if last = <-errs; last == nil {
			return nil
		}
	}
	if errors.Is(last, context.DeadlineExceeded) {
		last = fmt.Errorf("no TCP connection within %s", timeout)
	} else if errno := syscall.Errno(0); errors.As(last, &errno) {
		last = errno // "connection refused", without the dial noise
	}
	return &serverError{server: server, addr: addr, what: "cannot reach", hint: addressHint(server, flag), err: last}
}

func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}

func withPort(hostport, port string) string {
	if _, _, err := net.SplitHostPort(hostport); err == nil {
		return hostport
	}
	return net.JoinHostPort(strings.Trim(hostport, "[]"), port)
}

// splitNATSURLs splits a comma-separated server list as nats.Connect does.
func splitNATSURLs(list string) []string {
	var out []string
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// redactURI hides a password in a URI for messages and logs.
func redactURI(uri string) string {
	u, err := url.Parse(uri)
	if err != nil || u.User == nil {
		return uri
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// redactNATSURL hides the passwords (or tokens) of a NATS server list.
func redactNATSURL(list string) string {
	parts := splitNATSURLs(list)
	for i, s := range parts {
		u, err := url.Parse(s)
		if err != nil || u.User == nil {
			continue
		}
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		} else {
			u.User = url.User("xxxxx") // a token
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}
