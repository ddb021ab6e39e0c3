//! The Helm chart (deploy/helm/agent-guard), rendered as `helm template` renders it, by
//! tests/helm/render.go: Helm's engine is Go's text/template with sprig's functions, which
//! Debian packages (it packages no helm). The manifests are validated offline against the
//! Kubernetes schemas by kubernetes-validate, strictly (an unknown field fails), for the
//! oldest Kubernetes the chart claims and the newest the validator knows; the config and the
//! policies the chart ships pass the daemon's own checks. `cargo xtask test` installs Go,
//! sprig and kubernetes-validate; without them these tests fail, saying so.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use agent_guard_e2e::agent_guard_bin;
use serde_yaml_ng::Value;

/// The oldest Kubernetes the chart claims (Chart.yaml `kubeVersion`) and the newest the
/// pinned validator has schemas for.
const KUBERNETES: [&str; 2] = ["1.25.0", "1.37.0"];

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/helm/agent-guard")
}

/// The chart's manifests with `values` laid over its values.yaml.
fn render(dir: &Path, values: Option<&str>) -> String {
    let mut cmd = Command::new("go");
    cmd.args(["run", concat!(env!("CARGO_MANIFEST_DIR"), "/helm/render.go")])
        .arg(chart())
        // Debian's Go libraries are a GOPATH tree, not modules.
        .env("GOPATH", "/usr/share/gocode")
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("GOCACHE", dir.join("gocache"));
    if let Some(values) = values {
        let file = dir.join("values.yaml");
        std::fs::write(&file, values).unwrap();
        cmd.arg(file);
    }
    let out = cmd.output().expect("go (golang-go, installed by cargo xtask test) must run");
    assert!(out.status.success(), "render: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// kubernetes-validate's verdict on `manifests` for one Kubernetes version.
fn validate(dir: &Path, manifests: &str, version: &str) -> std::process::Output {
    let file = dir.join("manifests.yaml");
    std::fs::write(&file, manifests).unwrap();
    Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "--no-warn", "-k", version])
        .arg(&file)
        .output()
        .expect("python3 -m kubernetes_validate (installed by cargo xtask test) must run")
}

fn assert_valid(dir: &Path, manifests: &str) {
    for version in KUBERNETES {
        let out = validate(dir, manifests, version);
        assert!(
            out.status.success(),
            "Kubernetes {version}: {}{}\n{manifests}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn documents(manifests: &str) -> Vec<Value> {
    manifests
        .split("\n---\n")
        .map(|d| serde_yaml_ng::from_str::<Value>(d.trim_start_matches("---\n")).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name_suffix: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"].as_str().is_some_and(|n| n.ends_with(name_suffix)))
        .unwrap_or_else(|| panic!("no {kind} *{name_suffix} in {docs:?}"))
}

/// Writes the config and the policies the chart puts in its config maps, and checks them with
/// the daemon's own `config check` and `policy check`. `secrets` are files the config names
/// that the pod gets from a Secret: made here, with the config pointing at them.
fn check_config_and_policies(dir: &Path, docs: &[Value], secrets: &[&str]) -> Value {
    let rendered = find(docs, "ConfigMap", "-config")["data"]["agent-guard.yaml"].as_str().unwrap().to_string();
    let mut config_text = rendered.clone();
    for (i, secret) in secrets.iter().enumerate() {
        let here = dir.join(format!("secret-{i}"));
        std::fs::write(&here, "0123456789abcdef\n").unwrap();
        assert!(config_text.contains(secret), "{secret} is not in the config");
        config_text = config_text.replace(secret, here.to_str().unwrap());
    }
    let config = dir.join("agent-guard.yaml");
    std::fs::write(&config, &config_text).unwrap();
    let out = Command::new(agent_guard_bin()).args(["config", "check"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "config check: {out:?}\n{config_text}");
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let data = find(docs, "ConfigMap", "-policies")["data"].as_mapping().unwrap().clone();
    assert!(!data.is_empty(), "the chart ships no policy");
    for (name, text) in &data {
        std::fs::write(policies.join(name.as_str().unwrap()), text.as_str().unwrap()).unwrap();
    }
    let out = Command::new(agent_guard_bin()).args(["policy", "check"]).arg(&policies).output().unwrap();
    assert!(out.status.success(), "policy check: {out:?}");
    serde_yaml_ng::from_str(&rendered).unwrap()
}

/// The host directory a container path is mounted from, if it is a hostPath.
fn host_path_of(daemonset: &Value, container_path: &str) -> Option<(String, bool)> {
    let spec = &daemonset["spec"]["template"]["spec"];
    let mounts = spec["containers"][0]["volumeMounts"].as_sequence().unwrap();
    let (mount, rest) = mounts.iter().find_map(|m| {
        let at = m["mountPath"].as_str()?;
        let rest = Path::new(container_path).strip_prefix(at).ok()?;
        Some((m, rest.to_path_buf()))
    })?;
    let volume = spec["volumes"].as_sequence().unwrap().iter().find(|v| v["name"] == mount["name"])?;
    let host = Path::new(volume["hostPath"]["path"].as_str()?).join(rest);
    Some((host.display().to_string(), mount["readOnly"].as_bool().unwrap_or(false)))
}

#[test]
fn the_default_chart_renders_valid_manifests_whose_store_and_spool_are_on_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = render(dir.path(), None);
    assert_valid(dir.path(), &manifests);
    let docs = documents(&manifests);
    let config = check_config_and_policies(dir.path(), &docs, &[]);
    let daemonset = find(&docs, "DaemonSet", "agent-guard");
    let pod = &daemonset["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], Value::Bool(true), "tags are host pids");
    // The audit store, the HTTP spool (default /var/lib/agent-guard/spool/NAME), the saved
    // tasks (--state-dir /var/lib/agent-guard) and the events file are on the node's disk, so
    // they survive the pod; the pins are in the node's bpffs, so the guard outlives the pod.
    let store = config["auditStore"]["path"].as_str().unwrap();
    for (path, host) in [
        (store, store),
        ("/var/lib/agent-guard/spool/splunk", "/var/lib/agent-guard/spool/splunk"),
        ("/var/log/agent-guard/events.jsonl", "/var/log/agent-guard/events.jsonl"),
        ("/sys/fs/bpf/agent-guard", "/sys/fs/bpf/agent-guard"),
        ("/run/agent-guard/agent-guard.sock", "/run/agent-guard/agent-guard.sock"),
    ] {
        assert_eq!(host_path_of(daemonset, path), Some((host.to_string(), false)), "{path}");
    }
    // containerd's runtime specs (pod names), read-only, and not its socket beside them.
    let state = config["containers"]["containerdState"].as_str().unwrap();
    let tasks = format!("{state}/io.containerd.runtime.v2.task");
    assert_eq!(host_path_of(daemonset, &format!("{tasks}/k8s.io/ID/config.json")).map(|h| h.1), Some(true));
    assert_eq!(host_path_of(daemonset, &format!("{state}/containerd.sock")), None);
    let args: Vec<&str> =
        pod["containers"][0]["args"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(args.windows(2).any(|w| w == ["--on-stop", "keep-confined"]), "{args:?}");
}

#[test]
fn every_option_of_the_chart_renders_valid_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let values = r#"
image: {repository: registry.example/agent-guard, tag: "0.1.0-rc1", pullPolicy: Always}
imagePullSecrets: [{name: regcred}]
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: agents, effect: NoSchedule}]
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms: [{matchExpressions: [{key: agents, operator: Exists}]}]
resources: {requests: {cpu: 100m, memory: 128Mi}, limits: {memory: 512Mi}}
runtimes: {containerd: false, crio: true}
secrets: [splunk-hec]
config:
  outputs:
    - {type: stdout, format: ocsf}
    - type: http
      name: splunk
      flavor: splunk_hec
      url: https://splunk.example:8088/
      tokenFile: /etc/agent-guard/secrets/splunk-hec/token
      format: ocsf
  containers: {crioRunRoot: /var/run/containers/storage}
policies:
  triage.yaml: |
    apiVersion: agent-guard.dev/v1
    kind: Grant
    metadata: {name: triage}
    spec:
      mode: enforce
      ttl: 10m
      files: {read: ["/srv/tickets/**"]}
extraArgs: ["--approval-timeout", "2m"]
podAnnotations: {team: agents}
podLabels: {tier: guard}
onStop: release
"#;
    let manifests = render(dir.path(), Some(values));
    assert_valid(dir.path(), &manifests);
    let docs = documents(&manifests);
    let config = check_config_and_policies(dir.path(), &docs, &["/etc/agent-guard/secrets/splunk-hec/token"]);
    // Laid over the defaults key by key: the outputs replaced, the audit store kept.
    assert_eq!(config["outputs"][1]["flavor"], "splunk_hec");
    assert_eq!(config["auditStore"]["path"], "/var/lib/agent-guard/audit.db");
    let daemonset = find(&docs, "DaemonSet", "agent-guard");
    let pod = &daemonset["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["image"], "registry.example/agent-guard:0.1.0-rc1");
    assert_eq!(pod["tolerations"][0]["value"], "agents");
    assert_eq!(
        host_path_of(daemonset, "/var/run/containers/storage/overlay-containers/ID/userdata/config.json"),
        Some(("/var/run/containers/storage/overlay-containers/ID/userdata/config.json".to_string(), true))
    );
    assert_eq!(host_path_of(daemonset, "/run/containerd/io.containerd.runtime.v2.task/k8s.io"), None);
    assert!(host_path_of(daemonset, "/etc/agent-guard/secrets/splunk-hec/token").is_none(), "a Secret, not the node's");
    let secret = pod["volumes"].as_sequence().unwrap().iter().find(|v| v["secret"]["secretName"] == "splunk-hec");
    assert!(secret.is_some(), "{pod:?}");
}

#[test]
fn the_schema_check_refuses_what_kubernetes_would() {
    // The check can fail: a field Kubernetes does not have, and a value of the wrong type.
    let dir = tempfile::tempdir().unwrap();
    let manifests = render(dir.path(), None);
    for (what, broken) in [
        ("an unknown field", manifests.replace("hostPID: true", "hostPID: true\n      hostPIDs: true")),
        ("a wrong type", manifests.replace("hostPID: true", "hostPID: {yes: please}")),
    ] {
        assert_ne!(broken, manifests);
        let out = validate(dir.path(), &broken, KUBERNETES[1]);
        assert!(!out.status.success(), "{what} passed: {out:?}");
    }
    // And a values file that breaks the chart's YAML fails to render valid manifests.
    let manifests = render(dir.path(), Some("resources: {limits: {memory: [256, Mi]}}\n"));
    assert!(!validate(dir.path(), &manifests, KUBERNETES[1]).status.success(), "{manifests}");
}
