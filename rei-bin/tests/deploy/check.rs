//! The rules a rendered set of manifests must keep, beyond their schema: names and namespaces, selectors that
//! select, references that resolve, containers that run the image's `rei` with what the binary accepts, the
//! variables each role reads, probes on the ports the process listens on, the security context, bounded
//! resources, and the processes that must run once (one poller per bot token, one gc).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use super::binary::Binary;
use super::kube::{
    ConfigMap, Container, Deployment, Image, IntOrString, Map, Object, PodSpec, Probe, Quantities, Secret, Service,
};

/// A set of objects as kustomize would hand them to the cluster.
#[derive(Debug, Clone)]
pub(crate) struct Rendering {
    /// What was rendered, for messages (`deploy/k8s`, `deploy/k8s + polling`).
    pub(crate) name: String,
    /// Each object with the file it came from.
    pub(crate) objects: Vec<(String, Object)>,
    /// The kustomization's image overrides.
    pub(crate) images: Vec<Image>,
    /// The kustomization's namespace.
    pub(crate) namespace: Option<String>,
}

/// What the checks compare the manifests with.
pub(crate) struct Context<'a> {
    pub(crate) binary: &'a Binary,
    /// The Secret the containers read from (deploy/k8s/secret.example.yaml, which is not applied).
    pub(crate) secret: &'a Secret,
    /// The image's ENTRYPOINT and the user it runs as (from the Dockerfile).
    pub(crate) entrypoint: &'a str,
    pub(crate) uid: u32,
}

/// The roles a cluster runs: `all` and `sandbox` are for one machine.
const CLUSTER_ROLES: &[&str] = &["migrate", "verify", "serve", "worker", "gc", "bot"];

/// Roles whose HTTP listener serves `/health/ready` (the worker's metrics listener serves `/health/live` only).
const SERVES_READY: &[&str] = &["serve", "all"];

/// What one container runs, as the later checks need it.
#[derive(Debug)]
struct Role {
    workload: String,
    subcommand: String,
    /// Every variable the container gets, with its value where the manifests give one.
    env: BTreeMap<String, Option<String>>,
    /// The ConfigMaps it gets whole as variables (`envFrom`).
    env_from: BTreeSet<String>,
}

/// Every problem of `r`, each naming its file and object; empty when all rules hold.
pub(crate) fn check(r: &Rendering, cx: &Context<'_>) -> Vec<String> {
    let mut p = Vec::new();
    names(r, &mut p);
    let roles = workloads(r, cx, &mut p);
    services(r, &mut p);
    disruption_budgets(r, &mut p);
    autoscalers(r, cx, &mut p);
    monitors(r, &mut p);
    config_maps(r, cx, &roles, &mut p);
    singletons(r, cx, &roles, &mut p);
    p.into_iter().map(|problem| format!("{}: {problem}", r.name)).collect()
}

fn deployments(r: &Rendering) -> impl Iterator<Item = (&str, &Deployment)> {
    r.objects.iter().filter_map(|(f, o)| if let Object::Deployment(d) = o { Some((f.as_str(), d)) } else { None })
}

fn services_of(r: &Rendering) -> impl Iterator<Item = (&str, &Service)> {
    r.objects.iter().filter_map(|(f, o)| if let Object::Service(s) = o { Some((f.as_str(), s)) } else { None })
}

fn config_map<'a>(r: &'a Rendering, name: &str) -> Option<&'a ConfigMap> {
    r.objects.iter().find_map(|(_, o)| match o {
        Object::ConfigMap(c) if c.metadata.name == name => Some(c),
        _ => None,
    })
}

/// `selector` is not empty and every one of its labels is among `labels`.
fn selects(selector: &Map, labels: &Map) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// One Namespace, every other object in it and named once per kind.
fn names(r: &Rendering, p: &mut Vec<String>) {
    let namespaces: Vec<&str> = r
        .objects
        .iter()
        .filter_map(|(_, o)| if let Object::Namespace(n) = o { Some(n.metadata.name.as_str()) } else { None })
        .collect();
    let [namespace] = namespaces[..] else {
        p.push(format!("expected exactly one Namespace, found {namespaces:?}"));
        return;
    };
    if r.namespace.as_deref() != Some(namespace) {
        p.push(format!("kustomization namespace {:?} is not the Namespace {namespace:?}", r.namespace));
    }
    let mut seen = BTreeSet::new();
    for (file, o) in &r.objects {
        let meta = o.meta();
        if !matches!(o, Object::Namespace(_)) && meta.namespace.as_deref() != Some(namespace) {
            p.push(format!("{file}: {} {} is not in namespace {namespace}", o.kind(), meta.name));
        }
        if !seen.insert((o.kind(), meta.name.clone())) {
            p.push(format!("{file}: {} {} is defined twice", o.kind(), meta.name));
        }
    }
}

/// The Deployments and Jobs: their selectors, pods and containers. Returns what each container runs.
fn workloads(r: &Rendering, cx: &Context<'_>, p: &mut Vec<String>) -> Vec<Role> {
    let mut roles = Vec::new();
    for (file, o) in &r.objects {
        let (what, pod, is_job) = match o {
            Object::Deployment(d) => {
                let what = format!("{file}: Deployment {}", d.metadata.name);
                if !selects(&d.spec.selector.match_labels, &d.spec.template.metadata.labels) {
                    p.push(format!(
                        "{what}: selector {:?} does not match its pod labels",
                        d.spec.selector.match_labels
                    ));
                }
                let strategy = d.spec.strategy.strategy_type.as_str();
                if !["RollingUpdate", "Recreate"].contains(&strategy) {
                    p.push(format!("{what}: strategy {strategy:?} is neither RollingUpdate nor Recreate"));
                }
                (what, &d.spec.template.spec, false)
            }
            Object::Job(j) => (format!("{file}: Job {}", j.metadata.name), &j.spec.template.spec, true),
            _ => continue,
        };
        match (is_job, pod.restart_policy.as_deref()) {
            (true, Some("Never" | "OnFailure")) | (false, None | Some("Always")) => {}
            (_, policy) => p.push(format!("{what}: restartPolicy {policy:?} does not fit the kind")),
        }
        if let Some(sc) = &pod.security_context
            && (sc.run_as_non_root == Some(false) || sc.run_as_user.is_some_and(|u| u != cx.uid))
        {
            p.push(format!("{what}: the pod's securityContext must run as the image's user {}", cx.uid));
        }
        for volume in &pod.volumes {
            match (&volume.empty_dir, &volume.config_map) {
                (Some(_), None) => {}
                (None, Some(cm)) => match config_map(r, &cm.name) {
                    None => p.push(format!("{what}: volume {} names no ConfigMap {}", volume.name, cm.name)),
                    Some(found) => {
                        for item in cm.items.iter().filter(|i| !found.data.contains_key(&i.key)) {
                            p.push(format!("{what}: ConfigMap {} has no key {}", cm.name, item.key));
                        }
                    }
                },
                _ => p.push(format!("{what}: volume {} must be one emptyDir or one configMap", volume.name)),
            }
        }
        for c in pod.init_containers.iter().chain(&pod.containers) {
            let what = format!("{what} container {}", c.name);
            if let Some(role) = container(&what, c, pod, r, cx, p) {
                roles.push(role);
            }
        }
    }
    roles
}

/// One container's rules; `None` when what it runs is unknown (already reported).
fn container(
    what: &str,
    c: &Container,
    pod: &PodSpec,
    r: &Rendering,
    cx: &Context<'_>,
    p: &mut Vec<String>,
) -> Option<Role> {
    // The image: the one the kustomization sets, started by its ENTRYPOINT.
    let repository = image_name(&c.image);
    if !r.images.iter().any(|i| i.name == repository) {
        p.push(format!("{what}: image {} is not one the kustomization's images set", c.image));
    }
    if let Some(command) = &c.command
        && command != &[cx.entrypoint.to_owned()]
    {
        p.push(format!("{what}: command {command:?} replaces the image's entrypoint {}", cx.entrypoint));
    }
    let subcommand = match cx.binary.check_args(&c.args) {
        Ok(s) => s,
        Err(e) => {
            p.push(format!("{what}: {e}"));
            return None;
        }
    };
    if !CLUSTER_ROLES.contains(&subcommand.as_str()) {
        p.push(format!("{what}: `rei {subcommand}` is not a role for a cluster ({CLUSTER_ROLES:?})"));
    }
    let (env, env_from) = environment(what, c, &subcommand, r, cx, p);
    security(what, c, cx.uid, p);
    resources(what, &c.resources.requests, &c.resources.limits, p);
    mounts(what, c, pod, &subcommand, &env, r, p);
    listeners(what, c, &subcommand, &env, p);
    if subcommand == "worker" {
        let grace: u32 = Binary::flag_value(&c.args, "--grace-seconds").and_then(|g| g.parse().ok()).unwrap_or(30);
        let termination = pod.termination_grace_period_seconds.unwrap_or(30);
        if termination <= grace {
            p.push(format!(
                "{what}: terminationGracePeriodSeconds {termination} must exceed --grace-seconds {grace}, or \
                 the kubelet kills jobs the worker would finish"
            ));
        }
    }
    Some(Role { workload: what.to_owned(), subcommand, env, env_from })
}

/// The repository of an image reference, without its tag or digest.
fn image_name(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(colon) if !image[colon..].contains('/') => &image[..colon],
        _ => image,
    }
}

/// The container's variables: each read by its role, secrets from the Secret under their own name.
fn environment(
    what: &str,
    c: &Container,
    subcommand: &str,
    r: &Rendering,
    cx: &Context<'_>,
    p: &mut Vec<String>,
) -> (BTreeMap<String, Option<String>>, BTreeSet<String>) {
    let mut env = BTreeMap::new();
    let mut whole = BTreeSet::new();
    for from in &c.env_from {
        match (&from.config_map_ref, &from.secret_ref, &from.prefix) {
            (Some(cm), None, None) => match config_map(r, &cm.name) {
                Some(found) => {
                    whole.insert(cm.name.clone());
                    env.extend(found.data.iter().map(|(k, v)| (k.clone(), Some(v.clone()))));
                }
                None if cm.optional == Some(true) => {}
                None => p.push(format!("{what}: envFrom names no ConfigMap {}", cm.name)),
            },
            _ => p.push(format!("{what}: envFrom must be one configMapRef without a prefix")),
        }
    }
    let mut explicit = BTreeSet::new();
    for var in &c.env {
        if !explicit.insert(var.name.as_str()) {
            p.push(format!("{what}: {} is set twice", var.name));
        }
        if !cx.binary.reads(subcommand, &var.name) {
            p.push(format!(
                "{what}: `rei {subcommand}` does not read {} (not in its --help, nor in the source)",
                var.name
            ));
        }
        let value = match (&var.value, &var.value_from) {
            (Some(v), None) => Some(v.clone()),
            (None, Some(from)) => match (&from.secret_key_ref, &from.config_map_key_ref, &from.field_ref) {
                (Some(s), None, None) => {
                    if s.name != cx.secret.metadata.name || !cx.secret.string_data.contains_key(&s.key) {
                        p.push(format!(
                            "{what}: {} names key {} of Secret {}, which it lacks",
                            var.name, s.key, s.name
                        ));
                    } else if s.key != var.name {
                        p.push(format!("{what}: {} is read from the Secret's key {}", var.name, s.key));
                    }
                    None
                }
                (None, Some(k), None) => match config_map(r, &k.name).and_then(|m| m.data.get(&k.key)) {
                    Some(v) => Some(v.clone()),
                    None if k.optional == Some(true) => None,
                    None => {
                        p.push(format!(
                            "{what}: {} names key {} of ConfigMap {}, which it lacks",
                            var.name, k.key, k.name
                        ));
                        None
                    }
                },
                (None, None, Some(_)) => None,
                _ => {
                    p.push(format!("{what}: {} must come from one source", var.name));
                    None
                }
            },
            _ => {
                p.push(format!("{what}: {} needs exactly one of value and valueFrom", var.name));
                None
            }
        };
        env.insert(var.name.clone(), value);
    }
    (env, whole)
}

/// Non-root as the image's user, nothing to escalate to, no capabilities, a read-only root.
fn security(what: &str, c: &Container, uid: u32, p: &mut Vec<String>) {
    let sc = &c.security_context;
    if !sc.run_as_non_root {
        p.push(format!("{what}: securityContext.runAsNonRoot must be true"));
    }
    if sc.run_as_user != uid {
        p.push(format!("{what}: securityContext.runAsUser {} is not the image's user {uid}", sc.run_as_user));
    }
    if !sc.read_only_root_filesystem {
        p.push(format!("{what}: securityContext.readOnlyRootFilesystem must be true"));
    }
    if sc.allow_privilege_escalation {
        p.push(format!("{what}: securityContext.allowPrivilegeEscalation must be false"));
    }
    if sc.privileged == Some(true) {
        p.push(format!("{what}: securityContext.privileged must not be true"));
    }
    if !sc.capabilities.drop.iter().any(|d| d == "ALL") || !sc.capabilities.add.is_empty() {
        p.push(format!("{what}: securityContext.capabilities must drop ALL and add none"));
    }
}

/// Requests and limits that parse, with no request above its limit.
fn resources(what: &str, requests: &Quantities, limits: &Quantities, p: &mut Vec<String>) {
    for (name, request, limit, parse) in [
        ("cpu", &requests.cpu, &limits.cpu, millicores as fn(&str) -> Option<u128>),
        ("memory", &requests.memory, &limits.memory, bytes),
    ] {
        match (parse(request), parse(limit)) {
            (Some(r), Some(l)) if r <= l => {}
            (Some(_), Some(_)) => p.push(format!("{what}: {name} request {request} is above its limit {limit}")),
            _ => p.push(format!("{what}: {name} {request} / {limit} is not a quantity")),
        }
    }
}

/// A CPU quantity in millicores: `250m`, `1`, `0.5`.
pub(crate) fn millicores(q: &str) -> Option<u128> {
    if let Some(m) = q.strip_suffix('m') {
        return m.parse().ok();
    }
    let (whole, fraction) = q.split_once('.').unwrap_or((q, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let fraction: u128 = format!("{fraction:0<3}").parse().ok()?;
    Some(whole.parse::<u128>().ok()? * 1000 + fraction)
}

/// A memory quantity in bytes: `64Mi`, `2Gi`, `512M`, `1000`.
pub(crate) fn bytes(q: &str) -> Option<u128> {
    const UNITS: &[(&str, u128)] = &[
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    for (suffix, unit) in UNITS {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<u128>().ok().map(|n| n * unit);
        }
    }
    q.parse().ok()
}

/// Mounts of the pod's volumes; /tmp writable (the root is read-only); the settings file where REI_CONFIG
/// says.
fn mounts(
    what: &str,
    c: &Container,
    pod: &PodSpec,
    subcommand: &str,
    env: &BTreeMap<String, Option<String>>,
    r: &Rendering,
    p: &mut Vec<String>,
) {
    let volume = |name: &str| pod.volumes.iter().find(|v| v.name == name);
    for mount in &c.volume_mounts {
        if volume(&mount.name).is_none() {
            p.push(format!("{what}: mount {} names no volume of the pod", mount.name));
        }
    }
    let tmp = c.volume_mounts.iter().find(|m| m.mount_path == "/tmp");
    if tmp.and_then(|m| volume(&m.name)).is_none_or(|v| v.empty_dir.is_none()) {
        p.push(format!("{what}: the root filesystem is read-only, so /tmp must be an emptyDir"));
    }
    let Some(Some(path)) = env.get("REI_CONFIG").filter(|_| subcommand_reads_config(subcommand)) else { return };
    let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
    let found = c.volume_mounts.iter().filter(|m| m.mount_path == dir && m.sub_path.is_none()).find_map(|m| {
        let cm = volume(&m.name)?.config_map.as_ref()?;
        let key =
            if cm.items.is_empty() { file.to_owned() } else { cm.items.iter().find(|i| i.path == file)?.key.clone() };
        config_map(r, &cm.name)?.data.contains_key(&key).then_some(())
    });
    if found.is_none() {
        p.push(format!("{what}: REI_CONFIG is {path}, but no ConfigMap with {file} is mounted at {dir}"));
    }
}

fn subcommand_reads_config(subcommand: &str) -> bool {
    ["serve", "bot", "all"].contains(&subcommand)
}

/// The addresses the process listens on: every declared port is one of them, each on every interface, and the
/// probes ask the listener the right question.
fn listeners(what: &str, c: &Container, subcommand: &str, env: &BTreeMap<String, Option<String>>, p: &mut Vec<String>) {
    let setting = |flag: &str, var: &str, default: Option<&str>| {
        Binary::flag_value(&c.args, flag)
            .map(str::to_owned)
            .or_else(|| env.get(var).cloned().flatten())
            .or_else(|| default.map(str::to_owned))
    };
    let listen = match subcommand {
        "serve" | "all" => setting("--listen", "REI_LISTEN", Some("127.0.0.1:8080")),
        "worker" => setting("--metrics-listen", "REI_METRICS_LISTEN", None),
        _ => None,
    };
    let listen = match listen.as_deref().map(str::parse::<SocketAddr>) {
        None => None,
        Some(Ok(addr)) => Some(addr),
        Some(Err(_)) => {
            p.push(format!("{what}: listen address {listen:?} is not host:port"));
            None
        }
    };
    if let Some(addr) = listen {
        if !addr.ip().is_unspecified() {
            p.push(format!("{what}: listens on {addr}: probes and Services reach only 0.0.0.0 or [::]"));
        }
        if !c.ports.iter().any(|port| port.container_port == addr.port()) {
            p.push(format!("{what}: listens on port {} but declares no such containerPort", addr.port()));
        }
    }
    for port in &c.ports {
        if listen.is_none_or(|a| a.port() != port.container_port) {
            p.push(format!(
                "{what}: port {} ({}) is not one `rei {subcommand}` listens on",
                port.name, port.container_port
            ));
        }
    }
    let probe_port = |probe: &Probe| match &probe.http_get.port {
        IntOrString::Int(n) => c.ports.iter().find(|port| i64::from(port.container_port) == *n),
        IntOrString::Str(name) => c.ports.iter().find(|port| &port.name == name),
    };
    let serves_ready = SERVES_READY.contains(&subcommand);
    for (kind, probe, path) in [
        ("livenessProbe", &c.liveness_probe, "/health/live"),
        ("startupProbe", &c.startup_probe, "/health/live"),
        ("readinessProbe", &c.readiness_probe, "/health/ready"),
    ] {
        let Some(probe) = probe else { continue };
        if probe.http_get.path != path {
            p.push(format!("{what}: {kind} asks {} instead of {path}", probe.http_get.path));
        }
        if probe_port(probe).is_none() {
            p.push(format!("{what}: {kind} port {:?} is not a port of the container", probe.http_get.port));
        }
        if kind == "readinessProbe" && !serves_ready {
            p.push(format!("{what}: `rei {subcommand}` serves no /health/ready for a readinessProbe"));
        }
    }
    if listen.is_some() && c.liveness_probe.is_none() {
        p.push(format!("{what}: it listens, so it needs a livenessProbe on /health/live"));
    }
    if serves_ready && c.readiness_probe.is_none() {
        p.push(format!("{what}: `rei {subcommand}` takes traffic, so it needs a readinessProbe on /health/ready"));
    }
}

/// Services select pods, and their target ports are ports of those pods.
fn services(r: &Rendering, p: &mut Vec<String>) {
    for (file, s) in services_of(r) {
        let what = format!("{file}: Service {}", s.metadata.name);
        let selected: Vec<&Deployment> = deployments(r)
            .map(|(_, d)| d)
            .filter(|d| selects(&s.spec.selector, &d.spec.template.metadata.labels))
            .collect();
        if selected.is_empty() {
            p.push(format!("{what}: selector {:?} selects no Deployment's pods", s.spec.selector));
        }
        for port in &s.spec.ports {
            for d in &selected {
                let declared =
                    d.spec.template.spec.containers.iter().flat_map(|c| &c.ports).any(|cp| match &port.target_port {
                        IntOrString::Int(n) => i64::from(cp.container_port) == *n,
                        IntOrString::Str(name) => &cp.name == name,
                    });
                if !declared {
                    p.push(format!(
                        "{what}: targetPort {:?} is no port of Deployment {}",
                        port.target_port, d.metadata.name
                    ));
                }
            }
        }
    }
}

/// A PodDisruptionBudget selects a Deployment with more replicas than it keeps (else no node could drain).
fn disruption_budgets(r: &Rendering, p: &mut Vec<String>) {
    for (file, o) in &r.objects {
        let Object::PodDisruptionBudget(b) = o else { continue };
        let what = format!("{file}: PodDisruptionBudget {}", b.metadata.name);
        let selected: Vec<&Deployment> = deployments(r)
            .map(|(_, d)| d)
            .filter(|d| selects(&b.spec.selector.match_labels, &d.spec.template.metadata.labels))
            .collect();
        if selected.is_empty() {
            p.push(format!("{what}: selects no Deployment's pods"));
        }
        match (&b.spec.min_available, &b.spec.max_unavailable) {
            (Some(IntOrString::Int(min)), None) => {
                for d in selected {
                    if d.spec.replicas.is_some_and(|n| i64::from(n) <= *min) {
                        p.push(format!(
                            "{what}: minAvailable {min} leaves Deployment {} nothing to evict",
                            d.metadata.name
                        ));
                    }
                }
            }
            (Some(_), None) | (None, Some(_)) => {}
            _ => p.push(format!("{what}: needs exactly one of minAvailable and maxUnavailable")),
        }
    }
}

/// Autoscalers target an existing Deployment that sets no replicas of its own, one autoscaler each, on a
/// metric the servers export.
fn autoscalers(r: &Rendering, cx: &Context<'_>, p: &mut Vec<String>) {
    let mut targets: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (file, o) in &r.objects {
        let (what, target, min, max) = match o {
            Object::ScaledObject(s) => {
                let what = format!("{file}: ScaledObject {}", s.metadata.name);
                let t = &s.spec.scale_target_ref;
                if t.kind.as_deref().is_some_and(|k| k != "Deployment")
                    || t.api_version.as_deref().is_some_and(|a| a != "apps/v1")
                {
                    p.push(format!("{what}: scaleTargetRef must be an apps/v1 Deployment"));
                }
                if s.spec.triggers.is_empty() {
                    p.push(format!("{what}: has no trigger"));
                }
                for trigger in &s.spec.triggers {
                    prometheus_trigger(&what, &trigger.trigger_type, &trigger.metadata, cx, p);
                }
                (what, t.name.as_str(), s.spec.min_replica_count, s.spec.max_replica_count)
            }
            Object::HorizontalPodAutoscaler(h) => {
                let what = format!("{file}: HorizontalPodAutoscaler {}", h.metadata.name);
                let t = &h.spec.scale_target_ref;
                if t.kind != "Deployment" || t.api_version != "apps/v1" {
                    p.push(format!("{what}: scaleTargetRef must be an apps/v1 Deployment"));
                }
                for metric in &h.spec.metrics {
                    let (name, target) = match (metric.metric_type.as_str(), &metric.external, &metric.object) {
                        ("External", Some(e), None) => (&e.metric.name, &e.target),
                        ("Object", None, Some(o)) => (&o.metric.name, &o.target),
                        (other, _, _) => {
                            p.push(format!("{what}: a metric of type {other} must carry exactly its own source"));
                            continue;
                        }
                    };
                    if !cx.binary.metrics.contains(name) {
                        p.push(format!("{what}: metric {name} is not one the servers export"));
                    }
                    match (target.target_type.as_str(), &target.value, &target.average_value) {
                        ("Value", Some(_), None) | ("AverageValue", None, Some(_)) => {}
                        (other, _, _) => p.push(format!("{what}: target type {other} needs its own value field")),
                    }
                }
                (what, t.name.as_str(), h.spec.min_replicas, h.spec.max_replicas)
            }
            _ => continue,
        };
        if min > max {
            p.push(format!("{what}: min replicas {min} above max {max}"));
        }
        match deployments(r).find(|(_, d)| d.metadata.name == target) {
            None => p.push(format!("{what}: targets no Deployment {target}")),
            Some((_, d)) if d.spec.replicas.is_some() => p.push(format!(
                "{what}: Deployment {target} sets replicas, which every apply would reset under the autoscaler"
            )),
            Some(_) => {}
        }
        targets.entry(target).or_default().push(what);
    }
    for (target, by) in targets.into_iter().filter(|(_, by)| by.len() > 1) {
        p.push(format!("Deployment {target} has two autoscalers, which fight over its replicas: {by:?}"));
    }
}

/// A KEDA Prometheus trigger: where, what (metrics the servers export), and a positive threshold.
fn prometheus_trigger(what: &str, kind: &str, metadata: &Map, cx: &Context<'_>, p: &mut Vec<String>) {
    if kind != "prometheus" {
        p.push(format!("{what}: trigger {kind} is not modelled (prometheus only)"));
        return;
    }
    for key in ["serverAddress", "query", "threshold"] {
        if !metadata.contains_key(key) {
            p.push(format!("{what}: the prometheus trigger needs {key}"));
        }
    }
    if metadata.get("threshold").and_then(|t| t.parse::<u64>().ok()).is_none_or(|t| t == 0) {
        p.push(format!("{what}: threshold must be a whole number above 0"));
    }
    let query = metadata.get("query").map_or("", String::as_str);
    let metrics = metric_names(query);
    if metrics.is_empty() {
        p.push(format!("{what}: query {query:?} reads no metric"));
    }
    for metric in metrics.iter().filter(|m| !cx.binary.metrics.contains(*m)) {
        p.push(format!("{what}: query reads {metric}, which the servers do not export"));
    }
}

/// The metric names a PromQL query selects (`name{…}`).
fn metric_names(query: &str) -> Vec<String> {
    query
        .match_indices('{')
        .filter_map(|(at, _)| {
            let before = &query[..at];
            let start =
                before.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).map_or(0, |i| i + 1);
            (start < at).then(|| before[start..].to_owned())
        })
        .filter(|name| !matches!(name.as_str(), "by" | "without"))
        .collect()
}

/// ServiceMonitors select a Service and scrape one of its ports at /metrics.
fn monitors(r: &Rendering, p: &mut Vec<String>) {
    for (file, o) in &r.objects {
        let Object::ServiceMonitor(m) = o else { continue };
        let what = format!("{file}: ServiceMonitor {}", m.metadata.name);
        let selected: Vec<&Service> = services_of(r)
            .map(|(_, s)| s)
            .filter(|s| selects(&m.spec.selector.match_labels, &s.metadata.labels))
            .collect();
        if selected.is_empty() {
            p.push(format!("{what}: selects no Service"));
        }
        for endpoint in &m.spec.endpoints {
            if endpoint.path.as_deref().unwrap_or("/metrics") != "/metrics" {
                p.push(format!("{what}: scrapes {:?}, not /metrics", endpoint.path));
            }
            for s in &selected {
                if !s.spec.ports.iter().any(|port| port.name == endpoint.port) {
                    p.push(format!("{what}: port {} is no port of Service {}", endpoint.port, s.metadata.name));
                }
            }
        }
    }
}

/// ConfigMaps given as environment hold only variables some role that gets them reads; a settings file in a
/// ConfigMap is one `rei config check` accepts.
fn config_maps(r: &Rendering, cx: &Context<'_>, roles: &[Role], p: &mut Vec<String>) {
    for (file, o) in &r.objects {
        let Object::ConfigMap(cm) = o else { continue };
        let what = format!("{file}: ConfigMap {}", cm.metadata.name);
        let consumers: Vec<&Role> = roles.iter().filter(|role| role.env_from.contains(&cm.metadata.name)).collect();
        for (key, value) in &cm.data {
            if key.ends_with(".toml") {
                if let Err(e) = cx.binary.config_check(key, value) {
                    p.push(format!("{what}: {key} is refused by `rei config check`: {e}"));
                }
                continue;
            }
            if consumers.is_empty() {
                continue;
            }
            if !consumers.iter().any(|role| cx.binary.reads(&role.subcommand, key)) {
                let names: Vec<&str> = consumers.iter().map(|role| role.subcommand.as_str()).collect();
                p.push(format!("{what}: {key} is read by none of the roles given it ({names:?})"));
            }
        }
    }
}

/// What must run once: one long poller per bot token (and never beside a webhook), one gc; servers more than
/// once, behind a Service and a disruption budget; workers under an autoscaler; a migration Job.
fn singletons(r: &Rendering, cx: &Context<'_>, roles: &[Role], p: &mut Vec<String>) {
    let runs = |sub: &str| -> Vec<&Deployment> {
        deployments(r)
            .map(|(_, d)| d)
            .filter(|d| d.spec.template.spec.containers.iter().any(|c| c.args.first().is_some_and(|a| a == sub)))
            .collect()
    };
    let once = |d: &Deployment, why: &str, p: &mut Vec<String>| {
        if d.spec.replicas != Some(1) || d.spec.strategy.strategy_type != "Recreate" {
            p.push(format!("Deployment {} must run one replica with strategy Recreate: {why}", d.metadata.name));
        }
    };
    let pollers = runs("bot");
    if pollers.len() > 1 {
        p.push(format!("{} Deployments poll Telegram; one bot token allows one poller", pollers.len()));
    }
    for d in &pollers {
        once(d, "Telegram hands a bot's updates to one getUpdates caller", p);
        let webhook = "TELEGRAM_WEBHOOK_URL";
        for role in
            roles.iter().filter(|role| role.env.contains_key(webhook) && cx.binary.reads(&role.subcommand, webhook))
        {
            p.push(format!(
                "{}: sets {webhook} while Deployment {} polls: long polling and a webhook exclude each other",
                role.workload, d.metadata.name
            ));
        }
    }
    for d in runs("gc") {
        once(d, "the maintenance singleton", p);
    }
    for d in runs("serve") {
        if d.spec.replicas.is_some_and(|n| n < 2) {
            p.push(format!("Deployment {} runs fewer than 2 servers", d.metadata.name));
        }
        let labels = &d.spec.template.metadata.labels;
        let covered = |f: &dyn Fn(&Object) -> Option<&Map>| {
            r.objects.iter().filter_map(|(_, o)| f(o)).any(|s| selects(s, labels))
        };
        if !covered(&|o| if let Object::Service(s) = o { Some(&s.spec.selector) } else { None }) {
            p.push(format!("Deployment {} has no Service", d.metadata.name));
        }
        if !covered(&|o| {
            if let Object::PodDisruptionBudget(b) = o { Some(&b.spec.selector.match_labels) } else { None }
        }) {
            p.push(format!("Deployment {} has no PodDisruptionBudget", d.metadata.name));
        }
    }
    for d in runs("worker") {
        let scaled = r.objects.iter().any(|(_, o)| match o {
            Object::ScaledObject(s) => s.spec.scale_target_ref.name == d.metadata.name,
            Object::HorizontalPodAutoscaler(h) => h.spec.scale_target_ref.name == d.metadata.name,
            _ => false,
        });
        if !scaled {
            p.push(format!("Deployment {} has no autoscaler", d.metadata.name));
        }
    }
    let migrate = |c: &Container| c.args.first().is_some_and(|a| a == "migrate");
    let migrates = r
        .objects
        .iter()
        .any(|(_, o)| matches!(o, Object::Job(j) if j.spec.template.spec.containers.iter().any(migrate)));
    if !migrates {
        p.push("no Job runs `rei migrate`".to_owned());
    }
}

/// The Secret template's rules: placeholders only, each key read by some container of some rendering, the
/// database a PostgreSQL server.
pub(crate) fn check_secret_template(secret: &Secret, used: &BTreeSet<String>) -> Vec<String> {
    let mut p = Vec::new();
    let what = format!("Secret {}", secret.metadata.name);
    for (key, value) in &secret.string_data {
        if !value.contains("CHANGE_ME") {
            p.push(format!("{what}: {key} must be a placeholder with CHANGE_ME, never a real value"));
        }
        if !used.contains(key) {
            p.push(format!("{what}: no container reads {key}"));
        }
    }
    if !secret.string_data.get("DATABASE_URL").is_some_and(|u| u.starts_with("postgres://")) {
        p.push(format!("{what}: DATABASE_URL must be PostgreSQL: pods on several nodes share no SQLite file"));
    }
    p
}

/// The Secret keys the containers of `r` read.
pub(crate) fn secret_keys(r: &Rendering) -> BTreeSet<String> {
    r.objects
        .iter()
        .flat_map(|(_, o)| match o {
            Object::Deployment(d) => d.spec.template.spec.containers.clone(),
            Object::Job(j) => j.spec.template.spec.containers.clone(),
            _ => Vec::new(),
        })
        .flat_map(|c| c.env)
        .filter_map(|v| v.value_from.and_then(|f| f.secret_key_ref).map(|s| s.key))
        .collect()
}
