//! CMEK fields of the template: the key ([`KEY`], shared with jobs) and what Cloud Run does
//! when it is revoked ([`ASPECT`], services only).

use google_cloud_run_v2::model::{self as run, Service};
use google_cloud_wkt::Duration;

use super::{Aspect, Resolved, Shape, TemplateAspect, template, template_mut};
use crate::api::v1alpha1::{CloudRunService, RevocationAction, Workload};

pub(super) const ASPECT: Aspect = Aspect {
    name: "encryption",
    render,
    shape,
    update,
};

pub(super) const KEY: TemplateAspect = TemplateAspect {
    name: "key",
    render: render_key,
    shape: shape_key,
    update: update_key,
};

fn render_key(w: &Workload, _: &Resolved, svc: &mut Service) {
    if let Some(key) = w.kms_key {
        template_mut(svc).encryption_key = key.to_owned();
    }
}

fn shape_key(svc: &Service, s: &mut Shape) {
    s.insert(
        "template.encryptionKey".into(),
        template(svc).encryption_key.clone(),
    );
}

fn update_key(out: &mut Service, desired: &Service) {
    let key = template(desired).encryption_key.clone();
    template_mut(out).encryption_key = key;
}

fn render(obj: &CloudRunService, _: &Resolved, svc: &mut Service) {
    let Some(enc) = &obj.spec.encryption else {
        return;
    };
    let t = template_mut(svc);
    t.encryption_key_revocation_action = match enc.revocation_action {
        RevocationAction::PreventNew => run::EncryptionKeyRevocationAction::PreventNew,
        RevocationAction::Shutdown => run::EncryptionKeyRevocationAction::Shutdown,
    };
    t.encryption_key_shutdown_duration = enc
        .shutdown_hours
        .map(|hours| Duration::clamp(i64::from(hours) * 3600, 0));
}

fn shape(svc: &Service, s: &mut Shape) {
    let t = template(svc);
    if t.encryption_key.is_empty() {
        return;
    }
    let action = match t.encryption_key_revocation_action {
        run::EncryptionKeyRevocationAction::Unspecified => {
            run::EncryptionKeyRevocationAction::PreventNew
        }
        ref other => other.clone(),
    };
    s.insert(
        "template.encryptionKeyRevocationAction".into(),
        format!("{action:?}"),
    );
    s.insert(
        "template.encryptionKeyShutdownDuration".into(),
        t.encryption_key_shutdown_duration
            .as_ref()
            .map_or(0, Duration::seconds)
            .to_string(),
    );
}

fn update(out: &mut Service, desired: &Service) {
    let want = template(desired).into_owned();
    let t = template_mut(out);
    t.encryption_key_revocation_action = want.encryption_key_revocation_action;
    t.encryption_key_shutdown_duration = want.encryption_key_shutdown_duration;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_settings_are_compared_only_with_a_key() {
        let mut none = Shape::new();
        shape(&Service::new(), &mut none);
        assert!(none.is_empty(), "{none:?}");
        let keyed = Service::new().set_template(
            run::RevisionTemplate::new()
                .set_encryption_key("projects/p/locations/l/keyRings/r/cryptoKeys/k"),
        );
        let mut s = Shape::new();
        shape(&keyed, &mut s);
        assert_eq!(s["template.encryptionKeyRevocationAction"], "PreventNew");
        assert_eq!(s["template.encryptionKeyShutdownDuration"], "0");
    }
}
