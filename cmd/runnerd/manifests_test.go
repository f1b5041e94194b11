package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/runnerd/runnerd/internal/cli"
	"github.com/runnerd/runnerd/queue"
)

// manifest is what the test reads of a Kubernetes object.
type manifest struct {
	Kind     string
	Metadata struct{ Name string }
	Data     map[string]string // ConfigMap; Secret (base64 values)
	// Secret
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		// Deployment
		Template struct {
			Spec struct {
				TerminationGracePeriodSeconds int   `yaml:"terminationGracePeriodSeconds"`
				AutomountServiceAccountToken  *bool `yaml:"automountServiceAccountToken"`
				Containers                    []struct {
					Name    string
					Args    []string
					EnvFrom []struct {
						ConfigMapRef *struct{ Name string } `yaml:"configMapRef"`
						SecretRef    *struct{ Name string } `yaml:"secretRef"`
					} `yaml:"envFrom"`
					Env   []struct{ Name string }
					Ports []struct {
						Name          string
						ContainerPort int `yaml:"containerPort"`
					}
					LivenessProbe  *probe `yaml:"livenessProbe"`
					ReadinessProbe *probe `yaml:"readinessProbe"`
				}
			}
		}
		// ScaledObject
		ScaleTargetRef struct{ Name string } `yaml:"scaleTargetRef"`
		Triggers       []struct {
			Type     string
			Metadata map[string]string
		}
	}
}

type probe struct {
	HTTPGet struct {
		Path string
		Port any
	} `yaml:"httpGet"`
}

func readManifests(t *testing.T) map[string]manifest {
	t.Helper()
	files, err := filepath.Glob("../../deploy/kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/kubernetes: %v", err)
	}
	out := map[string]manifest{}
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(f)
		for {
			var m manifest
			err := dec.Decode(&m)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			out[m.Kind] = m
		}
		f.Close()
	}
	return out
}

// The manifests set only variables `runnerd serve` reads, the probes and
// the grace period fit the binary, and KEDA watches the consumer serve uses.
func TestManifestsAgreeWithServeFlags(t *testing.T) {
	var cfg serveConfig
	envs := map[string]string{} // variable → flag
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	serveFlags(&cfg, fs)
	for flag, env := range cli.Envs(fs) {
		envs[env] = flag
	}
	ms := readManifests(t)
	cm, secret, dep, so := ms["ConfigMap"], ms["Secret"], ms["Deployment"], ms["ScaledObject"]
	for kind, m := range map[string]manifest{"ConfigMap": cm, "Secret": secret, "Deployment": dep, "ScaledObject": so} {
		if m.Kind == "" {
			t.Fatalf("deploy/kubernetes has no %s", kind)
		}
	}

	set := map[string]string{} // variable → where
	check := func(where, name string) {
		if _, ok := envs[name]; !ok {
			t.Errorf("%s sets %s, which runnerd serve does not read", where, name)
		}
		if prev, dup := set[name]; dup {
			t.Errorf("%s sets %s, already set by %s", where, name, prev)
		}
		set[name] = where
	}
	for name := range cm.Data {
		check("ConfigMap", name)
	}
	for name := range secret.StringData {
		check("Secret", name)
	}
	for name := range secret.Data {
		check("Secret", name)
	}
	if len(dep.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("Deployment: want one container")
	}
	c := dep.Spec.Template.Spec.Containers[0]
	for _, e := range c.Env {
		check("Deployment", e.Name)
	}
	for _, must := range []string{"RUNNERD_NATS_URL", "RUNNERD_MONGO_URI", "RUNNERD_S3_BUCKET", "RUNNERD_RUNNER_ID", "RUNNERD_GRACE", "RUNNERD_METRICS_ADDR"} {
		if set[must] == "" {
			t.Errorf("no manifest sets %s", must)
		}
	}
	for _, secretOnly := range []string{"RUNNERD_MONGO_URI", "RUNNERD_S3_ACCESS_KEY", "RUNNERD_S3_SECRET_KEY"} {
		if w := set[secretOnly]; w != "" && w != "Secret" {
			t.Errorf("%s is a credential: set it in the Secret, not the %s", secretOnly, w)
		}
	}
	var fromCM, fromSecret bool
	for _, ef := range c.EnvFrom {
		fromCM = fromCM || ef.ConfigMapRef != nil && ef.ConfigMapRef.Name == cm.Metadata.Name
		fromSecret = fromSecret || ef.SecretRef != nil && ef.SecretRef.Name == secret.Metadata.Name
	}
	if !fromCM || !fromSecret {
		t.Errorf("the container takes its environment from the ConfigMap %q (%v) and the Secret %q (%v)", cm.Metadata.Name, fromCM, secret.Metadata.Name, fromSecret)
	}
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Errorf("container args %v, want serve", c.Args)
	}
	// No service-account token in the pod for a step to read.
	if a := dep.Spec.Template.Spec.AutomountServiceAccountToken; a == nil || *a {
		t.Errorf("Deployment: want automountServiceAccountToken: false")
	}

	// Every value the ConfigMap sets parses as serve would parse it.
	if err := cli.ApplyEnv(fs, func(name string) (string, bool) { v, ok := cm.Data[name]; return v, ok }); err != nil {
		t.Errorf("ConfigMap values: %v", err)
	}

	// SIGTERM drains for up to --grace; Kubernetes must wait longer.
	grace := time.Duration(dep.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	if grace < cfg.sup.ShutdownGrace+10*time.Second {
		t.Errorf("terminationGracePeriodSeconds %s: want at least --grace (%s) + 10s", grace, cfg.sup.ShutdownGrace)
	}

	// The probes reach the ops endpoints on the port --metrics-addr names.
	_, port, _ := strings.Cut(cfg.metricsAddr, ":")
	var portName string
	for _, p := range c.Ports {
		if strconv.Itoa(p.ContainerPort) == port {
			portName = p.Name
		}
	}
	if portName == "" {
		t.Errorf("no container port for --metrics-addr %q", cfg.metricsAddr)
	}
	for path, p := range map[string]*probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
		if p == nil || p.HTTPGet.Path != path || (p.HTTPGet.Port != portName && p.HTTPGet.Port != port) {
			t.Errorf("want a probe on %s at port %s: %+v", path, portName, p)
		}
	}

	// KEDA watches the stream and consumer every runnerd shares.
	q := queue.DefaultConfig()
	if so.Spec.ScaleTargetRef.Name != dep.Metadata.Name || len(so.Spec.Triggers) != 1 {
		t.Fatalf("ScaledObject: want one trigger on the Deployment %q: %+v", dep.Metadata.Name, so.Spec)
	}
	tr := so.Spec.Triggers[0]
	if tr.Type != "nats-jetstream" || tr.Metadata["stream"] != q.Stream || tr.Metadata["consumer"] != q.Consumer {
		t.Errorf("trigger %s on %s/%s, want nats-jetstream on %s/%s", tr.Type, tr.Metadata["stream"], tr.Metadata["consumer"], q.Stream, q.Consumer)
	}
	if tr.Metadata["lagThreshold"] != strconv.Itoa(cfg.sup.Concurrency) {
		t.Errorf("lagThreshold %s, want the concurrency %d: one pod per concurrency runs waiting", tr.Metadata["lagThreshold"], cfg.sup.Concurrency)
	}
}

// docs/operations.md documents every variable of runnerd serve.
func TestOperationsDocListsEveryVariable(t *testing.T) {
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	var cfg serveConfig
	var missing []string
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	serveFlags(&cfg, fs)
	for _, env := range cli.Envs(fs) {
		if !strings.Contains(string(doc), "`"+env+"`") {
			missing = append(missing, env)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("docs/operations.md does not list %s", strings.Join(missing, ", "))
	}
}

// The kustomization applies every manifest and pins the image the
// Deployment runs to the tag `make image` builds (IMAGE_TAG); the
// PodDisruptionBudget and the metrics Service select the Deployment's pods,
// and the Service reaches the port --metrics-addr names.
func TestManifestsImagePDBAndMetricsService(t *testing.T) {
	docs := map[string]map[string]any{} // kind → document
	files, _ := filepath.Glob("../../deploy/kubernetes/*.yaml")
	var resources []string
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var d map[string]any
		if err := yaml.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		kind, _ := d["kind"].(string)
		docs[kind] = d
		if kind != "Kustomization" {
			resources = append(resources, filepath.Base(file))
		}
	}
	get := func(d any, path ...string) any {
		for _, p := range path {
			m, _ := d.(map[string]any)
			d = m[p]
		}
		return d
	}
	k := docs["Kustomization"]
	if k == nil {
		t.Fatal("deploy/kubernetes has no kustomization.yaml")
	}
	var listed []string
	for _, r := range get(k, "resources").([]any) {
		listed = append(listed, r.(string))
	}
	sort.Strings(listed)
	sort.Strings(resources)
	if strings.Join(listed, " ") != strings.Join(resources, " ") {
		t.Errorf("kustomization.yaml applies %v, want every manifest %v", listed, resources)
	}
	dep := docs["Deployment"]
	container := get(dep, "spec", "template", "spec", "containers").([]any)[0]
	image, _ := get(container, "image").(string)
	tagFile, err := os.ReadFile("../../IMAGE_TAG")
	if err != nil {
		t.Fatal(err)
	}
	tag := strings.TrimSpace(string(tagFile))
	name, depTag, _ := strings.Cut(image, ":")
	images, _ := get(k, "images").([]any)
	if tag == "" || depTag != tag {
		t.Errorf("the Deployment runs %q; want the tag of IMAGE_TAG (%q)", image, tag)
	}
	if len(images) != 1 || get(images[0], "name") != name || get(images[0], "newTag") != tag {
		t.Errorf("kustomization.yaml's images %v; want %s with newTag %q (IMAGE_TAG)", images, name, tag)
	}
	// What make image would run, as make reads the Makefile.
	out, err := exec.Command("make", "-s", "-n", "-C", "../..", "image").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n image: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`(?m)^docker build .*-t ` + regexp.QuoteMeta(name+":"+tag) + ` `).Match(out) {
		t.Errorf("make image runs\n%s\nwant a docker build -t %s:%s", out, name, tag)
	}
	if strings.Contains(string(out), "deploy/kubernetes") {
		t.Errorf("make image writes into the manifests (the next build would see a dirty tree):\n%s", out)
	}

	podLabels := get(dep, "spec", "template", "metadata", "labels").(map[string]any)
	matches := func(sel map[string]any) bool {
		for k, v := range sel {
			if podLabels[k] != v {
				return false
			}
		}
		return len(sel) > 0
	}
	pdb := docs["PodDisruptionBudget"]
	if sel, _ := get(pdb, "spec", "selector", "matchLabels").(map[string]any); pdb == nil || !matches(sel) || get(pdb, "spec", "maxUnavailable") != 1 {
		t.Errorf("want a PodDisruptionBudget with maxUnavailable 1 over the Deployment's pods: %v", pdb)
	}
	svc := docs["Service"]
	if sel, _ := get(svc, "spec", "selector").(map[string]any); svc == nil || !matches(sel) {
		t.Fatalf("want a Service over the Deployment's pods: %v", svc)
	}
	var cfg serveConfig
	serveFlags(&cfg, pflag.NewFlagSet("serve", pflag.ContinueOnError))
	_, port, _ := strings.Cut(cfg.metricsAddr, ":")
	var named string
	for _, p := range get(container, "ports").([]any) {
		if fmt.Sprint(get(p, "containerPort")) == port {
			named, _ = get(p, "name").(string)
		}
	}
	ports, _ := get(svc, "spec", "ports").([]any)
	if len(ports) != 1 || named == "" || get(ports[0], "targetPort") != named || fmt.Sprint(get(ports[0], "port")) != port {
		t.Errorf("the Service's ports %v, want port %s to the container port %q (--metrics-addr)", ports, port, named)
	}
}
