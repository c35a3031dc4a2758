//! The committed CRDs are what the types generate, and a real API server accepts them and
//! enforces their CEL rules.

mod common;

#[test]
fn committed_crds_match_the_types() {
    let generated = runwarden::crd::to_yaml().expect("CRDs serialize");
    let root = env!("CARGO_MANIFEST_DIR");
    for copy in [
        "crds/runwarden.dev.yaml",
        "helm/runwarden/files/crds.yaml",
        "deploy/base/crds.yaml",
    ] {
        let committed = std::fs::read_to_string(format!("{root}/{copy}")).unwrap_or_default();
        assert!(
            committed == generated,
            "{copy} is stale: run `cargo run -q -- crd > crds/runwarden.dev.yaml` and copy it to the chart and deploy/base"
        );
    }
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
    // Immutable fields.
    let ok = serde_json::json!({"apiVersion": "runwarden.dev/v1alpha1", "kind": "CloudRunService", "metadata": {"name": "immutable", "namespace": "default"}, "spec": {"region": "europe-west1", "containers": [{"image": "i"}]}});
    plane.kubectl_stdin(&["apply", "-f", "-"], Some(&ok.to_string()));
    let mut moved = ok.clone();
    moved["spec"]["region"] = "us-central1".into();
    let err = plane
        .try_kubectl(&["apply", "-f", "-"], Some(&moved.to_string()))
        .expect_err("region change must be refused");
    assert!(err.contains("spec.region is immutable"), "{err}");
    plane.kubectl(&[
        "delete",
        "cloudrunservice",
        "immutable",
        "-n",
        "default",
        "--wait=false",
    ]);
}

/// `kubectl get crsvc` / `vpcconn` show why an object is not Ready without `-o wide`.
#[test]
fn the_ready_reason_is_a_default_column() {
    for crd in runwarden::crd::all()
        .iter()
        .filter(|c| c.spec.names.kind != "RunSecurityPolicy")
    {
        let columns = crd.spec.versions[0]
            .additional_printer_columns
            .clone()
            .unwrap_or_default();
        let reason = columns
            .iter()
            .find(|c| c.name == "Reason")
            .unwrap_or_else(|| panic!("{} has no Reason column", crd.spec.names.kind));
        assert_eq!(
            reason.json_path,
            ".status.conditions[?(@.type==\"Ready\")].reason"
        );
        assert_eq!(
            reason.priority.unwrap_or(0),
            0,
            "{}: Reason only shows with -o wide",
            crd.spec.names.kind
        );
    }
}

/// `status.conditions` is a map keyed by `type` (as `metav1.Condition` lists are), so server-side
/// apply merges conditions by type instead of replacing the list, and a duplicate type is refused.
#[test]
fn conditions_are_a_map_list_keyed_by_type() {
    for crd in runwarden::crd::all() {
        let kind = &crd.spec.names.kind;
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        let conditions =
            &schema["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
        assert_eq!(
            conditions["x-kubernetes-list-type"], "map",
            "{kind}: {conditions}"
        );
        assert_eq!(
            conditions["x-kubernetes-list-map-keys"],
            serde_json::json!(["type"]),
            "{kind}"
        );
        let required = conditions["items"]["required"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            required.contains(&"type".into()),
            "{kind}: a list-map key must be required: {required:?}"
        );
    }
}
