// Package devstacktest gives a test its own embedded NATS, MongoDB-wire and S3
// servers, on random loopback ports and in a temporary directory.
package devstacktest

import (
	"context"
	"testing"

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
