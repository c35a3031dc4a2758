//! The CloudRunJob controller against the emulator and a real API server: a scheduled job with
//! CMEK and Direct VPC, a forced Scheduler run as the schedule's account, run tokens that retry
//! and fail, a no-op resync, deletion, and a cross-namespace adoption refused.

mod common;

use std::time::{Duration, Instant};

use common::{Harness, PROJECT, REGION};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use runwarden::api::v1alpha1::CloudRunJob;
use serde_json::{Value, json};

const IMAGE: &str = "europe-docker.pkg.dev/runwarden-test/jobs/export@sha256:1111111111111111111111111111111111111111111111111111111111111111";
const SCHEDULER_SA: &str = "scheduler@runwarden-test.iam.gserviceaccount.com";

fn job_path(id: &str) -> String {
    format!("projects/{PROJECT}/locations/{REGION}/jobs/{id}")
}

fn jobs(h: &Harness, ns: &str) -> Api<CloudRunJob> {
    Api::namespaced(h.client.clone(), ns)
}

async fn apply(h: &Harness, ns: &str, name: &str, spec: Value, labels: Value) {
    let obj = json!({
        "apiVersion": "runwarden.dev/v1alpha1",
        "kind": "CloudRunJob",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    });
    jobs(h, ns)
        .patch(
            name,
            &PatchParams::apply("test-user").force(),
            &Patch::Apply(&obj),
        )
        .await
        .expect("apply");
}

fn condition(obj: &CloudRunJob, type_: &str) -> Option<(String, String, String)> {
    let c = obj
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((
        c.status.to_string(),
        c.reason.to_string(),
        c.message.to_string(),
    ))
}

async fn wait(
    h: &Harness,
    ns: &str,
    name: &str,
    what: &str,
    pred: impl Fn(Option<&CloudRunJob>) -> bool,
) -> Option<CloudRunJob> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let obj = jobs(h, ns).get_opt(name).await.expect("get");
        if pred(obj.as_ref()) {
            return obj;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last seen: {:#?}",
            obj.map(|o| o.status)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_reason(h: &Harness, name: &str, type_: &str, reason: &str) -> CloudRunJob {
    wait(h, &h.ns, name, &format!("{type_} {reason}"), |o| {
        o.and_then(|o| condition(o, type_))
            .is_some_and(|(_, r, _)| r == reason)
    })
    .await
    .expect("object")
}

async fn wait_ready(h: &Harness, name: &str) -> CloudRunJob {
    wait(h, &h.ns, name, "Ready=True", |o| {
        o.is_some_and(|o| runwarden::controller::cloudrunjob::is_ready(o) == Some(true))
    })
    .await
    .expect("object")
}

/// A REST call to the emulator as an anonymous (admin) caller; the JSON answer and its status.
async fn rest(h: &Harness, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("{}/{path}", h.emu.endpoint());
    let client = reqwest::Client::new();
    let req = match method {
        "GET" => client.get(&url),
        "POST" => client.post(&url),
        other => panic!("{other}"),
    };
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let resp = req.send().await.expect("emulator answers");
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

fn base(extra: Value) -> Value {
    let mut spec = json!({
        "region": REGION,
        "serviceAccount": "export@runwarden-test.iam.gserviceaccount.com",
        "containers": [{"image": IMAGE}],
    });
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    spec
}

#[tokio::test]
async fn a_scheduled_job_with_cmek_and_direct_vpc_runs_as_its_schedule_and_is_deleted_with_it() {
    let Some(mut h) = Harness::new("job-scheduled").await else {
        return;
    };
    let location = format!("v1/projects/{PROJECT}/locations/{REGION}");
    rest(
        &h,
        "POST",
        &format!("{location}/keyRings?keyRingId=jobs"),
        Some(json!({})),
    )
    .await;
    let (code, _) = rest(
        &h,
        "POST",
        &format!("{location}/keyRings/jobs/cryptoKeys?cryptoKeyId=export"),
        Some(json!({"purpose": "ENCRYPT_DECRYPT"})),
    )
    .await;
    assert_eq!(code, 200, "key created");
    let key = format!("projects/{PROJECT}/locations/{REGION}/keyRings/jobs/cryptoKeys/export");
    h.start_controller().await;
    apply(
        &h,
        &h.ns.clone(),
        "export",
        base(json!({
            "access": {"executors": ["group:data@example.com"]},
            "encryption": {"kmsKey": key},
            "egress": {"directVpc": {"network": "default", "subnetwork": "jobs"}},
            "tasks": {"count": 2, "timeout": "30m"},
            "schedule": {"cron": "0 3 * * *", "timeZone": "Europe/Berlin", "serviceAccount": SCHEDULER_SA},
        })),
        json!({}),
    )
    .await;
    let obj = wait_ready(&h, "export").await;
    for t in [
        "PolicyCompliant",
        "NetworkReady",
        "EncryptionReady",
        "JobReady",
        "AccessReady",
        "ScheduleReady",
    ] {
        assert_eq!(condition(&obj, t).unwrap().0, "True", "{t}");
    }
    let status = obj.status.clone().unwrap();
    assert_eq!(
        status.resource_name.as_deref(),
        Some(job_path("export").as_str())
    );

    // In Google: the job with its key and egress, its executors, its Scheduler job.
    let (code, job) = rest(&h, "GET", &format!("v2/{}", job_path("export")), None).await;
    assert_eq!(code, 200);
    let task = &job["template"]["template"];
    assert_eq!(task["encryptionKey"], key);
    assert_eq!(
        task["vpcAccess"]["networkInterfaces"][0]["subnetwork"],
        format!("projects/{PROJECT}/regions/{REGION}/subnetworks/jobs")
    );
    assert_eq!(job["template"]["taskCount"], 2);
    assert_eq!(
        job["labels"]["runwarden-owner"],
        obj.metadata.uid.clone().unwrap()
    );
    let (_, policy) = rest(
        &h,
        "GET",
        &format!("v2/{}:getIamPolicy", job_path("export")),
        None,
    )
    .await;
    let invokers: Vec<&str> = policy["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["role"] == "roles/run.invoker")
        .flat_map(|b| {
            b["members"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
        })
        .collect();
    assert_eq!(
        invokers,
        [
            "group:data@example.com",
            &format!("serviceAccount:{SCHEDULER_SA}")
        ]
    );
    let (code, schedule) = rest(&h, "GET", &format!("v1/{}", job_path("export")), None).await;
    assert_eq!(code, 200, "Scheduler job: {schedule}");
    assert_eq!(schedule["schedule"], "0 3 * * *");
    assert_eq!(schedule["timeZone"], "Europe/Berlin");
    assert_eq!(
        schedule["httpTarget"]["oauthToken"]["serviceAccountEmail"],
        SCHEDULER_SA
    );
    assert_eq!(
        schedule["description"],
        format!(
            "managed-by: runwarden, runwarden-owner: {}",
            obj.metadata.uid.clone().unwrap()
        )
    );

    // A forced Scheduler run starts an execution as the schedule's account: it may, because
    // runwarden made it an executor.
    let (code, ran) = rest(
        &h,
        "POST",
        &format!("v1/{}:run", job_path("export")),
        Some(json!({})),
    )
    .await;
    assert_eq!(code, 200, "{ran}");
    let (_, schedule) = rest(&h, "GET", &format!("v1/{}", job_path("export")), None).await;
    assert!(
        schedule["status"].get("code").is_none_or(|c| c == 0),
        "the attempt succeeded: {schedule}"
    );
    let (_, executions) = rest(
        &h,
        "GET",
        &format!("v2/{}/executions", job_path("export")),
        None,
    )
    .await;
    assert_eq!(
        executions["executions"].as_array().map(Vec::len),
        Some(1),
        "{executions}"
    );

    // An unchanged spec: a reconcile (triggered by a metadata change) writes nothing to Google.
    h.emu.reset_counters();
    h.poke(&jobs(&h, &h.ns), "export", "jobs.get").await;
    assert_eq!(
        h.writes(),
        0,
        "a no-op resync writes nothing: {:?}",
        h.emu.counters()
    );
    assert_eq!(
        h.emu.count("run.jobs.getIamPolicy"),
        1,
        "{:?}",
        h.emu.counters()
    );

    // Deleting removes the Scheduler job and the job.
    jobs(&h, &h.ns)
        .delete("export", &DeleteParams::default())
        .await
        .unwrap();
    wait(&h, &h.ns.clone(), "export", "the object gone", |o| {
        o.is_none()
    })
    .await;
    let (code, _) = rest(&h, "GET", &format!("v1/{}", job_path("export")), None).await;
    assert_eq!(code, 404, "the Scheduler job is deleted");
    let (code, _) = rest(&h, "GET", &format!("v2/{}", job_path("export")), None).await;
    assert_eq!(code, 404, "the job is deleted");
    h.stop_controller().await;
}

#[tokio::test]
async fn a_run_token_retries_a_failed_task_and_one_failing_past_max_retries_is_execution_failed() {
    let Some(mut h) = Harness::new("job-tokens").await else {
        return;
    };
    h.start_controller().await;
    // The first task attempt fails; maxRetries 2 retries it.
    h.emu.fail_tasks(&job_path("nightly"), 1);
    apply(
        &h,
        &h.ns.clone(),
        "nightly",
        base(json!({"tasks": {"maxRetries": 2}, "execution": {"runToken": "first"}})),
        json!({}),
    )
    .await;
    let obj = wait_reason(&h, "nightly", "JobReady", "ExecutionSucceeded").await;
    let latest = obj.status.clone().unwrap().latest_execution.unwrap();
    assert_eq!(
        (
            latest.name.as_str(),
            latest.state.as_str(),
            latest.token.as_deref()
        ),
        ("nightly-first", "Succeeded", Some("first"))
    );
    assert_eq!(latest.succeeded_tasks, 1);
    wait_ready(&h, "nightly").await;
    let (_, tasks) = rest(
        &h,
        "GET",
        &format!("v2/{}/executions/nightly-first/tasks", job_path("nightly")),
        None,
    )
    .await;
    assert_eq!(tasks["tasks"][0]["retried"], 1, "one retry: {tasks}");

    // A new token whose tasks keep failing: past maxRetries the execution fails.
    h.emu.fail_tasks(&job_path("nightly"), 10);
    apply(
        &h,
        &h.ns.clone(),
        "nightly",
        base(json!({"tasks": {"maxRetries": 1}, "execution": {"runToken": "second"}})),
        json!({}),
    )
    .await;
    let obj = wait_reason(&h, "nightly", "JobReady", "ExecutionFailed").await;
    let (status, _, message) = condition(&obj, "JobReady").unwrap();
    assert_eq!(status, "False");
    assert!(message.contains("nightly-second"), "{message}");
    assert_eq!(condition(&obj, "Ready").unwrap().1, "ExecutionFailed");
    let latest = obj.status.clone().unwrap().latest_execution.unwrap();
    assert_eq!((latest.state.as_str(), latest.failed_tasks), ("Failed", 1));
    assert_eq!(
        h.emu.count("run.jobs.patch"),
        1,
        "one update carried the new token"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !h
        .events("nightly")
        .await
        .iter()
        .any(|e| e.starts_with("ExecutionFailed:"))
    {
        assert!(Instant::now() < deadline, "no ExecutionFailed event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.stop_controller().await;
}

#[tokio::test]
async fn adopting_a_job_another_namespace_owns_is_refused() {
    let Some(mut h) = Harness::new("job-adopt").await else {
        return;
    };
    // One controller over two namespaces (this test's objects only, by label).
    let shard = format!("job-adopt-{}", fastrand::u32(..));
    h.config.watch_namespace = None;
    h.config.watch_selector = Some(format!("test-shard={shard}"));
    let other = format!("{}-b", h.ns);
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(h.client.clone());
    namespaces
        .create(
            &Default::default(),
            &serde_json::from_value(json!({"metadata": {"name": other}})).unwrap(),
        )
        .await
        .unwrap();
    h.start_controller().await;
    let labels = json!({"test-shard": shard});
    apply(&h, &h.ns.clone(), "report", base(json!({})), labels.clone()).await;
    wait_ready(&h, "report").await;
    apply(
        &h,
        &other,
        "thief",
        base(json!({"jobName": "report", "adoptionPolicy": "Adopt"})),
        labels,
    )
    .await;
    let obj = wait(&h, &other, "thief", "AlreadyOwned", |o| {
        o.and_then(|o| condition(o, "JobReady"))
            .is_some_and(|(_, r, _)| r == "AlreadyOwned")
    })
    .await
    .unwrap();
    let message = condition(&obj, "JobReady").unwrap().2;
    assert!(
        message.contains(&format!("CloudRunJob {}/report", h.ns)),
        "{message}"
    );
    assert_eq!(h.emu.count("run.jobs.patch"), 0, "nothing taken over");
    h.stop_controller().await;
}
