//! Executions running their tasks on the emulator clock. Nothing runs in the background: before
//! each request the router has every running execution catch up to the emulator clock
//! ([`advance`]), which replays what happened since, event by event, so the outcome does not
//! depend on how often anyone looks.
//!
//! The model: every attempt takes the `taskDuration` in force when the execution started (`0s` by
//! default: the whole execution finishes at the first look). At most `parallelism` attempts run at
//! once (0 = every task at once); pending tasks start lowest index first, a failed attempt's
//! retry queues at its index. The `taskFailures` control makes the next K attempts of a job fail
//! (decided as each attempt starts, in that order); a task whose attempt fails gets another while
//! it has made at most `maxRetries` attempts, else it fails. The execution is done when every task
//! is: succeeded when all succeeded, failed when any failed (the others still run to the end).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::state::{ExecState, ExecutionRec, State, TaskSim, TaskState};
use crate::util;

/// Has every running execution catch up to `now`, then writes what changed into the execution
/// resources and their jobs' `latestCreatedExecution`.
pub(crate) fn advance(st: &mut State, now: SystemTime) {
    let State {
        executions,
        task_failures,
        jobs,
        ..
    } = st;
    for (name, rec) in executions.iter_mut() {
        if rec.state != ExecState::Running {
            continue;
        }
        step(rec, task_failures, now);
        refresh(rec);
        if let Some(job) = jobs.get_mut(&rec.job)
            && util::str_of(&job.job["latestCreatedExecution"], "name") == name
        {
            job.job["latestCreatedExecution"] = reference(rec);
        }
    }
}

/// A new execution's tasks, all pending.
pub(super) fn tasks(count: usize) -> Vec<TaskSim> {
    vec![
        TaskSim {
            state: TaskState::Pending,
            attempts: 0,
            failing: false,
            ends: None,
            start: None,
            completion: None,
            last_failed: None,
        };
        count
    ]
}

/// Replays the execution's events up to `now`.
fn step(rec: &mut ExecutionRec, failures: &mut BTreeMap<String, u64>, now: SystemTime) {
    while rec.state == ExecState::Running {
        start_attempts(rec, failures);
        let next = rec
            .tasks
            .iter()
            .filter(|t| t.state == TaskState::Running)
            .filter_map(|t| t.ends)
            .min();
        let Some(at) = next.filter(|at| *at <= now) else {
            break;
        };
        rec.clock = at;
        let max_retries = rec.max_retries;
        for t in rec.tasks.iter_mut() {
            if t.state == TaskState::Running && t.ends == Some(at) {
                finish_attempt(t, max_retries, at);
            }
        }
        let finished = |t: &TaskSim| !matches!(t.state, TaskState::Pending | TaskState::Running);
        if rec.tasks.iter().all(finished) {
            let failed = rec.tasks.iter().any(|t| t.state == TaskState::Failed);
            rec.state = if failed {
                ExecState::Failed
            } else {
                ExecState::Succeeded
            };
            rec.completion = Some(at);
        }
    }
}

/// Starts attempts of pending tasks, lowest index first, while fewer than `parallelism` run.
fn start_attempts(rec: &mut ExecutionRec, failures: &mut BTreeMap<String, u64>) {
    let running = rec
        .tasks
        .iter()
        .filter(|t| t.state == TaskState::Running)
        .count();
    let free = rec.parallelism.saturating_sub(running);
    let (clock, ends) = (rec.clock, rec.clock + rec.task_duration);
    let mut started = false;
    for t in rec
        .tasks
        .iter_mut()
        .filter(|t| t.state == TaskState::Pending)
        .take(free)
    {
        t.state = TaskState::Running;
        t.attempts += 1;
        t.failing = take_failure(failures, &rec.job);
        t.ends = Some(ends);
        t.start.get_or_insert(clock);
        started = true;
    }
    if started {
        rec.start.get_or_insert(clock);
    }
}

/// Whether the next attempt of `job` fails (consumes one of its `taskFailures`).
fn take_failure(failures: &mut BTreeMap<String, u64>, job: &str) -> bool {
    match failures.get_mut(job) {
        Some(n) if *n > 0 => {
            *n -= 1;
            if *n == 0 {
                failures.remove(job);
            }
            true
        }
        _ => false,
    }
}

fn finish_attempt(t: &mut TaskSim, max_retries: u32, at: SystemTime) {
    t.ends = None;
    t.last_failed = Some(t.failing);
    if !t.failing {
        t.state = TaskState::Succeeded;
        t.completion = Some(at);
    } else if t.attempts > max_retries {
        t.state = TaskState::Failed;
        t.completion = Some(at);
    } else {
        t.state = TaskState::Pending;
    }
    t.failing = false;
}

/// Stops an execution at `at`: pending and running tasks are cancelled.
pub(super) fn cancel(rec: &mut ExecutionRec, at: SystemTime) {
    if rec.state != ExecState::Running {
        return;
    }
    for t in rec.tasks.iter_mut() {
        if matches!(t.state, TaskState::Pending | TaskState::Running) {
            t.state = TaskState::Cancelled;
            t.ends = None;
            t.completion = Some(at);
        }
    }
    rec.state = ExecState::Cancelled;
    rec.clock = at;
    rec.completion = Some(at);
    refresh(rec);
}

/// The id of task `index` of the execution `exec_id`: `{exec_id}-task{index}`.
pub(super) fn task_id(exec_id: &str, index: usize) -> String {
    format!("{exec_id}-task{index}")
}

/// Writes the counts, times, conditions and `reconciling` into the execution resource.
pub(super) fn refresh(rec: &mut ExecutionRec) {
    let count = |s: TaskState| rec.tasks.iter().filter(|t| t.state == s).count();
    let retried = rec.tasks.iter().filter(|t| t.attempts > 1).count();
    let conditions = conditions(rec);
    let Some(o) = rec.exec.as_object_mut() else {
        return;
    };
    for (field, n) in [
        ("runningCount", count(TaskState::Running)),
        ("succeededCount", count(TaskState::Succeeded)),
        ("failedCount", count(TaskState::Failed)),
        ("cancelledCount", count(TaskState::Cancelled)),
        ("retriedCount", retried),
    ] {
        if n > 0 {
            o.insert(field.into(), json!(n));
        } else {
            o.remove(field);
        }
    }
    for (field, t) in [("startTime", rec.start), ("completionTime", rec.completion)] {
        if let Some(t) = t {
            o.insert(field.into(), json!(util::timestamp(t)));
        }
    }
    if rec.state == ExecState::Running {
        o.insert("reconciling".into(), json!(true));
    } else {
        o.remove("reconciling");
        o.insert("updateTime".into(), o["completionTime"].clone());
    }
    o.insert("conditions".into(), conditions);
}

/// `ResourcesAvailable` and `Started` (succeeded once a task started), and `Completed`: running
/// while tasks run, then succeeded, or failed with `executionReason` `NON_ZERO_EXIT_CODE` or
/// `CANCELLED`.
fn conditions(rec: &ExecutionRec) -> Value {
    let at = |t: Option<SystemTime>| util::timestamp(t.unwrap_or(rec.clock));
    let created = rec.exec["createTime"].clone();
    let started = match rec.start {
        Some(t) => {
            json!({"type": "Started", "state": "CONDITION_SUCCEEDED", "message": "Started deployed tasks.", "lastTransitionTime": util::timestamp(t)})
        }
        None => {
            json!({"type": "Started", "state": "CONDITION_PENDING", "lastTransitionTime": created})
        }
    };
    let completed = match rec.state {
        ExecState::Running => {
            json!({"type": "Completed", "state": "CONDITION_RECONCILING", "lastTransitionTime": at(rec.start)})
        }
        ExecState::Succeeded => json!({
            "type": "Completed", "state": "CONDITION_SUCCEEDED",
            "message": format!("Execution completed successfully in {}.", elapsed(rec)),
            "lastTransitionTime": at(rec.completion)
        }),
        ExecState::Failed => {
            let exec_id = util::str_of(&rec.exec, "name")
                .rsplit('/')
                .next()
                .unwrap_or("");
            let failed = rec
                .tasks
                .iter()
                .position(|t| t.state == TaskState::Failed)
                .unwrap_or(0);
            json!({
                "type": "Completed", "state": "CONDITION_FAILED",
                "executionReason": "NON_ZERO_EXIT_CODE",
                "message": format!("Task {} failed with message: The container exited with an error.", task_id(exec_id, failed)),
                "lastTransitionTime": at(rec.completion)
            })
        }
        ExecState::Cancelled => json!({
            "type": "Completed", "state": "CONDITION_FAILED",
            "executionReason": if rec.deleting { "DELETED" } else { "CANCELLED" },
            "message": "The execution was cancelled.",
            "lastTransitionTime": at(rec.completion)
        }),
    };
    json!([
        completed,
        {"type": "ResourcesAvailable", "state": "CONDITION_SUCCEEDED", "message": "Provisioned resources.", "lastTransitionTime": created},
        started,
    ])
}

/// How long the execution took, `12.5s`.
fn elapsed(rec: &ExecutionRec) -> String {
    let (Some(start), Some(end)) = (rec.start, rec.completion) else {
        return "0s".into();
    };
    util::format_duration(end.duration_since(start).unwrap_or(Duration::ZERO))
}

/// The `ExecutionReference` a job shows for this execution.
pub(super) fn reference(rec: &ExecutionRec) -> Value {
    let status = match rec.state {
        ExecState::Running if rec.start.is_none() => "EXECUTION_PENDING",
        ExecState::Running => "EXECUTION_RUNNING",
        ExecState::Succeeded => "EXECUTION_SUCCEEDED",
        ExecState::Failed => "EXECUTION_FAILED",
        ExecState::Cancelled => "EXECUTION_CANCELLED",
    };
    let mut r = json!({
        "name": rec.exec["name"],
        "createTime": rec.exec["createTime"],
        "completionStatus": status,
    });
    if let Some(t) = rec.completion {
        r["completionTime"] = json!(util::timestamp(t));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(tasks_n: usize, parallelism: usize, max_retries: u32, d: Duration) -> ExecutionRec {
        ExecutionRec {
            exec: json!({"name": "projects/p/locations/l/jobs/j/executions/j-1", "createTime": "t"}),
            job: "projects/p/locations/l/jobs/j".into(),
            seq: 1,
            tasks: tasks(tasks_n),
            task_duration: d,
            max_retries,
            parallelism,
            clock: SystemTime::UNIX_EPOCH,
            state: ExecState::Running,
            start: None,
            completion: None,
            deleting: false,
        }
    }

    #[test]
    fn parallelism_and_durations_on_the_clock() {
        let s = Duration::from_secs(1);
        let mut r = rec(3, 2, 0, s);
        let mut f = BTreeMap::new();
        let t0 = SystemTime::UNIX_EPOCH;
        step(&mut r, &mut f, t0);
        assert_eq!(r.tasks[2].state, TaskState::Pending);
        assert_eq!(r.tasks[0].state, TaskState::Running);
        step(&mut r, &mut f, t0 + s);
        assert_eq!(r.tasks[2].state, TaskState::Running);
        step(&mut r, &mut f, t0 + 2 * s);
        assert_eq!(r.state, ExecState::Succeeded);
        assert_eq!(r.completion, Some(t0 + 2 * s));
    }

    #[test]
    fn failures_are_retried_up_to_max_retries() {
        let mut f = BTreeMap::from([(String::from("projects/p/locations/l/jobs/j"), 3)]);
        let mut r = rec(1, 1, 3, Duration::ZERO);
        step(&mut r, &mut f, SystemTime::UNIX_EPOCH);
        assert_eq!(r.state, ExecState::Succeeded);
        assert_eq!(r.tasks[0].attempts, 4);
        let mut f = BTreeMap::from([(String::from("projects/p/locations/l/jobs/j"), 5)]);
        let mut r = rec(2, 1, 3, Duration::ZERO);
        step(&mut r, &mut f, SystemTime::UNIX_EPOCH);
        assert_eq!(r.state, ExecState::Failed);
        assert_eq!(r.tasks[0].state, TaskState::Failed);
        assert_eq!(r.tasks[1].attempts, 2, "the fifth failure hits task 1");
        assert_eq!(r.tasks[1].state, TaskState::Succeeded);
        assert!(f.is_empty());
    }
}
