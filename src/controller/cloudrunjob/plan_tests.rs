//! Passes of the CloudRunJob pipeline (observe → plan → act → status) against the in-memory
//! fake Google: each test states the Google calls it expects, pass by pass.

use super::*;
use crate::api::v1alpha1::{CloudRunJobSpec, status};
use crate::controller::cloudrunjob::{JOB_READY, POLICY_COMPLIANT, pass};
use crate::controller::cloudrunservice::plan::NoOwners;
use crate::controller::conditions;
use crate::controller::context::ProjectNumbers;
use crate::gcp::Code;
use crate::gcp::fake::FakeGcp;

const NAME: &str = "projects/p1/locations/europe-west1/jobs/export";
const SCHEDULE: &str = "projects/p1/locations/europe-west1/jobs/export";

struct World {
    google: FakeGcp,
    numbers: ProjectNumbers,
    obj: CloudRunJob,
}

#[derive(Debug)]
struct Pass {
    calls: Vec<String>,
    events: Vec<&'static str>,
    outcome: &'static str,
    status_changed: bool,
}

impl World {
    fn new(spec: serde_json::Value) -> Self {
        let mut base = serde_json::json!({
            "region": "europe-west1",
            "containers": [{"image": "europe-docker.pkg.dev/p1/jobs/export@sha256:1111111111111111111111111111111111111111111111111111111111111111"}],
        });
        if let (Some(b), Some(extra)) = (base.as_object_mut(), spec.as_object()) {
            b.extend(extra.clone());
        }
        let spec: CloudRunJobSpec = serde_json::from_value(base).unwrap();
        let mut obj = CloudRunJob::new("export", spec);
        obj.metadata.namespace = Some("team".into());
        obj.metadata.uid = Some("uid-1".into());
        obj.metadata.generation = Some(1);
        Self {
            google: FakeGcp::new(),
            numbers: ProjectNumbers::default(),
            obj,
        }
    }

    fn input(&self) -> Input<'_> {
        Input {
            obj: &self.obj,
            project: Some("p1".into()),
            connector: None,
            policy: Cond::ok(POLICY_COMPLIANT, NO_POLICY, "none"),
            identity: Ok(crate::gcp::identity::Identity::Controller),
            owners: &NoOwners,
        }
    }

    async fn pass(&mut self) -> Pass {
        self.google.take_calls();
        let (status, applied) = pass(&self.input(), &self.google.gcp(), &self.numbers).await;
        let outcome = match &applied.outcome {
            Outcome::InSync => "InSync",
            Outcome::Progressing => "Progressing",
            Outcome::Stop(e) => e.metric_label(),
        };
        let status_changed = self.obj.status.as_ref() != Some(&status);
        self.obj.status = Some(status);
        Pass {
            calls: self.google.take_calls(),
            events: applied.notes.iter().map(|n| n.reason).collect(),
            outcome,
            status_changed,
        }
    }

    /// The Cloud Scheduler job the status records, if any.
    fn schedule_name(&self) -> Option<&str> {
        let status = self.obj.status.as_ref()?;
        status.schedule.as_ref().map(|s| s.resource_name.as_str())
    }

    fn condition(&self, type_: &str) -> (String, String) {
        let c = conditions::find(&self.obj.status.as_ref().unwrap().conditions, type_)
            .unwrap_or_else(|| panic!("no {type_} in {:?}", self.obj.status));
        (c.status.to_string(), c.reason.to_string())
    }

    fn edit(&mut self, f: impl FnOnce(&mut CloudRunJobSpec)) {
        f(&mut self.obj.spec);
        let g = self.obj.metadata.generation.unwrap_or_default();
        self.obj.metadata.generation = Some(g + 1);
    }
}

fn scheduled() -> serde_json::Value {
    serde_json::json!({
        "access": {"executors": ["group:data@example.com"]},
        "schedule": {"cron": "0 3 * * *", "timeZone": "Europe/Berlin", "serviceAccount": "scheduler@p1.iam.gserviceaccount.com"},
    })
}

#[tokio::test]
async fn a_scheduled_job_is_created_with_its_executors_and_schedule_then_resyncs_without_writes() {
    let mut w = World::new(scheduled());
    let p = w.pass().await;
    assert_eq!(p.calls, ["run.jobs.create"]);
    assert_eq!(
        (p.events.as_slice(), p.outcome),
        (&["Creating"][..], "Progressing")
    );

    let p = w.pass().await;
    assert_eq!(
        p.calls,
        [
            "run.operations.get",
            "run.jobs.getIamPolicy",
            "run.jobs.setIamPolicy",
            "cloudscheduler.jobs.create",
        ],
        "a schedule never recorded in status is created without reading first"
    );
    assert_eq!(p.events, ["Created", "ExecutorsUpdated", "ScheduleCreated"]);
    assert_eq!(p.outcome, "InSync");
    assert_eq!(w.condition("Ready"), (status::TRUE.into(), "Ready".into()));
    assert_eq!(w.condition("ScheduleReady").1, "Scheduled");

    // The schedule's account may execute the job: its first tick is never denied.
    let policy = w.google.policy(NAME).unwrap();
    let members: Vec<_> = policy
        .bindings
        .iter()
        .filter(|b| b.role == "roles/run.invoker")
        .flat_map(|b| b.members.clone())
        .collect();
    assert_eq!(
        members,
        [
            "group:data@example.com",
            "serviceAccount:scheduler@p1.iam.gserviceaccount.com"
        ]
    );
    let s = w.google.scheduler_job(SCHEDULE).unwrap();
    assert_eq!(
        (s.schedule.as_str(), s.time_zone.as_str()),
        ("0 3 * * *", "Europe/Berlin")
    );
    assert_eq!(
        s.description,
        "managed-by: runwarden, runwarden-owner: uid-1"
    );
    let target = s.http_target().unwrap();
    assert_eq!(
        target.uri,
        format!("https://run.googleapis.com/v2/{NAME}:run")
    );
    assert_eq!(
        target.oauth_token().unwrap().service_account_email,
        "scheduler@p1.iam.gserviceaccount.com"
    );
    assert_eq!(w.schedule_name(), Some(SCHEDULE));

    // A no-op resync: reads only, and the status is left as it is.
    let p = w.pass().await;
    assert_eq!(
        p.calls,
        [
            "run.jobs.get",
            "run.jobs.getIamPolicy",
            "cloudscheduler.jobs.get"
        ]
    );
    assert!(p.events.is_empty(), "{:?}", p.events);
    assert_eq!(p.outcome, "InSync");
    assert!(!p.status_changed);
}

#[tokio::test]
async fn schedule_changes_are_patches_pause_resume_and_removal_deletes_it() {
    let mut w = World::new(scheduled());
    w.pass().await;
    w.pass().await;
    w.edit(|s| {
        let sched = s.schedule.as_mut().unwrap();
        sched.cron = "30 4 * * 1-5".into();
        sched.paused = true;
    });
    let p = w.pass().await;
    assert_eq!(
        p.calls,
        [
            "run.jobs.get",
            "run.jobs.getIamPolicy",
            "cloudscheduler.jobs.get",
            "cloudscheduler.jobs.patch",
            "cloudscheduler.jobs.pause"
        ]
    );
    assert_eq!(w.condition("ScheduleReady").1, "Paused");
    let s = w.google.scheduler_job(SCHEDULE).unwrap();
    assert_eq!(s.schedule, "30 4 * * 1-5");
    w.edit(|s| s.schedule.as_mut().unwrap().paused = false);
    let p = w.pass().await;
    assert!(
        p.calls.contains(&"cloudscheduler.jobs.resume".to_owned()),
        "{:?}",
        p.calls
    );

    w.edit(|s| s.schedule = None);
    let p = w.pass().await;
    assert_eq!(
        p.calls,
        [
            "run.jobs.get",
            "run.jobs.getIamPolicy",
            "cloudscheduler.jobs.get",
            "run.jobs.setIamPolicy",
            "cloudscheduler.jobs.delete"
        ],
        "the account leaves the executors and the Scheduler job goes"
    );
    assert!(w.google.scheduler_job(SCHEDULE).is_none());
    assert_eq!(w.condition("ScheduleReady").1, NOT_CONFIGURED);
    assert_eq!(w.obj.status.as_ref().unwrap().schedule, None);
    let p = w.pass().await;
    assert_eq!(p.calls, ["run.jobs.get", "run.jobs.getIamPolicy"]);
}

#[tokio::test]
async fn a_run_token_starts_one_execution_that_job_ready_follows() {
    let mut w = World::new(serde_json::json!({"execution": {"runToken": "first"}}));
    let p = w.pass().await;
    assert_eq!(p.calls, ["run.jobs.create"]);
    let p = w.pass().await;
    assert_eq!(
        p.calls,
        [
            "run.operations.get",
            "run.executions.get",
            "run.jobs.getIamPolicy"
        ]
    );
    assert_eq!(p.events, ["Created", "ExecutionStarted"]);
    assert_eq!(p.outcome, "Progressing");
    assert_eq!(
        w.condition(JOB_READY),
        (status::UNKNOWN.into(), EXECUTION_RUNNING.into())
    );
    let exec = format!("{NAME}/executions/export-first");
    let latest = w
        .obj
        .status
        .as_ref()
        .unwrap()
        .latest_execution
        .clone()
        .unwrap();
    assert_eq!(
        (latest.name.as_str(), latest.state.as_str()),
        ("export-first", "Running")
    );
    assert_eq!(latest.token.as_deref(), Some("first"));

    w.google.finish_execution(&exec, true);
    let p = w.pass().await;
    assert_eq!(
        p.calls,
        [
            "run.jobs.get",
            "run.jobs.getIamPolicy",
            "run.executions.get"
        ]
    );
    assert_eq!(p.events, ["ExecutionSucceeded"]);
    assert_eq!(p.outcome, "InSync");
    assert_eq!(w.condition("Ready"), (status::TRUE.into(), "Ready".into()));
    assert_eq!(w.condition(JOB_READY).1, "ExecutionSucceeded");

    // A finished execution is not read again, and the token is not sent again.
    let p = w.pass().await;
    assert_eq!(p.calls, ["run.jobs.get", "run.jobs.getIamPolicy"]);
    assert!(!p.status_changed);

    // A new token: one more execution, through an update carrying only the token (after
    // checking Google has not started it already, e.g. before a lost status write).
    w.edit(|s| s.execution.as_mut().unwrap().run_token = Some("second".into()));
    let p = w.pass().await;
    assert_eq!(
        p.calls,
        [
            "run.jobs.get",
            "run.executions.get",
            "run.jobs.getIamPolicy",
            "run.jobs.patch"
        ]
    );
    assert_eq!(p.events, ["Updated"]);
    let p = w.pass().await;
    assert!(p.calls.contains(&"run.executions.get".to_owned()));
    w.google
        .finish_execution(&format!("{NAME}/executions/export-second"), false);
    let p = w.pass().await;
    assert_eq!(p.events, ["ExecutionFailed"]);
    assert_eq!(p.outcome, EXECUTION_FAILED);
    assert_eq!(
        w.condition(JOB_READY),
        (status::FALSE.into(), EXECUTION_FAILED.into())
    );
    assert_eq!(w.condition("Ready").1, EXECUTION_FAILED);
    assert_eq!(
        w.obj
            .status
            .as_ref()
            .unwrap()
            .latest_execution
            .as_ref()
            .unwrap()
            .state,
        "Failed"
    );
}

#[tokio::test]
async fn a_spec_change_updates_the_whole_job_and_ignored_images_are_kept() {
    let mut w = World::new(serde_json::json!({"tasks": {"count": 2}}));
    w.pass().await;
    w.pass().await;
    w.edit(|s| s.tasks.count = 4);
    let p = w.pass().await;
    assert_eq!(
        p.calls,
        ["run.jobs.get", "run.jobs.getIamPolicy", "run.jobs.patch"]
    );
    w.pass().await;
    let job = w.google.job(NAME).unwrap();
    assert_eq!(job.template.as_ref().unwrap().task_count, 4);

    // An image rolled by a pipeline stays with ignoreDrift: [Image].
    w.edit(|s| s.ignore_drift = vec![crate::api::v1alpha1::DriftAspect::Image]);
    let mut job = w.google.job(NAME).unwrap();
    let task = job.template.as_mut().unwrap().template.as_mut().unwrap();
    task.containers[0].image = "europe-docker.pkg.dev/p1/jobs/export:ci-42".into();
    w.google.put_job(job);
    let p = w.pass().await;
    assert_eq!(p.calls, ["run.jobs.get", "run.jobs.getIamPolicy"]);
}

#[tokio::test]
async fn a_schedule_created_before_its_status_was_written_is_found_and_taken_as_ours() {
    let mut w = World::new(scheduled());
    w.pass().await;
    w.pass().await;
    assert_eq!(w.condition("Ready").0, status::TRUE);
    // Stopped between Cloud Scheduler's answer and the status write.
    w.obj.status.as_mut().unwrap().schedule = None;
    let p = w.pass().await;
    assert_eq!(
        p.calls,
        [
            "run.jobs.get",
            "run.jobs.getIamPolicy",
            "cloudscheduler.jobs.create",
            "run.jobs.get",
            "run.jobs.getIamPolicy",
            "cloudscheduler.jobs.get",
        ],
        "refused as existing, then the pass again from a read: the schedule is ours"
    );
    assert_eq!(p.outcome, "InSync");
    assert_eq!(w.condition("ScheduleReady").1, "Scheduled");
    assert_eq!(w.schedule_name(), Some(SCHEDULE));
}

#[tokio::test]
async fn a_job_someone_else_created_is_refused_and_deleting_removes_schedule_then_job() {
    let mut w = World::new(scheduled());
    let mut foreign = crate::controller::cloudrunjob::render::desired_job(
        &w.obj,
        &crate::controller::cloudrunservice::render::Resolved {
            project: "p1".into(),
            connector: None,
            built: None,
        },
    );
    foreign
        .labels
        .insert("runwarden-owner".into(), "someone-else".into());
    w.google.put_job(foreign);
    let p = w.pass().await;
    assert_eq!(
        p.calls,
        ["run.jobs.create", "run.jobs.get"],
        "refused as existing, then read and refused"
    );
    assert_eq!(p.outcome, ALREADY_EXISTS);
    assert_eq!(w.condition(JOB_READY).1, ALREADY_EXISTS);
    assert!(
        w.google.scheduler_job(SCHEDULE).is_none(),
        "nothing else is made"
    );

    let mut w = World::new(scheduled());
    w.pass().await;
    w.pass().await;
    w.google.take_calls();
    let gcp = w.google.gcp();
    let input = w.input();
    let plan =
        crate::controller::observe_and_plan(&gcp, &w.numbers, |o| plan_cleanup(&input, o)).await;
    let cleaned = super::super::act::execute_cleanup(plan, &gcp).await;
    assert_eq!(
        w.google.take_calls(),
        [
            "cloudscheduler.jobs.get",
            "run.jobs.get",
            "cloudscheduler.jobs.delete",
            "run.jobs.delete"
        ]
    );
    assert!(w.google.scheduler_job(SCHEDULE).is_none());
    assert!(matches!(cleaned.outcome, CleanupOutcome::Wait { .. }));
}

#[tokio::test]
async fn a_refused_scheduler_create_is_a_condition_and_the_job_keeps_its_executors() {
    let mut w = World::new(scheduled());
    w.pass().await;
    w.google
        .fail("cloudscheduler.jobs.create", Code::PermissionDenied, 1);
    let p = w.pass().await;
    assert_eq!(p.outcome, "PermissionDenied");
    assert_eq!(w.condition("ScheduleReady").1, PERMISSION_DENIED);
    assert_eq!(w.condition("AccessReady").0, status::TRUE);
    assert!(
        w.google.policy(NAME).is_some(),
        "executors granted before the schedule"
    );
    // The name was recorded before the call: the next pass finds it absent and creates it.
    let p = w.pass().await;
    assert!(p.calls.contains(&"cloudscheduler.jobs.create".to_owned()));
    assert_eq!(w.condition("Ready").0, status::TRUE, "{:?}", w.obj.status);
}

#[tokio::test]
async fn observe_reports_what_differs_and_writes_nothing() {
    let mut w = World::new(scheduled());
    w.obj.spec.management_policy = crate::api::v1alpha1::ManagementPolicy::Observe;
    let p = w.pass().await;
    assert_eq!(
        p.calls,
        ["run.jobs.get"],
        "a missing job is reported, not created"
    );
    assert_eq!(w.condition(JOB_READY).1, DRIFTED);
    assert_eq!(w.obj.status.as_ref().unwrap().drift, ["job"]);

    // Someone else's job of that name, with another task count and no executors.
    let mut theirs = crate::controller::cloudrunjob::render::desired_job(
        &w.obj,
        &crate::controller::cloudrunservice::render::Resolved {
            project: "p1".into(),
            connector: None,
            built: None,
        },
    );
    theirs.labels.remove("runwarden-owner");
    theirs.template.as_mut().unwrap().task_count = 5;
    w.google.put_job(theirs);
    let p = w.pass().await;
    assert!(
        p.calls
            .iter()
            .all(|c| c.ends_with(".get") || c.ends_with("getIamPolicy")),
        "reads only: {:?}",
        p.calls
    );
    assert_eq!(w.condition(JOB_READY).1, DRIFTED);
    assert_eq!(w.condition("AccessReady").1, DRIFTED);
    assert_eq!(w.condition("ScheduleReady").1, DRIFTED);
    let drift = &w.obj.status.as_ref().unwrap().drift;
    assert!(
        drift.contains(&"template.taskCount".to_owned()),
        "{drift:?}"
    );
    assert!(drift.contains(&"access.executors".to_owned()), "{drift:?}");
    assert!(w.google.scheduler_job(SCHEDULE).is_none());
}

/// `access.mode: Additive` on a job: the executors and the schedule's account are granted, a
/// Workflows account someone else granted stays, and only runwarden's own grants leave with the
/// spec (the same stage as a service's invokers).
#[tokio::test]
async fn additive_executors_keep_what_others_granted() {
    let mut spec = scheduled();
    spec["access"]["mode"] = "Additive".into();
    let mut w = World::new(spec);
    w.pass().await;
    w.pass().await;
    let invokers = |w: &World| -> Vec<String> {
        let mut m: Vec<String> = w
            .google
            .policy(NAME)
            .unwrap()
            .bindings
            .iter()
            .filter(|b| b.role == "roles/run.invoker")
            .flat_map(|b| b.members.clone())
            .collect();
        m.sort();
        m
    };
    let ours = [
        "group:data@example.com",
        "serviceAccount:scheduler@p1.iam.gserviceaccount.com",
    ];
    assert_eq!(invokers(&w), ours);
    let granted = |w: &World| {
        w.obj
            .status
            .as_ref()
            .unwrap()
            .access
            .clone()
            .unwrap()
            .granted
    };
    assert_eq!(granted(&w), ours);

    // A Workflows account is granted by someone else; the next resync writes nothing.
    let workflows = "serviceAccount:workflows@p1.iam.gserviceaccount.com";
    let mut policy = w.google.policy(NAME).unwrap();
    policy
        .bindings
        .iter_mut()
        .find(|b| b.role == "roles/run.invoker")
        .unwrap()
        .members
        .push(workflows.into());
    w.google.put_policy(NAME, policy);
    let p = w.pass().await;
    assert!(
        !p.calls.iter().any(|c| c.ends_with("setIamPolicy")),
        "{:?}",
        p.calls
    );
    assert_eq!(p.outcome, "InSync");

    // The executors leave the spec: runwarden's grant goes, the Workflows account stays.
    w.edit(|s| s.access.executors.clear());
    let p = w.pass().await;
    assert!(
        p.calls.contains(&"run.jobs.setIamPolicy".to_owned()),
        "{:?}",
        p.calls
    );
    assert_eq!(
        invokers(&w),
        [
            "serviceAccount:scheduler@p1.iam.gserviceaccount.com",
            workflows
        ]
    );
    assert_eq!(
        granted(&w),
        ["serviceAccount:scheduler@p1.iam.gserviceaccount.com"]
    );
}
