//! A request refused with `cmd.input` may quote one of its own values in the message (a bad
//! `timeout`, `limits.memory`, file name, `mode`, `workdir`): a secret quoted there is masked
//! in the header and the body like anywhere else, although the request never ran, and also
//! when it is the whole value and longer than a message would quote.

use serde_json::{json, Value};

use super::{assert_hidden, call};
use crate::support::{FakeSidecar, Reply, Runner};

/// Asserts a `cmd.input` refusal that does not show `secret`, neither in the header nor in the
/// body, but shows `***` where it quoted it.
#[track_caller]
fn assert_refused_masked(reply: &Reply, secret: &str) {
    reply.assert_error("cmd.input", 400);
    let header = reply.error_message().unwrap_or_default();
    assert!(header.contains("***"), "{header}");
    assert_hidden([&header, &reply.text], &[secret]);
}

/// Each request quotes its secret in a refusal, the secret given in one of the ways a request
/// marks secrets.
fn refused_requests(secret: &str) -> Vec<(&'static str, Value)> {
    vec![
        (
            "timeout",
            json!({"mask": [secret], "commands": [{"command": "true", "timeout": secret}]}),
        ),
        (
            "memory",
            json!({"mask": [secret],
                   "commands": [{"command": "true", "limits": {"memory": secret}}]}),
        ),
        (
            "file-name",
            json!({"mask": [secret],
                   "files": [{"name": format!("../{secret}"), "data": "x"}],
                   "commands": [{"command": "true"}]}),
        ),
        (
            "mode",
            json!({"mask": [secret],
                   "files": [{"name": "a.txt", "data": "x", "mode": secret}],
                   "commands": [{"command": "true"}]}),
        ),
        (
            "workdir",
            json!({"mask": [secret],
                   "commands": [{"command": "true", "workdir": format!("/{secret}")}]}),
        ),
        (
            "env-by-name",
            json!({"env": {"API_TOKEN": secret},
                   "commands": [{"command": "true", "timeout": secret}]}),
        ),
        (
            "marked-in-a-command",
            json!({"commands": [{"command": "true", "timeout": secret,
                                 "envs": [{"name": "X", "value": secret, "secret": true}]}]}),
        ),
        (
            "direktiv-cmd",
            json!({"data": {"commands": [{"command": "true", "timeout": secret,
                   "envs": [{"name": "DB_PASSWORD", "value": secret}]}]}}),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_that_quotes_a_secret_masks_it() {
    let secret = "s3cret-quoted-in-refusals";
    for (name, body) in refused_requests(secret) {
        let (reply, lines) = call(&format!("refused-{name}"), body).await;
        assert_refused_masked(&reply, secret);
        assert_hidden(&lines, &[secret]);
    }
}

/// A long secret is quoted whole and masked whole: no first part of it shows where a message
/// would have cut a long value.
#[tokio::test(flavor = "multi_thread")]
async fn a_long_secret_in_a_refusal_shows_no_piece() {
    let secret = format!("long-{}-secret", "k3y".repeat(40));
    let body = json!({"mask": [&secret], "commands": [{"command": "true", "timeout": &secret}]});
    let (reply, _) = call("refused-long", body).await;
    assert_refused_masked(&reply, &secret);
    assert_hidden([&reply.text], &["long-k3yk3y"]);
}

/// What is found wrong only while the request runs (an `output` file that is not there) is
/// masked with the request's secrets too, in the header, the body and the log.
#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_found_while_running_is_masked() {
    let secret = "s3cret-out-file";
    let body = json!({"mask": [secret], "commands": [{"command": "true", "output": secret}]});
    let (reply, lines) = call("refused-running", body).await;
    assert_refused_masked(&reply, secret);
    assert_hidden(&lines, &[secret]);
    assert!(
        lines
            .iter()
            .any(|line| line.contains("\"***\" does not exist")),
        "{lines:?}"
    );
}

/// Secrets whose forms take more than one request may have masked refuse the request before
/// it runs: the runner will not run what it cannot mask.
#[tokio::test(flavor = "multi_thread")]
async fn secrets_too_large_to_mask_refuse_the_request() {
    let huge: Vec<String> = (0..40)
        .map(|i| format!("{i:02}{}", "s".repeat(60_000)))
        .collect();
    let body = json!({"mask": huge, "commands": [{"command": "echo ran"}]});
    let (reply, lines) = call("refused-huge", body).await;
    reply.assert_error("cmd.input", 400);
    let message = reply.error_message().unwrap_or_default();
    assert!(
        message.contains("more than one request may have masked"),
        "{message}"
    );
    assert!(!lines.iter().any(|line| line == "ran"), "{lines:?}");
}

/// A warning about the request (an unknown top-level field) may quote it too: masked in the
/// log and in the runner's own log, and the secret is not cut first.
#[tokio::test(flavor = "multi_thread")]
async fn a_warning_that_quotes_a_secret_masks_it() {
    let secret = format!("warned-{}-s3cret", "w".repeat(60));
    let body = json!({"mask": [&secret], &secret: 1, "commands": [{"command": "true"}]});
    let sidecar = FakeSidecar::start();
    let runner = Runner::start(&sidecar);
    let reply = sidecar.call(&runner, "warned", body).await;
    reply.assert_success();
    let lines = sidecar.lines("warned");
    assert!(
        lines.iter().any(|line| line.starts_with("warning: ")),
        "{lines:?}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let runner_log = runner.stderr_lines();
    assert!(
        runner_log.iter().any(|line| line.contains("***")),
        "{runner_log:?}"
    );
    assert_hidden(lines.iter().chain(&runner_log), &["warned-wwwwwwww"]);
}
