//! Bytes → documents: multi-document YAML (or a stream of JSON values for `*.json`) turned into
//! `serde_json::Value`s, with every failure a [`Problem`] instead of a panic.

use serde::Deserialize;
use serde_json::{Map, Number, Value};

use super::Problem;
use super::schema::{MAX_DEPTH, describe, truncate};

/// Most documents read from one file; the rest is reported, not read.
const MAX_DOCUMENTS: usize = 10_000;

/// One parsed document: its 1-based index in the file and its value (`Null` for an empty one).
pub(super) type Document = (usize, Value);

/// The documents of `text`, read as JSON when `file` ends in `.json`, else as YAML. Parsing stops
/// at the first syntax error (a YAML stream cannot be resynchronized after one), which is
/// returned with the documents read before it.
pub(super) fn documents(file: &str, text: &str) -> (Vec<Document>, Vec<Problem>) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if file.to_ascii_lowercase().ends_with(".json") {
        json_documents(file, text)
    } else {
        yaml_documents(file, text)
    }
}

fn yaml_documents(file: &str, text: &str) -> (Vec<Document>, Vec<Problem>) {
    let mut docs = vec![];
    let mut problems = vec![];
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        if index > MAX_DOCUMENTS {
            problems.push(Problem::new(
                file,
                index,
                "",
                format!("more than {MAX_DOCUMENTS} documents in one file; the rest is not read"),
            ));
            break;
        }
        let mut value = match serde_yaml::Value::deserialize(de) {
            Ok(v) => v,
            Err(e) => {
                // serde_yaml's message carries the line and column (`at line 3 column 5`).
                problems.push(Problem::new(file, index, "", format!("invalid YAML: {e}")));
                // After an error the stream cannot be resumed (and serde_yaml's iterator would
                // repeat the error forever).
                break;
            }
        };
        if let Err(e) = value.apply_merge() {
            problems.push(Problem::new(
                file,
                index,
                "",
                format!("invalid YAML merge key: {e}"),
            ));
            continue;
        }
        match yaml_to_json(value, "", 0) {
            Ok(v) => docs.push((index, v)),
            Err((path, message)) => problems.push(Problem::new(file, index, &path, message)),
        }
    }
    (docs, problems)
}

fn json_documents(file: &str, text: &str) -> (Vec<Document>, Vec<Problem>) {
    let mut docs = vec![];
    let mut problems = vec![];
    let stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    for (i, value) in stream.enumerate() {
        let index = i + 1;
        if index > MAX_DOCUMENTS {
            problems.push(Problem::new(
                file,
                index,
                "",
                format!("more than {MAX_DOCUMENTS} documents in one file; the rest is not read"),
            ));
            break;
        }
        match value {
            Ok(v) => docs.push((index, v)),
            Err(e) => {
                problems.push(Problem::new(file, index, "", format!("invalid JSON: {e}")));
                break;
            }
        }
    }
    (docs, problems)
}

/// A YAML value as the JSON the API server would receive: keys become strings (numbers and
/// booleans as written, like `kubectl`), tags are dropped, and `.nan`/`.inf` are refused.
fn yaml_to_json(
    value: serde_yaml::Value,
    path: &str,
    depth: usize,
) -> Result<Value, (String, String)> {
    if depth > MAX_DEPTH {
        return Err((
            path.to_owned(),
            format!("nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    Ok(match value {
        serde_yaml::Value::Null => Value::Null,
        serde_yaml::Value::Bool(b) => Value::Bool(b),
        serde_yaml::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Number(i.into())
            } else if let Some(u) = n.as_u64() {
                Value::Number(u.into())
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                match Number::from_f64(f) {
                    Some(n) => Value::Number(n),
                    None => {
                        return Err((
                            path.to_owned(),
                            format!("{n} is not a number JSON can represent"),
                        ));
                    }
                }
            }
        }
        serde_yaml::Value::String(s) => Value::String(s),
        serde_yaml::Value::Sequence(seq) => {
            let mut out = Vec::with_capacity(seq.len());
            for (i, item) in seq.into_iter().enumerate() {
                out.push(yaml_to_json(item, &format!("{path}[{i}]"), depth + 1)?);
            }
            Value::Array(out)
        }
        serde_yaml::Value::Mapping(mapping) => {
            let mut out = Map::new();
            for (key, item) in mapping {
                let key = match key {
                    serde_yaml::Value::String(s) => s,
                    serde_yaml::Value::Bool(b) => b.to_string(),
                    serde_yaml::Value::Number(n) => n.to_string(),
                    serde_yaml::Value::Null => "null".to_owned(),
                    other => {
                        let got = yaml_to_json(other, path, depth + 1)
                            .map(|v| describe(&v))
                            .unwrap_or_else(|_| "a complex value".into());
                        return Err((
                            path.to_owned(),
                            format!("mapping keys must be strings, found {got}"),
                        ));
                    }
                };
                let child = super::schema::field_path(path, &truncate(&key, 80));
                let item = yaml_to_json(item, &child, depth + 1)?;
                if out.insert(key, item).is_some() {
                    return Err((child, "duplicate key".into()));
                }
            }
            Value::Object(out)
        }
        serde_yaml::Value::Tagged(tagged) => yaml_to_json(tagged.value, path, depth + 1)?,
    })
}
