package contain

import (
	"fmt"
	"os/exec"
	"runtime"

	"golang.org/x/sys/unix"
)

// spawner starts a run's steps from one OS thread set up for them: in a
// network namespace of its own with only a loopback (network none), and,
// when runexec is real root, with an empty capability bounding set (a step
// then execs with no capability). A process inherits the namespaces and the
// bounding set of the thread that forks it, so the rest of runexec keeps
// its own. The thread stays locked for the life of the process, so a step's
// death signal (which fires when the forking thread exits) still means
// "runexec died": its goroutine is never stopped, by design.
type spawner struct {
	reqs chan spawnReq
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func newSpawner(netns, dropCaps bool) (*spawner, error) {
	sp := &spawner{reqs: make(chan spawnReq)}
	ready := make(chan error, 1)
	go func() {
		// Never unlocked: when this goroutine returns on an error, the
		// thread, changed half-way, is destroyed with it.
		runtime.LockOSThread()
		if netns {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				ready <- fmt.Errorf("unshare a network namespace: %w", err)
				return
			}
			if err := loopbackUp(); err != nil {
				ready <- err
				return
			}
		}
		if dropCaps {
			if err := dropBoundingSet(); err != nil {
				ready <- err
				return
			}
		}
		ready <- nil
		for r := range sp.reqs {
			r.done <- r.cmd.Start()
		}
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return sp, nil
}

func (sp *spawner) start(cmd *exec.Cmd) error {
	done := make(chan error, 1)
	sp.reqs <- spawnReq{cmd, done}
	return <-done
}

// dropBoundingSet empties the calling thread's capability bounding set and
// its ambient set: what it execs, even as uid 0, gets no capability.
func dropBoundingSet() error {
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && err != unix.EINVAL {
		return fmt.Errorf("clear the ambient capabilities: %w", err)
	}
	return nil
}

// loopbackUp brings up lo in the calling thread's network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback: socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback: get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback: up: %w", err)
	}
	return nil
}
