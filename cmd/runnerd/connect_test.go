package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/queue"
)

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// fleetSettings reads back what the fleet's runnerd processes set up.
type fleetSettings struct {
	consumer jetstream.ConsumerConfig
	stream   jetstream.StreamConfig
	bucket   jetstream.KeyValueStatus
}

func readFleetSettings(t *testing.T, e *testEnv) fleetSettings {
	t.Helper()
	ctx := ctxT(t)
	qcfg := e.c.q.Config()
	s, err := e.c.js.Stream(ctx, qcfg.Stream)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	c, err := s.Consumer(ctx, qcfg.Consumer)
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	kv, err := e.c.js.KeyValue(ctx, qcfg.LeaseBucket)
	if err != nil {
		t.Fatalf("bucket: %v", err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatalf("bucket status: %v", err)
	}
	return fleetSettings{consumer: c.CachedInfo().Config, stream: s.CachedInfo().Config, bucket: st}
}

// TestClientsLeaveTheFleetSettings: a fleet set up with other limits than
// the defaults keeps them after every client command has run against it
// (they used to set the queue up again with their own defaults).
func TestClientsLeaveTheFleetSettings(t *testing.T) {
	qcfg := queue.DefaultConfig()
	qcfg.MaxDeliver, qcfg.LeaseTTL, qcfg.AckWait = 2, 9*time.Second, 50*time.Second
	e := startEnvWith(t, qcfg)
	before := readFleetSettings(t, e)
	if before.consumer.MaxDeliver != 2 || before.consumer.AckWait != 50*time.Second || before.bucket.TTL() != 9*time.Second {
		t.Fatalf("set up with max deliver %d, ack wait %s, TTL %s", before.consumer.MaxDeliver, before.consumer.AckWait, before.bucket.TTL())
	}

	e.mustRun(cli.ExitNotFound, "status", "x")
	e.mustRun(cli.ExitOK, "list")
	id := e.submitted("fleet-1", approvalYAML)
	e.mustRun(cli.ExitOK, "status", id)
	e.pause(id, 1)
	e.mustRun(cli.ExitOK, "resume", id, "--answer", "approve.ok=yes")
	e.mustRun(cli.ExitOK, "logs", id)
	e.mustRun(cli.ExitOK, "cancel", id)

	after := readFleetSettings(t, e)
	if after.consumer.MaxDeliver != before.consumer.MaxDeliver || after.consumer.AckWait != before.consumer.AckWait ||
		after.consumer.MaxAckPending != before.consumer.MaxAckPending || after.consumer.Description != before.consumer.Description {
		t.Errorf("consumer changed by the clients:\n before %+v\n after  %+v", before.consumer, after.consumer)
	}
	if after.bucket.TTL() != before.bucket.TTL() || after.bucket.History() != before.bucket.History() {
		t.Errorf("lease bucket changed by the clients: TTL %s -> %s, history %d -> %d",
			before.bucket.TTL(), after.bucket.TTL(), before.bucket.History(), after.bucket.History())
	}
	if after.stream.Duplicates != before.stream.Duplicates || after.stream.Replicas != before.stream.Replicas ||
		after.stream.Description != before.stream.Description {
		t.Errorf("stream changed by the clients:\n before %+v\n after  %+v", before.stream, after.stream)
	}
}

// TestClientsNeedOnlyWhatTheyUse: status, list and logs --follow read only
// MongoDB, so they work with NATS and S3 down; logs of a finished run needs
// S3 and says so; submit needs NATS and says so.
func TestClientsNeedOnlyWhatTheyUse(t *testing.T) {
	e := startEnv(t)
	id := e.submitted("only-1", helloYAML)
	e.claim(id, 1)
	key := blob.StepLogKey(id, 1, "greet")
	if _, err := e.c.blobs.Put(ctxT(t), key, strings.NewReader("hello\n")); err != nil {
		t.Fatal(err)
	}
	steps := runnerd.StepStates{"greet": {Status: runnerd.StepSucceeded, Reason: runnerd.StepReasonCompleted, Attempts: 1, LogKey: key}}
	if _, err := e.c.st.Finish(ctxT(t), id, 1, runnerd.StatusSucceeded, runnerd.ReasonCompleted, steps); err != nil {
		t.Fatal(err)
	}
	natsDown, s3Down := "nats://"+closedPort(t), "http://"+closedPort(t)
	t.Setenv("RUNNERD_NATS_URL", natsDown)
	t.Setenv("RUNNERD_S3_ENDPOINT", s3Down)

	if r := e.mustRun(cli.ExitOK, "status", id); !strings.Contains(r.stdout, "succeeded") {
		t.Errorf("status with NATS and S3 down:\n%s", r.stdout)
	}
	if r := e.mustRun(cli.ExitOK, "list"); !strings.Contains(r.stdout, id) {
		t.Errorf("list with NATS and S3 down:\n%s", r.stdout)
	}
	if r := e.mustRun(cli.ExitOK, "status", id, "--json"); !strings.Contains(r.stdout, `"status": "succeeded"`) {
		t.Errorf("status --json with NATS and S3 down:\n%s", r.stdout)
	}
	r := e.mustRun(cli.ExitUnavailable, "logs", id)
	if !strings.Contains(r.stderr, "cannot reach S3 at "+s3Down) || !strings.Contains(r.stderr, "RUNNERD_S3_ENDPOINT") {
		t.Errorf("logs with S3 down: stderr %q", r.stderr)
	}
	r = e.mustRun(cli.ExitUnavailable, "submit", writeFile(t, "wf.yaml", helloYAML))
	if !strings.Contains(r.stderr, "cannot reach NATS at "+natsDown) || !strings.Contains(r.stderr, "--nats-url or RUNNERD_NATS_URL") {
		t.Errorf("submit with NATS down: stderr %q", r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("submit with NATS down printed a run id: %q", r.stdout)
	}
}

// TestClientWithoutMongoDB: every client command against an address where
// no MongoDB listens exits with the unavailable code, names the server, the
// address and how to change it, and prints no driver topology dump.
func TestClientWithoutMongoDB(t *testing.T) {
	e := startEnv(t)
	addr := closedPort(t)
	t.Setenv("RUNNERD_MONGO_URI", "mongodb://runnerd:s3cret@"+addr+"/")
	file := writeFile(t, "wf.yaml", helloYAML)
	for _, args := range [][]string{
		{"status", "x"}, {"list"}, {"logs", "x"}, {"cancel", "x"},
		{"resume", "x", "--answer", "a.b=c"}, {"submit", file},
	} {
		r := e.mustRun(cli.ExitUnavailable, args...)
		want := "cannot reach MongoDB at mongodb://runnerd:xxxxx@" + addr + "/: connection refused"
		if !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "--mongo-uri or RUNNERD_MONGO_URI") {
			t.Errorf("%s: stderr %q, want %q and the flag", args[0], r.stderr, want)
		}
		if strings.Contains(r.stderr, "topology") || strings.Contains(r.stderr, "s3cret") {
			t.Errorf("%s: stderr has the driver's topology dump or the password: %q", args[0], r.stderr)
		}
	}
}

// TestClientWithoutStream: a NATS on which no runnerd set the queue up is
// reported as such, and nothing is created on it.
func TestClientWithoutStream(t *testing.T) {
	e := startEnv(t)
	if err := e.c.js.DeleteStream(ctxT(t), queue.DefaultConfig().Stream); err != nil {
		t.Fatal(err)
	}
	r := e.mustRun(cli.ExitUnavailable, "submit", writeFile(t, "wf.yaml", helloYAML))
	want := "no stream RUNNERD_RUNS on " + redactNATSURL(e.stack.NATSURL) + ": is runnerd serve or dev running?"
	if !strings.Contains(r.stderr, want) {
		t.Errorf("stderr %q, want %q", r.stderr, want)
	}
	if _, err := e.c.js.Stream(ctxT(t), queue.DefaultConfig().Stream); err == nil {
		t.Error("the client created the stream")
	}
	if _, err := e.c.js.Consumer(ctxT(t), queue.DefaultConfig().Stream, queue.DefaultConfig().Consumer); err == nil {
		t.Error("the client created the consumer")
	}
}

// TestNATSServerList: --nats-url takes a comma-separated list; a server of
// the list that is down does not stop the command.
func TestNATSServerList(t *testing.T) {
	e := startEnv(t)
	t.Setenv("RUNNERD_NATS_URL", "nats://"+closedPort(t)+", "+e.stack.NATSURL)
	e.mustRun(cli.ExitOK, "submit", writeFile(t, "wf.yaml", helloYAML), "--id", "list-1")
	e.fetchOne()
	e.mustRun(cli.ExitOK, "cancel", "list-1")

	t.Setenv("RUNNERD_NATS_URL", "nats://"+closedPort(t)+",nats://"+closedPort(t))
	r := e.mustRun(cli.ExitUnavailable, "submit", writeFile(t, "wf.yaml", helloYAML))
	if !strings.Contains(r.stderr, "cannot reach NATS") {
		t.Errorf("stderr %q", r.stderr)
	}
}

func TestRedactNATSURL(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                          "nats://127.0.0.1:4222",
		"nats://u:pw@a:4222,nats://u:pw@b:4222":          "nats://u:xxxxx@a:4222,nats://u:xxxxx@b:4222",
		"nats://tok3n@a:4222, nats://b:4222":             "nats://xxxxx@a:4222,nats://b:4222",
		"tls://u:p%40ss@a.example:4222,tls://b:4222,":    "tls://u:xxxxx@a.example:4222,tls://b:4222",
		"nats://a:4222,nats://b:4222,nats://c:4222":      "nats://a:4222,nats://b:4222,nats://c:4222",
		"nats://u:pw@" + net.JoinHostPort("::1", "4222"): "nats://u:xxxxx@[::1]:4222",
	} {
		if got := redactNATSURL(in); got != want {
			t.Errorf("redactNATSURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestProbeTCP: one reachable host is enough; none is a serverError.
func TestProbeTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	down := closedPort(t)
	if err := probeTCP(context.Background(), []string{down, ln.Addr().String()}, time.Second, "NATS", "x", "nats-url"); err != nil {
		t.Errorf("one host up: %v", err)
	}
	err = probeTCP(context.Background(), []string{down}, time.Second, "NATS", "nats://"+down, "nats-url")
	if cli.Code(err) != cli.ExitUnavailable || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("host down: %v (exit %d)", err, cli.Code(err))
	}
	for in, want := range map[string]string{"127.0.0.1": "127.0.0.1:4222", "[::1]": "[::1]:4222", "h:1": "h:1", "[::1]:5": "[::1]:5"} {
		if got := withPort(in, "4222"); got != want {
			t.Errorf("withPort(%q) = %q, want %q", in, got, want)
		}
	}
}
