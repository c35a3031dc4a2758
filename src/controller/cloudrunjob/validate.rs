//! Pure validation of a CloudRunJob: what Google would refuse, found before any call, with the
//! field named. The CRD's CEL rules refuse most of it at admission; this is the same check for
//! objects admitted without them, and for what CEL cannot see (`metadata.name` as the job id).

use crate::api::v1alpha1::{CloudRunJob, ExecutionEnvironment};
use crate::controller::cloudrunservice::render::RESERVED_LABEL_PREFIXES;
use crate::controller::cloudrunservice::validate::MEMBER_PREFIXES;

/// Longest task timeout Cloud Run accepts.
pub const MAX_TIMEOUT_SECONDS: u64 = 168 * 3600;

/// `Ok` when the spec can be deployed; else every problem, joined.
pub fn validate(obj: &CloudRunJob) -> Result<(), String> {
    let problems = problems(obj);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn problems(obj: &CloudRunJob) -> Vec<String> {
    let spec = &obj.spec;
    let mut out = vec![];
    let id = obj.job_id();
    if !valid_job_id(&id) {
        out.push(format!(
            "the job id {id:?} (spec.jobName, else metadata.name) must match ^[a-z]([-a-z0-9]{{0,47}}[a-z0-9])?$"
        ));
    }
    if let Some((token, _)) = spec.execution.as_ref().and_then(|e| e.token())
        && id.len() + token.len() > 62
    {
        out.push(format!(
                "spec.execution: the job id {id:?} and the token {token:?} together are {} characters, at most 62 (the execution is named {{job}}-{{token}})",
                id.len() + token.len()
            ));
    }
    if spec.execution_environment != ExecutionEnvironment::Gen2 {
        out.push("spec.executionEnvironment: Cloud Run jobs run only on Gen2".into());
    }
    let t = &spec.tasks;
    if !(1..=10_000).contains(&t.count) {
        out.push(format!("spec.tasks.count {} must be 1 to 10000", t.count));
    }
    if t.parallelism < 0 || t.parallelism > t.count {
        out.push(format!(
            "spec.tasks.parallelism {} must be 0 to spec.tasks.count ({})",
            t.parallelism, t.count
        ));
    }
    if !(0..=10).contains(&t.max_retries) {
        out.push(format!(
            "spec.tasks.maxRetries {} must be 0 to 10",
            t.max_retries
        ));
    }
    match crate::duration::parse_duration(&t.timeout) {
        Ok(d) if d.as_secs() > MAX_TIMEOUT_SECONDS => {
            out.push(format!(
                "spec.tasks.timeout {} must be at most 168h",
                t.timeout
            ));
        }
        Ok(d) if d.as_secs() == 0 => {
            out.push("spec.tasks.timeout must be at least 1s".into());
        }
        Ok(_) => {}
        Err(e) => out.push(format!("spec.tasks.timeout: {e}")),
    }
    for (i, c) in spec.containers.iter().enumerate() {
        if !c.ports.is_empty() {
            out.push(format!(
                "spec.containers[{i}].ports: a job's tasks serve no port"
            ));
        }
        if c.startup_probe.is_some() || c.liveness_probe.is_some() || c.readiness_probe.is_some() {
            out.push(format!(
                "spec.containers[{i}]: a job's containers take no probes"
            ));
        }
        for m in &c.volume_mounts {
            if !spec.volumes.iter().any(|v| v.name == m.name) {
                out.push(format!(
                    "spec.containers[{i}].volumeMounts: {:?} is not one of spec.volumes",
                    m.name
                ));
            }
        }
        for d in &c.depends_on {
            if !spec
                .containers
                .iter()
                .any(|o| o.name.as_deref() == Some(d.as_str()))
            {
                out.push(format!(
                    "spec.containers[{i}].dependsOn: {d:?} names no container"
                ));
            }
        }
    }
    for m in &spec.access.executors {
        if !MEMBER_PREFIXES.iter().any(|p| m.starts_with(p)) {
            out.push(format!(
                "spec.access.executors: {m:?} is not an IAM member (user:, group:, serviceAccount:, domain:, principal://, principalSet://)"
            ));
        }
    }
    for k in spec.labels.keys() {
        if RESERVED_LABEL_PREFIXES.iter().any(|p| k.starts_with(p))
            || k == crate::api::MANAGED_BY_LABEL
            || k == crate::api::OWNER_LABEL
        {
            out.push(format!("spec.labels: {k:?} is reserved"));
        }
    }
    if let Some(enc) = &spec.encryption {
        let location = enc.kms_key.split('/').nth(3).unwrap_or_default();
        if location != spec.region {
            out.push(format!(
                "spec.encryption.kmsKey is in location {location:?} but the job is in {:?}: Cloud Run needs a key in the job's region",
                spec.region
            ));
        }
    }
    if let Some(s) = &spec.schedule {
        if let Err(e) = check_cron(&s.cron) {
            out.push(format!("spec.schedule.cron {:?}: {e}", s.cron));
        }
        if s.service_account.trim().is_empty() || !s.service_account.contains('@') {
            out.push("spec.schedule.serviceAccount must be a service account email".into());
        }
        if s.time_zone.is_empty() || s.time_zone.contains(' ') {
            out.push(format!(
                "spec.schedule.timeZone {:?} is not an IANA time zone",
                s.time_zone
            ));
        }
    }
    out
}

fn valid_job_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 49
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

/// Checks a unix-cron expression as Cloud Scheduler reads it: five fields (minute, hour,
/// day of month, month, day of week), each a comma list of `*`, `N`, `N-M`, with an optional
/// `/step`; months and days may be named (`JAN`, `MON`).
pub fn check_cron(cron: &str) -> Result<(), String> {
    const FIELDS: [(&str, u32, u32); 5] = [
        ("minute", 0, 59),
        ("hour", 0, 23),
        ("day of month", 1, 31),
        ("month", 1, 12),
        ("day of week", 0, 7),
    ];
    const MONTHS: [&str; 12] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    let parts: Vec<&str> = cron.split_whitespace().collect();
    if parts.len() != 5 {
        return Err(format!(
            "a schedule has 5 fields (minute hour day-of-month month day-of-week), this one {}",
            parts.len()
        ));
    }
    for (field, (what, min, max)) in parts.iter().zip(FIELDS) {
        let value = |v: &str| -> Result<u32, String> {
            let named = match what {
                "month" => MONTHS
                    .iter()
                    .position(|m| m.eq_ignore_ascii_case(v))
                    .map(|i| i as u32 + 1),
                "day of week" => DAYS
                    .iter()
                    .position(|d| d.eq_ignore_ascii_case(v))
                    .map(|i| i as u32),
                _ => None,
            };
            let n = match named {
                Some(n) => n,
                None => v
                    .parse::<u32>()
                    .map_err(|_| format!("{what} {v:?} is not a number"))?,
            };
            if n < min || n > max {
                return Err(format!("{what} {n} is out of range {min}-{max}"));
            }
            Ok(n)
        };
        for item in field.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (item, None),
            };
            if let Some(step) = step {
                match step.parse::<u32>() {
                    Ok(s) if s > 0 => {}
                    _ => return Err(format!("{what} step {step:?} must be a positive number")),
                }
            }
            if range == "*" {
                continue;
            }
            match range.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (value(a)?, value(b)?);
                    if a > b {
                        return Err(format!("{what} range {range} runs backwards"));
                    }
                }
                None => {
                    value(range)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::v1alpha1::CloudRunJobSpec;

    fn job(name: &str, spec: serde_json::Value) -> CloudRunJob {
        let mut base = serde_json::json!({
            "region": "europe-west1",
            "containers": [{"image": "europe-docker.pkg.dev/p1/jobs/export:1"}],
        });
        base.as_object_mut()
            .unwrap()
            .extend(spec.as_object().unwrap().clone());
        let spec: CloudRunJobSpec = serde_json::from_value(base).unwrap();
        CloudRunJob::new(name, spec)
    }

    #[test]
    fn what_google_would_refuse_is_refused_with_the_field_named() {
        for (spec, says) in [
            (
                serde_json::json!({"tasks": {"timeout": "169h"}}),
                "spec.tasks.timeout 169h must be at most 168h",
            ),
            (
                serde_json::json!({"tasks": {"count": 2, "parallelism": 3}}),
                "spec.tasks.parallelism 3 must be 0 to spec.tasks.count (2)",
            ),
            (
                serde_json::json!({"schedule": {"cron": "0 3 * *", "serviceAccount": "s@p1.iam.gserviceaccount.com"}}),
                "spec.schedule.cron \"0 3 * *\": a schedule has 5 fields",
            ),
            (
                serde_json::json!({"schedule": {"cron": "61 3 * * *", "serviceAccount": "s@p1.iam.gserviceaccount.com"}}),
                "minute 61 is out of range 0-59",
            ),
            (
                serde_json::json!({"executionEnvironment": "Gen1"}),
                "Cloud Run jobs run only on Gen2",
            ),
            (
                serde_json::json!({"access": {"executors": ["alice@example.com"]}}),
                "spec.access.executors: \"alice@example.com\" is not an IAM member",
            ),
            (
                serde_json::json!({"execution": {"runToken": "a".repeat(60)}}),
                "together are 66 characters, at most 62",
            ),
        ] {
            let err = validate(&job("export", spec.clone())).unwrap_err();
            assert!(err.contains(says), "{spec}: {err}");
        }
    }

    #[test]
    fn a_valid_job_passes_and_cron_forms_are_read() {
        let ok = job(
            "export",
            serde_json::json!({
                "tasks": {"count": 10, "parallelism": 2, "maxRetries": 0, "timeout": "168h"},
                "schedule": {"cron": "*/15 1-5,22 * JAN-MAR mon-fri", "serviceAccount": "s@p1.iam.gserviceaccount.com"},
                "execution": {"startToken": "first"},
            }),
        );
        assert_eq!(validate(&ok), Ok(()));
        assert!(check_cron("0 3 * * 8").is_err());
        assert!(check_cron("0 3 * * 7").is_ok(), "7 is Sunday too");
        assert!(check_cron("0 5-3 * * *").is_err());
        assert!(check_cron("*/0 * * * *").is_err());
    }
}
