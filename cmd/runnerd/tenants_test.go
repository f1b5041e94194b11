package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/runnerd/runnerd/internal/cli"
)

// parseServe parses serve's flags from args and env as the command does and
// returns the validated configuration, or the usage error.
func parseServe(t *testing.T, env map[string]string, args ...string) (serveConfig, error) {
	t.Helper()
	var cfg serveConfig
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	serveFlags(&cfg, fs)
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if err := cli.ApplyEnv(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		return cfg, err
	}
	var bad []string
	for _, line := range cfg.validate() {
		if strings.Contains(line, "tenant") {
			bad = append(bad, line)
		}
	}
	if len(bad) > 0 {
		return cfg, cli.Usage(errors.New(strings.Join(bad, "\n")))
	}
	return cfg, nil
}

func TestTenantConcurrencyFlag(t *testing.T) {
	file := writeFile(t, "limits", "# per tenant\nacme=4\n\nbig = 2\n")
	slashed := writeFile(t, "slashed", "slash=7\n") // an absolute path: no '@' needed

	cfg, err := parseServe(t, nil, "--tenant-concurrency", "3", "--tenant-concurrency", "big=5",
		"--tenant-concurrency", "@"+file, "--tenant-concurrency", "solo=1,zero=0", "--tenant-concurrency", slashed)
	if err != nil {
		t.Fatal(err)
	}
	// The file comes after big=5: its big = 2 wins.
	want := map[string]int{"acme": 4, "big": 2, "solo": 1, "zero": 0, "slash": 7}
	if cfg.sup.TenantConcurrency != 3 || !sameLimits(cfg.sup.TenantLimits, want) {
		t.Errorf("default %d limits %v, want 3 and %v", cfg.sup.TenantConcurrency, cfg.sup.TenantLimits, want)
	}

	// The variable is a comma-separated list; the command line replaces it.
	cfg, err = parseServe(t, map[string]string{"RUNNERD_TENANT_CONCURRENCY": "2, acme=6"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.sup.TenantConcurrency != 2 || !sameLimits(cfg.sup.TenantLimits, map[string]int{"acme": 6}) {
		t.Errorf("from the variable: default %d limits %v, want 2 and acme=6", cfg.sup.TenantConcurrency, cfg.sup.TenantLimits)
	}
	cfg, err = parseServe(t, map[string]string{"RUNNERD_TENANT_CONCURRENCY": "2,acme=6"}, "--tenant-concurrency", "1")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.sup.TenantConcurrency != 1 || len(cfg.sup.TenantLimits) != 0 {
		t.Errorf("flag over the variable: default %d limits %v, want 1 and none", cfg.sup.TenantConcurrency, cfg.sup.TenantLimits)
	}

	// The older spellings still work, and win over --tenant-concurrency.
	cfg, err = parseServe(t, nil, "--tenant-concurrency", "acme=1", "--tenant-limit", "acme=9", "--tenant-limits-file", file)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.sup.TenantConcurrency != 0 || !sameLimits(cfg.sup.TenantLimits, map[string]int{"acme": 9, "big": 2}) {
		t.Errorf("aliases: default %d limits %v, want 0 and acme=9 big=2", cfg.sup.TenantConcurrency, cfg.sup.TenantLimits)
	}

	bad := writeFile(t, "bad", "acme=4\nno.dots=1\n")
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{nil, []string{"--tenant-concurrency", "acme"}, `entry "acme": want N (every tenant's limit, 0: no limit), tenant=N or @FILE`},
		{nil, []string{"--tenant-concurrency", "-1"}, `entry "-1": want N`},
		{nil, []string{"--tenant-concurrency", "acme=x"}, `entry "acme=x": want tenant=N with N a number of runs`},
		{nil, []string{"--tenant-concurrency", "acme=-2"}, `entry "acme=-2": want tenant=N with N a number of runs`},
		{nil, []string{"--tenant-concurrency", "no.dots=1"}, `entry "no.dots=1": tenant "no.dots" is not a tenant id`},
		{nil, []string{"--tenant-concurrency", "2,,acme=1"}, `empty entry in "2,,acme=1"`},
		{nil, []string{"--tenant-concurrency", "@"}, `entry "@": want @FILE with a file name`},
		{nil, []string{"--tenant-concurrency", "@" + bad}, bad + `:2: "no.dots=1": tenant "no.dots" is not a tenant id`},
		{nil, []string{"--tenant-concurrency", "/nonexistent/limits"}, `entry "/nonexistent/limits": open /nonexistent/limits`},
		{map[string]string{"RUNNERD_TENANT_CONCURRENCY": "2,acme"}, nil, `RUNNERD_TENANT_CONCURRENCY="2,acme": entry "acme": want N`},
		{nil, []string{"--tenant-limit", "acme"}, `--tenant-limit "acme": want tenant=N`},
		{nil, []string{"--tenant-limit", "acme=-1"}, "want tenant=N with N a number of runs"},
		{nil, []string{"--tenant-limits-file", bad}, bad + `:2: "no.dots=1": tenant "no.dots" is not a tenant id`},
		{nil, []string{"--tenant-limits-file", "/nonexistent/limits"}, "--tenant-limits-file: open /nonexistent/limits"},
	} {
		_, err := parseServe(t, tc.env, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: %v, want %q", tc.env, tc.args, err, tc.want)
		}
	}

	// A refused entry changes nothing.
	var def int
	v := newTenantConcurrency(&def)
	if err := v.Set("4,a=1"); err != nil {
		t.Fatal(err)
	}
	if err := v.Set("5,b=2,c"); err == nil {
		t.Fatal("5,b=2,c accepted")
	}
	if def != 4 || !sameLimits(v.per, map[string]int{"a": 1}) || v.String() != "4,a=1" {
		t.Errorf("after a refused Set: default %d limits %v %q, want 4, a=1", def, v.per, v.String())
	}
}

func sameLimits(got, want map[string]int) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if n, ok := got[k]; !ok || n != v {
			return false
		}
	}
	return true
}
