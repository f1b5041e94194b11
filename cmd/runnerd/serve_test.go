package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runnerd/runnerd/internal/cli"
)

// Invalid settings stop serve before it connects anywhere, each reported on
// one line naming the variable or flag.
func TestServeRejectsInvalidSettings(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "runexec")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{"bad duration variable", map[string]string{"RUNNERD_GRACE": "5x"}, nil,
			[]string{`runnerd serve: RUNNERD_GRACE="5x": want a duration such as 30s, 5m or 1h30m`}},
		{"bad size variable", map[string]string{"RUNNERD_MEMORY_LIMIT": "lots"}, nil,
			[]string{`runnerd serve: RUNNERD_MEMORY_LIMIT="lots": want a size such as 512MiB, 2GiB or a number of bytes`}},
		{"two bad variables", map[string]string{"RUNNERD_PIDS_LIMIT": "many", "RUNNERD_AUTO_MTLS": "yes"}, nil,
			[]string{`runnerd serve: RUNNERD_AUTO_MTLS="yes": want true or false`, `runnerd serve: RUNNERD_PIDS_LIMIT="many": want a whole number`}},
		{"bad duration flag", nil, []string{"--lease-ttl", "soon"},
			[]string{`runnerd serve: invalid argument "soon" for "--lease-ttl" flag: want a duration such as 30s, 5m or 1h30m`}},
		{"settings that parse but cannot work", map[string]string{"RUNNERD_CONCURRENCY": "0", "RUNNERD_LOG_FORMAT": "xml"},
			[]string{"--runexec", "/nonexistent/runexec", "--metrics-addr", "9090"},
			[]string{
				`runnerd serve: --log-format "xml": want json or console`,
				`runnerd serve: concurrency 0: want 1 to 1024`,
				`runnerd serve: runexec binary /nonexistent/runexec: no such file`,
				`runnerd serve: --metrics-addr "9090": want host:port or :port (empty: none)`,
			}},
		{"a web UI open to the network", map[string]string{"RUNNERD_UI_ADDR": ":8080"}, nil,
			[]string{`runnerd serve: --ui-addr: refusing to serve the UI without credentials on a non-loopback address: :8080 (set --ui-token or --ui-user and --ui-password, or listen on 127.0.0.1)`}},
		{"bad sandbox mode and step network, each said once", nil, []string{"--sandbox", "bogus", "--step-network", "x"},
			[]string{`runnerd serve: --sandbox "bogus": want auto, required or off`, `runnerd serve: --step-network "x": want host or none`}},
		{"half a basic-auth pair", map[string]string{"RUNNERD_UI_USER": "ops"}, []string{"--ui-addr", "127.0.0.1:0"},
			[]string{`runnerd serve: --ui-user and --ui-password go together: set both, or neither`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out bytes.Buffer
			args := append([]string{"--runexec", exe, "--nats-url", "nats://127.0.0.1:1"}, tc.args...)
			code := run(context.Background(), &cmdEnv{stdout: &out, stderr: &out}, append([]string{"serve"}, args...))
			got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			tc.want = append(tc.want, "Run 'runnerd serve --help' for usage.")
			if code != cli.ExitUsage || strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("exit %d, output:\n%s\nwant exit %d, output:\n%s", code, out.String(), cli.ExitUsage, strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestServeHelpListsFlagsVariablesAndDefaults(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), &cmdEnv{stdout: &out, stderr: &out}, []string{"serve", "--help"}); code != cli.ExitOK {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		"--metrics-addr string", "(default :9090) [$RUNNERD_METRICS_ADDR]",
		"--grace duration", "(default 25s) [$RUNNERD_GRACE]",
		"--memory-limit size", "(default 2GiB) [$RUNNERD_MEMORY_LIMIT]",
		"--stall-timeout duration", "[$RUNNERD_STALL_TIMEOUT]",
		"--auto-mtls   ", "[$RUNNERD_AUTO_MTLS]",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q:\n%s", want, out.String())
		}
	}
}
