//! Prometheus metrics, all prefixed `runwarden_`.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels naming a kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// e.g. `CloudRunService`.
    pub kind: String,
}

/// Labels of a failed reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// e.g. `CloudRunService`.
    pub kind: String,
    /// The error's short label, e.g. `PermissionDenied`.
    pub reason: String,
}

/// Labels of a Google API request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GcpLabels {
    /// e.g. `run`.
    pub api: String,
    /// e.g. `services.patch`.
    pub method: String,
    /// gRPC status name, `OK` on success.
    pub code: String,
}

/// Labels of a Google API latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GcpMethodLabels {
    /// e.g. `run`.
    pub api: String,
    /// e.g. `services.patch`.
    pub method: String,
}

// ---- Cloud Run quota budgets (src/gcp/quota.rs) ----------------------------------------------

/// Labels of a Cloud Run quota budget: project, region and `read` or `write`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QuotaLabels {
    /// The Google project.
    pub project: String,
    /// The Cloud Run region.
    pub region: String,
    /// `read` or `write`.
    pub kind: String,
}

/// Labels of a project and region.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProjectRegionLabels {
    /// The Google project.
    pub project: String,
    /// The Cloud Run region.
    pub region: String,
}

fn quota_wait_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

/// The metrics of the Cloud Run quota budgets.
struct QuotaMetrics {
    wait: Family<QuotaLabels, Histogram, Buckets>,
    refusals: Family<QuotaLabels, Counter>,
    exceeded: Family<ProjectRegionLabels, Counter>,
}

impl QuotaMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self {
            wait: Family::new_with_constructor(Buckets(quota_wait_buckets)),
            refusals: Family::default(),
            exceeded: Family::default(),
        };
        registry.register(
            "gcp_quota_wait_seconds",
            "Time Cloud Run calls waited for their client-side budget, by project, region and kind (read or write)",
            m.wait.clone(),
        );
        registry.register(
            "gcp_quota_refusals",
            "Cloud Run calls refused by the client-side budget (requeued for when it frees), by project, region and kind",
            m.refusals.clone(),
        );
        registry.register(
            "gcp_quota_exceeded",
            "RESOURCE_EXHAUSTED (429) answers of the Cloud Run Admin API, by project and region",
            m.exceeded.clone(),
        );
        m
    }
}

impl Metrics {
    /// Records a Cloud Run call let through by its budget after `waited`.
    pub fn quota_waited(&self, project: &str, region: &str, kind: &str, waited: Duration) {
        self.quota
            .wait
            .get_or_create(&quota_labels(project, region, kind))
            .observe(waited.as_secs_f64());
    }

    /// Counts a Cloud Run call refused by its budget.
    pub fn quota_refused(&self, project: &str, region: &str, kind: &str) {
        self.quota
            .refusals
            .get_or_create(&quota_labels(project, region, kind))
            .inc();
    }

    /// Counts a `RESOURCE_EXHAUSTED` answer of Cloud Run.
    pub fn quota_exceeded(&self, project: &str, region: &str) {
        self.quota
            .exceeded
            .get_or_create(&ProjectRegionLabels {
                project: project.to_owned(),
                region: region.to_owned(),
            })
            .inc();
    }
}

fn quota_labels(project: &str, region: &str, kind: &str) -> QuotaLabels {
    QuotaLabels {
        project: project.to_owned(),
        region: region.to_owned(),
        kind: kind.to_owned(),
    }
}

// ---- end of the Cloud Run quota budgets ----------------------------------------------------------

/// Labels of the managed objects gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadyLabels {
    /// e.g. `CloudRunService`.
    pub kind: String,
    /// `true`, `false` or `unknown`.
    pub ready: String,
}

#[derive(Clone)]
struct Buckets(fn() -> Histogram);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        (self.0)()
    }
}

fn reconcile_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

fn request_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.002, 2.0, 14))
}

/// Every metric runwarden exports.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<KindLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    reconcile_duration: Family<KindLabels, Histogram, Buckets>,
    gcp_requests: Family<GcpLabels, Counter>,
    gcp_duration: Family<GcpMethodLabels, Histogram, Buckets>,
    managed: Family<ReadyLabels, Gauge>,
    deletions_stuck: Family<KindLabels, Gauge>,
    leader: Gauge,
    quota: QuotaMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("runwarden");
        let reconciles = Family::<KindLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let reconcile_duration = Family::new_with_constructor(Buckets(reconcile_buckets));
        let gcp_requests = Family::<GcpLabels, Counter>::default();
        let gcp_duration = Family::new_with_constructor(Buckets(request_buckets));
        let managed = Family::<ReadyLabels, Gauge>::default();
        let deletions_stuck = Family::<KindLabels, Gauge>::default();
        let leader = Gauge::default();
        registry.register(
            "reconciles",
            "Reconciles started, by kind",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Reconciles that ended in an error, by kind and reason",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconciles, by kind",
            reconcile_duration.clone(),
        );
        registry.register(
            "gcp_requests",
            "Google API requests, by api, method and status code",
            gcp_requests.clone(),
        );
        registry.register(
            "gcp_request_duration_seconds",
            "Latency of Google API requests, by api and method",
            gcp_duration.clone(),
        );
        registry.register(
            "managed_objects",
            "Custom resources managed, by kind and Ready status",
            managed.clone(),
        );
        registry.register(
            "deletions_stuck",
            "Objects being deleted (deletionTimestamp set) for longer than the stuck threshold, by kind",
            deletions_stuck.clone(),
        );
        registry.register(
            "leader",
            "1 when this replica holds the leader lease",
            leader.clone(),
        );
        let quota = QuotaMetrics::register(&mut registry);
        Self {
            registry,
            reconciles,
            failures,
            reconcile_duration,
            gcp_requests,
            gcp_duration,
            managed,
            deletions_stuck,
            leader,
            quota,
        }
    }
}

impl Metrics {
    /// Counts a reconcile of `kind` that took `elapsed`.
    pub fn reconciled(&self, kind: &str, elapsed: Duration) {
        let labels = KindLabels {
            kind: kind.to_owned(),
        };
        self.reconciles.get_or_create(&labels).inc();
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a failed reconcile.
    pub fn failed(&self, kind: &str, reason: &str) {
        self.failures
            .get_or_create(&FailureLabels {
                kind: kind.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Records one Google API request.
    pub fn gcp_request(&self, api: &str, method: &str, code: &str, elapsed: Duration) {
        self.gcp_requests
            .get_or_create(&GcpLabels {
                api: api.to_owned(),
                method: method.to_owned(),
                code: code.to_owned(),
            })
            .inc();
        self.gcp_duration
            .get_or_create(&GcpMethodLabels {
                api: api.to_owned(),
                method: method.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Sets the number of managed objects of `kind` by Ready status (`true`, `false`, `unknown`).
    pub fn set_managed(&self, kind: &str, counts: [(&str, i64); 3]) {
        for (ready, n) in counts {
            self.managed
                .get_or_create(&ReadyLabels {
                    kind: kind.to_owned(),
                    ready: ready.to_owned(),
                })
                .set(n);
        }
    }

    /// Sets the number of objects of `kind` whose deletion has waited longer than the stuck
    /// threshold (see [`stuck_deletions`]).
    pub fn set_deletions_stuck(&self, kind: &str, n: i64) {
        self.deletions_stuck
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .set(n);
    }

    /// Marks whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The value of a Google request counter (for tests and benchmarks).
    pub fn gcp_request_count(&self, api: &str, method: &str, code: &str) -> u64 {
        self.gcp_requests
            .get(&GcpLabels {
                api: api.to_owned(),
                method: method.to_owned(),
                code: code.to_owned(),
            })
            .map(|c| c.get())
            .unwrap_or(0)
    }

    /// The Prometheus (OpenMetrics) text exposition of every metric, with `process_*` metrics.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        let process = process_metrics();
        match out.rfind("# EOF") {
            Some(eof) => out.insert_str(eof, &process),
            None => out.push_str(&process),
        }
        out
    }
}

/// How long a deletion may wait behind the `runwarden.dev/cleanup` finalizer before it counts
/// in `runwarden_deletions_stuck` (Google's delete operations take minutes, not tens of them).
pub const STUCK_DELETION_AFTER: Duration = Duration::from_secs(15 * 60);

/// Of the objects whose `metadata.deletionTimestamp`s are given (`None`: not being deleted), how
/// many have been waiting for longer than `older_than` at `now`. For `runwarden_deletions_stuck`.
pub fn stuck_deletions<'a>(
    deletion_timestamps: impl Iterator<Item = Option<&'a Time>>,
    now: jiff::Timestamp,
    older_than: Duration,
) -> i64 {
    let Ok(older_than) = jiff::SignedDuration::try_from(older_than) else {
        return 0;
    };
    let Ok(cutoff) = now.checked_sub(older_than) else {
        return 0;
    };
    let stuck = deletion_timestamps
        .flatten()
        .filter(|t| t.0 < cutoff)
        .count();
    i64::try_from(stuck).unwrap_or(i64::MAX)
}

/// `process_*` metrics of this process from /proc (empty elsewhere). Assumes the usual Linux
/// clock tick of 100 Hz and 4 KiB pages.
fn process_metrics() -> String {
    const TICKS: f64 = 100.0;
    const PAGE: u64 = 4096;
    let mut out = String::new();
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name, which is in parentheses and may contain spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| {
            fields
                .get(n - 3)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let cpu = (field(14) + field(15)) as f64 / TICKS;
        out.push_str(&format!("# TYPE process_cpu_seconds counter\n# HELP process_cpu_seconds Total user and system CPU time spent in seconds.\nprocess_cpu_seconds_total {cpu}\n"));
        let btime = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("btime ")
                        .and_then(|b| b.trim().parse::<u64>().ok())
                })
            })
            .unwrap_or(0);
        let start = btime as f64 + field(22) as f64 / TICKS;
        out.push_str(&format!("# TYPE process_start_time_seconds gauge\n# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\nprocess_start_time_seconds {start}\n"));
    }
    if let Some(rss) = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
    {
        out.push_str(&format!("# TYPE process_resident_memory_bytes gauge\n# HELP process_resident_memory_bytes Resident memory size in bytes.\nprocess_resident_memory_bytes {}\n", rss * PAGE));
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        out.push_str(&format!("# TYPE process_open_fds gauge\n# HELP process_open_fds Number of open file descriptors.\nprocess_open_fds {}\n", fds.count()));
    }
    out
}

/// The resident memory of this process in bytes, from /proc (for benchmarks).
pub fn resident_memory_bytes() -> Option<u64> {
    std::fs::read_to_string("/proc/self/statm")
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|p| p * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Time {
        Time(s.parse().expect("RFC 3339"))
    }

    #[test]
    fn only_deletions_older_than_the_threshold_are_stuck() {
        let now: jiff::Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        let old = at("2026-01-01T11:40:00Z"); // 20 minutes
        let older = at("2025-12-31T12:00:00Z"); // a day
        let fresh = at("2026-01-01T11:55:00Z"); // 5 minutes
        let exactly = at("2026-01-01T11:45:00Z"); // 15 minutes: not yet
        let objects = [
            Some(&old),
            None,
            Some(&fresh),
            Some(&older),
            Some(&exactly),
            None,
        ];
        assert_eq!(
            stuck_deletions(objects.iter().copied(), now, STUCK_DELETION_AFTER),
            2
        );
        assert_eq!(
            stuck_deletions(objects.iter().copied(), now, Duration::from_secs(60)),
            4
        );
        assert_eq!(
            stuck_deletions([None, None].into_iter(), now, Duration::ZERO),
            0
        );
        assert_eq!(
            stuck_deletions(std::iter::empty(), now, STUCK_DELETION_AFTER),
            0
        );
    }

    #[test]
    fn the_stuck_deletions_gauge_is_exported_by_kind() {
        let m = Metrics::default();
        m.set_deletions_stuck("CloudRunService", 3);
        m.set_deletions_stuck("VpcAccessConnector", 0);
        let text = m.encode();
        assert!(
            text.contains("runwarden_deletions_stuck{kind=\"CloudRunService\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("runwarden_deletions_stuck{kind=\"VpcAccessConnector\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE runwarden_deletions_stuck gauge"),
            "{text}"
        );
    }
}
