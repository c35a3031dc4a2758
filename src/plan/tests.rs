//! `plan` over the in-memory fake Google: verdicts, field-level diffs, exit codes, and that it
//! never writes.

use super::*;
use crate::gcp::fake::FakeGcp;
use crate::manifest::load_reader;

const NS: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: team
  labels: {env: production}
  annotations: {runwarden.dev/project-id: acme-team-prod}
";

fn service(extra: &str) -> String {
    format!(
        "apiVersion: runwarden.dev/v1alpha1
kind: CloudRunService
metadata: {{name: api, namespace: team}}
spec:
  region: europe-west1
  containers:
  - image: europe-docker.pkg.dev/acme-team-prod/apps/api@sha256:1111111111111111111111111111111111111111111111111111111111111111
{extra}"
    )
}

fn manifests(docs: &[&str]) -> Manifests {
    load_reader("test.yaml", docs.join("---\n").as_bytes(), "default").expect("valid manifests")
}

const NAME: &str = "projects/acme-team-prod/locations/europe-west1/services/api";

/// Google's read methods: what a plan may call.
fn writes(google: &FakeGcp) -> Vec<String> {
    google
        .calls()
        .into_iter()
        .filter(|c| !c.ends_with(".get") && !c.ends_with("getIamPolicy"))
        .collect()
}

async fn run(google: &FakeGcp, docs: &[&str]) -> Report {
    let settings = Settings {
        default_project: None,
    };
    plan(&manifests(docs), &google.gcp(), &settings).await
}

/// Creates the objects in Google the way the controller would (passes until in sync).
async fn deploy(google: &FakeGcp, docs: &[&str]) {
    let m = manifests(docs);
    let numbers = ProjectNumbers::default();
    let obj = &m.services[0];
    let mut obj = obj.clone();
    // The uid the cluster would have given it, recorded in the owner label.
    obj.metadata.uid = Some("0b0e5ad0-cluster-uid".into());
    for _ in 0..3 {
        let input = Input {
            obj: &obj,
            project: Some("acme-team-prod".into()),
            connector: None,
            policy: Cond::ok("PolicyCompliant", "NoPolicy", ""),
            identity: Ok(crate::gcp::identity::Identity::Controller),
            owners: &crate::controller::cloudrunservice::plan::NoOwners,
        };
        let (status, _) =
            crate::controller::cloudrunservice::pass(&input, &google.gcp(), &numbers).await;
        obj.status = Some(status);
    }
}

#[tokio::test]
async fn a_new_service_is_a_create_with_every_managed_field() {
    let google = FakeGcp::new();
    let invokers = "  access: {invokers: [\"group:fe@example.com\"]}\n";
    let r = run(&google, &[NS, &service(invokers)]).await;
    let o = &r.objects[0];
    assert_eq!((o.kind, o.action), ("CloudRunService", Verdict::Create));
    assert_eq!(
        o.resource.as_deref(),
        Some(NAME),
        "project from the Namespace annotation"
    );
    let create = &o.calls[0];
    assert_eq!(
        (o.calls[1].method, o.calls[1].add.as_slice()),
        (
            "run.services.setIamPolicy",
            &["group:fe@example.com".to_owned()][..]
        ),
        "then, once the service exists, its invokers"
    );
    assert_eq!(create.method, "run.services.create");
    let field = |p: &str| {
        create
            .fields
            .iter()
            .find(|f| f.path == p)
            .map(|f| f.to.clone())
    };
    assert_eq!(field("ingress").as_deref(), Some("InternalOnly"));
    assert!(
        field("template.containers[0].image")
            .unwrap()
            .ends_with("sha256:1111111111111111111111111111111111111111111111111111111111111111")
    );
    assert_eq!(r.exit_code(), 2);
    assert!(writes(&google).is_empty(), "{:?}", google.calls());
    let text = render_text(&r);
    assert!(text.contains("+ run.services.create"), "{text}");
    assert!(text.contains("+ ingress: InternalOnly"), "{text}");
    assert!(
        text.contains("Plan: 1 to create, 0 to update, 0 in sync"),
        "{text}"
    );
}

#[tokio::test]
async fn a_deployed_service_is_in_sync_and_drift_is_a_field_level_update() {
    let google = FakeGcp::new();
    let svc = service("  access: {invokers: [\"group:fe@example.com\"]}\n");
    deploy(&google, &[NS, &svc]).await;
    google.take_calls();
    let r = run(&google, &[NS, &svc]).await;
    assert_eq!(r.objects[0].action, Verdict::InSync, "{:?}", r.objects[0]);
    assert!(r.objects[0].notes[0].contains("taken to be this object's"));
    assert_eq!(r.exit_code(), 0);
    assert_eq!(
        google.take_calls(),
        ["run.services.get", "run.services.getIamPolicy"],
        "the same two reads as a resync"
    );

    let drifted = service("  ingress: All\n  access: {invokers: [\"group:other@example.com\"]}\n");
    let r = run(&google, &[NS, &drifted]).await;
    let o = &r.objects[0];
    assert_eq!(o.action, Verdict::Update);
    let patch = &o.calls[0];
    assert_eq!(patch.method, "run.services.patch");
    assert_eq!(patch.fields.len(), 1, "{:?}", patch.fields);
    assert_eq!(
        (
            patch.fields[0].path.as_str(),
            patch.fields[0].from.as_deref(),
            patch.fields[0].to.as_str()
        ),
        ("ingress", Some("InternalOnly"), "All")
    );
    let iam = &o.calls[1];
    assert_eq!(
        (iam.add.as_slice(), iam.remove.as_slice()),
        (
            &["group:other@example.com".to_owned()][..],
            &["group:fe@example.com".to_owned()][..]
        )
    );
    assert_eq!(r.exit_code(), 2);
    assert!(writes(&google).is_empty(), "{:?}", google.calls());
    let json: serde_json::Value = serde_json::from_str(&render_json(&r)).unwrap();
    assert_eq!(json["objects"][0]["action"], "update");
    assert_eq!(
        json["objects"][0]["calls"][0]["fields"][0]["from"],
        "InternalOnly"
    );
}

#[tokio::test]
async fn an_invalid_spec_exits_1_and_reads_nothing() {
    let google = FakeGcp::new();
    let r = run(
        &google,
        &[
            NS,
            &service("  scaling: {minInstances: 5, maxInstances: 2}\n"),
        ],
    )
    .await;
    assert_eq!(r.objects[0].action, Verdict::Invalid);
    assert!(
        r.objects[0]
            .message
            .as_deref()
            .unwrap()
            .contains("minInstances")
    );
    assert_eq!(r.exit_code(), 1);
    assert!(render_text(&r).contains("! invalid: InvalidSpec"));
}

#[tokio::test]
async fn a_missing_key_is_a_wait_and_a_manifest_connector_is_planned_first() {
    let google = FakeGcp::new();
    let key = "  encryption: {kmsKey: projects/acme-security/locations/europe-west1/keyRings/run/cryptoKeys/api}\n";
    let connector = "apiVersion: runwarden.dev/v1alpha1
kind: VpcAccessConnector
metadata: {name: egress, namespace: team}
spec: {region: europe-west1, network: default, ipCidrRange: 10.8.0.0/28}
";
    let uses = "  egress: {connectorRef: {name: egress}}\n";
    let r = run(&google, &[NS, connector, &service(&format!("{key}{uses}"))]).await;
    assert_eq!(r.objects[0].kind, "VpcAccessConnector");
    assert_eq!(r.objects[0].action, Verdict::Create);
    assert_eq!(r.objects[0].calls[0].method, "vpcaccess.connectors.create");
    let svc = &r.objects[1];
    assert_eq!(svc.action, Verdict::Waits, "{svc:?}");
    assert_eq!(svc.reason.as_deref(), Some("KeyNotFound"));
    assert_eq!(
        svc.calls.first().map(|c| c.method),
        Some("run.services.create"),
        "what follows once the key exists"
    );
    assert_eq!(r.exit_code(), 2);

    let r = run(&google, &[NS, connector, &service(uses)]).await;
    let create = &r.objects[1].calls[0];
    let vpc = create
        .fields
        .iter()
        .find(|f| f.path == "template.vpcAccess.connector")
        .unwrap();
    assert_eq!(
        vpc.to,
        "projects/acme-team-prod/locations/europe-west1/connectors/egress"
    );
    assert!(writes(&google).is_empty());
}

#[tokio::test]
async fn an_additive_service_plans_its_own_grants_and_lists_the_others_as_kept() {
    let google = FakeGcp::new();
    deploy(
        &google,
        &[
            NS,
            &service("  access: {invokers: [\"group:fe@example.com\"]}\n"),
        ],
    )
    .await;
    google.take_calls();
    let additive = service("  access: {mode: Additive, invokers: [\"group:other@example.com\"]}\n");
    let r = run(&google, &[NS, &additive]).await;
    let o = &r.objects[0];
    assert_eq!(o.action, Verdict::Update, "{o:?}");
    let iam = &o.calls[0];
    assert_eq!(iam.method, "run.services.setIamPolicy");
    assert_eq!(iam.mode, Some("Additive"));
    assert_eq!(iam.add, ["group:other@example.com"]);
    assert!(
        iam.remove.is_empty(),
        "nothing in Google is known to be ours"
    );
    assert_eq!(iam.kept, ["group:fe@example.com"]);
    let text = render_text(&r);
    assert!(
        text.contains("      + group:other@example.com (ours)"),
        "{text}"
    );
    assert!(
        text.contains("      = group:fe@example.com (kept: not runwarden's)"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&render_json(&r)).unwrap();
    assert_eq!(json["objects"][0]["calls"][0]["mode"], "Additive");
    assert_eq!(
        json["objects"][0]["calls"][0]["kept"][0],
        "group:fe@example.com"
    );
    assert!(writes(&google).is_empty(), "{:?}", google.calls());
}
