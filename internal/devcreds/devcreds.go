// Package devcreds is the credentials file of a runnerd dev stack: the
// addresses of its embedded servers and the secrets each requires, written
// by `runnerd dev` and read by the client commands. It is its own package so
// that a client reads the file without linking the embedded servers.
package devcreds

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// FileName is the file in the data dir holding the stack's secrets,
// generated at its first start and kept for the next ones, so clients
// configured once keep working across restarts.
const FileName = "credentials.json"

// Credentials are what a client needs to use a stack: its addresses (without
// credentials in them) and the secrets each server requires.
type Credentials struct {
	DataDir       string `json:"data_dir"`
	NATSURL       string `json:"nats_url"`
	NATSUser      string `json:"nats_user"`
	NATSPassword  string `json:"nats_password"`
	MongoURI      string `json:"mongo_uri"`
	MongoUser     string `json:"mongo_user"`
	MongoPassword string `json:"mongo_password"`
	S3Endpoint    string `json:"s3_endpoint"`
	S3Bucket      string `json:"s3_bucket"`
	S3Region      string `json:"s3_region"`
	S3AccessKey   string `json:"s3_access_key"`
	S3SecretKey   string `json:"s3_secret_key"`
}

// Complete reports whether c has every secret.
func (c Credentials) Complete() bool {
	return c.NATSUser != "" && c.NATSPassword != "" && c.MongoUser != "" && c.MongoPassword != "" &&
		c.S3AccessKey != "" && c.S3SecretKey != ""
}

// Read reads a credentials file written by Write.
func Read(path string) (Credentials, error) {
	var c Credentials
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("credentials file %s: %w", path, err)
	}
	return c, nil
}

// Write writes c to path, readable by its owner only, creating
// the directory (0700) if needed. The file is replaced atomically, so a
// reader never sees half of it.
func Write(path string, c Credentials) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	// CreateTemp makes the file 0600.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".credentials-*")
	if err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	_, err = tmp.Write(append(b, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write credentials %s: %w", path, err)
	}
	return nil
}
