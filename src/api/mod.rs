//! Custom resource types served by runwarden, one module per API version.

pub mod v1alpha1;

/// The API group of every runwarden kind.
pub const GROUP: &str = "runwarden.dev";
/// The finalizer runwarden puts on objects whose Google resources it cleans up.
pub const FINALIZER: &str = "runwarden.dev/cleanup";
/// The field manager of every server-side apply runwarden makes.
pub const FIELD_MANAGER: &str = "runwarden";
/// Namespace annotation naming the default Google Cloud project of the namespace.
pub const PROJECT_ANNOTATION: &str = "runwarden.dev/project-id";
/// Namespace annotation naming the Google service account every Google call for the namespace's
/// objects is made as (tenancy).
pub const GOOGLE_SERVICE_ACCOUNT_ANNOTATION: &str = "runwarden.dev/google-service-account";
/// Label put on every Google resource runwarden creates.
pub const MANAGED_BY_LABEL: &str = "managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "runwarden";
/// Label holding the uid of the custom resource that owns a Google resource.
pub const OWNER_LABEL: &str = "runwarden-owner";
