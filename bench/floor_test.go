package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/runnerd/runnerd/internal/testutil"
	"github.com/runnerd/runnerd/store"
)

// The floors: what a user could write by hand against the same embedded
// servers, with the same durability per run as runnerd (a JetStream work
// queue with explicit acks, acknowledged MongoDB writes, an ack the server
// confirms), and none of runnerd's other work (lease, events, logs,
// isolation). Per message: one MongoDB write (the claim), os/exec of
// /bin/true, one MongoDB write (the result), ack. The isolated floor also
// forks and execs the runexec binary per message (`runexec --help`, which
// exits at once): the least a fresh process per run costs.

// floor is one hand-written pipeline: its own work-queue stream and
// collection in the devstack runnerd uses.
type floor struct {
	e        *env
	name     string
	subject  string
	stream   jetstream.Stream
	coll     *mongo.Collection
	isolated bool
	runexec  string
}

func (e *env) newFloor(name string, isolated bool) *floor {
	e.b.Helper()
	ctx := context.Background()
	f := &floor{e: e, name: name, subject: "floor." + name, isolated: isolated, runexec: runexecBin(e.b)}
	var err error
	f.stream, err = e.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: "FLOOR_" + strings.ToUpper(name), Subjects: []string{f.subject},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
	})
	if err != nil {
		e.b.Fatal(err)
	}
	// The store's write concern (majority, journaled), as runnerd writes.
	journal := true
	client, err := mongo.Connect(options.Client().ApplyURI(e.stack.MongoURI).
		SetWriteConcern(&writeconcern.WriteConcern{W: "majority", Journal: &journal}))
	if err != nil {
		e.b.Fatal(err)
	}
	e.b.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	db := client.Database(store.DefaultDatabase)
	if err := db.CreateCollection(ctx, "floor_"+name); err != nil {
		e.b.Fatal(err)
	}
	f.coll = db.Collection("floor_" + name)
	// As for runnerd's collections: FerretDB's _id lookups indexed.
	if err := e.stack.IndexIDLookups(ctx); err != nil {
		e.b.Fatal(err)
	}
	return f
}

// submit creates the run document and publishes its message, as runnerd
// submit does (a Nats-Msg-Id for dedup, the publish acknowledged).
func (f *floor) submit(id string) {
	ctx := context.Background()
	if _, err := f.coll.InsertOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "status", Value: "queued"},
		{Key: "created_at", Value: time.Now().UTC()}}); err != nil {
		f.e.b.Fatal(err)
	}
	if _, err := f.e.js.Publish(ctx, f.subject, []byte(id), jetstream.WithMsgID(id+"-0")); err != nil {
		f.e.b.Fatal(err)
	}
}

// serve consumes with c workers until stop is called.
func (f *floor) serve(c int) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	cons, err := f.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: "floor", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute, MaxAckPending: 10000,
	})
	if err != nil {
		f.e.b.Fatal(err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(c))
	if err != nil {
		f.e.b.Fatal(err)
	}
	msgs := make(chan jetstream.Msg)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(msgs)
		for {
			m, err := it.Next()
			if err != nil {
				return
			}
			msgs <- m
		}
	})
	for range c {
		wg.Go(func() {
			for m := range msgs {
				if err := f.handle(ctx, m); err != nil && ctx.Err() == nil {
					f.e.logs.Write([]byte(err.Error() + "\n"))
					_ = m.Nak()
				}
			}
		})
	}
	return func() {
		it.Stop()
		cancel()
		wg.Wait()
	}
}

func (f *floor) handle(ctx context.Context, m jetstream.Msg) error {
	id := string(m.Data())
	if _, err := f.coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D{
		{Key: "status", Value: "running"}, {Key: "started_at", Value: time.Now().UTC()}}}}); err != nil {
		return fmt.Errorf("claim %s: %w", id, err)
	}
	if f.isolated {
		cmd := exec.Command(f.runexec, "--help")
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("runexec for %s: %w", id, err)
		}
	}
	if err := exec.Command("/bin/true").Run(); err != nil {
		return fmt.Errorf("step of %s: %w", id, err)
	}
	if _, err := f.coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D{
		{Key: "status", Value: "succeeded"}, {Key: "finished_at", Value: time.Now().UTC()}}}}); err != nil {
		return fmt.Errorf("result of %s: %w", id, err)
	}
	return m.DoubleAck(ctx)
}

func (f *floor) queued() uint64 {
	info, err := f.stream.Info(context.Background())
	if err != nil {
		f.e.b.Fatal(err)
	}
	return info.State.Msgs
}

func (f *floor) waitDrained(interval, timeout time.Duration) {
	if !testutil.Poll(interval, timeout, func() bool { return f.queued() == 0 }) {
		f.e.b.Fatalf("floor %s: %d messages still queued after %s\n%s", f.name, f.queued(), timeout, testutil.Tail(f.e.logs.String(), 30))
	}
}

// storeLatency is finished_at − created_at of a floor run, at the
// millisecond precision of the store's dates, as for runnerd's runs.
func (f *floor) storeLatency(id string) time.Duration {
	var doc struct {
		Status     string    `bson:"status"`
		CreatedAt  time.Time `bson:"created_at"`
		FinishedAt time.Time `bson:"finished_at"`
	}
	if err := f.coll.FindOne(context.Background(), bson.D{{Key: "_id", Value: id}}).Decode(&doc); err != nil {
		f.e.b.Fatal(err)
	}
	if doc.Status != "succeeded" {
		f.e.b.Fatalf("floor run %s: %s", id, doc.Status)
	}
	return doc.FinishedAt.Truncate(time.Millisecond).Sub(doc.CreatedAt.Truncate(time.Millisecond))
}

// sequential is env.sequential for the floor: n runs one after the other.
func (f *floor) sequential(prefix string, n int) (client, stored []time.Duration) {
	for i := range n {
		id := fmt.Sprintf("%s-%05d", prefix, i)
		start := time.Now()
		f.submit(id)
		f.waitDrained(5*time.Millisecond, time.Minute)
		client = append(client, time.Since(start))
		stored = append(stored, f.storeLatency(id))
	}
	return client, stored
}

// drain pre-publishes n runs, then starts c workers and times the drain;
// it returns runs/s and the CPU per run of this process and its reaped
// children over the drain.
func (f *floor) drain(prefix string, c, n int) (rate float64, cpu time.Duration) {
	for i := range n {
		f.submit(fmt.Sprintf("%s-%05d", prefix, i))
	}
	cpu0 := processCPU(f.e.b)
	start := time.Now()
	stop := f.serve(c)
	f.waitDrained(10*time.Millisecond, 10*time.Minute)
	elapsed := time.Since(start)
	cpu1 := processCPU(f.e.b)
	stop()
	return float64(n) / elapsed.Seconds(), (cpu1 - cpu0) / time.Duration(n)
}

// processCPU is the CPU time of this process (all threads: the embedded
// servers, the supervisor, the benchmark) plus that of its children that
// were waited for (runexec children and, through runexec's own waits, their
// steps), from /proc/self/stat: utime + stime + cutime + cstime.
func processCPU(b interface{ Fatal(...any) }) time.Duration {
	self, children := processCPUSplit(b)
	return self + children
}

// processCPUSplit is processCPU as this process's own and its children's.
func processCPUSplit(b interface{ Fatal(...any) }) (self, children time.Duration) {
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14 … cstime 17.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		b.Fatal(errors.New("/proc/self/stat: no command name"))
	}
	f := strings.Fields(s[i+1:])
	var ticks [4]int64
	for j, k := range []int{14, 15, 16, 17} {
		n, err := strconv.ParseInt(f[k-3], 10, 64)
		if err != nil {
			b.Fatal(fmt.Errorf("/proc/self/stat field %d: %w", k, err))
		}
		ticks[j] = n
	}
	// USER_HZ is 100 on Linux.
	tick := 10 * time.Millisecond
	return time.Duration(ticks[0]+ticks[1]) * tick, time.Duration(ticks[2]+ticks[3]) * tick
}

// stepCPU is the CPU of the benchmark's step itself (one /bin/true: its
// exec, its run, its exit, as the kernel accounts them to that process),
// the mean of n runs: subtracted from every CPU-per-run figure ("excluding
// the step").
func stepCPU(b interface{ Fatal(...any) }, n int) time.Duration {
	var sum time.Duration
	for range n {
		cmd := exec.Command("/bin/true")
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		sum += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	return sum / time.Duration(n)
}
