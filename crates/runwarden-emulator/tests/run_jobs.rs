//! Cloud Run v2 jobs, executions and tasks driven through the official google-cloud-run-v2
//! clients (`Jobs`, `Executions`, `Tasks`).

mod common;

use std::time::Duration;

use common::*;
use google_cloud_gax::error::rpc::Code;
use google_cloud_lro::Poller;
use google_cloud_run_v2::model::{
    self, Container, ExecutionEnvironment, ExecutionTemplate, Job, TaskTemplate, condition,
    execution_reference::CompletionStatus,
};
use runwarden_emulator::Fault;

fn job_with(task_count: i32, parallelism: i32, max_retries: i32) -> Job {
    Job::new().set_template(
        ExecutionTemplate::new()
            .set_task_count(task_count)
            .set_parallelism(parallelism)
            .set_template(
                TaskTemplate::new()
                    .set_max_retries(max_retries)
                    .set_containers([
                        Container::new().set_image("us-docker.pkg.dev/cloudrun/container/job")
                    ]),
            ),
    )
}

fn completed(e: &model::Execution) -> &model::Condition {
    e.conditions
        .iter()
        .find(|c| c.r#type == "Completed")
        .expect("Completed condition")
}

#[tokio::test]
async fn create_fills_the_recorded_job_defaults_and_becomes_ready() -> TestResult {
    let emu = emulator().await;
    let client = jobs(&emu).await;
    let job = create_job(&client, "hello", hello_job().set_labels([("team", "a")])).await?;

    assert_eq!(job.name, job_name("hello"));
    assert_eq!((job.generation, job.observed_generation), (1, 1));
    assert!(!job.reconciling);
    assert_eq!(job.launch_stage.name(), Some("GA"));
    let tc = job.terminal_condition.as_ref().expect("terminal condition");
    assert_eq!(tc.r#type, "Ready");
    assert_eq!(tc.state, condition::State::ConditionSucceeded);
    let et = job.template.as_ref().expect("execution template");
    assert_eq!((et.task_count, et.parallelism), (1, 0));
    let t = et.template.as_ref().expect("task template");
    assert_eq!(t.max_retries(), Some(&3));
    assert_eq!(t.timeout.map(|d| d.seconds()), Some(600));
    assert_eq!(t.execution_environment, ExecutionEnvironment::Gen2);
    let number = runwarden_emulator::state::project_number(PROJECT);
    assert_eq!(
        t.service_account,
        format!("{number}-compute@developer.gserviceaccount.com")
    );
    let limits = &t.containers[0]
        .resources
        .as_ref()
        .expect("resources")
        .limits;
    assert_eq!(limits.get("cpu").map(String::as_str), Some("1000m"));
    assert_eq!(limits.get("memory").map(String::as_str), Some("512Mi"));
    assert!(t.containers[0].ports.is_empty() && t.containers[0].startup_probe.is_none());
    assert_eq!(job.execution_count, 0);
    assert!(!job.etag.is_empty() && !job.uid.is_empty() && job.create_time.is_some());
    assert!(!job.creator.is_empty());

    assert_eq!(
        client.get_job().set_name(job_name("hello")).send().await?,
        job
    );
    let listed = client.list_jobs().set_parent(parent()).send().await?;
    assert_eq!(listed.jobs, [job]);

    // The recorded wire shape: string enums without `enum-encoding=int`, `latestCreatedExecution: {}`.
    let (s, raw) = http(&emu, "GET", &format!("/v2/{}", job_name("hello")), None).await;
    assert_eq!(s, 200, "{raw}");
    assert_eq!(raw["latestCreatedExecution"], serde_json::json!({}));
    assert_eq!(raw["generation"], "1");
    assert_eq!(raw["launchStage"], "GA");
    assert_eq!(raw["template"]["taskCount"], 1);
    assert!(raw["template"].get("parallelism").is_none());
    assert_eq!(
        raw["template"]["template"]["executionEnvironment"],
        "EXECUTION_ENVIRONMENT_GEN2"
    );
    assert!(
        raw["template"]["template"]["containers"][0]["resources"]
            .get("cpuIdle")
            .is_none()
    );
    assert_eq!(emu.count("run.jobs.create"), 1);
    Ok(())
}

#[tokio::test]
async fn create_and_delete_operations_have_the_recorded_shape() -> TestResult {
    let emu = emulator_with_delay(Duration::from_secs(30)).await;
    let body = r#"{"labels":{"cnrm-test":"true"},"template":{"template":{"containers":[{"image":"us-docker.pkg.dev/cloudrun/container/hello","name":"hello","startupProbe":{"httpGet":{"path":"/"}}},{"image":"us-docker.pkg.dev/cloudrun/container/hello","name":"goodbye"}]}}}"#;
    let path = format!(
        "/v2/{}/jobs?%24alt=json%3Benum-encoding%3Dint&jobId=dependson",
        parent()
    );
    let (s, op) = http(&emu, "POST", &path, Some(body)).await;
    assert_eq!(s, 200, "{op}");
    let m = &op["metadata"];
    assert_eq!(m["@type"], "type.googleapis.com/google.cloud.run.v2.Job");
    assert_eq!(m["reconciling"], true);
    assert_eq!(m["terminalCondition"], serde_json::json!({"state": 1}));
    assert_eq!(m["launchStage"], 4);
    assert_eq!(m["generation"], "1");
    assert_eq!(m["latestCreatedExecution"], serde_json::json!({}));
    let t = &m["template"]["template"];
    assert_eq!(m["template"]["taskCount"], 1);
    assert_eq!(
        (
            t["executionEnvironment"].clone(),
            t["maxRetries"].clone(),
            t["timeout"].clone()
        ),
        (
            serde_json::json!(2),
            serde_json::json!(3),
            serde_json::json!("600s")
        )
    );
    assert_eq!(
        t["containers"][0]["resources"],
        serde_json::json!({"limits": {"cpu": "1000m", "memory": "256Mi"}})
    );
    assert_eq!(
        t["containers"][0]["startupProbe"],
        serde_json::json!({"failureThreshold": 3, "httpGet": {"path": "/", "port": 8080}, "periodSeconds": 10, "timeoutSeconds": 1})
    );
    assert!(op.get("done").is_none());

    let (s, del) = http(
        &emu,
        "DELETE",
        &format!("/v2/{}", job_name("dependson")),
        None,
    )
    .await;
    assert_eq!(s, 200, "{del}");
    let m = &del["metadata"];
    assert_eq!(m["generation"], "2");
    assert_eq!(m["reconciling"], true);
    assert!(m["deleteTime"].is_string() && m["expireTime"].is_string());
    Ok(())
}

#[tokio::test]
async fn create_reports_the_recorded_errors() -> TestResult {
    let emu = emulator().await;
    let client = jobs(&emu).await;
    let e = client
        .get_job()
        .set_name(job_name("missing"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::NotFound));
    assert_eq!(
        message(&e),
        format!(
            "Resource 'missing' of kind 'JOB' in region '{REGION}' in project '{PROJECT}' does not exist."
        )
    );

    let mut gen1 = hello_job();
    if let Some(t) = gen1.template.as_mut().and_then(|et| et.template.as_mut()) {
        t.execution_environment = ExecutionEnvironment::Gen1;
    }
    let e = refused_job_create(&client, "gen1", gen1).await;
    assert_eq!(code(&e), Some(Code::InvalidArgument));
    assert_eq!(
        message(&e),
        "template.annotations: Annotation 'run.googleapis.com/execution-environment' with value 'gen1' is not supported on resources of kind Execution."
    );

    create_job(&client, "hello", hello_job()).await?;
    let e = refused_job_create(&client, "hello", hello_job()).await;
    assert_eq!(code(&e), Some(Code::AlreadyExists));
    assert_eq!(message(&e), "Resource 'hello' already exists.");

    let e = refused_job_create(&client, "retries", job_with(1, 0, 11)).await;
    assert_eq!(code(&e), Some(Code::InvalidArgument));
    assert!(message(&e).contains("max_retries"), "{}", message(&e));
    Ok(())
}

#[tokio::test]
async fn update_replaces_the_whole_job_and_refills_defaults() -> TestResult {
    let emu = emulator().await;
    let client = jobs(&emu).await;
    let created = create_job(&client, "hello", job_with(2, 1, 0).set_labels([("a", "b")])).await?;
    let t = created
        .template
        .as_ref()
        .and_then(|et| et.template.as_ref());
    assert_eq!(
        t.and_then(|t| t.max_retries()),
        Some(&0),
        "an explicit 0 is kept"
    );

    // No update mask: what the body leaves out is reset (labels gone, maxRetries back to 3).
    let updated = client
        .update_job()
        .set_job(hello_job().set_name(job_name("hello")))
        .poller()
        .until_done()
        .await?;
    assert_eq!((updated.generation, updated.observed_generation), (2, 2));
    assert!(updated.labels.is_empty());
    let et = updated.template.as_ref().expect("template");
    assert_eq!(et.task_count, 1);
    assert_eq!(et.template.as_ref().and_then(|t| t.max_retries()), Some(&3));
    assert_ne!(updated.etag, created.etag);

    // Sending back what was read changes nothing.
    let same = client
        .update_job()
        .set_job(updated.clone())
        .poller()
        .until_done()
        .await?;
    assert_eq!(same.generation, 2);

    // A stale etag is ABORTED.
    let e = client
        .update_job()
        .set_job(created.clone())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::Aborted));

    let e = client
        .update_job()
        .set_job(hello_job().set_name(job_name("absent")))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::NotFound));
    let made = client
        .update_job()
        .set_job(hello_job().set_name(job_name("absent")))
        .set_allow_missing(true)
        .poller()
        .until_done()
        .await?;
    assert_eq!(made.generation, 1);

    client
        .delete_job()
        .set_name(job_name("hello"))
        .poller()
        .until_done()
        .await?;
    let e = client
        .get_job()
        .set_name(job_name("hello"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::NotFound));
    assert_eq!(emu.count("run.jobs.patch"), 5);
    assert_eq!(emu.count("run.jobs.delete"), 1);
    Ok(())
}

#[tokio::test]
async fn execution_tokens_start_executions_and_a_used_token_is_refused() -> TestResult {
    let emu = emulator().await;
    let client = jobs(&emu).await;
    let job = create_job(&client, "hello", hello_job().set_run_execution_token("t1")).await?;
    assert_eq!(job.execution_count, 1);
    let latest = job.latest_created_execution.as_ref().expect("latest");
    assert_eq!(
        latest.name,
        format!("{}/executions/hello-t1", job_name("hello"))
    );
    assert_eq!(
        latest.completion_status,
        CompletionStatus::ExecutionSucceeded
    );
    assert!(latest.completion_time.is_some());
    assert_eq!(job.run_execution_token(), Some(&"t1".to_string()));

    let exec = executions(&emu)
        .await
        .get_execution()
        .set_name(&latest.name)
        .send()
        .await?;
    assert_eq!((exec.task_count, exec.succeeded_count), (1, 1));
    assert_eq!(exec.job, job_name("hello"));
    assert_eq!(completed(&exec).state, condition::State::ConditionSucceeded);
    assert!(exec.start_time.is_some() && exec.completion_time.is_some());
    assert!(
        exec.log_uri
            .starts_with("https://console.cloud.google.com/logs/")
    );

    // A new start token: one more execution. The same token again: none.
    let job = client
        .update_job()
        .set_job(job.set_start_execution_token("t2"))
        .poller()
        .until_done()
        .await?;
    assert_eq!(job.execution_count, 2);
    let job = client
        .update_job()
        .set_job(job)
        .poller()
        .until_done()
        .await?;
    assert_eq!(job.execution_count, 2);

    let e = client
        .update_job()
        .set_job(job.clone().set_run_execution_token("t1"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::AlreadyExists));
    assert_eq!(message(&e), "Resource 'hello-t1' already exists.");

    let e = client
        .update_job()
        .set_job(job.set_run_execution_token("x".repeat(58)))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::InvalidArgument));
    assert!(
        message(&e).contains("fewer than 63 characters"),
        "{}",
        message(&e)
    );
    Ok(())
}

#[tokio::test]
async fn a_run_token_job_is_ready_only_once_its_execution_completed() -> TestResult {
    let emu = emulator().await;
    emu.set_task_duration(Duration::from_secs(30));
    let client = jobs(&emu).await;
    let op = client
        .create_job()
        .set_parent(parent())
        .set_job_id("slow")
        .set_job(hello_job().set_run_execution_token("r1"))
        .send()
        .await?;
    let running = client.get_operation().set_name(&op.name).send().await?;
    assert!(!running.done, "waits for the execution");
    emu.advance_clock(Duration::from_secs(30));
    let done = client.get_operation().set_name(&op.name).send().await?;
    assert!(done.done);

    // A failing run token execution: the job's Ready condition fails, the execution says why.
    emu.set_task_duration(Duration::ZERO);
    emu.fail_tasks(&job_name("failing"), 4);
    let job = create_job(
        &client,
        "failing",
        hello_job().set_run_execution_token("r1"),
    )
    .await?;
    let tc = job.terminal_condition.as_ref().expect("terminal condition");
    assert_eq!(tc.state, condition::State::ConditionFailed);
    assert_eq!(
        tc.execution_reason(),
        Some(&condition::ExecutionReason::NonZeroExitCode)
    );
    let latest = job.latest_created_execution.expect("latest");
    assert_eq!(latest.completion_status, CompletionStatus::ExecutionFailed);
    Ok(())
}

#[tokio::test]
async fn executions_retry_failed_tasks_and_fail_past_max_retries() -> TestResult {
    let emu = emulator().await;
    let client = jobs(&emu).await;
    create_job(&client, "batch", job_with(2, 1, 2)).await?;

    // Two failures: task 0 fails twice, its third attempt succeeds.
    emu.fail_tasks(&job_name("batch"), 2);
    let exec = client
        .run_job()
        .set_name(job_name("batch"))
        .poller()
        .until_done()
        .await?;
    assert_eq!((exec.succeeded_count, exec.failed_count), (2, 0));
    assert_eq!(exec.retried_count, 1);
    assert_eq!(completed(&exec).state, condition::State::ConditionSucceeded);
    let id = exec.name.rsplit('/').next().unwrap_or_default().to_string();
    assert!(
        id.starts_with("batch-") && id.len() == "batch-".len() + 5,
        "{id}"
    );
    let listed = tasks(&emu)
        .await
        .list_tasks()
        .set_parent(&exec.name)
        .send()
        .await?;
    assert_eq!(listed.tasks.len(), 2);
    let t0 = &listed.tasks[0];
    assert_eq!(t0.name, format!("{}/tasks/{id}-task0", exec.name));
    assert_eq!((t0.index, t0.retried), (0, 2));
    assert_eq!(
        t0.last_attempt_result
            .as_ref()
            .and_then(|r| r.status.as_ref())
            .map(|s| s.code),
        Some(0)
    );
    assert_eq!((listed.tasks[1].index, listed.tasks[1].retried), (1, 0));
    let t1 = tasks(&emu)
        .await
        .get_task()
        .set_name(&listed.tasks[1].name)
        .send()
        .await?;
    assert_eq!(t1, listed.tasks[1]);

    // Three failures with maxRetries 2: task 0 fails all its attempts, so the execution fails.
    emu.fail_tasks(&job_name("batch"), 3);
    let e = client
        .run_job()
        .set_name(job_name("batch"))
        .poller()
        .until_done()
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::FailedPrecondition), "{e}");
    assert!(message(&e).contains("-task0 failed"), "{}", message(&e));

    let listed = executions(&emu)
        .await
        .list_executions()
        .set_parent(job_name("batch"))
        .send()
        .await?;
    assert_eq!(listed.executions.len(), 2);
    let newest = &listed.executions[0];
    assert_eq!((newest.failed_count, newest.succeeded_count), (1, 1));
    let c = completed(newest);
    assert_eq!(c.state, condition::State::ConditionFailed);
    assert_eq!(
        c.execution_reason(),
        Some(&condition::ExecutionReason::NonZeroExitCode)
    );
    assert_eq!(listed.executions[1].name, exec.name, "newest first");
    let job = client.get_job().set_name(job_name("batch")).send().await?;
    assert_eq!(job.execution_count, 2);
    let latest = job.latest_created_execution.expect("latest");
    assert_eq!(latest.name, newest.name);
    assert_eq!(latest.completion_status, CompletionStatus::ExecutionFailed);
    let failed_task = tasks(&emu)
        .await
        .get_task()
        .set_name(format!(
            "{}/tasks/{}-task0",
            newest.name,
            newest.name.rsplit('/').next().unwrap_or_default()
        ))
        .send()
        .await?;
    assert_eq!(failed_task.retried, 2);
    let result = failed_task.last_attempt_result.expect("result");
    assert_eq!(result.exit_code, 1);
    assert_ne!(result.status.map(|s| s.code), Some(0));
    Ok(())
}

#[tokio::test]
async fn tasks_run_on_the_emulator_clock_within_parallelism() -> TestResult {
    let emu = emulator().await;
    emu.set_task_duration(Duration::from_secs(10));
    let client = jobs(&emu).await;
    create_job(&client, "slow", job_with(3, 1, 0)).await?;
    let op = client.run_job().set_name(job_name("slow")).send().await?;
    let exec_client = executions(&emu).await;
    let name = op
        .metadata
        .as_ref()
        .and_then(|m| m.to_msg::<model::Execution>().ok())
        .map(|e| e.name)
        .expect("execution in the metadata");
    let get = || exec_client.get_execution().set_name(&name).send();
    let e = get().await?;
    assert_eq!((e.running_count, e.succeeded_count), (1, 0));
    assert!(e.reconciling);
    let job = client.get_job().set_name(job_name("slow")).send().await?;
    assert_eq!(
        job.latest_created_execution.map(|r| r.completion_status),
        Some(CompletionStatus::ExecutionRunning)
    );
    emu.advance_clock(Duration::from_secs(10));
    let e = get().await?;
    assert_eq!((e.running_count, e.succeeded_count), (1, 1));
    emu.advance_clock(Duration::from_secs(25));
    let e = get().await?;
    assert_eq!((e.running_count, e.succeeded_count), (0, 3));
    assert!(!e.reconciling);
    let took =
        e.completion_time.expect("done").seconds() - e.start_time.expect("started").seconds();
    assert_eq!(took, 30);
    Ok(())
}

#[tokio::test]
async fn cancel_and_delete_an_execution() -> TestResult {
    let emu = emulator().await;
    emu.set_task_duration(Duration::from_secs(60));
    let client = jobs(&emu).await;
    create_job(&client, "long", job_with(2, 0, 0)).await?;
    let op = client.run_job().set_name(job_name("long")).send().await?;
    let name = op
        .metadata
        .and_then(|m| m.to_msg::<model::Execution>().ok())
        .map(|e| e.name)
        .expect("execution");
    let ex = executions(&emu).await;
    let cancelled = ex
        .cancel_execution()
        .set_name(&name)
        .poller()
        .until_done()
        .await?;
    assert_eq!((cancelled.cancelled_count, cancelled.running_count), (2, 0));
    assert_eq!(
        completed(&cancelled).execution_reason(),
        Some(&condition::ExecutionReason::Cancelled)
    );
    let e = ex
        .cancel_execution()
        .set_name(&name)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::FailedPrecondition));
    let job = client.get_job().set_name(job_name("long")).send().await?;
    assert_eq!(
        job.latest_created_execution.map(|r| r.completion_status),
        Some(CompletionStatus::ExecutionCancelled)
    );

    ex.delete_execution()
        .set_name(&name)
        .poller()
        .until_done()
        .await?;
    let e = ex.get_execution().set_name(&name).send().await.unwrap_err();
    assert_eq!(code(&e), Some(Code::NotFound));
    assert!(
        message(&e).contains("of kind 'EXECUTION'"),
        "{}",
        message(&e)
    );
    assert_eq!(emu.count("run.executions.cancel"), 2);
    assert_eq!(emu.count("run.executions.delete"), 1);
    Ok(())
}

#[tokio::test]
async fn job_iam_policy_and_who_may_run() -> TestResult {
    let emu = emulator().await;
    let client = jobs(&emu).await;
    create_job(&client, "hello", hello_job()).await?;
    let runner = sa("runner");
    grant(
        &emu,
        &format!("/v2/{}", job_name("hello")),
        "roles/run.invoker",
        &runner,
    )
    .await;
    let policy = client
        .get_iam_policy()
        .set_resource(job_name("hello"))
        .send()
        .await?;
    assert_eq!(policy.bindings[0].role, "roles/run.invoker");
    let e = client
        .set_iam_policy()
        .set_resource(job_name("hello"))
        .set_policy(policy.clone().set_etag(b"stale".to_vec()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::Aborted));

    // run.invoker holds run.jobs.run (not run.operations.get: it starts the run, cannot poll it).
    let as_runner = jobs_as(&emu, &token_for(&emu, &runner).await).await;
    as_runner
        .run_job()
        .set_name(job_name("hello"))
        .send()
        .await?;
    let e = as_runner
        .get_job()
        .set_name(job_name("hello"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::PermissionDenied));
    let e = as_runner
        .run_job()
        .set_name(job_name("hello"))
        .set_overrides(model::run_job_request::Overrides::new().set_task_count(2))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::PermissionDenied));
    assert!(
        message(&e).contains("run.jobs.runWithOverrides"),
        "{}",
        message(&e)
    );
    Ok(())
}

#[tokio::test]
async fn run_overrides_counters_and_faults() -> TestResult {
    let emu = emulator().await;
    let client = jobs(&emu).await;
    create_job(&client, "hello", hello_job()).await?;
    emu.inject_fault(Fault {
        api: "run".into(),
        method: Some("jobs.run".into()),
        code: "UNAVAILABLE".into(),
        message: None,
        count: Some(1),
        rate: None,
    });
    let e = client
        .run_job()
        .set_name(job_name("hello"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::Unavailable));
    let exec = client
        .run_job()
        .set_name(job_name("hello"))
        .set_overrides(
            model::run_job_request::Overrides::new()
                .set_task_count(3)
                .set_container_overrides([
                    model::run_job_request::overrides::ContainerOverride::new()
                        .set_args(["--fast"]),
                ]),
        )
        .poller()
        .until_done()
        .await?;
    assert_eq!((exec.task_count, exec.succeeded_count), (3, 3));
    let t = exec.template.expect("template");
    assert_eq!(t.containers[0].args, ["--fast"]);
    assert_eq!(emu.count("run.jobs.run"), 2);
    Ok(())
}

#[tokio::test]
async fn a_region_holds_at_most_1000_jobs() -> TestResult {
    let emu = emulator().await;
    let body = r#"{"template":{"template":{"containers":[{"image":"us-docker.pkg.dev/cloudrun/container/job"}]}}}"#;
    for i in 0..1000 {
        let path = format!("/v2/{}/jobs?jobId=j{i}", parent());
        let (s, v) = http(&emu, "POST", &path, Some(body)).await;
        assert_eq!(s, 200, "{v}");
    }
    let client = jobs(&emu).await;
    let e = refused_job_create(&client, "one-too-many", hello_job()).await;
    assert_eq!(code(&e), Some(Code::ResourceExhausted));
    assert!(
        message(&e)
            .starts_with("Quota exceeded for total allowable count of jobs per project per region"),
        "{}",
        message(&e)
    );
    client
        .create_job()
        .set_parent(format!("projects/{PROJECT}/locations/europe-west1"))
        .set_job_id("elsewhere")
        .set_job(hello_job())
        .send()
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_job_with_a_key_its_service_agent_may_not_use_fails_to_deploy() -> TestResult {
    let emu = emulator().await;
    let key = make_key(&emu, REGION, "k").await;
    let mut job = hello_job();
    if let Some(t) = job.template.as_mut().and_then(|et| et.template.as_mut()) {
        t.encryption_key = key.name.clone();
    }
    let client = jobs(&emu).await;
    let e = create_job(&client, "cmek", job.clone()).await.unwrap_err();
    assert_eq!(code(&e), Some(Code::FailedPrecondition), "{e}");
    assert!(
        message(&e).starts_with("Job 'cmek' is not ready. The Cloud Run service agent"),
        "{}",
        message(&e)
    );
    let failed = client.get_job().set_name(job_name("cmek")).send().await?;
    let tc = failed.terminal_condition.expect("terminal condition");
    assert_eq!(tc.state, condition::State::ConditionFailed);
    assert_eq!(
        tc.reason(),
        Some(&condition::CommonReason::EncryptionKeyPermissionDenied)
    );

    grant_agent(&emu, &key.name).await;
    create_job(&client, "cmek2", job).await?;
    Ok(())
}
