package testutil

import (
	"bytes"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// Goroutines is the set of the goroutines that exist now, by id: what
// NoGoroutineLeft compares with.
func Goroutines() map[int]bool {
	ids := map[int]bool{}
	for _, g := range stacks() {
		ids[goroutineID(g)] = true
	}
	return ids
}

// envGoroutines are the goroutines of a test's world: other tests, the
// connections its clients and servers keep (the store's and S3's pools and
// the embedded servers' sides of them) and devstack's own. A stack that
// holds one of these and no frame of runnerd's code outside devstack is
// not the tested code's.
var envGoroutines = []string{
	"testing.tRunner",
	"net/http.(*persistConn)", "created by net/http.(*Server).Serve",
	"go.mongodb.org/mongo-driver/", "FerretDB/FerretDB/internal/",
	"github.com/nats-io/nats-server/", devstackFrame,
}

const devstackFrame = "runnerd/runnerd/devstack."

// NoGoroutineLeft fails t unless, within timeout, every goroutine that was
// not in before has ended, but the test's own (a stack that names
// testName) and its world's (envGoroutines). It prints the stacks of those
// left.
func NoGoroutineLeft(t testing.TB, timeout time.Duration, before map[int]bool, testName string) {
	t.Helper()
	var left []string
	if Wait(timeout, func() bool {
		left = goroutinesSince(before, testName)
		return len(left) == 0
	}) {
		return
	}
	t.Fatalf("%d goroutines left behind:\n\n%s", len(left), strings.Join(left, "\n\n"))
}

func goroutinesSince(before map[int]bool, testName string) []string {
	var left []string
	for _, g := range stacks() {
		if before[goroutineID(g)] || strings.Contains(g, testName) {
			continue
		}
		ours := slices.ContainsFunc(strings.Split(g, "\n"), func(line string) bool {
			return strings.Contains(line, "github.com/runnerd/runnerd/") && !strings.Contains(line, devstackFrame)
		})
		if !ours && slices.ContainsFunc(envGoroutines, func(k string) bool { return strings.Contains(g, k) }) {
			continue
		}
		left = append(left, g)
	}
	return left
}

// stacks are the stacks of every goroutine, one string each.
func stacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var gs []string
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		gs = append(gs, string(g))
	}
	return gs
}

// goroutineID is the id in a stack's first line ("goroutine 12 [running]:").
func goroutineID(stack string) int {
	var id int
	if _, err := fmt.Sscanf(stack, "goroutine %d ", &id); err != nil {
		return -1
	}
	return id
}
