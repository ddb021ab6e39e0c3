//! A Kubernetes container's names (its pod's name and namespace, and its own name in the pod
//! spec), read from the record its runtime keeps: the OCI runtime spec (`config.json`) the
//! runtime wrote for runc, whose annotations its CRI plugin fills from the kubelet's request.
//!
//! - containerd: `<state>/io.containerd.runtime.v2.task/<namespace>/<id>/config.json`, with the
//!   annotations `io.kubernetes.cri.sandbox-name`, `-sandbox-namespace`, `-sandbox-uid` and
//!   `-container-name` (containerd's pkg/cri/annotations).
//! - CRI-O: `<runroot>/overlay-containers/<id>/userdata/config.json`, whose annotation
//!   `io.kubernetes.cri-o.Labels` holds the kubelet's labels as JSON: `io.kubernetes.pod.name`,
//!   `.pod.namespace`, `.pod.uid`, `io.kubernetes.container.name`.
//!
//! Both directories belong to root and live outside every container, so nothing a container
//! runs can write what is read here. The file is read once, when a task opens; no CRI or kubelet
//! connection is needed. Docker (cri-dockerd) keeps its record elsewhere and is not read.

use std::{collections::HashMap, io::Read};

use serde::Deserialize;

use super::{Container, from_cgroup_path};
use crate::daemon::config::ContainersConfig;

/// A runtime spec larger than this is no runtime's (they are tens of KiB).
const MAX_SPEC: u64 = 4 << 20;
/// Kubernetes names are at most 253 bytes; a longer value is no Kubernetes name.
const MAX_NAME: usize = 253;

/// Where the container runtimes keep their records (the daemon config's `containers`).
#[derive(Clone, Debug, Default)]
pub struct Runtimes(ContainersConfig);

/// The part of an OCI runtime spec read here. Not `deny_unknown_fields`: the file is the
/// runtime's, with many fields this does not read.
#[derive(Deserialize)]
struct Spec {
    #[serde(default)]
    annotations: HashMap<String, String>,
}

struct Names {
    pod_name: Option<String>,
    pod_namespace: Option<String>,
    pod_uid: Option<String>,
    container: Option<String>,
}

impl Names {
    /// The names under `keys` (pod name, pod namespace, pod uid, container name) of a runtime's
    /// record; none without a pod name.
    fn from(record: &HashMap<String, String>, keys: [&str; 4]) -> Option<Names> {
        let name = |key: &str| record.get(key).filter(|v| !v.is_empty() && v.len() <= MAX_NAME).cloned();
        Some(Names {
            pod_name: Some(name(keys[0])?),
            pod_namespace: name(keys[1]),
            pod_uid: name(keys[2]),
            container: name(keys[3]),
        })
    }
}

impl Runtimes {
    pub fn new(config: &ContainersConfig) -> Runtimes {
        Runtimes(config.clone())
    }

    /// The container of a process whose cgroup v2 path is `path`, with its Kubernetes names
    /// where its runtime recorded them.
    pub fn describe(&self, path: &str) -> Option<Container> {
        let mut container = from_cgroup_path(path)?;
        let names = match container.runtime.as_str() {
            "containerd" => self.containerd(&container.id),
            "cri-o" => self.crio(&container.id),
            // Kubernetes' cgroupfs driver does not say which runtime: the one that has it.
            "cri" => self.containerd(&container.id).or_else(|| self.crio(&container.id)),
            _ => None,
        };
        // The cgroup path's pod uid, where it has one, is the kernel's word: a record that names
        // another pod is not this container's.
        let agrees = |names: &Names| container.pod_uid.is_none() || names.pod_uid == container.pod_uid;
        if let Some(names) = names.filter(agrees) {
            container.name = names.container;
            container.pod_name = names.pod_name;
            container.pod_namespace = names.pod_namespace;
            container.pod_uid = container.pod_uid.or(names.pod_uid);
        }
        Some(container)
    }

    fn containerd(&self, id: &str) -> Option<Names> {
        // The CRI plugin's containerd namespace is `k8s.io`: a container someone made in
        // another (`ctr`, nerdctl) with the same annotations is no pod's. The id is 64 hex
        // digits (checked by from_cgroup_path), so it names no other path.
        let spec = read_spec(
            &self.0.containerd_state.join("io.containerd.runtime.v2.task/k8s.io").join(id).join("config.json"),
        )?;
        Names::from(
            &spec.annotations,
            [
                "io.kubernetes.cri.sandbox-name",
                "io.kubernetes.cri.sandbox-namespace",
                "io.kubernetes.cri.sandbox-uid",
                "io.kubernetes.cri.container-name",
            ],
        )
    }

    fn crio(&self, id: &str) -> Option<Names> {
        let spec = read_spec(&self.0.crio_run_root.join("overlay-containers").join(id).join("userdata/config.json"))?;
        let labels: HashMap<String, String> =
            serde_json::from_str(spec.annotations.get("io.kubernetes.cri-o.Labels")?).ok()?;
        Names::from(
            &labels,
            [
                "io.kubernetes.pod.name",
                "io.kubernetes.pod.namespace",
                "io.kubernetes.pod.uid",
                "io.kubernetes.container.name",
            ],
        )
    }
}

fn read_spec(path: &std::path::Path) -> Option<Spec> {
    let mut text = String::new();
    std::fs::File::open(path).ok()?.take(MAX_SPEC).read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1a8e9c2b7d6e5f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f";
    const POD: &str = "0b5c8f52-7a1e-4c2d-9f3b-6e8a1d2c4b5f";

    fn runtimes(dir: &std::path::Path) -> Runtimes {
        Runtimes::new(&ContainersConfig { containerd_state: dir.join("containerd"), crio_run_root: dir.join("crio") })
    }

    fn write(path: std::path::PathBuf, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn containerds_cri_annotations_name_the_pod() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path().join(format!("containerd/io.containerd.runtime.v2.task/k8s.io/{ID}/config.json")),
            r#"{"ociVersion": "1.1.0", "process": {"args": ["sh"]}, "annotations": {
                "io.kubernetes.cri.container-type": "container",
                "io.kubernetes.cri.container-name": "planner",
                "io.kubernetes.cri.sandbox-name": "agent-7f9c",
                "io.kubernetes.cri.sandbox-namespace": "agents",
                "io.kubernetes.cri.sandbox-uid": "POD"}}"#
                .replace("POD", POD)
                .as_str(),
        );
        let path = format!("/kubepods/burstable/pod{POD}/{ID}");
        let c = runtimes(dir.path()).describe(&path).unwrap();
        assert_eq!(c.runtime, "cri");
        assert_eq!(c.name.as_deref(), Some("planner"));
        assert_eq!(c.pod_name.as_deref(), Some("agent-7f9c"));
        assert_eq!(c.pod_namespace.as_deref(), Some("agents"));
        assert_eq!(c.pod_uid.as_deref(), Some(POD));
        // The same record under a path of another pod: not that pod's names.
        let other = "1c6d9f63-8b2f-4d3e-a04c-7f9b2e3d5c6a";
        let c = runtimes(dir.path()).describe(&format!("/kubepods/burstable/pod{other}/{ID}")).unwrap();
        assert_eq!((c.name, c.pod_name, c.pod_uid.as_deref()), (None, None, Some(other)));
    }

    #[test]
    fn containers_outside_the_cri_namespace_name_no_pod() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path().join(format!("containerd/io.containerd.runtime.v2.task/default/{ID}/config.json")),
            r#"{"annotations": {"io.kubernetes.cri.sandbox-name": "payments-api", "io.kubernetes.cri.sandbox-namespace": "prod"}}"#,
        );
        let c = runtimes(dir.path()).describe(&format!("/default/{ID}")).unwrap();
        assert_eq!((c.name, c.pod_name, c.pod_namespace), (None, None, None));
    }

    #[test]
    fn crios_labels_name_the_pod() {
        let dir = tempfile::tempdir().unwrap();
        let labels = serde_json::json!({
            "io.kubernetes.pod.name": "agent-7f9c",
            "io.kubernetes.pod.namespace": "agents",
            "io.kubernetes.pod.uid": POD,
            "io.kubernetes.container.name": "planner"
        });
        let spec = serde_json::json!({"annotations": {"io.kubernetes.cri-o.Labels": labels.to_string()}});
        write(dir.path().join(format!("crio/overlay-containers/{ID}/userdata/config.json")), &spec.to_string());
        let path = format!("/kubepods.slice/crio-{ID}.scope");
        let c = runtimes(dir.path()).describe(&path).unwrap();
        assert_eq!(
            (c.name.as_deref(), c.pod_name.as_deref(), c.pod_namespace.as_deref(), c.pod_uid.as_deref()),
            (Some("planner"), Some("agent-7f9c"), Some("agents"), Some(POD))
        );
    }

    #[test]
    fn no_record_or_a_bad_one_leaves_the_names_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = format!("/system.slice/docker-{ID}.scope");
        let c = runtimes(dir.path()).describe(&path).unwrap();
        assert_eq!((c.name, c.pod_name), (None, None));
        // Damaged JSON, a name past 253 bytes, no annotations: nothing is made up.
        for spec in
            ["{", &format!(r#"{{"annotations": {{"io.kubernetes.cri.sandbox-name": "{}"}}}}"#, "a".repeat(254)), "{}"]
        {
            write(dir.path().join(format!("containerd/io.containerd.runtime.v2.task/k8s.io/{ID}/config.json")), spec);
            let c = runtimes(dir.path()).describe(&format!("/k8s.io/{ID}")).unwrap();
            assert_eq!((c.name, c.pod_name, c.pod_namespace), (None, None, None), "{spec}");
        }
    }
}
