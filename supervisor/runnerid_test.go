package supervisor

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/queue"
)

func TestRunnerIDIsLockedMachineWide(t *testing.T) {
	id := testutil.UniqueID("lock")
	first, got, err := claimRunnerID(id, false)
	if err != nil || got != id {
		t.Fatalf("first claim: %q %v", got, err)
	}
	if _, _, err := claimRunnerID(id, false); !errors.Is(err, ErrRunnerIDInUse) {
		t.Fatalf("second claim of an explicit id: %v, want ErrRunnerIDInUse", err)
	}
	second, got, err := claimRunnerID(id, true)
	if err != nil || got != id+"-2" {
		t.Fatalf("second claim of a default id: %q %v, want %s-2", got, err, id)
	}
	stale, _, err := claimRunnerID(id+"-3", false) // a holder that dies: the kernel drops its lock, the file stays
	if err != nil {
		t.Fatal(err)
	}
	stale.Close()
	if err := unlockRunnerID(second); err != nil {
		t.Fatal(err)
	}
	if err := unlockRunnerID(first); err != nil {
		t.Fatal(err)
	}
	again, got, err := claimRunnerID(id, true)
	if err != nil || got != id {
		t.Fatalf("claim after release: %q %v", got, err)
	}
	// A released id leaves no lock file behind; a stale one is taken over.
	if err := unlockRunnerID(again); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{id, id + "-2"} {
		if _, err := os.Stat(filepath.Join(lockDir(), name+".lock")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("lock file of %s left after its release: %v", name, err)
		}
	}
	if f, _, err := claimRunnerID(id+"-3", false); err != nil {
		t.Errorf("a stale lock file is not taken over: %v", err)
	} else {
		_ = unlockRunnerID(f)
	}
}

// A lock file no process holds (its runner was SIGKILLed) is removed by
// the next runner to start or stop cleanly; a held one stays.
func TestStaleLockFilesAreRemoved(t *testing.T) {
	held, heldID, err := claimRunnerID(testutil.UniqueID("held"), false)
	if err != nil {
		t.Fatal(err)
	}
	file := func(id string) string { return filepath.Join(lockDir(), id+".lock") }
	exists := func(id string) bool { _, err := os.Stat(file(id)); return err == nil }
	stale := func() string {
		f, id, err := claimRunnerID(testutil.UniqueID("stale"), false)
		if err != nil {
			t.Fatal(err)
		}
		f.Close() // as the kernel does for a killed holder: the lock goes, the file stays
		if !exists(id) {
			t.Fatalf("the stale lock file of %s is not there to be removed", id)
		}
		return id
	}
	before := stale()
	next, nextID, err := claimRunnerID(testutil.UniqueID("next"), false)
	if err != nil {
		t.Fatal(err)
	}
	if exists(before) || !exists(heldID) || !exists(nextID) {
		t.Errorf("after a start: stale %v, held %v, own %v; want false, true, true", exists(before), exists(heldID), exists(nextID))
	}
	after := stale()
	if err := unlockRunnerID(next); err != nil {
		t.Fatal(err)
	}
	if exists(after) || !exists(heldID) || exists(nextID) {
		t.Errorf("after a clean stop: stale %v, held %v, own %v; want false, true, false", exists(after), exists(heldID), exists(nextID))
	}
	// The held id is still locked: its holder is told so.
	if _, _, err := claimRunnerID(heldID, false); !errors.Is(err, ErrRunnerIDInUse) {
		t.Errorf("claim of a held id after the sweeps: %v, want ErrRunnerIDInUse", err)
	}
	if err := unlockRunnerID(held); err != nil {
		t.Fatal(err)
	}
}

func TestRunnerIDFromHost(t *testing.T) {
	for host, want := range map[string]string{
		"vm": "vm", "node-1.example.com": "node-1-example-com", "": "runnerd", "_x": "runnerd_x", "a b": "a-b",
	} {
		got := runnerIDFromHost(host)
		if got != want || queue.ValidateRunID(got) != nil {
			t.Errorf("runnerIDFromHost(%q) = %q, want %q (a valid id)", host, got, want)
		}
	}
}
