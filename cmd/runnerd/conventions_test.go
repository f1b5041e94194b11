package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/internal/testbin"
	"github.com/runnerd/runnerd/internal/testutil"
)

// commandNames lists runnerd's subcommands as --help shows them.
func commandNames(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, c := range newRoot(&cmdEnv{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}).Commands() {
		if c.Name() != "help" {
			names = append(names, c.Name())
		}
	}
	if len(names) < 11 {
		t.Fatalf("only %d commands: %v", len(names), names)
	}
	return names
}

// Every command: --help on stdout with exit 0 and nothing on stderr; a bad
// flag named GNU-style on stderr with exit 2 and nothing on stdout; no
// arguments where one is needed, exit 2.
func TestEveryCommandHelpAndBadFlag(t *testing.T) {
	for _, name := range append(commandNames(t), "") {
		t.Run("help "+name, func(t *testing.T) {
			args := []string{"--help"}
			if name != "" {
				args = []string{name, "--help"}
			}
			var out, errb bytes.Buffer
			code := run(context.Background(), &cmdEnv{stdout: &out, stderr: &errb}, args)
			if code != cli.ExitOK || errb.Len() > 0 || !strings.Contains(out.String(), strings.TrimSpace("Usage:\n  runnerd "+name)) {
				t.Errorf("runnerd %s --help: exit %d\nstdout:\n%s\nstderr:\n%s", name, code, out.String(), errb.String())
			}
		})
		t.Run("bad flag "+name, func(t *testing.T) {
			args := []string{"--no-such-flag"}
			if name != "" {
				args = []string{name, "--no-such-flag", "x"}
			}
			var out, errb bytes.Buffer
			code := run(context.Background(), &cmdEnv{stdout: &out, stderr: &errb}, args)
			want := "runnerd" + map[bool]string{true: " " + name}[name != ""] + ": unknown flag: --no-such-flag\n"
			if code != cli.ExitUsage || out.Len() > 0 || !strings.HasPrefix(errb.String(), want) || !strings.Contains(errb.String(), "--help' for usage") {
				t.Errorf("runnerd %v: exit %d, want %d and %q\nstdout:\n%s\nstderr:\n%s", args, code, cli.ExitUsage, want, out.String(), errb.String())
			}
		})
	}
	for _, args := range [][]string{{"frobnicate"}, {"status"}, {"status", "a", "b"}, {"list", "extra"}, {"submit"}} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), &cmdEnv{stdout: &out, stderr: &errb}, args); code != cli.ExitUsage || out.Len() > 0 || errb.Len() == 0 {
			t.Errorf("runnerd %v: exit %d, want %d, stdout %q, stderr %q", args, code, cli.ExitUsage, out.String(), errb.String())
		}
	}
	// A bare runnerd prints its help on stdout and exits 0, as kubectl does.
	var bare, bareErr bytes.Buffer
	if code := run(context.Background(), &cmdEnv{stdout: &bare, stderr: &bareErr}, nil); code != cli.ExitOK || bareErr.Len() > 0 || !strings.Contains(bare.String(), "Commands:") {
		t.Errorf("runnerd with no arguments: exit %d, stdout %q, stderr %q; want its help on stdout, exit 0", code, bare.String(), bareErr.String())
	}
	// The flags' heading explains the variables only where a flag has one.
	var help bytes.Buffer
	run(context.Background(), &cmdEnv{stdout: &help, stderr: &help}, []string{"version", "--help"})
	if strings.Contains(help.String(), "variable in brackets") {
		t.Errorf("runnerd version --help explains variables no flag of it has:\n%s", help.String())
	}
	help.Reset()
	run(context.Background(), &cmdEnv{stdout: &help, stderr: &help}, []string{"serve", "--help"})
	if !strings.Contains(help.String(), "Flags (a variable in brackets is read when its flag is not given):") {
		t.Errorf("runnerd serve --help does not explain its variables:\n%s", help.String())
	}
	var out bytes.Buffer
	if code := run(context.Background(), &cmdEnv{stdout: &out, stderr: &out}, []string{"--version"}); code != cli.ExitOK || out.String() != "runnerd "+version+"\n" {
		t.Errorf("runnerd --version: exit %d, %q", code, out.String())
	}
}

// Every command that prints data takes --json and prints JSON only on
// stdout: one document, or JSON lines for a stream; the rest goes to
// stderr. A new command with --json must be added here.
func TestEveryCommandJSON(t *testing.T) {
	e := startEnv(t)
	e.startServe()
	hello := writeFile(t, "hello.yaml", helloYAML)
	arts := writeFile(t, "arts.yaml", `name: arts
steps:
  - id: make
    shell: mkdir -p out && echo report > out/report.txt && echo made
    artifacts: ["out/report.txt"]
`)
	approval := writeFile(t, "approval.yaml", approvalYAML)
	long := writeFile(t, "long.yaml", "name: long\nsteps:\n  - id: nap\n    shell: sleep 60\n")

	doc := func(t *testing.T, r result) map[string]any {
		t.Helper()
		var v map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
			t.Fatalf("stdout is not one JSON document: %v\n%s", err, r.stdout)
		}
		return v
	}
	lines := func(t *testing.T, r result) []map[string]any {
		t.Helper()
		var out []map[string]any
		for _, l := range strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n") {
			if l == "" {
				continue
			}
			var v map[string]any
			if err := json.Unmarshal([]byte(l), &v); err != nil {
				t.Fatalf("stdout line is not JSON: %q\n%s", l, r.stdout)
			}
			out = append(out, v)
		}
		return out
	}
	covered := map[string]bool{}
	check := func(cmd string, want int, args ...string) result {
		t.Helper()
		covered[cmd] = true
		return e.mustRun(want, append([]string{cmd, "--json"}, args...)...)
	}

	if v := doc(t, check("version", cli.ExitOK)); v["version"] != version {
		t.Errorf("version --json: %v", v)
	}
	if v := doc(t, check("submit", cli.ExitOK, long, "--id", "j-queued")); v["id"] != "j-queued" || v["status"] != "queued" {
		t.Errorf("submit --json: %v", v)
	}
	evs := lines(t, check("submit", cli.ExitOK, arts, "--id", "j-arts", "--wait"))
	if len(evs) == 0 || evs[len(evs)-1]["type"] != string(runnerd.EventRunFinished) || evs[0]["run_id"] != "j-arts" {
		t.Errorf("submit --wait --json: first %v, last %v", evs[0], evs[len(evs)-1])
	}
	if v := doc(t, check("status", cli.ExitOK, "j-arts")); v["status"] != "succeeded" || v["reason"] != "completed" {
		t.Errorf("status --json: %v", v)
	}
	if ls := lines(t, check("list", cli.ExitOK)); len(ls) < 2 {
		t.Errorf("list --json: %v", ls)
	}
	if ls := lines(t, check("logs", cli.ExitOK, "j-arts")); len(ls) == 0 || ls[0]["type"] != string(runnerd.EventLog) {
		t.Errorf("logs --json: %v", ls)
	}
	dir := t.TempDir()
	v := doc(t, check("artifacts", cli.ExitOK, "j-arts", "-o", dir))
	if files, _ := v["files"].([]any); len(files) != 1 {
		t.Errorf("artifacts --json: %v", v)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "make", "out", "report.txt")); err != nil || string(b) != "report\n" {
		t.Errorf("artifact file: %q, %v", b, err)
	}
	e.mustRun(cli.ExitPaused, "submit", approval, "--id", "j-paused", "--wait")
	if v := doc(t, check("resume", cli.ExitOK, "j-paused", "--answer", "approve.ok=no")); v["id"] != "j-paused" {
		t.Errorf("resume --json: %v", v)
	}
	if v := doc(t, check("cancel", cli.ExitOK, "j-queued")); v["id"] != "j-queued" {
		t.Errorf("cancel --json: %v", v)
	}
	waitStatus(t, e, "j-queued", runnerd.StatusCancelled)
	if v := doc(t, check("retry", cli.ExitOK, "j-queued")); v["id"] != "j-queued" || v["status"] != "queued" {
		t.Errorf("retry --json: %v", v)
	}
	e.mustRun(cli.ExitOK, "cancel", "j-queued")
	_ = hello
	if ls := lines(t, check("gc", cli.ExitOK, "--older-than", "1ms", "--dry-run")); len(ls) == 0 || ls[0]["dry_run"] != true {
		t.Errorf("gc --json: %v", ls)
	}
	// Errors keep stdout clean under --json too.
	if r := e.mustRun(cli.ExitNotFound, "status", "--json", "j-nope"); r.stdout != "" {
		t.Errorf("status --json of a missing run printed %q", r.stdout)
	}

	for _, name := range commandNames(t) {
		c, _, _ := newRoot(&cmdEnv{}).Find([]string{name})
		has := c.Flags().Lookup("json") != nil
		if has != covered[name] {
			t.Errorf("command %s: --json flag %v, covered by this test %v", name, has, covered[name])
		}
		if !has && !slices.Contains([]string{"serve", "dev"}, name) {
			t.Errorf("command %s prints no data and is not serve or dev: give it --json", name)
		}
	}
}

// waitStatus waits until run id has status s.
func waitStatus(t *testing.T, e *testEnv, id string, s runnerd.Status) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, func() bool { return e.get(id).Status == s }, "run %s is not %s", id, s)
}

// Ctrl-C on a follow exits 130 and says the run goes on.
func TestInterruptedFollowExits130(t *testing.T) {
	startEnv(t) // no runner: the run stays queued
	cmd := exec.Command(testbin.MustPath(t, "runnerd"), "submit", writeFile(t, "wf.yaml", helloYAML), "--id", "int-1", "--wait")
	errb := &testutil.SyncBuffer{}
	cmd.Stderr = errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	// Following once it said so (its signal handler is set up before).
	testutil.Eventually(t, 30*time.Second, func() bool { return strings.Contains(errb.String(), "run int-1 queued") },
		"submit --wait did not queue the run:\n%s", errb.String)
	_ = cmd.Process.Signal(syscall.SIGINT)
	_ = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != cli.ExitInterrupted || !strings.Contains(errb.String(), "stopped following run int-1; it goes on") {
		t.Errorf("exit %d, want %d\nstderr:\n%s", code, cli.ExitInterrupted, errb.String())
	}
}
