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
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/runnerd/runnerd/internal/cli"
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

	e.mustRun(cli.ExitOK, "submit", writeFile(t, "hello.yaml", helloYAML), "--wait")
	e.mustRun(cli.ExitFailed, "submit", writeFile(t, "fail.yaml", "name: f\nsteps:\n  - id: boom\n    shell: exit 3\n"), "--wait")
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
// metrics` when promtool is installed (.ci/run installs it; with CI or
// RUNNERD_REQUIRE_PROMTOOL set a missing one fails the test), else
// client_golang's promlint, the linter promtool runs; and that every series
// of the metrics table of docs/operations.md is there with every label value
// the table names.
func checkExposition(t *testing.T, what, body string) {
	t.Helper()
	if bin := promtool(); bin != "" {
		cmd := exec.Command(bin, "check", "metrics")
		cmd.Stdin = strings.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics, the scrape %s: %v\n%s", what, err, out)
		}
	} else {
		if os.Getenv("CI") != "" || os.Getenv("RUNNERD_REQUIRE_PROMTOOL") != "" {
			t.Fatalf("promtool is not installed (go install github.com/prometheus/prometheus/cmd/promtool@v0.316.0) and CI or RUNNERD_REQUIRE_PROMTOOL is set")
		}
		t.Logf("promtool not installed: the scrape %s is linted with promlint", what)
		problems, err := promlint.New(bytes.NewReader([]byte(body))).Lint()
		if err != nil || len(problems) > 0 {
			t.Errorf("promlint, the scrape %s: %v %v", what, err, problems)
		}
	}
	rows := documentedMetrics(t)
	if len(rows) < 15 {
		t.Fatalf("the metrics table of docs/operations.md names only %d series", len(rows))
	}
	for _, r := range rows {
		if !regexp.MustCompile(`(?m)^` + r.name + `(_bucket|_count)?[{ ]`).MatchString(body) {
			t.Errorf("the scrape %s has no series %s (docs/operations.md lists it)", what, r.name)
		}
		for _, v := range r.values {
			if !regexp.MustCompile(`(?m)^` + r.name + `(_bucket|_count)?\{([^}]*,)?[a-z_]+="` + v + `"`).MatchString(body) {
				t.Errorf("the scrape %s has no series %s with a label %q (docs/operations.md names the value)", what, r.name, v)
			}
		}
		for _, reason := range r.noRun {
			if !strings.Contains(body, r.name+`{reason="`+reason+`",status="unchanged"}`) {
				t.Errorf("the scrape %s has no %s{reason=%q,status=\"unchanged\"} (docs/operations.md: a message naming no run)", what, r.name, reason)
			}
		}
	}
}

// metricRow is a row of the metrics table of docs/operations.md: the series'
// name, and the label values its description names (each word in backquotes
// other than a series or label name); noRun are the reasons it says a
// message naming no run is counted with, as unchanged.
type metricRow struct {
	name   string
	values []string
	noRun  []string
}

func documentedMetrics(t *testing.T) []metricRow {
	t.Helper()
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	quoted := regexp.MustCompile("`([a-z0-9_]+)`")
	var rows []metricRow
	for _, m := range regexp.MustCompile("(?m)^\\| `(runnerd_[a-z_]+)` \\| [a-z]+ \\|([^|]*)\\|([^|]*)\\|$").FindAllStringSubmatch(string(doc), -1) {
		r := metricRow{name: m[1]}
		labels := map[string]bool{}
		for _, l := range quoted.FindAllStringSubmatch(m[2], -1) {
			labels[l[1]] = true
		}
		if len(labels) > 0 {
			for _, v := range quoted.FindAllStringSubmatch(m[3], -1) {
				if !labels[v[1]] && !strings.HasPrefix(v[1], "runnerd_") {
					r.values = append(r.values, v[1])
				}
			}
		}
		if _, after, ok := strings.Cut(m[3], "naming no run"); ok {
			list, _, _ := strings.Cut(after, ")")
			for _, v := range quoted.FindAllStringSubmatch(list, -1) {
				r.noRun = append(r.noRun, v[1])
			}
		}
		rows = append(rows, r)
	}
	return rows
}

// The parser of the docs' metrics table finds what the test checks: a
// label value of a one-label series and the reasons of messages naming no
// run (an empty parse would check nothing).
func TestDocumentedMetrics(t *testing.T) {
	got := map[string]metricRow{}
	for _, r := range documentedMetrics(t) {
		got[r.name] = r
	}
	if !slices.Contains(got["runnerd_runs_waiting"].values, "admission") {
		t.Errorf("runnerd_runs_waiting's values parsed from docs/operations.md: %v, want admission among them", got["runnerd_runs_waiting"].values)
	}
	if !slices.Contains(got["runnerd_runs_finished_total"].noRun, "invalid_message") {
		t.Errorf("the no-run reasons parsed from docs/operations.md: %v, want invalid_message among them", got["runnerd_runs_finished_total"].noRun)
	}
	if v := got["runnerd_runs_started_total"].values; len(v) != 0 {
		t.Errorf("runnerd_runs_started_total has no labels, parsed values %v", v)
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
