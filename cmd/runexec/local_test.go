package main

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/child"
	"github.com/runnerd/runnerd/workflow"
)

// BenchmarkExecuteInProcess runs child's one-step benchmark workflow through
// the executor in this process: the difference to child's
// BenchmarkSpawnPlugin is what isolation costs.
func BenchmarkExecuteInProcess(b *testing.B) {
	wf, err := workflow.Parse([]byte(`steps: [{id: a, run: ["true"]}]`), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	req := &child.Request{RunID: "r1", Workflow: wf, Workdir: b.TempDir(), LogDir: b.TempDir(), KillGrace: time.Second}
	exec := &local{Env: []string{"PATH=" + os.Getenv("PATH")}}
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		if err := exec.Execute(context.Background(), req, func([]runnerd.Event) error { return nil }); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
