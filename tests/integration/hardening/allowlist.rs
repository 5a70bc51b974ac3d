//! `CMD_ALLOW` cannot be bypassed by naming a planted file: the allow check and the spawn use
//! the same resolved executable, and a name with a `/` that is not an allowed absolute path is
//! `cmd.denied`. The runner starts in `/`, as in an image without WORKDIR, so relative names
//! also exist in the runner's own working directory.

use std::path::Path;

use serde_json::{json, Value};

use super::{post_in, PROMPT};
use crate::support::{within, FakeSidecar, Reply, Runner};

/// A runner with `CMD_ALLOW=cat`, started in `/`.
fn start_allowing_cat() -> (FakeSidecar, Runner) {
    let sidecar = FakeSidecar::start();
    let runner = Runner::builder()
        .sidecar(&sidecar)
        .env("CMD_ALLOW", "cat")
        .current_dir("/")
        .start();
    (sidecar, runner)
}

/// A script that says PWNED and leaves `proof` behind when it runs.
fn planted_script(proof: &Path) -> String {
    format!("#!/bin/sh\necho PWNED\ntouch '{}'\n", proof.display())
}

/// Asserts `cmd.denied` and that the planted script did not run.
#[track_caller]
fn assert_denied_not_run(reply: &Reply, proof: &Path, case: &str) {
    assert!(!reply.text.contains("PWNED"), "{case}: {reply:?}");
    assert!(!proof.exists(), "{case}: the planted script ran");
    assert_eq!(
        reply.error_code().as_deref(),
        Some("cmd.denied"),
        "{case}: {reply:?}"
    );
    assert_eq!(reply.status, 500, "{case}: {reply:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn planted_relative_names_are_denied_and_never_run() {
    let (sidecar, runner) = start_allowing_cat();
    let proofs = tempfile::tempdir().unwrap();
    // (file planted in the temp dir, how the command names it)
    let cases: [(&str, Value); 5] = [
        ("bin/cat", json!({"command": "bin/cat"})),
        ("bin/cat", json!({"args": ["bin/cat", "/etc/hostname"]})),
        ("usr/bin/cat", json!({"command": "usr/bin/cat"})),
        ("cat", json!({"command": "./cat"})),
        ("bin/cat", json!({"command": "bin//cat"})),
    ];
    for (i, (planted, command)) in cases.into_iter().enumerate() {
        let proof = proofs.path().join(format!("ran-{i}"));
        let body = json!({
            "files": [{"name": planted, "data": planted_script(&proof), "mode": "0755"}],
            "commands": [command]
        });
        let case = format!("{planted} named {command}");
        let reply = within(
            PROMPT,
            &case,
            sidecar.call(&runner, &format!("plant-{i}"), body),
        )
        .await;
        assert_denied_not_run(&reply, &proof, &case);
    }
}

/// `../..` from the temp dir and from the runner's `/` lead to different files.
#[tokio::test(flavor = "multi_thread")]
async fn dot_dot_names_are_denied() {
    let (sidecar, runner) = start_allowing_cat();
    let base = tempfile::tempdir().unwrap();
    let tempdir = base.path().join("a/b");
    std::fs::create_dir_all(&tempdir).unwrap();
    let proof = base.path().join("ran");
    let planted = base.path().join("bin/cat");
    std::fs::create_dir_all(planted.parent().unwrap()).unwrap();
    std::fs::write(&planted, planted_script(&proof)).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for (i, name) in [
        "../../bin/cat",
        "../../../../../../bin/cat",
        "./../../bin/cat",
    ]
    .into_iter()
    .enumerate()
    {
        let body = json!({"commands": [{"command": name}]});
        let reply = post_in(&sidecar, &runner, &format!("dotdot-{i}"), &tempdir, &body).await;
        assert_denied_not_run(&reply, &proof, name);
    }
}

/// A request's PATH (absolute or relative entries) cannot point an allowed name at a planted
/// file: the name resolves through that PATH to the planted file, which is not the allowed
/// `cat`, so the request is denied and nothing runs.
#[tokio::test(flavor = "multi_thread")]
async fn request_path_cannot_point_an_allowed_name_at_a_planted_file() {
    let (sidecar, runner) = start_allowing_cat();
    let proofs = tempfile::tempdir().unwrap();
    let decoy = tempfile::tempdir().unwrap();
    for (i, path) in [
        "bin:/usr/local/bin:/usr/bin:/bin".to_string(),
        format!("{}:/usr/local/bin:/usr/bin:/bin", decoy.path().display()),
        ".:/usr/bin:/bin".to_string(),
    ]
    .into_iter()
    .enumerate()
    {
        let proof = proofs.path().join(format!("ran-{i}"));
        let script = planted_script(&proof);
        std::fs::write(decoy.path().join("cat"), &script).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::Permissions::from_mode(0o755);
            std::fs::set_permissions(decoy.path().join("cat"), mode).unwrap();
        }
        let body = json!({
            "files": [{"name": "bin/cat", "data": &script, "mode": "0755"},
                      {"name": "cat", "data": &script, "mode": "0755"}],
            "env": {"PATH": path},
            "commands": [{"command": "cat", "stdin": "real cat"}]
        });
        let reply = within(
            PROMPT,
            &path,
            sidecar.call(&runner, &format!("path-{i}"), body),
        )
        .await;
        assert_denied_not_run(&reply, &proof, &path);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn allowed_names_and_their_absolute_paths_still_run() {
    let (sidecar, runner) = start_allowing_cat();
    let cat = which("cat");
    for (i, name) in ["cat".to_string(), cat.display().to_string()]
        .into_iter()
        .enumerate()
    {
        let body = json!({"commands": [{"command": &name, "stdin": "meow"}]});
        let reply = sidecar.call(&runner, &format!("allowed-{i}"), body).await;
        reply.assert_success();
        assert_eq!(reply.command(0)["result"], "meow", "{name}");
    }
    let denied = sidecar
        .call(&runner, "not-allowed", json!({"command": "echo hi"}))
        .await;
    denied.assert_error("cmd.denied", 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn shell_mode_is_denied_when_the_shell_is_not_allowed() {
    let (sidecar, runner) = start_allowing_cat();
    let body = json!({"commands": [{"command": "cat /etc/hostname", "shell": true}]});
    let reply = sidecar.call(&runner, "shell", body).await;
    reply.assert_error("cmd.denied", 500);
}

/// The first `name` in the test's PATH.
fn which(name: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{name} is not in PATH"))
}
