package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
	"github.com/runnerd/runnerd/workflow"
)

// The actions do what `runnerd cancel`, `resume` and `retry` do, with the
// same messages; the store's and the queue's rules (allowed transitions,
// publish generations, dedup) make them safe to repeat and to race with the
// CLI.

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
	a.act(w, r, nil, func(ctx context.Context, id string) (string, error) { return a.cancelRun(ctx, id) })
}

func (a *API) resume(w http.ResponseWriter, r *http.Request) {
	var req ResumeRequest
	a.act(w, r, &req, func(ctx context.Context, id string) (string, error) { return a.resumeRun(ctx, id, req.Answers) })
}

func (a *API) retry(w http.ResponseWriter, r *http.Request) {
	var req RetryRequest
	a.act(w, r, &req, func(ctx context.Context, id string) (string, error) { return a.retryRun(ctx, id, req.FromScratch) })
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

// cancelRun sets the run's cancel flag (which lands even when no runner
// listens), cancels a paused run at once and tells a running one's runner
// on the cancel subject, like `runnerd cancel`.
func (a *API) cancelRun(ctx context.Context, id string) (string, error) {
	st := a.cfg.Store
	r, err := st.RequestCancel(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", noRun(id)
	case errors.Is(err, store.ErrTerminal):
		cur, gerr := st.Get(ctx, id)
		if gerr != nil {
			return "", gerr
		}
		if cur.Status == runnerd.StatusCancelled {
			return fmt.Sprintf("run %s was already cancelled", id), nil
		}
		return "", fmt.Errorf("run %s %w: %s (%s)", id, errFinished, cur.Status, cur.Reason)
	case err != nil:
		return "", err
	}
	if r.Status == runnerd.StatusPaused {
		err := st.SetStatusUnfenced(ctx, id, runnerd.StatusCancelled, runnerd.ReasonCancelled)
		if err == nil {
			return fmt.Sprintf("run %s cancelled (it was paused)", id), nil
		}
		// Resumed in the meantime: it is queued now, with the flag set.
		if !errors.Is(err, store.ErrIllegalTransition) {
			return "", err
		}
	}
	if err := a.cfg.Queue.PublishCancel(ctx, id); err != nil {
		return "", fmt.Errorf("run %s has cancel requested, but telling its runner failed (it will see the flag): %w", id, err)
	}
	if r.Status == runnerd.StatusRunning {
		return fmt.Sprintf("run %s: cancel requested; its runner stops it now", id), nil
	}
	return fmt.Sprintf("run %s: cancel requested; it is cancelled when a runner picks it up", id), nil
}

// resumeRun answers a paused run's human steps and queues it again, like
// `runnerd resume`; a queued run that already holds these answers (an
// earlier resume whose publish failed) is published again.
func (a *API) resumeRun(ctx context.Context, id string, answers map[string]map[string]string) (string, error) {
	st := a.cfg.Store
	r, err := a.loadRun(ctx, id)
	if err != nil {
		return "", err
	}
	if err := checkAnswers(r, answers); err != nil {
		return "", err
	}
	resumed, err := st.Resume(ctx, id, answers)
	if errors.Is(err, store.ErrIllegalTransition) {
		cur, gerr := st.Get(ctx, id)
		if gerr != nil {
			return "", gerr
		}
		if cur.Status != runnerd.StatusQueued || !hasAnswers(cur.Answers, answers) {
			return "", fmt.Errorf("run %s is %s, not paused: only a paused run can be resumed%w", id, describe(cur), silent{store.ErrIllegalTransition})
		}
		resumed, err = cur, nil
	}
	if err != nil {
		return "", err
	}
	if err := a.publish(ctx, resumed, &queue.Resume{Answers: resumed.Answers}); err != nil {
		return "", fmt.Errorf("%w\nrun %s was resumed but is not queued yet: repeat the action to queue it", err, id)
	}
	return fmt.Sprintf("run %s resumed", id), nil
}

// retryRun queues a failed or cancelled run again, like `runnerd retry`.
func (a *API) retryRun(ctx context.Context, id string, fromScratch bool) (string, error) {
	r, err := a.loadRun(ctx, id)
	if err != nil {
		return "", err
	}
	retried := r
	if !(r.Status == runnerd.StatusQueued && len(r.History) > 0 && r.History[len(r.History)-1].Attempt == r.Attempt) {
		retried, err = a.cfg.Store.Retry(ctx, id, fromScratch)
		if errors.Is(err, store.ErrIllegalTransition) {
			return "", fmt.Errorf("run %s is %s: only a failed or cancelled run can be retried%w", id, describe(r), silent{store.ErrIllegalTransition})
		}
		if err != nil {
			return "", err
		}
	}
	if err := a.publish(ctx, retried, nil); err != nil {
		return "", fmt.Errorf("%w\nrun %s was retried but is not queued yet: repeat the action to queue it", err, id)
	}
	return fmt.Sprintf("run %s queued again", id), nil
}

func describe(r *store.Run) string {
	if r.Reason != "" {
		return fmt.Sprintf("%s (%s)", r.Status, r.Reason)
	}
	return string(r.Status)
}

// checkAnswers refuses answers to steps that are not human steps of the
// run's workflow, bad keys and answers over the limit, all at once.
func checkAnswers(r *store.Run, answers map[string]map[string]string) error {
	if len(answers) == 0 {
		return fmt.Errorf("want at least one answer (step.key=value)%w", silent{errBadRequest})
	}
	var bad, human []string
	for step, kv := range answers {
		if !isHuman(r.Workflow, step) {
			bad = append(bad, fmt.Sprintf("%q is not a human step of run %s", step, r.ID))
			continue
		}
		if len(kv) == 0 {
			bad = append(bad, fmt.Sprintf("no answer for step %q", step))
		}
		for k, v := range kv {
			if k == "" || strings.ContainsAny(k, ".$") {
				bad = append(bad, fmt.Sprintf("answer key %q of step %q: no '.' or '$', not empty", k, step))
			}
			if len(v) > workflow.MaxAnswerBytes {
				bad = append(bad, fmt.Sprintf("answer %s.%s is %d bytes: the limit is %d (%d KiB)", step, k, len(v), workflow.MaxAnswerBytes, workflow.MaxAnswerBytes>>10))
			}
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	if r.Workflow != nil {
		for _, s := range r.Workflow.Steps {
			if s.Kind == workflow.KindHuman {
				human = append(human, s.ID)
			}
		}
	}
	list := strings.Join(human, ", ")
	if list == "" {
		list = "-"
	}
	return fmt.Errorf("answers: %s (human steps: %s)%w", strings.Join(bad, "; "), list, silent{errBadRequest})
}

func isHuman(w *workflow.Workflow, id string) bool {
	if w == nil {
		return false
	}
	s := w.Step(id)
	return s != nil && s.Kind == workflow.KindHuman
}

func hasAnswers(have, want map[string]map[string]string) bool {
	for step, kv := range want {
		for k, v := range kv {
			if got, ok := have[step][k]; !ok || got != v {
				return false
			}
		}
	}
	return true
}

// InlineWorkflowMax is the largest workflow JSON a message carries; a larger
// one travels by reference in S3 (as `runnerd submit` does).
const InlineWorkflowMax = 256 << 10

// publish queues run r under its current generation; a duplicate (the
// stream has this generation already) is not an error.
func (a *API) publish(ctx context.Context, r *store.Run, resume *queue.Resume) error {
	msg := &queue.Message{
		V: queue.Version, RunID: r.ID, TenantID: r.TenantID, Workflow: r.Workflow, Vars: r.Vars,
		TimeoutSec: r.TimeoutSec, Resume: resume, PublishedAt: time.Now().UTC(),
	}
	data, err := json.Marshal(r.Workflow)
	if err != nil {
		return fmt.Errorf("encode the workflow of run %s: %w", r.ID, err)
	}
	if len(data) > InlineWorkflowMax {
		key := queue.WorkflowRef(data)
		if _, err := a.cfg.Blobs.Head(ctx, key); errors.Is(err, blob.ErrNotFound) {
			if _, err := a.cfg.Blobs.Put(ctx, key, bytes.NewReader(data)); err != nil {
				return fmt.Errorf("upload the workflow of run %s (%d bytes) to %s: %w", r.ID, len(data), key, err)
			}
		} else if err != nil {
			return fmt.Errorf("check %s for the workflow of run %s: %w", key, r.ID, err)
		}
		msg.Workflow, msg.WorkflowRef = nil, key
	}
	hdr := nats.Header{}
	if r.TraceParent != "" {
		hdr.Set("traceparent", r.TraceParent)
	}
	if err := a.cfg.Queue.Publish(ctx, msg, r.Generation, hdr); err != nil && !errors.Is(err, queue.ErrDuplicate) {
		return err
	}
	return nil
}
