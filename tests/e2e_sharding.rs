//! Sharding with `--watch-selector`, in-process against a real API server: two controllers
//! with their own selectors split the objects; an object moved from one shard to the other
//! (a label change) is left by the old shard and taken over by the new one, which updates it and
//! finally deletes it through the finalizer the old shard put on it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Harness, spec};
use kube::api::{Patch, PatchParams};
use runwarden::controller::{self, Health};
use runwarden::metrics::Metrics;

const IMAGE: &str = "europe-docker.pkg.dev/runwarden-test/apps/shard@sha256:4444444444444444444444444444444444444444444444444444444444444444";
const SHARD_LABEL: &str = "runwarden.dev/shard";

/// CloudRunService passes a shard has run.
fn passes(metrics: &Metrics) -> u64 {
    metrics
        .encode()
        .lines()
        .find(|l| l.starts_with("runwarden_reconciles_total{kind=\"CloudRunService\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Starts a shard selecting `shard`; it stops when the returned sender is dropped.
async fn start_shard(h: &Harness, shard: &str) -> (Arc<Metrics>, tokio::sync::oneshot::Sender<()>) {
    let mut parts = h.parts().await;
    parts.metrics = Arc::new(Metrics::default());
    parts.config.watch_selector = Some(format!("{SHARD_LABEL}={shard}"));
    let metrics = parts.metrics.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(controller::run(parts, Health::default(), async move {
        let _ = rx.await;
    }));
    (metrics, tx)
}

async fn label(h: &Harness, name: &str, shard: &str) {
    let patch = serde_json::json!({"metadata": {"labels": {SHARD_LABEL: shard}}});
    h.api()
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("label");
}

#[tokio::test]
async fn shards_split_the_objects_and_an_object_moves_between_them() {
    let Some(h) = Harness::new("sharding").await else {
        return;
    };
    let (a, _stop_a) = start_shard(&h, "a").await;
    let (b, _stop_b) = start_shard(&h, "b").await;

    h.apply("moving", spec(IMAGE)).await;
    label(&h, "moving", "a").await;
    h.wait_ready("moving").await;
    assert!(passes(&a) > 0);
    assert_eq!(passes(&b), 0, "shard b never sees an object of shard a");

    // Move it to shard b: shard a lets go, shard b picks it up (finalizer and all).
    label(&h, "moving", "b").await;
    h.wait_for("moving", "shard b to reconcile it", |_| passes(&b) > 0)
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let a_before = passes(&a);
    let mut changed = spec(IMAGE);
    changed["scaling"] = serde_json::json!({"maxInstances": 7});
    h.apply("moving", changed).await;
    h.wait_for("moving", "the new generation to be Ready", |o| {
        o.is_some_and(|o| {
            o.metadata.generation == Some(2)
                && controller::cloudrunservice::is_ready(o) == Some(true)
        })
    })
    .await;
    let google = h.gcp_service("moving").await.expect("service");
    assert_eq!(
        google
            .template
            .and_then(|t| t.scaling)
            .map(|s| s.max_instance_count),
        Some(7)
    );

    h.delete("moving").await;
    h.wait_for("moving", "the object to be gone", |o| o.is_none())
        .await;
    assert!(h.gcp_service("moving").await.is_none(), "deleted in Google");
    assert_eq!(passes(&a), a_before, "shard a left the moved object alone");
}
