//! The budgets' decisions under a clock the tests drive (`decide` takes the time), and the
//! wrapper over the fake Google.

use super::*;

const P: &str = "projects/p/locations/us-central1/services/s";

fn scope(project: &str, region: &str) -> Scope {
    Scope {
        project: project.into(),
        region: region.into(),
    }
}

fn budgets(reads: u32, writes: u32) -> Budgets {
    Budgets::new(reads, writes, Arc::new(Metrics::default()))
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Offers a call every `step` from `start` for `span`, like workers that retry at once, and
/// returns when each let-through call starts.
fn drive(b: &Budgets, kind: Kind, start: Instant, step: Duration, span: Duration) -> Vec<Instant> {
    let s = scope("p", "us-central1");
    let mut starts = Vec::new();
    let mut now = start;
    while now < start + span {
        if let Decision::Go(wait) = b.decide(&s, kind, "svc", now) {
            starts.push(now + wait);
        }
        now += step;
    }
    starts
}

#[test]
fn names_give_project_and_region() {
    assert_eq!(Scope::of(P), scope("p", "us-central1"));
    assert_eq!(
        Scope::of("projects/p/locations/europe-west1"),
        scope("p", "europe-west1")
    );
    assert_eq!(
        Scope::of("projects/p/locations/l/operations/o"),
        scope("p", "l")
    );
    assert_eq!(Scope::of("services/s"), scope("unknown", "unknown"));
    assert_eq!(Scope::of(""), scope("unknown", "unknown"));
}

#[test]
fn a_burst_of_the_whole_budget_starts_at_once() {
    let b = budgets(600, 10);
    let s = scope("p", "r");
    let t0 = Instant::now();
    for _ in 0..10 {
        assert_eq!(
            b.decide(&s, Kind::Write, "svc", t0),
            Decision::Go(Duration::ZERO)
        );
    }
    assert!(matches!(
        b.decide(&s, Kind::Write, "svc", t0),
        Decision::Refuse { .. }
    ));
}

#[test]
fn no_window_of_a_minute_ever_holds_more_than_the_budget() {
    let b = budgets(600, 20);
    let t0 = Instant::now();
    // Ten minutes of callers every 100 ms, always wanting more than the budget.
    let starts = drive(&b, Kind::Write, t0, Duration::from_millis(100), secs(600));
    let mut sorted = starts.clone();
    sorted.sort();
    assert_eq!(sorted, starts, "turns are handed out in order");
    for (i, first) in starts.iter().enumerate() {
        let in_window = starts[i..]
            .iter()
            .take_while(|t| **t < *first + Duration::from_secs(60))
            .count();
        assert!(
            in_window <= 20,
            "{in_window} calls in the minute from call {i}"
        );
    }
    // ... and the budget is used: 20 per 61 s window over ten minutes.
    assert!(starts.len() >= 20 * 9, "{} calls", starts.len());
}

#[test]
fn a_turn_within_the_bound_waits_and_a_later_one_is_refused_with_when() {
    let b = budgets(600, 2).with_max_wait(secs(5));
    let s = scope("p", "r");
    let t0 = Instant::now();
    assert_eq!(
        b.decide(&s, Kind::Write, "svc", t0),
        Decision::Go(Duration::ZERO)
    );
    assert_eq!(
        b.decide(&s, Kind::Write, "svc", t0 + secs(1)),
        Decision::Go(Duration::ZERO)
    );
    // The first slot frees at t0 + 61 s: 3 s away from t0 + 58 s, so that caller waits.
    assert_eq!(
        b.decide(&s, Kind::Write, "svc", t0 + secs(58)),
        Decision::Go(secs(3))
    );
    // The second frees at t0 + 62 s; at t0 + 30 s that is too far: refused, told when.
    assert_eq!(
        b.decide(&s, Kind::Write, "svc", t0 + secs(30)),
        Decision::Refuse {
            at: t0 + secs(62),
            paused_until: None
        }
    );
}

#[test]
fn refused_callers_are_handed_successive_turns() {
    let b = budgets(600, 2).with_max_wait(Duration::ZERO);
    let s = scope("p", "r");
    let t0 = Instant::now();
    b.decide(&s, Kind::Write, "a", t0);
    b.decide(&s, Kind::Write, "b", t0 + secs(10));
    let refused = |resource, now| match b.decide(&s, Kind::Write, resource, now) {
        Decision::Refuse { at, .. } => at,
        other => panic!("{other:?}"),
    };
    let now = t0 + secs(20);
    assert_eq!(refused("c", now), t0 + secs(61));
    assert_eq!(refused("d", now), t0 + secs(71));
    // Beyond the turns the log knows, the next window's.
    assert_eq!(refused("e", now), t0 + secs(122));
    assert_eq!(refused("f", now), t0 + secs(132));
    // Asking again before its time does not move a resource back.
    assert_eq!(refused("d", t0 + secs(30)), t0 + secs(71));
    // The first one comes back on time and goes; the next refused one queues behind the
    // three promises still pending.
    assert_eq!(
        b.decide(&s, Kind::Write, "c", t0 + secs(61)),
        Decision::Go(Duration::ZERO)
    );
    assert_eq!(refused("g", t0 + secs(62)), t0 + secs(183));
}

#[test]
fn a_resource_refused_again_reads_the_same_message() {
    let b = budgets(600, 1).with_max_wait(Duration::ZERO);
    let s = scope("p", "r");
    let t0 = Instant::now();
    b.decide(&s, Kind::Write, "a", t0);
    let message = |now| {
        let Decision::Refuse { at, paused_until } = b.decide(&s, Kind::Write, "b", now) else {
            panic!("not refused");
        };
        b.refusal(&s, Kind::Write, "services.create", now, at, paused_until)
            .message
    };
    let first = message(t0 + secs(1));
    for later in [2, 10, 59] {
        assert_eq!(message(t0 + secs(later)), first);
    }
}

#[tokio::test]
async fn a_refusal_is_a_local_resource_exhausted_with_retry_after() {
    let b = budgets(600, 1).with_max_wait(secs(5));
    let s = scope("p", "us-central1");
    b.acquire(&s, Kind::Write, "services.create", P)
        .await
        .unwrap();
    let e = b
        .acquire(&s, Kind::Write, "services.patch", P)
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::ResourceExhausted);
    assert_eq!((e.api, e.method), ("run", "services.patch"));
    let after = e.retry_after.expect("retry_after");
    assert!(after > secs(60) && after <= WINDOW, "{after:?}");
    let prefix = "client-side budget of 1 Cloud Run writes per minute for project p in us-central1 is spent; next call at ";
    let at = e
        .message
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{}", e.message));
    let at: jiff::Timestamp = at.parse().expect("RFC 3339");
    let expected = jiff::Timestamp::now() + jiff::SignedDuration::try_from(after).unwrap();
    assert!(
        at.duration_since(expected).abs() < jiff::SignedDuration::from_secs(2),
        "{at} vs {expected}"
    );
    let metrics = b.metrics.encode();
    assert!(
        metrics.contains(
            "runwarden_gcp_quota_refusals_total{project=\"p\",region=\"us-central1\",kind=\"write\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "runwarden_gcp_quota_wait_seconds_count{project=\"p\",region=\"us-central1\",kind=\"write\"} 1"
        ),
        "{metrics}"
    );
}

#[test]
fn reads_and_writes_projects_and_regions_have_budgets_of_their_own() {
    let b = budgets(3, 1).with_max_wait(Duration::ZERO);
    let t0 = Instant::now();
    let here = scope("p", "r");
    assert_eq!(
        b.decide(&here, Kind::Write, "svc", t0),
        Decision::Go(Duration::ZERO)
    );
    assert!(matches!(
        b.decide(&here, Kind::Write, "svc", t0),
        Decision::Refuse { .. }
    ));
    for _ in 0..3 {
        assert_eq!(
            b.decide(&here, Kind::Read, "svc", t0),
            Decision::Go(Duration::ZERO)
        );
    }
    assert!(matches!(
        b.decide(&here, Kind::Read, "svc", t0),
        Decision::Refuse { .. }
    ));
    for other in [scope("p", "r2"), scope("q", "r")] {
        assert_eq!(
            b.decide(&other, Kind::Write, "svc", t0),
            Decision::Go(Duration::ZERO)
        );
    }
}

#[test]
fn googles_retry_info_pauses_the_project_region_for_every_caller() {
    let b = budgets(600, 60).with_max_wait(secs(5));
    let t0 = Instant::now();
    let here = scope("p", "r");
    b.pause(&here, Kind::Write, t0, secs(30));
    // Every later write of the project-region: refused until then, or waits when it is near.
    assert_eq!(
        b.decide(&here, Kind::Write, "svc", t0 + secs(1)),
        Decision::Refuse {
            at: t0 + secs(30),
            paused_until: Some(t0 + secs(30))
        }
    );
    assert_eq!(
        b.decide(&here, Kind::Write, "svc", t0 + secs(27)),
        Decision::Go(secs(3))
    );
    assert_eq!(
        b.decide(&here, Kind::Write, "svc", t0 + secs(31)),
        Decision::Go(Duration::ZERO)
    );
    // Not its reads, not other regions or projects.
    assert_eq!(
        b.decide(&here, Kind::Read, "svc", t0),
        Decision::Go(Duration::ZERO)
    );
    for other in [scope("p", "r2"), scope("q", "r")] {
        assert_eq!(
            b.decide(&other, Kind::Write, "svc", t0 + secs(1)),
            Decision::Go(Duration::ZERO)
        );
    }
    // A shorter pause does not shorten a longer one.
    b.pause(&here, Kind::Write, t0 + secs(31), secs(60));
    b.pause(&here, Kind::Write, t0 + secs(32), secs(1));
    assert!(matches!(
        b.decide(&here, Kind::Write, "svc", t0 + secs(40)),
        Decision::Refuse { at, .. } if at == t0 + secs(91)
    ));
}

#[test]
fn a_zero_budget_is_no_client_side_limit() {
    let b = budgets(0, 0);
    let s = scope("p", "r");
    let t0 = Instant::now();
    for _ in 0..10_000 {
        assert_eq!(
            b.decide(&s, Kind::Write, "svc", t0),
            Decision::Go(Duration::ZERO)
        );
    }
}

mod wrapper {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::gcp::fake::FakeGcp;

    /// A Cloud Run that answers every `us-central1` call with a 429 asking for 30 s, and
    /// anything else with nothing found; counts the calls that reached it.
    #[derive(Default)]
    struct Exhausted(AtomicUsize);

    impl Exhausted {
        fn answer<T: Default>(&self, method: &'static str, name: &str) -> GcpResult<T> {
            self.0.fetch_add(1, Ordering::SeqCst);
            if Scope::of(name).region != "us-central1" {
                return Ok(T::default());
            }
            Err(GcpError {
                retry_after: Some(secs(30)),
                ..GcpError::new("run", method, Code::ResourceExhausted, "Quota exceeded")
            })
        }
    }

    #[async_trait]
    impl IamPolicyApi for Exhausted {
        async fn get_iam_policy(&self, resource: &str) -> GcpResult<Policy> {
            self.answer("services.getIamPolicy", resource)
        }
        async fn set_iam_policy(&self, resource: &str, _: Policy) -> GcpResult<Policy> {
            self.answer("services.setIamPolicy", resource)
        }
    }

    #[async_trait]
    impl CloudRunApi for Exhausted {
        async fn get_service(&self, name: &str) -> GcpResult<Option<Service>> {
            self.answer("services.get", name)
        }
        async fn create_service(&self, parent: &str, _: &str, _: Service) -> GcpResult<Operation> {
            self.answer("services.create", parent)
        }
        async fn update_service(&self, service: Service) -> GcpResult<Operation> {
            self.answer("services.patch", &service.name)
        }
        async fn delete_service(&self, name: &str) -> GcpResult<Option<Operation>> {
            self.answer("services.delete", name)
        }
        async fn get_operation(&self, name: &str) -> GcpResult<Operation> {
            self.answer("operations.get", name)
        }
    }

    #[async_trait]
    impl CloudRunJobsApi for Exhausted {
        async fn get_job(&self, name: &str) -> GcpResult<Option<Job>> {
            self.answer("jobs.get", name)
        }
        async fn create_job(&self, parent: &str, _: &str, _: Job) -> GcpResult<Operation> {
            self.answer("jobs.create", parent)
        }
        async fn update_job(&self, job: Job) -> GcpResult<Operation> {
            self.answer("jobs.patch", &job.name)
        }
        async fn delete_job(&self, name: &str) -> GcpResult<Option<Operation>> {
            self.answer("jobs.delete", name)
        }
        async fn get_execution(&self, name: &str) -> GcpResult<Option<Execution>> {
            self.answer("executions.get", name)
        }
        async fn get_operation(&self, name: &str) -> GcpResult<Operation> {
            self.answer("operations.get", name)
        }
    }

    #[tokio::test]
    async fn a_429_with_retry_info_pauses_other_callers_of_the_project_region() {
        let google = Arc::new(Exhausted::default());
        let metrics = Arc::new(Metrics::default());
        let b = Arc::new(Budgets::new(600, 60, metrics.clone()).with_max_wait(Duration::ZERO));
        let run = budgeted(google.clone(), b);
        let e = run.get_service(P).await.unwrap_err();
        assert_eq!(e.retry_after, Some(secs(30)));
        // Another object's read in the project-region: refused without reaching Google.
        let e = run
            .get_iam_policy("projects/p/locations/us-central1/services/other")
            .await
            .unwrap_err();
        assert_eq!(e.code, Code::ResourceExhausted);
        assert!(e.message.contains("are paused until"), "{}", e.message);
        assert!(e.retry_after.unwrap() <= secs(30));
        assert_eq!(google.0.load(Ordering::SeqCst), 1, "no call reached Google");
        // Its writes (another quota) and other regions go on.
        run.delete_service(P).await.unwrap_err();
        run.get_service("projects/p/locations/europe-west1/services/s")
            .await
            .unwrap();
        assert_eq!(google.0.load(Ordering::SeqCst), 3);
        let text = metrics.encode();
        assert!(
            text.contains(
                "runwarden_gcp_quota_exceeded_total{project=\"p\",region=\"us-central1\"} 2"
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn jobs_spend_the_same_budgets_as_services() {
        let fake = FakeGcp::new();
        let gcp = fake.gcp();
        let b = Arc::new(budgets(3, 1).with_max_wait(Duration::ZERO));
        let (run, jobs) = (budgeted(gcp.run, b.clone()), budgeted_jobs(gcp.jobs, b));
        let job = "projects/p/locations/us-central1/jobs/j";
        // One write for the project-region: a service's delete spends it, a job's is refused.
        assert_eq!(run.delete_service(P).await.unwrap(), None);
        let e = jobs.delete_job(job).await.unwrap_err();
        assert_eq!(
            (e.api, e.method, e.code),
            ("run", "jobs.delete", Code::ResourceExhausted)
        );
        assert!(e.retry_after.is_some());
        let e = jobs.set_iam_policy(job, Policy::new()).await.unwrap_err();
        assert_eq!(
            (e.method, e.code),
            ("jobs.setIamPolicy", Code::ResourceExhausted)
        );
        // Three reads: a service's and two of the job's; the next read is refused.
        assert_eq!(run.get_service(P).await.unwrap(), None);
        assert_eq!(jobs.get_job(job).await.unwrap(), None);
        let execution = format!("{job}/executions/j-1");
        assert_eq!(jobs.get_execution(&execution).await.unwrap(), None);
        let e = jobs.get_iam_policy(job).await.unwrap_err();
        assert_eq!(
            (e.method, e.code),
            ("jobs.getIamPolicy", Code::ResourceExhausted)
        );
        let e = jobs.get_operation("projects/p/locations/us-central1/operations/o");
        assert_eq!(e.await.unwrap_err().method, "operations.get");
        // Another region has budgets of its own.
        let there = "projects/p/locations/europe-west1/jobs/j";
        assert_eq!(jobs.get_job(there).await.unwrap(), None);
        assert_eq!(jobs.delete_job(there).await.unwrap(), None);
        assert_eq!(
            fake.calls(),
            [
                "run.services.delete",
                "run.services.get",
                "run.jobs.get",
                "run.executions.get",
                "run.jobs.get",
                "run.jobs.delete"
            ],
            "refused calls never reach Google"
        );
    }

    #[tokio::test]
    async fn a_jobs_429_with_retry_info_pauses_the_services_of_the_project_region() {
        let google = Arc::new(Exhausted::default());
        let b = Arc::new(budgets(600, 60).with_max_wait(Duration::ZERO));
        let (run, jobs) = (
            budgeted(google.clone(), b.clone()),
            budgeted_jobs(google.clone(), b),
        );
        let e = jobs.get_execution(&format!("{P}/executions/x")).await;
        assert_eq!(e.unwrap_err().retry_after, Some(secs(30)));
        let e = run.get_service(P).await.unwrap_err();
        assert!(e.message.contains("are paused until"), "{}", e.message);
        assert_eq!(google.0.load(Ordering::SeqCst), 1, "no call reached Google");
        jobs.delete_job(P).await.unwrap_err();
        assert_eq!(google.0.load(Ordering::SeqCst), 2, "writes go on");
    }

    #[tokio::test]
    async fn a_429_without_retry_info_pauses_nothing() {
        let fake = FakeGcp::new();
        let b = Arc::new(budgets(600, 60).with_max_wait(Duration::ZERO));
        let run = budgeted(fake.gcp().run, b);
        fake.fail("run.services.get", Code::ResourceExhausted, 1);
        let e = run.get_service(P).await.unwrap_err();
        assert_eq!((e.code, e.retry_after), (Code::ResourceExhausted, None));
        assert_eq!(run.get_service(P).await.unwrap(), None);
        assert_eq!(fake.count("run.services.get"), 2);
    }
}
