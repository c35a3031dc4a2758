//! Act (IO only): the writes a job's [`Plan`] lists, in order. The first that fails ends the
//! pass with its step's condition and error. The key grant is the service's own write.

use tracing::info;

use super::plan::{Change, CleanupPlan, Fields, Plan, stuck_deletion_help};
use super::{JOB_READY, SCHEDULE_READY};
use crate::controller::access::{self, Record};
use crate::controller::cloudrunservice::act as service_act;
use crate::controller::conditions::Cond;
use crate::controller::reasons::DELETING;
use crate::controller::{CleanupOutcome, Note, Outcome};
use crate::error::{Error, reason_of};
use crate::gcp::{Gcp, GcpError};

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
    let mut outcome = outcome;
    for change in changes {
        if let Err((c, e)) = write(change, gcp, record, &mut fields, &mut notes).await {
            conditions.retain(|o| o.type_ != c.type_);
            conditions.push(c);
            outcome = Outcome::Stop(e);
            break;
        }
    }
    Applied {
        conditions,
        fields,
        notes,
        outcome,
    }
}

fn failed(type_: &'static str, e: &GcpError) -> (Cond, Error) {
    (
        Cond::fail(type_, reason_of(e.code), e.message.clone()),
        e.clone().into(),
    )
}

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
        } => service_act::grant_key(gcp, &key, &member, policy, notes).await?,
        Change::Create { parent, id, job } => {
            let op = gcp
                .jobs
                .create_job(&parent, &id, *job)
                .await
                .map_err(|e| failed(JOB_READY, &e))?;
            let name = format!("{parent}/jobs/{id}");
            info!(job = %name, operation = %op.name, "creating Cloud Run job");
            notes.push(Note::normal(
                "Creating",
                "Create",
                format!("Creating Cloud Run job {name}"),
            ));
            fields.operation = Some(op.name);
        }
        Change::Update {
            job,
            changed,
            adopt,
        } => {
            let name = job.name.clone();
            let op = gcp
                .jobs
                .update_job(*job)
                .await
                .map_err(|e| failed(JOB_READY, &e))?;
            let (reason, verb) = if adopt {
                ("Adopted", "Adopting")
            } else {
                ("Updated", "Updating")
            };
            let changed = changed.join(", ");
            info!(job = %name, operation = %op.name, fields = %changed, "{verb} Cloud Run job");
            notes.push(Note::normal(
                reason,
                "Update",
                format!("{verb} Cloud Run job {name}: {changed}"),
            ));
            fields.operation = Some(op.name);
        }
        Change::SetExecutors(change) => {
            access::apply(
                gcp.jobs.as_ref(),
                change,
                record,
                "ExecutorsUpdated",
                &mut fields.access,
                notes,
            )
            .await?
        }
        Change::CreateSchedule { parent, job } => {
            let name = job.name.clone();
            gcp.scheduler
                .create_job(&parent, *job)
                .await
                .map_err(|e| failed(SCHEDULE_READY, &e))?;
            info!(schedule = %name, "created Cloud Scheduler job");
            notes.push(Note::normal(
                "ScheduleCreated",
                "Create",
                format!("Created Cloud Scheduler job {name}"),
            ));
        }
        Change::UpdateSchedule { job, mask } => {
            let name = job.name.clone();
            let what = mask.join(", ");
            gcp.scheduler
                .update_job(*job, mask)
                .await
                .map_err(|e| failed(SCHEDULE_READY, &e))?;
            notes.push(Note::normal(
                "ScheduleUpdated",
                "Update",
                format!("Updated Cloud Scheduler job {name}: {what}"),
            ));
        }
        Change::PauseSchedule(name) => {
            gcp.scheduler
                .pause_job(&name)
                .await
                .map_err(|e| failed(SCHEDULE_READY, &e))?;
            notes.push(Note::normal(
                "SchedulePaused",
                "Pause",
                format!("Paused Cloud Scheduler job {name}"),
            ));
        }
        Change::ResumeSchedule(name) => {
            gcp.scheduler
                .resume_job(&name)
                .await
                .map_err(|e| failed(SCHEDULE_READY, &e))?;
            notes.push(Note::normal(
                "ScheduleResumed",
                "Resume",
                format!("Resumed Cloud Scheduler job {name}"),
            ));
        }
        Change::DeleteSchedule(name) => {
            gcp.scheduler
                .delete_job(&name)
                .await
                .map_err(|e| failed(SCHEDULE_READY, &e))?;
            notes.push(Note::normal(
                "ScheduleDeleted",
                "Delete",
                format!("Deleted Cloud Scheduler job {name} (spec.schedule was removed)"),
            ));
        }
    }
    Ok(())
}

/// A cleanup pass after its delete calls.
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

/// Makes the cleanup plan's delete calls: the Scheduler job first, then the job.
pub async fn execute_cleanup(plan: CleanupPlan, gcp: &Gcp) -> Cleaned {
    let CleanupPlan {
        mut conditions,
        delete_schedule,
        delete,
        mut outcome,
        mut fields,
        mut notes,
    } = plan;
    let stuck = |type_: &'static str, e: &GcpError, name: &str| {
        let (mut c, err) = failed(type_, e);
        c.message = format!("{}; {}", c.message, stuck_deletion_help(name));
        (c, err)
    };
    if let Some(name) = delete_schedule {
        match gcp.scheduler.delete_job(&name).await {
            Ok(_) => {
                notes.push(Note::normal(
                    "ScheduleDeleted",
                    "Delete",
                    format!("Deleted Cloud Scheduler job {name}"),
                ));
                fields.schedule = None;
            }
            Err(e) => {
                let (c, err) = stuck(SCHEDULE_READY, &e, &name);
                conditions.push(c);
                return Cleaned {
                    conditions,
                    fields,
                    notes,
                    outcome: CleanupOutcome::Stop(err),
                };
            }
        }
    }
    if let Some(name) = delete {
        match gcp.jobs.delete_job(&name).await {
            Ok(None) => outcome = CleanupOutcome::Done,
            Ok(Some(op)) => {
                info!(job = %name, operation = %op.name, "deleting Cloud Run job");
                notes.push(Note::normal(
                    "Deleting",
                    "Delete",
                    format!("Deleting Cloud Run job {name}"),
                ));
                conditions.push(Cond::fail(
                    JOB_READY,
                    DELETING,
                    format!("Cloud Run is deleting the job (operation {})", op.name),
                ));
                fields.operation = Some(op.name);
                outcome = CleanupOutcome::wait(format!("deletion of {name}"));
            }
            Err(e) => {
                let (c, err) = stuck(JOB_READY, &e, &name);
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
