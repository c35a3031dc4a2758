//! Cloud Run Admin v2: services (create, get, list, patch, delete, IAM) and operations.

use serde_json::{Map, Value, json};

use crate::enums;
use crate::error::{Code, GError, GResult};
use crate::iam::Policy;
use crate::operations::{self, RUN_SERVICE_TYPE, service_any};
use crate::request::Req;
use crate::state::{Api, OpKind, Project, ServiceRec, State};
use crate::util::{self, get_path, str_of};

/// Label and annotation key prefixes reserved by Google.
pub const RESERVED_PREFIXES: [&str; 4] = [
    "run.googleapis.com/",
    "cloud.googleapis.com/",
    "serving.knative.dev/",
    "autoscaling.knative.dev/",
];

/// Fields a caller sets; everything else on a Service is output only.
const USER_FIELDS: [&str; 17] = [
    "description",
    "labels",
    "annotations",
    "client",
    "clientVersion",
    "ingress",
    "launchStage",
    "binaryAuthorization",
    "template",
    "traffic",
    "scaling",
    "invokerIamDisabled",
    "defaultUriDisabled",
    "customAudiences",
    "iapEnabled",
    "multiRegionSettings",
    "buildConfig",
];

/// The roles that let the Cloud Run service agent use a key.
const KMS_ROLES: [&str; 1] = ["roles/cloudkms.cryptoKeyEncrypterDecrypter"];

/// Who the emulator records as `creator` / `lastModifier` (callers are anonymous).
const CALLER: &str = "emulator@runwarden.dev";

pub(crate) fn handle(st: &mut State, key: &str, req: &Req) -> GResult<Value> {
    match key {
        "run.services.create" => create(st, req),
        "run.services.list" => list(st, req),
        "run.services.get" => {
            let (name, _) = service_name(st, req)?;
            let rec = st.services.get(&name).ok_or_else(|| not_found(&name))?;
            Ok(out(&rec.svc, req.int))
        }
        "run.services.patch" => update(st, req),
        "run.services.delete" => delete(st, req),
        "run.services.getIamPolicy" => {
            let (name, _) = service_name(st, req)?;
            let rec = st.services.get(&name).ok_or_else(|| not_found(&name))?;
            Ok(rec.policy.render())
        }
        "run.services.setIamPolicy" => {
            let (name, _) = service_name(st, req)?;
            let mut seq = st.etag_seq;
            let rec = st.services.get_mut(&name).ok_or_else(|| not_found(&name))?;
            let body = req.object_body()?;
            let out = rec.policy.set(&body, &mut seq)?;
            st.etag_seq = seq;
            Ok(out)
        }
        "run.services.testIamPermissions" => {
            let (name, _) = service_name(st, req)?;
            st.services.get(&name).ok_or_else(|| not_found(&name))?;
            let perms = req.body.get("permissions").cloned().unwrap_or(json!([]));
            Ok(if perms.as_array().is_some_and(|a| !a.is_empty()) {
                json!({"permissions": perms})
            } else {
                json!({})
            })
        }
        "run.operations.get" | "run.operations.wait" => {
            let name = canonical_path(st, req)?;
            operations::get(st, Api::Run, &name, req.int)
        }
        "run.operations.delete" => {
            let name = canonical_path(st, req)?;
            match st.operations.get(&name) {
                Some(o) if o.api == Api::Run => {
                    st.operations.remove(&name);
                    Ok(json!({}))
                }
                _ => Err(operations::not_found(&name)),
            }
        }
        "run.operations.list" => {
            let parent = canonical_path(st, req)?;
            operations::list(st, Api::Run, &parent, req)
        }
        _ => Err(GError::new(
            Code::Unimplemented,
            format!("{key} is not implemented"),
        )),
    }
}

/// The request path with the project number replaced by its id (names are stored by id).
fn canonical_path(st: &mut State, req: &Req) -> GResult<String> {
    let p = st.project(req.seg(1))?;
    let mut segs = req.segs.clone();
    segs[1] = p.id;
    if segs.len() == 5 && segs[4] == "operations" {
        segs.pop();
    }
    Ok(segs.join("/"))
}

fn out(svc: &Value, int: bool) -> Value {
    let mut v = svc.clone();
    enums::encode(&mut v, enums::SERVICE, int);
    v
}

/// Google's NOT_FOUND wording for a Cloud Run service.
fn not_found(name: &str) -> GError {
    let parts: Vec<&str> = name.split('/').collect();
    GError::not_found(format!(
        "Resource '{}' of kind 'SERVICE' in region '{}' in project '{}' does not exist.",
        parts.get(5).unwrap_or(&""),
        parts.get(3).unwrap_or(&""),
        parts.get(1).unwrap_or(&"")
    ))
}

fn valid_region(l: &str) -> bool {
    let parts: Vec<&str> = l.split('-').collect();
    parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && l.as_bytes().last().is_some_and(u8::is_ascii_digit)
}

fn location(req: &Req) -> GResult<String> {
    let l = req.seg(3);
    if !valid_region(l) {
        return Err(GError::invalid_field(
            "parent",
            format!("Location '{l}' is not a valid Cloud Run region."),
        ));
    }
    Ok(l.to_string())
}

/// Canonical service name (project id form) from the request path.
fn service_name(st: &mut State, req: &Req) -> GResult<(String, Project)> {
    let p = st.project(req.seg(1))?;
    let l = req.seg(3);
    Ok((
        format!("projects/{}/locations/{l}/services/{}", p.id, req.seg(5)),
        p,
    ))
}

fn valid_service_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 49
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

fn region_code(region: &str) -> String {
    let known = [
        ("us-central1", "uc"),
        ("us-east1", "ue"),
        ("us-east4", "uk"),
        ("us-east5", "ul"),
        ("us-west1", "uw"),
        ("us-west2", "wl"),
        ("us-west3", "wm"),
        ("us-west4", "wn"),
        ("us-south1", "vp"),
        ("europe-west1", "ew"),
        ("europe-west2", "nw"),
        ("europe-west3", "ey"),
        ("europe-west4", "ez"),
        ("europe-west6", "oa"),
        ("europe-west9", "od"),
        ("europe-north1", "lz"),
        ("europe-central2", "lm"),
        ("asia-east1", "de"),
        ("asia-east2", "df"),
        ("asia-northeast1", "an"),
        ("asia-northeast2", "dt"),
        ("asia-northeast3", "du"),
        ("asia-south1", "el"),
        ("asia-southeast1", "as"),
        ("asia-southeast2", "et"),
        ("australia-southeast1", "ts"),
        ("northamerica-northeast1", "nn"),
        ("southamerica-east1", "rj"),
        ("me-west1", "zf"),
    ];
    known
        .iter()
        .find(|(r, _)| *r == region)
        .map(|(_, c)| c.to_string())
        .unwrap_or_else(|| {
            region
                .split('-')
                .take(2)
                .filter_map(|p| p.chars().next())
                .collect()
        })
}

fn base36(mut n: u64, len: usize) -> String {
    const A: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = String::new();
    for _ in 0..len {
        s.push(A[(n % 36) as usize] as char);
        n /= 36;
    }
    s
}

fn project_hash(number: u64) -> String {
    base36(util::fnv1a(&number.to_string()), 10)
}

fn service_uri(sid: &str, number: u64, region: &str) -> String {
    format!(
        "https://{sid}-{}-{}.a.run.app",
        project_hash(number),
        region_code(region)
    )
}

fn service_etag(st: &mut State, name: &str, generation: i64) -> String {
    let seq = st.next_etag();
    format!(
        "\"{}/{}\"",
        util::base64(format!("{generation}:{seq}").as_bytes()).trim_end_matches('='),
        util::base64(name.as_bytes()).trim_end_matches('=')
    )
}

fn generation(svc: &Value) -> i64 {
    str_of(svc, "generation").parse().unwrap_or(0)
}

/// A request's Service body: enums normalized (Google's wording names `service.<field>`),
/// proto3 defaults dropped.
fn input_service(req: &Req) -> GResult<Value> {
    let mut body = req.object_body()?;
    enums::decode(&mut body, enums::SERVICE, "service")?;
    util::prune(&mut body);
    Ok(body)
}

fn spec_of(svc: &Value) -> Value {
    let mut m = Map::new();
    for f in USER_FIELDS {
        if let Some(v) = svc.get(f) {
            m.insert(f.to_string(), v.clone());
        }
    }
    Value::Object(m)
}

fn violation(request_type: &str, field: &str, msg: impl std::fmt::Display) -> GError {
    let field = format!("{request_type}.service.{field}");
    GError::invalid_field(&field, format!("Violation in {field}: {msg}"))
}

fn check_keys(request_type: &str, field: &str, map: Option<&Value>, labels: bool) -> GResult<()> {
    let Some(map) = map.and_then(Value::as_object) else {
        return Ok(());
    };
    for (k, v) in map {
        if let Some(prefix) = RESERVED_PREFIXES.iter().find(|p| k.starts_with(*p)) {
            return Err(violation(
                request_type,
                field,
                format!(
                    "the key '{k}' uses the prefix '{prefix}', which is reserved by the system."
                ),
            ));
        }
        if labels {
            let key_ok = k.len() <= 63
                && k.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && k.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            let val = v.as_str().unwrap_or("");
            let val_ok = v.is_string()
                && val.len() <= 63
                && val
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            if !key_ok || !val_ok {
                return Err(violation(
                    request_type,
                    field,
                    format!(
                        "invalid label '{k}': keys must start with a lowercase letter and contain only lowercase letters, digits, '_' and '-'; values only lowercase letters, digits, '_' and '-'; both at most 63 characters."
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn valid_cpu(s: &str) -> bool {
    let s = s.strip_suffix('m').unwrap_or(s);
    !s.is_empty()
        && s.split('.').count() <= 2
        && s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && s.parse::<f64>().is_ok_and(|v| v > 0.0)
}

fn valid_memory(s: &str) -> bool {
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(digits_end);
    !n.is_empty()
        && n.parse::<u64>().is_ok_and(|v| v > 0)
        && matches!(
            unit,
            "" | "k" | "K" | "Ki" | "M" | "Mi" | "G" | "Gi" | "T" | "Ti"
        )
}

fn parse_connector(name: &str) -> Option<(&str, &str, &str)> {
    let p: Vec<&str> = name.split('/').collect();
    (p.len() == 6
        && p[0] == "projects"
        && p[2] == "locations"
        && p[4] == "connectors"
        && p.iter().all(|x| !x.is_empty()))
    .then(|| (p[1], p[3], p[5]))
}

/// Parses `projects/*/locations/*/keyRings/*/cryptoKeys/*`.
pub fn parse_key(name: &str) -> Option<(&str, &str, &str, &str)> {
    let p: Vec<&str> = name.split('/').collect();
    (p.len() == 8
        && p[0] == "projects"
        && p[2] == "locations"
        && p[4] == "keyRings"
        && p[6] == "cryptoKeys"
        && p.iter().all(|x| !x.is_empty()))
    .then(|| (p[1], p[3], p[5], p[7]))
}

/// Synchronous validation of a service spec (INVALID_ARGUMENT / FAILED_PRECONDITION).
fn validate(st: &mut State, rt: &str, svc: &Value, region: &str) -> GResult<()> {
    check_keys(rt, "labels", svc.get("labels"), true)?;
    check_keys(rt, "annotations", svc.get("annotations"), false)?;
    if let Some(ba) = svc.get("binaryAuthorization")
        && ba.get("useDefault").is_some_and(|v| v == &json!(true))
        && !str_of(ba, "policy").is_empty()
    {
        return Err(violation(
            rt,
            "binary_authorization",
            "only one of use_default and policy may be set.",
        ));
    }
    if let Some(sc) = svc.get("scaling") {
        for f in [
            "minInstanceCount",
            "manualInstanceCount",
            "maxInstanceCount",
        ] {
            let field = format!("scaling.{}", enums::snake(f));
            if let Some(n) = util::int_at(sc, f, &format!("{rt}.service.{field}"), "TYPE_INT32")?
                && n < 0
            {
                return Err(violation(rt, &field, "must not be negative."));
            }
        }
    }
    if let Some(traffic) = svc.get("traffic").and_then(Value::as_array)
        && !traffic.is_empty()
    {
        let mut sum = 0;
        for (i, t) in traffic.iter().enumerate() {
            let p = util::int_at(
                t,
                "percent",
                &format!("{rt}.service.traffic[{i}].percent"),
                "TYPE_INT32",
            )?
            .unwrap_or(0);
            if !(0..=100).contains(&p) {
                return Err(violation(
                    rt,
                    &format!("traffic[{i}].percent"),
                    "must be between 0 and 100.",
                ));
            }
            if str_of(t, "type") == "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
                && str_of(t, "revision").is_empty()
            {
                return Err(violation(
                    rt,
                    &format!("traffic[{i}].revision"),
                    "must be set for a REVISION traffic target.",
                ));
            }
            sum += p;
        }
        if sum != 100 {
            return Err(violation(
                rt,
                "traffic",
                format!("the traffic percentages add up to {sum}; they must add up to 100."),
            ));
        }
    }
    let Some(t) = svc.get("template").filter(|t| t.is_object()) else {
        return Err(violation(rt, "template", "must be set."));
    };
    check_keys(rt, "template.labels", t.get("labels"), true)?;
    check_keys(rt, "template.annotations", t.get("annotations"), false)?;
    let containers = t
        .get("containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if containers.is_empty() {
        return Err(violation(
            rt,
            "template.containers",
            "at least one container must be specified.",
        ));
    }
    let mut ports_seen = 0;
    for (i, c) in containers.iter().enumerate() {
        let f = |x: &str| format!("template.containers[{i}].{x}");
        if str_of(c, "image").trim().is_empty() {
            return Err(violation(rt, &f("image"), "must not be empty."));
        }
        if let Some(limits) = get_path(c, "resources.limits").and_then(Value::as_object) {
            if let Some(cpu) = limits.get("cpu")
                && !cpu.as_str().is_some_and(valid_cpu)
            {
                return Err(violation(
                    rt,
                    &f("resources.limits"),
                    format!("invalid cpu limit {cpu}."),
                ));
            }
            if let Some(mem) = limits.get("memory")
                && !mem.as_str().is_some_and(valid_memory)
            {
                return Err(violation(
                    rt,
                    &f("resources.limits"),
                    format!("invalid memory limit {mem}."),
                ));
            }
        }
        if let Some(ports) = c.get("ports").and_then(Value::as_array) {
            if ports.len() > 1 {
                return Err(violation(
                    rt,
                    &f("ports"),
                    "at most one port may be specified.",
                ));
            }
            ports_seen += ports.len();
            for (j, p) in ports.iter().enumerate() {
                let field = f(&format!("ports[{j}].container_port"));
                if let Some(n) = util::int_at(
                    p,
                    "containerPort",
                    &format!("{rt}.service.{field}"),
                    "TYPE_INT32",
                )? && !(1..=65535).contains(&n)
                {
                    return Err(violation(rt, &field, "must be between 1 and 65535."));
                }
            }
        }
    }
    if ports_seen > 1 {
        return Err(violation(
            rt,
            "template.containers",
            "only one container may expose a port.",
        ));
    }
    if let Some(s) = t.get("scaling") {
        let min = util::int_at(
            s,
            "minInstanceCount",
            &format!("{rt}.service.template.scaling.min_instance_count"),
            "TYPE_INT32",
        )?
        .unwrap_or(0);
        let max = util::int_at(
            s,
            "maxInstanceCount",
            &format!("{rt}.service.template.scaling.max_instance_count"),
            "TYPE_INT32",
        )?
        .unwrap_or(0);
        if min < 0 {
            return Err(violation(
                rt,
                "template.scaling.min_instance_count",
                "must not be negative.",
            ));
        }
        if max < 0 {
            return Err(violation(
                rt,
                "template.scaling.max_instance_count",
                "must not be negative.",
            ));
        }
        if max > 0 && min > max {
            return Err(violation(
                rt,
                "template.scaling",
                format!(
                    "min_instance_count ({min}) must not be greater than max_instance_count ({max})."
                ),
            ));
        }
    }
    if let Some(n) = util::int_at(
        t,
        "maxInstanceRequestConcurrency",
        &format!("{rt}.service.template.max_instance_request_concurrency"),
        "TYPE_INT32",
    )? && !(0..=1000).contains(&n)
    {
        return Err(violation(
            rt,
            "template.max_instance_request_concurrency",
            "must be between 1 and 1000.",
        ));
    }
    for (f, min, max) in [
        ("timeout", 1u64, 3600u64),
        ("encryptionKeyShutdownDuration", 0, u64::MAX),
    ] {
        if let Some(v) = t.get(f) {
            let d = v.as_str().and_then(util::parse_duration);
            let field = format!("template.{}", enums::snake(f));
            match d {
                None => {
                    return Err(util::bad_value(
                        &format!("{rt}.service.{field}"),
                        "type.googleapis.com/google.protobuf.Duration",
                        v,
                    ));
                }
                Some(d)
                    if d.as_secs() < min
                        || d.as_secs() > max
                        || (f == "timeout" && d.as_secs() == max && d.subsec_nanos() > 0) =>
                {
                    return Err(violation(
                        rt,
                        &field,
                        format!("must be between {min}s and {max}s."),
                    ));
                }
                _ => {}
            }
        }
    }
    if t.get("encryptionKeyShutdownDuration").is_some()
        && str_of(t, "encryptionKeyRevocationAction") != "SHUTDOWN"
    {
        return Err(violation(
            rt,
            "template.encryption_key_shutdown_duration",
            "may only be set when encryption_key_revocation_action is SHUTDOWN.",
        ));
    }
    let sa = str_of(t, "serviceAccount");
    if !sa.is_empty() && !sa.contains('@') {
        return Err(violation(
            rt,
            "template.service_account",
            format!("'{sa}' is not a valid service account email."),
        ));
    }
    if let Some(vpc) = t.get("vpcAccess") {
        let connector = str_of(vpc, "connector");
        let nics = vpc.get("networkInterfaces").and_then(Value::as_array);
        if !connector.is_empty() && nics.is_some_and(|n| !n.is_empty()) {
            return Err(violation(
                rt,
                "template.vpc_access",
                "only one of connector and network_interfaces may be set.",
            ));
        }
        if let Some(nics) = nics {
            for (i, n) in nics.iter().enumerate() {
                if str_of(n, "network").is_empty() && str_of(n, "subnetwork").is_empty() {
                    return Err(violation(
                        rt,
                        &format!("template.vpc_access.network_interfaces[{i}]"),
                        "network or subnetwork must be set.",
                    ));
                }
            }
        }
        if !connector.is_empty() {
            let Some((cp, cl, cid)) = parse_connector(connector) else {
                return Err(violation(
                    rt,
                    "template.vpc_access.connector",
                    format!(
                        "'{connector}' is not a valid connector name; expected projects/{{project}}/locations/{{location}}/connectors/{{connector}}."
                    ),
                ));
            };
            let cproj = st.project(cp)?;
            let key = format!("projects/{}/locations/{cl}/connectors/{cid}", cproj.id);
            let Some(c) = st.connectors.get(&key) else {
                return Err(GError::invalid_field(
                    &format!("{rt}.service.template.vpc_access.connector"),
                    format!(
                        "VPC connector {connector} does not exist, or Cloud Run does not have permission to use it."
                    ),
                ));
            };
            if cl != region {
                return Err(GError::invalid_field(
                    &format!("{rt}.service.template.vpc_access.connector"),
                    format!(
                        "VPC connector {connector} is in region '{cl}', but the service is in region '{region}'. The connector must be in the same region as the service."
                    ),
                ));
            }
            let state = str_of(c, "state");
            if state != "READY" {
                return Err(GError::precondition(format!(
                    "VPC connector {connector} is not ready (state: {state})."
                )));
            }
        }
    }
    let key = str_of(t, "encryptionKey");
    if !key.is_empty() {
        let field = format!("{rt}.service.template.encryption_key");
        let Some((kp, kl, kr, kk)) = parse_key(key) else {
            return Err(GError::invalid_field(
                &field,
                format!(
                    "Violation in {field}: '{key}' is not a valid key name; expected projects/{{project}}/locations/{{location}}/keyRings/{{key_ring}}/cryptoKeys/{{crypto_key}}."
                ),
            ));
        };
        if kl != region {
            return Err(GError::invalid_field(
                &field,
                format!(
                    "Violation in {field}: the key {key} is in location '{kl}'; a service in region '{region}' must use a key in the same location."
                ),
            ));
        }
        let kproj = st.project(kp)?;
        let canonical = format!(
            "projects/{}/locations/{kl}/keyRings/{kr}/cryptoKeys/{kk}",
            kproj.id
        );
        if !st.crypto_keys.contains_key(&canonical) {
            return Err(GError::invalid_field(
                &field,
                format!("Violation in {field}: the key {key} does not exist."),
            ));
        }
    }
    Ok(())
}

/// Fills what Cloud Run fills server-side (per the recorded real traffic).
fn apply_defaults(svc: &mut Value, project: &Project) {
    let Some(o) = svc.as_object_mut() else { return };
    o.entry("ingress").or_insert(json!("INGRESS_TRAFFIC_ALL"));
    o.entry("launchStage").or_insert(json!("GA"));
    if o.get("traffic")
        .and_then(Value::as_array)
        .is_none_or(|a| a.is_empty())
    {
        o.insert(
            "traffic".into(),
            json!([{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]),
        );
    }
    let Some(t) = o.get_mut("template").and_then(Value::as_object_mut) else {
        return;
    };
    t.entry("timeout").or_insert(json!("300s"));
    t.entry("serviceAccount").or_insert(json!(format!(
        "{}-compute@developer.gserviceaccount.com",
        project.number
    )));
    t.entry("maxInstanceRequestConcurrency")
        .or_insert(json!(80));
    let Some(containers) = t.get_mut("containers").and_then(Value::as_array_mut) else {
        return;
    };
    let ingress = containers
        .iter()
        .position(|c| c.get("ports").is_some())
        .unwrap_or(0);
    for (i, c) in containers.iter_mut().enumerate() {
        let Some(c) = c.as_object_mut() else { continue };
        match c.get_mut("resources").and_then(Value::as_object_mut) {
            None => {
                c.insert(
                    "resources".into(),
                    json!({"limits": {"cpu": "1000m", "memory": "512Mi"}, "cpuIdle": true}),
                );
            }
            Some(r) => {
                let limits = r.entry("limits").or_insert(json!({}));
                if let Some(l) = limits.as_object_mut() {
                    l.entry("cpu").or_insert(json!("1000m"));
                    l.entry("memory").or_insert(json!("512Mi"));
                }
            }
        }
        if i == ingress {
            let ports = c
                .entry("ports")
                .or_insert(json!([{"name": "http1", "containerPort": 8080}]));
            let mut port = 8080;
            if let Some(p) = ports
                .as_array_mut()
                .and_then(|a| a.first_mut())
                .and_then(Value::as_object_mut)
            {
                p.entry("name").or_insert(json!("http1"));
                let cp = p.entry("containerPort").or_insert(json!(8080));
                port = cp
                    .as_i64()
                    .or_else(|| cp.as_str().and_then(|s| s.parse().ok()))
                    .unwrap_or(8080);
                *cp = json!(port);
            }
            c.entry("startupProbe").or_insert(json!({
                "timeoutSeconds": 240, "periodSeconds": 240, "failureThreshold": 1,
                "tcpSocket": {"port": port}
            }));
        }
    }
}

fn create(st: &mut State, req: &Req) -> GResult<Value> {
    const RT: &str = "CreateServiceRequest";
    let project = st.project(req.seg(1))?;
    let region = location(req)?;
    let sid = req.q("serviceId").unwrap_or("").to_string();
    if sid.is_empty() {
        return Err(GError::invalid_field(
            "service_id",
            format!("Violation in {RT}.service_id: must be set."),
        ));
    }
    if !valid_service_id(&sid) {
        return Err(GError::invalid_field(
            "service_id",
            format!(
                "Invalid ID '{sid}': a service ID must start with a lowercase letter, contain only lowercase letters, digits and hyphens, not end with a hyphen, and be at most 49 characters long."
            ),
        ));
    }
    let body = input_service(req)?;
    let name = format!("projects/{}/locations/{region}/services/{sid}", project.id);
    create_named(st, req, RT, body, &name, &project, &region, &sid)
}

#[allow(clippy::too_many_arguments)]
fn create_named(
    st: &mut State,
    req: &Req,
    rt: &str,
    body: Value,
    name: &str,
    project: &Project,
    region: &str,
    sid: &str,
) -> GResult<Value> {
    let mut svc = spec_of(&body);
    validate(st, rt, &svc, region)?;
    if st.services.contains_key(name) {
        return Err(GError::new(
            Code::AlreadyExists,
            format!("Resource '{sid}' already exists."),
        ));
    }
    apply_defaults(&mut svc, project);
    let now = util::now();
    let etag = service_etag(st, name, 1);
    let o = svc
        .as_object_mut()
        .ok_or_else(|| GError::invalid("bad service"))?;
    o.insert("name".into(), json!(name));
    o.insert("uid".into(), json!(util::uuid()));
    o.insert("generation".into(), json!("1"));
    o.insert("createTime".into(), json!(now));
    o.insert("updateTime".into(), json!(now));
    o.insert("creator".into(), json!(CALLER));
    o.insert("lastModifier".into(), json!(CALLER));
    o.insert("etag".into(), json!(etag));
    let parent = format!("projects/{}/locations/{region}", project.id);
    if req.q_bool("validateOnly") {
        let v = service_any(&svc);
        let op = operations::start_done(st, Api::Run, &parent, v.clone(), Ok(v));
        return operations::get(st, Api::Run, &op, req.int);
    }
    o.insert("reconciling".into(), json!(true));
    o.insert(
        "terminalCondition".into(),
        json!({"type": "Ready", "state": "CONDITION_RECONCILING"}),
    );
    let revision = format!("{sid}-00001-{}", util::random_alnum(3));
    let mut metadata = service_any(&svc);
    metadata["terminalCondition"] = json!({"state": "CONDITION_PENDING"});
    st.services.insert(
        name.to_string(),
        ServiceRec {
            svc,
            revisions: 1,
            policy: Policy::default(),
            deleting: false,
            last_failed: false,
        },
    );
    let op = operations::start(
        st,
        Api::Run,
        &parent,
        req.delay,
        OpKind::RunDeploy {
            service: name.to_string(),
            generation: 1,
            revision: Some(revision),
        },
        metadata,
    );
    render_initial(st, &op, req)
}

/// The response to the mutating call itself: not done yet, metadata as recorded at submission.
fn render_initial(st: &State, op: &str, req: &Req) -> GResult<Value> {
    let op = st
        .operations
        .get(op)
        .ok_or_else(|| GError::new(Code::Internal, "operation vanished"))?;
    let mut v = json!({"name": op.name, "metadata": op.metadata});
    operations::encode(&mut v, req.int);
    Ok(v)
}

fn list(st: &mut State, req: &Req) -> GResult<Value> {
    let project = st.project(req.seg(1))?;
    let l = req.seg(3);
    if l != "-" {
        location(req)?;
    }
    let prefix = format!("projects/{}/locations/", project.id);
    let items: Vec<Value> = st
        .services
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix) && (l == "-" || k.split('/').nth(3) == Some(l)))
        .filter(|(_, r)| !r.deleting || req.q_bool("showDeleted"))
        .map(|(_, r)| out(&r.svc, req.int))
        .collect();
    util::list_page("services", &items, &req.query, 100)
}

fn update(st: &mut State, req: &Req) -> GResult<Value> {
    const RT: &str = "UpdateServiceRequest";
    let (name, project) = service_name(st, req)?;
    let region = location(req)?;
    let sid = req.seg(5).to_string();
    let body = input_service(req)?;
    let exists = st.services.get(&name).is_some_and(|r| !r.deleting);
    if !exists {
        if req.q_bool("allowMissing") && !st.services.contains_key(&name) {
            if !valid_service_id(&sid) {
                return Err(GError::invalid_field(
                    "service.name",
                    format!("Invalid ID '{sid}'."),
                ));
            }
            return create_named(st, req, RT, body, &name, &project, &region, &sid);
        }
        return Err(not_found(&name));
    }
    let Some(rec) = st.services.get(&name).cloned() else {
        return Err(not_found(&name));
    };
    let sent_etag = str_of(&body, "etag");
    if !sent_etag.is_empty() && sent_etag != str_of(&rec.svc, "etag") {
        return Err(GError::new(
            Code::Aborted,
            format!(
                "The etag '{sent_etag}' does not match the current etag of service '{name}'; the service was modified concurrently. Read it again and retry."
            ),
        ));
    }
    let mut new = rec.svc.clone();
    match util::query_mask(&req.query, "updateMask") {
        Some(paths) if !paths.is_empty() => {
            for p in paths {
                let p: String = p.split('.').map(util::camel).collect::<Vec<_>>().join(".");
                let top = p.split('.').next().unwrap_or("");
                if !USER_FIELDS.contains(&top) {
                    return Err(GError::invalid_field(
                        "update_mask",
                        format!(
                            "Invalid field mask path '{p}': the field does not exist or cannot be updated."
                        ),
                    ));
                }
                util::set_path(&mut new, &p, get_path(&body, &p).cloned());
            }
        }
        _ => {
            if let Some(o) = new.as_object_mut() {
                for f in USER_FIELDS {
                    match body.get(f) {
                        Some(v) => o.insert(f.to_string(), v.clone()),
                        None => o.remove(f),
                    };
                }
            }
        }
    }
    util::prune(&mut new);
    validate(st, RT, &spec_of(&new), &region)?;
    apply_defaults(&mut new, &project);
    let changed = spec_of(&new) != spec_of(&rec.svc);
    let template_changed = new.get("template") != rec.svc.get("template") || rec.last_failed;
    let parent = format!("projects/{}/locations/{region}", project.id);
    if req.q_bool("validateOnly") {
        let v = service_any(&new);
        let op = operations::start_done(st, Api::Run, &parent, v.clone(), Ok(v));
        return operations::get(st, Api::Run, &op, req.int);
    }
    let mut gen_ = generation(&rec.svc);
    let mut revision = None;
    let mut revisions = rec.revisions;
    if changed || rec.last_failed {
        gen_ += 1;
        if template_changed {
            revisions += 1;
            let custom = get_path(&new, "template.revision")
                .and_then(Value::as_str)
                .unwrap_or("");
            revision = Some(if custom.is_empty() {
                format!("{sid}-{revisions:05}-{}", util::random_alnum(3))
            } else {
                custom.to_string()
            });
        }
        let etag = service_etag(st, &name, gen_);
        if let Some(o) = new.as_object_mut() {
            o.insert("generation".into(), json!(gen_.to_string()));
            o.insert("updateTime".into(), json!(util::now()));
            o.insert("lastModifier".into(), json!(CALLER));
            o.insert("etag".into(), json!(etag));
            o.insert("reconciling".into(), json!(true));
            let mut tc = json!({"type": "Ready", "state": "CONDITION_RECONCILING"});
            if let Some(t) = get_path(&rec.svc, "terminalCondition.lastTransitionTime") {
                tc["lastTransitionTime"] = t.clone();
            }
            o.insert("terminalCondition".into(), tc);
        }
    }
    let mut metadata = service_any(&new);
    if changed || rec.last_failed {
        metadata["terminalCondition"]["state"] = json!("CONDITION_PENDING");
    }
    if let Some(r) = st.services.get_mut(&name) {
        r.svc = new;
        r.revisions = revisions;
    }
    let op = operations::start(
        st,
        Api::Run,
        &parent,
        req.delay,
        OpKind::RunDeploy {
            service: name.clone(),
            generation: gen_,
            revision,
        },
        metadata,
    );
    render_initial(st, &op, req)
}

fn delete(st: &mut State, req: &Req) -> GResult<Value> {
    let (name, project) = service_name(st, req)?;
    let region = location(req)?;
    let rec = st
        .services
        .get(&name)
        .filter(|r| !r.deleting)
        .cloned()
        .ok_or_else(|| not_found(&name))?;
    if let Some(etag) = req.q("etag").filter(|e| !e.is_empty())
        && etag != str_of(&rec.svc, "etag")
    {
        return Err(GError::new(
            Code::Aborted,
            format!(
                "The etag '{etag}' does not match the current etag of service '{name}'; the service was modified concurrently. Read it again and retry."
            ),
        ));
    }
    let parent = format!("projects/{}/locations/{region}", project.id);
    if req.q_bool("validateOnly") {
        let v = service_any(&rec.svc);
        let op = operations::start_done(st, Api::Run, &parent, v.clone(), Ok(v));
        return operations::get(st, Api::Run, &op, req.int);
    }
    let gen_ = generation(&rec.svc) + 1;
    let etag = service_etag(st, &name, gen_);
    let now = std::time::SystemTime::now();
    let mut svc = rec.svc.clone();
    if let Some(o) = svc.as_object_mut() {
        o.insert("generation".into(), json!(gen_.to_string()));
        o.insert("updateTime".into(), json!(util::timestamp(now)));
        o.insert("deleteTime".into(), json!(util::timestamp(now)));
        o.insert(
            "expireTime".into(),
            json!(util::timestamp(
                now + std::time::Duration::from_secs(30 * 86_400)
            )),
        );
        o.insert("etag".into(), json!(etag));
        o.insert("reconciling".into(), json!(true));
        let mut tc = json!({"type": "Ready", "state": "CONDITION_PENDING"});
        if let Some(t) = get_path(&rec.svc, "terminalCondition.lastTransitionTime") {
            tc["lastTransitionTime"] = t.clone();
        }
        o.insert("terminalCondition".into(), tc);
    }
    let metadata = service_any(&svc);
    if let Some(r) = st.services.get_mut(&name) {
        r.svc = svc;
        r.deleting = true;
    }
    let op = operations::start(
        st,
        Api::Run,
        &parent,
        req.delay,
        OpKind::RunDelete { service: name },
        metadata,
    );
    render_initial(st, &op, req)
}

fn number_of(st: &State, project: &str) -> u64 {
    if project.bytes().all(|b| b.is_ascii_digit()) {
        project.parse().unwrap_or(0)
    } else {
        let n = crate::state::project_number(project);
        debug_assert!(st.projects.get(&n).is_none_or(|id| id == project));
        n
    }
}

/// The CMEK check Cloud Run runs when it rolls out a revision: `Err((reason, message))`.
fn cmek_check(
    st: &State,
    svc: &Value,
    number: u64,
    revision: &str,
) -> Result<(), (&'static str, String)> {
    let key = get_path(svc, "template.encryptionKey")
        .and_then(Value::as_str)
        .unwrap_or("");
    if key.is_empty() {
        return Ok(());
    }
    let agent = format!("service-{number}@serverless-robot-prod.iam.gserviceaccount.com");
    let canonical = parse_key(key).map(|(p, l, r, k)| {
        let id = if p.bytes().all(|b| b.is_ascii_digit()) {
            p.parse::<u64>()
                .ok()
                .and_then(|n| st.projects.get(&n).cloned())
                .unwrap_or_else(|| p.to_string())
        } else {
            p.to_string()
        };
        format!("projects/{id}/locations/{l}/keyRings/{r}/cryptoKeys/{k}")
    });
    let Some(rec) = canonical.and_then(|c| st.crypto_keys.get(&c)) else {
        return Err((
            "ENCRYPTION_KEY_CHECK_FAILED",
            format!(
                "Revision '{revision}' is not ready and cannot serve traffic. The encryption key {key} does not exist."
            ),
        ));
    };
    if !rec
        .policy
        .grants(&format!("serviceAccount:{agent}"), &KMS_ROLES)
    {
        return Err((
            "ENCRYPTION_KEY_PERMISSION_DENIED",
            format!(
                "Revision '{revision}' is not ready and cannot serve traffic. The Cloud Run service agent {agent} does not have permission to use the encryption key {key}. Grant it the role roles/cloudkms.cryptoKeyEncrypterDecrypter on the key."
            ),
        ));
    }
    let state = rec
        .primary
        .and_then(|n| rec.versions.get(&n))
        .map(|v| str_of(v, "state").to_string())
        .unwrap_or_else(|| "NO_PRIMARY_VERSION".into());
    if state != "ENABLED" {
        return Err((
            "ENCRYPTION_KEY_CHECK_FAILED",
            format!(
                "Revision '{revision}' is not ready and cannot serve traffic. The primary version of the encryption key {key} is not enabled (state: {state})."
            ),
        ));
    }
    Ok(())
}

fn traffic_statuses(svc: &Value, sid: &str, number: u64, region: &str) -> Value {
    let traffic = svc
        .get("traffic")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let hash = project_hash(number);
    let code = region_code(region);
    Value::Array(
        traffic
            .into_iter()
            .map(|mut t| {
                let tag = str_of(&t, "tag").to_string();
                if !tag.is_empty() {
                    t["uri"] = json!(format!("https://{tag}---{sid}-{hash}-{code}.a.run.app"));
                }
                t
            })
            .collect(),
    )
}

/// Completes a create/update rollout.
pub(crate) fn complete_deploy(
    st: &mut State,
    service: &str,
    gen_: i64,
    revision: Option<&str>,
) -> (Value, Result<Value, GError>) {
    let Some(rec) = st.services.get(service).cloned() else {
        return (
            json!({"@type": RUN_SERVICE_TYPE, "name": service}),
            Err(GError::new(
                Code::Aborted,
                format!("Service '{service}' was deleted before the rollout finished."),
            )),
        );
    };
    if rec.deleting || generation(&rec.svc) != gen_ {
        // Superseded by a newer generation or a delete: nothing to roll out.
        let v = service_any(&rec.svc);
        return (v.clone(), Ok(v));
    }
    let parts: Vec<&str> = service.split('/').collect();
    let (project, region, sid) = (parts[1], parts[3], parts[5]);
    let number = number_of(st, project);
    let now = util::now();
    let mut svc = rec.svc.clone();
    let rev_name = |r: &str| format!("{service}/revisions/{r}");
    let revision_id = revision
        .map(String::from)
        .or_else(|| {
            str_of(&svc, "latestCreatedRevision")
                .rsplit('/')
                .next()
                .map(String::from)
        })
        .unwrap_or_default();
    let check = cmek_check(st, &svc, number, &revision_id);
    let o = svc.as_object_mut().expect("service is an object");
    o.remove("reconciling");
    o.insert("observedGeneration".into(), json!(gen_.to_string()));
    o.insert("uri".into(), json!(service_uri(sid, number, region)));
    if let Some(r) = revision {
        o.insert("latestCreatedRevision".into(), json!(rev_name(r)));
    }
    let result = match check {
        Ok(()) => {
            if let Some(r) = revision {
                o.insert("latestReadyRevision".into(), json!(rev_name(r)));
            }
            o.insert(
                "terminalCondition".into(),
                json!({"type": "Ready", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": now}),
            );
            o.insert("conditions".into(), json!([
                {"type": "RoutesReady", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": now},
                {"type": "ConfigurationsReady", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": now}
            ]));
            let ts = traffic_statuses(&Value::Object(o.clone()), sid, number, region);
            o.insert("trafficStatuses".into(), ts);
            Ok(())
        }
        Err((reason, message)) => {
            o.insert("terminalCondition".into(), json!({"type": "Ready", "state": "CONDITION_FAILED", "reason": reason, "message": message, "lastTransitionTime": now}));
            let routes = if o.contains_key("latestReadyRevision") {
                "CONDITION_SUCCEEDED"
            } else {
                "CONDITION_FAILED"
            };
            o.insert("conditions".into(), json!([
                {"type": "RoutesReady", "state": routes, "lastTransitionTime": now},
                {"type": "ConfigurationsReady", "state": "CONDITION_FAILED", "reason": reason, "message": message, "lastTransitionTime": now}
            ]));
            Err(GError::precondition(message))
        }
    };
    let failed = result.is_err();
    if let Some(r) = st.services.get_mut(service) {
        r.svc = svc.clone();
        r.last_failed = failed;
    }
    let v = service_any(&svc);
    (v.clone(), result.map(|()| v))
}

/// Completes a delete: the service disappears, with its IAM policy.
pub(crate) fn complete_delete(st: &mut State, service: &str) -> (Value, Result<Value, GError>) {
    let Some(rec) = st.services.remove(service) else {
        return (
            json!({"@type": RUN_SERVICE_TYPE, "name": service}),
            Ok(json!({"@type": RUN_SERVICE_TYPE, "name": service})),
        );
    };
    let etag = service_etag(st, service, generation(&rec.svc));
    let now = util::now();
    let mut svc = rec.svc;
    if let Some(o) = svc.as_object_mut() {
        o.remove("reconciling");
        o.insert(
            "observedGeneration".into(),
            o.get("generation").cloned().unwrap_or(json!("0")),
        );
        o.insert("updateTime".into(), json!(now));
        o.insert(
            "terminalCondition".into(),
            json!({"type": "Ready", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": now}),
        );
        o.insert("etag".into(), json!(etag));
    }
    let v = service_any(&svc);
    (v.clone(), Ok(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_regions() {
        assert!(valid_service_id("hello"));
        assert!(valid_service_id("a"));
        assert!(!valid_service_id("Hello"));
        assert!(!valid_service_id("hello-"));
        assert!(!valid_service_id(&"a".repeat(50)));
        assert!(valid_region("us-central1"));
        assert!(!valid_region("mars"));
        assert_eq!(region_code("us-central1"), "uc");
        assert!(valid_cpu("1000m") && valid_cpu("2") && valid_cpu("0.5") && !valid_cpu("lots"));
        assert!(valid_memory("512Mi") && valid_memory("1Gi") && !valid_memory("big"));
    }
}
