//! Act (IO only): the writes a [`Plan`] lists, in order. The first that fails ends the pass, with
//! the condition of its step and its error; IAM writes that meet a concurrent change
//! (`ABORTED`) read the policy again and re-apply the same pure edit.

use tracing::info;

use super::SERVICE_READY;
use super::encryption::{self, KMS_ROLE};
use super::plan::{Change, CleanupPlan, Fields, Plan};
use crate::controller::access::{self, Record};
use crate::controller::conditions::Cond;
use crate::controller::iam;
use crate::controller::reasons::DELETING;
use crate::controller::{CleanupOutcome, Note, Outcome};
use crate::error::{Error, reason_of};
use crate::gcp::{Code, Gcp, GcpError};

/// A pass after its writes: what status and events to publish, and what happens next.
#[derive(Debug)]
pub struct Applied {
    /// Sub-conditions decided by the pass.
    pub conditions: Vec<Cond>,
    /// Status fields.
    pub fields: Fields,
    /// Events to publish, in order.
    pub notes: Vec<Note>,
    /// What happens next.
    pub outcome: Outcome,
}

impl crate::controller::Acted for Applied {
    fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    fn notes_mut(&mut self) -> &mut Vec<Note> {
        &mut self.notes
    }
}

/// Makes the plan's writes; `record` persists grants before they are made.
pub async fn execute(plan: Plan, gcp: &Gcp, record: &dyn Record) -> Applied {
    let Plan {
        mut conditions,
        changes,
        outcome,
        mut fields,
        mut notes,
    } = plan;
    for change in changes {
        if let Err((c, e)) = write(change, gcp, record, &mut fields, &mut notes).await {
            conditions.retain(|o| o.type_ != c.type_);
            conditions.push(c);
            return Applied {
                conditions,
                fields,
                notes,
                outcome: Outcome::Stop(e),
            };
        }
    }
    Applied {
        conditions,
        fields,
        notes,
        outcome,
    }
}

/// One write: the event it earns, the operation it starts; else its step's condition and error.
async fn write(
    change: Change,
    gcp: &Gcp,
    record: &dyn Record,
    fields: &mut Fields,
    notes: &mut Vec<Note>,
) -> Result<(), (Cond, Error)> {
    match change {
        Change::GrantKey {
            key,
            member,
            policy,
        } => grant_key(gcp, &key, &member, policy, notes).await?,
        Change::Create {
            parent,
            id,
            service,
        } => {
            let op = gcp
                .run
                .create_service(&parent, &id, service)
                .await
                .map_err(|e| service_failed(&e))?;
            let name = format!("{parent}/services/{id}");
            info!(service = %name, operation = %op.name, "creating Cloud Run service");
            notes.push(Note::normal(
                "Creating",
                "Create",
                format!("Creating Cloud Run service {name}"),
            ));
            fields.operation = Some(op.name);
        }
        Change::Update {
            service,
            changed,
            adopt,
        } => {
            let name = service.name.clone();
            let op = gcp
                .run
                .update_service(service)
                .await
                .map_err(|e| service_failed(&e))?;
            let (reason, verb) = if adopt {
                ("Adopted", "Adopting")
            } else {
                ("Updated", "Updating")
            };
            let changed = changed.join(", ");
            info!(service = %name, operation = %op.name, fields = %changed, "{verb} Cloud Run service");
            notes.push(Note::normal(
                reason,
                "Update",
                format!("{verb} Cloud Run service {name}: {changed}"),
            ));
            fields.operation = Some(op.name);
        }
        Change::SubmitBuild {
            request,
            mut record,
        } => {
            let parent = request.parent.clone();
            let image = request.image_uri.clone();
            let answer = gcp
                .builds
                .submit_build(*request)
                .await
                .map_err(|e| service_failed(&e))?;
            let op = answer.build_operation.map(|o| o.name).unwrap_or_default();
            info!(parent = %parent, operation = %op, image = %image, "submitted a build from source");
            let mut message = format!("Building {image} (Cloud Build operation {op})");
            if !answer.base_image_warning.is_empty() {
                message = format!("{message}: {}", answer.base_image_warning);
            }
            notes.push(Note::normal("BuildSubmitted", "Build", message));
            record.operation = Some(op).filter(|o| !o.is_empty());
            record.base_image_uri = Some(answer.base_image_uri).filter(|b| !b.is_empty());
            fields.build = Some(record);
        }
        Change::SetInvokers(change) => {
            access::apply(
                gcp.run.as_ref(),
                change,
                record,
                "InvokersUpdated",
                &mut fields.access,
                notes,
            )
            .await?
        }
    }
    Ok(())
}

/// Adds the Cloud Run service agent `member` to the key's encrypter/decrypter binding (every
/// workload kind's grant).
pub async fn grant_key(
    gcp: &Gcp,
    key: &str,
    member: &str,
    policy: google_cloud_iam_v1::model::Policy,
    notes: &mut Vec<Note>,
) -> Result<(), (Cond, Error)> {
    let written = iam::write_or_retry(gcp.kms.as_ref(), key, policy, |p| {
        iam::with_member(p, KMS_ROLE, member)
    })
    .await
    .map_err(|e| match e.code {
        Code::PermissionDenied => encryption::grant_denied(key, member, &e),
        _ => encryption::google_failed(&e),
    })?;
    // Another pass (a workload sharing the key) may have granted it in between.
    if written {
        notes.push(Note::normal(
            "KeyGranted",
            "SetIamPolicy",
            format!("granted {KMS_ROLE} on {key} to {member}"),
        ));
    }
    Ok(())
}

fn service_failed(e: &GcpError) -> (Cond, crate::error::Error) {
    (
        Cond::fail(SERVICE_READY, reason_of(e.code), e.message.clone()),
        e.clone().into(),
    )
}

/// A cleanup pass after its delete call.
#[derive(Debug)]
pub struct Cleaned {
    /// Sub-conditions decided by the pass.
    pub conditions: Vec<Cond>,
    /// Status fields.
    pub fields: Fields,
    /// Events to publish.
    pub notes: Vec<Note>,
    /// What happens next.
    pub outcome: CleanupOutcome,
}

/// Makes the cleanup plan's delete call.
pub async fn execute_cleanup(plan: CleanupPlan, gcp: &Gcp) -> Cleaned {
    let CleanupPlan {
        mut conditions,
        delete,
        mut outcome,
        mut fields,
        mut notes,
    } = plan;
    if let Some(name) = delete {
        match gcp.run.delete_service(&name).await {
            Ok(None) => outcome = CleanupOutcome::Done,
            Ok(Some(op)) => {
                info!(service = %name, operation = %op.name, "deleting Cloud Run service");
                notes.push(Note::normal(
                    "Deleting",
                    "Delete",
                    format!("Deleting Cloud Run service {name}"),
                ));
                conditions.push(Cond::fail(
                    SERVICE_READY,
                    DELETING,
                    format!("Cloud Run is deleting the service (operation {})", op.name),
                ));
                fields.operation = Some(op.name);
                outcome = CleanupOutcome::wait(format!("deletion of {name}"));
            }
            Err(e) => {
                let (mut c, err) = service_failed(&e);
                c.message = format!("{}; {}", c.message, super::plan::stuck_deletion_help(&name));
                conditions.push(c);
                outcome = CleanupOutcome::Stop(err);
            }
        }
    }
    Cleaned {
        conditions,
        fields,
        notes,
        outcome,
    }
}
