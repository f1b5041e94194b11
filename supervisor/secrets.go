package supervisor

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/runnerd/runnerd/queue"
)

// secretEnvPrefix names the variables of runnerd's own environment that
// hold secrets for single-tenant use: RUNNERD_SECRET_<NAME>.
const secretEnvPrefix = "RUNNERD_SECRET_"

// resolveSecrets finds the named secrets of a tenant: the file
// <SecretsDir>/<tenant>/<NAME> (laid out like a mounted Kubernetes Secret,
// its bytes as they are), else RUNNERD_SECRET_<NAME> in runnerd's
// environment. It returns the names it could not find. Values are never
// logged.
func (s *Supervisor) resolveSecrets(tenant string, names []string) (map[string]string, []string) {
	if len(names) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(names))
	var missing []string
	for _, name := range names {
		if v, ok := s.secretFromDir(tenant, name); ok {
			out[name] = v
			continue
		}
		if v, ok := os.LookupEnv(secretEnvPrefix + name); ok {
			out[name] = v
			continue
		}
		missing = append(missing, name)
	}
	return out, missing
}

func (s *Supervisor) secretFromDir(tenant, name string) (string, bool) {
	if s.cfg.SecretsDir == "" || queue.ValidateRunID(tenant) != nil || strings.ContainsAny(name, "/.") {
		return "", false
	}
	data, err := os.ReadFile(filepath.Join(s.cfg.SecretsDir, tenant, name))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn().Err(err).Str("tenant_id", tenant).Str("secret", name).Msg("read secret")
		}
		return "", false
	}
	return string(data), true
}
