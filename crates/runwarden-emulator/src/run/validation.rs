//! Synchronous validation of a Cloud Run service or job spec, as the create and patch calls run
//! it (INVALID_ARGUMENT, or FAILED_PRECONDITION for a connector that is not ready). The checks of
//! the template a revision or a task runs (containers, volumes, mounts, GPU, service account,
//! VPC access, encryption key) are shared; [`Rt`] says how the messages name the fields.

use serde_json::{Value, json};

use crate::enums;
use crate::error::{GError, GResult};
use crate::state::State;
use crate::util::{self, get_path, str_of};

/// How validation messages name a field: `{request}.{resource}.{field}`, with the template a
/// revision or task runs at `template` (`CreateServiceRequest.service.template.containers`,
/// `CreateJobRequest.job.template.template.containers`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Rt<'a> {
    /// `CreateServiceRequest`, `UpdateJobRequest`, ...
    pub(super) request: &'a str,
    /// The request field holding the resource: `service` or `job`.
    pub(super) resource: &'a str,
    /// The path of the revision or task template in the resource (snake_case).
    pub(super) template: &'a str,
}

impl Rt<'_> {
    /// A service request: the revision template is `template`.
    pub(super) const fn service(request: &str) -> Rt<'_> {
        Rt {
            request,
            resource: "service",
            template: "template",
        }
    }

    /// A job request: the task template is `template.template`.
    pub(super) const fn job(request: &str) -> Rt<'_> {
        Rt {
            request,
            resource: "job",
            template: "template.template",
        }
    }

    /// `{request}.{resource}.{field}`.
    fn field(&self, field: &str) -> String {
        format!("{}.{}.{field}", self.request, self.resource)
    }

    /// A field of the template: `{template}.{field}`.
    fn t(&self, field: &str) -> String {
        format!("{}.{field}", self.template)
    }
}

/// Synchronous validation of a service spec (INVALID_ARGUMENT / FAILED_PRECONDITION).
pub(super) fn validate(st: &mut State, rt: &Rt, svc: &Value, region: &str) -> GResult<()> {
    check_keys(rt, "labels", svc.get("labels"), true)?;
    check_keys(rt, "annotations", svc.get("annotations"), false)?;
    check_binary_authorization(rt, svc)?;
    check_service_scaling(rt, svc)?;
    check_traffic(rt, svc)?;
    let Some(t) = svc.get("template").filter(|t| t.is_object()) else {
        return Err(violation(rt, "template", "must be set."));
    };
    check_keys(rt, "template.labels", t.get("labels"), true)?;
    check_keys(rt, "template.annotations", t.get("annotations"), false)?;
    check_gpu(rt, svc, t)?;
    check_template_scaling(rt, t)?;
    check_concurrency(rt, t)?;
    check_durations(rt, t)?;
    validate_template(st, rt, t, region)
}

/// The checks a revision template and a task template share.
fn validate_template(st: &mut State, rt: &Rt, t: &Value, region: &str) -> GResult<()> {
    check_containers(rt, t)?;
    check_volumes(rt, t)?;
    check_mounts_and_dependencies(rt, t)?;
    check_service_account(rt, t)?;
    if let Some(vpc) = t.get("vpcAccess") {
        check_vpc_access(st, rt, vpc, region)?;
    }
    check_encryption_key(st, rt, t, region)
}

/// Synchronous validation of a job spec: the execution template (`taskCount` 1–10,000,
/// `parallelism` not negative), the task template (shared checks, `maxRetries` 0–10, `timeout`
/// 1s–168h), and the second generation environment jobs always use (Gen1 refused with the
/// recorded wording).
pub(super) fn validate_job(st: &mut State, rt: &Rt, job: &Value, region: &str) -> GResult<()> {
    check_keys(rt, "labels", job.get("labels"), true)?;
    check_keys(rt, "annotations", job.get("annotations"), false)?;
    check_binary_authorization(rt, job)?;
    let Some(et) = job.get("template").filter(|t| t.is_object()) else {
        return Err(violation(rt, "template", "must be set."));
    };
    let gen1_annotation = get_path(et, "annotations")
        .and_then(|a| a.get(EXEC_ENV_ANNOTATION))
        .and_then(Value::as_str)
        .is_some_and(|v| v.eq_ignore_ascii_case("gen1"));
    let gen1 = get_path(et, "template.executionEnvironment")
        .and_then(Value::as_str)
        .is_some_and(|e| e == "EXECUTION_ENVIRONMENT_GEN1");
    if gen1 || gen1_annotation {
        // Recorded (terraform-provider-google#16766).
        return Err(GError::invalid(format!(
            "template.annotations: Annotation '{EXEC_ENV_ANNOTATION}' with value 'gen1' is not supported on resources of kind Execution."
        )));
    }
    check_keys(rt, "template.labels", et.get("labels"), true)?;
    check_keys(rt, "template.annotations", et.get("annotations"), false)?;
    check_range(rt, et, "taskCount", "template.task_count", 1, MAX_TASKS)?;
    check_range(rt, et, "parallelism", "template.parallelism", 0, MAX_TASKS)?;
    let Some(t) = et.get("template").filter(|t| t.is_object()) else {
        return Err(violation(rt, "template.template", "must be set."));
    };
    check_range(rt, t, "maxRetries", &rt.t("max_retries"), 0, MAX_RETRIES)?;
    check_duration(rt, t, "timeout", 1, MAX_TASK_TIMEOUT_SECS)?;
    check_gpu(rt, &Value::Null, t)?;
    validate_template(st, rt, t, region)
}

/// The annotation older clients set the execution environment with.
const EXEC_ENV_ANNOTATION: &str = "run.googleapis.com/execution-environment";
/// Tasks per execution.
pub(super) const MAX_TASKS: i64 = 10_000;
/// Retries per task.
const MAX_RETRIES: i64 = 10;
/// A task attempt's longest timeout: 168 hours.
const MAX_TASK_TIMEOUT_SECS: u64 = 168 * 3600;

/// An int32 field of `v` between `min` and `max` (when set).
fn check_range(rt: &Rt, v: &Value, key: &str, field: &str, min: i64, max: i64) -> GResult<()> {
    if let Some(n) = util::int_at(v, key, &rt.field(field), "TYPE_INT32")?
        && !(min..=max).contains(&n)
    {
        return Err(violation(
            rt,
            field,
            format!("must be between {min} and {max}."),
        ));
    }
    Ok(())
}

/// A duration field of the template (`timeout`, ...) between `min` and `max` seconds.
fn check_duration(rt: &Rt, t: &Value, key: &str, min: u64, max: u64) -> GResult<()> {
    let Some(v) = t.get(key) else {
        return Ok(());
    };
    let field = rt.t(&enums::snake(key));
    match v.as_str().and_then(util::parse_duration) {
        None => Err(util::bad_value(
            &rt.field(&field),
            "type.googleapis.com/google.protobuf.Duration",
            v,
        )),
        Some(d) if d.as_secs() < min || d > std::time::Duration::from_secs(max) => Err(violation(
            rt,
            &field,
            format!("must be between {min}s and {max}s."),
        )),
        Some(_) => Ok(()),
    }
}

/// `binaryAuthorization`: `useDefault` and `policy` exclude each other.
fn check_binary_authorization(rt: &Rt, svc: &Value) -> GResult<()> {
    if let Some(ba) = svc.get("binaryAuthorization")
        && ba.get("useDefault").is_some_and(|v| v == &json!(true))
        && !str_of(ba, "policy").is_empty()
    {
        return Err(violation(
            rt,
            "binary_authorization",
            "only one of use_default and policy may be set.",
        ));
    }
    Ok(())
}

/// Service-level `scaling`: no negative counts.
fn check_service_scaling(rt: &Rt, svc: &Value) -> GResult<()> {
    if let Some(sc) = svc.get("scaling") {
        for f in [
            "minInstanceCount",
            "manualInstanceCount",
            "maxInstanceCount",
        ] {
            let field = format!("scaling.{}", enums::snake(f));
            if let Some(n) = util::int_at(sc, f, &rt.field(&field), "TYPE_INT32")?
                && n < 0
            {
                return Err(violation(rt, &field, "must not be negative."));
            }
        }
        if sc.get("manualInstanceCount").is_some() && str_of(sc, "scalingMode") != "MANUAL" {
            return Err(violation(
                rt,
                "scaling.manual_instance_count",
                "may only be set when scaling.scaling_mode is MANUAL.",
            ));
        }
    }
    Ok(())
}

/// `traffic`: percentages 0–100 adding up to 100, tags used at most once; REVISION targets name
/// a revision (whether it exists is checked by the rollout, as Cloud Run does). Violations name
/// the field `service.traffic`, as Google's front end does for this field.
fn check_traffic(rt: &Rt, svc: &Value) -> GResult<()> {
    let Some(traffic) = svc.get("traffic").and_then(Value::as_array) else {
        return Ok(());
    };
    if traffic.is_empty() {
        return Ok(());
    }
    let mut sum = 0;
    let mut tags: Vec<&str> = Vec::new();
    for (i, t) in traffic.iter().enumerate() {
        let p = util::int_at(
            t,
            "percent",
            &rt.field(&format!("traffic[{i}].percent")),
            "TYPE_INT32",
        )?
        .unwrap_or(0);
        if !(0..=100).contains(&p) {
            return Err(traffic_violation(format!(
                "traffic[{i}].percent is {p}; it must be between 0 and 100."
            )));
        }
        if str_of(t, "type") == "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
            && str_of(t, "revision").is_empty()
        {
            return Err(traffic_violation(format!(
                "traffic[{i}] is of type REVISION and must name a revision."
            )));
        }
        let tag = str_of(t, "tag");
        if !tag.is_empty() {
            if tags.contains(&tag) {
                return Err(traffic_violation(format!(
                    "the tag '{tag}' is used by more than one traffic target; tags must be unique."
                )));
            }
            tags.push(tag);
        }
        sum += p;
    }
    if sum != 100 {
        return Err(traffic_violation(format!(
            "the traffic percentages add up to {sum}; they must add up to 100."
        )));
    }
    Ok(())
}

/// INVALID_ARGUMENT with a field violation for `service.traffic` (wording: the emulator's own).
fn traffic_violation(msg: String) -> GError {
    GError::invalid_field(
        "service.traffic",
        format!("Violation in service.traffic: {msg}"),
    )
}

/// `template.containers`: at least one, each with an image, valid limits, at most one port.
fn check_containers(rt: &Rt, t: &Value) -> GResult<()> {
    let containers = t
        .get("containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if containers.is_empty() {
        return Err(violation(
            rt,
            &rt.t("containers"),
            "at least one container must be specified.",
        ));
    }
    let mut ports_seen = 0;
    for (i, c) in containers.iter().enumerate() {
        let f = |x: &str| format!("{}.containers[{i}].{x}", rt.template);
        if str_of(c, "image").trim().is_empty() {
            return Err(violation(rt, &f("image"), "must not be empty."));
        }
        if let Some(limits) = get_path(c, "resources.limits").and_then(Value::as_object) {
            if let Some(cpu) = limits.get("cpu")
                && !cpu.as_str().is_some_and(valid_cpu)
            {
                return Err(violation(
                    rt,
                    &f("resources.limits"),
                    format!("invalid cpu limit {cpu}."),
                ));
            }
            if let Some(mem) = limits.get("memory")
                && !mem.as_str().is_some_and(valid_memory)
            {
                return Err(violation(
                    rt,
                    &f("resources.limits"),
                    format!("invalid memory limit {mem}."),
                ));
            }
        }
        if let Some(ports) = c.get("ports").and_then(Value::as_array) {
            if ports.len() > 1 {
                return Err(violation(
                    rt,
                    &f("ports"),
                    "at most one port may be specified.",
                ));
            }
            ports_seen += ports.len();
            for (j, p) in ports.iter().enumerate() {
                let field = f(&format!("ports[{j}].container_port"));
                if let Some(n) = util::int_at(p, "containerPort", &rt.field(&field), "TYPE_INT32")?
                    && !(1..=65535).contains(&n)
                {
                    return Err(violation(rt, &field, "must be between 1 and 65535."));
                }
            }
        }
    }
    if ports_seen > 1 {
        return Err(violation(
            rt,
            &rt.t("containers"),
            "only one container may expose a port.",
        ));
    }
    Ok(())
}

/// `template.volumes`: a unique non-empty name and exactly one source each; `gcs` and `nfs`
/// need the second generation execution environment.
fn check_volumes(rt: &Rt, t: &Value) -> GResult<()> {
    let Some(volumes) = t.get("volumes").and_then(Value::as_array) else {
        return Ok(());
    };
    let gen1 = str_of(t, "executionEnvironment") == "EXECUTION_ENVIRONMENT_GEN1";
    let mut names: Vec<&str> = Vec::new();
    for (i, v) in volumes.iter().enumerate() {
        let f = |x: &str| format!("{}.volumes[{i}]{x}", rt.template);
        let name = str_of(v, "name");
        if name.is_empty() {
            return Err(violation(rt, &f(".name"), "must be set."));
        }
        if names.contains(&name) {
            return Err(violation(
                rt,
                &f(".name"),
                format!("the volume name '{name}' is used more than once."),
            ));
        }
        names.push(name);
        let sources: Vec<&str> = VOLUME_SOURCES
            .iter()
            .copied()
            .filter(|s| v.get(*s).is_some())
            .collect();
        if sources.len() != 1 {
            return Err(violation(
                rt,
                &f(""),
                format!(
                    "volume '{name}' must set exactly one of secret, cloud_sql_instance, empty_dir, gcs, nfs (it sets {}).",
                    sources.len()
                ),
            ));
        }
        let source = sources[0];
        if gen1 && matches!(source, "gcs" | "nfs") {
            return Err(violation(
                rt,
                &f(&format!(".{source}")),
                format!(
                    "volume '{name}' of type {source} requires the second generation execution environment (EXECUTION_ENVIRONMENT_GEN2)."
                ),
            ));
        }
    }
    Ok(())
}

/// The sources a `Volume` may have (a oneof).
const VOLUME_SOURCES: [&str; 5] = ["secret", "cloudSqlInstance", "emptyDir", "gcs", "nfs"];

/// Every `volumeMounts[].name` names a volume; every `dependsOn[]` entry names another container.
fn check_mounts_and_dependencies(rt: &Rt, t: &Value) -> GResult<()> {
    let empty = Vec::new();
    let volumes: Vec<&str> = t
        .get("volumes")
        .and_then(Value::as_array)
        .unwrap_or(&empty)
        .iter()
        .map(|v| str_of(v, "name"))
        .collect();
    let containers = t
        .get("containers")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let names: Vec<&str> = containers.iter().map(|c| str_of(c, "name")).collect();
    for (i, c) in containers.iter().enumerate() {
        let mounts = c.get("volumeMounts").and_then(Value::as_array);
        for (j, m) in mounts.unwrap_or(&empty).iter().enumerate() {
            let name = str_of(m, "name");
            let field = format!("{}.containers[{i}].volume_mounts[{j}]", rt.template);
            if !volumes.contains(&name) {
                return Err(violation(
                    rt,
                    &format!("{field}.name"),
                    format!("volume '{name}' is not defined in {}.volumes.", rt.template),
                ));
            }
            if str_of(m, "mountPath").is_empty() {
                return Err(violation(
                    rt,
                    &format!("{field}.mount_path"),
                    "must be set.",
                ));
            }
        }
        let deps = c.get("dependsOn").and_then(Value::as_array);
        for (j, d) in deps.unwrap_or(&empty).iter().enumerate() {
            let dep = d.as_str().unwrap_or("");
            if dep.is_empty() || !names.contains(&dep) || dep == names[i] {
                return Err(violation(
                    rt,
                    &format!("{}.containers[{i}].depends_on[{j}]", rt.template),
                    format!(
                        "'{dep}' is not the name of another container in {}.containers.",
                        rt.template
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A GPU (`nodeSelector.accelerator` plus an `nvidia.com/gpu` limit on a container) needs the
/// second generation environment, at least 4 CPU and 16Gi on that container, CPU always
/// allocated, and at most [`GPU_MAX_INSTANCES`] instances.
fn check_gpu(rt: &Rt, svc: &Value, t: &Value) -> GResult<()> {
    let accelerator = get_path(t, "nodeSelector.accelerator")
        .and_then(Value::as_str)
        .unwrap_or("");
    let empty = Vec::new();
    let containers = t
        .get("containers")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let gpu_container = containers.iter().position(|c| {
        get_path(c, "resources.limits")
            .and_then(|l| l.get(GPU_LIMIT))
            .is_some()
    });
    let Some(i) = gpu_container else {
        if !accelerator.is_empty() {
            return Err(violation(
                rt,
                &rt.t("node_selector.accelerator"),
                format!(
                    "the accelerator '{accelerator}' needs a container with a '{GPU_LIMIT}' resource limit."
                ),
            ));
        }
        return Ok(());
    };
    let limits = format!("{}.containers[{i}].resources.limits", rt.template);
    if accelerator.is_empty() {
        return Err(violation(
            rt,
            &limits,
            format!(
                "a '{GPU_LIMIT}' limit needs {}.node_selector.accelerator to be set.",
                rt.template
            ),
        ));
    }
    if str_of(t, "executionEnvironment") == "EXECUTION_ENVIRONMENT_GEN1" {
        return Err(violation(
            rt,
            &rt.t("execution_environment"),
            "a GPU requires the second generation execution environment (EXECUTION_ENVIRONMENT_GEN2).",
        ));
    }
    let c = &containers[i];
    let limit = |k: &str| {
        get_path(c, "resources.limits")
            .and_then(|l| l.get(k))
            .and_then(Value::as_str)
            .map(String::from)
    };
    let cpu = limit("cpu").unwrap_or_else(|| "1000m".into());
    if cpu_cores(&cpu).is_none_or(|n| n < 4.0) {
        return Err(violation(
            rt,
            &limits,
            format!("a GPU requires at least 4 CPU; the cpu limit is '{cpu}'."),
        ));
    }
    let memory = limit("memory").unwrap_or_else(|| "512Mi".into());
    if memory_bytes(&memory).is_none_or(|n| n < 16 << 30) {
        return Err(violation(
            rt,
            &limits,
            format!("a GPU requires at least 16Gi of memory; the memory limit is '{memory}'."),
        ));
    }
    if get_path(c, "resources.cpuIdle") == Some(&json!(true)) {
        return Err(violation(
            rt,
            &format!("{}.containers[{i}].resources.cpu_idle", rt.template),
            "a GPU requires CPU to be always allocated (cpu_idle false).",
        ));
    }
    for scaling in [t.get("scaling"), svc.get("scaling")].into_iter().flatten() {
        let max = util::int_at(
            scaling,
            "maxInstanceCount",
            &rt.field(&rt.t("scaling.max_instance_count")),
            "TYPE_INT32",
        )?;
        if max.is_some_and(|m| m > GPU_MAX_INSTANCES) {
            // Recorded wording (pulumi-gcp#3794), without the quota lines that follow it.
            let msg = format!(
                "scaling.max_instance_count: Max instances must be set to {GPU_MAX_INSTANCES} or fewer in order to set GPU requirements."
            );
            return Err(GError::invalid_field(
                &rt.field(&rt.t("scaling.max_instance_count")),
                msg,
            ));
        }
    }
    Ok(())
}

/// The resource limit key of a GPU.
const GPU_LIMIT: &str = "nvidia.com/gpu";
/// The GPU instance limit in the recorded refusal (`allowed: 3`).
const GPU_MAX_INSTANCES: i64 = 3;

/// A CPU limit in cores (`"4"`, `"4000m"`, `"2.5"`).
fn cpu_cores(s: &str) -> Option<f64> {
    match s.strip_suffix('m') {
        Some(m) => m.parse::<f64>().ok().map(|v| v / 1000.0),
        None => s.parse().ok(),
    }
}

/// A memory limit in bytes (`"16Gi"`, `"16384Mi"`, `"17179869184"`, `"17G"`).
fn memory_bytes(s: &str) -> Option<u64> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(end);
    let n: u64 = n.parse().ok()?;
    let mult: u64 = match unit {
        "" => 1,
        "k" | "K" => 1_000,
        "Ki" => 1 << 10,
        "M" => 1_000_000,
        "Mi" => 1 << 20,
        "G" => 1_000_000_000,
        "Gi" => 1 << 30,
        "T" => 1_000_000_000_000,
        "Ti" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// `template.scaling`: no negative counts, min not above max.
fn check_template_scaling(rt: &Rt, t: &Value) -> GResult<()> {
    if let Some(s) = t.get("scaling") {
        let min = util::int_at(
            s,
            "minInstanceCount",
            &rt.field(&rt.t("scaling.min_instance_count")),
            "TYPE_INT32",
        )?
        .unwrap_or(0);
        let max = util::int_at(
            s,
            "maxInstanceCount",
            &rt.field(&rt.t("scaling.max_instance_count")),
            "TYPE_INT32",
        )?
        .unwrap_or(0);
        if min < 0 {
            return Err(violation(
                rt,
                &rt.t("scaling.min_instance_count"),
                "must not be negative.",
            ));
        }
        if max < 0 {
            return Err(violation(
                rt,
                &rt.t("scaling.max_instance_count"),
                "must not be negative.",
            ));
        }
        if max > 0 && min > max {
            return Err(violation(
                rt,
                &rt.t("scaling"),
                format!(
                    "min_instance_count ({min}) must not be greater than max_instance_count ({max})."
                ),
            ));
        }
    }
    Ok(())
}

/// `template.maxInstanceRequestConcurrency`: 0–1000.
fn check_concurrency(rt: &Rt, t: &Value) -> GResult<()> {
    if let Some(n) = util::int_at(
        t,
        "maxInstanceRequestConcurrency",
        &rt.field(&rt.t("max_instance_request_concurrency")),
        "TYPE_INT32",
    )? && !(0..=1000).contains(&n)
    {
        return Err(violation(
            rt,
            &rt.t("max_instance_request_concurrency"),
            "must be between 1 and 1000.",
        ));
    }
    Ok(())
}

/// `template.timeout` (1s–3600s) and `encryptionKeyShutdownDuration` (only with `SHUTDOWN`).
fn check_durations(rt: &Rt, t: &Value) -> GResult<()> {
    check_duration(rt, t, "timeout", 1, 3600)?;
    check_duration(rt, t, "encryptionKeyShutdownDuration", 0, u64::MAX)?;
    if t.get("encryptionKeyShutdownDuration").is_some()
        && str_of(t, "encryptionKeyRevocationAction") != "SHUTDOWN"
    {
        return Err(violation(
            rt,
            &rt.t("encryption_key_shutdown_duration"),
            "may only be set when encryption_key_revocation_action is SHUTDOWN.",
        ));
    }
    Ok(())
}

/// `template.serviceAccount`: an email.
fn check_service_account(rt: &Rt, t: &Value) -> GResult<()> {
    let sa = str_of(t, "serviceAccount");
    if !sa.is_empty() && !sa.contains('@') {
        return Err(violation(
            rt,
            &rt.t("service_account"),
            format!("'{sa}' is not a valid service account email."),
        ));
    }
    Ok(())
}

/// `template.vpcAccess`: a connector or network interfaces, not both.
fn check_vpc_access(st: &mut State, rt: &Rt, vpc: &Value, region: &str) -> GResult<()> {
    let connector = str_of(vpc, "connector");
    let nics = vpc.get("networkInterfaces").and_then(Value::as_array);
    if !connector.is_empty() && nics.is_some_and(|n| !n.is_empty()) {
        return Err(violation(
            rt,
            &rt.t("vpc_access"),
            "only one of connector and network_interfaces may be set.",
        ));
    }
    if let Some(nics) = nics {
        for (i, n) in nics.iter().enumerate() {
            if str_of(n, "network").is_empty() && str_of(n, "subnetwork").is_empty() {
                return Err(violation(
                    rt,
                    &format!("{}.vpc_access.network_interfaces[{i}]", rt.template),
                    "network or subnetwork must be set.",
                ));
            }
        }
    }
    if !connector.is_empty() {
        check_connector(st, rt, connector, region)?;
    }
    Ok(())
}

/// A VPC connector must exist, be in the service's region and be READY.
fn check_connector(st: &mut State, rt: &Rt, connector: &str, region: &str) -> GResult<()> {
    let Some((cp, cl, cid)) = parse_connector(connector) else {
        return Err(violation(
            rt,
            &rt.t("vpc_access.connector"),
            format!(
                "'{connector}' is not a valid connector name; expected projects/{{project}}/locations/{{location}}/connectors/{{connector}}."
            ),
        ));
    };
    let cproj = st.project(cp)?;
    let key = format!("projects/{}/locations/{cl}/connectors/{cid}", cproj.id);
    let Some(c) = st.connectors.get(&key) else {
        return Err(GError::invalid_field(
            &rt.field(&rt.t("vpc_access.connector")),
            format!(
                "VPC connector {connector} does not exist, or Cloud Run does not have permission to use it."
            ),
        ));
    };
    if cl != region {
        return Err(GError::invalid_field(
            &rt.field(&rt.t("vpc_access.connector")),
            format!(
                "VPC connector {connector} is in region '{cl}', but the service is in region '{region}'. The connector must be in the same region as the service."
            ),
        ));
    }
    let state = str_of(c, "state");
    if state != "READY" {
        return Err(GError::precondition(format!(
            "VPC connector {connector} is not ready (state: {state})."
        )));
    }
    Ok(())
}

/// `template.encryptionKey`: a well-formed key name, in the service's region, that exists.
fn check_encryption_key(st: &mut State, rt: &Rt, t: &Value, region: &str) -> GResult<()> {
    let key = str_of(t, "encryptionKey");
    if !key.is_empty() {
        let field = rt.field(&rt.t("encryption_key"));
        let Some((kp, kl, kr, kk)) = parse_key(key) else {
            return Err(GError::invalid_field(
                &field,
                format!(
                    "Violation in {field}: '{key}' is not a valid key name; expected projects/{{project}}/locations/{{location}}/keyRings/{{key_ring}}/cryptoKeys/{{crypto_key}}."
                ),
            ));
        };
        if kl != region {
            return Err(GError::invalid_field(
                &field,
                format!(
                    "Violation in {field}: the key {key} is in location '{kl}'; a service in region '{region}' must use a key in the same location."
                ),
            ));
        }
        let kproj = st.project(kp)?;
        let canonical = format!(
            "projects/{}/locations/{kl}/keyRings/{kr}/cryptoKeys/{kk}",
            kproj.id
        );
        if !st.crypto_keys.contains_key(&canonical) {
            return Err(GError::invalid_field(
                &field,
                format!("Violation in {field}: the key {key} does not exist."),
            ));
        }
    }
    Ok(())
}

fn violation(rt: &Rt, field: &str, msg: impl std::fmt::Display) -> GError {
    let field = rt.field(field);
    GError::invalid_field(&field, format!("Violation in {field}: {msg}"))
}

fn check_keys(request_type: &Rt, field: &str, map: Option<&Value>, labels: bool) -> GResult<()> {
    let Some(map) = map.and_then(Value::as_object) else {
        return Ok(());
    };
    for (k, v) in map {
        if let Some(prefix) = RESERVED_PREFIXES.iter().find(|p| k.starts_with(*p)) {
            return Err(violation(
                request_type,
                field,
                format!(
                    "the key '{k}' uses the prefix '{prefix}', which is reserved by the system."
                ),
            ));
        }
        if labels {
            let key_ok = k.len() <= 63
                && k.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && k.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            let val = v.as_str().unwrap_or("");
            let val_ok = v.is_string()
                && val.len() <= 63
                && val
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            if !key_ok || !val_ok {
                return Err(violation(
                    request_type,
                    field,
                    format!(
                        "invalid label '{k}': keys must start with a lowercase letter and contain only lowercase letters, digits, '_' and '-'; values only lowercase letters, digits, '_' and '-'; both at most 63 characters."
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn valid_cpu(s: &str) -> bool {
    let s = s.strip_suffix('m').unwrap_or(s);
    !s.is_empty()
        && s.split('.').count() <= 2
        && s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && s.parse::<f64>().is_ok_and(|v| v > 0.0)
}

fn valid_memory(s: &str) -> bool {
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(digits_end);
    !n.is_empty()
        && n.parse::<u64>().is_ok_and(|v| v > 0)
        && matches!(
            unit,
            "" | "k" | "K" | "Ki" | "M" | "Mi" | "G" | "Gi" | "T" | "Ti"
        )
}

pub(super) fn valid_region(l: &str) -> bool {
    let parts: Vec<&str> = l.split('-').collect();
    parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && l.as_bytes().last().is_some_and(u8::is_ascii_digit)
}

/// A service or job id: a lowercase letter, then lowercase letters, digits and hyphens, not
/// ending with a hyphen, at most `max` characters.
pub(super) fn valid_id(id: &str, max: usize) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= max
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

pub(super) fn parse_connector(name: &str) -> Option<(&str, &str, &str)> {
    let p: Vec<&str> = name.split('/').collect();
    (p.len() == 6
        && p[0] == "projects"
        && p[2] == "locations"
        && p[4] == "connectors"
        && p.iter().all(|x| !x.is_empty()))
    .then(|| (p[1], p[3], p[5]))
}

/// Parses `projects/*/locations/*/keyRings/*/cryptoKeys/*`.
pub(super) fn parse_key(name: &str) -> Option<(&str, &str, &str, &str)> {
    let p: Vec<&str> = name.split('/').collect();
    (p.len() == 8
        && p[0] == "projects"
        && p[2] == "locations"
        && p[4] == "keyRings"
        && p[6] == "cryptoKeys"
        && p.iter().all(|x| !x.is_empty()))
    .then(|| (p[1], p[3], p[5], p[7]))
}

/// Label and annotation key prefixes reserved by Google.
const RESERVED_PREFIXES: [&str; 4] = [
    "run.googleapis.com/",
    "cloud.googleapis.com/",
    "serving.knative.dev/",
    "autoscaling.knative.dev/",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_regions() {
        assert!(valid_id("hello", 49));
        assert!(valid_id("a", 49));
        assert!(!valid_id("Hello", 49));
        assert!(!valid_id("hello-", 49));
        assert!(!valid_id(&"a".repeat(50), 49));
        assert!(valid_region("us-central1"));
        assert!(!valid_region("mars"));
        assert!(valid_cpu("1000m") && valid_cpu("2") && valid_cpu("0.5") && !valid_cpu("lots"));
        assert!(valid_memory("512Mi") && valid_memory("1Gi") && !valid_memory("big"));
        assert_eq!(cpu_cores("4000m"), Some(4.0));
        assert_eq!(cpu_cores("8"), Some(8.0));
        assert_eq!(memory_bytes("16Gi"), Some(16 << 30));
        assert_eq!(memory_bytes("16384Mi"), Some(16 << 30));
        assert!(memory_bytes("15Gi").is_some_and(|b| b < 16 << 30));
    }
}
