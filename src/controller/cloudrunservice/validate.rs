//! Pure validation of a CloudRunService.
//!
//! The CRD's CEL rules reject these cases at admission on clusters that evaluate them; this is
//! the same check for objects admitted without them (Kubernetes 1.24 has CEL off by default, or
//! objects stored before a rule existed), reported as a condition instead of a log line.

use std::collections::BTreeSet;

use super::{ENCRYPTION_READY, SERVICE_READY, render::RESERVED_LABEL_PREFIXES};
use crate::api::v1alpha1::{
    CloudRunService, CloudRunServiceSpec, ExecutionEnvironment, RevocationAction, ScalingMode,
    TrafficType,
};
use crate::api::{MANAGED_BY_LABEL, OWNER_LABEL};
use crate::controller::conditions::Cond;
use crate::error::Error;

/// Member prefixes Cloud Run accepts in `roles/run.invoker` from a spec.
pub const MEMBER_PREFIXES: [&str; 6] = [
    "user:",
    "group:",
    "serviceAccount:",
    "domain:",
    "principal://",
    "principalSet://",
];

/// `Ok` when the spec can be deployed; else the failing condition and the error to return.
pub fn validate(obj: &CloudRunService) -> Result<(), Box<(Cond, Error)>> {
    let spec = &obj.spec;
    if let Some(enc) = &spec.encryption {
        let location = enc.kms_key.split('/').nth(3).unwrap_or_default();
        if location != spec.region {
            let message = format!(
                "spec.encryption.kmsKey is in location {location:?} but the service is in {:?}: Cloud Run needs a key in the service's region",
                spec.region
            );
            return Err(Box::new((
                Cond::fail(ENCRYPTION_READY, "LocationMismatch", &message),
                Error::Spec {
                    reason: "LocationMismatch",
                    message,
                },
            )));
        }
    }
    let problems = problems(obj);
    if problems.is_empty() {
        return Ok(());
    }
    let message = problems.join("; ");
    Err(Box::new((
        Cond::fail(SERVICE_READY, "InvalidSpec", &message),
        Error::Spec {
            reason: "InvalidSpec",
            message,
        },
    )))
}

fn problems(obj: &CloudRunService) -> Vec<String> {
    let spec = &obj.spec;
    let mut out = vec![];
    let id = obj.service_id();
    if !valid_service_id(&id) {
        out.push(format!("service name {id:?} must match ^[a-z]([-a-z0-9]{{0,47}}[a-z0-9])?$ (set spec.serviceName)"));
    }
    if spec.containers.is_empty() {
        out.push("spec.containers: at least one container is required".into());
    }
    for (i, c) in spec.containers.iter().enumerate() {
        if c.image.trim().is_empty() {
            out.push(format!("spec.containers[{i}].image must not be empty"));
        }
        for e in &c.env {
            if e.value.is_some() && e.secret_ref.is_some() {
                out.push(format!(
                    "spec.containers[{i}].env[{}]: set value or secretRef, not both",
                    e.name
                ));
            }
        }
    }
    if let Some(egress) = &spec.egress {
        let set = [
            egress.direct_vpc.is_some(),
            egress.connector_ref.is_some(),
            egress.connector.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            out.push("spec.egress: set exactly one of directVpc, connectorRef or connector".into());
        }
        if let Some(d) = &egress.direct_vpc
            && d.network.is_none()
            && d.subnetwork.is_none()
        {
            out.push("spec.egress.directVpc: set network, subnetwork or both".into());
        }
    }
    if let Some(b) = &spec.binary_authorization
        && b.use_default.is_some() == b.policy.is_some()
    {
        out.push("spec.binaryAuthorization: set exactly one of useDefault or policy".into());
    }
    if let Some(enc) = &spec.encryption
        && enc.shutdown_hours.is_some()
        && enc.revocation_action != RevocationAction::Shutdown
    {
        out.push(
            "spec.encryption.shutdownHours is only allowed with revocationAction: Shutdown".into(),
        );
    }
    if let Some(s) = &spec.scaling
        && let (Some(min), Some(max)) = (s.min_instances, s.max_instances)
        && min > max
    {
        out.push(format!(
            "spec.scaling: minInstances ({min}) must not exceed maxInstances ({max})"
        ));
    }
    out.extend(model_problems(spec));
    for key in spec.labels.keys() {
        if RESERVED_LABEL_PREFIXES.iter().any(|p| key.starts_with(p))
            || key == MANAGED_BY_LABEL
            || key == OWNER_LABEL
        {
            out.push(format!("spec.labels: key {key:?} is reserved"));
        }
    }
    for member in &spec.access.invokers {
        if !MEMBER_PREFIXES.iter().any(|p| member.starts_with(p))
            || member.len() <= member.find([':', '/']).unwrap_or(0) + 1
        {
            out.push(format!(
                "spec.access.invokers: {member:?} is not an IAM member (user:, group:, serviceAccount:, domain:, principal://, principalSet://); use allowUnauthenticated for allUsers"
            ));
        }
    }
    out
}

/// The Cloud Run rules of traffic, volumes, containers, GPU and scaling (the CRD's CEL rules).
fn model_problems(spec: &CloudRunServiceSpec) -> Vec<String> {
    let mut out = vec![];
    if !spec.traffic.is_empty() {
        let sum: i64 = spec.traffic.iter().map(|t| i64::from(t.percent)).sum();
        if sum != 100 {
            out.push(format!(
                "spec.traffic: the percents must sum to 100 (they sum to {sum})"
            ));
        }
    }
    let mut tags = BTreeSet::new();
    for (i, t) in spec.traffic.iter().enumerate() {
        if let Some(tag) = &t.tag
            && !tags.insert(tag.as_str())
        {
            out.push(format!(
                "spec.traffic: a tag may appear at most once ({tag:?} repeats)"
            ));
        }
        if (t.type_ == TrafficType::Revision) != t.revision.is_some() {
            out.push(format!(
                "spec.traffic[{i}]: a Revision target names a revision, a Latest target does not"
            ));
        }
    }
    let gen1 = spec.execution_environment == ExecutionEnvironment::Gen1;
    for v in &spec.volumes {
        let kinds = [
            v.secret.is_some(),
            v.cloud_sql_instances.is_some(),
            v.empty_dir.is_some(),
            v.gcs.is_some(),
            v.nfs.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            out.push(format!(
                "spec.volumes[{}]: set exactly one of secret, cloudSqlInstances, emptyDir, gcs or nfs",
                v.name
            ));
        }
        if gen1 && (v.gcs.is_some() || v.nfs.is_some()) {
            out.push(format!(
                "spec.volumes[{}]: gcs and nfs volumes need executionEnvironment Gen2",
                v.name
            ));
        }
    }
    let serving = spec
        .containers
        .iter()
        .filter(|c| !c.ports.is_empty())
        .count();
    if spec.containers.len() > 1 && serving != 1 {
        out.push(format!(
            "spec.containers: with several containers exactly one serves (has ports); {serving} do"
        ));
    }
    let names: BTreeSet<&str> = spec
        .containers
        .iter()
        .filter_map(|c| c.name.as_deref())
        .collect();
    for (i, c) in spec.containers.iter().enumerate() {
        for m in &c.volume_mounts {
            if !spec.volumes.iter().any(|v| v.name == m.name) {
                out.push(format!(
                    "spec.containers[{i}].volumeMounts: {:?} is not one of spec.volumes",
                    m.name
                ));
            }
        }
        for d in &c.depends_on {
            if !names.contains(d.as_str()) {
                out.push(format!(
                    "spec.containers[{i}].dependsOn: {d:?} names no container"
                ));
            }
        }
        for (which, probe) in [
            ("startupProbe", &c.startup_probe),
            ("livenessProbe", &c.liveness_probe),
            ("readinessProbe", &c.readiness_probe),
        ] {
            if let Some(p) = probe {
                let set = [
                    p.http_get.is_some(),
                    p.tcp_socket.is_some(),
                    p.grpc.is_some(),
                ];
                if set.iter().filter(|s| **s).count() != 1 {
                    out.push(format!(
                        "spec.containers[{i}].{which}: set exactly one of httpGet, tcpSocket or grpc"
                    ));
                }
            }
        }
    }
    if spec.gpu.is_some() {
        out.extend(gpu_problems(spec));
    }
    if let Some(s) = &spec.scaling
        && s.manual_instances.is_some()
        && s.mode != ScalingMode::Manual
    {
        out.push("spec.scaling.manualInstances is only allowed with mode: Manual".into());
    }
    out
}

/// A GPU needs Gen2 and a serving container with 4 CPU, 16Gi and CPU always allocated.
fn gpu_problems(spec: &CloudRunServiceSpec) -> Vec<String> {
    let mut out = vec![];
    if spec.execution_environment != ExecutionEnvironment::Gen2 {
        out.push("spec.gpu needs executionEnvironment Gen2".into());
    }
    let Some(c) = spec.containers.get(spec.serving_container()) else {
        return out;
    };
    let r = c.resources.clone().unwrap_or_default();
    if r.cpu_idle != Some(false) || r.cpu.as_deref().is_none_or(|cpu| millicores(cpu) < 4000) {
        out.push(
            "spec.gpu: the serving container needs resources.cpu of at least 4 and resources.cpuIdle: false"
                .into(),
        );
    }
    if r.memory.as_deref().is_none_or(|m| bytes(m) < 16 << 30) {
        out.push("spec.gpu: the serving container needs resources.memory of at least 16Gi".into());
    }
    out
}

/// `4`, `4.5`, `4000m` in millicores; 0 when malformed.
fn millicores(cpu: &str) -> u64 {
    match cpu.strip_suffix('m') {
        Some(m) => m.parse::<f64>().map_or(0, |m| m as u64),
        None => cpu.parse::<f64>().map_or(0, |c| (c * 1000.0) as u64),
    }
}

/// `16Gi`, `16384Mi`, `18G` in bytes; 0 when malformed.
fn bytes(memory: &str) -> u64 {
    let split = memory
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(memory.len());
    let (n, unit) = memory.split_at(split);
    let factor: u64 = match unit {
        "" => 1,
        "k" => 1000,
        "M" => 1000 * 1000,
        "G" => 1000 * 1000 * 1000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => 0,
    };
    n.parse::<u64>().map_or(0, |n| n.saturating_mul(factor))
}

fn valid_service_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 49
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !id.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::v1alpha1::{Container, Egress, Encryption, LocalObjectReference};

    fn obj(spec: serde_json::Value) -> CloudRunService {
        let mut base = serde_json::json!({"region": "europe-west1", "containers": [{"image": "europe-docker.pkg.dev/p/r/app@sha256:abc"}]});
        base.as_object_mut()
            .unwrap()
            .extend(spec.as_object().unwrap().clone());
        let spec: CloudRunServiceSpec = serde_json::from_value(base).unwrap();
        CloudRunService::new("payments", spec)
    }

    #[test]
    fn a_minimal_spec_is_valid() {
        assert!(validate(&obj(serde_json::json!({}))).is_ok());
    }

    #[test]
    fn a_key_in_another_region_is_a_location_mismatch_on_encryption() {
        let mut o = obj(serde_json::json!({}));
        o.spec.encryption = Some(Box::new(Encryption {
            kms_key: "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k".into(),
            revocation_action: RevocationAction::PreventNew,
            shutdown_hours: None,
            grant_service_agent: true,
        }));
        let (cond, err) = *validate(&o).unwrap_err();
        assert_eq!(
            (cond.type_, cond.reason.as_str()),
            (ENCRYPTION_READY, "LocationMismatch")
        );
        assert!(!err.is_transient());
    }

    #[test]
    fn every_problem_is_named_in_one_message() {
        let mut o = obj(
            serde_json::json!({"labels": {"goog-x": "1"}, "access": {"invokers": ["allUsers"]}}),
        );
        o.spec.egress = Some(Box::new(Egress {
            connector: Some("projects/p/locations/europe-west1/connectors/c".into()),
            connector_ref: Some(LocalObjectReference { name: "c".into() }),
            ..Egress::default()
        }));
        o.spec.containers.push(Container {
            image: " ".into(),
            ..Container::default()
        });
        let (cond, _) = *validate(&o).unwrap_err();
        assert_eq!(cond.reason, "InvalidSpec");
        for needle in [
            "spec.egress",
            "spec.containers[1].image",
            "goog-x",
            "allUsers",
        ] {
            assert!(
                cond.message.contains(needle),
                "{needle} missing from {}",
                cond.message
            );
        }
    }

    /// The message of an invalid spec, or `None` when it is valid.
    fn refused(extra: serde_json::Value) -> Option<String> {
        validate(&obj(extra)).err().map(|e| e.0.message)
    }

    const GPU_CONTAINER: &str =
        r#"{"image": "i", "resources": {"cpu": "4", "memory": "16Gi", "cpuIdle": false}}"#;

    fn gpu_spec(container: &str, extra: serde_json::Value) -> serde_json::Value {
        let mut spec = serde_json::json!({
            "gpu": {"type": "nvidia-l4"},
            "containers": [serde_json::from_str::<serde_json::Value>(container).unwrap()],
        });
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        spec
    }

    #[test]
    fn traffic_percents_sum_to_100() {
        assert_eq!(
            refused(serde_json::json!({"traffic": [
                {"type": "Revision", "revision": "payments-00001-abc", "percent": 90},
                {"type": "Latest", "percent": 10, "tag": "canary"}]})),
            None
        );
        let m = refused(serde_json::json!({"traffic": [
            {"type": "Revision", "revision": "payments-00001-abc", "percent": 90},
            {"percent": 20}]}))
        .unwrap();
        assert!(
            m.contains("spec.traffic: the percents must sum to 100 (they sum to 110)"),
            "{m}"
        );
    }

    #[test]
    fn traffic_tags_are_unique() {
        let m = refused(serde_json::json!({"traffic": [
            {"percent": 100, "tag": "a"},
            {"type": "Revision", "revision": "r", "percent": 0, "tag": "a"}]}))
        .unwrap();
        assert!(
            m.contains("spec.traffic: a tag may appear at most once (\"a\" repeats)"),
            "{m}"
        );
    }

    #[test]
    fn a_revision_target_names_a_revision_and_a_latest_one_does_not() {
        for traffic in [
            serde_json::json!([{"type": "Revision", "percent": 100}]),
            serde_json::json!([{"type": "Latest", "revision": "r", "percent": 100}]),
        ] {
            let m = refused(serde_json::json!({ "traffic": traffic })).unwrap();
            assert!(
                m.contains("spec.traffic[0]: a Revision target names a revision"),
                "{m}"
            );
        }
    }

    #[test]
    fn gcs_and_nfs_volumes_need_gen2() {
        for volume in [
            serde_json::json!({"name": "data", "gcs": {"bucket": "b"}}),
            serde_json::json!({"name": "data", "nfs": {"server": "10.0.0.2", "path": "/share"}}),
        ] {
            assert_eq!(refused(serde_json::json!({"volumes": [volume]})), None);
            let m =
                refused(serde_json::json!({"volumes": [volume], "executionEnvironment": "Gen1"}))
                    .unwrap();
            assert!(
                m.contains(
                    "spec.volumes[data]: gcs and nfs volumes need executionEnvironment Gen2"
                ),
                "{m}"
            );
        }
        assert_eq!(
            refused(
                serde_json::json!({"executionEnvironment": "Gen1", "volumes": [{"name": "tmp", "emptyDir": {}}]})
            ),
            None
        );
    }

    #[test]
    fn a_volume_is_exactly_one_kind() {
        let m = refused(serde_json::json!({"volumes": [{"name": "v", "emptyDir": {}, "cloudSqlInstances": ["p:r:i"]}]})).unwrap();
        assert!(m.contains("spec.volumes[v]: set exactly one of"), "{m}");
        let m = refused(serde_json::json!({"volumes": [{"name": "v"}]})).unwrap();
        assert!(m.contains("spec.volumes[v]: set exactly one of"), "{m}");
    }

    #[test]
    fn a_gpu_needs_gen2_4_cpu_16gi_and_cpu_always_allocated() {
        assert_eq!(
            refused(gpu_spec(GPU_CONTAINER, serde_json::json!({}))),
            None
        );
        assert_eq!(
            refused(gpu_spec(
                r#"{"image": "i", "resources": {"cpu": "8000m", "memory": "32768Mi", "cpuIdle": false}}"#,
                serde_json::json!({})
            )),
            None
        );
        let m = refused(gpu_spec(
            GPU_CONTAINER,
            serde_json::json!({"executionEnvironment": "Gen1"}),
        ))
        .unwrap();
        assert!(
            m.contains("spec.gpu needs executionEnvironment Gen2"),
            "{m}"
        );
        for container in [
            r#"{"image": "i", "resources": {"cpu": "2", "memory": "16Gi", "cpuIdle": false}}"#,
            r#"{"image": "i", "resources": {"cpu": "4", "memory": "16Gi"}}"#,
            r#"{"image": "i", "resources": {"cpu": "3999m", "memory": "16Gi", "cpuIdle": false}}"#,
        ] {
            let m = refused(gpu_spec(container, serde_json::json!({}))).unwrap();
            assert!(
                m.contains("spec.gpu: the serving container needs resources.cpu of at least 4"),
                "{container}: {m}"
            );
        }
        let m = refused(gpu_spec(
            r#"{"image": "i", "resources": {"cpu": "4", "memory": "8Gi", "cpuIdle": false}}"#,
            serde_json::json!({}),
        ))
        .unwrap();
        assert!(m.contains("resources.memory of at least 16Gi"), "{m}");
    }

    #[test]
    fn volume_mounts_and_depends_on_name_what_exists() {
        let m = refused(serde_json::json!({"containers": [
            {"name": "app", "image": "i", "ports": [{"containerPort": 8080}], "volumeMounts": [{"name": "nope", "mountPath": "/x"}], "dependsOn": ["ghost"]},
            {"name": "proxy", "image": "p"}]}))
        .unwrap();
        assert!(
            m.contains(r#"spec.containers[0].volumeMounts: "nope" is not one of spec.volumes"#),
            "{m}"
        );
        assert!(
            m.contains(r#"spec.containers[0].dependsOn: "ghost" names no container"#),
            "{m}"
        );
        assert_eq!(
            refused(
                serde_json::json!({"volumes": [{"name": "tmp", "emptyDir": {}}], "containers": [
                {"name": "app", "image": "i", "ports": [{"containerPort": 8080}], "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}], "dependsOn": ["proxy"]},
                {"name": "proxy", "image": "p"}]})
            ),
            None
        );
    }

    #[test]
    fn with_several_containers_exactly_one_serves() {
        for containers in [
            serde_json::json!([{"name": "a", "image": "i"}, {"name": "b", "image": "j"}]),
            serde_json::json!([
                {"name": "a", "image": "i", "ports": [{"containerPort": 8080}]},
                {"name": "b", "image": "j", "ports": [{"containerPort": 8081}]}]),
        ] {
            let m = refused(serde_json::json!({ "containers": containers })).unwrap();
            assert!(
                m.contains("spec.containers: with several containers exactly one serves"),
                "{m}"
            );
        }
    }

    #[test]
    fn a_probe_has_exactly_one_kind() {
        let m = refused(serde_json::json!({"containers": [{"image": "i", "livenessProbe": {"httpGet": {}, "tcpSocket": {}}}]})).unwrap();
        assert!(
            m.contains(
                "spec.containers[0].livenessProbe: set exactly one of httpGet, tcpSocket or grpc"
            ),
            "{m}"
        );
    }

    #[test]
    fn manual_instances_only_with_manual_scaling() {
        assert_eq!(
            refused(serde_json::json!({"scaling": {"mode": "Manual", "manualInstances": 3}})),
            None
        );
        let m = refused(serde_json::json!({"scaling": {"manualInstances": 3}})).unwrap();
        assert!(
            m.contains("spec.scaling.manualInstances is only allowed with mode: Manual"),
            "{m}"
        );
    }

    #[test]
    fn quantities_for_the_gpu_rule() {
        assert_eq!(millicores("4"), 4000);
        assert_eq!(millicores("4.5"), 4500);
        assert_eq!(millicores("4000m"), 4000);
        assert_eq!(bytes("16Gi"), 16 << 30);
        assert_eq!(bytes("16384Mi"), 16 << 30);
        assert!(bytes("18G") > 16 << 30 && bytes("17G") < 16 << 30);
        assert_eq!(bytes("16Xi"), 0);
    }

    #[test]
    fn service_ids_follow_cloud_run_rules() {
        assert!(valid_service_id("a"));
        assert!(valid_service_id("payments-api-2"));
        assert!(!valid_service_id("Payments"));
        assert!(!valid_service_id("2fa"));
        assert!(!valid_service_id("ends-"));
        assert!(!valid_service_id(&"a".repeat(50)));
    }
}
