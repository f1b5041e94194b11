package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/runnerd/runnerd/client"
)

// The actions are the client package's Cancel, Resume and Retry, which the
// CLI's commands are built on too: same rules, same messages.

// ActionResult is the answer of a successful action: what happened, in the
// CLI's words, and the run as it is now.
type ActionResult struct {
	Message string     `json:"message"`
	Run     RunSummary `json:"run"`
}

// ResumeRequest is the body of POST /api/v1/runs/{id}/resume: answers per
// human step (step id → key → value).
type ResumeRequest struct {
	Answers map[string]map[string]string `json:"answers"`
}

// RetryRequest is the body of POST /api/v1/runs/{id}/retry.
type RetryRequest struct {
	FromScratch bool `json:"from_scratch"`
}

// maxBody bounds an action's JSON body (answers are at most 64 KiB each).
const maxBody = 4 << 20

// actionTimeout bounds the store writes and the publish of one action.
const actionTimeout = 15 * time.Second

func (a *API) cancel(w http.ResponseWriter, r *http.Request) {
	a.act(w, r, nil, func(ctx context.Context, id string) (string, error) {
		o, err := a.cfg.Client.Cancel(ctx, id)
		return cancelMessage(id, o), err
	})
}

// cancelMessage says what a cancel did, as `runnerd cancel` says it.
func cancelMessage(id string, o client.CancelOutcome) string {
	switch o {
	case client.CancelledAlready:
		return fmt.Sprintf("run %s was already cancelled", id)
	case client.CancelledNow:
		return fmt.Sprintf("run %s cancelled (it was paused)", id)
	case client.CancelRunning:
		return fmt.Sprintf("run %s: cancel requested; its runner stops it now", id)
	}
	return fmt.Sprintf("run %s cancelled (it was queued)", id)
}

func (a *API) resume(w http.ResponseWriter, r *http.Request) {
	var req ResumeRequest
	a.act(w, r, &req, func(ctx context.Context, id string) (string, error) {
		if len(req.Answers) == 0 {
			return "", fmt.Errorf("want at least one answer (step.key=value)%w", silent{errBadRequest})
		}
		_, err := a.cfg.Client.Resume(ctx, id, req.Answers)
		return fmt.Sprintf("run %s resumed", id), err
	})
}

func (a *API) retry(w http.ResponseWriter, r *http.Request) {
	var req RetryRequest
	a.act(w, r, &req, func(ctx context.Context, id string) (string, error) {
		_, err := a.cfg.Client.Retry(ctx, id, client.RetryOptions{FromScratch: req.FromScratch})
		return fmt.Sprintf("run %s queued again", id), err
	})
}

// act decodes the body into req (when not nil), runs do and answers with
// its message and the run.
func (a *API) act(w http.ResponseWriter, r *http.Request, req any, do func(ctx context.Context, id string) (string, error)) {
	id := r.PathValue("id")
	if req != nil {
		if err := decodeBody(r, req); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), actionTimeout)
	defer cancel()
	msg, err := do(ctx, id)
	if errors.Is(err, client.ErrNotFound) {
		err = noRun(id)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.cfg.Log.Info().Str("run_id", id).Str("path", r.URL.Path).Msg(msg)
	run, err := a.loadRun(ctx, id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ActionResult{Message: msg, Run: summaryOf(run)})
}

// decodeBody reads a JSON body strictly (unknown fields refused); an empty
// body leaves v as it is.
func decodeBody(r *http.Request, v any) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("read the request body: %w", err)
	}
	if len(data) > maxBody {
		return fmt.Errorf("request body over %d bytes%w", maxBody, silent{errBadRequest})
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %v%w", err, silent{errBadRequest})
	}
	return nil
}
