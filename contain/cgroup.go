package contain

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Cgroup confines one child and everything it forks: a memory limit, a pids
// limit (fork bombs), an OOM counter to tell child_oom from other deaths, and
// a kill that reaches processes that left the child's process group (setsid,
// double fork). cgroup v2 is used where its controllers are enabled; else the
// v1 memory and pids hierarchies. Where neither is writable the child runs
// without one, and containment falls back to process groups and rlimits.
type Cgroup struct {
	// mem and pids are the cgroup's directories for the memory and the pids
	// controller: on v2 one directory (both the same), on v1 one per
	// hierarchy, either "" where that hierarchy is not writable.
	mem, pids string
	v2        bool
}

// dirs lists the cgroup's distinct directories.
func (cg *Cgroup) dirs() []string {
	switch {
	case cg.mem == cg.pids || cg.pids == "":
		return []string{cg.mem}
	case cg.mem == "":
		return []string{cg.pids}
	}
	return []string{cg.mem, cg.pids}
}

// Roots finds where this process's cgroups live: the cgroup v2 directory
// when its memory controller is enabled, else the v1 memory and pids
// directories ("" for each one that is not there).
func Roots() (v2 string, v1mem, v1pids string) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", "", ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			dir := filepath.Join("/sys/fs/cgroup", parts[2])
			if ctrl, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil && strings.Contains(string(ctrl), "memory") {
				v2 = dir
			}
		case parts[1] == "memory":
			v1mem = filepath.Join("/sys/fs/cgroup/memory", parts[2])
		case parts[1] == "pids":
			v1pids = filepath.Join("/sys/fs/cgroup/pids", parts[2])
		}
	}
	return v2, v1mem, v1pids
}

// NewCgroup makes the cgroup of one run under this process's own cgroups,
// at the relative path name. memLimit and pidsLimit of 0 mean no limit.
func NewCgroup(name string, memLimit int64, pidsLimit int) (*Cgroup, error) {
	v2, v1mem, v1pids := Roots()
	if v2 != "" {
		dir := filepath.Join(v2, name)
		if err := os.MkdirAll(dir, 0o755); err == nil {
			cg := &Cgroup{mem: dir, pids: dir, v2: true}
			if err := cg.limit(memLimit, pidsLimit); err != nil {
				cg.Remove()
				return nil, err
			}
			return cg, nil
		}
	}
	v1dir := func(root string) string {
		if root == "" {
			return ""
		}
		dir := filepath.Join(root, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return ""
		}
		return dir
	}
	cg := &Cgroup{mem: v1dir(v1mem), pids: v1dir(v1pids)}
	if cg.mem == "" && cg.pids == "" {
		return nil, errors.New("no writable cgroup hierarchy")
	}
	if err := cg.limit(memLimit, pidsLimit); err != nil {
		cg.Remove()
		return nil, err
	}
	return cg, nil
}

func (cg *Cgroup) limit(memLimit int64, pidsLimit int) error {
	write := func(dir, file, value string) error {
		if dir == "" {
			return nil
		}
		if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0o644); err != nil {
			return fmt.Errorf("cgroup %s: %w", file, err)
		}
		return nil
	}
	memDir, pidsDir, memFile := cg.mem, cg.pids, "memory.limit_in_bytes"
	if cg.v2 {
		memFile = "memory.max"
		// Without swap off, a hog pages out instead of being OOM-killed.
		_ = write(memDir, "memory.swap.max", "0")
	} else {
		_ = write(memDir, "memory.swappiness", "0")
	}
	if memLimit > 0 {
		if err := write(memDir, memFile, strconv.FormatInt(memLimit, 10)); err != nil {
			return err
		}
	}
	if pidsLimit > 0 {
		if err := write(pidsDir, "pids.max", strconv.Itoa(pidsLimit)); err != nil {
			return err
		}
	}
	return nil
}

// Add moves a process into the cgroup; its later children are born there.
func (cg *Cgroup) Add(pid int) error {
	for _, dir := range cg.dirs() {
		if dir == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			return fmt.Errorf("move pid %d into cgroup %s: %w", pid, dir, err)
		}
	}
	return nil
}

// Discard kills what is in a cgroup and removes it; a nil cgroup is none.
func (cg *Cgroup) Discard() {
	if cg != nil {
		cg.Kill()
		cg.Remove()
	}
}

// OOMKills is how many processes the kernel killed for the memory limit.
func (cg *Cgroup) OOMKills() int {
	if cg.mem == "" {
		return 0
	}
	file := filepath.Join(cg.mem, "memory.oom_control")
	if cg.v2 {
		file = filepath.Join(cg.mem, "memory.events")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// Procs lists the processes still in the cgroup.
func (cg *Cgroup) Procs() []int {
	var pids []int
	seen := map[int]bool{}
	for _, dir := range cg.dirs() {
		if dir == "" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
				seen[pid] = true
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// Kill SIGKILLs every process in the cgroup, including those that escaped
// the process group, and waits (briefly) until it is empty. It polls: a v1
// cgroup sends no event when it empties, and processes forked meanwhile
// need the signal again; no context, since a stop must not leave the
// cgroup half-killed, and 5 s bounds it.
func (cg *Cgroup) Kill() {
	if cg.v2 {
		_ = os.WriteFile(filepath.Join(cg.mem, "cgroup.kill"), []byte("1"), 0o644)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := cg.Procs()
		if len(pids) == 0 || time.Now().After(deadline) {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Remove deletes the cgroup; it must be empty (call Kill first).
func (cg *Cgroup) Remove() {
	for _, dir := range cg.dirs() {
		if dir != "" {
			_ = os.Remove(dir)
		}
	}
}

// SweepCgroups kills and removes the cgroups left under parent (a relative
// path, as given to NewCgroup) by a crashed predecessor.
func SweepCgroups(parent string) {
	v2, mem, pids := Roots()
	for _, root := range []string{v2, mem, pids} {
		if root == "" {
			continue
		}
		dir := filepath.Join(root, parent)
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			cg := &Cgroup{mem: filepath.Join(dir, e.Name()), v2: root == v2}
			switch root {
			case v2:
				cg.pids = cg.mem
			case pids:
				cg.mem, cg.pids = "", cg.mem
			}
			cg.Kill()
			cg.Remove()
		}
	}
}
