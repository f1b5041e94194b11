// Package proto is the seam between runnerd and its runexec children: the
// gRPC service (runexec/v1), the go-plugin handshake, and adapters so the
// rest of the code sees the Executor interface, never gRPC.
//
// The supervisor starts a child with Start and calls Execute on it; runexec
// calls Serve with a Local executor when go-plugin started it.
package child

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/workflow"
)

// Handshake is the go-plugin handshake between runnerd and runexec. The
// cookie is not security: it only tells runexec it was started as a child.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "RUNNERD_RUNEXEC_PLUGIN",
	MagicCookieValue: "d7c2a0a4-runexec-v1",
}

// MaxBatch bounds the events of one EventBatch the child sends, and of one
// emit call on the supervisor's side. Batching keeps the stream cheap when a
// step floods its output; a lone event still goes out at once.
const MaxBatch = 256

// pluginName is the one plugin runexec serves.
const pluginName = "executor"

// IsChild reports whether this process was started by runnerd as a plugin.
func IsChild(getenv func(string) string) bool {
	return getenv(Handshake.MagicCookieKey) == Handshake.MagicCookieValue
}

// Request is everything a child needs to execute one run. It carries no
// credential: the child speaks only to its parent.
type Request struct {
	RunID     string
	Workflow  *workflow.Workflow
	Vars      map[string]string
	State     runnerd.StepStates
	Answers   map[string]map[string]string
	Workdir   string
	LogDir    string
	Deadline  time.Time
	LogLimit  int64
	KillGrace time.Duration
	// LogEventLimit bounds the output of a step sent as log events (the log
	// file keeps all of it, up to LogLimit); 0: no bound.
	LogEventLimit int64
	// Env is set for every step over the child's environment (the run's
	// HOME and TMPDIR when the child was started before the run).
	Env map[string]string
	// Secrets are the run's secrets by name (see executor.Options.Secrets).
	Secrets map[string]string
}

// Executor executes one run and streams its events, in batches, to emit.
// Execute returns nil only when the stream ended cleanly; the run's outcome
// is in its run_finished event. An error from emit aborts the run.
type Executor interface {
	Execute(ctx context.Context, req *Request, emit func([]runnerd.Event) error) error
	// Cancel asks a running Execute to stop its steps and finish early.
	Cancel(ctx context.Context, reason string) error
}

func encodeJSON(v any, what string) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", what, err)
	}
	return b, nil
}
