//! The metrics a user graphs and alerts on, checked against what actually happened: the
//! in-process controller reconciles one CloudRunService against the emulator, then the
//! exposition must be valid OpenMetrics text and its values must match the emulator's counters.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::{Harness, REGION};

const IMAGE: &str = "europe-docker.pkg.dev/runwarden-test/apps/metrics@sha256:3333333333333333333333333333333333333333333333333333333333333333";

/// One sample: metric name and its labels, sorted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    name: String,
    labels: BTreeMap<String, String>,
}

/// The samples of an exposition, after checking it is well-formed OpenMetrics text.
struct Exposition {
    samples: HashMap<Key, f64>,
    types: HashMap<String, String>,
}

impl Exposition {
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let key = Key {
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        self.samples.get(&key).copied()
    }

    /// Every sample of `name` whose labels include `labels`.
    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = (&'a Key, f64)> + 'a {
        self.samples.iter().filter_map(move |(k, v)| {
            (k.name == name
                && labels
                    .iter()
                    .all(|(l, want)| k.labels.get(*l).map(String::as_str) == Some(*want)))
            .then_some((k, *v))
        })
    }
}

fn parse_labels(text: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("label without =\"value\" in {line:?}"));
        assert!(
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "bad label name {name:?} in {line:?}"
        );
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => panic!("bad escape {other:?} in {line:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        assert!(
            labels.insert(name.to_owned(), value).is_none(),
            "label {name} twice in {line:?}"
        );
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
        if let Some(r) = rest.strip_prefix(' ') {
            panic!("space after a label separator in {line:?}: {r:?}");
        }
    }
    labels
}

fn parse_value(v: &str, line: &str) -> f64 {
    match v {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => v
            .parse()
            .unwrap_or_else(|_| panic!("bad value {v:?} in {line:?}")),
    }
}

/// Parses `text` as OpenMetrics 1.0 text, panicking on the first violation: `# EOF` last and
/// only once, every sample after its family's `# TYPE`, a family declared once and its samples
/// together, names that belong to their family's type, well-formed labels and values, no
/// duplicate sample, histogram buckets cumulative with `+Inf` equal to `_count`.
fn parse_openmetrics(text: &str) -> Exposition {
    assert!(
        text.ends_with("# EOF\n") || text.ends_with("# EOF"),
        "the exposition must end with # EOF; it ends with {:?}",
        &text[text.len().saturating_sub(200)..]
    );
    let body = text
        .trim_end_matches('\n')
        .strip_suffix("# EOF")
        .expect("EOF");
    assert!(!body.contains("# EOF"), "# EOF before the end");
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    let mut current: Option<String> = None;
    let mut finished: Vec<String> = Vec::new();
    for line in body.lines() {
        assert!(!line.is_empty(), "empty line in the exposition");
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let (kind, family) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            match kind {
                "TYPE" => {
                    let t = parts.next().unwrap_or("");
                    assert!(
                        matches!(
                            t,
                            "counter"
                                | "gauge"
                                | "histogram"
                                | "gaugehistogram"
                                | "stateset"
                                | "info"
                                | "summary"
                                | "unknown"
                        ),
                        "unknown type in {line:?}"
                    );
                    assert!(
                        types.insert(family.to_owned(), t.to_owned()).is_none(),
                        "family {family} declared twice"
                    );
                    if let Some(prev) = current.replace(family.to_owned()) {
                        finished.push(prev);
                    }
                }
                "HELP" | "UNIT" => assert!(!family.is_empty(), "{line:?}"),
                _ => panic!("unknown metadata line {line:?}"),
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("sample without a value: {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (
                name,
                parse_labels(
                    rest.strip_suffix('}')
                        .unwrap_or_else(|| panic!("unclosed labels in {line:?}")),
                    line,
                ),
            ),
            None => (series, BTreeMap::new()),
        };
        let family = current
            .as_deref()
            .unwrap_or_else(|| panic!("sample before any # TYPE: {line:?}"));
        let suffixes: &[&str] = match types[family].as_str() {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_count", "_sum", "_created"],
            "summary" => &["", "_count", "_sum", "_created"],
            "info" => &["_info"],
            _ => &[""],
        };
        assert!(
            suffixes.iter().any(|s| name == format!("{family}{s}")),
            "sample {name} does not belong to family {family} ({})",
            types[family]
        );
        assert!(
            !finished.iter().any(|f| f == family),
            "family {family} interleaved"
        );
        let key = Key {
            name: name.to_owned(),
            labels,
        };
        assert!(
            samples.insert(key, parse_value(value, line)).is_none(),
            "duplicate sample {line:?}"
        );
    }
    let exposition = Exposition { samples, types };
    // Histograms: cumulative buckets, +Inf == _count.
    for (family, t) in &exposition.types {
        if t != "histogram" {
            continue;
        }
        let bucket = format!("{family}_bucket");
        let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        for (k, v) in exposition.matching(&bucket, &[]) {
            let mut labels = k.labels.clone();
            let le = labels.remove("le").expect("bucket without le");
            series
                .entry(labels)
                .or_default()
                .push((parse_value(&le, &le), v));
        }
        for (labels, mut buckets) in series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{family} buckets not cumulative: {buckets:?}"
            );
            let (le, inf) = *buckets.last().expect("buckets");
            assert!(le.is_infinite(), "{family} has no +Inf bucket");
            let count = exposition.samples.get(&Key {
                name: format!("{family}_count"),
                labels: labels.clone(),
            });
            assert_eq!(
                count,
                Some(&inf),
                "{family}{labels:?}: +Inf bucket != _count"
            );
        }
    }
    exposition
}

#[tokio::test]
async fn metrics_after_a_create_match_what_happened() {
    let Some(mut h) = Harness::new("metrics").await else {
        return;
    };
    h.start_controller().await;
    h.apply(
        "metered",
        serde_json::json!({
            "region": REGION,
            "containers": [{"image": IMAGE}],
            "access": {"invokers": ["group:frontend@example.com"]},
        }),
    )
    .await;
    h.wait_ready("metered").await;

    // The managed objects gauge is refreshed every 5 s: wait for it to see Ready.
    let ready_gauge = [("kind", "CloudRunService"), ("ready", "true")];
    let deadline = Instant::now() + Duration::from_secs(20);
    let m = loop {
        let m = parse_openmetrics(&h.metrics.encode());
        if m.get("runwarden_managed_objects", &ready_gauge) == Some(1.0) {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "runwarden_managed_objects{{kind=\"CloudRunService\",ready=\"true\"}} never became 1: {:?}",
            m.matching("runwarden_managed_objects", &[])
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for ready in ["false", "unknown"] {
        assert_eq!(
            m.get(
                "runwarden_managed_objects",
                &[("kind", "CloudRunService"), ("ready", ready)]
            ),
            Some(0.0),
            "ready={ready}"
        );
    }
    // Stop so that the counters below do not move while they are compared.
    h.stop_controller().await;
    let text = h.metrics.encode();
    let m = parse_openmetrics(&text);
    eprintln!("metrics: exposition after one create:\n{text}");

    assert_eq!(m.types["runwarden_reconciles"], "counter");
    assert_eq!(m.types["runwarden_reconcile_duration_seconds"], "histogram");
    assert_eq!(m.types["runwarden_gcp_requests"], "counter");
    assert_eq!(m.types["runwarden_managed_objects"], "gauge");
    assert_eq!(m.types["runwarden_leader"], "gauge");

    // Reconciles: a create takes more than one pass (create, then poll the operation).
    let kind = [("kind", "CloudRunService")];
    let reconciles = m
        .get("runwarden_reconciles_total", &kind)
        .expect("runwarden_reconciles_total{kind=\"CloudRunService\"}");
    assert!(reconciles >= 2.0, "reconciles = {reconciles}");
    assert_eq!(
        m.get("runwarden_reconcile_duration_seconds_count", &kind),
        Some(reconciles),
        "one duration observation per reconcile"
    );
    let sum = m
        .get("runwarden_reconcile_duration_seconds_sum", &kind)
        .expect("duration sum");
    assert!(sum > 0.0, "duration sum {sum}");
    assert_eq!(
        m.matching("runwarden_reconcile_failures_total", &kind)
            .map(|(_, v)| v)
            .sum::<f64>(),
        0.0,
        "no failed reconcile"
    );

    // Google requests by api/method/code, against the emulator's own counters.
    let gcp = |api, method, code| {
        m.get(
            "runwarden_gcp_requests_total",
            &[("api", api), ("method", method), ("code", code)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(gcp("run", "services.create", "OK"), 1.0);
    assert_eq!(h.emu.count("run.services.create"), 1);
    assert_eq!(
        gcp("run", "services.get", "NOT_FOUND"),
        0.0,
        "an object that never named a service creates it without reading it first"
    );
    assert!(
        gcp("run", "operations.get", "OK") >= 1.0,
        "the create's operation is polled"
    );
    assert_eq!(gcp("run", "services.patch", "OK"), 0.0, "nothing to patch");
    let emulator = h.emu.counters();
    let mut compared = 0;
    for (key, count) in &emulator {
        let Some((api, method)) = key.split_once('.') else {
            continue;
        };
        let metered: f64 = m
            .matching(
                "runwarden_gcp_requests_total",
                &[("api", api), ("method", method)],
            )
            .map(|(_, v)| v)
            .sum();
        assert_eq!(
            metered, *count as f64,
            "{key}: the emulator served {count}, runwarden_gcp_requests_total says {metered}"
        );
        compared += 1;
    }
    let metered_total: f64 = m
        .matching("runwarden_gcp_requests_total", &[])
        .map(|(_, v)| v)
        .sum();
    let served_total: u64 = emulator.values().sum();
    assert_eq!(
        metered_total, served_total as f64,
        "every request the emulator served is counted once: {emulator:?}"
    );
    assert!(compared >= 3, "emulator counters: {emulator:?}");
    for (k, v) in m.matching("runwarden_gcp_request_duration_seconds_count", &[]) {
        let requests: f64 = m
            .matching(
                "runwarden_gcp_requests_total",
                &[("api", &k.labels["api"]), ("method", &k.labels["method"])],
            )
            .map(|(_, v)| v)
            .sum();
        assert_eq!(v, requests, "latency observations of {:?}", k.labels);
    }

    // Process metrics from /proc.
    let rss = m
        .get("process_resident_memory_bytes", &[])
        .expect("process_resident_memory_bytes");
    assert!(rss > 1_000_000.0, "RSS {rss} bytes");
    assert!(m.get("process_cpu_seconds_total", &[]).is_some());
    assert!(m.get("process_open_fds", &[]).is_some_and(|n| n > 0.0));
}

#[test]
fn the_parser_rejects_what_it_should() {
    // The checks above are only as good as the parser: it must fail on broken text.
    let good = "# TYPE a counter\n# HELP a A.\na_total{k=\"v\"} 1\n# TYPE b gauge\nb 2.5\n# EOF\n";
    let m = parse_openmetrics(good);
    assert_eq!(m.get("a_total", &[("k", "v")]), Some(1.0));
    assert_eq!(m.get("b", &[]), Some(2.5));
    for bad in [
        "# TYPE a counter\na_total 1\n",                   // no EOF
        "# TYPE a counter\na 1\n# EOF\n",                  // counter without _total
        "a_total 1\n# EOF\n",                              // no TYPE
        "# TYPE a counter\na_total 1\na_total 2\n# EOF\n", // duplicate
        "# TYPE a gauge\na{k=v} 1\n# EOF\n",               // unquoted label
        "# TYPE a gauge\na x\n# EOF\n",                    // bad value
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n# EOF\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 1\nh_sum 1\n# EOF\n",
        "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n# EOF\n", // interleaved
    ] {
        let result = std::panic::catch_unwind(|| parse_openmetrics(bad));
        assert!(result.is_err(), "accepted: {bad:?}");
    }
}
