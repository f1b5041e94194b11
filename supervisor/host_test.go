package supervisor

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
)

// What a crashed runner left on the machine under its runner id (run dirs,
// go-plugin socket dirs) is removed when the next one with that id starts.
func TestStartRemovesWhatACrashedRunnerLeft(t *testing.T) {
	e := newEnv(t, nil)
	cfg := e.config("crashed")
	probe, err := New(cfg, e.q, e.st, e.blobs) // only for its paths
	if err != nil {
		t.Fatal(err)
	}
	sockRoot := probe.sockRoot
	_ = probe.Close()
	staleRun := filepath.Join(cfg.RunDirRoot, cfg.RunnerID, "stale-run", "work")
	staleSock := filepath.Join(sockRoot, "stale")
	for _, d := range []string{staleRun, staleSock} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	r := e.serve(cfg)
	e.submit("afterstale", `steps: [{id: a, run: ["true"]}]`, nil)
	e.waitStatus("afterstale", runnerd.StatusSucceeded, 30*time.Second)
	for _, d := range []string{staleRun, staleSock} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", d, err)
		}
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sockRoot); !os.IsNotExist(err) {
		t.Errorf("socket root %s left after a clean stop: %v", sockRoot, err)
	}
}
