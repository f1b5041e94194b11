package executor

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// provideSecrets gives the step the secrets it declares: environment
// entries, and files in a directory of its own (RUNEXEC_SECRETS) under the
// run's TMPDIR, mode 0600, which cleanup removes when the step ends.
func (j *stepJob) provideSecrets() (env []string, cleanup func(), err error) {
	cleanup = func() {}
	var files bool
	for _, r := range j.step.Secrets {
		if r.File == "" {
			env = append(env, r.Name+"="+j.opts.Secrets[r.Name])
		} else {
			files = true
		}
	}
	if !files {
		return env, cleanup, nil
	}
	tmp := lookupEnv(j.opts.Env, "TMPDIR")
	if tmp == "" {
		tmp = os.TempDir()
	}
	dir, err := os.MkdirTemp(tmp, "runexec-secrets-"+j.step.ID+"-")
	if err != nil {
		return nil, cleanup, fmt.Errorf("secrets: %w", err)
	}
	cleanup = func() { _ = os.RemoveAll(dir) }
	for _, r := range j.step.Secrets {
		if r.File == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, r.File), []byte(j.opts.Secrets[r.Name]), 0o600); err != nil {
			cleanup()
			return nil, func() {}, fmt.Errorf("secret %s: %w", r.Name, err)
		}
	}
	return append(env, "RUNEXEC_SECRETS="+dir), cleanup, nil
}

func lookupEnv(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], key+"="); ok {
			return v
		}
	}
	return ""
}
