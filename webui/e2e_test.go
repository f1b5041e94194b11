//go:build uitest

// The browser tests (make test-ui): runnerd dev as a process, the client
// commands as processes, and the real page in headless Chromium driven over
// the DevTools protocol (chromedp). They need RUNNERD_BIN (make build) and
// a Chromium (Debian's chromium; CHROMIUM names another binary).
package webui

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/store"
)

// dev is `runnerd dev` running as a process for one test.
type dev struct {
	t      *testing.T
	bin    string
	cmd    *exec.Cmd
	stderr *testutil.SyncBuffer
	done   chan struct{}
	ui     string   // http://127.0.0.1:port
	env    []string // what a client command needs to reach it
	vars   map[string]string
}

var (
	devVarLine = regexp.MustCompile(`(RUNNERD_[A-Z0-9_]+)=(\S+)`)
	uiLine     = regexp.MustCompile(`Web UI and JSON API \(/api/v1/\): (http://\S+)/`)
)

func startDev(t *testing.T, side string) *dev {
	t.Helper()
	binDir := os.Getenv("RUNNERD_BIN")
	if binDir == "" {
		t.Skip("RUNNERD_BIN is not set (make test-ui builds the binaries and sets it)")
	}
	root := t.TempDir()
	d := &dev{t: t, bin: filepath.Join(binDir, "runnerd"), stderr: &testutil.SyncBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(d.bin, "dev", "--data", filepath.Join(root, "data"),
		"--nats-port", "0", "--mongo-port", "0", "--s3-port", "0", "--ui-addr", "127.0.0.1:0",
		"--metrics-addr", "127.0.0.1:0", "--runexec", filepath.Join(binDir, "runexec"),
		"--run-dir", filepath.Join(root, "runs"), "--runner-id", testutil.UniqueID("ui-e2e"),
		"--concurrency", "2", "--kill-grace", "1s", "--grace", "5s", "--sandbox-rw", side)
	d.cmd.Env = os.Environ()
	d.cmd.Stderr = d.stderr
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	d.cmd.WaitDelay = 10 * time.Second
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-d.done
		}
		if t.Failed() {
			t.Logf("runnerd dev stderr:\n%s", testutil.Tail(d.stderr.String(), 60))
		}
	})
	d.waitLog(`"message":"serving"`, 90*time.Second)
	out := d.stderr.String()
	m := uiLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("dev's banner names no web UI:\n%s", out)
	}
	d.ui = m[1]
	d.vars = map[string]string{}
	for _, v := range devVarLine.FindAllStringSubmatch(out, -1) {
		if _, seen := d.vars[v[1]]; !seen {
			d.vars[v[1]] = v[2]
		}
	}
	d.env = append(os.Environ(), "RUNNERD_CREDENTIALS="+filepath.Join(root, "data", "credentials.json"))
	for k, v := range d.vars {
		d.env = append(d.env, k+"="+v)
	}
	return d
}

func (d *dev) waitLog(s string, timeout time.Duration) {
	d.t.Helper()
	testutil.WaitLog(d.t, timeout, "runnerd dev", strconv.Quote(s), 60, d.stderr.String, d.done, testutil.Contains(s))
}

// submit runs `runnerd submit` and returns the run id it prints.
func (d *dev) submit(file string, vars ...string) string {
	d.t.Helper()
	args := []string{"submit", file}
	for _, v := range vars {
		args = append(args, "--var", v)
	}
	cmd := exec.Command(d.bin, args...)
	cmd.Env = d.env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		d.t.Fatalf("runnerd submit %s: %v\n%s", file, err, stderr.String())
	}
	id, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(id)
}

// store opens the dev stack's store, to check what the page said.
func (d *dev) store() *store.Store {
	d.t.Helper()
	st, err := store.Open(context.Background(), store.Config{URI: d.vars["RUNNERD_MONGO_URI"]})
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { _ = st.Close(context.Background()) })
	return st
}

// browser starts a headless Chromium for the test.
func browser(t *testing.T) context.Context {
	t.Helper()
	exe := os.Getenv("CHROMIUM")
	if exe == "" {
		exe = "/usr/bin/chromium"
	}
	if _, err := os.Stat(exe); err != nil {
		t.Fatalf("no Chromium at %s (apt-get install chromium, or set CHROMIUM): %v", exe, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.WindowSize(1400, 1000),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// waitJS waits until the expression is true in the page; the deadline only
// keeps a broken page from hanging the test.
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	var err error
	if !testutil.Poll(50*time.Millisecond, 60*time.Second, func() bool {
		// An evaluation during a page load fails (its context goes away):
		// ask again.
		var ok bool
		ok, err = chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		return err == nil && ok
	}) {
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("waiting for %s (%s): last error %v\npage text:\n%s", what, expr, err, testutil.Tail(body, 80))
	}
}

// click clicks the element sel names once it is there. The page redraws
// parts of itself as the run moves, so the click is made in the page, on
// the element found at that moment.
func click(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	waitJS(t, ctx, "an element "+sel+" to click", fmt.Sprintf(`(() => { const el = document.querySelector(%q); if (!el) return false; el.click(); return true; })()`, sel))
}

func text(t *testing.T, ctx context.Context, expr string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return s
}

const liveWorkflow = `name: ui-live
vars: {side: ""}
steps:
  - id: tick
    shell: |
      echo "line 1 of tick"
      while [ ! -e "${{ vars.side }}/go1" ]; do sleep 0.05; done
      echo "line 2 of tick"
      while [ ! -e "${{ vars.side }}/go2" ]; do sleep 0.05; done
      echo "line 3 of tick"
      echo "version=7.1" >> "$RUNEXEC_OUTPUT"
      mkdir -p out && echo "the report" > out/report.txt
    artifacts: [out/report.txt]
  - id: approve
    kind: human
    needs: [tick]
    prompt: "Ship ${{ steps.tick.outputs.version }}? (ok=yes)"
  - id: deploy
    needs: [approve]
    if: ${{ steps.approve.answers.ok == 'yes' }}
    shell: echo "deploying ${{ steps.tick.outputs.version }}"
`

const blockWorkflow = `name: ui-block
steps:
  - id: wait
    shell: echo waiting; sleep 300
`

const groupWorkflow = `name: ui-group
concurrency: {group: ui-line, limit: 1}
steps:
  - id: wait
    shell: sleep 300
`

// TestBrowser: a run submitted from the command line appears in the open
// runs list; its page shows the log lines of its running step as the step
// prints them, then the human step's prompt, takes an answer and follows
// the run to its end, with the stored log and the artifact; another run
// is cancelled from its page; a finished run's page shows its events on
// demand. The store must say what the page said.
func TestBrowser(t *testing.T) {
	side := t.TempDir()
	d := startDev(t, side)
	st := d.store()
	dir := t.TempDir()
	live, block, group := filepath.Join(dir, "live.yaml"), filepath.Join(dir, "block.yaml"), filepath.Join(dir, "group.yaml")
	for f, body := range map[string]string{live: liveWorkflow, block: blockWorkflow, group: groupWorkflow} {
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx := browser(t)

	// The list is open before the run exists: it appears by itself.
	if err := chromedp.Do(ctx, chromedp.Navigate(d.ui+"/")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the runs list", `document.querySelector("#runs-table, #no-runs") !== null`)
	id := d.submit(live, "side="+side)
	row := fmt.Sprintf(`tr[data-run=%q]`, id)
	waitJS(t, ctx, "the new run in the list", fmt.Sprintf(`document.querySelector(%q) !== null`, row))
	if got := text(t, ctx, fmt.Sprintf(`document.querySelector(%q).innerText`, row)); !strings.Contains(got, "ui-live") || !strings.Contains(got, "default") {
		t.Errorf("the run's row: %q, want its workflow and tenant", got)
	}

	// Open it from the list.
	click(t, ctx, row+" a")
	waitJS(t, ctx, "the run page", `document.querySelector("#dag svg") !== null`)
	if n := text(t, ctx, `String(document.querySelectorAll("#dag .node").length)`); n != "3" {
		t.Errorf("the DAG has %s nodes, want 3", n)
	}

	// The step's lines arrive while it runs: the second is printed only
	// after the page showed the first.
	logHas := func(s string) string {
		return fmt.Sprintf(`document.querySelector("#log").dataset.step === "tick" && document.querySelector("#log").textContent.includes(%q)`, s)
	}
	waitJS(t, ctx, "line 1 live", logHas("line 1 of tick"))
	if got := text(t, ctx, `document.querySelector("#log-source").textContent`); got != "live" {
		t.Errorf("log source while tick runs: %q, want live", got)
	}
	if strings.Contains(text(t, ctx, `document.querySelector("#log").textContent`), "line 2") {
		t.Fatal("line 2 shown before the step printed it")
	}
	if err := os.WriteFile(filepath.Join(side, "go1"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "line 2 live", logHas("line 2 of tick"))
	if got := text(t, ctx, `document.querySelector('#steps-table tr[data-step="tick"] [data-status]').dataset.status`); got != "running" {
		t.Errorf("tick shows %s while it waits for go2, want running", got)
	}
	if err := os.WriteFile(filepath.Join(side, "go2"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	// The human step asks; answer it on the page.
	waitJS(t, ctx, "the resume form", `document.querySelector('#resume form[data-step="approve"]') !== null`)
	if got := text(t, ctx, `document.querySelector("#resume .prompt").textContent`); got != "approve: Ship 7.1? (ok=yes)" {
		t.Errorf("prompt on the page: %q", got)
	}
	if r, err := st.Get(context.Background(), id); err != nil || r.Status != runnerd.StatusPaused {
		t.Fatalf("store while the page asks: %v %v, want paused", r, err)
	}
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS(`#resume form[data-step="approve"] input[name=value]`), "yes")); err != nil {
		t.Fatal(err)
	}
	click(t, ctx, `#resume-approve`)
	waitJS(t, ctx, "the run succeeded", `document.querySelector("#run-status [data-status]").dataset.status === "succeeded"`)
	waitJS(t, ctx, "deploy succeeded", `document.querySelector('#steps-table tr[data-step="deploy"] [data-status]').dataset.status === "succeeded"`)
	// The finished step's log now comes from S3.
	click(t, ctx, `#steps-table tr[data-step="tick"]`)
	waitJS(t, ctx, "tick's log from S3", `document.querySelector("#log-source").textContent.startsWith("from S3: runs/") && `+logHas("line 3 of tick"))
	waitJS(t, ctx, "the artifact link", `document.querySelector("#artifact-list a") !== null`)
	href := text(t, ctx, `document.querySelector("#artifact-list a").href`)
	artifact, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`fetch(%q).then(r => r.text())`, href), chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if artifact != "the report\n" {
		t.Errorf("artifact through its link: %q", artifact)
	}
	pageStatus := text(t, ctx, `document.querySelector("#run-status").innerText`)
	saveScreenshot(t, ctx, "run-page.png")

	checkApprovedRun(t, st, id, pageStatus)

	// Another run, cancelled from its page while its step runs.
	other := d.submit(block)
	if err := chromedp.Do(ctx, chromedp.Navigate(d.ui+"/runs/"+other)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the blocking step running", `document.querySelector('#steps-table tr[data-step="wait"] [data-status]')?.dataset.status === "running" && document.querySelector("#log").textContent.includes("waiting")`)
	// The button asks confirm(): the test says yes.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.confirm = () => true, true`)); err != nil {
		t.Fatal(err)
	}
	click(t, ctx, `#cancel`)
	waitJS(t, ctx, "the action's answer", `document.querySelector("#action-result").textContent !== ""`)
	if got := text(t, ctx, `document.querySelector("#action-result").textContent`); got != fmt.Sprintf("run %s: cancel requested; its runner stops it now", other) {
		t.Errorf("cancel said %q", got)
	}
	waitJS(t, ctx, "the run cancelled", `document.querySelector("#run-status [data-status]").dataset.status === "cancelled"`)
	if r, err := st.Get(context.Background(), other); err != nil || r.Status != runnerd.StatusCancelled || r.Reason != runnerd.ReasonCancelled {
		t.Errorf("store after the page's cancel: %+v %v", r, err)
	}
	waitJS(t, ctx, "the retry button of a cancelled run", `document.querySelector("#retry") !== null && document.querySelector("#cancel") === null`)
	// A cancel of the finished run is refused as the CLI refuses it.
	res, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`fetch("/api/v1/runs/%s/cancel", {method: "POST", headers: {"Content-Type": "application/json"}}).then(r => r.json()).then(j => j.message || j.error)`, id), chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("run %s already finished: succeeded (completed)", id); res != want {
		t.Errorf("cancel of a finished run: %q, want %q", res, want)
	}

	// A run its concurrency group holds back says so on its page, as
	// runnerd status does.
	holder, queued := d.submit(group), d.submit(group)
	testutil.Eventually(t, 30*time.Second, func() bool {
		resp, err := http.Get(d.ui + "/api/v1/runs/" + queued)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var doc struct {
			Waiting struct{ Kind string } `json:"waiting"`
		}
		return json.NewDecoder(resp.Body).Decode(&doc) == nil && doc.Waiting.Kind == "concurrency_group"
	}, "run %s never shown waiting in its concurrency group behind %s", queued, holder)
	if err := chromedp.Do(ctx, chromedp.Navigate(d.ui+"/runs/"+queued)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the queued run's page", `document.querySelector("#run-status [data-status]")?.dataset.status === "queued"`)
	waitJS(t, ctx, "why the queued run waits", `document.querySelector("#run-waiting")?.textContent.startsWith('in concurrency group "ui-line", position 1')`)
	for _, r := range []string{queued, holder} {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`fetch("/api/v1/runs/%s/cancel", {method: "POST", headers: {"Content-Type": "application/json"}}).then(r => r.ok)`, r), chromedp.EvalAwaitPromise))
		if err != nil || !ok {
			t.Fatalf("cancel of run %s through the API: ok %v, %v", r, ok, err)
		}
	}

	// A finished run's page opens without a stream; its events load when
	// asked for.
	if err := chromedp.Do(ctx, chromedp.Navigate(d.ui+"/runs/"+id)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the finished run's page", `document.querySelector("#run-status [data-status]")?.dataset.status === "succeeded" && document.body.dataset.live === "0"`)
	click(t, ctx, "#load-events")
	waitJS(t, ctx, "the events table", `document.querySelector('#events-table tr[data-type="paused"]') !== null && document.querySelector('#events-table tr[data-type="run_finished"]') !== null`)
}

// saveScreenshot keeps a screenshot of the page under RUNNERD_UI_ARTIFACTS
// (default: .artifacts/ui at the top of the repository, ignored by git).
func saveScreenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	writeScreenshot(t, name, png)
}

// writeScreenshot writes a screenshot under RUNNERD_UI_ARTIFACTS.
func writeScreenshot(t *testing.T, name string, png []byte) {
	t.Helper()
	dir := os.Getenv("RUNNERD_UI_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", ".artifacts", "ui")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the run page: %s", p)
}

// checkApprovedRun checks in the store the approval run the browser tests
// drive (its human step answered ok=yes), against the status its page shows.
func checkApprovedRun(t *testing.T, st *store.Store, id, pageStatus string) {
	t.Helper()
	r, err := st.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != runnerd.StatusSucceeded || !strings.Contains(pageStatus, string(r.Reason)) {
		t.Errorf("store: %s (%s); page: %q", r.Status, r.Reason, pageStatus)
	}
	if r.Answers["approve"]["ok"] != "yes" || r.Steps["approve"].Answers["ok"] != "yes" {
		t.Errorf("store's answers: %v, step %+v", r.Answers, r.Steps["approve"])
	}
	if s := r.Steps["deploy"]; s == nil || s.Status != runnerd.StepSucceeded {
		t.Errorf("store's deploy step: %+v", s)
	}
}
