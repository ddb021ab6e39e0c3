//! Events name the container their task runs in: the image `cargo xtask dist` builds is
//! imported into a real containerd (Debian's, with runc) started for the test, a container of
//! it opens a task through the host daemon's socket, and the daemon's events name that
//! container, and, from the annotations containerd's CRI plugin writes into its runtime spec,
//! its pod. `cargo xtask test` builds the image first and passes its path in
//! `AGENT_GUARD_IMAGE`; without it this test fails, saying so.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use agent_guard_e2e::Daemon;

struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = tempfile::Builder::new().prefix("agent-guard-containerd-").tempdir().unwrap();
        let d = dir.path();
        let child = Command::new("containerd")
            .arg("--root")
            .arg(d.join("root"))
            .arg("--state")
            .arg(d.join("state"))
            .arg("--address")
            .arg(d.join("containerd.sock"))
            .args(["--config", "/dev/null", "--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("containerd.log")).unwrap())
            .spawn()
            .expect("containerd (installed by cargo xtask test: containerd, runc) must run");
        let containerd = Containerd { child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !containerd.ctr(&["version"]).status.success() {
            assert!(Instant::now() < deadline, "containerd did not answer: {}", containerd.log());
            std::thread::sleep(Duration::from_millis(200));
        }
        containerd
    }

    fn ctr(&self, args: &[&str]) -> std::process::Output {
        // The namespace containerd's CRI plugin uses: only its containers name a pod.
        Command::new("ctr")
            .arg("--address")
            .arg(self.dir.path().join("containerd.sock"))
            .args(["--namespace", "k8s.io"])
            .args(args)
            .output()
            .expect("ctr must run")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Snapshots are plain directories (the native snapshotter): nothing stays mounted.
    }
}

fn image() -> PathBuf {
    let path = std::env::var_os("AGENT_GUARD_IMAGE").map(PathBuf::from).expect(
        "AGENT_GUARD_IMAGE is not set: `cargo xtask test` builds the image with `cargo xtask dist` and sets it",
    );
    assert!(path.is_file(), "no image at {}", path.display());
    path
}

#[test]
fn an_event_from_inside_a_container_names_that_container() {
    let image = image();
    let containerd = Containerd::start();
    let out = containerd.ctr(&["image", "import", "--snapshotter", "native", &image.display().to_string()]);
    assert!(out.status.success(), "import {}: {out:?}", image.display());
    let listed = String::from_utf8_lossy(&containerd.ctr(&["image", "ls", "-q"]).stdout).into_owned();
    let reference =
        listed.lines().find(|l| l.contains("agent-guard")).expect("the imported image is listed").to_string();

    // Where this containerd keeps its containers' runtime specs, for the pod names.
    let config = format!(
        "outputs: [{{type: file, path: \"{{events}}\"}}]\ncontainers: {{containerdState: \"{}\"}}\n",
        containerd.dir.path().join("state").display()
    );
    let daemon = Daemon::start_configured(Some(&config), &[]);
    // The socket's directory and a grant, bind-mounted into the container at /guard.
    let share = daemon.dir.path();
    std::fs::write(
        share.join("boxed.yaml"),
        "apiVersion: agent-guard.dev/v1\nkind: Grant\nmetadata: {name: boxed}\nspec:\n  mode: audit\n  ttl: 5m\n  files: {read: [\"/usr/**\", \"/etc/**\", \"/proc/**\", \"/guard/**\"]}\n  exec: [\"/usr/bin/agent-guard\"]\n",
    )
    .unwrap();
    let socket = Path::new("/guard").join(daemon.socket.file_name().unwrap());
    // A container id the way Kubernetes runtimes make them: 64 hex digits.
    let id = format!("{:064x}", u128::from(std::process::id()) << 64 | 0xa6e7_0001);
    let mount = format!("type=bind,src={},dst=/guard,options=rbind:rw", share.display());
    // The annotations containerd's CRI plugin writes into a pod container's runtime spec,
    // given here as the kubelet's request would make it do.
    let out = containerd.ctr(&[
        "run",
        "--rm",
        "--snapshotter",
        "native",
        "--mount",
        &mount,
        "--annotation",
        "io.kubernetes.cri.container-type=container",
        "--annotation",
        "io.kubernetes.cri.container-name=planner",
        "--annotation",
        "io.kubernetes.cri.sandbox-name=agent-7f9c",
        "--annotation",
        "io.kubernetes.cri.sandbox-namespace=agents",
        "--annotation",
        "io.kubernetes.cri.sandbox-uid=0b5c8f52-7a1e-4c2d-9f3b-6e8a1d2c4b5f",
        &reference,
        &id,
        "/usr/bin/agent-guard",
        "--socket",
        &socket.display().to_string(),
        "run",
        "--agent",
        "boxed-bot",
        "--intent",
        "run in a container",
        "--grant",
        "/guard/boxed.yaml",
        "--",
        "/usr/bin/agent-guard",
        "--version",
    ]);
    assert!(out.status.success(), "ctr run: {out:?}\ncontainerd: {}", containerd.log());
    assert!(String::from_utf8_lossy(&out.stdout).contains("agent-guard"), "{out:?}");
    let opened = daemon
        .wait_event("task.open from the container", |e| e["kind"] == "task.open" && e["task"]["agent"] == "boxed-bot");
    assert_eq!(opened["task"]["container"]["id"], id.as_str(), "{opened}");
    assert_eq!(opened["task"]["container"]["runtime"], "containerd", "{opened}");
    let container = &opened["task"]["container"];
    assert_eq!(
        (&container["name"], &container["pod_name"], &container["pod_namespace"], &container["pod_uid"]),
        (
            &serde_json::json!("planner"),
            &serde_json::json!("agent-7f9c"),
            &serde_json::json!("agents"),
            &serde_json::json!("0b5c8f52-7a1e-4c2d-9f3b-6e8a1d2c4b5f")
        ),
        "{opened}"
    );
}
