package procfs

import (
	"os"
	"os/exec"
	"slices"
	"testing"
)

func TestChildrenAndStat(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if !slices.Contains(Children(), cmd.Process.Pid) {
		t.Fatalf("child %d not in %v", cmd.Process.Pid, Children())
	}
	st, ok := Stat(cmd.Process.Pid)
	if !ok || st.PPID != os.Getpid() || st.State == 'Z' {
		t.Fatalf("stat %+v ok %v", st, ok)
	}
	if _, ok := Stat(-1); ok {
		t.Fatal("stat of a missing process succeeded")
	}
}
