//go:build !nodev

package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/runnerd/runnerd/devstack"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/store"
)

func devCmd(env *cmdEnv) *cobra.Command {
	var (
		cfg serveConfig
		dc  devConfig
	)
	c := &cobra.Command{
		Use:   "dev [flags]",
		Short: "embedded NATS, MongoDB-wire and S3 servers plus serve, in one process",
		Long: `Starts an embedded NATS (JetStream), a MongoDB-wire server (FerretDB on SQLite) and an S3 server,
all keeping their data under --data, then serves runs from them. Other "runnerd serve"
processes can join with the printed URLs; --no-serve starts only the servers, for them.`,
		Args: cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			fs := c.Flags()
			cfg.sup.RunnerIDFallback = !fs.Changed("runner-id")
			if !fs.Changed("metrics-addr") {
				cfg.metricsAddr = net.JoinHostPort(dc.host, "9090")
			}
			if !fs.Changed("log-format") && cli.IsTerminal(env.stderr) {
				cfg.logFormat = "console"
			}
			dc.credsGiven = fs.Changed("credentials")
			return dev(c.Context(), env, cfg, dc)
		},
	}
	f := cli.FlagsOf(c)
	f.String(&dc.data, "data", ".data", "directory of the embedded servers' data")
	f.String(&dc.host, "host", "127.0.0.1", "address the embedded servers listen on")
	f.Int(&dc.natsPort, "nats-port", 4222, "NATS port (0: any free port)")
	f.Int(&dc.mongoPort, "mongo-port", 27017, "MongoDB-wire port (0: any free port)")
	f.Int(&dc.s3Port, "s3-port", 9000, "S3 port (0: any free port)")
	f.String(&dc.credsFile, "credentials", defaultCredentialsPath(), "where the client commands find the servers' credentials: written there when given, or when dev listens on the default addresses (always also in DATA/credentials.json)")
	f.Bool(&dc.noServe, "no-serve", false, "start only the embedded servers, for runnerd serve processes to join (no supervisor in this process)").NoEnv()
	cfg.register(f)
	cfg.ui.register(f, devUIAddr)
	c.Flags().Lookup("metrics-addr").DefValue = "<--host>:9090"
	c.Flags().Lookup("log-format").DefValue = "console on a terminal, else json"
	return c
}

// devConfig is what dev reads besides the supervisor's settings.
type devConfig struct {
	data, host, credsFile       string
	natsPort, mongoPort, s3Port int
	credsGiven, noServe         bool
}

func dev(ctx context.Context, env *cmdEnv, cfg serveConfig, dc devConfig) error {
	if err := cfg.invalid(); err != nil {
		return err
	}
	log, err := cfg.logger(env.stderr)
	if err != nil {
		return cli.Usage(err)
	}
	if dc.noServe {
		cfg.ui.addr = "" // the UI is served by a supervisor
	}
	// Before the servers, so that a port in use stops dev before it touches
	// the data dir, as for the servers' own ports.
	if err := cfg.ui.listen(); err != nil {
		return fmt.Errorf("%w (UI)", err)
	}
	data, host, credsFile := dc.data, dc.host, dc.credsFile
	natsPort, mongoPort, s3Port := dc.natsPort, dc.mongoPort, dc.s3Port
	stack, err := devstack.Start(ctx, devstack.Config{
		Dir: data, Host: host, NATSPort: natsPort, MongoPort: mongoPort, S3Port: s3Port,
	})
	if err != nil {
		// One plain line: a data dir in use names its holder's pid, a port
		// in use names its server; nothing was written to the data then.
		return err
	}
	defer stack.Close()
	if err := indexDevStore(ctx, stack); err != nil {
		log.Warn().Err(err).Msg("index the embedded store: lookups by id stay slow")
	}

	cfg.client = clientConfig{
		NATSURL: stack.NATSURL, MongoURI: stack.MongoURI,
		S3Endpoint: stack.S3Endpoint, S3Bucket: stack.S3Bucket, S3Region: stack.S3Region,
		S3AccessKey: stack.S3AccessKey, S3SecretKey: stack.S3SecretKey, S3PathStyle: true,
		Tenant: "default", Timeout: 10 * time.Second,
	}
	own := filepath.Join(stack.Dir(), devstack.CredentialsFile)
	where := "RUNNERD_CREDENTIALS=" + own + " (export it for the client commands)"
	if dc.credsGiven || (host == devstack.DefaultHost && natsPort == 4222 && mongoPort == 27017 && s3Port == 9000) {
		if err := devstack.WriteCredentials(credsFile, stack.Credentials()); err != nil {
			return err
		}
		where = credsFile + ", where the client commands read them"
	}
	fmt.Fprintf(env.stderr, `runnerd dev: embedded servers ready (data in %s)
  RUNNERD_NATS_URL=%s
  RUNNERD_MONGO_URI=%s
  RUNNERD_S3_ENDPOINT=%s  RUNNERD_S3_BUCKET=%s
  RUNNERD_S3_ACCESS_KEY=%s RUNNERD_S3_SECRET_KEY=%s

Every server requires these credentials (made for this data dir, kept in %s);
they are also in %s.
A run's steps cannot read either file.

%s
`, stack.Dir(), stack.NATSURL, stack.MongoURI, stack.S3Endpoint, stack.S3Bucket, stack.S3AccessKey, stack.S3SecretKey, own, where, uiBanner(&cfg.ui))
	if dc.noServe {
		fmt.Fprintf(env.stderr, "--no-serve: no supervisor here; start runnerd serve with the variables above to run runs.\n\n")
		<-ctx.Done()
		return nil
	}
	fmt.Fprintf(env.stderr, "Submit a run from another terminal:\n  bin/runnerd submit examples/hello.yaml --wait\n\n")
	return serve(ctx, env, cfg)
}

// indexDevStore creates the store's collections (store.Open does) and then
// the index FerretDB's lookups by _id need (see devstack.IndexIDLookups).
func indexDevStore(ctx context.Context, stack *devstack.Stack) error {
	st, err := store.Open(ctx, store.Config{URI: stack.MongoURI})
	if err != nil {
		return err
	}
	defer st.Close(context.Background())
	return stack.IndexIDLookups(ctx)
}

// devUIAddr is where `runnerd dev` serves the UI unless told otherwise.
const devUIAddr = "127.0.0.1:8080"

// uiBanner is the banner's line about the web UI.
func uiBanner(c *uiConfig) string {
	if c.ln == nil {
		return "\nNo web UI (--ui-addr is empty).\n"
	}
	return "\nWeb UI and JSON API (/api/v1/): " + c.url() + "\n"
}

// url is the UI's address for people (after listen).
func (c *uiConfig) url() string {
	if c.ln == nil {
		return ""
	}
	return "http://" + c.ln.Addr().String() + "/"
}
