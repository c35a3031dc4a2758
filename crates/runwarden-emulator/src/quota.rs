//! Cloud Run Admin API rate quotas: read and write requests per minute, per project and region
//! (off unless configured), counted in fixed one-minute windows of the emulator clock. Exceeding
//! one is 429 RESOURCE_EXHAUSTED with Google's message and details (`ErrorInfo`
//! `RATE_LIMIT_EXCEEDED`, `QuotaFailure`, `Help`, and a `RetryInfo` until the window resets).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::error::{Code, GError, GResult};
use crate::util;

/// Per-minute request quotas of the Cloud Run Admin API, per project and region. `0` = no limit
/// (the default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quotas {
    /// Read requests (gets, lists, `getIamPolicy`, `testIamPermissions`, operations get/list/wait)
    /// per minute per project and region.
    pub run_reads_per_minute: u64,
    /// Write requests (create, patch, delete, `setIamPolicy`, operations delete) per minute per
    /// project and region.
    pub run_writes_per_minute: u64,
}

/// Whether a call spends the read or the write quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Read,
    Write,
}

impl Kind {
    /// (metric display name, metric, limit id) as Google names them.
    fn names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Kind::Read => (
                "Read requests",
                "run.googleapis.com/read_regional",
                "ReadPerMinutePerProjectRegion",
            ),
            Kind::Write => (
                "Write requests",
                "run.googleapis.com/write_regional",
                "WritePerMinutePerProjectRegion",
            ),
        }
    }
}

const WINDOW: Duration = Duration::from_secs(60);

/// The limits and the current window's usage per (project number, region, kind).
#[derive(Debug, Default)]
pub(crate) struct Usage {
    pub(crate) limits: Quotas,
    /// (window index, calls in it).
    windows: HashMap<(u64, String, Kind), (u64, u64)>,
}

impl Usage {
    /// Forgets the usage (the limits stay).
    pub(crate) fn clear(&mut self) {
        self.windows.clear();
    }

    /// Counts one call; RESOURCE_EXHAUSTED when the window's limit is already used up.
    pub(crate) fn take(
        &mut self,
        kind: Kind,
        project_number: u64,
        region: &str,
        now: SystemTime,
    ) -> GResult<()> {
        let limit = match kind {
            Kind::Read => self.limits.run_reads_per_minute,
            Kind::Write => self.limits.run_writes_per_minute,
        };
        if limit == 0 {
            return Ok(());
        }
        let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let window = since_epoch.as_secs() / WINDOW.as_secs();
        let entry = self
            .windows
            .entry((project_number, region.to_string(), kind))
            .or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        if entry.1 >= limit {
            let into_window = since_epoch - Duration::from_secs(window * WINDOW.as_secs());
            let retry = WINDOW - into_window;
            return Err(exceeded(kind, project_number, region, limit, retry));
        }
        entry.1 += 1;
        Ok(())
    }
}

/// Google's 429 for a used-up Cloud Run rate quota.
fn exceeded(kind: Kind, number: u64, region: &str, limit: u64, retry: Duration) -> GError {
    let (display, metric, limit_id) = kind.names();
    let message = format!(
        "Quota exceeded for quota metric '{display}' and limit '{display} per minute per region' of service 'run.googleapis.com' for consumer 'project_number:{number}'."
    );
    let details: [Value; 4] = [
        json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "RATE_LIMIT_EXCEEDED",
            "domain": "googleapis.com",
            "metadata": {
                "consumer": format!("projects/{number}"),
                "quota_limit": limit_id,
                "quota_limit_value": limit.to_string(),
                "quota_location": region,
                "quota_metric": metric,
                "quota_unit": "1/min/{project}/{region}",
                "service": "run.googleapis.com",
            }
        }),
        json!({
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{
                "subject": format!("project_number:{number}"),
                "description": message,
                "apiService": "run.googleapis.com",
                "quotaMetric": metric,
                "quotaId": limit_id,
                "quotaDimensions": {"region": region},
                "quotaValue": limit.to_string(),
            }]
        }),
        json!({
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [{
                "description": "Request a higher quota limit.",
                "url": "https://cloud.google.com/docs/quotas/help/request_increase"
            }]
        }),
        json!({
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": util::format_duration(Duration::from_millis(retry.as_millis() as u64)),
        }),
    ];
    details
        .into_iter()
        .fold(GError::new(Code::ResourceExhausted, message), |e, d| {
            e.with_detail(d)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_windows_reset_on_the_minute() {
        let mut u = Usage {
            limits: Quotas {
                run_reads_per_minute: 2,
                run_writes_per_minute: 0,
            },
            ..Usage::default()
        };
        let t0 = UNIX_EPOCH + Duration::from_secs(600 + 45);
        assert!(u.take(Kind::Read, 1, "r", t0).is_ok());
        assert!(u.take(Kind::Read, 1, "r", t0).is_ok());
        assert!(u.take(Kind::Read, 2, "r", t0).is_ok(), "per project");
        assert!(u.take(Kind::Write, 1, "r", t0).is_ok(), "writes are off");
        let e = u.take(Kind::Read, 1, "r", t0).unwrap_err();
        assert_eq!(e.code, Code::ResourceExhausted);
        assert_eq!(e.details[3]["retryDelay"], "15s");
        assert!(
            u.take(Kind::Read, 1, "r", t0 + Duration::from_secs(15))
                .is_ok()
        );
    }
}
