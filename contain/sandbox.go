package contain

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

// Mode says how hard the sandbox is insisted on (--sandbox).
type Mode string

const (
	ModeAuto     Mode = "auto"     // every layer this machine allows; a missing one is logged
	ModeRequired Mode = "required" // refuse to start when a layer is missing
	ModeOff      Mode = "off"      // no sandbox: process groups, rlimits and cgroups only (debugging)
)

// ParseMode reads a --sandbox value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeAuto, ModeRequired, ModeOff:
		return m, nil
	}
	return "", fmt.Errorf("sandbox mode %q: want auto, required or off", s)
}

// Network is what a run's steps reach of the network.
type Network string

const (
	NetworkHost Network = "host" // the host's network, loopback included
	NetworkNone Network = "none" // nothing: a network namespace with its own loopback only
)

// ParseNetwork reads a --step-network value.
func ParseNetwork(s string) (Network, error) {
	switch n := Network(s); n {
	case NetworkHost, NetworkNone:
		return n, nil
	}
	return "", fmt.Errorf("step network %q: want host or none", s)
}

// Options is what the operator asks of the sandbox.
type Options struct {
	Mode    Mode
	RO, RW  []string // paths added to the read-only and the read-write lists
	Network Network  // the steps' network when the workflow does not say
}

// Validate names every bad option: extra paths must be absolute and exist
// (Landlock rules are made on open files).
func (o Options) Validate() error {
	var errs []error
	if o.Mode != "" { // "" is auto
		if _, err := ParseMode(string(o.Mode)); err != nil {
			errs = append(errs, fmt.Errorf("--sandbox %q: want auto, required or off", o.Mode))
		}
	}
	if o.Network != "" {
		if _, err := ParseNetwork(string(o.Network)); err != nil {
			errs = append(errs, fmt.Errorf("--step-network %q: want host or none", o.Network))
		}
	}
	for _, l := range []struct {
		flag  string
		paths []string
	}{{"--sandbox-ro", o.RO}, {"--sandbox-rw", o.RW}} {
		for _, p := range l.paths {
			if !filepath.IsAbs(p) {
				errs = append(errs, fmt.Errorf("%s %q: want an absolute path", l.flag, p))
			} else if _, err := os.Stat(p); err != nil {
				errs = append(errs, fmt.Errorf("%s %q: %w", l.flag, p, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Sandbox is what a runexec child is started with: the layers found to work
// on this machine (see Probe) and the operator's paths. The zero value is
// no sandbox. It reaches the child as JSON in RUNEXEC_SANDBOX.
type Sandbox struct {
	// PIDNS: a PID namespace whose init is runexec, with a mount namespace
	// and a private /proc: when runexec dies the kernel kills every process
	// of the run, and steps see no other process.
	PIDNS bool `json:"pidns,omitempty"`
	// UserNS: a user namespace in which runexec and its steps are root
	// with no capability on the host (runnerd's uid mapped to 0; all uids
	// as they are when runnerd is root).
	UserNS bool `json:"userns,omitempty"`
	// NetNS: runexec can make a network namespace for network none.
	NetNS bool `json:"netns,omitempty"`
	// Landlock is the kernel's Landlock ABI version (0: none).
	Landlock int      `json:"landlock,omitempty"`
	RO       []string `json:"ro,omitempty"`
	RW       []string `json:"rw,omitempty"`
	Network  Network  `json:"network,omitempty"`
	// Hide is a directory covered with an empty one in the run's mount
	// namespace before its steps start: runnerd's socket root, where the
	// other runs' go-plugin sockets are (Landlock before ABI 9 does not
	// check connect(2) on pathname sockets).
	Hide string `json:"hide,omitempty"`

	why map[string]string // layer -> why it is off
}

// The variables that carry the sandbox to runexec.
const (
	envSandbox = "RUNEXEC_SANDBOX"
	envProbe   = "RUNEXEC_SANDBOX_PROBE"
)

// IsSandboxVar reports whether a variable is one the sandbox gives runexec
// (the steps do not need to see them).
func IsSandboxVar(name string) bool { return strings.HasPrefix(name, envSandbox) }

// On reports whether any layer of the sandbox is set up.
func (sb *Sandbox) On() bool { return sb != nil && (sb.PIDNS || sb.Landlock > 0) }

// Env is the sandbox for the child's environment.
func (sb *Sandbox) Env() []string {
	if !sb.On() {
		return nil
	}
	b, _ := json.Marshal(sb)
	return []string{envSandbox + "=" + string(b)}
}

// Attr is the child's process setup: that of ProcessAttr plus the
// namespaces of the sandbox.
func (sb *Sandbox) Attr() *syscall.SysProcAttr {
	a := ProcessAttr()
	if sb == nil {
		return a
	}
	sb.namespaces(a)
	return a
}

func (sb *Sandbox) namespaces(a *syscall.SysProcAttr) {
	if sb.PIDNS {
		a.Cloneflags |= syscall.CLONE_NEWPID
		// As an unshare, Go also makes every mount private to the child
		// before its exec: the private /proc does not reach the host.
		a.Unshareflags |= syscall.CLONE_NEWNS
	}
	if sb.UserNS {
		a.Cloneflags |= syscall.CLONE_NEWUSER
		uid, gid := os.Getuid(), os.Getgid()
		if uid == 0 {
			// Every id as it is: files keep their owners, but capabilities
			// hold only inside the namespace.
			a.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1<<32 - 1}}
			a.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1<<32 - 1}}
			a.GidMappingsEnableSetgroups = true
		} else {
			a.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}}
			a.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}}
		}
	}
}

// Layer is one layer of the sandbox as reported at start.
type Layer struct {
	Name   string
	On     bool
	Detail string // what it does, or why it is off
}

// Layer names, also the label of runnerd_sandbox_layer.
const (
	LayerPIDNS    = "pid_namespace"
	LayerUserNS   = "user_namespace"
	LayerCaps     = "no_capabilities"
	LayerLandlock = "landlock_fs"
	LayerScope    = "landlock_scope"
	LayerNetwork  = "network_none"
	LayerCgroup   = "cgroup"
	LayerRlimits  = "rlimits"
)

// Layers says which layers the sandbox sets up (cgroups and rlimits are the
// supervisor's and reported by it).
func (sb *Sandbox) Layers() []Layer {
	why := func(name, fallback string) string {
		if w := sb.why[name]; w != "" {
			return w
		}
		return fallback
	}
	abi := fmt.Sprintf("ABI %d", sb.Landlock)
	ls := []Layer{
		{LayerPIDNS, sb.PIDNS, "runexec is the init of the run's PID namespace, private /proc"},
		{LayerUserNS, sb.UserNS, "steps are root of a user namespace, without host capabilities"},
		{LayerCaps, sb.UserNS || sb.dropsCaps() || (sb.On() && os.Geteuid() != 0), ""},
		{LayerLandlock, sb.Landlock >= 1, abi + ": read-write only the run dir and --sandbox-rw, read and execute the system paths and --sandbox-ro"},
		{LayerScope, sb.Landlock >= 6, abi + ": no signal to, nor abstract Unix socket of, a process outside the run"},
		{LayerNetwork, sb.NetNS || sb.Landlock >= 4, ""},
	}
	switch {
	case sb.UserNS:
		ls[2].Detail = "steps' capabilities hold only in their user namespace"
	case sb.dropsCaps():
		ls[2].Detail = "runnerd is root: steps start with an empty capability bounding set"
	case os.Geteuid() != 0:
		ls[2].Detail = "runnerd is not root: steps have no capability"
	}
	switch {
	case sb.NetNS:
		ls[5].Detail = "network none: a network namespace per run with its own loopback (TCP and UDP)"
	case sb.Landlock >= 4:
		ls[5].Detail = "network none: Landlock denies TCP connect and bind (not UDP)"
	}
	for i := range ls {
		if !ls[i].On {
			ls[i].Detail = why(ls[i].Name, "not available")
		}
	}
	return ls
}

// Probe finds the sandbox this machine allows, by starting runexec (at
// runexecPath) in each candidate setup, from the most to the least
// contained: a user, PID and mount namespace; without the user namespace
// (root only); none. Landlock is read from the kernel and tried in the
// probe child. With ModeOff it returns the zero Sandbox at once.
func Probe(runexecPath string, opts Options) (*Sandbox, error) {
	sb := &Sandbox{RO: opts.RO, RW: opts.RW, Network: opts.Network, why: map[string]string{}}
	if opts.Mode == ModeOff {
		for _, l := range []string{LayerPIDNS, LayerUserNS, LayerCaps, LayerLandlock, LayerScope, LayerNetwork} {
			sb.why[l] = "--sandbox=off"
		}
		return sb, nil
	}
	abi, err := llsys.LandlockGetABIVersion()
	if err != nil {
		sb.why[LayerLandlock] = fmt.Sprintf("the kernel has no Landlock: %v", err)
		sb.why[LayerScope] = sb.why[LayerLandlock]
	} else {
		sb.Landlock = abi
		if abi < 6 {
			sb.why[LayerScope] = fmt.Sprintf("Landlock ABI %d: signal scoping needs 6", abi)
		}
	}
	// As root, no user namespace: the steps get no capability instead (see
	// Restrict), and runexec is started with vfork; a user namespace makes
	// Go fork the whole runnerd (the parent writes the child's uid_map while
	// the child waits), which costs milliseconds per MiB of runnerd's heap.
	candidates := []Sandbox{{PIDNS: true, UserNS: true}}
	if os.Geteuid() == 0 {
		candidates = []Sandbox{{PIDNS: true}, {PIDNS: true, UserNS: true}}
	}
	var fails []string
	for _, c := range candidates {
		c.Landlock = sb.Landlock
		res, err := probeOnce(runexecPath, &c)
		if err != nil {
			fails = append(fails, fmt.Sprintf("%s: %v", c.nsName(), err))
			continue
		}
		sb.PIDNS, sb.UserNS, sb.NetNS = true, c.UserNS, res.NetNS
		if !res.NetNS {
			sb.why[LayerNetwork] = "no network namespace: " + res.NetNSError
		}
		if res.LandlockError != "" {
			sb.Landlock = 0
			sb.why[LayerLandlock] = "Landlock refused in the child: " + res.LandlockError
			sb.why[LayerScope] = sb.why[LayerLandlock]
		}
		break
	}
	if !sb.PIDNS {
		sb.why[LayerPIDNS] = strings.Join(fails, "; ")
		sb.why[LayerNetwork] = "no namespaces"
		// Without namespaces, runexec still applies Landlock to itself.
		if sb.Landlock > 0 {
			res, err := probeOnce(runexecPath, &Sandbox{Landlock: sb.Landlock})
			if err != nil || res.LandlockError != "" {
				sb.why[LayerLandlock] = fmt.Sprintf("Landlock refused in the child: %v %s", err, res.LandlockError)
				sb.why[LayerScope] = sb.why[LayerLandlock]
				sb.Landlock = 0
			}
		}
	}
	if !sb.UserNS && sb.PIDNS && os.Geteuid() == 0 {
		sb.why[LayerUserNS] = "runnerd is root: not used (steps start without capabilities instead, and runexec starts without a fork of all of runnerd)"
	}
	if !sb.UserNS && sb.why[LayerUserNS] == "" {
		sb.why[LayerUserNS] = strings.Join(fails, "; ")
		if len(fails) == 0 {
			sb.why[LayerUserNS] = "not tried"
		}
	}
	if opts.Mode == ModeRequired {
		if err := sb.required(); err != nil {
			return sb, err
		}
	}
	return sb, nil
}

// ErrSandboxMissing is returned by Probe with ModeRequired when a layer
// this machine does not allow is missing.
var ErrSandboxMissing = errors.New("--sandbox=required: layers missing")

func (sb *Sandbox) required() error {
	var missing []string
	for _, l := range sb.Layers() {
		if !l.On && l.Name != LayerUserNS { // the user namespace is a means, not a layer of its own
			missing = append(missing, l.Name+" ("+l.Detail+")")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrSandboxMissing, strings.Join(missing, "; "))
	}
	return nil
}

func (sb *Sandbox) nsName() string {
	if sb.UserNS {
		return "user+pid+mount namespaces"
	}
	return "pid+mount namespaces"
}

// probeResult is what a probe child prints.
type probeResult struct {
	PID           int    `json:"pid"`
	NetNS         bool   `json:"netns"`
	NetNSError    string `json:"netns_error,omitempty"`
	LandlockError string `json:"landlock_error,omitempty"`
	Error         string `json:"error,omitempty"`
}

func probeOnce(runexecPath string, c *Sandbox) (probeResult, error) {
	var res probeResult
	cmd := exec.Command(runexecPath)
	cmd.Env = append([]string{envProbe + "=1", "PATH=/usr/bin:/bin"}, c.Env()...)
	cmd.SysProcAttr = c.Attr()
	cmd.Dir = "/"
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("start: %w", err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return res, fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return res, errors.New("probe did not answer in 10s")
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return res, fmt.Errorf("probe output %q: %w", stdout.String(), err)
	}
	if res.Error != "" {
		return res, errors.New(res.Error)
	}
	if c.PIDNS && res.PID != 1 {
		return res, fmt.Errorf("runexec is pid %d in its namespace, not 1", res.PID)
	}
	return res, nil
}

// IsProbe reports whether this process was started by Probe.
func IsProbe(getenv func(string) string) bool { return getenv(envProbe) == "1" }

// RunProbe is the probe child: it sets up the sandbox it was given, tries a
// network namespace and Landlock, prints what worked as JSON and returns the
// exit code.
func RunProbe() int {
	var res probeResult
	sb, err := FromEnv(os.Getenv)
	if err == nil {
		err = sb.Enter()
	}
	res.PID = os.Getpid()
	if err != nil {
		res.Error = err.Error()
	} else {
		if sb.PIDNS {
			if _, err := newSpawner(true, sb.dropsCaps()); err != nil {
				res.NetNSError = err.Error()
			} else {
				res.NetNS = true
			}
		}
		if sb.Landlock > 0 {
			if err := sb.restrictLandlock(RunPaths{}, false); err != nil {
				res.LandlockError = err.Error()
			}
		}
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	return 0
}
