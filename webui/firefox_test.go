//go:build uitest

// The web UI in headless Firefox over WebDriver BiDi (bidi_test.go), with
// the same runnerd dev and workflows as TestBrowser. Clicks and typing are
// input actions the browser dispatches as a user's; the cancel button's
// confirm() is a real dialog, accepted over the protocol.
package webui

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/testutil"
)

var bidiListening = regexp.MustCompile(`WebDriver BiDi listening on (ws://\S+)`)

// firefoxBinary is firefox-esr or firefox from PATH, or what FIREFOX names
// (a path or a name in PATH; then it must be there). "" when there is none.
func firefoxBinary(t *testing.T) string {
	if exe := os.Getenv("FIREFOX"); exe != "" {
		p, err := exec.LookPath(exe)
		if err != nil {
			t.Fatalf("FIREFOX=%s: %v", exe, err)
		}
		return p
	}
	for _, name := range []string{"firefox-esr", "firefox"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// ff is one headless Firefox with a BiDi session and the tab it drives.
type ff struct {
	t   *testing.T
	c   *bidiClient
	tab string // the browsing context

	mu      sync.Mutex
	console []string // the page's log entries
	errs    []string // uncaught exceptions in the page
	prompts []string // user prompts opened (and accepted)
}

func startFirefox(t *testing.T) *ff {
	t.Helper()
	exe := firefoxBinary(t)
	if exe == "" {
		t.Skip("no Firefox: neither firefox-esr nor firefox is in PATH (apt-get install firefox-esr, or set FIREFOX to the binary)")
	}
	profile := t.TempDir()
	out := &testutil.SyncBuffer{}
	cmd := exec.Command(exe, "--headless", "--no-remote", "--profile", profile,
		"--remote-debugging-port=0", "--window-size=1400,1000", "about:blank")
	cmd.Env = append(os.Environ(), "MOZ_CRASHREPORTER_DISABLE=1")
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", exe, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	f := &ff{t: t}
	t.Cleanup(func() {
		if f.c != nil {
			// browser.close ends the session and the browser; its answer
			// may be lost as the socket closes.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = f.c.call(ctx, "browser.close", nil, nil)
			cancel()
			_ = f.c.close()
		}
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("firefox output:\n%s", testutil.Tail(out.String(), 40))
			f.mu.Lock()
			t.Logf("the page's console:\n%s", strings.Join(f.console, "\n"))
			f.mu.Unlock()
		}
	})

	var m []string
	testutil.WaitLog(t, 60*time.Second, "firefox", "where BiDi listens", 40, out.String, done, func(log string) bool {
		m = bidiListening.FindStringSubmatch(log)
		return m != nil
	})
	url := m[1] + "/session"
	ctx := context.Background()
	c, err := dialBiDi(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	f.c = c
	var sess struct {
		Capabilities struct {
			BrowserName    string `json:"browserName"`
			BrowserVersion string `json:"browserVersion"`
		} `json:"capabilities"`
	}
	// "ignore": a confirm() stays open until the test answers it.
	if err := c.call(ctx, "session.new", map[string]any{"capabilities": map[string]any{
		"alwaysMatch": map[string]any{"unhandledPromptBehavior": map[string]any{"default": "ignore"}},
	}}, &sess); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s %s over WebDriver BiDi", sess.Capabilities.BrowserName, sess.Capabilities.BrowserVersion)

	c.handle("log.entryAdded", func(p json.RawMessage) {
		var e struct {
			Level, Text, Type string
		}
		_ = json.Unmarshal(p, &e)
		f.mu.Lock()
		defer f.mu.Unlock()
		f.console = append(f.console, fmt.Sprintf("%s %s: %s", e.Type, e.Level, e.Text))
		if e.Type == "javascript" {
			f.errs = append(f.errs, string(p))
		}
	})
	c.handle("browsingContext.userPromptOpened", func(p json.RawMessage) {
		var e struct {
			Context, Type, Message string
		}
		_ = json.Unmarshal(p, &e)
		f.mu.Lock()
		f.prompts = append(f.prompts, e.Type+": "+e.Message)
		f.mu.Unlock()
		// Not on the read loop: the answer comes through it.
		go func() {
			if err := c.call(context.Background(), "browsingContext.handleUserPrompt", map[string]any{"context": e.Context, "accept": true}, nil); err != nil {
				t.Errorf("accept the %s %q: %v", e.Type, e.Message, err)
			}
		}()
	})
	if err := c.call(ctx, "session.subscribe", map[string]any{"events": []string{"log.entryAdded", "browsingContext.userPromptOpened"}}, nil); err != nil {
		t.Fatal(err)
	}
	var tree struct {
		Contexts []struct {
			Context string `json:"context"`
		} `json:"contexts"`
	}
	if err := c.call(ctx, "browsingContext.getTree", map[string]any{"maxDepth": 0}, &tree); err != nil {
		t.Fatal(err)
	}
	if len(tree.Contexts) > 0 {
		f.tab = tree.Contexts[0].Context
	} else {
		var created struct {
			Context string `json:"context"`
		}
		if err := c.call(ctx, "browsingContext.create", map[string]any{"type": "tab"}, &created); err != nil {
			t.Fatal(err)
		}
		f.tab = created.Context
	}
	return f
}

func (f *ff) navigate(url string) {
	f.t.Helper()
	if err := f.c.navigate(context.Background(), f.tab, url); err != nil {
		f.t.Fatal(err)
	}
}

// waitJS waits until expr is true in the page; an evaluation a page load
// cuts short is asked again. The deadline only keeps a broken page from
// hanging the test.
func (f *ff) waitJS(what, expr string) {
	f.t.Helper()
	var err error
	if !testutil.Poll(50*time.Millisecond, 60*time.Second, func() bool {
		var ok bool
		ok, err = f.c.evalBool(context.Background(), f.tab, expr)
		return err == nil && ok
	}) {
		body, _ := f.c.evalString(context.Background(), f.tab, `document.body.innerText`)
		f.t.Fatalf("waiting for %s (%s): last error %v\npage text:\n%s", what, expr, err, testutil.Tail(body, 80))
	}
}

func (f *ff) text(expr string) string {
	f.t.Helper()
	s, err := f.c.evalString(context.Background(), f.tab, expr)
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

// click clicks the element sel names with the mouse, once it is there and
// scrolled into view. The page redraws parts of itself as the run moves:
// a click on an element replaced meanwhile is refused, and made again on
// the new one.
func (f *ff) click(sel string) {
	f.t.Helper()
	find := fmt.Sprintf(`(() => { const el = document.querySelector(%q); if (!el) return null; el.scrollIntoView({block: "center"}); return el; })()`, sel)
	var v remoteValue
	var err error
	if !testutil.Poll(50*time.Millisecond, 60*time.Second, func() bool {
		if v, err = f.c.evaluate(context.Background(), f.tab, find); err != nil || v.Type != "node" {
			return false
		}
		err = f.c.clickNode(context.Background(), f.tab, v.SharedID)
		return err == nil
	}) {
		f.t.Fatalf("click %s: last error %v (last found: %s)", sel, err, v)
	}
}

// clickUntil clicks the element sel names until expr is true: a click the
// page's redraw cut in two (the element replaced between the button's press
// and release) is no click, and a user would click again. Only for clicks
// that do the same when repeated.
func (f *ff) clickUntil(sel, what, expr string) {
	f.t.Helper()
	find := fmt.Sprintf(`(() => { const el = document.querySelector(%q); if (!el) return null; el.scrollIntoView({block: "center"}); return el; })()`, sel)
	var lastErr error
	// Each round clicks, then gives the page 3 s to show the click's effect.
	if testutil.Poll(0, 60*time.Second, func() bool {
		v, err := f.c.evaluate(context.Background(), f.tab, find)
		if err == nil && v.Type == "node" {
			err = f.c.clickNode(context.Background(), f.tab, v.SharedID)
		}
		lastErr = err
		return testutil.Poll(50*time.Millisecond, 3*time.Second, func() bool {
			ok, _ := f.c.evalBool(context.Background(), f.tab, expr)
			return ok
		})
	}) {
		return
	}
	body, _ := f.c.evalString(context.Background(), f.tab, `document.body.innerText`)
	f.t.Fatalf("click %s for %s (%s): last error %v\npage text:\n%s", sel, what, expr, lastErr, testutil.Tail(body, 80))
}

// typeInto clicks the input sel names and types s.
func (f *ff) typeInto(sel, s string) {
	f.t.Helper()
	f.click(sel)
	f.waitJS("the focus on "+sel, fmt.Sprintf(`document.activeElement === document.querySelector(%q)`, sel))
	if err := f.c.typeText(context.Background(), f.tab, s); err != nil {
		f.t.Fatal(err)
	}
}

func (f *ff) screenshot(name string) {
	f.t.Helper()
	png, err := f.c.screenshot(context.Background(), f.tab)
	if err != nil {
		f.t.Fatal(err)
	}
	writeScreenshot(f.t, name, png)
}

// pageErrors are the uncaught exceptions the page had so far.
func (f *ff) pageErrors() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.errs...)
}

func (f *ff) openedPrompts() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.prompts...)
}

// TestBrowserFirefox is TestBrowser's walk through the UI in Firefox: the
// run appears in the open list, its page shows the DAG and the steps'
// states, the running step's lines as it prints them, takes an answer to
// the human step typed into its form, follows the run to its end (the
// stored log, a DAG node's click, the artifact), and another run is
// cancelled with the page's button and its real confirm(). The store must
// say what the page said, and the page must throw nothing.
func TestBrowserFirefox(t *testing.T) {
	f := startFirefox(t)
	side := t.TempDir()
	d := startDev(t, side)
	st := d.store()
	dir := t.TempDir()
	live, block := filepath.Join(dir, "live.yaml"), filepath.Join(dir, "block.yaml")
	for file, body := range map[string]string{live: liveWorkflow, block: blockWorkflow} {
		if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The list is open before the run exists: it appears by itself.
	f.navigate(d.ui + "/")
	f.waitJS("the runs list", `document.querySelector("#runs-table, #no-runs") !== null`)
	id := d.submit(live, "side="+side)
	row := fmt.Sprintf(`tr[data-run=%q]`, id)
	f.waitJS("the new run in the list", fmt.Sprintf(`document.querySelector(%q) !== null`, row))
	if got := f.text(fmt.Sprintf(`document.querySelector(%q).innerText`, row)); !strings.Contains(got, "ui-live") || !strings.Contains(got, "default") {
		t.Errorf("the run's row: %q, want its workflow and tenant", got)
	}

	// Open it from the list.
	f.clickUntil(row+" a", "the run page", `location.pathname === "/runs/`+id+`" && document.querySelector("#dag svg") !== null`)
	if n := f.text(`String(document.querySelectorAll("#dag .node").length)`); n != "3" {
		t.Errorf("the DAG has %s nodes, want 3", n)
	}
	// The graph is drawn at its size: a node's box and the edges are laid
	// out, not collapsed.
	if got := f.text(`(() => { const r = document.querySelector('#dag .node[data-step="tick"] rect').getBBox(); return r.width + "x" + r.height; })()`); got != "170x46" {
		t.Errorf("a DAG node's box is %s, want 170x46", got)
	}
	if got := f.text(`getComputedStyle(document.querySelector('#dag .node rect')).rx`); got != "6px" {
		t.Errorf("a DAG node's corner radius is %q, want 6px", got)
	}
	if n := f.text(`String([...document.querySelectorAll("#dag .edge")].filter((e) => e.getTotalLength() > 0).length)`); n != "2" {
		t.Errorf("the DAG has %s drawn edges, want 2", n)
	}

	logHas := func(s string) string {
		return fmt.Sprintf(`document.querySelector("#log").dataset.step === "tick" && document.querySelector("#log").textContent.includes(%q)`, s)
	}
	nodeState := func(step string) string {
		return fmt.Sprintf(`document.querySelector('#dag .node[data-step=%q]').classList`, step)
	}
	rowState := func(step string) string {
		return fmt.Sprintf(`document.querySelector('#steps-table tr[data-step=%q] [data-status]')?.dataset.status`, step)
	}

	// The step's lines arrive while it runs: the second is printed only
	// after the page showed the first.
	f.waitJS("line 1 live", logHas("line 1 of tick"))
	if got := f.text(`document.querySelector("#log-source").textContent`); got != "live" {
		t.Errorf("log source while tick runs: %q, want live", got)
	}
	if strings.Contains(f.text(`document.querySelector("#log").textContent`), "line 2") {
		t.Fatal("line 2 shown before the step printed it")
	}
	f.waitJS("tick running in the DAG and the table", nodeState("tick")+`.contains("n-running") && `+rowState("tick")+` === "running"`)
	if got := f.text(rowState("approve") + ` + " " + ` + rowState("deploy") + ` + " " + ` + nodeState("deploy") + `.value`); got != "pending pending node n-pending" {
		t.Errorf("the later steps while tick runs: %q, want pending in the table and the DAG", got)
	}
	if err := os.WriteFile(filepath.Join(side, "go1"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f.waitJS("line 2 live", logHas("line 2 of tick"))
	if got := f.text(rowState("tick")); got != "running" {
		t.Errorf("tick shows %s while it waits for go2, want running", got)
	}
	if err := os.WriteFile(filepath.Join(side, "go2"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	// The human step asks; the answer is typed into its form.
	f.waitJS("the resume form", `document.querySelector('#resume form[data-step="approve"]') !== null`)
	f.waitJS("approve waiting in the DAG", nodeState("approve")+`.contains("n-waiting") && `+nodeState("tick")+`.contains("n-succeeded")`)
	if got := f.text(`document.querySelector("#resume .prompt").textContent`); got != "approve: Ship 7.1? (ok=yes)" {
		t.Errorf("prompt on the page: %q", got)
	}
	if r, err := st.Get(context.Background(), id); err != nil || r.Status != runnerd.StatusPaused {
		t.Fatalf("store while the page asks: %v %v, want paused", r, err)
	}
	answer := `#resume form[data-step="approve"] input[name=value]`
	f.typeInto(answer, "yes")
	if got := f.text(`document.querySelector('` + answer + `').value`); got != "yes" {
		t.Fatalf("the answer field holds %q after typing yes", got)
	}
	f.click(`#resume-approve`)
	f.waitJS("the run succeeded", `document.querySelector("#run-status [data-status]").dataset.status === "succeeded"`)
	f.waitJS("deploy succeeded", rowState("deploy")+` === "succeeded" && `+nodeState("deploy")+`.contains("n-succeeded")`)
	// The page stops following the settled run.
	f.waitJS("the stream closed", `document.body.dataset.live === "0"`)
	// The finished step's log now comes from S3.
	f.clickUntil(`#steps-table tr[data-step="tick"]`, "tick's log from S3", `document.querySelector("#log-source").textContent.startsWith("from S3: runs/") && `+logHas("line 3 of tick"))
	// A click on a node of the graph shows that step's log.
	f.clickUntil(`#dag .node[data-step="deploy"] rect`, "deploy's log from S3, deploy selected", `document.querySelector("#log").dataset.step === "deploy" && document.querySelector("#log").textContent.includes("deploying 7.1") && `+nodeState("deploy")+`.contains("selected")`)
	f.waitJS("the artifact link", `document.querySelector("#artifact-list a") !== null`)
	href := f.text(`document.querySelector("#artifact-list a").href`)
	if got := f.text(fmt.Sprintf(`fetch(%q).then(r => r.text())`, href)); got != "the report\n" {
		t.Errorf("artifact through its link: %q", got)
	}
	pageStatus := f.text(`document.querySelector("#run-status").innerText`)
	f.screenshot("run-page-firefox.png")

	checkApprovedRun(t, st, id, pageStatus)

	// Another run, cancelled from its page while its step runs: the button
	// asks confirm(), which the session accepts.
	other := d.submit(block)
	f.navigate(d.ui + "/runs/" + other)
	f.waitJS("the blocking step running", rowState("wait")+` === "running" && document.querySelector("#log").textContent.includes("waiting")`)
	// Leaving a page that follows a run (to the list, and back from its
	// row) closes its stream: Firefox reports a stream a page load cuts
	// as an error of the page.
	f.navigate(d.ui + "/")
	otherRow := fmt.Sprintf(`tr[data-run=%q]`, other)
	f.waitJS("the running run in the list", fmt.Sprintf(`document.querySelector(%q)?.querySelector("[data-status]").dataset.status === "running"`, otherRow))
	f.clickUntil(otherRow+" td:nth-child(5)", "the blocking step running, again", `location.pathname === "/runs/`+other+`" && `+rowState("wait")+` === "running" && document.querySelector("#log").textContent.includes("waiting")`)
	if errs := f.pageErrors(); len(errs) != 0 {
		t.Errorf("the page threw in Firefox before the cancel:\n%s", strings.Join(errs, "\n"))
	}
	if p := f.openedPrompts(); len(p) != 0 {
		t.Fatalf("prompts before the cancel: %q", p)
	}
	f.click(`#cancel`)
	f.waitJS("the action's answer", `document.querySelector("#action-result").textContent !== ""`)
	if got := f.text(`document.querySelector("#action-result").textContent`); got != fmt.Sprintf("run %s: cancel requested; its runner stops it now", other) {
		t.Errorf("cancel said %q", got)
	}
	if p, want := f.openedPrompts(), fmt.Sprintf("confirm: Cancel run %s?", other); len(p) != 1 || p[0] != want {
		t.Errorf("prompts: %q, want [%q]", p, want)
	}
	f.waitJS("the run cancelled", `document.querySelector("#run-status [data-status]").dataset.status === "cancelled"`)
	if r, err := st.Get(context.Background(), other); err != nil || r.Status != runnerd.StatusCancelled || r.Reason != runnerd.ReasonCancelled {
		t.Errorf("store after the page's cancel: %+v %v", r, err)
	}
	f.waitJS("the retry button of a cancelled run", `document.querySelector("#retry") !== null && document.querySelector("#cancel") === null`)

	// A finished run's page opens without a stream; its events load when
	// asked for.
	f.navigate(d.ui + "/runs/" + id)
	f.waitJS("the finished run's page", `document.querySelector("#run-status [data-status]")?.dataset.status === "succeeded" && document.body.dataset.live === "0"`)
	f.clickUntil("#load-events", "the events table", `document.querySelector('#events-table tr[data-type="paused"]') !== null && document.querySelector('#events-table tr[data-type="run_finished"]') !== null`)

	if errs := f.pageErrors(); len(errs) != 0 {
		t.Errorf("the page threw in Firefox:\n%s", strings.Join(errs, "\n"))
	}
}
