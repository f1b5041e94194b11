package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/client"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/store"
)

func statusCmd(env *cmdEnv) *cobra.Command {
	var (
		cfg    clientConfig
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "status ID [--json]",
		Short: "show a run",
		Long: `Shows a run: status, reason, attempt, times and one line per step. --json prints
the run document; steps of the workflow that have not started yet appear with
status "pending". Exit 5 if there is no such run.`,
		Args: cli.ExactArgs(1, "run id"),
		RunE: func(c *cobra.Command, args []string) error {
			r, wv, atts, err := fetchRun(c.Context(), cfg, args[0])
			if err != nil {
				return err
			}
			client.Shown(r)
			if asJSON {
				return writeRunJSON(env.stdout, r, wv, atts)
			}
			printRun(env.stdout, r, atts, wv.waiting)
			printPlaces(env.stdout, wv.places)
			return nil
		},
	}
	f := cli.FlagsOf(c)
	cfg.register(f)
	f.Bool(&asJSON, "json", false, "print the run document as JSON").NoEnv()
	return c
}

// waitView is why a queued run waits, read from NATS: its places in its
// lines and the one it waits in.
type waitView struct {
	places  []client.Place
	waiting *client.Waiting
}

// fetchRun loads run id from MongoDB and, for a queued run, where it waits
// (from NATS, when it answers).
func fetchRun(ctx context.Context, cfg clientConfig, id string) (*store.Run, *waitView, []attempt, error) {
	c, _, r, err := openRun(ctx, cfg, needMongo, "runnerd status", id)
	if err != nil {
		return nil, nil, nil, err
	}
	defer c.Close()
	atts, err := attempts(ctx, c.st, r)
	if err != nil {
		return nil, nil, nil, cfg.classify(err)
	}
	wv := &waitView{}
	if r.Status == runnerd.StatusQueued { // which line it waits in, from NATS
		c.tryNATS(ctx, "runnerd status")
		if cl, err := c.client(); err == nil {
			wv.waiting, wv.places, _ = cl.Waiting(ctx, r)
		}
	}
	return r, wv, atts, nil
}

// openRun connects as the command name to what need names, and loads run
// id. Errors are classified for the exit code; the caller closes c.
func openRun(ctx context.Context, cfg clientConfig, need needs, name, id string) (c *conns, cl *client.Client, r *store.Run, err error) {
	if c, err = connectClient(ctx, cfg, need, name); err != nil {
		return nil, nil, nil, cfg.classify(err)
	}
	if cl, err = c.client(); err == nil {
		r, err = getRun(ctx, cl, id)
	}
	if err != nil {
		c.Close()
		return nil, nil, nil, cfg.classify(err)
	}
	return c, cl, r, nil
}

// getRun loads a run, saying plainly when there is none.
func getRun(ctx context.Context, cl *client.Client, id string) (*store.Run, error) {
	r, err := cl.Get(ctx, id)
	if errors.Is(err, client.ErrNotFound) {
		return nil, cli.Class(cli.ErrNotFound, fmt.Errorf("no run %q (runnerd list shows the recent ones)", id))
	}
	return r, err
}

// attempt is one attempt of a run (client.Attempts).
type attempt = client.Attempt

// attempts lists the run's attempts, first first: as the run document
// records them; a run stored before it recorded them has its events tell
// them, each attempt writing under its own epoch (a chatty run has many
// events to read). A run claimed once (epoch 1) that runs or has finished
// had one attempt, which its document times.
func attempts(ctx context.Context, runs *store.Store, r *store.Run) ([]attempt, error) {
	if atts := client.Attempts(r); len(atts) > 0 {
		return atts, nil
	}
	if r.Epoch == 1 && !r.StartedAt.IsZero() && (r.Status == runnerd.StatusRunning || r.Status.Terminal()) {
		a := attempt{Attempt: 1, Epoch: 1, RunnerID: r.RunnerID, StartedAt: r.StartedAt.UTC()}
		if r.Status.Terminal() {
			a.FinishedAt = r.FinishedAt.UTC()
		}
		return []attempt{a}, nil
	}
	var out []attempt
	var seq int64
	for {
		events, err := runs.Events(ctx, r.ID, seq, 500)
		if err != nil {
			return nil, err
		}
		for _, e := range events {
			seq = e.Seq
			if len(out) == 0 || out[len(out)-1].Epoch != e.Epoch {
				out = append(out, attempt{Attempt: len(out) + 1, Epoch: e.Epoch, StartedAt: e.Time.UTC()})
			}
			out[len(out)-1].FinishedAt = e.Time.UTC()
		}
		if len(events) < 500 {
			break
		}
	}
	if n := len(out); n > 0 && r.Status == runnerd.StatusRunning {
		out[n-1].FinishedAt = time.Time{}
	}
	return out, nil
}

// runJSON is the run document as status --json prints it. Reason is always
// present (empty while the run has none), so scripts can read it without
// checking that the key exists; a queued run waiting in a line has the
// derived reason concurrency_group or tenant_limit.
type runJSON struct {
	*store.Run
	Reason runnerd.Reason `json:"reason"`
	// ConcurrencyGroup is the run's group (groupName), also for a run
	// stored before the document kept it.
	ConcurrencyGroup string `json:"concurrency_group,omitempty"`
	// Waiting takes the place of the document's own (client.WaitingDoc):
	// where a queued run waits in line, else the server a claimed run's
	// runner waits for.
	Waiting any `json:"waiting,omitempty"`
	// StartedAt is the first attempt's start; Attempts lists each one.
	StartedAt time.Time `json:"started_at,omitzero"`
	Attempts  []attempt `json:"attempts,omitempty"`
	// Admission: where a queued run waits (its concurrency group, its
	// tenant's line).
	Admission []client.Place `json:"admission,omitempty"`
}

// printPlaces says where a queued run waits for its turn.
func printPlaces(w io.Writer, places []client.Place) {
	for _, p := range places {
		fmt.Fprintf(w, "admission: %s\n", placeLine(p))
	}
}

// placeLine says where a run stands in one line (group or tenant).
func placeLine(p client.Place) string {
	what := p.Kind + " " + p.Name
	if p.Kind == "group" {
		what = fmt.Sprintf("concurrency group %q", p.Name)
	}
	counts := fmt.Sprintf("%d running", p.Running)
	if p.Limit > 0 {
		counts += fmt.Sprintf(", limit %d", p.Limit)
	}
	if p.Position == 0 {
		return fmt.Sprintf("holds a place of %s (%s)", what, counts)
	}
	return fmt.Sprintf("waits in %s: position %d of %d waiting (%s)", what, p.Position, p.Waiting, counts)
}

func writeRunJSON(w io.Writer, r *store.Run, wv *waitView, atts []attempt) error {
	doc := runJSON{Run: r, Reason: r.Reason, ConcurrencyGroup: groupName(r), StartedAt: r.StartedAt, Attempts: atts}
	var wt *client.Waiting
	if wv != nil {
		wt, doc.Admission = wv.waiting, wv.places
	}
	doc.Waiting = client.WaitingDoc(r, wt)
	if doc.Reason == "" {
		doc.Reason = wt.Reason()
	}
	if len(atts) > 0 {
		doc.StartedAt = atts[0].StartedAt
	}
	if err := writeJSON(w, doc); err != nil {
		return fmt.Errorf("encode run %s: %w", r.ID, err)
	}
	return nil
}

// groupName is the run's concurrency group: as evaluated at submit and
// stored, else from its workflow and vars (store.Run.Group); "" when it has
// none.
func groupName(r *store.Run) string {
	g, _, _, ok, err := r.Group()
	if err != nil || !ok {
		return ""
	}
	return g
}

// waitingText says where a queued run waits, for its status line.
func waitingText(wt *client.Waiting) string {
	pos := fmt.Sprintf("position %d", wt.Position)
	if wt.AtLeast {
		pos = fmt.Sprintf("more than %d runs ahead", wt.Position-1)
	}
	if wt.Of > 0 {
		pos += fmt.Sprintf(" of %d", wt.Of)
	}
	switch wt.Kind {
	case client.WaitConcurrencyGroup:
		return fmt.Sprintf("waiting in concurrency group %q, %s", wt.Name, pos)
	case client.WaitTenantLimit:
		if wt.Limit > 0 {
			return fmt.Sprintf("waiting for tenant %q's limit of %d, %s", wt.Name, wt.Limit, pos)
		}
		return fmt.Sprintf("waiting for tenant %q's limit, %s", wt.Name, pos) // the runners' setting, unknown here
	}
	return "waiting for a free runner slot, " + pos
}

// printRun writes the readable summary of a run; wt is where a queued run
// waits (nil: unknown, or not waiting).
func printRun(w io.Writer, r *store.Run, atts []attempt, wt *client.Waiting) {
	name := ""
	if r.Workflow != nil {
		name = r.Workflow.Name
	}
	var why []string
	if r.Reason != "" {
		why = append(why, string(r.Reason))
	}
	if wt != nil && r.Status == runnerd.StatusQueued {
		why = append(why, waitingText(wt))
	}
	status := string(r.Status)
	if len(why) > 0 {
		status += " (" + strings.Join(why, "; ") + ")"
	}
	if r.CancelRequested && !r.Status.Terminal() {
		status += ", cancel requested"
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "run:\t%s\n", r.ID)
	fmt.Fprintf(tw, "workflow:\t%s\n", name)
	fmt.Fprintf(tw, "tenant:\t%s\n", r.TenantID)
	if g := groupName(r); g != "" {
		fmt.Fprintf(tw, "group:\t%s\n", g)
	}
	fmt.Fprintf(tw, "status:\t%s\n", status)
	fmt.Fprintf(tw, "attempt:\t%d\n", r.Attempt)
	if r.Crashes > 0 {
		fmt.Fprintf(tw, "crashes:\t%d (counted against --max-attempts)\n", r.Crashes)
	}
	if w := r.Waiting; w != nil && !r.Status.Terminal() {
		fmt.Fprintf(tw, "waiting:\tfor %s since %s: %s\n", w.On, fmtTime(w.Since), w.Error)
	}
	if r.RunnerID != "" {
		fmt.Fprintf(tw, "runner:\t%s\n", r.RunnerID)
	}
	fmt.Fprintf(tw, "created:\t%s\n", fmtTime(r.CreatedAt))
	if len(atts) > 0 {
		fmt.Fprintf(tw, "started:\t%s\n", fmtTime(atts[0].StartedAt))
	} else if !r.StartedAt.IsZero() {
		fmt.Fprintf(tw, "started:\t%s\n", fmtTime(r.StartedAt))
	}
	if !r.FinishedAt.IsZero() {
		fmt.Fprintf(tw, "finished:\t%s (%s after submit)\n", fmtTime(r.FinishedAt), r.FinishedAt.Sub(r.CreatedAt).Round(time.Millisecond))
	}
	_ = tw.Flush()
	if len(atts) > 1 {
		fmt.Fprintln(w, "\nattempts:")
		for i, a := range atts {
			end := "running"
			switch {
			case !a.FinishedAt.IsZero() && a.Status != "":
				end = fmt.Sprintf("until %s: %s", fmtTime(a.FinishedAt), a.Status)
				if a.Reason != "" {
					end += " (" + string(a.Reason) + ")"
				}
			case !a.FinishedAt.IsZero():
				end = "until " + fmtTime(a.FinishedAt)
			case i < len(atts)-1 || r.Status != runnerd.StatusRunning:
				end = "no end recorded (its runner vanished)"
			}
			n := a.Attempt
			if n == 0 {
				n = i + 1
			}
			runner := ""
			if a.RunnerID != "" {
				runner = " on " + a.RunnerID
			}
			fmt.Fprintf(w, "  %d: %s%s, %s\n", n, fmtTime(a.StartedAt), runner, end)
		}
	}

	if len(r.Steps) == 0 {
		return
	}
	fmt.Fprintln(w, "\nsteps:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  STEP\tSTATUS\tREASON\tATTEMPTS\tEXIT\tDURATION\tDETAIL")
	for _, id := range client.StepOrder(r) {
		st := r.Steps[id]
		if st == nil {
			continue
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", id, st.Status, dash(string(st.Reason)),
			dashInt(st.Attempts), exitText(st), stepDuration(st), stepDetail(st))
	}
	_ = tw.Flush()
	for _, id := range client.StepOrder(r) {
		st := r.Steps[id]
		if st == nil || len(st.Tries) == 0 {
			continue
		}
		fmt.Fprintf(w, "\nfailed attempts of %s:\n", id)
		for _, t := range st.Tries {
			exit := "did not exit"
			switch {
			case t.Signal != "":
				exit = t.Signal
			case t.ExitCode != nil:
				exit = fmt.Sprintf("exit %d", *t.ExitCode)
			}
			verdict := "not retried"
			if t.Retried {
				verdict = "retried"
			}
			fmt.Fprintf(w, "  attempt %d: %s (%s), %s: %s\n", t.Attempt, exit, t.Reason, verdict, t.Why)
			if !t.StartedAt.IsZero() || !t.FinishedAt.IsZero() {
				fmt.Fprintf(w, "    started %s, finished %s\n", fmtTime(t.StartedAt), fmtTime(t.FinishedAt))
			}
		}
	}
}

// exitText is the EXIT column: the exit status of a step whose process
// exited, the signal that killed one, else "-" (a human step, a step that
// never started).
func exitText(st *runnerd.StepState) string {
	switch {
	case st.Signal != "":
		return st.Signal
	case st.Exited():
		return fmt.Sprint(st.ExitCode)
	}
	return "-"
}

func stepDuration(st *runnerd.StepState) string {
	if st.StartedAt.IsZero() || st.FinishedAt.IsZero() {
		return "-"
	}
	return st.FinishedAt.Sub(st.StartedAt).Round(time.Millisecond).String()
}

// stepDetail is what a waiting step asks, or the answers it got.
func stepDetail(st *runnerd.StepState) string {
	if st.Status == runnerd.StepWaiting && st.Prompt != "" {
		return fmt.Sprintf("%q", st.Prompt)
	}
	if len(st.Answers) > 0 {
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(st.Answers)) {
			kv = append(kv, k+"="+st.Answers[k])
		}
		return "answers: " + strings.Join(kv, " ")
	}
	return ""
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func dashInt(n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprint(n)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05 MST")
}
