//! The committed CRDs are what the types generate, and a real API server accepts them and
//! enforces their CEL rules.

mod common;

#[test]
fn committed_crds_match_the_types() {
    let root = env!("CARGO_MANIFEST_DIR");
    let crds = runwarden::crd::crds_yaml().expect("CRDs serialize");
    let admission = runwarden::crd::admission_yaml().expect("admission policies serialize");
    for (generated, copies, part) in [
        (
            &crds,
            [
                "crds/runwarden.dev.yaml",
                "helm/runwarden/files/crds.yaml",
                "deploy/base/crds.yaml",
            ],
            "crds",
        ),
        (
            &admission,
            [
                "crds/admission.yaml",
                "helm/runwarden/files/admission.yaml",
                "deploy/admission/admission.yaml",
            ],
            "admission",
        ),
    ] {
        for copy in copies {
            let committed = std::fs::read_to_string(format!("{root}/{copy}")).unwrap_or_default();
            assert!(
                &committed == generated,
                "{copy} is stale: run `cargo run -q -- crd --only {part} > {copy}`"
            );
        }
    }
    // `runwarden crd` prints both, CRDs first.
    assert_eq!(
        runwarden::crd::to_yaml().unwrap(),
        format!("{crds}{admission}")
    );
}

#[test]
fn every_kind_is_in_the_runwarden_category_with_its_short_name() {
    let crds = runwarden::crd::all();
    let names: Vec<_> = crds
        .iter()
        .map(|c| {
            (
                c.spec.names.plural.clone(),
                c.spec.names.short_names.clone().unwrap_or_default(),
                c.spec.scope.clone(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            (
                "cloudrunservices".into(),
                vec!["crsvc".to_owned()],
                "Namespaced".to_owned()
            ),
            (
                "cloudrunjobs".into(),
                vec!["crjob".to_owned()],
                "Namespaced".to_owned()
            ),
            (
                "vpcaccessconnectors".into(),
                vec!["vpcconn".to_owned()],
                "Namespaced".to_owned()
            ),
            (
                "runsecuritypolicies".into(),
                vec!["runpol".to_owned()],
                "Cluster".to_owned()
            ),
        ]
    );
    for crd in &crds {
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["runwarden".to_owned()][..])
        );
    }
}

/// Invalid combinations are refused at admission, with a message naming the field.
#[test]
fn the_api_server_refuses_invalid_specs_with_the_field_named() {
    let Some(plane) = common::envtest::shared() else {
        common::envtest::skip("the_api_server_refuses_invalid_specs_with_the_field_named");
        return;
    };
    let cases = [
        (
            r#"{"egress": {"connector": "projects/p/locations/europe-west1/connectors/c", "directVpc": {"network": "n"}}}"#,
            "spec.egress: set exactly one",
        ),
        (
            r#"{"binaryAuthorization": {"useDefault": true, "policy": "projects/p/platforms/cloudRun/policies/x"}}"#,
            "spec.binaryAuthorization: set exactly one",
        ),
        (
            r#"{"encryption": {"kmsKey": "projects/p/locations/europe-west1/keyRings/r/cryptoKeys/k", "shutdownHours": 3}}"#,
            "spec.encryption.shutdownHours is only allowed",
        ),
        (
            r#"{"encryption": {"kmsKey": "projects/p/locations/us-east1/keyRings/r/cryptoKeys/k"}}"#,
            "spec.encryption.kmsKey must be in the same location",
        ),
        (
            r#"{"labels": {"run.googleapis.com/x": "y"}}"#,
            "spec.labels",
        ),
        (
            r#"{"access": {"invokers": ["allUsers"]}}"#,
            "spec.access.invokers",
        ),
        (
            r#"{"scaling": {"minInstances": 5, "maxInstances": 2}}"#,
            "spec.scaling: minInstances must not exceed",
        ),
        // Issue 12: the full service model.
        (
            r#"{"traffic": [{"type": "Revision", "revision": "bad-00001-abc", "percent": 90}, {"percent": 20}]}"#,
            "spec.traffic: the percents must sum to 100",
        ),
        (
            r#"{"traffic": [{"percent": 100, "tag": "a"}, {"type": "Revision", "revision": "r", "percent": 0, "tag": "a"}]}"#,
            "spec.traffic: a tag may appear at most once",
        ),
        (
            r#"{"traffic": [{"type": "Revision", "percent": 100}]}"#,
            "spec.traffic: a Revision target names a revision",
        ),
        (
            r#"{"traffic": [{"type": "Latest", "revision": "r", "percent": 100}]}"#,
            "spec.traffic: a Revision target names a revision, a Latest target does not",
        ),
        (
            r#"{"executionEnvironment": "Gen1", "volumes": [{"name": "models", "gcs": {"bucket": "b"}}]}"#,
            "spec.volumes: gcs and nfs volumes need executionEnvironment Gen2",
        ),
        (
            r#"{"executionEnvironment": "Gen1", "volumes": [{"name": "share", "nfs": {"server": "10.0.0.2", "path": "/s"}}]}"#,
            "spec.volumes: gcs and nfs volumes need executionEnvironment Gen2",
        ),
        (
            r#"{"volumes": [{"name": "v", "emptyDir": {}, "cloudSqlInstances": ["p:r:i"]}]}"#,
            "spec.volumes: set exactly one of",
        ),
        (
            r#"{"executionEnvironment": "Gen1", "gpu": {"type": "nvidia-l4"}, "containers": [{"image": "i", "resources": {"cpu": "4", "memory": "16Gi", "cpuIdle": false}}]}"#,
            "spec.gpu needs executionEnvironment Gen2",
        ),
        (
            r#"{"gpu": {"type": "nvidia-l4"}, "containers": [{"image": "i", "resources": {"cpu": "2", "memory": "16Gi", "cpuIdle": false}}]}"#,
            "spec.gpu: the serving container needs resources.cpu of at least 4",
        ),
        (
            r#"{"gpu": {"type": "nvidia-l4"}, "containers": [{"image": "i", "resources": {"cpu": "4", "memory": "16Gi"}}]}"#,
            "resources.cpuIdle: false",
        ),
        (
            r#"{"gpu": {"type": "nvidia-l4"}, "containers": [{"image": "i", "resources": {"cpu": "4000m", "memory": "16383Mi", "cpuIdle": false}}]}"#,
            "spec.gpu: the serving container needs resources.memory of at least 16Gi",
        ),
        (
            r#"{"containers": [{"name": "a", "image": "i", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}]}"#,
            "spec.containers[].volumeMounts: each name must be one of spec.volumes",
        ),
        (
            r#"{"containers": [{"name": "a", "image": "i", "ports": [{"containerPort": 8080}], "dependsOn": ["ghost"]}, {"name": "b", "image": "j"}]}"#,
            "spec.containers[].dependsOn: each entry must name another container",
        ),
        (
            r#"{"containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "j"}]}"#,
            "spec.containers: with several containers exactly one serves",
        ),
        (
            r#"{"scaling": {"manualInstances": 3}}"#,
            "spec.scaling.manualInstances is only allowed with mode: Manual",
        ),
        (
            r#"{"containers": [{"image": "i", "startupProbe": {"httpGet": {}, "grpc": {}}}]}"#,
            "probe: set exactly one of httpGet, tcpSocket or grpc",
        ),
    ];
    for (extra, expected) in cases {
        let mut spec: serde_json::Value =
            serde_json::json!({"region": "europe-west1", "containers": [{"image": "i"}]});
        spec.as_object_mut().unwrap().extend(
            serde_json::from_str::<serde_json::Value>(extra)
                .unwrap()
                .as_object()
                .unwrap()
                .clone(),
        );
        let obj = serde_json::json!({"apiVersion": "runwarden.dev/v1alpha1", "kind": "CloudRunService", "metadata": {"name": "bad", "namespace": "default"}, "spec": spec});
        let err = plane
            .try_kubectl(
                &["apply", "--dry-run=server", "-f", "-"],
                Some(&obj.to_string()),
            )
            .expect_err(&format!("{extra} must be refused"));
        assert!(
            err.contains(expected),
            "for {extra}: expected {expected:?} in {err}"
        );
    }
    // A spec using every new field is admitted (and its CEL is within the cost budget).
    let full = serde_json::json!({"apiVersion": "runwarden.dev/v1alpha1", "kind": "CloudRunService", "metadata": {"name": "full-model", "namespace": "default"}, "spec": {
        "region": "europe-west1",
        "iapEnabled": true,
        "access": {"invokerIamDisabled": false, "invokers": ["group:g@example.com"]},
        "customAudiences": ["https://api.example.com"],
        "sessionAffinity": true,
        "scaling": {"mode": "Manual", "manualInstances": 2},
        "gpu": {"type": "nvidia-l4", "count": 1, "zonalRedundancy": false},
        "traffic": [
            {"type": "Revision", "revision": "full-model-00001-abc", "percent": 90},
            {"type": "Latest", "percent": 10, "tag": "canary"}],
        "volumes": [
            {"name": "creds", "secret": {"secret": "db", "items": [{"path": "db.json", "version": "3", "mode": 256}], "defaultMode": 292}},
            {"name": "sql", "cloudSqlInstances": ["p:europe-west1:db"]},
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}},
            {"name": "models", "gcs": {"bucket": "ml-models", "readOnly": true, "mountOptions": ["implicit-dirs"]}},
            {"name": "share", "nfs": {"server": "10.0.0.2", "path": "/share"}}],
        "containers": [
            {"name": "app", "image": "i", "ports": [{"containerPort": 8080}], "workingDir": "/srv", "dependsOn": ["proxy"],
             "resources": {"cpu": "4", "memory": "16Gi", "cpuIdle": false, "startupCpuBoost": true},
             "volumeMounts": [{"name": "creds", "mountPath": "/secrets"}, {"name": "tmp", "mountPath": "/tmp"}],
             "startupProbe": {"httpGet": {"path": "/ready", "httpHeaders": [{"name": "X-Probe", "value": "1"}]}},
             "livenessProbe": {"grpc": {"service": "health"}, "periodSeconds": 30},
             "readinessProbe": {"tcpSocket": {"port": 8080}}},
            {"name": "proxy", "image": "p", "volumeMounts": [{"name": "sql", "mountPath": "/cloudsql"}]}]
    }});
    plane.kubectl_stdin(
        &["apply", "--dry-run=server", "-f", "-"],
        Some(&full.to_string()),
    );
    // Immutable fields.
    let ok = serde_json::json!({"apiVersion": "runwarden.dev/v1alpha1", "kind": "CloudRunService", "metadata": {"name": "immutable", "namespace": "default"}, "spec": {"region": "europe-west1", "containers": [{"image": "i"}]}});
    plane.kubectl_stdin(&["apply", "-f", "-"], Some(&ok.to_string()));
    let mut moved = ok.clone();
    moved["spec"]["region"] = "us-central1".into();
    let err = plane
        .try_kubectl(&["apply", "-f", "-"], Some(&moved.to_string()))
        .expect_err("region change must be refused");
    assert!(err.contains("spec.region is immutable"), "{err}");
    // Issue 11: the project a service was created in is pinned, in the schema first.
    let mut pinned = ok.clone();
    pinned["metadata"]["name"] = "pinned".into();
    pinned["spec"]["projectId"] = "team-a".into();
    plane.kubectl_stdin(&["apply", "-f", "-"], Some(&pinned.to_string()));
    let mut elsewhere = pinned.clone();
    elsewhere["spec"]["projectId"] = "team-b".into();
    let err = plane
        .try_kubectl(&["apply", "-f", "-"], Some(&elsewhere.to_string()))
        .expect_err("a projectId change must be refused");
    assert!(err.contains("spec.projectId is immutable"), "{err}");
    let mut unpinned = pinned.clone();
    unpinned["spec"]
        .as_object_mut()
        .unwrap()
        .remove("projectId");
    let err = plane
        .try_kubectl(&["replace", "-f", "-"], Some(&unpinned.to_string()))
        .expect_err("removing projectId must be refused");
    assert!(
        err.contains("spec.projectId is immutable: it cannot be removed once set"),
        "{err}"
    );
    plane.kubectl(&[
        "delete",
        "cloudrunservice",
        "pinned",
        "-n",
        "default",
        "--wait=false",
    ]);
    plane.kubectl(&[
        "delete",
        "cloudrunservice",
        "immutable",
        "-n",
        "default",
        "--wait=false",
    ]);
}

/// Every example manifest is accepted by a real API server (schema and CEL rules), so the
/// examples a platform team copies never rot.
#[test]
fn the_api_server_accepts_every_example() {
    let Some(plane) = common::envtest::shared() else {
        common::envtest::skip("the_api_server_accepts_every_example");
        return;
    };
    let dir = format!("{}/examples", env!("CARGO_MANIFEST_DIR"));
    let manifests =
        runwarden::manifest::load(&[dir.clone().into()], "default").expect("the examples load");
    let namespaces: std::collections::BTreeSet<String> = manifests
        .services
        .iter()
        .filter_map(|s| s.metadata.namespace.clone())
        .chain(
            manifests
                .connectors
                .iter()
                .filter_map(|c| c.metadata.namespace.clone()),
        )
        .collect();
    for ns in &namespaces {
        // Created for real: a server-side dry run needs the namespace to exist.
        let _ = plane.try_kubectl(&["create", "namespace", ns], None);
    }
    let out = plane.kubectl(&[
        "apply",
        "--server-side",
        "--dry-run=server",
        "-R",
        "-f",
        &dir,
    ]);
    let accepted = out
        .lines()
        .filter(|l| l.contains("(server dry run)"))
        .count();
    let objects = manifests.services.len()
        + manifests.jobs.len()
        + manifests.connectors.len()
        + manifests.policies.len()
        + manifests.namespaces.len();
    assert_eq!(accepted, objects, "{out}");
}
