package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/paypage/paypage/pkg/clientaddr"
	"github.com/paypage/paypage/pkg/egress"
)

// The deployment files (deploy/, Dockerfile) are checked against the
// binary's settings: they parse, every PAYPAGE_* variable they set is a
// setting and its value is accepted, ports agree across settings, container
// ports, services, probes and network policies, the master key and the
// Redis password come from secrets, Redis speaks TLS to an ACL user, and
// the compose file trusts no X-Forwarded-For while it publishes the port.

const deployDir = "../../deploy"

// obj is a parsed YAML mapping.
type obj = map[string]any

// get walks a path of keys (and list indexes) through parsed YAML.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(obj)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, path ...any) string { s, _ := get(v, path...).(string); return s }
func list(v any, path ...any) []any { l, _ := get(v, path...).([]any); return l }

// num reads a YAML number or numeric string.
func num(v any, path ...any) int {
	switch x := get(v, path...).(type) {
	case int:
		return x
	case string:
		n, _ := strconv.Atoi(x)
		return n
	}
	return 0
}

// readYAML parses every document of a YAML file.
func readYAML(t *testing.T, name string) []obj {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, name))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []obj
	for {
		var d obj
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
}

// find returns the object of a kind and name.
func find(t *testing.T, docs []obj, kind, name string) obj {
	t.Helper()
	for _, d := range docs {
		if str(d, "kind") == kind && str(d, "metadata", "name") == name {
			return d
		}
	}
	t.Fatalf("no %s %s", kind, name)
	return nil
}

// settingOf returns the setting of an environment variable, nil if none.
func settingOf(env string) *setting {
	for _, s := range settings {
		if s.env == env {
			return s
		}
	}
	return nil
}

// checkEnv checks that a PAYPAGE_* variable is a setting and takes value
// (a value with $(VAR) or ${VAR} in it is checked with those left out).
func checkEnv(t *testing.T, where, name, value string) {
	t.Helper()
	if !strings.HasPrefix(name, "PAYPAGE_") || name == "PAYPAGE_MASTER_KEY" {
		return
	}
	s := settingOf(name)
	if s == nil {
		t.Errorf("%s sets %s, which is no setting of the binary", where, name)
		return
	}
	if strings.Contains(value, "$") {
		return
	}
	var c Config
	if err := s.set(&c, value); err != nil {
		t.Errorf("%s: %s=%q is refused: %v", where, name, value, err)
	}
}

// portOf is the port of a "host:port" setting.
func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// redisConf reads deploy/redis.conf's directives.
func redisConf(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(deployDir, "redis.conf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	conf := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, _ := strings.Cut(line, " ")
		conf[k] = strings.Trim(strings.TrimSpace(v), `"`)
	}
	return conf
}

func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	kz := readYAML(t, "kustomization.yaml")[0]
	if !slices.Contains(list(kz, "resources"), any("kubernetes.yaml")) || str(kz, "configMapGenerator", 0, "name") != "redis-config" ||
		str(kz, "configMapGenerator", 0, "files", 0) != "redis.conf" {
		t.Fatalf("kustomization: %v", kz)
	}
	docs := readYAML(t, "kubernetes.yaml")
	dep := find(t, docs, "Deployment", "paypage")
	pod := get(dep, "spec", "template", "spec")
	c := get(pod, "containers", 0)
	if get(pod, "securityContext", "runAsNonRoot") != true || num(pod, "securityContext", "runAsUser") == 0 {
		t.Error("paypage may run as root")
	}

	ports := map[string]int{}
	for _, p := range list(c, "ports") {
		ports[str(p, "name")] = num(p, "containerPort")
	}
	env := map[string]any{}
	for _, e := range list(c, "env") {
		name := str(e, "name")
		env[name] = e
		checkEnv(t, "the Deployment", name, str(e, "value"))
	}
	for setting, port := range map[string]string{"PAYPAGE_ADDR": "http", "PAYPAGE_METRICS_ADDR": "metrics", "PAYPAGE_PROCESSOR_ADDR": "processor"} {
		if got := portOf(t, str(env[setting], "value")); got != ports[port] || got == 0 {
			t.Errorf("%s listens on %d, the container port %q is %d", setting, got, port, ports[port])
		}
	}
	for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
		if str(c, probe, "httpGet", "path") != path || str(c, probe, "httpGet", "port") != "http" {
			t.Errorf("%s: %v", probe, get(c, probe))
		}
	}

	// The master key and the Redis password come from Secrets, never inline.
	if get(env["PAYPAGE_MASTER_KEY"], "value") != nil || str(env["PAYPAGE_MASTER_KEY"], "valueFrom", "secretKeyRef", "name") == "" {
		t.Errorf("the master key is not from a Secret: %v", env["PAYPAGE_MASTER_KEY"])
	}
	store, err := url.Parse(str(env["PAYPAGE_STORE"], "value"))
	if err != nil || store.Scheme != "rediss" || store.User.Username() != "paypage" {
		t.Fatalf("PAYPAGE_STORE %v: not TLS to the ACL user paypage (%v)", store, err)
	}
	pw, _ := store.User.Password()
	ref := regexp.MustCompile(`^\$\((\w+)\)$`).FindStringSubmatch(pw)
	if ref == nil || str(env[ref[1]], "valueFrom", "secretKeyRef", "name") == "" {
		t.Errorf("the Redis password %q is not a variable from a Secret", pw)
	}

	// Services expose the pages, and the processor API apart; never metrics.
	svcPorts := func(name string) []string {
		var out []string
		for _, p := range list(find(t, docs, "Service", name), "spec", "ports") {
			out = append(out, str(p, "targetPort"))
		}
		return out
	}
	if got := svcPorts("paypage"); !slices.Equal(got, []string{"http"}) {
		t.Errorf("Service paypage exposes %v", got)
	}
	if got := svcPorts("paypage-processor"); !slices.Equal(got, []string{"processor"}) {
		t.Errorf("Service paypage-processor exposes %v", got)
	}

	// Who reaches which port: the ingress controller the pages, the
	// processor's network the processor API, monitoring the metrics.
	np := find(t, docs, "NetworkPolicy", "paypage")
	if !slices.Equal(list(np, "spec", "policyTypes"), []any{"Ingress", "Egress"}) {
		t.Errorf("policy types %v", list(np, "spec", "policyTypes"))
	}
	reach := map[int][]any{}
	for _, rule := range list(np, "spec", "ingress") {
		for _, p := range list(rule, "ports") {
			reach[num(p, "port")] = append(reach[num(p, "port")], list(rule, "from")...)
		}
	}
	have := map[int]bool{}
	for _, p := range ports {
		have[p] = true
	}
	for port := range reach {
		if !have[port] {
			t.Errorf("the policy opens port %d, which the container does not have", port)
		}
	}
	http, proc, metrics := reach[ports["http"]], reach[ports["processor"]], reach[ports["metrics"]]
	if len(http) != 1 || get(http[0], "ipBlock") != nil || str(http[0], "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name") != "ingress-nginx" ||
		get(http[0], "podSelector") == nil {
		t.Errorf("the pages are open to %v, not the ingress controller alone", http)
	}
	if len(proc) != 1 || str(proc[0], "ipBlock", "cidr") == "" || str(proc[0], "ipBlock", "cidr") == "0.0.0.0/0" || get(proc[0], "namespaceSelector") != nil {
		t.Errorf("the processor API is open to %v, not the processor's network alone", proc)
	}
	if len(metrics) != 1 || get(metrics[0], "ipBlock") != nil {
		t.Errorf("the metrics are open to %v", metrics)
	}
	checkEgressPolicy(t, np)
	checkMemoryLimit(t, c, env)

	// Redis: its config from redis.conf, TLS on the port paypage dials, the
	// ACL file from the Secret, reachable from paypage alone.
	conf := redisConf(t)
	if conf["port"] != "0" || conf["tls-port"] != store.Port() || conf["maxmemory-policy"] != "noeviction" || conf["appendonly"] != "yes" ||
		conf["tls-protocols"] != "TLSv1.2 TLSv1.3" {
		t.Errorf("redis.conf: %v (paypage dials port %s)", conf, store.Port())
	}
	rs := find(t, docs, "StatefulSet", "redis")
	rpod := get(rs, "spec", "template", "spec")
	rc := get(rpod, "containers", 0)
	if strconv.Itoa(num(rc, "ports", 0, "containerPort")) != store.Port() || str(find(t, docs, "Service", "redis"), "spec", "ports", 0, "targetPort") != str(rc, "ports", 0, "name") {
		t.Errorf("Redis's ports do not match %s", store.Port())
	}
	mounts := map[string]string{} // mount path -> volume
	for _, m := range list(rc, "volumeMounts") {
		mounts[str(m, "mountPath")] = str(m, "name")
	}
	volumes := map[string]any{}
	for _, v := range list(rpod, "volumes") {
		volumes[str(v, "name")] = v
	}
	fileFrom := func(path string) (secret, key string) {
		dir, file := filepath.Split(path)
		v := volumes[mounts[strings.TrimSuffix(dir, "/")]]
		if cm := str(v, "configMap", "name"); cm != "" {
			return "configmap:" + cm, file
		}
		secret = str(v, "secret", "secretName")
		for _, it := range list(v, "secret", "items") {
			if str(it, "path") == file {
				return secret, str(it, "key")
			}
		}
		return secret, file
	}
	for path, want := range map[string][2]string{
		"/etc/redis/redis.conf":  {"configmap:redis-config", "redis.conf"},
		conf["tls-cert-file"]:    {"paypage-redis-tls", "tls.crt"},
		conf["tls-key-file"]:     {"paypage-redis-tls", "tls.key"},
		conf["tls-ca-cert-file"]: {"paypage-redis-tls", "ca.crt"},
		conf["aclfile"]:          {"paypage-redis", "users.acl"},
	} {
		if s, k := fileFrom(path); s != want[0] || k != want[1] {
			t.Errorf("Redis reads %s from %s/%s, want %s/%s", path, s, k, want[0], want[1])
		}
	}
	if !slices.Equal(list(rc, "args"), []any{"/etc/redis/redis.conf"}) {
		t.Errorf("redis args %v", list(rc, "args"))
	}
	// paypage trusts Redis's CA, from the same Secret, for Redis alone:
	// never added to the system roots, which webhooks are checked against.
	caFile := str(env["PAYPAGE_STORE_CA"], "value")
	caVolume := ""
	for _, m := range list(c, "volumeMounts") {
		if str(m, "mountPath") == filepath.Dir(caFile) {
			caVolume = str(m, "name")
		}
	}
	for _, v := range list(pod, "volumes") {
		if str(v, "name") == caVolume && (str(v, "secret", "secretName") != "paypage-redis-tls" || str(v, "secret", "items", 0, "key") != "ca.crt" ||
			str(v, "secret", "items", 0, "path") != filepath.Base(caFile)) {
			t.Errorf("PAYPAGE_STORE_CA %s is not Redis's CA from paypage-redis-tls: %v", caFile, v)
		}
	}
	if caFile == "" || caVolume == "" {
		t.Errorf("paypage does not trust Redis's CA (PAYPAGE_STORE_CA %q, mounted from %q)", caFile, caVolume)
	}
	if _, ok := env["SSL_CERT_DIR"]; ok {
		t.Error("SSL_CERT_DIR adds a private CA to the roots webhooks are checked against")
	}
	// The trusted proxies are a value set per cluster, in kustomization.yaml.
	if str(env["PAYPAGE_TRUSTED_PROXIES"], "valueFrom", "configMapKeyRef", "name") != "paypage-proxies" ||
		str(env["PAYPAGE_TRUSTED_PROXIES"], "valueFrom", "configMapKeyRef", "key") != "trusted-proxies" {
		t.Errorf("PAYPAGE_TRUSTED_PROXIES is not from kustomization.yaml's paypage-proxies: %v", env["PAYPAGE_TRUSTED_PROXIES"])
	}
	proxies := ""
	for _, g := range list(kz, "configMapGenerator") {
		if str(g, "name") == "paypage-proxies" {
			for _, l := range list(g, "literals") {
				if v, ok := strings.CutPrefix(fmt.Sprint(l), "trusted-proxies="); ok {
					proxies = v
				}
			}
		}
	}
	checkEnv(t, "kustomization.yaml", "PAYPAGE_TRUSTED_PROXIES", proxies)
	if ps, err := clientaddr.ParsePrefixes(proxies); err != nil || len(ps) == 0 || slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Bits() == 0 }) {
		t.Errorf("trusted proxies %q: set the ingress controller's addresses, not everyone (%v)", proxies, err)
	}
	rnp := find(t, docs, "NetworkPolicy", "redis")
	if len(list(rnp, "spec", "ingress")) != 1 || str(rnp, "spec", "ingress", 0, "from", 0, "podSelector", "matchLabels", "app") != "paypage" ||
		len(list(rnp, "spec", "ingress", 0, "from")) != 1 {
		t.Errorf("Redis is open to %v", list(rnp, "spec", "ingress"))
	}
	// The make-secrets script makes every secret key the manifests read.
	script, err := os.ReadFile(filepath.Join(deployDir, "make-secrets.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"paypage-master-key --from-file=master.key=", "paypage-redis --from-file=password=", "--from-file=users.acl=",
		"paypage-redis-tls --from-file=ca.crt=", "--from-file=tls.crt=", "--from-file=tls.key="} {
		if !bytes.Contains(script, []byte(s)) {
			t.Errorf("make-secrets.sh does not say %q", s)
		}
	}
}

// checkEgressPolicy: the network policy's rule for webhooks leaves out
// every IPv4 range the egress guard refuses (its own table, egress.Refused4,
// and probes in each), and no rule opens IPv6.
func checkEgressPolicy(t *testing.T, np obj) {
	t.Helper()
	var except []netip.Prefix
	for _, rule := range list(np, "spec", "egress") {
		for _, to := range list(rule, "to") {
			cidr := str(to, "ipBlock", "cidr")
			if strings.Contains(cidr, ":") {
				t.Errorf("an egress rule opens IPv6 %s", cidr)
			}
			if cidr != "0.0.0.0/0" {
				continue
			}
			for _, e := range list(to, "ipBlock", "except") {
				p, err := netip.ParsePrefix(fmt.Sprint(e))
				if err != nil {
					t.Errorf("except %v: %v", e, err)
				}
				except = append(except, p)
			}
		}
	}
	covered := func(a netip.Addr, bits int) bool {
		for _, p := range except {
			if p.Bits() <= bits && p.Contains(a) {
				return true
			}
		}
		return false
	}
	refused := egress.Refused4()
	if len(refused) < 10 {
		t.Fatalf("the guard's table: %v", refused)
	}
	for _, p := range refused {
		if !covered(p.Addr(), p.Bits()) {
			t.Errorf("the guard refuses %s, the network policy lets webhooks reach it", p)
		}
	}
	for _, probe := range []string{"0.1.2.3", "10.1.2.3", "100.100.100.200", "127.0.0.1", "169.254.169.254", "172.16.0.1", "192.0.0.170", "192.0.2.1",
		"192.88.99.1", "192.168.1.1", "198.18.0.1", "198.51.100.1", "203.0.113.1", "224.0.0.251", "240.0.0.1", "255.255.255.255"} {
		a := netip.MustParseAddr(probe)
		if egress.CheckAddr(a) == nil {
			t.Errorf("the guard allows %s", probe)
		}
		if !covered(a, 32) {
			t.Errorf("the guard refuses %s, the network policy lets webhooks reach it", probe)
		}
	}
	if covered(netip.MustParseAddr("8.8.8.8"), 32) {
		t.Error("the network policy refuses public addresses")
	}
}

// checkMemoryLimit: the container sets GOMEMLIMIT between half its memory
// limit and the limit, and keeps paypage's connections bounded.
func checkMemoryLimit(t *testing.T, c any, env map[string]any) {
	t.Helper()
	limit := quantity(t, str(c, "resources", "limits", "memory"))
	soft := quantity(t, str(env["GOMEMLIMIT"], "value"))
	if soft <= limit/2 || soft >= limit {
		t.Errorf("GOMEMLIMIT %d bytes for a memory limit of %d", soft, limit)
	}
	if v, ok := env["PAYPAGE_MAX_CONNECTIONS"]; ok && str(v, "value") == "0" {
		t.Error("the manifest lifts the bound on connections")
	}
}

// quantity reads a size in bytes as Kubernetes (256Mi, 1Gi, 500M) or
// GOMEMLIMIT (200MiB) writes it.
func quantity(t *testing.T, s string) int64 {
	t.Helper()
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"B", 1}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s = n
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				t.Fatalf("size %q: %v", s, err)
			}
			return v * u.mult
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("size %q: %v", s, err)
	}
	return v
}

func TestRedisACLTemplate(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(deployDir, "redis-users.acl.in"))
	if err != nil {
		t.Fatal(err)
	}
	var users []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "user ") {
			users = append(users, l)
		}
	}
	if len(users) != 2 || users[0] != "user default off" || !strings.HasPrefix(users[1], "user paypage on >@PASSWORD@ ~pp:* ") ||
		!strings.Contains(users[1], "-@dangerous") || !strings.Contains(users[1], "-@admin") {
		t.Fatalf("ACL users: %q", users)
	}
}

func TestComposeFile(t *testing.T) {
	t.Parallel()
	doc := readYAML(t, "docker-compose.yml")[0]
	pp := get(doc, "services", "paypage")
	env := map[string]string{}
	for k, v := range get(pp, "environment").(obj) {
		env[k] = fmt.Sprint(v)
		checkEnv(t, "the compose file", k, env[k])
	}
	published := len(list(pp, "ports")) > 0
	if _, trusts := env["PAYPAGE_TRUSTED_PROXIES"]; trusts && published {
		t.Error("the compose file trusts X-Forwarded-For while it publishes the port")
	}
	addr := dockerfileEnv(t)["PAYPAGE_ADDR"]
	if a, ok := env["PAYPAGE_ADDR"]; ok {
		addr = a
	}
	public, err := url.Parse(env["PAYPAGE_PUBLIC_URL"])
	if err != nil || public.Scheme != map[bool]string{true: "https", false: "http"}[env["PAYPAGE_TLS_CERT"] != ""] {
		t.Errorf("PAYPAGE_PUBLIC_URL %q with PAYPAGE_TLS_CERT %q: the public URL must say what is served", env["PAYPAGE_PUBLIC_URL"], env["PAYPAGE_TLS_CERT"])
	}
	for _, p := range list(pp, "ports") {
		parts := strings.Split(fmt.Sprint(p), ":") // [[ip:]host:]container
		if num(parts[len(parts)-1]) != portOf(t, addr) {
			t.Errorf("publishes %v; paypage listens on %s", p, addr)
		}
		if len(parts) < 2 || parts[len(parts)-2] != public.Port() {
			t.Errorf("publishes %v; the public URL is %s", p, public)
		}
	}
	if get(pp, "deploy", "replicas") != nil && num(pp, "deploy", "replicas") > 1 && published {
		t.Error("several replicas cannot share one published port")
	}
	// Compose fills ${VAR} (or ${VAR:?message}) in from its --env-file.
	vars := regexp.MustCompile(`\$\{(\w+)[^}]*\}`)
	store, err := url.Parse(vars.ReplaceAllString(env["PAYPAGE_STORE"], "env.$1"))
	if err != nil || store.Scheme != "rediss" || store.User.Username() != "paypage" || store.Hostname() != "redis" {
		t.Fatalf("PAYPAGE_STORE %q (%v)", env["PAYPAGE_STORE"], err)
	}
	if pw, _ := store.User.Password(); pw != "env.REDIS_PASSWORD" {
		t.Errorf("the Redis password is %q, not from the secrets' env file", pw)
	}
	if !strings.HasPrefix(env["PAYPAGE_MASTER_KEY"], "${PAYPAGE_MASTER_KEY") && env["PAYPAGE_MASTER_KEY_FILE"] == "" {
		t.Errorf("the master key is not from the secrets")
	}
	// Redis mounts the same redis.conf, and each file it names.
	conf := redisConf(t)
	mounts := map[string]string{}
	for _, v := range list(doc, "services", "redis", "volumes") {
		parts := strings.Split(fmt.Sprint(v), ":")
		mounts[parts[1]] = parts[0]
	}
	if mounts["/etc/redis/redis.conf"] != "./redis.conf" || !slices.Equal(list(doc, "services", "redis", "command"), []any{"redis-server", "/etc/redis/redis.conf"}) {
		t.Errorf("compose's Redis does not run deploy/redis.conf: %v", mounts)
	}
	for _, f := range []string{conf["tls-cert-file"], conf["tls-key-file"], conf["tls-ca-cert-file"], conf["aclfile"]} {
		if !strings.HasPrefix(mounts[f], "./secrets/") {
			t.Errorf("compose's Redis has no %s", f)
		}
	}
	// paypage's files: its certificate, and Redis's CA for Redis alone.
	mine := map[string]string{}
	for _, v := range list(pp, "volumes") {
		parts := strings.Split(fmt.Sprint(v), ":")
		mine[parts[1]] = parts[0]
	}
	for setting, file := range map[string]string{"PAYPAGE_TLS_CERT": "./secrets/page.crt", "PAYPAGE_TLS_KEY": "./secrets/page.key", "PAYPAGE_STORE_CA": "./secrets/ca.crt"} {
		if mine[env[setting]] != file {
			t.Errorf("%s=%q is not %s mounted", setting, env[setting], file)
		}
	}
	if _, ok := env["SSL_CERT_DIR"]; ok {
		t.Error("SSL_CERT_DIR adds Redis's CA to the roots webhooks are checked against")
	}
}

// dockerfileEnv checks the Dockerfile's syntax (instructions, JSON forms,
// stages) and that its image runs as a non-root user, with settings the
// binary has, exposing the port it listens on; it returns the image's
// PAYPAGE_* environment.
func dockerfileEnv(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{"FROM": true, "RUN": true, "CMD": true, "LABEL": true, "EXPOSE": true, "ENV": true, "ADD": true, "COPY": true,
		"ENTRYPOINT": true, "VOLUME": true, "USER": true, "WORKDIR": true, "ARG": true, "ONBUILD": true, "STOPSIGNAL": true, "HEALTHCHECK": true, "SHELL": true}
	stages := map[string]bool{}
	env := map[string]string{}
	var user string
	var expose []int
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		instr, rest, _ := strings.Cut(line, " ")
		instr = strings.ToUpper(instr)
		if !known[instr] || strings.TrimSpace(rest) == "" {
			t.Errorf("Dockerfile line %d: %q", i+1, line)
			continue
		}
		if strings.HasPrefix(rest, "[") {
			var arr []string
			if err := json.Unmarshal([]byte(rest), &arr); err != nil {
				t.Errorf("Dockerfile line %d: %s is not a JSON array: %v", i+1, rest, err)
			}
		}
		f := strings.Fields(rest)
		switch instr {
		case "FROM":
			stages = map[string]bool{"": true, "build": stages["build"]} // a new stage: its env and user start afresh
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				stages[f[2]] = true
			}
			env, user, expose = map[string]string{}, "", nil
		case "COPY":
			for _, a := range f {
				if from, ok := strings.CutPrefix(a, "--from="); ok && !stages[from] {
					t.Errorf("COPY --from=%s: no such stage", from)
				}
			}
		case "ENV":
			for _, kv := range f {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					t.Errorf("ENV %q: write KEY=VALUE", kv)
				}
				env[k] = v
			}
		case "USER":
			user = f[0]
		case "EXPOSE":
			for _, p := range f {
				n, err := strconv.Atoi(strings.TrimSuffix(p, "/tcp"))
				if err != nil {
					t.Errorf("EXPOSE %s", p)
				}
				expose = append(expose, n)
			}
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("the image runs as %q: give a numeric non-root user (Kubernetes' runAsNonRoot can check only that)", user)
	}
	for k, v := range env {
		checkEnv(t, "the Dockerfile", k, v)
	}
	if !slices.Equal(expose, []int{portOf(t, env["PAYPAGE_ADDR"])}) {
		t.Errorf("EXPOSE %v; paypage listens on %s", expose, env["PAYPAGE_ADDR"])
	}
	return env
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	dockerfileEnv(t)
}

// make test runs every fuzz target: the Makefile's list names each Fuzz
// function of the repository, with its package.
func TestMakeFuzzesEveryTarget(t *testing.T) {
	t.Parallel()
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	fuzz := regexp.MustCompile(`(?m)^func (Fuzz\w+)\(`)
	n := 0
	err = filepath.WalkDir("../..", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range fuzz.FindAllStringSubmatch(string(b), -1) {
			n++
			target := "./" + filepath.ToSlash(filepath.Dir(strings.TrimPrefix(path, "../../"))) + ":" + m[1]
			if !bytes.Contains(mk, []byte(target)) {
				t.Errorf("the Makefile's FUZZ_TARGETS lack %s", target)
			}
		}
		return nil
	})
	if err != nil || n < 12 {
		t.Fatalf("%d fuzz targets found: %v", n, err)
	}
}
