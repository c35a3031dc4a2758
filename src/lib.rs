//! runwarden: a Kubernetes controller that keeps secure Google Cloud Run services matching the
//! `CloudRunService`, `VpcAccessConnector` and `RunSecurityPolicy` custom resources.
// `deny`, not `forbid`: the exceptions are glibc's `malloc_trim` and `mallopt`
// (`controller::runner::release_free_memory`, `limit_heap_arenas`).
#![deny(unsafe_code)]

pub mod api;
pub mod controller;
pub mod crd;
pub mod duration;
pub mod error;
pub mod gcp;
pub mod manifest;
pub mod metrics;
pub mod plan;
pub mod policy;

pub use error::{Error, Result};
pub mod http;
