package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startDev starts `runnerd dev` as a process on data, on free ports unless
// args say otherwise.
func startDev(t *testing.T, name, data string, args ...string) *proc {
	t.Helper()
	bin, runexecBin := binaries(t)
	all := append([]string{"dev", "--data", data, "--nats-port", "0", "--mongo-port", "0", "--s3-port", "0",
		"--runexec", runexecBin, "--run-dir", filepath.Join(t.TempDir(), "runs"),
		"--runner-id", uniq(name + "-"), "--metrics-addr", "127.0.0.1:0"}, args...)
	return startProc(t, name, baseEnv(nil), bin, all...)
}

// TestProcessDevOwnsDataDir: a second runnerd dev on the same --data is
// refused at once, naming the first one's pid, while the first serves on;
// a port in use is named with its server before anything is written to
// the data dir.
func TestProcessDevOwnsDataDir(t *testing.T) {
	if testing.Short() {
		t.Skip("starts runnerd dev processes")
	}
	bin, _ := binaries(t)
	data := filepath.Join(t.TempDir(), "data")
	first := startDev(t, "dev-first", data)
	first.waitLog(`"message":"serving"`, 60*time.Second)

	second := startDev(t, "dev-second", data)
	if code := second.wait(30 * time.Second); code != exitFailed {
		t.Errorf("second dev on the same data exited %d, want %d", code, exitFailed)
	}
	want := fmt.Sprintf("is held by pid %d", first.cmd.Process.Pid)
	if !strings.Contains(second.stderr.String(), want) {
		t.Errorf("second dev's stderr lacks %q:\n%s", want, second.stderr.String())
	}
	// The first one still serves its clients.
	c := &cli{t: t, bin: bin, env: baseEnv(devVars(first.stderr.String()))}
	c.mustRun(exitOK, "list")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	for _, tc := range []struct{ server, flag string }{{"NATS", "--nats-port"}, {"MongoDB", "--mongo-port"}, {"S3", "--s3-port"}} {
		t.Run(tc.server, func(t *testing.T) {
			other := filepath.Join(t.TempDir(), "data")
			p := startDev(t, "dev-"+tc.server, other, tc.flag, port)
			if code := p.wait(30 * time.Second); code != exitFailed {
				t.Errorf("dev with %s %s in use exited %d, want %d", tc.flag, port, code, exitFailed)
			}
			want := "address 127.0.0.1:" + port + " in use (" + tc.server + ")"
			if !strings.Contains(p.stderr.String(), want) {
				t.Errorf("stderr lacks %q:\n%s", want, p.stderr.String())
			}
			for _, sub := range []string{"nats", "mongo", "s3"} {
				if _, err := os.Stat(filepath.Join(other, sub)); !os.IsNotExist(err) {
					t.Errorf("%s/%s exists (%v): a server touched the data before the port was checked", other, sub, err)
				}
			}
		})
	}
	first.stop(30 * time.Second)
}
