package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/client"
	"github.com/runnerd/runnerd/store"
)

// stepLog copies a step's log from S3: its latest attempt's. A step that
// has no log yet (it has not finished, or its attempt is still running) is
// a 404 saying so, as `runnerd logs --step` says it; its live output is in
// the event stream.
func (a *API) stepLog(w http.ResponseWriter, r *http.Request) {
	id, stepID := r.PathValue("id"), r.PathValue("step")
	run, st, err := a.loadStep(r.Context(), id, stepID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if st.LogKey == "" {
		a.fail(w, r, fmt.Errorf("step %s of run %s has no log yet (step %s, run %s)%w", stepID, id, st.Status, run.Status, silent{errNoRun}))
		return
	}
	rc, err := client.OpenLog(r.Context(), a.cfg.Blobs, st.LogKey)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if _, err := io.Copy(w, rc); err != nil {
		a.cfg.Log.Warn().Err(err).Str("run_id", id).Str("step", stepID).Msg("copy step log")
	}
}

// stepOf is a step of the run, pending when the workflow has it and it has
// not started.
// loadStep reads run id and the state of its step stepID.
func (a *API) loadStep(ctx context.Context, id, stepID string) (*store.Run, *runnerd.StepState, error) {
	run, err := a.loadRun(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	st, err := stepOf(run, stepID)
	return run, st, err
}

func stepOf(run *store.Run, stepID string) (*runnerd.StepState, error) {
	if st := run.Steps[stepID]; st != nil {
		return st, nil
	}
	if run.Workflow != nil && run.Workflow.Step(stepID) != nil {
		return &runnerd.StepState{Status: runnerd.StepPending}, nil
	}
	return nil, fmt.Errorf("run %s has no step %q%w", run.ID, stepID, silent{errNoRun})
}

// Artifact is one artifact of a run, with the API path that downloads it.
type Artifact struct {
	Step string `json:"step"`
	Path string `json:"path"`
	URL  string `json:"url"`
}

func artifactsOf(run *store.Run) []Artifact {
	out := []Artifact{}
	if run.Workflow == nil {
		return out
	}
	for _, s := range run.Workflow.Steps {
		st := run.Steps[s.ID]
		if st == nil {
			continue
		}
		for _, p := range st.Artifacts {
			out = append(out, Artifact{Step: s.ID, Path: p, URL: artifactURL(run.ID, s.ID, p)})
		}
	}
	return out
}

func artifactURL(runID, step, p string) string {
	return Prefix + "runs/" + url.PathEscape(runID) + "/artifacts/" + url.PathEscape(step) + "/" + (&url.URL{Path: p}).EscapedPath()
}

// listArtifacts lists the artifacts the run's steps stored, as their step
// states name them.
func (a *API) listArtifacts(w http.ResponseWriter, r *http.Request) {
	run, err := a.loadRun(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"artifacts": artifactsOf(run)})
}

// getArtifact downloads one artifact. Only paths a step state names are
// served: the API never reads a bucket key a caller made up.
func (a *API) getArtifact(w http.ResponseWriter, r *http.Request) {
	id, stepID, p := r.PathValue("id"), r.PathValue("step"), r.PathValue("path")
	_, st, err := a.loadStep(r.Context(), id, stepID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if !slices.Contains(st.Artifacts, p) {
		a.fail(w, r, fmt.Errorf("step %s of run %s has no artifact %q (artifacts: %v)%w", stepID, id, p, st.Artifacts, silent{errNoRun}))
		return
	}
	key := blob.ArtifactKey(id, stepID, p)
	rc, err := a.cfg.Blobs.Get(r.Context(), key)
	if errors.Is(err, blob.ErrNotFound) {
		a.fail(w, r, fmt.Errorf("artifact %s is missing from S3%w", key, silent{blob.ErrNotFound}))
		return
	}
	if err != nil {
		a.fail(w, r, fmt.Errorf("read artifact %s: %w", key, err))
		return
	}
	defer rc.Close()
	// Always a download: an artifact is the workflow's content, never a
	// page of this origin.
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": path.Base(p)}))
	if _, err := io.Copy(w, rc); err != nil {
		a.cfg.Log.Warn().Err(err).Str("run_id", id).Str("step", stepID).Msg("copy artifact")
	}
}
