// Package httpapi is runnerd's JSON HTTP API over the runs of a fleet: the
// runs list (filtered, newest first, paginated by cursor), one run with its
// steps, its events (a page, or a live stream of server-sent events), step
// logs and artifacts from S3, and the actions cancel, resume and retry. The
// web UI (package webui) is its first client; the routes and shapes are
// documented in docs/operations.md ("HTTP API and web UI").
//
// The API reads and acts through the client package (the CLI's commands
// are built on it too), on the connections runnerd serve already holds; it
// keeps no state of its own.
package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/rs/zerolog"

	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/client"
	"github.com/runnerd/runnerd/store"
)

// Prefix is where the API is mounted.
const Prefix = "/api/v1/"

// Config is what the API reads and acts through.
type Config struct {
	// Client is the fleet's runs: read, followed, cancelled, resumed and
	// retried. It needs a Queue for the actions and for live streams.
	Client *client.Client
	Blobs  *blob.Store // artifacts
	Log    zerolog.Logger
}

// API serves the routes under Prefix.
type API struct {
	cfg Config
	mux *http.ServeMux
}

// New returns the API; it needs Client and Blobs.
func New(cfg Config) (*API, error) {
	if cfg.Client == nil || cfg.Blobs == nil {
		return nil, errors.New("httpapi: Config needs Client and Blobs")
	}
	a := &API{cfg: cfg, mux: http.NewServeMux()}
	a.routes()
	return a, nil
}

func (a *API) routes() {
	a.mux.HandleFunc("GET /api/v1/runs", a.listRuns)
	a.mux.HandleFunc("GET /api/v1/runs/{id}", a.getRun)
	a.mux.HandleFunc("GET /api/v1/runs/{id}/events", a.listEvents)
	a.mux.HandleFunc("GET /api/v1/runs/{id}/events/stream", a.streamEvents)
	a.mux.HandleFunc("GET /api/v1/runs/{id}/steps/{step}/log", a.stepLog)
	a.mux.HandleFunc("GET /api/v1/runs/{id}/artifacts", a.listArtifacts)
	a.mux.HandleFunc("GET /api/v1/runs/{id}/artifacts/{step}/{path...}", a.getArtifact)
	a.mux.HandleFunc("POST /api/v1/runs/{id}/cancel", a.cancel)
	a.mux.HandleFunc("POST /api/v1/runs/{id}/resume", a.resume)
	a.mux.HandleFunc("POST /api/v1/runs/{id}/retry", a.retry)
	a.mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no API route %s %s (see docs/operations.md, HTTP API)", r.Method, r.URL.Path))
	})
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	a.mux.ServeHTTP(w, r)
}

// apiError is the body of every error answer: the message as the CLI
// prints it (without the command's name).
type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, apiError{Error: err.Error()})
}

// statusOf maps a store or queue error to an HTTP status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, errBadRequest), errors.Is(err, client.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, errNoRun), errors.Is(err, client.ErrNotFound), errors.Is(err, blob.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, client.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, client.ErrUnreachable), store.IsUnavailable(err):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// fail answers err with its status and logs server-side failures.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := statusOf(err)
	if code >= 500 {
		a.cfg.Log.Error().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Int("code", code).Msg("http api")
	}
	writeError(w, code, err)
}

var (
	errBadRequest = errors.New("bad request")
	errNoRun      = errors.New("no such run")
)
