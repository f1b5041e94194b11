// Package procfs reads the few facts about processes that runnerd and
// runexec need from /proc: their children, and a process's state, parent
// and process group. Both are child subreapers and use it to find orphans.
package procfs

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Children lists the children of this process from
// /proc/self/task/*/children: a read per thread instead of a read per
// process on the machine. Without that file (CONFIG_PROC_CHILDREN off)
// every process is listed, and callers filter with Stat.
func Children() []int {
	var pids []int
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	for _, f := range tasks {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, field := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(field); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	if len(tasks) > 0 {
		return pids
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Orphans lists the children of this process's main thread. In a child
// subreaper that is where the kernel reparents orphaned descendants (to the
// first live thread of the process, the thread group leader), so a sweep for
// orphans reads one file whatever the number of threads; children forked
// by other threads are not listed. Without the file, as Children.
func Orphans() []int {
	data, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(os.Getpid()) + "/children")
	if err != nil {
		return Children()
	}
	var pids []int
	for _, field := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(field); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// ProcStat is what Stat reads of /proc/<pid>/stat.
type ProcStat struct {
	State byte // 'R', 'S', 'Z', ...
	PPID  int
	PGID  int
}

// Stat reads a process's state, parent and process group. The command name
// may hold spaces and parentheses, so fields are counted from the last ')'.
func Stat(pid int) (ProcStat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ProcStat{}, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ProcStat{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 || len(f[0]) != 1 {
		return ProcStat{}, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	pgid, err2 := strconv.Atoi(f[2])
	return ProcStat{State: f[0][0], PPID: ppid, PGID: pgid}, err1 == nil && err2 == nil
}
