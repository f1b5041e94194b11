package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runnerd/runnerd/internal/cli"
)

// `runexec run` runs a workflow in the sandbox runnerd gives a run, unless
// --sandbox=off: a file outside the run's dirs is out of reach, the step
// sees only its run's processes, and its HOME and TMPDIR are the run's.
func TestRunIsSandboxedByDefault(t *testing.T) {
	dir := t.TempDir()
	secret := writeFile(t, t.TempDir(), "secret", "s3cr3t\n")
	wf := writeFile(t, dir, "wf.yaml", `steps:
  - id: probe
    shell: |
      cat `+secret+` 2>&1 || true
      echo "procs $(ls /proc | grep -c '^[0-9]')"
      echo "home $HOME"
      echo x > "$HOME/x" && echo home-writable
`)
	for _, mode := range []string{"auto", "off"} {
		work := filepath.Join(dir, "work-"+mode)
		r := runexec(t, "run", wf, "--workdir", work, "--sandbox", mode)
		wantCode(t, r, cli.ExitOK)
		log, err := os.ReadFile(filepath.Join(work+".logs", "probe.log"))
		if err != nil {
			t.Fatal(err)
		}
		got := string(log)
		if mode == "off" {
			if !strings.Contains(got, "s3cr3t") {
				t.Fatalf("--sandbox=off: the step should read %s:\n%s", secret, got)
			}
			continue
		}
		if strings.Contains(got, "s3cr3t") || !strings.Contains(got, "Permission denied") {
			t.Fatalf("the sandboxed step read a file outside its run:\n%s", got)
		}
		if !strings.Contains(got, "home "+work+".home") || !strings.Contains(got, "home-writable") {
			t.Fatalf("HOME of the sandboxed step:\n%s", got)
		}
		for _, l := range strings.Split(got, "\n") {
			if n, ok := strings.CutPrefix(l, "procs "); ok && len(n) > 1 {
				t.Fatalf("the sandboxed step sees %s processes", n)
			}
		}
	}
}
