//! Lazy completion of long-running operations: on every API request, each operation whose delay
//! has elapsed is completed by its API (a Cloud Run rollout or delete, a connector create or
//! delete), oldest first. The only module that knows both the operation store and the APIs.

use std::time::Instant;

use serde_json::Value;

use crate::error::GError;
use crate::state::{OpKind, State};
use crate::{run, vpcaccess};

/// Completes every operation whose delay has elapsed, oldest first.
pub(crate) fn complete_due_operations(st: &mut State) {
    let now = Instant::now();
    let mut due: Vec<(u64, String)> = st
        .operations
        .values()
        .filter(|o| !o.done && now.duration_since(o.started) >= o.delay)
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

/// What completing one operation does: its final metadata and its `response` or `error`.
fn complete(st: &mut State, kind: &OpKind, metadata: Value) -> (Value, Result<Value, GError>) {
    match kind {
        OpKind::RunDeploy {
            service,
            generation,
            revision,
        } => run::complete_deploy(st, service, *generation, revision.as_deref()),
        OpKind::RunDelete { service } => run::complete_delete(st, service),
        OpKind::ConnectorCreate { connector } => {
            vpcaccess::complete_create(st, connector, &metadata)
        }
        OpKind::ConnectorDelete { connector } => {
            vpcaccess::complete_delete(st, connector, &metadata)
        }
        OpKind::Fixed => (metadata, Ok(Value::Null)),
    }
}
