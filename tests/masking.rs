//! Secrets never leave the runner through its logs (README, "Logs"): the values of request- and
//! command-level `env`/`envs` and of `mask` become `***` in streamed lines, in the echoed
//! `running command '…'` line, in `Direktiv-ErrorMessage` and the error body, and in the
//! runner's own stdout/stderr. Values shorter than 4 bytes are left alone.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{start_pair, FakeSidecar, Reply, Runner};

/// A secret given through `mask` in most tests below.
const SECRET: &str = "hunter22x";

/// Runs `body` as action `aid` against a fresh sidecar and runner; returns the reply and the
/// action's log lines.
async fn call(aid: &str, body: Value) -> (Reply, Vec<String>) {
    let (sidecar, runner) = start_pair(&[]);
    let reply = sidecar.call(&runner, aid, body).await;
    let lines = sidecar.lines(aid);
    (reply, lines)
}

/// Asserts that none of `texts` contains any of `secrets`.
#[track_caller]
fn assert_hidden<'a>(texts: impl IntoIterator<Item = &'a String>, secrets: &[&str]) {
    for text in texts {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret:?} leaked in {text:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn request_env_value_is_masked_in_output_lines() {
    let body = json!({
        "env": {"API_TOKEN": "tok-req-5ecret"},
        "commands": [{"command": "printenv API_TOKEN"}]
    });
    let (reply, lines) = call("req-env", body).await;
    reply.assert_success();
    assert_eq!(lines, ["running command 'printenv API_TOKEN'", "***"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn request_envs_alias_value_is_masked() {
    let body = json!({
        "envs": [{"name": "API_TOKEN", "value": "tok-req-alias"}],
        "commands": [{"command": "printenv API_TOKEN", "print": false}]
    });
    let (reply, lines) = call("req-envs", body).await;
    reply.assert_success();
    assert_eq!(lines, ["***"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn command_env_and_envs_values_are_masked() {
    let body = json!({"commands": [
        {"command": "sh -c 'echo \"A=$A\"'", "print": false, "env": {"A": "cmd-env-secret"}},
        {"command": "sh -c 'echo \"B=$B\"'", "print": false,
         "envs": [{"name": "B", "value": "cmd-envs-secret"}]}
    ]});
    let (reply, lines) = call("cmd-env", body).await;
    reply.assert_success();
    assert_eq!(lines, ["A=***", "B=***"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn mask_entries_are_masked_in_echoed_command_and_output() {
    let body = json!({
        "mask": [SECRET],
        "commands": [{"command": format!("echo the password is {SECRET}")}]
    });
    let (reply, lines) = call("mask", body).await;
    reply.assert_success();
    assert_eq!(
        lines,
        [
            "running command 'echo the password is ***'",
            "the password is ***"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn env_value_in_the_command_line_is_masked_when_echoed() {
    let body = json!({"commands": [
        {"command": "echo cmd-env-secret", "env": {"X": "cmd-env-secret"}}
    ]});
    let (reply, lines) = call("echoed", body).await;
    reply.assert_success();
    assert_eq!(lines, ["running command 'echo ***'", "***"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_split_across_pipe_reads_is_masked() {
    let command = "sh -c 'printf hun; sleep 0.2; printf ter2; echo'";
    let body = json!({"mask": ["hunter2"], "commands": [{"command": command}]});
    let (reply, lines) = call("split", body).await;
    reply.assert_success();
    assert_eq!(
        lines,
        [format!("running command '{command}'"), "***".into()]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn values_shorter_than_four_bytes_are_not_masked() {
    let body = json!({
        "mask": ["abc", "wxyz"],
        "env": {"SHORT": "xyz"},
        "commands": [{"command": "echo abc xyz wxyz"}]
    });
    let (reply, lines) = call("short", body).await;
    reply.assert_success();
    assert_eq!(lines, ["running command 'echo abc xyz ***'", "abc xyz ***"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn error_message_and_body_are_masked() {
    let body = json!({
        "mask": [SECRET],
        "commands": [{"command": format!("sh -c 'echo failing with {SECRET} >&2; exit 3'")}]
    });
    let (reply, lines) = call("err", body).await;
    reply.assert_error("cmd.exit.3", 500);
    let message = reply.error_message().unwrap_or_default();
    assert!(message.contains("failing with ***"), "{message}");
    assert_eq!(reply.body()["errorMessage"], json!(message));
    assert_masked_failure_body(&reply);
    assert_hidden(&lines, &[SECRET]);
    assert!(lines.iter().any(|l| l == "failing with ***"), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn refusal_message_is_masked() {
    let body = json!({
        "mask": [SECRET],
        "commands": [{"command": format!("echo {SECRET} && ls")}]
    });
    let (reply, lines) = call("refused", body).await;
    reply.assert_error("cmd.input", 400);
    assert_hidden(
        [&reply.error_message().unwrap_or_default(), &reply.text],
        &[SECRET],
    );
    assert_hidden(&lines, &[SECRET]);
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_message_is_masked() {
    let body = json!({
        "mask": [SECRET],
        "commands": [{"command": format!("sh -c 'echo {SECRET} >&2; sleep 30'"), "timeout": 1}]
    });
    let (reply, lines) = call("timeout", body).await;
    reply.assert_error("cmd.timeout", 500);
    assert_masked_failure_body(&reply);
    assert_hidden(&lines, &[SECRET]);
}

/// Asserts the masked parts of a native failure: the header, `errorMessage`, and each result's
/// `command` and `error.message`. The results' captured `stdout`/`stderr` are the command's
/// own output, returned unchanged like `Output` in the special-command shape.
#[track_caller]
fn assert_masked_failure_body(reply: &Reply) {
    let body = reply.body();
    let mut shown = vec![
        reply.error_message().unwrap_or_default(),
        body["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    ];
    for result in reply.commands() {
        shown.push(result["command"].as_str().unwrap_or_default().to_string());
        shown.push(result["error"]["message"].to_string());
    }
    assert!(shown[1].contains("***"), "{body}");
    assert_hidden(&shown, &[SECRET]);
}

/// The special-command shape masks its `envs` in the echoed command, the output, the failure
/// line, the stop line, `Direktiv-ErrorMessage` and the plain-text error body.
#[tokio::test(flavor = "multi_thread")]
async fn special_shape_error_and_logs_are_masked() {
    let secret = "dcmd-secret-val";
    let body = json!({"data": {"commands": [{
        "command": format!("sh -c 'echo bad {secret} >&2; exit 1'"),
        "stop": true,
        "envs": [{"name": "S", "value": secret}]
    }]}});
    let (reply, lines) = call("special", body).await;
    reply.assert_error("io.direktiv.error.execution", 500);
    assert_hidden(
        [&reply.error_message().unwrap_or_default(), &reply.text],
        &[secret],
    );
    assert_hidden(&lines, &[secret]);
    assert!(lines.iter().any(|l| l == "bad ***"), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l == "running command 'sh -c 'echo bad *** >&2; exit 1''"),
        "{lines:?}"
    );
}

/// A request whose command echoes `SECRET` to stdout and stderr and then fails.
fn noisy_failing_request() -> Value {
    json!({
        "mask": [SECRET],
        "env": {"TOKEN": "env-secret-value"},
        "commands": [
            {"command": "printenv TOKEN"},
            {"command": format!("sh -c 'echo out {SECRET}; echo err {SECRET} >&2; exit 4'")}
        ]
    })
}

/// Asserts that the runner's own stdout and stderr never show a secret.
#[track_caller]
fn assert_runner_output_hidden(runner: &Runner) {
    let all: Vec<String> = runner
        .stdout_lines()
        .into_iter()
        .chain(runner.stderr_lines())
        .collect();
    assert_hidden(&all, &[SECRET, "env-secret-value"]);
}

/// Development mode prints command output to the runner's stdout: masked there too, and the
/// runner's own (trace-level) log on stderr never shows a secret.
#[tokio::test(flavor = "multi_thread")]
async fn development_stdout_and_runner_log_are_masked() {
    let sidecar = FakeSidecar::start();
    let runner = Runner::builder()
        .sidecar(&sidecar)
        .env("RUST_LOG", "direktiv_cmd=trace")
        .start();
    let reply = sidecar
        .call(&runner, "development", noisy_failing_request())
        .await;
    reply.assert_error("cmd.exit.4", 500);
    assert!(
        runner.wait_stdout(support::PATIENCE, |l| l.contains("err ***")),
        "output must reach stdout: {:?}",
        runner.stdout_lines()
    );
    assert_runner_output_hidden(&runner);
}

/// When the sidecar is down, lines fall back to the runner's stdout, still masked.
#[tokio::test(flavor = "multi_thread")]
async fn fallback_to_stdout_is_masked() {
    let sidecar = FakeSidecar::start();
    let runner = Runner::builder()
        .sidecar(&sidecar)
        .env("RUST_LOG", "direktiv_cmd=trace")
        .start();
    sidecar.set_down(true);
    let reply = sidecar
        .call(&runner, "fallback", noisy_failing_request())
        .await;
    reply.assert_error("cmd.exit.4", 500);
    assert!(
        runner.wait_stdout(support::PATIENCE, |l| l.contains("err ***")),
        "output must fall back to stdout: {:?}",
        runner.stdout_lines()
    );
    // Anything the runner still prints shortly after the response is checked as well.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_runner_output_hidden(&runner);
    assert!(sidecar.messages("fallback").is_empty());
}
