//! Small helpers: timestamps, ids, base64, durations, JSON field access.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::error::{GError, GResult};

/// RFC 3339 UTC timestamp with microseconds, as Google formats them (`2024-04-25T01:58:35.886675Z`).
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let micros = d.subsec_micros();
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Now, formatted by [`timestamp`].
pub fn now() -> String {
    timestamp(SystemTime::now())
}

// Howard Hinnant's days-to-civil algorithm.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A random RFC 4122 version 4 UUID.
pub fn uuid() -> String {
    let mut b = [0u8; 16];
    for x in &mut b {
        *x = fastrand::u8(..);
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    dashed(&h)
}

/// A uid that stays the same for the same `name` (UUID-shaped, from two FNV-1a hashes).
pub fn stable_uid(name: &str) -> String {
    dashed(&format!(
        "{:016x}{:016x}",
        fnv1a(name),
        fnv1a(&format!("{name}#"))
    ))
}

/// 32 hex digits as `8-4-4-4-12`.
fn dashed(h: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `n` random characters from `[a-z0-9]` (revision suffixes, URL hashes).
pub fn random_alnum(n: usize) -> String {
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..n)
        .map(|_| A[fastrand::usize(..A.len())] as char)
        .collect()
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(A[(n >> 18) as usize & 63] as char);
        out.push(A[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            A[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            A[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// FNV-1a, 64 bit: a stable hash for project numbers and URL hashes.
pub fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Formats a duration the way protobuf JSON does: `"300s"`, `"2.500s"` trimmed to `"2.5s"`.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        format!("{}s", d.as_secs())
    } else {
        let frac = format!("{nanos:09}");
        format!("{}.{}s", d.as_secs(), frac.trim_end_matches('0'))
    }
}

/// Parses a protobuf JSON duration (`"300s"`, `"2.5s"`, `"-1s"` is refused). Returns `None` when
/// malformed.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let num = s.strip_suffix('s')?;
    if num.is_empty() || num.starts_with('-') || num.starts_with('+') {
        return None;
    }
    let (whole, frac) = match num.split_once('.') {
        Some((w, f)) => (w, f),
        None => (num, ""),
    };
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 9 {
        return None;
    }
    let secs: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    Some(Duration::new(secs, nanos))
}

/// Decodes `%XX` escapes in a URL path.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Removes what proto3 JSON would not print: `null`, `false`, `""`, `0` and empty maps/lists,
/// recursively. Empty objects that are message values are kept (proto3 keeps message presence).
pub fn prune(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                let remove = match map.get_mut(&k) {
                    Some(child) => {
                        prune(child);
                        is_default(child, &k)
                    }
                    None => false,
                };
                if remove {
                    map.remove(&k);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(prune),
        _ => {}
    }
}

fn is_default(v: &Value, key: &str) -> bool {
    if PROTO3_OPTIONAL.contains(&key) {
        // Explicit presence: `false` / `0` are values the caller chose, and round-trip.
        return v.is_null();
    }
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(a) => a.is_empty(),
        // Maps (labels, annotations, limits, nodeSelector...) vanish when empty.
        Value::Object(o) => o.is_empty() && matches!(key, "labels" | "annotations" | "limits"),
    }
}

/// Fields with explicit presence in the protos served (`optional` or a oneof member), kept by
/// [`prune`] even when `false` or `0`: Cloud Run's `ServiceScaling.manual_instance_count`,
/// `RevisionTemplate.gpu_zonal_redundancy_disabled` and `TaskTemplate.max_retries`.
const PROTO3_OPTIONAL: [&str; 3] = [
    "manualInstanceCount",
    "gpuZonalRedundancyDisabled",
    "maxRetries",
];

/// Reads the value at a dotted path (`template.vpcAccess.connector`).
pub fn get_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, seg| cur.get(seg))
}

/// Sets (or with `None`, removes) the value at a dotted path, creating objects on the way.
pub fn set_path(v: &mut Value, path: &str, new: Option<Value>) {
    let segs: Vec<&str> = path.split('.').collect();
    let mut cur = v;
    for seg in &segs[..segs.len() - 1] {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Some(map) = cur.as_object_mut() else {
            return;
        };
        cur = map
            .entry(seg.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    let last = segs[segs.len() - 1];
    if !cur.is_object() {
        if new.is_none() {
            return;
        }
        *cur = Value::Object(Map::new());
    }
    if let Some(map) = cur.as_object_mut() {
        match new {
            Some(n) => {
                map.insert(last.to_string(), n);
            }
            None => {
                map.remove(last);
            }
        }
    }
}

/// The string at `key`, or `""`.
pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The strings of the array at `key` (non-strings skipped; none when absent).
pub fn strs_of<'a>(v: &'a Value, key: &str) -> Vec<&'a str> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Reads an integer that proto3 JSON may send as a number or a string. `field` names it in the
/// error (`service.template.scaling.max_instance_count`).
pub fn int_at(v: &Value, key: &str, field: &str, kind: &str) -> GResult<Option<i64>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => Ok(Some(i)),
            None => Err(bad_value(field, kind, &Value::Number(n.clone()))),
        },
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| bad_value(field, kind, &Value::String(s.clone()))),
        Some(other) => Err(bad_value(field, kind, other)),
    }
}

/// Google's front-end wording for a value of the wrong type.
pub fn bad_value(field: &str, kind: &str, v: &Value) -> GError {
    GError::invalid_field(field, format!("Invalid value at '{field}' ({kind}), {v}"))
}

/// Whether a request's `$alt` asks for integer enums (`json;enum-encoding=int`).
pub fn wants_int_enums(query: &[(String, String)]) -> bool {
    query
        .iter()
        .any(|(k, v)| (k == "$alt" || k == "alt") && v.contains("enum-encoding=int"))
}

/// The last value of a query parameter.
pub fn query_param<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A boolean query parameter (`true`/`1`).
pub fn query_bool(query: &[(String, String)], key: &str) -> bool {
    matches!(query_param(query, key), Some("true" | "1" | "True"))
}

/// Field-mask paths from every `key=` occurrence, comma-separated or repeated.
pub fn query_mask(query: &[(String, String)], key: &str) -> Option<Vec<String>> {
    let mut found = false;
    let mut paths = Vec::new();
    for (k, v) in query {
        if k == key {
            found = true;
            paths.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(String::from),
            );
        }
    }
    found.then_some(paths)
}

/// snake_case to lowerCamelCase (field masks may use either).
pub fn camel(s: &str) -> String {
    let mut out = String::new();
    let mut up = false;
    for c in s.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Page through sorted items with `pageSize` and an opaque `pageToken` (the offset, base64).
pub fn paginate<T: Clone>(
    items: &[T],
    query: &[(String, String)],
    default_size: usize,
) -> GResult<(Vec<T>, Option<String>)> {
    let size = match query_param(query, "pageSize") {
        None | Some("") => default_size,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n < 0 => return Err(GError::invalid("page_size must not be negative")),
            Ok(0) => default_size,
            Ok(n) => (n as usize).min(1000),
            Err(_) => {
                return Err(bad_value(
                    "page_size",
                    "TYPE_INT32",
                    &Value::String(s.into()),
                ));
            }
        },
    };
    let start = match query_param(query, "pageToken") {
        None | Some("") => 0,
        Some(t) => t
            .strip_prefix("o")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| GError::invalid(format!("Invalid page token: {t}")))?,
    };
    let end = (start + size).min(items.len());
    let page = items.get(start..end).unwrap_or_default().to_vec();
    let next = (end < items.len()).then(|| format!("o{end}"));
    Ok((page, next))
}

/// A list response: `{key: [page...], nextPageToken}` with empty fields left out, as Google
/// sends it.
pub fn list_page(
    key: &str,
    items: &[Value],
    query: &[(String, String)],
    default_size: usize,
) -> GResult<Value> {
    let (page, next) = paginate(items, query, default_size)?;
    let mut v = Value::Object(Map::new());
    if !page.is_empty() {
        v[key] = Value::Array(page);
    }
    if let Some(n) = next {
        v["nextPageToken"] = Value::String(n);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats_timestamps() {
        let t = UNIX_EPOCH + Duration::new(1_714_010_315, 886_675_000);
        assert_eq!(timestamp(t), "2024-04-25T01:58:35.886675Z");
    }

    #[test]
    fn durations_round_trip() {
        assert_eq!(parse_duration("300s"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("2.5s"), Some(Duration::from_millis(2500)));
        assert_eq!(parse_duration("abc"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(format_duration(Duration::from_millis(2500)), "2.5s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"f"), "Zg==");
    }

    #[test]
    fn prune_drops_proto3_defaults() {
        let mut v =
            json!({"a": null, "b": false, "c": "", "d": 0, "e": {}, "labels": {}, "f": [1]});
        prune(&mut v);
        assert_eq!(v, json!({"e": {}, "f": [1]}));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%3Ab%2"), "a:b%2");
    }
}
