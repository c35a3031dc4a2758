//! Cloud Run jobs: create, get, list, patch (the whole job: `UpdateJobRequest` has no update
//! mask), delete and `:run`. Create, patch and delete validate and store synchronously and start
//! a long-running operation that completes after the operation delay (`complete_deploy`,
//! `complete_delete`). `runExecutionToken` / `startExecutionToken` on create or patch start an
//! execution `{job}-{token}` at once; the operation then also waits for that execution to
//! complete (run token) or start (start token). `:run` starts an execution whose operation is
//! done when the execution is.

use serde_json::{Value, json};

use super::defaults::apply_job_defaults;
use super::resource::{
    self, CALLER, EXECUTION, JOB, check_etag, check_id, check_region_limit, generation, input,
    list_regional, location, new_id, next_generation, not_found, render, resource_etag,
    resource_name, set_creation_fields, spec_of, submitted, validated,
};
use super::rollout::cmek_check;
use super::simulation;
use super::validation::{MAX_TASKS, Rt, validate_job};
use crate::error::{Code, GError, GResult};
use crate::iam::Policy;
use crate::operations::{self, typed};
use crate::request::Req;
use crate::state::{Api, ExecState, ExecutionRec, JobRec, OpKind, Project, State};
use crate::util::{self, get_path, str_of};

/// `run.jobs.get`.
pub(crate) fn get(st: &mut State, req: &Req) -> GResult<Value> {
    let (name, _) = resource_name(st, req, &JOB)?;
    let rec = st.jobs.get(&name).ok_or_else(|| not_found(&JOB, &name))?;
    Ok(render(&JOB, &rec.job, req.int))
}

/// `run.jobs.list`: one region, or every region with `locations/-`.
pub(crate) fn list(st: &mut State, req: &Req) -> GResult<Value> {
    let project = st.project(req.seg(1))?;
    list_regional(&st.jobs, &JOB, &project.id, req)
}

/// The job a create (or a patch with `allowMissing`) makes.
struct NewJob<'a> {
    rt: Rt<'a>,
    name: &'a str,
    project: &'a Project,
    region: &'a str,
    id: &'a str,
}

/// `run.jobs.create` (`jobId`, `validateOnly`).
pub(crate) fn create(st: &mut State, req: &Req) -> GResult<Value> {
    const RT: &str = "CreateJobRequest";
    let project = st.project(req.seg(1))?;
    let region = location(req)?;
    let id = new_id(req, &JOB, RT)?;
    let body = input(&JOB, req)?;
    let name = format!("projects/{}/locations/{region}/jobs/{id}", project.id);
    let target = NewJob {
        rt: Rt::job(RT),
        name: &name,
        project: &project,
        region: &region,
        id: &id,
    };
    create_new(st, req, &body, &target)
}

/// Validates, stores and starts the first deploy of a new job (and its token's execution).
fn create_new(st: &mut State, req: &Req, body: &Value, target: &NewJob) -> GResult<Value> {
    let (name, id) = (target.name, target.id);
    let mut job = spec_of(&JOB, body);
    validate_job(st, &target.rt, &job, target.region)?;
    let token = token_of(&target.rt, id, &job)?;
    if st.jobs.contains_key(name) {
        // Recorded for jobs (PrefectHQ/prefect-gcp#254): `Resource 'NAME' already exists.`
        return Err(already_exists(id));
    }
    let parent = format!("projects/{}/locations/{}", target.project.id, target.region);
    check_region_limit(&st.jobs, &parent, &JOB)?;
    apply_job_defaults(&mut job, target.project);
    let etag = resource_etag(st, name, 1);
    if let Some(o) = job.as_object_mut() {
        set_creation_fields(o, name, &etag);
    }
    if req.q_bool("validateOnly") {
        return validated(st, req, &parent, typed(&job, JOB.any_type));
    }
    job["reconciling"] = json!(true);
    job["terminalCondition"] = json!({"type": "Ready", "state": "CONDITION_RECONCILING"});
    let mut metadata = typed(&job, JOB.any_type);
    metadata["terminalCondition"] = json!({"state": "CONDITION_PENDING"});
    st.jobs.insert(
        name.to_string(),
        JobRec {
            job,
            policy: Policy::default(),
            deleting: false,
            execution_ids: Vec::new(),
        },
    );
    let execution = match token {
        Some((t, waits)) => Some((
            start_execution(st, name, &format!("{id}-{t}"), &json!({}), req)?,
            waits,
        )),
        None => None,
    };
    let kind = OpKind::JobDeploy {
        job: name.to_string(),
        generation: 1,
        execution,
    };
    let op = operations::start(st, Api::Run, &parent, req.delay, kind, metadata);
    submitted(st, &op, req)
}

/// Cloud Run's ALREADY_EXISTS (recorded wording).
fn already_exists(id: &str) -> GError {
    GError::new(
        Code::AlreadyExists,
        format!("Resource '{id}' already exists."),
    )
}

/// The job's execution token, if any: `(token, waits for completion)`. Checked as Cloud Run
/// documents it: one of the two, job name and token together under 63 characters (the token
/// names the execution, so the emulator also wants DNS-label characters).
fn token_of(rt: &Rt, id: &str, job: &Value) -> GResult<Option<(String, bool)>> {
    let start = str_of(job, "startExecutionToken");
    let run = str_of(job, "runExecutionToken");
    let (field, token, waits) = match (start.is_empty(), run.is_empty()) {
        (true, true) => return Ok(None),
        (false, false) => {
            return Err(GError::invalid_field(
                &format!("{}.job", rt.request),
                format!(
                    "Violation in {}.job: only one of start_execution_token and run_execution_token may be set.",
                    rt.request
                ),
            ));
        }
        (false, true) => ("start_execution_token", start, false),
        (true, false) => ("run_execution_token", run, true),
    };
    let dns = token
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !token.ends_with('-');
    if id.len() + token.len() >= 63 || !dns {
        let field = format!("{}.job.{field}", rt.request);
        return Err(GError::invalid_field(
            &field,
            format!(
                "Violation in {field}: the token '{token}' must contain only lowercase letters, digits and hyphens, and the job name and the token together must be fewer than 63 characters."
            ),
        ));
    }
    Ok(Some((token.to_string(), waits)))
}

/// `run.jobs.patch` (`allowMissing`, `validateOnly`, body `etag`): the body replaces every
/// user-settable field (absent ones are cleared, server defaults filled in again). A token
/// different from the job's current one starts an execution; the current one again starts none.
pub(crate) fn patch(st: &mut State, req: &Req) -> GResult<Value> {
    const RT: &str = "UpdateJobRequest";
    let rt = Rt::job(RT);
    let (name, project) = resource_name(st, req, &JOB)?;
    let region = location(req)?;
    let id = req.seg(5).to_string();
    let body = input(&JOB, req)?;
    let Some(rec) = st.jobs.get(&name).filter(|r| !r.deleting).cloned() else {
        if req.q_bool("allowMissing") && !st.jobs.contains_key(&name) {
            check_id(&JOB, &id)?;
            let target = NewJob {
                rt,
                name: &name,
                project: &project,
                region: &region,
                id: &id,
            };
            return create_new(st, req, &body, &target);
        }
        return Err(not_found(&JOB, &name));
    };
    check_etag(&JOB, str_of(&body, "etag"), &rec.job, &name)?;
    let mut new = rec.job.clone();
    if let Some(o) = new.as_object_mut() {
        for f in JOB.fields.iter().copied() {
            match body.get(f) {
                Some(v) => o.insert(f.to_string(), v.clone()),
                None => o.remove(f),
            };
        }
    }
    util::prune(&mut new);
    validate_job(st, &rt, &spec_of(&JOB, &new), &region)?;
    let token = token_of(&rt, &id, &new)?;
    let current = token_of(&rt, &id, &rec.job)?;
    let token = token.filter(|t| Some(&t.0) != current.as_ref().map(|c| &c.0));
    if let Some((t, _)) = &token
        && rec.execution_ids.iter().any(|e| *e == format!("{id}-{t}"))
    {
        return Err(already_exists(&format!("{id}-{t}")));
    }
    apply_job_defaults(&mut new, &project);
    let parent = format!("projects/{}/locations/{region}", project.id);
    if req.q_bool("validateOnly") {
        return validated(st, req, &parent, typed(&new, JOB.any_type));
    }
    let mut target_generation = generation(&rec.job);
    let changed = spec_of(&JOB, &new) != spec_of(&JOB, &rec.job);
    if changed {
        target_generation = next_generation(st, &name, &rec.job, &mut new);
    }
    let mut metadata = typed(&new, JOB.any_type);
    if changed {
        metadata["terminalCondition"]["state"] = json!("CONDITION_PENDING");
    }
    if let Some(r) = st.jobs.get_mut(&name) {
        r.job = new;
    }
    let execution = match token {
        Some((t, waits)) => Some((
            start_execution(st, &name, &format!("{id}-{t}"), &json!({}), req)?,
            waits,
        )),
        None => None,
    };
    let kind = OpKind::JobDeploy {
        job: name,
        generation: target_generation,
        execution,
    };
    let op = operations::start(st, Api::Run, &parent, req.delay, kind, metadata);
    submitted(st, &op, req)
}

/// `run.jobs.delete` (`etag`, `validateOnly`): the job stays readable, marked deleting, until the
/// operation completes; then it goes, with its executions.
pub(crate) fn delete(st: &mut State, req: &Req) -> GResult<Value> {
    resource::delete(
        st,
        req,
        &JOB,
        |st| &mut st.jobs,
        |job| OpKind::JobDelete { job },
    )
}

/// `run.jobs.run` (body `etag`, `validateOnly`, `overrides{containerOverrides, taskCount,
/// timeout}`): a new execution `{job}-{5 random}`; the operation's metadata and response are it.
pub(crate) fn run(st: &mut State, req: &Req) -> GResult<Value> {
    let (name, project) = resource_name(st, req, &JOB)?;
    let region = location(req)?;
    let body = req.object_body()?;
    let overrides = body.get("overrides").cloned().unwrap_or(json!({}));
    let parent = format!("projects/{}/locations/{region}", project.id);
    let rec = st
        .jobs
        .get(&name)
        .filter(|r| !r.deleting)
        .ok_or_else(|| not_found(&JOB, &name))?;
    check_etag(&JOB, str_of(&body, "etag"), &rec.job, &name)?;
    let exec_id = new_execution_id(rec, req.seg(5));
    if req.q_bool("validateOnly") || body.get("validateOnly") == Some(&json!(true)) {
        let preview = build_execution(st, &name, &exec_id, &overrides, req)?;
        return validated(st, req, &parent, typed(&preview.exec, EXECUTION.any_type));
    }
    let op = start_run(st, &name, &exec_id, &overrides, req)?;
    submitted(st, &op, req)
}

/// `{job}-{5 random}`, not used by the job before.
fn new_execution_id(rec: &JobRec, id: &str) -> String {
    loop {
        let candidate = format!("{id}-{}", util::random_alnum(5));
        if !rec.execution_ids.contains(&candidate) {
            break candidate;
        }
    }
}

/// A run of job `name` (without overrides) by Cloud Scheduler, whose caller's `run.jobs.run`
/// was checked: NOT_FOUND for a job that does not exist (or is being deleted).
pub(crate) fn run_as_scheduler(st: &mut State, name: &str, req: &Req) -> GResult<()> {
    let rec = st
        .jobs
        .get(name)
        .filter(|r| !r.deleting)
        .ok_or_else(|| not_found(&JOB, name))?;
    let exec_id = new_execution_id(rec, name.rsplit('/').next().unwrap_or(""));
    start_run(st, name, &exec_id, &json!({}), req).map(|_| ())
}

/// Starts execution `exec_id` of job `name` and the operation that follows it; returns the
/// operation's name.
fn start_run(
    st: &mut State,
    name: &str,
    exec_id: &str,
    overrides: &Value,
    req: &Req,
) -> GResult<String> {
    let execution = start_execution(st, name, exec_id, overrides, req)?;
    let parent = name.rsplitn(3, '/').nth(2).unwrap_or("").to_string();
    let metadata = typed(&st.executions[&execution].exec, EXECUTION.any_type);
    let kind = OpKind::ExecutionRun { execution };
    Ok(operations::start(
        st,
        Api::Run,
        &parent,
        req.delay,
        kind,
        metadata,
    ))
}

/// Creates execution `exec_id` of job `name` (with `overrides`) and counts it on the job:
/// `executionCount`, `latestCreatedExecution`. Its tasks start at the next look.
fn start_execution(
    st: &mut State,
    name: &str,
    exec_id: &str,
    overrides: &Value,
    req: &Req,
) -> GResult<String> {
    let rec = build_execution(st, name, exec_id, overrides, req)?;
    let exec_name = util::str_of(&rec.exec, "name").to_string();
    let reference = simulation::reference(&rec);
    st.executions.insert(exec_name.clone(), rec);
    if let Some(j) = st.jobs.get_mut(name) {
        j.execution_ids.push(exec_id.to_string());
        let count = j.job["executionCount"].as_i64().unwrap_or(0) + 1;
        j.job["executionCount"] = json!(count);
        j.job["latestCreatedExecution"] = reference;
    }
    Ok(exec_name)
}

/// The execution a run of job `name` would create, not stored.
fn build_execution(
    st: &mut State,
    name: &str,
    exec_id: &str,
    overrides: &Value,
    req: &Req,
) -> GResult<ExecutionRec> {
    let job = st
        .jobs
        .get(name)
        .map(|r| r.job.clone())
        .ok_or_else(|| not_found(&JOB, name))?;
    let et = job.get("template").cloned().unwrap_or(json!({}));
    let mut template = et.get("template").cloned().unwrap_or(json!({}));
    let mut task_count = et["taskCount"].as_i64().unwrap_or(1);
    apply_overrides(&mut template, &mut task_count, overrides)?;
    let parallelism = et["parallelism"].as_i64().unwrap_or(0);
    let exec_name = format!("{name}/executions/{exec_id}");
    let parts: Vec<&str> = name.split('/').collect();
    let now = util::timestamp(req.now);
    st.exec_seq += 1;
    let seq = st.exec_seq;
    let etag = resource_etag(st, &exec_name, 1);
    let mut exec = json!({
        "name": exec_name,
        "uid": util::uuid(),
        "generation": "1",
        "createTime": now,
        "updateTime": now,
        "creator": CALLER,
        "launchStage": job.get("launchStage").cloned().unwrap_or(json!("GA")),
        "job": name,
        "taskCount": task_count,
        "template": template,
        "observedGeneration": "1",
        "logUri": log_uri(parts[1], parts[3], parts[5], exec_id),
        "etag": etag,
    });
    for f in ["labels", "annotations"] {
        if let Some(v) = et.get(f) {
            exec[f] = v.clone();
        }
    }
    if parallelism > 0 {
        exec["parallelism"] = json!(parallelism);
    }
    let count = task_count as usize;
    let mut rec = ExecutionRec {
        exec,
        job: name.to_string(),
        seq,
        tasks: simulation::tasks(count),
        task_duration: req.task_duration,
        max_retries: template["maxRetries"].as_u64().unwrap_or(0) as u32,
        parallelism: if parallelism > 0 {
            (parallelism as usize).min(count)
        } else {
            count
        },
        clock: req.now,
        state: ExecState::Running,
        start: None,
        completion: None,
        deleting: false,
    };
    simulation::refresh(&mut rec);
    Ok(rec)
}

/// A run's `overrides`: `taskCount` (1–10,000), `timeout`, and per container (by `name`, else
/// the first) `args` (or `clearArgs`) and `env` (merged by name).
fn apply_overrides(template: &mut Value, task_count: &mut i64, overrides: &Value) -> GResult<()> {
    const F: &str = "RunJobRequest.overrides";
    if let Some(n) = util::int_at(
        overrides,
        "taskCount",
        &format!("{F}.task_count"),
        "TYPE_INT32",
    )? {
        if !(1..=MAX_TASKS).contains(&n) {
            return Err(GError::invalid_field(
                &format!("{F}.task_count"),
                format!("Violation in {F}.task_count: must be between 1 and {MAX_TASKS}."),
            ));
        }
        *task_count = n;
    }
    if let Some(t) = overrides.get("timeout") {
        if t.as_str().and_then(util::parse_duration).is_none() {
            return Err(util::bad_value(
                &format!("{F}.timeout"),
                "type.googleapis.com/google.protobuf.Duration",
                t,
            ));
        }
        template["timeout"] = t.clone();
    }
    let empty = Vec::new();
    let list = overrides
        .get("containerOverrides")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    for o in list {
        let wanted = str_of(o, "name");
        let containers = template
            .get_mut("containers")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| GError::invalid("the job has no containers"))?;
        let Some(c) = containers
            .iter_mut()
            .find(|c| wanted.is_empty() || str_of(c, "name") == wanted)
        else {
            return Err(GError::invalid_field(
                &format!("{F}.container_overrides"),
                format!(
                    "Violation in {F}.container_overrides: no container named '{wanted}' in the job."
                ),
            ));
        };
        if o.get("clearArgs") == Some(&json!(true)) {
            c.as_object_mut().map(|m| m.remove("args"));
        } else if let Some(args) = o
            .get("args")
            .filter(|a| a.as_array().is_some_and(|a| !a.is_empty()))
        {
            c["args"] = args.clone();
        }
        for e in o.get("env").and_then(Value::as_array).unwrap_or(&empty) {
            let env = c
                .as_object_mut()
                .map(|m| m.entry("env").or_insert(json!([])))
                .and_then(Value::as_array_mut);
            if let Some(env) = env {
                env.retain(|x| str_of(x, "name") != str_of(e, "name"));
                env.push(e.clone());
            }
        }
    }
    Ok(())
}

/// The Cloud Logging link Cloud Run gives an execution.
fn log_uri(project: &str, region: &str, job: &str, exec_id: &str) -> String {
    format!(
        "https://console.cloud.google.com/logs/viewer?project={project}&advancedFilter=resource.type%3D%22cloud_run_job%22%0Aresource.labels.job_name%3D%22{job}%22%0Aresource.labels.location%3D%22{region}%22%0Alabels.%22run.googleapis.com/execution_name%22%3D%22{exec_id}%22"
    )
}

/// Completes a job create/update: the job becomes ready for `target_generation`, or fails the
/// CMEK check. With a run token, Ready follows that execution: failed when it failed.
pub(crate) fn complete_deploy(
    st: &mut State,
    job: &str,
    target_generation: i64,
    execution: Option<&(String, bool)>,
) -> (Value, Result<Value, GError>) {
    let Some(rec) = st.jobs.get(job).cloned() else {
        return (
            json!({"@type": JOB.any_type, "name": job}),
            Err(GError::new(
                Code::Aborted,
                format!("Job '{job}' was deleted before the deploy finished."),
            )),
        );
    };
    if rec.deleting || generation(&rec.job) != target_generation {
        let v = typed(&rec.job, JOB.any_type);
        return (v.clone(), Ok(v));
    }
    let parts: Vec<&str> = job.split('/').collect();
    let number = crate::state::project_number(parts[1]);
    let key = get_path(&rec.job, "template.template.encryptionKey")
        .and_then(Value::as_str)
        .unwrap_or("");
    let check = cmek_check(
        st,
        key,
        number,
        &format!("Job '{}' is not ready.", parts[5]),
    );
    let failed_run = execution
        .filter(|(_, waits)| *waits)
        .and_then(|(e, _)| st.executions.get(e))
        .filter(|e| matches!(e.state, ExecState::Failed | ExecState::Cancelled))
        .map(|e| {
            str_of(&e.exec, "name")
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string()
        });
    let now = util::now();
    let mut v = rec.job.clone();
    v.as_object_mut().map(|o| o.remove("reconciling"));
    v["observedGeneration"] = json!(target_generation.to_string());
    let result = match (check, failed_run) {
        (Err((reason, message)), _) => {
            v["terminalCondition"] = json!({"type": "Ready", "state": "CONDITION_FAILED", "reason": reason, "message": message, "lastTransitionTime": now});
            Err(GError::precondition(message))
        }
        (Ok(()), Some(exec_id)) => {
            v["terminalCondition"] = json!({"type": "Ready", "state": "CONDITION_FAILED", "executionReason": "NON_ZERO_EXIT_CODE", "message": format!("Execution '{exec_id}' failed."), "lastTransitionTime": now});
            Ok(())
        }
        (Ok(()), None) => {
            v["terminalCondition"] =
                json!({"type": "Ready", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": now});
            Ok(())
        }
    };
    if let Some(r) = st.jobs.get_mut(job) {
        r.job = v.clone();
    }
    let any = typed(&v, JOB.any_type);
    (any.clone(), result.map(|()| any))
}

/// Completes a job delete: the job goes, with its IAM policy and executions (running ones are
/// cancelled).
pub(crate) fn complete_delete(st: &mut State, job: &str) -> (Value, Result<Value, GError>) {
    let Some(rec) = st.jobs.remove(job) else {
        let v = json!({"@type": JOB.any_type, "name": job});
        return (v.clone(), Ok(v));
    };
    let prefix = format!("{job}/executions/");
    st.executions.retain(|k, _| !k.starts_with(&prefix));
    let now = util::now();
    let mut v = rec.job;
    v.as_object_mut().map(|o| o.remove("reconciling"));
    v["observedGeneration"] = v["generation"].clone();
    v["terminalCondition"] =
        json!({"type": "Ready", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": now});
    let any = typed(&v, JOB.any_type);
    (any.clone(), Ok(any))
}
