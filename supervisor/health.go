package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Health is the watchdog behind /healthz and /readyz. Each loop that must
// keep turning (the consumer loop, the monitor of each running child, which
// heartbeats its lease) beats under its own name; a name silent for longer
// than the stall timeout makes the process unhealthy, since a wedged loop
// stops fetching or lets leases expire while the process still answers TCP.
type Health struct {
	stallAfter    time.Duration
	natsDownAfter time.Duration
	now           func() time.Time

	mu            sync.Mutex
	beats         map[string]time.Time
	notReady      string    // why the process is not ready; "" when it is
	natsDownSince time.Time // zero while connected (or not watched)
}

// Defaults of the watchdog's thresholds (`runnerd serve --stall-timeout`,
// `--nats-down-timeout`). NATS being away does not stop running runs (they
// wait for it), so a restart for it only helps a connection that will not
// recover: the threshold is long. A healthy consumer loop beats at least every fetch
// wait (5 s) and a monitor every ping interval (5 s).
const (
	DefaultStallTimeout    = time.Minute
	DefaultNATSDownTimeout = 10 * time.Minute
)

// NewHealth returns a watchdog: stallAfter is how long a loop may stay
// silent, natsDownAfter how long NATS may stay disconnected before the
// process is unhealthy. It starts not ready ("starting").
func NewHealth(stallAfter, natsDownAfter time.Duration) *Health {
	return &Health{
		stallAfter:    stallAfter,
		natsDownAfter: natsDownAfter,
		now:           time.Now,
		beats:         map[string]time.Time{},
		notReady:      "starting",
	}
}

// Beat records progress of the loop called name.
func (h *Health) Beat(name string) {
	h.mu.Lock()
	h.beats[name] = h.now()
	h.mu.Unlock()
}

// Forget stops watching a loop that ended on purpose.
func (h *Health) Forget(name string) {
	h.mu.Lock()
	delete(h.beats, name)
	h.mu.Unlock()
}

// SetNotReady marks the process not ready for the reason given ("" makes
// it ready).
func (h *Health) SetNotReady(reason string) {
	h.mu.Lock()
	h.notReady = reason
	h.mu.Unlock()
}

// WatchNATS follows the connection's status until ctx ends: a connection
// down (reconnecting, closed) past the threshold makes the process unhealthy
// and, at once, not ready.
func (h *Health) WatchNATS(ctx context.Context, nc *nats.Conn) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		h.observeNATS(nc.Status() == nats.CONNECTED)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (h *Health) observeNATS(connected bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case connected:
		h.natsDownSince = time.Time{}
	case h.natsDownSince.IsZero():
		h.natsDownSince = h.now()
	}
}

// Live is nil when the process is healthy, else an error naming each stuck
// part (one per line).
func (h *Health) Live() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	var stuck []string
	for name, last := range h.beats {
		if silent := now.Sub(last); silent > h.stallAfter {
			stuck = append(stuck, fmt.Sprintf("%s: no progress for %s", name, silent.Round(time.Second)))
		}
	}
	sort.Strings(stuck)
	if !h.natsDownSince.IsZero() {
		if down := now.Sub(h.natsDownSince); down > h.natsDownAfter {
			stuck = append(stuck, fmt.Sprintf("nats: disconnected for %s", down.Round(time.Second)))
		}
	}
	if len(stuck) == 0 {
		return nil
	}
	return errors.New(strings.Join(stuck, "\n"))
}

// Ready is nil when the process takes runs: its queue, consumer, lease
// bucket and indexes are set up, it is not draining and NATS is connected.
func (h *Health) Ready() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.notReady != "":
		return errors.New(h.notReady)
	case !h.natsDownSince.IsZero():
		return errors.New("nats: disconnected")
	}
	return nil
}

// OpsHandler serves /metrics from g, and /healthz and /readyz from h:
// 200 "ok", or 503 with the reason in the body.
func OpsHandler(h *Health, g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	probe := func(check func() error) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			if err := check(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintln(w, err)
				return
			}
			fmt.Fprintln(w, "ok")
		}
	}
	mux.Handle("GET /healthz", probe(h.Live))
	mux.Handle("GET /readyz", probe(h.Ready))
	return mux
}
