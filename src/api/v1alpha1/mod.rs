//! `runwarden.dev/v1alpha1`.

mod cloudrunjob;
mod cloudrunservice;
mod condition;
mod runsecuritypolicy;
mod vpcaccessconnector;
mod workload;

pub use cloudrunjob::*;
pub use cloudrunservice::*;
pub use condition::*;
pub use runsecuritypolicy::*;
pub use vpcaccessconnector::*;
pub use workload::*;
