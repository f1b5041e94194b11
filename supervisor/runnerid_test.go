package supervisor

import (
	"errors"
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
	second.Close()
	first.Close()
	again, got, err := claimRunnerID(id, true)
	if err != nil || got != id {
		t.Fatalf("claim after release: %q %v", got, err)
	}
	again.Close()
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
