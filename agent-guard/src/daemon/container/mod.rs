//! Which container a task runs in, read from the cgroup path of the process that opened it
//! (the task's own cgroup is made inside it: kernel/cgroup.rs). Container runtimes name each
//! container's cgroup after its id, in one of a few shapes:
//!
//! - containerd under Kubernetes: `.../kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`
//!   (systemd driver) or `/kubepods/burstable/pod<uid>/<id>` (cgroupfs driver, which does
//!   not name the runtime: `cri`);
//! - CRI-O: `.../crio-<id>.scope` or `.../crio-<id>` (its monitor, `crio-conmon-<id>`, is no
//!   container);
//! - Docker: `/system.slice/docker-<id>.scope` or `/docker/<id>`;
//! - Podman: `.../libpod-<id>.scope` (its monitor: `libpod-conmon-<id>.scope`);
//! - containerd alone (`ctr`, nerdctl): `/<namespace>/<id>`, or `.../nerdctl-<id>.scope`.
//!
//! The pod's uid is in the pod's own segment (`pod<uid>`; the systemd driver writes its dashes
//! as underscores). A path that fits none of these is no container (a service, a session).
//! The pod's name and namespace and the container's name are not in the path: `pods` reads
//! them from the runtime's record of the container.

use serde::{Deserialize, Serialize};

mod pods;

pub use pods::Runtimes;

/// The container a task runs in.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
// Not deny_unknown_fields: it is part of the API's TaskInfo, which may gain fields within
// version 1 (docs/api.md).
pub struct Container {
    /// The container's id as its runtime names it (64 hex digits, or a `ctr` name).
    pub id: String,
    /// `containerd`, `cri-o`, `docker`, `podman`, or `cri` (a Kubernetes runtime whose
    /// cgroup path does not say which).
    pub runtime: String,
    /// The Kubernetes pod's uid, when the container is a pod's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// The container's name in its pod spec (Kubernetes, from the runtime's record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The pod's name (Kubernetes, from the runtime's record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// The pod's namespace (Kubernetes, from the runtime's record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
}

impl Container {
    fn new(id: &str, runtime: &str, pod_uid: Option<String>) -> Container {
        Container {
            id: id.to_string(),
            runtime: runtime.to_string(),
            pod_uid,
            name: None,
            pod_name: None,
            pod_namespace: None,
        }
    }
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The id in a segment named `<prefix><id>.scope` (systemd driver) or `<prefix><id>`.
fn scope_id<'a>(segment: &'a str, prefix: &str) -> Option<&'a str> {
    let id = segment.strip_prefix(prefix)?;
    let id = id.strip_suffix(".scope").unwrap_or(id);
    is_container_id(id).then_some(id)
}

/// The pod uid of a `pod<uid>` segment, or of a systemd `kubepods[-class]-pod<uid>.slice`.
fn pod_uid(segment: &str) -> Option<String> {
    let uid = match segment.strip_suffix(".slice") {
        Some(slice) => slice.rsplit_once("-pod")?.1.replace('_', "-"),
        None => segment.strip_prefix("pod")?.to_string(),
    };
    let ok = uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    ok.then_some(uid)
}

/// The container of a process whose cgroup v2 path is `path`.
pub fn from_cgroup_path(path: &str) -> Option<Container> {
    // A daemon in a cgroup namespace of its own (a DaemonSet pod) reads other processes'
    // paths from above its root, as `/../../kubepods/...`: the `..`s name nothing.
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty() && *s != "..").collect();
    let kubernetes = segments.first().is_some_and(|s| s.starts_with("kubepods"));
    let pod = if kubernetes { segments.iter().find_map(|s| pod_uid(s)) } else { None };
    // The shallowest segment that names a container: below it lie the task's own cgroups, and
    // whatever a process with a writable cgroup subtree made there (a directory named after
    // another container would otherwise take that container's name).
    for (i, segment) in segments.iter().enumerate() {
        let found = [
            ("cri-containerd-", "containerd"),
            ("crio-", "cri-o"),
            ("docker-", "docker"),
            ("libpod-", "podman"),
            ("nerdctl-", "containerd"),
        ]
        .iter()
        .find_map(|(prefix, runtime)| scope_id(segment, prefix).map(|id| (id, *runtime)));
        if let Some((id, runtime)) = found {
            return Some(Container::new(id, runtime, pod));
        }
        if is_container_id(segment) && i > 0 {
            // cgroupfs drivers: a bare id under the pod's, docker's or a containerd namespace's
            // directory.
            let runtime = match segments[i - 1] {
                "docker" => "docker",
                // Kubernetes' cgroupfs driver names no runtime: one of its CRI runtimes.
                parent if pod_uid(parent).is_some() => "cri",
                _ if i == 1 => "containerd",
                _ => continue,
            };
            return Some(Container::new(segment, runtime, pod));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::from_cgroup_path;

    const ID: &str = "4f1a8e9c2b7d6e5f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f";
    const POD: &str = "0b5c8f52-7a1e-4c2d-9f3b-6e8a1d2c4b5f";

    fn found(path: &str) -> Option<(String, String, Option<String>)> {
        from_cgroup_path(path).map(|c| (c.id, c.runtime, c.pod_uid))
    }

    #[test]
    fn every_runtimes_paths_name_the_container() {
        let pod_systemd = POD.replace('-', "_");
        let cases = [
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{pod_systemd}.slice/cri-containerd-{ID}.scope"
                ),
                "containerd",
                Some(POD),
            ),
            (
                format!("/kubepods.slice/kubepods-pod{pod_systemd}.slice/cri-containerd-{ID}.scope"),
                "containerd",
                Some(POD),
            ),
            (format!("/kubepods/burstable/pod{POD}/{ID}"), "cri", Some(POD)),
            (format!("/kubepods/besteffort/pod{POD}/crio-{ID}"), "cri-o", Some(POD)),
            (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{pod_systemd}.slice/crio-{ID}.scope"
                ),
                "cri-o",
                Some(POD),
            ),
            (format!("/system.slice/docker-{ID}.scope"), "docker", None),
            (format!("/docker/{ID}"), "docker", None),
            (format!("/machine.slice/libpod-{ID}.scope"), "podman", None),
            (format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"), "podman", None),
            (format!("/default/{ID}"), "containerd", None),
        ];
        for (path, runtime, pod) in &cases {
            assert_eq!(found(path), Some((ID.to_string(), runtime.to_string(), pod.map(str::to_string))), "{path}");
            // A task's own cgroup below the container's: the same container.
            let below = format!("{path}/agent-guard-task-7/agent-guard-task-9");
            assert_eq!(found(&below).map(|f| f.0), Some(ID.to_string()), "{below}");
            // A directory named after another container, made below this one's: still this one.
            let other = ID.replace('4', "5");
            let nested = format!("{path}/x/cri-containerd-{other}.scope");
            assert_eq!(found(&nested).map(|f| f.0), Some(ID.to_string()), "{nested}");
            // Read by a daemon in a cgroup namespace of its own.
            let from_a_pod = format!("/../..{path}");
            assert_eq!(found(&from_a_pod), found(path), "{from_a_pod}");
        }
    }

    #[test]
    fn services_sessions_and_monitors_are_no_container() {
        for path in [
            "/",
            "/system.slice/agent-guard.service",
            "/user.slice/user-1000.slice/session-3.scope",
            &format!("/machine.slice/libpod-conmon-{ID}.scope"),
            &format!("/kubepods.slice/crio-conmon-{ID}.scope"),
            "/system.slice/docker-notanid.scope",
            &format!("/system.slice/docker-{}.scope", ID.to_uppercase()),
            &format!("/a/b/{ID}"),
        ] {
            assert_eq!(found(path), None, "{path}");
        }
    }
}
