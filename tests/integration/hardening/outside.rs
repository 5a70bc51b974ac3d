//! Nothing is created outside the temp dir: not a `workdir`'s folders, not the `out/` folders of
//! a reused temp dir, not an input file, and no `output` is read from there, whatever symlinks
//! earlier commands or requests left inside.

use std::os::unix::fs::symlink;

use serde_json::json;

use super::{assert_input_error, post_in, Outside, PROMPT};
use crate::support::{sh, start_pair, within};

#[tokio::test(flavor = "multi_thread")]
async fn a_workdir_through_a_symlink_creates_nothing_outside() {
    let (sidecar, runner) = start_pair(&[]);
    let outside = Outside::new();
    let link = format!("ln -s '{}' link", outside.path().display());
    for (i, workdir) in ["link/made/by/runner", "link/made", "link"]
        .into_iter()
        .enumerate()
    {
        let body = json!({"commands": [sh(&link), {"command": "pwd", "workdir": workdir}]});
        let aid = format!("workdir-link-{i}");
        let reply = within(PROMPT, workdir, sidecar.call(&runner, &aid, body)).await;
        assert_eq!(outside.entries(), Vec::<String>::new(), "{workdir}");
        assert_input_error(&reply, &["commands[1].workdir"], workdir);
    }
    // Deeper: a real folder first, the symlink further down.
    let body = json!({"commands": [
        sh(&format!("mkdir real && ln -s '{}' real/link", outside.path().display())),
        {"command": "pwd", "workdir": "real/link/made"}
    ]});
    let reply = sidecar.call(&runner, "workdir-deep-link", body).await;
    assert_eq!(outside.entries(), Vec::<String>::new());
    assert_input_error(&reply, &["commands[1].workdir"], "real/link/made");
}

/// A reused `Direktiv-TempDir` whose `out` (or `out/instance`) is a symlink out: the runner
/// creates no `instance`/`workflow`/`namespace` folders through it.
#[tokio::test(flavor = "multi_thread")]
async fn out_folders_are_not_created_through_a_symlink() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"commands": [{"command": "true"}]});

    let outside = Outside::new();
    let reused = tempfile::tempdir().unwrap();
    symlink(outside.path(), reused.path().join("out")).unwrap();
    let reply = post_in(&sidecar, &runner, "out-link", reused.path(), &body).await;
    assert_eq!(outside.entries(), Vec::<String>::new(), "through out");
    assert_input_error(&reply, &["Direktiv-TempDir", "\"out\""], "out is a symlink");

    let outside = Outside::new();
    let reused = tempfile::tempdir().unwrap();
    std::fs::create_dir(reused.path().join("out")).unwrap();
    symlink(outside.path(), reused.path().join("out/instance")).unwrap();
    let reply = post_in(&sidecar, &runner, "out-instance-link", reused.path(), &body).await;
    assert_eq!(
        outside.entries(),
        Vec::<String>::new(),
        "through out/instance"
    );
    assert_input_error(
        &reply,
        &["Direktiv-TempDir", "\"out/instance\""],
        "out/instance is a symlink",
    );
}

/// An `output` through a symlinked folder leading out is refused whether or not the file
/// exists there, and nothing of it is returned.
#[tokio::test(flavor = "multi_thread")]
async fn output_through_a_symlinked_folder_is_refused() {
    let (sidecar, runner) = start_pair(&[]);
    let outside = Outside::new();
    std::fs::write(outside.path().join("present"), "secret-outside").unwrap();
    super::mkfifo(&outside.path().join("fifo"));
    let link = format!("ln -s '{}' link", outside.path().display());
    for (i, output) in ["link/present", "link/missing", "link/fifo"]
        .into_iter()
        .enumerate()
    {
        let body = json!({"commands": [sh(&link), {"command": "true", "output": output}]});
        let aid = format!("output-link-{i}");
        let reply = within(PROMPT, output, sidecar.call(&runner, &aid, body)).await;
        assert!(
            !reply.text.contains("secret-outside"),
            "{output}: {reply:?}"
        );
        assert_input_error(&reply, &["commands[1].output"], output);
    }
    assert_eq!(outside.entries(), ["fifo", "present"]);
}

/// Input files under a symlinked folder left by an earlier request in a shared temp dir.
#[tokio::test(flavor = "multi_thread")]
async fn input_files_through_a_symlink_create_nothing_outside() {
    let (sidecar, runner) = start_pair(&[]);
    let outside = Outside::new();
    let shared = tempfile::tempdir().unwrap();
    symlink(outside.path(), shared.path().join("link")).unwrap();
    let body = json!({
        "files": [{"name": "link/sub/f", "data": "x"}],
        "commands": [{"command": "true"}]
    });
    let reply = post_in(&sidecar, &runner, "files-link", shared.path(), &body).await;
    assert_input_error(&reply, &["files[0].name"], "link/sub/f");
    assert_eq!(outside.entries(), Vec::<String>::new());
}
