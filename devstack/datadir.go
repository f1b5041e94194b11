package devstack

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrDataDirInUse is returned by Start when another stack (in this process
// or another) holds Config.Dir: two NATS servers writing one JetStream
// store, or two FerretDBs one SQLite file, corrupt them.
var ErrDataDirInUse = errors.New("devstack: data dir in use")

// ErrAddrInUse is returned by Start when a port it must listen on is taken.
var ErrAddrInUse = errors.New("devstack: address in use")

// lockFile is the file in the data dir whose flock marks it as held; it
// holds the holder's pid, for the message a second stack gets.
const lockFile = "runnerd-dev.lock"

// lockDataDir creates dir if needed and takes its lock, or says which
// process holds it. The kernel drops the lock when the holder's file is
// closed or the holder dies, so a SIGKILLed stack leaves nothing to clean.
func lockDataDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("devstack: data dir: %w", err)
	}
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("devstack: lock data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := "another process"
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
					holder = "pid " + strconv.Itoa(pid)
				}
			}
			return nil, fmt.Errorf("%w: %s is held by %s (another runnerd dev on the same --data?)", ErrDataDirInUse, dir, holder)
		}
		return nil, fmt.Errorf("devstack: lock %s: %w", path, err)
	}
	// The pid is a hint for the message of the next instance: best effort.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// listen binds addr for server, saying plainly when the port is taken.
func listen(server, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("%w: address %s in use (%s)", ErrAddrInUse, addr, server)
	}
	if err != nil {
		return nil, fmt.Errorf("devstack: %s: listen on %s: %w", server, addr, err)
	}
	return ln, nil
}

// probePort checks that addr can be bound, and frees it again for a
// server that binds it itself (NATS).
func probePort(server, addr string) error {
	ln, err := listen(server, addr)
	if err != nil {
		return err
	}
	return ln.Close()
}
