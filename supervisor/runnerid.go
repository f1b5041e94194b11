package supervisor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrRunnerIDInUse means another runnerd on this machine holds the runner id.
var ErrRunnerIDInUse = errors.New("runner id in use by another runnerd on this machine")

// A runner id owns machine-wide things: its run dirs, its cgroups, and the
// sweep of both at start. Two processes with one id would kill each other's
// runs, so an id is held with an exclusive lock for the process's life.
func lockDir() string { return filepath.Join(os.TempDir(), "runnerd-locks") }

// lockRunnerID takes the lock of id; the file records the holder's pid.
func lockRunnerID(id string) (*os.File, error) {
	path := filepath.Join(lockDir(), id+".lock")
	for {
		if err := os.MkdirAll(lockDir(), 0o755); err != nil {
			return nil, fmt.Errorf("lock runner id %s: %w", id, err)
		}
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if errors.Is(err, os.ErrNotExist) {
			continue // the last holder removed the directory in between
		}
		if err != nil {
			return nil, fmt.Errorf("lock runner id %s: %w", id, err)
		}
		err = flockSoon(f)
		if errors.Is(err, unix.EWOULDBLOCK) && !atPath(f, path) {
			f.Close()
			continue // swept as stale while we waited: open again
		}
		if err != nil {
			holder, _ := os.ReadFile(path)
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("runner id %q (pid %s): %w; give each runnerd its own --runner-id", id, holder, ErrRunnerIDInUse)
			}
			return nil, fmt.Errorf("lock runner id %s: %w", id, err)
		}
		// The holder removes the file before it lets go (unlockRunnerID,
		// removeStaleLocks): a lock taken on a file no longer at path locks
		// nothing; open again.
		if atPath(f, path) {
			_ = f.Truncate(0)
			_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())), 0)
			return f, nil
		}
		f.Close()
	}
}

// flockSoon takes f's exclusive lock without blocking, trying again for a
// moment: removeStaleLocks holds a free lock only long enough to unlink its
// file, and a runner starting under that id must not take it for a holder.
func flockSoon(f *os.File) error {
	var err error
	for range 20 {
		if err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
	return err
}

// atPath reports whether the open file f is still the file at path.
func atPath(f *os.File, path string) bool {
	var held, now unix.Stat_t
	return unix.Fstat(int(f.Fd()), &held) == nil && unix.Stat(path, &now) == nil && held.Ino == now.Ino && held.Dev == now.Dev
}

// removeStaleLocks removes the lock files no process holds but own's: a
// runnerd that was SIGKILLed cannot remove its own. Each is locked first,
// without waiting, so a held one is left alone, and unlinked while locked,
// as its holder would: a runner that opened it meanwhile finds it gone once
// it holds the lock, and opens it again.
func removeStaleLocks(own string) {
	entries, err := os.ReadDir(lockDir())
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".lock") || name == own+".lock" {
			continue
		}
		path := filepath.Join(lockDir(), name)
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			continue // gone, or another user's
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil && atPath(f, path) {
			_ = os.Remove(path)
		}
		f.Close()
	}
}

// unlockRunnerID removes the lock file while it still holds the lock, then
// lets go: no lock file is left behind, and a process that opened it just
// before finds it gone once it holds the lock, and opens it again. Stale
// files of other ids go too, so the directory goes with the last runner.
func unlockRunnerID(f *os.File) error {
	removeStaleLocks(strings.TrimSuffix(filepath.Base(f.Name()), ".lock"))
	_ = os.Remove(f.Name())
	_ = os.Remove(lockDir()) // when it was the last one
	return f.Close()
}

// claimRunnerID locks id or, when fallback is set (the id was not chosen by
// the user), the first free of id-2 … id-9: `runnerd dev` and a `runnerd
// serve` beside it on one machine then just work. A restarted process gets
// the same id back and sweeps what its crashed predecessor left.
func claimRunnerID(id string, fallback bool) (*os.File, string, error) {
	f, err := lockRunnerID(id)
	if err == nil || !fallback || !errors.Is(err, ErrRunnerIDInUse) {
		if err == nil {
			removeStaleLocks(id)
		}
		return f, id, err
	}
	for n := 2; n <= 9; n++ {
		alt := id + "-" + strconv.Itoa(n)
		if f, err := lockRunnerID(alt); err == nil {
			removeStaleLocks(alt)
			return f, alt, nil
		}
	}
	return nil, "", err
}

var notIDChars = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// defaultRunnerID is the host name made a valid id (a pod's name in
// Kubernetes).
func defaultRunnerID() string {
	host, _ := os.Hostname()
	return runnerIDFromHost(host)
}

// runnerIDFromHost turns a host name into a runner id: the dots of a FQDN
// and anything else an id cannot hold become '-'.
func runnerIDFromHost(host string) string {
	id := notIDChars.ReplaceAllString(host, "-")
	if len(id) > 100 {
		id = id[:100]
	}
	if id == "" || id[0] == '-' || id[0] == '_' {
		id = "runnerd" + id
	}
	return id
}
