//! Google's predefined roles, as far as the emulated permissions go: which role grants which
//! permission. A role is a list of permission patterns it includes and a list it excludes; a
//! pattern is `service.resource.verb` where `*` stands for any one part (`run.*.*`, `*.*.get`) and
//! a lone `*` for every permission. Custom roles and roles not listed grant nothing.

/// (role, included patterns, excluded patterns).
type RoleDef = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);

const READ: &[&str] = &["*.*.get", "*.*.list", "*.*.getIamPolicy"];
/// What only the token creator role grants: `*` does not cover these (owners and editors cannot
/// mint tokens of a service account without it, as in Google).
const TOKEN: &[&str] = &[
    "iam.serviceAccounts.getAccessToken",
    "iam.serviceAccounts.implicitDelegation",
    "iam.serviceAccounts.getOpenIdToken",
    "iam.serviceAccounts.signBlob",
    "iam.serviceAccounts.signJwt",
];

/// The roles the emulator knows. Service roles also grant `resourcemanager.projects.get` (and
/// `list`), as Google's do.
#[rustfmt::skip]
pub(crate) static ROLES: &[RoleDef] = &[
    ("roles/owner",                                &["*"], &[]),
    ("roles/editor",                               &["*"], &["*.*.setIamPolicy"]),
    ("roles/viewer",                               READ, &[]),
    ("roles/browser",                              &["resourcemanager.projects.get", "resourcemanager.projects.list"], &[]),
    ("roles/run.admin",                            &["run.*.*", "resourcemanager.projects.get", "resourcemanager.projects.list"], &[]),
    ("roles/run.developer",                        &["run.*.*", "resourcemanager.projects.get", "resourcemanager.projects.list"], &["run.*.setIamPolicy"]),
    ("roles/run.viewer",                           &["run.*.get", "run.*.list", "run.*.getIamPolicy", "resourcemanager.projects.get", "resourcemanager.projects.list"], &[]),
    ("roles/run.invoker",                          &["run.routes.invoke", "run.jobs.run"], &[]),
    ("roles/run.jobsExecutor",                     &["run.jobs.run", "run.executions.cancel", "run.jobs.get", "run.jobs.list", "run.executions.get", "run.executions.list"], &[]),
    ("roles/run.jobsExecutorWithOverrides",        &["run.jobs.run", "run.jobs.runWithOverrides", "run.executions.cancel", "run.jobs.get", "run.jobs.list", "run.executions.get", "run.executions.list"], &[]),
    ("roles/cloudscheduler.admin",                 &["cloudscheduler.*.*", "resourcemanager.projects.get", "resourcemanager.projects.list"], &[]),
    ("roles/cloudscheduler.viewer",                &["cloudscheduler.*.get", "cloudscheduler.*.list", "resourcemanager.projects.get", "resourcemanager.projects.list"], &[]),
    ("roles/cloudscheduler.jobRunner",             &["cloudscheduler.jobs.run"], &[]),
    ("roles/cloudkms.admin",                       &["cloudkms.*.*", "resourcemanager.projects.get", "resourcemanager.projects.list"], &["cloudkms.cryptoKeyVersions.useToEncrypt", "cloudkms.cryptoKeyVersions.useToDecrypt"]),
    ("roles/cloudkms.viewer",                      &["cloudkms.*.get", "cloudkms.*.list", "resourcemanager.projects.get", "resourcemanager.projects.list"], &[]),
    ("roles/cloudkms.cryptoKeyEncrypterDecrypter", &["cloudkms.cryptoKeyVersions.useToEncrypt", "cloudkms.cryptoKeyVersions.useToDecrypt", "cloudkms.locations.get", "cloudkms.locations.list", "resourcemanager.projects.get"], &[]),
    ("roles/cloudbuild.builds.editor",             &["cloudbuild.*.*", "resourcemanager.projects.get", "resourcemanager.projects.list"], &[]),
    ("roles/cloudbuild.builds.viewer",             &["cloudbuild.*.get", "cloudbuild.*.list", "resourcemanager.projects.get", "resourcemanager.projects.list"], &[]),
    ("roles/vpcaccess.admin",                      &["vpcaccess.*.*", "resourcemanager.projects.get", "resourcemanager.projects.list"], &[]),
    ("roles/vpcaccess.viewer",                     &["vpcaccess.*.get", "vpcaccess.*.list", "resourcemanager.projects.get", "resourcemanager.projects.list"], &[]),
    ("roles/iam.serviceAccountUser",               &["iam.serviceAccounts.actAs", "iam.serviceAccounts.get", "iam.serviceAccounts.list", "resourcemanager.projects.get", "resourcemanager.projects.list"], &[]),
    ("roles/iam.serviceAccountTokenCreator",       TOKEN, &[]),
    ("roles/resourcemanager.projectIamAdmin",      &["resourcemanager.projects.getIamPolicy", "resourcemanager.projects.setIamPolicy"], &[]),
];

/// Whether `pattern` covers `permission`.
fn covers(pattern: &str, permission: &str) -> bool {
    if pattern == "*" {
        return !TOKEN.contains(&permission);
    }
    let (p, q): (Vec<&str>, Vec<&str>) = (
        pattern.split('.').collect(),
        permission.split('.').collect(),
    );
    p.len() == q.len() && p.iter().zip(&q).all(|(a, b)| *a == "*" || a == b)
}

/// Whether `role` grants `permission`.
pub(crate) fn grants(role: &str, permission: &str) -> bool {
    ROLES.iter().any(|(name, include, exclude)| {
        *name == role
            && include.iter().any(|p| covers(p, permission))
            && !exclude.iter().any(|p| covers(p, permission))
    })
}

#[cfg(test)]
mod tests {
    use super::grants;

    #[test]
    fn google_roles() {
        assert!(grants("roles/run.admin", "run.services.setIamPolicy"));
        assert!(grants("roles/run.developer", "run.services.create"));
        assert!(!grants("roles/run.developer", "run.services.setIamPolicy"));
        assert!(grants("roles/run.viewer", "run.services.get"));
        assert!(!grants("roles/run.viewer", "run.services.update"));
        assert!(grants("roles/owner", "cloudkms.cryptoKeys.setIamPolicy"));
        assert!(!grants("roles/owner", "iam.serviceAccounts.getAccessToken"));
        assert!(grants("roles/editor", "iam.serviceAccounts.actAs"));
        assert!(!grants(
            "roles/editor",
            "resourcemanager.projects.setIamPolicy"
        ));
        assert!(grants(
            "roles/viewer",
            "resourcemanager.projects.getIamPolicy"
        ));
        assert!(!grants("roles/viewer", "run.services.create"));
        assert!(grants(
            "roles/iam.serviceAccountTokenCreator",
            "iam.serviceAccounts.getAccessToken"
        ));
        assert!(!grants("projects/p/roles/custom", "run.services.get"));
        assert!(grants("roles/run.invoker", "run.jobs.run"));
        assert!(!grants("roles/run.invoker", "run.jobs.runWithOverrides"));
        assert!(grants("roles/run.developer", "run.jobs.runWithOverrides"));
        assert!(grants("roles/run.jobsExecutor", "run.executions.cancel"));
        assert!(grants(
            "roles/cloudscheduler.admin",
            "cloudscheduler.jobs.enable"
        ));
    }
}
