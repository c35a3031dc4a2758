//! Cloud Run Admin v2: services (create, get, list, patch, delete), their IAM policy, and
//! operations. One file per concern:
//!
//! - `services`: the service methods; `iam`: the IAM methods; `operations`: the operation methods.
//! - `validation`: synchronous checks of a service spec; `defaults`: what Cloud Run fills in.
//! - `rollout`: what completing a create/patch/delete operation does (incl. the CMEK check).
//! - `resource`: the Service as the others share it (names, NOT_FOUND, etags, rendering).
//!
//! Dependencies point one way: the method modules use `resource`, `validation` and `defaults`;
//! `rollout` uses `resource` and `validation`; nothing in `run` imports this file.

mod defaults;
pub(crate) mod iam;
pub(crate) mod operations;
mod resource;
mod rollout;
pub(crate) mod services;
mod validation;

pub(crate) use rollout::{complete_delete, complete_deploy};
