package workflow

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestSecretsForms(t *testing.T) {
	t.Parallel()
	w, err := Parse([]byte(`
steps:
  - id: a
    shell: "true"
    secrets: [TOKEN, OTHER]
  - id: b
    shell: "true"
    secrets: {TOKEN: {file: token}, KEY: }
`), "s.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := w.Steps[0].Secrets; !reflect.DeepEqual(got, []SecretRef{{Name: "TOKEN"}, {Name: "OTHER"}}) {
		t.Errorf("list form: %+v", got)
	}
	if got := w.Steps[1].Secrets; !reflect.DeepEqual(got, []SecretRef{{Name: "TOKEN", File: "token"}, {Name: "KEY"}}) {
		t.Errorf("mapping form: %+v", got)
	}
	if got := w.SecretNames(); !reflect.DeepEqual(got, []string{"KEY", "OTHER", "TOKEN"}) {
		t.Errorf("names: %v", got)
	}
	js, _ := json.Marshal(w)
	back, err := Parse(js, "wire.json")
	if err != nil || !reflect.DeepEqual(back, w) {
		t.Errorf("JSON round trip: %v\n%s", err, js)
	}
}

func TestSecretsRefused(t *testing.T) {
	t.Parallel()
	_, err := Parse([]byte(`
steps:
  - id: a
    shell: echo ${{ secrets.TOKEN }}
    secrets: [TOKEN, TOKEN, "bad-name"]
  - id: b
    run: ["true"]
    secrets: {K: {file: ../x}}
`), "s.yaml")
	for _, want := range []string{
		"secrets never reach templates",
		`secret "TOKEN" declared twice`,
		`secret "bad-name": want an environment variable name`,
		`secret "K": file "../x" must be a plain file name`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

// Secret names and step ids are bounded: 128 and 64 bytes.
func TestNameLengths(t *testing.T) {
	t.Parallel()
	wf := func(id, secret string) string {
		return "steps:\n  - id: " + id + "\n    run: [\"true\"]\n    secrets: [" + secret + "]\n"
	}
	if _, err := Parse([]byte(wf(strings.Repeat("a", 64), strings.Repeat("S", 128))), "n.yaml"); err != nil {
		t.Fatalf("a 64-byte step id and a 128-byte secret name: %v", err)
	}
	_, err := Parse([]byte(wf(strings.Repeat("a", 65), strings.Repeat("S", 129))), "n.yaml")
	for _, want := range []string{`id: "` + strings.Repeat("a", 65), `secret "` + strings.Repeat("S", 129) + `": want an environment variable name`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}
