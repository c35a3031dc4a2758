//! Cloud Run operations: `operations.get`, `.wait` (the router sleeps until the operation is due
//! before calling [`get`]), `.list` and `.delete`.

use serde_json::{Value, json};

use crate::error::GResult;
use crate::operations;
use crate::request::Req;
use crate::state::{Api, State};

/// The request path with the project number replaced by its id (names are stored by id).
fn canonical_path(st: &mut State, req: &Req) -> GResult<String> {
    let p = st.project(req.seg(1))?;
    let mut segs = req.segs.clone();
    segs[1] = p.id;
    if segs.len() == 5 && segs[4] == "operations" {
        segs.pop();
    }
    Ok(segs.join("/"))
}

/// `run.operations.get` and `run.operations.wait`.
pub(crate) fn get(st: &mut State, req: &Req) -> GResult<Value> {
    let name = canonical_path(st, req)?;
    operations::get(st, Api::Run, &name, req.int)
}

/// `run.operations.list`.
pub(crate) fn list(st: &mut State, req: &Req) -> GResult<Value> {
    let parent = canonical_path(st, req)?;
    operations::list(st, Api::Run, &parent, req)
}

/// `run.operations.delete`: forgets the operation (it is not cancelled).
pub(crate) fn delete(st: &mut State, req: &Req) -> GResult<Value> {
    let name = canonical_path(st, req)?;
    match st.operations.get(&name) {
        Some(o) if o.api == Api::Run => {
            st.operations.remove(&name);
            Ok(json!({}))
        }
        _ => Err(operations::not_found(&name)),
    }
}
