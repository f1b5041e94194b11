package workflow

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"

	"go.yaml.in/yaml/v3"
)

// SecretRef is a secret a step declares it needs. The step gets it as the
// environment variable Name, or, with File set, as a file of that name in a
// directory of its own under the run's TMPDIR (mode 0600), removed when the
// step ends. A secret never reaches templates, the run document, the
// message or another step.
//
//	secrets: [DEPLOY_TOKEN]                 # env var DEPLOY_TOKEN
//	secrets: {DEPLOY_TOKEN: {file: token}}  # file $RUNEXEC_SECRETS/token
type SecretRef struct {
	Name string `json:"name" yaml:"name" bson:"name"`
	File string `json:"file,omitempty" yaml:"file,omitempty" bson:"file,omitempty"`
}

// secretName is what a secret may be called: an environment variable name
// of at most 128 bytes (checked apart, as for step ids).
var secretName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// SecretNames are the secrets the workflow's steps declare, sorted, once.
func (w *Workflow) SecretNames() []string {
	var out []string
	for _, s := range w.Steps {
		for _, r := range s.Secrets {
			if !slices.Contains(out, r.Name) {
				out = append(out, r.Name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// MissingSecrets lists the secrets the workflow's steps declare that have
// no value in have.
func (w *Workflow) MissingSecrets(have map[string]string) []string {
	var out []string
	for _, name := range w.SecretNames() {
		if _, ok := have[name]; !ok {
			out = append(out, name)
		}
	}
	return out
}

// secrets decodes `secrets:`: a list of names, a list of {name, file}, or a
// mapping of names to {file}.
func (d *decoder) secrets(n *yaml.Node, i int, label string) []SecretRef {
	n = deref(n)
	var out []SecretRef
	switch n.Kind {
	case yaml.SequenceNode:
		for k, en := range n.Content {
			field := fmt.Sprintf("secrets[%d]", k)
			en = deref(en)
			if en.Kind == yaml.MappingNode {
				var r SecretRef
				for _, e := range d.entries(en, i, label, 0) {
					switch e.key {
					case "name":
						r.Name = d.str(e.val, i, label, field+".name")
					case "file":
						r.File = d.str(e.val, i, label, field+".file")
					default:
						d.fail(i, label, field+"."+e.key, e.line, "unknown field%s", suggest(e.key, []string{"name", "file"}))
					}
				}
				out = append(out, r)
				continue
			}
			out = append(out, SecretRef{Name: d.str(en, i, label, field)})
		}
	case yaml.MappingNode:
		for _, e := range d.entries(n, i, label, 0) {
			r := SecretRef{Name: e.key}
			v := deref(e.val)
			if v.Kind == yaml.MappingNode {
				for _, f := range d.entries(v, i, label, 0) {
					if f.key != "file" {
						d.fail(i, label, "secrets."+e.key+"."+f.key, f.line, "unknown field%s", suggest(f.key, []string{"file"}))
						continue
					}
					r.File = d.str(f.val, i, label, "secrets."+e.key+".file")
				}
			} else if !(v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null") {
				d.fail(i, label, "secrets."+e.key, e.line, "want {file: name} or nothing, got %s", describe(v))
			}
			out = append(out, r)
		}
	default:
		d.fail(i, label, "secrets", n.Line, "want a list of names or a mapping of names to {file: name}, got %s", describe(n))
	}
	return out
}

// secretProblems lists what is wrong with a step's secrets.
func secretProblems(s *Step) []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range s.Secrets {
		if len(r.Name) > 128 || !secretName.MatchString(r.Name) {
			out = append(out, fmt.Sprintf("secret %q: want an environment variable name (letters, digits, '_')", r.Name))
		}
		if seen[r.Name] {
			out = append(out, fmt.Sprintf("secret %q declared twice", r.Name))
		}
		seen[r.Name] = true
		if r.File != "" && (r.File != filepath.Base(r.File) || r.File == "." || r.File == "..") {
			out = append(out, fmt.Sprintf("secret %q: file %q must be a plain file name", r.Name, r.File))
		}
		if r.File == "" {
			if _, clash := s.Env[r.Name]; clash {
				out = append(out, fmt.Sprintf("secret %q is also set in env", r.Name))
			}
		}
	}
	return out
}
