//! Pure functions: the Cloud Run job a `CloudRunJob` asks for, and how it differs from the one
//! Google has.
//!
//! A job's task template has the fields of a revision template that every Cloud Run workload
//! has: the containers, volumes, VPC access, key, identity and GPU. Those are rendered, shaped
//! and updated by the service's own [`TEMPLATE_ASPECTS`](crate::controller::cloudrunservice::render::TEMPLATE_ASPECTS),
//! on a revision template holding the task template's fields ([`as_revision`]); their shape
//! paths gain the job's extra `template.` level (`template.template.containers[0].image`). The
//! rest is the job's own: labels, Binary Authorization, the task count, parallelism, retries and
//! timeout, with Google's defaults folded in (1 task, 3 retries, 600 s) so that an unchanged spec
//! is no change.

use google_cloud_run_v2::model::{
    ExecutionTemplate, Job, RevisionTemplate, Service, TaskTemplate, task_template::Retries,
};
use google_cloud_wkt::Duration;

use crate::api::v1alpha1::CloudRunJob;
use crate::controller::cloudrunservice::render::{
    Resolved, Shape, differing, render_template, service, shape_template, update_template,
};

/// Cloud Run's default task count.
pub const DEFAULT_TASK_COUNT: i32 = 1;
/// Cloud Run's default retries of a failed task.
pub const DEFAULT_MAX_RETRIES: i32 = 3;
/// Cloud Run's default task timeout, in seconds.
pub const DEFAULT_TASK_TIMEOUT_SECONDS: i64 = 600;

/// Shape paths of the shared aspects that mean nothing for a job's tasks (they serve no port,
/// take no probes, and have no CPU allocation modes).
const NOT_FOR_JOBS: [&str; 6] = [
    ".ports",
    ".startupProbe",
    ".livenessProbe",
    ".readinessProbe",
    ".resources.cpuIdle",
    ".resources.startupCpuBoost",
];

/// The full Google name of the job.
pub fn job_name(obj: &CloudRunJob, project: &str) -> String {
    format!(
        "{}/jobs/{}",
        crate::controller::parent(project, &obj.spec.region),
        obj.job_id()
    )
}

/// The task timeout of the spec, in seconds (validation refuses what does not parse).
pub fn timeout_seconds(obj: &CloudRunJob) -> i64 {
    crate::duration::parse_duration(&obj.spec.tasks.timeout)
        .map_or(DEFAULT_TASK_TIMEOUT_SECONDS, |d| d.as_secs() as i64)
}

/// The Cloud Run job this object asks for (with `name` set; clear it to create), without an
/// execution token.
pub fn desired_job(obj: &CloudRunJob, resolved: &Resolved) -> Job {
    let spec = &obj.spec;
    let name = job_name(obj, &resolved.project);
    let mut revision = Service::new()
        .set_name(name.clone())
        .set_template(RevisionTemplate::new());
    render_template(&spec.workload(), resolved, &mut revision);
    let mut task = TaskTemplate::new()
        .set_max_retries(spec.tasks.max_retries)
        .set_timeout(Duration::clamp(timeout_seconds(obj), 0));
    into_task(revision.template.unwrap_or_default(), &mut task);
    for c in &mut task.containers {
        // A task has no CPU allocation modes: the revision's defaults are not sent.
        if let Some(r) = c.resources.as_mut() {
            r.cpu_idle = false;
            r.startup_cpu_boost = false;
        }
    }
    Job::new()
        .set_name(name)
        .set_labels(service::owned_labels(
            &spec.labels,
            obj.metadata.uid.as_deref().unwrap_or_default(),
        ))
        .set_or_clear_binary_authorization(service::binary_authorization(
            spec.binary_authorization.as_deref(),
        ))
        .set_template(
            ExecutionTemplate::new()
                .set_task_count(spec.tasks.count)
                .set_parallelism(spec.tasks.parallelism)
                .set_template(task),
        )
}

/// A revision template holding the fields a task template shares with it, inside a service
/// named like the job (the egress aspect reads the project and region from the name).
pub fn as_revision(job: &Job) -> Service {
    let task = job
        .template
        .as_ref()
        .and_then(|t| t.template.clone())
        .unwrap_or_default();
    let mut t = RevisionTemplate::new();
    t.containers = task.containers;
    t.volumes = task.volumes;
    t.vpc_access = task.vpc_access;
    t.service_account = task.service_account;
    t.execution_environment = task.execution_environment;
    t.encryption_key = task.encryption_key;
    t.node_selector = task.node_selector;
    t.gpu_zonal_redundancy_disabled = task.gpu_zonal_redundancy_disabled;
    Service::new().set_name(job.name.clone()).set_template(t)
}

/// Moves the shared fields of `revision` into `task` (the inverse of [`as_revision`]).
fn into_task(revision: RevisionTemplate, task: &mut TaskTemplate) {
    task.containers = revision.containers;
    task.volumes = revision.volumes;
    task.vpc_access = revision.vpc_access;
    task.service_account = revision.service_account;
    task.execution_environment = revision.execution_environment;
    task.encryption_key = revision.encryption_key;
    task.node_selector = revision.node_selector;
    task.gpu_zonal_redundancy_disabled = revision.gpu_zonal_redundancy_disabled;
}

fn task(job: &Job) -> TaskTemplate {
    job.template
        .as_ref()
        .and_then(|t| t.template.clone())
        .unwrap_or_default()
}

/// The managed fields of a job as canonical strings, by field path.
pub fn shape(job: &Job) -> Shape {
    let mut shared = Shape::new();
    shape_template(&as_revision(job), &mut shared);
    let mut s: Shape = shared
        .into_iter()
        .filter(|(k, _)| !NOT_FOR_JOBS.iter().any(|suffix| k.ends_with(suffix)))
        .map(|(k, v)| (format!("template.{k}"), v))
        .collect();
    s.insert("labels".into(), service::labels_shape(&job.labels));
    s.insert(
        "binaryAuthorization".into(),
        service::binauthz_shape(job.binary_authorization.as_ref()),
    );
    let execution = job.template.clone().unwrap_or_default();
    s.insert(
        "template.taskCount".into(),
        match execution.task_count {
            0 => DEFAULT_TASK_COUNT,
            n => n,
        }
        .to_string(),
    );
    s.insert(
        "template.parallelism".into(),
        execution.parallelism.to_string(),
    );
    let task = task(job);
    s.insert(
        "template.template.maxRetries".into(),
        match task.retries {
            Some(Retries::MaxRetries(n)) => n,
            _ => DEFAULT_MAX_RETRIES,
        }
        .to_string(),
    );
    s.insert(
        "template.template.timeout".into(),
        task.timeout
            .as_ref()
            .map_or(DEFAULT_TASK_TIMEOUT_SECONDS, Duration::seconds)
            .to_string(),
    );
    s
}

/// The managed fields where `actual` differs from `desired`, e.g.
/// `template.template.containers[0].image`.
pub fn changes(desired: &Job, actual: &Job) -> Vec<String> {
    differing(&shape(desired), &shape(actual))
}

/// The job to send: `actual` (Google's, whole: UpdateJob has no field mask, so what Google
/// filled in must go back) with every managed field replaced by `desired`'s.
pub fn update_from(actual: &Job, desired: &Job) -> Job {
    let mut out = actual.clone();
    out.labels = service::merged_labels(&actual.labels, &desired.labels);
    out.binary_authorization = desired.binary_authorization.clone();
    out.create_execution = None;
    let mut revision = as_revision(actual);
    update_template(&mut revision, &as_revision(desired));
    let want = desired.template.clone().unwrap_or_default();
    let execution = out.template.get_or_insert_with(ExecutionTemplate::default);
    execution.task_count = want.task_count;
    execution.parallelism = want.parallelism;
    let want_task = want.template.unwrap_or_default();
    let task = execution.template.get_or_insert_with(TaskTemplate::default);
    into_task(revision.template.unwrap_or_default(), task);
    task.retries = want_task.retries;
    task.timeout = want_task.timeout;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::v1alpha1::CloudRunJobSpec;

    fn job(spec: serde_json::Value) -> CloudRunJob {
        let mut base = serde_json::json!({
            "region": "europe-west1",
            "containers": [{"image": "europe-docker.pkg.dev/p1/jobs/export@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}],
        });
        base.as_object_mut()
            .unwrap()
            .extend(spec.as_object().unwrap().clone());
        let spec: CloudRunJobSpec = serde_json::from_value(base).unwrap();
        let mut obj = CloudRunJob::new("export", spec);
        obj.metadata.namespace = Some("team".into());
        obj.metadata.uid = Some("uid-1".into());
        obj
    }

    fn resolved() -> Resolved {
        Resolved {
            project: "p1".into(),
            connector: None,
            built: None,
        }
    }

    /// What Cloud Run answers for a job created from `desired`: its defaults filled in, as
    /// recorded (`run-job-*.real.http.log`).
    fn as_google_returns(desired: &Job) -> Job {
        let mut job = desired.clone();
        let execution = job.template.get_or_insert_with(Default::default);
        if execution.task_count == 0 {
            execution.task_count = 1;
        }
        let task = execution.template.get_or_insert_with(Default::default);
        let several = task.containers.len() > 1;
        for c in &mut task.containers {
            let r = c.resources.get_or_insert_with(Default::default);
            r.limits.entry("cpu".into()).or_insert("1000m".into());
            r.limits
                .entry("memory".into())
                .or_insert(if several { "256Mi" } else { "512Mi" }.into());
        }
        if task.service_account.is_empty() {
            task.service_account = "123-compute@developer.gserviceaccount.com".into();
        }
        task.execution_environment = google_cloud_run_v2::model::ExecutionEnvironment::Gen2;
        job.labels
            .insert("run.googleapis.com/satisfiesPzs".into(), "true".into());
        job.etag = "abc".into();
        job.generation = 1;
        job.observed_generation = 1;
        job
    }

    #[test]
    fn the_spec_maps_to_the_job_and_task_template() {
        let obj = job(serde_json::json!({
            "tasks": {"count": 20, "parallelism": 5, "maxRetries": 1, "timeout": "1h30m"},
            "serviceAccount": "export@p1.iam.gserviceaccount.com",
            "encryption": {"kmsKey": "projects/k/locations/europe-west1/keyRings/r/cryptoKeys/c"},
            "egress": {"directVpc": {"network": "default", "subnetwork": "jobs"}},
            "binaryAuthorization": {"useDefault": true},
            "labels": {"team": "data"},
        }));
        let j = desired_job(&obj, &resolved());
        assert_eq!(j.name, "projects/p1/locations/europe-west1/jobs/export");
        assert_eq!(j.labels["runwarden-owner"], "uid-1");
        assert_eq!(j.labels["team"], "data");
        let exec = j.template.as_ref().unwrap();
        assert_eq!((exec.task_count, exec.parallelism), (20, 5));
        let t = exec.template.as_ref().unwrap();
        assert_eq!(t.retries, Some(Retries::MaxRetries(1)));
        assert_eq!(t.timeout.as_ref().map(Duration::seconds), Some(5400));
        assert_eq!(t.service_account, "export@p1.iam.gserviceaccount.com");
        assert_eq!(
            t.encryption_key,
            "projects/k/locations/europe-west1/keyRings/r/cryptoKeys/c"
        );
        let nic = &t.vpc_access.as_ref().unwrap().network_interfaces[0];
        assert_eq!(
            nic.subnetwork,
            "projects/p1/regions/europe-west1/subnetworks/jobs"
        );
        assert!(j.binary_authorization.is_some());
        assert!(t.containers[0].ports.is_empty(), "a task serves no port");
    }

    #[test]
    fn what_google_returns_for_an_unchanged_spec_is_no_change() {
        for spec in [
            serde_json::json!({}),
            serde_json::json!({"tasks": {"count": 3, "maxRetries": 0, "timeout": "10m"}}),
            serde_json::json!({"containers": [
                {"name": "a", "image": "europe-docker.pkg.dev/p1/jobs/a:1", "resources": {"cpu": "2", "memory": "1Gi"}},
                {"name": "b", "image": "europe-docker.pkg.dev/p1/jobs/b:1", "dependsOn": ["a"]},
            ]}),
        ] {
            let desired = desired_job(&job(spec.clone()), &resolved());
            let actual = as_google_returns(&desired);
            assert_eq!(changes(&desired, &actual), Vec::<String>::new(), "{spec}");
        }
    }

    #[test]
    fn each_changed_field_is_named_with_the_jobs_paths() {
        let desired = desired_job(
            &job(serde_json::json!({"tasks": {"count": 2, "timeout": "20m"}})),
            &resolved(),
        );
        let mut actual = as_google_returns(&desired);
        let t = actual.template.as_mut().unwrap();
        t.task_count = 1;
        let task = t.template.as_mut().unwrap();
        task.containers[0].image = "evil/image:latest".into();
        task.timeout = Some(Duration::clamp(600, 0));
        assert_eq!(
            changes(&desired, &actual),
            [
                "template.taskCount",
                "template.template.containers[0].image",
                "template.template.timeout",
            ]
        );
        let update = update_from(&actual, &desired);
        assert_eq!(changes(&desired, &update), Vec::<String>::new());
        assert_eq!(update.etag, "abc", "the whole job goes back, etag included");
        assert_eq!(
            update.labels["run.googleapis.com/satisfiesPzs"], "true",
            "Google's labels are kept"
        );
    }
}
