//! A private temp dir is removed even when a command made parts of it unwritable, without
//! following symlinks out of it; a removal that still fails is counted in /metrics.
//!
//! Permissions do not stop root, so these tests run as root and start the runner as `nobody`
//! (through util-linux `setpriv`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::{post_private, Outside, PROMPT};
use crate::support::{
    sh, skip_without, within, Capability, FakeSidecar, Metrics, Runner, PATIENCE,
};

/// The uid and gid the runner runs as.
const NOBODY: u32 = 65534;

/// The metric counting private temp dirs that could not be removed.
const REMOVAL_FAILURES: &str = "direktiv_cmd_temp_dir_removal_failures_total";

/// A runner that is not root: as root (which these tests need to plant what only root may
/// remove), through `setpriv` (util-linux).
fn start_unprivileged(sidecar: &FakeSidecar) -> Runner {
    let drop_to_nobody = [
        format!("--reuid={NOBODY}"),
        format!("--regid={NOBODY}"),
        "--clear-groups".to_string(),
    ];
    let mut builder = Runner::builder().program("setpriv").sidecar(sidecar);
    for arg in drop_to_nobody {
        builder = builder.arg(arg);
    }
    builder
        .arg(crate::support::binary())
        .current_dir("/")
        .start()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_temp_dir_with_unwritable_folders_is_removed() {
    skip_without!(Capability::Root);
    let sidecar = FakeSidecar::start();
    let runner = start_unprivileged(&sidecar);
    // A folder of the runner's user outside the temp dir, read-only, reached through a symlink
    // from inside: the cleanup must neither make it writable nor empty it.
    let outside = Outside::new();
    std::fs::write(outside.path().join("keep"), "x").unwrap();
    std::os::unix::fs::chown(outside.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o500)).unwrap();

    let body = json!({"commands": [
        {"command": "pwd"},
        sh("mkdir a && touch a/f && chmod 500 a"),
        sh("mkdir -p b/c/d && touch b/c/d/f && chmod 000 b/c/d && chmod 100 b/c && chmod 500 b"),
        sh("mkdir e && touch e/f && chmod 000 e"),
        sh(&format!("ln -s '{}' link", outside.path().display())),
        sh("chmod 500 ."),
    ]});
    let reply = within(
        PROMPT,
        "request",
        post_private(&sidecar, &runner, "unwritable", &body),
    )
    .await;
    reply.assert_success();
    let private = PathBuf::from(reply.command(0)["result"].as_str().unwrap_or_default());
    assert!(private.is_absolute(), "{reply:?}");
    let _tidy = RemoveAnyway(private.clone());
    assert!(
        !private.exists(),
        "the private temp dir {} was left behind",
        private.display()
    );
    let mode = std::fs::metadata(outside.path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o500, "the folder outside was made writable");
    assert_eq!(outside.entries(), ["keep"]);
    let failures = Metrics::scrape(&runner).await.sum(REMOVAL_FAILURES);
    assert_eq!(failures, 0.0, "{REMOVAL_FAILURES}");
}

/// Something the runner's user cannot remove (a root-owned folder with a file in it) is left,
/// logged and counted; the request still succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_removal_is_counted_in_metrics() {
    skip_without!(Capability::Root);
    let sidecar = FakeSidecar::start();
    let runner = start_unprivileged(&sidecar);
    let before = Metrics::scrape(&runner).await.sum(REMOVAL_FAILURES);
    let body = json!({"commands": [
        {"command": "pwd"},
        sh("while [ ! -e go ]; do sleep 0.05; done"),
    ]});
    let call = post_private(&sidecar, &runner, "unremovable", &body);
    tokio::pin!(call);
    let private = loop {
        tokio::select! {
            reply = &mut call => panic!("the request ended early: {reply:?}"),
            () = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
        }
        if let Some(line) = sidecar
            .lines("unremovable")
            .into_iter()
            .find(|l| l.starts_with('/'))
        {
            break PathBuf::from(line);
        }
    };
    let _tidy = RemoveAnyway(private.clone());
    plant_root_owned(&private);
    std::fs::write(private.join("go"), "").unwrap();
    let reply = within(PATIENCE, "request", call).await;
    reply.assert_success();
    let after = Metrics::scrape(&runner).await.sum(REMOVAL_FAILURES);
    assert_eq!(after, before + 1.0, "{REMOVAL_FAILURES}");
    assert!(
        private.join("root-owned/f").exists(),
        "what root made is still there"
    );
}

/// Removes a temp dir the runner left, whatever its modes, when the test ends (passed or not).
struct RemoveAnyway(PathBuf);

impl Drop for RemoveAnyway {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = std::process::Command::new("chmod")
                .arg("-R")
                .arg("u+rwx")
                .arg(&self.0)
                .status();
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A folder with a file in it that only root may remove.
fn plant_root_owned(dir: &Path) {
    let folder = dir.join("root-owned");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("f"), "").unwrap();
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
}
