// Package testbin gives tests the project's binaries: the ones `make test`
// built ($RUNNERD_BIN), or ones built once per test process. Tests run real
// runexec children and real runnerd processes, never an imitation.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	mu    sync.Mutex
	dir   string               // where this process built binaries; removed by Cleanup
	built = map[string]error{} // name → build error, once per name
)

// Path returns the path of the binary of cmd/<name> (runexec, runnerd),
// building it on first use when $RUNNERD_BIN does not name a directory.
func Path(name string) (string, error) {
	if bin := os.Getenv("RUNNERD_BIN"); bin != "" {
		p := filepath.Join(bin, name)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("RUNNERD_BIN: %w", err)
		}
		return p, nil
	}
	mu.Lock()
	defer mu.Unlock()
	if dir == "" {
		d, err := os.MkdirTemp("", "runnerd-testbin-")
		if err != nil {
			return "", err
		}
		dir = d
	}
	p := filepath.Join(dir, name)
	err, done := built[name]
	if !done {
		out, berr := exec.Command("go", "build", "-tags", "ferretdb_no_postgresql", "-o", p,
			"github.com/runnerd/runnerd/cmd/"+name).CombinedOutput()
		if berr != nil {
			err = fmt.Errorf("build %s: %v\n%s", name, berr, out)
		}
		built[name] = err
	}
	return p, err
}

// MustPath is Path for a test: a missing binary fails it.
func MustPath(t testing.TB, name string) string {
	t.Helper()
	p, err := Path(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Cleanup removes what Path built; TestMain calls it after m.Run.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		_ = os.RemoveAll(dir)
		dir = ""
		built = map[string]error{}
	}
}

// Main is a TestMain's body: it makes the named binaries ready (a build
// failure ends the test process with its output), runs the tests, removes
// what it built and exits with the tests' code.
func Main(m *testing.M, names ...string) {
	for _, name := range names {
		if _, err := Path(name); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	Cleanup()
	os.Exit(code)
}
