//! Enum fields: accepted as names or numbers, stored as names, printed as numbers when the request
//! asked for `$alt=json;enum-encoding=int` (what the google-cloud-rust clients send).

use serde_json::Value;

use crate::error::{GError, GResult};

/// One proto enum: its full name and `(number, NAME)` pairs.
pub struct EnumType {
    /// e.g. `google.cloud.run.v2.IngressTraffic`.
    pub full_name: &'static str,
    /// `(number, NAME)`; number 0 is the unspecified value.
    pub values: &'static [(i64, &'static str)],
}

impl EnumType {
    fn by_number(&self, n: i64) -> Option<&'static str> {
        self.values.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)
    }
    fn by_name(&self, s: &str) -> Option<i64> {
        self.values.iter().find(|(_, v)| *v == s).map(|(k, _)| *k)
    }
}

macro_rules! enum_type {
    ($id:ident, $full:expr, [$(($n:expr, $s:expr)),* $(,)?]) => {
        #[allow(missing_docs)]
        pub static $id: EnumType = EnumType { full_name: $full, values: &[$(($n, $s)),*] };
    };
}

enum_type!(
    INGRESS,
    "google.cloud.run.v2.IngressTraffic",
    [
        (0, "INGRESS_TRAFFIC_UNSPECIFIED"),
        (1, "INGRESS_TRAFFIC_ALL"),
        (2, "INGRESS_TRAFFIC_INTERNAL_ONLY"),
        (3, "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"),
        (4, "INGRESS_TRAFFIC_NONE")
    ]
);
enum_type!(
    LAUNCH_STAGE,
    "google.api.LaunchStage",
    [
        (0, "LAUNCH_STAGE_UNSPECIFIED"),
        (1, "EARLY_ACCESS"),
        (2, "ALPHA"),
        (3, "BETA"),
        (4, "GA"),
        (5, "DEPRECATED"),
        (6, "UNIMPLEMENTED"),
        (7, "PRELAUNCH")
    ]
);
enum_type!(
    EXEC_ENV,
    "google.cloud.run.v2.ExecutionEnvironment",
    [
        (0, "EXECUTION_ENVIRONMENT_UNSPECIFIED"),
        (1, "EXECUTION_ENVIRONMENT_GEN1"),
        (2, "EXECUTION_ENVIRONMENT_GEN2")
    ]
);
enum_type!(
    REVOCATION,
    "google.cloud.run.v2.EncryptionKeyRevocationAction",
    [
        (0, "ENCRYPTION_KEY_REVOCATION_ACTION_UNSPECIFIED"),
        (1, "PREVENT_NEW"),
        (2, "SHUTDOWN")
    ]
);
enum_type!(
    VPC_EGRESS,
    "google.cloud.run.v2.VpcAccess.VpcEgress",
    [
        (0, "VPC_EGRESS_UNSPECIFIED"),
        (1, "ALL_TRAFFIC"),
        (2, "PRIVATE_RANGES_ONLY")
    ]
);
enum_type!(
    MEDIUM,
    "google.cloud.run.v2.EmptyDirVolumeSource.Medium",
    [(0, "MEDIUM_UNSPECIFIED"), (1, "MEMORY")]
);
enum_type!(
    TRAFFIC_TYPE,
    "google.cloud.run.v2.TrafficTargetAllocationType",
    [
        (0, "TRAFFIC_TARGET_ALLOCATION_TYPE_UNSPECIFIED"),
        (1, "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"),
        (2, "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION")
    ]
);
enum_type!(
    SCALING_MODE,
    "google.cloud.run.v2.ServiceScaling.ScalingMode",
    [
        (0, "SCALING_MODE_UNSPECIFIED"),
        (1, "AUTOMATIC"),
        (2, "MANUAL")
    ]
);
enum_type!(
    COND_STATE,
    "google.cloud.run.v2.Condition.State",
    [
        (0, "STATE_UNSPECIFIED"),
        (1, "CONDITION_PENDING"),
        (2, "CONDITION_RECONCILING"),
        (3, "CONDITION_FAILED"),
        (4, "CONDITION_SUCCEEDED")
    ]
);
enum_type!(
    COND_SEVERITY,
    "google.cloud.run.v2.Condition.Severity",
    [
        (0, "SEVERITY_UNSPECIFIED"),
        (1, "ERROR"),
        (2, "WARNING"),
        (3, "INFO")
    ]
);
enum_type!(
    COND_REASON,
    "google.cloud.run.v2.Condition.CommonReason",
    [
        (0, "COMMON_REASON_UNDEFINED"),
        (1, "UNKNOWN"),
        (3, "REVISION_FAILED"),
        (4, "PROGRESS_DEADLINE_EXCEEDED"),
        (6, "CONTAINER_MISSING"),
        (7, "CONTAINER_PERMISSION_DENIED"),
        (8, "CONTAINER_IMAGE_UNAUTHORIZED"),
        (10, "ENCRYPTION_KEY_PERMISSION_DENIED"),
        (11, "ENCRYPTION_KEY_CHECK_FAILED"),
        (12, "SECRETS_ACCESS_CHECK_FAILED"),
        (13, "WAITING_FOR_OPERATION"),
        (14, "IMMEDIATE_RETRY"),
        (15, "POSTPONED_RETRY"),
        (16, "INTERNAL"),
        (17, "VPC_NETWORK_NOT_FOUND")
    ]
);
enum_type!(
    REVISION_REASON,
    "google.cloud.run.v2.Condition.RevisionReason",
    [
        (0, "REVISION_REASON_UNDEFINED"),
        (1, "PENDING"),
        (2, "RESERVE"),
        (3, "RETIRED"),
        (4, "RETIRING"),
        (5, "RECREATING"),
        (6, "HEALTH_CHECK_CONTAINER_ERROR"),
        (7, "CUSTOMIZED_PATH_RESPONSE_PENDING"),
        (8, "MIN_INSTANCES_NOT_PROVISIONED"),
        (9, "ACTIVE_REVISION_LIMIT_REACHED"),
        (10, "NO_DEPLOYMENT"),
        (11, "HEALTH_CHECK_SKIPPED"),
        (12, "MIN_INSTANCES_WARMING")
    ]
);
enum_type!(
    EXECUTION_REASON,
    "google.cloud.run.v2.Condition.ExecutionReason",
    [
        (0, "EXECUTION_REASON_UNDEFINED"),
        (1, "JOB_STATUS_SERVICE_POLLING_ERROR"),
        (2, "NON_ZERO_EXIT_CODE"),
        (3, "CANCELLED"),
        (4, "CANCELLING"),
        (5, "DELETED"),
        (6, "DELAYED_START_PENDING")
    ]
);
enum_type!(
    COMPLETION_STATUS,
    "google.cloud.run.v2.ExecutionReference.CompletionStatus",
    [
        (0, "COMPLETION_STATUS_UNSPECIFIED"),
        (1, "EXECUTION_SUCCEEDED"),
        (2, "EXECUTION_FAILED"),
        (3, "EXECUTION_RUNNING"),
        (4, "EXECUTION_PENDING"),
        (5, "EXECUTION_CANCELLED")
    ]
);
enum_type!(
    SCHEDULER_STATE,
    "google.cloud.scheduler.v1.Job.State",
    [
        (0, "STATE_UNSPECIFIED"),
        (1, "ENABLED"),
        (2, "PAUSED"),
        (3, "DISABLED"),
        (4, "UPDATE_FAILED")
    ]
);
enum_type!(
    HTTP_METHOD,
    "google.cloud.scheduler.v1.HttpMethod",
    [
        (0, "HTTP_METHOD_UNSPECIFIED"),
        (1, "POST"),
        (2, "GET"),
        (3, "HEAD"),
        (4, "PUT"),
        (5, "DELETE"),
        (6, "PATCH"),
        (7, "OPTIONS")
    ]
);
enum_type!(
    CONNECTOR_STATE,
    "google.cloud.vpcaccess.v1.Connector.State",
    [
        (0, "STATE_UNSPECIFIED"),
        (1, "READY"),
        (2, "CREATING"),
        (3, "DELETING"),
        (4, "ERROR"),
        (5, "UPDATING")
    ]
);
enum_type!(
    KEY_PURPOSE,
    "google.cloud.kms.v1.CryptoKey.CryptoKeyPurpose",
    [
        (0, "CRYPTO_KEY_PURPOSE_UNSPECIFIED"),
        (1, "ENCRYPT_DECRYPT"),
        (5, "ASYMMETRIC_SIGN"),
        (6, "ASYMMETRIC_DECRYPT"),
        (7, "RAW_ENCRYPT_DECRYPT"),
        (9, "MAC"),
        (10, "KEY_ENCAPSULATION"),
        (11, "AES_WRAPPING")
    ]
);
enum_type!(
    PROTECTION_LEVEL,
    "google.cloud.kms.v1.ProtectionLevel",
    [
        (0, "PROTECTION_LEVEL_UNSPECIFIED"),
        (1, "SOFTWARE"),
        (2, "HSM"),
        (3, "EXTERNAL"),
        (4, "EXTERNAL_VPC"),
        (5, "HSM_SINGLE_TENANT")
    ]
);
enum_type!(
    VERSION_STATE,
    "google.cloud.kms.v1.CryptoKeyVersion.CryptoKeyVersionState",
    [
        (0, "CRYPTO_KEY_VERSION_STATE_UNSPECIFIED"),
        (1, "ENABLED"),
        (2, "DISABLED"),
        (3, "DESTROYED"),
        (4, "DESTROY_SCHEDULED"),
        (5, "PENDING_GENERATION"),
        (6, "PENDING_IMPORT"),
        (7, "IMPORT_FAILED"),
        (8, "GENERATION_FAILED"),
        (9, "PENDING_EXTERNAL_DESTRUCTION"),
        (10, "EXTERNAL_DESTRUCTION_FAILED")
    ]
);
enum_type!(
    ALGORITHM,
    "google.cloud.kms.v1.CryptoKeyVersion.CryptoKeyVersionAlgorithm",
    [
        (0, "CRYPTO_KEY_VERSION_ALGORITHM_UNSPECIFIED"),
        (1, "GOOGLE_SYMMETRIC_ENCRYPTION"),
        (2, "RSA_SIGN_PSS_2048_SHA256"),
        (3, "RSA_SIGN_PSS_3072_SHA256"),
        (4, "RSA_SIGN_PSS_4096_SHA256"),
        (5, "RSA_SIGN_PKCS1_2048_SHA256"),
        (6, "RSA_SIGN_PKCS1_3072_SHA256"),
        (7, "RSA_SIGN_PKCS1_4096_SHA256"),
        (8, "RSA_DECRYPT_OAEP_2048_SHA256"),
        (9, "RSA_DECRYPT_OAEP_3072_SHA256"),
        (10, "RSA_DECRYPT_OAEP_4096_SHA256"),
        (12, "EC_SIGN_P256_SHA256"),
        (13, "EC_SIGN_P384_SHA384"),
        (15, "RSA_SIGN_PSS_4096_SHA512"),
        (16, "RSA_SIGN_PKCS1_4096_SHA512"),
        (17, "RSA_DECRYPT_OAEP_4096_SHA512"),
        (18, "EXTERNAL_SYMMETRIC_ENCRYPTION"),
        (19, "AES_256_GCM"),
        (28, "RSA_SIGN_RAW_PKCS1_2048"),
        (29, "RSA_SIGN_RAW_PKCS1_3072"),
        (30, "RSA_SIGN_RAW_PKCS1_4096"),
        (31, "EC_SIGN_SECP256K1_SHA256"),
        (32, "HMAC_SHA256"),
        (33, "HMAC_SHA1"),
        (34, "HMAC_SHA384"),
        (35, "HMAC_SHA512"),
        (36, "HMAC_SHA224"),
        (37, "RSA_DECRYPT_OAEP_2048_SHA1"),
        (38, "RSA_DECRYPT_OAEP_3072_SHA1"),
        (39, "RSA_DECRYPT_OAEP_4096_SHA1"),
        (40, "EC_SIGN_ED25519"),
        (41, "AES_128_GCM"),
        (42, "AES_128_CBC"),
        (43, "AES_256_CBC"),
        (44, "AES_128_CTR"),
        (45, "AES_256_CTR"),
        (47, "ML_KEM_768"),
        (48, "ML_KEM_1024"),
        (56, "PQ_SIGN_ML_DSA_65"),
        (57, "PQ_SIGN_SLH_DSA_SHA2_128S"),
        (60, "PQ_SIGN_HASH_SLH_DSA_SHA2_128S_SHA256"),
        (63, "KEM_XWING"),
        (67, "PQ_SIGN_ML_DSA_65_EXTERNAL_MU"),
        (68, "PQ_SIGN_ML_DSA_44"),
        (69, "PQ_SIGN_ML_DSA_87"),
        (70, "PQ_SIGN_ML_DSA_44_EXTERNAL_MU"),
        (71, "PQ_SIGN_ML_DSA_87_EXTERNAL_MU"),
        (73, "AES_256_KWP")
    ]
);
enum_type!(
    PROJECT_STATE,
    "google.cloud.resourcemanager.v3.Project.State",
    [
        (0, "STATE_UNSPECIFIED"),
        (1, "ACTIVE"),
        (2, "DELETE_REQUESTED")
    ]
);
enum_type!(
    LOG_TYPE,
    "google.iam.v1.AuditLogConfig.LogType",
    [
        (0, "LOG_TYPE_UNSPECIFIED"),
        (1, "ADMIN_READ"),
        (2, "DATA_WRITE"),
        (3, "DATA_READ")
    ]
);

/// Enum fields of a resource: dotted paths where `name[]` walks every element of a list.
pub type Schema = &'static [(&'static str, &'static EnumType)];

const CONDITION_FIELDS: [(&str, &EnumType); 4] = [
    ("state", &COND_STATE),
    ("severity", &COND_SEVERITY),
    ("reason", &COND_REASON),
    ("revisionReason", &REVISION_REASON),
];

/// `google.cloud.run.v2.Service`.
pub static SERVICE: Schema = &[
    ("ingress", &INGRESS),
    ("launchStage", &LAUNCH_STAGE),
    ("template.executionEnvironment", &EXEC_ENV),
    ("template.encryptionKeyRevocationAction", &REVOCATION),
    ("template.vpcAccess.egress", &VPC_EGRESS),
    ("template.volumes[].emptyDir.medium", &MEDIUM),
    ("traffic[].type", &TRAFFIC_TYPE),
    ("trafficStatuses[].type", &TRAFFIC_TYPE),
    ("scaling.scalingMode", &SCALING_MODE),
    ("terminalCondition.state", CONDITION_FIELDS[0].1),
    ("terminalCondition.severity", CONDITION_FIELDS[1].1),
    ("terminalCondition.reason", CONDITION_FIELDS[2].1),
    ("terminalCondition.revisionReason", CONDITION_FIELDS[3].1),
    ("conditions[].state", CONDITION_FIELDS[0].1),
    ("conditions[].severity", CONDITION_FIELDS[1].1),
    ("conditions[].reason", CONDITION_FIELDS[2].1),
    ("conditions[].revisionReason", CONDITION_FIELDS[3].1),
];

/// `google.cloud.run.v2.Job`.
pub static JOB: Schema = &[
    ("launchStage", &LAUNCH_STAGE),
    ("template.template.executionEnvironment", &EXEC_ENV),
    ("template.template.vpcAccess.egress", &VPC_EGRESS),
    ("template.template.volumes[].emptyDir.medium", &MEDIUM),
    (
        "latestCreatedExecution.completionStatus",
        &COMPLETION_STATUS,
    ),
    ("terminalCondition.state", CONDITION_FIELDS[0].1),
    ("terminalCondition.severity", CONDITION_FIELDS[1].1),
    ("terminalCondition.reason", CONDITION_FIELDS[2].1),
    ("terminalCondition.executionReason", &EXECUTION_REASON),
    ("conditions[].state", CONDITION_FIELDS[0].1),
    ("conditions[].severity", CONDITION_FIELDS[1].1),
    ("conditions[].reason", CONDITION_FIELDS[2].1),
    ("conditions[].executionReason", &EXECUTION_REASON),
];

/// `google.cloud.run.v2.Execution`.
pub static EXECUTION: Schema = &[
    ("launchStage", &LAUNCH_STAGE),
    ("template.executionEnvironment", &EXEC_ENV),
    ("template.vpcAccess.egress", &VPC_EGRESS),
    ("template.volumes[].emptyDir.medium", &MEDIUM),
    ("conditions[].state", CONDITION_FIELDS[0].1),
    ("conditions[].severity", CONDITION_FIELDS[1].1),
    ("conditions[].reason", CONDITION_FIELDS[2].1),
    ("conditions[].executionReason", &EXECUTION_REASON),
];

/// `google.cloud.run.v2.Task`.
pub static TASK: Schema = &[
    ("executionEnvironment", &EXEC_ENV),
    ("vpcAccess.egress", &VPC_EGRESS),
    ("volumes[].emptyDir.medium", &MEDIUM),
    ("conditions[].state", CONDITION_FIELDS[0].1),
    ("conditions[].severity", CONDITION_FIELDS[1].1),
    ("conditions[].reason", CONDITION_FIELDS[2].1),
    ("conditions[].executionReason", &EXECUTION_REASON),
];

/// `google.cloud.scheduler.v1.Job`.
pub static SCHEDULER_JOB: Schema = &[
    ("state", &SCHEDULER_STATE),
    ("httpTarget.httpMethod", &HTTP_METHOD),
    ("appEngineHttpTarget.httpMethod", &HTTP_METHOD),
];

/// `google.cloud.vpcaccess.v1.Connector`.
pub static CONNECTOR: Schema = &[("state", &CONNECTOR_STATE)];

/// `google.cloud.kms.v1.CryptoKeyVersion`.
pub static KEY_VERSION: Schema = &[
    ("state", &VERSION_STATE),
    ("algorithm", &ALGORITHM),
    ("protectionLevel", &PROTECTION_LEVEL),
];

/// `google.cloud.kms.v1.CryptoKey`.
pub static CRYPTO_KEY: Schema = &[
    ("purpose", &KEY_PURPOSE),
    ("versionTemplate.algorithm", &ALGORITHM),
    ("versionTemplate.protectionLevel", &PROTECTION_LEVEL),
    ("primary.state", &VERSION_STATE),
    ("primary.algorithm", &ALGORITHM),
    ("primary.protectionLevel", &PROTECTION_LEVEL),
];

/// `google.cloud.resourcemanager.v3.Project`.
pub static PROJECT: Schema = &[("state", &PROJECT_STATE)];

/// `google.iam.v1.Policy`.
pub static POLICY: Schema = &[("auditConfigs[].auditLogConfigs[].logType", &LOG_TYPE)];

/// No enum fields.
pub static NONE: Schema = &[];

/// Normalizes request enums to names, validating them. Unspecified values (0 or `*_UNSPECIFIED`)
/// are removed, as proto3 JSON would. `prefix` is the request field holding the resource
/// (`service`), used in Google's error wording.
pub fn decode(v: &mut Value, schema: Schema, prefix: &str) -> GResult<()> {
    for (path, ty) in schema {
        let segs: Vec<&str> = path.split('.').collect();
        walk(v, &segs, prefix.to_string(), &mut |slot, field| {
            let name = match slot {
                Value::String(s) => {
                    if ty.by_name(s).is_none() {
                        return Err(invalid(field, ty, slot));
                    }
                    s.clone()
                }
                Value::Number(n) => match n.as_i64().and_then(|n| ty.by_number(n)) {
                    Some(s) => s.to_string(),
                    None => return Err(invalid(field, ty, slot)),
                },
                Value::Null => return Ok(None),
                _ => return Err(invalid(field, ty, slot)),
            };
            if ty.by_name(&name) == Some(0) {
                Ok(None)
            } else {
                Ok(Some(Value::String(name)))
            }
        })?;
    }
    Ok(())
}

/// Prints stored enums as numbers (when `int` is true) or leaves the names.
pub fn encode(v: &mut Value, schema: Schema, int: bool) {
    if !int {
        return;
    }
    for (path, ty) in schema {
        let segs: Vec<&str> = path.split('.').collect();
        let _ = walk(v, &segs, String::new(), &mut |slot, _| {
            Ok(Some(match slot {
                Value::String(s) => ty
                    .by_name(s)
                    .map(Value::from)
                    .unwrap_or_else(|| slot.clone()),
                other => other.clone(),
            }))
        });
    }
}

fn invalid(field: &str, ty: &EnumType, v: &Value) -> GError {
    GError::invalid_field(
        field,
        format!(
            "Invalid value at '{field}' (type.googleapis.com/{}), {v}",
            ty.full_name
        ),
    )
}

type Visit<'a> = dyn FnMut(&Value, &str) -> GResult<Option<Value>> + 'a;

fn walk(v: &mut Value, segs: &[&str], field: String, f: &mut Visit<'_>) -> GResult<()> {
    let Some((first, rest)) = segs.split_first() else {
        return Ok(());
    };
    let (key, is_list) = match first.strip_suffix("[]") {
        Some(k) => (k, true),
        None => (*first, false),
    };
    let Some(map) = v.as_object_mut() else {
        return Ok(());
    };
    let field_name = if field.is_empty() {
        snake(key)
    } else {
        format!("{field}.{}", snake(key))
    };
    if is_list {
        if let Some(Value::Array(items)) = map.get_mut(key) {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, rest, format!("{field_name}[{i}]"), f)?;
            }
        }
        return Ok(());
    }
    if rest.is_empty() {
        if let Some(slot) = map.get(key) {
            match f(slot, &field_name)? {
                Some(new) => {
                    map.insert(key.to_string(), new);
                }
                None => {
                    map.remove(key);
                }
            }
        }
        Ok(())
    } else {
        match map.get_mut(key) {
            Some(child) => walk(child, rest, field_name, f),
            None => Ok(()),
        }
    }
}

/// lowerCamelCase to snake_case (Google names fields in snake_case in error messages).
pub fn snake(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_numbers_and_names_and_rejects_unknown() {
        let mut v = json!({"ingress": 2, "traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"}],
                           "launchStage": 0});
        decode(&mut v, SERVICE, "service").unwrap();
        assert_eq!(v["ingress"], "INGRESS_TRAFFIC_INTERNAL_ONLY");
        assert!(v.get("launchStage").is_none());
        let mut bad = json!({"template": {"vpcAccess": {"egress": "SOMETIMES"}}});
        let err = decode(&mut bad, SERVICE, "service").unwrap_err();
        assert_eq!(
            err.message,
            "Invalid value at 'service.template.vpc_access.egress' \
             (type.googleapis.com/google.cloud.run.v2.VpcAccess.VpcEgress), \"SOMETIMES\""
        );
    }

    #[test]
    fn encodes_ints_only_when_asked() {
        let mut v = json!({"state": "READY"});
        encode(&mut v, CONNECTOR, false);
        assert_eq!(v["state"], "READY");
        encode(&mut v, CONNECTOR, true);
        assert_eq!(v["state"], 1);
    }
}
