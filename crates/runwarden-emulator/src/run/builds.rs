//! Cloud Run builds (`Builds.SubmitBuild`, `POST /v2/{parent}/builds:submit`) and the Cloud
//! Build operation each one returns (`GET /v1/projects/{p}/locations/{l}/operations/{o}` of
//! cloudbuild.googleapis.com, served here under the same base URL as everything else).
//!
//! Recorded (fixtures README, "Builds"): submit is not a long-running operation; its response
//! holds `buildOperation` (a Cloud Build operation to poll), `baseImageUri` and
//! `baseImageWarning`. Ours (inferred from the API reference, not recorded): the validation
//! wording, the default base image, the image digest (derived from the source and the build
//! settings, so the same source and settings always build the same digest), the log URL, and
//! how a failed build reads (operation error `UNKNOWN` "Build failed; check build logs for
//! details", the build's `FAILURE` status and `failureInfo` in the metadata).
//!
//! Controls (`PUT /emulator/v1/config`): `buildDuration` (how long a build takes, on top of
//! the operation delay) and `buildFailures` (`{"projects/P/locations/R": K}`: the next K builds
//! submitted under that parent fail).

use std::time::Duration;

use serde_json::{Value, json};

use crate::error::{Code, GError, GResult};
use crate::operations;
use crate::request::Req;
use crate::state::{Api, OpKind, State};
use crate::util::{self, str_of};

/// `@type` of the metadata of a Cloud Build operation.
pub(crate) const BUILD_METADATA_TYPE: &str =
    "type.googleapis.com/google.devtools.cloudbuild.v1.BuildOperationMetadata";
/// `@type` of a Cloud Build `Build`, the response of a successful build operation.
pub(crate) const BUILD_TYPE: &str = "type.googleapis.com/google.devtools.cloudbuild.v1.Build";
/// The message of a failed build's operation error.
pub(crate) const BUILD_FAILED: &str = "Build failed; check build logs for details";
/// The base image a buildpacks build without `baseImage` uses: the Ubuntu 22 Node.js runtime
/// of the build's region (ours).
const DEFAULT_RUNTIME: &str = "nodejs22";

/// The Cloud Build operation ids the emulator hands out start with this, so that a Cloud Build
/// `operations.get` is told apart from a Serverless VPC Access one on the same path (the two
/// APIs have different hosts in Google).
pub(crate) const OPERATION_PREFIX: &str = "build-";

/// `run.builds.submit`.
pub(crate) fn submit(st: &mut State, req: &Req) -> GResult<Value> {
    let project = st.project(req.seg(1))?;
    let region = req.seg(3).to_owned();
    let parent = format!("projects/{}/locations/{region}", project.id);
    let body = &req.body;
    let source = body
        .get("storageSource")
        .filter(|s| s.is_object())
        .ok_or_else(|| {
            GError::invalid_field(
                "storage_source",
                "storage_source is required: the Cloud Storage object holding the source archive",
            )
        })?;
    let (bucket, object) = (str_of(source, "bucket"), str_of(source, "object"));
    for (field, v) in [("bucket", bucket), ("object", object)] {
        if v.is_empty() {
            return Err(GError::invalid_field(
                &format!("storage_source.{field}"),
                format!("storage_source.{field} is required"),
            ));
        }
    }
    let generation = util::int_at(source, "generation", "storage_source.generation", "int64")?
        .unwrap_or_default();
    let image_uri = str_of(body, "imageUri");
    if image_uri.is_empty() {
        return Err(GError::invalid_field(
            "image_uri",
            "image_uri is required: the Artifact Registry image to push the build to",
        ));
    }
    let buildpack = body.get("buildpackBuild").filter(|b| b.is_object());
    if buildpack.is_none() && body.get("dockerBuild").is_none() {
        return Err(GError::invalid_field(
            "build_type",
            "one of buildpack_build or docker_build is required",
        ));
    }
    let automatic = buildpack.is_some_and(|b| b["enableAutomaticUpdates"].as_bool() == Some(true));
    let base_image = buildpack
        .map(|b| str_of(b, "baseImage"))
        .filter(|b| !b.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| {
            format!(
                "{region}-docker.pkg.dev/serverless-runtimes/google-22/runtimes/{DEFAULT_RUNTIME}"
            )
        });
    let digest = digest_of(&[
        bucket,
        object,
        &generation.to_string(),
        image_uri,
        &buildpack.map(Value::to_string).unwrap_or_default(),
        &body
            .get("dockerBuild")
            .map(Value::to_string)
            .unwrap_or_default(),
    ]);
    let fails = match st.build_failures.get_mut(&parent) {
        Some(k) if *k > 0 => {
            *k -= 1;
            if *k == 0 {
                st.build_failures.remove(&parent);
            }
            true
        }
        _ => false,
    };
    let id = util::uuid();
    let log_url = format!(
        "https://console.cloud.google.com/cloud-build/builds;region={region}/{id}?project={}",
        project.number
    );
    let build = json!({
        "id": id,
        "projectId": project.id,
        "status": "QUEUED",
        "source": {"storageSource": {"bucket": bucket, "object": object, "generation": generation.to_string()}},
        "images": [image_uri],
        "logUrl": log_url,
        "serviceAccount": str_of(body, "serviceAccount"),
        "createTime": util::timestamp(req.now),
    });
    let metadata = json!({"@type": BUILD_METADATA_TYPE, "build": build});
    let delay = req.delay + st.build_duration;
    let kind = OpKind::Build {
        image: image_name(image_uri).to_owned(),
        digest: format!("sha256:{digest}"),
        fails,
    };
    let op = start(st, &parent, delay, kind, metadata);
    let mut operation = operations::get(st, Api::CloudBuild, &op, req.int)?;
    encode_status(&mut operation, req.int);
    let mut out = json!({"buildOperation": operation});
    if automatic {
        out["baseImageUri"] = json!(base_image);
    }
    Ok(out)
}

/// The image without its tag: what `@sha256:` is appended to.
fn image_name(image_uri: &str) -> &str {
    let last_slash = image_uri.rfind('/').unwrap_or(0);
    match image_uri[last_slash..].find(':') {
        Some(i) => &image_uri[..last_slash + i],
        None => image_uri,
    }
}

/// 64 hex digits derived from `parts` (four FNV-1a hashes with different salts): the same
/// source and settings always give the same digest, any change another.
fn digest_of(parts: &[&str]) -> String {
    let joined = parts.join("\u{0}");
    (0..4)
        .map(|salt| format!("{:016x}", util::fnv1a(&format!("{salt}:{joined}"))))
        .collect()
}

fn start(st: &mut State, parent: &str, delay: Duration, kind: OpKind, metadata: Value) -> String {
    let name = operations::start(st, Api::CloudBuild, parent, delay, kind, metadata);
    // Cloud Build operation ids are told apart from VPC Access ones on the shared path.
    let Some(op) = st.operations.remove(&name) else {
        return name;
    };
    let (head, id) = name.rsplit_once('/').unwrap_or(("", &name));
    let renamed = format!("{head}/{OPERATION_PREFIX}{id}");
    st.operations.insert(
        renamed.clone(),
        crate::state::Operation {
            name: renamed.clone(),
            ..op
        },
    );
    renamed
}

/// What completing a build operation does: the build succeeds (its image pushed with the
/// digest) or fails (on demand, `buildFailures`).
pub(crate) fn complete(
    metadata: Value,
    image: &str,
    digest: &str,
    fails: bool,
) -> (Value, Result<Value, GError>) {
    let mut metadata = metadata;
    let build = &mut metadata["build"];
    if fails {
        build["status"] = json!("FAILURE");
        build["statusDetail"] = json!(
            "Build step failure: build step 0 \"gcr.io/k8s-skaffold/pack\" failed: step exited with non-zero status: 1"
        );
        build["failureInfo"] = json!({"type": "USER_BUILD_STEP", "detail": "Build step failure: build step 0 \"gcr.io/k8s-skaffold/pack\" failed: step exited with non-zero status: 1"});
        let e = GError::new(Code::Unknown, BUILD_FAILED);
        return (metadata, Err(e));
    }
    build["status"] = json!("SUCCESS");
    build["results"] = json!({"images": [{"name": image, "digest": digest}]});
    let response = operations::typed(build, BUILD_TYPE);
    (metadata, Ok(response))
}

/// `cloudbuild.operations.get`.
pub(crate) fn get_operation(st: &mut State, req: &Req) -> GResult<Value> {
    let project = st.project(req.seg(1))?;
    let name = format!(
        "projects/{}/locations/{}/operations/{}",
        project.id,
        req.seg(3),
        req.seg(5)
    );
    let mut op = operations::get(st, Api::CloudBuild, &name, req.int)?;
    encode_status(&mut op, req.int);
    Ok(op)
}

/// `Build.status` by number when the caller asks for enums as numbers.
fn encode_status(op: &mut Value, int: bool) {
    if !int {
        return;
    }
    for key in ["metadata", "response"] {
        let status = match key {
            "metadata" => op.get_mut(key).and_then(|m| m.get_mut("build")),
            _ => op.get_mut(key),
        };
        let Some(status) = status.and_then(|b| b.get_mut("status")) else {
            continue;
        };
        let n = match status.as_str() {
            Some("QUEUED") => 1,
            Some("WORKING") => 2,
            Some("SUCCESS") => 3,
            Some("FAILURE") => 4,
            _ => continue,
        };
        *status = json!(n);
    }
    if let Some(info) = op
        .get_mut("metadata")
        .and_then(|m| m.get_mut("build"))
        .and_then(|b| b.get_mut("failureInfo"))
        .and_then(|f| f.get_mut("type"))
        && info.as_str() == Some("USER_BUILD_STEP")
    {
        *info = json!(5);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_follows_source_and_settings() {
        let a = digest_of(&["b", "o", "1", "img", "{}"]);
        assert_eq!(a.len(), 64);
        assert_eq!(a, digest_of(&["b", "o", "1", "img", "{}"]));
        assert_ne!(a, digest_of(&["b", "o", "2", "img", "{}"]));
        assert_ne!(a, digest_of(&["b", "o", "1", "img", "{\"x\":1}"]));
    }

    #[test]
    fn a_tag_is_dropped_from_the_image_name_but_a_registry_port_is_not() {
        assert_eq!(image_name("r.example/p/app:v1"), "r.example/p/app");
        assert_eq!(image_name("localhost:5000/p/app"), "localhost:5000/p/app");
        assert_eq!(
            image_name("eu-docker.pkg.dev/p/r/app"),
            "eu-docker.pkg.dev/p/r/app"
        );
    }
}
