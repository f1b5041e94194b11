package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/runnerd/runnerd/internal/testutil"
)

// The /metrics of runnerd serve passes Prometheus' linter before any run
// and after runs, and has every runnerd_* series docs/operations.md lists
// from the start (at 0 before anything happened).
func TestMetricsExposition(t *testing.T) {
	e := startEnv(t)
	addr := freeAddr(t)
	e.startServe("--metrics-addr", addr)
	var before string
	testutil.Eventually(t, 30*time.Second, func() bool {
		before = scrape(addr)
		return strings.Contains(before, "runnerd_free_slots 2")
	}, "no scrape of %s with the free slots", addr)
	checkExposition(t, "before any run", before)

	e.mustRun(exitOK, "submit", writeFile(t, "hello.yaml", helloYAML), "--wait")
	e.mustRun(exitFailed, "submit", writeFile(t, "fail.yaml", "name: f\nsteps:\n  - id: boom\n    shell: exit 3\n"), "--wait")
	var after string
	testutil.Eventually(t, 10*time.Second, func() bool {
		after = scrape(addr)
		return strings.Contains(after, `runnerd_runs_finished_total{reason="step_failed",status="failed"} 1`)
	}, "the scrape after two runs does not count them:\n%s", func() string { return after })
	checkExposition(t, "after two runs", after)
	for _, want := range []string{"runnerd_queue_wait_seconds_count 2", `runnerd_run_duration_seconds_bucket{status="succeeded",le="0.005"}`} {
		if !strings.Contains(after, want) {
			t.Errorf("the scrape after two runs lacks %q", want)
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func scrape(addr string) string {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// checkExposition checks a scrape as Prometheus does: `promtool check
// metrics` when promtool is installed (.ci/run installs it), else
// client_golang's promlint, the linter promtool runs; and that every series
// of the metrics table of docs/operations.md is there.
func checkExposition(t *testing.T, what, body string) {
	t.Helper()
	if bin := promtool(); bin != "" {
		cmd := exec.Command(bin, "check", "metrics")
		cmd.Stdin = strings.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics, the scrape %s: %v\n%s", what, err, out)
		}
	} else {
		t.Logf("promtool not installed: the scrape %s is linted with promlint", what)
		problems, err := promlint.New(bytes.NewReader([]byte(body))).Lint()
		if err != nil || len(problems) > 0 {
			t.Errorf("promlint, the scrape %s: %v %v", what, err, problems)
		}
	}
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile("(?m)^\\| `(runnerd_[a-z_]+)` \\|").FindAllStringSubmatch(string(doc), -1)
	if len(names) < 15 {
		t.Fatalf("the metrics table of docs/operations.md names only %d series", len(names))
	}
	for _, n := range names {
		if !regexp.MustCompile(`(?m)^` + n[1] + `(_bucket|_count)?[{ ]`).MatchString(body) {
			t.Errorf("the scrape %s has no series %s (docs/operations.md lists it)", what, n[1])
		}
	}
}

// promtool is the promtool binary on PATH or where `go install` puts it.
func promtool() string {
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	gopath, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		return ""
	}
	p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "promtool")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}
