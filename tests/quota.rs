//! Cloud Run budgets, Google's 429s and the per-call timeout through the official clients: the
//! emulator for budgets and injected 429s, and small raw HTTP servers for what the emulator does
//! not do (a 429 with `RetryInfo`, a server that never answers).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use runwarden::gcp::google::{ClientOptions, connect};
use runwarden::gcp::quota::Budgets;
use runwarden::gcp::{Code, Gcp};
use runwarden::metrics::Metrics;
use runwarden_emulator::Emulator;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SERVICE: &str = "projects/quota-test/locations/europe-west1/services/s";

async fn emulator() -> Emulator {
    Emulator::start("127.0.0.1:0", runwarden_emulator::Config::default())
        .await
        .expect("emulator")
}

async fn clients(endpoint: &str, metrics: &Arc<Metrics>, options: ClientOptions) -> Gcp {
    common::crypto();
    connect(
        Some(endpoint),
        common::anonymous(),
        metrics.clone(),
        &options,
    )
    .await
    .expect("clients")
}

fn budgets(reads: u32, writes: u32, metrics: &Arc<Metrics>, max_wait: Duration) -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_secs(30),
        budgets: Some(Arc::new(
            Budgets::new(reads, writes, metrics.clone()).with_max_wait(max_wait),
        )),
        principal: None,
    }
}

#[tokio::test]
async fn a_spent_budget_refuses_locally_and_google_never_sees_the_call() {
    let emu = emulator().await;
    let metrics = Arc::new(Metrics::default());
    let gcp = clients(
        &emu.endpoint(),
        &metrics,
        budgets(3, 60, &metrics, Duration::from_secs(1)),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(gcp.run.get_service(SERVICE).await.unwrap(), None);
    }
    let e = gcp
        .run
        .get_iam_policy(&format!("{SERVICE}-other"))
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::ResourceExhausted);
    assert!(
        e.message.starts_with("client-side budget of 3 Cloud Run reads per minute for project quota-test in europe-west1 is spent; next call at "),
        "{}",
        e.message
    );
    let after = e.retry_after.expect("retry_after");
    assert!(after > Duration::from_secs(55), "{after:?}");
    assert_eq!(emu.count("run.services.get"), 3);
    assert_eq!(emu.count("run.services.getIamPolicy"), 0);
    // Writes have a budget of their own.
    assert_eq!(gcp.run.delete_service(SERVICE).await.unwrap(), None);
    let text = metrics.encode();
    for line in [
        "runwarden_gcp_quota_refusals_total{project=\"quota-test\",region=\"europe-west1\",kind=\"read\"} 1",
        "runwarden_gcp_quota_wait_seconds_count{project=\"quota-test\",region=\"europe-west1\",kind=\"read\"} 3",
        "runwarden_gcp_quota_wait_seconds_count{project=\"quota-test\",region=\"europe-west1\",kind=\"write\"} 1",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
    assert!(
        !text.contains("getIamPolicy"),
        "a refused call is no Google request: {text}"
    );
}

#[tokio::test]
async fn an_emulator_429_is_counted_and_pauses_nothing_without_retry_info() {
    let emu = emulator().await;
    emu.inject_fault(runwarden_emulator::Fault {
        api: "run".into(),
        method: Some("services.get".into()),
        code: "RESOURCE_EXHAUSTED".into(),
        message: None,
        count: Some(1),
        rate: None,
    });
    let metrics = Arc::new(Metrics::default());
    let gcp = clients(
        &emu.endpoint(),
        &metrics,
        budgets(600, 60, &metrics, Duration::ZERO),
    )
    .await;
    let e = gcp.run.get_service(SERVICE).await.unwrap_err();
    assert_eq!((e.code, e.retry_after), (Code::ResourceExhausted, None));
    assert_eq!(gcp.run.get_service(SERVICE).await.unwrap(), None);
    assert_eq!(emu.count("run.services.get"), 2);
    let text = metrics.encode();
    assert!(
        text.contains(
            "runwarden_gcp_quota_exceeded_total{project=\"quota-test\",region=\"europe-west1\"} 1"
        ),
        "{text}"
    );
}

/// A server that answers its first request with `first` (status line and JSON body), and every
/// later one with Google's NOT_FOUND; counts the requests.
async fn scripted(first: (&'static str, String)) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let n = count.fetch_add(1, Ordering::SeqCst);
            let (status, body) = if n == 0 {
                first.clone()
            } else {
                (
                    "404 Not Found",
                    r#"{"error":{"code":404,"message":"not found","status":"NOT_FOUND"}}"#.into(),
                )
            };
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => request.extend_from_slice(&buf[..k]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(response.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    (endpoint, seen)
}

fn resource_exhausted(retry_delay: &str) -> (&'static str, String) {
    (
        "429 Too Many Requests",
        serde_json::json!({"error": {
            "code": 429,
            "message": "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute per region'",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED", "domain": "googleapis.com"},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay},
            ],
        }})
        .to_string(),
    )
}

#[tokio::test]
async fn googles_retry_info_pauses_the_project_region_for_every_object() {
    let (endpoint, seen) = scripted(resource_exhausted("30s")).await;
    let metrics = Arc::new(Metrics::default());
    let gcp = clients(
        &endpoint,
        &metrics,
        budgets(600, 60, &metrics, Duration::ZERO),
    )
    .await;
    let e = gcp.run.get_service(SERVICE).await.unwrap_err();
    assert_eq!(e.code, Code::ResourceExhausted);
    assert_eq!(e.retry_after, Some(Duration::from_secs(30)));
    assert!(e.message.contains("(retry at 20"), "{}", e.message);
    // Another object of the project-region: refused here, until Google's time.
    let e = gcp
        .run
        .get_service(&format!("{SERVICE}-other"))
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::ResourceExhausted);
    assert!(e.message.contains("are paused until"), "{}", e.message);
    assert!(e.retry_after.unwrap() > Duration::from_secs(25));
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    // Another region is not paused.
    let elsewhere = "projects/quota-test/locations/us-central1/services/s";
    assert_eq!(gcp.run.get_service(elsewhere).await.unwrap(), None);
    assert_eq!(seen.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_short_pause_is_waited_out_and_the_wait_is_not_part_of_the_call_timeout() {
    let (endpoint, seen) = scripted(resource_exhausted("1s")).await;
    let metrics = Arc::new(Metrics::default());
    let mut options = budgets(600, 60, &metrics, Duration::from_secs(5));
    options.timeout = Duration::from_millis(500);
    let gcp = clients(&endpoint, &metrics, options).await;
    gcp.run.get_service(SERVICE).await.unwrap_err();
    let start = Instant::now();
    assert_eq!(gcp.run.get_service(SERVICE).await.unwrap(), None);
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "waited out the pause"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    let text = metrics.encode();
    assert!(
        text.contains(
            "runwarden_gcp_quota_wait_seconds_count{project=\"quota-test\",region=\"europe-west1\",kind=\"read\"} 2"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn a_call_that_gets_no_answer_fails_with_deadline_exceeded() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            open.push(conn);
        }
    });
    let metrics = Arc::new(Metrics::default());
    let options = ClientOptions {
        timeout: Duration::from_millis(300),
        budgets: None,
        principal: None,
    };
    let gcp = clients(&endpoint, &metrics, options).await;
    let start = Instant::now();
    let e = gcp.run.get_service(SERVICE).await.unwrap_err();
    assert_eq!(e.code, Code::DeadlineExceeded, "{e}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let e = gcp
        .kms
        .get_crypto_key("projects/p/locations/l/keyRings/r/cryptoKeys/k")
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::DeadlineExceeded, "every client is bounded");
    assert_eq!(
        metrics.gcp_request_count("run", "services.get", "DEADLINE_EXCEEDED"),
        1
    );
}

const IMAGE: &str = "europe-docker.pkg.dev/runwarden-test/apps/quota@sha256:4444444444444444444444444444444444444444444444444444444444444444";

/// The client-side refusal as users see it: `QuotaExceeded` saying when the next call is, a
/// requeue for then (not the backoff, not a loop of status writes), and no 429 from Google.
#[tokio::test]
async fn a_spent_write_budget_says_when_and_requeues_for_then() {
    let Some(mut h) = common::Harness::new("quota").await else {
        return;
    };
    h.config.quota_run_writes_per_minute = 1;
    // A backoff this short would retry a dozen times in the seconds watched below.
    h.config.max_backoff = Duration::from_millis(300);
    h.start_controller().await;
    h.apply("first", common::spec(IMAGE)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while h.emu.count("run.services.create") == 0 {
        assert!(Instant::now() < deadline, "first was never created");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.apply("second", common::spec(IMAGE)).await;
    let obj = h
        .wait_reason("second", "ServiceReady", "QuotaExceeded")
        .await;
    let message = obj
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "ServiceReady"))
        .map(|c| c.message.to_string())
        .unwrap_or_default();
    assert!(
        message.starts_with(&format!(
            "client-side budget of 1 Cloud Run writes per minute for project {} in {} is spent; next call at ",
            common::PROJECT,
            common::REGION
        )),
        "{message}"
    );
    assert!(
        h.events("second")
            .await
            .iter()
            .any(|e| e.starts_with("QuotaExceeded: ") && e.contains("next call at")),
        "{:?}",
        h.events("second").await
    );
    // Requeued for the next slot, a minute away: with the backoff (at most 300 ms) or a status
    // write waking it, it would be refused again and again meanwhile. (A pass woken by another
    // event, e.g. `first`'s status, is refused again with the same time: at most one or two.)
    tokio::time::sleep(Duration::from_secs(1)).await;
    let refusals = || {
        h.metrics
            .encode()
            .lines()
            .filter(|l| {
                l.starts_with("runwarden_gcp_quota_refusals_total{") && l.contains("kind=\"write\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let before = refusals();
    let version = obj.metadata.resource_version.clone();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let again = refusals() - before;
    assert!(again <= 2.0, "refused {again} more times before its time");
    let now = h.api().get("second").await.expect("get");
    assert_eq!(
        now.metadata.resource_version, version,
        "the status was not rewritten"
    );
    assert_eq!(h.emu.count("run.services.create"), 1);
    assert!(
        !h.metrics
            .encode()
            .contains("runwarden_gcp_quota_exceeded_total"),
        "no 429 from Google"
    );
    h.stop_controller().await;
}
