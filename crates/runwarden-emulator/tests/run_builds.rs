//! Cloud Run builds from source through the official clients: `Builds.SubmitBuild`
//! (google-cloud-run-v2) and the Cloud Build operation it returns (google-cloud-build-v1),
//! the `buildDuration` / `buildFailures` controls, validation, IAM, counters; and the
//! `baseImageUri` / `buildInfo` / `buildConfig` round trip of a service.

mod common;

use common::*;
use google_cloud_build_v1::client::CloudBuild;
use google_cloud_build_v1::model::{Build, BuildOperationMetadata, build};
use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_longrunning::model::{Operation, operation};
use google_cloud_run_v2::client::Builds;
use google_cloud_run_v2::model::{
    BuildConfig, Container, RevisionTemplate, Service, StorageSource, SubmitBuildRequest,
    SubmitBuildResponse, submit_build_request::BuildpacksBuild,
};
use runwarden_emulator::Emulator;

async fn builds(emu: &Emulator, token: Option<&str>) -> Builds {
    let credentials = match token {
        Some(t) => bearer(t),
        None => anonymous(),
    };
    Builds::builder()
        .with_endpoint(emu.endpoint())
        .with_credentials(credentials)
        .with_retry_policy(NeverRetry)
        .build()
        .await
        .expect("client builds")
}

async fn cloudbuild(emu: &Emulator) -> CloudBuild {
    CloudBuild::builder()
        .with_endpoint(emu.endpoint())
        .with_credentials(anonymous())
        .with_retry_policy(NeverRetry)
        .build()
        .await
        .expect("client builds")
}

fn source(generation: i64) -> StorageSource {
    StorageSource::new()
        .set_bucket("src-bucket")
        .set_object("fn/source.tar.gz")
        .set_generation(generation)
}

fn request(generation: i64, automatic: bool) -> SubmitBuildRequest {
    SubmitBuildRequest::new()
        .set_parent(parent())
        .set_storage_source(source(generation))
        .set_image_uri(format!("{REGION}-docker.pkg.dev/{PROJECT}/functions/hello"))
        .set_buildpack_build(
            BuildpacksBuild::new()
                .set_function_target("helloHttp")
                .set_enable_automatic_updates(automatic),
        )
}

async fn submit(emu: &Emulator, req: SubmitBuildRequest) -> SubmitBuildResponse {
    let b = builds(emu, None).await;
    b.submit_build()
        .with_request(req)
        .send()
        .await
        .expect("submitted")
}

async fn get(emu: &Emulator, name: &str) -> Operation {
    cloudbuild(emu)
        .await
        .get_operation()
        .set_name(name)
        .send()
        .await
        .expect("operation read")
}

fn metadata(op: &Operation) -> Build {
    op.metadata
        .as_ref()
        .expect("metadata")
        .to_msg::<BuildOperationMetadata>()
        .expect("BuildOperationMetadata")
        .build
        .expect("build")
}

#[tokio::test]
async fn a_submitted_build_is_an_operation_that_pushes_the_image_by_digest() -> TestResult {
    let emu = emulator().await;
    let resp = submit(&emu, request(7, true)).await;
    let op = resp.build_operation.expect("buildOperation");
    assert!(
        op.name.starts_with(&format!("{}/operations/", parent())),
        "{}",
        op.name
    );
    assert_eq!(
        resp.base_image_uri,
        format!("{REGION}-docker.pkg.dev/serverless-runtimes/google-22/runtimes/nodejs22"),
        "automatic updates on: the base image to put on the container"
    );
    let done = get(&emu, &op.name).await;
    assert!(done.done);
    let built = metadata(&done);
    assert_eq!(built.status, build::Status::Success);
    assert!(built.log_url.contains("cloud-build"), "{}", built.log_url);
    let image = &built.results.as_ref().expect("results").images[0];
    assert_eq!(
        image.name,
        format!("{REGION}-docker.pkg.dev/{PROJECT}/functions/hello")
    );
    assert!(image.digest.starts_with("sha256:") && image.digest.len() == 71);
    let Some(operation::Result::Response(any)) = &done.result else {
        panic!("a response: {done:?}")
    };
    assert_eq!(any.to_msg::<Build>()?.status, build::Status::Success);

    // The same source and settings build the same digest; a new generation another.
    let again = submit(&emu, request(7, true))
        .await
        .build_operation
        .unwrap();
    let same = metadata(&get(&emu, &again.name).await);
    assert_eq!(same.results.unwrap().images[0].digest, image.digest);
    let newer = submit(&emu, request(8, true))
        .await
        .build_operation
        .unwrap();
    let other = metadata(&get(&emu, &newer.name).await);
    assert_ne!(other.results.unwrap().images[0].digest, image.digest);

    // Without automatic updates Google returns no base image to enrol.
    let off = submit(&emu, request(8, false)).await;
    assert_eq!(off.base_image_uri, "");

    assert_eq!(emu.count("run.builds.submit"), 4);
    assert_eq!(emu.count("cloudbuild.operations.get"), 3);
    assert_eq!(
        emu.count("vpcaccess.operations.get"),
        0,
        "not routed to VPC Access"
    );
    Ok(())
}

#[tokio::test]
async fn a_build_takes_build_duration_and_fails_on_demand() -> TestResult {
    let emu = emulator().await;
    let (status, _) = http(
        &emu,
        "PUT",
        "/emulator/v1/config",
        Some(r#"{"buildDuration": "60s"}"#),
    )
    .await;
    assert_eq!(status, 200);
    let op = submit(&emu, request(1, true))
        .await
        .build_operation
        .unwrap();
    let running = get(&emu, &op.name).await;
    assert!(!running.done, "a build takes buildDuration");
    assert_eq!(metadata(&running).status, build::Status::Queued);

    let (status, v) = http(
        &emu,
        "PUT",
        "/emulator/v1/config",
        Some(
            &serde_json::json!({"buildDuration": "0s", "buildFailures": {parent(): 1}}).to_string(),
        ),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["buildFailures"][parent()], 1);
    let fast = submit(&emu, request(2, true))
        .await
        .build_operation
        .unwrap();
    let failed = get(&emu, &fast.name).await;
    assert!(failed.done);
    let Some(operation::Result::Error(e)) = &failed.result else {
        panic!("an error: {failed:?}")
    };
    assert_eq!(e.message, "Build failed; check build logs for details");
    let build = metadata(&failed);
    assert_eq!(build.status, build::Status::Failure);
    assert!(!build.log_url.is_empty());
    assert!(
        build.status_detail.contains("step exited"),
        "{}",
        build.status_detail
    );
    // Only the next K builds fail.
    let next = submit(&emu, request(3, true))
        .await
        .build_operation
        .unwrap();
    assert_eq!(
        metadata(&get(&emu, &next.name).await).status,
        build::Status::Success
    );

    let (status, v) = http(
        &emu,
        "PUT",
        "/emulator/v1/config",
        Some(r#"{"buildFailures": {"nonsense": 1}}"#),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    Ok(())
}

#[tokio::test]
async fn a_build_without_source_image_or_build_type_is_refused() -> TestResult {
    let emu = emulator().await;
    let b = builds(&emu, None).await;
    let cases = [
        (
            SubmitBuildRequest::new()
                .set_parent(parent())
                .set_image_uri("r/p/i")
                .set_buildpack_build(BuildpacksBuild::new()),
            "storage_source is required",
        ),
        (request(1, true).set_image_uri(""), "image_uri is required"),
        (
            request(1, true).set_storage_source(source(1).set_bucket("")),
            "storage_source.bucket is required",
        ),
        (
            SubmitBuildRequest::new()
                .set_parent(parent())
                .set_storage_source(source(1))
                .set_image_uri("r/p/i"),
            "one of buildpack_build or docker_build is required",
        ),
    ];
    for (req, want) in cases {
        let e = b.submit_build().with_request(req).send().await.unwrap_err();
        assert_eq!(code(&e), Some(Code::InvalidArgument), "{e}");
        assert!(message(&e).contains(want), "{want}: {}", message(&e));
    }
    Ok(())
}

#[tokio::test]
async fn submitting_a_build_needs_run_builds_create() -> TestResult {
    let emu = emulator().await;
    let viewer = sa("run-viewer");
    grant(
        &emu,
        &format!("/v3/projects/{PROJECT}"),
        "roles/run.viewer",
        &viewer,
    )
    .await;
    let token = token_for(&emu, &viewer).await;
    let e = builds(&emu, Some(&token))
        .await
        .submit_build()
        .with_request(request(1, true))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::PermissionDenied), "{e}");
    assert!(message(&e).contains("run.builds.create"), "{}", message(&e));

    let dev = sa("developer");
    grant(
        &emu,
        &format!("/v3/projects/{PROJECT}"),
        "roles/run.developer",
        &dev,
    )
    .await;
    let token = token_for(&emu, &dev).await;
    let ok = builds(&emu, Some(&token))
        .await
        .submit_build()
        .with_request(request(1, true))
        .send()
        .await?;
    assert!(ok.build_operation.is_some());
    Ok(())
}

#[tokio::test]
async fn base_image_and_build_config_round_trip_and_build_info_is_output_only() -> TestResult {
    let emu = emulator().await;
    let client = run(&emu).await;
    let base = format!("{REGION}-docker.pkg.dev/serverless-runtimes/google-22/runtimes/nodejs22");
    let sent = Service::new()
        .set_build_config(
            BuildConfig::new()
                .set_source_location("gs://src-bucket/fn/source.tar.gz#7")
                .set_function_target("helloHttp")
                .set_enable_automatic_updates(true),
        )
        .set_template(
            RevisionTemplate::new().set_containers([Container::new()
                .set_image("r/p/i@sha256:0")
                .set_base_image_uri(&base)
                .set_build_info(
                    google_cloud_run_v2::model::BuildInfo::new().set_function_target("forged"),
                )]),
        );
    let created = create(&client, "from-source", sent).await?;
    let c = &created.template.as_ref().unwrap().containers[0];
    assert_eq!(c.base_image_uri, base);
    let info = c.build_info.as_ref().expect("buildInfo from buildConfig");
    assert_eq!(
        info.function_target, "helloHttp",
        "the caller's buildInfo is dropped"
    );
    assert_eq!(info.source_location, "gs://src-bucket/fn/source.tar.gz#7");
    let bc = created.build_config.as_ref().expect("buildConfig kept");
    assert!(bc.enable_automatic_updates);
    assert_eq!(
        emu.count("run.builds.submit"),
        0,
        "a buildConfig starts no build"
    );
    Ok(())
}
