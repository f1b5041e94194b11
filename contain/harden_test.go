package contain

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const hardenHelperEnv = "RUNNERD_TEST_HARDEN_HELPER"

// hardenHelper stands in for runnerd: with mode "protect" it does what
// runnerd does at start, then waits to be read.
func hardenHelper(mode string) {
	if mode == "protect" {
		if err := ProtectEnviron(); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
	}
	fmt.Println("ready")
	time.Sleep(time.Minute)
	os.Exit(0)
}

// A step runs as runnerd's uid; it must not read runnerd's environment
// (where the credentials are). Needs root, to run both as another uid.
func TestStepsCannotReadRunnerdEnviron(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the helper and the reader as another user")
	}
	const uid = 65534 // nobody
	// The test binary, where nobody can execute it.
	dir, err := os.MkdirTemp("", "harden")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "helper")
	copyFile(t, os.Args[0], bin)

	read := func(mode string) (string, error) {
		helper := exec.Command(bin)
		helper.Env = []string{hardenHelperEnv + "=" + mode, "RUNNERD_S3_SECRET_KEY=s3cr3t-" + mode}
		helper.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		out, err := helper.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := helper.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = helper.Process.Kill(); _ = helper.Wait() }()
		line, _ := bufio.NewReader(out).ReadString('\n')
		if strings.TrimSpace(line) != "ready" {
			t.Fatalf("helper (%s): %q", mode, line)
		}
		// The step: same uid, reading the helper's environ.
		cat := exec.Command("cat", fmt.Sprintf("/proc/%d/environ", helper.Process.Pid))
		cat.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		got, err := cat.CombinedOutput()
		return string(got), err
	}

	got, err := read("plain")
	if err != nil || !strings.Contains(got, "s3cr3t-plain") {
		t.Fatalf("control: a dumpable process's environ should be readable by its uid: %v %q", err, got)
	}
	got, err = read("protect")
	if err == nil || strings.Contains(got, "s3cr3t-protect") {
		t.Fatalf("a step of the same uid read runnerd's environment: %q", got)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
