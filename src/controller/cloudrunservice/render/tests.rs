use google_cloud_run_v2::model::{self as run, IngressTraffic};

use google_cloud_run_v2::model::{
    ExecutionEnvironment, RevisionScaling, binary_authorization::BinauthzMethod,
    vpc_access::NetworkInterface, vpc_access::VpcEgress,
};
use google_cloud_wkt::Duration;

use super::*;
use crate::api::v1alpha1::CloudRunServiceSpec;

fn object(extra: serde_json::Value) -> CloudRunService {
    let mut spec = serde_json::json!({
        "region": "europe-west1",
        "containers": [{"image": "europe-docker.pkg.dev/p/r/app@sha256:abc"}],
    });
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let spec: CloudRunServiceSpec = serde_json::from_value(spec).unwrap();
    let mut obj = CloudRunService::new("payments", spec);
    obj.metadata.uid = Some("uid-1".into());
    obj
}

fn resolved() -> Resolved {
    Resolved {
        project: "p1".into(),
        connector: None,
        built: None,
    }
}

/// The service as Cloud Run returns it after deploying `desired`: its defaults filled in (as
/// recorded, see /work/shared/fixtures/gcp-recorded/README.md) and its own fields set.
fn as_google_returns(desired: &Service) -> Service {
    let mut s = desired.clone();
    s.uid = "0f1e".into();
    s.generation = 1;
    s.observed_generation = 1;
    s.etag = "\"abc\"".into();
    s.uri = "https://payments-xyz-ew.a.run.app".into();
    s.labels.insert(
        "cloud.googleapis.com/location".into(),
        "europe-west1".into(),
    );
    if s.traffic.is_empty() {
        s.traffic = vec![
            run::TrafficTarget::new()
                .set_type(run::TrafficTargetAllocationType::Latest)
                .set_percent(100),
        ];
    }
    s.traffic_statuses = s
        .traffic
        .iter()
        .map(|t| {
            run::TrafficTargetStatus::new()
                .set_type(t.r#type.clone())
                .set_revision(t.revision.clone())
                .set_percent(t.percent)
                .set_tag(t.tag.clone())
        })
        .collect();
    let t = s.template.as_mut().unwrap();
    t.revision = String::new();
    if t.service_account.is_empty() {
        t.service_account = "123456789012-compute@developer.gserviceaccount.com".into();
    }
    if t.max_instance_request_concurrency == DEFAULT_CONCURRENCY {
        // Either form stands for the default.
        t.max_instance_request_concurrency = 0;
    }
    if t.node_selector.is_some() && t.gpu_zonal_redundancy_disabled.is_none() {
        t.gpu_zonal_redundancy_disabled = Some(false);
    }
    for v in &mut t.volumes {
        if let Some(run::volume::VolumeType::Secret(src)) = &mut v.volume_type {
            if src.default_mode == 0 {
                src.default_mode = 0o444;
            }
            for i in &mut src.items {
                if i.version.is_empty() {
                    i.version = "latest".into();
                }
            }
        }
    }
    let serving = t
        .containers
        .iter()
        .position(|c| !c.ports.is_empty())
        .unwrap_or(0);
    let several = t.containers.len() > 1;
    // Filled-in resources idle their CPU, except on a GPU revision (as the emulator does).
    let idle = t.node_selector.is_none();
    for (i, c) in t.containers.iter_mut().enumerate() {
        if i == serving && c.ports.is_empty() {
            c.ports = vec![
                run::ContainerPort::new()
                    .set_name("http1")
                    .set_container_port(8080),
            ];
        }
        let port = c.ports.first().map_or(0, |p| p.container_port);
        let resources = c
            .resources
            .get_or_insert_with(|| run::ResourceRequirements::new().set_cpu_idle(idle));
        // Google's canonical units; each of several containers gets 256Mi (recorded).
        let cpu = match resources.limits.get("cpu").map(String::as_str) {
            None | Some("1000m") => "1".to_owned(),
            Some(other) => other.to_owned(),
        };
        resources.limits.insert("cpu".into(), cpu);
        resources
            .limits
            .entry("memory".into())
            .or_insert_with(|| if several { "256Mi" } else { "512Mi" }.into());
        for probe in [
            &mut c.startup_probe,
            &mut c.liveness_probe,
            &mut c.readiness_probe,
        ]
        .into_iter()
        .flatten()
        {
            fill_probe_defaults(probe, port);
        }
        if i == serving && c.startup_probe.is_none() {
            c.startup_probe = Some(
                run::Probe::new()
                    .set_timeout_seconds(240)
                    .set_period_seconds(240)
                    .set_failure_threshold(1)
                    .set_tcp_socket(run::TCPSocketAction::new().set_port(port)),
            );
        }
    }
    s
}

/// Recorded: `httpGet {path: "/"}` comes back as `{failureThreshold: 3, periodSeconds: 10,
/// timeoutSeconds: 1, httpGet: {path: "/", port: 8080}}`.
fn fill_probe_defaults(p: &mut run::Probe, port: i32) {
    use run::probe::ProbeType;
    for (v, default) in [
        (&mut p.failure_threshold, 3),
        (&mut p.period_seconds, 10),
        (&mut p.timeout_seconds, 1),
    ] {
        if *v == 0 {
            *v = default;
        }
    }
    match &mut p.probe_type {
        Some(ProbeType::HttpGet(h)) => {
            if h.port == 0 {
                h.port = port;
            }
            if h.path.is_empty() {
                h.path = "/".into();
            }
        }
        Some(ProbeType::TcpSocket(t)) if t.port == 0 => t.port = port,
        Some(ProbeType::Grpc(g)) if g.port == 0 => g.port = port,
        _ => {}
    }
}

#[test]
fn the_spec_maps_to_the_cloud_run_fields() {
    let obj = object(serde_json::json!({
        "ingress": "InternalAndCloudLoadBalancing",
        "labels": {"team": "payments"},
        "access": {"invokers": ["group:g@example.com"]},
        "serviceAccount": "payments@p1.iam.gserviceaccount.com",
        "executionEnvironment": "Gen1",
        "binaryAuthorization": {"policy": "projects/p1/platforms/cloudRun/policies/strict", "breakglassJustification": "incident 42"},
        "egress": {"connector": "projects/p1/locations/europe-west1/connectors/c1", "routing": "PrivateRangesOnly"},
        "encryption": {"kmsKey": "projects/p1/locations/europe-west1/keyRings/r/cryptoKeys/k", "revocationAction": "Shutdown", "shutdownHours": 2},
        "scaling": {"minInstances": 1, "maxInstances": 5},
        "maxRequestsPerInstance": 10,
        "timeoutSeconds": 30,
    }));
    let s = desired_service(&obj, &resolved());
    assert_eq!(
        s.name,
        "projects/p1/locations/europe-west1/services/payments"
    );
    assert_eq!(s.ingress, IngressTraffic::InternalLoadBalancer);
    assert_eq!(s.labels.get("team").map(String::as_str), Some("payments"));
    assert_eq!(
        s.labels.get("managed-by").map(String::as_str),
        Some("runwarden")
    );
    assert_eq!(
        s.labels.get("runwarden-owner").map(String::as_str),
        Some("uid-1")
    );
    let b = s.binary_authorization.as_ref().unwrap();
    assert_eq!(
        b.binauthz_method,
        Some(BinauthzMethod::Policy(
            "projects/p1/platforms/cloudRun/policies/strict".into()
        ))
    );
    assert_eq!(b.breakglass_justification, "incident 42");
    let t = s.template.as_ref().unwrap();
    assert_eq!(t.service_account, "payments@p1.iam.gserviceaccount.com");
    assert_eq!(t.execution_environment, ExecutionEnvironment::Gen1);
    assert_eq!(
        t.encryption_key,
        "projects/p1/locations/europe-west1/keyRings/r/cryptoKeys/k"
    );
    assert_eq!(
        t.encryption_key_revocation_action,
        run::EncryptionKeyRevocationAction::Shutdown
    );
    assert_eq!(
        t.encryption_key_shutdown_duration
            .as_ref()
            .map(Duration::seconds),
        Some(7200)
    );
    let vpc = t.vpc_access.as_ref().unwrap();
    assert_eq!(
        vpc.connector,
        "projects/p1/locations/europe-west1/connectors/c1"
    );
    assert_eq!(vpc.egress, VpcEgress::PrivateRangesOnly);
    assert_eq!(
        t.scaling
            .as_ref()
            .map(|s| (s.min_instance_count, s.max_instance_count)),
        Some((1, 5))
    );
    assert_eq!(t.max_instance_request_concurrency, 10);
    assert_eq!(t.timeout.as_ref().map(Duration::seconds), Some(30));
}

#[test]
fn secure_defaults_internal_ingress_and_gen2() {
    let s = desired_service(&object(serde_json::json!({})), &resolved());
    assert_eq!(s.ingress, IngressTraffic::InternalOnly);
    assert_eq!(
        s.template.as_ref().unwrap().execution_environment,
        ExecutionEnvironment::Gen2
    );
    assert!(s.binary_authorization.is_none());
}

#[test]
fn what_google_returns_for_an_unchanged_spec_is_no_change() {
    for extra in [
        serde_json::json!({}),
        serde_json::json!({"containers": [{"image": "i", "resources": {"cpu": "1000m", "memory": "1Gi"}, "ports": [{"containerPort": 8080}]}]}),
        serde_json::json!({"egress": {"directVpc": {"network": "default", "subnetwork": "sub", "tags": ["a"]}}}),
    ] {
        let desired = desired_service(&object(extra.clone()), &resolved());
        let mut actual = as_google_returns(&desired);
        if extra.get("containers").is_some() {
            // Google reports the limits it was given in its own canonical units.
            let limits = &mut actual.template.as_mut().unwrap().containers[0]
                .resources
                .as_mut()
                .unwrap()
                .limits;
            limits.insert("cpu".into(), "1".into());
            limits.insert("memory".into(), "1024Mi".into());
        }
        if extra.get("egress").is_some() {
            // Cloud Run may answer with full paths for names given short.
            let nic = &mut actual
                .template
                .as_mut()
                .unwrap()
                .vpc_access
                .as_mut()
                .unwrap()
                .network_interfaces[0];
            nic.network = "projects/p1/global/networks/default".into();
            nic.subnetwork = "projects/p1/regions/europe-west1/subnetworks/sub".into();
        }
        assert_eq!(
            changes(&desired, &actual),
            Vec::<String>::new(),
            "for {extra}"
        );
    }
}

#[test]
fn each_changed_field_is_named() {
    let desired = desired_service(&object(serde_json::json!({})), &resolved());
    let mut actual = as_google_returns(&desired);
    actual.ingress = IngressTraffic::All;
    actual.template.as_mut().unwrap().containers[0].image = "evil".into();
    actual.template.as_mut().unwrap().service_account = "other@p1.iam.gserviceaccount.com".into();
    actual.labels.remove("runwarden-owner");
    assert_eq!(
        changes(&desired, &actual),
        [
            "ingress",
            "labels",
            "template.containers[0].image",
            "template.serviceAccount"
        ]
    );
}

#[test]
fn unset_max_instances_is_left_to_cloud_run_but_a_set_one_is_enforced() {
    let desired = desired_service(&object(serde_json::json!({})), &resolved());
    let mut actual = as_google_returns(&desired);
    actual.template.as_mut().unwrap().scaling =
        Some(RevisionScaling::new().set_max_instance_count(100));
    assert!(changes(&desired, &actual).is_empty());
    let desired = desired_service(
        &object(serde_json::json!({"scaling": {"maxInstances": 3}})),
        &resolved(),
    );
    assert_eq!(
        changes(&desired, &actual),
        ["template.scaling.maxInstanceCount"]
    );
}

#[test]
fn an_update_keeps_what_runwarden_does_not_manage() {
    let desired = desired_service(&object(serde_json::json!({})), &resolved());
    let mut actual = as_google_returns(&desired);
    actual
        .annotations
        .insert("run.googleapis.com/description".into(), "kept".into());
    actual.template.as_mut().unwrap().containers[0].image = "old".into();
    actual.template.as_mut().unwrap().revision = "payments-00001-abc".into();
    let update = update_from(&actual, &desired);
    assert_eq!(
        update
            .annotations
            .get("run.googleapis.com/description")
            .map(String::as_str),
        Some("kept")
    );
    assert_eq!(
        update
            .labels
            .get("cloud.googleapis.com/location")
            .map(String::as_str),
        Some("europe-west1")
    );
    let t = update.template.as_ref().unwrap();
    assert_eq!(
        t.containers[0].image,
        desired.template.as_ref().unwrap().containers[0].image
    );
    assert!(
        t.containers[0].startup_probe.is_some(),
        "probes Cloud Run filled in are kept"
    );
    assert_eq!(t.revision, "", "a pinned revision name is cleared");
    assert_eq!(
        update.etag, actual.etag,
        "the update is conditional on what was read"
    );
    assert!(changes(&desired, &update).is_empty());
}

fn nic(s: &Service) -> &NetworkInterface {
    &s.template
        .as_ref()
        .unwrap()
        .vpc_access
        .as_ref()
        .unwrap()
        .network_interfaces[0]
}

#[test]
fn direct_vpc_names_are_sent_as_full_paths_in_the_service_project_and_region() {
    for (network, subnetwork) in [
        ("default", "sub"),
        (
            "projects/p1/global/networks/default",
            "projects/p1/regions/europe-west1/subnetworks/sub",
        ),
        (
            "https://www.googleapis.com/compute/v1/projects/p1/global/networks/default",
            "https://www.googleapis.com/compute/v1/projects/p1/regions/europe-west1/subnetworks/sub",
        ),
    ] {
        let obj = object(
            serde_json::json!({"egress": {"directVpc": {"network": network, "subnetwork": subnetwork, "tags": ["web"]}}}),
        );
        let s = desired_service(&obj, &resolved());
        let n = nic(&s);
        assert_eq!(
            n.network, "projects/p1/global/networks/default",
            "{network}"
        );
        assert_eq!(
            n.subnetwork, "projects/p1/regions/europe-west1/subnetworks/sub",
            "{subnetwork}"
        );
        assert_eq!(n.tags, ["web"]);
        assert_eq!(
            s.template
                .as_ref()
                .unwrap()
                .vpc_access
                .as_ref()
                .unwrap()
                .egress,
            VpcEgress::AllTraffic
        );
    }
}

#[test]
fn direct_vpc_short_and_full_names_are_the_same_shape_either_way() {
    let short = object(
        serde_json::json!({"egress": {"directVpc": {"network": "default", "subnetwork": "sub"}}}),
    );
    let full = object(serde_json::json!({"egress": {"directVpc": {
        "network": "projects/p1/global/networks/default",
        "subnetwork": "projects/p1/regions/europe-west1/subnetworks/sub"}}}));
    for spec in [&short, &full] {
        let desired = desired_service(spec, &resolved());
        // What Google has, whether written by us (full paths) or by hand with short names.
        let ours = as_google_returns(&desired);
        let mut by_hand = ours.clone();
        let n = &mut by_hand
            .template
            .as_mut()
            .unwrap()
            .vpc_access
            .as_mut()
            .unwrap()
            .network_interfaces[0];
        n.network = "default".into();
        n.subnetwork = "sub".into();
        assert!(changes(&desired, &ours).is_empty());
        assert!(changes(&desired, &by_hand).is_empty());
    }
}

#[test]
fn direct_vpc_drift_to_another_project_or_subnet_is_seen() {
    let desired = desired_service(
        &object(
            serde_json::json!({"egress": {"directVpc": {"network": "default", "subnetwork": "sub", "tags": ["a"]}}}),
        ),
        &resolved(),
    );
    let edit = |f: &dyn Fn(&mut NetworkInterface)| {
        let mut actual = as_google_returns(&desired);
        f(&mut actual
            .template
            .as_mut()
            .unwrap()
            .vpc_access
            .as_mut()
            .unwrap()
            .network_interfaces[0]);
        changes(&desired, &actual)
    };
    assert_eq!(
        edit(&|n| n.network = "projects/host/global/networks/default".into()),
        ["template.vpcAccess.networkInterfaces[0].network"]
    );
    assert_eq!(
        edit(&|n| n.subnetwork = "other".into()),
        ["template.vpcAccess.networkInterfaces[0].subnetwork"]
    );
    assert_eq!(
        edit(&|n| n.tags = vec!["b".into()]),
        ["template.vpcAccess.networkInterfaces[0].tags"]
    );
    let mut gone = as_google_returns(&desired);
    gone.template.as_mut().unwrap().vpc_access = None;
    assert_eq!(
        changes(&desired, &gone),
        [
            "template.vpcAccess.egress",
            "template.vpcAccess.networkInterfaces",
            "template.vpcAccess.networkInterfaces[0].network",
            "template.vpcAccess.networkInterfaces[0].subnetwork",
            "template.vpcAccess.networkInterfaces[0].tags"
        ]
    );
}

#[test]
fn direct_vpc_with_only_a_subnetwork_leaves_the_network_to_cloud_run() {
    let desired = desired_service(
        &object(serde_json::json!({"egress": {"directVpc": {"subnetwork": "sub"}}})),
        &resolved(),
    );
    assert_eq!(nic(&desired).network, "");
    let mut actual = as_google_returns(&desired);
    actual
        .template
        .as_mut()
        .unwrap()
        .vpc_access
        .as_mut()
        .unwrap()
        .network_interfaces[0]
        .network = "projects/p1/global/networks/default".into();
    assert!(changes(&desired, &actual).is_empty());
}

#[test]
fn a_resolved_connector_goes_into_the_template() {
    let obj = object(serde_json::json!({"egress": {"connectorRef": {"name": "egress"}}}));
    let resolved = Resolved {
        project: "p1".into(),
        connector: Some("projects/p1/locations/europe-west1/connectors/egress".into()),
        built: None,
    };
    let s = desired_service(&obj, &resolved);
    let vpc = s.template.as_ref().unwrap().vpc_access.as_ref().unwrap();
    assert_eq!(
        vpc.connector,
        "projects/p1/locations/europe-west1/connectors/egress"
    );
    assert!(vpc.network_interfaces.is_empty());
    assert!(changes(&s, &as_google_returns(&s)).is_empty());
}

/// A spec that sets every field runwarden manages.
fn every_field() -> serde_json::Value {
    serde_json::json!({
        "ingress": "All",
        "defaultUriDisabled": true,
        "labels": {"team": "payments"},
        "access": {"invokers": ["group:g@example.com"], "invokerIamDisabled": true},
        "iapEnabled": true,
        "customAudiences": ["https://api.example.com", "payments"],
        "serviceAccount": "payments@p1.iam.gserviceaccount.com",
        "executionEnvironment": "Gen2",
        "binaryAuthorization": {"useDefault": true, "breakglassJustification": "incident 42"},
        "egress": {"directVpc": {"network": "default", "subnetwork": "sub", "tags": ["a"]}, "routing": "PrivateRangesOnly"},
        "encryption": {"kmsKey": "projects/p1/locations/europe-west1/keyRings/r/cryptoKeys/k", "revocationAction": "Shutdown", "shutdownHours": 2},
        "scaling": {"minInstances": 1, "maxInstances": 3, "mode": "Manual", "manualInstances": 2},
        "maxRequestsPerInstance": 10,
        "timeoutSeconds": 30,
        "sessionAffinity": true,
        "gpu": {"type": "nvidia-l4", "count": 1, "zonalRedundancy": false},
        "traffic": [
            {"type": "Revision", "revision": "projects/p1/locations/europe-west1/services/payments/revisions/payments-00001-abc", "percent": 90},
            {"type": "Latest", "percent": 10, "tag": "canary"}],
        "volumes": [
            {"name": "creds", "secret": {"secret": "db", "items": [{"path": "db.json"}, {"path": "old.json", "version": "3", "mode": 256}]}},
            {"name": "sql", "cloudSqlInstances": ["p1:europe-west1:db", "p1:europe-west1:replica"]},
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
            {"name": "models", "gcs": {"bucket": "ml-models", "mountOptions": ["implicit-dirs"]}},
            {"name": "share", "nfs": {"server": "10.0.0.2", "path": "/share", "readOnly": true}}],
        "containers": [
            {"name": "app", "image": "europe-docker.pkg.dev/p/r/app@sha256:abc", "command": ["/app"], "args": ["--serve"],
             "ports": [{"name": "h2c", "containerPort": 9000}],
             "env": [{"name": "MODE", "value": "prod"}, {"name": "DB", "secretRef": {"secret": "db"}}],
             "workingDir": "/srv", "dependsOn": ["proxy"],
             "resources": {"cpu": "4", "memory": "16Gi", "cpuIdle": false, "startupCpuBoost": true},
             "volumeMounts": [{"name": "creds", "mountPath": "/secrets"}, {"name": "tmp", "mountPath": "/tmp"}, {"name": "models", "mountPath": "/models"}, {"name": "share", "mountPath": "/share"}],
             "startupProbe": {"httpGet": {"path": "/ready", "httpHeaders": [{"name": "X-Probe", "value": "1"}]}},
             "livenessProbe": {"grpc": {"service": "health"}, "periodSeconds": 30},
             "readinessProbe": {"tcpSocket": {}, "initialDelaySeconds": 5}},
            {"name": "proxy", "image": "europe-docker.pkg.dev/p/r/proxy@sha256:def",
             "volumeMounts": [{"name": "sql", "mountPath": "/cloudsql"}],
             "startupProbe": {"tcpSocket": {"port": 5432}}}],
    })
}

#[test]
fn every_field_set_and_unchanged_is_no_write() {
    let obj = object(every_field());
    assert!(
        super::super::validate::validate(&obj).is_ok(),
        "the every-field spec is valid"
    );
    let desired = desired_service(&obj, &resolved());
    let mut actual = as_google_returns(&desired);
    // What else Google answers differently for the same thing: the revision by its full name,
    // the memory limit in its canonical unit, a readOnly false left out (false in the struct).
    actual.traffic[0].revision =
        "projects/p1/locations/europe-west1/services/payments/revisions/payments-00001-abc".into();
    let t = actual.template.as_mut().unwrap();
    t.containers[0]
        .resources
        .as_mut()
        .unwrap()
        .limits
        .insert("memory".into(), "16384Mi".into());
    t.containers[0]
        .resources
        .as_mut()
        .unwrap()
        .limits
        .insert("cpu".into(), "4000m".into());
    assert_eq!(changes(&desired, &actual), Vec::<String>::new());
    // The update runwarden would send for it is a no-op too, and keeps Cloud Run's own fields.
    let update = update_from(&actual, &desired);
    assert!(changes(&desired, &update).is_empty());
    assert_eq!(update.traffic_statuses, actual.traffic_statuses);
    // And every field is in the shape, so none is compared by accident only.
    let shape = shape(&desired);
    for path in [
        "traffic",
        "iapEnabled",
        "invokerIamDisabled",
        "customAudiences",
        "scaling.scalingMode",
        "scaling.manualInstanceCount",
        "template.sessionAffinity",
        "template.nodeSelector.accelerator",
        "template.gpuZonalRedundancyDisabled",
        "template.volumes[creds]",
        "template.containers[0].resources.gpu",
        "template.containers[0].resources.cpuIdle",
        "template.containers[0].resources.startupCpuBoost",
        "template.containers[0].volumeMounts",
        "template.containers[0].dependsOn",
        "template.containers[0].workingDir",
        "template.containers[0].startupProbe",
        "template.containers[0].livenessProbe",
        "template.containers[0].readinessProbe",
    ] {
        assert!(shape.contains_key(path), "{path} is not compared");
    }
}

/// Each single change to the every-field spec is named by the one path it changes.
#[test]
fn each_changed_field_of_the_full_model_is_named() {
    let base = every_field();
    let actual = as_google_returns(&desired_service(&object(base.clone()), &resolved()));
    let cases: &[(&str, serde_json::Value, &str)] = &[
        ("/traffic/0/percent", 80.into(), "traffic"),
        ("/traffic/1/percent", 20.into(), "traffic"),
        ("/traffic/1/tag", "beta".into(), "traffic"),
        (
            "/traffic/0/revision",
            "payments-00002-xyz".into(),
            "traffic",
        ),
        ("/iapEnabled", false.into(), "iapEnabled"),
        (
            "/access/invokerIamDisabled",
            false.into(),
            "invokerIamDisabled",
        ),
        ("/customAudiences/1", "other".into(), "customAudiences"),
        ("/sessionAffinity", false.into(), "template.sessionAffinity"),
        (
            "/scaling/manualInstances",
            4.into(),
            "scaling.manualInstanceCount",
        ),
        (
            "/gpu/type",
            "nvidia-h100".into(),
            "template.nodeSelector.accelerator",
        ),
        (
            "/gpu/count",
            2.into(),
            "template.containers[0].resources.gpu",
        ),
        (
            "/gpu/zonalRedundancy",
            true.into(),
            "template.gpuZonalRedundancyDisabled",
        ),
        (
            "/volumes/0/secret/items/0/version",
            "2".into(),
            "template.volumes[creds]",
        ),
        (
            "/volumes/0/secret/items/1/mode",
            292.into(),
            "template.volumes[creds]",
        ),
        (
            "/volumes/0/secret/defaultMode",
            256.into(),
            "template.volumes[creds]",
        ),
        (
            "/volumes/1/cloudSqlInstances/1",
            "p1:europe-west1:other".into(),
            "template.volumes[sql]",
        ),
        (
            "/volumes/2/emptyDir/sizeLimit",
            "512Mi".into(),
            "template.volumes[tmp]",
        ),
        (
            "/volumes/3/gcs/readOnly",
            true.into(),
            "template.volumes[models]",
        ),
        (
            "/volumes/3/gcs/bucket",
            "other-bucket".into(),
            "template.volumes[models]",
        ),
        (
            "/volumes/4/nfs/path",
            "/other".into(),
            "template.volumes[share]",
        ),
        (
            "/volumes/4/nfs/readOnly",
            false.into(),
            "template.volumes[share]",
        ),
        (
            "/containers/0/workingDir",
            "/app".into(),
            "template.containers[0].workingDir",
        ),
        (
            "/containers/0/dependsOn",
            serde_json::json!([]),
            "template.containers[0].dependsOn",
        ),
        (
            "/containers/0/volumeMounts/0/mountPath",
            "/etc/secrets".into(),
            "template.containers[0].volumeMounts",
        ),
        (
            "/containers/0/resources/cpuIdle",
            true.into(),
            "template.containers[0].resources.cpuIdle",
        ),
        (
            "/containers/0/resources/startupCpuBoost",
            false.into(),
            "template.containers[0].resources.startupCpuBoost",
        ),
        (
            "/containers/0/startupProbe/httpGet/path",
            "/healthz".into(),
            "template.containers[0].startupProbe",
        ),
        (
            "/containers/0/startupProbe/httpGet/httpHeaders/0/value",
            "2".into(),
            "template.containers[0].startupProbe",
        ),
        (
            "/containers/0/livenessProbe/periodSeconds",
            10.into(),
            "template.containers[0].livenessProbe",
        ),
        (
            "/containers/0/livenessProbe/grpc/service",
            "other".into(),
            "template.containers[0].livenessProbe",
        ),
        (
            "/containers/0/readinessProbe/tcpSocket/port",
            9001.into(),
            "template.containers[0].readinessProbe",
        ),
        (
            "/containers/0/readinessProbe/initialDelaySeconds",
            0.into(),
            "template.containers[0].readinessProbe",
        ),
        (
            "/containers/1/startupProbe/failureThreshold",
            10.into(),
            "template.containers[1].startupProbe",
        ),
    ];
    for (pointer, value, path) in cases {
        let mut spec = base.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        match spec.pointer_mut(parent) {
            Some(serde_json::Value::Object(o)) => {
                o.insert(key.to_owned(), value.clone());
            }
            Some(serde_json::Value::Array(a)) => a[key.parse::<usize>().unwrap()] = value.clone(),
            _ => panic!("{pointer}"),
        }
        let desired = desired_service(&object(spec), &resolved());
        assert_eq!(changes(&desired, &actual), [*path], "{pointer} = {value}");
    }
    // Fields whose absence means Cloud Run's default.
    for (pointer, path) in [
        ("/traffic", "traffic"),
        ("/volumes/4", "template.volumes"),
        (
            "/containers/0/livenessProbe",
            "template.containers[0].livenessProbe",
        ),
        (
            "/containers/1/startupProbe",
            "template.containers[1].startupProbe",
        ),
    ] {
        let mut spec = base.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let parent = spec.pointer_mut(parent).unwrap();
        match parent {
            serde_json::Value::Array(a) => {
                a.remove(key.parse().unwrap());
            }
            serde_json::Value::Object(o) => {
                o.remove(key);
            }
            _ => unreachable!(),
        }
        let desired = desired_service(&object(spec), &resolved());
        let changed = changes(&desired, &actual);
        assert!(changed.contains(&path.to_owned()), "{pointer}: {changed:?}");
    }
}

#[test]
fn an_absent_startup_probe_keeps_cloud_runs_own_and_a_removed_one_is_sent_as_none() {
    let desired = desired_service(&object(serde_json::json!({})), &resolved());
    let actual = as_google_returns(&desired);
    let implicit = actual.template.as_ref().unwrap().containers[0]
        .startup_probe
        .clone();
    assert!(implicit.is_some());
    let update = update_from(&actual, &desired);
    assert_eq!(
        update.template.as_ref().unwrap().containers[0].startup_probe,
        implicit
    );
    // Someone set an HTTP probe in Google: it is drift, and the update clears it.
    let mut edited = actual.clone();
    edited.template.as_mut().unwrap().containers[0].startup_probe =
        Some(run::Probe::new().set_http_get(run::HTTPGetAction::new().set_path("/x")));
    assert_eq!(
        changes(&desired, &edited),
        ["template.containers[0].startupProbe"]
    );
    let update = update_from(&edited, &desired);
    assert_eq!(
        update.template.as_ref().unwrap().containers[0].startup_probe,
        None
    );
}

#[test]
fn cpu_idle_is_the_specs_with_cloud_runs_default() {
    let idle = |extra: serde_json::Value| {
        let s = desired_service(&object(extra), &resolved());
        let c = &s.template.as_ref().unwrap().containers[0];
        c.resources.as_ref().map(|r| r.cpu_idle)
    };
    assert_eq!(
        idle(serde_json::json!({})),
        None,
        "left to Cloud Run (true)"
    );
    assert_eq!(
        idle(serde_json::json!({"containers": [{"image": "i", "resources": {"cpu": "2"}}]})),
        Some(true)
    );
    assert_eq!(
        idle(serde_json::json!({"containers": [{"image": "i", "resources": {"cpuIdle": false}}]})),
        Some(false)
    );
    // Google's default (no resources sent) and an explicit true are the same shape.
    let desired = desired_service(&object(serde_json::json!({})), &resolved());
    let actual = as_google_returns(&desired);
    let always = desired_service(
        &object(
            serde_json::json!({"containers": [{"image": "europe-docker.pkg.dev/p/r/app@sha256:abc", "resources": {"cpuIdle": false}}]}),
        ),
        &resolved(),
    );
    assert_eq!(
        changes(&always, &actual),
        ["template.containers[0].resources.cpuIdle"]
    );
}

#[test]
fn ignore_drift_traffic_covers_every_traffic_path() {
    let desired = desired_service(&object(every_field()), &resolved());
    for path in shape(&desired).keys().filter(|k| k.starts_with("traffic")) {
        assert!(super::super::plan::ignored(
            &[crate::api::v1alpha1::DriftAspect::Traffic],
            path
        ));
    }
}

#[test]
fn the_base_image_is_rendered_and_diffed_and_google_build_info_is_never_drift() {
    let base = "us-central1-docker.pkg.dev/serverless-runtimes/google-22/runtimes/nodejs22";
    let obj = object(serde_json::json!({"containers": [{"image": "i", "baseImageUri": base}]}));
    let desired = desired_service(&obj, &resolved());
    assert_eq!(
        desired.template.as_ref().unwrap().containers[0].base_image_uri,
        base
    );
    let mut actual = as_google_returns(&desired);
    // Output only: what Google built the image from.
    actual.template.as_mut().unwrap().containers[0].build_info = Some(
        run::BuildInfo::new()
            .set_function_target("handler")
            .set_source_location("gs://b/o#1"),
    );
    assert_eq!(changes(&desired, &actual), Vec::<String>::new());
    // Someone switched automatic base image updates off behind runwarden's back.
    actual.template.as_mut().unwrap().containers[0].base_image_uri = String::new();
    assert_eq!(
        changes(&desired, &actual),
        ["template.containers[0].baseImageUri"]
    );
    let update = update_from(&actual, &desired);
    let c = &update.template.as_ref().unwrap().containers[0];
    assert_eq!(c.base_image_uri, base, "set back");
    assert!(c.build_info.is_some(), "Google's output kept as it is");
    // Unset in the spec, a base image Google has is drift too (updates the spec does not want).
    let plain = desired_service(&object(serde_json::json!({})), &resolved());
    let mut enrolled = as_google_returns(&plain);
    enrolled.template.as_mut().unwrap().containers[0].base_image_uri = base.into();
    assert_eq!(
        changes(&plain, &enrolled),
        ["template.containers[0].baseImageUri"]
    );
}

#[test]
fn a_build_puts_the_built_digest_and_base_image_on_the_first_container_and_build_config_as_metadata()
 {
    let obj = object(serde_json::json!({
        "containers": [{"image": "hello"}, {"name": "proxy", "image": "envoy", "ports": [{"containerPort": 8080}]}],
        "build": {"source": {"bucket": "b", "object": "o.tar.gz", "generation": 3}, "functionTarget": "fn"},
    }));
    let resolved = Resolved {
        built: Some(Built {
            image: "europe-west1-docker.pkg.dev/p1/cloud-run-source-deploy/payments@sha256:ab"
                .into(),
            base_image_uri: "base".into(),
        }),
        ..resolved()
    };
    let desired = desired_service(&obj, &resolved);
    let t = desired.template.as_ref().unwrap();
    assert_eq!(
        t.containers[0].image,
        "europe-west1-docker.pkg.dev/p1/cloud-run-source-deploy/payments@sha256:ab"
    );
    assert_eq!(t.containers[0].base_image_uri, "base");
    assert_eq!(t.containers[1].image, "envoy", "only the first is built");
    let bc = desired.build_config.as_ref().unwrap();
    assert_eq!(bc.source_location, "gs://b/o.tar.gz#3");
    assert_eq!(
        bc.image_uri,
        "europe-west1-docker.pkg.dev/p1/cloud-run-source-deploy/payments"
    );
    let mut actual = as_google_returns(&desired);
    assert_eq!(changes(&desired, &actual), Vec::<String>::new());
    // Output only: Google names the build config.
    actual.build_config.as_mut().unwrap().name = "projects/p1/builds/x".into();
    assert_eq!(changes(&desired, &actual), Vec::<String>::new());
    actual
        .build_config
        .as_mut()
        .unwrap()
        .enable_automatic_updates = false;
    assert_eq!(changes(&desired, &actual), ["buildConfig"]);
}
