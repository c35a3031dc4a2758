//! Container probes (startup, liveness, readiness): rendered from the spec and shaped with Cloud
//! Run's defaults folded in — period 10s, timeout 1s, failure threshold 3, no initial delay, the
//! container's port, HTTP path `/` — and the TCP startup probe Cloud Run gives a container that
//! has none shaped like no probe at all.

use google_cloud_run_v2::model::{self as run, probe::ProbeType};

use crate::api::v1alpha1 as api;

/// The startup probe Cloud Run sets on a container without one: TCP on its port,
/// `{timeoutSeconds: 240, periodSeconds: 240, failureThreshold: 1}` (recorded).
const IMPLICIT_STARTUP: (i32, i32, i32) = (240, 240, 1);

/// The probe to send: unset timings and ports are left for Cloud Run to fill.
pub(super) fn render(p: &api::Probe) -> run::Probe {
    let out = run::Probe::new()
        .set_initial_delay_seconds(p.initial_delay_seconds.unwrap_or(0))
        .set_period_seconds(p.period_seconds.unwrap_or(0))
        .set_timeout_seconds(p.timeout_seconds.unwrap_or(0))
        .set_failure_threshold(p.failure_threshold.unwrap_or(0));
    if let Some(h) = &p.http_get {
        return out.set_http_get(
            run::HTTPGetAction::new()
                .set_path(h.path.clone().unwrap_or_default())
                .set_port(h.port.unwrap_or(0))
                .set_http_headers(h.http_headers.iter().map(|hd| {
                    run::HTTPHeader::new()
                        .set_name(&hd.name)
                        .set_value(&hd.value)
                })),
        );
    }
    if let Some(t) = &p.tcp_socket {
        return out.set_tcp_socket(run::TCPSocketAction::new().set_port(t.port.unwrap_or(0)));
    }
    if let Some(g) = &p.grpc {
        return out.set_grpc(
            run::GRPCAction::new()
                .set_port(g.port.unwrap_or(0))
                .set_service(g.service.clone().unwrap_or_default()),
        );
    }
    out
}

/// Whether `p` is the startup probe Cloud Run sets by itself on a container listening on `port`.
pub(super) fn is_implicit_startup(p: &run::Probe, port: i32) -> bool {
    matches!(&p.probe_type, Some(ProbeType::TcpSocket(t)) if t.port == 0 || t.port == port)
        && (p.timeout_seconds, p.period_seconds, p.failure_threshold) == IMPLICIT_STARTUP
        && p.initial_delay_seconds == 0
}

/// A probe as a canonical string; `none` when absent (or Cloud Run's implicit startup probe,
/// with `startup`).
pub(super) fn shape(p: Option<&run::Probe>, port: i32, startup: bool) -> String {
    let Some(p) = p else { return "none".into() };
    if startup && is_implicit_startup(p, port) {
        return "none".into();
    }
    let or = |v: i32, default: i32| if v == 0 { default } else { v };
    let port_of = |v: i32| or(v, port);
    let kind = match &p.probe_type {
        Some(ProbeType::HttpGet(h)) => {
            let path = if h.path.is_empty() { "/" } else { &h.path };
            let headers: Vec<String> = h
                .http_headers
                .iter()
                .map(|hd| format!("{}={}", hd.name, hd.value))
                .collect();
            format!("http :{}{path} {headers:?}", port_of(h.port))
        }
        Some(ProbeType::TcpSocket(t)) => format!("tcp :{}", port_of(t.port)),
        Some(ProbeType::Grpc(g)) => format!("grpc :{} {:?}", port_of(g.port), g.service),
        Some(other) => format!("{other:?}"),
        None => "tcp default".into(),
    };
    format!(
        "{kind} delay {} period {} timeout {} failures {}",
        p.initial_delay_seconds,
        or(p.period_seconds, 10),
        or(p.timeout_seconds, 1),
        or(p.failure_threshold, 3)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> run::Probe {
        render(&serde_json::from_value(v).unwrap())
    }

    #[test]
    fn an_http_probe_as_cloud_run_completes_it_is_no_change() {
        let sent = spec(serde_json::json!({"httpGet": {"path": "/"}}));
        // Recorded: Cloud Run completes `httpGet {path: "/"}` this way.
        let returned = run::Probe::new()
            .set_failure_threshold(3)
            .set_period_seconds(10)
            .set_timeout_seconds(1)
            .set_http_get(run::HTTPGetAction::new().set_path("/").set_port(8080));
        assert_eq!(
            shape(Some(&sent), 8080, false),
            shape(Some(&returned), 8080, false)
        );
        assert_ne!(
            shape(Some(&sent), 8080, false),
            shape(Some(&returned.clone().set_period_seconds(30)), 8080, false)
        );
    }

    #[test]
    fn the_implicit_tcp_startup_probe_is_no_probe() {
        let implicit = run::Probe::new()
            .set_timeout_seconds(240)
            .set_period_seconds(240)
            .set_failure_threshold(1)
            .set_tcp_socket(run::TCPSocketAction::new().set_port(8080));
        assert_eq!(shape(Some(&implicit), 8080, true), "none");
        assert_ne!(
            shape(Some(&implicit), 8080, false),
            "none",
            "not a liveness probe"
        );
        assert_ne!(shape(Some(&implicit), 9000, true), "none", "another port");
        let custom = spec(serde_json::json!({"tcpSocket": {}, "failureThreshold": 5}));
        assert_eq!(
            shape(Some(&custom), 8080, true),
            "tcp :8080 delay 0 period 10 timeout 1 failures 5"
        );
    }

    #[test]
    fn grpc_and_headers_are_compared() {
        let a = spec(serde_json::json!({"grpc": {"service": "health"}}));
        let b = spec(serde_json::json!({"grpc": {"service": "other", "port": 8080}}));
        assert_ne!(shape(Some(&a), 8080, false), shape(Some(&b), 8080, false));
        let h = |v: &str| {
            spec(serde_json::json!({"httpGet": {"httpHeaders": [{"name": "X-Probe", "value": v}]}}))
        };
        assert_ne!(
            shape(Some(&h("1")), 8080, false),
            shape(Some(&h("2")), 8080, false)
        );
    }
}
