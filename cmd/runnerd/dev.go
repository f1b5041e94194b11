//go:build !nodev

package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/runnerd/runnerd/devstack"
	"github.com/runnerd/runnerd/store"
)

func runDev(ctx context.Context, env *cmdEnv, args []string) int {
	var (
		cfg                         serveConfig
		data, host, credsFile       string
		natsPort, mongoPort, s3Port int
	)
	f := newFlags("dev", "usage: runnerd dev [flags]\n\nStarts an embedded NATS (JetStream), a MongoDB-wire server (FerretDB on SQLite) and an S3 server,\nall keeping their data under --data, then serves runs from them. Other `runnerd serve`\nprocesses can join with the printed URLs.", env.stderr)
	f.String(&data, "data", ".data", "directory of the embedded servers' data")
	f.String(&host, "host", "127.0.0.1", "address the embedded servers listen on")
	f.Int(&natsPort, "nats-port", 4222, "NATS port (0: any free port)")
	f.Int(&mongoPort, "mongo-port", 27017, "MongoDB-wire port (0: any free port)")
	f.Int(&s3Port, "s3-port", 9000, "S3 port (0: any free port)")
	f.String(&credsFile, "credentials", defaultCredentialsPath(), "where the client commands find the servers' credentials: written there when given, or when dev listens on the default addresses (always also in DATA/credentials.json)")
	cfg.register(f)
	cfg.ui.register(f, devUIAddr)
	if code, ok := parseOrExit(f, args, env.stderr); !ok {
		return code
	}
	cfg.sup.RunnerIDFallback = !f.Given("runner-id")
	if !cfg.reportInvalid("dev", env.stderr) {
		return exitUsage
	}
	log, err := cfg.logger(env.stderr)
	if err != nil {
		fmt.Fprintf(env.stderr, "dev: %v\n", err)
		return exitUsage
	}
	// Before the servers, so that a port in use stops dev before it touches
	// the data dir, as for the servers' own ports.
	if err := cfg.ui.listen(); err != nil {
		fmt.Fprintf(env.stderr, "dev: %v (UI)\n", err)
		return exitFailed
	}
	stack, err := devstack.Start(ctx, devstack.Config{
		Dir: data, Host: host, NATSPort: natsPort, MongoPort: mongoPort, S3Port: s3Port,
	})
	if err != nil {
		// One plain line: a data dir in use names its holder's pid, a port
		// in use names its server; nothing was written to the data then.
		fmt.Fprintf(env.stderr, "dev: %v\n", err)
		return exitFailed
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
	if f.Given("credentials") || (host == devstack.DefaultHost && natsPort == 4222 && mongoPort == 27017 && s3Port == 9000) {
		if err := devstack.WriteCredentials(credsFile, stack.Credentials()); err != nil {
			fmt.Fprintf(env.stderr, "dev: %v\n", err)
			return exitFailed
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

Submit a run from another terminal:
  bin/runnerd submit examples/hello.yaml --wait
%s
`, stack.Dir(), stack.NATSURL, stack.MongoURI, stack.S3Endpoint, stack.S3Bucket, stack.S3AccessKey, stack.S3SecretKey, own, where, uiBanner(&cfg.ui))
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

// uiBanner is the banner's line about the web UI.
func uiBanner(c *uiConfig) string {
	if c.ln == nil {
		return "\nNo web UI (--ui-addr is empty).\n"
	}
	return "\nWeb UI and JSON API (/api/v1/): " + c.url() + "\n"
}
