//! The Prometheus alerts and the Grafana dashboard: the chart ships the same rules and
//! dashboard as deploy/, and every metric and label they name is one the controller exports,
//! so renaming a metric or a label breaks a test.

mod common;

use std::collections::{BTreeMap, BTreeSet};

const ALERTS: &str = "deploy/prometheus/alerts.yaml";
const CHART_ALERTS: &str = "helm/runwarden/files/alerts.yaml";
const DASHBOARD: &str = "deploy/grafana/runwarden-dashboard.json";
const CHART_DASHBOARD: &str = "helm/runwarden/files/runwarden-dashboard.json";
const RUNBOOK: &str = "deploy/RUNBOOK.md";
const RUNBOOK_URL: &str = "https://github.com/runwarden/runwarden/blob/main/deploy/RUNBOOK.md#";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Type {
    Counter,
    Gauge,
    Histogram,
}

/// The metrics the controller exports (name, type, labels). Keep in step with the Rust side.
fn exported() -> BTreeMap<&'static str, (Type, &'static [&'static str])> {
    use Type::*;
    BTreeMap::from([
        ("runwarden_reconciles_total", (Counter, &["kind"][..])),
        (
            "runwarden_reconcile_failures_total",
            (Counter, &["kind", "reason"][..]),
        ),
        (
            "runwarden_reconcile_duration_seconds",
            (Histogram, &["kind"][..]),
        ),
        (
            "runwarden_gcp_requests_total",
            (Counter, &["api", "method", "code"][..]),
        ),
        (
            "runwarden_gcp_request_duration_seconds",
            (Histogram, &["api", "method"][..]),
        ),
        ("runwarden_managed_objects", (Gauge, &["kind", "ready"][..])),
        ("runwarden_deletions_stuck", (Gauge, &["kind"][..])),
        ("runwarden_leader", (Gauge, &[][..])),
        // The Cloud Run quota budgets (src/metrics.rs, QuotaMetrics); `kind` is read or write.
        (
            "runwarden_gcp_quota_wait_seconds",
            (Histogram, &["project", "region", "kind"][..]),
        ),
        (
            "runwarden_gcp_quota_refusals_total",
            (Counter, &["project", "region", "kind"][..]),
        ),
        (
            "runwarden_gcp_quota_exceeded_total",
            (Counter, &["project", "region"][..]),
        ),
        // The default process collector.
        ("process_cpu_seconds_total", (Counter, &[][..])),
        ("process_resident_memory_bytes", (Gauge, &[][..])),
        ("process_virtual_memory_bytes", (Gauge, &[][..])),
        ("process_open_fds", (Gauge, &[][..])),
        ("process_max_fds", (Gauge, &[][..])),
        ("process_start_time_seconds", (Gauge, &[][..])),
    ])
}

/// Labels the scrape adds to every series (target labels), plus a histogram's `le`.
const TARGET_LABELS: &[&str] = &[
    "namespace",
    "pod",
    "instance",
    "job",
    "container",
    "service",
    "endpoint",
];

/// Metric names in a PromQL expression: every `runwarden_*` / `process_*` identifier and every
/// identifier directly followed by a `{` selector. Returns (name as written, labels matched).
fn selectors(expr: &str) -> Vec<(String, Vec<String>)> {
    let b = expr.as_bytes();
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        // Skip string literals ("..." label values and regexes).
        if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            continue;
        }
        if !is_ident(b[i]) || (i > 0 && (is_ident(b[i - 1]) || b[i - 1] == b'$')) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        let name = &expr[start..i];
        let mut j = i;
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        let has_selector = j < b.len() && b[j] == b'{';
        let looks_like_metric = name.starts_with("runwarden_") || name.starts_with("process_");
        if !has_selector && !looks_like_metric {
            continue;
        }
        let mut labels = Vec::new();
        if has_selector {
            let end = expr[j..].find('}').map(|e| j + e).expect("closing }");
            let mut inside = &expr[j + 1..end];
            // Split matchers on commas outside quotes.
            while !inside.trim().is_empty() {
                let label: String = inside
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                labels.push(label);
                let q1 = inside.find('"').expect("quoted matcher value");
                let q2 = q1 + 1 + inside[q1 + 1..].find('"').expect("closing quote");
                inside = inside[q2 + 1..].trim_start().trim_start_matches(',');
            }
            i = end + 1;
        }
        out.push((name.to_string(), labels));
    }
    out
}

/// Label names in `by (...)`, `without (...)` and `on (...)`/`ignoring (...)` clauses.
fn grouping_labels(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for kw in ["by", "without", "on", "ignoring"] {
        let mut rest = expr;
        while let Some(pos) = rest.find(&format!("{kw} (")) {
            let before_ok = pos == 0 || !rest.as_bytes()[pos - 1].is_ascii_alphanumeric();
            let after = &rest[pos + kw.len() + 2..];
            let end = after.find(')').expect("closing )");
            if before_ok {
                out.extend(
                    after[..end]
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty()),
                );
            }
            rest = &after[end..];
        }
    }
    out
}

/// Checks every metric and label named in `expr`; returns the base metric names used.
fn check_expr(where_: &str, expr: &str) -> BTreeSet<String> {
    let known = exported();
    let mut used = BTreeSet::new();
    let sels = selectors(expr);
    assert!(!sels.is_empty(), "{where_}: no metric found in {expr:?}");
    let mut all_labels: BTreeSet<&str> = TARGET_LABELS.iter().copied().collect();
    all_labels.insert("le");
    for (name, labels) in &sels {
        let (base, suffix) = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).map(|b| (b, *s)))
            .filter(|(b, _)| known.get(b).is_some_and(|(t, _)| *t == Type::Histogram))
            .unwrap_or((name.as_str(), ""));
        let Some((ty, metric_labels)) = known.get(base) else {
            panic!("{where_}: `{name}` is not a metric runwarden exports (expr: {expr})");
        };
        if *ty == Type::Histogram {
            assert!(
                !suffix.is_empty(),
                "{where_}: histogram {base} used without _bucket/_sum/_count"
            );
        }
        for l in labels {
            let ok = metric_labels.contains(&l.as_str())
                || TARGET_LABELS.contains(&l.as_str())
                || (l == "le" && *ty == Type::Histogram);
            assert!(ok, "{where_}: `{name}` has no label `{l}` (expr: {expr})");
        }
        all_labels.extend(metric_labels.iter().copied());
        used.insert(base.to_string());
    }
    for l in grouping_labels(expr) {
        assert!(
            all_labels.contains(l.as_str()),
            "{where_}: grouping label `{l}` is not a label of the metrics used (expr: {expr})"
        );
    }
    used
}

fn alert_rules(rel: &str) -> Vec<serde_yaml::Value> {
    let doc = common::yaml(rel);
    let groups = doc["groups"].as_sequence().expect("groups: list");
    assert!(!groups.is_empty());
    groups
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules: list").clone())
        .collect()
}

#[test]
fn chart_prometheus_rule_carries_the_same_rules() {
    // The chart's PrometheusRule renders files/alerts.yaml verbatim ...
    common::assert_same_bytes(ALERTS, CHART_ALERTS);
    let tpl = common::read("helm/runwarden/templates/prometheusrule.yaml");
    assert!(
        tpl.contains(r#"(.Files.Get "files/alerts.yaml" | fromYaml).groups | toYaml"#),
        "templates/prometheusrule.yaml must render spec.groups from files/alerts.yaml"
    );
    // The file names deploy/'s defaults; the chart puts the release's names in their place.
    let alerts = common::read(ALERTS);
    for (default, value) in [
        ("runwarden-system", ".Release.Namespace"),
        ("deploy/runwarden", r#"include "runwarden.fullname""#),
        (
            "runwarden-controller",
            ".Values.controller.leaderElection.leaseName",
        ),
    ] {
        if alerts.contains(default) {
            let line = tpl
                .lines()
                .find(|l| l.contains(&format!("replace {default:?}")))
                .unwrap_or_else(|| panic!("the chart does not replace {default:?} in the alerts"));
            assert!(
                line.contains(value),
                "{default:?} must become {value}: {line}"
            );
        }
    }
    assert!(
        !tpl.contains("tpl "),
        "the alerts' own {{{{ $labels }}}} must not be passed through tpl"
    );
    // ... and the same rules.
    assert_eq!(alert_rules(ALERTS), alert_rules(CHART_ALERTS));
}

#[test]
fn chart_dashboard_is_the_same_dashboard() {
    common::assert_same_bytes(DASHBOARD, CHART_DASHBOARD);
    let tpl = common::read("helm/runwarden/templates/grafana-dashboard.yaml");
    assert!(tpl.contains(r#".Files.Get "files/runwarden-dashboard.json""#));
}

#[test]
fn alerts_cover_the_issue_and_are_documented() {
    let rules = alert_rules(ALERTS);
    // GitHub's anchors of the runbook's `## Alert` headings.
    let runbook_sections: Vec<String> = common::read(RUNBOOK)
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    let mut names = BTreeSet::new();
    for r in &rules {
        let name = r["alert"]
            .as_str()
            .expect("every rule is an alerting rule with a name");
        assert!(names.insert(name.to_string()), "duplicate alert {name}");
        assert!(
            r["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
            "{name}: expr"
        );
        assert!(
            r["for"].as_str().is_some(),
            "{name}: a `for` duration avoids flapping"
        );
        let sev = r["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning", "info"].contains(&sev),
            "{name}: severity {sev:?}"
        );
        for a in ["summary", "description"] {
            let text = r["annotations"][a].as_str().unwrap_or_default();
            assert!(
                text.len() > 10,
                "{name}: annotation {a} missing or too short"
            );
        }
        // Alertmanager and Grafana link `runbook_url`; the steps live in deploy/RUNBOOK.md.
        assert!(
            r["annotations"]["runbook"].is_null(),
            "{name}: inline `runbook` text; use runbook_url and deploy/RUNBOOK.md"
        );
        let url = r["annotations"]["runbook_url"].as_str().unwrap_or_default();
        let anchor = url
            .strip_prefix(RUNBOOK_URL)
            .unwrap_or_else(|| panic!("{name}: runbook_url {url:?} is not {RUNBOOK_URL}#..."));
        assert_eq!(anchor, name.to_lowercase(), "{name}: runbook_url anchor");
        assert!(
            runbook_sections.contains(&anchor.to_string()),
            "{name}: deploy/RUNBOOK.md has no section `## {name}`"
        );
    }
    for section in &runbook_sections {
        assert!(
            names.iter().any(|n| n.to_lowercase() == *section),
            "deploy/RUNBOOK.md documents {section}, which is no alert"
        );
    }
    let expected = [
        (
            "RunwardenObjectsNotReady",
            "runwarden_managed_objects",
            "15m",
        ),
        (
            "RunwardenReconcileFailuresRising",
            "runwarden_reconcile_failures_total",
            "",
        ),
        (
            "RunwardenGoogleRefusingCalls",
            "runwarden_gcp_requests_total",
            "",
        ),
        ("RunwardenNoLeader", "runwarden_leader", "5m"),
        // Two leaders may write to Google at once: a hand-over overlaps for one scrape at most.
        ("RunwardenMultipleLeaders", "runwarden_leader", "1m"),
        ("RunwardenDeletionStuck", "runwarden_deletions_stuck", ""),
        ("RunwardenControllerDown", "runwarden_leader", ""),
        // Client-side refusals are normal in a burst; only a budget spent for long says the
        // flags sit below what the work needs.
        (
            "RunwardenQuotaBudgetSpent",
            "runwarden_gcp_quota_refusals_total",
            "30m",
        ),
        // The budgets exist so that Google never answers 429: any sustained 429 is a finding.
        (
            "RunwardenGoogleQuotaExceeded",
            "runwarden_gcp_quota_exceeded_total",
            "10m",
        ),
    ];
    for (name, metric, for_) in expected {
        let r = rules
            .iter()
            .find(|r| r["alert"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("alert {name} missing from {ALERTS}"));
        assert!(
            r["expr"].as_str().unwrap().contains(metric),
            "{name} should use {metric}"
        );
        if !for_.is_empty() {
            assert_eq!(r["for"].as_str(), Some(for_), "{name}: for");
        }
    }
    let google = rules
        .iter()
        .find(|r| r["alert"].as_str() == Some("RunwardenGoogleRefusingCalls"))
        .unwrap();
    for code in ["PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "UNAVAILABLE"] {
        assert!(
            google["expr"].as_str().unwrap().contains(code),
            "Google alert ignores {code}"
        );
    }
}

#[test]
fn alerts_name_only_exported_metrics_and_labels() {
    for r in alert_rules(ALERTS) {
        let name = r["alert"].as_str().unwrap();
        check_expr(&format!("alert {name}"), r["expr"].as_str().unwrap());
    }
}

fn dashboard_exprs(v: &serde_json::Value, path: String, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, item) in m {
                let p = format!("{path}.{k}");
                match (k.as_str(), item) {
                    ("expr", serde_json::Value::String(s)) => out.push((p, s.clone())),
                    // Template variable queries: label_values(<selector>, label).
                    ("definition", serde_json::Value::String(s))
                        if s.starts_with("label_values(") =>
                    {
                        out.push((p, s.clone()))
                    }
                    _ => dashboard_exprs(item, p, out),
                }
            }
        }
        serde_json::Value::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                dashboard_exprs(item, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn dashboard_names_only_exported_metrics_and_shows_all_of_them() {
    let dash: serde_json::Value =
        serde_json::from_str(&common::read(DASHBOARD)).expect("dashboard is JSON");
    let vars = dash["templating"]["list"]
        .as_array()
        .expect("templating.list");
    assert!(
        vars.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "the dashboard needs a `datasource` variable of type datasource"
    );
    let mut exprs = Vec::new();
    dashboard_exprs(&dash, String::new(), &mut exprs);
    assert!(
        exprs.len() >= 10,
        "only {} queries in the dashboard",
        exprs.len()
    );
    let mut used = BTreeSet::new();
    for (path, expr) in &exprs {
        // label_values(metric{...}, label): check the selector part.
        let expr = expr
            .strip_prefix("label_values(")
            .and_then(|e| e.rsplit_once(','))
            .map(|(sel, _)| sel)
            .unwrap_or(expr);
        used.extend(check_expr(path, expr));
    }
    for m in exported().keys().filter(|m| m.starts_with("runwarden_")) {
        assert!(used.contains(*m), "the dashboard shows no panel for {m}");
    }
    // Every panel queries through the datasource variable.
    for p in dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] != "row")
    {
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "panel {} datasource",
            p["title"]
        );
    }
}

#[test]
fn expression_scanner_finds_metrics_and_labels() {
    // The checks above are only as good as this scanner: make sure it sees a renamed metric
    // and a renamed label.
    let s = selectors(
        r#"sum by (kind) (rate(runwarden_reconcile_total{kind=~"a|b", reason!="x,y"}[5m]))"#,
    );
    assert_eq!(
        s,
        vec![(
            "runwarden_reconcile_total".to_string(),
            vec!["kind".to_string(), "reason".to_string()]
        )]
    );
    assert!(
        std::panic::catch_unwind(|| check_expr("t", "rate(runwarden_reconcile_total[5m])"))
            .is_err()
    );
    assert!(std::panic::catch_unwind(|| check_expr("t", r#"runwarden_leader{kind="x"}"#)).is_err());
    assert!(
        std::panic::catch_unwind(|| check_expr(
            "t",
            "sum by (rason) (runwarden_reconcile_failures_total)"
        ))
        .is_err()
    );
    assert!(
        std::panic::catch_unwind(|| check_expr("t", "runwarden_gcp_request_duration_seconds"))
            .is_err()
    );
    assert!(std::panic::catch_unwind(|| check_expr("t", "up")).is_err());
    assert_eq!(
        grouping_labels("sum by (namespace, api) (x) / on (api) group_left sum without (code) (y)"),
        vec!["namespace", "api", "code", "api"]
    );
}
