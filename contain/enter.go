package contain

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// FromEnv reads the sandbox runnerd gave this runexec; the zero Sandbox
// when there is none.
func FromEnv(getenv func(string) string) (*Sandbox, error) {
	sb := &Sandbox{}
	v := getenv(envSandbox)
	if v == "" {
		return sb, nil
	}
	if err := json.Unmarshal([]byte(v), sb); err != nil {
		return nil, fmt.Errorf("%s: %w", envSandbox, err)
	}
	return sb, nil
}

// Enter is what runexec does first when started in the sandbox's PID and
// mount namespaces: it mounts a /proc of its namespace over the host's (the
// steps see only the run's processes, and nothing of runnerd's) and a
// private tmpfs on /dev/shm.
func (sb *Sandbox) Enter() error {
	if !sb.PIDNS {
		return nil
	}
	if os.Getpid() != 1 {
		return fmt.Errorf("sandbox: runexec is pid %d, not the init of a PID namespace", os.Getpid())
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("sandbox: mount a private /proc: %w", err)
	}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if err := unix.Mount("tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777,size=256m"); err != nil {
			return fmt.Errorf("sandbox: mount a private /dev/shm: %w", err)
		}
	}
	return nil
}

// RunPaths are the directories of one run, read-write for its steps.
type RunPaths struct {
	Workdir, LogDir, Home, Tmp string
}

func (p RunPaths) dirs() []string {
	var out []string
	for _, d := range []string{p.Workdir, p.LogDir, p.Home, p.Tmp} {
		if d != "" {
			out = append(out, d)
		}
	}
	return out
}

// Restrict confines this process and everything it starts afterwards to
// the run: Landlock on the paths, signals and abstract sockets, for network
// none a network namespace (else Landlock's TCP rules), and as real root no
// capability for the steps. It returns
// how steps must be started (nil: exec.Cmd.Start). Call it once, before the
// first step, from the process that will start the steps.
func (sb *Sandbox) Restrict(paths RunPaths, network Network) (func(*exec.Cmd) error, error) {
	if sb == nil || !sb.On() {
		if network == NetworkNone {
			return nil, errors.New("sandbox: network none needs the sandbox (it is off or unavailable)")
		}
		return nil, nil
	}
	if sb.PIDNS && sb.Hide != "" {
		if err := hide(sb.Hide); err != nil {
			return nil, err
		}
	}
	denyTCP, netns := false, false
	if network == NetworkNone {
		switch {
		case sb.NetNS:
			netns = true
		case sb.Landlock >= 4:
			denyTCP = true
		default:
			return nil, errors.New("sandbox: network none: no network namespace and no Landlock network rules (ABI 4) on this machine")
		}
	}
	var start func(*exec.Cmd) error
	if dropCaps := sb.dropsCaps(); netns || dropCaps {
		sp, err := newSpawner(netns, dropCaps)
		if err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
		start = sp.start
	}
	if sb.Landlock > 0 {
		if err := sb.restrictLandlock(paths, denyTCP); err != nil {
			return nil, fmt.Errorf("sandbox: landlock: %w", err)
		}
	}
	return start, nil
}

// hide mounts an empty read-only tmpfs on dir, if it exists.
func hide(dir string) error {
	dir = filepath.Clean(dir)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=4k,mode=0555"); err != nil {
		return fmt.Errorf("sandbox: hide %s: %w", dir, err)
	}
	return nil
}

// dropsCaps reports whether steps must be started without capabilities:
// runexec is real root (no user namespace to make its capabilities
// harmless to the host).
func (sb *Sandbox) dropsCaps() bool { return sb.On() && !sb.UserNS && os.Geteuid() == 0 }
