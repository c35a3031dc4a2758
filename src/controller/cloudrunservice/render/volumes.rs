//! Volumes of the revision: secrets as files, Cloud SQL sockets, in-memory directories, Cloud
//! Storage buckets and NFS shares. Compared by name, with Cloud Run's defaults folded in
//! (secret version `latest`, mode 0444, medium memory, `readOnly: false` omitted).

use google_cloud_run_v2::model::{
    self as run, Service, empty_dir_volume_source::Medium, volume::VolumeType,
};

use super::{Resolved, Shape, TemplateAspect, template, template_mut};
use crate::api::v1alpha1::{self as api, Workload};

/// Cloud Run's default mode of secret files, 0444.
const DEFAULT_SECRET_MODE: i32 = 0o444;

pub(super) const ASPECT: TemplateAspect = TemplateAspect {
    name: "volumes",
    render,
    shape,
    update,
};

fn render(w: &Workload, _: &Resolved, svc: &mut Service) {
    template_mut(svc).volumes = w.volumes.iter().map(volume).collect();
}

fn volume(v: &api::Volume) -> run::Volume {
    let out = run::Volume::new().set_name(&v.name);
    if let Some(s) = &v.secret {
        return out.set_secret(
            run::SecretVolumeSource::new()
                .set_secret(&s.secret)
                .set_items(s.items.iter().map(|i| {
                    run::VersionToPath::new()
                        .set_path(&i.path)
                        .set_version(&i.version)
                        .set_mode(i.mode.unwrap_or(0))
                }))
                .set_default_mode(s.default_mode.unwrap_or(0)),
        );
    }
    if let Some(instances) = &v.cloud_sql_instances {
        return out
            .set_cloud_sql_instance(run::CloudSqlInstance::new().set_instances(instances.clone()));
    }
    if let Some(e) = &v.empty_dir {
        return out.set_empty_dir(
            run::EmptyDirVolumeSource::new()
                .set_medium(match e.medium {
                    api::EmptyDirMedium::Memory => Medium::Memory,
                })
                .set_size_limit(e.size_limit.clone().unwrap_or_default()),
        );
    }
    if let Some(g) = &v.gcs {
        return out.set_gcs(
            run::GCSVolumeSource::new()
                .set_bucket(&g.bucket)
                .set_read_only(g.read_only)
                .set_mount_options(g.mount_options.clone()),
        );
    }
    if let Some(n) = &v.nfs {
        return out.set_nfs(
            run::NFSVolumeSource::new()
                .set_server(&n.server)
                .set_path(&n.path)
                .set_read_only(n.read_only),
        );
    }
    out
}

fn shape(svc: &Service, s: &mut Shape) {
    let t = template(svc);
    let mut names: Vec<&str> = t.volumes.iter().map(|v| v.name.as_str()).collect();
    names.sort_unstable();
    s.insert("template.volumes".into(), format!("{names:?}"));
    for v in &t.volumes {
        s.insert(format!("template.volumes[{}]", v.name), volume_shape(v));
    }
}

/// One volume as a canonical string.
fn volume_shape(v: &run::Volume) -> String {
    let mode = |m: i32| if m == 0 { DEFAULT_SECRET_MODE } else { m };
    match &v.volume_type {
        Some(VolumeType::Secret(s)) => {
            let items: Vec<String> = s
                .items
                .iter()
                .map(|i| {
                    let version = if i.version.is_empty() {
                        "latest"
                    } else {
                        &i.version
                    };
                    let m = if i.mode == 0 {
                        mode(s.default_mode)
                    } else {
                        i.mode
                    };
                    format!("{}={version}:{m:o}", i.path)
                })
                .collect();
            format!(
                "secret {} mode {:o} items {items:?}",
                s.secret,
                mode(s.default_mode)
            )
        }
        Some(VolumeType::CloudSqlInstance(c)) => {
            let mut instances = c.instances.clone();
            instances.sort();
            format!("cloudSql {instances:?}")
        }
        Some(VolumeType::EmptyDir(e)) => {
            let medium = match e.medium {
                Medium::Unspecified => Medium::Memory,
                ref other => other.clone(),
            };
            format!("emptyDir {medium:?} limit {:?}", e.size_limit)
        }
        Some(VolumeType::Gcs(g)) => format!(
            "gcs {} readOnly {} options {:?}",
            g.bucket, g.read_only, g.mount_options
        ),
        Some(VolumeType::Nfs(n)) => {
            format!("nfs {}:{} readOnly {}", n.server, n.path, n.read_only)
        }
        Some(other) => format!("{other:?}"),
        None => "none".to_owned(),
    }
}

fn update(out: &mut Service, desired: &Service) {
    template_mut(out).volumes = template(desired).volumes.clone();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_volume(v: serde_json::Value) -> run::Volume {
        volume(&serde_json::from_value(v).unwrap())
    }

    #[test]
    fn each_kind_maps_to_its_cloud_run_source() {
        let s = spec_volume(
            serde_json::json!({"name": "creds", "secret": {"secret": "db", "items": [{"path": "db.json", "version": "3", "mode": 256}], "defaultMode": 292}}),
        );
        let Some(VolumeType::Secret(src)) = &s.volume_type else {
            panic!("{s:?}")
        };
        assert_eq!((src.secret.as_str(), src.default_mode), ("db", 292));
        assert_eq!(
            (
                src.items[0].path.as_str(),
                src.items[0].version.as_str(),
                src.items[0].mode
            ),
            ("db.json", "3", 256)
        );
        let c = spec_volume(
            serde_json::json!({"name": "sql", "cloudSqlInstances": ["p:europe-west1:db"]}),
        );
        assert!(
            matches!(&c.volume_type, Some(VolumeType::CloudSqlInstance(i)) if i.instances == ["p:europe-west1:db"])
        );
        let e = spec_volume(serde_json::json!({"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}));
        assert!(
            matches!(&e.volume_type, Some(VolumeType::EmptyDir(d)) if d.medium == Medium::Memory && d.size_limit == "256Mi")
        );
        let g = spec_volume(
            serde_json::json!({"name": "models", "gcs": {"bucket": "b", "readOnly": true, "mountOptions": ["implicit-dirs"]}}),
        );
        assert!(
            matches!(&g.volume_type, Some(VolumeType::Gcs(b)) if b.bucket == "b" && b.read_only && b.mount_options == ["implicit-dirs"])
        );
        let n = spec_volume(
            serde_json::json!({"name": "share", "nfs": {"server": "10.0.0.2", "path": "/share"}}),
        );
        assert!(
            matches!(&n.volume_type, Some(VolumeType::Nfs(f)) if f.server == "10.0.0.2" && f.path == "/share" && !f.read_only)
        );
    }

    #[test]
    fn cloud_run_defaults_shape_like_the_spec() {
        let sent = spec_volume(
            serde_json::json!({"name": "creds", "secret": {"secret": "db", "items": [{"path": "a"}]}}),
        );
        let returned = run::Volume::new().set_name("creds").set_secret(
            run::SecretVolumeSource::new()
                .set_secret("db")
                .set_items([run::VersionToPath::new()
                    .set_path("a")
                    .set_version("latest")])
                .set_default_mode(0o444),
        );
        assert_eq!(volume_shape(&sent), volume_shape(&returned));
        let memory = spec_volume(serde_json::json!({"name": "tmp", "emptyDir": {}}));
        let unspecified = run::Volume::new()
            .set_name("tmp")
            .set_empty_dir(run::EmptyDirVolumeSource::new());
        assert_eq!(volume_shape(&memory), volume_shape(&unspecified));
        let other_version = run::Volume::new().set_name("creds").set_secret(
            run::SecretVolumeSource::new()
                .set_secret("db")
                .set_items([run::VersionToPath::new().set_path("a").set_version("2")]),
        );
        assert_ne!(volume_shape(&sent), volume_shape(&other_version));
    }
}
