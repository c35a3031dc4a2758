//! Builds from source (`spec.build`), pure: whether the pass submits a build, follows one (by
//! requeue: a worker never waits on it), reports a failed one, or goes on to deploy the built
//! image.
//!
//! A build is identified by its settings: a hash of the source (bucket, object, generation)
//! and every build setting, recorded in `status.build.settings` with the submit. A pass whose
//! settings equal the recorded ones never builds again (zero builds and zero writes on a no-op
//! resync); new ones build once. The record is written in the status of the pass that submits
//! (as `status.operation` is for a deploy): a controller that stops between Google's answer and
//! that write submits the same build again at its next pass, which builds the same image.

use google_cloud_build_v1::model::BuildOperationMetadata;
use google_cloud_longrunning::model::Operation;
use google_cloud_run_v2::model::{
    StorageSource, SubmitBuildRequest, submit_build_request::BuildpacksBuild,
};

use super::SERVICE_READY;
use super::observe::{Observed, Read, need};
use super::plan::{Change, Input, Plan};
use super::render::Built;
use crate::api::v1alpha1::{Build, BuildState, BuildStatus, CloudRunService};
use crate::controller::Outcome;
use crate::controller::conditions::Cond;
use crate::controller::operation::{Followed, follow};
use crate::controller::reasons::{BUILD_FAILED, BUILDING};
use crate::error::{Error, reason_of};

/// Where the image is pushed: `{imageRepository}/{service id}`.
pub fn image_uri(obj: &CloudRunService, build: &Build, project: &str) -> String {
    let repository = build.image_repository.clone().unwrap_or_else(|| {
        format!(
            "{}-docker.pkg.dev/{project}/cloud-run-source-deploy",
            obj.spec.region
        )
    });
    format!("{repository}/{}", obj.service_id())
}

/// `gs://{bucket}/{object}#{generation}`, as `buildConfig.sourceLocation` names a source.
pub fn source_location(build: &Build) -> String {
    let s = &build.source;
    format!("gs://{}/{}#{}", s.bucket, s.object, s.generation)
}

/// The `builds:submit` request of the spec.
pub fn request(obj: &CloudRunService, build: &Build, project: &str) -> SubmitBuildRequest {
    let buildpack = BuildpacksBuild::new()
        .set_function_target(build.function_target.clone().unwrap_or_default())
        .set_base_image(build.base_image.clone().unwrap_or_default())
        .set_enable_automatic_updates(build.automatic_updates)
        .set_environment_variables(build.environment_variables.clone());
    SubmitBuildRequest::new()
        .set_parent(crate::controller::parent(project, &obj.spec.region))
        .set_storage_source(
            StorageSource::new()
                .set_bucket(&build.source.bucket)
                .set_object(&build.source.object)
                .set_generation(build.source.generation),
        )
        .set_image_uri(image_uri(obj, build, project))
        .set_buildpack_build(buildpack)
        .set_service_account(build.service_account.clone().unwrap_or_default())
        .set_worker_pool(build.worker_pool.clone().unwrap_or_default())
}

/// A hash of everything a build depends on: FNV-1a over `spec.build` as JSON (its maps are
/// ordered, so the same settings always hash alike), the parent and the image it pushes.
pub fn settings(obj: &CloudRunService, build: &Build, project: &str) -> String {
    let canonical = format!(
        "{}\n{}\n{}",
        serde_json::to_string(build).unwrap_or_default(),
        crate::controller::parent(project, &obj.spec.region),
        image_uri(obj, build, project)
    );
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canonical.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The build stage of a pass: `Some(built)` to go on (`None` inside without `spec.build`),
/// `None` when the pass ends here (a build submitted, running or failed).
pub fn plan(
    input: &Input,
    project: &str,
    obs: &Observed,
    p: &mut Plan,
) -> Result<Option<Option<Built>>, Read> {
    let obj = input.obj;
    let Some(build) = obj.spec.build.as_deref() else {
        p.fields.build = None;
        return Ok(Some(None));
    };
    let settings = settings(obj, build, project);
    let recorded = p
        .fields
        .build
        .clone()
        .filter(|b| b.settings.as_deref() == Some(settings.as_str()));
    let Some(mut record) = recorded else {
        submit(obj, build, project, settings, p);
        return Ok(None);
    };
    match record.state {
        BuildState::Succeeded => Ok(Some(built(&record))),
        BuildState::Failed => {
            failed(p, &record);
            Ok(None)
        }
        BuildState::Building => {
            let Some(op) = record.operation.clone() else {
                // Recorded without an operation: the submit's answer never arrived.
                submit(obj, build, project, settings, p);
                return Ok(None);
            };
            let read = need(&obs.build_operation, || Read::BuildOperation(op.clone()))?;
            match follow(read) {
                Ok(Followed::Pending) => {
                    p.set(Cond::unknown(
                        SERVICE_READY,
                        BUILDING,
                        format!(
                            "Cloud Build is building {} (operation {op})",
                            source_location(build)
                        ),
                    ));
                    p.outcome = Outcome::Progressing;
                    Ok(None)
                }
                Ok(Followed::Gone) => {
                    record.state = BuildState::Failed;
                    record.message = Some(format!(
                        "Cloud Build no longer knows operation {op}: change the spec (or the source generation) to build again"
                    ));
                    failed(p, &record);
                    p.fields.build = Some(record);
                    Ok(None)
                }
                Ok(Followed::Done { error: Some(error) }) => {
                    let log = log_url(read.as_ref().ok());
                    record.state = BuildState::Failed;
                    record.message = Some(match log {
                        Some(url) => format!("{error} (logs: {url})"),
                        None => error,
                    });
                    failed(p, &record);
                    p.notes.push(crate::controller::Note::warning(
                        BUILD_FAILED,
                        "Build",
                        record.message.clone().unwrap_or_default(),
                    ));
                    p.fields.build = Some(record);
                    Ok(None)
                }
                Ok(Followed::Done { error: None }) => {
                    match read.as_ref().ok().and_then(built_image) {
                        Some(image) => {
                            record.image = Some(image.clone());
                            record.state = BuildState::Succeeded;
                            p.notes.push(crate::controller::Note::normal(
                                "Built",
                                "Build",
                                format!("Built {image} from {}", source_location(build)),
                            ));
                            let out = built(&record);
                            p.fields.build = Some(record);
                            Ok(Some(out))
                        }
                        None => {
                            record.state = BuildState::Failed;
                            record.message = Some(format!(
                                "Cloud Build operation {op} finished without an image"
                            ));
                            failed(p, &record);
                            p.fields.build = Some(record);
                            Ok(None)
                        }
                    }
                }
                Err(e) => {
                    let c = Cond::fail(SERVICE_READY, reason_of(e.code), e.message.clone());
                    p.set(c);
                    p.outcome = Outcome::Stop(e.clone().into());
                    Ok(None)
                }
            }
        }
    }
}

fn built(record: &BuildStatus) -> Option<Built> {
    Some(Built {
        image: record.image.clone().unwrap_or_default(),
        base_image_uri: record.base_image_uri.clone().unwrap_or_default(),
    })
}

fn submit(obj: &CloudRunService, build: &Build, project: &str, settings: String, p: &mut Plan) {
    p.set(Cond::unknown(
        SERVICE_READY,
        BUILDING,
        format!("submitting a build of {}", source_location(build)),
    ));
    p.changes.push(Change::SubmitBuild {
        request: Box::new(request(obj, build, project)),
        record: BuildStatus {
            source_generation: Some(build.source.generation),
            settings: Some(settings),
            state: BuildState::Building,
            ..BuildStatus::default()
        },
    });
    p.outcome = Outcome::Progressing;
}

/// `ServiceReady=False BuildFailed`; the pass waits for a spec change (a new source
/// generation or setting builds again), deploying nothing: the running revision keeps serving.
fn failed(p: &mut Plan, record: &BuildStatus) {
    let message = format!(
        "the build of source generation {} failed: {}; the running revision keeps serving until spec.build changes",
        record.source_generation.unwrap_or_default(),
        record.message.as_deref().unwrap_or("no message")
    );
    p.set(Cond::fail(SERVICE_READY, BUILD_FAILED, &message));
    p.outcome = Outcome::Stop(Error::Spec {
        reason: BUILD_FAILED,
        message,
    });
}

fn metadata(op: &Operation) -> Option<google_cloud_build_v1::model::Build> {
    op.metadata
        .as_ref()?
        .to_msg::<BuildOperationMetadata>()
        .ok()?
        .build
}

/// `{name}@{digest}` of the first image the build pushed.
fn built_image(op: &Operation) -> Option<String> {
    let image = metadata(op)?.results?.images.into_iter().next()?;
    (!image.digest.is_empty()).then(|| format!("{}@{}", image.name, image.digest))
}

fn log_url(op: Option<&Operation>) -> Option<String> {
    metadata(op?).map(|b| b.log_url).filter(|u| !u.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(build: serde_json::Value) -> CloudRunService {
        let spec = serde_json::json!({
            "region": "europe-west1",
            "containers": [{"image": "fn"}],
            "build": build,
        });
        CloudRunService::new("fn", serde_json::from_value(spec).unwrap())
    }

    #[test]
    fn the_settings_follow_every_setting_and_are_stable_for_the_same_ones() {
        let env: serde_json::Map<String, serde_json::Value> = (0..20)
            .map(|i| (format!("K{i}"), serde_json::json!(format!("v{i}"))))
            .collect();
        let base = serde_json::json!({
            "source": {"bucket": "b", "object": "o", "generation": 1},
            "environmentVariables": env,
        });
        let o = obj(base.clone());
        let b = o.spec.build.as_deref().unwrap();
        let first = settings(&o, b, "p1");
        for _ in 0..10 {
            // Maps of many entries hash alike every time (no rebuild loop).
            let again = obj(base.clone());
            assert_eq!(
                settings(&again, again.spec.build.as_deref().unwrap(), "p1"),
                first
            );
        }
        for (field, value) in [
            (
                "source",
                serde_json::json!({"bucket": "b", "object": "o", "generation": 2}),
            ),
            ("functionTarget", serde_json::json!("other")),
            ("automaticUpdates", serde_json::json!(false)),
            (
                "imageRepository",
                serde_json::json!("europe-west1-docker.pkg.dev/p1/fns"),
            ),
        ] {
            let mut changed = base.clone();
            changed[field] = value;
            let o = obj(changed);
            assert_ne!(
                settings(&o, o.spec.build.as_deref().unwrap(), "p1"),
                first,
                "{field}"
            );
        }
        assert_ne!(settings(&o, b, "p2"), first, "another project");
    }
}
