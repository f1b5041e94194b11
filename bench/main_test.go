// Package bench holds runnerd's macro-benchmarks: end to end on the embedded
// devstack (latency, throughput, concurrency curves, latency against a
// store already holding runs), a 200 MiB log and the memory of `runnerd
// serve` and of its runexec children. It has no tests, only benchmarks:
// `make test` compiles it, `make bench` runs it once (-benchtime 1x), each
// benchmark doing its own fixed number of runs and reporting its figures
// with b.ReportMetric. docs/benchmarks.md records the figures.
package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	binOnce     sync.Once
	binDir      string
	binErr      error
	builtBinDir string // removed by TestMain
)

// TestMain only removes the binaries a benchmark built; nothing is built
// unless a benchmark runs, so `make test` stays a compile check here.
func TestMain(m *testing.M) {
	code := m.Run()
	if builtBinDir != "" {
		_ = os.RemoveAll(builtBinDir)
	}
	os.Exit(code)
}

// binaries returns the directory holding runnerd and runexec: $RUNNERD_BIN
// (what `make bench` built), or both built once into a temporary directory.
func binaries(b testing.TB) string {
	b.Helper()
	binOnce.Do(func() {
		if dir := os.Getenv("RUNNERD_BIN"); dir != "" {
			binDir = dir
			for _, name := range []string{"runnerd", "runexec"} {
				if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
					binErr = err
				}
			}
			return
		}
		dir, err := os.MkdirTemp("", "runnerd-bench-bin")
		if err != nil {
			binErr = err
			return
		}
		builtBinDir, binDir = dir, dir
		out, err := exec.Command("go", "build", "-tags", "ferretdb_no_postgresql", "-ldflags", "-s -w",
			"-o", dir+"/", "github.com/runnerd/runnerd/cmd/runnerd", "github.com/runnerd/runnerd/cmd/runexec").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("build runnerd and runexec: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		b.Fatal(binErr)
	}
	return binDir
}

func runexecBin(b testing.TB) string { return filepath.Join(binaries(b), "runexec") }
func runnerdBin(b testing.TB) string { return filepath.Join(binaries(b), "runnerd") }
