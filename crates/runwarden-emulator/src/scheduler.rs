//! Cloud Scheduler v1 jobs: create, get, list, patch (`updateMask`), delete, `:pause`,
//! `:resume`, `:run`. A run (forced by `:run`, or due by its unix-cron schedule on the emulator
//! clock, checked before every request) performs the job's `httpTarget`: a target naming the
//! emulator's own Cloud Run `.../jobs/{job}:run` runs that job as the target's
//! `oauthToken.serviceAccountEmail`, which needs `run.jobs.run` on the job (its own policy or the
//! project's). Every attempt is recorded in `lastAttemptTime` and `status` (a
//! `google.rpc.Status`: `{}` when it succeeded, else its code and message).

use std::time::SystemTime;

use serde_json::{Value, json};

use crate::cron::Cron;
use crate::enums;
use crate::error::{Code, GError, GResult};
use crate::request::Req;
use crate::state::{Project, SchedulerRec, State};
use crate::util::{self, get_path, str_of};

/// Fields a caller sets.
const USER_FIELDS: [&str; 8] = [
    "description",
    "schedule",
    "timeZone",
    "httpTarget",
    "pubsubTarget",
    "appEngineHttpTarget",
    "retryConfig",
    "attemptDeadline",
];
const TARGETS: [&str; 3] = ["httpTarget", "pubsubTarget", "appEngineHttpTarget"];
const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Jobs per project and region (Cloud Scheduler's default quota).
const PER_REGION: usize = 1000;

/// Cloud Scheduler's NOT_FOUND.
fn not_found() -> GError {
    GError::not_found("Job not found.")
}

/// The job name of the request path (project id form), and its project.
fn job_name(st: &mut State, req: &Req) -> GResult<(String, Project)> {
    let p = st.project(req.seg(1))?;
    Ok((
        format!(
            "projects/{}/locations/{}/jobs/{}",
            p.id,
            req.seg(3),
            req.seg(5)
        ),
        p,
    ))
}

fn render(job: &Value, int: bool) -> Value {
    let mut v = job.clone();
    enums::encode(&mut v, enums::SCHEDULER_JOB, int);
    v
}

/// The request's Job: enums normalized, proto3 defaults dropped.
fn input(req: &Req) -> GResult<Value> {
    let mut body = req.object_body()?;
    enums::decode(&mut body, enums::SCHEDULER_JOB, "job")?;
    util::prune(&mut body);
    Ok(body)
}

/// `cloudscheduler.jobs.get`.
pub(crate) fn get(st: &mut State, req: &Req) -> GResult<Value> {
    let (name, _) = job_name(st, req)?;
    let rec = st.scheduler_jobs.get(&name).ok_or_else(not_found)?;
    Ok(render(&rec.job, req.int))
}

/// `cloudscheduler.jobs.list`.
pub(crate) fn list(st: &mut State, req: &Req) -> GResult<Value> {
    let p = st.project(req.seg(1))?;
    let prefix = format!("projects/{}/locations/{}/jobs/", p.id, req.seg(3));
    let items: Vec<Value> = st
        .scheduler_jobs
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(_, r)| render(&r.job, req.int))
        .collect();
    util::list_page("jobs", &items, &req.query, 500)
}

/// `cloudscheduler.jobs.create`: the name is the caller's (`{parent}/jobs/{id}`, id of letters,
/// digits, hyphens and underscores, at most 500) or a generated one; server defaults filled in;
/// ENABLED, due at the schedule's next time.
pub(crate) fn create(st: &mut State, req: &Req) -> GResult<Value> {
    let p = st.project(req.seg(1))?;
    let parent = format!("projects/{}/locations/{}", p.id, req.seg(3));
    let body = input(req)?;
    let mut job = json!({});
    for f in USER_FIELDS {
        if let Some(v) = body.get(f) {
            job[f] = v.clone();
        }
    }
    let given = str_of(&body, "name");
    let id = if given.is_empty() {
        util::random_alnum(20)
    } else {
        let (gp, id) = given.rsplit_once("/jobs/").unwrap_or(("", ""));
        let same_parent = gp == parent || canonical(st, gp).is_some_and(|c| c == parent);
        let id_ok = !id.is_empty()
            && id.len() <= 500
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !same_parent || !id_ok {
            return Err(GError::invalid_field(
                "job.name",
                format!(
                    "Job name must be formatted: \"projects/<PROJECT_ID>/locations/<LOCATION_ID>/jobs/<JOB_ID>\", in {parent}; got \"{given}\"."
                ),
            ));
        }
        id.to_string()
    };
    let name = format!("{parent}/jobs/{id}");
    validate(&mut job)?;
    if st.scheduler_jobs.contains_key(&name) {
        return Err(GError::new(
            Code::AlreadyExists,
            format!("Job {name} already exists."),
        ));
    }
    check_region_limit(st, &parent)?;
    let now = req.now;
    job["name"] = json!(name);
    job["state"] = json!("ENABLED");
    job["userUpdateTime"] = json!(util::timestamp(now));
    let mut rec = SchedulerRec { job, next: None };
    reschedule(&mut rec, now);
    let out = render(&rec.job, req.int);
    st.scheduler_jobs.insert(name, rec);
    Ok(out)
}

/// `projects/{id}/locations/{l}` for a parent naming its project by number.
fn canonical(st: &mut State, parent: &str) -> Option<String> {
    let parts: Vec<&str> = parent.split('/').collect();
    if parts.len() != 4 || parts[0] != "projects" || parts[2] != "locations" {
        return None;
    }
    let p = st.project(parts[1]).ok()?;
    Some(format!("projects/{}/locations/{}", p.id, parts[3]))
}

/// RESOURCE_EXHAUSTED at [`PER_REGION`] jobs (the wording is the emulator's own).
fn check_region_limit(st: &State, parent: &str) -> GResult<()> {
    let prefix = format!("{parent}/jobs/");
    let count = st
        .scheduler_jobs
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .count();
    if count < PER_REGION {
        return Ok(());
    }
    Err(GError::new(
        Code::ResourceExhausted,
        format!(
            "Quota exceeded: {parent} already has {PER_REGION} Cloud Scheduler jobs, the most a project may have in a region."
        ),
    ))
}

/// Checks a job's user fields and fills the server defaults: `timeZone Etc/UTC`,
/// `attemptDeadline 180s`, `retryConfig {maxRetryDuration 0s, minBackoffDuration 5s,
/// maxBackoffDuration 3600s, maxDoublings 5}`, `httpTarget.httpMethod POST` and the
/// cloud-platform scope of an `oauthToken`.
fn validate(job: &mut Value) -> GResult<()> {
    let schedule = str_of(job, "schedule");
    if schedule.is_empty() {
        return Err(GError::invalid_field(
            "job.schedule",
            "Schedule or time zone is invalid.",
        ));
    }
    let tz = str_of(job, "timeZone").to_string();
    if Cron::parse(schedule).is_none() || !(tz.is_empty() || plausible_time_zone(&tz)) {
        return Err(GError::invalid("Schedule or time zone is invalid."));
    }
    let targets = TARGETS.iter().filter(|t| job.get(**t).is_some()).count();
    if targets != 1 {
        return Err(GError::invalid(
            "A job must have exactly one target: http_target, pubsub_target or app_engine_http_target.",
        ));
    }
    if let Some(h) = job.get_mut("httpTarget") {
        check_http_target(h)?;
    }
    let deadline = job
        .get("attemptDeadline")
        .map(|d| d.as_str().and_then(util::parse_duration));
    match deadline {
        None => job["attemptDeadline"] = json!("180s"),
        Some(Some(d)) if (15..=1800).contains(&d.as_secs()) => {}
        Some(_) => {
            return Err(GError::invalid_field(
                "job.attempt_deadline",
                "The attempt deadline of an HTTP target must be between 15 seconds and 30 minutes.",
            ));
        }
    }
    let retry = job
        .as_object_mut()
        .map(|o| o.entry("retryConfig").or_insert(json!({})));
    if let Some(r) = retry {
        let count = util::int_at(
            r,
            "retryCount",
            "job.retry_config.retry_count",
            "TYPE_INT32",
        )?;
        if count.is_some_and(|n| !(0..=5).contains(&n)) {
            return Err(GError::invalid_field(
                "job.retry_config.retry_count",
                "retry_count must be between 0 and 5.",
            ));
        }
        if let Some(o) = r.as_object_mut() {
            o.entry("maxRetryDuration").or_insert(json!("0s"));
            o.entry("minBackoffDuration").or_insert(json!("5s"));
            o.entry("maxBackoffDuration").or_insert(json!("3600s"));
            o.entry("maxDoublings").or_insert(json!(5));
        }
    }
    if tz.is_empty() {
        job["timeZone"] = json!("Etc/UTC");
    }
    Ok(())
}

/// `httpTarget`: an http(s) `uri`, at most one of `oauthToken` / `oidcToken`, each naming a
/// service account; `httpMethod` POST and the OAuth scope filled in.
fn check_http_target(h: &mut Value) -> GResult<()> {
    let uri = str_of(h, "uri");
    if !(uri.starts_with("https://") || uri.starts_with("http://")) {
        return Err(GError::invalid_field(
            "job.http_target.uri",
            format!("HTTP target URI must start with http:// or https://; got \"{uri}\"."),
        ));
    }
    if h.get("oauthToken").is_some() && h.get("oidcToken").is_some() {
        return Err(GError::invalid(
            "Only one of oauth_token and oidc_token may be set on an HTTP target.",
        ));
    }
    for token in ["oauthToken", "oidcToken"] {
        if let Some(t) = h.get(token) {
            let email = str_of(t, "serviceAccountEmail");
            if !email.contains('@') {
                return Err(GError::invalid_field(
                    &format!(
                        "job.http_target.{}.service_account_email",
                        enums::snake(token)
                    ),
                    format!("'{email}' is not a valid service account email."),
                ));
            }
        }
    }
    if let Some(o) = h.as_object_mut() {
        o.entry("httpMethod").or_insert(json!("POST"));
    }
    if let Some(t) = h.get_mut("oauthToken").and_then(Value::as_object_mut) {
        t.entry("scope").or_insert(json!(CLOUD_PLATFORM));
    }
    Ok(())
}

/// Whether `tz` looks like an IANA time zone name (`Etc/UTC`, `Europe/Paris`,
/// `America/Argentina/Buenos_Aires`, `UTC`). The emulator evaluates every schedule in UTC.
fn plausible_time_zone(tz: &str) -> bool {
    const AREAS: [&str; 11] = [
        "Africa",
        "America",
        "Antarctica",
        "Arctic",
        "Asia",
        "Atlantic",
        "Australia",
        "Europe",
        "Indian",
        "Pacific",
        "Etc",
    ];
    if matches!(tz, "UTC" | "GMT" | "Etc/UTC" | "Etc/GMT") {
        return true;
    }
    let Some((area, rest)) = tz.split_once('/') else {
        return false;
    };
    AREAS.contains(&area)
        && rest.split('/').all(|p| {
            p.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
        })
}

/// When an ENABLED job is next due: `scheduleTime` and the record's `next`.
fn reschedule(rec: &mut SchedulerRec, after: SystemTime) {
    rec.next = None;
    if str_of(&rec.job, "state") == "ENABLED"
        && let Some(next) =
            Cron::parse(str_of(&rec.job, "schedule")).and_then(|c| c.next_after(after))
    {
        rec.next = Some(next);
        rec.job["scheduleTime"] = json!(util::timestamp(next));
    }
}

/// `cloudscheduler.jobs.patch` (`updateMask`: the paths given, camelCase or snake_case, nested
/// ones such as `http_target.uri` too; without a mask, every user field the body carries).
pub(crate) fn patch(st: &mut State, req: &Req) -> GResult<Value> {
    let (name, _) = job_name(st, req)?;
    let body = input(req)?;
    let rec = st.scheduler_jobs.get(&name).ok_or_else(not_found)?;
    let mut job = rec.job.clone();
    match util::query_mask(&req.query, "updateMask") {
        Some(paths) if !paths.is_empty() => {
            for p in paths {
                let p: String = p.split('.').map(util::camel).collect::<Vec<_>>().join(".");
                let top = p.split('.').next().unwrap_or("");
                if !USER_FIELDS.contains(&top) {
                    return Err(GError::invalid_field(
                        "update_mask",
                        format!("Invalid field mask path: '{p}'."),
                    ));
                }
                util::set_path(&mut job, &p, get_path(&body, &p).cloned());
            }
        }
        _ => {
            for f in USER_FIELDS {
                if let Some(v) = body.get(f) {
                    job[f] = v.clone();
                }
            }
        }
    }
    // A new target replaces the old one (they are a oneof).
    if let Some(t) = TARGETS.iter().find(|t| body.get(**t).is_some())
        && let Some(o) = job.as_object_mut()
    {
        o.retain(|k, _| !TARGETS.contains(&k.as_str()) || k == t);
    }
    util::prune(&mut job);
    validate(&mut job)?;
    job["userUpdateTime"] = json!(util::timestamp(req.now));
    let mut rec = SchedulerRec {
        job,
        next: rec.next,
    };
    reschedule(&mut rec, req.now);
    let out = render(&rec.job, req.int);
    st.scheduler_jobs.insert(name, rec);
    Ok(out)
}

/// `cloudscheduler.jobs.delete`.
pub(crate) fn delete(st: &mut State, req: &Req) -> GResult<Value> {
    let (name, _) = job_name(st, req)?;
    st.scheduler_jobs.remove(&name).ok_or_else(not_found)?;
    Ok(json!({}))
}

/// `cloudscheduler.jobs.pause`: PAUSED, no longer due.
pub(crate) fn pause(st: &mut State, req: &Req) -> GResult<Value> {
    set_state(st, req, "PAUSED")
}

/// `cloudscheduler.jobs.resume`: ENABLED, due at the schedule's next time.
pub(crate) fn resume(st: &mut State, req: &Req) -> GResult<Value> {
    set_state(st, req, "ENABLED")
}

fn set_state(st: &mut State, req: &Req, state: &str) -> GResult<Value> {
    let (name, _) = job_name(st, req)?;
    let rec = st.scheduler_jobs.get_mut(&name).ok_or_else(not_found)?;
    rec.job["state"] = json!(state);
    rec.job["userUpdateTime"] = json!(util::timestamp(req.now));
    reschedule(rec, req.now);
    Ok(render(&rec.job, req.int))
}

/// `cloudscheduler.jobs.run`: attempts the job now (whatever its state) and returns it with the
/// attempt recorded.
pub(crate) fn run(st: &mut State, req: &Req) -> GResult<Value> {
    let (name, _) = job_name(st, req)?;
    if !st.scheduler_jobs.contains_key(&name) {
        return Err(not_found());
    }
    attempt(st, &name, req, req.now);
    Ok(render(&st.scheduler_jobs[&name].job, req.int))
}

/// Attempts every ENABLED job whose time has come (once, however many times it was due since),
/// then schedules its next time after the request's.
pub(crate) fn run_due(st: &mut State, req: &Req) {
    let due: Vec<(String, SystemTime)> = st
        .scheduler_jobs
        .iter()
        .filter_map(|(k, r)| r.next.filter(|n| *n <= req.now).map(|n| (k.clone(), n)))
        .collect();
    for (name, at) in due {
        attempt(st, &name, req, at);
        if let Some(rec) = st.scheduler_jobs.get_mut(&name) {
            reschedule(rec, req.now);
        }
    }
}

/// One attempt of job `name` at `at`: performs its target and records `lastAttemptTime` and
/// `status`.
fn attempt(st: &mut State, name: &str, req: &Req, at: SystemTime) {
    let Some(job) = st.scheduler_jobs.get(name).map(|r| r.job.clone()) else {
        return;
    };
    let result = match job.get("httpTarget") {
        Some(h) => deliver(st, h, req),
        None => Err(GError::new(
            Code::Unimplemented,
            "The runwarden emulator does not deliver Pub/Sub or App Engine targets.",
        )),
    };
    let status = match result {
        Ok(()) => json!({}),
        Err(e) => json!({"code": e.code.number(), "message": e.message}),
    };
    if let Some(rec) = st.scheduler_jobs.get_mut(name) {
        rec.job["status"] = status;
        rec.job["lastAttemptTime"] = json!(util::timestamp(at));
    }
}

/// Delivers an HTTP target: only a POST that runs one of the emulator's Cloud Run jobs, as the
/// OAuth token's service account.
fn deliver(st: &mut State, h: &Value, req: &Req) -> GResult<()> {
    let uri = str_of(h, "uri");
    let Some((project, region, job)) = run_job_target(uri) else {
        return Err(GError::new(
            Code::Unimplemented,
            format!(
                "The runwarden emulator only delivers HTTP targets that run its own Cloud Run jobs (POST .../v2/projects/P/locations/L/jobs/J:run); {uri} was not called."
            ),
        ));
    };
    if str_of(h, "httpMethod") != "POST" {
        return Err(GError::not_found(format!(
            "{} {uri}: Cloud Run's jobs.run takes POST.",
            str_of(h, "httpMethod")
        )));
    }
    let email = get_path(h, "oauthToken.serviceAccountEmail")
        .and_then(Value::as_str)
        .filter(|_| h.get("oidcToken").is_none());
    let Some(email) = email else {
        // The Admin API takes OAuth access tokens only.
        return Err(GError::new(
            Code::Unauthenticated,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        ));
    };
    let p = st.project(&project)?;
    let segs: Vec<String> = ["projects", &p.id, "locations", &region, "jobs", &job]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let job_name = segs.join("/");
    if p.denied() || !crate::authz::holds(st, email, RUN_JOBS_RUN, &segs, &p.id) {
        return Err(GError::permission_on(
            RUN_JOBS_RUN,
            &job_name,
            format!(
                "Permission '{RUN_JOBS_RUN}' denied on resource '{job_name}' (or resource may not exist)."
            ),
        ));
    }
    crate::run::jobs::run_as_scheduler(st, &job_name, req)
}

const RUN_JOBS_RUN: &str = "run.jobs.run";

/// `(project, region, job)` of a URI that runs a Cloud Run job: `.../v2/projects/P/locations/L/
/// jobs/J:run` on any host (`run.googleapis.com` or the emulator's own address), or the v1 form
/// `https://L-run.googleapis.com/apis/run.googleapis.com/v1/namespaces/P/jobs/J:run`.
fn run_job_target(uri: &str) -> Option<(String, String, String)> {
    let rest = uri.split_once("://")?.1;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = util::percent_decode(path.split('?').next().unwrap_or(""));
    let segs: Vec<&str> = path.split('/').collect();
    let job = |s: &str| {
        s.strip_suffix(":run")
            .filter(|j| !j.is_empty())
            .map(String::from)
    };
    match segs.as_slice() {
        ["v2", "projects", p, "locations", l, "jobs", j] => {
            Some((p.to_string(), l.to_string(), job(j)?))
        }
        [
            "apis",
            "run.googleapis.com",
            "v1",
            "namespaces",
            p,
            "jobs",
            j,
        ] => {
            let region = host.strip_suffix("-run.googleapis.com")?;
            Some((p.to_string(), region.to_string(), job(j)?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_job_targets_and_time_zones() {
        assert_eq!(
            run_job_target(
                "https://run.googleapis.com/v2/projects/p/locations/us-central1/jobs/j:run"
            ),
            Some(("p".into(), "us-central1".into(), "j".into()))
        );
        assert_eq!(
            run_job_target(
                "https://europe-west1-run.googleapis.com/apis/run.googleapis.com/v1/namespaces/p/jobs/j:run"
            ),
            Some(("p".into(), "europe-west1".into(), "j".into()))
        );
        assert_eq!(run_job_target("https://example.com/hook"), None);
        assert!(
            plausible_time_zone("Etc/UTC") && plausible_time_zone("America/Argentina/Buenos_Aires")
        );
        assert!(!plausible_time_zone("Mars/Olympus") && !plausible_time_zone("utc+2"));
    }
}
