//! Results and errors against the real binary (README, "Response format" and "Error codes"):
//! how `result` is derived from stdout, `CMD_RESULT_KEY`, truncation, every `cmd.*` code the
//! core produces, and the shape of error headers and bodies.

use crate::support::{start_pair, Reply};
use serde_json::{json, Value};

/// The error headers and the error body agree, and the body carries the results so far.
#[track_caller]
fn assert_error_body(reply: &Reply, key: &str) {
    let body = reply.body();
    assert_eq!(
        body["errorCode"].as_str(),
        reply.error_code().as_deref(),
        "{reply:?}"
    );
    assert_eq!(
        body["errorMessage"].as_str(),
        reply.error_message().as_deref(),
        "{reply:?}"
    );
    assert!(
        body[key].is_array(),
        "failure body keeps `{key}`: {reply:?}"
    );
}

async fn result_of(stdout_script: &str) -> Value {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"commands": [{"args": ["sh", "-c", stdout_script]}]});
    let reply = sidecar.call(&runner, "r1", body).await;
    reply.assert_success();
    reply.command(0)["result"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn json_stdout_is_embedded_as_json() {
    let result = result_of(r#"echo '{"a": [1, 2], "b": {"c": null}}'"#).await;
    assert_eq!(result, json!({"a": [1, 2], "b": {"c": null}}));
    assert_eq!(result_of("echo 42").await, json!(42));
    assert_eq!(result_of("echo '[true, \"x\"]'").await, json!([true, "x"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn text_stdout_is_trimmed_and_stripped_of_ansi_escapes() {
    assert_eq!(
        result_of(r"printf '  \n hello world \t\n\n'").await,
        json!("hello world")
    );
    assert_eq!(
        result_of(r"printf '\033[1;31mred\033[0m and \033[32mgreen\033[0m\n'").await,
        json!("red and green")
    );
    assert_eq!(
        result_of(r"printf 'line one\nline two\n'").await,
        json!("line one\nline two")
    );
    assert_eq!(result_of("true").await, json!(""));
}

#[tokio::test(flavor = "multi_thread")]
async fn text_that_is_json_after_trimming_is_parsed() {
    assert_eq!(
        result_of(r#"printf '\033[32m{"ok": true}\033[0m\n'"#).await,
        json!({"ok": true})
    );
    assert_eq!(result_of(r"printf '\n\n  7  \n'").await, json!(7));
}

#[tokio::test(flavor = "multi_thread")]
async fn stdout_and_stderr_are_returned_raw() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"commands": [{"args": ["sh", "-c", r"printf ' \033[1mout\033[0m\n'; echo err >&2"]}]});
    let reply = sidecar.call(&runner, "r1", body).await;
    reply.assert_success();
    assert_eq!(reply.command(0)["stdout"], " \u{1b}[1mout\u{1b}[0m\n");
    assert_eq!(reply.command(0)["stderr"], "err\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn result_key_renames_the_top_level_key_in_success_and_failure() {
    let (sidecar, runner) = start_pair(&[("CMD_RESULT_KEY", "bash")]);
    let reply = sidecar
        .call(&runner, "r1", json!({"command": "echo hi"}))
        .await;
    reply.assert_success();
    assert_eq!(reply.results_under("bash")[0]["result"], "hi");
    assert!(reply.body().get("commands").is_none(), "{reply:?}");

    let reply = sidecar
        .call(&runner, "r2", json!({"command": "sh -c 'exit 2'"}))
        .await;
    reply.assert_error("cmd.exit.2", 500);
    assert_error_body(&reply, "bash");
    assert_eq!(reply.results_under("bash")[0]["exit_code"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn output_beyond_the_limit_is_truncated_in_the_response_but_logged_whole() {
    let (sidecar, runner) = start_pair(&[("CMD_MAX_OUTPUT", "100")]);
    let body =
        json!({"commands": [{"args": ["sh", "-c", "seq 1 500; seq 1 500 >&2"], "print": false}]});
    let reply = sidecar.call(&runner, "r1", body).await;
    reply.assert_success();
    let result = reply.command(0);
    assert_eq!(result["truncated"], true);
    let stdout = result["stdout"].as_str().unwrap_or_default();
    let stderr = result["stderr"].as_str().unwrap_or_default();
    assert!(
        !stdout.is_empty() && stdout.len() <= 100,
        "{}",
        stdout.len()
    );
    assert!(
        !stderr.is_empty() && stderr.len() <= 100,
        "{}",
        stderr.len()
    );
    let lines = sidecar.lines("r1");
    assert_eq!(lines.len(), 1000, "logs get everything");

    let small = json!({"commands": [{"command": "echo short"}]});
    let reply = sidecar.call(&runner, "r2", small).await;
    assert_eq!(reply.command(0)["truncated"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn non_zero_exit_is_cmd_exit_n_with_a_message_naming_the_command() {
    let (sidecar, runner) = start_pair(&[]);
    let reply = sidecar
        .call(&runner, "r1", json!({"command": "cat nope"}))
        .await;
    reply.assert_error("cmd.exit.1", 500);
    assert_error_body(&reply, "commands");
    assert_eq!(
        reply.error_message().unwrap_or_default(),
        "command 'cat nope' exited with status 1: cat: nope: No such file or directory"
    );
    let failed = reply.command(0);
    assert_eq!(failed["success"], false);
    assert_eq!(failed["exit_code"], 1);

    let reply = sidecar
        .call(&runner, "r2", json!({"command": "sh -c 'exit 255'"}))
        .await;
    reply.assert_error("cmd.exit.255", 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_killing_itself_is_cmd_signal() {
    let (sidecar, runner) = start_pair(&[]);
    let reply = sidecar
        .call(&runner, "r1", json!({"command": "sh -c 'kill -KILL $$'"}))
        .await;
    reply.assert_error("cmd.signal.SIGKILL", 500);
    assert_error_body(&reply, "commands");
    let reply = sidecar
        .call(&runner, "r2", json!({"command": "sh -c 'kill -USR1 $$'"}))
        .await;
    reply.assert_error("cmd.signal.SIGUSR1", 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_is_cmd_timeout() {
    let (sidecar, runner) = start_pair(&[("CMD_KILL_GRACE", "1s")]);
    let body = json!({"commands": [{"command": "sleep 60", "timeout": 1}]});
    let reply = sidecar.call(&runner, "r1", body).await;
    reply.assert_error("cmd.timeout", 500);
    assert_error_body(&reply, "commands");
    let message = reply.error_message().unwrap_or_default();
    assert!(message.starts_with("command 'sleep 60'"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_executable_is_cmd_notfound() {
    let (sidecar, runner) = start_pair(&[]);
    for (aid, command) in [
        ("r1", "no-such-program-anywhere --flag"),
        ("r2", "/no/such/dir/prog"),
        ("r3", "./missing.sh"),
    ] {
        let reply = sidecar
            .call(&runner, aid, json!({"command": command}))
            .await;
        reply.assert_error("cmd.notfound", 500);
        assert_error_body(&reply, "commands");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_that_is_not_executable_is_cmd_denied() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({
        "files": [{"name": "script.sh", "data": "#!/bin/sh\necho ran\n"}],
        "commands": [{"command": "./script.sh"}]
    });
    let reply = sidecar.call(&runner, "r1", body).await;
    reply.assert_error("cmd.denied", 500);
    assert_error_body(&reply, "commands");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_requests_are_cmd_input_400() {
    let (sidecar, runner) = start_pair(&[]);
    let bodies: Vec<(&str, crate::support::Body)> = vec![
        ("not json", "{\"commands\": [".into()),
        ("empty body", "".into()),
        ("json array", json!([1, 2]).into()),
        (
            "commands not an array",
            json!({"commands": "echo hi"}).into(),
        ),
        ("command not a string", json!({"command": 5}).into()),
        (
            "args not strings",
            json!({"commands": [{"args": ["echo", 1]}]}).into(),
        ),
        (
            "timeout not a duration",
            json!({"commands": [{"command": "true", "timeout": "soon"}]}).into(),
        ),
        (
            "env value an object",
            json!({"env": {"A": {"b": 1}}, "command": "true"}).into(),
        ),
        (
            "continue not a bool",
            json!({"commands": [{"command": "true", "continue": "yes"}]}).into(),
        ),
        (
            "file without name",
            json!({"files": [{"data": "x"}], "command": "true"}).into(),
        ),
        (
            "absolute file name",
            json!({"files": [{"name": "/etc/x", "data": "x"}], "command": "true"}).into(),
        ),
        ("empty command", json!({"command": "  "}).into()),
    ];
    for (i, (what, body)) in bodies.into_iter().enumerate() {
        let reply = sidecar.call(&runner, &format!("bad{i}"), body).await;
        assert_eq!(reply.status, 400, "{what}: {reply:?}");
        assert_eq!(reply.error_code().as_deref(), Some("cmd.input"), "{what}");
        assert!(
            !reply.error_message().unwrap_or_default().is_empty(),
            "{what}: message required"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_action_id_is_cmd_input_400() {
    let (_sidecar, runner) = start_pair(&[]);
    let reply = runner
        .post(
            json!({"command": "echo hi"}),
            &[("Content-Type", "application/json")],
        )
        .await;
    reply.assert_error("cmd.input", 400);
    let message = reply.error_message().unwrap_or_default();
    assert!(message.contains("Direktiv-ActionID"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stderr_with_line_breaks_gives_a_one_line_message() {
    let (sidecar, runner) = start_pair(&[]);
    let script =
        r"printf 'first\r\nInjected-Header: yes\r\n\033[31mcolour\tand\0nul\n' >&2; exit 1";
    let body = json!({"commands": [{"args": ["sh", "-c", script]}]});
    let reply = sidecar.call(&runner, "r1", body).await;
    reply.assert_error("cmd.exit.1", 500);
    let message = reply.error_message().unwrap_or_default();
    assert!(
        !message.chars().any(|c| c.is_control()),
        "control characters must be escaped: {message:?}"
    );
    assert!(message.contains("Injected-Header"), "{message}");
    assert!(
        reply.header("Injected-Header").is_none(),
        "header injection"
    );
    assert_error_body(&reply, "commands");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_stderr_gives_a_message_of_at_most_4_kib_ending_with_its_tail() {
    let (sidecar, runner) = start_pair(&[]);
    let script = "i=0; while [ $i -lt 3000 ]; do echo \"noise line $i\" >&2; i=$((i+1)); done; \
                  echo 'the real reason' >&2; exit 3";
    let body = json!({"commands": [{"args": ["sh", "-c", script], "silent": true}]});
    let reply = sidecar.call(&runner, "r1", body).await;
    reply.assert_error("cmd.exit.3", 500);
    let message = reply.error_message().unwrap_or_default();
    assert!(message.len() <= 4096, "message is {} bytes", message.len());
    assert!(message.starts_with("command `sh -c "), "{message}");
    assert!(
        message.trim_end().ends_with("the real reason"),
        "the message ends with the tail of stderr: {message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_stderr_line_or_a_long_command_still_gives_at_most_4_kib() {
    let (sidecar, runner) = start_pair(&[]);
    let one_line = "head -c 100000 /dev/zero | tr '\\0' x >&2; exit 1";
    let long_argument = "y".repeat(10_000);
    let bodies = [
        json!({"commands": [{"args": ["sh", "-c", one_line], "silent": true}]}),
        json!({"commands": [{"command": format!("sh -c 'exit 2' {long_argument}")}]}),
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        let reply = sidecar.call(&runner, &format!("r{i}"), body).await;
        assert_eq!(reply.status, 500, "{reply:?}");
        let message = reply.error_message().unwrap_or_default();
        assert!(message.len() <= 4096, "message is {} bytes", message.len());
        assert!(message.starts_with("command \"sh -c '"), "{message}");
        assert_error_body(&reply, "commands");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn success_is_exactly_200_with_json() {
    let (sidecar, runner) = start_pair(&[]);
    let reply = sidecar
        .call(&runner, "r1", json!({"command": "true"}))
        .await;
    reply.assert_success();
    assert!(reply.body().is_object());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_stays_healthy_after_bad_input() {
    let (sidecar, runner) = start_pair(&[]);
    let garbage: Vec<crate::support::Body> = vec![
        "\u{0}\u{1}\u{2}".into(),
        vec![0xff, 0xfe, 0x00, 0x7b].into(),
        "{".repeat(10_000).into(),
        json!({"commands": [{"command": "echo 'unterminated"}]}).into(),
        json!({"files": [{"name": "../escape", "data": "x"}], "command": "true"}).into(),
    ];
    for (i, body) in garbage.into_iter().enumerate() {
        let reply = sidecar.call(&runner, &format!("g{i}"), body).await;
        assert_eq!(
            reply.error_code().as_deref(),
            Some("cmd.input"),
            "{reply:?}"
        );
    }
    let wrong_method = runner
        .request(
            reqwest::Method::PUT,
            "/",
            &[("Direktiv-ActionID", "x")],
            "{}",
        )
        .await;
    assert_eq!(wrong_method.status, 405, "{wrong_method:?}");
    assert_eq!(runner.get("/healthz").await.status, 200);
    assert_eq!(runner.get("/readyz").await.status, 200);
    let reply = sidecar
        .call(&runner, "after", json!({"command": "echo fine"}))
        .await;
    reply.assert_success();
    assert_eq!(reply.command(0)["result"], "fine");
}
