//! runwarden: a Kubernetes controller that keeps secure Google Cloud Run services matching the
//! `CloudRunService`, `VpcAccessConnector` and `RunSecurityPolicy` custom resources.
#![forbid(unsafe_code)]

pub mod api;
pub mod crd;
pub mod gcp;
pub mod metrics;
pub mod controller;
pub mod error;

pub use error::{Error, Result};
pub mod http;
