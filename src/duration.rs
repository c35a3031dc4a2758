//! The one duration grammar of runwarden's flags and of the Helm chart's values schema.
//!
//! A duration is either a bare number of seconds (`90`, `1.5`) or one or more
//! `<number><unit>` parts, as Go's `time.ParseDuration` and Kubernetes write them: `500ms`,
//! `90s`, `10m`, `1h30m`, `1m30.5s`. Units: `ms`, `s`, `m`, `h`. The chart's
//! `values.schema.json` uses [`PATTERN`] for every duration value, and a test feeds the schema's
//! examples to [`parse_duration`], so a value the chart accepts is one the binary accepts.

use std::time::Duration;

/// The grammar as a regular expression (JSON Schema `pattern`, ECMA-262 and Rust `regex` alike).
pub const PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$|^[0-9]+(\.[0-9]+)?$";

/// Parses `500ms`, `30s`, `10m`, `1h30m`, `1m30s` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let hint = || format!("{s:?} is not a duration like 90s, 10m, 1h30m or 500ms");
    let text = s.trim();
    if text.is_empty() {
        return Err(hint());
    }
    let number_end = |t: &str| {
        let b = t.as_bytes();
        let mut i = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == 0 {
            return None;
        }
        if i < b.len() && b[i] == b'.' {
            let frac = i + 1;
            let mut j = frac;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if j == frac {
                return None;
            }
            i = j;
        }
        Some(i)
    };
    // A bare number is seconds.
    if number_end(text) == Some(text.len()) {
        return seconds(text.parse::<f64>().map_err(|_| hint())?, s);
    }
    let mut total = 0.0_f64;
    let mut rest = text;
    while !rest.is_empty() {
        let end = number_end(rest).ok_or_else(hint)?;
        let n: f64 = rest[..end].parse().map_err(|_| hint())?;
        rest = &rest[end..];
        let (scale, len) = if rest.starts_with("ms") {
            (0.001, 2)
        } else if rest.starts_with('s') {
            (1.0, 1)
        } else if rest.starts_with('m') {
            (60.0, 1)
        } else if rest.starts_with('h') {
            (3600.0, 1)
        } else {
            let unit: String = rest.chars().take_while(|c| !c.is_ascii_digit()).collect();
            return Err(if unit.is_empty() {
                hint()
            } else {
                format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h, e.g. 1h30m)")
            });
        };
        total += n * scale;
        rest = &rest[len..];
    }
    seconds(total, s)
}

fn seconds(secs: f64, s: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Duration {
        parse_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn single_units_and_bare_seconds() {
        assert_eq!(ok("10m"), Duration::from_secs(600));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("90"), Duration::from_secs(90));
        assert_eq!(ok("90s"), Duration::from_secs(90));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok("0"), Duration::ZERO);
    }

    #[test]
    fn compound_durations_as_go_and_kubernetes_write_them() {
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("2h0m0s"), Duration::from_secs(7200));
        assert_eq!(ok("1s500ms"), Duration::from_millis(1500));
    }

    #[test]
    fn malformed_durations_are_refused() {
        for bad in [
            "", "m", "10x", "1m30", "1.m", ".5s", "-1s", "1 m", "1d", "ms", "1h-30m", "10M",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(parse_duration("1d").unwrap_err().contains("unknown unit"));
    }

    /// The chart's values.schema.json uses this very grammar for `controller.resync`, and
    /// every example it gives parses; samples the pattern refuses, the parser refuses too.
    #[test]
    fn the_chart_schema_and_the_parser_agree() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/helm/runwarden/values.schema.json"
        );
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("values.schema.json"))
                .expect("JSON");
        let resync = &schema["properties"]["controller"]["properties"]["resync"];
        let pattern = resync["pattern"].as_str().expect("resync has a pattern");
        // The chart leaves an empty value out (the binary's default applies): the schema may
        // allow "" on top of the grammar, nothing else.
        assert!(
            pattern == PATTERN || pattern == format!("^$|{PATTERN}"),
            "values.schema.json resync pattern {pattern:?} is not runwarden::duration::PATTERN {PATTERN:?}"
        );
        let re = regex::Regex::new(pattern).expect("pattern compiles");
        let examples: Vec<&str> = resync["examples"]
            .as_array()
            .expect("resync has examples")
            .iter()
            .map(|e| e.as_str().expect("string example"))
            .collect();
        assert!(examples.contains(&"1m30s"), "examples: {examples:?}");
        let samples = [
            "10m", "90s", "90", "1m30s", "1h30m", "500ms", "1.5h", "2h0m0s",
        ];
        for s in examples.iter().chain(&samples) {
            assert!(re.is_match(s), "schema refuses {s:?}");
            assert!(
                parse_duration(s).is_ok(),
                "binary refuses {s:?}, which the schema allows"
            );
        }
        for s in ["1m30", "10x", "1d", "m", "-1s", "1 m", ".5s", "10M"] {
            assert!(!re.is_match(s), "schema accepts {s:?}");
            assert!(parse_duration(s).is_err(), "binary accepts {s:?}");
        }
    }
}
