package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runnerd/runnerd/devstack"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/internal/testutil"
)

// startDev starts `runnerd dev` as a process on data, on free ports unless
// args say otherwise.
func startDev(t *testing.T, name, data string, args ...string) *proc {
	t.Helper()
	bin, runexecBin := binaries(t)
	all := append([]string{"dev", "--data", data, "--nats-port", "0", "--mongo-port", "0", "--s3-port", "0",
		"--runexec", runexecBin, "--run-dir", filepath.Join(t.TempDir(), "runs"),
		"--runner-id", testutil.UniqueID(name), "--metrics-addr", "127.0.0.1:0", "--ui-addr", "127.0.0.1:0"}, args...)
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
	if code := second.wait(30 * time.Second); code != cli.ExitSoftware {
		t.Errorf("second dev on the same data exited %d, want %d", code, cli.ExitSoftware)
	}
	want := fmt.Sprintf("is held by pid %d", first.cmd.Process.Pid)
	if !strings.Contains(second.stderr.String(), want) {
		t.Errorf("second dev's stderr lacks %q:\n%s", want, second.stderr.String())
	}
	// The first one still serves its clients.
	c := &clientProc{t: t, bin: bin, env: baseEnv(devVars(first.stderr.String()))}
	c.mustRun(cli.ExitOK, "list")

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
			if code := p.wait(30 * time.Second); code != cli.ExitSoftware {
				t.Errorf("dev with %s %s in use exited %d, want %d", tc.flag, port, code, cli.ExitSoftware)
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

// TestProcessDevCredentials: runnerd dev's servers require the credentials
// it made for its data dir; it prints them and writes them (0600) where
// --credentials says; a client given only the addresses and that file runs
// a workflow, one without the file is refused.
func TestProcessDevCredentials(t *testing.T) {
	if testing.Short() {
		t.Skip("starts runnerd dev processes")
	}
	bin, _ := binaries(t)
	data := filepath.Join(t.TempDir(), "data")
	credsFile := filepath.Join(t.TempDir(), "config", "runnerd", "dev-credentials.json")
	dev := startDev(t, "dev-creds", data, "--credentials", credsFile)
	dev.waitLog(`"message":"serving"`, 60*time.Second)

	creds, err := devstack.ReadCredentials(credsFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{credsFile, filepath.Join(data, devstack.CredentialsFile)} {
		fi, err := os.Stat(f)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v, want 0600", f, err, fi.Mode().Perm())
		}
	}
	banner := dev.stderr.String()
	for _, secret := range []string{creds.NATSPassword, creds.MongoPassword, creds.S3AccessKey, creds.S3SecretKey} {
		if secret == "" || !strings.Contains(banner, secret) {
			t.Errorf("the banner does not show a secret of %s:\n%s", credsFile, banner)
		}
	}
	plain := map[string]string{
		"RUNNERD_NATS_URL": creds.NATSURL, "RUNNERD_MONGO_URI": creds.MongoURI,
		"RUNNERD_S3_ENDPOINT": creds.S3Endpoint, "XDG_CONFIG_HOME": t.TempDir(),
	}
	c := &clientProc{t: t, bin: bin, env: baseEnv(plain)}
	if r := c.mustRun(cli.ExitNoPerm, "list"); !strings.Contains(r.stderr, "MongoDB at "+creds.MongoURI+" refused the credentials") {
		t.Errorf("list without credentials: %s", r.stderr)
	}
	plain["RUNNERD_CREDENTIALS"] = credsFile
	c = &clientProc{t: t, bin: bin, env: baseEnv(plain)}
	runID, _ := c.submit(cli.ExitOK, example(t, "hello.yaml"), "--wait")
	if logs := c.mustRun(cli.ExitOK, "logs", runID).stdout; !strings.Contains(logs, "hello, world") {
		t.Errorf("logs: %q", logs)
	}
	dev.stop(30 * time.Second)
}

// TestProcessDevNoServe: dev --no-serve starts the servers and no
// supervisor (no run is taken until a serve joins); a runnerd serve given
// the banner's variables joins and runs the submitted run; SIGTERM stops
// both with exit 0 and the run dir of the joined runner is gone.
func TestProcessDevNoServe(t *testing.T) {
	if testing.Short() {
		t.Skip("starts runnerd dev and serve processes")
	}
	bin, runexecBin := binaries(t)
	dev := startDev(t, "dev-noserve", filepath.Join(t.TempDir(), "data"), "--no-serve")
	dev.waitLog("--no-serve: no supervisor here", 60*time.Second)
	vars := devVars(dev.stderr.String())
	runs := filepath.Join(t.TempDir(), "runs")
	id := testutil.UniqueID("joined")
	serve := startProc(t, "runnerd serve "+id, baseEnv(vars), bin, "serve", "--runexec", runexecBin,
		"--run-dir", runs, "--runner-id", id, "--metrics-addr", "127.0.0.1:0", "--ui-addr", "", "--log-format", "json")
	serve.waitLog(`"message":"serving"`, 60*time.Second)
	c := &clientProc{t: t, bin: bin, env: baseEnv(vars)}
	runID, _ := c.submit(cli.ExitOK, writeFile(t, "hello.yaml", helloYAML), "--wait")
	if st := c.status(runID); st.Status != "succeeded" || st.RunnerID != id {
		t.Errorf("run %s: %s by %q, want succeeded by the joined serve %s", runID, st.Status, st.RunnerID, id)
	}
	if strings.Contains(dev.stderr.String(), `"message":"serving"`) {
		t.Errorf("dev --no-serve started a supervisor:\n%s", dev.stderr.String())
	}
	serve.stop(60 * time.Second)
	dev.stop(60 * time.Second)
	if _, err := os.Stat(filepath.Join(runs, id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the run dir of runner %s is left after a clean stop: %v", id, err)
	}
}
