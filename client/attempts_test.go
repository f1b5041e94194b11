package client

import (
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/store"
)

// Attempts pairs each recorded claim with its end by epoch, numbered as
// the run counts its attempts; Shown and LineOf show the first start, not
// the latest attempt's.
func TestAttemptsAndFirstStart(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("X", 3600))
	r := &store.Run{ID: "r", Status: runnerd.StatusRunning, Attempt: 3, StartedAt: t0.Add(time.Hour),
		AttemptStarts: []store.AttemptMark{
			{Epoch: 4, RunnerID: "a", At: t0},
			{Epoch: 5, RunnerID: "b", At: t0.Add(30 * time.Minute)},
			{Epoch: 9, RunnerID: "c", At: t0.Add(time.Hour)},
		},
		AttemptEnds: []store.AttemptMark{{Epoch: 4, At: t0.Add(time.Minute), Status: runnerd.StatusQueued, Reason: runnerd.ReasonChildCrashed}},
	}
	got := Attempts(r)
	if len(got) != 3 {
		t.Fatalf("attempts %+v, want 3", got)
	}
	want := []Attempt{
		{Attempt: 1, Epoch: 4, RunnerID: "a", StartedAt: t0.UTC(), FinishedAt: t0.Add(time.Minute).UTC(), Status: runnerd.StatusQueued, Reason: runnerd.ReasonChildCrashed},
		{Attempt: 2, Epoch: 5, RunnerID: "b", StartedAt: t0.Add(30 * time.Minute).UTC()}, // its runner vanished: no end
		{Attempt: 3, Epoch: 9, RunnerID: "c", StartedAt: t0.Add(time.Hour).UTC()},
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("attempt %d = %+v, want %+v", i+1, got[i], want[i])
		}
	}
	if l := LineOf(r); !l.StartedAt.Equal(t0) || l.StartedAt.Location() != time.UTC {
		t.Errorf("LineOf started_at %s, want the first start %s in UTC", l.StartedAt, t0.UTC())
	}
	if s := Shown(r); !s.StartedAt.Equal(t0) {
		t.Errorf("Shown started_at %s, want the first start %s", s.StartedAt, t0)
	}
	// Two claims recorded of a run counted at attempt 5 (claimed before
	// claims were recorded): numbered 4 and 5.
	old := &store.Run{Attempt: 5, StartedAt: t0, AttemptStarts: []store.AttemptMark{{Epoch: 8, At: t0}, {Epoch: 9, At: t0}}}
	if a := Attempts(old); a[0].Attempt != 4 || a[1].Attempt != 5 {
		t.Errorf("numbers %d, %d; want 4, 5", a[0].Attempt, a[1].Attempt)
	}
	if a := Attempts(&store.Run{Attempt: 2, StartedAt: t0}); a != nil {
		t.Errorf("a run with no recorded claims: %+v, want none", a)
	}
}
