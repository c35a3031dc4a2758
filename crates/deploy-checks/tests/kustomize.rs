//! `kubectl kustomize deploy/` renders, and the Deployment it renders is the hardened one.
//! Runs only where kubectl is on PATH, and says so loudly otherwise.

mod common;

use serde_yaml::Value;
use std::process::Command;

fn kubectl_available() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn render() -> Option<Vec<Value>> {
    if !kubectl_available() {
        common::skip(
            "chart",
            "kubectl kustomize deploy/",
            "kubectl not found on PATH",
        );
        return None;
    }
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(common::repo_path("deploy"))
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize deploy/ failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(common::yaml_docs(&String::from_utf8(out.stdout).unwrap()))
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = find(docs, kind);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {kind}, found {}",
        found.len()
    );
    found[0]
}

#[test]
fn kustomize_renders_a_hardened_deployment() {
    let Some(docs) = render() else { return };
    let d = one(&docs, "Deployment");
    assert_eq!(
        d["metadata"]["namespace"].as_str(),
        Some("runwarden-system")
    );
    assert_eq!(d["spec"]["replicas"].as_u64(), Some(2));
    let pod = &d["spec"]["template"]["spec"];
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() >= 30);
    let containers = pod["containers"].as_sequence().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(
        c["image"].as_str(),
        Some("ghcr.io/runwarden/runwarden:0.1.0")
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], Value::Bool(true), "runAsNonRoot");
    assert_eq!(sc["runAsUser"].as_u64(), Some(65532), "runAsUser");
    assert_eq!(
        sc["readOnlyRootFilesystem"],
        Value::Bool(true),
        "readOnlyRootFilesystem"
    );
    assert_eq!(
        sc["allowPrivilegeEscalation"],
        Value::Bool(false),
        "allowPrivilegeEscalation"
    );
    assert_eq!(
        sc["capabilities"]["drop"][0].as_str(),
        Some("ALL"),
        "capabilities.drop"
    );
    assert!(sc["capabilities"]["add"].is_null(), "no capability added");
    let seccomp = sc["seccompProfile"]["type"]
        .as_str()
        .or(pod["securityContext"]["seccompProfile"]["type"].as_str());
    assert_eq!(seccomp, Some("RuntimeDefault"));

    let env = c["env"].as_sequence().unwrap();
    let env_value = |name: &str| env.iter().find(|e| e["name"].as_str() == Some(name));
    assert_eq!(
        env_value("POD_NAME").map(|e| &e["valueFrom"]["fieldRef"]["fieldPath"]),
        Some(&Value::from("metadata.name"))
    );
    assert_eq!(
        env_value("POD_NAMESPACE").map(|e| &e["valueFrom"]["fieldRef"]["fieldPath"]),
        Some(&Value::from("metadata.namespace"))
    );
    assert_eq!(
        env_value("RUNWARDEN_LEADER_ELECTION").map(|e| &e["value"]),
        Some(&Value::from("true"))
    );
    assert!(
        env_value("RUNWARDEN_GCP_ENDPOINT").is_none(),
        "plain manifests talk to real Google"
    );
    assert!(
        !env.iter()
            .any(|e| e["name"].as_str() == Some("GOOGLE_APPLICATION_CREDENTIALS")),
        "no key files"
    );
    assert!(
        pod["volumes"].is_null(),
        "no volumes (and so no key file) are mounted"
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert_eq!(c["ports"][0]["name"].as_str(), Some("http"));
    assert_eq!(c["ports"][0]["containerPort"].as_u64(), Some(8080));
    assert!(
        pod["topologySpreadConstraints"]
            .as_sequence()
            .is_some_and(|t| t
                .iter()
                .any(|c| c["topologyKey"].as_str() == Some("kubernetes.io/hostname"))),
        "replicas spread across nodes"
    );
    assert_eq!(
        one(&docs, "PodDisruptionBudget")["spec"]["minAvailable"].as_u64(),
        Some(1)
    );
    one(&docs, "NetworkPolicy");
    one(&docs, "Service");
}

#[test]
fn kustomize_rbac_is_exactly_what_the_controller_uses() {
    let Some(docs) = render() else { return };
    let sa = one(&docs, "ServiceAccount");
    let sa_name = sa["metadata"]["name"].as_str().unwrap();
    assert_eq!(
        one(&docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"].as_str(),
        Some(sa_name)
    );

    let cr = one(&docs, "ClusterRole");
    let mut granted = Vec::new();
    for rule in cr["rules"].as_sequence().unwrap() {
        for g in rule["apiGroups"].as_sequence().unwrap() {
            for r in rule["resources"].as_sequence().unwrap() {
                for v in rule["verbs"].as_sequence().unwrap() {
                    granted.push(format!(
                        "{}/{}:{}",
                        g.as_str().unwrap(),
                        r.as_str().unwrap(),
                        v.as_str().unwrap()
                    ));
                }
            }
        }
    }
    let mut want = Vec::new();
    for r in [
        "cloudrunservices",
        "cloudrunjobs",
        "vpcaccessconnectors",
        "runsecuritypolicies",
    ] {
        for v in ["get", "list", "watch", "patch", "update"] {
            want.push(format!("runwarden.dev/{r}:{v}"));
        }
        for sub in ["status", "finalizers"] {
            for v in ["get", "patch", "update"] {
                want.push(format!("runwarden.dev/{r}/{sub}:{v}"));
            }
        }
    }
    for v in ["get", "list", "watch"] {
        want.push(format!("/namespaces:{v}"));
    }
    for g in ["events.k8s.io", ""] {
        for v in ["create", "patch"] {
            want.push(format!("{g}/events:{v}"));
        }
    }
    granted.sort();
    want.sort();
    assert_eq!(granted, want, "ClusterRole grants");

    let role = one(&docs, "Role");
    assert_eq!(
        role["metadata"]["namespace"].as_str(),
        Some("runwarden-system")
    );
    for rule in role["rules"].as_sequence().unwrap() {
        assert_eq!(rule["apiGroups"][0].as_str(), Some("coordination.k8s.io"));
        assert_eq!(rule["resources"][0].as_str(), Some("leases"));
    }
    for binding in find(&docs, "ClusterRoleBinding")
        .into_iter()
        .chain(find(&docs, "RoleBinding"))
    {
        assert_eq!(binding["subjects"][0]["name"].as_str(), Some(sa_name));
        assert_eq!(
            binding["subjects"][0]["namespace"].as_str(),
            Some("runwarden-system")
        );
    }
    for d in &docs {
        let kind = d["kind"].as_str().unwrap();
        if ![
            "Namespace",
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ]
        .contains(&kind)
        {
            assert_eq!(
                d["metadata"]["namespace"].as_str(),
                Some("runwarden-system"),
                "{kind} namespace"
            );
        }
    }
}
