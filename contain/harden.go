package contain

import "golang.org/x/sys/unix"

// ProtectEnviron makes this process non-dumpable. runnerd holds the
// credentials of NATS, MongoDB and S3, often in its environment, and without
// a PID namespace its steps could find it: a dumpable process's
// /proc/<pid>/environ and /proc/<pid>/mem are readable by every process of
// its uid. A non-dumpable one's are not (only with CAP_SYS_PTRACE, e.g. as
// root). runexec children are dumpable again after their exec, and hold no
// credential.
func ProtectEnviron() error {
	return unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
}
