package contain

import (
	"bytes"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/runnerd/runnerd/internal/procfs"
)

// BecomeSubreaper makes the calling process the child subreaper of its
// descendants: a process that leaves its process group (setsid, double
// fork) and loses its parent is reparented here instead of to init, where a
// sweep finds and kills it.
func BecomeSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// IsSubreaper reports whether this process is a child subreaper. The init
// of a PID namespace is one without asking: orphans of the namespace are
// reparented to it.
func IsSubreaper() bool {
	if os.Getpid() == 1 {
		return true
	}
	var v int32
	err := unix.Prctl(unix.PR_GET_CHILD_SUBREAPER, uintptr(unsafe.Pointer(&v)), 0, 0, 0)
	return err == nil && v != 0
}

// Reaper knows which children of this process are the main processes of
// running tasks (a workflow's steps), and kills the others: in a subreaper
// they are orphans that escaped a task's process group. Starting a task
// holds the same lock as a sweep, so a task's process is never mistaken for
// an orphan between fork and registration.
//
// An orphan whose environment has TagEnv=<tag> of a task still running is
// spared: the task may still use what it daemonized, and the sweep when it
// ends takes it.
type Reaper struct {
	TagEnv string // the variable naming a process's task, e.g. RUNEXEC_STEP

	mu      sync.Mutex
	enabled bool
	self    int
	pids    map[int]bool   // main processes of running tasks
	running map[string]int // task tag -> running processes
}

// NewReaper returns a reaper; it sweeps only in a subreaper.
func NewReaper(tagEnv string) *Reaper {
	return &Reaper{TagEnv: tagEnv, enabled: IsSubreaper(), self: os.Getpid(), pids: map[int]bool{}, running: map[string]int{}}
}

// Start starts cmd as the main process of the task tag, with start (nil:
// cmd.Start) under the reaper's lock.
func (rp *Reaper) Start(tag string, cmd *exec.Cmd, start func(*exec.Cmd) error) error {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if start == nil {
		start = (*exec.Cmd).Start
	}
	if err := start(cmd); err != nil {
		return err
	}
	rp.pids[cmd.Process.Pid] = true
	rp.running[tag]++
	return nil
}

// Exited records that the main process pid of task tag has exited.
func (rp *Reaper) Exited(tag string, pid int) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	delete(rp.pids, pid)
	if rp.running[tag]--; rp.running[tag] <= 0 {
		delete(rp.running, tag)
	}
}

// Sweep kills (and reaps) every child of this process that is not a task's
// main process nor tagged with a running task. Killing an orphan reparents
// its own children here, so it repeats a few rounds.
func (rp *Reaper) Sweep() {
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

func (rp *Reaper) killOrphans() []int {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	var killed []int
	for _, pid := range procfs.Orphans() {
		if rp.pids[pid] {
			continue
		}
		st, ok := procfs.Stat(pid)
		if !ok || st.PPID != rp.self {
			continue
		}
		if tag := procEnv(pid, rp.TagEnv); tag != "" && rp.running[tag] > 0 {
			continue
		}
		if st.PGID == pid {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		killed = append(killed, pid)
	}
	return killed
}

// reap collects the exit status of killed orphans so they do not stay
// zombies, waiting at most limit (a process in uninterruptible sleep may
// take its time; its zombie is collected by a later sweep). It polls with
// WNOHANG rather than blocking in wait4, so nothing is left waiting on a
// process after it returns.
func reap(pids []int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	left := slices.Clone(pids)
	for pause := 100 * time.Microsecond; ; pause = min(2*pause, 5*time.Millisecond) {
		left = slices.DeleteFunc(left, func(pid int) bool {
			var ws syscall.WaitStatus
			got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
			return got == pid || (err != nil && err != syscall.EINTR) // reaped, or not ours to reap
		})
		if len(left) == 0 || time.Now().After(deadline) {
			return
		}
		time.Sleep(pause)
	}
}

// procEnv returns the variable name from the environment pid was started
// with ("" if absent or unreadable).
func procEnv(pid int, name string) string {
	if name == "" {
		return ""
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return ""
	}
	for kv := range bytes.SplitSeq(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte(name+"=")); ok {
			return string(v)
		}
	}
	return ""
}

// orphanReaper is the process's one sweep of reparented zombies, shared by
// every caller of ReapOrphans and running while one of them has not stopped.
var orphanReaper struct {
	mu    sync.Mutex
	users int
	stop  chan struct{} // closed to end the sweep
	done  chan struct{} // closed when it ended
}

// ReapOrphans makes this process a child subreaper and, in the background,
// reaps the zombies of orphans reparented to it every 500 ms, leaving alone
// the children for which own is true (processes it started and waits for
// itself: waiting on any pid would steal their exit statuses from os/exec).
// The sweep runs until every caller has called its stop, which waits for it
// to end; own must be the same function for every caller.
func ReapOrphans(own func(pid int) bool) (stop func(), err error) {
	if err := BecomeSubreaper(); err != nil {
		return func() {}, err
	}
	r := &orphanReaper
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.users == 0 {
		r.stop, r.done = make(chan struct{}), make(chan struct{})
		go sweepZombies(own, r.stop, r.done)
	}
	r.users++
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.users--; r.users == 0 {
				close(r.stop)
				<-r.done
			}
		})
	}, nil
}

func sweepZombies(own func(pid int) bool, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		for _, pid := range procfs.Orphans() {
			if own(pid) {
				continue
			}
			if st, ok := procfs.Stat(pid); !ok || st.State != 'Z' || st.PPID != os.Getpid() {
				continue
			}
			var ws unix.WaitStatus
			_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		}
	}
}
