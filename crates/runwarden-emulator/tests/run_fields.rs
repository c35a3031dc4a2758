//! Every Cloud Run field runwarden maps (traffic, IAP, invoker IAM, custom audiences, session
//! affinity, scaling mode, GPU, volumes, mounts, dependsOn, probes, cpuIdle/startupCpuBoost),
//! driven through the official google-cloud-run-v2 client: round trip, recorded server-side
//! defaults, traffic statuses, revisions, and the rules Cloud Run refuses.

mod common;

use common::*;
use google_cloud_gax::error::rpc::{Code, StatusDetails};
use google_cloud_lro::Poller;
use google_cloud_run_v2::client::Services;
use google_cloud_run_v2::model::{
    self, CloudSqlInstance, Container, ContainerPort, EmptyDirVolumeSource, ExecutionEnvironment,
    GCSVolumeSource, GRPCAction, HTTPGetAction, HTTPHeader, NFSVolumeSource, NodeSelector, Probe,
    ResourceRequirements, RevisionScaling, RevisionTemplate, SecretVolumeSource, Service,
    ServiceScaling, TCPSocketAction, TrafficTarget, TrafficTargetAllocationType, VersionToPath,
    Volume, VolumeMount, empty_dir_volume_source, service_scaling,
};

const MISSING: &str =
    "does not exist or is deleted. Update all traffic to route to currently available revisions.";

fn probe(kind: &str, port: i32) -> Probe {
    let p = Probe::new()
        .set_initial_delay_seconds(2)
        .set_timeout_seconds(3)
        .set_period_seconds(5)
        .set_failure_threshold(4);
    match kind {
        "http" => p.set_http_get(
            HTTPGetAction::new()
                .set_path("/ready")
                .set_port(port)
                .set_http_headers([HTTPHeader::new().set_name("X-Probe").set_value("1")]),
        ),
        "tcp" => p.set_tcp_socket(TCPSocketAction::new().set_port(port)),
        _ => p.set_grpc(GRPCAction::new().set_port(port).set_service("health")),
    }
}

fn limits(cpu: &str, memory: &str, gpu: bool) -> ResourceRequirements {
    let mut l = vec![("cpu", cpu), ("memory", memory)];
    if gpu {
        l.push(("nvidia.com/gpu", "1"));
    }
    ResourceRequirements::new().set_limits(l)
}

/// A GPU service setting every field runwarden maps, each fully specified (no server default
/// applies), so what comes back must equal what was sent.
fn full_service() -> Service {
    let volumes = [
        Volume::new().set_name("secret").set_secret(
            SecretVolumeSource::new()
                .set_secret("projects/p/secrets/s")
                .set_items([VersionToPath::new()
                    .set_path("key.txt")
                    .set_version("latest")
                    .set_mode(0o400)])
                .set_default_mode(0o444),
        ),
        Volume::new()
            .set_name("sql")
            .set_cloud_sql_instance(CloudSqlInstance::new().set_instances(["p:us-central1:db"])),
        Volume::new().set_name("scratch").set_empty_dir(
            EmptyDirVolumeSource::new()
                .set_medium(empty_dir_volume_source::Medium::Memory)
                .set_size_limit("1Gi"),
        ),
        Volume::new().set_name("bucket").set_gcs(
            GCSVolumeSource::new()
                .set_bucket("my-bucket")
                .set_read_only(true)
                .set_mount_options(["implicit-dirs"]),
        ),
        Volume::new().set_name("share").set_nfs(
            NFSVolumeSource::new()
                .set_server("10.0.0.2")
                .set_path("/share")
                .set_read_only(false),
        ),
    ];
    let mounts = ["secret", "sql", "scratch", "bucket", "share"].map(|v| {
        VolumeMount::new()
            .set_name(v)
            .set_mount_path(format!("/mnt/{v}"))
    });
    let app = Container::new()
        .set_name("app")
        .set_image("gcr.io/x/app")
        .set_ports([ContainerPort::new()
            .set_name("http1")
            .set_container_port(9000)])
        .set_working_dir("/srv")
        .set_resources(
            limits("4", "16Gi", true)
                .set_cpu_idle(false)
                .set_startup_cpu_boost(true),
        )
        .set_volume_mounts(mounts)
        .set_startup_probe(probe("http", 9000))
        .set_liveness_probe(probe("tcp", 9000))
        .set_readiness_probe(probe("grpc", 9000))
        .set_depends_on(["proxy"]);
    let proxy = Container::new()
        .set_name("proxy")
        .set_image("gcr.io/x/proxy")
        .set_resources(limits("1000m", "256Mi", false))
        .set_startup_probe(probe("tcp", 8081));
    Service::new()
        .set_iap_enabled(true)
        .set_invoker_iam_disabled(true)
        .set_custom_audiences(["https://api.example.com", "aud-2"])
        .set_scaling(
            ServiceScaling::new()
                .set_scaling_mode(service_scaling::ScalingMode::Manual)
                .set_manual_instance_count(2),
        )
        .set_traffic([TrafficTarget::new()
            .set_type(TrafficTargetAllocationType::Latest)
            .set_percent(100)
            .set_tag("live")])
        .set_template(
            RevisionTemplate::new()
                .set_execution_environment(ExecutionEnvironment::Gen2)
                .set_session_affinity(true)
                .set_node_selector(NodeSelector::new().set_accelerator("nvidia-l4"))
                .set_gpu_zonal_redundancy_disabled(true)
                .set_scaling(RevisionScaling::new().set_max_instance_count(3))
                .set_volumes(volumes)
                .set_containers([app, proxy]),
        )
}

/// The fields under test, from a service as returned.
fn mapped(s: &Service) -> (Service, RevisionTemplate) {
    let t = s.template.clone().expect("template");
    let only = Service::new()
        .set_iap_enabled(s.iap_enabled)
        .set_invoker_iam_disabled(s.invoker_iam_disabled)
        .set_custom_audiences(s.custom_audiences.clone())
        .set_or_clear_scaling(s.scaling.clone())
        .set_traffic(s.traffic.clone());
    let tmpl = RevisionTemplate::new()
        .set_execution_environment(t.execution_environment.clone())
        .set_session_affinity(t.session_affinity)
        .set_or_clear_node_selector(t.node_selector.clone())
        .set_or_clear_gpu_zonal_redundancy_disabled(t.gpu_zonal_redundancy_disabled)
        .set_or_clear_scaling(t.scaling.clone())
        .set_volumes(t.volumes.clone())
        .set_containers(t.containers.clone());
    (only, tmpl)
}

async fn create(
    client: &Services,
    id: &str,
    svc: Service,
) -> Result<Service, Box<dyn std::error::Error>> {
    Ok(client
        .create_service()
        .set_parent(parent())
        .set_service_id(id)
        .set_service(svc)
        .poller()
        .until_done()
        .await?)
}

async fn update(
    client: &Services,
    svc: Service,
) -> Result<Service, google_cloud_gax::error::Error> {
    client
        .update_service()
        .set_service(svc)
        .poller()
        .until_done()
        .await
}

fn revision_of(full: &str) -> String {
    full.rsplit('/').next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn every_mapped_field_round_trips_through_create_get_and_patch() -> TestResult {
    let emu = emulator().await;
    let client = run(&emu).await;
    let sent = full_service();
    let created = create(&client, "full", sent.clone()).await?;
    assert_eq!(mapped(&created), mapped(&sent));
    let got = client
        .get_service()
        .set_name(service_name("full"))
        .send()
        .await?;
    assert_eq!(mapped(&got), mapped(&sent));

    // Change a field of each group and patch the whole service.
    let mut t = got.template.clone().expect("template");
    t.session_affinity = false;
    t.gpu_zonal_redundancy_disabled = Some(false);
    t.containers[0].working_dir = "/app".into();
    t.containers[0].resources = Some(limits("8", "32Gi", true).set_startup_cpu_boost(false));
    if let Some(model::volume::VolumeType::Nfs(nfs)) = t.volumes[4].volume_type.as_mut() {
        nfs.path = "/other".into();
    }
    let changed = got
        .clone()
        .set_iap_enabled(false)
        .set_custom_audiences(["aud-3"])
        .set_scaling(
            ServiceScaling::new()
                .set_scaling_mode(service_scaling::ScalingMode::Manual)
                .set_manual_instance_count(0),
        )
        .set_template(t);
    let patched = update(&client, changed.clone()).await?;
    assert_eq!(mapped(&patched), mapped(&changed));
    assert_eq!(patched.generation, 2);
    let again = client
        .get_service()
        .set_name(service_name("full"))
        .send()
        .await?;
    assert_eq!(mapped(&again), mapped(&changed));
    let tmpl = again.template.expect("template");
    assert_eq!(
        tmpl.gpu_zonal_redundancy_disabled,
        Some(false),
        "explicit false is kept"
    );
    assert_eq!(
        again.scaling.and_then(|s| s.manual_instance_count),
        Some(0),
        "explicit 0 is kept"
    );
    Ok(())
}

#[tokio::test]
async fn recorded_defaults_for_probes_limits_traffic_and_read_only() -> TestResult {
    let emu = emulator().await;
    let client = run(&emu).await;
    let http_probe = || Probe::new().set_http_get(HTTPGetAction::new().set_path("/"));
    // As the recorded job: three containers, two with an httpGet startup probe on "/".
    let svc = Service::new().set_template(
        RevisionTemplate::new()
            .set_volumes([Volume::new()
                .set_name("v")
                .set_gcs(GCSVolumeSource::new().set_bucket("b").set_read_only(false))])
            .set_containers([
                Container::new()
                    .set_name("hello")
                    .set_image("gcr.io/x/hello"),
                Container::new()
                    .set_name("goodbye")
                    .set_image("gcr.io/x/hello")
                    .set_startup_probe(http_probe())
                    .set_volume_mounts([VolumeMount::new().set_name("v").set_mount_path("/v")]),
                Container::new()
                    .set_name("farewell")
                    .set_image("gcr.io/x/hello")
                    .set_depends_on(["hello"])
                    .set_liveness_probe(http_probe()),
            ]),
    );
    let got = create(&client, "defaults", svc).await?;
    let t = got.template.expect("template");
    for c in &t.containers {
        let l = &c.resources.as_ref().expect("resources").limits;
        assert_eq!(
            l.get("cpu").map(String::as_str),
            Some("1000m"),
            "{}",
            c.name
        );
        assert_eq!(
            l.get("memory").map(String::as_str),
            Some("256Mi"),
            "{}",
            c.name
        );
    }
    let completed = Probe::new()
        .set_failure_threshold(3)
        .set_period_seconds(10)
        .set_timeout_seconds(1)
        .set_http_get(HTTPGetAction::new().set_path("/").set_port(8080));
    assert_eq!(t.containers[1].startup_probe, Some(completed.clone()));
    assert_eq!(t.containers[2].liveness_probe, Some(completed));
    let implicit = Probe::new()
        .set_timeout_seconds(240)
        .set_period_seconds(240)
        .set_failure_threshold(1)
        .set_tcp_socket(TCPSocketAction::new().set_port(8080));
    assert_eq!(t.containers[0].startup_probe, Some(implicit));
    assert_eq!(t.containers[0].ports[0].container_port, 8080);
    assert!(
        t.containers[1].ports.is_empty(),
        "only the ingress container gets a port"
    );
    assert_eq!(got.traffic.len(), 1);
    assert_eq!(got.traffic[0].r#type, TrafficTargetAllocationType::Latest);
    assert_eq!(got.traffic[0].percent, 100);

    // On the wire: readOnly false omitted; the untagged LATEST status has no revision/tag/uri.
    let (status, raw) = http(
        &emu,
        "GET",
        &format!("/v2/{}", service_name("defaults")),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        raw["template"]["volumes"][0]["gcs"],
        serde_json::json!({"bucket": "b"})
    );
    assert_eq!(
        raw["trafficStatuses"],
        serde_json::json!([{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}])
    );
    assert_eq!(
        raw["template"]["containers"][2]["dependsOn"],
        serde_json::json!(["hello"])
    );

    // A single container: 512Mi; an httpGet probe on a container with port 9000 probes 9000.
    let single = Service::new().set_template(
        RevisionTemplate::new().set_containers([Container::new()
            .set_image("gcr.io/x/y")
            .set_ports([ContainerPort::new().set_container_port(9000)])
            .set_readiness_probe(http_probe())]),
    );
    let got = create(&client, "single", single).await?;
    let c = &got.template.expect("template").containers[0];
    let l = &c.resources.as_ref().expect("resources").limits;
    assert_eq!(l.get("memory").map(String::as_str), Some("512Mi"));
    let port = c
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get())
        .map(|h| h.port);
    assert_eq!(port, Some(9000));
    assert_eq!(
        c.startup_probe
            .as_ref()
            .and_then(|p| p.tcp_socket())
            .map(|t| t.port),
        Some(9000)
    );
    Ok(())
}

#[tokio::test]
async fn traffic_split_with_a_tag_reports_statuses_and_the_tag_uri() -> TestResult {
    let emu = emulator().await;
    let client = run(&emu).await;
    let v1 = create(&client, "split", hello_service()).await?;
    let rev1 = revision_of(&v1.latest_ready_revision);
    let mut t = v1.template.clone().expect("template");
    t.containers[0].image = "gcr.io/cloudrun/hello:v2".into();
    let v2 = update(&client, v1.clone().set_template(t)).await?;
    let rev2 = revision_of(&v2.latest_ready_revision);
    assert_ne!(rev1, rev2);

    let split = v2.clone().set_traffic([
        TrafficTarget::new()
            .set_type(TrafficTargetAllocationType::Revision)
            .set_revision(&rev1)
            .set_percent(10)
            .set_tag("blue"),
        TrafficTarget::new()
            .set_type(TrafficTargetAllocationType::Revision)
            .set_revision(format!("{}/revisions/{rev2}", service_name("split")))
            .set_percent(40),
        TrafficTarget::new()
            .set_type(TrafficTargetAllocationType::Latest)
            .set_percent(50),
    ]);
    let out = update(&client, split.clone()).await?;
    assert_eq!(out.traffic, split.traffic, "traffic round-trips as sent");
    assert_eq!(
        out.latest_ready_revision, v2.latest_ready_revision,
        "no new revision"
    );
    let host = out.uri.strip_prefix("https://").expect("https uri");
    let ts = &out.traffic_statuses;
    assert_eq!(ts.len(), 3);
    assert_eq!(ts[0].r#type, TrafficTargetAllocationType::Revision);
    assert_eq!(ts[0].revision, rev1);
    assert_eq!(ts[0].percent, 10);
    assert_eq!(ts[0].tag, "blue");
    assert_eq!(ts[0].uri, format!("https://blue---{host}"));
    assert_eq!(ts[1].revision, rev2, "a full name is reported by its id");
    assert_eq!(ts[1].percent, 40);
    assert!(ts[1].tag.is_empty() && ts[1].uri.is_empty());
    assert_eq!(ts[2].r#type, TrafficTargetAllocationType::Latest);
    assert_eq!(ts[2].percent, 50);
    assert!(ts[2].revision.is_empty() && ts[2].tag.is_empty() && ts[2].uri.is_empty());
    Ok(())
}

#[tokio::test]
async fn traffic_to_a_missing_revision_is_accepted_then_the_operation_fails() -> TestResult {
    let emu = emulator().await;
    let client = run(&emu).await;
    let svc = create(&client, "ghost", hello_service()).await?;
    let before = svc.traffic_statuses.clone();
    for named in [
        "ghost-00009-zzz".to_string(),
        format!("{}/revisions/ghost-00009-zzz", service_name("ghost")),
        format!("{}/revisions/ghost-00009-zzz", service_name("other")),
    ] {
        let current = client
            .get_service()
            .set_name(service_name("ghost"))
            .send()
            .await?;
        let bad = current.set_traffic([TrafficTarget::new()
            .set_type(TrafficTargetAllocationType::Revision)
            .set_revision(&named)
            .set_percent(100)]);
        let err = update(&client, bad).await.unwrap_err();
        assert_eq!(code(&err), Some(Code::Internal), "{named}: {err:?}");
        assert_eq!(
            message(&err),
            format!("Revision 'ghost-00009-zzz' {MISSING}"),
            "{named}"
        );
    }
    // Accepted: the call itself returns a running operation; the operation carries code 13.
    let op = client
        .update_service()
        .set_service(
            client
                .get_service()
                .set_name(service_name("ghost"))
                .send()
                .await?
                .set_traffic([TrafficTarget::new()
                    .set_type(TrafficTargetAllocationType::Revision)
                    .set_revision("ghost-00009-zzz")
                    .set_percent(100)]),
        )
        .send()
        .await?;
    assert!(!op.done);
    let done = client.get_operation().set_name(op.name).send().await?;
    match done.result {
        Some(google_cloud_longrunning::model::operation::Result::Error(status)) => {
            assert_eq!(status.code, 13);
            assert!(status.message.ends_with(MISSING), "{}", status.message);
        }
        other => panic!("expected an operation error, got {other:?}"),
    }
    let after = client
        .get_service()
        .set_name(service_name("ghost"))
        .send()
        .await?;
    assert_eq!(after.traffic_statuses, before, "routing is unchanged");
    let tc = after.terminal_condition.expect("terminal condition");
    assert_eq!(tc.state, model::condition::State::ConditionFailed);
    assert!(tc.message.ends_with(MISSING));
    Ok(())
}

#[tokio::test]
async fn revisions_accumulate_per_changed_template_only() -> TestResult {
    let emu = emulator().await;
    let client = run(&emu).await;
    let mut svc = create(&client, "revs", hello_service()).await?;
    let mut revisions = vec![revision_of(&svc.latest_ready_revision)];
    for image in ["v2", "v3"] {
        let mut t = svc.template.clone().expect("template");
        t.containers[0].image = format!("gcr.io/cloudrun/hello:{image}");
        svc = update(&client, svc.clone().set_template(t)).await?;
        revisions.push(revision_of(&svc.latest_ready_revision));
    }
    // Unchanged template (labels only): no new revision.
    svc = update(&client, svc.clone().set_labels([("a", "b")])).await?;
    assert_eq!(revision_of(&svc.latest_created_revision), revisions[2]);
    for (i, r) in revisions.iter().enumerate() {
        assert!(r.starts_with(&format!("revs-0000{}-", i + 1)), "{r}");
    }
    // Every revision made so far can take traffic; a fourth cannot.
    let all = svc.clone().set_traffic([
        TrafficTarget::new()
            .set_type(TrafficTargetAllocationType::Revision)
            .set_revision(&revisions[0])
            .set_percent(30),
        TrafficTarget::new()
            .set_type(TrafficTargetAllocationType::Revision)
            .set_revision(&revisions[1])
            .set_percent(30),
        TrafficTarget::new()
            .set_type(TrafficTargetAllocationType::Revision)
            .set_revision(&revisions[2])
            .set_percent(40),
    ]);
    let routed = update(&client, all).await?;
    let statuses: Vec<&str> = routed
        .traffic_statuses
        .iter()
        .map(|s| s.revision.as_str())
        .collect();
    assert_eq!(
        statuses,
        revisions.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let fourth = format!("revs-00004-{}", &revisions[2][11..]);
    let err = update(
        &client,
        routed.set_traffic([TrafficTarget::new()
            .set_type(TrafficTargetAllocationType::Revision)
            .set_revision(&fourth)
            .set_percent(100)]),
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), Some(Code::Internal));

    // A pinned revision name reused for another template: 409, recorded wording.
    let cur = client
        .get_service()
        .set_name(service_name("revs"))
        .send()
        .await?;
    let mut t = cur.template.clone().expect("template");
    t.revision = revisions[0].clone();
    t.containers[0].image = "gcr.io/cloudrun/hello:v9".into();
    let err = client
        .update_service()
        .set_service(cur.set_traffic(Vec::<TrafficTarget>::new()).set_template(t))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::AlreadyExists));
    assert_eq!(
        message(&err),
        format!(
            "Revision named '{}' with different configuration already exists.",
            revisions[0]
        )
    );
    Ok(())
}

fn gpu_template(cpu: &str, memory: &str) -> RevisionTemplate {
    RevisionTemplate::new()
        .set_node_selector(NodeSelector::new().set_accelerator("nvidia-l4"))
        .set_containers([Container::new()
            .set_image("gcr.io/x/gpu")
            .set_resources(limits(cpu, memory, true))])
}

fn field_violation(err: &google_cloud_gax::error::Error) -> String {
    err.status()
        .and_then(|s| {
            s.details.iter().find_map(|d| match d {
                StatusDetails::BadRequest(b) => b.field_violations.first().map(|f| f.field.clone()),
                _ => None,
            })
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn each_cloud_run_rule_is_refused_with_invalid_argument() -> TestResult {
    let emu = emulator().await;
    let client = run(&emu).await;
    let with_template = |t: RevisionTemplate| Service::new().set_template(t);
    let one = |c: Container| RevisionTemplate::new().set_containers([c]);
    let image = || Container::new().set_name("app").set_image("gcr.io/x/y");
    let traffic = |targets: Vec<(i32, &str)>| {
        hello_service().set_traffic(targets.into_iter().map(|(p, tag)| {
            TrafficTarget::new()
                .set_type(TrafficTargetAllocationType::Latest)
                .set_percent(p)
                .set_tag(tag)
        }))
    };
    let gen1 = |v: Volume| {
        with_template(
            one(image())
                .set_execution_environment(ExecutionEnvironment::Gen1)
                .set_volumes([v]),
        )
    };
    let cases: Vec<(&str, Service, &str)> = vec![
        (
            "gcs-gen1",
            gen1(
                Volume::new()
                    .set_name("b")
                    .set_gcs(GCSVolumeSource::new().set_bucket("b")),
            ),
            "requires the second generation execution environment",
        ),
        (
            "nfs-gen1",
            gen1(
                Volume::new()
                    .set_name("n")
                    .set_nfs(NFSVolumeSource::new().set_server("1.2.3.4").set_path("/")),
            ),
            "requires the second generation execution environment",
        ),
        (
            "gpu-gen1",
            with_template(
                gpu_template("4", "16Gi").set_execution_environment(ExecutionEnvironment::Gen1),
            ),
            "a GPU requires the second generation execution environment",
        ),
        (
            "gpu-cpu",
            with_template(gpu_template("2", "16Gi")),
            "at least 4 CPU",
        ),
        (
            "gpu-memory",
            with_template(gpu_template("4", "8Gi")),
            "at least 16Gi",
        ),
        (
            "gpu-cpu-idle",
            with_template({
                let mut t = gpu_template("4", "16Gi");
                t.containers[0].resources = Some(limits("4", "16Gi", true).set_cpu_idle(true));
                t
            }),
            "always allocated",
        ),
        (
            "gpu-max",
            with_template(
                gpu_template("4", "16Gi")
                    .set_scaling(RevisionScaling::new().set_max_instance_count(10)),
            ),
            "scaling.max_instance_count: Max instances must be set to 3 or fewer in order to set GPU requirements.",
        ),
        (
            "gpu-no-limit",
            with_template(
                one(image()).set_node_selector(NodeSelector::new().set_accelerator("nvidia-l4")),
            ),
            "nvidia.com/gpu",
        ),
        (
            "mount",
            with_template(one(image().set_volume_mounts([VolumeMount::new()
                .set_name("nope")
                .set_mount_path("/x")]))),
            "volume 'nope' is not defined",
        ),
        (
            "depends",
            with_template(one(image().set_depends_on(["sidecar"]))),
            "'sidecar' is not the name of another container",
        ),
        (
            "manual",
            hello_service().set_scaling(ServiceScaling::new().set_manual_instance_count(2)),
            "scaling_mode is MANUAL",
        ),
        (
            "two-sources",
            with_template(one(image()).set_volumes([Volume::new().set_name("x")])),
            "exactly one of",
        ),
        (
            "sum",
            traffic(vec![(60, ""), (30, "")]),
            "add up to 90; they must add up to 100",
        ),
        (
            "tags",
            traffic(vec![(50, "a"), (50, "a")]),
            "the tag 'a' is used by more than one traffic target",
        ),
    ];
    for (id, svc, needle) in cases {
        let err = client
            .create_service()
            .set_parent(parent())
            .set_service_id(id)
            .set_service(svc)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), Some(Code::InvalidArgument), "{id}: {err:?}");
        assert_eq!(err.http_status_code(), Some(400), "{id}");
        assert!(message(&err).contains(needle), "{id}: {}", message(&err));
        let field = field_violation(&err);
        assert!(!field.is_empty(), "{id}: a fieldViolations detail");
        if id == "sum" || id == "tags" {
            assert_eq!(field, "service.traffic", "{id}");
        }
    }
    assert_eq!(
        message(
            &client
                .create_service()
                .set_parent(parent())
                .set_service_id("gpu-max")
                .set_service(with_template(
                    gpu_template("4", "16Gi")
                        .set_scaling(RevisionScaling::new().set_max_instance_count(4)),
                ))
                .send()
                .await
                .unwrap_err()
        ),
        "scaling.max_instance_count: Max instances must be set to 3 or fewer in order to set GPU requirements.",
        "recorded wording, exactly"
    );
    let list = client.list_services().set_parent(parent()).send().await?;
    assert!(list.services.is_empty(), "nothing was created");

    // The same GPU with what Cloud Run asks for is accepted; CPU is not defaulted to idle.
    let ok = create(
        &client,
        "gpu-ok",
        with_template(
            gpu_template("4", "16Gi").set_scaling(RevisionScaling::new().set_max_instance_count(3)),
        ),
    )
    .await?;
    let r = ok.template.expect("template").containers[0]
        .resources
        .clone()
        .expect("resources");
    assert!(!r.cpu_idle);
    assert_eq!(
        r.limits.get("nvidia.com/gpu").map(String::as_str),
        Some("1")
    );
    Ok(())
}
