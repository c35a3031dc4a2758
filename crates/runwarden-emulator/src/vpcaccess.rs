//! Serverless VPC Access v1: connectors (create, get, list, delete) and their operations.

use serde_json::{Value, json};

use crate::enums;
use crate::error::{Code, GError, GResult};
use crate::operations::{self, CONNECTOR_TYPE};
use crate::request::Req;
use crate::state::{Api, OpKind, State};
use crate::util::{self, str_of};

const METADATA_TYPE: &str = "type.googleapis.com/google.cloud.vpcaccess.v1.OperationMetadata";
const MACHINE_TYPES: [&str; 3] = ["f1-micro", "e2-micro", "e2-standard-4"];

/// Whether `id` matches `^[a-z][-a-z0-9]{0,23}[a-z0-9]$`.
pub fn valid_connector_id(id: &str) -> bool {
    let b = id.as_bytes();
    (2..=25).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

fn not_found() -> GError {
    GError::not_found("The connector is not found.")
}

/// `projects/{id}/locations/{l}` of the request (a project number becomes the id).
fn parent(st: &mut State, req: &Req) -> GResult<String> {
    let p = st.project(req.seg(1))?;
    Ok(format!("projects/{}/locations/{}", p.id, req.seg(3)))
}

/// `vpcaccess.connectors.get`.
pub(crate) fn get(st: &mut State, req: &Req) -> GResult<Value> {
    let name = format!("{}/connectors/{}", parent(st, req)?, req.seg(5));
    let c = st.connectors.get(&name).ok_or_else(not_found)?;
    Ok(render(st, c, req.int))
}

/// `vpcaccess.connectors.list`.
pub(crate) fn list(st: &mut State, req: &Req) -> GResult<Value> {
    let prefix = format!("{}/connectors/", parent(st, req)?);
    let items: Vec<Value> = st
        .connectors
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, c)| render(st, c, req.int))
        .collect();
    util::list_page("connectors", &items, &req.query, 100)
}

/// `vpcaccess.connectors.delete`: DELETING until the operation completes.
pub(crate) fn delete(st: &mut State, req: &Req) -> GResult<Value> {
    let parent = parent(st, req)?;
    let name = format!("{parent}/connectors/{}", req.seg(5));
    let c = st.connectors.get_mut(&name).ok_or_else(not_found)?;
    if str_of(c, "state") == "DELETING" {
        return Err(GError::precondition(format!(
            "The connector {name} is already being deleted."
        )));
    }
    c["state"] = json!("DELETING");
    let metadata = json!({
        "@type": METADATA_TYPE,
        "method": "google.cloud.vpcaccess.v1.VpcAccessService.DeleteConnector",
        "createTime": util::now(),
        "target": name,
    });
    let kind = OpKind::ConnectorDelete { connector: name };
    let op = operations::start(st, Api::VpcAccess, &parent, req.delay, kind, metadata);
    operations::get(st, Api::VpcAccess, &op, req.int)
}

/// `vpcaccess.operations.get`.
pub(crate) fn get_operation(st: &mut State, req: &Req) -> GResult<Value> {
    let name = format!("{}/operations/{}", parent(st, req)?, req.seg(5));
    operations::get(st, Api::VpcAccess, &name, req.int)
}

/// `vpcaccess.operations.list`.
pub(crate) fn list_operations(st: &mut State, req: &Req) -> GResult<Value> {
    let parent = parent(st, req)?;
    operations::list(st, Api::VpcAccess, &parent, req)
}

/// A connector as returned: `connectedProjects` computed from the Cloud Run services using it.
fn render(st: &State, c: &Value, int: bool) -> Value {
    let mut v = c.clone();
    let name = str_of(c, "name");
    let mut projects: Vec<String> = st
        .services
        .iter()
        .filter(|(_, r)| {
            !r.deleting
                && util::get_path(&r.svc, "template.vpcAccess.connector")
                    .and_then(Value::as_str)
                    .is_some_and(|x| canonical(st, x) == name)
        })
        .filter_map(|(k, _)| k.split('/').nth(1).map(String::from))
        .collect();
    projects.sort();
    projects.dedup();
    if !projects.is_empty() {
        v["connectedProjects"] = json!(projects);
    }
    enums::encode(&mut v, enums::CONNECTOR, int);
    v
}

/// A connector name with the project number replaced by the id, when known.
fn canonical(st: &State, name: &str) -> String {
    let mut parts: Vec<String> = name.split('/').map(String::from).collect();
    if let Some(p) = parts.get_mut(1)
        && p.bytes().all(|b| b.is_ascii_digit())
        && let Some(id) = p.parse::<u64>().ok().and_then(|n| st.projects.get(&n))
    {
        *p = id.clone();
    }
    parts.join("/")
}

fn int_field(body: &Value, key: &str) -> GResult<Option<i64>> {
    util::int_at(
        body,
        key,
        &format!("connector.{}", enums::snake(key)),
        "TYPE_INT32",
    )
}

/// `vpcaccess.connectors.create`: CREATING until the operation completes.
pub(crate) fn create(st: &mut State, req: &Req) -> GResult<Value> {
    let parent = parent(st, req)?;
    let id = req.q("connectorId").unwrap_or("");
    if !valid_connector_id(id) {
        return Err(GError::invalid_field(
            "connector_id",
            format!("Invalid connector ID '{id}': it must match ^[a-z][-a-z0-9]{{0,23}}[a-z0-9]$."),
        ));
    }
    let mut body = req.object_body()?;
    enums::decode(&mut body, enums::CONNECTOR, "connector")?;
    util::prune(&mut body);
    let network = str_of(&body, "network").to_string();
    let cidr = str_of(&body, "ipCidrRange").to_string();
    let subnet = body
        .get("subnet")
        .filter(|s| !str_of(s, "name").is_empty())
        .cloned();
    check_network(subnet.is_some(), &network, &cidr)?;
    let machine = machine_type(&body)?;
    let size = Size::of(&body)?;
    let name = format!("{parent}/connectors/{id}");
    if st.connectors.contains_key(&name) {
        return Err(GError::new(
            Code::AlreadyExists,
            "Requested entity already exists",
        ));
    }
    let mut c = json!({
        "name": name,
        "state": "CREATING",
        "machineType": machine,
        "minInstances": size.min,
        "maxInstances": size.max,
        "minThroughput": size.min_throughput,
        "maxThroughput": size.max_throughput,
    });
    if let Some(s) = subnet {
        c["subnet"] = s;
    } else {
        c["network"] = json!(network);
        c["ipCidrRange"] = json!(cidr);
    }
    st.connectors.insert(name.clone(), c);
    let metadata = json!({
        "@type": METADATA_TYPE,
        "method": "google.cloud.vpcaccess.v1.VpcAccessService.CreateConnector",
        "createTime": util::now(),
        "target": name,
    });
    let kind = OpKind::ConnectorCreate { connector: name };
    let op = operations::start(st, Api::VpcAccess, &parent, req.delay, kind, metadata);
    operations::get(st, Api::VpcAccess, &op, req.int)
}

/// Exactly one of `network` + a /28 `ipCidrRange`, or `subnet`.
fn check_network(has_subnet: bool, network: &str, cidr: &str) -> GResult<()> {
    match (has_subnet, network.is_empty(), cidr.is_empty()) {
        (true, _, false) => {
            return Err(GError::invalid_field(
                "connector.ip_cidr_range",
                "Only one of ip_cidr_range and subnet may be specified.",
            ));
        }
        (false, true, _) => {
            return Err(GError::invalid_field(
                "connector.network",
                "The network must be specified when no subnet is given.",
            ));
        }
        (false, false, true) => {
            return Err(GError::invalid_field(
                "connector.ip_cidr_range",
                "ip_cidr_range must be specified when no subnet is given.",
            ));
        }
        (false, false, false) if !valid_cidr28(cidr) => {
            return Err(GError::invalid_field(
                "connector.ip_cidr_range",
                format!(
                    "Invalid IP CIDR range '{cidr}': it must be a /28 range such as 10.8.0.0/28."
                ),
            ));
        }
        _ => {}
    }
    Ok(())
}

/// `machineType`, `e2-micro` by default.
fn machine_type(body: &Value) -> GResult<String> {
    let machine = str_of(body, "machineType");
    let machine = if machine.is_empty() {
        "e2-micro".to_string()
    } else {
        machine.to_string()
    };
    if !MACHINE_TYPES.contains(&machine.as_str()) {
        return Err(GError::invalid_field(
            "connector.machine_type",
            format!(
                "Invalid machine type '{machine}': use one of f1-micro, e2-micro, e2-standard-4."
            ),
        ));
    }
    Ok(machine)
}

/// A connector's instance and throughput range; each derives from the other (×100).
struct Size {
    min: i64,
    max: i64,
    min_throughput: i64,
    max_throughput: i64,
}

impl Size {
    /// Reads and checks the range (instances 2–9 / 3–10, max above min).
    fn of(body: &Value) -> GResult<Size> {
        let min_i = int_field(body, "minInstances")?;
        let max_i = int_field(body, "maxInstances")?;
        let min_t = int_field(body, "minThroughput")?;
        let max_t = int_field(body, "maxThroughput")?;
        let min = min_i.or(min_t.map(|t| t / 100)).unwrap_or(2);
        let max = max_i.or(max_t.map(|t| t / 100)).unwrap_or(10);
        if !(2..=9).contains(&min) {
            return Err(GError::invalid_field(
                "connector.min_instances",
                format!("min_instances must be between 2 and 9, got {min}."),
            ));
        }
        if !(3..=10).contains(&max) || max <= min {
            return Err(GError::invalid_field(
                "connector.max_instances",
                format!(
                    "max_instances must be between 3 and 10 and greater than min_instances, got {max}."
                ),
            ));
        }
        Ok(Size {
            min,
            max,
            min_throughput: min_t.unwrap_or(min * 100),
            max_throughput: max_t.unwrap_or(max * 100),
        })
    }
}

fn valid_cidr28(s: &str) -> bool {
    let Some((ip, len)) = s.split_once('/') else {
        return false;
    };
    let octets: Vec<Option<u8>> = ip.split('.').map(|o| o.parse::<u8>().ok()).collect();
    len == "28"
        && octets.len() == 4
        && octets.iter().all(Option::is_some)
        && octets[3].is_some_and(|o| o % 16 == 0)
}

fn finish_metadata(metadata: &Value) -> Value {
    let mut m = metadata.clone();
    m["endTime"] = json!(util::now());
    m
}

/// Completes a connector create: CREATING → READY.
pub(crate) fn complete_create(
    st: &mut State,
    name: &str,
    metadata: &Value,
) -> (Value, Result<Value, GError>) {
    let m = finish_metadata(metadata);
    match st.connectors.get_mut(name) {
        Some(c) => {
            if str_of(c, "state") == "CREATING" {
                c["state"] = json!("READY");
            }
            let mut r = c.clone();
            r["@type"] = json!(CONNECTOR_TYPE);
            (m, Ok(r))
        }
        None => (
            m,
            Err(GError::new(
                Code::Aborted,
                "The connector was deleted before it was created.",
            )),
        ),
    }
}

/// Completes a connector delete: it disappears.
pub(crate) fn complete_delete(
    st: &mut State,
    name: &str,
    metadata: &Value,
) -> (Value, Result<Value, GError>) {
    st.connectors.remove(name);
    (
        finish_metadata(metadata),
        Ok(json!({"@type": "type.googleapis.com/google.protobuf.Empty"})),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connector_ids_and_ranges() {
        assert!(valid_connector_id("conn-1"));
        assert!(!valid_connector_id("c"));
        assert!(!valid_connector_id("1conn"));
        assert!(!valid_connector_id("conn-"));
        assert!(!valid_connector_id(&format!("c{}", "x".repeat(25))));
        assert!(valid_cidr28("10.8.0.0/28"));
        assert!(!valid_cidr28("10.8.0.0/24"));
        assert!(!valid_cidr28("10.8.0.3/28"));
    }
}
