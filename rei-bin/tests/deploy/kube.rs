//! The Kubernetes and kustomize objects deploy/k8s uses, as typed structs: each refuses a field it does not
//! know (`deny_unknown_fields`) and requires every field it models as required, so a misspelt or missing key is
//! a parse error naming its path, not a silently ignored line. Only what the manifests use is modelled; a field
//! a manifest starts to use must be added here first.

// Many fields exist only so that `deny_unknown_fields` accepts them: the checks read some, not all.
#![expect(dead_code, reason = "fields modelled for the schema, not all read by the checks")]

use std::collections::BTreeMap;

use serde::Deserialize;

/// String keys to string values (labels, annotations, data, selectors).
pub(crate) type Map = BTreeMap<String, String>;

/// The (apiVersion, kind) pairs a manifest may be; anything else is refused.
pub(crate) const KINDS: &[(&str, &str)] = &[
    ("v1", "Namespace"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("batch/v1", "Job"),
    ("apps/v1", "Deployment"),
    ("policy/v1", "PodDisruptionBudget"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
];

/// One manifest document.
#[derive(Debug, Clone)]
pub(crate) enum Object {
    Namespace(Namespace),
    ConfigMap(ConfigMap),
    Secret(Secret),
    Service(Service),
    Job(Job),
    Deployment(Deployment),
    PodDisruptionBudget(PodDisruptionBudget),
    HorizontalPodAutoscaler(HorizontalPodAutoscaler),
    ScaledObject(ScaledObject),
    ServiceMonitor(ServiceMonitor),
}

impl Object {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Object::Namespace(_) => "Namespace",
            Object::ConfigMap(_) => "ConfigMap",
            Object::Secret(_) => "Secret",
            Object::Service(_) => "Service",
            Object::Job(_) => "Job",
            Object::Deployment(_) => "Deployment",
            Object::PodDisruptionBudget(_) => "PodDisruptionBudget",
            Object::HorizontalPodAutoscaler(_) => "HorizontalPodAutoscaler",
            Object::ScaledObject(_) => "ScaledObject",
            Object::ServiceMonitor(_) => "ServiceMonitor",
        }
    }

    pub(crate) fn meta(&self) -> &Meta {
        match self {
            Object::Namespace(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::Job(o) => &o.metadata,
            Object::Deployment(o) => &o.metadata,
            Object::PodDisruptionBudget(o) => &o.metadata,
            Object::HorizontalPodAutoscaler(o) => &o.metadata,
            Object::ScaledObject(o) => &o.metadata,
            Object::ServiceMonitor(o) => &o.metadata,
        }
    }
}

/// Every document of a YAML file (empty ones skipped), each as its typed kind.
///
/// # Errors
/// A document that is not YAML, has an (apiVersion, kind) pair outside [`KINDS`], or does not fit its kind's
/// schema; the message names the document and the path of the field.
pub(crate) fn parse_objects(text: &str) -> Result<Vec<Object>, String> {
    documents(text)?.into_iter().map(object).collect()
}

/// Every non-empty document of a YAML file, untyped.
pub(crate) fn documents(text: &str) -> Result<Vec<serde_yaml::Value>, String> {
    let mut out = Vec::new();
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml::Value::deserialize(document).map_err(|e| format!("document {}: {e}", i + 1))?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

/// `value` as the typed struct its (apiVersion, kind) names.
pub(crate) fn object(value: serde_yaml::Value) -> Result<Object, String> {
    let field = |key: &str| value.get(key).and_then(serde_yaml::Value::as_str).unwrap_or("").to_owned();
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    let name = value.get("metadata").and_then(|m| m.get("name")).and_then(serde_yaml::Value::as_str);
    let what = format!("{kind} {}", name.unwrap_or("(no name)"));
    if !KINDS.contains(&(api_version.as_str(), kind.as_str())) {
        return Err(format!("{what}: apiVersion {api_version:?} with kind {kind:?} is not a known pair"));
    }
    let parsed = match kind.as_str() {
        "Namespace" => typed(value).map(Object::Namespace),
        "ConfigMap" => typed(value).map(Object::ConfigMap),
        "Secret" => typed(value).map(Object::Secret),
        "Service" => typed(value).map(Object::Service),
        "Job" => typed(value).map(Object::Job),
        "Deployment" => typed(value).map(Object::Deployment),
        "PodDisruptionBudget" => typed(value).map(Object::PodDisruptionBudget),
        "HorizontalPodAutoscaler" => typed(value).map(Object::HorizontalPodAutoscaler),
        "ScaledObject" => typed(value).map(Object::ScaledObject),
        "ServiceMonitor" => typed(value).map(Object::ServiceMonitor),
        _ => unreachable!("every kind of KINDS has a struct"),
    };
    parsed.map_err(|e| format!("{what}: {e}"))
}

/// `value` as `T`, an error naming the path of the field that does not fit.
pub(crate) fn typed<T: serde::de::DeserializeOwned>(value: serde_yaml::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        format!("{path}: {}", e.into_inner())
    })
}

/// An int or a string (ports by number or name, PDB counts or percentages).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub(crate) enum IntOrString {
    Int(i64),
    Str(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Meta {
    pub(crate) name: String,
    pub(crate) namespace: Option<String>,
    #[serde(default)]
    pub(crate) labels: Map,
    #[serde(default)]
    pub(crate) annotations: Map,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct LabelSelector {
    pub(crate) match_labels: Map,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Namespace {
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) metadata: Meta,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ConfigMap {
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) metadata: Meta,
    pub(crate) data: Map,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Secret {
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) metadata: Meta,
    #[serde(rename = "type")]
    pub(crate) secret_type: String,
    pub(crate) string_data: Map,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Service {
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) metadata: Meta,
    pub(crate) spec: ServiceSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ServiceSpec {
    #[serde(rename = "type")]
    pub(crate) service_type: Option<String>,
    #[serde(rename = "clusterIP")]
    pub(crate) cluster_ip: Option<String>,
    pub(crate) selector: Map,
    pub(crate) ports: Vec<ServicePort>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ServicePort {
    pub(crate) name: String,
    pub(crate) port: u16,
    pub(crate) target_port: IntOrString,
    pub(crate) protocol: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Job {
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) metadata: Meta,
    pub(crate) spec: JobSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct JobSpec {
    pub(crate) backoff_limit: Option<u32>,
    pub(crate) active_deadline_seconds: Option<u32>,
    pub(crate) ttl_seconds_after_finished: Option<u32>,
    pub(crate) template: PodTemplate,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Deployment {
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) metadata: Meta,
    pub(crate) spec: DeploymentSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct DeploymentSpec {
    pub(crate) replicas: Option<u32>,
    pub(crate) revision_history_limit: Option<u32>,
    pub(crate) min_ready_seconds: Option<u32>,
    pub(crate) progress_deadline_seconds: Option<u32>,
    pub(crate) selector: LabelSelector,
    pub(crate) strategy: Strategy,
    pub(crate) template: PodTemplate,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Strategy {
    #[serde(rename = "type")]
    pub(crate) strategy_type: String,
    pub(crate) rolling_update: Option<RollingUpdate>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RollingUpdate {
    pub(crate) max_surge: Option<IntOrString>,
    pub(crate) max_unavailable: Option<IntOrString>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct PodTemplate {
    pub(crate) metadata: TemplateMeta,
    pub(crate) spec: PodSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct TemplateMeta {
    pub(crate) labels: Map,
    #[serde(default)]
    pub(crate) annotations: Map,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct PodSpec {
    pub(crate) containers: Vec<Container>,
    #[serde(default)]
    pub(crate) init_containers: Vec<Container>,
    #[serde(default)]
    pub(crate) volumes: Vec<Volume>,
    pub(crate) security_context: Option<PodSecurityContext>,
    pub(crate) restart_policy: Option<String>,
    pub(crate) termination_grace_period_seconds: Option<u32>,
    pub(crate) automount_service_account_token: Option<bool>,
    pub(crate) service_account_name: Option<String>,
    #[serde(default)]
    pub(crate) topology_spread_constraints: Vec<TopologySpread>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct TopologySpread {
    pub(crate) max_skew: u32,
    pub(crate) topology_key: String,
    pub(crate) when_unsatisfiable: String,
    pub(crate) label_selector: LabelSelector,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct PodSecurityContext {
    pub(crate) run_as_non_root: Option<bool>,
    pub(crate) run_as_user: Option<u32>,
    pub(crate) run_as_group: Option<u32>,
    pub(crate) fs_group: Option<u32>,
    pub(crate) seccomp_profile: Option<SeccompProfile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct SeccompProfile {
    #[serde(rename = "type")]
    pub(crate) profile_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Container {
    pub(crate) name: String,
    pub(crate) image: String,
    pub(crate) image_pull_policy: Option<String>,
    pub(crate) command: Option<Vec<String>>,
    /// Required: a container names its role, never relying on the image's default command.
    pub(crate) args: Vec<String>,
    #[serde(default)]
    pub(crate) env: Vec<EnvVar>,
    #[serde(default)]
    pub(crate) env_from: Vec<EnvFrom>,
    #[serde(default)]
    pub(crate) ports: Vec<ContainerPort>,
    pub(crate) readiness_probe: Option<Probe>,
    pub(crate) liveness_probe: Option<Probe>,
    pub(crate) startup_probe: Option<Probe>,
    pub(crate) resources: Resources,
    pub(crate) security_context: SecurityContext,
    #[serde(default)]
    pub(crate) volume_mounts: Vec<VolumeMount>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct EnvVar {
    pub(crate) name: String,
    pub(crate) value: Option<String>,
    pub(crate) value_from: Option<EnvSource>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct EnvSource {
    pub(crate) secret_key_ref: Option<KeyRef>,
    pub(crate) config_map_key_ref: Option<KeyRef>,
    pub(crate) field_ref: Option<FieldRef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct KeyRef {
    pub(crate) name: String,
    pub(crate) key: String,
    pub(crate) optional: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct FieldRef {
    pub(crate) field_path: String,
    pub(crate) api_version: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct EnvFrom {
    pub(crate) config_map_ref: Option<NameRef>,
    pub(crate) secret_ref: Option<NameRef>,
    pub(crate) prefix: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct NameRef {
    pub(crate) name: String,
    pub(crate) optional: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ContainerPort {
    pub(crate) name: String,
    pub(crate) container_port: u16,
    pub(crate) protocol: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Probe {
    pub(crate) http_get: HttpGet,
    pub(crate) initial_delay_seconds: Option<u32>,
    pub(crate) period_seconds: Option<u32>,
    pub(crate) timeout_seconds: Option<u32>,
    pub(crate) failure_threshold: Option<u32>,
    pub(crate) success_threshold: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct HttpGet {
    pub(crate) path: String,
    pub(crate) port: IntOrString,
    pub(crate) scheme: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Resources {
    pub(crate) requests: Quantities,
    pub(crate) limits: Quantities,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Quantities {
    pub(crate) cpu: String,
    pub(crate) memory: String,
    #[serde(rename = "ephemeral-storage")]
    pub(crate) ephemeral_storage: Option<String>,
}

/// A container's security context: the fields every container must state are required.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct SecurityContext {
    pub(crate) run_as_non_root: bool,
    pub(crate) run_as_user: u32,
    pub(crate) run_as_group: Option<u32>,
    pub(crate) read_only_root_filesystem: bool,
    pub(crate) allow_privilege_escalation: bool,
    pub(crate) capabilities: Capabilities,
    pub(crate) privileged: Option<bool>,
    pub(crate) seccomp_profile: Option<SeccompProfile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Capabilities {
    pub(crate) drop: Vec<String>,
    #[serde(default)]
    pub(crate) add: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Volume {
    pub(crate) name: String,
    pub(crate) empty_dir: Option<EmptyDir>,
    pub(crate) config_map: Option<ConfigMapVolume>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct EmptyDir {
    pub(crate) medium: Option<String>,
    pub(crate) size_limit: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ConfigMapVolume {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) items: Vec<KeyToPath>,
    pub(crate) default_mode: Option<u32>,
    pub(crate) optional: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct KeyToPath {
    pub(crate) key: String,
    pub(crate) path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct VolumeMount {
    pub(crate) name: String,
    pub(crate) mount_path: String,
    pub(crate) read_only: Option<bool>,
    pub(crate) sub_path: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct PodDisruptionBudget {
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) metadata: Meta,
    pub(crate) spec: PdbSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct PdbSpec {
    pub(crate) min_available: Option<IntOrString>,
    pub(crate) max_unavailable: Option<IntOrString>,
    pub(crate) selector: LabelSelector,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct HorizontalPodAutoscaler {
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) metadata: Meta,
    pub(crate) spec: HpaSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct HpaSpec {
    pub(crate) scale_target_ref: ObjectRef,
    pub(crate) min_replicas: u32,
    pub(crate) max_replicas: u32,
    pub(crate) metrics: Vec<MetricSpec>,
    pub(crate) behavior: Option<Behavior>,
}

/// A reference to another object by kind and name (`scaleTargetRef`, `describedObject`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ObjectRef {
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct MetricSpec {
    #[serde(rename = "type")]
    pub(crate) metric_type: String,
    pub(crate) external: Option<ExternalMetric>,
    pub(crate) object: Option<ObjectMetric>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ExternalMetric {
    pub(crate) metric: MetricId,
    pub(crate) target: MetricTarget,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ObjectMetric {
    pub(crate) described_object: ObjectRef,
    pub(crate) metric: MetricId,
    pub(crate) target: MetricTarget,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct MetricId {
    pub(crate) name: String,
    pub(crate) selector: Option<LabelSelector>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct MetricTarget {
    #[serde(rename = "type")]
    pub(crate) target_type: String,
    pub(crate) value: Option<String>,
    pub(crate) average_value: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Behavior {
    pub(crate) scale_up: Option<ScalingRules>,
    pub(crate) scale_down: Option<ScalingRules>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ScalingRules {
    pub(crate) stabilization_window_seconds: Option<u32>,
    pub(crate) select_policy: Option<String>,
    #[serde(default)]
    pub(crate) policies: Vec<ScalingPolicy>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ScalingPolicy {
    #[serde(rename = "type")]
    pub(crate) policy_type: String,
    pub(crate) value: u32,
    pub(crate) period_seconds: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ScaledObject {
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) metadata: Meta,
    pub(crate) spec: ScaledObjectSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ScaledObjectSpec {
    pub(crate) scale_target_ref: KedaTargetRef,
    pub(crate) polling_interval: Option<u32>,
    pub(crate) cooldown_period: Option<u32>,
    pub(crate) min_replica_count: u32,
    pub(crate) max_replica_count: u32,
    pub(crate) advanced: Option<KedaAdvanced>,
    pub(crate) triggers: Vec<KedaTrigger>,
}

/// KEDA's target: a Deployment unless it says otherwise.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct KedaTargetRef {
    pub(crate) api_version: Option<String>,
    pub(crate) kind: Option<String>,
    pub(crate) name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct KedaAdvanced {
    pub(crate) horizontal_pod_autoscaler_config: Option<KedaHpaConfig>,
    pub(crate) restore_to_original_replica_count: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct KedaHpaConfig {
    pub(crate) name: Option<String>,
    pub(crate) behavior: Option<Behavior>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct KedaTrigger {
    #[serde(rename = "type")]
    pub(crate) trigger_type: String,
    pub(crate) name: Option<String>,
    pub(crate) metadata: Map,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ServiceMonitor {
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) metadata: Meta,
    pub(crate) spec: ServiceMonitorSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ServiceMonitorSpec {
    pub(crate) selector: LabelSelector,
    pub(crate) namespace_selector: Option<NamespaceSelector>,
    pub(crate) endpoints: Vec<MonitorEndpoint>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct NamespaceSelector {
    pub(crate) match_names: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct MonitorEndpoint {
    pub(crate) port: String,
    pub(crate) path: Option<String>,
    pub(crate) interval: Option<String>,
    pub(crate) scrape_timeout: Option<String>,
}

/// A `kustomization.yaml`: a Kustomization, or a Component (which may carry patches).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Kustomization {
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) namespace: Option<String>,
    #[serde(default)]
    pub(crate) resources: Vec<String>,
    #[serde(default)]
    pub(crate) components: Vec<String>,
    #[serde(default)]
    pub(crate) patches: Vec<Patch>,
    #[serde(default)]
    pub(crate) images: Vec<Image>,
}

/// The pairs a `kustomization.yaml` may be.
pub(crate) const KUSTOMIZE_KINDS: &[(&str, &str)] =
    &[("kustomize.config.k8s.io/v1beta1", "Kustomization"), ("kustomize.config.k8s.io/v1alpha1", "Component")];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Patch {
    pub(crate) path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Image {
    pub(crate) name: String,
    pub(crate) new_name: Option<String>,
    pub(crate) new_tag: Option<String>,
    pub(crate) digest: Option<String>,
}

/// A strategic merge patch of a ConfigMap: a key set to null is removed, any other is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ConfigMapPatch {
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) metadata: Meta,
    pub(crate) data: BTreeMap<String, Option<String>>,
}
