package main

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/store"
)

// TestCompletionNotices: a subscriber on runnerd.finished.<id>, a plain NATS
// client, hears a run pause and then finish from a real runner; each notice
// carries the run's id, tenant, status, reason, attempt and the times the
// store holds, which already shows that status when the notice arrives.
func TestCompletionNotices(t *testing.T) {
	if testing.Short() {
		t.Skip("starts runexec children")
	}
	e := startEnv(t)
	e.startServe()
	nc, err := nats.Connect(e.stack.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	const id = "notice-1"
	type heard struct {
		data   map[string]any
		stored *store.Run // the store as read when the notice arrived
		err    error
	}
	var (
		mu  sync.Mutex
		got []heard
	)
	sub, err := nc.Subscribe("runnerd.finished."+id, func(m *nats.Msg) {
		h := heard{}
		h.err = json.Unmarshal(m.Data, &h.data)
		if h.err == nil {
			h.stored, h.err = e.c.st.Get(ctxT(t), id)
		}
		mu.Lock()
		got = append(got, h)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }

	e.mustRun(cli.ExitPaused, "submit", writeFile(t, "approval.yaml", approvalYAML), "--id", id, "--wait")
	testutil.Wait(10*time.Second, func() bool { return count() >= 1 })
	e.mustRun(cli.ExitOK, "resume", id, "--answer", "approve.ok=yes", "--wait")
	testutil.Wait(10*time.Second, func() bool { return count() >= 2 })

	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("heard %d notices, want 2 (paused, succeeded)", len(got))
	}
	for i, want := range []struct {
		status runnerd.Status
		reason runnerd.Reason
	}{{runnerd.StatusPaused, runnerd.ReasonPaused}, {runnerd.StatusSucceeded, runnerd.ReasonCompleted}} {
		h := got[i]
		if h.err != nil {
			t.Fatalf("notice %d: %v", i, h.err)
		}
		n, r := h.data, h.stored
		if r.Status != want.status {
			t.Errorf("notice %d (%v): the store showed %s when it arrived, want %s", i, n["status"], r.Status, want.status)
		}
		str := func(k string) string { s, _ := n[k].(string); return s }
		at := func(k string) time.Time {
			if str(k) == "" {
				return time.Time{}
			}
			v, err := time.Parse(time.RFC3339Nano, str(k))
			if err != nil {
				t.Errorf("notice %d: %s = %q: %v", i, k, str(k), err)
			}
			return v
		}
		for k, v := range map[string]string{"id": id, "tenant": "acme", "tenant_id": "acme", "status": string(want.status), "reason": string(want.reason)} {
			if str(k) != v {
				t.Errorf("notice %d: %s = %q, want %q", i, k, str(k), v)
			}
		}
		if a, _ := n["attempt"].(float64); int(a) != r.Attempt || r.Attempt != i+1 {
			t.Errorf("notice %d: attempt %v, stored %d, want %d", i, n["attempt"], r.Attempt, i+1)
		}
		if !at("created_at").Equal(r.CreatedAt) || !at("started_at").Equal(r.StartedAt) || r.StartedAt.IsZero() {
			t.Errorf("notice %d: created_at %s started_at %s, stored %s and %s", i, str("created_at"), str("started_at"), r.CreatedAt, r.StartedAt)
		}
		sent := at("at")
		if want.status == runnerd.StatusPaused {
			if _, ok := n["finished_at"]; ok || !at("paused_at").Equal(r.UpdatedAt) {
				t.Errorf("paused notice: finished_at %q paused_at %q, want none and the stored updated_at %s", str("finished_at"), str("paused_at"), r.UpdatedAt)
			}
			if sent.Before(r.UpdatedAt) {
				t.Errorf("paused notice sent at %s, before the write at %s", sent, r.UpdatedAt)
			}
			continue
		}
		if _, ok := n["paused_at"]; ok || !at("finished_at").Equal(r.FinishedAt) || r.FinishedAt.IsZero() {
			t.Errorf("terminal notice: paused_at %q finished_at %q, want none and the stored %s", str("paused_at"), str("finished_at"), r.FinishedAt)
		}
		if sent.Before(r.FinishedAt) {
			t.Errorf("terminal notice sent at %s, before the write at %s", sent, r.FinishedAt)
		}
	}
	if t.Failed() {
		for i, h := range got {
			b, _ := json.Marshal(h.data)
			t.Logf("notice %d: %s", i, strings.TrimSpace(string(b)))
		}
	}
}
