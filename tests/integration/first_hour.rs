//! What a function author meets in the first hour, against the real binary: ISO 8601
//! durations, numbers kept as printed, `./` paths and the hint for a bare script name, progress
//! bars in logs and results, empty lines, `CMD_ALLOW` entries that match nothing, the `run`
//! subcommand's flags and exit status, an explicit empty command list, and the profile
//! `make run` builds with (README, "Quick start", "Request format", "Response format", "Error
//! codes", "Logs", "Configuration"; docs/compatibility.md).

use std::path::Path;
use std::time::Duration;

use crate::support::{start_pair, within, FakeSidecar, Finished, Runner, PATIENCE};
use serde_json::{json, Value};

/// How long a `run` that should finish at once may take before it counts as hanging.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// What every duration error says is accepted (README, "Request format").
const DURATION_FORMS: &str =
    "expected seconds (300), a duration like \"90s\"/\"5m\"/\"1h30m\", or ISO 8601 like \"PT10M\"";

/// A command run by `sh -c`, without the echoed command line in the log.
fn script(text: &str) -> Value {
    json!({"args": ["sh", "-c", text], "print": false})
}

// --- ISO 8601 durations -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn iso_8601_timeouts_stop_the_command() {
    let (sidecar, runner) = start_pair(&[("CMD_KILL_GRACE", "1")]);
    let body = json!({"commands": [{"command": "sleep 600", "timeout": "PT1S"}]});
    let reply = within(PATIENCE, "PT1S", sidecar.call(&runner, "iso-timeout", body)).await;
    reply.assert_error("cmd.timeout", 500);

    for timeout in [
        "PT10S", "PT10M", "PT1H30M", "P1D", "PT0.5S", "90s", "1h30m", "300",
    ] {
        let body = json!({"commands": [{"command": "true", "timeout": timeout}]});
        sidecar.call(&runner, "iso-ok", body).await.assert_success();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_timeout_says_what_is_accepted_without_parser_internals() {
    let (sidecar, runner) = start_pair(&[]);
    for (timeout, shown) in [("PT10X", "\"PT10X\""), ("soon", "\"soon\"")] {
        let body = json!({"commands": [{"command": "true", "timeout": timeout}]});
        let reply = sidecar.call(&runner, "bad-timeout", body).await;
        reply.assert_error("cmd.input", 400);
        let message = reply.error_message().unwrap_or_default();
        assert_eq!(
            message,
            format!("commands[0].timeout: {shown} is not a duration; {DURATION_FORMS}")
        );
    }
    let body = json!({"commands": [{"command": "true", "timeout": "P1M"}]});
    let reply = sidecar.call(&runner, "month", body).await;
    reply.assert_error("cmd.input", 400);
    let message = reply.error_message().unwrap_or_default();
    assert!(message.contains("months or years"), "{message}");
    assert!(message.contains("\"PT1M\" for one minute"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn duration_settings_accept_iso_8601_too() {
    let (sidecar, runner) = start_pair(&[
        ("CMD_TIMEOUT", "PT1S"),
        ("CMD_KILL_GRACE", "PT0.5S"),
        ("CMD_GRACE", "PT20S"),
    ]);
    let reply = sidecar
        .call(&runner, "iso-setting", json!({"command": "sleep 30"}))
        .await;
    reply.assert_error("cmd.timeout", 500);

    let finished = Runner::builder()
        .env("CMD_TIMEOUT", "P1M")
        .run_to_exit(b"", EXIT_TIMEOUT);
    assert_eq!(
        finished.status.and_then(|s| s.code()),
        Some(2),
        "{finished:?}"
    );
    assert!(
        finished.stderr.contains("CMD_TIMEOUT"),
        "{}",
        finished.stderr
    );
    assert!(
        finished.stderr.contains("months or years"),
        "{}",
        finished.stderr
    );

    let finished = Runner::builder()
        .env("CMD_KILL_GRACE", "PT5")
        .run_to_exit(b"", EXIT_TIMEOUT);
    assert!(
        finished.stderr.contains("CMD_KILL_GRACE"),
        "{}",
        finished.stderr
    );
    assert!(
        finished.stderr.contains(DURATION_FORMS),
        "{}",
        finished.stderr
    );
    assert!(!finished.stderr.contains(" at 0"), "{}", finished.stderr);
}

// --- numbers kept as printed --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn result_keeps_numbers_exactly_as_printed() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"commands": [
        {"command": "echo 1.10"},
        {"command": "echo 123456789012345678901234"},
        {"args": ["printf", "{\"price\": 1.10, \"id\": 123456789012345678901234}"]},
        {"command": "echo 1e400"}
    ]});
    let reply = sidecar.call(&runner, "numbers", body).await;
    reply.assert_success();
    assert!(reply.text.contains("\"result\":1.10,"), "{}", reply.text);
    assert!(
        reply.text.contains("\"result\":123456789012345678901234,"),
        "{}",
        reply.text
    );
    assert!(
        reply
            .text
            .contains("\"result\":{\"price\":1.10,\"id\":123456789012345678901234}"),
        "{}",
        reply.text
    );
    // Beyond a float64 Direktiv's decoder would refuse the whole response: kept as text.
    assert_eq!(reply.command(3)["result"], "1e400");
}

// --- keys kept in the order printed -------------------------------------------------------

/// An object whose keys are in no sorted order, nested, with a key given twice.
const UNSORTED: &str = r#"{"zeta": 1, "alpha": {"z": [{"b": 1, "a": 2}], "m": null, "a": "x"}, "mid": true, "zeta": 3}"#;

/// `UNSORTED` as the response carries it: each key where it was first printed (a key given
/// twice keeps its first place and its last value).
const UNSORTED_KEPT: &str =
    r#"{"zeta":3,"alpha":{"z":[{"b":1,"a":2}],"m":null,"a":"x"},"mid":true}"#;

#[tokio::test(flavor = "multi_thread")]
async fn result_keeps_object_keys_in_the_order_printed() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"commands": [
        {"args": ["printf", "%s", UNSORTED]},
        {"args": ["sh", "-c", format!("printf '%s' '{UNSORTED}' > out.json")], "output": "out.json"},
        {"args": ["printf", "\u{1b}[32m%s\u{1b}[0m\n", UNSORTED]}
    ]});
    let reply = sidecar.call(&runner, "order", body).await;
    reply.assert_success();
    let results = reply
        .text
        .matches(&format!("\"result\":{UNSORTED_KEPT},"))
        .count();
    assert_eq!(
        results, 3,
        "stdout, the output file, stdout with colours: {}",
        reply.text
    );

    // Direktiv's direktiv-cmd shape embeds the output the same way.
    let body = json!({"data": {"commands": [{"args": ["printf", "%s", UNSORTED]}]}});
    let reply = sidecar.call(&runner, "order-dc", body).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        reply.text.contains(&format!("\"Output\":{UNSORTED_KEPT}")),
        "{}",
        reply.text
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn direktiv_cmd_output_keeps_numbers_too() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"data": {"commands": [{"command": "echo 1.10"}]}});
    let reply = sidecar.call(&runner, "dc-numbers", body).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.text.contains("\"Output\":1.10"), "{}", reply.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn numbers_in_requests_still_read_as_before() {
    let (sidecar, runner) = start_pair(&[("CMD_KILL_GRACE", "1")]);
    // Written by hand: the request's numbers must reach the runner as these exact texts.
    let body = r##"{
        "files": [{"name": "tool.sh", "data": "#!/bin/sh\necho tool ran\n", "mode": 493}],
        "env": {"RATE": 1.10, "COUNT": 3},
        "mask": [12345678],
        "commands": [
            {"command": "./tool.sh"},
            {"command": "printenv RATE COUNT"},
            {"command": "echo id 12345678"},
            {"command": "sleep 30", "timeout": 1.5}
        ]
    }"##;
    let reply = sidecar.call(&runner, "request-numbers", body).await;
    reply.assert_error("cmd.timeout", 500);
    let commands = reply.commands();
    assert_eq!(commands[0]["result"], "tool ran");
    assert_eq!(
        commands[1]["stdout"], "1.10\n3\n",
        "env numbers are their text as written"
    );
    assert!(
        !sidecar
            .lines("request-numbers")
            .iter()
            .any(|l| l.contains("12345678")),
        "a number in mask is masked: {:?}",
        sidecar.lines("request-numbers")
    );

    let body = r##"{"files": [{"name": "run.sh", "content": "#!/bin/sh\necho special", "permission": 493}],
                  "data": {"commands": [{"command": "./run.sh"}]}}"##;
    let reply = sidecar.call(&runner, "permission-number", body).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body()[0]["Output"], "special\n");
}

// --- ./ paths -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn dot_slash_paths_are_accepted() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({
        "files": [
            {"name": "./run.sh", "data": "#!/bin/sh\necho '{\"ran\": true}' > ./out.json\n", "mode": "0755"},
            {"name": "./sub/data.txt", "data": "in sub"}
        ],
        "commands": [
            {"command": "./run.sh", "output": "./out.json"},
            {"command": "cat data.txt", "workdir": "./sub"}
        ]
    });
    let reply = sidecar.call(&runner, "dot-slash", body).await;
    reply.assert_success();
    assert_eq!(reply.command(0)["result"], json!({"ran": true}));
    assert_eq!(reply.command(1)["result"], "in sub");
}

#[tokio::test(flavor = "multi_thread")]
async fn dot_slash_does_not_open_a_way_out() {
    let (sidecar, runner) = start_pair(&[]);
    for (field, value) in [
        ("files", json!([{"name": "./../escaped", "data": "x"}])),
        ("files", json!([{"name": "/tmp/escaped", "data": "x"}])),
        ("workdir", json!("./../..")),
        ("output", json!("./../x")),
    ] {
        let body = match field {
            "files" => json!({"files": value, "commands": [{"command": "true"}]}),
            _ => json!({"commands": [{"command": "true", field: value}]}),
        };
        let reply = sidecar.call(&runner, "dot-escape", body).await;
        reply.assert_error("cmd.input", 400);
    }
    assert!(!sidecar.base_dir().join("escaped").exists());

    let body = json!({"commands": [
        {"command": "ln -s / escape"},
        {"command": "pwd", "workdir": "./escape/tmp"}
    ]});
    let reply = sidecar.call(&runner, "dot-symlink", body).await;
    reply.assert_error("cmd.input", 400);
    let message = reply.error_message().unwrap_or_default();
    assert!(message.contains("leads outside"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bare_script_name_in_the_temp_dir_gets_a_hint() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({
        "files": [{"name": "run.sh", "data": "#!/bin/sh\necho hi\n", "mode": "0755"}],
        "commands": [{"command": "run.sh"}]
    });
    let reply = sidecar.call(&runner, "bare", body).await;
    reply.assert_error("cmd.notfound", 500);
    let message = reply.error_message().unwrap_or_default();
    assert!(message.contains("did you mean ./run.sh?"), "{message}");

    let body = json!({
        "files": [{"name": "sub/tool.sh", "data": "#!/bin/sh\necho hi\n", "mode": "0755"}],
        "commands": [{"command": "tool.sh --flag", "workdir": "sub"}]
    });
    let reply = sidecar.call(&runner, "bare-workdir", body).await;
    reply.assert_error("cmd.notfound", 500);
    let message = reply.error_message().unwrap_or_default();
    assert!(message.contains("did you mean ./tool.sh?"), "{message}");

    let body = json!({"commands": [{"command": "no-such-tool-anywhere"}]});
    let reply = sidecar.call(&runner, "bare-missing", body).await;
    reply.assert_error("cmd.notfound", 500);
    let message = reply.error_message().unwrap_or_default();
    assert!(
        !message.contains("did you mean"),
        "no file, no hint: {message}"
    );
}

// --- progress bars ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn progress_lines_are_logged_and_returned_as_a_terminal_shows_them() {
    let (sidecar, runner) = start_pair(&[]);
    let progress = r"printf 'Completed 1 of 2\rCompleted 2 of 2\rupload: ./x to s3://b/x\n'";
    let body = json!({"commands": [
        script(progress),
        script(r"printf '10%%\r50%%\r100%%\r\n' >&2"),
        script(r"printf 'a\r\nb\r\n'"),
        script(r"printf 'one\rtwo'")
    ]});
    let reply = sidecar.call(&runner, "progress", body).await;
    reply.assert_success();
    assert_eq!(
        sidecar.lines("progress"),
        ["upload: ./x to s3://b/x", "100%", "a", "b", "two"]
    );
    let first = reply.command(0);
    assert_eq!(first["result"], "upload: ./x to s3://b/x");
    assert_eq!(
        first["stdout"], "Completed 1 of 2\rCompleted 2 of 2\rupload: ./x to s3://b/x\n",
        "stdout keeps the raw bytes"
    );
    assert_eq!(reply.command(1)["stderr"], "10%\r50%\r100%\r\n");
    assert_eq!(reply.command(3)["result"], "two");
}

// --- empty lines --------------------------------------------------------------------------

/// Every log line of `aid`, and a check that no message carries an empty line anywhere.
fn lines_without_empties(sidecar: &FakeSidecar, aid: &str) -> Vec<String> {
    for message in sidecar.messages(aid) {
        assert!(
            !message.is_empty()
                && !message.starts_with('\n')
                && !message.ends_with('\n')
                && !message.contains("\n\n"),
            "a message with an empty line: {message:?}"
        );
    }
    sidecar.lines(aid)
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_lines_are_dropped_alone_or_coalesced() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"commands": [
        script("echo >&2; sleep 0.2; echo a; echo; echo; echo b; echo >&2; echo c >&2")
    ]});
    let reply = sidecar.call(&runner, "empties", body).await;
    reply.assert_success();
    let mut lines = lines_without_empties(&sidecar, "empties");
    lines.sort();
    assert_eq!(lines, ["a", "b", "c"]);
    assert_eq!(
        reply.command(0)["stdout"],
        "a\n\n\nb\n",
        "the response keeps them"
    );

    // A slow sidecar: lines pile up and leave coalesced, empty ones among them.
    sidecar.set_delay(Duration::from_millis(50));
    let body =
        json!({"commands": [script("for i in $(seq 1 300); do echo $i; echo; echo >&2; done")]});
    sidecar
        .call(&runner, "coalesced", body)
        .await
        .assert_success();
    let expected: Vec<String> = (1..=300).map(|n| n.to_string()).collect();
    assert_eq!(lines_without_empties(&sidecar, "coalesced"), expected);
    assert!(
        sidecar.post_count("coalesced") < 300,
        "lines were coalesced: {} posts",
        sidecar.post_count("coalesced")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_lines_are_dropped_on_stdout_too() {
    let (sidecar, runner) = start_pair(&[("DIREKTIV_DEV_MODE", "1")]);
    let body = json!({"commands": [script("echo dev-a; echo; echo >&2; echo dev-b")]});
    sidecar.call(&runner, "dev", body).await.assert_success();
    assert!(runner.wait_stdout(PATIENCE, |l| l == "dev-b"));
    assert_eq!(runner.stdout_lines(), ["dev-a", "dev-b"]);

    // A sidecar that is down: the lines fall back to stdout with the action id in front.
    let (sidecar, runner) = start_pair(&[]);
    sidecar.set_down(true);
    let body = json!({"commands": [script("echo down-a; echo; echo down-b")]});
    sidecar.call(&runner, "down", body).await.assert_success();
    assert!(runner.wait_stdout(PATIENCE, |l| l == "[down] down-b"));
    let fallback: Vec<String> = runner
        .stdout_lines()
        .into_iter()
        .filter(|l| l.starts_with("[down]"))
        .collect();
    assert_eq!(fallback, ["[down] down-a", "[down] down-b"]);
}

// --- CMD_ALLOW entries that match nothing -------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn allow_list_entries_that_resolve_to_nothing_are_warned_about_at_start() {
    let sidecar = FakeSidecar::start();
    let runner = Runner::start_with(
        &sidecar,
        &[("CMD_ALLOW", "echo,nosuch,/no/such/tool,printf")],
    );
    let warnings = |name: &str| -> Vec<String> {
        runner
            .stderr_lines()
            .into_iter()
            .filter(|l| l.contains(name))
            .collect()
    };
    for entry in ["'nosuch'", "'/no/such/tool'"] {
        let lines = warnings(entry);
        assert_eq!(lines.len(), 1, "one warning for {entry}: {lines:?}");
        assert!(lines[0].contains("WARN"), "{lines:?}");
        assert!(lines[0].contains("CMD_ALLOW"), "{lines:?}");
    }
    assert!(warnings("'echo'").is_empty(), "{:?}", runner.stderr_lines());
    assert!(
        warnings("'printf'").is_empty(),
        "{:?}",
        runner.stderr_lines()
    );
    // A warning, not a refusal: the listed commands still run.
    sidecar
        .call(&runner, "allowed", json!({"command": "echo ok"}))
        .await
        .assert_success();
}

// --- misspelt fields ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_misspelt_field_is_refused_before_anything_runs() {
    let (sidecar, runner) = start_pair(&[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let marker = dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    for (aid, body, field, meant) in [
        (
            "timout",
            json!({"command": touch, "timout": "5s"}),
            "timout",
            "timeout",
        ),
        (
            "shel",
            json!({"commands": [{"command": touch, "shel": true}]}),
            "commands[0].shel",
            "shell",
        ),
        (
            "file",
            json!({"files": [{"name": "a", "dat": "x"}], "commands": [{"command": touch}]}),
            "files[0].dat",
            "data",
        ),
        (
            "limit",
            json!({"commands": [{"command": touch, "limits": {"memroy": "1Gi"}}]}),
            "commands[0].limits.memroy",
            "memory",
        ),
    ] {
        let reply = sidecar
            .call_with(
                &runner,
                aid,
                body,
                &crate::support::CallOptions {
                    keep_dir: true,
                    ..Default::default()
                },
            )
            .await;
        reply.assert_error("cmd.input", 400);
        let message = reply.error_message().unwrap_or_default();
        assert!(
            message.starts_with(&format!("{field}: is not a field of ")),
            "{message}"
        );
        assert!(
            message.contains(&format!("did you mean \"{meant}\"?")),
            "{message}"
        );
        assert!(!marker.exists(), "{aid}: the command ran");
        let action_dir = sidecar.action_dir(aid);
        assert!(
            !action_dir.join("a").exists(),
            "{aid}: a file was written for a refused request"
        );
        let _ = std::fs::remove_dir_all(action_dir);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_top_level_fields_run_with_one_warning_in_the_log() {
    let (sidecar, runner) = start_pair(&[]);
    // A direktiv-apps function's own fields beside `commands`.
    let body = json!({"access-key": "x", "awsRegion": "eu", "commands": [script("echo done")]});
    sidecar.call(&runner, "apps", body).await.assert_success();
    let warning = "warning: ignored unknown fields: access-key, awsRegion";
    assert_eq!(sidecar.lines("apps"), [warning, "done"]);
    let said = |text: &str| {
        runner
            .stderr_lines()
            .iter()
            .filter(|l| l.contains(text))
            .count()
    };
    assert!(runner.wait_stderr(PATIENCE, |l| l.contains("access-key, awsRegion")));
    assert_eq!(
        said("access-key, awsRegion"),
        1,
        "{:?}",
        runner.stderr_lines()
    );

    // The direktiv-cmd shape is a drop-in: it runs the command and keeps Direktiv's log.
    let body = json!({"data": {"commands": [{"command": "echo hi", "timout": 1}]}});
    let reply = sidecar.call(&runner, "special", body).await;
    assert_eq!(reply.status, 200, "{:?}", reply.error_message());
    assert!(runner.wait_stderr(PATIENCE, |l| l.contains("data.commands[0].timout")));
    assert!(
        sidecar
            .lines("special")
            .iter()
            .all(|l| !l.contains("warning")),
        "{:?}",
        sidecar.lines("special")
    );
}

// --- direktiv-cmd run ---------------------------------------------------------------------

/// `direktiv-cmd run <args> -` with the request on stdin, RUST_LOG unset as a user runs it
/// (the harness sets it to `info` otherwise).
fn run_with(args: &[&str], request: &Value) -> Finished {
    let mut builder = Runner::builder().env("RUST_LOG", "").arg("run");
    for arg in args {
        builder = builder.arg(*arg);
    }
    builder
        .arg("-")
        .run_to_exit(request.to_string().as_bytes(), EXIT_TIMEOUT)
}

fn stdout_json(finished: &Finished) -> Value {
    serde_json::from_str(&finished.stdout)
        .unwrap_or_else(|_| panic!("response JSON on stdout: {finished:?}"))
}

#[test]
fn run_takes_an_action_id_a_temp_dir_and_env_values() {
    let dir = tempfile::tempdir().expect("temp dir");
    let temp = dir.path().to_str().expect("utf-8 path");
    let request = json!({
        "env": {"FROM_REQUEST": "request", "OVERRIDDEN": "request"},
        "files": [{"name": "input.txt", "data": "from files"}],
        "commands": [
            {"command": "printenv DIREKTIV_ACTION_ID"},
            {"command": "pwd"},
            {"command": "printenv FROM_REQUEST FIRST SECOND OVERRIDDEN"}
        ]
    });
    let finished = run_with(
        &[
            "--action-id",
            "local-42",
            "--temp-dir",
            temp,
            "--env",
            "FIRST=1",
            "--env",
            "SECOND=two words",
            "--env",
            "OVERRIDDEN=flag",
        ],
        &request,
    );
    assert!(finished.status.is_some_and(|s| s.success()), "{finished:?}");
    let body = stdout_json(&finished);
    assert_eq!(body["commands"][0]["result"], "local-42");
    assert_eq!(body["commands"][1]["result"], temp);
    assert_eq!(
        body["commands"][2]["stdout"],
        "request\n1\ntwo words\nflag\n"
    );
    assert!(
        Path::new(temp).join("input.txt").is_file(),
        "the given temp dir is used and kept"
    );

    let bad = run_with(&["--env", "NOEQUALS"], &request);
    assert_eq!(bad.status.and_then(|s| s.code()), Some(2), "{bad:?}");
    assert!(bad.stderr.contains("NOEQUALS"), "{}", bad.stderr);
}

#[test]
fn run_prints_a_failure_once_and_exits_with_the_commands_status() {
    let finished = run_with(&[], &json!({"command": "sh -c 'echo boom >&2; exit 3'"}));
    assert_eq!(
        finished.status.and_then(|s| s.code()),
        Some(3),
        "{finished:?}"
    );
    assert_eq!(stdout_json(&finished)["errorCode"], "cmd.exit.3");
    let mentions = finished
        .stderr
        .lines()
        .filter(|l| l.contains("exited with status 3"))
        .count();
    assert_eq!(
        mentions, 1,
        "the failure once on stderr:\n{}",
        finished.stderr
    );
    // The command's own stderr line, besides the echoed command line and the failure message
    // that quote it.
    assert!(
        finished.stderr.lines().any(|l| l == "boom"),
        "{}",
        finished.stderr
    );

    // Refused before anything ran, or failed without an exit status: 1, the message once.
    for (request, code, needle) in [
        (
            json!({"command": "no-such-tool-anywhere"}),
            "cmd.notfound",
            "not found in PATH",
        ),
        (
            json!({"commands": "not a list"}),
            "cmd.input",
            "commands: expected",
        ),
        (
            json!({"command": "sh -c 'kill -9 $$'"}),
            "cmd.signal.SIGKILL",
            "killed by signal",
        ),
    ] {
        let finished = run_with(&[], &request);
        assert_eq!(
            finished.status.and_then(|s| s.code()),
            Some(1),
            "{finished:?}"
        );
        assert_eq!(stdout_json(&finished)["errorCode"], code);
        let mentions = finished.stderr.matches(needle).count();
        assert_eq!(mentions, 1, "{code} once on stderr:\n{}", finished.stderr);
    }
}

// --- docs that hold ----------------------------------------------------------------------

/// docs/compatibility.md: a body without commands is refused, an explicit empty list is not.
#[tokio::test(flavor = "multi_thread")]
async fn an_explicit_empty_command_list_succeeds() {
    let (sidecar, runner) = start_pair(&[]);
    let reply = sidecar
        .call(&runner, "empty-list", json!({"commands": []}))
        .await;
    reply.assert_success();
    assert_eq!(reply.body(), &json!({"commands": []}));
    let reply = sidecar
        .call(&runner, "empty-data", json!({"data": {"commands": []}}))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body(), &json!([]));

    for body in [
        json!({}),
        json!({"comands": [{"command": "true"}]}),
        json!({"data": {}}),
    ] {
        let reply = sidecar.call(&runner, "no-commands", body).await;
        reply.assert_error("cmd.input", 400);
    }
}

// --- make run -----------------------------------------------------------------------------

/// The `[profile.<name>]` section of Cargo.toml as `key = value` lines.
fn profile(manifest: &str, name: &str) -> Vec<(String, String)> {
    let header = format!("[profile.{name}]");
    manifest
        .lines()
        .skip_while(|line| line.trim() != header)
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with('['))
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        .collect()
}

#[test]
fn make_run_builds_without_fat_lto_and_release_keeps_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let makefile = std::fs::read_to_string(root.join("Makefile")).expect("Makefile");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let recipe = makefile
        .lines()
        .skip_while(|line| !line.starts_with("run:"))
        .nth(1)
        .expect("a recipe line under run:");
    let name = recipe
        .split_whitespace()
        .skip_while(|word| *word != "--profile")
        .nth(1)
        .unwrap_or_else(|| panic!("make run names a profile: {recipe}"));
    assert_ne!(name, "release", "{recipe}");
    let quick = profile(&manifest, name);
    assert!(
        quick.contains(&("inherits".into(), "release".into())),
        "optimised like a release: {quick:?}"
    );
    let lto = quick
        .iter()
        .find(|(k, _)| k == "lto")
        .map(|(_, v)| v.as_str());
    assert!(matches!(lto, Some("false" | "off" | "thin")), "{quick:?}");
    let release = profile(&manifest, "release");
    assert!(
        release.contains(&("lto".into(), "fat".into())),
        "{release:?}"
    );
    assert!(
        makefile.contains("$(CARGO) build --release --target"),
        "make static builds the release profile"
    );
}
