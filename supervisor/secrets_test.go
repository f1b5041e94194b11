package supervisor

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/blob"
)

// A run's secrets come from the tenant's directory or runnerd's
// environment; the declaring step has them, and they appear nowhere the run
// leaves a trace — the run document, its events, its S3 logs — but as ***.
// A secret that is not configured fails the run at pickup.
func TestSecretsReachOnlyTheirStep(t *testing.T) {
	const fromEnv, fromDir = "env-secret-Q7w2", "dir-secret-K9z4"
	t.Setenv("RUNNERD_SECRET_TOKEN", fromEnv)
	e := newEnv(t, nil)
	cfg := e.config("r1")
	cfg.SecretsDir = t.TempDir()
	if err := os.MkdirAll(filepath.Join(cfg.SecretsDir, "t"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.SecretsDir, "t", "KEY"), []byte(fromDir), 0o600); err != nil {
		t.Fatal(err)
	}
	e.serve(cfg)
	e.submit("sec1", `
steps:
  - id: use
    secrets: {TOKEN: , KEY: {file: key}}
    shell: |
      echo "token=$TOKEN key=$(cat "$RUNEXEC_SECRETS/key")"
      printf 'env-secret-'; sleep 0.2; printf 'Q7w2'; printf ' (split)\n'
      echo "leak=$TOKEN" >> "$RUNEXEC_OUTPUT"
  - id: other
    needs: [use]
    shell: echo "other=[${TOKEN:-}]"
`, nil)
	run := e.waitStatus("sec1", runnerd.StatusSucceeded, 60*time.Second)

	ctx := context.Background()
	doc, _ := json.Marshal(run)
	evs, err := e.st.Events(ctx, "sec1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	evJSON, _ := json.Marshal(evs)
	useLog := readBlob(t, e.blobs, blob.StepLogKey("sec1", 1, "use"))
	otherLog := readBlob(t, e.blobs, blob.StepLogKey("sec1", 1, "other"))
	for what, text := range map[string]string{"run document": string(doc), "events": string(evJSON), "S3 log": useLog + otherLog} {
		for _, v := range []string{fromEnv, fromDir, "Q7w2 (split)"} {
			if strings.Contains(text, v) {
				t.Errorf("%s holds %q", what, v)
			}
		}
	}
	if !strings.Contains(useLog, "token=*** key=***") || !strings.Contains(useLog, "*** (split)") {
		t.Errorf("the declaring step's log: %q", useLog)
	}
	if !strings.Contains(otherLog, "other=[]") {
		t.Errorf("a step that does not declare the secret saw it: %q", otherLog)
	}
	if got := run.Steps["use"].Outputs["leak"]; got != "***" {
		t.Errorf("output = %q", got)
	}

	e.submit("sec2", "steps:\n  - id: a\n    secrets: [NOT_CONFIGURED]\n    run: [\"true\"]\n", nil)
	run = e.waitStatus("sec2", runnerd.StatusFailed, 30*time.Second)
	if run.Reason != runnerd.ReasonSecretMissing || run.Attempt != 1 || len(run.Steps) != 0 {
		t.Fatalf("missing secret: %s/%s attempt %d steps %v", run.Status, run.Reason, run.Attempt, run.Steps)
	}
	// The run document has no steps to name it in: the log is where an
	// operator reads which secret is missing.
	if !strings.Contains(e.logs.String(), `"secrets":["NOT_CONFIGURED"]`) {
		t.Errorf("the log does not name the missing secret")
	}
	e.waitQueueEmpty(10 * time.Second)
}
