//! The static binary from `make static` serves a request inside a chroot that holds nothing
//! but the binary: no libc, no /etc/hosts, no shell. This is what the `FROM scratch` image and
//! `COPY --from` users get, and `localhost` as the sidecar address must still work there.
//!
//! Needs root (chroot). CI runs `make static` before the tests.

use std::path::{Path, PathBuf};

use crate::support::{skip_without, CallOptions, Capability, FakeSidecar, Runner, TempDirHeader};
use serde_json::json;

/// Where `make static` puts the binary.
fn static_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/static/direktiv-cmd");
    assert!(
        path.is_file(),
        "{} is missing: run `make static` first (CI builds it before the tests)",
        path.display()
    );
    path
}

/// What the root directory holds besides `/direktiv-cmd` (and the sidecar's `/mnt/shared`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Root {
    /// Nothing at all.
    Bare,
    /// `/dev/null`, as a container runtime provides even for a `FROM scratch` image.
    WithDevNull,
}

fn make_root(kind: Root) -> tempfile::TempDir {
    let root = tempfile::Builder::new()
        .prefix("direktiv-cmd-chroot-")
        .tempdir()
        .expect("chroot dir");
    std::fs::copy(static_binary(), root.path().join("direktiv-cmd")).expect("copy the binary");
    if kind == Root::WithDevNull {
        std::fs::create_dir(root.path().join("dev")).expect("mkdir dev");
        let status = std::process::Command::new("mknod")
            .args(["-m", "666"])
            .arg(root.path().join("dev/null"))
            .args(["c", "1", "3"])
            .status()
            .expect("run mknod");
        assert!(status.success(), "mknod /dev/null");
    }
    root
}

async fn serves_in_a_chroot_reaching_the_sidecar_as(kind: Root, host: &str) {
    let root = make_root(kind);
    let shared = root.path().join("mnt/shared");
    let sidecar = FakeSidecar::start_in(&shared);
    let backend = format!("http://{host}:{}", sidecar.port());
    let runner = Runner::builder()
        .program("chroot")
        .arg(root.path().as_os_str())
        .arg("/direktiv-cmd")
        .backend(&backend)
        .start();
    let options = CallOptions {
        temp_dir: TempDirHeader::SentAs("/mnt/shared/s1".into()),
        ..CallOptions::default()
    };
    let body = json!({"commands": [{"command": "/direktiv-cmd --version"}]});
    let reply = sidecar.call_with(&runner, "s1", body, &options).await;
    reply.assert_success();
    let version = format!("direktiv-cmd {}", env!("CARGO_PKG_VERSION"));
    assert_eq!(reply.command(0)["result"], version.as_str());
    let lines = sidecar.lines("s1");
    assert!(
        lines.iter().any(|l| l == &version),
        "the output must reach the sidecar at {backend}: {lines:?}\nrunner stderr: {:?}",
        runner.stderr_lines()
    );
    assert!(sidecar.rejected().is_empty());
    // An image without a shell starts, and says what `shell: true` will meet.
    let stderr = runner.stderr_lines().join("\n");
    assert!(
        stderr.contains("; shell: /bin/sh, which this image lacks (shell: true commands fail"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn static_binary_in_an_empty_chroot_reaches_the_sidecar_as_localhost() {
    skip_without!(Capability::Root);
    serves_in_a_chroot_reaching_the_sidecar_as(Root::Bare, "localhost").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn static_binary_in_an_empty_chroot_reaches_the_sidecar_as_127_0_0_1() {
    skip_without!(Capability::Root);
    serves_in_a_chroot_reaching_the_sidecar_as(Root::Bare, "127.0.0.1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn static_binary_in_a_scratch_like_root_reaches_the_sidecar_as_localhost() {
    skip_without!(Capability::Root);
    serves_in_a_chroot_reaching_the_sidecar_as(Root::WithDevNull, "localhost").await;
}

#[test]
fn static_binary_needs_no_dynamic_loader() {
    let elf = std::fs::read(static_binary()).expect("read the binary");
    assert_eq!(&elf[..5], b"\x7fELF\x02", "a 64-bit ELF file");
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let mut phoff = [0u8; 8];
    phoff.copy_from_slice(&elf[0x20..0x28]);
    let phoff = usize::try_from(u64::from_le_bytes(phoff)).expect("offset");
    let (entry_size, count) = (u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    for i in 0..count {
        let at = phoff + i * entry_size;
        let kind = u32::from_le_bytes([elf[at], elf[at + 1], elf[at + 2], elf[at + 3]]);
        assert_ne!(
            kind, PT_INTERP,
            "the static binary must not ask for a dynamic loader"
        );
    }
}
