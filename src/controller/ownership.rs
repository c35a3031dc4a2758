//! Whose a Google resource is (pure), one rule for every kind: a resource carries the uid of
//! the object that created it (`runwarden-owner`); an object takes over one it did not create
//! only with `adoptionPolicy: Adopt`, and never one another live object owns.

use crate::controller::cloudrunservice::plan::Owners;
use crate::controller::reasons::{ALREADY_EXISTS, ALREADY_OWNED};
use crate::error::Error;

/// What a resource is called in messages: `Cloud Run service projects/.../services/api`.
#[derive(Clone, Copy, Debug)]
pub struct Named<'a> {
    /// `Cloud Run service`, `Cloud Run job`, `Cloud Scheduler job`.
    pub what: &'a str,
    /// Its full name.
    pub name: &'a str,
    /// The kind of the objects that own it, e.g. `CloudRunJob`.
    pub owner_kind: &'a str,
    /// Where the owner is recorded, e.g. `runwarden-owner label`.
    pub marker: &'a str,
}

/// Whether the resource is this object's (`Ok(true)`), one it may take over (`Ok(false)`), or
/// one it must leave alone: the reason, the message and the error that stop the pass.
/// `owner` is the uid the resource carries; `observe`: the object writes nothing, so it may look
/// at anything.
#[allow(clippy::result_large_err)] // Error's size is kube::Error's; this is not a hot path.
pub fn claim(
    named: Named,
    owner: Option<&str>,
    uid: &str,
    observe: bool,
    adopt: bool,
    owners: &dyn Owners,
) -> Result<bool, (&'static str, String, Error)> {
    let Named {
        what,
        name,
        owner_kind,
        marker,
    } = named;
    let ours = owner == Some(uid);
    if let Some(other) = owner
        .filter(|o| !ours && !observe && adopt && !o.is_empty())
        .and_then(|o| owners.live(o))
    {
        let noun = what.rsplit(' ').next().unwrap_or(what);
        let message = format!(
            "{what} {name} is owned by {owner_kind} {other}; adoptionPolicy: Adopt never takes a {noun} another live object owns (to hand it over, delete that object with deletionPolicy: Abandon first)"
        );
        let error = Error::Blocked {
            reason: ALREADY_OWNED,
            message: message.clone(),
        };
        return Err((ALREADY_OWNED, message, error));
    }
    if !ours && !observe && !adopt {
        let message = format!(
            "{what} {name} exists and was not created by this object (its {marker} is {}); set spec.adoptionPolicy: Adopt to take it over",
            owner.map_or("absent".to_owned(), |o| format!("{o:?}"))
        );
        let error = Error::Spec {
            reason: ALREADY_EXISTS,
            message: message.clone(),
        };
        return Err((ALREADY_EXISTS, message, error));
    }
    Ok(ours)
}
