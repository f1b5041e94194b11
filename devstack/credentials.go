package devstack

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"

	"github.com/runnerd/runnerd/internal/devcreds"
)

// CredentialsFile is the file in the data dir holding the stack's secrets,
// generated at its first start and kept for the next ones.
const CredentialsFile = devcreds.FileName

// Credentials are what a client needs to use a stack (devcreds.Credentials).
type Credentials = devcreds.Credentials

// ReadCredentials reads a credentials file written by WriteCredentials.
func ReadCredentials(path string) (Credentials, error) { return devcreds.Read(path) }

// WriteCredentials writes c to path, readable by its owner only, atomically.
func WriteCredentials(path string, c Credentials) error { return devcreds.Write(path, c) }

// devUser is the one user of every embedded server.
const devUser = "runnerd"

// loadOrCreateSecrets reads dir's credentials file, or makes new secrets
// when there is none (or it lacks one).
func loadOrCreateSecrets(dir string) (Credentials, error) {
	path := filepath.Join(dir, CredentialsFile)
	c, err := ReadCredentials(path)
	if err == nil && c.Complete() {
		return c, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return Credentials{}, err
	}
	c = Credentials{
		NATSUser: devUser, NATSPassword: randomHex(16),
		MongoUser: devUser, MongoPassword: randomHex(16),
		S3AccessKey: "RD" + randomHex(9), S3SecretKey: randomHex(20),
	}
	return c, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}
