//! The deployment files, checked against the real `rei` binary: the Dockerfile and `.dockerignore`, every YAML
//! document under deploy/k8s (parsed into typed schemas that refuse unknown and missing fields, then rendered as
//! kustomize would and cross-checked), and the systemd units under deploy/systemd. Nothing here reaches a
//! cluster, a registry or the network: docker is not needed, the checks are static plus the binary's own
//! `--help` and `config check`. The tests after the first few break one file one way and prove the checker
//! says so. A test binary of its own beside `cli.rs`: it needs no database and runs in about a second, so
//! `cargo test -p rei-bin --test deploy` checks a change to the deployment alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[path = "deploy/binary.rs"]
mod binary;
#[path = "deploy/check.rs"]
mod check;
#[path = "deploy/files.rs"]
mod files;
#[path = "deploy/kube.rs"]
mod kube;
#[path = "deploy/runbooks.rs"]
mod runbooks;

use binary::Binary;
use check::{Context, Rendering};
use kube::{ConfigMapPatch, Kustomization, Object, Secret};

/// The repository's root.
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("rei-bin is inside the workspace").to_owned()
}

const K8S: &str = "deploy/k8s";
const SYSTEMD: &str = "deploy/systemd";

/// The renderings checked: the default (Telegram on serve's webhook), long polling, and the plain HPA in place
/// of KEDA's ScaledObject.
const RENDERINGS: &[Variant] = &[
    Variant { name: "deploy/k8s", components: &[], swaps: &[] },
    Variant { name: "deploy/k8s + polling", components: &["polling"], swaps: &[] },
    Variant {
        name: "deploy/k8s with worker-hpa.example.yaml",
        components: &[],
        swaps: &[("worker-scaledobject.yaml", "worker-hpa.example.yaml")],
    },
];

/// One way to apply deploy/k8s: the base with components added and resources swapped for their alternatives.
struct Variant {
    name: &'static str,
    components: &'static [&'static str],
    /// (listed, instead): the resource listed, and the file applied in its place.
    swaps: &'static [(&'static str, &'static str)],
}

/// Paths the image's build reads, which `.dockerignore` must keep.
const BUILD_READS: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    ".cargo/config.toml",
    "README.md",
    "src/lib.rs",
    "migrations/postgres/0001_ledger.sql",
    "migrations/sqlite/0001_ledger.sql",
    "rei-bin/rei.toml",
    "rei-bin/src/main.rs",
    "rei-core/src/lib.rs",
    "rei-adapters/src/lib.rs",
    "rei-adapters/src/redis/lua/ack.lua",
    "rei-http/src/lib.rs",
    "rei-http/src/console/console.css",
    "rei-bot/src/lib.rs",
    "examples/billing.rs",
];

/// The files the checks read, by path from the repository's root; the tests edit them in memory.
#[derive(Clone)]
struct Files(BTreeMap<String, String>);

impl Files {
    fn load() -> Files {
        let root = repo();
        let mut files = BTreeMap::new();
        for path in ["Dockerfile", ".dockerignore", "Cargo.toml"] {
            files.insert(path.to_owned(), read(&root.join(path)));
        }
        walk(&root, Path::new("deploy"), &mut files);
        Files(files)
    }

    /// The file with the first `from` replaced by `to`; `from` must be there, so an edit cannot miss silently.
    fn edit(mut self, file: &str, from: &str, to: &str) -> Files {
        let text = self.0.get_mut(file).unwrap_or_else(|| panic!("no file {file}"));
        assert!(text.contains(from), "{file} has no {from:?}");
        *text = text.replacen(from, to, 1);
        self
    }

    fn add(mut self, file: &str, text: &str) -> Files {
        self.0.insert(file.to_owned(), text.to_owned());
        self
    }

    fn get(&self, file: &str) -> Result<&str, String> {
        self.0.get(file).map(String::as_str).ok_or_else(|| format!("{file}: no such file"))
    }

    /// The files directly in `dir` whose names end with `suffix`, by name.
    fn in_dir(&self, dir: &str, suffix: &str) -> Vec<String> {
        let prefix = format!("{dir}/");
        self.0
            .keys()
            .filter_map(|path| path.strip_prefix(&prefix))
            .filter(|name| !name.contains('/') && name.ends_with(suffix))
            .map(str::to_owned)
            .collect()
    }

    /// The folders under `dir` (itself included) that hold a YAML file.
    fn yaml_dirs(&self, dir: &str) -> BTreeSet<String> {
        self.0
            .keys()
            .filter(|path| path.starts_with(&format!("{dir}/")) && path.ends_with(".yaml"))
            .filter_map(|path| path.rsplit_once('/').map(|(d, _)| d.to_owned()))
            .collect()
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(root.join(dir)).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let name = entry.expect("a directory entry").file_name();
        let relative = dir.join(&name);
        if root.join(&relative).is_dir() {
            walk(root, &relative, out);
        } else {
            let key = relative.to_str().expect("a UTF-8 path").replace('\\', "/");
            out.insert(key, read(&root.join(&relative)));
        }
    }
}

/// The `kustomization.yaml` of `dir`.
fn kustomization(files: &Files, dir: &str) -> Result<Kustomization, String> {
    let path = format!("{dir}/kustomization.yaml");
    let mut documents = kube::documents(files.get(&path)?).map_err(|e| format!("{path}: {e}"))?;
    if documents.len() != 1 {
        return Err(format!("{path}: expected one document, found {}", documents.len()));
    }
    let k: Kustomization = kube::typed(documents.remove(0)).map_err(|e| format!("{path}: {e}"))?;
    if !kube::KUSTOMIZE_KINDS.contains(&(k.api_version.as_str(), k.kind.as_str())) {
        return Err(format!("{path}: {} {} is not a kustomization", k.api_version, k.kind));
    }
    Ok(k)
}

fn objects(files: &Files, path: &str) -> Result<Vec<(String, Object)>, String> {
    let parsed = kube::parse_objects(files.get(path)?).map_err(|e| format!("{path}: {e}"))?;
    Ok(parsed.into_iter().map(|o| (path.to_owned(), o)).collect())
}

/// What kustomize builds from `dir` with `components` added and each `(listed, instead)` resource swapped.
fn render(files: &Files, name: &str, components: &[&str], swaps: &[(&str, &str)]) -> Result<Rendering, String> {
    let base = kustomization(files, K8S)?;
    if base.kind != "Kustomization" {
        return Err(format!("{K8S}/kustomization.yaml must be a Kustomization"));
    }
    let mut rendered = Vec::new();
    for resource in &base.resources {
        let resource =
            swaps.iter().find(|(listed, _)| listed == resource).map_or(resource.as_str(), |(_, instead)| instead);
        rendered.extend(objects(files, &format!("{K8S}/{resource}"))?);
    }
    for component in base.components.iter().map(String::as_str).chain(components.iter().copied()) {
        let dir = format!("{K8S}/{component}");
        let c = kustomization(files, &dir)?;
        if c.kind != "Component" {
            return Err(format!("{dir}/kustomization.yaml must be a Component"));
        }
        for resource in &c.resources {
            rendered.extend(objects(files, &format!("{dir}/{resource}"))?);
        }
        for patch in &c.patches {
            let path = format!("{dir}/{}", patch.path);
            apply(&mut rendered, &path, files.get(&path)?)?;
        }
    }
    Ok(Rendering { name: name.to_owned(), objects: rendered, images: base.images, namespace: base.namespace })
}

/// A ConfigMap patch applied as a strategic merge: null removes a key, a value sets it.
fn apply(objects: &mut [(String, Object)], path: &str, text: &str) -> Result<(), String> {
    for document in kube::documents(text).map_err(|e| format!("{path}: {e}"))? {
        let patch: ConfigMapPatch = kube::typed(document).map_err(|e| format!("{path}: {e}"))?;
        if (patch.api_version.as_str(), patch.kind.as_str()) != ("v1", "ConfigMap") {
            return Err(format!("{path}: only ConfigMap patches are modelled, not {}", patch.kind));
        }
        let target = objects.iter_mut().find_map(|(_, o)| match o {
            Object::ConfigMap(c) if c.metadata.name == patch.metadata.name => Some(c),
            _ => None,
        });
        let Some(target) = target else { return Err(format!("{path}: patches no ConfigMap {}", patch.metadata.name)) };
        for (key, value) in patch.data {
            match value {
                Some(value) => target.data.insert(key, value),
                None => target.data.remove(&key),
            };
        }
    }
    Ok(())
}

/// Every problem of the Dockerfile and its ignore file; the image's facts when it has them.
fn check_image(files: &Files, binary: &Binary) -> (Option<files::ImageFacts>, Vec<String>) {
    let manifest: toml::Table = toml::from_str(files.get("Cargo.toml").unwrap_or("")).expect("the workspace manifest");
    let members: Vec<String> = manifest["workspace"]["members"]
        .as_array()
        .expect("workspace.members")
        .iter()
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect();
    let mut problems = Vec::new();
    let facts = match files.get("Dockerfile").map(|d| files::check_dockerfile(d, binary, &members)) {
        Ok(Ok(facts)) => Some(facts),
        Ok(Err(p)) => {
            problems.extend(p);
            None
        }
        Err(e) => {
            problems.push(e);
            None
        }
    };
    match files.get(".dockerignore") {
        Ok(text) => problems.extend(files::check_dockerignore(text, BUILD_READS)),
        Err(e) => problems.push(e),
    }
    (facts, problems)
}

/// Every YAML file parses into its schema, and each kustomization lists exactly the files beside it (but the
/// `*.example.yaml` ones, which are not applied).
fn check_listings(files: &Files) -> Vec<String> {
    let mut p = Vec::new();
    let mut patches = BTreeSet::new();
    for dir in files.yaml_dirs(K8S) {
        let k = match kustomization(files, &dir) {
            Ok(k) => k,
            Err(e) => {
                p.push(e);
                continue;
            }
        };
        let mut listed: BTreeSet<String> = k.resources.iter().cloned().collect();
        for patch in &k.patches {
            patches.insert(format!("{dir}/{}", patch.path));
            listed.insert(patch.path.clone());
        }
        let present: BTreeSet<String> = files
            .in_dir(&dir, ".yaml")
            .into_iter()
            .filter(|name| name != "kustomization.yaml" && !name.ends_with(".example.yaml"))
            .collect();
        for missing in listed.difference(&present) {
            p.push(format!(
                "{dir}/kustomization.yaml lists {missing}, which is not a file beside it (or is an example)"
            ));
        }
        for unlisted in present.difference(&listed) {
            p.push(format!("{dir}/{unlisted} is not listed in its kustomization.yaml"));
        }
        for component in &k.components {
            if files.get(&format!("{dir}/{component}/kustomization.yaml")).is_err() {
                p.push(format!("{dir}/kustomization.yaml: component {component} has no kustomization.yaml"));
            }
        }
    }
    for (path, text) in &files.0 {
        if !path.starts_with(&format!("{K8S}/")) || !path.ends_with(".yaml") || path.ends_with("/kustomization.yaml") {
            continue;
        }
        let parsed = if patches.contains(path) {
            kube::documents(text)
                .and_then(|docs| docs.into_iter().try_for_each(|d| kube::typed::<ConfigMapPatch>(d).map(drop)))
        } else {
            kube::parse_objects(text).map(drop)
        };
        if let Err(e) = parsed {
            p.push(format!("{path}: {e}"));
        }
    }
    p
}

/// The Secret template.
fn secret(files: &Files) -> Result<Secret, String> {
    let path = format!("{K8S}/secret.example.yaml");
    match &objects(files, &path)?[..] {
        [(_, Object::Secret(s))] => Ok(s.clone()),
        _ => Err(format!("{path}: must be one Secret")),
    }
}

/// Every problem of the manifests: listings, schemas, and each rendering's rules.
fn check_manifests(files: &Files, binary: &Binary, image: &files::ImageFacts) -> Vec<String> {
    let mut p = check_listings(files);
    let secret = match secret(files) {
        Ok(s) => s,
        Err(e) => return [p, vec![e]].concat(),
    };
    let cx = Context { binary, secret: &secret, entrypoint: &image.entrypoint, uid: image.uid };
    let mut used = BTreeSet::new();
    for Variant { name, components, swaps } in RENDERINGS {
        match render(files, name, components, swaps) {
            Ok(r) => {
                p.extend(check::check(&r, &cx));
                used.extend(check::secret_keys(&r));
            }
            Err(e) => p.push(format!("{name}: {e}")),
        }
    }
    p.extend(check::check_secret_template(&secret, &used));
    p
}

/// Every problem of the systemd units and their env file.
fn check_units(files: &Files, binary: &Binary) -> Vec<String> {
    let mut p = Vec::new();
    let services = files.in_dir(SYSTEMD, ".service");
    let mut subcommands = Vec::new();
    for name in &services {
        let (subcommand, problems) =
            files::check_service(name, files.get(&format!("{SYSTEMD}/{name}")).unwrap_or(""), binary);
        p.extend(problems);
        subcommands.extend(subcommand);
    }
    for name in files.in_dir(SYSTEMD, ".timer") {
        p.extend(files::check_timer(&name, files.get(&format!("{SYSTEMD}/{name}")).unwrap_or(""), &services));
    }
    let main = files::ini(files.get(&format!("{SYSTEMD}/rei.service")).unwrap_or(""));
    let writable: Vec<&str> = main
        .get("Service")
        .into_iter()
        .flatten()
        .filter(|(k, _)| k == "ReadWritePaths")
        .flat_map(|(_, v)| v.split_whitespace())
        .collect();
    if !subcommands.iter().any(|s| s == "all") {
        // The env file is held to the units' commands: without `rei all` there is nothing to hold it to.
        p.push("rei.service must run `rei all`, the single-machine role".to_owned());
        return p;
    }
    let env = format!("{SYSTEMD}/rei.env.example");
    match files.get(&env) {
        Err(e) => p.push(e),
        Ok(text) => {
            for (name, value) in files::env_file_names(text) {
                if !subcommands.iter().any(|s| binary.reads(s, &name)) {
                    p.push(format!("{env}: {name} is read by none of the units' commands {subcommands:?}"));
                }
                if let Some(path) = value.strip_prefix("sqlite://").filter(|_| name == "DATABASE_URL")
                    && !writable.iter().any(|w| files::under(path, w))
                {
                    p.push(format!("{env}: the database {path} is outside rei.service's ReadWritePaths"));
                }
            }
        }
    }
    p
}

/// Every problem of every deployment file.
fn check_all(files: &Files) -> Vec<String> {
    let binary = Binary::real();
    let (image, mut p) = check_image(files, binary);
    // The manifests are checked against the image's user and entrypoint; a broken Dockerfile is reported
    // above, and the manifests are then held to the values the brief fixes.
    let fallback = files::ImageFacts { entrypoint: "/usr/local/bin/rei".to_owned(), uid: 10_001 };
    p.extend(check_manifests(files, binary, image.as_ref().unwrap_or(&fallback)));
    p.extend(check_units(files, binary));
    // A problem seen in several renderings is told once per rendering, but never twice in one.
    let mut seen = BTreeSet::new();
    p.retain(|problem| seen.insert(problem.clone()));
    p
}

fn assert_clean(problems: &[String]) {
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n"));
}

/// The problems of the shipped files after `edit`, which must include one containing `expected`.
fn refused(files: Files, expected: &str) {
    let problems = check_all(&files);
    assert!(
        problems.iter().any(|p| p.contains(expected)),
        "expected a problem containing {expected:?}, got:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_checker_knows_the_binary() {
    // Proves the checker's view of the binary is not empty: the roles, their flags and variables, the variables
    // read outside clap and the queue metrics are all found, so the rules below compare with something real.
    let b = Binary::real();
    for role in ["migrate", "serve", "worker", "gc", "bot", "all", "config check"] {
        assert!(b.subcommands.contains_key(role), "{role}: {:?}", b.subcommands.keys());
    }
    assert!(b.subcommands["serve"].flags.contains("--listen"));
    assert!(b.subcommands["worker"].flags.contains("--metrics-listen"));
    assert!(b.subcommands["serve"].env.contains("DATABASE_URL") && b.subcommands["serve"].env.contains("BOT_TOKEN"));
    assert!(b.subcommands["gc"].env.contains("REDIS_URL") && !b.subcommands["gc"].env.contains("NANO_BANANA_API_KEY"));
    assert!(b.source_env.contains("REI_LOG") && b.source_env.contains("REDIS_HOST"), "{:?}", b.source_env);
    assert!(b.metrics.contains("queue_length") && b.metrics.contains("queue_in_flight"), "{:?}", b.metrics);
    assert!(b.check_args(&["worker".to_owned(), "--concurrency".to_owned(), "0".to_owned()]).is_err());
}

#[test]
fn the_dockerfile_builds_locked_in_stages_and_runs_as_a_user() {
    // Proves the Dockerfile has a Rust build stage with `cargo build --release --locked -p rei-bin` after a
    // dependency layer of every workspace manifest, a runtime stage with a numeric non-root USER and the exec
    // form ENTRYPOINT, a CMD the binary takes on the EXPOSEd port, and a .dockerignore that keeps the sources.
    let (facts, problems) = check_image(&Files::load(), Binary::real());
    assert_clean(&problems);
    let facts = facts.expect("the image's facts");
    assert_eq!((facts.entrypoint.as_str(), facts.uid), ("/usr/local/bin/rei", 10_001));
}

#[test]
fn every_manifest_fits_its_schema_and_the_binary() {
    // Proves every YAML document under deploy/k8s parses into its typed schema, each kustomization lists exactly
    // its files, and each rendering (webhook, polling, plain HPA) keeps every rule of check.rs.
    let files = Files::load();
    let binary = Binary::real();
    let (image, problems) = check_image(&files, binary);
    assert_clean(&problems);
    assert_clean(&check_manifests(&files, binary, &image.expect("the image's facts")));
    // What each rendering holds, so that the rules above had objects to hold to.
    let kinds = |components: &[&str]| -> Vec<String> {
        let r = render(&files, "", components, &[]).expect("a rendering");
        r.objects.iter().map(|(_, o)| format!("{} {}", o.kind(), o.meta().name)).collect()
    };
    let base = kinds(&[]);
    for object in [
        "Namespace rei",
        "ConfigMap rei-settings",
        "ConfigMap rei-env",
        "Job rei-migrate",
        "Deployment rei-serve",
        "Service rei-serve",
        "PodDisruptionBudget rei-serve",
        "Deployment rei-worker",
        "Service rei-worker-metrics",
        "ScaledObject rei-worker",
        "Deployment rei-gc",
        "ServiceMonitor rei-serve",
        "ServiceMonitor rei-worker",
    ] {
        assert!(base.contains(&object.to_owned()), "{object} missing from {base:?}");
    }
    assert!(!base.contains(&"Deployment rei-bot".to_owned()), "the webhook is the default: {base:?}");
    assert!(kinds(&["polling"]).contains(&"Deployment rei-bot".to_owned()));
    let polling = render(&files, "", &["polling"], &[]).expect("the polling rendering");
    let env = polling.objects.iter().find_map(|(_, o)| match o {
        Object::ConfigMap(c) if c.metadata.name == "rei-env" => Some(c),
        _ => None,
    });
    assert!(!env.expect("rei-env").data.contains_key("TELEGRAM_WEBHOOK_URL"), "the polling patch removes the webhook");
}

#[test]
fn the_systemd_units_run_what_the_binary_accepts() {
    // Proves rei.service runs `rei all` with flags the binary takes, hardened and writing only under its
    // ReadWritePaths, the backup unit names `rei backup --to` (checked against the binary once it has it), the
    // timer starts it hourly, and rei.env.example names only variables the units' commands read.
    assert_clean(&check_units(&Files::load(), Binary::real()));
    let timer = files::ini(&Files::load().0[&format!("{SYSTEMD}/rei-backup.timer")]);
    assert_eq!(timer["Timer"].iter().find(|(k, _)| k == "OnCalendar").map(|(_, v)| v.as_str()), Some("hourly"));
}

#[test]
fn quantities_parse_as_kubernetes_reads_them() {
    // Proves the resource quantities compare in the units Kubernetes means.
    assert_eq!(check::millicores("250m"), Some(250));
    assert_eq!(check::millicores("1"), Some(1000));
    assert_eq!(check::millicores("0.5"), Some(500));
    assert_eq!(check::bytes("64Mi"), Some(64 << 20));
    assert_eq!(check::bytes("2Gi"), Some(2 << 30));
    assert_eq!(check::bytes("512M"), Some(512_000_000));
    assert_eq!(check::bytes("lots"), None);
}

#[test]
fn a_misspelt_field_is_refused() {
    // Proves a field the schema does not know is an error naming it, not a probe silently dropped.
    refused(Files::load().edit("deploy/k8s/serve.yaml", "readinessProbe:", "readinesProbe:"), "readinesProbe");
}

#[test]
fn a_missing_required_field_is_refused() {
    // Proves a required field left out is an error naming it.
    let files = Files::load().edit(
        "deploy/k8s/gc.yaml",
        "            runAsUser: 10001\n            runAsGroup: 10001\n            readOnlyRootFilesystem",
        "            runAsGroup: 10001\n            readOnlyRootFilesystem",
    );
    refused(files, "missing field `runAsUser`");
}

#[test]
fn an_unknown_api_version_is_refused() {
    // Proves an (apiVersion, kind) pair outside the known ones is refused.
    refused(
        Files::load().edit("deploy/k8s/gc.yaml", "apiVersion: apps/v1", "apiVersion: extensions/v1beta1"),
        "not a known pair",
    );
}

#[test]
fn a_service_that_selects_nothing_is_refused() {
    // Proves a Service whose selector matches no pods is caught.
    let files = Files::load().edit(
        "deploy/k8s/serve.yaml",
        "  selector:\n    app.kubernetes.io/name: rei\n    app.kubernetes.io/component: serve\n  ports:",
        "  selector:\n    app.kubernetes.io/name: rei\n    app.kubernetes.io/component: server\n  ports:",
    );
    refused(files, "selects no Deployment's pods");
}

#[test]
fn a_selector_that_misses_its_own_pods_is_refused() {
    // Proves a Deployment whose selector does not match its template's labels is caught.
    let files = Files::load().edit(
        "deploy/k8s/gc.yaml",
        "    matchLabels:\n      app.kubernetes.io/name: rei\n      app.kubernetes.io/component: gc\n",
        "    matchLabels:\n      app.kubernetes.io/name: rei\n      app.kubernetes.io/component: collector\n",
    );
    refused(files, "does not match its pod labels");
}

#[test]
fn a_flag_the_binary_lacks_is_refused() {
    // Proves every --flag of a container must be one `rei <role> --help` lists.
    refused(
        Files::load().edit("deploy/k8s/worker.yaml", "\"--metrics-listen\"", "\"--metric-listen\""),
        "has no flag --metric-listen",
    );
}

#[test]
fn a_value_the_binary_refuses_is_refused() {
    // Proves the binary itself parses each container's arguments: a concurrency of 0 is out of its range.
    refused(
        Files::load().edit("deploy/k8s/worker.yaml", "\"--concurrency\", \"8\"", "\"--concurrency\", \"0\""),
        "is refused",
    );
}

#[test]
fn a_subcommand_the_binary_lacks_is_refused() {
    // Proves a container must run a subcommand the binary has.
    refused(Files::load().edit("deploy/k8s/gc.yaml", "args: [\"gc\",", "args: [\"collect\","), "no such subcommand");
}

#[test]
fn a_container_that_may_run_as_root_is_refused() {
    // Proves runAsNonRoot false is caught.
    refused(
        Files::load().edit("deploy/k8s/gc.yaml", "            runAsNonRoot: true", "            runAsNonRoot: false"),
        "runAsNonRoot must be true",
    );
}

#[test]
fn a_variable_the_role_does_not_read_is_refused() {
    // Proves a variable set on a container must be one its role reads: `rei gc` calls no provider.
    let key = [
        "          env:",
        "            - name: NANO_BANANA_API_KEY",
        "              valueFrom:",
        "                secretKeyRef:",
        "                  name: rei-secrets",
        "                  key: NANO_BANANA_API_KEY",
        "",
    ]
    .join("\n");
    let files = Files::load().edit("deploy/k8s/gc.yaml", "          env:\n", &key);
    refused(files, "`rei gc` does not read NANO_BANANA_API_KEY");
}

#[test]
fn a_secret_read_under_another_name_is_refused() {
    // Proves a variable must come from the Secret's key of the same name (DATABASE_URL from REDIS_URL is a bug).
    let files = Files::load().edit(
        "deploy/k8s/serve.yaml",
        "name: rei-secrets\n                  key: DATABASE_URL",
        "name: rei-secrets\n                  key: REDIS_URL",
    );
    refused(files, "DATABASE_URL is read from the Secret's key REDIS_URL");
}

#[test]
fn a_liveness_probe_on_readiness_is_refused() {
    // Proves liveness must ask /health/live: a database outage must not restart every server.
    refused(
        Files::load().edit("deploy/k8s/serve.yaml", "path: /health/live", "path: /health/ready"),
        "livenessProbe asks /health/ready",
    );
}

#[test]
fn a_probe_on_a_port_the_container_lacks_is_refused() {
    // Proves a probe's port must be one the container declares.
    refused(
        Files::load().edit("deploy/k8s/worker.yaml", "              port: metrics\n", "              port: http\n"),
        "livenessProbe port Str(\"http\") is not a port of the container",
    );
}

#[test]
fn a_server_on_loopback_is_refused() {
    // Proves a server listening on 127.0.0.1 (unreachable by probes and Services) is caught.
    refused(Files::load().edit("deploy/k8s/serve.yaml", "0.0.0.0:8080", "127.0.0.1:8080"), "listens on 127.0.0.1:8080");
}

#[test]
fn a_budget_that_blocks_every_drain_is_refused() {
    // Proves a PodDisruptionBudget keeping every replica is caught.
    refused(
        Files::load().edit("deploy/k8s/serve.yaml", "minAvailable: 1", "minAvailable: 2"),
        "leaves Deployment rei-serve nothing to evict",
    );
}

#[test]
fn two_autoscalers_on_the_workers_are_refused() {
    // Proves listing the HPA beside KEDA's ScaledObject is caught (and the example listed, too).
    let files = Files::load().edit(
        "deploy/k8s/kustomization.yaml",
        "  - worker-scaledobject.yaml\n",
        "  - worker-scaledobject.yaml\n  - worker-hpa.example.yaml\n",
    );
    refused(files.clone(), "has two autoscalers");
    refused(files, "lists worker-hpa.example.yaml, which is not a file beside it (or is an example)");
}

#[test]
fn replicas_under_an_autoscaler_are_refused() {
    // Proves an autoscaled Deployment may not set replicas (each apply would reset the autoscaler's choice).
    let files = Files::load().edit(
        "deploy/k8s/worker.yaml",
        "spec:\n  revisionHistoryLimit",
        "spec:\n  replicas: 3\n  revisionHistoryLimit",
    );
    refused(files, "sets replicas");
}

#[test]
fn an_autoscaler_on_a_metric_nobody_exports_is_refused() {
    // Proves the autoscaler's query must read a metric the servers export.
    refused(
        Files::load().edit("deploy/k8s/worker-scaledobject.yaml", "(queue_length{namespace", "(queue_depth{namespace"),
        "queue_depth, which the servers do not export",
    );
}

#[test]
fn a_second_poller_is_refused() {
    // Proves the long-polling bot must be one replica with Recreate: one poller per bot token.
    refused(
        Files::load().edit("deploy/k8s/polling/bot.yaml", "replicas: 1", "replicas: 2"),
        "must run one replica with strategy Recreate",
    );
}

#[test]
fn polling_beside_a_webhook_is_refused() {
    // Proves the polling component must remove the webhook URL: `rei serve` would set the webhook again.
    refused(
        Files::load().edit("deploy/k8s/polling/kustomization.yaml", "patches:\n  - path: no-webhook.yaml\n", ""),
        "long polling and a webhook exclude each other",
    );
}

#[test]
fn a_settings_file_the_binary_refuses_is_refused() {
    // Proves the settings file in the ConfigMap is checked by `rei config check`.
    refused(
        Files::load().edit(
            "deploy/k8s/configmap.yaml",
            "margin_floor_percent = 20",
            "margin_floor_percent = \"twenty\"",
        ),
        "refused by `rei config check`",
    );
}

#[test]
fn a_request_above_its_limit_is_refused() {
    // Proves resource requests must fit under their limits.
    refused(
        Files::load().edit("deploy/k8s/worker.yaml", "memory: 512Mi", "memory: 4Gi"),
        "memory request 4Gi is above its limit 2Gi",
    );
}

#[test]
fn a_grace_cut_short_by_the_kubelet_is_refused() {
    // Proves the pod's termination grace must outlast the worker's own grace.
    refused(
        Files::load().edit(
            "deploy/k8s/worker.yaml",
            "terminationGracePeriodSeconds: 60",
            "terminationGracePeriodSeconds: 30",
        ),
        "must exceed --grace-seconds 50",
    );
}

#[test]
fn an_unlisted_or_missing_manifest_is_refused() {
    // Proves a kustomization must list exactly the files beside it.
    refused(
        Files::load().add("deploy/k8s/extra.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n"),
        "extra.yaml is not listed",
    );
    refused(
        Files::load().edit("deploy/k8s/kustomization.yaml", "  - gc.yaml\n", "  - gc.yaml\n  - missing.yaml\n"),
        "missing.yaml: no such file",
    );
}

#[test]
fn a_real_value_in_the_secret_template_is_refused() {
    // Proves the Secret template holds placeholders only.
    refused(
        Files::load().edit(
            "deploy/k8s/secret.example.yaml",
            "NANO_BANANA_API_KEY: CHANGE_ME",
            "NANO_BANANA_API_KEY: AIzaSyReal",
        ),
        "NANO_BANANA_API_KEY must be a placeholder",
    );
}

#[test]
fn a_unit_flag_the_binary_lacks_is_refused() {
    // Proves rei.service's ExecStart is checked against `rei all --help`.
    refused(Files::load().edit("deploy/systemd/rei.service", "--assets-dir", "--asset-dir"), "has no flag --asset-dir");
}

#[test]
fn a_unit_writing_outside_its_paths_is_refused() {
    // Proves a path the unit writes must lie under its ReadWritePaths (ProtectSystem=strict).
    refused(
        Files::load().edit(
            "deploy/systemd/rei.service",
            "--assets-dir /var/lib/rei/assets",
            "--assets-dir /srv/rei-assets",
        ),
        "outside ReadWritePaths",
    );
}

#[test]
fn the_backup_unit_takes_only_the_agreed_flags() {
    // Proves `rei backup` is held to its agreed `--to` before the binary has it, and to its --help after.
    let expected =
        if Binary::real().subcommands.contains_key("backup") { "has no flag --into" } else { "agreed flags" };
    refused(Files::load().edit("deploy/systemd/rei-backup.service", "--to", "--into"), expected);
}

#[test]
fn an_unhardened_unit_is_refused() {
    // Proves the hardening keys are required.
    refused(
        Files::load().edit("deploy/systemd/rei.service", "ProtectSystem=strict", "ProtectSystem=full"),
        "ProtectSystem= must be strict",
    );
}

#[test]
fn a_single_stage_dockerfile_is_refused() {
    // Proves the Dockerfile must build in one stage and run in another.
    refused(Files::load().edit("Dockerfile", "FROM debian:bookworm-slim", ""), "must be multi-stage");
}

#[test]
fn a_root_image_is_refused() {
    // Proves the image's USER must be a numeric non-root uid.
    refused(Files::load().edit("Dockerfile", "USER 10001:10001", "USER root"), "numeric non-root uid");
}

#[test]
fn an_unlocked_build_is_refused() {
    // Proves every cargo build in the Dockerfile uses Cargo.lock as it is.
    refused(
        Files::load().edit(
            "Dockerfile",
            "cargo build --release --locked -p rei-bin",
            "cargo build --release -p rei-bin",
        ),
        "lacks --locked",
    );
}

#[test]
fn an_ignore_file_that_hides_the_lock_file_is_refused() {
    // Proves .dockerignore may not leave out what the build reads.
    refused(Files::load().edit(".dockerignore", "target/\n", "target/\nCargo.lock\n"), "leaves out Cargo.lock");
}

#[test]
fn every_command_and_link_of_the_runbooks_works() {
    // Proves each runbook's `rei` lines are taken by the binary as written, its scripts and crates exist, and its
    // links resolve; and that the alert rules' runbook links name headings the runbook has.
    let binary = Binary::real();
    let dir = repo().join("docs/runbooks");
    let mut all = Vec::new();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("docs/runbooks") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            let name = path.file_name().expect("name").to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).expect("read");
            all.extend(runbooks::problems(binary, &repo(), &name, &text));
            names.push(name);
        }
    }
    names.sort();
    assert_eq!(names, ["disaster-recovery.md", "onboarding.md", "payments-incident.md"]);
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/rules/rei-slo.yml")).expect("rules");
    let recovery = std::fs::read_to_string(dir.join("disaster-recovery.md")).expect("runbook");
    for (at, _) in rules.match_indices("docs/runbooks/disaster-recovery.md#") {
        let anchor: String = rules[at + 35..].chars().take_while(|c| c.is_alphanumeric() || *c == '-').collect();
        if !recovery.lines().filter(|l| l.starts_with('#')).any(|l| runbooks::slug(l) == anchor) {
            all.push(format!("rei-slo.yml links #{anchor}, which disaster-recovery.md does not have"));
        }
    }
    assert!(all.is_empty(), "{}", all.join("\n"));
}

#[test]
fn a_runbook_command_the_binary_does_not_take_is_refused() {
    let binary = Binary::real();
    let bad =
        "```sh\nrei backup --database-url sqlite://x.db --into /tmp\nscripts/nothing-here\n```\n[x](nowhere.md)\n";
    let found = runbooks::problems(binary, &repo(), "bad.md", bad);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found[0].contains("--into"), "{found:?}");
    let good = "```sh\nrei backup --database-url sqlite://x.db --to /tmp\n```\n";
    assert!(runbooks::problems(binary, &repo(), "good.md", good).is_empty());
}
