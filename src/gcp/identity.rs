//! Acting in Google as a namespace's own service account (tenancy).
//!
//! A namespace annotated `runwarden.dev/google-service-account: NAME@PROJECT.iam.gserviceaccount.com`
//! has every Google call for its objects made as that account: the controller's own credentials
//! (Workload Identity in production) call the IAM Credentials API's `generateAccessToken` for it,
//! and the API clients of that namespace send the token. Google's IAM then decides what each team
//! may touch.
//!
//! [`Impersonated`] is a `google-cloud-auth` credentials provider over the official IAM
//! Credentials client. The auth crate's own `impersonated` builder cannot be used: it always calls
//! `https://iamcredentials.{universe}` (its endpoint override is test-only), so it could not talk
//! to the emulator, and the controller's code path must be the same against both. Tokens are
//! cached and refreshed [`REFRESH_BEFORE`] their expiry, by one caller at a time, never per call.
//!
//! [`Clients`] holds one set of API clients per identity, created on first use, shared by every
//! object of that identity and dropped after [`Clients::IDLE`] without use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use google_cloud_auth::credentials::{
    CacheableResource, Credentials, CredentialsProvider, EntityTag,
};
use google_cloud_gax::error::CredentialsError;
use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_iam_credentials_v1::client::IAMCredentials;
use http::{Extensions, HeaderMap, HeaderValue, header::AUTHORIZATION};

use super::{Code, Gcp, GcpError, GcpResult};
use crate::metrics::Metrics;

/// How long before its expiry a token is replaced.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(300);
/// Lifetime asked for each token (Google's default and maximum without an org policy).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// OAuth scope of the tokens.
const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Whose credentials a Google call is made with.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identity {
    /// The controller's own (Application Default Credentials, or anonymous for an emulator).
    Controller,
    /// A namespace's service account, impersonated.
    ServiceAccount(String),
}

impl Identity {
    /// The identity a namespace annotation names (`None`: the controller's).
    pub fn of(annotation: Option<&str>) -> Self {
        match annotation.map(str::trim).filter(|a| !a.is_empty()) {
            Some(email) => Identity::ServiceAccount(email.to_owned()),
            None => Identity::Controller,
        }
    }

    /// The service account's e-mail, if this is one.
    pub fn email(&self) -> Option<&str> {
        match self {
            Identity::Controller => None,
            Identity::ServiceAccount(email) => Some(email),
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Controller => f.write_str("the controller's own identity"),
            Identity::ServiceAccount(email) => f.write_str(email),
        }
    }
}

/// Whether `email` is a service account e-mail Google can impersonate
/// (`NAME@PROJECT.iam.gserviceaccount.com`, or a default account such as
/// `PROJECT_NUMBER-compute@developer.gserviceaccount.com`).
pub fn is_service_account_email(email: &str) -> bool {
    let Some((name, domain)) = email.split_once('@') else {
        return false;
    };
    let name_ok = (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let domain_ok = match domain.strip_suffix(".iam.gserviceaccount.com") {
        Some(project) => {
            (1..=63).contains(&project.len())
                && project.bytes().all(|b| {
                    b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b == b'-'
                        || b == b'.'
                        || b == b':'
                })
        }
        None => {
            domain == "developer.gserviceaccount.com" || domain == "appspot.gserviceaccount.com"
        }
    };
    name_ok && domain_ok
}

/// A cached access token.
struct Token {
    headers: HeaderMap,
    tag: EntityTag,
    /// When it must be replaced (expiry minus [`REFRESH_BEFORE`]).
    refresh_at: Instant,
}

/// Credentials of a service account, impersonated by the controller's own credentials through
/// the IAM Credentials API.
#[derive(Clone)]
pub struct Impersonated {
    email: String,
    client: IAMCredentials,
    token: Arc<tokio::sync::Mutex<Option<Token>>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Impersonated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Impersonated")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

impl Impersonated {
    /// Credentials of `email`, obtained with `base` from the IAM Credentials API at `endpoint`
    /// (Google's when `None`).
    pub async fn new(
        email: &str,
        base: Credentials,
        endpoint: Option<&str>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, GcpError> {
        let mut builder = IAMCredentials::builder()
            .with_credentials(base)
            .with_retry_policy(NeverRetry);
        if let Some(endpoint) = endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let client = builder.build().await.map_err(|e| {
            GcpError::new(
                "iamcredentials",
                "generateAccessToken",
                Code::Internal,
                format!("cannot build the IAM Credentials client: {e}"),
            )
        })?;
        Ok(Self {
            email: email.to_owned(),
            client,
            token: Arc::default(),
            metrics,
        })
    }

    /// A fresh token from Google.
    async fn fetch(&self) -> Result<Token, CredentialsError> {
        let start = Instant::now();
        let lifetime = google_cloud_wkt::Duration::try_from(TOKEN_LIFETIME)
            .map_err(|e| CredentialsError::from_msg(false, e.to_string()))?;
        let result = self
            .client
            .generate_access_token()
            .set_name(format!("projects/-/serviceAccounts/{}", self.email))
            .set_scope([CLOUD_PLATFORM])
            .set_lifetime(lifetime)
            .send()
            .await;
        let code = match &result {
            Ok(_) => Code::Ok,
            Err(e) => e.status().map_or(Code::Unavailable, |s| s.code),
        };
        self.metrics.gcp_request(
            "iamcredentials",
            "generateAccessToken",
            code.name(),
            start.elapsed(),
        );
        let response = result.map_err(|e| {
            let message = e.status().map_or_else(|| e.to_string(), |s| s.message.clone());
            CredentialsError::from_msg(
                !matches!(code, Code::PermissionDenied | Code::NotFound | Code::InvalidArgument),
                format!(
                    "cannot act as {}: IAM Credentials generateAccessToken: {} ({message}); the controller's identity needs roles/iam.serviceAccountTokenCreator on {}",
                    self.email,
                    code.name(),
                    self.email
                ),
            )
        })?;
        let lifetime = response
            .expire_time
            .and_then(|t| {
                let expires = jiff::Timestamp::new(t.seconds(), 0).ok()?;
                let left = expires.duration_since(jiff::Timestamp::now());
                Duration::try_from(left).ok()
            })
            .unwrap_or(TOKEN_LIFETIME);
        let mut value = HeaderValue::from_str(&format!("Bearer {}", response.access_token))
            .map_err(|e| CredentialsError::from_msg(false, e.to_string()))?;
        value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value);
        Ok(Token {
            headers,
            tag: EntityTag::new(),
            refresh_at: start + lifetime.saturating_sub(REFRESH_BEFORE),
        })
    }
}

#[cfg(test)]
impl Impersonated {
    /// Makes the cached token due for replacement (as if time had passed).
    async fn age_token(&self) {
        if let Some(t) = self.token.lock().await.as_mut() {
            t.refresh_at = Instant::now();
        }
    }
}

impl CredentialsProvider for Impersonated {
    async fn headers(
        &self,
        extensions: Extensions,
    ) -> Result<CacheableResource<HeaderMap>, CredentialsError> {
        // One caller refreshes; the others wait for its token instead of asking for their own.
        let mut token = self.token.lock().await;
        if token
            .as_ref()
            .is_none_or(|t| Instant::now() >= t.refresh_at)
        {
            *token = Some(self.fetch().await?);
        }
        let Some(t) = token.as_ref() else {
            return Err(CredentialsError::from_msg(true, "no token"));
        };
        if extensions.get::<EntityTag>() == Some(&t.tag) {
            return Ok(CacheableResource::NotModified);
        }
        Ok(CacheableResource::New {
            entity_tag: t.tag.clone(),
            data: t.headers.clone(),
        })
    }

    async fn universe_domain(&self) -> Option<String> {
        None
    }
}

/// Makes the set of API clients of an identity.
#[async_trait]
pub trait Connect: Send + Sync {
    /// The clients that act as `identity`.
    async fn connect(&self, identity: &Identity) -> GcpResult<Gcp>;
}

/// The same clients for every identity (tests, `runwarden plan`).
pub struct Fixed(pub Gcp);

#[async_trait]
impl Connect for Fixed {
    async fn connect(&self, _: &Identity) -> GcpResult<Gcp> {
        Ok(self.0.clone())
    }
}

/// The official clients against Google (or an emulator at `endpoint`), with the controller's
/// `base` credentials or, for a namespace's service account, credentials impersonating it.
pub struct GoogleConnect {
    /// Base URL of every API (`None`: Google's).
    pub endpoint: Option<String>,
    /// The controller's own credentials.
    pub base: Credentials,
    /// Where calls are counted.
    pub metrics: Arc<Metrics>,
    /// Timeout and Cloud Run budgets, shared by every identity's clients.
    pub options: super::google::ClientOptions,
}

#[async_trait]
impl Connect for GoogleConnect {
    async fn connect(&self, identity: &Identity) -> GcpResult<Gcp> {
        let endpoint = self.endpoint.as_deref();
        let credentials = match identity {
            Identity::Controller => self.base.clone(),
            Identity::ServiceAccount(email) => Credentials::from(
                Impersonated::new(email, self.base.clone(), endpoint, self.metrics.clone()).await?,
            ),
        };
        let options = super::google::ClientOptions {
            principal: identity.email().map(str::to_owned),
            ..self.options.clone()
        };
        super::google::connect(endpoint, credentials, self.metrics.clone(), &options)
            .await
            .map_err(|e| GcpError::new("gcp", "connect", Code::Internal, e.to_string()))
    }
}

struct Entry {
    gcp: Gcp,
    last_used: Instant,
}

/// One set of API clients per identity, made on first use and dropped when unused.
pub struct Clients {
    connect: Box<dyn Connect>,
    sets: Mutex<HashMap<Identity, Entry>>,
    last_sweep: Mutex<Instant>,
}

impl Clients {
    /// How long an identity's clients are kept without use.
    pub const IDLE: Duration = Duration::from_secs(1800);

    /// Clients made by `connect`.
    pub fn new(connect: impl Connect + 'static) -> Self {
        Self {
            connect: Box::new(connect),
            sets: Mutex::default(),
            last_sweep: Mutex::new(Instant::now()),
        }
    }

    /// The same clients for every identity.
    pub fn fixed(gcp: Gcp) -> Self {
        Self::new(Fixed(gcp))
    }

    /// The clients of `identity`.
    pub async fn get(&self, identity: &Identity) -> GcpResult<Gcp> {
        let now = Instant::now();
        self.sweep(now);
        if let Some(entry) = self.lock().get_mut(identity) {
            entry.last_used = now;
            return Ok(entry.gcp.clone());
        }
        // Made outside the lock; if two passes race, the first set stored wins.
        let gcp = self.connect.connect(identity).await?;
        let mut sets = self.lock();
        let entry = sets.entry(identity.clone()).or_insert(Entry {
            gcp,
            last_used: now,
        });
        Ok(entry.gcp.clone())
    }

    /// How many identities have clients now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no identity has clients.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the clients of identities unused for [`Self::IDLE`] (at most once a minute).
    fn sweep(&self, now: Instant) {
        {
            let mut last = self.last_sweep.lock().unwrap_or_else(|e| e.into_inner());
            if now.duration_since(*last) < Duration::from_secs(60) {
                return;
            }
            *last = now;
        }
        self.evict_idle(now, Self::IDLE);
    }

    /// Drops the clients of service accounts unused for `idle` before `now` (the controller's
    /// own clients stay).
    pub fn evict_idle(&self, now: Instant, idle: Duration) -> usize {
        let mut sets = self.lock();
        let before = sets.len();
        sets.retain(|id, e| {
            *id == Identity::Controller || now.saturating_duration_since(e.last_used) < idle
        });
        before - sets.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Identity, Entry>> {
        self.sets.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn the_annotation_names_the_identity() {
        assert_eq!(Identity::of(None), Identity::Controller);
        assert_eq!(Identity::of(Some("  ")), Identity::Controller);
        assert_eq!(
            Identity::of(Some("team-a@p.iam.gserviceaccount.com")),
            Identity::ServiceAccount("team-a@p.iam.gserviceaccount.com".into())
        );
    }

    #[test]
    fn service_account_emails_are_recognised() {
        assert!(is_service_account_email(
            "team-a@proj-1.iam.gserviceaccount.com"
        ));
        assert!(is_service_account_email(
            "123-compute@developer.gserviceaccount.com"
        ));
        assert!(!is_service_account_email("alice@example.com"));
        assert!(!is_service_account_email("team-a"));
        assert!(!is_service_account_email("Team@p.iam.gserviceaccount.com"));
        assert!(!is_service_account_email("@p.iam.gserviceaccount.com"));
    }

    #[tokio::test]
    async fn a_token_serves_every_call_until_it_is_due_then_one_caller_replaces_it() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let emu = runwarden_emulator::Emulator::start("127.0.0.1:0", Default::default())
            .await
            .unwrap();
        let endpoint = emu.endpoint();
        let creds = Impersonated::new(
            "team-a@proj-a.iam.gserviceaccount.com",
            google_cloud_auth::credentials::anonymous::Builder::new().build(),
            Some(&endpoint),
            Arc::new(Metrics::default()),
        )
        .await
        .unwrap();
        let tokens = || emu.count("iamcredentials.serviceAccounts.generateAccessToken");
        let CacheableResource::New { entity_tag, data } =
            creds.headers(Extensions::new()).await.unwrap()
        else {
            panic!("a first call gets headers");
        };
        assert!(data[AUTHORIZATION].to_str().unwrap().starts_with("Bearer "));
        // Concurrent callers share the one token.
        let calls = (0..20).map(|_| creds.headers(Extensions::new()));
        for h in futures::future::join_all(calls).await {
            assert!(matches!(h, Ok(CacheableResource::New { .. })));
        }
        let mut cached = Extensions::new();
        cached.insert(entity_tag.clone());
        assert!(matches!(
            creds.headers(cached.clone()).await,
            Ok(CacheableResource::NotModified)
        ));
        assert_eq!(tokens(), 1, "one token for 22 calls");
        creds.age_token().await;
        let calls = (0..5).map(|_| creds.headers(cached.clone()));
        for h in futures::future::join_all(calls).await {
            assert!(
                matches!(h, Ok(CacheableResource::New { entity_tag: ref t, .. }) if *t != entity_tag)
            );
        }
        assert_eq!(tokens(), 2, "replaced once, by one of five callers");
    }

    struct Counting(AtomicUsize, Gcp);

    #[async_trait]
    impl Connect for Arc<Counting> {
        async fn connect(&self, _: &Identity) -> GcpResult<Gcp> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(self.1.clone())
        }
    }

    #[tokio::test]
    async fn clients_are_made_once_per_identity_and_dropped_when_idle() {
        let google = super::super::fake::FakeGcp::new();
        let counting = Arc::new(Counting(AtomicUsize::new(0), google.gcp()));
        let clients = Clients::new(counting.clone());
        let a = Identity::of(Some("a@p.iam.gserviceaccount.com"));
        let b = Identity::of(Some("b@p.iam.gserviceaccount.com"));
        for _ in 0..3 {
            clients.get(&a).await.unwrap();
            clients.get(&b).await.unwrap();
            clients.get(&Identity::Controller).await.unwrap();
        }
        assert_eq!(counting.0.load(Ordering::SeqCst), 3, "one set per identity");
        assert_eq!(clients.len(), 3);
        let later = Instant::now() + Duration::from_secs(3600);
        assert_eq!(clients.evict_idle(later, Clients::IDLE), 2);
        assert_eq!(clients.len(), 1, "the controller's own clients stay");
        clients.get(&a).await.unwrap();
        assert_eq!(
            counting.0.load(Ordering::SeqCst),
            4,
            "made again after eviction"
        );
    }
}
