package executor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runnerd/runnerd"
)

const secretValue = "s3cr3t-Value-9f2c"

// A secret reaches the steps that declare it (env or file) and no other,
// and every occurrence of its value in output — in one write or split over
// two — is *** in the log file, the log events and the outputs.
func TestSecrets(t *testing.T) {
	h := newHarness(t)
	tmp := t.TempDir()
	o := h.opts(`
steps:
  - id: env
    secrets: [TOKEN]
    shell: |
      printf '%s' "$TOKEN" > env.txt
      echo "one write: $TOKEN"
      printf 's3cr3t-'; sleep 0.3; printf 'Value-9f2c split\n'
      echo "out=$TOKEN" >> "$RUNEXEC_OUTPUT"
  - id: file
    secrets: {TOKEN: {file: token}}
    shell: |
      cat "$RUNEXEC_SECRETS/token" > file.txt
      stat -c %a "$RUNEXEC_SECRETS/token" > mode.txt
      echo "$RUNEXEC_SECRETS" > dir.txt
  - id: other
    needs: [env, file]
    shell: env > other-env.txt
`)
	o.Secrets = map[string]string{"TOKEN": secretValue}
	o.Env = append(o.Env, "TMPDIR="+tmp)
	res := h.run(context.Background(), o)
	wantStatus(t, res, runnerd.StatusSucceeded, runnerd.ReasonCompleted)
	if got := h.read("env.txt"); got != secretValue {
		t.Errorf("env form: the step read %q", got)
	}
	if got := h.read("file.txt"); got != secretValue {
		t.Errorf("file form: the step read %q", got)
	}
	if got := strings.TrimSpace(h.read("mode.txt")); got != "600" {
		t.Errorf("file mode %s, want 600", got)
	}
	if dir := strings.TrimSpace(h.read("dir.txt")); !strings.HasPrefix(dir, tmp) {
		t.Errorf("secrets dir %s, want under TMPDIR %s", dir, tmp)
	} else if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("secrets dir %s left after its step: %v", dir, err)
	}
	if env := h.read("other-env.txt"); strings.Contains(env, secretValue) || strings.Contains(env, "TOKEN=") {
		t.Errorf("a step that does not declare the secret has it in its environment")
	}
	log, _ := os.ReadFile(filepath.Join(h.logdir, "env.log"))
	for _, want := range []string{"one write: ***", "*** split"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("log file lacks %q:\n%s", want, log)
		}
	}
	var events strings.Builder
	h.mu.Lock()
	for _, e := range h.events {
		events.WriteString(e.Text + e.Value + e.Message + "\n")
	}
	h.mu.Unlock()
	for what, text := range map[string]string{"log file": string(log), "events": events.String(), "outputs": res.Steps["env"].Outputs["out"]} {
		if strings.Contains(text, secretValue) || strings.Contains(text, "s3cr3t-Value") {
			t.Errorf("the secret is in the %s", what)
		}
	}
	if got := res.Steps["env"].Outputs["out"]; got != "***" {
		t.Errorf("output = %q, want ***", got)
	}
}

func TestMissingSecretRefusesTheRun(t *testing.T) {
	h := newHarness(t)
	o := h.opts("steps:\n  - id: a\n    secrets: [NOPE]\n    run: [\"true\"]\n")
	if _, err := Run(context.Background(), o); !errors.Is(err, ErrMissingSecret) || !strings.Contains(err.Error(), "NOPE") {
		t.Fatalf("Run: %v", err)
	}
}

func TestMaskerHoldsASplitSecret(t *testing.T) {
	m := newMasker([]string{"abcdef"})
	var out []byte
	for _, chunk := range []string{"xx ab", "c", "def yy abc", "dez"} {
		out = append(out, m.push([]byte(chunk))...)
	}
	out = append(out, m.flush()...)
	if got := string(out); got != "xx *** yy abcdez" {
		t.Fatalf("masked %q", got)
	}
}
