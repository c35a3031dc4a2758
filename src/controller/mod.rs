//! The controllers and the machinery around them.
//!
//! Each controller's pass has the same shape: **observe** (IO: what Google has, read lazily as
//! the plan asks for it) → **plan** (pure: what to do, with the conditions that follow) →
//! **act** (IO: the planned writes) → **status** (pure), written only when it changed.
//!
//! - [`context`]: settings, clients, caches, events and backoff state shared by every pass;
//! - [`frame`]: the finalizer, metrics, retries and status writes around a pass;
//! - [`runner`]: the watches and the controllers;
//! - [`operation`], [`conditions`], [`reasons`], [`iam`]: pieces both controllers use.

pub mod access;
pub mod cloudrunjob;
pub mod cloudrunservice;
pub mod conditions;
pub mod context;
pub mod events;
pub mod frame;
pub mod iam;
pub mod lease;
pub mod operation;
pub mod ownership;
pub mod reasons;
pub mod runner;
pub mod runsecuritypolicy;
pub mod vpcaccessconnector;

pub use context::{Config, Context};
pub use frame::{error_policy_for, write_status};
pub use runner::{Health, Parts, run};

use std::time::Duration;

use kube::runtime::events::EventType;

/// An event a pass decided to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    /// Normal or Warning.
    pub type_: EventType,
    /// CamelCase reason, e.g. `Created`.
    pub reason: &'static str,
    /// What was done, e.g. `Create`.
    pub action: &'static str,
    /// The message.
    pub message: String,
}

impl Note {
    /// A Normal event.
    pub fn normal(reason: &'static str, action: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_: EventType::Normal,
            reason,
            action,
            message: message.into(),
        }
    }

    /// A Warning event.
    pub fn warning(reason: &'static str, action: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_: EventType::Warning,
            reason,
            action,
            message: message.into(),
        }
    }
}

/// `projects/{project}/locations/{region}`.
pub fn parent(project: &str, region: &str) -> String {
    format!("projects/{project}/locations/{region}")
}

/// The last segment of a resource name (`.../revisions/r-00001` → `r-00001`).
pub fn last_segment(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or_default()
}

/// The message for an object whose project cannot be resolved.
pub fn no_project_message(namespace: &str) -> String {
    format!(
        "no Google Cloud project: set spec.projectId, annotate namespace {namespace} with runwarden.dev/project-id, or start the controller with --default-project"
    )
}

/// RFC 3339 timestamp of now, for conditions.
pub fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}

/// What ends a text [`truncate`] cut short.
pub const ELLIPSIS: char = '…';

/// `s` cut to at most `max` bytes (so at most `max` characters too), on a character boundary,
/// ending with [`ELLIPSIS`] when something was cut.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let ellipsis = max >= ELLIPSIS.len_utf8();
        let mut cut = max - if ellipsis { ELLIPSIS.len_utf8() } else { 0 };
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        if ellipsis {
            s.push(ELLIPSIS);
        }
    }
    s
}

/// How a pass over a live object ends, after its writes.
#[derive(Debug)]
pub enum Outcome {
    /// Google matches the spec: look again at the next resync (the paced resync of
    /// [`runner`], which visits every object whose last pass was clean once per period).
    InSync,
    /// Google is working (an operation, a deploy): look again after the operation poll, later
    /// the longer it has been working (see [`operation::poll_after`]). Not a clean pass: the
    /// object's failure backoff is kept.
    Progressing,
    /// The pass stops with this error: a spec change is needed, or a retry with backoff.
    Stop(crate::Error),
}

/// How a pass over an object being deleted ends.
#[derive(Debug)]
pub enum CleanupOutcome {
    /// Nothing left to do in Google: the finalizer may go.
    Done,
    /// Waiting (an operation, a running deploy, services still using a connector): look again
    /// after `after`, or after the operation poll (see [`operation::poll_after`]).
    Wait {
        /// What is awaited, for logs.
        what: String,
        /// When to look again (`None`: the operation poll).
        after: Option<std::time::Duration>,
    },
    /// Failed; retried with backoff.
    Stop(crate::Error),
}

/// When to look again at an object whose Google work is in flight: after the operation poll
/// at first, then the longer it has been in flight, the later. How long is read from the
/// status the pass leaves: since `Ready` last changed (it turns `Unknown` when a write starts).
pub fn poll_after(ctx: &Context, conditions: &[crate::api::v1alpha1::Condition]) -> Duration {
    operation::poll_after(
        ctx.config.operation_poll,
        operation::in_flight_for(conditions, jiff::Timestamp::now()),
    )
}

impl Outcome {
    /// The error the pass stopped with, if it failed (see [`conditions::ready_unless_failed`]).
    pub fn failure(&self) -> Option<&crate::Error> {
        match self {
            Outcome::Stop(e) => Some(e),
            _ => None,
        }
    }

    /// The reconcile's result; `conditions` are those of the status the pass leaves (see
    /// [`poll_after`]).
    pub fn into_result(
        self,
        ctx: &Context,
        conditions: &[crate::api::v1alpha1::Condition],
    ) -> crate::Result<kube::runtime::controller::Action> {
        self.result(poll_after(ctx, conditions))
    }

    /// The reconcile's result: in sync, nothing scheduled for the object (the paced resync
    /// comes back to it; a requeue per object would hold a scheduler entry for each of
    /// thousands of healthy objects); progressing, look again after `poll`, as a
    /// [`crate::Error::Waiting`] (no clean pass: the failure backoff is kept).
    pub fn result(self, poll: Duration) -> crate::Result<kube::runtime::controller::Action> {
        match self {
            Outcome::InSync => Ok(kube::runtime::controller::Action::await_change()),
            Outcome::Progressing => Err(crate::Error::Waiting {
                what: "Google to finish".into(),
                after: poll,
            }),
            Outcome::Stop(e) => Err(e),
        }
    }
}

impl CleanupOutcome {
    /// The error the pass stopped with, if it failed (see [`conditions::ready_unless_failed`]).
    pub fn failure(&self) -> Option<&crate::Error> {
        match self {
            CleanupOutcome::Stop(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the pass leaves the object behind its finalizer (waiting or failed): then its
    /// status must say why.
    pub fn keeps_object(&self) -> bool {
        !matches!(self, CleanupOutcome::Done)
    }

    /// Waiting for Google's operation.
    pub fn wait(what: impl Into<String>) -> Self {
        CleanupOutcome::Wait {
            what: what.into(),
            after: None,
        }
    }

    /// The reconcile's result (a wait is an [`crate::Error::Waiting`], so the finalizer stays);
    /// `conditions` are those of the status the pass leaves (see [`poll_after`]).
    pub fn into_result(
        self,
        ctx: &Context,
        conditions: &[crate::api::v1alpha1::Condition],
    ) -> crate::Result<kube::runtime::controller::Action> {
        match self {
            CleanupOutcome::Done => Ok(kube::runtime::controller::Action::await_change()),
            CleanupOutcome::Wait { what, after } => Err(crate::Error::Waiting {
                what,
                after: after.unwrap_or_else(|| poll_after(ctx, conditions)),
            }),
            CleanupOutcome::Stop(e) => Err(e),
        }
    }
}

/// What a controller's pass has read from Google, filled one [`Observation::Read`] at a time.
pub trait Observation: Default + Send {
    /// A fact the plan can ask for.
    type Read: Send;
    /// Makes one read and records its answer.
    fn read<'a>(
        &'a mut self,
        read: Self::Read,
        gcp: &'a crate::gcp::Gcp,
        numbers: &'a context::ProjectNumbers,
    ) -> futures::future::BoxFuture<'a, ()>;
}

/// Asks `plan` what it needs, reads it into the observation, and asks again until the plan is
/// complete. A plan asks only for what it has not observed, so each fact is read at most once
/// per pass, and only the facts its decisions depend on.
pub async fn observe_and_plan<O: Observation, P>(
    gcp: &crate::gcp::Gcp,
    numbers: &context::ProjectNumbers,
    plan: impl Fn(&O) -> Result<P, O::Read>,
) -> P {
    observe_and_plan_from(O::default(), gcp, numbers, plan)
        .await
        .0
}

/// [`observe_and_plan`] starting from what is already `observed`; returns the plan and every
/// observation it was made from.
pub async fn observe_and_plan_from<O: Observation, P>(
    mut observed: O,
    gcp: &crate::gcp::Gcp,
    numbers: &context::ProjectNumbers,
    plan: impl Fn(&O) -> Result<P, O::Read>,
) -> (P, O) {
    loop {
        match plan(&observed) {
            Ok(plan) => return (plan, observed),
            Err(next) => observed.read(next, gcp, numbers).await,
        }
    }
}

/// A pass's writes as made: the events they earned and how the pass ends (for
/// [`plan_and_act`]).
pub trait Acted {
    /// How the pass ends.
    fn outcome(&self) -> &Outcome;
    /// The events to publish, in order.
    fn notes_mut(&mut self) -> &mut Vec<Note>;
}

impl Outcome {
    /// Whether the pass stopped at a create Google refused because the resource exists.
    pub fn refused_as_existing(&self) -> bool {
        matches!(self, Outcome::Stop(crate::Error::Gcp(e))
            if e.code == crate::gcp::Code::AlreadyExists && e.method.ends_with(".create"))
    }
}

/// Observes, plans and makes the writes of one pass, starting from what the object's status
/// lets the pass take as known without a read (`presumed`: a resource this object has never
/// named or created is absent, so it is created without a `get` first).
///
/// A presumption can be wrong: the controller stopped between Google's answer to a create and
/// the status write that recorded it, or someone else holds the name. Then Google refuses the
/// create (`ALREADY_EXISTS`), which changes nothing, and the pass is made again from nothing
/// observed: it reads the resource and takes the ownership path (ours: go on; someone else's:
/// `AlreadyExists`, never adopted unless the spec says so). The events of the refused attempt
/// (a key granted before the create) are kept.
pub async fn plan_and_act<O: Observation, P, A: Acted, F: std::future::Future<Output = A>>(
    presumed: Option<O>,
    gcp: &crate::gcp::Gcp,
    numbers: &context::ProjectNumbers,
    plan: impl Fn(&O) -> Result<P, O::Read>,
    act: impl Fn(P) -> F,
) -> A {
    let Some(presumed) = presumed else {
        return act(observe_and_plan(gcp, numbers, &plan).await).await;
    };
    let (first, _) = observe_and_plan_from(presumed, gcp, numbers, &plan).await;
    let mut first = act(first).await;
    if !first.outcome().refused_as_existing() {
        return first;
    }
    tracing::info!("a create was refused as existing: reading before acting");
    let mut second = act(observe_and_plan(gcp, numbers, &plan).await).await;
    let mut notes = std::mem::take(first.notes_mut());
    notes.append(second.notes_mut());
    *second.notes_mut() = notes;
    second
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_short_text_and_cuts_long_text_on_a_char_boundary_with_an_ellipsis() {
        assert_eq!(truncate("short".into(), 10), "short");
        assert_eq!(truncate("abcdefghij".into(), 10), "abcdefghij");
        let cut = truncate("ééééééé".into(), 8);
        assert_eq!(cut, "éé…", "3 bytes for the ellipsis leave room for two é");
        assert!(cut.len() <= 8);
        assert_eq!(truncate("abc".into(), 2), "ab", "no room for the ellipsis");
    }
}
