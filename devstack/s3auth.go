package devstack

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// sigV4 admits only requests signed with AWS Signature Version 4 by the one
// key pair it knows, and hands them to next (gofakes3, which checks no
// signature). It does not compute signatures itself: it rebuilds the
// request from what the client says it signed and has the AWS SDK's own
// signer sign it again with the secret, then compares the two. A declared
// payload hash is checked against the body before next sees it.
//
// Presigned URLs and chunk-signed (aws-chunked) bodies are refused: runnerd
// sends neither.
type sigV4 struct {
	accessKey, secretKey string
	next                 http.Handler
	signer               *v4.Signer
	now                  func() time.Time
}

// maxClockSkew is how far a request's X-Amz-Date may be from the server's
// clock, as on AWS; it bounds how long a captured request can be replayed.
const maxClockSkew = 15 * time.Minute

// maxBufferedBody is the largest body held in memory to check its hash
// before the object is written; a larger one is checked as it streams
// (runnerd's uploads are parts of at most a few MiB).
const maxBufferedBody = 64 << 20

const (
	unsignedPayload = "UNSIGNED-PAYLOAD"
	amzDateFormat   = "20060102T150405Z"
)

func newSigV4(accessKey, secretKey string, next http.Handler) *sigV4 {
	return &sigV4{
		accessKey: accessKey, secretKey: secretKey, next: next,
		signer: v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }),
		now:    time.Now,
	}
}

// s3Error is an S3 error reply; clients read its Code.
type s3Error struct {
	status  int
	Code    string
	Message string
}

func (e *s3Error) Error() string { return e.Code + ": " + e.Message }

func (v *sigV4) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := v.verify(r); err != nil {
		var se *s3Error
		if !errors.As(err, &se) {
			se = &s3Error{status: http.StatusForbidden, Code: "AccessDenied", Message: err.Error()}
		}
		writeS3Error(w, r, se)
		return
	}
	v.next.ServeHTTP(w, r)
}

func writeS3Error(w http.ResponseWriter, r *http.Request, e *s3Error) {
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(e.status)
	if r.Method == http.MethodHead {
		return // a HEAD reply has no body; clients read the status
	}
	_ = xml.NewEncoder(w).Encode(struct {
		XMLName   xml.Name `xml:"Error"`
		Code      string
		Message   string
		Resource  string
		RequestID string `xml:"RequestId"`
	}{Code: e.Code, Message: e.Message, Resource: r.URL.Path, RequestID: hex.EncodeToString(id)})
}

func denied(code, format string, args ...any) error {
	status := http.StatusForbidden
	switch code {
	case "AuthorizationHeaderMalformed", "InvalidRequest", "XAmzContentSHA256Mismatch", "IncompleteBody":
		status = http.StatusBadRequest
	case "NotImplemented":
		status = http.StatusNotImplemented
	}
	return &s3Error{status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// authHeader is the parsed Authorization header of a signed request.
type authHeader struct {
	accessKey, date, region, service string
	signedHeaders                    []string
	signature                        string
}

func parseAuthorization(h string) (authHeader, error) {
	var a authHeader
	rest, ok := strings.CutPrefix(h, "AWS4-HMAC-SHA256 ")
	if !ok {
		return a, denied("AccessDenied", "want an AWS4-HMAC-SHA256 signature (Signature Version 4)")
	}
	for _, part := range strings.Split(rest, ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Credential":
			f := strings.Split(val, "/")
			if len(f) != 5 || f[4] != "aws4_request" {
				return a, denied("AuthorizationHeaderMalformed", "credential %q: want KEY/DATE/REGION/SERVICE/aws4_request", val)
			}
			a.accessKey, a.date, a.region, a.service = f[0], f[1], f[2], f[3]
		case "SignedHeaders":
			a.signedHeaders = strings.Split(val, ";")
		case "Signature":
			a.signature = val
		}
	}
	if a.accessKey == "" || len(a.signedHeaders) == 0 || a.signature == "" {
		return a, denied("AuthorizationHeaderMalformed", "want Credential, SignedHeaders and Signature")
	}
	return a, nil
}

func (v *sigV4) verify(r *http.Request) error {
	if r.URL.Query().Has("X-Amz-Signature") {
		return denied("NotImplemented", "presigned URLs are not supported by this server")
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return denied("AccessDenied", "anonymous requests are refused: sign them with the stack's S3 keys")
	}
	a, err := parseAuthorization(h)
	if err != nil {
		return err
	}
	if a.accessKey != v.accessKey {
		return denied("InvalidAccessKeyId", "the access key id %q is not known here", a.accessKey)
	}
	if a.service != "s3" {
		return denied("AuthorizationHeaderMalformed", "credential service %q: want s3", a.service)
	}
	at, err := time.Parse(amzDateFormat, r.Header.Get("X-Amz-Date"))
	if err != nil {
		return denied("AccessDenied", "X-Amz-Date %q: want %s", r.Header.Get("X-Amz-Date"), amzDateFormat)
	}
	if at.Format("20060102") != a.date {
		return denied("AuthorizationHeaderMalformed", "credential date %s is not the day of X-Amz-Date %s", a.date, at.Format(amzDateFormat))
	}
	if skew := v.now().Sub(at); skew > maxClockSkew || skew < -maxClockSkew {
		return denied("RequestTimeTooSkewed", "X-Amz-Date %s is %s from the server's time", at.Format(amzDateFormat), skew.Round(time.Second))
	}
	payload := r.Header.Get("X-Amz-Content-Sha256")
	switch {
	case payload == unsignedPayload:
	case strings.HasPrefix(payload, "STREAMING-"):
		return denied("NotImplemented", "x-amz-content-sha256 %s (aws-chunked bodies) is not supported by this server", payload)
	case len(payload) != 64:
		return denied("InvalidRequest", "x-amz-content-sha256 %q: want the body's hex SHA-256 or UNSIGNED-PAYLOAD", payload)
	}
	if !slices.Contains(a.signedHeaders, "host") || !slices.Contains(a.signedHeaders, "x-amz-date") || !slices.Contains(a.signedHeaders, "x-amz-content-sha256") {
		return denied("AccessDenied", "host, x-amz-date and x-amz-content-sha256 must be signed")
	}

	want, err := v.sign(r, a, payload, at)
	if err != nil {
		return err
	}
	if !hmac.Equal([]byte(want), []byte(a.signature)) {
		return denied("SignatureDoesNotMatch", "the request signature does not match the one computed with the key's secret")
	}
	if payload != unsignedPayload {
		return checkBody(r, payload)
	}
	return nil
}

// sign signs, with the secret, a request holding only what r's client
// signed, and returns the signature.
func (v *sigV4) sign(r *http.Request, a authHeader, payload string, at time.Time) (string, error) {
	u, err := url.ParseRequestURI(r.RequestURI)
	if err != nil {
		return "", denied("InvalidRequest", "request URI %q: %v", r.RequestURI, err)
	}
	u.Scheme, u.Host = "http", r.Host
	req := &http.Request{Method: r.Method, URL: u, Host: r.Host, Header: http.Header{}}
	for _, name := range a.signedHeaders {
		switch name {
		case "host":
		case "content-length":
			req.ContentLength = r.ContentLength
		default:
			vals := r.Header.Values(name)
			if len(vals) == 0 {
				return "", denied("AccessDenied", "signed header %q is not in the request", name)
			}
			req.Header[http.CanonicalHeaderKey(name)] = vals
		}
	}
	creds := aws.Credentials{AccessKeyID: v.accessKey, SecretAccessKey: v.secretKey}
	if err := v.signer.SignHTTP(context.Background(), creds, req, payload, a.service, a.region, at); err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	ours, err := parseAuthorization(req.Header.Get("Authorization"))
	if err != nil {
		return "", err
	}
	// The SDK signs a fixed set of what a request holds; a client that
	// signed something else (or less) cannot be checked this way.
	if strings.Join(ours.signedHeaders, ";") != strings.Join(a.signedHeaders, ";") {
		return "", denied("SignatureDoesNotMatch", "signed headers %s: this server checks %s",
			strings.Join(a.signedHeaders, ";"), strings.Join(ours.signedHeaders, ";"))
	}
	return ours.signature, nil
}

// checkBody makes r.Body yield the body only if its SHA-256 is declared;
// up to maxBufferedBody it is checked before the handler reads anything.
func checkBody(r *http.Request, declared string) error {
	if r.ContentLength >= 0 && r.ContentLength <= maxBufferedBody {
		b, err := io.ReadAll(io.LimitReader(r.Body, r.ContentLength+1))
		if err != nil {
			return denied("IncompleteBody", "read the body: %v", err)
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != declared {
			return denied("XAmzContentSHA256Mismatch", "the body's SHA-256 is not the declared x-amz-content-sha256")
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		return nil
	}
	r.Body = &hashCheckReader{r: r.Body, h: sha256.New(), want: declared}
	return nil
}

// hashCheckReader fails the read that reaches the end of a body whose
// SHA-256 is not the declared one.
type hashCheckReader struct {
	r    io.ReadCloser
	h    hash.Hash
	want string
}

func (c *hashCheckReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	if errors.Is(err, io.EOF) && hex.EncodeToString(c.h.Sum(nil)) != c.want {
		return n, errors.New("x-amz-content-sha256 mismatch")
	}
	return n, err
}

func (c *hashCheckReader) Close() error { return c.r.Close() }
