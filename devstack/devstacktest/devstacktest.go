// Package devstacktest gives a test its own embedded NATS, MongoDB-wire and S3
// servers, on random loopback ports and in a temporary directory.
package devstacktest

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/runnerd/runnerd/devstack"
)

// Start starts a fresh stack for t and stops it when t ends.
func Start(t testing.TB) *devstack.Stack {
	t.Helper()
	s, err := devstack.Start(context.Background(), devstack.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("devstack: %v", err)
	}
	// Registered after TempDir, so it runs before the directory is removed.
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("devstack close: %v", err)
		}
	})
	return s
}

// JetStream connects to the NATS server(s) at url with opts, closes the
// connection when t ends, and returns it with its JetStream.
func JetStream(t testing.TB, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect to NATS at %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("JetStream: %v", err)
	}
	return nc, js
}
