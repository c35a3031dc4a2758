//! Cloud Run Admin v2: services (create, get, list, patch, delete), jobs (create, get, list,
//! patch, delete, run), executions (get, list, cancel, delete) and tasks (get, list), their IAM
//! policies, and operations. One file per concern:
//!
//! - `builds`: `builds:submit` and the Cloud Build operation it returns.
//! - `services`, `jobs`, `executions`: the methods; `iam`: the IAM methods of services and jobs;
//!   `operations`: the operation methods.
//! - `validation`: synchronous checks of a service or job spec; `defaults`: what Cloud Run fills in.
//! - `rollout`: what completing a service create/patch/delete operation does (incl. the CMEK
//!   check jobs share); jobs and executions complete their own operations.
//! - `simulation`: executions running their tasks on the emulator clock.
//! - `resource`: what services, jobs and executions share (names, NOT_FOUND, etags, rendering).
//!
//! Dependencies point one way: the method modules use `resource`, `validation`, `defaults` and
//! `simulation`; `rollout` uses `resource` and `validation`; nothing in `run` imports this file.

pub(crate) mod builds;
mod defaults;
pub(crate) mod executions;
pub(crate) mod iam;
pub(crate) mod jobs;
pub(crate) mod operations;
mod resource;
mod rollout;
pub(crate) mod services;
mod simulation;
mod validation;

pub(crate) use rollout::{complete_delete, complete_deploy};
pub(crate) use simulation::advance as advance_executions;
