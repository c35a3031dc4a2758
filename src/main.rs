//! `runwarden`: the controller daemon, the CRD printer and the local Google Cloud emulator.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use runwarden::controller::{self, Health, Parts};
use runwarden::duration::parse_duration;
use runwarden::{gcp, http, metrics::Metrics};
use tracing::{error, info};

#[derive(Parser)]
#[command(
    name = "runwarden",
    version,
    about = "Secure Google Cloud Run services from Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the reconciling controller.
    Controller(Box<ControllerArgs>),
    /// Print every CustomResourceDefinition, then the guardrails' ValidatingAdmissionPolicies and
    /// their bindings, as one multi-document YAML (`crds/runwarden.dev.yaml` + `crds/admission.yaml`).
    Crd(CrdArgs),
    /// Show what a reconcile would do with manifests, without a cluster and without writing to
    /// Google. Exit code 0: in sync; 2: changes to make; 1: invalid input, a policy violation or
    /// a Google error.
    Plan(PlanArgs),
    /// Serve the local Google Cloud emulator until SIGTERM.
    #[cfg(feature = "emulator")]
    Emulator(EmulatorArgs),
}

#[derive(clap::Args)]
struct PlanArgs {
    /// Manifests to read: files, directories (recursively: *.yaml, *.yml, *.json), or `-` for
    /// stdin. CloudRunService, VpcAccessConnector, RunSecurityPolicy and Namespace objects are
    /// read; other kinds are skipped with a note.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    files: Vec<std::path::PathBuf>,
    /// Which Google to read: `embedded` (an empty in-process emulator), a URL (e.g. a running
    /// `runwarden emulator`), or `google` (Google's APIs with Application Default Credentials).
    /// Only reads are ever made.
    #[arg(long, default_value = "embedded")]
    gcp_endpoint: String,
    /// Namespace of objects that name none.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// Project of objects that name none and whose Namespace has no runwarden.dev/project-id.
    #[arg(long)]
    default_project: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = PlanOutput::Text)]
    output: PlanOutput,
}

#[derive(Clone, Copy, ValueEnum)]
enum PlanOutput {
    Text,
    Json,
}

#[derive(clap::Args)]
struct CrdArgs {
    /// Print only one part: `crds` (crds/runwarden.dev.yaml) or `admission` (crds/admission.yaml).
    #[arg(long, value_enum)]
    only: Option<CrdPart>,
}

#[derive(Clone, Copy, ValueEnum)]
enum CrdPart {
    Crds,
    Admission,
}

#[derive(clap::Args)]
struct ControllerArgs {
    /// Base URL every Google API client talks to, with anonymous credentials; `embedded` starts
    /// the emulator in-process. Unset: Google's APIs with Application Default Credentials.
    #[arg(long, env = "RUNWARDEN_GCP_ENDPOINT")]
    gcp_endpoint: Option<String>,
    /// Project of objects that name none and whose namespace has no runwarden.dev/project-id.
    #[arg(long, env = "RUNWARDEN_DEFAULT_PROJECT")]
    default_project: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "RUNWARDEN_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Drift re-check period of healthy objects: each is visited once per period, the visits
    /// spread evenly over it, e.g. 10m, 90s.
    #[arg(long, env = "RUNWARDEN_RESYNC", default_value = "10m", value_parser = parse_duration)]
    resync: Duration,
    /// First look at an in-flight Google operation; later looks space out (after as long as it
    /// has been running) up to every 10 s.
    #[arg(long, env = "RUNWARDEN_OPERATION_POLL", default_value = "1s", value_parser = parse_duration)]
    operation_poll: Duration,
    /// Reconciles run at once per kind.
    #[arg(long, env = "RUNWARDEN_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,
    /// Take a coordination.k8s.io Lease before doing any work (required with replicas > 1).
    #[arg(long, env = "RUNWARDEN_LEADER_ELECTION")]
    leader_election: bool,
    /// Name of the leader election Lease.
    #[arg(
        long,
        env = "RUNWARDEN_LEASE_NAME",
        default_value = "runwarden-controller"
    )]
    lease_name: String,
    /// Namespace of the leader election Lease (default: $POD_NAMESPACE, else the namespace of
    /// the kubeconfig's current context, `default` when it names none).
    #[arg(long, env = "RUNWARDEN_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// How long the leader lease holds without renewal; a standby takes over this long after
    /// the leader's last renewal (whole seconds).
    #[arg(long, env = "RUNWARDEN_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    lease_duration: Duration,
    /// How often the leader renews the lease and a standby tries to take it; at most a third
    /// of --lease-duration.
    #[arg(long, env = "RUNWARDEN_LEASE_RENEW_PERIOD", default_value = "2s", value_parser = parse_duration)]
    lease_renew_period: Duration,
    /// Only watch this namespace (default: all).
    #[arg(long, env = "RUNWARDEN_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Only reconcile objects matching this label selector (e.g. `shard=a`), so that several
    /// installations can split the objects between them (default: all).
    #[arg(long, env = "RUNWARDEN_WATCH_SELECTOR")]
    watch_selector: Option<String>,
    /// Reconcile nothing in a namespace without the runwarden.dev/google-service-account
    /// annotation (multi-tenant installs: every team acts in Google as its own identity).
    #[arg(long, env = "RUNWARDEN_REQUIRE_NAMESPACE_IDENTITY")]
    require_namespace_identity: bool,
    /// Client-side budget of Cloud Run Admin API reads per minute, per project and region
    /// (set your project's real quota).
    #[arg(
        long,
        env = "RUNWARDEN_QUOTA_RUN_READS_PER_MINUTE",
        default_value_t = 600
    )]
    quota_run_reads_per_minute: u32,
    /// Client-side budget of Cloud Run Admin API writes per minute, per project and region
    /// (set your project's real quota).
    #[arg(
        long,
        env = "RUNWARDEN_QUOTA_RUN_WRITES_PER_MINUTE",
        default_value_t = 60
    )]
    quota_run_writes_per_minute: u32,
    /// Longest a single Google API call may take.
    #[arg(long, env = "RUNWARDEN_GCP_CALL_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    gcp_call_timeout: Duration,
    /// Log line format.
    #[arg(long, env = "RUNWARDEN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `runwarden=debug,info`.
    #[arg(long, env = "RUNWARDEN_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// With `--gcp-endpoint embedded`: how long the emulator's operations take.
    #[arg(long, env = "RUNWARDEN_EMULATOR_OPERATION_DELAY", default_value = "2s", value_parser = parse_duration)]
    emulator_operation_delay: Duration,
}

#[cfg(feature = "emulator")]
#[derive(clap::Args)]
struct EmulatorArgs {
    /// Address to listen on.
    #[arg(
        long,
        env = "RUNWARDEN_EMULATOR_LISTEN",
        default_value = "127.0.0.1:8085"
    )]
    listen: String,
    /// How long long-running operations take.
    #[arg(long, env = "RUNWARDEN_EMULATOR_OPERATION_DELAY", default_value = "2s", value_parser = parse_duration)]
    operation_delay: Duration,
    /// Log line format.
    #[arg(long, env = "RUNWARDEN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Controller(_)) {
        // Before the runtime starts its threads: each could otherwise take an arena.
        runwarden::controller::runner::limit_heap_arenas();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runwarden: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Crd(args) => match args.only {
                None => runwarden::crd::to_yaml(),
                Some(CrdPart::Crds) => runwarden::crd::crds_yaml(),
                Some(CrdPart::Admission) => runwarden::crd::admission_yaml(),
            }
            .map(|yaml| print!("{yaml}"))
            .map_err(|e| e.to_string()),
            #[cfg(feature = "emulator")]
            Command::Emulator(args) => emulator(args).await,
            Command::Controller(args) => run_controller(*args).await,
            Command::Plan(args) => return plan(args).await,
        }
        .map(|()| ExitCode::SUCCESS)
    });
    match result {
        Ok(code) => code,
        Err(message) => {
            error!("{message}");
            eprintln!("runwarden: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
}

#[cfg(feature = "emulator")]
async fn emulator(args: EmulatorArgs) -> Result<(), String> {
    init_logging(args.log_format, "info");
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    info!(target: "runwarden::listen", %addr, "runwarden emulator serving Cloud Run v2, VPC Access v1, KMS v1 and Resource Manager v3");
    let config = runwarden_emulator::Config {
        operation_delay: args.operation_delay,
    };
    runwarden_emulator::serve(listener, config, shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

/// `runwarden plan`: read the manifests, plan each object against Google (read-only), print.
async fn plan(args: PlanArgs) -> Result<ExitCode, String> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let manifests = match runwarden::manifest::load(&args.files, &args.namespace) {
        Ok(m) => m,
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            eprintln!(
                "runwarden plan: {} problem(s) in the manifests",
                problems.len()
            );
            return Ok(ExitCode::from(1));
        }
    };
    let (endpoint, credentials, _embedded) = match args.gcp_endpoint.as_str() {
        "embedded" => {
            let emu = embedded_emulator(Duration::ZERO).await?;
            (Some(emu.endpoint.clone()), anonymous(), Some(emu))
        }
        "google" => (None, google_credentials().await?, None),
        url => (
            Some(url.trim_end_matches('/').to_owned()),
            anonymous(),
            None,
        ),
    };
    // Plan only reads, within the controller's default budgets and timeout.
    let defaults = controller::Config::default();
    let metrics = Arc::new(Metrics::default());
    let options = gcp::google::ClientOptions::budgeted(
        defaults.gcp_call_timeout,
        defaults.quota_run_reads_per_minute,
        defaults.quota_run_writes_per_minute,
        metrics.clone(),
    );
    let gcp = gcp::google::connect(endpoint.as_deref(), credentials, metrics, &options)
        .await
        .map_err(|e| e.to_string())?;
    let settings = runwarden::plan::Settings {
        default_project: args.default_project,
    };
    let report = runwarden::plan::plan(&manifests, &gcp, &settings).await;
    match args.output {
        PlanOutput::Text => print!("{}", runwarden::plan::render_text(&report)),
        PlanOutput::Json => println!("{}", runwarden::plan::render_json(&report)),
    }
    Ok(ExitCode::from(report.exit_code()))
}

async fn run_controller(args: ControllerArgs) -> Result<(), String> {
    // kube's rustls and the Google clients both enable a crypto provider: pick one.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    init_logging(args.log_format, &args.log_level);
    if args.leader_election {
        check_lease_timing(args.lease_duration, args.lease_renew_period)?;
    }

    let (endpoint, credentials, _embedded) = match args.gcp_endpoint.as_deref() {
        Some("embedded") => {
            let emu = embedded_emulator(args.emulator_operation_delay).await?;
            (Some(emu.endpoint.clone()), anonymous(), Some(emu))
        }
        Some(url) => (
            Some(url.trim_end_matches('/').to_owned()),
            anonymous(),
            None,
        ),
        None => (None, google_credentials().await?, None),
    };

    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("cannot reach Kubernetes: {e}"))?;
    let metrics = Arc::new(Metrics::default());
    // One set of budgets for the whole process: every worker (and identity) shares it.
    let options = gcp::google::ClientOptions::budgeted(
        args.gcp_call_timeout,
        args.quota_run_reads_per_minute,
        args.quota_run_writes_per_minute,
        metrics.clone(),
    );
    let clients = Arc::new(gcp::identity::Clients::new(gcp::identity::GoogleConnect {
        endpoint: endpoint.clone(),
        base: credentials,
        metrics: metrics.clone(),
        options,
    }));
    // Fail fast on clients that cannot be built, before taking any lease.
    clients
        .get(&gcp::identity::Identity::Controller)
        .await
        .map_err(|e| e.to_string())?;
    let health = Health::default();

    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.metrics_addr))?;
    // Its own target, so `--log-level warn,runwarden::listen=info` still shows where it listens
    // (with port 0, the one place the port is known).
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    info!(target: "runwarden::listen", %addr, "serving /metrics, /healthz and /readyz");
    let router = http::router(metrics.clone(), health.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            error!(error = %e, "metrics server stopped");
        }
    });

    // The lease identity must be unique per process: two processes with one identity would
    // both believe they hold the lease. A pod name is; a bare hostname is not (two processes on
    // one machine), so it gets a random suffix, as client-go does.
    let identity = std::env::var("POD_NAME")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_default();
            let host = if host.is_empty() {
                "runwarden".to_owned()
            } else {
                host
            };
            format!("{host}_{:08x}", fastrand::u32(..))
        });
    let reporter = kube::runtime::events::Reporter {
        controller: "runwarden".into(),
        instance: Some(identity.clone()),
    };
    let config = controller::Config {
        default_project: args.default_project,
        resync: args.resync,
        operation_poll: args.operation_poll,
        concurrency: args.concurrency,
        watch_namespace: args.watch_namespace,
        watch_selector: args.watch_selector,
        require_namespace_identity: args.require_namespace_identity,
        quota_run_reads_per_minute: args.quota_run_reads_per_minute,
        quota_run_writes_per_minute: args.quota_run_writes_per_minute,
        gcp_call_timeout: args.gcp_call_timeout,
        ..controller::Config::default()
    };
    let parts = Parts {
        client: client.clone(),
        clients,
        config,
        reporter,
        metrics: metrics.clone(),
    };
    if args.leader_election {
        let namespace = match args.lease_namespace {
            Some(ns) => ns,
            None => lease_namespace(
                None,
                std::env::var("POD_NAMESPACE").ok(),
                kube::Config::infer()
                    .await
                    .ok()
                    .map(|c| c.default_namespace),
            )?,
        };
        let mut lease =
            controller::lease::Lease::new(client, &namespace, &args.lease_name, &identity, metrics);
        lease.duration = args.lease_duration;
        lease.renew_every = args.lease_renew_period;
        info!(lease = %args.lease_name, %namespace, %identity, "leader election: waiting for the lease");
        controller::runner::run_elected(parts, health, lease, shutdown_signal())
            .await
            .map_err(|e| e.to_string())?;
    } else {
        metrics.set_leader(true);
        controller::run(parts, health, shutdown_signal()).await;
    }
    info!("stopped");
    Ok(())
}

/// The in-process emulator of `--gcp-endpoint embedded`; stops when dropped.
struct Embedded {
    endpoint: String,
    #[cfg(feature = "emulator")]
    _emulator: runwarden_emulator::Emulator,
}

#[cfg(feature = "emulator")]
async fn embedded_emulator(operation_delay: Duration) -> Result<Embedded, String> {
    let config = runwarden_emulator::Config { operation_delay };
    let emu = runwarden_emulator::Emulator::start("127.0.0.1:0", config)
        .await
        .map_err(|e| format!("cannot start the embedded emulator: {e}"))?;
    info!(endpoint = %emu.endpoint(), "embedded Google Cloud emulator started");
    Ok(Embedded {
        endpoint: emu.endpoint(),
        _emulator: emu,
    })
}

#[cfg(not(feature = "emulator"))]
async fn embedded_emulator(_operation_delay: Duration) -> Result<Embedded, String> {
    Err(NO_EMULATOR.to_owned())
}

/// What `--gcp-endpoint embedded` says in a build without the `emulator` feature.
#[cfg(not(feature = "emulator"))]
const NO_EMULATOR: &str = "--gcp-endpoint embedded: this build of runwarden has no emulator (built without the `emulator` cargo feature, as the container image is); use --gcp-endpoint URL of a running `runwarden emulator`, or unset it for Google";

/// The namespace of the leader election Lease: `--lease-namespace`, else `$POD_NAMESPACE`
/// (set by the chart from the downward API), else the kubeconfig's (or in-cluster) namespace.
fn lease_namespace(
    flag: Option<String>,
    pod_namespace: Option<String>,
    kubeconfig_namespace: Option<String>,
) -> Result<String, String> {
    [flag, pod_namespace, kubeconfig_namespace]
        .into_iter()
        .flatten()
        .find(|ns| !ns.trim().is_empty())
        .ok_or_else(|| {
            "--leader-election: no namespace for the Lease: set --lease-namespace or $POD_NAMESPACE, or a namespace in the kubeconfig context".to_owned()
        })
}

fn anonymous() -> google_cloud_auth::credentials::Credentials {
    google_cloud_auth::credentials::anonymous::Builder::new().build()
}

/// Application Default Credentials, checked now so that a machine without any fails at start.
async fn google_credentials() -> Result<google_cloud_auth::credentials::Credentials, String> {
    let hint = "no Google credentials: run on GKE with Workload Identity, set GOOGLE_APPLICATION_CREDENTIALS, or start with --gcp-endpoint embedded (the built-in emulator) or --gcp-endpoint URL";
    let credentials = google_cloud_auth::credentials::Builder::default()
        .build()
        .map_err(|e| format!("{hint} ({e})"))?;
    match tokio::time::timeout(
        Duration::from_secs(10),
        credentials.headers(Default::default()),
    )
    .await
    {
        Ok(Ok(_)) => Ok(credentials),
        Ok(Err(e)) => Err(format!("{hint} ({e})")),
        Err(_) => Err(format!("{hint} (timed out fetching a token)")),
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => info!("interrupt: shutting down"),
    }
}

/// The holder gives up one renew period before its lease could expire, so renewing must leave
/// it several attempts.
fn check_lease_timing(duration: Duration, renew: Duration) -> Result<(), String> {
    if duration < Duration::from_secs(1) || renew.is_zero() || renew * 3 > duration {
        return Err(format!(
            "--lease-renew-period ({renew:?}) must be more than 0 and at most a third of --lease-duration ({duration:?}, at least 1s)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_namespace_falls_back_to_the_pod_then_the_kubeconfig() {
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            lease_namespace(s("flag"), s("pod"), s("kube")),
            Ok("flag".into())
        );
        assert_eq!(lease_namespace(None, s("pod"), s("kube")), Ok("pod".into()));
        assert_eq!(
            lease_namespace(None, None, s("team-a")),
            Ok("team-a".into()),
            "outside a pod, the kubeconfig context's namespace"
        );
        assert_eq!(
            lease_namespace(None, s(""), s("default")),
            Ok("default".into()),
            "an empty POD_NAMESPACE is no namespace"
        );
        assert!(lease_namespace(None, None, None).is_err());
    }

    #[cfg(not(feature = "emulator"))]
    #[tokio::test]
    async fn embedded_without_the_emulator_feature_says_so() {
        let err = embedded_emulator(Duration::ZERO).await.err().unwrap();
        assert!(err.contains("no emulator"), "{err}");
    }

    #[test]
    fn lease_timing_leaves_the_holder_several_renewals() {
        let s = Duration::from_secs;
        assert_eq!(check_lease_timing(s(15), s(2)), Ok(()), "the defaults");
        assert_eq!(check_lease_timing(s(6), s(2)), Ok(()));
        assert!(check_lease_timing(s(15), s(6)).is_err());
        assert!(check_lease_timing(s(15), Duration::ZERO).is_err());
        assert!(
            check_lease_timing(Duration::from_millis(900), Duration::from_millis(100)).is_err()
        );
    }
}
