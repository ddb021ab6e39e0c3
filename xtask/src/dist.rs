//! `cargo xtask dist`: the release artifacts, in target/dist, from a fresh clone:
//! - `agent-guard`: a static (musl) release binary, checked to need no loader;
//! - `agent-guard_VERSION-1_amd64.deb` (cargo-deb): the binary, the hardened systemd unit
//!   (enabled and started on install), the default config and policy directory, the man page,
//!   shell completions, the docs and examples;
//! - `agent-guard-VERSION-oci.tar`: an OCI image (the static binary on an empty base) as an OCI
//!   layout tarball, with a docker-archive `manifest.json` beside it, so both `ctr image import`
//!   and `docker load` take it; written here with tar and sha256sum, no daemon, no registry;
//! - `SHA256SUMS`.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use crate::cmd::{Result, cargo, run, step, workspace_root};

const MUSL: &str = "x86_64-unknown-linux-musl";
const CARGO_DEB_VERSION: &str = "3.8.0";
/// The image's name as `ctr` and `docker` list it.
const IMAGE: &str = "agent-guard";

fn version() -> Result<String> {
    let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).map_err(|e| e.to_string())?;
    manifest
        .lines()
        .skip_while(|l| l.trim() != "[workspace.package]")
        .find_map(|l| l.trim().strip_prefix("version = ").map(|v| v.trim_matches('"').to_string()))
        .ok_or_else(|| "no version in [workspace.package] of Cargo.toml".into())
}

fn output(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| format!("cannot start {shown}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{shown} failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The musl standard library is built from source (`-Z build-std`: the pinned nightly has no
/// musl `rust-std` to download) and linked against Debian's musl (musl-tools) and LLVM's
/// libunwind rather than self-contained copies; musl-gcc also compiles the C (SQLite, ring).
/// Then cargo-deb.
fn ensure_tools() -> Result<()> {
    // libunwind: std's unwinder (the self-contained copy comes with the musl rust-std that is
    // not there), LLVM's, static, from the LLVM 22 packages the build already uses.
    let missing: Vec<&str> =
        ["musl-tools", "libunwind-22-dev"].into_iter().filter(|p| !crate::setup::debian_installed(p)).collect();
    if !missing.is_empty() {
        step(&format!("installing {} (musl-gcc and the unwinder for the static build)", missing.join(" ")));
        crate::setup::apt_install(&missing)?;
    }
    let have_deb =
        output(Command::new("cargo").args(["deb", "--version"]).env("PATH", crate::setup::path_with_tools()))
            .is_ok_and(|v| v.contains(CARGO_DEB_VERSION));
    if !have_deb {
        step(&format!("installing cargo-deb {CARGO_DEB_VERSION} (builds the .deb)"));
        run(Command::new("cargo").args(["install", "cargo-deb", "--locked", "--version", CARGO_DEB_VERSION]))?;
    }
    Ok(())
}

/// Debian's static LLVM libunwind was compiled against glibc with `_FORTIFY_SOURCE`: its
/// trace messages call `__fprintf_chk`, which musl does not have. This object gives it one
/// (the checked variant of `fprintf`: the check is the caller's compile-time bound, and the
/// unwinder's messages are fixed formats).
const FORTIFY_SHIM: &str = "#include <stdarg.h>\n#include <stdio.h>\n\
int __fprintf_chk(FILE *stream, int flag, const char *format, ...) {\n\
    (void)flag;\n    va_list args;\n    va_start(args, format);\n\
    int written = vfprintf(stream, format, args);\n    va_end(args);\n    return written;\n}\n";

fn fortify_shim(dist: &Path) -> Result<PathBuf> {
    let dir = dist.join("shim");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let source = dir.join("fortify.c");
    std::fs::write(&source, FORTIFY_SHIM).map_err(|e| e.to_string())?;
    let object = dir.join("fortify.o");
    run(Command::new("musl-gcc").args(["-O2", "-fPIC", "-c", "-o"]).arg(&object).arg(&source))?;
    Ok(object)
}

/// Fails unless `binary` is static: no program interpreter, no shared library.
fn check_static(binary: &Path) -> Result<()> {
    let headers = output(Command::new("readelf").args(["--program-headers", "--dynamic"]).arg(binary))?;
    if headers.contains("INTERP") || headers.contains("(NEEDED)") {
        return Err(format!("{} is not static:\n{headers}", binary.display()));
    }
    Ok(())
}

/// The man page (gzipped, as Debian ships them) and the shell completions, from the binary.
fn write_share(binary: &Path, share: &Path) -> Result<()> {
    std::fs::create_dir_all(share).map_err(|e| e.to_string())?;
    let man = output(Command::new(binary).arg("man"))?;
    std::fs::write(share.join("agent-guard.8"), man).map_err(|e| e.to_string())?;
    run(Command::new("gzip").args(["-9nf"]).arg(share.join("agent-guard.8")))?;
    for (shell, file) in [("bash", "agent-guard.bash"), ("zsh", "_agent-guard"), ("fish", "agent-guard.fish")] {
        let script = output(Command::new(binary).args(["completions", shell]))?;
        std::fs::write(share.join(file), script).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn sha256(file: &Path) -> Result<String> {
    let out = output(Command::new("sha256sum").arg(file))?;
    out.split_whitespace().next().map(str::to_string).ok_or_else(|| format!("sha256sum {}: no digest", file.display()))
}

/// Writes `bytes` as a blob of the layout at `dir`; its digest and size.
fn blob(dir: &Path, bytes: &[u8]) -> Result<(String, usize)> {
    let tmp = dir.join("blob.tmp");
    std::fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
    let digest = sha256(&tmp)?;
    std::fs::rename(&tmp, dir.join("blobs/sha256").join(&digest)).map_err(|e| e.to_string())?;
    Ok((digest, bytes.len()))
}

/// The OCI image: one layer holding the static binary, the default config and policy
/// directory; the daemon as its entrypoint. Reproducible: files owned by 0:0 with one mtime.
fn oci_image(binary: &Path, version: &str, dist: &Path) -> Result<PathBuf> {
    let root = workspace_root();
    let work = dist.join("oci");
    let _ = std::fs::remove_dir_all(&work);
    let rootfs = work.join("rootfs");
    let layout = work.join("layout");
    for dir in [rootfs.join("usr/bin"), rootfs.join("etc/agent-guard/policies"), layout.join("blobs/sha256")] {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    }
    let copy =
        |from: &Path, to: &Path| std::fs::copy(from, to).map(drop).map_err(|e| format!("{}: {e}", from.display()));
    copy(binary, &rootfs.join("usr/bin/agent-guard"))?;
    copy(&root.join("deploy/agent-guard.yaml"), &rootfs.join("etc/agent-guard/agent-guard.yaml"))?;
    copy(&root.join("policies/default.yaml"), &rootfs.join("etc/agent-guard/policies/default.yaml"))?;
    let layer = work.join("layer.tar");
    run(Command::new("tar")
        .args(["--create", "--sort=name", "--owner=0", "--group=0", "--numeric-owner", "--mtime=@0", "--file"])
        .arg(&layer)
        .arg("--directory")
        .arg(&rootfs)
        .args(["usr", "etc"]))?;
    let layer_digest = sha256(&layer)?;
    let layer_size = std::fs::metadata(&layer).map_err(|e| e.to_string())?.len();
    std::fs::rename(&layer, layout.join("blobs/sha256").join(&layer_digest)).map_err(|e| e.to_string())?;
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Entrypoint":["/usr/bin/agent-guard"],"Cmd":["daemon","--config","/etc/agent-guard/agent-guard.yaml","--policy-dir","/etc/agent-guard/policies"],"Labels":{{"org.opencontainers.image.title":"agent-guard","org.opencontainers.image.version":"{version}"}}}},"rootfs":{{"type":"layers","diff_ids":["sha256:{layer_digest}"]}},"history":[{{"created_by":"cargo xtask dist"}}]}}"#
    );
    let (config_digest, config_size) = blob(&layout, config.as_bytes())?;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{config_digest}","size":{config_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{layer_digest}","size":{layer_size}}}]}}"#
    );
    let (manifest_digest, manifest_size) = blob(&layout, manifest.as_bytes())?;
    let reference = format!("docker.io/library/{IMAGE}:{version}");
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{manifest_digest}","size":{manifest_size},"annotations":{{"io.containerd.image.name":"{reference}","org.opencontainers.image.ref.name":"{version}"}}}}]}}"#
    );
    std::fs::write(layout.join("index.json"), index).map_err(|e| e.to_string())?;
    std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).map_err(|e| e.to_string())?;
    // docker load (before OCI layouts, and with a tag) reads this.
    let docker = format!(
        r#"[{{"Config":"blobs/sha256/{config_digest}","RepoTags":["{IMAGE}:{version}"],"Layers":["blobs/sha256/{layer_digest}"]}}]"#
    );
    std::fs::write(layout.join("manifest.json"), docker).map_err(|e| e.to_string())?;
    let image = dist.join(format!("{IMAGE}-{version}-oci.tar"));
    run(Command::new("tar")
        .args(["--create", "--sort=name", "--owner=0", "--group=0", "--numeric-owner", "--mtime=@0", "--file"])
        .arg(&image)
        .arg("--directory")
        .arg(&layout)
        .args(["blobs", "index.json", "oci-layout", "manifest.json"]))?;
    Ok(image)
}

/// What `dist` made.
pub struct Artifacts {
    pub deb: PathBuf,
    pub image: PathBuf,
}

pub fn run_dist(toolchain: &str) -> Result<Artifacts> {
    ensure_tools()?;
    let version = version()?;
    let root = workspace_root();
    let dist = root.join("target/dist");
    std::fs::create_dir_all(&dist).map_err(|e| e.to_string())?;
    step(&format!("building the static release binary ({MUSL})"));
    let shim = fortify_shim(&dist)?;
    let target_env = MUSL.replace('-', "_");
    run(cargo(toolchain)
        .args(["build", "--release", "--package", "agent-guard", "--target", MUSL])
        .args(["-Z", "build-std=std,panic_abort"])
        .env(format!("CC_{target_env}"), "musl-gcc")
        .env(format!("CARGO_TARGET_{}_LINKER", target_env.to_uppercase()), "musl-gcc")
        .env(format!("CARGO_TARGET_{}_RUSTFLAGS", target_env.to_uppercase()), format!("-C link-self-contained=no -C target-feature=+crt-static -C relocation-model=static -L native=/usr/lib/llvm-22/lib -C link-arg={}", shim.display())))?;
    let built = root.join("target").join(MUSL).join("release/agent-guard");
    check_static(&built)?;
    let binary = dist.join("agent-guard");
    std::fs::copy(&built, &binary).map_err(|e| e.to_string())?;
    step("the man page and shell completions");
    write_share(&binary, &dist.join("share"))?;
    step("the .deb (cargo-deb)");
    let deb_out = output(
        cargo(toolchain)
            .args(["deb", "--package", "agent-guard", "--no-build", "--target", MUSL, "--output"])
            .arg(&dist)
            .env("PATH", crate::setup::path_with_tools()),
    )?;
    let deb = PathBuf::from(deb_out.lines().last().unwrap_or_default().trim());
    step("the OCI image");
    let image = oci_image(&binary, &version, &dist)?;
    let mut sums = String::new();
    for file in [&binary, &deb, &image] {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let _ = writeln!(sums, "{}  {name}", sha256(file)?);
    }
    std::fs::write(dist.join("SHA256SUMS"), &sums).map_err(|e| e.to_string())?;
    step("release artifacts in target/dist");
    eprint!("{sums}");
    Ok(Artifacts { deb, image })
}
