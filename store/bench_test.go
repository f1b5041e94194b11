package store

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/runnerd/runnerd"
)

// seedRuns inserts n queued runs in bulk, so that per-call costs are measured
// at a realistic collection size (FerretDB scans the collection for any
// filter other than a lone _id).
func seedRuns(b *testing.B, s *Store, n int) {
	b.Helper()
	ctx := context.Background()
	docs := make([]any, 0, 1000)
	for i := range n {
		r := testRun(fmt.Sprintf("seed-%06d", i))
		r.Status, r.CreatedAt, r.UpdatedAt = runnerd.StatusQueued, now(), now()
		r.Steps = runnerd.StepStates{"fetch": {Status: runnerd.StepSucceeded, Outputs: map[string]string{"sha": "abc"}}}
		docs = append(docs, r)
		if len(docs) == cap(docs) || i == n-1 {
			if _, err := s.runs.InsertMany(ctx, docs); err != nil {
				b.Fatal(err)
			}
			docs = docs[:0]
		}
	}
}

// BenchmarkRunCalls measures one call of each kind on a runs collection of
// RUNNERD_BENCH_RUNS documents (default 1000).
func BenchmarkRunCalls(b *testing.B) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("RUNNERD_BENCH_RUNS")); err == nil {
		n = v
	}
	s := openTest(b)
	seedRuns(b, s, n)
	ctx := context.Background()
	r := testRun("hot")
	if err := s.Create(ctx, r); err != nil {
		b.Fatal(err)
	}
	if _, err := s.Claim(ctx, "hot", "r", 1); err != nil {
		b.Fatal(err)
	}
	steps := runnerd.StepStates{"fetch": {Status: runnerd.StepRunning}}
	evs := make([]runnerd.Event, 100)
	for i := range evs {
		evs[i] = runnerd.Event{Type: runnerd.EventLog, Step: "fetch", Text: "a line of output"}
	}
	b.Run("Get", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Get(ctx, "hot"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("SaveSteps", func(b *testing.B) {
		for b.Loop() {
			if err := s.SaveSteps(ctx, "hot", 1, steps); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendEvents100", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.AppendEvents(ctx, "hot", 1, evs); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Events100", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Events(ctx, "hot", 0, 100); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("List20", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.List(ctx, ListOptions{Limit: 20}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
