// kube-derive takes one `printcolumn(...)` per column; clippy reads the repeats as duplicates.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, Ingress};

/// Cluster-wide guardrails for CloudRunServices, like organization policies in Google Cloud. A
/// CloudRunService in a namespace matched by an `Enforce` policy that it violates is refused at
/// admission (ValidatingAdmissionPolicy) and never deployed by the controller; `Audit` policies
/// answer with a warning and a `PolicyCompliant=False` condition. A namespace matched by no policy
/// is unrestricted. Every rule left empty or false is not checked.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "runwarden.dev",
    version = "v1alpha1",
    kind = "RunSecurityPolicy",
    plural = "runsecuritypolicies",
    shortname = "runpol",
    category = "runwarden",
    status = "RunSecurityPolicyStatus",
    derive = "PartialEq",
    doc = "Cluster-wide security guardrails for CloudRunServices and CloudRunJobs.",
    printcolumn(
        name = "Enforcement",
        type_ = "string",
        json_path = ".spec.enforcement"
    ),
    printcolumn(
        name = "Matched",
        type_ = "integer",
        json_path = ".status.matchedServices"
    ),
    printcolumn(
        name = "Violating",
        type_ = "integer",
        json_path = ".status.violatingServices"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RunSecurityPolicySpec {
    /// `Enforce` blocks violating services; `Audit` only reports them.
    #[serde(default)]
    pub enforcement: Enforcement,
    /// Namespaces the policy applies to; empty or absent selects every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "label_selector_schema")]
    pub namespace_selector: Option<LabelSelector>,
    /// Projects services may be deployed to: the resolved project (`spec.projectId`, else the
    /// namespace annotation `runwarden.dev/project-id`, else the controller's `--default-project`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 30)))]
    pub allowed_projects: Vec<String>,
    /// Regions services may be deployed to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 40)))]
    pub allowed_regions: Vec<String>,
    /// Ingress settings services may use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    pub allowed_ingress: Vec<Ingress>,
    /// Forbid `access.allowUnauthenticated` (and `access.invokerIamDisabled`).
    #[serde(default)]
    pub forbid_unauthenticated: bool,
    /// Require `encryption.kmsKey`.
    #[serde(default)]
    pub require_cmek: bool,
    /// Require `binaryAuthorization` enforcing a policy (`useDefault: true` or `policy`).
    #[serde(default)]
    pub require_binary_authorization: bool,
    /// Require egress through a VPC with this routing (`AllTraffic`): a service without
    /// `egress` violates it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_egress_routing: Option<super::EgressRouting>,
    /// Require a dedicated service account: not empty, not the Compute Engine default account.
    #[serde(default)]
    pub require_dedicated_service_account: bool,
    /// Image registry prefixes allowed, e.g. `europe-docker.pkg.dev/my-project/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 512)))]
    pub allowed_image_registries: Vec<String>,
    /// Require every container image pinned by digest (`...@sha256:` and 64 hex digits).
    #[serde(default)]
    pub require_image_digest: bool,
    /// Require automatic base image (security) updates: every serving container has a
    /// `baseImageUri`, or is built from source with `spec.build.automaticUpdates` on.
    #[serde(default)]
    pub require_automatic_base_image_updates: bool,
    /// Projects whose Cloud KMS keys `encryption.kmsKey` may name, like Google's
    /// `constraints/gcp.restrictCmekCryptoKeyProjects`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 30)))]
    pub allowed_kms_key_projects: Vec<String>,
    /// Domains the IAM members a service or job grants (`access.invokers`,
    /// `access.executors`, the schedule's account) must belong to, like Google's domain
    /// restricted sharing (`constraints/iam.allowedPolicyMemberDomains`): a member's e-mail
    /// domain (or `domain:`'s value) must be one of these or below one (`example.com` allows
    /// `eu.example.com`). `allUsers` and `allAuthenticatedUsers` are refused unless listed as
    /// such; `principal://` and `principalSet://` members name no domain and are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub allowed_member_domains: Vec<String>,
}

/// How a policy acts on violations.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum Enforcement {
    /// Block violating services (`PolicyCompliant=False`, nothing deployed).
    #[default]
    Enforce,
    /// Report violations only.
    Audit,
}

/// Observed state of a RunSecurityPolicy.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunSecurityPolicyStatus {
    /// The `metadata.generation` last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions of the policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"])
    )]
    pub conditions: Vec<Condition>,
    /// CloudRunServices in the namespaces this policy selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_services: Option<i64>,
    /// Matched CloudRunServices that violate at least one of its rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violating_services: Option<i64>,
    /// CloudRunJobs in the namespaces this policy selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_jobs: Option<i64>,
    /// Matched CloudRunJobs that violate at least one of its rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violating_jobs: Option<i64>,
}

fn label_selector_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "description": "A Kubernetes label selector (matchLabels, matchExpressions).",
        "properties": {
            "matchLabels": {
                "type": "object",
                "maxProperties": 64,
                "additionalProperties": {"type": "string", "maxLength": 63}
            },
            "matchExpressions": {
                "type": "array",
                "maxItems": 32,
                "items": {
                    "type": "object",
                    "required": ["key", "operator"],
                    "x-kubernetes-validations": [{
                        "rule": "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || size(self.values) == 0)",
                        "message": "spec.namespaceSelector.matchExpressions: In and NotIn need values; Exists and DoesNotExist take none"
                    }],
                    "properties": {
                        "key": {"type": "string", "minLength": 1, "maxLength": 317},
                        "operator": {"type": "string", "enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                        "values": {"type": "array", "maxItems": 64, "items": {"type": "string", "maxLength": 63}}
                    }
                }
            }
        }
    })
}
