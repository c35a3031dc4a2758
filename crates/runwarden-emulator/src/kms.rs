//! Cloud KMS v1: key rings, crypto keys (with IAM), crypto key versions.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::enums;
use crate::error::{Code, GError, GResult};
use crate::iam::Policy;
use crate::request::Req;
use crate::state::{KeyRec, State};
use crate::util::{self, str_of};

/// The request path with the project id (names are stored by id), after checking the
/// location: `projects/{id}/locations/{l}/keyRings/...`.
fn canonical_segs(st: &mut State, req: &Req) -> GResult<Vec<String>> {
    let p = st.project(req.seg(1))?;
    let mut segs = req.segs.clone();
    segs[1] = p.id;
    let location = req.seg(3);
    if location.is_empty()
        || !location
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(GError::invalid(format!("Invalid location '{location}'.")));
    }
    Ok(segs)
}

/// The canonical resource name of the request path.
fn canonical_name(st: &mut State, req: &Req) -> GResult<String> {
    Ok(canonical_segs(st, req)?.join("/"))
}

/// The first `n` segments of the canonical path (the parent at that depth).
fn canonical_prefix(st: &mut State, req: &Req, n: usize) -> GResult<String> {
    Ok(canonical_segs(st, req)?[..n].join("/"))
}

/// `kms.keyRings.create`.
pub(crate) fn create_key_ring(st: &mut State, req: &Req) -> GResult<Value> {
    let parent = canonical_prefix(st, req, 4)?;
    let id = req.q("keyRingId").unwrap_or("");
    check_id(id, "key_ring_id")?;
    let name = format!("{parent}/keyRings/{id}");
    if st.key_rings.contains_key(&name) {
        return Err(GError::new(
            Code::AlreadyExists,
            format!("KeyRing {name} already exists."),
        ));
    }
    let ring = json!({"name": name, "createTime": util::now()});
    st.key_rings.insert(name, ring.clone());
    Ok(ring)
}

/// `kms.keyRings.get`.
pub(crate) fn get_key_ring(st: &mut State, req: &Req) -> GResult<Value> {
    let name = canonical_name(st, req)?;
    st.key_rings
        .get(&name)
        .cloned()
        .ok_or_else(|| ring_not_found(&name))
}

/// `kms.keyRings.list`.
pub(crate) fn list_key_rings(st: &mut State, req: &Req) -> GResult<Value> {
    let prefix = format!("{}/keyRings/", canonical_prefix(st, req, 4)?);
    let items: Vec<Value> = st
        .key_rings
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, v)| v.clone())
        .collect();
    list_response("keyRings", &items, req)
}

/// `kms.cryptoKeys.get`.
pub(crate) fn get_key(st: &mut State, req: &Req) -> GResult<Value> {
    let name = canonical_name(st, req)?;
    let rec = st
        .crypto_keys
        .get(&name)
        .ok_or_else(|| key_not_found(&name))?;
    Ok(render_key(rec, req.int))
}

/// `kms.cryptoKeys.list`.
pub(crate) fn list_keys(st: &mut State, req: &Req) -> GResult<Value> {
    let ring = canonical_prefix(st, req, 6)?;
    if !st.key_rings.contains_key(&ring) {
        return Err(ring_not_found(&ring));
    }
    let prefix = format!("{ring}/cryptoKeys/");
    let items: Vec<Value> = st
        .crypto_keys
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, r)| render_key(r, req.int))
        .collect();
    list_response("cryptoKeys", &items, req)
}

/// `kms.cryptoKeys.getIamPolicy`.
pub(crate) fn get_key_policy(st: &mut State, req: &Req) -> GResult<Value> {
    let name = canonical_name(st, req)?;
    let rec = st
        .crypto_keys
        .get(&name)
        .ok_or_else(|| key_not_found(&name))?;
    Ok(rec.policy.render())
}

/// `kms.cryptoKeys.setIamPolicy`.
pub(crate) fn set_key_policy(st: &mut State, req: &Req) -> GResult<Value> {
    let name = canonical_name(st, req)?;
    let mut seq = st.etag_seq;
    let rec = st
        .crypto_keys
        .get_mut(&name)
        .ok_or_else(|| key_not_found(&name))?;
    let out = rec.policy.set(&req.object_body()?, &mut seq)?;
    st.etag_seq = seq;
    Ok(out)
}

/// `kms.cryptoKeys.updatePrimaryVersion`: the version must be ENABLED.
pub(crate) fn update_primary_version(st: &mut State, req: &Req) -> GResult<Value> {
    let name = canonical_name(st, req)?;
    let rec = st
        .crypto_keys
        .get_mut(&name)
        .ok_or_else(|| key_not_found(&name))?;
    let id = str_of(&req.body, "cryptoKeyVersionId");
    let n: u64 = id.parse().map_err(|_| {
        GError::invalid_field(
            "crypto_key_version_id",
            format!("Invalid crypto_key_version_id '{id}'."),
        )
    })?;
    let v = rec
        .versions
        .get(&n)
        .ok_or_else(|| version_not_found(&format!("{name}/cryptoKeyVersions/{id}")))?;
    if str_of(v, "state") != "ENABLED" {
        return Err(state_error(v));
    }
    rec.primary = Some(n);
    Ok(render_key(rec, req.int))
}

/// `kms.cryptoKeyVersions.create`: the next number, ENABLED, not primary.
pub(crate) fn create_version(st: &mut State, req: &Req) -> GResult<Value> {
    let name = canonical_prefix(st, req, 8)?;
    let rec = st
        .crypto_keys
        .get_mut(&name)
        .ok_or_else(|| key_not_found(&name))?;
    let n = rec.versions.keys().max().copied().unwrap_or(0) + 1;
    let v = new_version(&name, n, &rec.key);
    rec.versions.insert(n, v.clone());
    Ok(out(v, enums::KEY_VERSION, req.int))
}

/// `kms.cryptoKeyVersions.list`.
pub(crate) fn list_versions(st: &mut State, req: &Req) -> GResult<Value> {
    let name = canonical_prefix(st, req, 8)?;
    let rec = st
        .crypto_keys
        .get(&name)
        .ok_or_else(|| key_not_found(&name))?;
    let items: Vec<Value> = rec
        .versions
        .values()
        .map(|v| out(v.clone(), enums::KEY_VERSION, req.int))
        .collect();
    list_response("cryptoKeyVersions", &items, req)
}

/// `kms.cryptoKeyVersions.get`.
pub(crate) fn get_version(st: &mut State, req: &Req) -> GResult<Value> {
    with_version(st, req, |_, _| Ok(()))
}

/// `kms.cryptoKeyVersions.patch`.
pub(crate) fn patch_version(st: &mut State, req: &Req) -> GResult<Value> {
    with_version(st, req, |v, _| apply_version_patch(v, req))
}

/// `kms.cryptoKeyVersions.destroy`: ENABLED or DISABLED → DESTROY_SCHEDULED.
pub(crate) fn destroy_version(st: &mut State, req: &Req) -> GResult<Value> {
    with_version(st, req, |v, destroy_after| {
        if !matches!(str_of(v, "state"), "ENABLED" | "DISABLED") {
            return Err(state_error(v));
        }
        let after = util::parse_duration(destroy_after).unwrap_or(Duration::from_secs(30 * 86_400));
        v["state"] = json!("DESTROY_SCHEDULED");
        v["destroyTime"] = json!(util::timestamp(SystemTime::now() + after));
        Ok(())
    })
}

/// `kms.cryptoKeyVersions.restore`: DESTROY_SCHEDULED → DISABLED.
pub(crate) fn restore_version(st: &mut State, req: &Req) -> GResult<Value> {
    with_version(st, req, |v, _| {
        if str_of(v, "state") != "DESTROY_SCHEDULED" {
            return Err(state_error(v));
        }
        v["state"] = json!("DISABLED");
        if let Some(o) = v.as_object_mut() {
            o.remove("destroyTime");
        }
        Ok(())
    })
}

/// Finds the version the path names, applies `change` to it (given the key's
/// `destroyScheduledDuration`) and returns it.
fn with_version(
    st: &mut State,
    req: &Req,
    change: impl FnOnce(&mut Value, &str) -> GResult<()>,
) -> GResult<Value> {
    let segs = canonical_segs(st, req)?;
    let key_name = segs[..8].join("/");
    let vname = segs.join("/");
    let rec = st
        .crypto_keys
        .get_mut(&key_name)
        .ok_or_else(|| version_not_found(&vname))?;
    let n: u64 = req.seg(9).parse().map_err(|_| version_not_found(&vname))?;
    let destroy_after = str_of(&rec.key, "destroyScheduledDuration").to_string();
    let v = rec
        .versions
        .get_mut(&n)
        .ok_or_else(|| version_not_found(&vname))?;
    change(v, &destroy_after)?;
    Ok(out(v.clone(), enums::KEY_VERSION, req.int))
}

fn out(mut v: Value, schema: enums::Schema, int: bool) -> Value {
    enums::encode(&mut v, schema, int);
    v
}

fn list_response(key: &str, items: &[Value], req: &Req) -> GResult<Value> {
    let mut v = util::list_page(key, items, &req.query, 1000)?;
    if !items.is_empty() {
        v["totalSize"] = json!(items.len());
    }
    Ok(v)
}

fn check_id(id: &str, field: &str) -> GResult<()> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(GError::invalid_field(
            field,
            format!(
                "Invalid {field} '{id}': it must match the regular expression [a-zA-Z0-9_-]{{1,63}}."
            ),
        ))
    }
}

fn ring_not_found(name: &str) -> GError {
    GError::not_found(format!("KeyRing {name} not found."))
}

fn key_not_found(name: &str) -> GError {
    GError::not_found(format!("CryptoKey {name} not found."))
}

fn version_not_found(name: &str) -> GError {
    GError::not_found(format!("CryptoKeyVersion {name} not found."))
}

/// KMS's FAILED_PRECONDITION wording for a state that forbids the call.
fn state_error(v: &Value) -> GError {
    GError::precondition(format!(
        "The request cannot be fulfilled. Resource {} has value {} in field crypto_key_version.state.",
        str_of(v, "name"),
        str_of(v, "state")
    ))
}

fn new_version(key_name: &str, n: u64, key: &Value) -> Value {
    let now = util::now();
    let t = key.get("versionTemplate").cloned().unwrap_or(json!({}));
    json!({
        "name": format!("{key_name}/cryptoKeyVersions/{n}"),
        "state": "ENABLED",
        "createTime": now,
        "generateTime": now,
        "algorithm": str_of(&t, "algorithm"),
        "protectionLevel": str_of(&t, "protectionLevel"),
    })
}

fn render_key(rec: &KeyRec, int: bool) -> Value {
    let mut k = rec.key.clone();
    if let Some(v) = rec.primary.and_then(|n| rec.versions.get(&n)) {
        k["primary"] = v.clone();
    }
    out(k, enums::CRYPTO_KEY, int)
}

fn default_algorithm(purpose: &str) -> &'static str {
    match purpose {
        "ENCRYPT_DECRYPT" => "GOOGLE_SYMMETRIC_ENCRYPTION",
        "ASYMMETRIC_SIGN" => "EC_SIGN_P256_SHA256",
        "ASYMMETRIC_DECRYPT" => "RSA_DECRYPT_OAEP_2048_SHA256",
        "MAC" => "HMAC_SHA256",
        "RAW_ENCRYPT_DECRYPT" => "AES_256_GCM",
        _ => "GOOGLE_SYMMETRIC_ENCRYPTION",
    }
}

/// `kms.cryptoKeys.create`: version 1 ENABLED (and primary for ENCRYPT_DECRYPT) unless
/// `skipInitialVersionCreation`.
pub(crate) fn create_key(st: &mut State, req: &Req) -> GResult<Value> {
    let ring = &canonical_prefix(st, req, 6)?;
    let id = req.q("cryptoKeyId").unwrap_or("");
    check_id(id, "crypto_key_id")?;
    if !st.key_rings.contains_key(ring) {
        return Err(ring_not_found(ring));
    }
    let name = format!("{ring}/cryptoKeys/{id}");
    if st.crypto_keys.contains_key(&name) {
        return Err(GError::new(
            Code::AlreadyExists,
            format!("CryptoKey {name} already exists."),
        ));
    }
    let mut key = req.object_body()?;
    enums::decode(&mut key, enums::CRYPTO_KEY, "crypto_key")?;
    util::prune(&mut key);
    let purpose = str_of(&key, "purpose").to_string();
    if purpose.is_empty() {
        return Err(GError::invalid_field(
            "crypto_key.purpose",
            "The request must specify a CryptoKey purpose.",
        ));
    }
    if let Some(rp) = key.get("rotationPeriod")
        && rp
            .as_str()
            .and_then(util::parse_duration)
            .is_none_or(|d| d < Duration::from_secs(86_400))
    {
        return Err(GError::invalid_field(
            "crypto_key.rotation_period",
            format!("Invalid rotation_period {rp}: it must be at least 1 day."),
        ));
    }
    if let Some(o) = key.as_object_mut() {
        o.remove("primary");
        o.insert("name".into(), json!(name));
        o.insert("createTime".into(), json!(util::now()));
        o.entry("destroyScheduledDuration")
            .or_insert(json!("2592000s"));
        let t = o.entry("versionTemplate").or_insert(json!({}));
        if let Some(t) = t.as_object_mut() {
            t.entry("algorithm")
                .or_insert(json!(default_algorithm(&purpose)));
            t.entry("protectionLevel").or_insert(json!("SOFTWARE"));
        }
    }
    let mut rec = KeyRec {
        key,
        versions: BTreeMap::new(),
        primary: None,
        policy: Policy::default(),
    };
    if !req.q_bool("skipInitialVersionCreation") {
        rec.versions.insert(1, new_version(&name, 1, &rec.key));
        if purpose == "ENCRYPT_DECRYPT" {
            rec.primary = Some(1);
        }
    }
    let v = render_key(&rec, req.int);
    st.crypto_keys.insert(name, rec);
    Ok(v)
}

/// `kms.cryptoKeys.patch` (`updateMask` required).
pub(crate) fn patch_key(st: &mut State, req: &Req) -> GResult<Value> {
    let name = &canonical_name(st, req)?;
    let rec = st
        .crypto_keys
        .get_mut(name)
        .ok_or_else(|| key_not_found(name))?;
    let mut body = req.object_body()?;
    enums::decode(&mut body, enums::CRYPTO_KEY, "crypto_key")?;
    let Some(mask) = util::query_mask(&req.query, "updateMask").filter(|m| !m.is_empty()) else {
        return Err(GError::invalid_field(
            "update_mask",
            "The request must specify an update_mask.",
        ));
    };
    let mut key = rec.key.clone();
    for p in mask {
        let p: String = p.split('.').map(util::camel).collect::<Vec<_>>().join(".");
        match p.as_str() {
            "labels"
            | "rotationPeriod"
            | "nextRotationTime"
            | "versionTemplate"
            | "versionTemplate.algorithm"
            | "keyAccessJustificationsPolicy" => {
                if p == "rotationPeriod"
                    && let Some(rp) = body.get("rotationPeriod").filter(|v| !v.is_null())
                {
                    let d = rp.as_str().and_then(util::parse_duration);
                    if d.is_none_or(|d| d != Duration::ZERO && d < Duration::from_secs(86_400)) {
                        return Err(GError::invalid_field(
                            "crypto_key.rotation_period",
                            format!("Invalid rotation_period {rp}: it must be at least 1 day."),
                        ));
                    }
                }
                util::set_path(&mut key, &p, util::get_path(&body, &p).cloned());
            }
            "primary" => {
                return Err(GError::invalid_field(
                    "update_mask",
                    "The primary version is changed with UpdateCryptoKeyPrimaryVersion, not UpdateCryptoKey.",
                ));
            }
            other => {
                return Err(GError::invalid_field(
                    "update_mask",
                    format!("Field '{other}' of CryptoKey cannot be updated."),
                ));
            }
        }
    }
    // proto3 keeps an explicit "0s" rotation period in the recording; prune only nulls/empties.
    if let Some(o) = key.as_object_mut() {
        o.retain(|_, v| !v.is_null());
        if o.get("labels")
            .and_then(Value::as_object)
            .is_some_and(|m| m.is_empty())
        {
            o.remove("labels");
        }
    }
    rec.key = key;
    Ok(render_key(rec, req.int))
}

fn apply_version_patch(v: &mut Value, req: &Req) -> GResult<()> {
    let mut body = req.object_body()?;
    enums::decode(&mut body, enums::KEY_VERSION, "crypto_key_version")?;
    let Some(mask) = util::query_mask(&req.query, "updateMask").filter(|m| !m.is_empty()) else {
        return Err(GError::invalid_field(
            "update_mask",
            "The request must specify an update_mask.",
        ));
    };
    for p in mask {
        if util::camel(&p) != "state" {
            return Err(GError::invalid_field(
                "update_mask",
                format!("Field '{p}' of CryptoKeyVersion cannot be updated."),
            ));
        }
        let want = str_of(&body, "state").to_string();
        let have = str_of(v, "state").to_string();
        if !matches!(want.as_str(), "ENABLED" | "DISABLED") {
            return Err(GError::invalid_field(
                "crypto_key_version.state",
                format!(
                    "Invalid value for crypto_key_version.state: {}. Only ENABLED and DISABLED can be set.",
                    if want.is_empty() {
                        "CRYPTO_KEY_VERSION_STATE_UNSPECIFIED"
                    } else {
                        &want
                    }
                ),
            ));
        }
        if !matches!(have.as_str(), "ENABLED" | "DISABLED") {
            return Err(state_error(v));
        }
        v["state"] = json!(want);
    }
    Ok(())
}
