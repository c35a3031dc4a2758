//! What Cloud Run fills in server-side on create and patch, per the recorded real traffic
//! (`run-service-basic.tf-vcr-cassette.yaml` for services; the real Cloud Run *job* recordings
//! `run-job-*.real.http.log` for jobs and for what services share with them: per-container
//! limits with sidecars and the completion of a declared probe).

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
    let build_config = o.get("buildConfig").cloned();
    if let Some(t) = o.get_mut("template").and_then(Value::as_object_mut) {
        apply_template_defaults(t, project);
        set_build_info(t, build_config.as_ref());
    }
}

/// `containers[].buildInfo` is output only: what a caller sends is dropped. Ours (not
/// recorded): a service with `buildConfig` (deployed from source) reports on its first
/// container the function target and source location it was built from.
fn set_build_info(t: &mut Map<String, Value>, build_config: Option<&Value>) {
    let Some(containers) = t.get_mut("containers").and_then(Value::as_array_mut) else {
        return;
    };
    for c in containers.iter_mut().filter_map(Value::as_object_mut) {
        c.remove("buildInfo");
    }
    let Some(bc) = build_config else { return };
    let mut info = Map::new();
    for key in ["functionTarget", "sourceLocation"] {
        if let Some(v) = bc
            .get(key)
            .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
        {
            info.insert(key.into(), v.clone());
        }
    }
    if let Some(first) = containers.first_mut().and_then(Value::as_object_mut)
        && !info.is_empty()
    {
        first.insert("buildInfo".into(), Value::Object(info));
    }
}

/// `timeout`, the default compute service account, concurrency, and each container's defaults.
fn apply_template_defaults(t: &mut Map<String, Value>, project: &Project) {
    t.entry("timeout").or_insert(json!("300s"));
    default_service_account(t, project);
    t.entry("maxInstanceRequestConcurrency")
        .or_insert(json!(80));
    let gpu = t.contains_key("nodeSelector");
    apply_container_defaults(t, !gpu);
    let Some(containers) = t.get_mut("containers").and_then(Value::as_array_mut) else {
        return;
    };
    let ingress = ingress_container(containers);
    if let Some(c) = containers.get_mut(ingress).and_then(Value::as_object_mut) {
        apply_ingress_container_defaults(c);
    }
}

/// What Cloud Run fills in on a job, per the real job recordings (`run-job-*.real.http.log`):
/// `launchStage GA`, `template.taskCount 1` (`parallelism` 0 stays unset), and on the task
/// template `timeout "600s"`, `maxRetries 3`, `executionEnvironment GEN2`, the default compute
/// account, and per-container `resources.limits` (no `cpuIdle`, no ports) and completed probes.
/// `latestCreatedExecution` is `{}` until the first execution.
pub(super) fn apply_job_defaults(job: &mut Value, project: &Project) {
    let Some(o) = job.as_object_mut() else { return };
    o.entry("launchStage").or_insert(json!("GA"));
    o.entry("latestCreatedExecution").or_insert(json!({}));
    let Some(et) = o.get_mut("template").and_then(Value::as_object_mut) else {
        return;
    };
    et.entry("taskCount").or_insert(json!(1));
    let Some(t) = et.get_mut("template").and_then(Value::as_object_mut) else {
        return;
    };
    t.entry("timeout").or_insert(json!("600s"));
    t.entry("maxRetries").or_insert(json!(3));
    t.entry("executionEnvironment")
        .or_insert(json!("EXECUTION_ENVIRONMENT_GEN2"));
    default_service_account(t, project);
    apply_container_defaults(t, false);
}

/// A template without `serviceAccount` runs as the project's default compute account.
fn default_service_account(t: &mut Map<String, Value>, project: &Project) {
    t.entry("serviceAccount")
        .or_insert(json!(crate::serviceaccounts::default_compute_account(
            project.number
        )));
}

/// Each container's `resources.limits` and completed probes; `cpuIdle` on containers without
/// `resources` when `cpu_idle`.
fn apply_container_defaults(t: &mut Map<String, Value>, cpu_idle: bool) {
    let Some(containers) = t.get_mut("containers").and_then(Value::as_array_mut) else {
        return;
    };
    // Recorded: 512Mi for a single container, 256Mi each when there are several.
    let memory = if containers.len() > 1 {
        "256Mi"
    } else {
        "512Mi"
    };
    for c in containers.iter_mut().filter_map(Value::as_object_mut) {
        apply_resource_defaults(c, memory, cpu_idle);
        complete_probes(c);
    }
}

/// The index of the ingress container: the one declaring a port, else the first.
pub(super) fn ingress_container(containers: &[Value]) -> usize {
    containers
        .iter()
        .position(|c| {
            c.get("ports")
                .and_then(Value::as_array)
                .is_some_and(|p| !p.is_empty())
        })
        .unwrap_or(0)
}

/// `resources.limits {cpu 1000m, memory}` (missing keys filled), and `cpuIdle` when `resources`
/// was absent (not on a GPU revision, which needs CPU always allocated).
fn apply_resource_defaults(c: &mut Map<String, Value>, memory: &str, cpu_idle: bool) {
    match c.get_mut("resources").and_then(Value::as_object_mut) {
        None => {
            let mut r = json!({"limits": {"cpu": "1000m", "memory": memory}});
            if cpu_idle {
                r["cpuIdle"] = json!(true);
            }
            c.insert("resources".into(), r);
        }
        Some(r) => {
            let limits = r.entry("limits").or_insert(json!({}));
            if let Some(l) = limits.as_object_mut() {
                l.entry("cpu").or_insert(json!("1000m"));
                l.entry("memory").or_insert(json!(memory));
            }
        }
    }
}

/// A declared probe completed as recorded: `failureThreshold 3`, `periodSeconds 10`,
/// `timeoutSeconds 1`, and its action's `port` the container's port (8080 when it declares
/// none); an `httpGet` without a path probes `/`.
fn complete_probes(c: &mut Map<String, Value>) {
    let port = container_port(c);
    for kind in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let Some(p) = c.get_mut(kind).and_then(Value::as_object_mut) else {
            continue;
        };
        p.entry("failureThreshold").or_insert(json!(3));
        p.entry("periodSeconds").or_insert(json!(10));
        p.entry("timeoutSeconds").or_insert(json!(1));
        for action in ["httpGet", "tcpSocket", "grpc"] {
            if let Some(a) = p.get_mut(action).and_then(Value::as_object_mut) {
                a.entry("port").or_insert(json!(port));
                if action == "httpGet" {
                    a.entry("path").or_insert(json!("/"));
                }
            }
        }
    }
}

/// The container's declared port, else 8080.
fn container_port(c: &Map<String, Value>) -> i64 {
    c.get("ports")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(|p| p.get("containerPort"))
        .and_then(|cp| {
            cp.as_i64()
                .or_else(|| cp.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or(8080)
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
