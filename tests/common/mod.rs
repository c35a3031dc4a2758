//! Shared test harness: a real API server (see [`envtest`]), the emulator, and the controller
//! running in-process against both, scoped to one namespace per test.

#![allow(dead_code)]

pub mod envtest;
pub mod process;

use std::sync::Arc;
use std::time::{Duration, Instant};

use google_cloud_run_v2::client::Services;
use google_cloud_run_v2::model::Service;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use runwarden::api::v1alpha1::CloudRunService;
use runwarden::controller::{self, Health, Parts};
use runwarden::metrics::Metrics;
use runwarden_emulator::Emulator;
use tokio::task::JoinHandle;

/// The project every test uses.
pub const PROJECT: &str = "runwarden-test";
/// The region every test uses.
pub const REGION: &str = "europe-west1";

/// Anonymous credentials, as for any non-Google endpoint.
pub fn anonymous() -> google_cloud_auth::credentials::Credentials {
    google_cloud_auth::credentials::anonymous::Builder::new().build()
}

/// Installs the process-wide rustls provider once.
pub fn crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// One test's world.
pub struct Harness {
    /// The shared control plane.
    pub plane: &'static envtest::ControlPlane,
    /// Kubernetes client.
    pub client: kube::Client,
    /// This test's emulator.
    pub emu: Emulator,
    /// This test's namespace.
    pub ns: String,
    /// The controller's metrics.
    pub metrics: Arc<Metrics>,
    /// The official Cloud Run client on the emulator, to look and to make drift.
    pub run: Services,
    /// Controller settings used by `start_controller`.
    pub config: controller::Config,
    /// Health of the running controller.
    pub health: Health,
    controller: Option<(tokio::sync::oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Harness {
    /// A fresh namespace and emulator; `None` (after a loud skip message) without a control plane.
    pub async fn new(test: &str) -> Option<Harness> {
        crypto();
        let Some(plane) = envtest::shared() else {
            envtest::skip(test);
            return None;
        };
        let client = plane.client().await;
        let ns = format!(
            "{}-{}",
            test.replace('_', "-").chars().take(40).collect::<String>(),
            fastrand::u32(..) % 100_000
        );
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap();
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .expect("namespace");
        let emu = Emulator::start("127.0.0.1:0", runwarden_emulator::Config::default())
            .await
            .expect("emulator");
        let run = Services::builder()
            .with_endpoint(emu.endpoint())
            .with_credentials(anonymous())
            .with_retry_policy(google_cloud_gax::retry_policy::NeverRetry)
            .build()
            .await
            .expect("run client");
        let config = controller::Config {
            default_project: Some(PROJECT.into()),
            resync: Duration::from_secs(600),
            operation_poll: Duration::from_millis(200),
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            concurrency: 4,
            watch_namespace: Some(ns.clone()),
            // Tests that are not about quotas are not slowed by the production budgets.
            quota_run_reads_per_minute: 100_000,
            quota_run_writes_per_minute: 100_000,
            ..controller::Config::default()
        };
        Some(Harness {
            plane,
            client,
            emu,
            ns,
            metrics: Arc::new(Metrics::default()),
            run,
            config,
            health: Health::default(),
            controller: None,
        })
    }

    /// What the controller is built from, on this harness's emulator and settings.
    pub async fn parts(&self) -> Parts {
        let reporter = kube::runtime::events::Reporter {
            controller: "runwarden".into(),
            instance: Some("test".into()),
        };
        Parts {
            client: self.client.clone(),
            clients: Arc::new(runwarden::gcp::identity::Clients::new(
                runwarden::gcp::identity::GoogleConnect {
                    endpoint: Some(self.emu.endpoint()),
                    base: anonymous(),
                    metrics: self.metrics.clone(),
                    options: runwarden::gcp::google::ClientOptions::budgeted(
                        self.config.gcp_call_timeout,
                        self.config.quota_run_reads_per_minute,
                        self.config.quota_run_writes_per_minute,
                        self.metrics.clone(),
                    ),
                },
            )),
            config: self.config.clone(),
            reporter,
            metrics: self.metrics.clone(),
        }
    }

    /// Starts the controller (again) in-process.
    pub async fn start_controller(&mut self) {
        let parts = self.parts().await;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.health = Health::default();
        let task = tokio::spawn(controller::run(parts, self.health.clone(), async move {
            let _ = rx.await;
        }));
        self.controller = Some((tx, task));
    }

    /// Stops the controller, letting in-flight reconciles finish.
    pub async fn stop_controller(&mut self) {
        if let Some((tx, task)) = self.controller.take() {
            let _ = tx.send(());
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
    }

    /// The CloudRunService API of this namespace.
    pub fn api(&self) -> Api<CloudRunService> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Server-side applies a CloudRunService spec as a user (field manager `test-user`).
    pub async fn apply(&self, name: &str, spec: serde_json::Value) {
        self.apply_in(&self.ns.clone(), name, spec).await;
    }

    /// The CloudRunService API of another namespace.
    pub fn api_in(&self, ns: &str) -> Api<CloudRunService> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// [`Self::apply`] in namespace `ns`.
    pub async fn apply_in(&self, ns: &str, name: &str, spec: serde_json::Value) {
        let obj = serde_json::json!({
            "apiVersion": "runwarden.dev/v1alpha1",
            "kind": "CloudRunService",
            "metadata": {"name": name},
            "spec": spec,
        });
        self.api_in(ns)
            .patch(
                name,
                &PatchParams::apply("test-user").force(),
                &Patch::Apply(&obj),
            )
            .await
            .expect("apply");
    }

    /// Deletes a CloudRunService (the finalizer may keep it a while).
    pub async fn delete(&self, name: &str) {
        self.api()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete");
    }

    /// Waits until `pred` holds for the object (or until it is gone, with `pred(None)`).
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(Option<&CloudRunService>) -> bool,
    ) -> Option<CloudRunService> {
        self.wait_for_in(&self.ns, name, what, pred).await
    }

    /// [`Self::wait_for`] in namespace `ns`.
    pub async fn wait_for_in(
        &self,
        ns: &str,
        name: &str,
        what: &str,
        pred: impl Fn(Option<&CloudRunService>) -> bool,
    ) -> Option<CloudRunService> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let obj = self.api_in(ns).get_opt(name).await.expect("get");
            if pred(obj.as_ref()) {
                return obj;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; last seen: {:#?}",
                    obj.map(|o| o.status)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the object is Ready for its current generation.
    pub async fn wait_ready(&self, name: &str) -> CloudRunService {
        self.wait_ready_in(&self.ns, name).await
    }

    /// [`Self::wait_ready`] in namespace `ns`.
    pub async fn wait_ready_in(&self, ns: &str, name: &str) -> CloudRunService {
        self.wait_for_in(ns, name, "Ready=True", |o| {
            o.is_some_and(|o| controller::cloudrunservice::is_ready(o) == Some(true))
        })
        .await
        .expect("object")
    }

    /// Waits until condition `type_` has `reason`.
    pub async fn wait_reason(&self, name: &str, type_: &str, reason: &str) -> CloudRunService {
        self.wait_reason_in(&self.ns, name, type_, reason).await
    }

    /// [`Self::wait_reason`] in namespace `ns`.
    pub async fn wait_reason_in(
        &self,
        ns: &str,
        name: &str,
        type_: &str,
        reason: &str,
    ) -> CloudRunService {
        self.wait_for_in(ns, name, &format!("{type_} reason {reason}"), |o| {
            o.and_then(|o| o.status.as_ref())
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
                .is_some_and(|c| c.reason == reason)
        })
        .await
        .expect("object")
    }

    /// The Cloud Run service in the emulator.
    pub async fn gcp_service(&self, id: &str) -> Option<Service> {
        self.gcp_service_in(PROJECT, id).await
    }

    /// The Cloud Run service `id` of `project` in the emulator (read anonymously).
    pub async fn gcp_service_in(&self, project: &str, id: &str) -> Option<Service> {
        let name = format!("projects/{project}/locations/{REGION}/services/{id}");
        match self.run.get_service().set_name(name).send().await {
            Ok(s) => Some(s),
            Err(e)
                if e.status()
                    .is_some_and(|s| s.code == google_cloud_gax::error::rpc::Code::NotFound) =>
            {
                None
            }
            Err(e) => panic!("get service {id} in {project}: {e}"),
        }
    }

    /// Makes the controller reconcile `name` once more without a spec change (a new
    /// annotation), waits until that pass has read Google (`read`, a Cloud Run method such as
    /// `services.get`, counted by the controller's metrics) and lets it finish its writes.
    pub async fn poke<K>(&self, api: &Api<K>, name: &str, read: &str)
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let before = self.metrics.gcp_request_count("run", read, "OK");
        let poke = format!("{}", fastrand::u64(..));
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"poke": poke}}})),
        )
        .await
        .expect("poke");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.metrics.gcp_request_count("run", read, "OK") == before {
            assert!(
                Instant::now() < deadline,
                "the poke did not cause a reconcile"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    /// Sum of the emulator's counters of write methods (create, patch, delete, setIamPolicy).
    pub fn writes(&self) -> u64 {
        self.emu
            .counters()
            .iter()
            .filter(|(k, _)| {
                k.ends_with(".create")
                    || k.ends_with(".patch")
                    || k.ends_with(".delete")
                    || k.ends_with("setIamPolicy")
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Events of an object, as `reason: note` lines.
    pub async fn events(&self, name: &str) -> Vec<String> {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), &self.ns);
        events
            .list(&Default::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| {
                format!(
                    "{}: {}",
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default()
                )
            })
            .collect()
    }
}

/// Sets a project's IAM policy in the emulator (as an anonymous caller, i.e. an admin).
pub async fn grant(endpoint: &str, project: &str, bindings: &[(&str, &str)]) {
    let mut roles: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for (role, member) in bindings {
        roles.entry(role).or_default().push((*member).to_owned());
    }
    let bindings: Vec<_> = roles
        .into_iter()
        .map(|(role, members)| serde_json::json!({"role": role, "members": members}))
        .collect();
    let url = format!("{endpoint}/v3/projects/{project}:setIamPolicy");
    let response = reqwest::Client::new()
        .post(&url)
        .json(&serde_json::json!({"policy": {"bindings": bindings}}))
        .send()
        .await
        .expect("setIamPolicy");
    assert!(
        response.status().is_success(),
        "setIamPolicy on {project}: {}",
        response.text().await.unwrap_or_default()
    );
}

/// A minimal spec in the test region.
pub fn spec(image: &str) -> serde_json::Value {
    serde_json::json!({"region": REGION, "containers": [{"image": image}]})
}
