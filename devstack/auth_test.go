package devstack

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/nats-io/nats.go"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The embedded servers refuse clients without the stack's credentials and
// serve those that have them. These tests are in the package to reach
// FerretDB's inner address.

func startStack(t *testing.T) *Stack {
	t.Helper()
	s, err := Start(context.Background(), Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func ctx10(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestNATSRequiresCredentials(t *testing.T) {
	s := startStack(t)
	c := s.Credentials()
	for name, url := range map[string]string{
		"none":           c.NATSURL,
		"wrong password": strings.Replace(s.NATSURL, c.NATSPassword, "nope", 1),
		"wrong user":     strings.Replace(s.NATSURL, c.NATSUser+":", "admin:", 1),
	} {
		nc, err := nats.Connect(url, nats.MaxReconnects(0))
		if err == nil {
			nc.Close()
			t.Errorf("%s: connected", name)
		} else if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("%s: %v, want %v", name, err, nats.ErrAuthorization)
		}
	}
	nc, err := nats.Connect(s.NATSURL)
	if err != nil {
		t.Fatalf("with the credentials: %v", err)
	}
	defer nc.Close()
	if err := nc.Publish("x", nil); err != nil {
		t.Fatal(err)
	}
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		t.Fatal(err)
	}
}

func mongoClient(t *testing.T, uri string) *mongo.Client {
	t.Helper()
	mc, err := mongo.Connect(options.Client().ApplyURI(uri).SetServerSelectionTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mc.Disconnect(context.Background()) })
	return mc
}

func TestMongoRequiresCredentials(t *testing.T) {
	s := startStack(t)
	c := s.Credentials()
	ctx := ctx10(t)

	// No credentials: the handshake works (drivers need it to learn what
	// the server is), any command on data is Unauthorized.
	anon := mongoClient(t, c.MongoURI).Database("d").Collection("c")
	_, err := anon.InsertOne(ctx, bson.M{"_id": "x"})
	var ce mongo.CommandError
	if !errors.As(err, &ce) || ce.Code != codeUnauthorized {
		t.Errorf("insert without credentials: %v, want Unauthorized (13)", err)
	}
	if err := anon.FindOne(ctx, bson.M{}).Err(); !errors.As(err, &ce) || ce.Code != codeUnauthorized {
		t.Errorf("find without credentials: %v, want Unauthorized (13)", err)
	}

	// Wrong credentials, or a mechanism other than SCRAM: refused at the
	// connection's authentication.
	for name, uri := range map[string]string{
		"wrong password": strings.Replace(s.MongoURI, c.MongoPassword, "nope", 1),
		"wrong user":     strings.Replace(s.MongoURI, c.MongoUser+":", "admin:", 1),
		"PLAIN":          s.MongoURI + "?authMechanism=PLAIN&authSource=$external",
	} {
		err := mongoClient(t, uri).Ping(ctx, nil)
		if err == nil || !strings.Contains(err.Error(), "auth") {
			t.Errorf("%s: ping %v, want an authentication error", name, err)
		}
	}

	// The credentials, by negotiation (SCRAM-SHA-256) and with SCRAM-SHA-1.
	for name, uri := range map[string]string{
		"default":     s.MongoURI,
		"SCRAM-SHA-1": s.MongoURI + "?authMechanism=SCRAM-SHA-1",
	} {
		coll := mongoClient(t, uri).Database("d").Collection("c")
		if _, err := coll.InsertOne(ctx, bson.M{"_id": name, "n": 1}); err != nil {
			t.Fatalf("%s: insert: %v", name, err)
		}
		var got bson.M
		if err := coll.FindOne(ctx, bson.M{"_id": name}).Decode(&got); err != nil || got["n"] != int32(1) {
			t.Fatalf("%s: find: %v %v", name, got, err)
		}
	}

	// FerretDB itself takes only the front's client certificate.
	err = mongoClient(t, "mongodb://"+s.mongoAuth.upstream+"/?tls=true&tlsInsecure=true").Ping(ctx, nil)
	if err == nil {
		t.Error("connected to FerretDB's inner port without the client certificate")
	}
}

// s3Client is an SDK client of the stack with the given keys.
func s3Client(s *Stack, access, secret string) *s3.Client {
	return s3.New(s3.Options{
		Region:                     s.S3Region,
		BaseEndpoint:               aws.String(s.S3Endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(access, secret, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func TestS3VerifiesSignatures(t *testing.T) {
	s := startStack(t)
	ctx := ctx10(t)
	put := func(c *s3.Client, key, body string) error {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &s.S3Bucket, Key: aws.String(key), Body: strings.NewReader(body)})
		return err
	}
	good := s3Client(s, s.S3AccessKey, s.S3SecretKey)
	if err := put(good, "dir/a b+c.txt", "hello"); err != nil {
		t.Fatalf("put with the keys: %v", err)
	}
	out, err := good.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.S3Bucket, Key: aws.String("dir/a b+c.txt")})
	if err != nil {
		t.Fatalf("get with the keys: %v", err)
	}
	b, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if string(b) != "hello" {
		t.Fatalf("got %q", b)
	}
	if _, err := good.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &s.S3Bucket, Prefix: aws.String("dir/")}); err != nil {
		t.Fatalf("list with the keys: %v", err)
	}

	if err := put(s3Client(s, s.S3AccessKey, "wrong"), "x", "evil"); apiCode(err) != "SignatureDoesNotMatch" {
		t.Errorf("wrong secret: %v, want SignatureDoesNotMatch", err)
	}
	if err := put(s3Client(s, "AKIDOTHER", s.S3SecretKey), "x", "evil"); apiCode(err) != "InvalidAccessKeyId" {
		t.Errorf("unknown key: %v, want InvalidAccessKeyId", err)
	}
	resp, err := http.Get(s.S3Endpoint + "/" + s.S3Bucket + "/dir/a%20b%2Bc.txt")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "<Code>AccessDenied</Code>") || strings.Contains(string(body), "hello") {
		t.Errorf("anonymous get: %d %s", resp.StatusCode, body)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "s3", "buckets", s.S3Bucket, "x")); !os.IsNotExist(err) {
		t.Errorf("a refused put wrote its object (%v)", err)
	}
}

// signed builds a request signed by the SDK's signer with the stack's keys.
func signed(t *testing.T, s *Stack, method, path string, body []byte, at time.Time) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, s.S3Endpoint+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	req.Header.Set("X-Amz-Content-Sha256", hash)
	signer := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	creds := aws.Credentials{AccessKeyID: s.S3AccessKey, SecretAccessKey: s.S3SecretKey}
	if err := signer.SignHTTP(context.Background(), creds, req, hash, "s3", s.S3Region, at); err != nil {
		t.Fatal(err)
	}
	return req
}

func do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestS3RefusesTamperedRequests: a correctly signed request changed after
// signing (body, path, a signed header) or signed too long ago is refused,
// and nothing is written.
func TestS3RefusesTamperedRequests(t *testing.T) {
	s := startStack(t)
	obj := "/" + s.S3Bucket + "/t.txt"
	if code, body := do(t, signed(t, s, http.MethodPut, obj, []byte("good"), time.Now())); code != http.StatusOK {
		t.Fatalf("signed put: %d %s", code, body)
	}

	req := signed(t, s, http.MethodPut, obj, []byte("good"), time.Now())
	req.Body, req.ContentLength = io.NopCloser(strings.NewReader("evil")), 4
	if code, body := do(t, req); code != http.StatusBadRequest || !strings.Contains(body, "XAmzContentSHA256Mismatch") {
		t.Errorf("other body: %d %s", code, body)
	}
	req = signed(t, s, http.MethodPut, obj, []byte("evil"), time.Now())
	req.URL.Path = "/" + s.S3Bucket + "/other.txt"
	if code, body := do(t, req); code != http.StatusForbidden || !strings.Contains(body, "SignatureDoesNotMatch") {
		t.Errorf("other path: %d %s", code, body)
	}
	req = signed(t, s, http.MethodPut, obj, []byte("evil"), time.Now())
	req.Header.Set("X-Amz-Date", time.Now().Add(time.Second).UTC().Format(amzDateFormat))
	if code, body := do(t, req); code != http.StatusForbidden || !strings.Contains(body, "SignatureDoesNotMatch") {
		t.Errorf("other date: %d %s", code, body)
	}
	req = signed(t, s, http.MethodPut, obj, []byte("evil"), time.Now().Add(-time.Hour))
	if code, body := do(t, req); code != http.StatusForbidden || !strings.Contains(body, "RequestTimeTooSkewed") {
		t.Errorf("an hour old: %d %s", code, body)
	}
	b, err := os.ReadFile(filepath.Join(s.Dir(), "s3", "buckets", s.S3Bucket, "t.txt"))
	if err != nil || string(b) != "good" {
		t.Errorf("object = %q (%v), want the signed body alone", b, err)
	}
}

// TestS3WithAWSCLI: a client with another signer implementation (botocore)
// is accepted with the keys and refused without.
func TestS3WithAWSCLI(t *testing.T) {
	aws, err := exec.LookPath("aws")
	if err != nil {
		t.Skip("no aws CLI")
	}
	s := startStack(t)
	file := filepath.Join(t.TempDir(), "f.txt")
	if err := os.WriteFile(file, []byte("from the cli\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(secret string, args ...string) (string, error) {
		cmd := exec.Command(aws, append([]string{"--endpoint-url", s.S3Endpoint, "--region", s.S3Region}, args...)...)
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+s.S3AccessKey, "AWS_SECRET_ACCESS_KEY="+secret,
			"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true",
			"AWS_REQUEST_CHECKSUM_CALCULATION=when_required", "AWS_RESPONSE_CHECKSUM_VALIDATION=when_required")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(s.S3SecretKey, "s3api", "put-object", "--bucket", s.S3Bucket, "--key", "cli/f.txt", "--body", file); err != nil {
		t.Fatalf("aws put-object: %v\n%s", err, out)
	}
	if out, err := run(s.S3SecretKey, "s3", "ls", "s3://"+s.S3Bucket+"/cli/"); err != nil || !strings.Contains(out, "f.txt") {
		t.Fatalf("aws s3 ls: %v\n%s", err, out)
	}
	if out, err := run("wrong", "s3", "ls", "s3://"+s.S3Bucket+"/cli/"); err == nil || !strings.Contains(out, "SignatureDoesNotMatch") {
		t.Errorf("aws s3 ls with a wrong secret: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(s.Dir(), "s3", "buckets", s.S3Bucket, "cli", "f.txt"))
	if err != nil || string(b) != "from the cli\n" {
		t.Errorf("object = %q (%v)", b, err)
	}
}

// TestCredentialsKeptPerDataDir: a restart on the same data dir keeps the
// secrets; another data dir gets others; the file is the owner's alone.
func TestCredentialsKeptPerDataDir(t *testing.T) {
	dir := t.TempDir()
	s, err := Start(context.Background(), Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	first := s.Credentials()
	_ = s.Close()
	s, err = Start(context.Background(), Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	again := s.Credentials()
	if again.NATSPassword != first.NATSPassword || again.MongoPassword != first.MongoPassword || again.S3SecretKey != first.S3SecretKey {
		t.Error("a restart on the same data dir changed the secrets")
	}
	other := startStack(t).Credentials()
	if other.NATSPassword == first.NATSPassword || other.MongoPassword == first.MongoPassword || other.S3SecretKey == first.S3SecretKey {
		t.Error("two data dirs share a secret")
	}
	fi, err := os.Stat(filepath.Join(dir, CredentialsFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials file: %v, mode %v, want 0600", err, fi.Mode().Perm())
	}
	read, err := ReadCredentials(filepath.Join(dir, CredentialsFile))
	if err != nil || read != again {
		t.Errorf("file holds %+v (%v), want %+v", read, err, again)
	}
}
