package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/contain"
	"github.com/runnerd/runnerd/executor"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/workflow"
)

type runArgs struct {
	file       string
	secrets    map[string]string
	secretsDir string
	vars       map[string]string
	answers    map[string]map[string]string
	workdir    string
	logdir     string
	state      string
	json       bool

	quiet                bool
	sandbox              string
	sandboxRO, sandboxRW []string
	network              string
}

// stateFile is what --state keeps: the step states, and the run id and
// directories, so the same command continues the same run (same
// RUNEXEC_RUN_ID, same workdir) even when the workdir was a temporary one.
type stateFile struct {
	RunID    string             `json:"run_id"`
	Workflow string             `json:"workflow,omitempty"`
	Workdir  string             `json:"workdir,omitempty"`
	LogDir   string             `json:"logdir,omitempty"`
	Steps    runnerd.StepStates `json:"steps"`
}

func runCmd(stdout, stderr io.Writer) *cobra.Command {
	ra := &runArgs{}
	var vars, answers, secrets []string
	c := &cobra.Command{
		Use:   "run FILE [--var k=v]... [--workdir DIR] [--logdir DIR] [--state FILE] [--answer step.key=v]... [--json] [--quiet]",
		Short: "run a workflow on this machine, showing each step and its output",
		Long: `Runs the workflow in FILE ("-": stdin) on this machine and shows each step's
start and end and, live, its output prefixed by the step (--quiet: the steps
only; --json: one JSON event per line on stdout, each with run_id and workdir).
Everything but --json events goes to stderr.

The workdir is every step's current directory (default: the one saved in
--state, else a new temporary directory, printed). Step logs (<step>.log) and
output files go to --logdir, default DIR.logs next to the workdir. --state FILE
is read at start if it exists and rewritten after every step: the same command
plus --answer continues a paused or interrupted run. In the sandbox (--sandbox
auto, the default: every layer this machine allows, as runnerd serve) steps get
HOME DIR.home and TMPDIR DIR.tmp.`,
		Args: cli.ExactArgs(1, "workflow file"),
		RunE: func(c *cobra.Command, args []string) error {
			ra.file = args[0]
			var err error
			if ra.vars, err = cli.ParseVars("var", vars); err != nil {
				return err
			}
			if ra.answers, err = cli.ParseAnswers(answers); err != nil {
				return err
			}
			ra.secrets = map[string]string{}
			for _, kv := range secrets {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return cli.Usagef("--secret %q: want NAME=VALUE", strings.SplitN(kv, "=", 2)[0]+"=…")
				}
				ra.secrets[k] = v
			}
			return run(c.Context(), ra, stdout, stderr)
		},
	}
	f := cli.Flags{FS: c.Flags(), NoEnv: true}
	f.List(&secrets, "secret", "a secret the workflow's steps declare: NAME=VALUE, masked as *** in all output (repeatable)")
	f.String(&ra.secretsDir, "secrets-dir", "", "a directory of secrets, one file per name (DIR/NAME)")
	f.List(&vars, "var", "override a declared var: k=v (repeatable)")
	f.List(&answers, "answer", "answer k of human step s: s.k=v (repeatable)")
	f.String(&ra.workdir, "workdir", "", "the steps' working directory (created if missing)")
	f.String(&ra.logdir, "logdir", "", "directory of the step logs and output files")
	f.String(&ra.state, "state", "", "step state file to read at start and keep up to date")
	f.Bool(&ra.json, "json", false, "print one JSON event per line on stdout")
	f.Bool(&ra.quiet, "quiet", false, "show the steps, not their output")
	f.String(&ra.sandbox, "sandbox", string(contain.ModeAuto), "sandbox of the run: auto, required or off")
	f.Paths(&ra.sandboxRO, "sandbox-ro", "a path steps may read and execute beside the system paths (repeatable)")
	f.Paths(&ra.sandboxRW, "sandbox-rw", "a path steps may read and write beside the run's dirs (repeatable)")
	f.String(&ra.network, "step-network", string(contain.NetworkHost), "the steps' network when the workflow sets none: host or none")
	return c
}

// event is a --json line: the event with the run it belongs to.
type event struct {
	RunID   string `json:"run_id"`
	Workdir string `json:"workdir"`
	runnerd.Event
}

func run(ctx context.Context, ra *runArgs, stdout, stderr io.Writer) error {
	reserveThreads(reservedThreads)
	w, err := cli.LoadWorkflow(ra.file, os.Stdin)
	if err != nil {
		return cli.Usage(err)
	}
	vars, err := w.ResolveVars(ra.vars)
	if err != nil {
		return cli.Usage(err)
	}
	for id := range ra.answers {
		if s := w.Step(id); s == nil || s.Kind != workflow.KindHuman {
			return cli.Usagef("--answer %s.*: no human step %q in %s", id, id, ra.file)
		}
	}
	secrets := secretsFor(w, ra)
	if missing := w.MissingSecrets(secrets); len(missing) > 0 {
		return cli.Usagef("secrets the workflow declares were not given: %s (give --secret NAME=VALUE or --secrets-dir DIR)", strings.Join(missing, ", "))
	}
	// Every flag is checked, and the sandbox found, before anything is
	// created: exit 2 leaves no workdir behind.
	sb, err := sandboxFor(ra, stderr)
	if err != nil {
		return cli.Usage(err)
	}
	saved, err := loadState(ra.state)
	if err != nil {
		return cli.Usage(err)
	}
	if saved.RunID == "" {
		saved.RunID = "local-" + runnerd.NewRunID()
	}
	if saved.Workflow == "" {
		saved.Workflow = w.Name
	}
	if ra.workdir == "" {
		ra.workdir = saved.Workdir
	}
	if ra.logdir == "" {
		ra.logdir = saved.LogDir
	}
	if ra.workdir == "" {
		if ra.workdir, err = os.MkdirTemp("", "runexec-"); err != nil {
			return cli.Usagef("create workdir: %w", err)
		}
	} else if err := os.MkdirAll(ra.workdir, 0o755); err != nil {
		return cli.Usagef("create workdir: %w", err)
	}
	if ra.workdir, err = filepath.Abs(ra.workdir); err != nil {
		return cli.Usagef("workdir: %w", err)
	}
	if ra.logdir == "" {
		ra.logdir = filepath.Clean(ra.workdir) + ".logs"
	}
	saved.Workdir, saved.LogDir = ra.workdir, ra.logdir
	fmt.Fprintf(stderr, "runexec: run %s of %s: workdir %s, logs %s\n", saved.RunID, ra.file, ra.workdir, ra.logdir)

	logdir := ra.logdir
	p := cli.NewProgress(stderr, cli.ProgressOptions{
		Logs: !ra.quiet, Terminal: !ra.json && cli.Redraws(stderr), Colour: cli.Colour(stderr),
		Tail:  func(step string) []string { return tail(filepath.Join(logdir, step+".log"), cli.TailLines) },
		Steps: stepIDs(w),
	})
	sink := func(e runnerd.Event) { p.Event(e) }
	if ra.json {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		sink = func(e runnerd.Event) { _ = enc.Encode(event{RunID: saved.RunID, Workdir: ra.workdir, Event: e}) }
	}
	opts := executor.Options{
		RunID:    saved.RunID,
		Workflow: w,
		Vars:     vars,
		Workdir:  ra.workdir,
		LogDir:   ra.logdir,
		State:    saved.Steps,
		Answers:  ra.answers,
		Secrets:  secrets,
		Env:      os.Environ(),
		Sink:     sink,
	}
	var saveErr error
	if ra.state != "" {
		opts.Checkpoint = func(s runnerd.StepStates) {
			saved.Steps = s
			if err := writeState(ra.state, saved); err != nil && saveErr == nil {
				saveErr = err
				fmt.Fprintf(stderr, "runexec: save state: %v\n", err)
			}
		}
	}
	var res executor.Result
	if sb != nil {
		home, tmp, derr := sandboxDirs(ra.workdir)
		if derr != nil {
			p.Close()
			return cli.Usage(derr)
		}
		opts.Env = withHomeTmp(opts.Env, home, tmp)
		for i, kv := range opts.Env {
			if p, ok := strings.CutPrefix(kv, "PATH="); ok {
				opts.Env[i] = "PATH=" + sb.FilterPath(p)
			}
		}
		res, err = runSandboxed(ctx, sb, opts, home, tmp)
	} else {
		res, err = executor.Run(ctx, opts)
	}
	p.Close()
	if err != nil {
		return cli.Usage(err)
	}
	if !ra.json {
		summary(stderr, res, ra, p.Elapsed())
	}
	return cli.Outcome(res.Status)
}

// loadState reads a --state file; a missing file is a fresh run.
func loadState(path string) (stateFile, error) {
	var sf stateFile
	if path == "" {
		return sf, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return sf, nil
	}
	if err != nil {
		return sf, fmt.Errorf("read state: %w", err)
	}
	if err := json.Unmarshal(b, &sf); err != nil {
		return sf, fmt.Errorf("read state %s: %w", path, err)
	}
	return sf, nil
}

// writeState replaces the state file atomically (temp file, fsync, rename),
// so a crash mid-write leaves the previous state rather than half of one.
func writeState(path string, sf stateFile) error {
	b, err := json.MarshalIndent(sf, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// summary prints how the run ended and, for a paused run, how to go on.
func summary(w io.Writer, res executor.Result, ra *runArgs, elapsed time.Duration) {
	line := fmt.Sprintf("run %s (%s) after %s", res.Status, res.Reason, elapsed.Round(time.Millisecond))
	if res.Message != "" {
		line += ": " + res.Message
	}
	fmt.Fprintln(w, line)
	if res.Status != runnerd.StatusPaused {
		return
	}
	if ra.state == "" {
		fmt.Fprintln(w, "no --state given: progress is not saved; run again with --state FILE to continue later")
		return
	}
	for _, id := range slices.Sorted(maps.Keys(res.Steps)) {
		if res.Steps[id].Status == runnerd.StepWaiting {
			fmt.Fprintf(w, "continue with: runexec run %s --state %s --answer %s.<key>=<value> (and the same --var flags)\n", ra.file, ra.state, id)
		}
	}
}

// tail returns the last n lines of a file (nil if it cannot be read). Logs
// are capped, so reading the whole file is bounded.
func tail(path string, n int) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	t := cli.LineTail{Max: n}
	t.Write(string(data))
	return t.Lines()
}

// secretsFor gathers the secrets the workflow declares from --secret and
// --secrets-dir (DIR/NAME); --secret wins. A declared secret found in
// neither is reported by the executor, naming it.
func secretsFor(w *workflow.Workflow, ra *runArgs) map[string]string {
	out := map[string]string{}
	for _, name := range w.SecretNames() {
		if v, ok := ra.secrets[name]; ok {
			out[name] = v
			continue
		}
		if ra.secretsDir == "" {
			continue
		}
		if data, err := os.ReadFile(filepath.Join(ra.secretsDir, name)); err == nil {
			out[name] = strings.TrimSuffix(string(data), "\n")
		}
	}
	return out
}

// stepIDs are the workflow's step ids, in its order.
func stepIDs(w *workflow.Workflow) []string {
	ids := make([]string, len(w.Steps))
	for i, s := range w.Steps {
		ids[i] = s.ID
	}
	return ids
}
