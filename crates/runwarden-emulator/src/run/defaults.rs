//! What Cloud Run fills in server-side on create and patch, per the recorded real traffic
//! (`run-service-basic.tf-vcr-cassette.yaml`).

use serde_json::{Map, Value, json};

use crate::state::Project;

/// Fills the service-level and template defaults.
pub(super) fn apply_defaults(svc: &mut Value, project: &Project) {
    let Some(o) = svc.as_object_mut() else { return };
    o.entry("ingress").or_insert(json!("INGRESS_TRAFFIC_ALL"));
    o.entry("launchStage").or_insert(json!("GA"));
    if o.get("traffic")
        .and_then(Value::as_array)
        .is_none_or(|a| a.is_empty())
    {
        o.insert(
            "traffic".into(),
            json!([{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]),
        );
    }
    if let Some(t) = o.get_mut("template").and_then(Value::as_object_mut) {
        apply_template_defaults(t, project);
    }
}

/// `timeout`, the default compute service account, concurrency, and each container's defaults.
fn apply_template_defaults(t: &mut Map<String, Value>, project: &Project) {
    t.entry("timeout").or_insert(json!("300s"));
    t.entry("serviceAccount").or_insert(json!(format!(
        "{}-compute@developer.gserviceaccount.com",
        project.number
    )));
    t.entry("maxInstanceRequestConcurrency")
        .or_insert(json!(80));
    let Some(containers) = t.get_mut("containers").and_then(Value::as_array_mut) else {
        return;
    };
    let ingress = containers
        .iter()
        .position(|c| c.get("ports").is_some())
        .unwrap_or(0);
    for (i, c) in containers.iter_mut().enumerate() {
        let Some(c) = c.as_object_mut() else { continue };
        apply_resource_defaults(c);
        if i == ingress {
            apply_ingress_container_defaults(c);
        }
    }
}

/// `resources.limits {cpu 1000m, memory 512Mi}` (missing keys filled), and `cpuIdle` when
/// `resources` was absent.
fn apply_resource_defaults(c: &mut Map<String, Value>) {
    match c.get_mut("resources").and_then(Value::as_object_mut) {
        None => {
            c.insert(
                "resources".into(),
                json!({"limits": {"cpu": "1000m", "memory": "512Mi"}, "cpuIdle": true}),
            );
        }
        Some(r) => {
            let limits = r.entry("limits").or_insert(json!({}));
            if let Some(l) = limits.as_object_mut() {
                l.entry("cpu").or_insert(json!("1000m"));
                l.entry("memory").or_insert(json!("512Mi"));
            }
        }
    }
}

/// The ingress container's `ports [{http1, 8080}]` and a TCP `startupProbe` on that port.
fn apply_ingress_container_defaults(c: &mut Map<String, Value>) {
    let ports = c
        .entry("ports")
        .or_insert(json!([{"name": "http1", "containerPort": 8080}]));
    let mut port = 8080;
    if let Some(p) = ports
        .as_array_mut()
        .and_then(|a| a.first_mut())
        .and_then(Value::as_object_mut)
    {
        p.entry("name").or_insert(json!("http1"));
        let cp = p.entry("containerPort").or_insert(json!(8080));
        port = cp
            .as_i64()
            .or_else(|| cp.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(8080);
        *cp = json!(port);
    }
    c.entry("startupProbe").or_insert(json!({
        "timeoutSeconds": 240, "periodSeconds": 240, "failureThreshold": 1,
        "tcpSocket": {"port": port}
    }));
}
