package main

import (
	"os"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/runnerd/runnerd/proto"
)

// servePlugin is runexec started by runnerd: it applies the limits runnerd
// asked for, then serves the Executor over go-plugin gRPC until runnerd
// closes the connection.
func servePlugin() int {
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       "runexec",
		Output:     os.Stderr,
		JSONFormat: true,
		Level:      hclog.Info,
	})
	for _, l := range []struct {
		env      string
		resource int
	}{
		{"RUNEXEC_RLIMIT_NOFILE", unix.RLIMIT_NOFILE},
		{"RUNEXEC_RLIMIT_FSIZE", unix.RLIMIT_FSIZE},
		{"RUNEXEC_RLIMIT_CPU", unix.RLIMIT_CPU},
	} {
		if err := setRlimit(os.Getenv(l.env), l.resource); err != nil {
			logger.Warn("rlimit not applied", "variable", l.env, "error", err)
		}
	}
	// The spare threads are made while go-plugin does its handshake; a run
	// waits for them before its steps start.
	ready := make(chan struct{})
	go func() { reserveThreads(reservedThreads); close(ready) }()
	proto.Serve(&proto.Local{Env: stepEnv(os.Environ()), Ready: ready}, logger)
	return 0
}

// setRlimit sets a soft and hard limit (inherited by every step); an empty
// value leaves the limit alone.
func setRlimit(value string, resource int) error {
	if value == "" {
		return nil
	}
	n, err := strconv.ParseUint(value, 10, 64)
	if err != nil {
		return err
	}
	return unix.Setrlimit(resource, &unix.Rlimit{Cur: n, Max: n})
}

// stepEnv is the steps' base environment: the child's own, which runnerd
// built, without go-plugin's and runnerd's internal variables.
func stepEnv(environ []string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "PLUGIN_") || strings.HasPrefix(name, "RUNEXEC_RLIMIT_") ||
			name == proto.Handshake.MagicCookieKey {
			continue
		}
		out = append(out, kv)
	}
	return out
}
