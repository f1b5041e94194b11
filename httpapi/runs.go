package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
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
// when it has not started; reason always present; for a queued run, where
// it waits).
type RunDoc struct {
	*store.Run
	Reason runnerd.Reason `json:"reason"`
	// Waiting takes the place of the document's own (client.WaitingDoc):
	// where a queued run waits in line, else the server a claimed run's
	// runner waits for. Admission lists a queued run's places in its lines.
	Waiting   any            `json:"waiting,omitempty"`
	Admission []client.Place `json:"admission,omitempty"`
	// Attempts lists each attempt: runner, start, end and what it wrote.
	Attempts  []client.Attempt `json:"attempts,omitempty"`
	Artifacts []Artifact       `json:"artifacts"`
}

var statuses = client.Statuses

// listQuery is a parsed runs-list request.
type listQuery struct {
	status runnerd.Status
	tenant string
	limit  int
	cursor string // the previous page's next: where this page goes on
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
	lq.cursor = q.Get("cursor")
	return lq, nil
}

func knownStatus(s runnerd.Status) bool { return slices.Contains(statuses, s) }

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

// listBudget bounds the store's walk for one page on FerretDB, which has no
// index it can use for the list (store.ListOptions.Budget): a page may come
// back short, with a cursor to go on from.
const listBudget = 80 * time.Millisecond

// runPage is the one place the runs list asks the store: one page of runs
// newest first, paged by the store's own cursor.
func (a *API) runPage(ctx context.Context, lq listQuery) (RunPage, error) {
	p, err := a.cfg.Client.Store().ListPage(ctx, store.ListOptions{
		Status: lq.status, TenantID: lq.tenant, Limit: lq.limit, Cursor: lq.cursor, Budget: listBudget,
	})
	if errors.Is(err, store.ErrBadCursor) {
		return RunPage{}, fmt.Errorf("cursor %q: not a cursor this API returned%w", lq.cursor, silent{errBadRequest})
	}
	if err != nil {
		return RunPage{}, err
	}
	page := RunPage{Runs: make([]client.RunLine, 0, len(p.Runs)), Next: p.Next}
	for _, run := range p.Runs {
		page.Runs = append(page.Runs, client.LineOf(run))
	}
	return page, nil
}

func (a *API) getRun(w http.ResponseWriter, r *http.Request) {
	run, err := a.loadRun(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	doc := docOf(run)
	if run.Status == runnerd.StatusQueued { // why it waits, from NATS; nothing said when NATS does not answer
		if wt, places, err := a.cfg.Client.Waiting(r.Context(), run); err == nil {
			doc.Admission, doc.Waiting = places, client.WaitingDoc(run, wt)
			if doc.Reason == "" {
				doc.Reason = wt.Reason()
			}
		}
	}
	writeJSON(w, http.StatusOK, doc)
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

// docOf is the run as the API shows it: as `runnerd status --json` does
// (client.Shown), with its artifacts.
func docOf(r *store.Run) RunDoc {
	r = client.Shown(r)
	return RunDoc{Run: r, Reason: r.Reason, Waiting: client.WaitingDoc(r, nil), Attempts: client.Attempts(r), Artifacts: artifactsOf(r)}
}
