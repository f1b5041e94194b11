//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/store"
	"github.com/runnerd/runnerd/workflow"
)

// misCase is one misbehaving workflow, run next to a well-behaved one.
type misCase struct {
	name    string
	yaml    func(rid, dir string) string
	status  runnerd.Status
	reasons []runnerd.Reason // any of them
	marker  string           // in the command line of its processes: none may be left
	check   func(t *testing.T, s *stack, r *runner, rid string, run *store.Run) string
}

// neighbor is the well-behaved run beside each case: it must succeed with
// each step run once.
func neighbor(rid, side string) string {
	return "steps:\n" + yamlStep("a", nil, sideStep(side, rid, "a", "1.3")) +
		yamlStep("b", []string{"a"}, sideStep(side, rid, "b", "1.3"))
}

func TestMisbehavingWorkflows(t *testing.T) {
	s := newStack(t, chaosQueue(-1, 6*time.Second, 10*time.Second))
	r := s.newRunner("mis1", "--concurrency", "2", "--max-attempts", "2", "--memory-limit", "256MiB", "--pids-limit", "256")
	r.start()
	ctx := context.Background()

	// Is there a cgroup? The fork bomb runs only inside one.
	s.submit("probe", "steps:\n"+yamlStep("cg", nil, "cat /proc/self/cgroup"))
	s.mustTerminal("probe", 60*time.Second)
	probe, _ := s.readBlob(blob.StepLogKey("probe", 1, "cg"))
	haveCgroup := strings.Contains(probe, "runnerd-mis1/probe-1")

	stepLog := func(rid, step string, attempt int) string {
		got, err := s.readBlob(blob.StepLogKey(rid, attempt, step))
		if err != nil {
			t.Errorf("log of %s/%s: %v", rid, step, err)
		}
		return got
	}
	cases := []misCase{
		{
			name: "fork bomb (pids cgroup 256, step timeout 8 s)",
			yaml: func(rid, dir string) string {
				return "timeout: 30s\nsteps:\n" + yamlStep("bomb", nil, "b() { b | b & }; b; sleep 30.5511", "timeout: 8s")
			},
			status: runnerd.StatusFailed, reasons: []runnerd.Reason{runnerd.ReasonStepFailed, runnerd.ReasonTimeout}, marker: "30.5511",
			check: func(t *testing.T, s *stack, r *runner, rid string, run *store.Run) string {
				// runexec shares the pids limit with the bomb: it must
				// survive it (spare threads) and fail the step itself.
				if run.Attempt != 1 {
					t.Errorf("%s: %d attempts: runexec did not survive the bomb", rid, run.Attempt)
				}
				return fmt.Sprintf("attempts %d", run.Attempt)
			},
		},
		{
			name: "memory hog past the limit (512 MiB line, limit 256 MiB)",
			yaml: func(rid, dir string) string {
				return "steps:\n" + yamlStep("hog", nil, "head -c 536870912 /dev/zero | tail -n 1 > /dev/null")
			},
			status: runnerd.StatusFailed, reasons: []runnerd.Reason{runnerd.ReasonMaxAttemptsExceeded},
			check: func(t *testing.T, s *stack, r *runner, rid string, run *store.Run) string {
				oom := 0
				for _, m := range r.logs() {
					if str(m, "run_id") == rid && str(m, "message") == "run attempt done" && str(m, "reason") == string(runnerd.ReasonChildOOM) {
						oom++
					}
				}
				if oom == 0 {
					t.Errorf("%s: no child_oom attempt in the log", rid)
				}
				return fmt.Sprintf("%d attempts ended child_oom (max-attempts 2)", oom)
			},
		},
		{
			name: "1 GiB of stdout (log cap 64 MiB)",
			yaml: func(rid, dir string) string {
				return "steps:\n" + yamlStep("flood", nil, `yes "$(head -c 1023 /dev/zero | tr '\0' x)" | head -c 1073741824; echo end`)
			},
			status: runnerd.StatusSucceeded, reasons: []runnerd.Reason{runnerd.ReasonCompleted},
			check: func(t *testing.T, s *stack, r *runner, rid string, run *store.Run) string {
				info, err := s.blobs.Head(context.Background(), blob.StepLogKey(rid, 1, "flood"))
				if err != nil {
					t.Errorf("%s: log in S3: %v", rid, err)
					return ""
				}
				log := stepLog(rid, "flood", 1)
				trunc := strings.Contains(log, "log truncated")
				if !trunc || info.Size > 65<<20 {
					t.Errorf("%s: log of %d bytes, truncation marker %v", rid, info.Size, trunc)
				}
				return fmt.Sprintf("S3 log %.1f MiB with truncation marker: %v", float64(info.Size)/(1<<20), trunc)
			},
		},
		{
			name: "step ignores SIGTERM (run timeout 3 s, kill grace 2 s)",
			yaml: func(rid, dir string) string {
				return "timeout: 3s\nsteps:\n" + yamlStep("stubborn", nil, "trap '' TERM; sleep 1000.5512")
			},
			status: runnerd.StatusFailed, reasons: []runnerd.Reason{runnerd.ReasonTimeout}, marker: "1000.5512",
			check: func(t *testing.T, s *stack, r *runner, rid string, run *store.Run) string {
				d := run.FinishedAt.Sub(run.StartedAt)
				if d > 15*time.Second {
					t.Errorf("%s: ended after %s", rid, d)
				}
				return fmt.Sprintf("ended %.1f s after its start (3 s deadline + 2 s grace)", d.Seconds())
			},
		},
		{
			name: "double fork + setsid, step exits",
			yaml: func(rid, dir string) string {
				return "steps:\n" + yamlStep("escape", nil, "setsid sh -c 'sleep 1000.5513 & sleep 1000.5513' </dev/null >/dev/null 2>&1 &\n      sleep 0.5; echo escaped")
			},
			status: runnerd.StatusSucceeded, reasons: []runnerd.Reason{runnerd.ReasonCompleted}, marker: "1000.5513",
		},
		{
			name: "double fork + setsid, then runexec crashed (SIGABRT, first attempt)",
			yaml: func(rid, dir string) string {
				m := filepath.Join(dir, rid+".crashed")
				return "steps:\n" + yamlStep("escape", nil, fmt.Sprintf("setsid sh -c 'sleep 1000.5514 & sleep 1000.5514' </dev/null >/dev/null 2>&1 &\n      sleep 0.5\n      if [ ! -e %[1]s ]; then touch %[1]s; kill -ABRT $PPID; sleep 5; fi", m))
			},
			status: runnerd.StatusSucceeded, reasons: []runnerd.Reason{runnerd.ReasonCompleted}, marker: "1000.5514",
			check: func(t *testing.T, s *stack, r *runner, rid string, run *store.Run) string {
				return fmt.Sprintf("attempts %d; the escaped pair outlived runexec: runnerd's cgroup kill at the end of the attempt took it", run.Attempt)
			},
		},
		{
			name: "writes outside its workdir via ..",
			yaml: func(rid, dir string) string {
				return "steps:\n" + yamlStep("out", nil, "echo escaped > ../../../../outside-"+rid+".txt")
			},
			// Landlock: the run dir root is neither readable nor writable.
			status: runnerd.StatusFailed, reasons: []runnerd.Reason{runnerd.ReasonStepFailed},
			check: func(t *testing.T, s *stack, r *runner, rid string, run *store.Run) string {
				_, err := os.Stat(filepath.Join(s.dir, "outside-"+rid+".txt"))
				if err == nil {
					t.Errorf("%s: the step wrote outside its workdir", rid)
				}
				return fmt.Sprintf("file written outside the workdir: %v (the sandbox refuses it: EACCES)", err == nil)
			},
		},
		{
			name: "symlink artifact to a file outside the workdir",
			yaml: func(rid, dir string) string {
				return "steps:\n" + yamlStep("leak", nil, "ln -s /etc/hostname leak.txt; echo linked", "artifacts: [leak.txt]")
			},
			status: "", // the executor or the supervisor refuses it; the run's fate is reported
			check: func(t *testing.T, s *stack, r *runner, rid string, run *store.Run) string {
				_, err := s.blobs.Head(context.Background(), blob.ArtifactKey(rid, "leak", "leak.txt"))
				if err == nil {
					t.Errorf("%s: the symlinked file was uploaded", rid)
				}
				st := run.Steps["leak"]
				msg := ""
				if st != nil {
					msg = string(st.Status) + " " + string(st.Reason)
				}
				return fmt.Sprintf("uploaded: %v; step: %s", err == nil, strings.TrimSpace(msg))
			},
		},
		{
			// runexec's environment is refused to a step without capabilities
			// (runexec has them: EACCES).
			name: "prints its environment (and runexec's)",
			yaml: func(rid, dir string) string {
				return "steps:\n" + yamlStep("env", nil, "env; echo ---; tr '\\0' '\\n' < /proc/$PPID/environ || echo 'runexec environ: refused'; echo ---; tr '\\0' ' ' < /proc/$PPID/cmdline || true") +
					yamlStep("probe", []string{"env"}, "P=$(awk '{print $4}' /proc/$PPID/stat); echo runnerd pid $P; tr '\\0' '\\n' < /proc/$P/environ | grep -c RUNNERD_S3_SECRET_KEY || true")
			},
			status: runnerd.StatusSucceeded, reasons: []runnerd.Reason{runnerd.ReasonCompleted},
			check: func(t *testing.T, s *stack, r *runner, rid string, run *store.Run) string {
				logs := stepLog(rid, "env", 1)
				evs, _ := s.st.Events(context.Background(), rid, 0, 100000)
				for _, e := range evs {
					logs += e.Text
				}
				secrets := []string{s.urls["secret_key"], s.urls["access_key"], mongoMarker, s.mongoP.addr(), s.s3P.addr(),
					strings.TrimPrefix(s.urls["nats"], "nats://"), "RUNNERD_S3", "RUNNERD_MONGO", "RUNNERD_NATS"}
				for _, raw := range []string{s.urls["nats"], s.urls["mongo"]} {
					if u, err := url.Parse(raw); err == nil && u.User != nil {
						if pw, ok := u.User.Password(); ok {
							secrets = append(secrets, pw)
						}
					}
				}
				var leaked []string
				for _, sec := range secrets {
					if strings.Contains(logs, sec) {
						leaked = append(leaked, sec)
					}
				}
				if len(leaked) > 0 || !strings.Contains(logs, "PATH=") {
					t.Errorf("%s: credentials in the step's log: %v", rid, leaked)
				}
				probe := stepLog(rid, "probe", 1)
				readable := strings.Contains(probe, "\n1\n")
				if readable {
					t.Errorf("%s: the step read runnerd's environment", rid)
				}
				return fmt.Sprintf("credentials in its logs (S3 + events): %d; /proc/<runnerd>/environ readable by the step: %v (not in its PID namespace)", len(leaked), readable)
			},
		},
	}
	if !haveCgroup {
		t.Logf("no cgroup for runs on this machine (probe: %q): the fork bomb is skipped", probe)
		cases = cases[1:]
	}

	var rows [][2]string
	rows = append(rows, [2]string{"cgroup per run (probe)", fmt.Sprintf("%v", haveCgroup)})
	for i, c := range cases {
		rid, nid := fmt.Sprintf("bad%d", i), fmt.Sprintf("good%d", i)
		side := filepath.Join(s.stepsDir(), nid+".side")
		s.submit(rid, c.yaml(rid, s.stepsDir()))
		s.submit(nid, neighbor(nid, side))
		var rss int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				rss = max(rss, vmRSS(r.pid()))
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
		run := s.mustTerminal(rid, 3*time.Minute)
		good := s.mustTerminal(nid, 3*time.Minute)
		close(stop)
		wg.Wait()
		ok := c.status == "" || run.Status == c.status
		reasonOK := len(c.reasons) == 0
		for _, want := range c.reasons {
			reasonOK = reasonOK || run.Reason == want
		}
		if !ok || !reasonOK {
			t.Errorf("%s (%s): %s/%s, want %s/%v", c.name, rid, run.Status, run.Reason, c.status, c.reasons)
		}
		goodLines := 0
		if data, err := os.ReadFile(side); err == nil {
			goodLines = strings.Count(string(data), " start ")
		}
		if good.Status != runnerd.StatusSucceeded || good.Attempt != 1 || goodLines != 2 {
			t.Errorf("neighbor of %s: %s/%s attempt %d, %d step executions", c.name, good.Status, good.Reason, good.Attempt, goodLines)
		}
		var left []testutil.Proc
		if c.marker != "" {
			left = waitNoProcs(c.marker, 10*time.Second)
			if len(left) > 0 {
				t.Errorf("%s: processes left: %+v", c.name, left)
			}
		}
		note := ""
		if c.check != nil {
			note = c.check(t, s, r, rid, run)
		}
		rows = append(rows, [2]string{c.name, fmt.Sprintf("%s/%s; neighbor %s (attempt %d); leftover %d; runnerd RSS max %.0f MiB; %s",
			run.Status, run.Reason, good.Status, good.Attempt, len(left), float64(rss)/(1<<20), note)})
		if !r.alive() {
			t.Fatalf("runnerd died during %s", c.name)
		}
	}

	// Artifact paths that leave the workdir are refused at validation, by
	// the parser and by runnerd for a message that carries one.
	_, perr := workflow.Parse([]byte("steps:\n  - id: a\n    shell: 'true'\n    artifacts: [../secret]\n"), "dotdot.yaml")
	if err := s.st.Create(ctx, &store.Run{ID: "dotdot", TenantID: tenant}); err != nil {
		t.Fatal(err)
	}
	raw := fmt.Sprintf(`{"v":1,"run_id":"dotdot","tenant_id":%q,"workflow":{"steps":[{"id":"a","shell":"true","artifacts":["../secret"]}]},"published_at":"2026-01-01T00:00:00Z"}`, tenant)
	if _, err := s.js.Publish(ctx, s.qcfg.Subject, []byte(raw), jetstream.WithMsgID("dotdot-0")); err != nil {
		t.Fatal(err)
	}
	dd := s.mustTerminal("dotdot", time.Minute)
	if perr == nil || dd.Status != runnerd.StatusFailed || dd.Reason != runnerd.ReasonInvalidWorkflow {
		t.Errorf("artifact ../secret: parse error %v; run %s/%s", perr, dd.Status, dd.Reason)
	}
	rows = append(rows, [2]string{"artifact path with `..`", fmt.Sprintf("parse: %v; a message carrying it: run %s/%s, termed", perr, dd.Status, dd.Reason)})
	rows = append(rows, [2]string{"runnerd alive at the end", fmt.Sprintf("%v", r.alive())})
	table(t, "Misbehaving workflows", rows)
}
