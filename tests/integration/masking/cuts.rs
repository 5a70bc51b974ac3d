//! Secrets where output is cut: at the 4 MiB cap of an unfinished log line, at the start of the
//! stderr tail kept for error messages, and at `CMD_MAX_OUTPUT` in the response. No piece of a
//! secret may show on either side of a cut.

use serde_json::{json, Value};

use super::forms::{assert_no_fragment, fragments};
use crate::support::{start_pair, LOG_CAP};

/// A line longer than the cap, with a secret across the cap, whose newline is still to come:
/// the first message ends before the secret, the next one starts with it masked.
#[tokio::test(flavor = "multi_thread")]
async fn a_secret_across_the_cap_of_an_unfinished_line_is_masked_whole() {
    let secret = "Sup3rS3cretV4lue";
    let script = format!(
        "head -c {} /dev/zero | tr '\\0' A; printf %s \"$API_TOKEN\"; \
         head -c 1000 /dev/zero | tr '\\0' B; sleep 1; echo",
        LOG_CAP - 10
    );
    let body = json!({
        "env": {"API_TOKEN": secret},
        "commands": [{"command": script, "shell": true, "print": false}]
    });
    let (sidecar, runner) = start_pair(&[]);
    let reply = sidecar.call(&runner, "cap", body).await;
    reply.assert_success();
    let lines = sidecar.lines("cap");
    assert_eq!(
        lines.len(),
        2,
        "{:?}",
        lines.iter().map(String::len).collect::<Vec<_>>()
    );
    // The newline comes late: the line is cut while unfinished, before the secret.
    assert!(lines[0].len() == LOG_CAP - 10 && lines[0].bytes().all(|b| b == b'A'));
    assert_eq!(lines[1], format!("***{}", "B".repeat(1000)));
}

/// The stderr tail in error messages never starts inside a secret, wherever the secret lies
/// relative to what is kept.
#[tokio::test(flavor = "multi_thread")]
async fn the_stderr_tail_never_starts_inside_a_secret() {
    let secret: String = (0..300)
        .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
        .collect();
    let pieces = fragments(&[&secret]);
    // How much follows the secret: inside the message, at its edge, at the edge of what the
    // runner keeps (4 KiB shown, as much again kept to see secrets whole), and beyond.
    let after = [
        100,
        2000,
        3500,
        4096 - 161,
        4096 + 161,
        8192 - 161,
        8192 - 1,
        8192 + 50,
    ];
    let commands: Vec<Value> = after
        .iter()
        .map(|&n| {
            json!({"command": "sh -c 'cat >&2; exit 1'", "print": false, "continue": true,
                   "stdin": format!("{}{secret}{}", "X".repeat(5000), ".".repeat(n))})
        })
        .collect();
    let body = json!({"mask": [&secret], "commands": commands});
    let (sidecar, runner) = start_pair(&[]);
    let reply = sidecar.call(&runner, "tail", body).await;
    reply.assert_success();
    for (result, n) in reply.commands().iter().zip(after) {
        let message = result["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("command \"sh -c 'cat"), "{message}");
        assert_no_fragment(
            &format!("the message with {n} bytes after"),
            message,
            &pieces,
        );
    }
    for line in sidecar.lines("tail") {
        assert_no_fragment("the log", &line, &pieces);
    }
    assert_no_fragment("the response", &reply.text, &pieces);
}

/// The response keeps `CMD_MAX_OUTPUT` bytes of stdout: a secret across that cut is left out
/// whole rather than cut in two.
#[tokio::test(flavor = "multi_thread")]
async fn the_response_head_never_ends_inside_a_secret() {
    let secret = "Head-Secret-0123456789";
    let pieces = fragments(&[secret]);
    let before = [980, 990, 999, 1000];
    let commands: Vec<Value> = before
        .iter()
        .map(|&n| {
            json!({"command": "cat", "print": false,
                   "stdin": format!("{}{secret} and more", "x".repeat(n))})
        })
        .collect();
    let body = json!({"mask": [secret], "commands": commands});
    let (sidecar, runner) = start_pair(&[("CMD_MAX_OUTPUT", "1000")]);
    let reply = sidecar.call(&runner, "head", body).await;
    reply.assert_success();
    for (result, n) in reply.commands().iter().zip(before) {
        let stdout = result["stdout"].as_str().unwrap_or_default();
        assert_eq!(stdout, "x".repeat(n), "{n} bytes before the secret");
        assert_eq!(result["truncated"], json!(true));
        assert_no_fragment("stdout", stdout, &pieces);
    }
    let shown: Vec<String> = sidecar.lines("head");
    assert_eq!(shown.len(), 4);
    assert!(
        shown.iter().all(|l| l.ends_with("x*** and more")),
        "{shown:?}"
    );
}
