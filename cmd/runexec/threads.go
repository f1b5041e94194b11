package main

import (
	"runtime"
	"sync"
)

// reservedThreads is how many OS threads runexec creates at start and keeps
// idle. The Go runtime aborts the process when it cannot create a thread it
// needs, and a fork bomb in a step uses up the pids limit runexec shares with
// its steps (one cgroup per run): without spare threads runexec died with
// "pthread_create failed: Resource temporarily unavailable", its run was
// retried as child_unresponsive and the step never got its timeout. A thread
// is needed per step blocked in wait4 and per syscall in flight beyond
// GOMAXPROCS; 4 were enough for a one-step bomb under a pids limit of 256,
// 16 leave room for parallel steps beside it. Making them costs a little
// CPU, off the run's path (during the handshake).
const reservedThreads = 16

// reserveThreads makes the runtime create n threads and park them idle: it
// reuses idle threads before creating new ones, and never frees them.
func reserveThreads(n int) {
	var locked, release, done sync.WaitGroup
	locked.Add(n)
	release.Add(1)
	done.Add(n)
	for range n {
		go func() {
			defer done.Done()
			runtime.LockOSThread() // a thread of its own while locked
			locked.Done()
			release.Wait()
			runtime.UnlockOSThread() // back to the runtime, idle, not destroyed
		}()
	}
	locked.Wait() // all n held at once: n distinct threads exist
	release.Done()
	done.Wait()
}
