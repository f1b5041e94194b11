package httpapi

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/client"
	"github.com/runnerd/runnerd/store"
)

// Page sizes of the runs list.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// RunPage is the answer of GET /api/v1/runs. Next, when set, is the cursor
// of the following (older) page.
type RunPage struct {
	Runs []client.RunLine `json:"runs"`
	Next string           `json:"next,omitempty"`
}

// RunDoc is the answer of GET /api/v1/runs/{id}: the run document as
// `runnerd status --json` prints it (every workflow step present, pending
// when it has not started; reason always present).
type RunDoc struct {
	*store.Run
	Reason    runnerd.Reason `json:"reason"`
	Artifacts []Artifact     `json:"artifacts"`
}

var statuses = client.Statuses

// listQuery is a parsed runs-list request.
type listQuery struct {
	status runnerd.Status
	tenant string
	limit  int
	after  *cursor // the last run of the previous page
}

// cursor is a position in the newest-first order: the creation time and id
// of a run.
type cursor struct {
	created time.Time
	id      string
}

func (c cursor) String() string {
	raw := strconv.FormatInt(c.created.UnixMilli(), 10) + "." + c.id
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func parseCursor(s string) (*cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	ms, id, ok := strings.Cut(string(raw), ".")
	n, perr := strconv.ParseInt(ms, 10, 64)
	if err != nil || !ok || perr != nil || id == "" {
		return nil, fmt.Errorf("cursor %q: not a cursor this API returned%w", s, silent{errBadRequest})
	}
	return &cursor{created: time.UnixMilli(n).UTC(), id: id}, nil
}

func parseListQuery(r *http.Request) (listQuery, error) {
	q := r.URL.Query()
	lq := listQuery{status: runnerd.Status(q.Get("status")), tenant: q.Get("tenant"), limit: DefaultPageSize}
	if lq.status != "" && !knownStatus(lq.status) {
		return lq, fmt.Errorf("status %q: want one of %v%w", lq.status, statuses, silent{errBadRequest})
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPageSize {
			return lq, fmt.Errorf("limit %q: want 1 to %d%w", v, MaxPageSize, silent{errBadRequest})
		}
		lq.limit = n
	}
	if v := q.Get("cursor"); v != "" {
		c, err := parseCursor(v)
		if err != nil {
			return lq, err
		}
		lq.after = c
	}
	return lq, nil
}

func knownStatus(s runnerd.Status) bool {
	for _, k := range statuses {
		if k == s {
			return true
		}
	}
	return false
}

func (a *API) listRuns(w http.ResponseWriter, r *http.Request) {
	lq, err := parseListQuery(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	page, err := a.runPage(r.Context(), lq)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

// runPage is the one place the runs list asks the store: one page of runs
// newest first, one run more than the page to know whether another page
// follows.
func (a *API) runPage(ctx context.Context, lq listQuery) (RunPage, error) {
	opts := store.ListOptions{Status: lq.status, TenantID: lq.tenant, Limit: lq.limit + 1}
	if lq.after != nil {
		// Until the store takes a cursor, a later page is cut from a
		// longer list.
		opts.Limit = min(scanLimit, opts.Limit*50)
	}
	runs, err := a.cfg.Client.List(ctx, opts)
	if err != nil {
		return RunPage{}, err
	}
	if lq.after != nil {
		runs = afterCursor(runs, *lq.after)
	}
	page := RunPage{Runs: make([]client.RunLine, 0, min(len(runs), lq.limit))}
	for i, run := range runs {
		if i == lq.limit {
			last := runs[i-1]
			page.Next = cursor{created: last.CreatedAt, id: last.ID}.String()
			break
		}
		page.Runs = append(page.Runs, client.LineOf(run))
	}
	return page, nil
}

// scanLimit bounds the runs read to cut a later page.
const scanLimit = 5000

// afterCursor drops the runs up to and including c (newest first).
func afterCursor(runs []*store.Run, c cursor) []*store.Run {
	for i, r := range runs {
		if r.CreatedAt.Before(c.created) || (r.CreatedAt.Equal(c.created) && r.ID < c.id) {
			return runs[i:]
		}
	}
	return nil
}

func (a *API) getRun(w http.ResponseWriter, r *http.Request) {
	run, err := a.loadRun(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, docOf(run))
}

// loadRun reads a run, saying plainly when there is none (as the CLI does).
func (a *API) loadRun(ctx context.Context, id string) (*store.Run, error) {
	run, err := a.cfg.Client.Get(ctx, id)
	if errors.Is(err, client.ErrNotFound) {
		return nil, noRun(id)
	}
	return run, err
}

func noRun(id string) error {
	return fmt.Errorf("no run %q (runnerd list shows the recent ones)%w", id, silent{errNoRun})
}

// silent wraps an error for errors.Is without adding to the message.
type silent struct{ err error }

func (s silent) Error() string { return "" }
func (s silent) Unwrap() error { return s.err }

// docOf is the run as the API shows it: every workflow step has a state.
func docOf(r *store.Run) RunDoc {
	if r.Workflow != nil {
		for _, s := range r.Workflow.Steps {
			if r.Steps == nil {
				r.Steps = runnerd.StepStates{}
			}
			if r.Steps[s.ID] == nil {
				r.Steps[s.ID] = &runnerd.StepState{Status: runnerd.StepPending}
			}
		}
	}
	return RunDoc{Run: r, Reason: r.Reason, Artifacts: artifactsOf(r)}
}
