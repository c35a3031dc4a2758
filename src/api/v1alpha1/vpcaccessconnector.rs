// kube-derive takes one `printcolumn(...)` per column; clippy reads the repeats as duplicates.
#![allow(clippy::duplicated_attributes)]

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{AdoptionPolicy, Condition, DeletionPolicy};

/// A Serverless VPC Access connector (API v1). Google offers no update for connectors, so every
/// field is immutable once the connector exists: create a new connector to change one.
#[derive(CustomResource, KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "runwarden.dev",
    version = "v1alpha1",
    kind = "VpcAccessConnector",
    plural = "vpcaccessconnectors",
    shortname = "vpcconn",
    category = "runwarden",
    namespaced,
    status = "VpcAccessConnectorStatus",
    derive = "PartialEq",
    doc = "A Serverless VPC Access connector managed by runwarden.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Region", type_ = "string", json_path = ".spec.region"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.projectId) == has(oldSelf.projectId) && has(self.connectorName) == has(oldSelf.connectorName) && has(self.network) == has(oldSelf.network) && has(self.ipCidrRange) == has(oldSelf.ipCidrRange) && has(self.subnet) == has(oldSelf.subnet) && has(self.minInstances) == has(oldSelf.minInstances) && has(self.maxInstances) == has(oldSelf.maxInstances) && has(self.machineType) == has(oldSelf.machineType)").message("VpcAccessConnector spec is immutable (Google has no update for connectors): fields can be neither added nor removed; create a new connector instead"))]
#[x_kube(validation = Rule::new("has(self.subnet) != (has(self.network) || has(self.ipCidrRange))").message("spec: set either subnet, or network and ipCidrRange"))]
#[x_kube(validation = Rule::new("has(self.network) == has(self.ipCidrRange)").message("spec.network and spec.ipCidrRange go together"))]
#[x_kube(validation = Rule::new("!has(self.minInstances) || !has(self.maxInstances) || self.minInstances < self.maxInstances").message("spec.minInstances must be lower than spec.maxInstances"))]
pub struct VpcAccessConnectorSpec {
    /// Google Cloud project id. Defaults to the namespace annotation `runwarden.dev/project-id`,
    /// then to the controller's `--default-project`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 6, max = 30),
        regex(pattern = r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.projectId is immutable (Google has no update for connectors): create a new VpcAccessConnector instead"))]
    pub project_id: Option<String>,
    /// Region of the connector; services using it must be in the same region.
    #[schemars(
        length(min = 2, max = 40),
        regex(pattern = r"^[a-z]+(-[a-z]+)+[0-9]+$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.region is immutable (Google has no update for connectors): create a new VpcAccessConnector instead"))]
    pub region: String,
    /// Connector id. Defaults to `metadata.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 2, max = 25),
        regex(pattern = r"^[a-z][-a-z0-9]{0,23}[a-z0-9]$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.connectorName is immutable (Google has no update for connectors): create a new VpcAccessConnector instead"))]
    pub connector_name: Option<String>,
    /// VPC network name (with `ipCidrRange`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.network is immutable (Google has no update for connectors): create a new VpcAccessConnector instead"))]
    pub network: Option<String>,
    /// An unused /28 range of the network, e.g. `10.8.0.0/28`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 18), regex(pattern = r"^([0-9]{1,3}\.){3}[0-9]{1,3}/28$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.ipCidrRange is immutable (Google has no update for connectors): create a new VpcAccessConnector instead"))]
    pub ip_cidr_range: Option<String>,
    /// An existing /28 subnet to use instead of `network` + `ipCidrRange`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.subnet is immutable (Google has no update for connectors): create a new VpcAccessConnector instead"))]
    pub subnet: Option<ConnectorSubnet>,
    /// Minimum number of connector instances (2 to 9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2, max = 9))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.minInstances is immutable (Google has no update for connectors): create a new VpcAccessConnector instead"))]
    pub min_instances: Option<i32>,
    /// Maximum number of connector instances (3 to 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 3, max = 10))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.maxInstances is immutable (Google has no update for connectors): create a new VpcAccessConnector instead"))]
    pub max_instances: Option<i32>,
    /// Machine type of the connector instances (`f1-micro`, `e2-micro`, `e2-standard-4`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 32),
        regex(pattern = r"^(f1-micro|e2-micro|e2-standard-4)$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.machineType is immutable (Google has no update for connectors): create a new VpcAccessConnector instead"))]
    pub machine_type: Option<String>,
    /// What happens to the connector in Google when this object is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// What to do with an existing connector of this name (connectors carry no labels, so
    /// runwarden cannot tell who created it).
    #[serde(default)]
    pub adoption_policy: AdoptionPolicy,
}

/// A subnet for a connector.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorSubnet {
    /// Subnet name.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Project of the subnet (Shared VPC host project); defaults to the connector's project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 6, max = 30))]
    pub project_id: Option<String>,
}

/// Observed state of a VpcAccessConnector.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VpcAccessConnectorStatus {
    /// `Creating`, `Ready`, `Error` or `Deleting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Full Google name, `projects/{p}/locations/{l}/connectors/{c}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// Projects whose services use the connector.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connected_projects: Vec<String>,
    /// The `metadata.generation` last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"])
    )]
    pub conditions: Vec<Condition>,
    /// Name of a long-running Google operation in flight; cleared when it is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
}
