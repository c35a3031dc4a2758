//! Pure functions: the Cloud Run service a `CloudRunService` asks for, and how it differs from
//! the one Google has.
//!
//! Differences are computed on a *shape*: every field runwarden manages, as a canonical string,
//! with the defaults Cloud Run fills in (ingress ALL, concurrency 80, timeout 300s, 1000m CPU,
//! 512Mi, port 8080, the Compute Engine default account...) folded in, so that a service Google
//! returns after deploying exactly our spec has the same shape as the spec. An unchanged spec
//! then causes no write, while a change made behind runwarden's back shows up as a difference.

use std::collections::{BTreeMap, HashMap};

use google_cloud_run_v2::model::{
    self as run, BinaryAuthorization, EnvVar, EnvVarSource, ExecutionEnvironment, IngressTraffic,
    RevisionScaling, RevisionTemplate, SecretKeySelector, Service, VpcAccess,
    binary_authorization::BinauthzMethod, env_var::Values, vpc_access::NetworkInterface,
    vpc_access::VpcEgress,
};
use google_cloud_wkt::Duration;

use crate::api::v1alpha1::{
    self as api, CloudRunService, EgressRouting, Ingress, RevocationAction,
};
use crate::api::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, OWNER_LABEL};

/// Cloud Run's default request concurrency.
pub const DEFAULT_CONCURRENCY: i32 = 80;
/// Cloud Run's default request timeout, in seconds.
pub const DEFAULT_TIMEOUT_SECONDS: i64 = 300;
/// Cloud Run's default CPU limit.
pub const DEFAULT_CPU: &str = "1000m";
/// Cloud Run's default memory limit.
pub const DEFAULT_MEMORY: &str = "512Mi";
/// Cloud Run's default container port.
pub const DEFAULT_PORT: i32 = 8080;

/// Label key prefixes Google reserves (and may set itself); never compared, never written.
pub const RESERVED_LABEL_PREFIXES: [&str; 5] = [
    "run.googleapis.com",
    "cloud.googleapis.com",
    "serving.knative.dev",
    "autoscaling.knative.dev",
    "goog",
];

/// A shape value meaning "the spec leaves this to Cloud Run": never compared.
const UNMANAGED: &str = "<unmanaged>";

/// What the reconciler resolved outside the object, needed to render it.
#[derive(Clone, Debug, Default)]
pub struct Resolved {
    /// The Google Cloud project.
    pub project: String,
    /// Full name of the connector of `egress.connectorRef`, once resolved.
    pub connector: Option<String>,
}

/// `projects/{project}/locations/{region}`.
pub fn parent(project: &str, region: &str) -> String {
    format!("projects/{project}/locations/{region}")
}

/// The full Google name of the service.
pub fn service_name(obj: &CloudRunService, project: &str) -> String {
    format!(
        "{}/services/{}",
        parent(project, &obj.spec.region),
        obj.service_id()
    )
}

/// The Cloud Run service this object asks for (with `name` set; clear it to create).
pub fn desired_service(obj: &CloudRunService, resolved: &Resolved) -> Service {
    let spec = &obj.spec;
    let mut labels: HashMap<String, String> = spec
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned());
    labels.insert(
        OWNER_LABEL.to_owned(),
        obj.metadata.uid.clone().unwrap_or_default(),
    );

    let mut template = RevisionTemplate::new()
        .set_service_account(spec.service_account.clone().unwrap_or_default())
        .set_execution_environment(match spec.execution_environment {
            api::ExecutionEnvironment::Gen2 => ExecutionEnvironment::Gen2,
            api::ExecutionEnvironment::Gen1 => ExecutionEnvironment::Gen1,
        })
        .set_max_instance_request_concurrency(
            spec.max_requests_per_instance
                .unwrap_or(DEFAULT_CONCURRENCY),
        )
        .set_timeout(Duration::clamp(
            spec.timeout_seconds
                .map_or(DEFAULT_TIMEOUT_SECONDS, i64::from),
            0,
        ))
        .set_containers(spec.containers.iter().map(container));
    if let Some(scaling) = &spec.scaling {
        template = template.set_scaling(
            RevisionScaling::new()
                .set_min_instance_count(scaling.min_instances.unwrap_or(0))
                .set_max_instance_count(scaling.max_instances.unwrap_or(0)),
        );
    }
    if let Some(vpc) = vpc_access(spec.egress.as_ref(), resolved, &spec.region) {
        template = template.set_vpc_access(vpc);
    }
    if let Some(enc) = &spec.encryption {
        template = template
            .set_encryption_key(&enc.kms_key)
            .set_encryption_key_revocation_action(match enc.revocation_action {
                RevocationAction::PreventNew => run::EncryptionKeyRevocationAction::PreventNew,
                RevocationAction::Shutdown => run::EncryptionKeyRevocationAction::Shutdown,
            });
        if let Some(hours) = enc.shutdown_hours {
            template = template
                .set_encryption_key_shutdown_duration(Duration::clamp(i64::from(hours) * 3600, 0));
        }
    }

    let mut service = Service::new()
        .set_name(service_name(obj, &resolved.project))
        .set_labels(labels)
        .set_ingress(match spec.ingress {
            Ingress::Internal => IngressTraffic::InternalOnly,
            Ingress::InternalAndCloudLoadBalancing => IngressTraffic::InternalLoadBalancer,
            Ingress::All => IngressTraffic::All,
        })
        .set_default_uri_disabled(spec.default_uri_disabled)
        .set_template(template);
    if let Some(binauthz) = &spec.binary_authorization {
        let method = match (&binauthz.policy, binauthz.use_default) {
            (Some(policy), _) => BinauthzMethod::Policy(policy.clone()),
            (None, use_default) => BinauthzMethod::UseDefault(use_default.unwrap_or(true)),
        };
        service = service.set_binary_authorization(
            BinaryAuthorization::new()
                .set_binauthz_method(Some(method))
                .set_breakglass_justification(
                    binauthz
                        .breakglass_justification
                        .clone()
                        .unwrap_or_default(),
                ),
        );
    }
    service
}

fn container(c: &api::Container) -> run::Container {
    let mut out = run::Container::new()
        .set_name(c.name.clone().unwrap_or_default())
        .set_image(&c.image)
        .set_command(c.command.clone())
        .set_args(c.args.clone())
        .set_env(c.env.iter().map(|e| {
            let var = EnvVar::new().set_name(&e.name);
            match &e.secret_ref {
                Some(s) => var.set_values(Some(Values::ValueSource(Box::new(
                    EnvVarSource::new().set_secret_key_ref(
                        SecretKeySelector::new()
                            .set_secret(&s.secret)
                            .set_version(&s.version),
                    ),
                )))),
                None => var.set_values(Some(Values::Value(e.value.clone().unwrap_or_default()))),
            }
        }))
        .set_ports(c.ports.iter().map(|p| {
            run::ContainerPort::new()
                .set_name(p.name.as_deref().unwrap_or("http1"))
                .set_container_port(p.container_port)
        }));
    if let Some(r) = &c.resources {
        let mut limits = HashMap::new();
        if let Some(cpu) = &r.cpu {
            limits.insert("cpu".to_owned(), cpu.clone());
        }
        if let Some(memory) = &r.memory {
            limits.insert("memory".to_owned(), memory.clone());
        }
        out = out.set_resources(
            run::ResourceRequirements::new()
                .set_limits(limits)
                .set_cpu_idle(true),
        );
    }
    out
}

fn vpc_access(
    egress: Option<&api::Egress>,
    resolved: &Resolved,
    region: &str,
) -> Option<VpcAccess> {
    let egress = egress?;
    let routing = match egress.routing {
        EgressRouting::AllTraffic => VpcEgress::AllTraffic,
        EgressRouting::PrivateRangesOnly => VpcEgress::PrivateRangesOnly,
    };
    let vpc = VpcAccess::new().set_egress(routing);
    if let Some(direct) = &egress.direct_vpc {
        let nic = NetworkInterface::new()
            .set_network(
                direct
                    .network
                    .as_deref()
                    .map(|n| network_path(n, &resolved.project))
                    .unwrap_or_default(),
            )
            .set_subnetwork(
                direct
                    .subnetwork
                    .as_deref()
                    .map(|n| subnetwork_path(n, &resolved.project, region))
                    .unwrap_or_default(),
            )
            .set_tags(direct.tags.clone());
        return Some(vpc.set_network_interfaces([nic]));
    }
    let connector = egress
        .connector
        .clone()
        .or_else(|| resolved.connector.clone())?;
    Some(vpc.set_connector(connector))
}

/// The managed fields of a service as canonical strings (see the module docs).
pub fn shape(svc: &Service) -> BTreeMap<String, String> {
    let mut s = BTreeMap::new();
    let mut put = |k: String, v: String| {
        s.insert(k, v);
    };
    let labels: BTreeMap<_, _> = svc
        .labels
        .iter()
        .filter(|(k, _)| !RESERVED_LABEL_PREFIXES.iter().any(|p| k.starts_with(p)))
        .collect();
    put("labels".into(), format!("{labels:?}"));
    let ingress = match svc.ingress {
        IngressTraffic::Unspecified => IngressTraffic::All,
        ref other => other.clone(),
    };
    put("ingress".into(), format!("{ingress:?}"));
    put(
        "defaultUriDisabled".into(),
        svc.default_uri_disabled.to_string(),
    );
    put(
        "binaryAuthorization".into(),
        binauthz_shape(svc.binary_authorization.as_ref()),
    );

    let default_template = RevisionTemplate::new();
    let t = svc.template.as_ref().unwrap_or(&default_template);
    put(
        "template.serviceAccount".into(),
        service_account_shape(&t.service_account),
    );
    let env = match t.execution_environment {
        ExecutionEnvironment::Unspecified => ExecutionEnvironment::Gen2,
        ref other => other.clone(),
    };
    put("template.executionEnvironment".into(), format!("{env:?}"));
    put("template.encryptionKey".into(), t.encryption_key.clone());
    if !t.encryption_key.is_empty() {
        let action = match t.encryption_key_revocation_action {
            run::EncryptionKeyRevocationAction::Unspecified => {
                run::EncryptionKeyRevocationAction::PreventNew
            }
            ref other => other.clone(),
        };
        put(
            "template.encryptionKeyRevocationAction".into(),
            format!("{action:?}"),
        );
        put(
            "template.encryptionKeyShutdownDuration".into(),
            t.encryption_key_shutdown_duration
                .as_ref()
                .map_or(0, Duration::seconds)
                .to_string(),
        );
    }
    let concurrency = if t.max_instance_request_concurrency == 0 {
        DEFAULT_CONCURRENCY
    } else {
        t.max_instance_request_concurrency
    };
    put(
        "template.maxInstanceRequestConcurrency".into(),
        concurrency.to_string(),
    );
    put(
        "template.timeout".into(),
        t.timeout
            .as_ref()
            .map_or(DEFAULT_TIMEOUT_SECONDS, Duration::seconds)
            .to_string(),
    );
    let scaling = t.scaling.clone().unwrap_or_default();
    put(
        "template.scaling.minInstanceCount".into(),
        scaling.min_instance_count.to_string(),
    );
    put(
        "template.scaling.maxInstanceCount".into(),
        count_or_unmanaged(scaling.max_instance_count),
    );
    let vpc = t.vpc_access.clone().unwrap_or_default();
    put("template.vpcAccess.connector".into(), vpc.connector.clone());
    let routing = if vpc.connector.is_empty() && vpc.network_interfaces.is_empty() {
        String::new()
    } else {
        match vpc.egress {
            VpcEgress::Unspecified => format!("{:?}", VpcEgress::PrivateRangesOnly),
            ref other => format!("{other:?}"),
        }
    };
    put("template.vpcAccess.egress".into(), routing);
    // Direct VPC: names as full paths in the service's project and region, whichever form was
    // sent or returned; a network or subnetwork the spec leaves out is Cloud Run's to infer.
    let (project, region) = project_and_region(&svc.name);
    put(
        "template.vpcAccess.networkInterfaces".into(),
        vpc.network_interfaces.len().to_string(),
    );
    for (i, n) in vpc.network_interfaces.iter().enumerate() {
        let key = |f: &str| format!("template.vpcAccess.networkInterfaces[{i}].{f}");
        let or_unmanaged = |v: String| {
            if v.is_empty() {
                UNMANAGED.to_owned()
            } else {
                v
            }
        };
        put(
            key("network"),
            or_unmanaged(network_path(&n.network, project)),
        );
        put(
            key("subnetwork"),
            or_unmanaged(subnetwork_path(&n.subnetwork, project, region)),
        );
        put(key("tags"), format!("{:?}", n.tags));
    }
    for (i, c) in t.containers.iter().enumerate() {
        let key = |f: &str| format!("template.containers[{i}].{f}");
        put(
            key("name"),
            if c.name.is_empty() {
                UNMANAGED.to_owned()
            } else {
                c.name.clone()
            },
        );
        put(key("image"), c.image.clone());
        put(key("command"), format!("{:?}", c.command));
        put(key("args"), format!("{:?}", c.args));
        put(
            key("env"),
            format!("{:?}", c.env.iter().map(env_shape).collect::<Vec<_>>()),
        );
        let ports: Vec<_> = if c.ports.is_empty() {
            // Cloud Run gives the first container port 8080 when none is set.
            if i == 0 {
                vec![format!("http1:{DEFAULT_PORT}")]
            } else {
                vec![]
            }
        } else {
            c.ports
                .iter()
                .map(|p| {
                    format!(
                        "{}:{}",
                        if p.name.is_empty() { "http1" } else { &p.name },
                        p.container_port
                    )
                })
                .collect()
        };
        put(key("ports"), format!("{ports:?}"));
        let limits = c.resources.as_ref().map(|r| &r.limits);
        let limit = |name: &str| limits.and_then(|l| l.get(name)).cloned();
        put(
            key("resources.cpu"),
            cpu_millis(&limit("cpu").unwrap_or_else(|| DEFAULT_CPU.to_owned())),
        );
        put(
            key("resources.memory"),
            memory_mebibytes(&limit("memory").unwrap_or_else(|| DEFAULT_MEMORY.to_owned())),
        );
    }
    s
}

/// The managed fields where `actual` differs from `desired`, e.g. `template.containers[0].image`.
pub fn changes(desired: &Service, actual: &Service) -> Vec<String> {
    let want = shape(desired);
    let have = shape(actual);
    let mut keys: Vec<&String> = want.keys().chain(have.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| {
            let (w, h) = (want.get(*k), have.get(*k));
            w.map(String::as_str) != Some(UNMANAGED) && w != h
        })
        .cloned()
        .collect()
}

/// The update to send: `actual` with every managed field replaced by `desired`'s, so fields
/// runwarden does not manage (annotations, traffic, probes...) are kept as they are.
pub fn update_from(actual: &Service, desired: &Service) -> Service {
    let mut out = actual.clone();
    out.labels = actual
        .labels
        .iter()
        .filter(|(k, _)| RESERVED_LABEL_PREFIXES.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain(desired.labels.clone())
        .collect();
    out.ingress = desired.ingress.clone();
    out.default_uri_disabled = desired.default_uri_disabled;
    out.binary_authorization = desired.binary_authorization.clone();
    let want = desired.template.clone().unwrap_or_default();
    let mut t = actual.template.clone().unwrap_or_default();
    t.service_account = want.service_account;
    t.execution_environment = want.execution_environment;
    t.encryption_key = want.encryption_key;
    t.encryption_key_revocation_action = want.encryption_key_revocation_action;
    t.encryption_key_shutdown_duration = want.encryption_key_shutdown_duration;
    t.max_instance_request_concurrency = want.max_instance_request_concurrency;
    t.timeout = want.timeout;
    t.scaling = want.scaling;
    t.vpc_access = want.vpc_access;
    // A revision name pinned by the old template would make Cloud Run refuse the new one.
    t.revision = String::new();
    let old = std::mem::take(&mut t.containers);
    t.containers = want
        .containers
        .into_iter()
        .enumerate()
        .map(|(i, w)| match old.get(i) {
            Some(o) => {
                let mut c = o.clone();
                c.name = w.name;
                c.image = w.image;
                c.command = w.command;
                c.args = w.args;
                c.env = w.env;
                c.ports = w.ports;
                let mut resources = c.resources.take().unwrap_or_default();
                resources.limits = w.resources.map(|r| r.limits).unwrap_or_default();
                c.resources = Some(resources);
                c
            }
            None => w,
        })
        .collect();
    out.template = Some(t);
    out
}

fn count_or_unmanaged(n: i32) -> String {
    if n == 0 {
        UNMANAGED.to_owned()
    } else {
        n.to_string()
    }
}

fn binauthz_shape(b: Option<&BinaryAuthorization>) -> String {
    let Some(b) = b else { return "none".into() };
    let method = match &b.binauthz_method {
        None | Some(BinauthzMethod::UseDefault(false)) => "none".to_owned(),
        Some(BinauthzMethod::UseDefault(true)) => "default".to_owned(),
        Some(BinauthzMethod::Policy(p)) => format!("policy:{p}"),
        Some(other) => format!("{other:?}"),
    };
    if b.breakglass_justification.is_empty() {
        method
    } else {
        format!("{method}|breakglass:{}", b.breakglass_justification)
    }
}

/// The Compute Engine default account is what Cloud Run uses when none is set.
fn service_account_shape(sa: &str) -> String {
    if sa.ends_with("-compute@developer.gserviceaccount.com") {
        String::new()
    } else {
        sa.to_owned()
    }
}

fn env_shape(e: &EnvVar) -> String {
    match &e.values {
        Some(Values::Value(v)) => format!("{}={v}", e.name),
        Some(Values::ValueSource(src)) => match &src.secret_key_ref {
            Some(s) => format!(
                "{}=secret:{}:{}",
                e.name,
                s.secret,
                if s.version.is_empty() {
                    "latest"
                } else {
                    &s.version
                }
            ),
            None => format!("{}=<empty source>", e.name),
        },
        Some(other) => format!("{}={other:?}", e.name),
        None => format!("{}=", e.name),
    }
}

/// `1`, `1.0`, `1000m` → `1000m`.
fn cpu_millis(cpu: &str) -> String {
    if let Some(m) = cpu.strip_suffix('m') {
        return format!("{m}m");
    }
    match cpu.parse::<f64>() {
        Ok(cores) => format!("{}m", (cores * 1000.0).round() as i64),
        Err(_) => cpu.to_owned(),
    }
}

/// `1Gi`, `1024Mi` → `1024Mi`; other units are kept as written.
fn memory_mebibytes(memory: &str) -> String {
    if let Some(g) = memory
        .strip_suffix("Gi")
        .and_then(|g| g.parse::<u64>().ok())
    {
        return format!("{}Mi", g * 1024);
    }
    memory.to_owned()
}

/// The last path segment of a network or subnetwork reference: Cloud Run accepts a short name
/// or a full path and may answer with either.
pub fn short_name(reference: &str) -> &str {
    reference.rsplit('/').next().unwrap_or(reference)
}

/// A network reference as a path, `projects/{p}/global/networks/{n}`: a short name is in
/// `project`; a URL (`https://www.googleapis.com/compute/v1/projects/...`) loses its prefix; any
/// other path is kept as written. Empty stays empty.
pub fn network_path(reference: &str, project: &str) -> String {
    resource_path(reference, || {
        format!("projects/{project}/global/networks/{reference}")
    })
}

/// A subnetwork reference as a path, `projects/{p}/regions/{r}/subnetworks/{s}`: a short name
/// is in `project` and `region` (Cloud Run only uses subnetworks of the service's region).
pub fn subnetwork_path(reference: &str, project: &str, region: &str) -> String {
    resource_path(reference, || {
        format!("projects/{project}/regions/{region}/subnetworks/{reference}")
    })
}

fn resource_path(reference: &str, from_short: impl FnOnce() -> String) -> String {
    if reference.is_empty() {
        String::new()
    } else if !reference.contains('/') {
        from_short()
    } else if let Some(i) = reference.find("projects/") {
        reference[i..].to_owned()
    } else {
        reference.to_owned()
    }
}

/// `(project, region)` of `projects/{p}/locations/{r}/services/{s}`; empty when malformed.
fn project_and_region(service_name: &str) -> (&str, &str) {
    let mut parts = service_name.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("projects"), Some(p), Some("locations"), Some(r)) => (p, r),
        _ => ("", ""),
    }
}

#[cfg(test)]
mod tests;
