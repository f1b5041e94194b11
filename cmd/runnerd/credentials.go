package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	"github.com/nats-io/nats.go"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/auth"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"

	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/internal/devcreds"
)

// How the client commands find the credentials of a `runnerd dev` stack
// with no flags: dev writes them to a file only its user can read (the
// stack's own copy in the data dir, and, when it listens on the default
// addresses, the per-user file below), and a client uses the file's
// secrets for each server it names that is given no credentials of its
// own. A run's steps are sandboxed to their run dir and can read neither
// file. Explicit credentials (flags, variables, URLs) always win, and a
// file's secrets go only to the addresses it names, so a stale file never
// sends dev secrets to another server.

// defaultCredentialsPath is the per-user file the clients read by default:
// $XDG_CONFIG_HOME/runnerd/dev-credentials.json (~/.config/...).
func defaultCredentialsPath() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "runnerd", "dev-credentials.json")
}

// ErrRefused is wrapped by every error meaning a server refused the
// credentials (or their absence): exit 77 (EX_NOPERM of sysexits.h), since
// retrying will not help, the settings must change.
var ErrRefused = cli.ErrRefused

// refusedError says which server refused the credentials and how to give
// others.
type refusedError struct {
	server, addr, hint string
	err                error
}

func (e *refusedError) Error() string {
	return fmt.Sprintf("%s at %s refused the credentials: %v\n  %s", e.server, e.addr, e.err, e.hint)
}

func (e *refusedError) Unwrap() []error { return []error{ErrRefused, e.err} }

const credentialsHint = "for a runnerd dev stack, --credentials (RUNNERD_CREDENTIALS) names the credentials file it printed"

// useDevCredentials fills in, from the credentials file, the secrets of
// every server it names that has none given. A missing file is an error
// only when it was asked for (not the default path).
func (c *clientConfig) useDevCredentials() error {
	if c.Credentials == "" {
		return nil
	}
	creds, err := devcreds.Read(c.Credentials)
	if errors.Is(err, os.ErrNotExist) && c.Credentials == defaultCredentialsPath() {
		return nil
	}
	if err != nil {
		return fmt.Errorf("--credentials: %w", err)
	}
	if !c.natsHasCredentials() && natsServersMatch(c.NATSURL, creds.NATSURL) {
		c.NATSUser, c.NATSPassword = creds.NATSUser, creds.NATSPassword
	}
	if cs, err := connstring.Parse(c.MongoURI); err == nil && cs.Username == "" && cs.Scheme == connstring.SchemeMongoDB &&
		len(cs.Hosts) == 1 && mongoHostMatches(cs.Hosts[0], creds.MongoURI) {
		c.MongoURI = "mongodb://" + url.UserPassword(creds.MongoUser, creds.MongoPassword).String() + "@" +
			strings.TrimPrefix(c.MongoURI, "mongodb://")
	}
	if c.S3AccessKey == "" && c.S3SecretKey == "" && sameAddr(hostPortOf(c.S3Endpoint, "80"), hostPortOf(creds.S3Endpoint, "80")) {
		c.S3AccessKey, c.S3SecretKey = creds.S3AccessKey, creds.S3SecretKey
	}
	return nil
}

func (c *clientConfig) natsHasCredentials() bool {
	if c.NATSUser != "" || c.NATSCreds != "" || c.NATSNkey != "" {
		return true
	}
	for _, s := range splitNATSURLs(c.NATSURL) {
		if u, err := url.Parse(s); err == nil && u.User != nil {
			return true
		}
	}
	return false
}

// natsOptions are the connection options the NATS credentials settings ask
// for (a URL's own user info is read by nats.Connect).
func (c *clientConfig) natsOptions() ([]nats.Option, error) {
	var opts []nats.Option
	if c.NATSUser != "" || c.NATSPassword != "" {
		opts = append(opts, nats.UserInfo(c.NATSUser, c.NATSPassword))
	}
	if c.NATSCreds != "" {
		if _, err := os.Stat(c.NATSCreds); err != nil {
			return nil, fmt.Errorf("--nats-creds: %w", err)
		}
		opts = append(opts, nats.UserCredentials(c.NATSCreds))
	}
	if c.NATSNkey != "" {
		o, err := nats.NkeyOptionFromSeed(c.NATSNkey)
		if err != nil {
			return nil, fmt.Errorf("--nats-nkey %s: %w", c.NATSNkey, err)
		}
		opts = append(opts, o)
	}
	return opts, nil
}

func natsServersMatch(list, dev string) bool {
	want := hostPortOf(dev, "4222")
	for _, s := range splitNATSURLs(list) {
		if !strings.Contains(s, "://") {
			s = "nats://" + s
		}
		if sameAddr(hostPortOf(s, "4222"), want) {
			return true
		}
	}
	return false
}

func mongoHostMatches(host, devURI string) bool {
	cs, err := connstring.Parse(devURI)
	return err == nil && len(cs.Hosts) == 1 && sameAddr(withPort(host, "27017"), withPort(cs.Hosts[0], "27017"))
}

func hostPortOf(rawURL, defPort string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return ""
	}
	if u.Scheme == "https" && defPort == "80" {
		defPort = "443"
	}
	return withPort(u.Host, defPort)
}

// sameAddr compares host:port pairs, taking every loopback name as one.
func sameAddr(a, b string) bool {
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || pa != pb {
		return false
	}
	return ha == hb || (isLoopbackHost(ha) && isLoopbackHost(hb))
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	// A server on 0.0.0.0 or :: is reached on loopback too.
	return ip != nil && (ip.IsLoopback() || ip.IsUnspecified())
}

// classifyRefused turns a server's refusal of the credentials into a
// refusedError naming the server and how to set them; other errors pass.
func classifyRefused(cfg clientConfig, err error) error {
	var re *refusedError
	if err == nil || errors.As(err, &re) {
		return err
	}
	natsHint := "set them in the URL (nats://user:password@host), with --nats-user and --nats-password, --nats-creds or --nats-nkey; " + credentialsHint
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked):
		return &refusedError{server: "NATS", addr: redactNATSURL(cfg.NATSURL), hint: natsHint, err: err}
	}
	mongoHint := "set them in --mongo-uri (mongodb://user:password@host/) or RUNNERD_MONGO_URI; " + credentialsHint
	var ae *auth.Error
	var ce mongo.CommandError
	if errors.As(err, &ae) {
		return &refusedError{server: "MongoDB", addr: redactURI(cfg.MongoURI), hint: mongoHint, err: ae}
	}
	if errors.As(err, &ce) && (ce.Code == 13 || ce.Code == 18) {
		return &refusedError{server: "MongoDB", addr: redactURI(cfg.MongoURI), hint: mongoHint, err: err}
	}
	s3Hint := "set --s3-access-key and --s3-secret-key (RUNNERD_S3_ACCESS_KEY, RUNNERD_S3_SECRET_KEY) or the AWS default chain; " + credentialsHint
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden":
			return &refusedError{server: "S3", addr: cfg.S3Endpoint, hint: s3Hint, err: err}
		}
	}
	var he *awshttp.ResponseError
	if errors.As(err, &he) && he.HTTPStatusCode() == http.StatusForbidden {
		return &refusedError{server: "S3", addr: cfg.S3Endpoint, hint: s3Hint, err: err}
	}
	// No keys given and the AWS default chain found none: the SDK has no
	// typed error for it, only this wording of its signing middleware.
	if strings.Contains(err.Error(), "get identity: get credentials") {
		return &refusedError{server: "S3", addr: cfg.S3Endpoint, hint: s3Hint,
			err: errors.New("no S3 credentials: none given, and the AWS default chain found none")}
	}
	return err
}
