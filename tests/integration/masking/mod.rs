//! Secrets never leave the runner (README, "Secrets"): `mask` values, env values whose name looks
//! secret (`CMD_MASK_NAMES`), env entries marked `"secret": true` and values declared with
//! `::add-mask::` become `***` in streamed lines, in the echoed `running command '…'` line, in
//! `Direktiv-ErrorMessage` and the error body, in the runner's own stdout/stderr and in the
//! response (unless `CMD_MASK_RESPONSE=false`), in every form and wherever output is cut. Other
//! values stay readable; values shorter than 4 bytes are left alone. `props` drives all of this
//! with generated secrets.

mod concurrent;
mod cuts;
mod declarations;
mod derived;
mod derived_props;
mod forms;
mod load;
mod names;
mod props;
mod refusals;

use crate::support::{start_pair, FakeSidecar, Reply, Runner};
use serde_json::{json, Value};

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
        {"command": "sh -c 'echo \"A=$DB_PASSWORD\"'", "print": false,
         "env": {"DB_PASSWORD": "cmd-env-secret"}},
        {"command": "sh -c 'echo \"B=$B\"'", "print": false,
         "envs": [{"name": "B", "value": "cmd-envs-secret", "secret": true}]}
    ]});
    let (reply, lines) = call("cmd-env", body).await;
    reply.assert_success();
    assert_eq!(lines, ["A=***", "B=***"]);
}

/// Only secrets are masked: a region, a target name, `true` and an endpoint URL stay readable
/// in the logs, the echoed command and the error message.
#[tokio::test(flavor = "multi_thread")]
async fn values_that_are_not_secret_stay_readable() {
    let body = json!({
        "env": {"TARGET": "staging", "AWS_DEFAULT_REGION": "eu-central-1", "B": true,
                "ENDPOINT": "https://s3.eu-central-1.amazonaws.com/"},
        "commands": [
            {"command": "sh -c 'echo report for $TARGET in $AWS_DEFAULT_REGION: $B'"},
            {"command": "sh -c 'echo cannot reach \"$1\" >&2; exit 2' x https://s3.eu-central-1.amazonaws.com/"}
        ]
    });
    let (reply, lines) = call("readable", body).await;
    reply.assert_error("cmd.exit.2", 500);
    assert!(
        lines
            .iter()
            .any(|l| l == "report for staging in eu-central-1: true"),
        "{lines:?}"
    );
    let message = reply.error_message().unwrap_or_default();
    assert!(
        message.contains("https://s3.eu-central-1.amazonaws.com/"),
        "{message}"
    );
    assert!(!message.contains("***") && lines.iter().all(|l| !l.contains("***")));
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
        {"command": "echo cmd-env-secret", "env": {"X_API_KEY": "cmd-env-secret"}}
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
        [format!("running command \"{command}\""), "***".into()]
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

/// Asserts that a native failure is masked: the header, and the whole body (`errorMessage`,
/// each result's `command`, `stdout`, `stderr`, `result` and `error.message`).
#[track_caller]
fn assert_masked_failure_body(reply: &Reply) {
    let message = reply.body()["errorMessage"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("***"), "{}", reply.text);
    assert_hidden(
        [&reply.error_message().unwrap_or_default(), &reply.text],
        &[SECRET],
    );
}

/// The special-command shape masks its `envs` in the echoed command, the output, the failure
/// line, the stop line, `Direktiv-ErrorMessage` and the plain-text error body.
#[tokio::test(flavor = "multi_thread")]
async fn special_shape_error_and_logs_are_masked() {
    let secret = "dcmd-secret-val";
    let body = json!({"data": {"commands": [{
        "command": format!("sh -c 'echo bad {secret} >&2; exit 1'"),
        "stop": true,
        "envs": [{"name": "S", "value": secret, "secret": true}]
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
            .any(|l| l == "running command \"sh -c 'echo bad *** >&2; exit 1'\""),
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

/// Stops the runner and asserts that nothing it wrote to its stdout or stderr, at any time,
/// shows a secret; returns its stdout lines.
#[track_caller]
fn assert_runner_output_hidden(runner: Runner) -> Vec<String> {
    let stopped = runner.stop();
    let all: Vec<&String> = stopped.stdout.iter().chain(&stopped.stderr).collect();
    assert_hidden(all, &[SECRET, "env-secret-value"]);
    stopped.stdout
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
    let stdout = assert_runner_output_hidden(runner);
    // The output lines themselves (the echoed command line holds the same words).
    for line in ["***", "out ***", "err ***"] {
        assert!(
            stdout.iter().any(|l| l == line),
            "{line:?} on stdout: {stdout:?}"
        );
    }
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
    assert!(sidecar.messages("fallback").is_empty());
    // Everything the runner printed until it exited is checked, however late.
    let stdout = assert_runner_output_hidden(runner);
    for line in ["[fallback] ***", "[fallback] out ***", "[fallback] err ***"] {
        assert!(
            stdout.iter().any(|l| l == line),
            "{line:?} on stdout: {stdout:?}"
        );
    }
}

/// A secret with a `'` given in `args`: the runner echoes argv re-quoted (`'p4ss'\''w0rd'`),
/// and that form is masked in the log line, the error message and the response's `command`.
#[tokio::test(flavor = "multi_thread")]
async fn a_secret_with_a_quote_in_args_is_masked_where_argv_is_echoed() {
    let secret = "p4ss'w0rd-long";
    let body = json!({
        "mask": [secret],
        "commands": [{"args": ["sh", "-c", "echo \"got $1\" >&2; exit 3", "sh", secret]}]
    });
    let (reply, lines) = call("quoted", body).await;
    reply.assert_error("cmd.exit.3", 500);
    let echoed = r#"sh -c 'echo "got $1" >&2; exit 3' sh '***'"#;
    let message = reply.error_message().unwrap_or_default();
    assert_eq!(
        lines,
        [
            format!("running command `{echoed}`"),
            "got ***".into(),
            message.clone()
        ]
    );
    assert_eq!(
        message,
        format!("command `{echoed}` exited with status 3: got ***")
    );
    assert_eq!(
        reply.command(0)["command"],
        json!("sh -c 'echo \"got $1\" >&2; exit 3' sh '***'")
    );
    assert_hidden([&message, &reply.text], &["w0rd-long", "p4ss'"]);
    assert_hidden(&lines, &["w0rd-long", "p4ss'"]);
}

/// A secret the user writes with `\"` escapes inside `command` is masked as written there.
#[tokio::test(flavor = "multi_thread")]
async fn a_secret_written_with_escaped_quotes_in_command_is_masked() {
    let secret = r#"pa"ss\word-x"#;
    let command = r#"printf '%s\n' "pa\"ss\\word-x""#;
    let body = json!({"mask": [secret], "commands": [{"command": command}]});
    let (reply, lines) = call("escaped", body).await;
    reply.assert_success();
    assert_eq!(lines, [r#"running command `printf '%s\n' "***"`"#, "***"]);
    assert_eq!(reply.command(0)["command"], json!(r#"printf '%s\n' "***""#));
    assert_eq!(reply.command(0)["result"], json!("***"));
}

/// base64 (with a prefix, as in `Authorization: Basic`), URL-encoded and JSON-escaped forms of
/// a secret are masked in the logs and the response.
#[tokio::test(flavor = "multi_thread")]
async fn encoded_forms_in_output_are_masked() {
    let secret = "s3cr\"et/vä+lue";
    let body = json!({
        "env": {"API_TOKEN": secret},
        "commands": [
            {"command": "sh -c 'printf \"user:%s\" \"$API_TOKEN\" | base64'", "print": false},
            {"command": "sh -c 'printf \"%s\" \"$API_TOKEN\" | base64'", "print": false},
            {"args": ["echo", "q=s3cr%22et%2Fv%C3%A4%2Blue&x=1"], "print": false},
            {"args": ["echo", r#"{"token":"s3cr\"et/vä+lue"}"#], "print": false},
            {"args": ["echo", r#"{"token":"s3cr\"et/v\u00e4+lue"}"#], "print": false}
        ]
    });
    let (reply, lines) = call("encoded", body).await;
    reply.assert_success();
    // "user:" is 5 bytes, 40 bits: 6 characters encode it, the 7th mixes in the secret's first
    // bits, and the last (`U`) its last bits with padding.
    assert_eq!(lines[0], "dXNlcjp***U=");
    assert_eq!(
        lines[1..],
        [
            "***",
            "q=***&x=1",
            r#"{"token":"***"}"#,
            r#"{"token":"***"}"#
        ]
    );
    let results = reply.results();
    assert_eq!(
        results,
        [
            json!("dXNlcjp***U="),
            json!("***"),
            json!("q=***&x=1"),
            json!({"token": "***"}),
            json!({"token": "***"})
        ]
    );
}

/// The response is masked: `stdout`, `stderr`, `result` and `command`; and with
/// `CMD_MASK_RESPONSE=false` it is not, while logs and error messages still are.
#[tokio::test(flavor = "multi_thread")]
async fn the_response_is_masked_unless_configured_otherwise() {
    let body = json!({
        "mask": [SECRET],
        "commands": [
            {"args": ["echo", format!(r#"{{"key": "{SECRET}"}}"#)]},
            {"command": format!("sh -c 'echo out {SECRET}; echo err {SECRET} >&2; exit 5'")}
        ]
    });
    let (sidecar, runner) = start_pair(&[]);
    let reply = sidecar.call(&runner, "masked", body.clone()).await;
    reply.assert_error("cmd.exit.5", 500);
    assert_eq!(reply.command(0)["result"], json!({"key": "***"}));
    assert_eq!(
        reply.command(0)["command"],
        json!(r#"echo '{"key": "***"}'"#)
    );
    assert_eq!(reply.command(1)["stdout"], json!("out ***\n"));
    assert_eq!(reply.command(1)["stderr"], json!("err ***\n"));
    assert_hidden([&reply.text], &[SECRET]);

    let (sidecar, runner) = start_pair(&[("CMD_MASK_RESPONSE", "false")]);
    let reply = sidecar.call(&runner, "unmasked", body).await;
    reply.assert_error("cmd.exit.5", 500);
    assert_eq!(reply.command(0)["result"], json!({"key": SECRET}));
    assert_eq!(reply.command(1)["stdout"], json!(format!("out {SECRET}\n")));
    assert_eq!(reply.command(1)["stderr"], json!(format!("err {SECRET}\n")));
    let message = reply.error_message().unwrap_or_default();
    assert!(message.ends_with("err ***"), "{message}");
    assert_eq!(reply.body()["errorMessage"], json!(message));
    assert_hidden(&sidecar.lines("unmasked"), &[SECRET]);
}

/// `CMD_MASK_NAMES` decides which env names hold secrets: a word of the name matches it.
#[tokio::test(flavor = "multi_thread")]
async fn mask_names_decides_which_env_values_are_secret() {
    let body = json!({
        "env": {"PIN_CODE": "9876-5432", "API_TOKEN": "tok-visible-now"},
        "commands": [{"command": "sh -c 'echo $PIN_CODE $API_TOKEN'", "print": false}]
    });
    let (sidecar, runner) = start_pair(&[("CMD_MASK_NAMES", "pin")]);
    let reply = sidecar.call(&runner, "names", body).await;
    reply.assert_success();
    assert_eq!(sidecar.lines("names"), ["*** tok-visible-now"]);
}

/// A command declares a secret with `::add-mask::VALUE` on stdout or stderr, also when it is
/// `silent`: the line is not logged, and the value is masked from then on, in later commands
/// and in the response.
#[tokio::test(flavor = "multi_thread")]
async fn declared_secrets_are_masked_from_then_on() {
    let body = json!({
        "commands": [
            {"command": "sh -c 'echo ::add-mask::generated-4711; echo made generated-4711'",
             "print": false},
            {"command": "sh -c 'echo ::add-mask::from-stderr-0815 >&2; echo from-stderr-0815 >&2'",
             "print": false},
            {"command": "sh -c 'echo ::add-mask::quiet-value-42'", "silent": true, "print": false},
            {"command": "echo generated-4711 from-stderr-0815 quiet-value-42"}
        ]
    });
    let (reply, lines) = call("declared", body).await;
    reply.assert_success();
    assert_eq!(
        lines,
        [
            "made ***",
            "***",
            "running command 'echo *** *** ***'",
            "*** *** ***"
        ]
    );
    assert_eq!(
        reply.command(0)["stdout"],
        json!("::add-mask::***\nmade ***\n")
    );
    assert_eq!(reply.command(3)["result"], json!("*** *** ***"));
    assert_hidden(
        [&reply.text],
        &["generated-4711", "from-stderr-0815", "quiet-value-42"],
    );
}
