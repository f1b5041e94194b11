package child

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/testbin"
)

// BenchmarkSpawnBare is the floor: fork/exec/wait of the runexec binary
// (it prints its usage and exits).
func BenchmarkSpawnBare(b *testing.B) {
	for b.Loop() {
		cmd := exec.Command(testbin.MustPath(b, "runexec"), "--help")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		_ = cmd.Run()
	}
}

// BenchmarkSpawnPlugin is a whole child cycle as the supervisor runs it:
// start runexec through go-plugin, Execute a one-step workflow, close.
func BenchmarkSpawnPlugin(b *testing.B) { benchSpawn(b, false) }

// BenchmarkSpawnPluginMTLS is the same with go-plugin's AutoMTLS.
func BenchmarkSpawnPluginMTLS(b *testing.B) { benchSpawn(b, true) }

func benchSpawn(b *testing.B, mtls bool) {
	req := benchRequest(b)
	sock := shortDir(b)
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		cmd := exec.Command(testbin.MustPath(b, "runexec"))
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TMPDIR=" + sock}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		c, err := Start(Config{Cmd: cmd, SocketDir: sock, AutoMTLS: mtls})
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Execute(context.Background(), req, func([]runnerd.Event) error { return nil }); err != nil {
			b.Fatal(err)
		}
		c.Close()
		lat = append(lat, time.Since(start))
	}
	reportPercentiles(b, lat)
}

// BenchmarkExecutePrestarted times only Execute on a child started before
// (as runnerd's --prestart does): what isolation costs a run when the
// child's start is off the run's path.
func BenchmarkExecutePrestarted(b *testing.B) {
	req := benchRequest(b)
	sock := shortDir(b)
	var lat []time.Duration
	for b.Loop() {
		b.StopTimer()
		cmd := exec.Command(testbin.MustPath(b, "runexec"))
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TMPDIR=" + sock}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		c, err := Start(Config{Cmd: cmd, SocketDir: sock})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if err := c.Execute(context.Background(), req, func([]runnerd.Event) error { return nil }); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		b.StopTimer()
		c.Close()
		b.StartTimer()
	}
	reportPercentiles(b, lat)
}

func benchRequest(b *testing.B) *Request {
	b.Helper()
	return request(b, "steps: [{id: a, run: [\"true\"]}]")
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
