//! The full service model through the emulator and a real API server: a spec that sets every
//! field (but CMEK, whose key adds two reads of its own) deploys, round-trips through Cloud Run's
//! server-side defaults, and then costs exactly two reads per resync, with no write.

mod common;

use std::time::{Duration, Instant};

use common::Harness;

fn every_field() -> serde_json::Value {
    serde_json::json!({
        "region": common::REGION,
        "ingress": "All",
        "defaultUriDisabled": true,
        "labels": {"team": "payments"},
        "access": {"invokers": ["group:g@example.com"], "invokerIamDisabled": false},
        "iapEnabled": true,
        "customAudiences": ["https://api.example.com", "payments"],
        "serviceAccount": "payments@runwarden-test.iam.gserviceaccount.com",
        "executionEnvironment": "Gen2",
        "binaryAuthorization": {"useDefault": true, "breakglassJustification": "incident 42"},
        "egress": {"directVpc": {"network": "default", "subnetwork": "sub", "tags": ["a"]}, "routing": "PrivateRangesOnly"},
        "scaling": {"minInstances": 1, "maxInstances": 3, "mode": "Manual", "manualInstances": 2},
        "maxRequestsPerInstance": 10,
        "timeoutSeconds": 30,
        "sessionAffinity": true,
        "gpu": {"type": "nvidia-l4", "count": 1, "zonalRedundancy": false},
        "traffic": [{"type": "Latest", "percent": 100, "tag": "current"}],
        "volumes": [
            {"name": "creds", "secret": {"secret": "db", "items": [{"path": "db.json"}, {"path": "old.json", "version": "3", "mode": 256}]}},
            {"name": "sql", "cloudSqlInstances": ["runwarden-test:europe-west1:db"]},
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
            {"name": "models", "gcs": {"bucket": "ml-models", "mountOptions": ["implicit-dirs"]}},
            {"name": "share", "nfs": {"server": "10.0.0.2", "path": "/share", "readOnly": true}}],
        "containers": [
            {"name": "app", "image": "europe-docker.pkg.dev/runwarden-test/r/app@sha256:1111111111111111111111111111111111111111111111111111111111111111",
             "command": ["/app"], "args": ["--serve"],
             "ports": [{"name": "h2c", "containerPort": 9000}],
             "env": [{"name": "MODE", "value": "prod"}, {"name": "DB", "secretRef": {"secret": "db"}}],
             "workingDir": "/srv", "dependsOn": ["proxy"],
             "resources": {"cpu": "4", "memory": "16Gi", "cpuIdle": false, "startupCpuBoost": true},
             "volumeMounts": [{"name": "creds", "mountPath": "/secrets"}, {"name": "tmp", "mountPath": "/tmp"}, {"name": "models", "mountPath": "/models"}, {"name": "share", "mountPath": "/share"}],
             "startupProbe": {"httpGet": {"path": "/ready", "httpHeaders": [{"name": "X-Probe", "value": "1"}]}},
             "livenessProbe": {"grpc": {"service": "health"}, "periodSeconds": 30},
             "readinessProbe": {"tcpSocket": {}, "initialDelaySeconds": 5}},
            {"name": "proxy", "image": "europe-docker.pkg.dev/runwarden-test/r/proxy@sha256:2222222222222222222222222222222222222222222222222222222222222222",
             "volumeMounts": [{"name": "sql", "mountPath": "/cloudsql"}],
             "startupProbe": {"tcpSocket": {"port": 5432}}}],
    })
}

#[tokio::test]
async fn every_field_deploys_and_a_resync_costs_two_reads() {
    let Some(mut h) = Harness::new("service-model").await else {
        return;
    };
    h.config.resync = Duration::from_millis(700);
    h.start_controller().await;
    h.apply("payments", every_field()).await;
    let obj = h.wait_ready("payments").await;
    let status = obj.status.unwrap();
    assert_eq!(status.traffic.len(), 1, "{:?}", status.traffic);
    assert_eq!(status.traffic[0].tag.as_deref(), Some("current"));
    assert_eq!(
        h.emu.count("run.services.patch"),
        0,
        "what Cloud Run filled in is not taken for a difference: {:?} {:?}",
        h.emu.counters(),
        h.events("payments").await
    );

    // Let the passes that followed the create settle, then count one resync.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    h.emu.reset_counters();
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.emu.count("run.services.getIamPolicy") == 0 {
        assert!(Instant::now() < deadline, "no resync");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let calls = h.emu.counters();
    eprintln!("service-model: calls per no-op resync of an every-field service: {calls:?}");
    let expected: std::collections::BTreeMap<String, u64> = [
        ("run.services.get".to_owned(), 1),
        ("run.services.getIamPolicy".to_owned(), 1),
    ]
    .into();
    assert_eq!(calls, expected, "a no-op resync of an every-field service");
    h.stop_controller().await;
}
