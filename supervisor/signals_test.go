package supervisor

import (
	"strings"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/blob"
)

// A step starts with every signal at its default disposition, whatever
// runexec (the init of the run's PID namespace) does with them: a pipeline
// ends on SIGPIPE without a word, a SIGTERM ends a step's own children. And
// runexec still drops those signals when a step sends them to it.
func TestStepsStartWithDefaultSignals(t *testing.T) {
	e := newEnv(t, nil)
	e.serve(e.config("signals"))
	e.submit("sig1", `
steps:
  - id: a
    shell: |
      grep -E '^Sig(Ign|Blk)' /proc/self/status
      yes | head -c 10 >/dev/null
  - id: b
    needs: [a]
    shell: |
      # runexec is pid 1 of the run: these are dropped, it lives on.
      for s in TERM HUP QUIT USR1 USR2 PIPE; do kill -s $s 1; done
      sleep 0.3
      echo runexec survived
`, nil)
	e.waitStatus("sig1", runnerd.StatusSucceeded, 60*time.Second)
	log := readBlob(t, e.blobs, blob.StepLogKey("sig1", 1, "a"))
	if !strings.Contains(log, "SigIgn:\t0000000000000000") || !strings.Contains(log, "SigBlk:\t0000000000000000") || strings.Contains(log, "Broken pipe") {
		t.Fatalf("a step's signal dispositions and mask are not the defaults:\n%s", log)
	}
	if log := readBlob(t, e.blobs, blob.StepLogKey("sig1", 1, "b")); !strings.Contains(log, "runexec survived") {
		t.Fatalf("step b: %s", log)
	}
}
