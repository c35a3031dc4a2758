//! Shared helpers: start an emulator, build the official clients against it.
#![allow(dead_code)]

use std::time::Duration;

use google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder;
use google_cloud_gax::retry_policy::NeverRetry;
use runwarden_emulator::{Config, Emulator};

pub const PROJECT: &str = "demo-project";
pub const REGION: &str = "us-central1";

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

pub async fn emulator() -> Emulator {
    emulator_with_delay(Duration::ZERO).await
}

pub async fn emulator_with_delay(delay: Duration) -> Emulator {
    Emulator::start(
        "127.0.0.1:0",
        Config {
            operation_delay: delay,
        },
    )
    .await
    .expect("emulator starts")
}

fn backoff() -> google_cloud_gax::exponential_backoff::ExponentialBackoff {
    ExponentialBackoffBuilder::new()
        .with_initial_delay(Duration::from_millis(10))
        .with_maximum_delay(Duration::from_millis(50))
        .build()
        .expect("valid backoff")
}

pub fn anonymous() -> google_cloud_auth::credentials::Credentials {
    google_cloud_auth::credentials::anonymous::Builder::new().build()
}

/// Credentials that send `Authorization: Bearer {token}` (a token from the emulator's
/// `generateAccessToken`), as impersonated credentials would after their exchange.
#[derive(Debug)]
struct Bearer(String);

impl google_cloud_auth::credentials::CredentialsProvider for Bearer {
    async fn headers(
        &self,
        _: axum::http::Extensions,
    ) -> Result<
        google_cloud_auth::credentials::CacheableResource<axum::http::HeaderMap>,
        google_cloud_auth::errors::CredentialsError,
    > {
        let mut headers = axum::http::HeaderMap::new();
        let value = axum::http::HeaderValue::from_str(&format!("Bearer {}", self.0))
            .expect("token is a header value");
        headers.insert(axum::http::header::AUTHORIZATION, value);
        Ok(google_cloud_auth::credentials::CacheableResource::New {
            entity_tag: google_cloud_auth::credentials::EntityTag::new(),
            data: headers,
        })
    }

    async fn universe_domain(&self) -> Option<String> {
        None
    }
}

pub fn bearer(token: &str) -> google_cloud_auth::credentials::Credentials {
    Bearer(token.to_string()).into()
}

/// `$name(emu)` builds an anonymous client, `$as_name(emu, token)` one calling with a token.
macro_rules! client {
    ($name:ident, $as_name:ident, $ty:ty) => {
        pub async fn $name(emu: &Emulator) -> $ty {
            client_with::<$ty>(emu, anonymous()).await
        }
        pub async fn $as_name(emu: &Emulator, token: &str) -> $ty {
            client_with::<$ty>(emu, bearer(token)).await
        }
        impl Client for $ty {
            async fn build(
                emu: &Emulator,
                credentials: google_cloud_auth::credentials::Credentials,
            ) -> Self {
                <$ty>::builder()
                    .with_endpoint(emu.endpoint())
                    .with_credentials(credentials)
                    .with_polling_backoff_policy(backoff())
                    .with_retry_policy(NeverRetry)
                    .build()
                    .await
                    .expect("client builds")
            }
        }
    };
}

/// An official client built against the emulator.
pub trait Client: Sized {
    fn build(
        emu: &Emulator,
        credentials: google_cloud_auth::credentials::Credentials,
    ) -> impl std::future::Future<Output = Self>;
}

async fn client_with<C: Client>(
    emu: &Emulator,
    credentials: google_cloud_auth::credentials::Credentials,
) -> C {
    C::build(emu, credentials).await
}

client!(run, run_as, google_cloud_run_v2::client::Services);
client!(jobs, jobs_as, google_cloud_run_v2::client::Jobs);
client!(
    executions,
    executions_as,
    google_cloud_run_v2::client::Executions
);
client!(tasks, tasks_as, google_cloud_run_v2::client::Tasks);
client!(
    scheduler,
    scheduler_as,
    google_cloud_scheduler_v1::client::CloudScheduler
);
client!(
    kms,
    kms_as,
    google_cloud_kms_v1::client::KeyManagementService
);
client!(
    vpc,
    vpc_as,
    google_cloud_vpcaccess_v1::client::VpcAccessService
);
client!(
    projects,
    projects_as,
    google_cloud_resourcemanager_v3::client::Projects
);
client!(
    credentials,
    credentials_as,
    google_cloud_iam_credentials_v1::client::IAMCredentials
);

/// A service account e-mail in [`PROJECT`].
pub fn sa(name: &str) -> String {
    format!("{name}@{PROJECT}.iam.gserviceaccount.com")
}

/// An access token for `email`, issued to an anonymous caller.
pub async fn token_for(emu: &Emulator, email: &str) -> String {
    credentials(emu)
        .await
        .generate_access_token()
        .set_name(format!("projects/-/serviceAccounts/{email}"))
        .set_scope(["https://www.googleapis.com/auth/cloud-platform"])
        .send()
        .await
        .expect("token issued")
        .access_token
}

/// Replaces the IAM policy of `resource` (a REST path such as `/v3/projects/p`) with `bindings`
/// (`[(role, [members])]`), as an anonymous caller.
pub async fn set_policy(emu: &Emulator, resource: &str, bindings: &[(&str, &[&str])]) {
    let bindings: Vec<serde_json::Value> = bindings
        .iter()
        .map(|(role, members)| serde_json::json!({"role": role, "members": members}))
        .collect();
    let body = serde_json::json!({"policy": {"bindings": bindings}}).to_string();
    let (status, v) = http(
        emu,
        "POST",
        &format!("{resource}:setIamPolicy"),
        Some(&body),
    )
    .await;
    assert_eq!(status, 200, "{v}");
}

/// Replaces the IAM policy of `resource` with one binding: `role` for service account `email`.
pub async fn grant(emu: &Emulator, resource: &str, role: &str, email: &str) {
    set_policy(
        emu,
        resource,
        &[(role, &[&format!("serviceAccount:{email}")])],
    )
    .await;
}

pub fn parent() -> String {
    format!("projects/{PROJECT}/locations/{REGION}")
}

pub fn service_name(id: &str) -> String {
    format!("{}/services/{id}", parent())
}

pub fn hello_service() -> google_cloud_run_v2::model::Service {
    use google_cloud_run_v2::model::{Container, RevisionTemplate, Service};
    Service::new().set_template(
        RevisionTemplate::new()
            .set_containers([Container::new().set_image("gcr.io/cloudrun/hello")]),
    )
}

/// Creates service `id` under [`parent`] and waits for its operation.
pub async fn create(
    client: &google_cloud_run_v2::client::Services,
    id: &str,
    svc: google_cloud_run_v2::model::Service,
) -> Result<google_cloud_run_v2::model::Service, google_cloud_gax::error::Error> {
    use google_cloud_lro::Poller;
    client
        .create_service()
        .set_parent(parent())
        .set_service_id(id)
        .set_service(svc)
        .poller()
        .until_done()
        .await
}

/// The error of a create of service `id` under [`parent`] that Cloud Run refuses at once.
pub async fn refused_create(
    client: &google_cloud_run_v2::client::Services,
    id: &str,
    svc: google_cloud_run_v2::model::Service,
) -> google_cloud_gax::error::Error {
    client
        .create_service()
        .set_parent(parent())
        .set_service_id(id)
        .set_service(svc)
        .send()
        .await
        .unwrap_err()
}

pub fn job_name(id: &str) -> String {
    format!("{}/jobs/{id}", parent())
}

/// A job of one `us-docker.pkg.dev/cloudrun/container/job` container, as a user writes it.
pub fn hello_job() -> google_cloud_run_v2::model::Job {
    use google_cloud_run_v2::model::{Container, ExecutionTemplate, Job, TaskTemplate};
    Job::new().set_template(ExecutionTemplate::new().set_template(
        TaskTemplate::new().set_containers([
            Container::new().set_image("us-docker.pkg.dev/cloudrun/container/job"),
        ]),
    ))
}

/// Creates job `id` under [`parent`] and waits for its operation.
pub async fn create_job(
    client: &google_cloud_run_v2::client::Jobs,
    id: &str,
    job: google_cloud_run_v2::model::Job,
) -> Result<google_cloud_run_v2::model::Job, google_cloud_gax::error::Error> {
    use google_cloud_lro::Poller;
    client
        .create_job()
        .set_parent(parent())
        .set_job_id(id)
        .set_job(job)
        .poller()
        .until_done()
        .await
}

/// The error of a create of job `id` under [`parent`] that Cloud Run refuses at once.
pub async fn refused_job_create(
    client: &google_cloud_run_v2::client::Jobs,
    id: &str,
    job: google_cloud_run_v2::model::Job,
) -> google_cloud_gax::error::Error {
    client
        .create_job()
        .set_parent(parent())
        .set_job_id(id)
        .set_job(job)
        .send()
        .await
        .unwrap_err()
}

pub const RING: &str = "ring";

pub fn key_name(location: &str, key: &str) -> String {
    format!("projects/{PROJECT}/locations/{location}/keyRings/{RING}/cryptoKeys/{key}")
}

/// The member of the project's Cloud Run service agent.
pub fn agent() -> String {
    format!(
        "serviceAccount:service-{}@serverless-robot-prod.iam.gserviceaccount.com",
        runwarden_emulator::state::project_number(PROJECT)
    )
}

/// Key `key` (ENCRYPT_DECRYPT) in key ring [`RING`] of `location`, the ring made if needed.
pub async fn make_key(
    emu: &Emulator,
    location: &str,
    key: &str,
) -> google_cloud_kms_v1::model::CryptoKey {
    use google_cloud_kms_v1::model::{CryptoKey, KeyRing, crypto_key};
    let kms = kms(emu).await;
    let parent = format!("projects/{PROJECT}/locations/{location}");
    let _ = kms
        .create_key_ring()
        .set_parent(&parent)
        .set_key_ring_id(RING)
        .set_key_ring(KeyRing::new())
        .send()
        .await;
    kms.create_crypto_key()
        .set_parent(format!("{parent}/keyRings/{RING}"))
        .set_crypto_key_id(key)
        .set_crypto_key(CryptoKey::new().set_purpose(crypto_key::CryptoKeyPurpose::EncryptDecrypt))
        .send()
        .await
        .expect("key created")
}

/// Grants the Cloud Run service agent `roles/cloudkms.cryptoKeyEncrypterDecrypter` on `key`.
pub async fn grant_agent(emu: &Emulator, key: &str) {
    use google_cloud_iam_v1::model::Binding;
    let kms = kms(emu).await;
    let current = kms
        .get_iam_policy()
        .set_resource(key)
        .send()
        .await
        .expect("policy");
    let policy = current.set_bindings([Binding::new()
        .set_role("roles/cloudkms.cryptoKeyEncrypterDecrypter")
        .set_members([agent()])]);
    kms.set_iam_policy()
        .set_resource(key)
        .set_policy(policy)
        .send()
        .await
        .expect("granted");
}

/// The gRPC code of a client error.
pub fn code(e: &google_cloud_gax::error::Error) -> Option<google_cloud_gax::error::rpc::Code> {
    e.status().map(|s| s.code)
}

/// The message of a client error.
pub fn message(e: &google_cloud_gax::error::Error) -> String {
    e.status().map(|s| s.message.clone()).unwrap_or_default()
}

/// A plain HTTP/1.1 call, as curl would make it: returns (status, JSON body).
pub async fn http(
    emu: &Emulator,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let addr = emu.local_addr();
    let body = body.unwrap_or("").to_string();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let raw = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream.write_all(req.as_bytes()).expect("write");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read");
        raw
    })
    .await
    .expect("http call");
    let text = String::from_utf8_lossy(&raw).to_string();
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "every response is JSON: {head}"
    );
    let payload = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(payload)
    } else {
        payload.to_string()
    };
    (
        status,
        serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
    )
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}
