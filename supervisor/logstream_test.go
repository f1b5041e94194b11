package supervisor

import (
	"strings"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/blob"
)

// A step whose output passes what is stored as events has its log
// uploaded while it runs, from the file runexec writes: the log in S3 is
// the whole file, output written after a pause (the stream waiting at the
// file's end) included, once and in order.
func TestBigStepLogStreamedWhole(t *testing.T) {
	e := newEnv(t, nil)
	cfg := e.config("stream")
	cfg.EventLogMax = 4 << 10
	r := e.serve(cfg)
	e.submit("big1", `
steps:
  - id: big
    shell: |
      head -c 300000 /dev/zero | tr '\0' 7
      sleep 0.3
      head -c 200000 /dev/zero | tr '\0' 8
      echo
      echo done
  - id: small
    needs: [big]
    run: ["echo", "small one"]
`, nil)
	run := e.waitStatus("big1", runnerd.StatusSucceeded, 60*time.Second)
	e.waitQueueEmpty(10 * time.Second)
	log := readBlob(t, e.blobs, blob.StepLogKey("big1", 1, "big"))
	want := strings.Repeat("7", 300000) + strings.Repeat("8", 200000) + "\ndone\n"
	if !strings.Contains(log, want) || strings.Count(log, "7") < 300000 || len(log) > len(want)+512 {
		t.Fatalf("log of the big step in S3: %d bytes, whole output present: %v", len(log), strings.Contains(log, want))
	}
	if run.Steps["big"].LogKey != blob.StepLogKey("big1", 1, "big") {
		t.Fatalf("log key %q", run.Steps["big"].LogKey)
	}
	if got := readBlob(t, e.blobs, blob.StepLogKey("big1", 1, "small")); !strings.Contains(got, "small one") {
		t.Fatalf("log of the small step: %q", got)
	}
	if n := promtest.ToFloat64(r.sup.m.s3Errors.WithLabelValues(opPutLog)); n != 0 {
		t.Fatalf("%v failed log uploads, want none", n)
	}
}
