//! Containers: image, command, arguments, environment, port, resource limits and CPU
//! allocation, volume mounts, start order, working directory, probes and the base image
//! (automatic base image updates).

use std::collections::HashMap;

use google_cloud_run_v2::model::{
    self as run, EnvVar, EnvVarSource, SecretKeySelector, Service, env_var::Values,
};

use super::gpu::GPU_LIMIT;
use super::{
    Resolved, Shape, TemplateAspect, UNMANAGED, or_unmanaged, probes, template, template_mut,
};
use crate::api::v1alpha1::{self as api, Workload};

/// Cloud Run's default CPU limit.
pub const DEFAULT_CPU: &str = "1000m";
/// Cloud Run's default memory limit.
pub const DEFAULT_MEMORY: &str = "512Mi";
/// Cloud Run's default container port.
pub const DEFAULT_PORT: i32 = 8080;
/// Cloud Run's default CPU allocation: only while a request is handled.
pub const DEFAULT_CPU_IDLE: bool = true;

pub(super) const ASPECT: TemplateAspect = TemplateAspect {
    name: "containers",
    render,
    shape,
    update,
};

fn render(w: &Workload, resolved: &Resolved, svc: &mut Service) {
    let t = template_mut(svc);
    t.containers = w.containers.iter().map(container).collect();
    // Built from source: the first container runs the built digest, on Google's base image.
    if let (Some(built), Some(first)) = (&resolved.built, t.containers.first_mut()) {
        first.image = built.image.clone();
        first.base_image_uri = built.base_image_uri.clone();
    }
}

fn container(c: &api::Container) -> run::Container {
    let mut out = run::Container::new()
        .set_name(c.name.clone().unwrap_or_default())
        .set_image(&c.image)
        .set_command(c.command.clone())
        .set_args(c.args.clone())
        .set_env(c.env.iter().map(|e| {
            let var = EnvVar::new().set_name(&e.name);
            match &e.secret_ref {
                Some(s) => var.set_values(Some(Values::ValueSource(Box::new(
                    EnvVarSource::new().set_secret_key_ref(
                        SecretKeySelector::new()
                            .set_secret(&s.secret)
                            .set_version(&s.version),
                    ),
                )))),
                None => var.set_values(Some(Values::Value(e.value.clone().unwrap_or_default()))),
            }
        }))
        .set_ports(c.ports.iter().map(|p| {
            run::ContainerPort::new()
                .set_name(p.name.as_deref().unwrap_or("http1"))
                .set_container_port(p.container_port)
        }));
    if let Some(r) = &c.resources {
        let mut limits = HashMap::new();
        if let Some(cpu) = &r.cpu {
            limits.insert("cpu".to_owned(), cpu.clone());
        }
        if let Some(memory) = &r.memory {
            limits.insert("memory".to_owned(), memory.clone());
        }
        // With `resources` set, Cloud Run reads an absent cpuIdle as false: send its default.
        out = out.set_resources(
            run::ResourceRequirements::new()
                .set_limits(limits)
                .set_cpu_idle(r.cpu_idle.unwrap_or(DEFAULT_CPU_IDLE))
                .set_startup_cpu_boost(r.startup_cpu_boost.unwrap_or(false)),
        );
    }
    out.volume_mounts = c
        .volume_mounts
        .iter()
        .map(|m| {
            run::VolumeMount::new()
                .set_name(&m.name)
                .set_mount_path(&m.mount_path)
        })
        .collect();
    out.depends_on = c.depends_on.clone();
    out.working_dir = c.working_dir.clone().unwrap_or_default();
    out.startup_probe = c.startup_probe.as_deref().map(probes::render);
    out.liveness_probe = c.liveness_probe.as_deref().map(probes::render);
    out.readiness_probe = c.readiness_probe.as_deref().map(probes::render);
    out.base_image_uri = c.base_image_uri.as_deref().cloned().unwrap_or_default();
    out
}

/// The port a container listens on, as Cloud Run fills it: the first port, else 8080.
fn port_of(c: &run::Container) -> i32 {
    c.ports
        .first()
        .map(|p| p.container_port)
        .filter(|p| *p != 0)
        .unwrap_or(DEFAULT_PORT)
}

fn shape(svc: &Service, s: &mut Shape) {
    let t = template(svc);
    let containers = &t.containers;
    // A container whose resources Cloud Run fills in idles its CPU, except on a GPU revision,
    // which needs CPU always allocated.
    let gpu = t
        .node_selector
        .as_ref()
        .is_some_and(|n| !n.accelerator.is_empty());
    let default_cpu_idle = DEFAULT_CPU_IDLE && !gpu;
    // Cloud Run's memory default depends on the number of containers (recorded: 512Mi for
    // one, 256Mi each for several): with several, an unset limit is left to it.
    let default_memory = if containers.len() > 1 {
        UNMANAGED
    } else {
        DEFAULT_MEMORY
    };
    for (i, c) in containers.iter().enumerate() {
        let key = |f: &str| format!("template.containers[{i}].{f}");
        s.insert(key("name"), or_unmanaged(c.name.clone()));
        s.insert(key("image"), c.image.clone());
        s.insert(key("command"), format!("{:?}", c.command));
        s.insert(key("args"), format!("{:?}", c.args));
        s.insert(
            key("env"),
            format!("{:?}", c.env.iter().map(env_shape).collect::<Vec<_>>()),
        );
        let ports: Vec<_> = if c.ports.is_empty() {
            // Cloud Run gives the first container port 8080 when none is set.
            if i == 0 {
                vec![format!("http1:{DEFAULT_PORT}")]
            } else {
                vec![]
            }
        } else {
            c.ports
                .iter()
                .map(|p| {
                    let name = if p.name.is_empty() { "http1" } else { &p.name };
                    format!("{name}:{}", p.container_port)
                })
                .collect()
        };
        s.insert(key("ports"), format!("{ports:?}"));
        let limits = c.resources.as_ref().map(|r| &r.limits);
        let limit = |name: &str| limits.and_then(|l| l.get(name)).cloned();
        s.insert(
            key("resources.cpu"),
            cpu_millis(&limit("cpu").unwrap_or_else(|| DEFAULT_CPU.to_owned())),
        );
        s.insert(
            key("resources.memory"),
            memory_mebibytes(&limit("memory").unwrap_or_else(|| default_memory.to_owned())),
        );
        s.insert(key("resources.gpu"), limit(GPU_LIMIT).unwrap_or_default());
        let resources = c.resources.as_ref();
        s.insert(
            key("resources.cpuIdle"),
            resources
                .map_or(default_cpu_idle, |r| r.cpu_idle)
                .to_string(),
        );
        s.insert(
            key("resources.startupCpuBoost"),
            resources.is_some_and(|r| r.startup_cpu_boost).to_string(),
        );
        let mut mounts: Vec<String> = c
            .volume_mounts
            .iter()
            .map(|m| format!("{}:{}", m.name, m.mount_path))
            .collect();
        mounts.sort();
        s.insert(key("volumeMounts"), format!("{mounts:?}"));
        let mut depends_on = c.depends_on.clone();
        depends_on.sort();
        s.insert(key("dependsOn"), format!("{depends_on:?}"));
        s.insert(key("workingDir"), c.working_dir.clone());
        // `buildInfo` is output only (what Google built the image from): never compared.
        s.insert(key("baseImageUri"), c.base_image_uri.clone());
        let port = port_of(c);
        s.insert(
            key("startupProbe"),
            probes::shape(c.startup_probe.as_ref(), port, true),
        );
        s.insert(
            key("livenessProbe"),
            probes::shape(c.liveness_probe.as_ref(), port, false),
        );
        s.insert(
            key("readinessProbe"),
            probes::shape(c.readiness_probe.as_ref(), port, false),
        );
    }
}

/// Managed fields of each container replaced; what runwarden does not manage of a container
/// Google has (source code, base image...) and Cloud Run's implicit startup probe are kept;
/// extra containers Google has are dropped.
fn update(out: &mut Service, desired: &Service) {
    let want = template(desired).containers.clone();
    let gpu = template(desired)
        .node_selector
        .as_ref()
        .is_some_and(|n| !n.accelerator.is_empty());
    let t = template_mut(out);
    let old = std::mem::take(&mut t.containers);
    t.containers = want
        .into_iter()
        .enumerate()
        .map(|(i, w)| match old.get(i) {
            Some(o) => {
                let mut c = o.clone();
                c.name = w.name;
                c.image = w.image;
                c.command = w.command;
                c.args = w.args;
                c.env = w.env;
                c.ports = w.ports;
                let mut resources = c.resources.take().unwrap_or_default();
                let want = w.resources.unwrap_or_else(|| {
                    run::ResourceRequirements::new().set_cpu_idle(DEFAULT_CPU_IDLE && !gpu)
                });
                resources.limits = want.limits;
                resources.cpu_idle = want.cpu_idle;
                resources.startup_cpu_boost = want.startup_cpu_boost;
                c.resources = Some(resources);
                c.volume_mounts = w.volume_mounts;
                c.depends_on = w.depends_on;
                c.working_dir = w.working_dir;
                c.base_image_uri = w.base_image_uri;
                c.liveness_probe = w.liveness_probe;
                c.readiness_probe = w.readiness_probe;
                // Cloud Run's own startup probe stays when the spec sets none.
                let port = port_of(&c);
                let implicit = c
                    .startup_probe
                    .as_ref()
                    .is_some_and(|p| probes::is_implicit_startup(p, port));
                if w.startup_probe.is_some() || !implicit {
                    c.startup_probe = w.startup_probe;
                }
                c
            }
            None => w,
        })
        .collect();
}

fn env_shape(e: &EnvVar) -> String {
    match &e.values {
        Some(Values::Value(v)) => format!("{}={v}", e.name),
        Some(Values::ValueSource(src)) => match &src.secret_key_ref {
            Some(s) => format!(
                "{}=secret:{}:{}",
                e.name,
                s.secret,
                if s.version.is_empty() {
                    "latest"
                } else {
                    &s.version
                }
            ),
            None => format!("{}=<empty source>", e.name),
        },
        Some(other) => format!("{}={other:?}", e.name),
        None => format!("{}=", e.name),
    }
}

/// `1`, `1.0`, `1000m` → `1000m`.
fn cpu_millis(cpu: &str) -> String {
    if let Some(m) = cpu.strip_suffix('m') {
        return format!("{m}m");
    }
    match cpu.parse::<f64>() {
        Ok(cores) => format!("{}m", (cores * 1000.0).round() as i64),
        Err(_) => cpu.to_owned(),
    }
}

/// `1Gi`, `1024Mi` → `1024Mi`; other units are kept as written.
fn memory_mebibytes(memory: &str) -> String {
    if let Some(g) = memory
        .strip_suffix("Gi")
        .and_then(|g| g.parse::<u64>().ok())
    {
        return format!("{}Mi", g * 1024);
    }
    memory.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_compared_in_one_unit() {
        for (cpu, want) in [
            ("1", "1000m"),
            ("1.0", "1000m"),
            ("2", "2000m"),
            ("500m", "500m"),
        ] {
            assert_eq!(cpu_millis(cpu), want, "{cpu}");
        }
        assert_eq!(memory_mebibytes("1Gi"), "1024Mi");
        assert_eq!(memory_mebibytes("512Mi"), "512Mi");
        assert_eq!(
            memory_mebibytes("1G"),
            "1G",
            "other units are kept as written"
        );
    }

    #[test]
    fn a_secret_without_version_is_latest() {
        let var = |version: &str| {
            EnvVar::new()
                .set_name("DB")
                .set_values(Some(Values::ValueSource(Box::new(
                    EnvVarSource::new().set_secret_key_ref(
                        SecretKeySelector::new()
                            .set_secret("db")
                            .set_version(version),
                    ),
                ))))
        };
        assert_eq!(env_shape(&var("")), env_shape(&var("latest")));
        assert_ne!(env_shape(&var("3")), env_shape(&var("latest")));
    }
}
