//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/runnerd/runnerd"
	"github.com/runnerd/runnerd/store"
)

// badMessage returns the i-th malformed message and what it is.
func badMessage(i int, r *rand.Rand) (kind string, data []byte) {
	ts := `"published_at":"2026-01-01T00:00:00Z"`
	wf := `"workflow":{"steps":[{"id":"a","shell":"true"}]}`
	j := func(format string, args ...any) []byte { return []byte(fmt.Sprintf(format, args...)) }
	switch i % 20 {
	case 0:
		b := make([]byte, 1+r.IntN(300))
		for k := range b {
			b[k] = byte(r.IntN(256))
		}
		return "garbage bytes", b
	case 1:
		return "not an object", []byte([]string{"", "null", "[]", "42", `"run"`, "{", "}", "\xff\xfe"}[i/20%8])
	case 2:
		return "wrong v", j(`{"v":%s,"run_id":"ghost%d","tenant_id":"t",%s,%s}`, []string{"0", "2", `"1"`, "-1", "1.5", "null", "1e9", "99"}[i/20%8], i, wf, ts)
	case 3:
		return "missing v", j(`{"run_id":"ghost%d","tenant_id":"t",%s,%s}`, i, wf, ts)
	case 4:
		return "missing run_id", j(`{"v":1,"tenant_id":"t",%s,%s}`, wf, ts)
	case 5:
		return "missing tenant_id", j(`{"v":1,"run_id":"ghost%d",%s,%s}`, i, wf, ts)
	case 6:
		return "missing workflow", j(`{"v":1,"run_id":"ghost%d","tenant_id":"t",%s}`, i, ts)
	case 7:
		id := []string{"../etc", "a.b", "", "a b", "é", strings.Repeat("x", 200), "-x", "a/b", "*", ">"}[i/20%10]
		return "bad run id", j(`{"v":1,"run_id":%q,"tenant_id":"t",%s,%s}`, id, wf, ts)
	case 8:
		return "bad tenant id", j(`{"v":1,"run_id":"ghost%d","tenant_id":"t.x",%s,%s}`, i, wf, ts)
	case 9:
		return "huge run id (256 KiB)", j(`{"v":1,"run_id":"%s","tenant_id":"t",%s,%s}`, strings.Repeat("r", 256<<10), wf, ts)
	case 10:
		return "huge var (256 KiB), no such run", j(`{"v":1,"run_id":"ghost%d","tenant_id":"t",%s,"vars":{"k":"%s"},%s}`, i, wf, strings.Repeat("v", 256<<10), ts)
	case 11:
		return "unknown field", j(`{"v":1,"run_id":"ghost%d","tenant_id":"t",%s,"extra":1,%s}`, i, wf, ts)
	case 12:
		return "duplicate key", j(`{"v":1,"v":1,"run_id":"ghost%d","tenant_id":"t",%s,%s}`, i, wf, ts)
	case 13:
		return "trailing data", j(`{"v":1,"run_id":"ghost%d","tenant_id":"t",%s,%s} {}`, i, wf, ts)
	case 14:
		return "bad workflow_ref", j(`{"v":1,"run_id":"ghost%d","tenant_id":"t","workflow_ref":"secrets/x.json",%s}`, i, ts)
	case 15:
		return "no such run", j(`{"v":1,"run_id":"ghost%d","tenant_id":"t",%s,%s}`, i, wf, ts)
	case 16:
		return "tenant mismatch", j(`{"v":1,"run_id":"victim%d","tenant_id":"mallory",%s,%s}`, i/20%10, wf, ts)
	case 17:
		bad := []string{
			`{"steps":[{"id":"a","needs":["b"],"shell":"true"},{"id":"b","needs":["a"],"shell":"true"}]}`,
			`{"steps":[{"id":"a","shell":"true"},{"id":"a","shell":"true"}]}`,
			`{"steps":[{"id":"a","shell":"true","colour":"red"}]}`,
			`{"steps":[{"id":"a","needs":["nope"],"shell":"true"}]}`,
			`{"steps":[{"id":"a","shell":"true","artifacts":["../x"]}]}`,
			`{"steps":[]}`,
			`{"steps":[{"id":"a","shell":"echo ${{ steps.zz.outputs.v }}"}]}`,
			`{"steps":[{"id":"a","run":"not-a-list"}]}`,
		}[i/20%8]
		return "invalid workflow, run exists", j(`{"v":1,"run_id":"inval%d","tenant_id":"t","workflow":%s,%s}`, i, bad, ts)
	case 18:
		return "bad published_at / timeout", j(`{"v":1,"run_id":"ghost%d","tenant_id":"t",%s,"timeout_sec":-5,"published_at":"yesterday"}`, i, wf)
	default:
		return "resume of wrong type", j(`{"v":1,"run_id":"ghost%d","tenant_id":"t",%s,"resume":{"answers":"yes"},%s}`, i, wf, ts)
	}
}

// TestBadInput publishes 1,000 malformed messages to a serving runnerd, with
// good runs interleaved: every bad one must be termed with a reason, the
// good ones must succeed, runnerd must stay up, and runs that the bad
// messages name but do not own must be left untouched.
func TestBadInput(t *testing.T) {
	const nBad, every = 1000, 100
	s := newStack(t, chaosQueue(5, 6*time.Second, 10*time.Second))
	r := s.newRunner("bad1", "--concurrency", "2")
	r.start()
	ctx := context.Background()
	for i := range 10 {
		if err := s.st.Create(ctx, &store.Run{ID: fmt.Sprintf("victim%d", i), TenantID: tenant}); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(1000, 1))
	kinds := map[string]int{}
	var goods []string
	start := time.Now()
	for i := range nBad {
		kind, data := badMessage(i, rng)
		if kind == "invalid workflow, run exists" {
			if err := s.st.Create(ctx, &store.Run{ID: fmt.Sprintf("inval%d", i), TenantID: tenant}); err != nil {
				t.Fatal(err)
			}
		}
		kinds[kind]++
		var opts []jetstream.PublishOpt
		if kind == "invalid workflow, run exists" {
			// As every publisher does (runnerd submit): the dedup id names
			// the run, so runnerd can fail it without trusting the body.
			opts = append(opts, jetstream.WithMsgID(fmt.Sprintf("inval%d-0", i)))
		}
		if _, err := s.js.Publish(ctx, s.qcfg.Subject, data, opts...); err != nil {
			t.Fatalf("publish %s: %v", kind, err)
		}
		if i%every == every-1 {
			id := fmt.Sprintf("good%d", i/every)
			s.submit(id, "steps:\n"+yamlStep("a", nil, "echo good")+yamlStep("b", []string{"a"}, "echo still good"))
			goods = append(goods, id)
		}
	}
	published := time.Since(start)
	empty := s.waitQueueEmpty(5 * time.Minute)
	drained := time.Since(start)

	goodOK := 0
	for _, id := range goods {
		if run := s.waitRun(id, time.Minute, func(r *store.Run) bool { return r.Status.Terminal() }); run != nil && run.Status == runnerd.StatusSucceeded {
			goodOK++
		} else {
			t.Errorf("good run %s did not succeed: %+v", id, s.get(id))
		}
	}
	untouched := 0
	for i := range 10 {
		if v := s.get(fmt.Sprintf("victim%d", i)); v != nil && v.Status == runnerd.StatusQueued && v.Attempt == 0 {
			untouched++
		}
	}
	invalid := map[string]int{}
	for i := range nBad {
		if i%20 == 17 {
			if run := s.get(fmt.Sprintf("inval%d", i)); run != nil {
				invalid[string(run.Status)+"/"+string(run.Reason)]++
			}
		}
	}
	terms, noReason, acks := map[string]int{}, 0, 0
	for _, m := range r.logs() {
		if str(m, "message") != "run attempt done" {
			continue
		}
		switch str(m, "action") {
		case "term":
			terms[str(m, "reason")]++
			if str(m, "reason") == "" {
				noReason++
			}
		case "ack":
			acks++
		}
	}
	nTerm := 0
	for _, n := range terms {
		nTerm += n
	}
	table(t, "Bad input", [][2]string{
		{"malformed messages published", fmt.Sprintf("%d in %s (%s)", nBad, published.Round(time.Millisecond), countBy(kinds))},
		{"good runs interleaved (one per 100)", itoa(len(goods))},
		{"stream empty", fmt.Sprintf("%v, %s after the first publish", empty, drained.Round(100*time.Millisecond))},
		{"termed deliveries (runnerd log) by reason", fmt.Sprintf("%d: %s", nTerm, countBy(terms))},
		{"termed without a reason", itoa(noReason)},
		{"runs named by an invalid workflow", countBy(invalid)},
		{"runs of another tenant left untouched", fmt.Sprintf("%d / 10", untouched)},
		{"good runs succeeded", fmt.Sprintf("%d / %d", goodOK, len(goods))},
		{"runnerd alive, RSS", fmt.Sprintf("%v, %.0f MiB", r.alive(), float64(vmRSS(r.pid()))/(1<<20))},
	})
	if !empty || nTerm != nBad || noReason > 0 || goodOK != len(goods) || untouched != 10 || !r.alive() {
		t.Errorf("stream empty %v, termed %d/%d (%d without reason), good %d/%d, untouched %d/10, alive %v",
			empty, nTerm, nBad, noReason, goodOK, len(goods), untouched, r.alive())
	}
}
