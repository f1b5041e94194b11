package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/client"
	"github.com/runnerd/runnerd/store"
)

// What the client subcommands share: flags after positional arguments,
// following a run's events in the store, and printing its progress.

// tailLines is how much of a failed step's log --wait prints.
const tailLines = 20

// parseArgs parses flags that may come before or after the positional
// arguments (`submit FILE --wait` as well as `submit --wait FILE`), then
// fills the flags not given from their RUNNERD_* variables. ok false means
// return code (help or usage error).
func parseArgs(f *flags, args []string, stderr io.Writer) (pos []string, code int, ok bool) {
	report := func(err error) (int, bool) {
		if errors.Is(err, flag.ErrHelp) {
			f.help()
			return exitOK, false
		}
		fmt.Fprintf(stderr, "%s: %v\n", f.fs.Name(), err)
		return exitUsage, false
	}
	rest := args
	for len(rest) > 0 {
		if err := f.fs.Parse(rest); err != nil {
			code, ok = report(err)
			return nil, code, ok
		}
		left := f.fs.Args()
		// flag stops at "--" and consumes it: everything after it is
		// positional, even what looks like a flag.
		if n := len(rest) - len(left); n > 0 && rest[n-1] == "--" {
			pos = append(pos, left...)
			break
		}
		if len(left) == 0 {
			break
		}
		pos = append(pos, left[0])
		rest = left[1:]
	}
	// Parse with no arguments keeps the flags set above and applies the
	// variables of the others.
	if err := f.Parse(nil); err != nil {
		code, ok = report(err)
		return nil, code, ok
	}
	return pos, 0, true
}

// oneArg checks that exactly one positional argument was given.
func oneArg(cmd, what string, pos []string, stderr io.Writer) (string, bool) {
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "%s: want exactly one %s, got %d arguments (see runnerd %s --help)\n", cmd, what, len(pos), cmd)
		return "", false
	}
	return pos[0], true
}

// statusExit maps a settled run to the exit codes shared with `runexec run`.
func statusExit(s runnerd.Status) int {
	switch s {
	case runnerd.StatusSucceeded:
		return exitOK
	case runnerd.StatusPaused:
		return exitPaused
	case runnerd.StatusCancelled:
		return exitCancelled
	default:
		return exitFailed
	}
}

// progress prints a followed run one line per step start and finish, as
// `runexec run` does, with the tail of a failed step's log.
type progress struct {
	w     io.Writer
	start time.Time
	tails map[string]*lineTail // log lines of the steps running now
}

func newProgress(w io.Writer) *progress {
	return &progress{w: w, start: time.Now(), tails: map[string]*lineTail{}}
}

func (p *progress) event(e store.StoredEvent) {
	at := fmt.Sprintf("[%7.2fs]", time.Since(p.start).Seconds())
	switch e.Type {
	case runnerd.EventRunStarted:
		fmt.Fprintf(p.w, "%s run started\n", at)
	case runnerd.EventStepStarted:
		p.tails[e.Step] = &lineTail{max: tailLines}
		line := fmt.Sprintf("%s start  %s", at, e.Step)
		if e.Attempt > 1 {
			line += fmt.Sprintf(" (attempt %d", e.Attempt)
			if e.Message != "" {
				line += "; " + e.Message
			}
			line += ")"
		}
		fmt.Fprintln(p.w, line)
	case runnerd.EventLog:
		if t := p.tails[e.Step]; t != nil {
			t.write(e.Text)
		}
	case runnerd.EventStepFinished:
		line := fmt.Sprintf("%s %s %-20s %8s  %s", at, stepLabel(e.Status), e.Step,
			(time.Duration(e.DurationMS) * time.Millisecond).String(), e.Reason)
		if e.Status == string(runnerd.StepFailed) && e.ExitCode != 0 {
			line += fmt.Sprintf(" (exit %d)", e.ExitCode)
		}
		if e.Message != "" {
			line += ": " + e.Message
		}
		fmt.Fprintln(p.w, line)
		if t := p.tails[e.Step]; t != nil && e.Status == string(runnerd.StepFailed) {
			for _, l := range t.lines() {
				fmt.Fprintf(p.w, "           | %s\n", l)
			}
		}
		delete(p.tails, e.Step)
	case runnerd.EventPaused:
		fmt.Fprintf(p.w, "%s wait   %-20s %q\n", at, e.Step, e.Prompt)
	}
}

// summary prints how the run settled and, for a paused run, how to go on.
func (p *progress) summary(r *store.Run) {
	line := fmt.Sprintf("run %s %s", r.ID, r.Status)
	if r.Reason != "" {
		line += fmt.Sprintf(" (%s)", r.Reason)
	}
	line += fmt.Sprintf(" after %s", time.Since(p.start).Round(time.Millisecond))
	fmt.Fprintln(p.w, line)
	if r.Status != runnerd.StatusPaused {
		return
	}
	for _, id := range stepOrder(r) {
		if st := r.Steps[id]; st != nil && st.Status == runnerd.StepWaiting {
			fmt.Fprintf(p.w, "continue with: runnerd resume %s --answer %s.<key>=<value>\n", r.ID, id)
		}
	}
}

func stepLabel(status string) string {
	switch runnerd.StepStatus(status) {
	case runnerd.StepSucceeded:
		return "ok    "
	case runnerd.StepFailed:
		return "FAIL  "
	case runnerd.StepSkipped:
		return "skip  "
	case runnerd.StepCancelled:
		return "cancel"
	}
	return fmt.Sprintf("%-6s", status)
}

// waitRun follows a run from seq until it settles and returns the exit code
// of its status. Under asJSON each event is a JSON line on stdout;
// otherwise progress lines go to stderr.
func waitRun(ctx context.Context, env *cmdEnv, cl *client.Client, id string, seq int64, asJSON bool) int {
	p := newProgress(env.stderr)
	fn := p.event
	if asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetEscapeHTML(false)
		fn = func(e store.StoredEvent) { _ = enc.Encode(e) }
	}
	r, err := cl.Watch(ctx, id, seq, func(e store.StoredEvent) error { fn(e); return nil })
	if errors.Is(err, context.Canceled) {
		fmt.Fprintf(env.stderr, "stopped following run %s; it goes on (runnerd status %s)\n", id, id)
		return exitFailed
	}
	var sel topology.ServerSelectionError
	if errors.As(err, &sel) {
		fmt.Fprintf(env.stderr, "follow run %s: lost MongoDB: %v; the run goes on (runnerd status %s)\n", id, sel.Wrapped, id)
		return exitUnavailable
	}
	if err != nil {
		fmt.Fprintf(env.stderr, "follow run %s: %v\n", id, err)
		return exitFailed
	}
	p.summary(r)
	return statusExit(r.Status)
}

// lineTail keeps the last max complete lines of a stream of text chunks,
// plus the line still being written.
type lineTail struct {
	max     int
	buf     []string
	partial string
}

func (t *lineTail) write(text string) {
	parts := strings.Split(t.partial+text, "\n")
	t.partial = parts[len(parts)-1]
	for _, l := range parts[:len(parts)-1] {
		t.buf = append(t.buf, l)
		if len(t.buf) > t.max {
			t.buf = t.buf[len(t.buf)-t.max:]
		}
	}
}

func (t *lineTail) lines() []string {
	out := append([]string(nil), t.buf...)
	if t.partial != "" {
		out = append(out, t.partial)
	}
	if len(out) > t.max {
		out = out[len(out)-t.max:]
	}
	return out
}

// stepOrder lists the run's steps in workflow order (client.StepOrder).
func stepOrder(r *store.Run) []string { return client.StepOrder(r) }
