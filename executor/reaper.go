package executor

import (
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/runnerd/runnerd/internal/procfs"
)

// BecomeSubreaper makes the calling process the child subreaper of its
// descendants: a step's grandchild that leaves its process group (setsid,
// double fork) is reparented here instead of to init, where Run finds and
// kills it. runexec calls it once at start.
func BecomeSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

func isSubreaper() bool {
	var v int32
	err := unix.Prctl(unix.PR_GET_CHILD_SUBREAPER, uintptr(unsafe.Pointer(&v)), 0, 0, 0)
	return err == nil && v != 0
}

// reaper knows which children of this process are step processes, and
// kills the others: in a subreaper they are orphans that escaped a step's
// process group. Starting a step holds the same lock as a sweep, so a step
// process is never mistaken for an orphan between fork and registration.
type reaper struct {
	mu      sync.Mutex
	enabled bool
	self    int
	pids    map[int]bool   // main processes of running steps
	running map[string]int // step id -> running processes
}

func newReaper() *reaper {
	return &reaper{enabled: isSubreaper(), self: os.Getpid(), pids: map[int]bool{}, running: map[string]int{}}
}

func (rp *reaper) start(step string, cmd *exec.Cmd) error {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	rp.pids[cmd.Process.Pid] = true
	rp.running[step]++
	return nil
}

func (rp *reaper) exited(step string, pid int) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	delete(rp.pids, pid)
	if rp.running[step]--; rp.running[step] <= 0 {
		delete(rp.running, step)
	}
}

// sweep kills (and reaps) every child of this process that is not a step's
// main process, sparing orphans whose environment names a step that is
// still running: such a step may still use what it daemonized, and the
// sweep when it ends takes them. Killing an orphan reparents its own
// children here, so it repeats a few rounds.
func (rp *reaper) sweep() {
	if !rp.enabled {
		return
	}
	for range 5 {
		killed := rp.killOrphans()
		if len(killed) == 0 {
			return
		}
		reap(killed, time.Second)
	}
}

func (rp *reaper) killOrphans() []int {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	var killed []int
	for _, pid := range procfs.Orphans() {
		if rp.pids[pid] {
			continue
		}
		st, ok := procfs.Stat(pid)
		ppid, pgid := st.PPID, st.PGID
		if !ok || ppid != rp.self {
			continue
		}
		if step := procStep(pid); step != "" && rp.running[step] > 0 {
			continue
		}
		if pgid == pid {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		killed = append(killed, pid)
	}
	return killed
}

// reap collects the exit status of killed orphans so they do not stay
// zombies, waiting at most limit (a process in uninterruptible sleep may
// take its time; its zombie is collected by a later sweep).
func reap(pids []int, limit time.Duration) {
	var wg sync.WaitGroup
	for _, pid := range pids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ws syscall.WaitStatus
			for {
				_, err := syscall.Wait4(pid, &ws, 0, nil)
				if err != syscall.EINTR {
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(limit):
	}
}

// procStep returns RUNEXEC_STEP from the environment pid was started with.
func procStep(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return ""
	}
	for kv := range bytes.SplitSeq(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("RUNEXEC_STEP=")); ok {
			return string(v)
		}
	}
	return ""
}
