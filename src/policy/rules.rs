//! The rule table: one entry per `RunSecurityPolicy` rule, each with the Rust check the controller
//! runs and the CEL the API server runs at admission. Both produce the same text: `None` / `''`
//! when the service complies, else why it does not (the message after `rule: `).
//!
//! A rule left empty (`[]`) or `false` in the policy is not checked. CEL sees the policy as
//! `params.spec`, the service as `object.spec`, the resolved project as `variables.project`
//! (`''` when unresolved at admission: the controller's `--default-project` is unknown to the API
//! server, so `allowedProjects` is then judged by the controller only, as it is in Rust for
//! [`Subject::project`] `None`).

use crate::api::v1alpha1::{EgressRouting, Ingress, RunSecurityPolicySpec};

use super::Subject;

/// One guardrail.
pub struct Rule {
    /// The spec field of `RunSecurityPolicy` that turns it on, e.g. `forbidUnauthenticated`.
    pub name: &'static str,
    /// The controller's judgement: `Some(why)` when the subject violates the policy's rule.
    pub check: fn(&RunSecurityPolicySpec, &Subject<'_>) -> Option<String>,
    /// CEL of type `string` with the same judgement at admission: `''` or the same `why`.
    pub cel: fn() -> String,
}

/// Every rule, in the order messages list them.
pub static RULES: &[Rule] = &[
    Rule {
        name: "allowedProjects",
        check: allowed_projects,
        cel: allowed_projects_cel,
    },
    Rule {
        name: "allowedRegions",
        check: allowed_regions,
        cel: allowed_regions_cel,
    },
    Rule {
        name: "allowedIngress",
        check: allowed_ingress,
        cel: allowed_ingress_cel,
    },
    Rule {
        name: "forbidUnauthenticated",
        check: forbid_unauthenticated,
        cel: forbid_unauthenticated_cel,
    },
    Rule {
        name: "requireCmek",
        check: require_cmek,
        cel: require_cmek_cel,
    },
    Rule {
        name: "requireBinaryAuthorization",
        check: require_binary_authorization,
        cel: require_binary_authorization_cel,
    },
    Rule {
        name: "requireEgressRouting",
        check: require_egress_routing,
        cel: require_egress_routing_cel,
    },
    Rule {
        name: "requireDedicatedServiceAccount",
        check: require_dedicated_service_account,
        cel: require_dedicated_service_account_cel,
    },
    Rule {
        name: "allowedImageRegistries",
        check: allowed_image_registries,
        cel: allowed_image_registries_cel,
    },
    Rule {
        name: "requireImageDigest",
        check: require_image_digest,
        cel: require_image_digest_cel,
    },
    Rule {
        name: "requireAutomaticBaseImageUpdates",
        check: require_automatic_base_image_updates,
        cel: require_automatic_base_image_updates_cel,
    },
    Rule {
        name: "allowedKmsKeyProjects",
        check: allowed_kms_key_projects,
        cel: allowed_kms_key_projects_cel,
    },
    Rule {
        name: "allowedMemberDomains",
        check: allowed_member_domains,
        cel: allowed_member_domains_cel,
    },
];

/// Most containers a CloudRunService may have (the CRD's `spec.containers` `maxItems`): CEL has no
/// indexed iteration in Kubernetes 1.30, so the container rules walk this many indices.
pub const MAX_CONTAINERS: usize = 10;

/// Suffix of the Compute Engine default service account, which has the project's Editor role.
pub const COMPUTE_DEFAULT_SA_SUFFIX: &str = "-compute@developer.gserviceaccount.com";

const P: &str = "params.spec";
const S: &str = "object.spec";

/// `path` is set and not `null` (optional fields are nullable in the CRD schemas).
fn present(path: &str) -> String {
    format!("(has({path}) && type({path}) != null_type)")
}

/// The policy's boolean rule `name` is on.
fn flag(name: &str) -> String {
    format!("(has({P}.{name}) && {P}.{name} == true)")
}

/// The policy's list rule `name` is non-empty.
fn list_set(name: &str) -> String {
    format!("(has({P}.{name}) && size({P}.{name}) > 0)")
}

/// CEL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

pub(crate) fn ingress_name(i: Ingress) -> &'static str {
    match i {
        Ingress::Internal => "Internal",
        Ingress::InternalAndCloudLoadBalancing => "InternalAndCloudLoadBalancing",
        Ingress::All => "All",
    }
}

pub(crate) fn routing_name(r: EgressRouting) -> &'static str {
    match r {
        EgressRouting::AllTraffic => "AllTraffic",
        EgressRouting::PrivateRangesOnly => "PrivateRangesOnly",
    }
}

/// An image pinned by digest: ends with `@sha256:` and 64 lowercase hex digits.
pub fn is_pinned(image: &str) -> bool {
    image.rsplit_once("@sha256:").is_some_and(|(_, hex)| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

const DIGEST_RE: &str = "@sha256:[0-9a-f]{64}$";

/// CEL list of `f(i)` strings for the container indices `i` where `cond(i)` holds.
fn containers_where(cond: &str, f: &str) -> String {
    let indices: Vec<String> = (0..MAX_CONTAINERS).map(|i| i.to_string()).collect();
    format!(
        "[{}].filter(i, i < size({S}.containers) && {cond}).map(i, {f})",
        indices.join(", ")
    )
}

fn container_field(i: usize) -> String {
    format!("spec.containers[{i}].image")
}

fn cel_container_field() -> String {
    "'spec.containers[' + string(i) + '].image'".to_owned()
}

fn allowed_projects(p: &RunSecurityPolicySpec, s: &Subject<'_>) -> Option<String> {
    let project = s.project.filter(|p| !p.is_empty())?;
    (!p.allowed_projects.is_empty() && !p.allowed_projects.iter().any(|a| a == project))
        .then(|| format!("project {project} is not in allowedProjects"))
}

fn allowed_projects_cel() -> String {
    format!(
        "(!{set} || variables.project == '' || variables.project in {P}.allowedProjects) ? '' : 'project ' + variables.project + ' is not in allowedProjects'",
        set = list_set("allowedProjects")
    )
}

fn allowed_regions(p: &RunSecurityPolicySpec, s: &Subject<'_>) -> Option<String> {
    let region = s.spec.workload().region;
    (!p.allowed_regions.is_empty() && !p.allowed_regions.iter().any(|r| r == region))
        .then(|| format!("spec.region {region} is not in allowedRegions"))
}

fn allowed_regions_cel() -> String {
    format!(
        "(!{set} || {S}.region in {P}.allowedRegions) ? '' : 'spec.region ' + {S}.region + ' is not in allowedRegions'",
        set = list_set("allowedRegions")
    )
}

fn allowed_ingress(p: &RunSecurityPolicySpec, s: &Subject<'_>) -> Option<String> {
    // A job has no ingress: the rule does not apply to it.
    let ingress = s.spec.ingress()?;
    (!p.allowed_ingress.is_empty() && !p.allowed_ingress.contains(&ingress)).then(|| {
        format!(
            "spec.ingress {} is not in allowedIngress",
            ingress_name(ingress)
        )
    })
}

fn allowed_ingress_cel() -> String {
    let ingress = format!("(has({S}.ingress) ? {S}.ingress : 'Internal')");
    // A CloudRunJob has no ingress: the rule does not apply to it.
    format!(
        "(!{set} || object.kind == 'CloudRunJob' || {ingress} in {P}.allowedIngress) ? '' : 'spec.ingress ' + {ingress} + ' is not in allowedIngress'",
        set = list_set("allowedIngress")
    )
}

fn forbid_unauthenticated(p: &RunSecurityPolicySpec, s: &Subject<'_>) -> Option<String> {
    if !p.forbid_unauthenticated {
        return None;
    }
    let why = s.spec.public();
    (!why.is_empty()).then(|| why.join(", "))
}

/// Why a service with `allowUnauthenticated` violates `forbidUnauthenticated`.
pub const ALLOW_UNAUTHENTICATED_WHY: &str = "spec.access.allowUnauthenticated must be false";
/// Why a service with `invokerIamDisabled` violates `forbidUnauthenticated`.
pub const INVOKER_IAM_DISABLED_WHY: &str = "spec.access.invokerIamDisabled must be false";
/// Why a job whose executors include everyone violates `forbidUnauthenticated`.
pub const PUBLIC_EXECUTORS_WHY: &str =
    "spec.access.executors must not include allUsers or allAuthenticatedUsers";

fn forbid_unauthenticated_cel() -> String {
    let on = |field: &str| {
        format!("(has({S}.access) && has({S}.access.{field}) && {S}.access.{field} == true)")
    };
    let (public, unchecked) = (on("allowUnauthenticated"), on("invokerIamDisabled"));
    format!(
        "!{flag} ? '' : ({public} ? {a} : '') + ({public} && {unchecked} ? ', ' : '') + ({unchecked} ? {b} : '')",
        flag = flag("forbidUnauthenticated"),
        a = lit(ALLOW_UNAUTHENTICATED_WHY),
        b = lit(INVOKER_IAM_DISABLED_WHY),
    )
}

fn require_cmek(p: &RunSecurityPolicySpec, s: &Subject<'_>) -> Option<String> {
    (p.require_cmek && s.spec.workload().kms_key.is_none())
        .then(|| "spec.encryption.kmsKey is required".to_owned())
}

fn require_cmek_cel() -> String {
    format!(
        "(!{on} || {enc}) ? '' : 'spec.encryption.kmsKey is required'",
        on = flag("requireCmek"),
        enc = present(&format!("{S}.encryption"))
    )
}

const BINAUTHZ_WHY: &str =
    "spec.binaryAuthorization must enforce a policy (useDefault: true or policy)";

fn require_binary_authorization(p: &RunSecurityPolicySpec, s: &Subject<'_>) -> Option<String> {
    let enforced = s
        .spec
        .workload()
        .binary_authorization
        .is_some_and(|b| b.use_default == Some(true) || b.policy.is_some());
    (p.require_binary_authorization && !enforced).then(|| BINAUTHZ_WHY.to_owned())
}

fn require_binary_authorization_cel() -> String {
    let b = format!("{S}.binaryAuthorization");
    format!(
        "(!{on} || ({b_set} && ((has({b}.useDefault) && {b}.useDefault == true) || {policy_set}))) ? '' : {why}",
        on = flag("requireBinaryAuthorization"),
        b_set = present(&b),
        policy_set = present(&format!("{b}.policy")),
        why = lit(BINAUTHZ_WHY)
    )
}

fn require_egress_routing(p: &RunSecurityPolicySpec, s: &Subject<'_>) -> Option<String> {
    let required = p.require_egress_routing?;
    let name = routing_name(required);
    match s.spec.workload().egress {
        None => Some(format!("spec.egress is required, with routing {name}")),
        Some(e) if e.routing != required => Some(format!("spec.egress.routing must be {name}")),
        Some(_) => None,
    }
}

fn require_egress_routing_cel() -> String {
    let r = format!("{P}.requireEgressRouting");
    let e = format!("{S}.egress");
    format!(
        "!(has({r}) && type({r}) == string) ? '' : !{e_set} ? 'spec.egress is required, with routing ' + {r} : (has({e}.routing) ? {e}.routing : 'AllTraffic') == {r} ? '' : 'spec.egress.routing must be ' + {r}",
        e_set = present(&e)
    )
}

fn require_dedicated_service_account(p: &RunSecurityPolicySpec, s: &Subject<'_>) -> Option<String> {
    if !p.require_dedicated_service_account {
        return None;
    }
    match s.spec.workload().service_account {
        None | Some("") => Some("spec.serviceAccount must name a dedicated service account".into()),
        Some(sa) if sa.ends_with(COMPUTE_DEFAULT_SA_SUFFIX) => Some(format!(
            "spec.serviceAccount {sa} is the Compute Engine default service account"
        )),
        Some(_) => None,
    }
}

fn require_dedicated_service_account_cel() -> String {
    let sa = format!("{S}.serviceAccount");
    format!(
        "!{on} ? '' : !({sa_set} && size({sa}) > 0) ? 'spec.serviceAccount must name a dedicated service account' : {sa}.endsWith({suffix}) ? 'spec.serviceAccount ' + {sa} + ' is the Compute Engine default service account' : ''",
        on = flag("requireDedicatedServiceAccount"),
        sa_set = present(&sa),
        suffix = lit(COMPUTE_DEFAULT_SA_SUFFIX)
    )
}

const REGISTRY_WHY: &str = " must start with one of allowedImageRegistries";

/// The image of container `i` as the registry rules judge it: the one written, or for the
/// container built from source (`spec.build`, the first) the repository the build pushes to
/// (`build.imageRepository`, else `{region}-docker.pkg.dev/{project}/cloud-run-source-deploy`):
/// `(field, value, prefix judged)`; `None` when that default's project is not known (as at
/// admission without one: the controller judges it).
fn judged_image(s: &Subject<'_>, i: usize, image: &str) -> Option<(String, String, String)> {
    let (Some(repository), 0) = (s.spec.build_repository(), i) else {
        return Some((container_field(i), image.to_owned(), image.to_owned()));
    };
    let repository = match repository {
        Some(r) => r.to_owned(),
        None => {
            let project = s.project.filter(|p| !p.is_empty())?;
            format!(
                "{}-docker.pkg.dev/{project}/cloud-run-source-deploy",
                s.spec.workload().region
            )
        }
    };
    let judged = format!("{repository}/");
    Some(("spec.build.imageRepository".to_owned(), repository, judged))
}

fn allowed_image_registries(p: &RunSecurityPolicySpec, s: &Subject<'_>) -> Option<String> {
    if p.allowed_image_registries.is_empty() {
        return None;
    }
    let outside: Vec<String> = s
        .spec
        .workload()
        .containers
        .iter()
        .enumerate()
        .filter_map(|(i, c)| judged_image(s, i, &c.image))
        .filter(|(_, _, judged)| {
            !p.allowed_image_registries
                .iter()
                .any(|r| judged.starts_with(r.as_str()))
        })
        .map(|(field, value, _)| format!("{field} ({value})"))
        .collect();
    (!outside.is_empty()).then(|| outside.join(", ") + REGISTRY_WHY)
}

fn allowed_image_registries_cel() -> String {
    let built = format!("(i == 0 && {})", present(&format!("{S}.build")));
    let own = format!("has({S}.build.imageRepository)");
    let repository = format!(
        "({own} ? {S}.build.imageRepository : {S}.region + '-docker.pkg.dev/' + variables.project + '/cloud-run-source-deploy')"
    );
    let judged = format!("({built} ? {repository} + '/' : {S}.containers[i].image)");
    let known = format!("!({built} && !{own} && variables.project == '')");
    let outside = containers_where(
        &format!("{known} && !{P}.allowedImageRegistries.exists(r, {judged}.startsWith(r))"),
        &format!(
            "({built} ? 'spec.build.imageRepository (' + {repository} + ')' : {} + ' (' + {S}.containers[i].image + ')')",
            cel_container_field()
        ),
    );
    format!(
        "(!{set} || size({outside}) == 0) ? '' : {outside}.join(', ') + {why}",
        set = list_set("allowedImageRegistries"),
        why = lit(REGISTRY_WHY)
    )
}

const DIGEST_WHY: &str = " must be pinned by digest (@sha256:)";

/// A container built from source (`spec.build`, the first) is always deployed by digest.
fn require_image_digest(p: &RunSecurityPolicySpec, s: &Subject<'_>) -> Option<String> {
    if !p.require_image_digest {
        return None;
    }
    let built = s.spec.build_repository().is_some();
    let unpinned: Vec<String> = s
        .spec
        .workload()
        .containers
        .iter()
        .enumerate()
        .filter(|(i, c)| !(is_pinned(&c.image) || (*i == 0 && built)))
        .map(|(i, _)| container_field(i))
        .collect();
    (!unpinned.is_empty()).then(|| unpinned.join(", ") + DIGEST_WHY)
}

fn require_image_digest_cel() -> String {
    let unpinned = containers_where(
        &format!(
            "!{S}.containers[i].image.matches({}) && !(i == 0 && {})",
            lit(DIGEST_RE),
            present(&format!("{S}.build"))
        ),
        &cel_container_field(),
    );
    format!(
        "(!{on} || size({unpinned}) == 0) ? '' : {unpinned}.join(', ') + {why}",
        on = flag("requireImageDigest"),
        why = lit(DIGEST_WHY)
    )
}

const BASE_IMAGE_WHY: &str = " must run with automatic base image updates: set its baseImageUri, or build it from source with spec.build.automaticUpdates";

/// The serving containers: those with a port, else the first.
fn serving(containers: &[crate::api::v1alpha1::Container]) -> Vec<usize> {
    let with_port: Vec<usize> = (0..containers.len())
        .filter(|i| !containers[*i].ports.is_empty())
        .collect();
    if with_port.is_empty() && !containers.is_empty() {
        vec![0]
    } else {
        with_port
    }
}

fn require_automatic_base_image_updates(
    p: &RunSecurityPolicySpec,
    s: &Subject<'_>,
) -> Option<String> {
    if !p.require_automatic_base_image_updates {
        return None;
    }
    let w = s.spec.workload();
    let built = s.spec.built_with_automatic_updates();
    let missing: Vec<String> = serving(w.containers)
        .into_iter()
        .filter(|i| w.containers[*i].base_image_uri.is_none() && !(*i == 0 && built))
        .map(container_field)
        .collect();
    (!missing.is_empty()).then(|| missing.join(", ") + BASE_IMAGE_WHY)
}

fn require_automatic_base_image_updates_cel() -> String {
    let ported = |c: &str| format!("(has({c}.ports) && size({c}.ports) > 0)");
    let serving = format!(
        "({} || (i == 0 && !{S}.containers.exists(c, {})))",
        ported(&format!("{S}.containers[i]")),
        ported("c")
    );
    let built = format!(
        "(i == 0 && {} && has({S}.build.automaticUpdates) && {S}.build.automaticUpdates == true)",
        present(&format!("{S}.build"))
    );
    let missing = containers_where(
        &format!(
            "{serving} && !{} && !{built}",
            present(&format!("{S}.containers[i].baseImageUri"))
        ),
        &cel_container_field(),
    );
    format!(
        "(!{on} || size({missing}) == 0) ? '' : {missing}.join(', ') + {why}",
        on = flag("requireAutomaticBaseImageUpdates"),
        why = lit(BASE_IMAGE_WHY)
    )
}

/// The project segment of `projects/{project}/locations/...`.
fn key_project(key: &str) -> &str {
    key.split('/').nth(1).unwrap_or(key)
}

fn allowed_kms_key_projects(p: &RunSecurityPolicySpec, s: &Subject<'_>) -> Option<String> {
    let key = s.spec.workload().kms_key?;
    let project = key_project(key);
    (!p.allowed_kms_key_projects.is_empty()
        && !p.allowed_kms_key_projects.iter().any(|a| a == project))
    .then(|| format!("spec.encryption.kmsKey project {project} is not in allowedKmsKeyProjects"))
}

fn allowed_kms_key_projects_cel() -> String {
    let key = format!("{S}.encryption.kmsKey");
    let project = format!("(size({key}.split('/')) > 1 ? {key}.split('/')[1] : {key})");
    format!(
        "(!{set} || !{enc} || {project} in {P}.allowedKmsKeyProjects) ? '' : 'spec.encryption.kmsKey project ' + {project} + ' is not in allowedKmsKeyProjects'",
        set = list_set("allowedKmsKeyProjects"),
        enc = present(&format!("{S}.encryption"))
    )
}

const MEMBER_DOMAINS_WHY: &str = " must be in allowedMemberDomains";

/// Whether IAM `member` is in one of the `allowed` domains: listed as it is (`allUsers` must
/// be), or (unless it is a `principal://` or `principalSet://` identity, which names no domain)
/// its e-mail's domain or `domain:`'s value is an allowed domain or below one.
pub fn member_in_domains(member: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|d| d == member)
        || (!member.starts_with("principal")
            && allowed.iter().any(|d| {
                member.ends_with(&format!("@{d}"))
                    || member.ends_with(&format!(".{d}"))
                    || member == format!("domain:{d}")
            }))
}

fn allowed_member_domains(p: &RunSecurityPolicySpec, s: &Subject<'_>) -> Option<String> {
    if p.allowed_member_domains.is_empty() {
        return None;
    }
    let outside: Vec<String> = s
        .spec
        .members()
        .into_iter()
        .filter_map(|(field, members)| {
            let bad: Vec<String> = members
                .into_iter()
                .filter(|m| !member_in_domains(m, &p.allowed_member_domains))
                .collect();
            (!bad.is_empty()).then(|| format!("{field} ({})", bad.join(", ")))
        })
        .collect();
    (!outside.is_empty()).then(|| outside.join(", ") + MEMBER_DOMAINS_WHY)
}

fn allowed_member_domains_cel() -> String {
    let domains = format!("{P}.allowedMemberDomains");
    let ok = |m: &str| {
        format!(
            "({m} in {domains} || (!{m}.startsWith('principal') && {domains}.exists(d, {m}.endsWith('@' + d) || {m}.endsWith('.' + d) || {m} == 'domain:' + d)))"
        )
    };
    let list = |field: &str| {
        let l = format!("{S}.access.{field}");
        let bad = format!("{l}.filter(m, !{})", ok("m"));
        format!(
            "((has({S}.access) && has({l}) && size({bad}) > 0) ? 'spec.access.{field} (' + {bad}.join(', ') + ')' : '')"
        )
    };
    let public = format!(
        "((has({S}.access) && has({S}.access.allowUnauthenticated) && {S}.access.allowUnauthenticated == true && !('allUsers' in {domains})) ? 'spec.access.allowUnauthenticated (allUsers)' : '')"
    );
    let sa = format!("('serviceAccount:' + {S}.schedule.serviceAccount)");
    let schedule = format!(
        "(({schedule_set} && has({S}.schedule.serviceAccount) && !{ok}) ? 'spec.schedule.serviceAccount (' + {sa} + ')' : '')",
        schedule_set = present(&format!("{S}.schedule")),
        ok = ok(&sa)
    );
    let parts = format!(
        "[{}, {public}, {}, {schedule}].filter(x, x != '')",
        list("invokers"),
        list("executors")
    );
    format!(
        "(!{set} || size({parts}) == 0) ? '' : {parts}.join(', ') + {why}",
        set = list_set("allowedMemberDomains"),
        why = lit(MEMBER_DOMAINS_WHY)
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::v1alpha1::{
        BinaryAuthorization, CloudRunServiceSpec, Container, Egress, Encryption,
        LocalObjectReference, RevocationAction,
    };

    const DIGEST: &str = "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn spec() -> CloudRunServiceSpec {
        serde_json::from_value(serde_json::json!({
            "region": "europe-west1",
            "containers": [{"image": format!("europe-docker.pkg.dev/prod/app/api{DIGEST}")}],
        }))
        .unwrap()
    }

    fn policy(json: serde_json::Value) -> RunSecurityPolicySpec {
        serde_json::from_value(json).unwrap()
    }

    /// Runs rule `name` of `policy` against `spec` (project `proj`).
    fn check(
        name: &str,
        policy: &RunSecurityPolicySpec,
        spec: &CloudRunServiceSpec,
        proj: Option<&str>,
    ) -> Option<String> {
        let labels = BTreeMap::new();
        let subject = Subject {
            spec,
            namespace: "team",
            namespace_labels: &labels,
            project: proj,
        };
        let rule = RULES.iter().find(|r| r.name == name).expect("rule exists");
        (rule.check)(policy, &subject)
    }

    #[test]
    fn every_rule_names_a_policy_field_once() {
        let fields = serde_json::to_value(policy(serde_json::json!({
            "allowedProjects": ["p"], "allowedRegions": ["r"], "allowedIngress": ["All"],
            "allowedImageRegistries": ["x"], "allowedKmsKeyProjects": ["k"], "allowedMemberDomains": ["example.com"],
            "requireEgressRouting": "AllTraffic", "namespaceSelector": {},
        })))
        .unwrap();
        let fields = fields.as_object().unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for rule in RULES {
            assert!(
                fields.contains_key(rule.name),
                "{} is a spec field",
                rule.name
            );
            assert!(seen.insert(rule.name), "{} twice", rule.name);
        }
        // Every spec field but the two that are not rules has a rule.
        assert_eq!(seen.len() + 2, fields.len(), "{fields:?}");
    }

    #[test]
    fn an_empty_policy_passes_anything() {
        let p = policy(serde_json::json!({}));
        let mut s = spec();
        s.access.allow_unauthenticated = true;
        s.containers[0].image = "docker.io/nginx".into();
        for rule in RULES {
            assert_eq!(
                check(rule.name, &p, &s, Some("any-project")),
                None,
                "{}",
                rule.name
            );
        }
    }

    #[test]
    fn allowed_projects_judges_the_resolved_project() {
        let p = policy(serde_json::json!({"allowedProjects": ["prod-a", "prod-b"]}));
        assert_eq!(check("allowedProjects", &p, &spec(), Some("prod-b")), None);
        assert_eq!(
            check("allowedProjects", &p, &spec(), Some("sandbox")).as_deref(),
            Some("project sandbox is not in allowedProjects")
        );
        // Unresolved (no spec, annotation or default): judged by the controller once resolved.
        assert_eq!(check("allowedProjects", &p, &spec(), None), None);
        assert_eq!(check("allowedProjects", &p, &spec(), Some("")), None);
    }

    #[test]
    fn allowed_regions() {
        let p = policy(serde_json::json!({"allowedRegions": ["europe-west1", "europe-west4"]}));
        assert_eq!(check("allowedRegions", &p, &spec(), None), None);
        let mut s = spec();
        s.region = "us-central1".into();
        assert_eq!(
            check("allowedRegions", &p, &s, None).as_deref(),
            Some("spec.region us-central1 is not in allowedRegions")
        );
        // Exact match, not prefix.
        s.region = "europe-west10".into();
        assert!(check("allowedRegions", &p, &s, None).is_some());
    }

    #[test]
    fn allowed_ingress_uses_the_default_internal() {
        let p = policy(
            serde_json::json!({"allowedIngress": ["Internal", "InternalAndCloudLoadBalancing"]}),
        );
        assert_eq!(
            check("allowedIngress", &p, &spec(), None),
            None,
            "default Internal"
        );
        let mut s = spec();
        s.ingress = Ingress::All;
        assert_eq!(
            check("allowedIngress", &p, &s, None).as_deref(),
            Some("spec.ingress All is not in allowedIngress")
        );
        s.ingress = Ingress::InternalAndCloudLoadBalancing;
        assert_eq!(check("allowedIngress", &p, &s, None), None);
    }

    #[test]
    fn forbid_unauthenticated() {
        let p = policy(serde_json::json!({"forbidUnauthenticated": true}));
        let mut s = spec();
        assert_eq!(check("forbidUnauthenticated", &p, &s, None), None);
        s.access.allow_unauthenticated = true;
        assert_eq!(
            check("forbidUnauthenticated", &p, &s, None).as_deref(),
            Some("spec.access.allowUnauthenticated must be false")
        );
        // Invokers are authenticated principals: allowed.
        s.access.allow_unauthenticated = false;
        s.access.invokers = vec!["domain:example.com".into()];
        assert_eq!(check("forbidUnauthenticated", &p, &s, None), None);
        // Without the invoker check anyone who reaches the service gets in.
        s.access.invoker_iam_disabled = true;
        assert_eq!(
            check("forbidUnauthenticated", &p, &s, None).as_deref(),
            Some("spec.access.invokerIamDisabled must be false")
        );
        s.access.allow_unauthenticated = true;
        assert_eq!(
            check("forbidUnauthenticated", &p, &s, None).as_deref(),
            Some(
                "spec.access.allowUnauthenticated must be false, spec.access.invokerIamDisabled must be false"
            )
        );
    }

    #[test]
    fn require_cmek() {
        let p = policy(serde_json::json!({"requireCmek": true}));
        let mut s = spec();
        assert_eq!(
            check("requireCmek", &p, &s, None).as_deref(),
            Some("spec.encryption.kmsKey is required")
        );
        s.encryption = Some(Box::new(Encryption {
            kms_key: "projects/kms/locations/europe-west1/keyRings/r/cryptoKeys/k".into(),
            revocation_action: RevocationAction::PreventNew,
            shutdown_hours: None,
            grant_service_agent: true,
        }));
        assert_eq!(check("requireCmek", &p, &s, None), None);
    }

    #[test]
    fn require_binary_authorization_needs_an_enforcing_setting() {
        let p = policy(serde_json::json!({"requireBinaryAuthorization": true}));
        let mut s = spec();
        let why = Some(BINAUTHZ_WHY.to_owned());
        assert_eq!(check("requireBinaryAuthorization", &p, &s, None), why);
        s.binary_authorization = Some(Box::new(BinaryAuthorization {
            use_default: Some(false),
            ..Default::default()
        }));
        assert_eq!(
            check("requireBinaryAuthorization", &p, &s, None),
            why,
            "useDefault: false"
        );
        s.binary_authorization = Some(Box::new(BinaryAuthorization {
            use_default: Some(true),
            breakglass_justification: Some("incident 42".into()),
            ..Default::default()
        }));
        assert_eq!(check("requireBinaryAuthorization", &p, &s, None), None);
        s.binary_authorization = Some(Box::new(BinaryAuthorization {
            policy: Some("projects/p/platforms/cloudRun/policies/strict".into()),
            ..Default::default()
        }));
        assert_eq!(check("requireBinaryAuthorization", &p, &s, None), None);
    }

    #[test]
    fn require_egress_routing_needs_egress_with_that_routing() {
        let p = policy(serde_json::json!({"requireEgressRouting": "AllTraffic"}));
        let mut s = spec();
        assert_eq!(
            check("requireEgressRouting", &p, &s, None).as_deref(),
            Some("spec.egress is required, with routing AllTraffic")
        );
        s.egress = Some(Box::new(Egress {
            connector_ref: Some(LocalObjectReference { name: "c".into() }),
            routing: EgressRouting::PrivateRangesOnly,
            ..Default::default()
        }));
        assert_eq!(
            check("requireEgressRouting", &p, &s, None).as_deref(),
            Some("spec.egress.routing must be AllTraffic")
        );
        s.egress.as_mut().unwrap().routing = EgressRouting::AllTraffic;
        assert_eq!(check("requireEgressRouting", &p, &s, None), None);
        let private = policy(serde_json::json!({"requireEgressRouting": "PrivateRangesOnly"}));
        assert!(check("requireEgressRouting", &private, &s, None).is_some());
    }

    #[test]
    fn require_dedicated_service_account() {
        let p = policy(serde_json::json!({"requireDedicatedServiceAccount": true}));
        let mut s = spec();
        let missing = Some("spec.serviceAccount must name a dedicated service account".to_owned());
        assert_eq!(
            check("requireDedicatedServiceAccount", &p, &s, None),
            missing
        );
        s.service_account = Some(String::new());
        assert_eq!(
            check("requireDedicatedServiceAccount", &p, &s, None),
            missing
        );
        s.service_account = Some("123456789-compute@developer.gserviceaccount.com".into());
        assert_eq!(
            check("requireDedicatedServiceAccount", &p, &s, None).as_deref(),
            Some(
                "spec.serviceAccount 123456789-compute@developer.gserviceaccount.com is the Compute Engine default service account"
            )
        );
        s.service_account = Some("api@prod.iam.gserviceaccount.com".into());
        assert_eq!(check("requireDedicatedServiceAccount", &p, &s, None), None);
    }

    #[test]
    fn allowed_image_registries_is_a_prefix_match_on_every_container() {
        let p =
            policy(serde_json::json!({"allowedImageRegistries": ["europe-docker.pkg.dev/prod/"]}));
        let mut s = spec();
        assert_eq!(check("allowedImageRegistries", &p, &s, None), None);
        s.containers.push(Container {
            image: "docker.io/envoyproxy/envoy:v1".into(),
            ..Default::default()
        });
        s.containers.push(Container {
            // A look-alike host is not under the prefix.
            image: "europe-docker.pkg.dev/prod-evil/x".into(),
            ..Default::default()
        });
        assert_eq!(
            check("allowedImageRegistries", &p, &s, None).as_deref(),
            Some(
                "spec.containers[1].image (docker.io/envoyproxy/envoy:v1), spec.containers[2].image (europe-docker.pkg.dev/prod-evil/x) must start with one of allowedImageRegistries"
            )
        );
    }

    #[test]
    fn require_image_digest_needs_a_full_sha256_on_every_container() {
        let p = policy(serde_json::json!({"requireImageDigest": true}));
        let mut s = spec();
        assert_eq!(check("requireImageDigest", &p, &s, None), None);
        s.containers.push(Container {
            image: "europe-docker.pkg.dev/prod/app/side:1.2".into(),
            ..Default::default()
        });
        s.containers.push(Container {
            image: "europe-docker.pkg.dev/prod/app/side@sha256:abc".into(),
            ..Default::default()
        });
        assert_eq!(
            check("requireImageDigest", &p, &s, None).as_deref(),
            Some(
                "spec.containers[1].image, spec.containers[2].image must be pinned by digest (@sha256:)"
            )
        );
        assert!(is_pinned(&format!("x:1{DIGEST}")));
        assert!(!is_pinned(&format!("x{}", DIGEST.to_uppercase())));
        assert!(!is_pinned(&format!("x{DIGEST}0")));
    }

    #[test]
    fn automatic_base_image_updates_need_a_base_image_on_the_serving_container_or_a_build() {
        let p = policy(serde_json::json!({"requireAutomaticBaseImageUpdates": true}));
        let mut s = spec();
        assert_eq!(
            check("requireAutomaticBaseImageUpdates", &p, &s, None).as_deref(),
            Some(format!("spec.containers[0].image{BASE_IMAGE_WHY}").as_str())
        );
        s.containers[0].base_image_uri = Some(Box::new("base".into()));
        assert_eq!(
            check("requireAutomaticBaseImageUpdates", &p, &s, None),
            None
        );
        s.containers[0].base_image_uri = None;
        s.build = Some(Box::new(
            serde_json::from_value(
                serde_json::json!({"source": {"bucket": "bkt", "object": "o", "generation": 1}}),
            )
            .unwrap(),
        ));
        assert_eq!(
            check("requireAutomaticBaseImageUpdates", &p, &s, None),
            None,
            "built with automaticUpdates (the default)"
        );
        s.build.as_mut().unwrap().automatic_updates = false;
        assert!(check("requireAutomaticBaseImageUpdates", &p, &s, None).is_some());
    }

    #[test]
    fn allowed_kms_key_projects_judges_the_key_project() {
        let p = policy(serde_json::json!({"allowedKmsKeyProjects": ["kms-prod"]}));
        let mut s = spec();
        assert_eq!(
            check("allowedKmsKeyProjects", &p, &s, None),
            None,
            "no key: requireCmek's job"
        );
        s.encryption = Some(Box::new(Encryption {
            kms_key: "projects/kms-prod/locations/europe-west1/keyRings/r/cryptoKeys/k".into(),
            revocation_action: RevocationAction::PreventNew,
            shutdown_hours: None,
            grant_service_agent: true,
        }));
        assert_eq!(check("allowedKmsKeyProjects", &p, &s, None), None);
        s.encryption.as_mut().unwrap().kms_key =
            "projects/kms-prod-copy/locations/europe-west1/keyRings/r/cryptoKeys/k".into();
        assert_eq!(
            check("allowedKmsKeyProjects", &p, &s, None).as_deref(),
            Some("spec.encryption.kmsKey project kms-prod-copy is not in allowedKmsKeyProjects")
        );
    }

    #[test]
    fn the_cel_walks_as_many_containers_as_the_crd_allows() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(crate::api::v1alpha1::CloudRunService::crd()).unwrap();
        let max = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["containers"]["maxItems"];
        assert_eq!(max.as_u64(), Some(MAX_CONTAINERS as u64));
    }

    #[test]
    fn every_rule_cel_is_balanced_and_mentions_its_field() {
        for rule in RULES {
            let cel = (rule.cel)();
            assert!(cel.contains(rule.name), "{}: {cel}", rule.name);
            let mut depth = 0i32;
            let mut quoted = false;
            let mut escaped = false;
            for c in cel.chars() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' if quoted => escaped = true,
                    '\'' => quoted = !quoted,
                    '(' | '[' if !quoted => depth += 1,
                    ')' | ']' if !quoted => depth -= 1,
                    _ => {}
                }
                assert!(depth >= 0, "{}: {cel}", rule.name);
            }
            assert!(depth == 0 && !quoted, "{}: {cel}", rule.name);
        }
    }

    #[test]
    fn allowed_member_domains_judges_every_member_a_service_grants() {
        let p = policy(
            serde_json::json!({"allowedMemberDomains": ["example.com", "gserviceaccount.com"]}),
        );
        let mut s = spec();
        assert_eq!(check("allowedMemberDomains", &p, &s, None), None);
        s.access.invokers = vec![
            "user:a@example.com".into(),
            "group:eu@eu.example.com".into(),
            "domain:example.com".into(),
            "serviceAccount:push@p.iam.gserviceaccount.com".into(),
        ];
        assert_eq!(check("allowedMemberDomains", &p, &s, None), None);
        s.access.invokers.extend([
            "user:eve@badexample.com".to_owned(),
            "user:bob@example.com.evil.io".to_owned(),
            "principal://iam.googleapis.com/locations/global/workforcePools/p/subject/x.example.com".to_owned(),
        ]);
        s.access.allow_unauthenticated = true;
        assert_eq!(
            check("allowedMemberDomains", &p, &s, None).as_deref(),
            Some(
                "spec.access.invokers (user:eve@badexample.com, user:bob@example.com.evil.io, principal://iam.googleapis.com/locations/global/workforcePools/p/subject/x.example.com), spec.access.allowUnauthenticated (allUsers) must be in allowedMemberDomains"
            )
        );
        // Public access must be listed as such.
        let p = policy(serde_json::json!({"allowedMemberDomains": ["allUsers"]}));
        s.access.invokers.clear();
        assert_eq!(check("allowedMemberDomains", &p, &s, None), None);
    }

    #[test]
    fn allowed_member_domains_judges_a_jobs_executors_and_its_schedule() {
        let job: crate::api::v1alpha1::CloudRunJobSpec =
            serde_json::from_value(serde_json::json!({
                "region": "europe-west1",
                "containers": [{"image": "europe-docker.pkg.dev/prod/app/export"}],
                "access": {"executors": ["group:data@example.com", "user:x@partner.io"]},
                "schedule": {"cron": "0 3 * * *", "serviceAccount": "cron@other.example.org"},
            }))
            .unwrap();
        let p = policy(serde_json::json!({"allowedMemberDomains": ["example.com"]}));
        let labels = BTreeMap::new();
        let subject = Subject::job(&job, "team", &labels, None);
        let rule = RULES
            .iter()
            .find(|r| r.name == "allowedMemberDomains")
            .unwrap();
        assert_eq!(
            (rule.check)(&p, &subject).as_deref(),
            Some(
                "spec.access.executors (user:x@partner.io), spec.schedule.serviceAccount (serviceAccount:cron@other.example.org) must be in allowedMemberDomains"
            )
        );
    }
}
