package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/client"
	"github.com/runnerd/runnerd/internal/testutil"
)

// TestNoGoroutineOutlivesACall: Wait and Watch, whether they end with the
// run or with their context, leave no goroutine behind (their
// subscriptions and timers end with the call): a long-lived service that
// waits for many runs does not grow.
func TestNoGoroutineOutlivesACall(t *testing.T) {
	w := newWorld(t)
	queued := w.submit("gl-queued", helloYAML, nil)
	ended := w.submit("gl-ended", helloYAML, nil)
	before := testutil.Goroutines()

	for _, call := range []func(ctx context.Context) error{
		func(ctx context.Context) error { _, err := w.c.Wait(ctx, queued.ID); return err },
		func(ctx context.Context) error {
			_, err := w.c.Watch(ctx, queued.ID, 0, func(client.Event) error { return nil })
			return err
		},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		err := call(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a call on a queued run under a 300ms deadline: %v, want the deadline", err)
		}
	}

	// A played runner ends the other run while Wait waits; its notice
	// ends the Wait.
	ctx := ctxT(t)
	done := make(chan error, 1)
	go func() {
		r, err := w.c.Wait(ctx, ended.ID)
		if err == nil && r.Status != runnerd.StatusFailed {
			err = errors.New("settled as " + string(r.Status))
		}
		done <- err
	}()
	if _, err := w.st.Claim(ctx, ended.ID, "played-runner", 1); err != nil {
		t.Fatal(err)
	}
	at, err := w.st.Finish(ctx, ended.ID, 1, runnerd.StatusFailed, runnerd.ReasonStepFailed, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := w.st.Get(ctx, ended.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.q.PublishNotice(r.Written(runnerd.StatusFailed, runnerd.ReasonStepFailed, at).Notice()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if _, err := w.c.Watch(ctx, ended.ID, 0, func(client.Event) error { return nil }); err != nil {
		t.Fatalf("Watch of a finished run: %v", err)
	}

	testutil.NoGoroutineLeft(t, 5*time.Second, before, "TestNoGoroutineOutlivesACall")
}
