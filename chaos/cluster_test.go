//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/runnerd/runnerd/devstack/devstacktest"
	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/queue"
	"github.com/runnerd/runnerd/store"
)

// natsNode is one nats-server process of a JetStream cluster.
type natsNode struct {
	name, conf string
	port       int
	mu         sync.Mutex
	cmd        *exec.Cmd
	done       chan struct{}
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// newNATSCluster writes the configuration of n nodes (JetStream with
// sync_interval always, as docs/operations.md asks of production) and
// starts them.
func newNATSCluster(t *testing.T, dir string, n int) []*natsNode {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ports, cports := make([]int, n), make([]int, n)
	for i := range n {
		ports[i], cports[i] = freePort(t), freePort(t)
	}
	var nodes []*natsNode
	for i := range n {
		var routes []string
		for j := range n {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", cports[j]))
			}
		}
		name := fmt.Sprintf("n%d", i+1)
		conf := filepath.Join(dir, name+".conf")
		text := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
jetstream { store_dir: %q, sync_interval: always }
cluster { name: chaos, listen: 127.0.0.1:%d, routes: [%s] }
`, name, ports[i], filepath.Join(dir, name), cports[i], strings.Join(routes, ", "))
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		node := &natsNode{name: name, conf: conf, port: ports[i]}
		node.start(t)
		t.Cleanup(node.kill)
		nodes = append(nodes, node)
	}
	return nodes
}

func (n *natsNode) start(t *testing.T) {
	cmd := exec.Command(natsServerBin, "-c", n.conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()
}

func (n *natsNode) kill() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

func clusterURL(nodes []*natsNode) string {
	var urls []string
	for _, n := range nodes {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", n.port))
	}
	return strings.Join(urls, ",")
}

// TestNATSCluster runs a fleet of three runnerd on a three-node JetStream
// cluster (separate nats-server processes, stream, consumer and lease bucket
// with three replicas) and SIGKILLs the nodes one at a time, each restarted
// a few seconds later: the stream's leader first, then the lease bucket's,
// then the consumer's. Every run must end succeeded, once (no run reaches
// a terminal status twice), nothing stays in the stream, no step whose
// success was stored runs again, and no attempt is spent on the outages.
func TestNATSCluster(t *testing.T) {
	const nRuns = 60
	qcfg := chaosQueue(-1, 6*time.Second, 10*time.Second)
	qcfg.Replicas = 3
	s := newStack(t, queue.DefaultConfig())
	nodes := newNATSCluster(t, filepath.Join(s.dir, "cluster"), 3)
	url := clusterURL(nodes)

	// The test's own connection, and the queue on the cluster (it retries
	// until the cluster has a JetStream meta leader).
	nc, js := devstacktest.JetStream(t, url, nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond), nats.RetryOnFailedConnect(true))
	var err error
	if !testutil.Poll(time.Second, 60*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.q, err = queue.Setup(ctx, js, qcfg)
		return err == nil
	}) {
		t.Fatalf("queue on the cluster: %v", err)
	}
	s.nc, s.js, s.qcfg = nc, js, qcfg
	s.urls["nats"] = url

	var runners []*runner
	for i := range 3 {
		r := s.newRunner(fmt.Sprintf("c%d", i+1), "--concurrency", "2", "--replicas", "3")
		r.start()
		runners = append(runners, r)
	}
	side := filepath.Join(s.stepsDir(), "side")
	_ = os.MkdirAll(side, 0o755)
	var ids []string
	for i := range nRuns {
		rid := fmt.Sprintf("cl%d", i)
		sf := filepath.Join(side, rid+".log")
		s.submit(rid, "steps:\n"+yamlStep("a", nil, sideStep(sf, rid, "a", "0.81731"))+
			yamlStep("b", []string{"a"}, sideStep(sf, rid, "b", "0.81731"))+
			yamlStep("c", []string{"b"}, sideStep(sf, rid, "c", "0.81731")))
		ids = append(ids, rid)
	}

	leaderOf := func(stream string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, stream)
		if err != nil {
			return ""
		}
		info, err := st.Info(ctx)
		if err != nil || info.Cluster == nil {
			return ""
		}
		return info.Cluster.Leader
	}
	consumerLeader := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := js.Consumer(ctx, qcfg.Stream, qcfg.Consumer)
		if err != nil {
			return ""
		}
		info, err := c.Info(ctx)
		if err != nil || info.Cluster == nil {
			return ""
		}
		return info.Cluster.Leader
	}
	var killed []string
	start := time.Now()
	for _, pick := range []func() string{
		func() string { return leaderOf(qcfg.Stream) },
		func() string { return leaderOf("KV_" + qcfg.LeaseBucket) },
		consumerLeader,
	} {
		time.Sleep(4 * time.Second)
		name := pick()
		var node *natsNode
		for _, n := range nodes {
			if n.name == name {
				node = n
			}
		}
		if node == nil {
			node = nodes[len(killed)%len(nodes)]
		}
		killed = append(killed, fmt.Sprintf("%s (leader %q) at +%s", node.name, name, time.Since(start).Round(time.Second)))
		node.kill()
		time.Sleep(5 * time.Second)
		node.start(t)
	}

	statuses := map[string]int{}
	lost := 0
	var spent []string
	for _, id := range ids {
		run := s.waitRun(id, 5*time.Minute, func(r *store.Run) bool { return r.Status.Terminal() })
		if run == nil {
			lost++
			if last := s.get(id); last != nil {
				t.Errorf("run %s not terminal: %s/%s attempt %d", id, last.Status, last.Reason, last.Attempt)
			}
			continue
		}
		statuses[string(run.Status)+"/"+string(run.Reason)]++
		if run.Crashes != 0 {
			spent = append(spent, fmt.Sprintf("%s: crashes %d", id, run.Crashes))
		}
	}
	allDone := time.Since(start)
	empty := s.waitQueueEmpty(60 * time.Second)
	var logs [][]map[string]any
	for _, r := range runners {
		logs = append(logs, r.logs())
	}
	double := 0
	for id, n := range terminalDone(logs...) {
		if n > 1 {
			double++
			t.Errorf("run %s reached a terminal status %d times", id, n)
		}
	}
	storedTwice := s.successesStoredTwice(t, ids)
	sx := analyzeSide(t, side, ids, &crashLog{byRun: map[string][]time.Time{}})
	alive := 0
	for _, r := range runners {
		if r.alive() {
			alive++
		}
	}
	table(t, "NATS cluster: 3 nodes, 3 runnerd, nodes SIGKILLed one at a time", [][2]string{
		{"runs (3 steps of 0.8 s, 3 × concurrency 2, replicas 3)", itoa(nRuns)},
		{"nodes killed (restarted 5 s later)", strings.Join(killed, "; ")},
		{"final status/reason", countBy(statuses)},
		{"all terminal at", "+" + allDone.Round(time.Second).String()},
		{"runs lost (not terminal)", itoa(lost)},
		{"runs terminal twice", itoa(double)},
		{"stream empty at the end (nothing stuck)", fmt.Sprintf("%v", empty)},
		{"succeeded steps re-run after their success was stored", itoa(storedTwice)},
		{"steps re-run after they finished", itoa(sx.rerunAfterDone)},
		{"runs with a crash counted", itoa(len(spent))},
		{"runnerd alive", fmt.Sprintf("%d / 3", alive)},
	})
	if lost > 0 || double > 0 || !empty || storedTwice > 0 || alive != 3 {
		t.Errorf("lost %d, terminal twice %d, stream empty %v, successes re-run %d, runnerd alive %d/3", lost, double, empty, storedTwice, alive)
	}
	if statuses["succeeded/completed"] != nRuns {
		t.Errorf("not every run succeeded: %v", statuses)
	}
	if len(spent) > 0 {
		t.Errorf("node restarts spent attempts: %v", spent)
	}
}
