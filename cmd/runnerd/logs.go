package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/client"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/store"
)

func logsCmd(env *cmdEnv) *cobra.Command {
	var (
		cfg        clientConfig
		step       string
		followFlag bool
		asJSON     bool
	)
	c := &cobra.Command{
		Use:   "logs ID [--step S] [--follow] [--json]",
		Short: "print a run's step logs",
		Long: `Prints a run's step logs in workflow order. For a run that is not running, the
logs come from S3 (the whole log of each step's latest attempt), each step
under a "==> step (status) <==" header. For a running run, or with --follow,
log output is printed from the run's events as it arrives until the run
finishes or pauses, each line prefixed with its step (long outputs are cut
there: the whole log is in S3 once the attempt ends). With --step, one step's
log as it is. With --json, log events as JSON lines (from the run's events,
for finished runs too).`,
		Args: cli.ExactArgs(1, "run id"),
		RunE: func(c *cobra.Command, args []string) error {
			return logs(c.Context(), env, cfg, args[0], step, followFlag, asJSON)
		},
	}
	f := cli.FlagsOf(c)
	cfg.register(f)
	f.String(&step, "step", "", "only this step's log").NoEnv()
	f.Bool(&followFlag, "follow", false, "print log output as it arrives until the run finishes or pauses").NoEnv()
	f.Bool(&asJSON, "json", false, "print the run's log events as JSON lines").NoEnv()
	return c
}

func logs(ctx context.Context, env *cmdEnv, cfg clientConfig, id, step string, followFlag, asJSON bool) error {
	c, _, r, err := openRun(ctx, cfg, needMongo, "runnerd logs", id)
	if err != nil {
		return err
	}
	defer c.Close()
	steps := client.StepOrder(r)
	if step != "" {
		if !slices.Contains(steps, step) {
			return cli.Class(cli.ErrNotFound, fmt.Errorf("run %s has no step %q (steps: %s)", id, step, dash(strings.Join(steps, ", "))))
		}
		steps = []string{step}
	}
	if asJSON || followFlag || r.Status == runnerd.StatusRunning {
		c.tryNATS(ctx, "runnerd logs")
		cl, err := c.client()
		if err != nil {
			return cfg.classify(err)
		}
		return followLogs(ctx, env, cl, id, step, asJSON, cli.PrefixWidth(client.StepOrder(r)))
	}
	// S3 only now: a followed run's output comes from its events.
	blobs, err := c.blob(ctx)
	if err != nil {
		return cfg.classify(err)
	}
	return printStoredLogs(ctx, env, cfg, blobs, r, steps, step == "")
}

// printStoredLogs copies each step's log from S3, with a header per step
// when several may be printed.
func printStoredLogs(ctx context.Context, env *cmdEnv, cfg clientConfig, blobs *blob.Store, r *store.Run, steps []string, headers bool) error {
	var failed error
	printed := 0
	out := &lastByteWriter{w: env.stdout, last: '\n'}
	for _, id := range steps {
		st := r.Steps[id]
		if st == nil || st.LogKey == "" {
			if !headers { // the one step asked for
				status := runnerd.StepPending
				if st != nil {
					status = st.Status
				}
				fmt.Fprintf(env.stderr, "runnerd logs: step %s of run %s has no log yet (step %s, run %s)\n", id, r.ID, status, r.Status)
			}
			continue
		}
		rc, err := client.OpenLog(ctx, blobs, st.LogKey)
		if c := cli.Code(cfg.classify(err)); c == cli.ExitNoPerm || c == cli.ExitUnavailable {
			return cfg.classify(err) // S3 refuses us or is away: every step alike
		}
		if err != nil {
			fmt.Fprintf(env.stderr, "runnerd logs: step %s: %v\n", id, err)
			failed = fmt.Errorf("the logs of some steps could not be read")
			continue
		}
		if headers {
			if out.last != '\n' { // a log cut mid-line must not swallow the header
				fmt.Fprintln(out)
			}
			if printed > 0 {
				fmt.Fprintln(out)
			}
			fmt.Fprintf(out, "==> %s (%s) <==\n", id, st.Status)
		}
		_, err = io.Copy(out, rc)
		rc.Close()
		if err != nil {
			fmt.Fprintf(env.stderr, "runnerd logs: step %s: read log %s: %v\n", id, st.LogKey, err)
			failed = fmt.Errorf("the logs of some steps could not be read")
			continue
		}
		printed++
	}
	if headers && printed == 0 && failed == nil {
		fmt.Fprintf(env.stderr, "runnerd logs: run %s (%s) has no step logs yet; runnerd logs %s --follow waits for them\n", r.ID, r.Status, r.ID)
	}
	return failed
}

// lastByteWriter remembers the last byte written through it.
type lastByteWriter struct {
	w    io.Writer
	last byte
}

func (l *lastByteWriter) Write(p []byte) (int, error) {
	n, err := l.w.Write(p)
	if n > 0 {
		l.last = p[n-1]
	}
	return n, err
}

// followLogs prints the run's log events until it settles, as JSON lines
// under asJSON. only, when set, keeps one step's output, unprefixed; else
// prefixes are padded to width.
func followLogs(ctx context.Context, env *cmdEnv, cl *client.Client, id, only string, asJSON bool, width int) error {
	lp := &logPrinter{w: env.stdout, prefix: only == "", width: width}
	enc := jsonLines(env.stdout)
	_, err := cl.Watch(ctx, id, 0, func(e store.StoredEvent) error {
		if only != "" && e.Step != only {
			return nil
		}
		switch {
		case asJSON && e.Type == runnerd.EventLog:
			_ = enc.Encode(e)
		case asJSON:
		case e.Type == runnerd.EventLog:
			lp.write(e.Step, e.Text)
		case e.Type == runnerd.EventStepFinished:
			lp.flush(e.Step)
		}
		return nil
	})
	lp.flushAll()
	if errors.Is(err, context.Canceled) {
		return cli.Class(cli.ErrInterrupted, fmt.Errorf("stopped following run %s", id))
	}
	if err != nil {
		return fmt.Errorf("follow run %s: %w", id, err)
	}
	return nil
}

// logPrinter writes log chunks of concurrent steps as whole lines prefixed
// with their step, so lines of parallel steps never mix; unprefixed it
// writes chunks as they come.
type logPrinter struct {
	w      io.Writer
	prefix bool
	width  int // of the prefixes
	lines  cli.StepLines
}

func (p *logPrinter) write(step, text string) {
	if !p.prefix {
		_, _ = io.WriteString(p.w, text)
		return
	}
	p.lines.Write(step, text, p.line)
}

func (p *logPrinter) line(step, l string) { fmt.Fprintf(p.w, "%s %s\n", cli.Prefix(step, p.width), l) }

// flush ends a step's unfinished last line.
func (p *logPrinter) flush(step string) { p.lines.Flush(step, p.line) }

func (p *logPrinter) flushAll() { p.lines.FlushAll(p.line) }
