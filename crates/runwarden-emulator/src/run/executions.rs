//! Cloud Run executions (get, list newest first, `:cancel`, delete) and their tasks (list, get),
//! and what completing a run, cancel or execution delete operation does. The executions run on
//! the emulator clock (`simulation`).

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::resource::{EXECUTION, JOB, Kind, check_etag, location, not_found, render, submitted};
use super::simulation::{self, task_id};
use crate::enums;
use crate::error::{Code, GError, GResult};
use crate::operations::{self, typed};
use crate::request::Req;
use crate::state::{Api, ExecState, ExecutionRec, OpKind, State, TaskSim, TaskState};
use crate::util::{self, str_of};

/// `google.cloud.run.v2.Task` (output only).
const TASK: Kind = Kind {
    collection: "tasks",
    word: "TASK",
    noun: "task",
    fields: &[],
    schema: enums::TASK,
    any_type: "type.googleapis.com/google.cloud.run.v2.Task",
    max_id: 63,
};

/// The job (`projects/{id}/locations/{l}/jobs/{j}`) of the request path.
fn job_of(st: &mut State, req: &Req) -> GResult<String> {
    let p = st.project(req.seg(1))?;
    location(req)?;
    Ok(format!(
        "projects/{}/locations/{}/jobs/{}",
        p.id,
        req.seg(3),
        req.seg(5)
    ))
}

/// The execution the request path names, and its name.
fn execution<'a>(st: &'a mut State, req: &Req) -> GResult<(String, &'a mut ExecutionRec)> {
    let name = format!("{}/executions/{}", job_of(st, req)?, req.seg(7));
    match st.executions.get_mut(&name) {
        Some(rec) => Ok((name, rec)),
        None => Err(not_found(&EXECUTION, &name)),
    }
}

/// `run.executions.get`.
pub(crate) fn get(st: &mut State, req: &Req) -> GResult<Value> {
    let (_, rec) = execution(st, req)?;
    Ok(render(&EXECUTION, &rec.exec, req.int))
}

/// `run.executions.list`: the job's executions, newest first (NOT_FOUND for a job that does not
/// exist).
pub(crate) fn list(st: &mut State, req: &Req) -> GResult<Value> {
    let job = job_of(st, req)?;
    if !st.jobs.contains_key(&job) {
        return Err(not_found(&JOB, &job));
    }
    let prefix = format!("{job}/executions/");
    let mut recs: Vec<&ExecutionRec> = st
        .executions
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .filter(|(_, r)| !r.deleting || req.q_bool("showDeleted"))
        .map(|(_, r)| r)
        .collect();
    recs.sort_by_key(|r| std::cmp::Reverse(r.seq));
    let items: Vec<Value> = recs
        .iter()
        .map(|r| render(&EXECUTION, &r.exec, req.int))
        .collect();
    util::list_page("executions", &items, &req.query, 100)
}

/// `run.executions.cancel` (body `etag`, `validateOnly`): pending and running tasks are
/// cancelled at once; FAILED_PRECONDITION for an execution that already finished.
pub(crate) fn cancel(st: &mut State, req: &Req) -> GResult<Value> {
    let body = req.object_body()?;
    let now = req.now;
    let (name, rec) = execution(st, req)?;
    check_etag(&EXECUTION, str_of(&body, "etag"), &rec.exec, &name)?;
    if rec.state != ExecState::Running {
        return Err(GError::precondition(format!(
            "Execution '{}' has already completed and cannot be cancelled.",
            req.seg(7)
        )));
    }
    let validate_only = body.get("validateOnly") == Some(&json!(true));
    if !validate_only {
        simulation::cancel(rec, now);
    }
    let metadata = typed(&rec.exec, EXECUTION.any_type);
    finish_on_job(st, &name);
    let parent = parent_of(&name);
    let op = if validate_only {
        operations::start_done(st, Api::Run, &parent, metadata.clone(), Ok(metadata))
    } else {
        let kind = OpKind::ExecutionCancel { execution: name };
        operations::start(st, Api::Run, &parent, req.delay, kind, metadata)
    };
    submitted(st, &op, req)
}

/// `run.executions.delete` (`etag`, `validateOnly`): a running execution is cancelled first; it
/// stays readable, with `deleteTime` and `expireTime`, until the operation completes.
pub(crate) fn delete(st: &mut State, req: &Req) -> GResult<Value> {
    let now = req.now;
    let etag = req.q("etag").unwrap_or("").to_string();
    let (name, rec) = execution(st, req)?;
    check_etag(&EXECUTION, &etag, &rec.exec, &name)?;
    if rec.deleting {
        return Err(not_found(&EXECUTION, &name));
    }
    let parent = parent_of(&name);
    if req.q_bool("validateOnly") {
        let v = typed(&rec.exec, EXECUTION.any_type);
        let op = operations::start_done(st, Api::Run, &parent, v.clone(), Ok(v));
        return submitted(st, &op, req);
    }
    rec.deleting = true;
    simulation::cancel(rec, now);
    rec.exec["deleteTime"] = json!(util::timestamp(now));
    rec.exec["expireTime"] = json!(util::timestamp(now + Duration::from_secs(30 * 86_400)));
    let metadata = typed(&rec.exec, EXECUTION.any_type);
    finish_on_job(st, &name);
    let kind = OpKind::ExecutionDelete { execution: name };
    let op = operations::start(st, Api::Run, &parent, req.delay, kind, metadata);
    submitted(st, &op, req)
}

/// Writes a stopped execution into its job's `latestCreatedExecution` (when it is the latest).
fn finish_on_job(st: &mut State, name: &str) {
    let Some(rec) = st.executions.get(name) else {
        return;
    };
    if let Some(job) = st.jobs.get_mut(&rec.job)
        && str_of(&job.job["latestCreatedExecution"], "name") == name
    {
        job.job["latestCreatedExecution"] = simulation::reference(rec);
    }
}

/// `projects/{p}/locations/{l}` of a resource name.
fn parent_of(name: &str) -> String {
    name.split('/').take(4).collect::<Vec<_>>().join("/")
}

/// `run.tasks.list`: the execution's tasks by index.
pub(crate) fn list_tasks(st: &mut State, req: &Req) -> GResult<Value> {
    let (_, rec) = execution(st, req)?;
    let items: Vec<Value> = (0..rec.tasks.len())
        .map(|i| render(&TASK, &task(rec, i), req.int))
        .collect();
    util::list_page("tasks", &items, &req.query, 100)
}

/// `run.tasks.get`: `{execution}/tasks/{execution id}-task{index}`.
pub(crate) fn get_task(st: &mut State, req: &Req) -> GResult<Value> {
    let wanted = req.seg(9).to_string();
    let (name, rec) = execution(st, req)?;
    let exec_id = req.seg(7);
    let index = (0..rec.tasks.len()).find(|i| task_id(exec_id, *i) == wanted);
    match index {
        Some(i) => Ok(render(&TASK, &task(rec, i), req.int)),
        None => Err(not_found(&TASK, &format!("{name}/tasks/{wanted}"))),
    }
}

/// Task `i` of an execution as the API returns it: the execution's task template, its index,
/// `retried`, `lastAttemptResult`, times and a `Completed` condition.
fn task(rec: &ExecutionRec, i: usize) -> Value {
    let t: &TaskSim = &rec.tasks[i];
    let exec_name = str_of(&rec.exec, "name");
    let exec_id = exec_name.rsplit('/').next().unwrap_or("");
    let name = format!("{exec_name}/tasks/{}", task_id(exec_id, i));
    let created = rec.exec["createTime"].clone();
    let mut v = json!({
        "name": name,
        "uid": util::stable_uid(&name),
        "generation": "1",
        "observedGeneration": "1",
        "createTime": created,
        "scheduledTime": created,
        "job": rec.job,
        "execution": exec_name,
        "index": i,
        "retried": t.attempts.saturating_sub(1),
        "logUri": rec.exec["logUri"],
        "etag": rec.exec["etag"],
    });
    let template = rec.exec.get("template").cloned().unwrap_or(json!({}));
    for f in [
        "containers",
        "volumes",
        "maxRetries",
        "timeout",
        "serviceAccount",
        "executionEnvironment",
        "encryptionKey",
        "vpcAccess",
        "nodeSelector",
    ] {
        if let Some(x) = template.get(f) {
            v[f] = x.clone();
        }
    }
    if let Some(s) = t.start {
        v["startTime"] = json!(util::timestamp(s));
    }
    if let Some(c) = t.completion {
        v["completionTime"] = json!(util::timestamp(c));
        v["updateTime"] = json!(util::timestamp(c));
    }
    if matches!(t.state, TaskState::Pending | TaskState::Running) && rec.state == ExecState::Running
    {
        v["reconciling"] = json!(true);
    }
    match t.last_failed {
        Some(true) => {
            v["lastAttemptResult"] = json!({"exitCode": 1, "status": {"code": Code::Unknown.number(), "message": "The container exited with an error."}});
        }
        Some(false) => v["lastAttemptResult"] = json!({"status": {}}),
        None => {}
    }
    let at = util::timestamp(t.completion.or(t.start).unwrap_or(SystemTime::UNIX_EPOCH));
    let condition = match t.state {
        TaskState::Pending => json!({"type": "Completed", "state": "CONDITION_PENDING"}),
        TaskState::Running => {
            json!({"type": "Completed", "state": "CONDITION_RECONCILING", "lastTransitionTime": at})
        }
        TaskState::Succeeded => {
            json!({"type": "Completed", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": at})
        }
        TaskState::Failed => {
            json!({"type": "Completed", "state": "CONDITION_FAILED", "executionReason": "NON_ZERO_EXIT_CODE", "message": "The container exited with an error.", "lastTransitionTime": at})
        }
        TaskState::Cancelled => {
            json!({"type": "Completed", "state": "CONDITION_FAILED", "executionReason": "CANCELLED", "lastTransitionTime": at})
        }
    };
    v["conditions"] = json!([condition]);
    util::prune(&mut v);
    v
}

/// Whether a run operation may complete: its execution finished (or is gone).
pub(crate) fn finished(st: &State, execution: &str) -> bool {
    st.executions
        .get(execution)
        .is_none_or(|r| r.state != ExecState::Running)
}

/// Whether the execution has started a task (or finished, or is gone).
pub(crate) fn started(st: &State, execution: &str) -> bool {
    st.executions
        .get(execution)
        .is_none_or(|r| r.start.is_some() || r.state != ExecState::Running)
}

/// Completes a run operation: the execution as response when it succeeded; FAILED_PRECONDITION
/// (failed) or CANCELLED (cancelled) with the `Completed` condition's message otherwise.
pub(crate) fn complete_run(st: &State, execution: &str) -> (Value, Result<Value, GError>) {
    let Some(rec) = st.executions.get(execution) else {
        let v = json!({"@type": EXECUTION.any_type, "name": execution});
        return (v, Err(not_found(&EXECUTION, execution)));
    };
    let v = typed(&rec.exec, EXECUTION.any_type);
    let message = rec.exec["conditions"][0]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let result = match rec.state {
        ExecState::Succeeded | ExecState::Running => Ok(v.clone()),
        ExecState::Failed => Err(GError::precondition(message)),
        ExecState::Cancelled => Err(GError::new(Code::Cancelled, message)),
    };
    (v, result)
}

/// Completes a cancel operation: the cancelled execution.
pub(crate) fn complete_cancel(st: &State, execution: &str) -> (Value, Result<Value, GError>) {
    let v = st.executions.get(execution).map_or_else(
        || json!({"@type": EXECUTION.any_type, "name": execution}),
        |r| typed(&r.exec, EXECUTION.any_type),
    );
    (v.clone(), Ok(v))
}

/// Completes an execution delete: it goes.
pub(crate) fn complete_delete(st: &mut State, execution: &str) -> (Value, Result<Value, GError>) {
    let v = st.executions.remove(execution).map_or_else(
        || json!({"@type": EXECUTION.any_type, "name": execution}),
        |r| typed(&r.exec, EXECUTION.any_type),
    );
    (v.clone(), Ok(v))
}
