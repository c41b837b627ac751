//! The deploy artifacts (Grafana dashboard, Prometheus alert rules, runbook) against what the
//! proxy really exports: every metric name, label name and literal label value they use must
//! appear in a real `/metrics` scrape of the binary, so a rename in `src/metrics.rs` or
//! `src/outcome.rs` breaks this test instead of silently blanking a panel or an alert.
//! If `promtool` is installed, the scrape is also linted with `promtool check metrics`.

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use harness::{notification, repo_path, twilio_request, Behaviour, MockUpstream, Proxy, ProxySpec};

const DASHBOARD: &str = "deploy/grafana/twilio-notify-proxy.json";
const ALERTS: &str = "deploy/prometheus/alerts.yaml";
const RUNBOOK: &str = "docs/runbook.md";
const JOB: &str = "twilio-notify-proxy";

/// Labels Prometheus adds at scrape time; any selector may use them.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

// ---------------------------------------------------------------------------------------------
// The real scrape

/// `/metrics` of the real binary, with a buffer configured (so the buffer gauges exist), a route
/// taking Twilio's error events (so both route kinds are exported) and one forwarded
/// notification behind it. Taken once and shared by the tests.
fn scrape() -> &'static str {
    static SCRAPE: OnceLock<String> = OnceLock::new();
    SCRAPE.get_or_init(|| {
        let upstream = MockUpstream::start(Behaviour::status(200, "ok"));
        let dir = tempfile::tempdir().unwrap();
        let mut spec = ProxySpec::new(upstream.addr);
        spec.top_extra = format!("buffer:\n  path: {}", dir.path().join("b.redb").display());
        spec.route_extra = format!(
            "    on_exhausted: buffer{}",
            harness::events::errors_route()
        );
        let proxy = Proxy::start(spec);
        let response = proxy.send(&twilio_request(&notification()));
        assert_eq!(response.status, 200, "{}", response.text());
        proxy.metrics()
    })
}

/// One metric family of the scrape: its type and every sample's name and labels.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    /// label name -> values seen on any sample of the family (`le` included for histograms).
    labels: BTreeMap<String, BTreeSet<String>>,
}

struct Exported {
    families: BTreeMap<String, Family>,
}

impl Exported {
    fn parse(text: &str) -> Exported {
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
                families.entry(name.to_string()).or_default().kind = kind.trim().to_string();
            }
        }
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (name, labels) = parse_sample(line);
            let family = Self::family_of(&families, &name)
                .unwrap_or_else(|| panic!("sample {name} has no # TYPE line"))
                .to_string();
            let family = families.get_mut(&family).unwrap();
            for (k, v) in labels {
                family.labels.entry(k).or_default().insert(v);
            }
        }
        Exported { families }
    }

    /// The family a sample or selector name belongs to: the name itself, or a histogram's
    /// `_bucket`/`_sum`/`_count` series.
    fn family_of<'a>(families: &'a BTreeMap<String, Family>, name: &str) -> Option<&'a str> {
        if let Some((k, _)) = families.get_key_value(name) {
            return Some(k);
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if let Some((k, f)) = families.get_key_value(base) {
                    if f.kind == "histogram" || (f.kind == "summary" && suffix != "_bucket") {
                        return Some(k);
                    }
                }
            }
        }
        None
    }

    fn resolve(&self, name: &str) -> Option<&Family> {
        Self::family_of(&self.families, name).map(|k| &self.families[k])
    }
}

/// `name{a="x",b="y"} 1` -> (name, labels).
fn parse_sample(line: &str) -> (String, Vec<(String, String)>) {
    let end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = line[..end].to_string();
    let mut labels = Vec::new();
    if line[end..].starts_with('{') {
        let bytes = line.as_bytes();
        let mut i = end + 1;
        while i < bytes.len() && bytes[i] != b'}' {
            let eq = i + line[i..].find('=').expect("label=");
            let key = line[i..eq].trim_start_matches(',').trim().to_string();
            assert_eq!(bytes[eq + 1], b'"', "{line}");
            let mut j = eq + 2;
            let mut value = String::new();
            while bytes[j] != b'"' {
                if bytes[j] == b'\\' {
                    j += 1;
                }
                value.push(bytes[j] as char);
                j += 1;
            }
            labels.push((key, value));
            i = j + 1;
            if i < bytes.len() && bytes[i] == b',' {
                i += 1;
            }
        }
    }
    (name, labels)
}

// ---------------------------------------------------------------------------------------------
// Finding metric names in expressions

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

/// Every identifier starting with `notify_proxy_` anywhere in `text` (the simple scan: finds
/// names in any string, PromQL or not, e.g. Grafana's `label_values(...)`).
fn notify_proxy_names(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(pos) = text[i..].find("notify_proxy_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && is_ident(bytes[end]) {
            end += 1;
        }
        if start == 0 || !is_ident(bytes[start - 1]) {
            out.push(text[start..end].to_string());
        }
        i = end;
    }
    out
}

/// A vector selector found in a PromQL expression: the metric name and its label matchers
/// (name, operator, value).
#[derive(Debug)]
struct Selector {
    metric: String,
    matchers: Vec<(String, String, String)>,
}

const AGGREGATIONS: [&str; 12] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];
const GROUPING: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const KEYWORDS: [&str; 7] = ["and", "or", "unless", "bool", "offset", "inf", "nan"];

/// A small PromQL scanner: returns every vector selector (a metric name, not a function,
/// aggregation, keyword, label name or string). Grafana variables (`$route`,
/// `$__rate_interval`) are skipped.
fn selectors(expr: &str) -> Vec<Selector> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    // Index just past the string starting at `i` (b[i] is the quote).
    let skip_string = |i: usize| {
        let quote = b[i];
        let mut j = i + 1;
        while j < b.len() && b[j] != quote {
            if b[j] == b'\\' && quote != b'`' {
                j += 1;
            }
            j += 1;
        }
        j + 1
    };
    // Index just past the bracket group opened at `i`.
    let skip_group = |i: usize, open: u8, close: u8| {
        let mut depth = 0;
        let mut j = i;
        while j < b.len() {
            match b[j] {
                b'"' | b'\'' | b'`' => {
                    j = skip_string(j);
                    continue;
                }
                c if c == open => depth += 1,
                c if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return j + 1;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        panic!("unbalanced {} in {expr}", open as char);
    };
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' || c == b'`' {
            i = skip_string(i);
        } else if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'{' {
            i = skip_group(i, b'{', b'}'); // a selector without a metric name
        } else if c == b'[' {
            i = skip_group(i, b'[', b']');
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_') {
                i += 1;
            }
        } else if c == b'$' {
            i += 1;
            while i < b.len() && (is_ident(b[i]) || b[i] == b'{' || b[i] == b'}') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            let next = skip_ws(i);
            if GROUPING.contains(&word) {
                if b.get(next) == Some(&b'(') {
                    i = skip_group(next, b'(', b')');
                }
            } else if KEYWORDS.contains(&word.to_ascii_lowercase().as_str())
                || AGGREGATIONS.contains(&word)
                || b.get(next) == Some(&b'(')
            {
                // keyword, aggregation or function call
            } else {
                let mut matchers = Vec::new();
                if b.get(next) == Some(&b'{') {
                    let end = skip_group(next, b'{', b'}');
                    matchers = parse_matchers(&expr[next + 1..end - 1]);
                    i = end;
                }
                out.push(Selector {
                    metric: word.to_string(),
                    matchers,
                });
            }
        } else {
            i += 1;
        }
    }
    out
}

/// `a="x", b=~"y|z", c!="w"` -> [(a, =, x), (b, =~, y|z), (c, !=, w)].
fn parse_matchers(inner: &str) -> Vec<(String, String, String)> {
    let b = inner.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
            i += 1;
        }
        if i >= b.len() {
            return out;
        }
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        let name = inner[start..i].to_string();
        while b[i].is_ascii_whitespace() {
            i += 1;
        }
        let op_start = i;
        while matches!(b[i], b'=' | b'!' | b'~') {
            i += 1;
        }
        let op = inner[op_start..i].to_string();
        while b[i].is_ascii_whitespace() {
            i += 1;
        }
        let quote = b[i];
        assert!(
            matches!(quote, b'"' | b'\'' | b'`'),
            "matcher {name} in {{{inner}}}"
        );
        let mut value = String::new();
        i += 1;
        while b[i] != quote {
            if b[i] == b'\\' && quote != b'`' {
                i += 1;
            }
            value.push(b[i] as char);
            i += 1;
        }
        i += 1;
        out.push((name, op, value));
    }
}

/// Checks one PromQL expression against the scrape; returns a problem per bad reference.
/// `extra_metrics` are names allowed besides the proxy's own (e.g. `up`).
fn check_expr(
    exported: &Exported,
    where_: &str,
    expr: &str,
    extra_metrics: &[&str],
) -> Vec<String> {
    let mut problems = Vec::new();
    for name in notify_proxy_names(expr) {
        if exported.resolve(&name).is_none() {
            problems.push(format!("{where_}: {name} is not exported"));
        }
    }
    for sel in selectors(expr) {
        if extra_metrics.contains(&sel.metric.as_str()) {
            continue;
        }
        let Some(family) = exported.resolve(&sel.metric) else {
            problems.push(format!("{where_}: metric {} is not exported", sel.metric));
            continue;
        };
        for (label, op, value) in &sel.matchers {
            if TARGET_LABELS.contains(&label.as_str()) {
                continue;
            }
            let Some(values) = family.labels.get(label) else {
                problems.push(format!(
                    "{where_}: {} has no label {label} (it has {:?})",
                    sel.metric,
                    family.labels.keys().collect::<Vec<_>>()
                ));
                continue;
            };
            // Literal values (and `a|b|c` alternatives) of positive matchers must exist;
            // variables and real regexes are not checked.
            let literal = !value.is_empty()
                && value
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'|' | b'-'));
            if literal && (op == "=" || op == "=~") {
                for v in value.split('|') {
                    if !values.contains(v) {
                        problems.push(format!(
                            "{where_}: {}{{{label}=\"{v}\"}} is never exported (values: {values:?})",
                            sel.metric
                        ));
                    }
                }
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// Dashboard

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every panel, rows' nested panels included.
fn all_panels(v: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
    if let Some(panels) = v.get("panels").and_then(|p| p.as_array()) {
        for p in panels {
            out.push(p.clone());
            all_panels(p, out);
        }
    }
}

#[test]
fn dashboard_references_only_exported_metrics() {
    let exported = Exported::parse(scrape());
    let dash: serde_json::Value =
        serde_json::from_str(&read(DASHBOARD)).expect("dashboard is valid JSON");

    assert!(dash["schemaVersion"].as_u64().unwrap() >= 36);
    let vars = dash["templating"]["list"].as_array().expect("templating");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("dashboard variable {name} missing"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    assert_eq!(var("job")["current"]["value"], JOB);
    for name in ["instance", "route"] {
        assert_eq!(var(name)["type"], "query");
    }

    let mut panels = Vec::new();
    all_panels(&dash, &mut panels);
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    let mut ids = BTreeSet::new();
    let mut expressions = 0;
    for p in &panels {
        let title = p["title"].as_str().unwrap_or("?").to_string();
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate panel id in {title}"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "panel {title} must use the datasource variable"
        );
        let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        assert!(!targets.is_empty(), "panel {title} has no query");
        for t in targets {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title}: target without expr"));
            expressions += 1;
            problems.extend(check_expr(
                &exported,
                &format!("panel {title:?}"),
                expr,
                &[],
            ));
            for s in selectors(expr) {
                if let Some(f) = Exported::family_of(&exported.families, &s.metric) {
                    used.insert(f.to_string());
                }
            }
        }
    }
    for v in vars {
        let query = match &v["query"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(o) => {
                o.get("query").and_then(|q| q.as_str()).unwrap_or("").into()
            }
            _ => String::new(),
        };
        for name in notify_proxy_names(&format!("{query} {}", v["definition"])) {
            if exported.resolve(&name).is_none() {
                problems.push(format!("variable {}: {name} is not exported", v["name"]));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(expressions > 20, "only {expressions} expressions found");

    let unused: Vec<_> = exported
        .families
        .keys()
        .filter(|k| k.starts_with("notify_proxy_") && !used.contains(*k))
        .collect();
    if !unused.is_empty() {
        eprintln!("note: exported but on no dashboard panel: {unused:?}");
    }
    println!(
        "dashboard: {} panels, {expressions} expressions, {} of {} exported families used",
        panels.len(),
        used.len(),
        exported.families.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Alert rules and runbook

/// GitHub's heading anchors: lowercase, punctuation dropped, spaces to hyphens.
fn anchors(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

const ALERT_NAMES: [&str; 10] = [
    "High13807Rate",
    "Twilio13807NotSeen",
    "SignatureFailureSpike",
    "UpstreamDown",
    "BufferOldestNearTTL",
    "DeadLetters",
    "BufferFailing",
    "ProxyDown",
    "PublicProbeFailing",
    "CertificateExpiringSoon",
];

#[test]
fn alert_rules_reference_only_exported_metrics_and_existing_runbook_sections() {
    let exported = Exported::parse(scrape());
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&read(ALERTS)).expect("alerts.yaml is valid YAML");
    let runbook_anchors = anchors(&read(RUNBOOK));
    let groups = rules["groups"].as_sequence().expect("groups");
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["name"].as_str(), Some(JOB));

    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for rule in groups[0]["rules"].as_sequence().expect("rules") {
        let name = rule["alert"].as_str().expect("alerting rules only");
        seen.insert(name.to_string());
        let expr = rule["expr"].as_str().expect("expr");
        problems.extend(check_expr(&exported, name, expr, &["up"]));
        if !expr.contains(&format!("job=\"{JOB}\"")) {
            problems.push(format!("{name}: expression does not select job=\"{JOB}\""));
        }
        for s in selectors(expr) {
            if !s
                .matchers
                .iter()
                .any(|(l, op, v)| l == "job" && op == "=" && v == JOB)
            {
                problems.push(format!("{name}: selector {} lacks job=\"{JOB}\"", s.metric));
            }
        }
        let severity = rule["labels"]["severity"].as_str().unwrap_or("");
        if !["critical", "warning"].contains(&severity) {
            problems.push(format!("{name}: severity {severity:?}"));
        }
        for key in ["summary", "description", "runbook_url"] {
            if rule["annotations"][key].as_str().unwrap_or("").is_empty() {
                problems.push(format!("{name}: annotation {key} missing"));
            }
        }
        let url = rule["annotations"]["runbook_url"].as_str().unwrap_or("");
        match url.split_once('#') {
            Some((RUNBOOK, anchor)) if runbook_anchors.contains(anchor) => {
                if anchor != name.to_lowercase() {
                    problems.push(format!(
                        "{name}: runbook anchor {anchor} is another alert's"
                    ));
                }
            }
            _ => problems.push(format!(
                "{name}: runbook_url {url:?} is not {RUNBOOK}#<a heading of the runbook>"
            )),
        }
    }
    for name in ALERT_NAMES {
        if !seen.contains(name) {
            problems.push(format!("alert {name} missing"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// promtool

fn promtool_available() -> bool {
    match Command::new("promtool").arg("--version").output() {
        Ok(o) => o.status.success(),
        Err(_) => false,
    }
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(repo_path(""))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn promtool_accepts_the_scrape_and_the_rules() {
    if !promtool_available() {
        // CI installs promtool (.ci/run), so there a missing one is a failure, not a skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is required in CI: apt-get install -y prometheus"
        );
        eprintln!(
            "note: promtool not found; skipping `promtool check metrics` and rule tests \
             (CI installs it: apt-get install -y prometheus)"
        );
        return;
    }
    let (ok, out) = promtool(&["check", "metrics"], Some(scrape()));
    println!("promtool check metrics:\n{out}");
    assert!(ok, "promtool check metrics failed:\n{out}");

    let (ok, out) = promtool(&["check", "rules", ALERTS], None);
    assert!(ok, "promtool check rules failed:\n{out}");

    let (ok, out) = promtool(
        &["test", "rules", "deploy/prometheus/alerts.test.yaml"],
        None,
    );
    assert!(ok, "promtool test rules failed:\n{out}");
}

// ---------------------------------------------------------------------------------------------
// The scanners themselves

#[test]
fn scanners_find_metric_names_and_only_them() {
    let expr = r#"histogram_quantile(0.95, sum by (le, route) (rate(notify_proxy_request_duration_seconds_bucket{job=~"$job", route=~"$route"}[$__rate_interval])))
        / on (route) group_left sum(rate(other_total{outcome=~"a|b"}[5m] offset 1h)) > bool 0.05
        or absent(up{job="x"}) and label_replace(vector(1), "cause", "x", "", "")"#;
    let found: Vec<_> = selectors(expr)
        .into_iter()
        .map(|s| (s.metric, s.matchers))
        .collect();
    assert_eq!(found.len(), 3, "{found:?}");
    assert_eq!(found[0].0, "notify_proxy_request_duration_seconds_bucket");
    assert_eq!(
        found[0].1[1],
        ("route".into(), "=~".into(), "$route".into())
    );
    assert_eq!(found[1].0, "other_total");
    assert_eq!(
        found[1].1,
        vec![("outcome".into(), "=~".into(), "a|b".into())]
    );
    assert_eq!(found[2].0, "up");
    assert_eq!(
        notify_proxy_names(
            "label_values(notify_proxy_build_info{job=~\"$job\"}, instance) xnotify_proxy_no"
        ),
        vec!["notify_proxy_build_info"]
    );
    assert_eq!(
        anchors("# Runbook\n## High13807Rate\n## Buffer: oldest near TTL"),
        ["runbook", "high13807rate", "buffer-oldest-near-ttl"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}
