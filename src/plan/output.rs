//! How a [`Report`] is printed: text for people, JSON for machines.
//!
//! Text: one block per object, a line per call, `+` added, `-` removed, `~` changed, `=` in
//! sync, `!` what stops it; then one summary line. JSON (`-o json`) is the [`Report`] as
//! serialized: `objects[]` with `kind`, `namespace`, `name`, `source`, `resource`, `action`
//! (`inSync`, `create`, `update`, `drifted`, `waits`, `invalid`, `violation`, `error`),
//! `calls[]` (`method`, `resource`, `fields[]` of `{path, from, to}`, `add`, `remove`, `role`,
//! and for `access.mode: Additive` `mode` and `kept`: the members left as they are),
//! `reason`, `message`, `drift`, `notes`; and `notes[]` for skipped documents. Fields are only
//! added, never renamed, within `v1alpha1`.

use std::fmt::Write;

use super::{Report, Verdict, summary};

/// The report as text.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    for o in &report.objects {
        let _ = writeln!(out, "{} {}/{}  ({})", o.kind, o.namespace, o.name, o.source);
        if let Some(resource) = &o.resource {
            let _ = writeln!(out, "  {resource}");
        }
        for note in &o.notes {
            let _ = writeln!(out, "  # {note}");
        }
        let stop = match o.action {
            Verdict::InSync | Verdict::Create | Verdict::Update => None,
            other => Some(format!(
                "  ! {}: {}: {}",
                match other {
                    Verdict::Drifted => "drifted (Observe: no write)",
                    Verdict::Waits => "waits",
                    Verdict::Invalid => "invalid",
                    Verdict::Violation => "policy violation",
                    _ => "error",
                },
                o.reason.as_deref().unwrap_or_default(),
                o.message.as_deref().unwrap_or_default()
            )),
        };
        if let Some(stop) = &stop {
            let _ = writeln!(out, "{stop}");
            if !o.calls.is_empty() {
                let _ = writeln!(out, "  then, once that is resolved:");
            }
        }
        for call in &o.calls {
            let only_adds = call.fields.is_empty() && call.remove.is_empty();
            let sign = if call.method.ends_with(".create") || only_adds {
                '+'
            } else {
                '~'
            };
            let role = call
                .role
                .as_deref()
                .map(|r| format!(" {r}"))
                .unwrap_or_default();
            let _ = writeln!(out, "  {sign} {}{role}", call.method);
            for f in &call.fields {
                match &f.from {
                    None => {
                        let _ = writeln!(out, "      + {}: {}", f.path, f.to);
                    }
                    Some(from) => {
                        let _ = writeln!(out, "      ~ {}: {from} → {}", f.path, f.to);
                    }
                }
            }
            // Additive: what runwarden adds and removes is its own; everyone else's stays.
            let ours = if call.mode.is_some() { " (ours)" } else { "" };
            for m in &call.add {
                let _ = writeln!(out, "      + {m}{ours}");
            }
            for m in &call.remove {
                let _ = writeln!(out, "      - {m}{ours}");
            }
            for m in &call.kept {
                let _ = writeln!(out, "      = {m} (kept: not runwarden's)");
            }
        }
        if o.action == Verdict::InSync {
            let _ = writeln!(out, "  = in sync");
        }
        out.push('\n');
    }
    for note in &report.notes {
        let _ = writeln!(out, "# {note}");
    }
    let counts = summary(report);
    let n = |v: Verdict| counts.get(&v).copied().unwrap_or(0);
    let _ = writeln!(
        out,
        "Plan: {} to create, {} to update, {} in sync, {} drifted, {} waiting, {} invalid, {} violating, {} failed.",
        n(Verdict::Create),
        n(Verdict::Update),
        n(Verdict::InSync),
        n(Verdict::Drifted),
        n(Verdict::Waits),
        n(Verdict::Invalid),
        n(Verdict::Violation),
        n(Verdict::Error),
    );
    out
}

/// The report as pretty-printed JSON.
pub fn render_json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
