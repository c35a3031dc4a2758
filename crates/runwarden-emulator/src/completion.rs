//! Lazy progress of everything that takes time: on every API request, due Cloud Scheduler jobs
//! run, executions catch up to the emulator clock, and each operation whose delay has elapsed
//! (and, for job runs and token deploys, whose execution got far enough) is completed by its API
//! (a Cloud Run rollout, job deploy, run or delete, a connector create or delete), oldest first.
//! The only module that knows both the operation store and the APIs.

use std::time::Instant;

use serde_json::Value;

use crate::error::GError;
use crate::request::Req;
use crate::state::{OpKind, State};
use crate::{run, scheduler, vpcaccess};

/// Brings the state up to the request's emulator time.
pub(crate) fn catch_up(st: &mut State, req: &Req) {
    scheduler::run_due(st, req);
    run::advance_executions(st, req.now);
    complete_due_operations(st);
}

/// Completes every operation whose delay has elapsed and that may complete, oldest first.
pub(crate) fn complete_due_operations(st: &mut State) {
    let now = Instant::now();
    let mut due: Vec<(u64, String)> = st
        .operations
        .values()
        .filter(|o| !o.done && now.duration_since(o.started) >= o.delay && ready(st, &o.kind))
        .map(|o| (o.seq, o.name.clone()))
        .collect();
    due.sort();
    for (_, name) in due {
        let Some(op) = st.operations.get(&name) else {
            continue;
        };
        let (kind, metadata) = (op.kind.clone(), op.metadata.clone());
        let (metadata, result) = complete(st, &kind, metadata);
        if let Some(o) = st.operations.get_mut(&name) {
            o.done = true;
            o.metadata = metadata;
            o.result = Some(result);
        }
    }
}

/// Whether what the operation waits for besides its delay has happened: a run's execution
/// finished; a token deploy's execution started (start token) or finished (run token).
fn ready(st: &State, kind: &OpKind) -> bool {
    match kind {
        OpKind::ExecutionRun { execution } => run::executions::finished(st, execution),
        OpKind::JobDeploy {
            execution: Some((execution, waits_for_completion)),
            ..
        } => {
            if *waits_for_completion {
                run::executions::finished(st, execution)
            } else {
                run::executions::started(st, execution)
            }
        }
        _ => true,
    }
}

/// What completing one operation does: its final metadata and its `response` or `error`.
fn complete(st: &mut State, kind: &OpKind, metadata: Value) -> (Value, Result<Value, GError>) {
    match kind {
        OpKind::RunDeploy {
            service,
            generation,
            revision,
        } => run::complete_deploy(st, service, *generation, revision.as_deref()),
        OpKind::RunDelete { service } => run::complete_delete(st, service),
        OpKind::JobDeploy {
            job,
            generation,
            execution,
        } => run::jobs::complete_deploy(st, job, *generation, execution.as_ref()),
        OpKind::JobDelete { job } => run::jobs::complete_delete(st, job),
        OpKind::ExecutionRun { execution } => run::executions::complete_run(st, execution),
        OpKind::ExecutionCancel { execution } => run::executions::complete_cancel(st, execution),
        OpKind::ExecutionDelete { execution } => run::executions::complete_delete(st, execution),
        OpKind::ConnectorCreate { connector } => {
            vpcaccess::complete_create(st, connector, &metadata)
        }
        OpKind::ConnectorDelete { connector } => {
            vpcaccess::complete_delete(st, connector, &metadata)
        }
        OpKind::Build {
            image,
            digest,
            fails,
        } => run::builds::complete(metadata, image, digest, *fails),
        OpKind::Fixed => (metadata, Ok(Value::Null)),
    }
}
