package contain

import "syscall"

// ProcessAttr is the process setup of a child and of a step: its own
// process group (every kill is a group kill) and SIGKILL when the thread
// that started it exits, so a dead parent leaves nothing running. Callers
// must start it from a goroutine that has not locked its OS thread (or
// whose locked thread lives as long as the parent): the death signal fires
// when the forking thread exits, not the process.
func ProcessAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// KillGroup signals the process group led by pid. ESRCH (nothing left) is
// the expected case after a clean exit.
func KillGroup(pid int, sig syscall.Signal) {
	if pid > 0 {
		_ = syscall.Kill(-pid, sig)
	}
}
