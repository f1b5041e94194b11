// Package blob keeps step logs, artifacts and large workflows in S3.
//
// It works against AWS S3, MinIO and the embedded gofakes3 of devstack. Two
// client settings protect against silent corruption on servers that do not
// speak the SDK's newest checksum protocol: request checksums are computed
// and response checksums validated only when an operation requires it (the
// SDK's default aws-chunked trailer is stored as object data by some
// servers), and payloads are sent unsigned (streamed bodies cannot be
// hashed up front over plain HTTP).
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// Errors callers match with errors.Is.
var (
	// ErrNotFound: no object has this key.
	ErrNotFound = errors.New("blob not found")
	// ErrNoBucket: Config.Bucket is empty.
	ErrNoBucket = errors.New("blob: Config.Bucket is required")
	// ErrPartSize: Config.PartSize is below the S3 minimum part size.
	ErrPartSize = fmt.Errorf("blob: Config.PartSize must be at least %d bytes", MinPartSize)
)

// Sizes of multipart uploads.
const (
	// MinPartSize is the smallest part S3 accepts (except the last one).
	MinPartSize = 5 << 20
	// DefaultPartSize is the part size, and the size above which a Put
	// becomes a multipart upload, when Config.PartSize is zero.
	DefaultPartSize = 8 << 20
	// DefaultConcurrency is how many parts of one upload are in flight when
	// Config.Concurrency is zero: a Put holds (2+1) × 8 MiB at most, which
	// keeps runnerd's memory small while it uploads a large log and still
	// keeps up with a run dir's disk (docs/benchmarks.md).
	DefaultConcurrency = 2
	// DefaultRegion is used when Config.Region is empty; S3 servers other
	// than AWS usually accept any region.
	DefaultRegion = "us-east-1"
	// DefaultBucket is the bucket runnerd uses, and `runnerd dev` creates,
	// when none is configured.
	DefaultBucket = "runnerd"
)

// Config says which server, bucket and credentials to use.
type Config struct {
	Endpoint  string // e.g. http://127.0.0.1:9000; empty for AWS S3
	Region    string // DefaultRegion when empty
	Bucket    string
	AccessKey string // static credentials when both are set, else the default chain
	SecretKey string
	// PathStyle addresses objects as endpoint/bucket/key rather than
	// bucket.endpoint/key; MinIO and gofakes3 want it.
	PathStyle bool
	// CreateBucket creates the bucket at New when it does not exist.
	CreateBucket bool
	// PartSize of multipart uploads, at least MinPartSize; DefaultPartSize
	// when zero. A Put keeps up to (Concurrency+1) parts in memory.
	PartSize int64
	// Concurrency is the parts of one upload sent at once;
	// DefaultConcurrency when zero.
	Concurrency int
}

// Info describes a stored object.
type Info struct {
	Key          string
	Size         int64
	ETag         string
	LastModified time.Time
}

// Store reads and writes objects of one bucket. It is safe for concurrent use.
type Store struct {
	s3     *s3.Client
	tm     *transfermanager.Client
	bucket string
}

// New makes a client and, when asked, creates the bucket.
func New(ctx context.Context, cfg Config) (*Store, error) {
	return newStore(ctx, cfg)
}

func newStore(ctx context.Context, cfg Config, extra ...func(*s3.Options)) (*Store, error) {
	if cfg.Bucket == "" {
		return nil, ErrNoBucket
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultPartSize
	}
	if cfg.PartSize < MinPartSize {
		return nil, ErrPartSize
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	loadOpts := []func(*config.LoadOptions) error{
		config.WithRegion(cfg.Region),
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if cfg.AccessKey != "" && cfg.SecretKey != "" {
		loadOpts = append(loadOpts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("blob: load AWS config: %w", err)
	}
	opts := []func(*s3.Options){
		func(o *s3.Options) {
			o.UsePathStyle = cfg.PathStyle
			if cfg.Endpoint != "" {
				o.BaseEndpoint = aws.String(cfg.Endpoint)
			}
			// Set here again in case the shared config file says otherwise.
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
			o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		},
		s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware),
	}
	client := s3.NewFromConfig(awsCfg, append(opts, extra...)...)
	tm := transfermanager.New(client, func(o *transfermanager.Options) {
		o.PartSizeBytes = cfg.PartSize
		o.Concurrency = cfg.Concurrency
		o.MultipartUploadThreshold = cfg.PartSize
		// The transfer manager forces a CRC32 trailer of its own unless told
		// again here.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.DisableChecksumValidation = true
		// Abort a failed multipart upload even when the caller's context
		// is gone, so no parts are left behind.
		o.FailTimeout = 30 * time.Second
	})
	s := &Store{s3: client, tm: tm, bucket: cfg.Bucket}
	if cfg.CreateBucket {
		if err := s.ensureBucket(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Store) ensureBucket(ctx context.Context) error {
	_, err := s.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket})
	if err == nil {
		return nil
	}
	if !isNotFound(err) {
		return fmt.Errorf("blob: head bucket %s: %w", s.bucket, err)
	}
	_, err = s.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &s.bucket})
	var owned *types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		return fmt.Errorf("blob: create bucket %s: %w", s.bucket, err)
	}
	return nil
}

// Bucket returns the bucket the store writes to.
func (s *Store) Bucket() string { return s.bucket }

// Put stores what r yields under key and returns the number of bytes. The
// size need not be known: r is read part by part, and anything larger than
// one part goes up as a multipart upload, so memory stays bounded.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	return s.put(ctx, key, r)
}

// PutStreaming is Put of a body that is still being written (a running
// step's log): its parts are of MinPartSize whatever Config.PartSize says,
// so that an upload that lasts as long as its writer holds as little
// memory as S3 allows, (Concurrency+1) × 5 MiB.
func (s *Store) PutStreaming(ctx context.Context, key string, r io.Reader) (int64, error) {
	return s.put(ctx, key, r, func(o *transfermanager.Options) {
		o.PartSizeBytes, o.MultipartUploadThreshold = MinPartSize, MinPartSize
	})
}

func (s *Store) put(ctx context.Context, key string, r io.Reader, opts ...func(*transfermanager.Options)) (int64, error) {
	cr := &countingReader{r: r}
	_, err := s.tm.UploadObject(ctx, &transfermanager.UploadObjectInput{
		Bucket: &s.bucket,
		Key:    &key,
		Body:   cr,
	}, opts...)
	if err != nil {
		return 0, fmt.Errorf("put blob %s: %w", key, err)
	}
	return cr.n, nil
}

// Get opens the object for reading; the caller closes it. ErrNotFound if
// there is none.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	out, err := s.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return nil, fmt.Errorf("get blob %s: %w", key, notFound(err))
	}
	return out.Body, nil
}

// Head describes the object; ErrNotFound if there is none.
func (s *Store) Head(ctx context.Context, key string) (Info, error) {
	out, err := s.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return Info{}, fmt.Errorf("head blob %s: %w", key, notFound(err))
	}
	return Info{
		Key:          key,
		Size:         aws.ToInt64(out.ContentLength),
		ETag:         aws.ToString(out.ETag),
		LastModified: aws.ToTime(out.LastModified),
	}, nil
}

// List returns the objects whose key starts with prefix, in key order.
func (s *Store) List(ctx context.Context, prefix string) ([]Info, error) {
	var out []Info
	p := s3.NewListObjectsV2Paginator(s.s3, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list blobs %s*: %w", prefix, err)
		}
		for _, o := range page.Contents {
			out = append(out, Info{
				Key:          aws.ToString(o.Key),
				Size:         aws.ToInt64(o.Size),
				ETag:         aws.ToString(o.ETag),
				LastModified: aws.ToTime(o.LastModified),
			})
		}
	}
	return out, nil
}

// Delete removes the object; removing a missing object is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if _, err := s.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key}); err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("delete blob %s: %w", key, err)
	}
	return nil
}

// StepLogKey is where the log of one attempt of a step is kept.
func StepLogKey(runID string, attempt int, step string) string {
	return fmt.Sprintf("runs/%s/attempt-%d/%s.log", runID, attempt, step)
}

// ArtifactKey is where an artifact of a step is kept; p is its path relative
// to the workdir. It is cleaned so that it cannot climb out of the step's
// prefix.
func ArtifactKey(runID, step, p string) string {
	return ArtifactPrefix(runID) + step + "/" + strings.TrimPrefix(path.Clean("/"+p), "/")
}

// ArtifactPrefix is the prefix of every artifact key of a run.
func ArtifactPrefix(runID string) string { return "runs/" + runID + "/artifacts/" }

// WorkflowKey is where a workflow too large for a message is kept, by the
// hex SHA-256 of its JSON.
func WorkflowKey(sha256hex string) string {
	return "workflows/" + sha256hex + ".json"
}

// notFound turns the server's "no such key" into ErrNotFound.
func notFound(err error) error {
	if isNotFound(err) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

func isNotFound(err error) bool {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nsk) || errors.As(err, &nf) {
		return true
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return true
		}
	}
	// HEAD replies carry no body, hence no error code: only the status.
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound
}

// countingReader counts the bytes Put read. It also hides any Seek method of
// the caller's reader, so that the upload reads it once, front to back.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
