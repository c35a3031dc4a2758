//! Emulator-only controls under `/emulator/v1/`: counters, operation delay, rate quotas,
//! organization policies and the task simulation (`config`), the emulator clock, faults, reset,
//! health.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::error::{Code, GError};
use crate::orgpolicy;
use crate::routes;
use crate::shared::{Fault, Shared, lock};
use crate::util;

fn err(e: GError) -> (StatusCode, Value) {
    (e.code.http(), e.body())
}

pub(crate) fn handle(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    body: &[u8],
) -> (StatusCode, Value) {
    let ok = |v: Value| (StatusCode::OK, v);
    match (method.as_str(), path.trim_end_matches('/')) {
        ("GET", "healthz") => ok(json!({"status": "ok"})),
        ("GET", "counters") => ok(json!({"counters": *lock(&shared.counters)})),
        ("DELETE", "counters") => {
            lock(&shared.counters).clear();
            ok(json!({}))
        }
        ("GET", "config") => ok(config(shared)),
        ("PUT", "config") | ("PATCH", "config") => set_config(shared, body),
        ("POST", "clock:advance") => advance_clock(shared, body),
        ("POST", "faults") => add_fault(shared, body),
        ("GET", "faults") => ok(json!({"faults": *lock(&shared.faults)})),
        ("DELETE", "faults") => {
            lock(&shared.faults).clear();
            ok(json!({}))
        }
        ("POST", "reset") => {
            shared.reset();
            ok(json!({}))
        }
        _ => err(GError::not_found(format!(
            "No emulator control {method} /emulator/v1/{path}."
        ))),
    }
}

/// A JSON body, or INVALID_ARGUMENT.
fn json_body(body: &[u8]) -> Result<Value, (StatusCode, Value)> {
    serde_json::from_slice(body).map_err(|e| {
        err(GError::invalid(format!(
            "Invalid JSON payload received. {e}"
        )))
    })
}

/// A duration field (`"2.5s"` or seconds as a number), or INVALID_ARGUMENT naming it.
fn duration_field(field: &str, d: &Value) -> Result<Duration, (StatusCode, Value)> {
    let parsed = match d {
        Value::String(s) => util::parse_duration(s),
        Value::Number(n) => n
            .as_f64()
            .filter(|f| *f >= 0.0)
            .map(Duration::from_secs_f64),
        _ => None,
    };
    parsed.ok_or_else(|| {
        err(GError::invalid_field(
            field,
            format!("Invalid {field} {d}: use a duration such as \"2.5s\"."),
        ))
    })
}

/// `PUT config`: `{"operationDelay": "2.5s", "runReadsPerMinute": 60, "runWritesPerMinute": 0,
/// "orgPolicies": {"my-project": {"run.allowedIngress": ["internal"]}}, "taskDuration": "2s",
/// "taskFailures": {"projects/P/locations/R/jobs/J": 3}}`; absent fields are left as they are, a
/// quota of 0 is off, `orgPolicies` replaces every project's organization policy (`{}` removes
/// them; the shape is in [`crate::orgpolicy`]), `taskDuration` applies to executions started
/// afterwards, `taskFailures` sets the failures to come of the jobs it names; `buildDuration`
/// (e.g. `"3s"`) is how much longer than the operation delay a build submitted afterwards takes,
/// and `buildFailures` (`{"projects/P/locations/R": K}`) makes the next K builds of a parent fail.
fn set_config(shared: &Shared, body: &[u8]) -> (StatusCode, Value) {
    let v = match json_body(body) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let org_policies = match v.get("orgPolicies").map(orgpolicy::parse).transpose() {
        Ok(p) => p,
        Err(e) => return err(e),
    };
    let task_failures = match v.get("taskFailures").map(task_failures).transpose() {
        Ok(f) => f,
        Err(e) => return err(e),
    };
    let build_failures = match v.get("buildFailures").map(build_failures).transpose() {
        Ok(f) => f,
        Err(e) => return err(e),
    };
    let build_duration = match v
        .get("buildDuration")
        .map(|d| duration_field("buildDuration", d))
    {
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => return e,
        None => None,
    };
    for (field, slot) in [
        ("operationDelay", &shared.delay),
        ("taskDuration", &shared.task_duration),
    ] {
        if let Some(d) = v.get(field) {
            match duration_field(field, d) {
                Ok(d) => *lock(slot) = d,
                Err(e) => return e,
            }
        }
    }
    let mut quotas = lock(&shared.quotas).limits;
    for (field, slot) in [
        ("runReadsPerMinute", &mut quotas.run_reads_per_minute),
        ("runWritesPerMinute", &mut quotas.run_writes_per_minute),
    ] {
        match v.get(field).map(Value::as_u64) {
            None => {}
            Some(Some(n)) => *slot = n,
            Some(None) => {
                return err(GError::invalid_field(
                    field,
                    format!("Invalid {field}: use a whole number of calls (0 = no limit)."),
                ));
            }
        }
    }
    lock(&shared.quotas).limits = quotas;
    if let Some(policies) = org_policies {
        lock(&shared.state).org_policies = policies;
    }
    if let Some(d) = build_duration {
        lock(&shared.state).build_duration = d;
    }
    if let Some(failures) = build_failures {
        let st = &mut lock(&shared.state).build_failures;
        for (parent, k) in failures {
            if k == 0 {
                st.remove(&parent);
            } else {
                st.insert(parent, k);
            }
        }
    }
    if let Some(failures) = task_failures {
        let st = &mut lock(&shared.state).task_failures;
        for (job, k) in failures {
            if k == 0 {
                st.remove(&job);
            } else {
                st.insert(job, k);
            }
        }
    }
    (StatusCode::OK, config(shared))
}

/// `taskFailures`: `{"projects/P/locations/R/jobs/J": K}`, the next K task attempts of each job
/// fail (0 clears a job's); jobs left out keep theirs.
fn task_failures(v: &Value) -> Result<Vec<(String, u64)>, GError> {
    let bad = || {
        GError::invalid_field(
            "taskFailures",
            "Invalid taskFailures: use {\"projects/P/locations/R/jobs/J\": K} with K a whole number.",
        )
    };
    let map = v.as_object().ok_or_else(bad)?;
    map.iter()
        .map(|(job, k)| {
            let parts: Vec<&str> = job.split('/').collect();
            let named = parts.len() == 6 && parts[0] == "projects" && parts[4] == "jobs";
            match k.as_u64() {
                Some(k) if named => Ok((job.clone(), k)),
                _ => Err(bad()),
            }
        })
        .collect()
}

/// `buildFailures`: `{"projects/P/locations/R": K}`, the next K builds submitted under each
/// parent fail (0 clears a parent's); parents left out keep theirs.
fn build_failures(v: &Value) -> Result<Vec<(String, u64)>, GError> {
    let bad = || {
        GError::invalid_field(
            "buildFailures",
            "Invalid buildFailures: use {\"projects/P/locations/R\": K} with K a whole number.",
        )
    };
    let map = v.as_object().ok_or_else(bad)?;
    map.iter()
        .map(|(parent, k)| {
            let parts: Vec<&str> = parent.split('/').collect();
            let named = parts.len() == 4 && parts[0] == "projects" && parts[2] == "locations";
            match k.as_u64() {
                Some(k) if named => Ok((parent.clone(), k)),
                _ => Err(bad()),
            }
        })
        .collect()
}

/// `POST clock:advance`: `{"by": "61s"}` moves the emulator clock forward (token expiry, quota
/// windows).
fn advance_clock(shared: &Shared, body: &[u8]) -> (StatusCode, Value) {
    let by = match json_body(body).and_then(|v| duration_field("by", &v["by"])) {
        Ok(d) => d,
        Err(e) => return e,
    };
    *lock(&shared.clock_offset) += by;
    (StatusCode::OK, config(shared))
}

/// `POST faults`: checks the fault (api from the route table, status code, rate) and adds it.
fn add_fault(shared: &Shared, body: &[u8]) -> (StatusCode, Value) {
    let fault: Fault = match serde_json::from_slice(body) {
        Ok(f) => f,
        Err(e) => return err(GError::invalid(format!("Invalid fault: {e}"))),
    };
    let apis = routes::apis();
    if !apis.contains(&fault.api.as_str()) {
        return err(GError::invalid_field(
            "api",
            format!("Unknown api '{}': use {}.", fault.api, one_of(&apis)),
        ));
    }
    if Code::parse(&fault.code).is_none() {
        return err(GError::invalid_field(
            "code",
            format!("Unknown status code '{}'.", fault.code),
        ));
    }
    if fault.rate.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
        return err(GError::invalid_field(
            "rate",
            "rate must be between 0 and 1.",
        ));
    }
    let echo = serde_json::to_value(&fault).unwrap_or(Value::Null);
    lock(&shared.faults).push(fault);
    (StatusCode::OK, echo)
}

/// The settings in force; `orgPolicies` only when some project has one.
fn config(shared: &Shared) -> Value {
    let quotas = lock(&shared.quotas).limits;
    let mut v = json!({
        "operationDelay": util::format_duration(*lock(&shared.delay)),
        "runReadsPerMinute": quotas.run_reads_per_minute,
        "runWritesPerMinute": quotas.run_writes_per_minute,
        "clockOffset": util::format_duration(*lock(&shared.clock_offset)),
        "taskDuration": util::format_duration(*lock(&shared.task_duration)),
    });
    let st = lock(&shared.state);
    if !st.org_policies.is_empty() {
        v["orgPolicies"] = orgpolicy::to_json(&st.org_policies);
    }
    if !st.task_failures.is_empty() {
        v["taskFailures"] = json!(st.task_failures);
    }
    v["buildDuration"] = json!(util::format_duration(st.build_duration));
    if !st.build_failures.is_empty() {
        v["buildFailures"] = json!(st.build_failures);
    }
    v
}

/// `a, b, c or d`.
fn one_of(names: &[&str]) -> String {
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.to_string(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fault_apis_are_listed_as_before() {
        assert_eq!(
            super::one_of(&crate::routes::apis()),
            "run, vpcaccess, kms, cloudscheduler, resourcemanager, iam, iamcredentials or cloudbuild"
        );
    }
}
