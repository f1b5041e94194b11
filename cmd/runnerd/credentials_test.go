package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/devstack"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/queue"
)

// plainEnv points the commands at e's servers with addresses only (no
// credentials), and at an empty config dir, so that no credentials file is
// found unless the test names one.
func (e *testEnv) plainEnv(t *testing.T) devstack.Credentials {
	t.Helper()
	c := e.stack.Credentials()
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("RUNNERD_NATS_URL", c.NATSURL)
	t.Setenv("RUNNERD_MONGO_URI", c.MongoURI)
	t.Setenv("RUNNERD_S3_ENDPOINT", c.S3Endpoint)
	t.Setenv("RUNNERD_S3_ACCESS_KEY", "")
	t.Setenv("RUNNERD_S3_SECRET_KEY", "")
	return c
}

// finishedWithLog makes a succeeded run whose step greet has a log in S3.
func (e *testEnv) finishedWithLog(id string) {
	e.t.Helper()
	e.submitted(id, helloYAML)
	e.claim(id, 1)
	key := blob.StepLogKey(id, 1, "greet")
	if _, err := e.c.blobs.Put(ctxT(e.t), key, strings.NewReader("hello\n")); err != nil {
		e.t.Fatal(err)
	}
	steps := runnerd.StepStates{"greet": {Status: runnerd.StepSucceeded, Reason: runnerd.StepReasonCompleted, Attempts: 1, LogKey: key}}
	if _, err := e.c.st.Finish(ctxT(e.t), id, 1, runnerd.StatusSucceeded, runnerd.ReasonCompleted, steps); err != nil {
		e.t.Fatal(err)
	}
}

// TestClientsWithoutCredentialsAreRefused: each server refuses a client
// that has none of its credentials, with exit 77 and a hint.
func TestClientsWithoutCredentialsAreRefused(t *testing.T) {
	e := startEnv(t)
	e.finishedWithLog("cred-1")
	c := e.plainEnv(t)

	r := e.mustRun(cli.ExitNoPerm, "status", "cred-1")
	if !strings.Contains(r.stderr, "MongoDB at "+c.MongoURI+" refused the credentials") || !strings.Contains(r.stderr, "--credentials") {
		t.Errorf("status without MongoDB credentials: %q", r.stderr)
	}
	t.Setenv("RUNNERD_MONGO_URI", e.stack.MongoURI)
	r = e.mustRun(cli.ExitNoPerm, "submit", writeFile(t, "wf.yaml", helloYAML))
	if !strings.Contains(r.stderr, "NATS at "+c.NATSURL+" refused the credentials: nats: ") {
		t.Errorf("submit without NATS credentials: %q", r.stderr)
	}
	r = e.mustRun(cli.ExitNoPerm, "logs", "cred-1")
	if !strings.Contains(r.stderr, "S3 at "+c.S3Endpoint+" refused the credentials") || !strings.Contains(r.stderr, "--s3-access-key") {
		t.Errorf("logs without S3 keys: %q", r.stderr)
	}
	t.Setenv("RUNNERD_S3_ACCESS_KEY", e.stack.S3AccessKey)
	t.Setenv("RUNNERD_S3_SECRET_KEY", "wrong")
	if r := e.mustRun(cli.ExitNoPerm, "logs", "cred-1"); !strings.Contains(r.stderr, "SignatureDoesNotMatch") {
		t.Errorf("logs with a wrong S3 secret: %q", r.stderr)
	}
}

// TestClientsUseTheCredentialsFile: with addresses only, the commands take
// the secrets from the stack's credentials file, for the servers it names.
func TestClientsUseTheCredentialsFile(t *testing.T) {
	e := startEnv(t)
	e.finishedWithLog("cred-2")
	c := e.plainEnv(t)
	file := filepath.Join(t.TempDir(), "creds.json")
	if err := devstack.WriteCredentials(file, c); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RUNNERD_CREDENTIALS", file)
	e.mustRun(cli.ExitOK, "status", "cred-2")
	if r := e.mustRun(cli.ExitOK, "logs", "cred-2", "--step", "greet"); r.stdout != "hello\n" {
		t.Errorf("logs = %q", r.stdout)
	}
	e.mustRun(cli.ExitOK, "submit", writeFile(t, "wf.yaml", helloYAML), "--id", "cred-3")
	e.fetchOne()
	e.mustRun(cli.ExitOK, "cancel", "cred-3")

	// "localhost" is the same loopback server as 127.0.0.1.
	t.Setenv("RUNNERD_MONGO_URI", strings.Replace(c.MongoURI, "127.0.0.1", "localhost", 1))
	e.mustRun(cli.ExitOK, "status", "cred-2")

	// Secrets go only to the servers the file names.
	other := c
	other.MongoURI = "mongodb://127.0.0.1:1/"
	if err := devstack.WriteCredentials(file, other); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RUNNERD_MONGO_URI", c.MongoURI)
	e.mustRun(cli.ExitNoPerm, "status", "cred-2")

	// Credentials given explicitly win over the file's.
	if err := devstack.WriteCredentials(file, c); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RUNNERD_MONGO_URI", strings.Replace(e.stack.MongoURI, c.MongoPassword, "wrong", 1))
	e.mustRun(cli.ExitNoPerm, "status", "cred-2")

	// A file asked for that is not there is an error; the default one
	// missing is not.
	t.Setenv("RUNNERD_MONGO_URI", e.stack.MongoURI)
	t.Setenv("RUNNERD_CREDENTIALS", filepath.Join(t.TempDir(), "nope.json"))
	if r := e.mustRun(cli.ExitUsage, "status", "cred-2"); !strings.Contains(r.stderr, "--credentials") {
		t.Errorf("missing file: %q", r.stderr)
	}
	os.Unsetenv("RUNNERD_CREDENTIALS")
	e.mustRun(cli.ExitOK, "status", "cred-2")
}

// TestNATSUserAndNkeyFlags: --nats-user/--nats-password and --nats-nkey
// reach a NATS server that requires them.
func TestNATSUserAndNkeyFlags(t *testing.T) {
	e := startEnv(t)
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	seedFile := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true,
		Users: []*server.User{{Username: "alice", Password: "s3cret"}},
		Nkeys: []*server.NkeyUser{{Nkey: pub}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo("alice", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := queue.Setup(ctx, js, queue.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RUNNERD_NATS_URL", ns.ClientURL())
	file := writeFile(t, "wf.yaml", helloYAML)
	e.mustRun(cli.ExitNoPerm, "submit", file)
	e.mustRun(cli.ExitNoPerm, "submit", file, "--nats-user", "alice", "--nats-password", "wrong")
	e.mustRun(cli.ExitOK, "submit", file, "--nats-user", "alice", "--nats-password", "s3cret")
	e.mustRun(cli.ExitOK, "submit", file, "--nats-nkey", seedFile)
	if r := e.mustRun(cli.ExitUsage, "submit", file, "--nats-nkey", filepath.Join(t.TempDir(), "none")); !strings.Contains(r.stderr, "--nats-nkey") {
		t.Errorf("missing seed file: %q", r.stderr)
	}
}

func TestSameAddr(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"127.0.0.1:4222", "127.0.0.1:4222", true},
		{"localhost:4222", "127.0.0.1:4222", true},
		{"[::1]:4222", "127.0.0.1:4222", true},
		{"0.0.0.0:4222", "127.0.0.1:4222", true},
		{"127.0.0.1:4223", "127.0.0.1:4222", false},
		{"nats.example:4222", "127.0.0.1:4222", false},
		{"nats.example:4222", "nats.example:4222", true},
		{"", "127.0.0.1:4222", false},
	} {
		if got := sameAddr(tc.a, tc.b); got != tc.want {
			t.Errorf("sameAddr(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
	if !natsServersMatch("nats://a.example:4222, 127.0.0.1:4222", "nats://127.0.0.1:4222") {
		t.Error("a list with the dev server does not match")
	}
	if natsServersMatch("nats://a.example:4222", "nats://127.0.0.1:4222") {
		t.Error("another server matches")
	}
}
