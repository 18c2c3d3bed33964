//! What operators install: the systemd unit (`deploy/fastlane.service`)
//! is one systemd accepts, and stays hardened. systemd is not PID 1 on the
//! machines the tests run on, so the unit is checked offline
//! (`systemd-analyze verify` and `security --offline`), not run. The image
//! (`deploy/Dockerfile`) builds without a registry and runs the quick
//! start; `deploy/compose.yaml` comes up with Debian's docker-compose on
//! Docker Engine (api, two workers, Redis and PostgreSQL, every image built
//! here) and runs it too. `deploy/kubernetes` renders with `kubectl
//! kustomize` into two namespaces: `fastlane` for the api and workers, and
//! `fastlane-jobs` for the Jobs, where their only Role lets them run Jobs
//! and read their pods and logs, and from which NetworkPolicies let nothing
//! into `fastlane` but the API; no API server runs on these machines, so it
//! is checked offline, not applied.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::{Value, json};

use fastlane_tests::binary;

fn unit() -> anyhow::Result<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/fastlane.service");
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// The unit, its `ExecStart` pointed at the binary under test, in a
/// directory of its own.
fn installed() -> anyhow::Result<PathBuf> {
    let text = unit()?.replace("/usr/local/bin/fastlane", &binary().to_string_lossy());
    let dir = std::env::temp_dir().join(format!("fastlane-unit-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("fastlane.service");
    std::fs::write(&path, text)?;
    Ok(path)
}

fn analyze(args: &[&str], unit: &Path) -> anyhow::Result<std::process::Output> {
    Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .context("systemd-analyze (Debian's systemd package) must be installed")
}

#[test]
fn the_systemd_unit_is_valid_and_rated_ok_for_exposure() -> anyhow::Result<()> {
    let unit = installed()?;
    let verified = analyze(&["verify", "--man=no"], &unit)?;
    if !verified.status.success() || !verified.stderr.is_empty() {
        bail!(
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&verified.stderr)
        );
    }
    // 0 is the most locked down, 10 the least; 2.0 and under is "OK".
    let rated = analyze(&["security", "--offline=yes", "--threshold=20"], &unit)?;
    let report = String::from_utf8_lossy(&rated.stdout);
    let verdict = report
        .lines()
        .find(|line| line.contains("Overall exposure level"))
        .unwrap_or_default();
    assert!(rated.status.success(), "exposure above 2.0: {verdict}");
    assert!(verdict.contains("OK"), "{verdict}");
    std::fs::remove_dir_all(unit.parent().context("its directory")?)?;
    Ok(())
}

/// Docker Engine's socket (`scripts/services.sh`), as a path.
fn docker_engine() -> String {
    std::env::var("FASTLANE_TEST_DOCKERD_UNIX")
        .unwrap_or_else(|_| "unix:///run/fastlane/docker.sock".to_owned())
}

/// `docker ARGS…` on Docker Engine; its stdout, or why it failed.
fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("docker")
        .env("DOCKER_HOST", docker_engine())
        .args(args)
        .output()
        .context("the docker CLI (Debian's docker.io) must be installed")?;
    if !out.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Builds the fastlane image from the binary under test with
/// `deploy/image.sh`, tagged `tag`, on Docker Engine.
fn build_image(tag: &str) -> anyhow::Result<()> {
    let script = deploy_dir().join("image.sh");
    let built = Command::new(&script)
        .env("DOCKER_HOST", docker_engine())
        .arg(binary())
        .arg(tag)
        .output()?;
    anyhow::ensure!(
        built.status.success(),
        "deploy/image.sh: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    Ok(())
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The group of Docker Engine's socket, which lets the image's user in.
fn socket_and_group() -> anyhow::Result<(String, String)> {
    use std::os::unix::fs::MetadataExt;

    let socket = docker_engine();
    let socket = socket.trim_start_matches("unix://").to_owned();
    let group = std::fs::metadata(&socket)?.gid().to_string();
    Ok((socket, group))
}

/// The image `deploy/image.sh` builds from the binary under test, without
/// a registry, runs the quick start on the engine whose socket it is given,
/// as its own non-root user, and reports itself healthy.
#[tokio::test]
async fn the_image_builds_without_a_registry_and_runs_the_quick_start() -> anyhow::Result<()> {
    let tag = format!("fastlane-story:{}", uuid::Uuid::new_v4().simple());
    build_image(&tag)?;
    assert_eq!(
        docker(&["image", "inspect", "--format", "{{.Config.User}}", &tag])?,
        "10000:10000"
    );

    // The engine's socket, for the jobs' containers: the image's user is
    // let in through the socket's group.
    let (socket, group) = socket_and_group()?;
    let name = tag.replace([':', '.'], "-");
    let hosts = r#"[{"match": "", "hosts": ["unix:///var/run/docker.sock"]}]"#;
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "-p",
        "127.0.0.1::10000",
        "--group-add",
        &group,
        "-v",
        &format!("{socket}:/var/run/docker.sock"),
        "-e",
        &format!("DOCKER_HOSTS={hosts}"),
        &tag,
    ])?;
    let outcome = quick_start(&name).await;
    let logs = docker(&["logs", &name]).unwrap_or_default();
    docker(&["rm", "-f", &name])?;
    docker(&["rmi", &tag])?;
    outcome.with_context(|| format!("the container's log:\n{logs}"))
}

/// `deploy/compose.yaml` as the README tells operators to start it, with
/// `deploy/compose.local.yaml` swapping in the Redis and PostgreSQL images
/// `deploy/backing-images.sh` builds here (no registry): every service
/// comes up, two workers take jobs through Redis and PostgreSQL, and the
/// quick start runs through the api's published port. `down -v` removes
/// it all.
#[tokio::test]
async fn compose_brings_up_api_workers_redis_and_postgres_and_runs_the_quick_start()
-> anyhow::Result<()> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let short = &id[..12];
    let (tag, project) = (format!("fastlane-compose:{short}"), format!("fl{short}"));
    build_image(&tag)?;
    let backing = Command::new(deploy_dir().join("backing-images.sh"))
        .env("DOCKER_HOST", docker_engine())
        .arg(short)
        .output()?;
    anyhow::ensure!(
        backing.status.success(),
        "deploy/backing-images.sh: {}",
        String::from_utf8_lossy(&backing.stderr)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port()
        .to_string();
    let (socket, group) = socket_and_group()?;
    let compose = |args: &[&str]| -> anyhow::Result<String> {
        let (base, local) = (
            deploy_dir().join("compose.yaml"),
            deploy_dir().join("compose.local.yaml"),
        );
        let out = Command::new("docker-compose")
            .env("DOCKER_HOST", docker_engine())
            .env("FASTLANE_IMAGE", &tag)
            .env("FASTLANE_PORT", &port)
            .env("DOCKER_SOCKET", &socket)
            .env("DOCKER_GID", &group)
            .env("BACKING_IMAGES_SUFFIX", short)
            .arg("-p")
            .arg(&project)
            .arg("-f")
            .arg(base)
            .arg("-f")
            .arg(local)
            .args(args)
            .output()
            .context("docker-compose (Debian's) must be installed")?;
        anyhow::ensure!(
            out.status.success(),
            "docker-compose {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };

    let outcome = async {
        compose(&["up", "-d"])?;
        let workers = docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
            "--filter",
            "label=com.docker.compose.service=worker",
        ])?;
        anyhow::ensure!(workers.lines().count() == 2, "two workers run: {workers}");
        quick_start(&format!("{project}_api_1")).await
    }
    .await;
    let logs = compose(&["logs", "--no-color"]).unwrap_or_default();
    compose(&["down", "-v"])?;
    for image in [
        tag.clone(),
        format!("fastlane-redis:{short}"),
        format!("fastlane-postgres:{short}"),
    ] {
        docker(&["rmi", &image])?;
    }
    outcome.with_context(|| format!("the services' logs:\n{logs}"))
}

async fn quick_start(container: &str) -> anyhow::Result<()> {
    let address = docker(&["port", container, "10000"])?;
    let base = format!("http://{}", address.lines().next().unwrap_or_default());
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let health = docker(&["inspect", "--format", "{{.State.Health.Status}}", container])?;
        if health == "healthy" {
            break;
        }
        if std::time::Instant::now() > deadline {
            bail!("not healthy after 60 s: {health}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let job = serde_json::json!({"image": fastlane_tests::image(), "command": "echo it works"});
    let created: serde_json::Value = client
        .post(format!("{base}/tasks/hello-world"))
        .json(&job)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let execution = created["executionUrl"].as_str().context("executionUrl")?;
    // The URL is the container's own address; ask through the mapped port.
    let path = execution
        .split_once("/tasks/")
        .map(|(_, p)| p)
        .unwrap_or_default();
    // The job's own minute, not what is left of the wait for healthy.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let view: serde_json::Value = client
            .get(format!("{base}/tasks/{path}"))
            .send()
            .await?
            .json()
            .await?;
        let status = view["execution"]["status"].as_str().unwrap_or_default();
        if status == "done" {
            let stdout = client
                .get(format!("{base}/tasks/{path}stdout"))
                .send()
                .await?
                .text()
                .await?;
            anyhow::ensure!(stdout == "it works\n", "the job wrote {stdout:?}");
            return Ok(());
        }
        if !matches!(status, "enqueued" | "pulling" | "running")
            || std::time::Instant::now() > deadline
        {
            bail!("the job did not end done: {view}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// `kubectl kustomize deploy/kubernetes`, as `kubectl apply -k` would send
/// it: each object it renders.
fn kustomized() -> anyhow::Result<Vec<Value>> {
    let dir = deploy_dir().join("kubernetes");
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .context("kubectl (Debian's kubernetes-client package) must be installed")?;
    anyhow::ensure!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).context("kubectl kustomize's output")?;
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).context("a rendered object"))
        .collect()
}

/// The strings of a list in a manifest (`verbs`, `drop`, …).
fn strings(list: &Value) -> anyhow::Result<Vec<&str>> {
    list.as_array()
        .with_context(|| format!("a list: {list}"))?
        .iter()
        .map(|item| item.as_str().with_context(|| format!("a string: {item}")))
        .collect()
}

/// A rendered setting of the ConfigMap that holds JSON, parsed.
fn json_setting(config: &Value, key: &str) -> anyhow::Result<Value> {
    let text = config["data"][key]
        .as_str()
        .with_context(|| format!("the ConfigMap sets {key}"))?;
    serde_json::from_str(text).with_context(|| format!("{key} is JSON: {text}"))
}

/// `deploy/kubernetes` as an operator applies it: the api, workers, their
/// settings and service account in the namespace `fastlane`, under Pod
/// Security's `restricted` profile; the Jobs in `fastlane-jobs`, under
/// `baseline` (no privileged pods, host namespaces or host paths); nothing
/// cluster-wide but the two namespaces. fastlane's only Role is in
/// `fastlane-jobs` and grants exactly Jobs, pods and their logs there;
/// NetworkPolicies let into `fastlane` only its own pods, and the api pods'
/// port from anywhere, so a job reaches nothing there but the API. The
/// jobs' service account gets no token; fastlane's pods run as the image's
/// non-root user; the settings send every task to this cluster, into
/// `fastlane-jobs`.
#[test]
fn the_kubernetes_manifests_render_with_kustomize_and_keep_jobs_in_a_namespace_of_their_own()
-> anyhow::Result<()> {
    let objects = kustomized()?;
    let kind_of = |object: &Value| object["kind"].as_str().unwrap_or_default().to_owned();
    let mut kinds: Vec<String> = objects.iter().map(kind_of).collect();
    kinds.sort();
    // Nothing cluster-wide but the namespaces: no ClusterRole, no
    // ClusterRoleBinding. A new object is added here on purpose.
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "Deployment",
            "Deployment",
            "Namespace",
            "Namespace",
            "NetworkPolicy",
            "NetworkPolicy",
            "Role",
            "RoleBinding",
            "Secret",
            "Service",
            "ServiceAccount",
            "ServiceAccount",
        ]
    );
    // Pod Security: fastlane's own pods meet `restricted`, the jobs' pods
    // `baseline`.
    let mut enforced: Vec<(&str, &str)> = objects
        .iter()
        .filter(|object| object["kind"] == "Namespace")
        .map(|namespace| {
            let metadata = &namespace["metadata"];
            (
                metadata["name"].as_str().unwrap_or_default(),
                metadata["labels"]["pod-security.kubernetes.io/enforce"]
                    .as_str()
                    .unwrap_or_default(),
            )
        })
        .collect();
    enforced.sort();
    assert_eq!(
        enforced,
        [("fastlane", "restricted"), ("fastlane-jobs", "baseline")]
    );
    // In `fastlane-jobs`: the jobs' service account, and fastlane's Role
    // and its binding. Everything else in `fastlane`, which therefore
    // holds no Role: fastlane's service account needs no grant there.
    for object in objects
        .iter()
        .filter(|object| object["kind"] != "Namespace")
    {
        let (kind, name) = (kind_of(object), &object["metadata"]["name"]);
        let jobs = matches!(kind.as_str(), "Role" | "RoleBinding")
            || (kind == "ServiceAccount" && name == "fastlane-job");
        let wanted = if jobs { "fastlane-jobs" } else { "fastlane" };
        assert_eq!(object["metadata"]["namespace"], wanted, "{kind} {name}");
    }
    let find = |kind: &str, namespace: &str, name: &str| {
        objects
            .iter()
            .find(|object| {
                object["kind"] == kind
                    && object["metadata"]["namespace"] == namespace
                    && object["metadata"]["name"] == name
            })
            .with_context(|| format!("a {kind} named {name} in {namespace}"))
    };
    // The ConfigMap and the Secret have a hash of their content in their
    // names.
    let generated = |kind: &str, prefix: &str| {
        objects
            .iter()
            .find(|object| {
                object["kind"] == kind
                    && object["metadata"]["name"]
                        .as_str()
                        .is_some_and(|name| name.starts_with(prefix))
            })
            .with_context(|| format!("a {kind} named {prefix}…"))
    };

    // Exactly these grants, so `secrets`, `pods/exec` or `*` fail here.
    let role = find("Role", "fastlane-jobs", "fastlane")?;
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_array().context("the Role's rules")? {
        for group in strings(&rule["apiGroups"])? {
            for resource in strings(&rule["resources"])? {
                for verb in strings(&rule["verbs"])? {
                    granted.insert((group, resource, verb));
                }
            }
        }
    }
    let wanted: BTreeSet<(&str, &str, &str)> = [
        ("batch", "jobs", "create get list watch delete"),
        ("", "pods", "get list watch delete"),
        ("", "pods/log", "get"),
    ]
    .into_iter()
    .flat_map(|(group, resource, verbs)| verbs.split(' ').map(move |verb| (group, resource, verb)))
    .collect();
    assert_eq!(granted, wanted);
    // Bound there to fastlane's service account, in its own namespace.
    let binding = find("RoleBinding", "fastlane-jobs", "fastlane")?;
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "fastlane"})
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "fastlane", "namespace": "fastlane"}])
    );
    find("ServiceAccount", "fastlane", "fastlane")?;
    let job_account = find("ServiceAccount", "fastlane-jobs", "fastlane-job")?;
    assert_eq!(job_account["automountServiceAccountToken"], false);

    let config = generated("ConfigMap", "fastlane-config")?;
    let secret = generated("Secret", "fastlane-secret")?;
    for (name, subcommand) in [("fastlane-api", "api"), ("fastlane-worker", "worker")] {
        let pod = &find("Deployment", "fastlane", name)?["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], "fastlane", "{name}");
        let containers = pod["containers"].as_array().context("containers")?;
        assert_eq!(containers.len(), 1, "{name}");
        let container = &containers[0];
        assert_eq!(container["command"][1], subcommand, "{name}");
        assert_eq!(
            container["envFrom"],
            json!([
                {"configMapRef": {"name": config["metadata"]["name"]}},
                {"secretRef": {"name": secret["metadata"]["name"]}},
            ]),
            "{name} reads its settings from the ConfigMap and the Secret"
        );
        // The container's own setting, else the pod's.
        let (own, pods) = (&container["securityContext"], &pod["securityContext"]);
        let setting = |key: &str| {
            if own[key].is_null() {
                pods[key].clone()
            } else {
                own[key].clone()
            }
        };
        assert_eq!(setting("runAsNonRoot"), true, "{name}");
        assert_eq!(setting("runAsUser"), 10000, "{name}: the image's user");
        let seccomp = setting("seccompProfile");
        assert_eq!(seccomp["type"], "RuntimeDefault", "{name}");
        assert_eq!(own["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(own["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(strings(&own["capabilities"]["drop"])?, ["ALL"], "{name}");
        // The rest of what `restricted` asks: no capability added back, no
        // volume but emptyDir (for /tmp).
        assert!(own["capabilities"]["add"].is_null(), "{name}");
        for volume in pod["volumes"].as_array().context("volumes")? {
            assert!(volume["emptyDir"].is_object(), "{name}: {volume}");
        }
    }
    let api = &find("Deployment", "fastlane", "fastlane-api")?["spec"]["template"];
    let worker = &find("Deployment", "fastlane", "fastlane-worker")?["spec"]["template"];
    let service = find("Service", "fastlane", "fastlane")?;
    assert_eq!(service["spec"]["selector"], api["metadata"]["labels"]);
    assert_eq!(service["spec"]["ports"][0]["port"], 10000);

    // Into `fastlane`: its own pods, to any pod there (Redis and
    // PostgreSQL put there included) ...
    let same_namespace = find("NetworkPolicy", "fastlane", "fastlane-same-namespace")?;
    assert_eq!(
        same_namespace["spec"],
        json!({
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {}}]}],
        })
    );
    // ... and anyone, jobs included, to the api pods' port only.
    let open_api = find("NetworkPolicy", "fastlane", "fastlane-api")?;
    assert_eq!(
        open_api["spec"],
        json!({
            "podSelector": {"matchLabels": api["metadata"]["labels"]},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"port": 10000, "protocol": "TCP"}]}],
        })
    );
    assert_ne!(
        open_api["spec"]["podSelector"]["matchLabels"], worker["metadata"]["labels"],
        "the workers' pods are not open"
    );
    assert_eq!(
        api["spec"]["containers"][0]["ports"][0]["containerPort"],
        10000
    );

    // Every task runs on this cluster, as Jobs in `fastlane-jobs` whose
    // pods run as the service account without a token.
    let executors = json_setting(config, "EXECUTORS")?;
    assert_eq!(executors, json!([{"match": "", "executor": "kubernetes"}]));
    let clusters = json_setting(config, "KUBERNETES_CLUSTERS")?;
    let cluster = clusters
        .as_array()
        .and_then(|clusters| clusters.first())
        .context("KUBERNETES_CLUSTERS names a cluster")?;
    assert_eq!(cluster["inCluster"], true, "{cluster}");
    assert_eq!(cluster["namespace"], "fastlane-jobs", "{cluster}");
    assert_eq!(cluster["serviceAccount"], "fastlane-job", "{cluster}");
    assert!(config["data"]["DOCKER_HOSTS"].is_null(), "no Docker hosts");
    Ok(())
}
