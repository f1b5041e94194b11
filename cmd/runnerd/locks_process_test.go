package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/runnerd/runnerd/internal/testutil"
)

// A SIGKILLed runnerd cannot remove its runner id's lock file; the next
// runnerd to start on the machine removes it (its lock is free), and a
// clean stop leaves no lock file of its own, nor the directory.
func TestProcessStaleLockFileRemoved(t *testing.T) {
	if testing.Short() {
		t.Skip("starts runnerd serve processes")
	}
	bin, runexecBin := binaries(t)
	startEnv(t)
	vars := map[string]string{}
	for _, k := range []string{"RUNNERD_NATS_URL", "RUNNERD_MONGO_URI", "RUNNERD_S3_ENDPOINT", "RUNNERD_S3_BUCKET",
		"RUNNERD_S3_REGION", "RUNNERD_S3_ACCESS_KEY", "RUNNERD_S3_SECRET_KEY", "RUNNERD_TENANT"} {
		vars[k] = os.Getenv(k)
	}
	// A TMPDIR of its own (short: go-plugin's sockets live under it), so the
	// lock directory holds only this test's runners.
	tmp, err := os.MkdirTemp("", "lk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(tmp) })
	vars["TMPDIR"] = tmp
	locks := filepath.Join(tmp, "runnerd-locks")
	exists := func(id string) bool { _, err := os.Stat(filepath.Join(locks, id+".lock")); return err == nil }
	serve := func(id string) *proc {
		p := startProc(t, "runnerd serve "+id, baseEnv(vars), bin, "serve",
			"--runexec", runexecBin, "--run-dir", filepath.Join(tmp, "runs"), "--runner-id", id,
			"--metrics-addr", "127.0.0.1:0", "--log-format", "json")
		p.waitLog(`"message":"serving"`, 60*time.Second)
		return p
	}

	killedID, nextID := testutil.UniqueID("killed"), testutil.UniqueID("next")
	killed := serve(killedID)
	if err := syscall.Kill(-killed.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-killed.done
	if !exists(killedID) {
		t.Fatalf("no lock file of the SIGKILLed runner %s in %s: nothing to check", killedID, locks)
	}
	next := serve(nextID)
	if exists(killedID) || !exists(nextID) {
		t.Errorf("after the next start: the killed runner's lock file there %v, the new one's %v; want false, true", exists(killedID), exists(nextID))
	}
	next.stop(60 * time.Second)
	if _, err := os.Stat(locks); !os.IsNotExist(err) {
		left, _ := os.ReadDir(locks)
		t.Errorf("after a clean stop %s is still there: %v", locks, left)
	}
}
