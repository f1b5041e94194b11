package main

import (
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/runnerd/runnerd/contain"
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
	limits, err := contain.LimitsFromEnv(os.Getenv)
	if err == nil {
		err = limits.Apply()
	}
	if err != nil {
		logger.Warn("rlimits not all applied", "error", err)
	}
	// The spare threads are made while go-plugin does its handshake; a run
	// waits for them before its steps start.
	ready := make(chan struct{})
	go func() { reserveThreads(reservedThreads); close(ready) }()
	proto.Serve(&proto.Local{Env: stepEnv(os.Environ()), Ready: ready}, logger)
	return 0
}

// stepEnv is the steps' base environment: the child's own, which runnerd
// built, without go-plugin's and runnerd's internal variables.
func stepEnv(environ []string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "PLUGIN_") || contain.IsLimitVar(name) ||
			name == proto.Handshake.MagicCookieKey {
			continue
		}
		out = append(out, kv)
	}
	return out
}
