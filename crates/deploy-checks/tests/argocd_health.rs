//! Runs the Argo CD health checks in deploy/argocd/ under Lua 5.1 (Argo CD uses gopher-lua,
//! a Lua 5.1 implementation) against sample objects and asserts the exact status and message.

mod common;

use mlua::{Lua, Table, Value};
use serde_json::{Value as Json, json};

const CRS_LUA: &str = "deploy/argocd/runwarden.dev/CloudRunService/health.lua";
const JOB_LUA: &str = "deploy/argocd/runwarden.dev/CloudRunJob/health.lua";
const CONN_LUA: &str = "deploy/argocd/runwarden.dev/VpcAccessConnector/health.lua";
const CM_PATCH: &str = "deploy/argocd/argocd-cm-patch.yaml";

/// Converts JSON the way Argo CD hands an object to the script: objects and arrays become
/// tables (arrays 1-based), numbers become Lua numbers, JSON null is left out.
fn to_lua(lua: &Lua, v: &Json) -> mlua::Result<Value> {
    Ok(match v {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => Value::Number(n.as_f64().expect("finite number")),
        Json::String(s) => Value::String(lua.create_string(s)?),
        Json::Array(items) => {
            let t = lua.create_table()?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, to_lua(lua, item)?)?;
            }
            Value::Table(t)
        }
        Json::Object(map) => {
            let t = lua.create_table()?;
            for (k, item) in map {
                if !item.is_null() {
                    t.raw_set(k.as_str(), to_lua(lua, item)?)?;
                }
            }
            Value::Table(t)
        }
    })
}

/// Runs a health script with `obj` set, returning (status, message).
fn health(script_rel: &str, obj: &Json) -> (String, String) {
    let lua = Lua::new();
    lua.globals()
        .set("obj", to_lua(&lua, obj).unwrap())
        .unwrap();
    let src = common::read(script_rel);
    let hs: Table = lua
        .load(&src)
        .set_name(script_rel)
        .eval()
        .unwrap_or_else(|e| panic!("{script_rel} failed: {e}"));
    let status: String = hs.get("status").expect("hs.status is a string");
    let message: String = hs.get("message").expect("hs.message is a string");
    assert!(
        [
            "Healthy",
            "Progressing",
            "Degraded",
            "Suspended",
            "Missing",
            "Unknown"
        ]
        .contains(&status.as_str()),
        "{status} is not an Argo CD health status"
    );
    (status, message)
}

fn crs(generation: i64, status: Json) -> Json {
    json!({
        "apiVersion": "runwarden.dev/v1alpha1",
        "kind": "CloudRunService",
        "metadata": {"name": "hello", "namespace": "team-a", "generation": generation},
        "spec": {"region": "europe-west1", "containers": [{"image": "europe-docker.pkg.dev/p/r/hello@sha256:00"}]},
        "status": status,
    })
}

fn cond(type_: &str, status: &str, reason: &str, message: &str, observed: i64) -> Json {
    json!({
        "type": type_, "status": status, "reason": reason, "message": message,
        "lastTransitionTime": "2025-01-01T00:00:00Z", "observedGeneration": observed,
    })
}

/// A CloudRunService whose Ready condition is False/Unknown with `reason`, observed for generation 2.
fn crs_ready(status: &str, reason: &str, message: &str) -> Json {
    crs(
        2,
        json!({
            "observedGeneration": 2,
            "conditions": [
                cond("ServiceReady", status, reason, message, 2),
                cond("Ready", status, reason, message, 2),
            ],
        }),
    )
}

fn assert_health(script: &str, obj: &Json, want_status: &str, want_message: &str) {
    let (status, message) = health(script, obj);
    assert_eq!(
        (status.as_str(), message.as_str()),
        (want_status, want_message),
        "object: {obj:#}"
    );
}

#[test]
fn cloud_run_service_ready_for_current_generation_is_healthy() {
    let obj = crs(
        3,
        json!({
            "observedGeneration": 3,
            "uri": "https://hello-abc123-ew.a.run.app",
            "conditions": [
                cond("ServiceReady", "True", "Ready", "", 3),
                cond("Ready", "True", "Ready", "Serving revision hello-00003-xyz", 3),
            ],
        }),
    );
    assert_health(
        CRS_LUA,
        &obj,
        "Healthy",
        "Ready: Serving revision hello-00003-xyz (https://hello-abc123-ew.a.run.app)",
    );
}

#[test]
fn cloud_run_service_stale_generation_is_progressing_even_if_ready() {
    // The user changed the spec (generation 4); the status still describes generation 3.
    let obj = crs(
        4,
        json!({
            "observedGeneration": 3,
            "conditions": [cond("Ready", "True", "Ready", "Serving revision hello-00003-xyz", 3)],
        }),
    );
    assert_health(
        CRS_LUA,
        &obj,
        "Progressing",
        "Waiting for runwarden to observe generation 4",
    );
}

#[test]
fn cloud_run_service_stale_ready_condition_is_progressing() {
    // status.observedGeneration is current but the Ready condition was computed for an older one.
    let obj = crs(
        5,
        json!({
            "observedGeneration": 5,
            "conditions": [cond("Ready", "True", "Ready", "Serving", 4)],
        }),
    );
    assert_health(
        CRS_LUA,
        &obj,
        "Progressing",
        "Waiting for runwarden to observe generation 5",
    );
}

#[test]
fn cloud_run_service_reconciling_is_progressing() {
    let msg = "Waiting for operation projects/p/locations/europe-west1/operations/op-1";
    assert_health(
        CRS_LUA,
        &crs_ready("False", "Reconciling", msg),
        "Progressing",
        &format!("Reconciling: {msg}"),
    );
    assert_health(
        CRS_LUA,
        &crs_ready("Unknown", "Reconciling", msg),
        "Progressing",
        &format!("Reconciling: {msg}"),
    );
}

#[test]
fn cloud_run_service_policy_violation_is_degraded() {
    let msg = "RunSecurityPolicy baseline: allowedRegions does not include us-central1; forbidUnauthenticated";
    assert_health(
        CRS_LUA,
        &crs_ready("False", "Violation", msg),
        "Degraded",
        &format!("Violation: {msg}"),
    );
}

#[test]
fn cloud_run_service_already_exists_is_degraded() {
    let msg = "Cloud Run service projects/p/locations/europe-west1/services/hello exists and is not owned by this object; set adoptionPolicy: Adopt";
    assert_health(
        CRS_LUA,
        &crs_ready("False", "AlreadyExists", msg),
        "Degraded",
        &format!("AlreadyExists: {msg}"),
    );
}

#[test]
fn cloud_run_service_without_status_is_progressing() {
    let mut obj = crs(1, json!(null));
    assert_health(
        CRS_LUA,
        &obj,
        "Progressing",
        "Waiting for runwarden to reconcile",
    );
    obj.as_object_mut().unwrap().remove("status");
    assert_health(
        CRS_LUA,
        &obj,
        "Progressing",
        "Waiting for runwarden to reconcile",
    );
}

#[test]
fn cloud_run_service_without_ready_condition_is_progressing() {
    let obj = crs(1, json!({"observedGeneration": 1, "conditions": []}));
    assert_health(
        CRS_LUA,
        &obj,
        "Progressing",
        "Waiting for the Ready condition",
    );
    let obj = crs(1, json!({"observedGeneration": 1}));
    assert_health(
        CRS_LUA,
        &obj,
        "Progressing",
        "Waiting for the Ready condition",
    );
}

#[test]
fn cloud_run_service_reasons_map_to_the_documented_health() {
    // Reasons that need a spec change, and failures that may heal without one: Degraded.
    for reason in [
        "InvalidSpec",
        "Violation",
        "AlreadyExists",
        "RegionMismatch",
        "LocationMismatch",
        "InvalidMember",
        "DeployFailed",
        "RevisionFailed",
        "PermissionDenied",
        "KeyDisabled",
        "KeyDestroyed",
        "KeyNotFound",
        "SomeReasonNobodyDocumented",
    ] {
        assert_health(
            CRS_LUA,
            &crs_ready("False", reason, "m"),
            "Degraded",
            &format!("{reason}: m"),
        );
    }
    // Transient or progressing reasons: runwarden retries by itself.
    for reason in [
        "Reconciling",
        "Creating",
        "ConnectorNotReady",
        "ConnectorNotFound",
        "QuotaExceeded",
        "Unavailable",
        "Deleting",
        "Conflict",
    ] {
        assert_health(
            CRS_LUA,
            &crs_ready("False", reason, "m"),
            "Progressing",
            &format!("{reason}: m"),
        );
    }
}

#[test]
fn cloud_run_service_message_falls_back_when_condition_has_no_text() {
    assert_health(
        CRS_LUA,
        &crs_ready("False", "KeyDisabled", ""),
        "Degraded",
        "KeyDisabled",
    );
    assert_health(
        CRS_LUA,
        &crs_ready("Unknown", "", ""),
        "Progressing",
        "Reconciling",
    );
}

fn connector(generation: i64, status: Json) -> Json {
    json!({
        "apiVersion": "runwarden.dev/v1alpha1",
        "kind": "VpcAccessConnector",
        "metadata": {"name": "conn", "namespace": "team-a", "generation": generation},
        "spec": {"region": "europe-west1", "network": "default", "ipCidrRange": "10.8.0.0/28"},
        "status": status,
    })
}

fn connector_state(state: &str, ready: Option<Json>) -> Json {
    let mut status = json!({"observedGeneration": 1, "state": state});
    if let Some(ready) = ready {
        status["conditions"] = json!([ready]);
    }
    connector(1, status)
}

#[test]
fn connector_ready_is_healthy() {
    let obj = connector_state(
        "Ready",
        Some(cond("Ready", "True", "Ready", "Connector is READY", 1)),
    );
    assert_health(CONN_LUA, &obj, "Healthy", "Ready: Connector is READY");
}

#[test]
fn connector_creating_is_progressing() {
    let obj = connector_state(
        "Creating",
        Some(cond(
            "Ready",
            "False",
            "Creating",
            "Waiting for connector operation",
            1,
        )),
    );
    assert_health(
        CONN_LUA,
        &obj,
        "Progressing",
        "Creating: Waiting for connector operation",
    );
    assert_health(
        CONN_LUA,
        &connector_state("Creating", None),
        "Progressing",
        "Connector is in state Creating",
    );
}

#[test]
fn connector_deleting_is_progressing() {
    let obj = connector_state(
        "Deleting",
        Some(cond("Ready", "False", "Deleting", "Deleting connector", 1)),
    );
    assert_health(
        CONN_LUA,
        &obj,
        "Progressing",
        "Deleting: Deleting connector",
    );
}

#[test]
fn connector_deletion_waiting_for_its_services_is_progressing() {
    let obj = connector_state(
        "Ready",
        Some(cond(
            "Ready",
            "False",
            "InUse",
            "still used by CloudRunService payments",
            1,
        )),
    );
    assert_health(
        CONN_LUA,
        &obj,
        "Progressing",
        "InUse: still used by CloudRunService payments",
    );
}

#[test]
fn connector_error_state_is_degraded() {
    let obj = connector_state(
        "Error",
        Some(cond(
            "Ready",
            "False",
            "Unavailable",
            "Google reports the connector in state ERROR",
            1,
        )),
    );
    assert_health(
        CONN_LUA,
        &obj,
        "Degraded",
        "Unavailable: Google reports the connector in state ERROR",
    );
    assert_health(
        CONN_LUA,
        &connector_state("Error", None),
        "Degraded",
        "Connector is in state Error",
    );
}

#[test]
fn connector_already_exists_is_degraded() {
    let obj = connector_state(
        "Creating",
        Some(cond(
            "Ready",
            "False",
            "AlreadyExists",
            "connector conn exists; set adoptionPolicy: Adopt",
            1,
        )),
    );
    assert_health(
        CONN_LUA,
        &obj,
        "Degraded",
        "AlreadyExists: connector conn exists; set adoptionPolicy: Adopt",
    );
}

#[test]
fn connector_stale_generation_and_missing_status_are_progressing() {
    let obj = connector(
        2,
        json!({"observedGeneration": 1, "state": "Ready", "conditions": [cond("Ready", "True", "Ready", "ok", 1)]}),
    );
    assert_health(
        CONN_LUA,
        &obj,
        "Progressing",
        "Waiting for runwarden to observe generation 2",
    );
    assert_health(
        CONN_LUA,
        &connector(1, json!(null)),
        "Progressing",
        "Waiting for runwarden to reconcile",
    );
    assert_health(
        CONN_LUA,
        &connector(1, json!({"observedGeneration": 1})),
        "Progressing",
        "Waiting for the Ready condition",
    );
}

#[test]
fn argocd_cm_patch_embeds_the_same_lua() {
    let cm = common::yaml(CM_PATCH);
    assert_eq!(common::get_str(&cm, &["kind"]), Some("ConfigMap"));
    assert_eq!(
        common::get_str(&cm, &["metadata", "name"]),
        Some("argocd-cm")
    );
    let data = common::get(&cm, &["data"])
        .and_then(|d| d.as_mapping())
        .expect("argocd-cm patch has data");
    assert_eq!(data.len(), 3, "exactly the three health checks: {data:?}");
    for (kind, script) in [
        ("CloudRunService", CRS_LUA),
        ("CloudRunJob", JOB_LUA),
        ("VpcAccessConnector", CONN_LUA),
    ] {
        // The key form Argo CD documents: resource.customizations.health.<group>_<kind>.
        let key = format!("resource.customizations.health.runwarden.dev_{kind}");
        let embedded = data
            .get(key.as_str())
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("{CM_PATCH} lacks data.{key}"));
        assert!(
            embedded.as_bytes() == common::read_bytes(script).as_slice(),
            "data.{key} in {CM_PATCH} is not byte-identical to {script}"
        );
    }
}

fn job(generation: i64, status: Json) -> Json {
    json!({
        "apiVersion": "runwarden.dev/v1alpha1",
        "kind": "CloudRunJob",
        "metadata": {"name": "export", "namespace": "data", "generation": generation},
        "status": status,
    })
}

#[test]
fn cloud_run_job_health_follows_its_run_token_execution() {
    let ready = job(
        2,
        json!({
            "observedGeneration": 2,
            "conditions": [cond("Ready", "True", "Ready", "all conditions are satisfied", 2)],
            "latestExecution": {"name": "export-nightly", "state": "Succeeded"},
        }),
    );
    assert_health(
        JOB_LUA,
        &ready,
        "Healthy",
        "Ready: all conditions are satisfied (last execution export-nightly: Succeeded)",
    );
    // A runToken's execution running: Ready Unknown, Progressing.
    let running = job(
        2,
        json!({
            "observedGeneration": 2,
            "conditions": [cond("Ready", "Unknown", "ExecutionRunning", "JobReady: execution export-first is running", 2)],
        }),
    );
    assert_health(
        JOB_LUA,
        &running,
        "Progressing",
        "ExecutionRunning: JobReady: execution export-first is running",
    );
    // One that failed: Degraded until a new token or generation.
    let failed = job(
        2,
        json!({
            "observedGeneration": 2,
            "conditions": [cond("Ready", "False", "ExecutionFailed", "JobReady: execution export-first failed", 2)],
        }),
    );
    assert_health(
        JOB_LUA,
        &failed,
        "Degraded",
        "ExecutionFailed: JobReady: execution export-first failed",
    );
    assert_health(
        JOB_LUA,
        &job(3, json!({"observedGeneration": 2})),
        "Progressing",
        "Waiting for runwarden to observe generation 3",
    );
}
