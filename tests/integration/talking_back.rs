//! What a command tells the runner (README, "Talking back"): its `DIREKTIV_RESULT` file,
//! `::error` lines and the `errors` map, `retry`, and `direktiv-cmd var` through the sidecar.

use serde_json::{json, Value};

use crate::support::{sh, start_pair};

/// The result file: private, empty, not among the temp dir's files (nor in `out/`), its
/// content the `result` (JSON kept as written, key order included), `stdout` untouched, and
/// gone after the command.
#[tokio::test(flavor = "multi_thread")]
async fn the_result_file_becomes_the_result() {
    let (sidecar, runner) = start_pair(&[]);
    let script = r#"
        test -f "$DIREKTIV_RESULT" && test ! -s "$DIREKTIV_RESULT" || exit 9
        stat -c %a "$DIREKTIV_RESULT"
        test -z "$(ls -A | grep -v '^out$')" || exit 8
        printf '{"zeta": 1.10, "alpha": [1, 2], "mid": "x"}' > "$DIREKTIV_RESULT"
        echo "$DIREKTIV_RESULT" > seen
    "#;
    let body = json!({"commands": [
        sh(script),
        sh(r#"test ! -e "$(cat seen)" && echo "  plain text  " > "$DIREKTIV_RESULT""#),
        sh("echo from stdout"),
    ]});
    let reply = sidecar.call(&runner, "result-file", body).await;
    reply.assert_success();
    let first = reply.command(0);
    assert_eq!(first["stdout"], "600\n", "{first}");
    assert_eq!(
        first["result"].to_string(),
        r#"{"zeta":1.10,"alpha":[1,2],"mid":"x"}"#
    );
    assert_eq!(reply.command(1)["result"], "plain text");
    assert_eq!(reply.command(2)["result"], "from stdout");
}

/// Past `CMD_MAX_RESULT` the command fails with cmd.result.too_large; up to it, it is read.
#[tokio::test(flavor = "multi_thread")]
async fn a_result_file_past_cmd_max_result_fails_the_command() {
    let (sidecar, runner) = start_pair(&[("CMD_MAX_RESULT", "1KiB")]);
    let fits =
        json!({"commands": [sh(r#"head -c 1024 /dev/zero | tr '\0' x > "$DIREKTIV_RESULT""#)]});
    let reply = sidecar.call(&runner, "fits", fits).await;
    reply.assert_success();
    assert_eq!(
        reply.command(0)["result"].as_str().map(str::len),
        Some(1024)
    );
    let big = json!({"commands": [sh(r#"head -c 1025 /dev/zero > "$DIREKTIV_RESULT""#)]});
    let reply = sidecar.call(&runner, "too-large", big).await;
    reply.assert_error("cmd.result.too_large", 500);
    assert!(
        reply
            .error_message()
            .unwrap_or_default()
            .contains("CMD_MAX_RESULT"),
        "{reply:?}"
    );
    assert_eq!(reply.command(0)["exit_code"], 0);
}

/// A command that swaps its result file for a symlink (to a secret) or a FIFO gets nothing
/// read through it: the result comes from stdout and the log says why.
#[tokio::test(flavor = "multi_thread")]
async fn a_result_file_replaced_by_a_symlink_or_fifo_is_not_read() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"commands": [
        sh(r#"echo top-secret-content > secret; rm "$DIREKTIV_RESULT"; ln -s "$PWD/secret" "$DIREKTIV_RESULT"; echo out"#),
        sh(r#"rm "$DIREKTIV_RESULT"; mkfifo "$DIREKTIV_RESULT"; echo fifo"#),
    ]});
    let reply = sidecar.call(&runner, "swapped", body).await;
    reply.assert_success();
    assert_eq!(reply.command(0)["result"], "out");
    assert_eq!(reply.command(1)["result"], "fifo");
    let lines = sidecar.lines("swapped");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("replaced by a symbolic link")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("replaced by a FIFO")),
        "{lines:?}"
    );
}

/// The result file is masked like stdout, after JSON decoding too.
#[tokio::test(flavor = "multi_thread")]
async fn the_result_file_is_masked() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({
        "env": {"API_TOKEN": "tok-abcdef-123456"},
        "commands": [sh(r#"printf '{"t": "tok-abcdef\u002d123456", "ok": "%s"}' "$API_TOKEN" > "$DIREKTIV_RESULT""#)]
    });
    let reply = sidecar.call(&runner, "masked-result", body).await;
    reply.assert_success();
    assert_eq!(reply.command(0)["result"], json!({"t": "***", "ok": "***"}));
}

/// The direktiv-cmd shape: a non-empty result file is the command's `Output`.
#[tokio::test(flavor = "multi_thread")]
async fn the_result_file_is_the_direktiv_cmd_output() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"data": {"commands": [
        {"command": "sh -c 'echo noise; echo [1,2] > \"$DIREKTIV_RESULT\"'"},
        {"command": "echo plain"},
    ]}});
    let reply = sidecar.call(&runner, "dcmd-result", body).await;
    let entries: Vec<Value> = serde_json::from_value(reply.body().clone()).unwrap_or_default();
    assert_eq!(entries.len(), 2, "{reply:?}");
    assert_eq!(entries[0]["Output"], json!([1, 2]));
    assert_eq!(entries[1]["Output"], "plain\n");
}
