package runnerd

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"
)

// NewRunID returns an id that sorts by creation time and is unique without
// coordination: UTC time to the millisecond, then 48 random bits.
// Lower-case, so it reads the same in S3 keys, subjects and file names.
func NewRunID() string {
	t := time.Now().UTC()
	b := make([]byte, 6)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return fmt.Sprintf("%s%03d-%s", t.Format("20060102-150405-"), t.Nanosecond()/1e6, hex.EncodeToString(b))
}
