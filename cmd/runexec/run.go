package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/contain"
	"github.com/runnerd/runnerd/executor"
	"github.com/runnerd/runnerd/workflow"
)

// tailLines is how much of a failed step's log is printed.
const tailLines = 20

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

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

	sandbox              contain.Mode
	sandboxRO, sandboxRW listFlag
	network              contain.Network
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

func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	ra, code := parseRunArgs(args, stderr)
	if ra == nil {
		return code
	}
	reserveThreads(reservedThreads)
	w, err := workflow.Load(ra.file)
	if err != nil {
		printWorkflowError(stderr, err)
		return ExitUsage
	}
	vars, err := w.ResolveVars(ra.vars)
	if err != nil {
		fmt.Fprintf(stderr, "runexec: %v\n", err)
		return ExitUsage
	}
	for id := range ra.answers {
		if s := w.Step(id); s == nil || s.Kind != workflow.KindHuman {
			fmt.Fprintf(stderr, "runexec: --answer %s.*: no human step %q in %s\n", id, id, ra.file)
			return ExitUsage
		}
	}
	secrets := secretsFor(w, ra)
	if missing := w.MissingSecrets(secrets); len(missing) > 0 {
		fmt.Fprintf(stderr, "runexec: secrets the workflow declares were not given: %s (give --secret NAME=VALUE or --secrets-dir DIR)\n", strings.Join(missing, ", "))
		return ExitUsage
	}
	saved, err := loadState(ra.state)
	if err != nil {
		fmt.Fprintf(stderr, "runexec: %v\n", err)
		return ExitUsage
	}
	if saved.RunID == "" {
		saved.RunID = newRunID()
	}
	if saved.Workflow == "" {
		saved.Workflow = w.Name
	}

	p := newPrinter(stdout, ra.json)
	if ra.workdir == "" {
		ra.workdir = saved.Workdir
	}
	if ra.logdir == "" {
		ra.logdir = saved.LogDir
	}
	if ra.workdir == "" {
		if ra.workdir, err = os.MkdirTemp("", "runexec-"); err != nil {
			fmt.Fprintf(stderr, "runexec: create workdir: %v\n", err)
			return ExitUsage
		}
	} else if err := os.MkdirAll(ra.workdir, 0o755); err != nil {
		fmt.Fprintf(stderr, "runexec: create workdir: %v\n", err)
		return ExitUsage
	}
	if ra.workdir, err = filepath.Abs(ra.workdir); err != nil {
		fmt.Fprintf(stderr, "runexec: workdir: %v\n", err)
		return ExitUsage
	}
	if ra.logdir == "" {
		ra.logdir = filepath.Clean(ra.workdir) + ".logs"
	}
	saved.Workdir, saved.LogDir = ra.workdir, ra.logdir
	// Where things are goes to stderr under --json, so stdout stays events only.
	info := stdout
	if ra.json {
		info = stderr
	}
	fmt.Fprintf(info, "runexec: run %s of %s: workdir %s, logs %s\n", saved.RunID, ra.file, ra.workdir, ra.logdir)

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
		Sink:     func(e runnerd.Event) { p.event(e, ra.logdir) },
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
	sb, err := sandboxFor(ra, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "runexec: %v\n", err)
		return ExitUsage
	}
	var res executor.Result
	if sb != nil {
		home, tmp, derr := sandboxDirs(ra.workdir)
		if derr != nil {
			fmt.Fprintf(stderr, "runexec: %v\n", derr)
			return ExitUsage
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
	if err != nil {
		fmt.Fprintf(stderr, "runexec: %v\n", err)
		return ExitUsage
	}
	p.summary(res, ra)
	return exitCode(res.Status)
}

func parseRunArgs(args []string, stderr io.Writer) (*runArgs, int) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	var vars, answers, secrets listFlag
	ra := &runArgs{vars: map[string]string{}, answers: map[string]map[string]string{}, secrets: map[string]string{}}
	fs.Var(&secrets, "secret", "a secret the workflow's steps declare: NAME=VALUE (repeatable)")
	fs.StringVar(&ra.secretsDir, "secrets-dir", "", "a directory of secrets, one file per name (DIR/NAME)")
	fs.Var(&vars, "var", "override a var: k=v (repeatable)")
	fs.Var(&answers, "answer", "answer a human step: step.key=v (repeatable)")
	fs.StringVar(&ra.workdir, "workdir", "", "working directory of the steps")
	fs.StringVar(&ra.logdir, "logdir", "", "directory for step logs")
	fs.StringVar(&ra.state, "state", "", "step state file to read and keep up to date")
	fs.BoolVar(&ra.json, "json", false, "print events as JSON lines")
	fs.StringVar((*string)(&ra.sandbox), "sandbox", string(contain.ModeAuto), "sandbox of the run: auto, required or off")
	fs.Var(&ra.sandboxRO, "sandbox-ro", "a path steps may read and execute beside the system paths (repeatable)")
	fs.Var(&ra.sandboxRW, "sandbox-rw", "a path steps may read and write beside the run's dirs (repeatable)")
	fs.StringVar((*string)(&ra.network), "step-network", string(contain.NetworkHost), "the steps' network when the workflow sets none: host or none")
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil, ExitSucceeded
	}
	if err != nil {
		return nil, ExitUsage
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "runexec run: want exactly one workflow file, got %d arguments\n", len(pos))
		return nil, ExitUsage
	}
	ra.file = pos[0]
	for _, kv := range vars {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			fmt.Fprintf(stderr, "runexec run: --var %q: want k=v\n", kv)
			return nil, ExitUsage
		}
		ra.vars[k] = v
	}
	for _, kv := range secrets {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			fmt.Fprintf(stderr, "runexec run: --secret %q: want NAME=VALUE\n", strings.SplitN(kv, "=", 2)[0]+"=…")
			return nil, ExitUsage
		}
		ra.secrets[k] = v
	}
	for _, a := range answers {
		sk, v, ok := strings.Cut(a, "=")
		step, key, ok2 := strings.Cut(sk, ".")
		if !ok || !ok2 || step == "" || key == "" {
			fmt.Fprintf(stderr, "runexec run: --answer %q: want step.key=value\n", a)
			return nil, ExitUsage
		}
		if len(v) > workflow.MaxAnswerBytes {
			fmt.Fprintf(stderr, "runexec run: --answer %s.%s: %d bytes: the limit is %d (%d KiB)\n", step, key, len(v), workflow.MaxAnswerBytes, workflow.MaxAnswerBytes>>10)
			return nil, ExitUsage
		}
		if ra.answers[step] == nil {
			ra.answers[step] = map[string]string{}
		}
		ra.answers[step][key] = v
	}
	return ra, 0
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

func newRunID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "local-" + time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b)
}

// printer renders events, as JSON lines or as one human line per step
// start and finish.
type printer struct {
	w     io.Writer
	json  *json.Encoder
	start time.Time
}

func newPrinter(w io.Writer, asJSON bool) *printer {
	p := &printer{w: w, start: time.Now()}
	if asJSON {
		p.json = json.NewEncoder(w)
	}
	return p
}

func (p *printer) event(e runnerd.Event, logdir string) {
	if p.json != nil {
		_ = p.json.Encode(e)
		return
	}
	at := fmt.Sprintf("[%7.2fs]", time.Since(p.start).Seconds())
	switch e.Type {
	case runnerd.EventStepStarted:
		line := fmt.Sprintf("%s start  %s", at, e.Step)
		if e.Attempt > 1 {
			line += fmt.Sprintf(" (attempt %d; %s)", e.Attempt, e.Message)
		}
		fmt.Fprintln(p.w, line)
	case runnerd.EventStepFinished:
		label := map[string]string{
			string(runnerd.StepSucceeded): "ok    ",
			string(runnerd.StepFailed):    "FAIL  ",
			string(runnerd.StepSkipped):   "skip  ",
			string(runnerd.StepCancelled): "cancel",
		}[e.Status]
		if label == "" {
			label = e.Status
		}
		line := fmt.Sprintf("%s %s %-20s %8s  %s", at, label, e.Step, time.Duration(e.DurationMS)*time.Millisecond, e.Reason)
		if e.Message != "" {
			line += ": " + e.Message
		}
		fmt.Fprintln(p.w, line)
		if e.Status == string(runnerd.StepFailed) {
			for _, l := range tail(filepath.Join(logdir, e.Step+".log"), tailLines) {
				fmt.Fprintf(p.w, "           | %s\n", l)
			}
		}
	case runnerd.EventPaused:
		fmt.Fprintf(p.w, "%s wait   %-20s %q\n", at, e.Step, e.Prompt)
	}
}

func (p *printer) summary(res executor.Result, ra *runArgs) {
	if p.json != nil {
		return
	}
	line := fmt.Sprintf("run %s (%s) after %s", res.Status, res.Reason, time.Since(p.start).Round(time.Millisecond))
	if res.Message != "" {
		line += ": " + res.Message
	}
	fmt.Fprintln(p.w, line)
	if res.Status != runnerd.StatusPaused {
		return
	}
	if ra.state == "" {
		fmt.Fprintln(p.w, "no --state given: progress is not saved; run again with --state FILE to continue later")
		return
	}
	for id, st := range res.Steps {
		if st.Status == runnerd.StepWaiting {
			fmt.Fprintf(p.w, "continue with: runexec run %s --state %s --answer %s.<key>=<value> (and the same --var flags)\n", ra.file, ra.state, id)
		}
	}
}

// tail returns the last n lines of a file (nil if it cannot be read). Logs
// are capped, so reading the whole file is bounded.
func tail(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return lines
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
