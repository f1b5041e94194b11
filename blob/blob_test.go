package blob

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	mrand "math/rand/v2"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"

	"github.com/runnerd/runnerd/devstack/devstacktest"
)

// testConfig points at the S3 named by RUNNERD_TEST_S3_* when set, else at
// a fresh devstack. The second value prefixes every key the test writes, so
// runs against a shared bucket do not collide; the test deletes its keys.
func testConfig(t *testing.T) (Config, string) {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	prefix := "test-" + hex.EncodeToString(b[:]) + "/"
	if ep := os.Getenv("RUNNERD_TEST_S3_ENDPOINT"); ep != "" {
		return Config{
			Endpoint:  ep,
			Region:    os.Getenv("RUNNERD_TEST_S3_REGION"),
			Bucket:    os.Getenv("RUNNERD_TEST_S3_BUCKET"),
			AccessKey: os.Getenv("RUNNERD_TEST_S3_ACCESS_KEY"),
			SecretKey: os.Getenv("RUNNERD_TEST_S3_SECRET_KEY"),
			PathStyle: true,
		}, prefix
	}
	st := devstacktest.Start(t)
	return Config{
		Endpoint:  st.S3Endpoint,
		Region:    st.S3Region,
		Bucket:    st.S3Bucket,
		AccessKey: st.S3AccessKey,
		SecretKey: st.S3SecretKey,
		PathStyle: true,
	}, prefix
}

func openTest(t *testing.T, cfg Config, prefix string, extra ...func(*s3.Options)) *Store {
	t.Helper()
	s, err := newStore(context.Background(), cfg, extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		infos, _ := s.List(ctx, prefix)
		for _, i := range infos {
			_ = s.Delete(ctx, i.Key)
		}
	})
	return s
}

func TestPutGetHeadListDelete(t *testing.T) {
	cfg, p := testConfig(t)
	s := openTest(t, cfg, p)
	ctx := context.Background()

	log := p + StepLogKey("r1", 1, "build")
	art := p + ArtifactKey("r1", "build", "out/report.txt")
	other := p + StepLogKey("r2", 1, "build")
	for key, body := range map[string]string{log: "hello\n", art: "report", other: "x"} {
		n, err := s.Put(ctx, key, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if n != int64(len(body)) {
			t.Fatalf("put %s: %d bytes, want %d", key, n, len(body))
		}
	}
	rc, err := s.Get(ctx, log)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "hello\n" {
		t.Fatalf("get: %q", got)
	}
	info, err := s.Head(ctx, art)
	if err != nil || info.Size != int64(len("report")) || info.Key != art {
		t.Fatalf("head: %+v %v", info, err)
	}

	infos, err := s.List(ctx, p+"runs/r1/")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, i := range infos {
		keys = append(keys, i.Key)
	}
	if want := []string{art, log}; strings.Join(keys, ",") != strings.Join(want, ",") {
		t.Fatalf("list: %v, want %v", keys, want)
	}

	if err := s.Delete(ctx, log); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Head(ctx, log); !errors.Is(err, ErrNotFound) {
		t.Fatalf("head deleted: %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, log); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get deleted: %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, log); err != nil {
		t.Fatalf("delete twice: %v", err)
	}
	// An empty object is an object.
	if n, err := s.Put(ctx, p+"empty", bytes.NewReader(nil)); err != nil || n != 0 {
		t.Fatalf("put empty: %d %v", n, err)
	}
	if info, err := s.Head(ctx, p+"empty"); err != nil || info.Size != 0 {
		t.Fatalf("head empty: %+v %v", info, err)
	}
}

// TestLargeBlobRoundTrip streams 100 MiB from a generator (never held in
// memory) through a multipart upload and back, and compares SHA-256.
func TestLargeBlobRoundTrip(t *testing.T) {
	const size = 100 << 20
	cfg, p := testConfig(t)
	cfg.PartSize = 16 << 20
	var parts atomic.Int64
	s := openTest(t, cfg, p, countParts(&parts))
	ctx := context.Background()
	key := p + WorkflowKey("big")

	up := sha256.New()
	src := io.TeeReader(io.LimitReader(mrand.NewChaCha8([32]byte{1, 2, 3}), size), up)
	start := time.Now()
	n, err := s.Put(ctx, key, src)
	if err != nil {
		t.Fatal(err)
	}
	putTime := time.Since(start)
	if n != size {
		t.Fatalf("put %d bytes, want %d", n, size)
	}
	if got, want := parts.Load(), int64((size+cfg.PartSize-1)/cfg.PartSize); got != want {
		t.Fatalf("%d parts uploaded, want %d (multipart)", got, want)
	}
	if info, err := s.Head(ctx, key); err != nil || info.Size != size {
		t.Fatalf("head: %+v %v", info, err)
	}

	start = time.Now()
	rc, err := s.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	down := sha256.New()
	got, err := io.Copy(down, rc)
	rc.Close()
	if err != nil || got != size {
		t.Fatalf("get: %d bytes, %v", got, err)
	}
	getTime := time.Since(start)
	if !bytes.Equal(up.Sum(nil), down.Sum(nil)) {
		t.Fatalf("SHA-256 differs: put %x, got %x", up.Sum(nil), down.Sum(nil))
	}
	mib := float64(size) / (1 << 20)
	t.Logf("100 MiB: put %v (%.0f MiB/s, %d parts), get %v (%.0f MiB/s)",
		putTime.Round(time.Millisecond), mib/putTime.Seconds(), parts.Load(),
		getTime.Round(time.Millisecond), mib/getTime.Seconds())
}

// countParts counts the UploadPart calls of a client.
func countParts(n *atomic.Int64) func(*s3.Options) {
	return func(o *s3.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Initialize.Add(middleware.InitializeMiddlewareFunc("countParts",
				func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					if middleware.GetOperationName(ctx) == "UploadPart" {
						n.Add(1)
					}
					return next.HandleInitialize(ctx, in)
				}), middleware.After)
		})
	}
}

// PutStreaming sends parts of the smallest size S3 takes, whatever the
// configured part size, and stores the bytes as Put would.
func TestPutStreamingUsesTheSmallestParts(t *testing.T) {
	const size = 12 << 20
	cfg, p := testConfig(t)
	cfg.PartSize = 16 << 20
	var parts atomic.Int64
	s := openTest(t, cfg, p, countParts(&parts))
	ctx := context.Background()
	key := p + WorkflowKey("streamed")
	up := sha256.New()
	n, err := s.PutStreaming(ctx, key, io.TeeReader(io.LimitReader(mrand.NewChaCha8([32]byte{4}), size), up))
	if err != nil || n != size {
		t.Fatalf("put streaming: %d bytes, %v", n, err)
	}
	if got, want := parts.Load(), int64((size+MinPartSize-1)/MinPartSize); got != want {
		t.Fatalf("%d parts uploaded, want %d of %d bytes", got, want, MinPartSize)
	}
	rc, err := s.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	down := sha256.New()
	if _, err := io.Copy(down, rc); err != nil || !bytes.Equal(up.Sum(nil), down.Sum(nil)) {
		t.Fatalf("the object differs from what was put (%v)", err)
	}
}

func TestCreateBucket(t *testing.T) {
	if os.Getenv("RUNNERD_TEST_S3_ENDPOINT") != "" {
		t.Skip("does not create buckets on an external server")
	}
	cfg, p := testConfig(t)
	cfg.Bucket = "fresh-bucket"
	if _, err := New(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	cfg.CreateBucket = true
	s := openTest(t, cfg, p)
	if _, err := s.Put(context.Background(), p+"x", strings.NewReader("x")); err != nil {
		t.Fatalf("put into created bucket: %v", err)
	}
	// A second New finds it there.
	if _, err := New(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
}

func TestConfigRefused(t *testing.T) {
	ctx := context.Background()
	if _, err := New(ctx, Config{}); !errors.Is(err, ErrNoBucket) {
		t.Fatalf("no bucket: %v", err)
	}
	if _, err := New(ctx, Config{Bucket: "b", PartSize: 1 << 20}); !errors.Is(err, ErrPartSize) {
		t.Fatalf("small parts: %v", err)
	}
}

func TestKeys(t *testing.T) {
	for got, want := range map[string]string{
		StepLogKey("r1", 2, "build"):            "runs/r1/attempt-2/build.log",
		ArtifactKey("r1", "build", "out/a.txt"): "runs/r1/artifacts/build/out/a.txt",
		ArtifactKey("r1", "build", "../../x"):   "runs/r1/artifacts/build/x",
		ArtifactKey("r1", "build", "./d//e"):    "runs/r1/artifacts/build/d/e",
		WorkflowKey("ab12"):                     "workflows/ab12.json",
	} {
		if got != want {
			t.Errorf("key %q, want %q", got, want)
		}
	}
}
