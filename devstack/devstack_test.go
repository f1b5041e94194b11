package devstack_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/runnerd/runnerd/blob"
	"github.com/runnerd/runnerd/devstack"
	"github.com/runnerd/runnerd/devstack/devstacktest"
	"github.com/runnerd/runnerd/internal/testutil"
)

func TestStackServesAllThree(t *testing.T) {
	s := devstacktest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// NATS with JetStream.
	nc, err := nats.Connect(s.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	if _, err := js.Publish(ctx, "t.x", []byte("hello")); err != nil {
		t.Fatalf("publish: %v", err)
	}

	// MongoDB wire protocol.
	mc, err := mongo.Connect(options.Client().ApplyURI(s.MongoURI))
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Disconnect(context.Background())
	coll := mc.Database("devstack").Collection("c")
	if _, err := coll.InsertOne(ctx, bson.M{"_id": "a", "n": 1}); err != nil {
		t.Fatalf("insert: %v", err)
	}
	var got bson.M
	if err := coll.FindOne(ctx, bson.M{"_id": "a"}).Decode(&got); err != nil {
		t.Fatalf("find: %v", err)
	}

	// S3: the bucket exists; an unsigned request is refused.
	resp, err := http.Get(s.S3Endpoint + "/" + s.S3Bucket)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "AccessDenied") {
		t.Fatalf("unsigned list bucket: %d %s", resp.StatusCode, body)
	}
	if fi, err := os.Stat(filepath.Join(s.Dir(), "s3", "buckets", s.S3Bucket)); err != nil || !fi.IsDir() {
		t.Fatalf("bucket dir: %v", err)
	}
}

func TestRestartNATSKeepsStreams(t *testing.T) {
	s := devstacktest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := nats.Connect(s.NATSURL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "t.x", []byte("before")); err != nil {
		t.Fatal(err)
	}
	url := s.NATSURL
	s.StopNATS()
	if err := s.StartNATS(); err != nil {
		t.Fatal(err)
	}
	if s.NATSURL != url {
		t.Fatalf("URL changed across restart: %s -> %s", url, s.NATSURL)
	}
	// The client reconnects on its own; the stream and its message survived.
	var st jetstream.Stream
	testutil.Eventually(t, 10*time.Second, func() bool {
		// A request sent while the client reconnects can be lost: bound
		// each try, not only the whole wait.
		tryCtx, cancelTry := context.WithTimeout(ctx, time.Second)
		defer cancelTry()
		st, err = js.Stream(tryCtx, "T")
		return err == nil
	}, "stream after restart: %v", func() string { return fmt.Sprint(err) })
	if n := st.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("stream has %d messages after restart, want 1", n)
	}
}

func TestDataSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := devstack.Start(ctx, devstack.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	mc, err := mongo.Connect(options.Client().ApplyURI(s.MongoURI))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mc.Database("d").Collection("c").InsertOne(ctx, bson.M{"_id": "kept"}); err != nil {
		t.Fatal(err)
	}
	_ = mc.Disconnect(ctx)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = devstack.Start(ctx, devstack.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mc, err = mongo.Connect(options.Client().ApplyURI(s.MongoURI))
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Disconnect(context.Background())
	if n, err := mc.Database("d").Collection("c").CountDocuments(ctx, bson.M{"_id": "kept"}); err != nil || n != 1 {
		t.Fatalf("after restart: n=%d err=%v", n, err)
	}
}

func TestStartRequiresDir(t *testing.T) {
	if _, err := devstack.Start(context.Background(), devstack.Config{}); err != devstack.ErrNoDir {
		t.Fatalf("err = %v, want ErrNoDir", err)
	}
}

// TestDataDirIsLocked: a second stack on a held data dir is refused at
// once, naming the holder; after Close the dir can be used again.
func TestDataDirIsLocked(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := devstack.Start(ctx, devstack.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	_, err = devstack.Start(ctx, devstack.Config{Dir: dir})
	if !errors.Is(err, devstack.ErrDataDirInUse) || !strings.Contains(err.Error(), fmt.Sprintf("held by pid %d", os.Getpid())) {
		t.Fatalf("second Start: %v, want ErrDataDirInUse naming pid %d", err, os.Getpid())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = devstack.Start(ctx, devstack.Config{Dir: dir})
	if err != nil {
		t.Fatalf("Start after Close: %v", err)
	}
	_ = s.Close()
}

// TestPortInUse: a taken port is named with its server, and no server
// wrote to the data dir.
func TestPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	for _, tc := range []struct {
		server string
		cfg    devstack.Config
	}{
		{"NATS", devstack.Config{NATSPort: port}},
		{"MongoDB", devstack.Config{MongoPort: port}},
		{"S3", devstack.Config{S3Port: port}},
	} {
		t.Run(tc.server, func(t *testing.T) {
			tc.cfg.Dir = filepath.Join(t.TempDir(), "data")
			_, err := devstack.Start(context.Background(), tc.cfg)
			want := fmt.Sprintf("address 127.0.0.1:%d in use (%s)", port, tc.server)
			if !errors.Is(err, devstack.ErrAddrInUse) || !strings.Contains(err.Error(), want) {
				t.Fatalf("Start: %v, want %q", err, want)
			}
			for _, sub := range []string{"nats", "mongo", "s3"} {
				if _, err := os.Stat(filepath.Join(tc.cfg.Dir, sub)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s exists after a failed start (%v): a server touched the data", sub, err)
				}
			}
		})
	}
}

// The stack creates the bucket a runnerd uses when none is configured.
func TestDefaultBucketIsRunnerdsDefault(t *testing.T) {
	if devstack.DefaultBucket != blob.DefaultBucket {
		t.Fatalf("devstack.DefaultBucket %q, blob.DefaultBucket %q: want them equal", devstack.DefaultBucket, blob.DefaultBucket)
	}
}
