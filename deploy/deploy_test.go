// Package deploy_test checks what can be checked of the packaging without
// a container runtime: the Helm chart renders and lints with the real helm,
// the compose file validates with the real docker-compose, the systemd unit
// passes systemd-analyze, and every setting they pass to Flotilla is one
// the binary actually reads.
package deploy_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/flotilla-ota/flotilla/internal/testtool"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds flotilla and flotilla-agent once.
func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "flotilla-deploy-test")
		if buildErr != nil {
			return
		}
		for _, c := range []string{"flotilla", "flotilla-agent"} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, c), "../cmd/"+c).CombinedOutput()
			if err != nil {
				buildErr = errors.New(string(out))
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// knownEnv is every FLOTILLA_* variable the commands' help mentions.
func knownEnv(t *testing.T) map[string]bool {
	dir := binaries(t)
	known := map[string]bool{}
	for _, args := range [][]string{{"server", "--help"}, {"agent", "--help"}, {"migrate", "--help"}} {
		out, err := exec.Command(filepath.Join(dir, "flotilla"), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("flotilla %v: %v\n%s", args, err, out)
		}
		for _, m := range regexp.MustCompile(`FLOTILLA_[A-Z_]+`).FindAllString(string(out), -1) {
			known[m] = true
		}
	}
	return known
}

func checkEnvKnown(t *testing.T, where string, names []string, known map[string]bool) {
	t.Helper()
	for _, n := range names {
		if strings.HasPrefix(n, "FLOTILLA_") && !known[n] {
			t.Errorf("%s sets %s, which flotilla does not read", where, n)
		}
	}
}

// docs splits multi-document YAML.
func docs(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("rendered YAML does not parse: %v", err)
		}
		if m != nil {
			out = append(out, m)
		}
	}
}

// get walks a path of map keys and list indexes.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func helm(t *testing.T, args ...string) ([]byte, error) {
	cmd := exec.Command(testtool.Helm.Path(t), args...)
	cmd.Dir = "helm"
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, errors.New(stderr.String())
	}
	return out, nil
}

var chartValues = []string{
	"--set", "database.url=postgres://flotilla:pw@pg:5432/flotilla",
	"--set", "blob.url=s3://firmware?endpoint=s3.example.com",
	"--set", "blob.accessKeyId=AKIA", "--set", "blob.secretAccessKey=secret",
	"--set", "adminToken.value=flt_admin_token_for_the_chart_test",
	"--set", "secretKey.value=ZmxvdGlsbGEtdGVzdC1zZWNyZXQta2V5LTMyYnl0ZXM=",
	"--set", "ingress.enabled=true", "--set", "ingress.hosts[0].host=ota.example.com",
	"--set", "ingress.hosts[0].paths[0].path=/", "--set", "ingress.hosts[0].paths[0].pathType=Prefix",
	"--set", "publicURL=https://ota.example.com",
}

func TestHelmChart(t *testing.T) {
	if out, err := helm(t, append([]string{"lint", "flotilla", "--strict"}, chartValues...)...); err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
	out, err := helm(t, append([]string{"template", "ota", "flotilla"}, chartValues...)...)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	byKind := map[string]map[string]any{}
	for _, d := range docs(t, out) {
		byKind[d["kind"].(string)] = d
	}
	for _, k := range []string{"Deployment", "Service", "Ingress", "Secret", "Job", "PodDisruptionBudget"} {
		if byKind[k] == nil {
			t.Fatalf("chart renders no %s", k)
		}
	}
	dep := byKind["Deployment"]
	if r := get(dep, "spec", "replicas"); r != 3 {
		t.Errorf("replicas = %v, want 3", r)
	}
	pod := get(dep, "spec", "template", "spec")
	if get(pod, "securityContext", "runAsNonRoot") != true {
		t.Error("pods may run as root")
	}
	c := get(pod, "containers", 0)
	if p := get(c, "livenessProbe", "httpGet", "path"); p != "/healthz" {
		t.Errorf("liveness probe on %v", p)
	}
	if p := get(c, "readinessProbe", "httpGet", "path"); p != "/readyz" {
		t.Errorf("readiness probe on %v", p)
	}
	if get(c, "securityContext", "readOnlyRootFilesystem") != true {
		t.Error("root filesystem is writable")
	}
	env := map[string]any{}
	var names []string
	for _, e := range get(c, "env").([]any) {
		n := get(e, "name").(string)
		env[n] = e
		names = append(names, n)
	}
	checkEnvKnown(t, "the chart's Deployment", names, knownEnv(t))
	// Credentials come from Secrets, never inline.
	for _, n := range []string{"FLOTILLA_DATABASE_URL", "FLOTILLA_ADMIN_TOKEN", "FLOTILLA_SECRET_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		if get(env[n], "valueFrom", "secretKeyRef", "name") == nil || get(env[n], "value") != nil {
			t.Errorf("%s is not taken from a Secret: %v", n, env[n])
		}
	}
	if v := get(env["FLOTILLA_BLOB_URL"], "value"); v != "s3://firmware?endpoint=s3.example.com" {
		t.Errorf("FLOTILLA_BLOB_URL = %v", v)
	}
	if get(env["FLOTILLA_REPLICA_ID"], "valueFrom", "fieldRef", "fieldPath") != "metadata.name" {
		t.Error("replicas are not named after their pods")
	}
	secret := byKind["Secret"]
	if get(secret, "stringData", "database-url") != "postgres://flotilla:pw@pg:5432/flotilla" {
		t.Errorf("secret data %v", get(secret, "stringData"))
	}
	// The Service and the Ingress reach the server pods and only them.
	sel := get(byKind["Service"], "spec", "selector").(map[string]any)
	podLabels := get(dep, "spec", "template", "metadata", "labels").(map[string]any)
	jobLabels, _ := get(byKind["Job"], "spec", "template", "metadata", "labels").(map[string]any)
	if !matches(sel, podLabels) || matches(sel, jobLabels) {
		t.Errorf("service selector %v: server pods %v, migration pod %v", sel, podLabels, jobLabels)
	}
	if get(byKind["Ingress"], "spec", "rules", 0, "host") != "ota.example.com" ||
		get(byKind["Ingress"], "spec", "rules", 0, "http", "paths", 0, "backend", "service", "name") != get(byKind["Service"], "metadata", "name") {
		t.Errorf("ingress %v", get(byKind["Ingress"], "spec"))
	}
	job := byKind["Job"]
	if !strings.Contains(get(job, "metadata", "annotations", "helm.sh/hook").(string), "pre-upgrade") ||
		!slices.Equal(get(job, "spec", "template", "spec", "containers", 0, "args").([]any), []any{"migrate"}) {
		t.Errorf("migration job %v", job)
	}

	// Without a database the chart refuses to render, saying what to set.
	_, err = helm(t, "template", "ota", "flotilla", "--set", "blob.url=s3://b?endpoint=e", "--set", "adminToken.value=x", "--set", "secretKey.value=k")
	if err == nil || !strings.Contains(err.Error(), "database.url") {
		t.Fatalf("chart without a database: %v", err)
	}
	// Without a shared secret key neither: replicas must seal alike.
	_, err = helm(t, "template", "ota", "flotilla", "--set", "database.url=postgres://x", "--set", "blob.url=s3://b?endpoint=e", "--set", "adminToken.value=x")
	if err == nil || !strings.Contains(err.Error(), "secretKey.value") {
		t.Fatalf("chart without a secret key: %v", err)
	}
	// With existing Secrets the chart makes none of its own.
	out, err = helm(t, "template", "ota", "flotilla", "--set", "database.existingSecret=pg", "--set", "blob.url=s3://b?endpoint=e",
		"--set", "blob.existingSecret=s3creds", "--set", "adminToken.existingSecret=admin", "--set", "secretKey.existingSecret=sealing")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs(t, out) {
		if d["kind"] == "Secret" {
			t.Fatalf("chart made a Secret although all were given: %v", d)
		}
		if d["kind"] == "Deployment" && !strings.Contains(string(out), "name: s3creds") {
			t.Fatal("deployment does not use the given S3 credentials Secret")
		}
	}
}

func matches(selector, labels map[string]any) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestComposeFile(t *testing.T) {
	dc, err := exec.LookPath("docker-compose")
	if err != nil {
		testtool.Missing(t, "docker-compose is not installed: apt-get install docker-compose (.ci/run does)")
	}
	out, err := exec.Command(dc, "-f", "compose.yaml", "config").CombinedOutput()
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
	var cfg struct {
		Services map[string]struct {
			Command     []string          `yaml:"command"`
			Entrypoint  []string          `yaml:"entrypoint"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	known := knownEnv(t)
	replicas, agents := 0, 0
	agentHelp, _ := exec.Command(filepath.Join(binaries(t), "flotilla-agent"), "--help").CombinedOutput()
	for name, s := range cfg.Services {
		var names []string
		for k := range s.Environment {
			names = append(names, k)
		}
		checkEnvKnown(t, "compose service "+name, names, known)
		if strings.HasPrefix(name, "flotilla-") {
			replicas++
			if !strings.HasPrefix(s.Environment["FLOTILLA_DATABASE_URL"], "postgres://") || !strings.HasPrefix(s.Environment["FLOTILLA_BLOB_URL"], "s3://") {
				t.Errorf("%s is not on Postgres and S3: %v", name, s.Environment)
			}
		}
		if len(s.Entrypoint) > 0 && strings.HasSuffix(s.Entrypoint[0], "flotilla-agent") {
			agents++
			for _, a := range s.Command {
				if strings.HasPrefix(a, "--") && !strings.Contains(string(agentHelp), a+" ") {
					t.Errorf("%s passes %s, which flotilla-agent does not take", name, a)
				}
			}
		}
	}
	if replicas != 3 || agents < 2 || cfg.Services["postgres"].Environment == nil || cfg.Services["s3"].Command == nil {
		t.Errorf("compose stack: %d replicas, %d agents, services %v", replicas, agents, cfg.Services)
	}
}

func TestSystemdUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		testtool.Missing(t, "systemd-analyze is not installed: apt-get install systemd (.ci/run does)")
	}
	unit, err := os.ReadFile("systemd/flotilla-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	// Verify the unit as shipped, with its paths pointing at real files.
	dir := t.TempDir()
	envFile := filepath.Join(dir, "agent.env")
	os.WriteFile(envFile, []byte("FLOTILLA_SERVER=http://127.0.0.1:8080\n"), 0o600)
	s := strings.ReplaceAll(string(unit), "/usr/local/bin/flotilla-agent", filepath.Join(binaries(t), "flotilla-agent"))
	s = strings.ReplaceAll(s, "/etc/flotilla/agent.env", envFile)
	path := filepath.Join(dir, "flotilla-agent.service")
	os.WriteFile(path, []byte(s), 0o644)
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	names := regexp.MustCompile(`FLOTILLA_[A-Z_]+`).FindAllString(string(unit), -1)
	checkEnvKnown(t, "the systemd unit", names, knownEnv(t))
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if strings.Count(s, "\nFROM ") < 2 || !strings.Contains(s, "CGO_ENABLED=0") || !regexp.MustCompile(`\nUSER (65532|nonroot)`).MatchString(s) {
		t.Fatalf("Dockerfile is not a multi-stage, static, non-root build:\n%s", s)
	}
	// The build it runs works here too.
	cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(t.TempDir(), "flotilla"), "../cmd/flotilla")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}
