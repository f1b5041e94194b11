package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/devstack"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
)

// clientConfig is how every subcommand reaches NATS, MongoDB and S3. The
// defaults are where `runnerd dev` listens.
type clientConfig struct {
	NATSURL     string
	MongoURI    string
	MongoDB     string
	S3Endpoint  string
	S3Bucket    string
	S3Region    string
	S3AccessKey string
	S3SecretKey string
	S3PathStyle bool
	Tenant      string
	Timeout     time.Duration
}

func (c *clientConfig) register(f *flags) {
	f.String(&c.NATSURL, "nats-url", "nats://127.0.0.1:4222", "NATS server URL")
	f.String(&c.MongoURI, "mongo-uri", "mongodb://127.0.0.1:27017", "MongoDB URI")
	f.String(&c.MongoDB, "mongo-db", store.DefaultDatabase, "MongoDB database")
	f.String(&c.S3Endpoint, "s3-endpoint", "http://127.0.0.1:9000", "S3 endpoint URL (empty: AWS)")
	f.String(&c.S3Bucket, "s3-bucket", devstack.DefaultBucket, "S3 bucket for logs and artifacts")
	f.String(&c.S3Region, "s3-region", "us-east-1", "S3 region")
	f.String(&c.S3AccessKey, "s3-access-key", "", "S3 access key (empty: the AWS default chain; a loopback endpoint gets the dev keys)")
	f.String(&c.S3SecretKey, "s3-secret-key", "", "S3 secret key")
	f.Bool(&c.S3PathStyle, "s3-path-style", true, "path-style S3 addressing (MinIO, devstack)")
	f.String(&c.Tenant, "tenant", "default", "tenant id of submitted runs")
	f.Duration(&c.Timeout, "connect-timeout", 10*time.Second, "timeout to connect to each server")
}

// conns are the open connections of one command.
type conns struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	q     *queue.Queue
	st    *store.Store
	blobs *blob.Store
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

// connect opens NATS (and sets up the queue idempotently), MongoDB and S3.
func connect(ctx context.Context, cfg clientConfig, qcfg queue.Config, name string) (*conns, error) {
	c := &conns{}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	var err error
	c.nc, err = nats.Connect(cfg.NATSURL, nats.Name(name), nats.Timeout(cfg.Timeout),
		nats.MaxReconnects(-1), nats.RetryOnFailedConnect(false))
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", cfg.NATSURL, err)
	}
	if c.js, err = jetstream.New(c.nc); err != nil {
		return nil, fmt.Errorf("JetStream: %w", err)
	}
	if c.q, err = queue.Setup(ctx, c.js, qcfg); err != nil {
		return nil, fmt.Errorf("set up the queue on %s: %w", cfg.NATSURL, err)
	}
	if c.st, err = store.Open(ctx, store.Config{URI: cfg.MongoURI, Database: cfg.MongoDB}); err != nil {
		return nil, fmt.Errorf("connect to MongoDB at %s: %w", redactURI(cfg.MongoURI), err)
	}
	access, secret := cfg.S3AccessKey, cfg.S3SecretKey
	if access == "" && secret == "" && isLoopback(cfg.S3Endpoint) {
		access, secret = devstack.S3AccessKey, devstack.S3SecretKey
	}
	c.blobs, err = blob.New(ctx, blob.Config{
		Endpoint:     cfg.S3Endpoint,
		Region:       cfg.S3Region,
		Bucket:       cfg.S3Bucket,
		AccessKey:    access,
		SecretKey:    secret,
		PathStyle:    cfg.S3PathStyle,
		CreateBucket: true,
	})
	if err != nil {
		return nil, fmt.Errorf("connect to S3 at %s: %w", cfg.S3Endpoint, err)
	}
	ok = true
	return c, nil
}

func isLoopback(endpoint string) bool {
	u, err := url.Parse(endpoint)
	if err != nil {
		return false
	}
	h := u.Hostname()
	return h == "localhost" || strings.HasPrefix(h, "127.") || h == "::1"
}

// redactURI hides a password in a MongoDB URI for error messages.
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
