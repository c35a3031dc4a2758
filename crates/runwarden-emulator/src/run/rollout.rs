//! Completing Cloud Run operations: a rollout (create or patch), with the CMEK check Cloud Run
//! runs when it deploys a revision, and a delete. Also the URIs Cloud Run assigns.

use serde_json::{Map, Value, json};

use super::resource::{generation, resource_etag};
use super::validation::parse_key;
use crate::error::{Code, GError};
use crate::operations::{RUN_SERVICE_TYPE, service_any};
use crate::state::State;
use crate::util::{self, get_path, str_of};

/// Completes a create/update rollout of `target_generation` (with `revision`, if the template
/// changed): the service becomes ready, or fails the CMEK check.
pub(crate) fn complete_deploy(
    st: &mut State,
    service: &str,
    target_generation: i64,
    revision: Option<&str>,
) -> (Value, Result<Value, GError>) {
    let Some(rec) = st.services.get(service).cloned() else {
        return (
            json!({"@type": RUN_SERVICE_TYPE, "name": service}),
            Err(GError::new(
                Code::Aborted,
                format!("Service '{service}' was deleted before the rollout finished."),
            )),
        );
    };
    if rec.deleting || generation(&rec.svc) != target_generation {
        // Superseded by a newer generation or a delete: nothing to roll out.
        let v = service_any(&rec.svc);
        return (v.clone(), Ok(v));
    }
    let parts: Vec<&str> = service.split('/').collect();
    let (project, region, sid) = (parts[1], parts[3], parts[5]);
    let number = number_of(st, project);
    let now = util::now();
    let mut svc = rec.svc.clone();
    let revision_name = |r: &str| format!("{service}/revisions/{r}");
    let revision_id = revision
        .map(String::from)
        .or_else(|| {
            str_of(&svc, "latestCreatedRevision")
                .rsplit('/')
                .next()
                .map(String::from)
        })
        .unwrap_or_default();
    let key = get_path(&svc, "template.encryptionKey")
        .and_then(Value::as_str)
        .unwrap_or("");
    let not_ready = format!("Revision '{revision_id}' is not ready and cannot serve traffic.");
    let check = cmek_check(st, key, number, &not_ready);
    let mut revision_ids = rec.revision_ids.clone();
    if check.is_ok()
        && let Some(r) = revision
        && !revision_ids.iter().any(|x| x == r)
    {
        revision_ids.push(r.to_string());
    }
    let routes = missing_revision(&svc, service, &revision_ids);
    let o = svc.as_object_mut().expect("service is an object");
    o.remove("reconciling");
    o.insert(
        "observedGeneration".into(),
        json!(target_generation.to_string()),
    );
    o.insert("uri".into(), json!(service_uri(sid, number, region)));
    if let Some(r) = revision {
        o.insert("latestCreatedRevision".into(), json!(revision_name(r)));
    }
    let result = match (check, routes) {
        (Ok(()), Ok(())) => {
            if let Some(r) = revision {
                o.insert("latestReadyRevision".into(), json!(revision_name(r)));
            }
            mark_ready(o, &now);
            let ts = traffic_statuses(&Value::Object(o.clone()), sid, number, region);
            o.insert("trafficStatuses".into(), ts);
            Ok(())
        }
        (Ok(()), Err(missing)) => {
            // The revision is made and ready; only routing fails (recorded: code 13).
            if let Some(r) = revision {
                o.insert("latestReadyRevision".into(), json!(revision_name(r)));
            }
            let message = format!(
                "Revision '{missing}' does not exist or is deleted. Update all traffic to route to currently available revisions."
            );
            mark_routes_failed(o, &message, &now);
            Err(GError::new(Code::Internal, message))
        }
        (Err((reason, message)), _) => {
            mark_failed(o, reason, &message, &now);
            Err(GError::precondition(message))
        }
    };
    let failed = result.is_err();
    if let Some(r) = st.services.get_mut(service) {
        r.svc = svc.clone();
        r.last_failed = failed;
        r.revision_ids = revision_ids;
    }
    let v = service_any(&svc);
    (v.clone(), result.map(|()| v))
}

/// The first REVISION traffic target naming a revision this service does not have, as its short
/// id. A target may name the revision by id or by full name.
fn missing_revision(svc: &Value, service: &str, revision_ids: &[String]) -> Result<(), String> {
    let traffic = svc.get("traffic").and_then(Value::as_array);
    for t in traffic.into_iter().flatten() {
        if target_type(t) != "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION" {
            continue;
        }
        let named = str_of(t, "revision");
        let id = revision_id(named);
        let ours = match named.rsplit_once("/revisions/") {
            None => true,
            Some((parent, _)) => same_service(parent, service),
        };
        if !ours || !revision_ids.iter().any(|r| r == id) {
            return Err(id.to_string());
        }
    }
    Ok(())
}

/// Whether `parent` (`projects/{id or number}/locations/{l}/services/{s}`) is `service`.
fn same_service(parent: &str, service: &str) -> bool {
    let a: Vec<&str> = parent.split('/').collect();
    let b: Vec<&str> = service.split('/').collect();
    a.len() == 6
        && b.len() == 6
        && a[0] == "projects"
        && a[2..] == b[2..]
        && (a[1] == b[1] || a[1] == crate::state::project_number(b[1]).to_string())
}

/// The short id of a revision named by id or full name.
fn revision_id(named: &str) -> &str {
    named.rsplit('/').next().unwrap_or(named)
}

/// A traffic target's type; a target without one is REVISION when it names a revision.
fn target_type(t: &Value) -> &str {
    match str_of(t, "type") {
        "" if !str_of(t, "revision").is_empty() => "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION",
        "" => "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST",
        other => other,
    }
}

/// A rollout whose revision is ready but whose traffic cannot be routed: Ready and RoutesReady
/// failed, ConfigurationsReady succeeded; `trafficStatuses` stay as they were.
fn mark_routes_failed(o: &mut Map<String, Value>, message: &str, now: &str) {
    o.insert("terminalCondition".into(), json!({"type": "Ready", "state": "CONDITION_FAILED", "message": message, "lastTransitionTime": now}));
    o.insert("conditions".into(), json!([
        {"type": "RoutesReady", "state": "CONDITION_FAILED", "message": message, "lastTransitionTime": now},
        {"type": "ConfigurationsReady", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": now}
    ]));
}

/// A successful rollout: Ready, RoutesReady and ConfigurationsReady succeeded.
fn mark_ready(o: &mut Map<String, Value>, now: &str) {
    o.insert(
        "terminalCondition".into(),
        json!({"type": "Ready", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": now}),
    );
    o.insert("conditions".into(), json!([
        {"type": "RoutesReady", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": now},
        {"type": "ConfigurationsReady", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": now}
    ]));
}

/// A failed rollout: Ready and ConfigurationsReady failed with `reason`; routes stay ready when
/// an earlier revision still serves.
fn mark_failed(o: &mut Map<String, Value>, reason: &str, message: &str, now: &str) {
    o.insert("terminalCondition".into(), json!({"type": "Ready", "state": "CONDITION_FAILED", "reason": reason, "message": message, "lastTransitionTime": now}));
    let routes = if o.contains_key("latestReadyRevision") {
        "CONDITION_SUCCEEDED"
    } else {
        "CONDITION_FAILED"
    };
    o.insert("conditions".into(), json!([
        {"type": "RoutesReady", "state": routes, "lastTransitionTime": now},
        {"type": "ConfigurationsReady", "state": "CONDITION_FAILED", "reason": reason, "message": message, "lastTransitionTime": now}
    ]));
}

/// Completes a delete: the service disappears, with its IAM policy.
pub(crate) fn complete_delete(st: &mut State, service: &str) -> (Value, Result<Value, GError>) {
    let Some(rec) = st.services.remove(service) else {
        return (
            json!({"@type": RUN_SERVICE_TYPE, "name": service}),
            Ok(json!({"@type": RUN_SERVICE_TYPE, "name": service})),
        );
    };
    let etag = resource_etag(st, service, generation(&rec.svc));
    let now = util::now();
    let mut svc = rec.svc;
    if let Some(o) = svc.as_object_mut() {
        o.remove("reconciling");
        o.insert(
            "observedGeneration".into(),
            o.get("generation").cloned().unwrap_or(json!("0")),
        );
        o.insert("updateTime".into(), json!(now));
        o.insert(
            "terminalCondition".into(),
            json!({"type": "Ready", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": now}),
        );
        o.insert("etag".into(), json!(etag));
    }
    let v = service_any(&svc);
    (v.clone(), Ok(v))
}

/// The CMEK check Cloud Run runs when it rolls out a revision or deploys a job, for `key` (none
/// when empty): `Err((reason, message))`, the message starting with `not_ready`.
pub(super) fn cmek_check(
    st: &State,
    key: &str,
    number: u64,
    not_ready: &str,
) -> Result<(), (&'static str, String)> {
    if key.is_empty() {
        return Ok(());
    }
    let agent = format!("service-{number}@serverless-robot-prod.iam.gserviceaccount.com");
    let canonical = parse_key(key).map(|(p, l, r, k)| {
        let id = if p.bytes().all(|b| b.is_ascii_digit()) {
            p.parse::<u64>()
                .ok()
                .and_then(|n| st.projects.get(&n).cloned())
                .unwrap_or_else(|| p.to_string())
        } else {
            p.to_string()
        };
        format!("projects/{id}/locations/{l}/keyRings/{r}/cryptoKeys/{k}")
    });
    let Some(rec) = canonical.and_then(|c| st.crypto_keys.get(&c)) else {
        return Err((
            "ENCRYPTION_KEY_CHECK_FAILED",
            format!("{not_ready} The encryption key {key} does not exist."),
        ));
    };
    if !rec
        .policy
        .grants(&format!("serviceAccount:{agent}"), &KMS_ROLES)
    {
        return Err((
            "ENCRYPTION_KEY_PERMISSION_DENIED",
            format!(
                "{not_ready} The Cloud Run service agent {agent} does not have permission to use the encryption key {key}. Grant it the role roles/cloudkms.cryptoKeyEncrypterDecrypter on the key."
            ),
        ));
    }
    let state = rec
        .primary
        .and_then(|n| rec.versions.get(&n))
        .map(|v| str_of(v, "state").to_string())
        .unwrap_or_else(|| "NO_PRIMARY_VERSION".into());
    if state != "ENABLED" {
        return Err((
            "ENCRYPTION_KEY_CHECK_FAILED",
            format!(
                "{not_ready} The primary version of the encryption key {key} is not enabled (state: {state})."
            ),
        ));
    }
    Ok(())
}

/// `trafficStatuses` from `traffic`: type and percent; a REVISION target's revision id; a tag
/// and its URI `https://{tag}---{service host}`. An untagged LATEST target carries no revision,
/// tag or uri (recorded).
fn traffic_statuses(svc: &Value, sid: &str, number: u64, region: &str) -> Value {
    let traffic = svc.get("traffic").and_then(Value::as_array);
    let host = format!(
        "{sid}-{}-{}.a.run.app",
        project_hash(number),
        region_code(region)
    );
    let statuses = traffic.into_iter().flatten().map(|t| {
        let kind = target_type(t);
        let mut s = json!({"type": kind});
        let percent = t
            .get("percent")
            .and_then(|p| {
                p.as_i64()
                    .or_else(|| p.as_str().and_then(|x| x.parse().ok()))
            })
            .unwrap_or(0);
        if percent != 0 {
            s["percent"] = json!(percent);
        }
        if kind == "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION" {
            s["revision"] = json!(revision_id(str_of(t, "revision")));
        }
        let tag = str_of(t, "tag");
        if !tag.is_empty() {
            s["tag"] = json!(tag);
            s["uri"] = json!(format!("https://{tag}---{host}"));
        }
        s
    });
    Value::Array(statuses.collect())
}

fn number_of(st: &State, project: &str) -> u64 {
    if project.bytes().all(|b| b.is_ascii_digit()) {
        project.parse().unwrap_or(0)
    } else {
        let n = crate::state::project_number(project);
        debug_assert!(st.projects.get(&n).is_none_or(|id| id == project));
        n
    }
}

fn service_uri(sid: &str, number: u64, region: &str) -> String {
    format!(
        "https://{sid}-{}-{}.a.run.app",
        project_hash(number),
        region_code(region)
    )
}

fn project_hash(number: u64) -> String {
    base36(util::fnv1a(&number.to_string()), 10)
}

fn base36(mut n: u64, len: usize) -> String {
    const A: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = String::new();
    for _ in 0..len {
        s.push(A[(n % 36) as usize] as char);
        n /= 36;
    }
    s
}

fn region_code(region: &str) -> String {
    let known = [
        ("us-central1", "uc"),
        ("us-east1", "ue"),
        ("us-east4", "uk"),
        ("us-east5", "ul"),
        ("us-west1", "uw"),
        ("us-west2", "wl"),
        ("us-west3", "wm"),
        ("us-west4", "wn"),
        ("us-south1", "vp"),
        ("europe-west1", "ew"),
        ("europe-west2", "nw"),
        ("europe-west3", "ey"),
        ("europe-west4", "ez"),
        ("europe-west6", "oa"),
        ("europe-west9", "od"),
        ("europe-north1", "lz"),
        ("europe-central2", "lm"),
        ("asia-east1", "de"),
        ("asia-east2", "df"),
        ("asia-northeast1", "an"),
        ("asia-northeast2", "dt"),
        ("asia-northeast3", "du"),
        ("asia-south1", "el"),
        ("asia-southeast1", "as"),
        ("asia-southeast2", "et"),
        ("australia-southeast1", "ts"),
        ("northamerica-northeast1", "nn"),
        ("southamerica-east1", "rj"),
        ("me-west1", "zf"),
    ];
    known
        .iter()
        .find(|(r, _)| *r == region)
        .map(|(_, c)| c.to_string())
        .unwrap_or_else(|| {
            region
                .split('-')
                .take(2)
                .filter_map(|p| p.chars().next())
                .collect()
        })
}

/// The roles that let the Cloud Run service agent use a key.
const KMS_ROLES: [&str; 1] = ["roles/cloudkms.cryptoKeyEncrypterDecrypter"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_codes() {
        assert_eq!(region_code("us-central1"), "uc");
    }
}
