package contain

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Limits are the rlimits of a child and of every step it starts (rlimits
// are inherited): open files, file size, CPU time. Zero leaves a limit as
// inherited. They are set as both soft and hard limit, so a step cannot
// raise them again.
type Limits struct {
	NoFile   uint64 // RLIMIT_NOFILE: open files
	FileSize uint64 // RLIMIT_FSIZE: bytes of one file written (SIGXFSZ, then EFBIG)
	CPUTime  uint64 // RLIMIT_CPU: seconds of CPU of each process (SIGXCPU, then SIGKILL)
}

// The variables that carry Limits from runnerd to its runexec child.
const (
	envNoFile   = "RUNEXEC_RLIMIT_NOFILE"
	envFileSize = "RUNEXEC_RLIMIT_FSIZE"
	envCPU      = "RUNEXEC_RLIMIT_CPU"
	envPrefix   = "RUNEXEC_RLIMIT_"
)

// Env is the limits as variables for the child's environment.
func (l Limits) Env() []string {
	var env []string
	for _, v := range []struct {
		name string
		n    uint64
	}{{envNoFile, l.NoFile}, {envFileSize, l.FileSize}, {envCPU, l.CPUTime}} {
		if v.n > 0 {
			env = append(env, v.name+"="+strconv.FormatUint(v.n, 10))
		}
	}
	return env
}

// LimitsFromEnv reads the limits a parent put in the environment.
func LimitsFromEnv(getenv func(string) string) (Limits, error) {
	var l Limits
	var errs []string
	for _, v := range []struct {
		name string
		p    *uint64
	}{{envNoFile, &l.NoFile}, {envFileSize, &l.FileSize}, {envCPU, &l.CPUTime}} {
		s := getenv(v.name)
		if s == "" {
			continue
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s=%q: want a whole number", v.name, s))
			continue
		}
		*v.p = n
	}
	if len(errs) > 0 {
		return l, fmt.Errorf("rlimits: %s", strings.Join(errs, "; "))
	}
	return l, nil
}

// IsLimitVar reports whether an environment variable is one of those Env
// makes (the steps do not need to see them).
func IsLimitVar(name string) bool { return strings.HasPrefix(name, envPrefix) }

// Apply sets the limits on this process (its later children inherit them).
// A limit above the current hard limit cannot be set without privilege: it
// is lowered to the hard limit rather than refused.
func (l Limits) Apply() error {
	var errs []string
	for _, v := range []struct {
		name     string
		resource int
		n        uint64
	}{{"open files", unix.RLIMIT_NOFILE, l.NoFile}, {"file size", unix.RLIMIT_FSIZE, l.FileSize}, {"cpu time", unix.RLIMIT_CPU, l.CPUTime}} {
		if v.n == 0 {
			continue
		}
		if err := setLimit(v.resource, v.n); err != nil {
			errs = append(errs, fmt.Sprintf("%s %d: %v", v.name, v.n, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("rlimits: %s", strings.Join(errs, "; "))
	}
	return nil
}

func setLimit(resource int, n uint64) error {
	err := unix.Setrlimit(resource, &unix.Rlimit{Cur: n, Max: n})
	if err == unix.EPERM {
		var cur unix.Rlimit
		if gerr := unix.Getrlimit(resource, &cur); gerr == nil && n > cur.Max {
			return unix.Setrlimit(resource, &unix.Rlimit{Cur: cur.Max, Max: cur.Max})
		}
	}
	return err
}
