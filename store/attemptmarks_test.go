package store

import (
	"context"
	"errors"
	"testing"

	"github.com/runnerd/runnerd"
)

// Each claim records its start and each fenced write that ends an attempt
// its end, on either write path: a repeated claim and a fenced-off write
// record nothing, and the first start stays the first mark however many
// attempts follow.
func TestAttemptMarks(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	mustCreate(t, s, "am")
	first, err := s.Claim(ctx, "am", "runner-a", 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, "am", "runner-a", 3); err != nil { // a retry after a timeout
		t.Fatal(err)
	}
	if err := s.RequeueCrashed(ctx, "am", 3, runnerd.ReasonChildCrashed, runnerd.StepStates{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, "am", "runner-b", 7); err != nil {
		t.Fatal(err)
	}
	// The first runner, fenced off, writes nothing (nor an end).
	if _, err := s.SetStatus(ctx, "am", 3, runnerd.StatusFailed, runnerd.ReasonStepFailed); !errors.Is(err, ErrFenced) {
		t.Fatalf("write of the fenced-off attempt: %v, want ErrFenced", err)
	}
	if _, err := s.Finish(ctx, "am", 7, runnerd.StatusSucceeded, runnerd.ReasonCompleted, runnerd.StepStates{}); err != nil {
		t.Fatal(err)
	}
	r, err := s.Get(ctx, "am")
	if err != nil {
		t.Fatal(err)
	}
	starts, ends := r.AttemptStarts, r.AttemptEnds
	if len(starts) != 2 || starts[0].Epoch != 3 || starts[0].RunnerID != "runner-a" || starts[1].Epoch != 7 || starts[1].RunnerID != "runner-b" {
		t.Fatalf("attempt starts %+v, want epochs 3 (runner-a) and 7 (runner-b)", starts)
	}
	if !starts[0].At.Equal(first.StartedAt) || starts[1].At.Before(starts[0].At) || !starts[1].At.Equal(r.StartedAt) {
		t.Errorf("starts at %s and %s, first claim at %s, document started_at %s", starts[0].At, starts[1].At, first.StartedAt, r.StartedAt)
	}
	if len(ends) != 2 || ends[0].Epoch != 3 || ends[0].Status != runnerd.StatusQueued || ends[0].Reason != runnerd.ReasonChildCrashed ||
		ends[1].Epoch != 7 || ends[1].Status != runnerd.StatusSucceeded || !ends[1].At.Equal(r.FinishedAt) {
		t.Fatalf("attempt ends %+v, want epoch 3 queued/child_crashed and epoch 7 succeeded at finished_at %s", ends, r.FinishedAt)
	}
	if ends[0].At.Before(starts[0].At) || starts[1].At.Before(ends[0].At) {
		t.Errorf("the first attempt ended at %s, outside %s .. %s", ends[0].At, starts[0].At, starts[1].At)
	}
}
