//! Cloud Scheduler v1 driven through the official google-cloud-scheduler-v1 client, and its runs
//! of the emulator's own Cloud Run jobs as the OAuth token's service account.

mod common;

use std::time::Duration;

use common::*;
use google_cloud_gax::error::rpc::Code;
use google_cloud_run_v2::model::execution_reference::CompletionStatus;
use google_cloud_scheduler_v1::model::{HttpMethod, HttpTarget, Job, OAuthToken, job::State};

/// Cloud Run job `hello`, which `runner` may run (`roles/run.invoker` on the job).
async fn hello_runnable_by(emu: &runwarden_emulator::Emulator, runner: &str) -> TestResult {
    create_job(&jobs(emu).await, "hello", hello_job()).await?;
    grant(
        emu,
        &format!("/v2/{}", job_name("hello")),
        "roles/run.invoker",
        runner,
    )
    .await;
    Ok(())
}

fn scheduler_job_name(id: &str) -> String {
    format!("{}/jobs/{id}", parent())
}

/// A Scheduler job that runs Cloud Run job `run_job` as `account`, the way runwarden writes it.
fn runs(id: &str, run_job: &str, schedule: &str, account: &str) -> Job {
    Job::new()
        .set_name(scheduler_job_name(id))
        .set_description("managed-by: runwarden")
        .set_schedule(schedule)
        .set_http_target(
            HttpTarget::new()
                .set_uri(format!(
                    "https://run.googleapis.com/v2/{}:run",
                    job_name(run_job)
                ))
                .set_http_method(HttpMethod::Post)
                .set_oauth_token(OAuthToken::new().set_service_account_email(account)),
        )
}

async fn create(
    emu: &runwarden_emulator::Emulator,
    job: Job,
) -> Result<Job, google_cloud_gax::error::Error> {
    scheduler(emu)
        .await
        .create_job()
        .set_parent(parent())
        .set_job(job)
        .send()
        .await
}

#[tokio::test]
async fn create_fills_defaults_then_patch_pause_resume_delete() -> TestResult {
    let emu = emulator().await;
    let client = scheduler(&emu).await;
    let job = create(&emu, runs("nightly", "hello", "0 3 * * *", &sa("runner"))).await?;
    assert_eq!(job.name, scheduler_job_name("nightly"));
    assert_eq!(job.time_zone, "Etc/UTC");
    assert_eq!(job.state, State::Enabled);
    assert_eq!(job.attempt_deadline.map(|d| d.seconds()), Some(180));
    let retry = job.retry_config.as_ref().expect("retry config");
    assert_eq!((retry.retry_count, retry.max_doublings), (0, 5));
    assert_eq!(retry.min_backoff_duration.map(|d| d.seconds()), Some(5));
    assert_eq!(retry.max_backoff_duration.map(|d| d.seconds()), Some(3600));
    let h = job.http_target().expect("http target");
    assert_eq!(h.http_method, HttpMethod::Post);
    assert_eq!(
        h.oauth_token().map(|t| t.scope.as_str()),
        Some("https://www.googleapis.com/auth/cloud-platform")
    );
    let next = job.schedule_time.expect("scheduleTime").seconds();
    assert_eq!(next % 86_400, 3 * 3600, "03:00 UTC");
    assert!(job.user_update_time.is_some() && job.last_attempt_time.is_none());
    assert_eq!(
        client.get_job().set_name(&job.name).send().await?,
        job.clone()
    );
    let listed = client.list_jobs().set_parent(parent()).send().await?;
    assert_eq!(listed.jobs, std::slice::from_ref(&job));

    let patched = client
        .update_job()
        .set_job(Job::new().set_name(&job.name).set_schedule("*/30 * * * *"))
        .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["schedule"]))
        .send()
        .await?;
    assert_eq!(patched.schedule, "*/30 * * * *");
    assert_eq!(patched.description, "managed-by: runwarden");
    assert!(patched.http_target().is_some());
    assert_eq!(patched.schedule_time.expect("next").seconds() % 1800, 0);

    let paused = client.pause_job().set_name(&job.name).send().await?;
    assert_eq!(paused.state, State::Paused);
    let resumed = client.resume_job().set_name(&job.name).send().await?;
    assert_eq!(resumed.state, State::Enabled);

    client.delete_job().set_name(&job.name).send().await?;
    let e = client
        .get_job()
        .set_name(&job.name)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::NotFound));
    assert_eq!(message(&e), "Job not found.");
    assert_eq!(emu.count("cloudscheduler.jobs.create"), 1);
    assert_eq!(emu.count("cloudscheduler.jobs.patch"), 1);
    Ok(())
}

#[tokio::test]
async fn invalid_schedules_time_zones_and_duplicates_are_refused() -> TestResult {
    let emu = emulator().await;
    for (schedule, tz) in [
        ("every 5 minutes", ""),
        ("0 3 * *", ""),
        ("61 * * * *", ""),
        ("0 3 * * *", "Mars/Olympus_Mons"),
    ] {
        let e = create(
            &emu,
            runs("bad", "hello", schedule, &sa("runner")).set_time_zone(tz),
        )
        .await
        .unwrap_err();
        assert_eq!(code(&e), Some(Code::InvalidArgument), "{schedule} {tz}");
        assert_eq!(message(&e), "Schedule or time zone is invalid.");
    }
    let ok = create(
        &emu,
        runs("paris", "hello", "0 3 * * 1-5", &sa("runner")).set_time_zone("Europe/Paris"),
    )
    .await?;
    assert_eq!(ok.time_zone, "Europe/Paris");
    let e = create(&emu, runs("paris", "hello", "0 3 * * *", &sa("runner")))
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::AlreadyExists));
    assert_eq!(
        message(&e),
        format!("Job {} already exists.", scheduler_job_name("paris"))
    );
    Ok(())
}

#[tokio::test]
async fn a_forced_run_runs_the_job_only_as_an_account_that_may() -> TestResult {
    let emu = emulator().await;
    let run_jobs = jobs(&emu).await;
    let runner = sa("runner");
    hello_runnable_by(&emu, &runner).await?;
    let client = scheduler(&emu).await;

    create(&emu, runs("allowed", "hello", "0 3 * * *", &runner)).await?;
    let ran = client
        .run_job()
        .set_name(scheduler_job_name("allowed"))
        .send()
        .await?;
    assert!(ran.last_attempt_time.is_some());
    assert_eq!(ran.status.as_ref().map(|s| s.code), Some(0));
    let job = run_jobs
        .get_job()
        .set_name(job_name("hello"))
        .send()
        .await?;
    assert_eq!(job.execution_count, 1);
    assert_eq!(
        job.latest_created_execution.map(|r| r.completion_status),
        Some(CompletionStatus::ExecutionSucceeded)
    );

    // Without run.jobs.run on the job (or the project), the attempt records PERMISSION_DENIED.
    create(&emu, runs("denied", "hello", "0 3 * * *", &sa("stranger"))).await?;
    let ran = client
        .run_job()
        .set_name(scheduler_job_name("denied"))
        .send()
        .await?;
    let status = ran.status.expect("status");
    assert_eq!(status.code, 7);
    assert_eq!(
        status.message,
        format!(
            "Permission 'run.jobs.run' denied on resource '{}' (or resource may not exist).",
            job_name("hello")
        )
    );
    // A project-level grant works too.
    grant(
        &emu,
        &format!("/v3/projects/{PROJECT}"),
        "roles/run.invoker",
        &sa("stranger"),
    )
    .await;
    let ran = client
        .run_job()
        .set_name(scheduler_job_name("denied"))
        .send()
        .await?;
    assert_eq!(ran.status.map(|s| s.code), Some(0));
    let job = run_jobs
        .get_job()
        .set_name(job_name("hello"))
        .send()
        .await?;
    assert_eq!(job.execution_count, 2);

    // A job that does not exist: NOT_FOUND for an account that may run jobs in the project
    // (PERMISSION_DENIED for one that may not: Google does not tell it whether the job exists).
    create(&emu, runs("gone", "missing", "0 3 * * *", &sa("stranger"))).await?;
    let ran = client
        .run_job()
        .set_name(scheduler_job_name("gone"))
        .send()
        .await?;
    assert_eq!(ran.status.map(|s| s.code), Some(5));
    Ok(())
}

#[tokio::test]
async fn creating_a_scheduler_job_needs_act_as_on_its_account() -> TestResult {
    let emu = emulator().await;
    let deployer = sa("deployer");
    let runner = sa("runner");
    grant(
        &emu,
        &format!("/v3/projects/{PROJECT}"),
        "roles/cloudscheduler.admin",
        &deployer,
    )
    .await;
    let as_deployer = scheduler_as(&emu, &token_for(&emu, &deployer).await).await;
    let e = as_deployer
        .create_job()
        .set_parent(parent())
        .set_job(runs("nightly", "hello", "0 3 * * *", &runner))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::PermissionDenied));
    assert!(message(&e).contains(&runner), "{}", message(&e));
    grant(
        &emu,
        &format!("/v1/projects/-/serviceAccounts/{runner}"),
        "roles/iam.serviceAccountUser",
        &deployer,
    )
    .await;
    as_deployer
        .create_job()
        .set_parent(parent())
        .set_job(runs("nightly", "hello", "0 3 * * *", &runner))
        .send()
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_due_schedule_runs_on_the_emulator_clock_unless_paused() -> TestResult {
    let emu = emulator().await;
    let run_jobs = jobs(&emu).await;
    let runner = sa("runner");
    hello_runnable_by(&emu, &runner).await?;
    let client = scheduler(&emu).await;
    let job = create(&emu, runs("minutely", "hello", "* * * * *", &runner)).await?;
    let due = job.schedule_time.expect("scheduleTime");

    emu.advance_clock(Duration::from_secs(61));
    let job = client.get_job().set_name(&job.name).send().await?;
    assert_eq!(job.last_attempt_time, Some(due));
    assert_eq!(job.status.as_ref().map(|s| s.code), Some(0));
    assert!(job.schedule_time.expect("next").seconds() > due.seconds());
    let run_job = run_jobs
        .get_job()
        .set_name(job_name("hello"))
        .send()
        .await?;
    assert_eq!(run_job.execution_count, 1);

    client.pause_job().set_name(&job.name).send().await?;
    emu.advance_clock(Duration::from_secs(180));
    let paused = client.get_job().set_name(&job.name).send().await?;
    assert_eq!(paused.last_attempt_time, job.last_attempt_time);
    let run_job = run_jobs
        .get_job()
        .set_name(job_name("hello"))
        .send()
        .await?;
    assert_eq!(run_job.execution_count, 1);
    Ok(())
}
