package contain

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/landlock-lsm/go-landlock/landlock"
)

// SystemPaths are readable and executable by every step: what a workflow's
// tools need. Missing ones are skipped. Everything else is neither readable
// nor writable, unless given with --sandbox-ro or --sandbox-rw.
var SystemPaths = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/proc"}

// devices are the device files steps may use; /dev/shm is the run's own
// tmpfs when the sandbox has a mount namespace.
var (
	devicesRW = []string{"/dev/null", "/dev/zero", "/dev/full"}
	devicesRO = []string{"/dev/random", "/dev/urandom"}
)

// restrictLandlock applies one Landlock domain to every thread of this
// process (go-landlock does so through libpsx until the kernel has
// LANDLOCK_RESTRICT_SELF_TSYNC): the steps started later inherit it. The
// access rights are those of the newest ABI go-landlock knows, lowered to
// what the kernel has (BestEffort); on a newer kernel connect(2) to pathname
// Unix sockets and UDP are covered too.
func (sb *Sandbox) restrictLandlock(paths RunPaths, denyNet bool) error {
	cfg := landlock.Config{
		HandledAccessFS: landlock.V11.HandledAccessFS,
		Scoped:          landlock.V11.Scoped,
	}
	if denyNet {
		cfg.HandledAccessNet = landlock.V11.HandledAccessNet // no rule: nothing allowed
	}
	ro := append(append([]string{}, SystemPaths...), sb.RO...)
	rw := append(paths.dirs(), sb.RW...)
	rules := []landlock.Rule{
		landlock.RODirs(ro...).IgnoreIfMissing(),
		landlock.RWFiles(devicesRW...).IgnoreIfMissing(),
		landlock.ROFiles(append(devicesRO, symlinkTargets(ro)...)...).IgnoreIfMissing(),
	}
	if len(rw) > 0 {
		rules = append(rules, landlock.RWDirs(rw...).WithRefer().WithResolveUnix())
	}
	if sb.PIDNS {
		rules = append(rules, landlock.RWDirs("/dev/shm").WithRefer().IgnoreIfMissing())
	}
	return cfg.BestEffort().RestrictPaths(rules...)
}

// symlinkTargets adds, for files directly named in system paths that are
// symlinks out of them (/etc/resolv.conf -> /run/...), their targets.
func symlinkTargets(dirs []string) []string {
	var out []string
	for _, name := range []string{"/etc/resolv.conf", "/etc/localtime", "/etc/mtab"} {
		t, err := filepath.EvalSymlinks(name)
		if err != nil || t == name {
			continue
		}
		inside := false
		for _, d := range dirs {
			if rel, err := filepath.Rel(d, t); err == nil && filepath.IsLocal(rel) {
				inside = true
			}
		}
		if fi, err := os.Stat(t); err == nil && !inside && !fi.IsDir() {
			out = append(out, t)
		}
	}
	return out
}

// FilterPath keeps the entries of a PATH value that steps can execute from
// under this sandbox's Landlock rules (the system paths and --sandbox-ro and
// --sandbox-rw paths); runnerd's own PATH may name directories (a user's
// home) a step would find a command in and then be refused (EACCES).
// Without Landlock it returns path unchanged.
func (sb *Sandbox) FilterPath(path string) string {
	if sb == nil || sb.Landlock == 0 {
		return path
	}
	allowed := append(append(append([]string{}, SystemPaths...), sb.RO...), sb.RW...)
	var keep []string
	for _, dir := range filepath.SplitList(path) {
		for _, a := range allowed {
			if rel, err := filepath.Rel(a, dir); err == nil && filepath.IsLocal(rel) {
				keep = append(keep, dir)
				break
			}
		}
	}
	if len(keep) == 0 {
		return "/usr/local/bin:/usr/bin:/bin"
	}
	return strings.Join(keep, string(filepath.ListSeparator))
}
