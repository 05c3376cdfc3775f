package main

// The container image and the Kubernetes manifests make promises to each
// other and to the binary that no compiler checks: the preStop hook calls
// the binary at the path the image puts it, the probes reach the port the
// config listens on, the grace period covers the drain and the graceful
// stop. These tests read the real files and fail, naming the file and the
// rule, when one of those promises is broken.

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"gopkg.in/yaml.v3"
)

const (
	dockerfilePath = "../../Dockerfile"
	configPath     = "../../deploy/mediad.toml"
	manifestDir    = "../../deploy/kubernetes"
	// gracePeriodMargin is what the grace period must leave beyond the drain
	// wait and shutdown-timeout: time for the init to forward SIGTERM and
	// for the process to exit after its last phase.
	gracePeriodMargin = 5 * time.Second
)

// dockerfile is what the tests need of the Dockerfile, final stage only
// unless said.
type dockerfile struct {
	stages     int      // FROM instructions, all stages
	user       string   // USER
	entrypoint []string // ENTRYPOINT, exec form
	cmd        []string // CMD, exec form
	env        map[string]string
	copies     map[string]string // source -> destination, COPY from the build context
	expose     []string
	stopSignal string
}

// parseDockerfile reads the instructions of a Dockerfile: continuation
// lines joined, comments dropped. It knows only the instructions the tests
// look at.
func parseDockerfile(text string) (*dockerfile, error) {
	var instrs []string
	var cur strings.Builder
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\r\n")
		trimmed := strings.TrimSpace(line)
		// Docker drops comment and empty lines, even inside a continued
		// instruction.
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if rest, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(rest + " ")
			continue
		}
		cur.WriteString(trimmed)
		instrs = append(instrs, cur.String())
		cur.Reset()
	}
	if cur.Len() > 0 {
		instrs = append(instrs, cur.String())
	}

	var d dockerfile
	for _, in := range instrs {
		word, args, _ := strings.Cut(in, " ")
		args = strings.TrimSpace(args)
		switch strings.ToUpper(word) {
		case "FROM":
			// A new stage: what the earlier one said does not reach the image.
			d = dockerfile{stages: d.stages + 1, env: map[string]string{}, copies: map[string]string{}}
		case "USER":
			d.user = args
		case "ENTRYPOINT", "CMD":
			var v []string
			if err := json.Unmarshal([]byte(args), &v); err != nil {
				// The shell form runs /bin/sh -c as PID 1, which neither
				// forwards SIGTERM nor is mediad's init.
				return nil, fmt.Errorf("%s %s: want the exec form, a JSON array: %w", word, args, err)
			}
			if strings.ToUpper(word) == "CMD" {
				d.cmd = v
			} else {
				d.entrypoint = v
			}
		case "ENV":
			fields := strings.Fields(args)
			if len(fields) > 0 && strings.Contains(fields[0], "=") {
				// ENV K=V [K2=V2 ...]; values with spaces are not handled.
				for _, kv := range fields {
					k, v, _ := strings.Cut(kv, "=")
					d.env[k] = strings.Trim(v, `"`)
				}
			} else {
				// The legacy ENV K V.
				k, v, _ := strings.Cut(args, " ")
				d.env[k] = strings.TrimSpace(v)
			}
		case "COPY":
			// Only copies from the build context, with one source.
			var files []string
			fromStage := false
			for _, f := range strings.Fields(args) {
				switch {
				case strings.HasPrefix(f, "--from="):
					fromStage = true
				case !strings.HasPrefix(f, "--"):
					files = append(files, f)
				}
			}
			if !fromStage && len(files) == 2 {
				d.copies[files[0]] = files[1]
			}
		case "EXPOSE":
			d.expose = append(d.expose, strings.Fields(args)...)
		case "STOPSIGNAL":
			d.stopSignal = args
		}
	}
	return &d, nil
}

// uidGid parses a numeric USER uid[:gid].
func (d *dockerfile) uidGid() (uid, gid int64, err error) {
	u, g, hasGid := strings.Cut(d.user, ":")
	uid, err = strconv.ParseInt(u, 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("USER %q: want a numeric uid (Kubernetes can verify runAsNonRoot only for one): %w", d.user, err)
	}
	gid = -1
	if hasGid {
		if gid, err = strconv.ParseInt(g, 10, 64); err != nil {
			return 0, 0, fmt.Errorf("USER %q: want a numeric gid: %w", d.user, err)
		}
	}
	return uid, gid, nil
}

// The Kubernetes objects, as far as the tests read them.

type objectMeta struct {
	Name        string            `yaml:"name"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type k8sObject struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
	file       string
	node       *yaml.Node
}

// intOrString is a Kubernetes port: a number, or the name of a container
// port.
type intOrString struct {
	num   int
	name  string
	isNum bool
}

func (v *intOrString) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a number or a name", n.Line)
	}
	if n.Tag == "!!int" {
		i, err := strconv.Atoi(n.Value)
		if err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		*v = intOrString{num: i, isNum: true}
		return nil
	}
	*v = intOrString{name: n.Value}
	return nil
}

func (v intOrString) String() string {
	if v.isNum {
		return strconv.Itoa(v.num)
	}
	return strconv.Quote(v.name)
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

// selects reports whether s selects an object labelled labels. An empty
// selector selects nothing here: every selector in these manifests names
// mediad's pods.
func (s labelSelector) selects(labels map[string]string) bool {
	if len(s.MatchLabels) == 0 {
		return false
	}
	for k, v := range s.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

type probe struct {
	HTTPGet *struct {
		Path string      `yaml:"path"`
		Port intOrString `yaml:"port"`
	} `yaml:"httpGet"`
	FailureThreshold int `yaml:"failureThreshold"`
	PeriodSeconds    int `yaml:"periodSeconds"`
}

type securityContext struct {
	RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
	RunAsUser                *int64 `yaml:"runAsUser"`
	RunAsGroup               *int64 `yaml:"runAsGroup"`
	AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
	ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
	Capabilities             *struct {
		Drop []string `yaml:"drop"`
	} `yaml:"capabilities"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	StartupProbe   *probe `yaml:"startupProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	Lifecycle      *struct {
		PreStop *struct {
			Exec *struct {
				Command []string `yaml:"command"`
			} `yaml:"exec"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	SecurityContext *securityContext `yaml:"securityContext"`
	VolumeMounts    []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
}

// port resolves p, a number or the name of one of c's ports.
func (c *container) port(p intOrString) (int, error) {
	if p.isNum {
		return p.num, nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.name {
			return cp.ContainerPort, nil
		}
	}
	return 0, fmt.Errorf("container %s has no port named %s", c.Name, p)
}

type deployment struct {
	Spec struct {
		Strategy struct {
			Type          string `yaml:"type"`
			RollingUpdate *struct {
				MaxUnavailable intOrString `yaml:"maxUnavailable"`
			} `yaml:"rollingUpdate"`
		} `yaml:"strategy"`
		Selector labelSelector `yaml:"selector"`
		Template struct {
			Metadata objectMeta `yaml:"metadata"`
			Spec     struct {
				TerminationGracePeriodSeconds *int64          `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               securityContext `yaml:"securityContext"`
				Containers                    []container     `yaml:"containers"`
				Volumes                       []struct {
					Name      string `yaml:"name"`
					ConfigMap *struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type service struct {
	Spec struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string       `yaml:"name"`
			Port       int          `yaml:"port"`
			TargetPort *intOrString `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type networkPolicy struct {
	Spec struct {
		PodSelector labelSelector `yaml:"podSelector"`
		Ingress     []struct {
			From  []yaml.Node `yaml:"from"`
			Ports []struct {
				Port intOrString `yaml:"port"`
			} `yaml:"ports"`
		} `yaml:"ingress"`
	} `yaml:"spec"`
}

// deployFixture is everything the deployment files say, parsed.
type deployFixture struct {
	docker    *dockerfile
	config    []byte // deploy/mediad.toml
	objects   []k8sObject
	deploy    *deployment
	container *container
	// settings are the effective settings of the container in Kubernetes:
	// its args and env over the ConfigMap's file, resolved by loadOptions.
	settings options
}

func loadDeployFixture(t *testing.T) *deployFixture {
	t.Helper()
	f := &deployFixture{}
	b, err := os.ReadFile(dockerfilePath)
	if err != nil {
		t.Fatal(err)
	}
	if f.docker, err = parseDockerfile(string(b)); err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	if f.config, err = os.ReadFile(configPath); err != nil {
		t.Fatal(err)
	}

	files, err := filepath.Glob(filepath.Join(manifestDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s (%v)", manifestDir, err)
	}
	for _, file := range files {
		if filepath.Base(file) == "kustomization.yaml" {
			continue
		}
		objs, err := readObjects(file)
		if err != nil {
			t.Fatal(err)
		}
		f.objects = append(f.objects, objs...)
	}

	deployments := f.ofKind("Deployment")
	if len(deployments) != 1 {
		t.Fatalf("want one Deployment in %s, found %d", manifestDir, len(deployments))
	}
	f.deploy = new(deployment)
	if err := deployments[0].node.Decode(f.deploy); err != nil {
		t.Fatalf("%s: %v", deployments[0].file, err)
	}
	for i, c := range f.deploy.Spec.Template.Spec.Containers {
		if c.Name == "mediad" {
			f.container = &f.deploy.Spec.Template.Spec.Containers[i]
		}
	}
	if f.container == nil {
		t.Fatalf("%s: no container named mediad", deployments[0].file)
	}

	// The settings as the container will resolve them, with the
	// repository's mediad.toml standing in for the ConfigMap's copy (the
	// two are checked identical).
	args := f.containerArgs()
	cfgIdx := configArg(args)
	if cfgIdx < 0 {
		t.Fatalf("deployment.yaml: the container's arguments %q do not pass --config FILE", args)
	}
	local := slices.Clone(args)
	local[cfgIdx+1] = configPath
	env := map[string]string{}
	for k, v := range f.docker.env {
		env[k] = v
	}
	for _, e := range f.container.Env {
		env[e.Name] = e.Value
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if f.settings, err = loadOptions(local, lookup, io.Discard); err != nil {
		t.Fatalf("the container's settings (args %q, %s) are refused: %v", args, configPath, err)
	}
	return f
}

// containerArgs are the arguments mediad gets in the pod: the container's
// args, or else the image's CMD.
func (f *deployFixture) containerArgs() []string {
	if f.container.Args != nil {
		return f.container.Args
	}
	return f.docker.cmd
}

// containerConfig is the --config the container passes, or "".
func (f *deployFixture) containerConfig() string {
	args := f.containerArgs()
	if i := configArg(args); i >= 0 {
		return args[i+1]
	}
	return ""
}

// configArg is the index of a "--config FILE" pair in args, or -1.
func configArg(args []string) int {
	i := slices.IndexFunc(args, func(a string) bool { return a == "--config" || a == "-config" })
	if i < 0 || i+1 >= len(args) {
		return -1
	}
	return i
}

// readObjects decodes every YAML document of file.
func readObjects(file string) ([]k8sObject, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var objs []k8sObject
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		var o k8sObject
		if err := n.Decode(&o); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if o.Kind == "" || o.APIVersion == "" || o.Metadata.Name == "" {
			return nil, fmt.Errorf("%s: a document without kind, apiVersion or metadata.name", file)
		}
		o.file, o.node = filepath.Base(file), &n
		objs = append(objs, o)
	}
	return objs, nil
}

func (f *deployFixture) ofKind(kind string) []k8sObject {
	var out []k8sObject
	for _, o := range f.objects {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func listenPort(addr string) (host string, port int, err error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err = strconv.Atoi(p)
	return host, port, err
}

// adminPort is the port of the effective `http` setting, which must be
// reachable from the kubelet (the pod's IP), not loopback only.
func (f *deployFixture) adminPort(t *testing.T) int {
	t.Helper()
	host, port, err := listenPort(f.settings.httpAddr)
	if err != nil {
		t.Fatalf("http = %q in %s: %v", f.settings.httpAddr, configPath, err)
	}
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		t.Errorf("http = %q in %s listens on loopback only: the kubelet's probes come to the pod's IP and would all fail", f.settings.httpAddr, configPath)
	}
	return port
}

func TestDeployConfigKeysAreFlags(t *testing.T) {
	var m map[string]any
	if _, err := toml.Decode(string(readFile(t, configPath)), &m); err != nil {
		t.Fatalf("%s: %v", configPath, err)
	}
	if len(m) == 0 {
		t.Fatalf("%s sets nothing", configPath)
	}
	known := settingNames()
	for k := range m {
		if !slices.Contains(known, k) {
			t.Errorf("%s: key %q is not a mediad setting (known: %s)", configPath, k, strings.Join(known, ", "))
		}
	}
	// Values the rest of these tests read must be set explicitly, not left
	// to defaults that could change under the manifests.
	for _, k := range []string{"http", "rtmp", "record-dir", "shutdown-timeout"} {
		if _, ok := m[k]; !ok {
			t.Errorf("%s must set %s explicitly: the manifests depend on it", configPath, k)
		}
	}
	if _, err := loadOptions([]string{"--config", configPath}, func(string) (string, bool) { return "", false }, io.Discard); err != nil {
		t.Errorf("mediad refuses %s: %v", configPath, err)
	}
}

func TestDeployDockerfile(t *testing.T) {
	f := loadDeployFixture(t)
	d := f.docker
	if d.stages < 2 {
		t.Errorf("Dockerfile has %d FROM stage(s), want a multi-stage build (a build stage and a runtime stage)", d.stages)
	}
	uid, gid, err := d.uidGid()
	if err != nil {
		t.Errorf("Dockerfile: %v", err)
	} else if uid == 0 || gid == 0 {
		t.Errorf("Dockerfile USER %q runs as root; want a non-root uid and gid", d.user)
	}
	if len(d.entrypoint) == 0 || !path.IsAbs(d.entrypoint[0]) {
		// An upgrade, and the init for its child, start argv[0] again.
		t.Errorf("Dockerfile ENTRYPOINT %q: want the mediad binary by absolute path", d.entrypoint)
	}
	if dst, ok := d.copies["deploy/mediad.toml"]; !ok {
		t.Errorf("Dockerfile does not COPY deploy/mediad.toml into the image")
	} else if i := configArg(d.cmd); i < 0 || d.cmd[i+1] != dst {
		t.Errorf("Dockerfile CMD %q does not pass --config %s, where it copies deploy/mediad.toml", d.cmd, dst)
	}
	if mode, ok := d.env[initEnv]; ok {
		if want, err := initWanted(mode, 1); err != nil || !want {
			t.Errorf("Dockerfile ENV %s=%s: as PID 1 mediad would not run its init (%v), and the container would end at the first upgrade", initEnv, mode, err)
		}
	}
	if d.stopSignal != "" && d.stopSignal != "SIGTERM" {
		t.Errorf("Dockerfile STOPSIGNAL %s: mediad's graceful stop is SIGTERM", d.stopSignal)
	}
	for name, addr := range map[string]string{"rtmp": f.settings.rtmpAddr, "http": f.settings.httpAddr} {
		_, port, err := listenPort(addr)
		if err != nil {
			t.Errorf("%s = %q: %v", name, addr, err)
			continue
		}
		if !slices.Contains(d.expose, strconv.Itoa(port)) && !slices.Contains(d.expose, strconv.Itoa(port)+"/tcp") {
			t.Errorf("Dockerfile EXPOSE %q lacks %d, the %s port of %s", d.expose, port, name, configPath)
		}
	}
}

func TestDeployConfigMapMatchesConfigFile(t *testing.T) {
	f := loadDeployFixture(t)
	// The ConfigMap the Deployment mounts, and where.
	var cmName, mountPath string
	for _, v := range f.deploy.Spec.Template.Spec.Volumes {
		if v.ConfigMap == nil {
			continue
		}
		for _, m := range f.container.VolumeMounts {
			if m.Name == v.Name {
				if m.SubPath != "" {
					t.Errorf("deployment.yaml mounts ConfigMap %s with subPath: such a mount never sees ConfigMap updates", v.ConfigMap.Name)
				}
				cmName, mountPath = v.ConfigMap.Name, m.MountPath
			}
		}
	}
	if cmName == "" {
		t.Fatal("deployment.yaml mounts no ConfigMap into the mediad container")
	}
	if want, got := path.Join(mountPath, "mediad.toml"), f.containerConfig(); got != want {
		t.Errorf("deployment.yaml: the container reads --config %s, but ConfigMap %s puts mediad.toml at %s", got, cmName, want)
	}
	var found bool
	for _, o := range f.ofKind("ConfigMap") {
		if o.Metadata.Name != cmName {
			continue
		}
		found = true
		var cm struct {
			Data map[string]string `yaml:"data"`
		}
		if err := o.node.Decode(&cm); err != nil {
			t.Fatalf("%s: %v", o.file, err)
		}
		got, ok := cm.Data["mediad.toml"]
		if !ok {
			t.Fatalf("%s: ConfigMap %s has no key mediad.toml", o.file, cmName)
		}
		if got != string(f.config) {
			t.Errorf("%s: mediad.toml differs from %s; keep them identical (first difference at byte %d)", o.file, configPath, firstDiff(got, string(f.config)))
		}
	}
	if !found {
		t.Errorf("deployment.yaml mounts ConfigMap %s, which no manifest defines", cmName)
	}
}

func firstDiff(a, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestDeployProbes(t *testing.T) {
	f := loadDeployFixture(t)
	c := f.container
	admin := f.adminPort(t)
	for _, p := range []struct {
		name  string
		probe *probe
		path  string
	}{
		{"startupProbe", c.StartupProbe, "/readyz"},
		{"readinessProbe", c.ReadinessProbe, "/readyz"},
		{"livenessProbe", c.LivenessProbe, "/healthz"},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("deployment.yaml: the mediad container has no httpGet %s", p.name)
			continue
		}
		if p.probe.HTTPGet.Path != p.path {
			t.Errorf("deployment.yaml: %s asks %s, want %s", p.name, p.probe.HTTPGet.Path, p.path)
		}
		port, err := c.port(p.probe.HTTPGet.Port)
		if err != nil {
			t.Errorf("deployment.yaml: %s: %v", p.name, err)
		} else if port != admin {
			t.Errorf("deployment.yaml: %s goes to port %d, but mediad's admin HTTP listens on %q (%s)", p.name, port, f.settings.httpAddr, configPath)
		}
	}
}

func TestDeployPreStopDrains(t *testing.T) {
	f := loadDeployFixture(t)
	c := f.container
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec == nil {
		t.Fatal("deployment.yaml: the mediad container has no preStop exec hook; without `mediad drain` the pod is stopped while load balancers still send it clients")
	}
	cmd := c.Lifecycle.PreStop.Exec.Command
	if len(cmd) < 2 || cmd[1] != "drain" {
		t.Fatalf("deployment.yaml: preStop runs %q, want mediad drain", cmd)
	}
	if len(f.docker.entrypoint) == 0 || cmd[0] != f.docker.entrypoint[0] {
		t.Errorf("deployment.yaml: preStop runs %s, but the image's mediad is at %q (Dockerfile ENTRYPOINT)", cmd[0], f.docker.entrypoint)
	}
	fs, addr, wait := drainFlags(io.Discard)
	if err := fs.Parse(cmd[2:]); err != nil || fs.NArg() > 0 {
		t.Fatalf("deployment.yaml: preStop arguments %q are not ones `mediad drain` takes: %v", cmd[2:], err)
	}
	var waitSet bool
	fs.Visit(func(fl *flag.Flag) { waitSet = waitSet || fl.Name == "wait" })
	if !waitSet || *wait <= 0 {
		t.Errorf("deployment.yaml: preStop %q must pass a positive --wait, the time load balancers need to stop sending new clients", cmd)
	}
	host, port, err := listenPort(*addr)
	if err != nil {
		t.Fatalf("deployment.yaml: preStop --http %q: %v", *addr, err)
	}
	if admin := f.adminPort(t); port != admin {
		t.Errorf("deployment.yaml: preStop drains through port %d, but mediad's admin HTTP listens on %q", port, f.settings.httpAddr)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		t.Errorf("deployment.yaml: preStop --http %q: want the loopback address, the hook runs inside the pod", *addr)
	}

	grace := 30 * time.Second // Kubernetes' default
	if g := f.deploy.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if need := *wait + f.settings.shutdownTimeout + gracePeriodMargin; grace < need {
		t.Errorf("deployment.yaml: terminationGracePeriodSeconds is %s, want at least %s: preStop wait %s + shutdown-timeout %s + %s margin (the kubelet counts the preStop hook inside the grace period, then SIGKILLs)",
			grace, need, *wait, f.settings.shutdownTimeout, gracePeriodMargin)
	}
}

func TestDeploySecurityContext(t *testing.T) {
	f := loadDeployFixture(t)
	pod := f.deploy.Spec.Template.Spec.SecurityContext
	c := f.container.SecurityContext
	if c == nil {
		c = &securityContext{}
	}
	nonRoot, uid := pod.RunAsNonRoot, pod.RunAsUser
	if c.RunAsNonRoot != nil {
		nonRoot = c.RunAsNonRoot
	}
	if c.RunAsUser != nil {
		uid = c.RunAsUser
	}
	if nonRoot == nil || !*nonRoot {
		t.Error("deployment.yaml: the mediad container must set runAsNonRoot: true")
	}
	wantUID, _, err := f.docker.uidGid()
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	if uid == nil || *uid != wantUID {
		// Another uid could not replace the image's binary, owned by the
		// image's user, in an in-place upgrade.
		t.Errorf("deployment.yaml: runAsUser %v, want the Dockerfile's USER %d, which owns /opt/mediad/bin", deref(uid), wantUID)
	}
	if c.AllowPrivilegeEscalation == nil || *c.AllowPrivilegeEscalation {
		t.Error("deployment.yaml: the mediad container must set allowPrivilegeEscalation: false")
	}
	if c.Capabilities == nil || !slices.Contains(c.Capabilities.Drop, "ALL") {
		t.Error("deployment.yaml: the mediad container must drop ALL capabilities (it binds no port below 1024)")
	}
	if c.ReadOnlyRootFilesystem != nil && *c.ReadOnlyRootFilesystem {
		t.Error("deployment.yaml: readOnlyRootFilesystem: true forbids the in-place upgrade, which writes the new binary into /opt/mediad/bin")
	}
}

func deref(p *int64) any {
	if p == nil {
		return "unset"
	}
	return *p
}

func TestDeployWiring(t *testing.T) {
	f := loadDeployFixture(t)
	d := f.deploy.Spec
	podLabels := d.Template.Metadata.Labels
	if !d.Selector.selects(podLabels) {
		t.Errorf("deployment.yaml: selector %v does not select its own pod template's labels %v", d.Selector.MatchLabels, podLabels)
	}
	if ru := d.Strategy.RollingUpdate; d.Strategy.Type != "RollingUpdate" || ru == nil || !ru.MaxUnavailable.isNum || ru.MaxUnavailable.num != 0 {
		t.Error("deployment.yaml: want strategy RollingUpdate with maxUnavailable 0, so that a rollout never leaves publishers without a pod to reconnect to")
	}

	if c := f.container.Command; c != nil && !slices.Equal(c, f.docker.entrypoint) {
		t.Errorf("deployment.yaml: command %q replaces the image's ENTRYPOINT %q; mediad must run from the image's path, where the preStop hook and upgrades find it", c, f.docker.entrypoint)
	}

	// Recordings on a volume, at the path mediad writes them.
	var mounted bool
	for _, m := range f.container.VolumeMounts {
		mounted = mounted || path.Clean(m.MountPath) == path.Clean(f.settings.recordDir)
	}
	if !mounted {
		t.Errorf("deployment.yaml: no volume is mounted at record-dir %q (%s)", f.settings.recordDir, configPath)
	}

	_, rtmp, err := listenPort(f.settings.rtmpAddr)
	if err != nil {
		t.Fatalf("rtmp = %q: %v", f.settings.rtmpAddr, err)
	}
	admin := f.adminPort(t)

	// Every Service sends to mediad's pods, on ports mediad listens on.
	served := map[int]bool{}
	for _, o := range f.ofKind("Service") {
		var s service
		if err := o.node.Decode(&s); err != nil {
			t.Fatalf("%s: %v", o.file, err)
		}
		if !(labelSelector{MatchLabels: s.Spec.Selector}).selects(podLabels) {
			t.Errorf("%s: Service %s selector %v does not select mediad's pods %v", o.file, o.Metadata.Name, s.Spec.Selector, podLabels)
		}
		for _, p := range s.Spec.Ports {
			target := intOrString{num: p.Port, isNum: true}
			if p.TargetPort != nil {
				target = *p.TargetPort
			}
			port, err := f.container.port(target)
			if err != nil {
				t.Errorf("%s: Service %s port %s: %v", o.file, o.Metadata.Name, p.Name, err)
				continue
			}
			if port != rtmp && port != admin {
				t.Errorf("%s: Service %s sends port %s to %d, where mediad does not listen (rtmp %d, admin %d)", o.file, o.Metadata.Name, p.Name, port, rtmp, admin)
			}
			served[port] = true
		}
	}
	if !served[rtmp] {
		t.Errorf("no Service exposes the RTMP port %d", rtmp)
	}

	// The NetworkPolicy lets RTMP in and keeps the admin port restricted.
	nps := f.ofKind("NetworkPolicy")
	if len(nps) == 0 {
		t.Error("no NetworkPolicy: the admin port, which takes unauthenticated upgrade and drain requests, listens on the pod's IP")
	}
	for _, o := range nps {
		var np networkPolicy
		if err := o.node.Decode(&np); err != nil {
			t.Fatalf("%s: %v", o.file, err)
		}
		if !np.Spec.PodSelector.selects(podLabels) {
			t.Errorf("%s: NetworkPolicy %s does not select mediad's pods %v", o.file, o.Metadata.Name, podLabels)
		}
		rtmpOpen, adminAllowed := false, false
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				port, err := f.container.port(p.Port)
				if err != nil {
					t.Errorf("%s: %v", o.file, err)
					continue
				}
				switch port {
				case rtmp:
					rtmpOpen = rtmpOpen || len(rule.From) == 0
				case admin:
					adminAllowed = true
					if len(rule.From) == 0 {
						t.Errorf("%s: NetworkPolicy %s opens the admin port %d to everyone", o.file, o.Metadata.Name, admin)
					}
				}
			}
			if len(rule.Ports) == 0 && len(rule.From) == 0 {
				t.Errorf("%s: NetworkPolicy %s has a rule that opens every port to everyone, the admin port %d included", o.file, o.Metadata.Name, admin)
			}
		}
		if !rtmpOpen {
			t.Errorf("%s: NetworkPolicy %s does not let publishers reach RTMP port %d", o.file, o.Metadata.Name, rtmp)
		}
		if !adminAllowed {
			t.Errorf("%s: NetworkPolicy %s lets nobody scrape the admin port %d", o.file, o.Metadata.Name, admin)
		}
	}
}

func TestDeployKustomizationListsEveryManifest(t *testing.T) {
	var k struct {
		Resources []string `yaml:"resources"`
	}
	if err := yaml.Unmarshal(readFile(t, filepath.Join(manifestDir, "kustomization.yaml")), &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	files, err := filepath.Glob(filepath.Join(manifestDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, file := range files {
		if b := filepath.Base(file); b != "kustomization.yaml" {
			want = append(want, b)
		}
	}
	got := slices.Sorted(slices.Values(k.Resources))
	if !slices.Equal(got, want) {
		t.Errorf("kustomization.yaml resources %q, want every manifest of the directory %q", got, want)
	}
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
