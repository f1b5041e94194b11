package supervisor

import (
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// connClock follows the NATS connection: since when it has been up. The
// pickup uses it to tell "NATS just came back" (leases of running runs may
// have been dropped and not re-taken yet) from a connection that has been
// up for a while.
type connClock struct {
	mu    sync.Mutex
	since time.Time // zero while disconnected
}

// watch starts following nc (connected now) and returns the function that
// stops following it and waits for the follower to end.
func (c *connClock) watch(nc *nats.Conn) (stop func()) {
	c.set(nc.IsConnected())
	ch := nc.StatusChanged(nats.CONNECTED, nats.RECONNECTING, nats.DISCONNECTED, nats.CLOSED)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for st := range ch { // closed by RemoveStatusListener
			c.set(st == nats.CONNECTED)
		}
	}()
	return func() { nc.RemoveStatusListener(ch); <-done }
}

func (c *connClock) set(connected bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case !connected:
		c.since = time.Time{}
	case c.since.IsZero():
		c.since = time.Now()
	}
}

// connectedFor is how long the connection has been up (0 when it is down
// or not watched).
func (c *connClock) connectedFor() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.since.IsZero() {
		return 0
	}
	return time.Since(c.since)
}
