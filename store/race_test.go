package store

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnerd/runnerd"
)

// raceHelperEnv, when set, makes the test binary a racer of
// TestFencingAcrossProcesses: its value is the racer's raceConfig as JSON.
const raceHelperEnv = "RUNNERD_TEST_STORE_RACER"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(raceHelperEnv); cfg != "" {
		os.Exit(racer(cfg))
	}
	os.Exit(m.Run())
}

// raceConfig is what one racer process does.
type raceConfig struct {
	URI, Database string
	WritePath     WritePath
	Name          string // runner id
	Parity        int    // 1: epochs 1, 3, 5, ...; 2: epochs 2, 4, 6, ...
	Runs          []string
	Rounds        int
	Writes        int // fenced writes per claim
}

// raceOp is one operation a racer made, as it saw it.
type raceOp struct {
	Op    string // claim, record, finish
	Run   string
	Epoch uint64
	OK    bool
	Err   string `json:",omitempty"`
	// claim: the run's event_seq when claimed; record: the batch's seqs.
	Seq, First, Last int64
	Texts            []string `json:",omitempty"`
}

func epochOf(parity, round int) uint64 { return uint64(2*round + parity) }

// racer claims each run at each round's epoch and, while it owns it,
// records batches; after the last round it tries to finish the run.
// Two racers with opposite parities take the runs from each other every
// round and keep writing with their old epoch until fenced. It prints its
// operations as JSON lines once stdin says go.
func racer(cfgJSON string) int {
	var cfg raceConfig
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx := context.Background()
	s, err := Open(ctx, Config{URI: cfg.URI, Database: cfg.Database, WritePath: cfg.WritePath, Timeout: 30 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer s.Close(ctx)
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return 2
	}
	var mu sync.Mutex
	out := json.NewEncoder(os.Stdout)
	report := func(op raceOp, err error) {
		op.OK = err == nil
		if err != nil {
			op.Err = err.Error()
		}
		mu.Lock()
		defer mu.Unlock()
		_ = out.Encode(op)
	}
	// One goroutine per run: the other racer's goroutine for the same run
	// contends with it the whole time (one that falls behind is fenced at
	// once and catches up).
	var wg sync.WaitGroup
	for _, id := range cfg.Runs {
		wg.Go(func() { raceRun(ctx, s, cfg, id, report) })
	}
	wg.Wait()
	return 0
}

func raceRun(ctx context.Context, s *Store, cfg raceConfig, id string, report func(raceOp, error)) {
	for round := range cfg.Rounds {
		epoch := epochOf(cfg.Parity, round)
		r, err := s.Claim(ctx, id, cfg.Name, epoch)
		op := raceOp{Op: "claim", Run: id, Epoch: epoch}
		if r != nil {
			op.Seq = r.EventSeq
		}
		report(op, err)
		if err != nil {
			continue
		}
		next := r.EventSeq + 1
		for w := range cfg.Writes {
			b := Batch{First: next, Steps: runnerd.StepStates{"s": {
				Status:  runnerd.StepRunning,
				Outputs: map[string]string{"epoch": strconv.FormatUint(epoch, 10), "write": strconv.Itoa(w)},
			}}}
			var texts []string
			for i := range 1 + w%3 {
				t := fmt.Sprintf("%s e%d w%d i%d", cfg.Name, epoch, w, i)
				texts = append(texts, t)
				b.Events = append(b.Events, runnerd.Event{Type: runnerd.EventLog, Step: "s", Text: t})
			}
			_, err := s.Record(ctx, id, epoch, b)
			report(raceOp{Op: "record", Run: id, Epoch: epoch, First: b.First, Last: b.Last(), Texts: texts}, err)
			if err != nil {
				break
			}
			next = b.Last() + 1
		}
	}
	last := epochOf(cfg.Parity, cfg.Rounds-1)
	steps := runnerd.StepStates{"s": {Status: runnerd.StepSucceeded, Outputs: map[string]string{"epoch": strconv.FormatUint(last, 10)}}}
	_, err := s.Finish(ctx, id, last, runnerd.StatusSucceeded, runnerd.ReasonCompleted, steps)
	report(raceOp{Op: "finish", Run: id, Epoch: last}, err)
}

// TestFencingAcrossProcesses races two OS processes on the same server:
// each claims the same runs in turn with interleaved epochs (one odd, one
// even, rising every round) and keeps making fenced writes with the epoch
// it claimed until it is fenced. No write with a stale epoch may land: in
// the final run documents and events, every event after a claim's event_seq
// comes from that claim's epoch or a newer one, every write a process was
// told had succeeded is there, the run's epoch, attempt and steps are those
// of its last claim, and only the last owner finished it.
func TestFencingAcrossProcesses(t *testing.T) {
	t.Parallel()
	s, uri := openTestURI(t)
	ctx := context.Background()
	if !s.revision && s.isFerretDB(ctx) {
		t.Skip("the conditional write path is not atomic on FerretDB (docs/architecture.md): nothing to show")
	}
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var runs []string
	for i := range 6 {
		id := fmt.Sprintf("race-%d", i)
		mustCreate(t, s, id)
		runs = append(runs, id)
	}
	const rounds, writes = 12, 4
	type proc struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   *bufio.Scanner
		ops   []raceOp
	}
	var procs []*proc
	for i, name := range []string{"racer-odd", "racer-even"} {
		cfg, _ := json.Marshal(raceConfig{
			URI: uri, Database: s.runs.Database().Name(), WritePath: s.WritePath(),
			Name: name, Parity: i + 1, Runs: runs, Rounds: rounds, Writes: writes,
		})
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Env = append(os.Environ(), raceHelperEnv+"="+string(cfg))
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		p := &proc{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
		p.out.Buffer(make([]byte, 1<<20), 1<<20)
		if !p.out.Scan() || p.out.Text() != "ready" {
			t.Fatalf("%s did not start: %q %v", name, p.out.Text(), p.out.Err())
		}
		procs = append(procs, p)
	}
	for _, p := range procs {
		_, _ = io.WriteString(p.stdin, "go\n")
	}
	for _, p := range procs {
		for p.out.Scan() {
			var op raceOp
			if err := json.Unmarshal(p.out.Bytes(), &op); err != nil {
				t.Fatalf("racer output %q: %v", p.out.Text(), err)
			}
			p.ops = append(p.ops, op)
		}
		if err := p.cmd.Wait(); err != nil {
			t.Fatalf("racer: %v", err)
		}
	}

	var all []raceOp
	for _, p := range procs {
		all = append(all, p.ops...)
	}
	counts := map[string]int{}
	for _, op := range all {
		k := op.Op + " " + map[bool]string{true: "ok", false: "refused"}[op.OK]
		counts[k]++
		if !op.OK && !errors.Is(classify(op.Err), ErrFenced) && !strings.Contains(op.Err, ErrIllegalTransition.Error()) {
			t.Errorf("%s of %s at epoch %d: unexpected error %s", op.Op, op.Run, op.Epoch, op.Err)
		}
	}
	t.Logf("operations: %v", counts)
	if counts["claim ok"] < len(runs)*rounds || counts["record refused"] == 0 {
		t.Errorf("the racers did not contend: %v", counts)
	}
	for _, id := range runs {
		checkRace(t, s, id, all)
	}
}

// classify maps a reported error text back to ErrFenced where it says so.
func classify(msg string) error {
	if strings.Contains(msg, ErrFenced.Error()) {
		return ErrFenced
	}
	return errors.New(msg)
}

// checkRace checks one run's final document and events against what the
// racers were told.
func checkRace(t *testing.T, s *Store, id string, all []raceOp) {
	t.Helper()
	ctx := context.Background()
	r := mustGet(t, s, id)
	evs, err := s.Events(ctx, id, 0, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	bySeq := map[int64]StoredEvent{}
	for i, e := range evs {
		if e.Seq != int64(i+1) {
			t.Errorf("run %s: event %d has seq %d", id, i, e.Seq)
		}
		bySeq[e.Seq] = e
		if !strings.Contains(e.Text, fmt.Sprintf(" e%d ", e.Epoch)) {
			t.Errorf("run %s seq %d: text %q stored with epoch %d", id, e.Seq, e.Text, e.Epoch)
		}
	}
	if int64(len(evs)) != r.EventSeq {
		t.Errorf("run %s: %d events, event_seq %d", id, len(evs), r.EventSeq)
	}
	var claims []raceOp
	finished := 0
	for _, op := range all {
		if op.Run != id || !op.OK {
			continue
		}
		switch op.Op {
		case "claim":
			claims = append(claims, op)
		case "record":
			for i, text := range op.Texts {
				e, ok := bySeq[op.First+int64(i)]
				if !ok || e.Text != text || e.Epoch != op.Epoch {
					t.Errorf("run %s: write of seqs %d-%d at epoch %d succeeded but seq %d holds %q (epoch %d)",
						id, op.First, op.Last, op.Epoch, op.First+int64(i), e.Text, e.Epoch)
				}
			}
		case "finish":
			finished++
			if op.Epoch != r.Epoch {
				t.Errorf("run %s: finished at epoch %d, its last claim is epoch %d", id, op.Epoch, r.Epoch)
			}
		}
	}
	sort.Slice(claims, func(i, j int) bool { return claims[i].Epoch < claims[j].Epoch })
	for i, c := range claims {
		if i > 0 && c.Seq < claims[i-1].Seq {
			t.Errorf("run %s: claim at epoch %d saw event_seq %d, the claim before it (epoch %d) %d",
				id, c.Epoch, c.Seq, claims[i-1].Epoch, claims[i-1].Seq)
		}
		for _, e := range evs {
			if e.Seq > c.Seq && e.Epoch < c.Epoch {
				t.Errorf("run %s: seq %d written at epoch %d after the claim at epoch %d (event_seq %d): a stale write landed",
					id, e.Seq, e.Epoch, c.Epoch, c.Seq)
			}
		}
	}
	if len(claims) == 0 {
		t.Fatalf("run %s: never claimed", id)
	}
	lastClaim := claims[len(claims)-1]
	if r.Epoch != lastClaim.Epoch || r.Attempt != len(claims) {
		t.Errorf("run %s: epoch %d attempt %d, want the last claim's epoch %d and %d attempts", id, r.Epoch, r.Attempt, lastClaim.Epoch, len(claims))
	}
	if finished != 1 || r.Status != runnerd.StatusSucceeded {
		t.Errorf("run %s: %s after %d successful finishes, want succeeded once", id, r.Status, finished)
	}
	if st := r.Steps["s"]; st == nil || st.Outputs["epoch"] != strconv.FormatUint(r.Epoch, 10) {
		t.Errorf("run %s: steps %+v, want them written at the run's epoch %d", id, st, r.Epoch)
	}
}
