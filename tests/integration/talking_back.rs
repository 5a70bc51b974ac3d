//! What a command tells the runner (README, "Talking back"): its `DIREKTIV_RESULT` file,
//! `::error` lines and the `errors` map, `retry`, and `direktiv-cmd var` through the sidecar.

use serde_json::{json, Value};

use crate::support::{binary, sh, skip_without, start_pair, Capability, VarPost};

/// A request whose commands find the binary under test as `$DCMD`.
fn with_dcmd(commands: Value) -> Value {
    json!({"env": {"DCMD": binary().display().to_string()}, "commands": commands})
}

/// The result file of a request that is not isolated: private, empty, not among the temp
/// dir's files (nor in `out/`), its content the `result` (JSON kept as written, key order
/// included), `stdout` untouched, and gone after the command.
#[tokio::test(flavor = "multi_thread")]
async fn the_result_file_becomes_the_result() {
    let (sidecar, runner) = start_pair(&[("CMD_ISOLATION", "off")]);
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
        {"command": r#"echo file > o.txt; echo ignored > "$DIREKTIV_RESULT""#, "shell": true, "output": "o.txt"},
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
    assert_eq!(
        reply.command(3)["result"],
        "file",
        "the request's output field wins"
    );
}

/// In a request isolated by a Landlock domain, the result file is in the request's own temp
/// dir, the folder no other request may open (the runner's folder in TMPDIR is reachable from
/// every domain): private, empty, read back, and gone after the command.
#[tokio::test(flavor = "multi_thread")]
async fn in_a_landlock_domain_the_result_file_is_in_the_request_s_own_temp_dir() {
    skip_without!(Capability::Landlock);
    let (sidecar, runner) = start_pair(&[("CMD_ISOLATION", "landlock")]);
    let script = r#"
        test "$(dirname "$DIREKTIV_RESULT")" = "$DIREKTIV_TEMPDIR" || exit 7
        test -f "$DIREKTIV_RESULT" && test ! -s "$DIREKTIV_RESULT" || exit 9
        stat -c %a "$DIREKTIV_RESULT"
        printf '{"b": 2, "a": 1}' > "$DIREKTIV_RESULT"
        echo "$DIREKTIV_RESULT" > seen
    "#;
    let body = json!({"commands": [sh(script), sh(r#"test ! -e "$(cat seen)""#)]});
    let reply = sidecar.call(&runner, "confined-result", body).await;
    reply.assert_success();
    assert_eq!(reply.command(0)["stdout"], "600\n");
    assert_eq!(reply.command(0)["result"].to_string(), r#"{"b":2,"a":1}"#);
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

/// `::error code=CODE::MESSAGE` on either stream, then a failing exit: the failure is CODE
/// with MESSAGE (the last line wins), `exit_code` stays real and the line is logged as printed.
#[tokio::test(flavor = "multi_thread")]
async fn an_error_line_chooses_the_failure_code_and_message() {
    let (sidecar, runner) = start_pair(&[]);
    let script = "echo '::error code=first.code::not this one' >&2; \
                  echo '::error code=aws.client::bucket gone' >&2; exit 3";
    let reply = sidecar
        .call(&runner, "error-line", json!({"commands": [sh(script)]}))
        .await;
    reply.assert_error("aws.client", 500);
    assert_eq!(reply.error_message().as_deref(), Some("bucket gone"));
    let entry = reply.command(0);
    assert_eq!(entry["exit_code"], 3);
    assert_eq!(entry["error"]["code"], "aws.client");
    let lines = sidecar.lines("error-line");
    assert!(
        lines.contains(&"::error code=aws.client::bucket gone".to_owned()),
        "{lines:?}"
    );
}

/// `::error::MESSAGE` (here on stdout) keeps cmd.exit.N with the message; a command that
/// then succeeds has no failure at all.
#[tokio::test(flavor = "multi_thread")]
async fn an_error_line_without_a_code_keeps_cmd_exit_and_a_success_stays_one() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"commands": [
        sh("echo '::error code=never.used::fine'; exit 0"),
        sh("echo '::error::disk%0Afull'; exit 4"),
    ]});
    let reply = sidecar.call(&runner, "no-code", body).await;
    reply.assert_error("cmd.exit.4", 500);
    assert_eq!(reply.error_message().as_deref(), Some("disk\\nfull"));
    assert_eq!(reply.command(0)["success"], true);
}

/// A command's `errors` map names the codes of exit statuses; an `::error` code wins over it.
#[tokio::test(flavor = "multi_thread")]
async fn the_errors_map_gives_exit_statuses_codes() {
    let (sidecar, runner) = start_pair(&[]);
    let mapped = json!({"commands": [
        {"command": "sh -c 'echo boom >&2; exit 254'", "errors": {"254": "aws.client", "255": "aws.cli"}}
    ]});
    let reply = sidecar.call(&runner, "mapped", mapped).await;
    reply.assert_error("aws.client", 500);
    let message = reply.error_message().unwrap_or_default();
    assert!(
        message.contains("exited with status 254: boom"),
        "{message}"
    );
    assert_eq!(reply.command(0)["exit_code"], 254);
    let unmapped =
        json!({"commands": [{"command": "sh -c 'exit 2'", "errors": {"254": "aws.client"}}]});
    sidecar
        .call(&runner, "unmapped", unmapped)
        .await
        .assert_error("cmd.exit.2", 500);
    let line_wins = json!({"commands": [{
        "command": "sh -c 'echo ::error code=tool.own::said; exit 254'",
        "errors": {"254": "aws.client"}
    }]});
    sidecar
        .call(&runner, "line-wins", line_wins)
        .await
        .assert_error("tool.own", 500);
}

/// A code that breaks the rules is ignored with a log line saying why; the message stays.
#[tokio::test(flavor = "multi_thread")]
async fn a_bad_error_code_is_ignored_with_a_log_line() {
    let (sidecar, runner) = start_pair(&[]);
    let script = "echo '::error code=io.direktiv.error.execution::taken'; exit 5";
    let reply = sidecar
        .call(&runner, "bad-code", json!({"commands": [sh(script)]}))
        .await;
    reply.assert_error("cmd.exit.5", 500);
    assert_eq!(reply.error_message().as_deref(), Some("taken"));
    let lines = sidecar.lines("bad-code");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("'io.direktiv.error.execution'")
                && l.contains("Direktiv's own codes")
                && l.contains("ignored")),
        "{lines:?}"
    );
}

/// The message and the logged line are masked.
#[tokio::test(flavor = "multi_thread")]
async fn an_error_message_is_masked() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({
        "env": {"DB_PASSWORD": "hunter2-very-secret"},
        "commands": [sh(r#"echo "::error code=db.auth::login with $DB_PASSWORD refused"; exit 1"#)]
    });
    let reply = sidecar.call(&runner, "masked-error", body).await;
    reply.assert_error("db.auth", 500);
    assert_eq!(
        reply.error_message().as_deref(),
        Some("login with *** refused")
    );
    let lines = sidecar.lines("masked-error");
    assert!(
        lines.contains(&"::error code=db.auth::login with *** refused".to_owned()),
        "{lines:?}"
    );
}

/// A bad `errors` map is cmd.input naming the field, before anything runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_bad_errors_map_is_cmd_input_naming_the_field() {
    let (sidecar, runner) = start_pair(&[]);
    for (errors, expected) in [
        (
            json!({"254": "io.direktiv.x"}),
            "commands[0].errors.254: the error code 'io.direktiv.x'",
        ),
        (
            json!({"256": "a.b"}),
            "commands[0].errors: \"256\" is not an exit status",
        ),
        (
            json!({"1": 7}),
            "commands[0].errors.1: expected an error code",
        ),
        (json!(["a"]), "commands[0].errors: expected an object"),
    ] {
        let body = json!({"commands": [{"command": "touch ran", "errors": errors}]});
        let reply = sidecar.call(&runner, "bad-errors", body).await;
        reply.assert_error("cmd.input", 400);
        let message = reply.error_message().unwrap_or_default();
        assert!(message.starts_with(expected), "{message}");
    }
}

/// The direktiv-cmd shape: a chosen code is the failure's code (instead of
/// io.direktiv.error.execution) when the command stops the request.
#[tokio::test(flavor = "multi_thread")]
async fn a_chosen_code_is_kept_in_the_direktiv_cmd_shape() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"data": {"commands": [
        {"command": "sh -c 'echo ::error code=git.clone::no access; exit 128'", "stop": true},
    ]}});
    let reply = sidecar.call(&runner, "dcmd-error", body).await;
    reply.assert_error("git.clone", 500);
    assert_eq!(reply.error_message().as_deref(), Some("no access"));
}

/// `var set` and `var get` through the sidecar's `/var`: every scope, the mime type, a file
/// or stdin as the value, `-o FILE`; commands are told where the sidecar is.
#[tokio::test(flavor = "multi_thread")]
async fn var_set_and_get_go_through_the_sidecar() {
    let (sidecar, runner) = start_pair(&[]);
    sidecar.set_var("namespace", "greeting", "hello from the namespace");
    let body = with_dcmd(json!([
        sh(
            r#"printf '{"a": 1}' > cfg.json && "$DCMD" var set cfg.json cfg.json --scope workflow --type application/json"#
        ),
        sh(r#"printf 'piped' | "$DCMD" var set piped"#),
        sh(r#""$DCMD" var get greeting --scope namespace"#),
        sh(r#""$DCMD" var get cfg.json --scope workflow -o got.json && cat got.json"#),
        sh(r#"echo "$DIREKTIV_HTTP_BACKEND""#),
    ]));
    let reply = sidecar.call(&runner, "var-sidecar", body).await;
    reply.assert_success();
    assert_eq!(reply.command(2)["stdout"], "hello from the namespace");
    assert_eq!(reply.command(3)["result"], json!({"a": 1}));
    assert_eq!(reply.command(4)["result"], sidecar.url());
    assert_eq!(
        sidecar.var("workflow", "cfg.json").as_deref(),
        Some(&b"{\"a\": 1}"[..])
    );
    assert_eq!(
        sidecar.var("instance", "piped").as_deref(),
        Some(&b"piped"[..])
    );
    let posts = sidecar.var_posts();
    assert_eq!(
        posts[0],
        VarPost {
            scope: "workflow".into(),
            key: "cfg.json".into(),
            content_length: Some(8),
            mime: Some("application/json".into()),
            bytes: 8,
        }
    );
    assert_eq!(posts[1].content_length, Some(5), "{posts:?}");
}

/// A missing variable (Direktiv v0.10: status 200 with `resource with key … not found`) exits
/// 4 and makes no output file; a name Direktiv refuses exits 1 before anything is sent; an
/// action id the sidecar does not know exits 1 saying why.
#[tokio::test(flavor = "multi_thread")]
async fn var_exits_4_for_a_missing_variable_and_1_with_a_reason_otherwise() {
    let (sidecar, runner) = start_pair(&[]);
    let body = with_dcmd(json!([
        sh(
            r#""$DCMD" var get nothing -o out.txt; echo "status=$? file=$(test -e out.txt && echo yes || echo no)""#
        ),
        sh(r#"echo x | "$DCMD" var set 1bad; echo "status=$?""#),
        sh(r#"DIREKTIV_ACTION_ID=someone-else "$DCMD" var get x; echo "status=$?""#),
        sh(r#"DIREKTIV_HTTP_BACKEND=http://127.0.0.1:1 "$DCMD" var get x; echo "status=$?""#),
        sh(r#""$DCMD" var get x --scope thread; echo "status=$?""#),
    ]));
    let reply = sidecar.call(&runner, "var-fail", body).await;
    reply.assert_success();
    let outcome = |i: usize| {
        (
            reply.command(i)["stdout"].clone(),
            reply.command(i)["stderr"].clone(),
        )
    };
    let (stdout, stderr) = outcome(0);
    assert_eq!(stdout, "status=4 file=no\n");
    assert!(
        stderr
            .as_str()
            .unwrap_or_default()
            .contains("does not exist in scope instance"),
        "{stderr}"
    );
    let (stdout, stderr) = outcome(1);
    assert_eq!(stdout, "status=1\n");
    assert!(
        stderr
            .as_str()
            .unwrap_or_default()
            .contains("must start with a letter"),
        "{stderr}"
    );
    let (stdout, stderr) = outcome(2);
    assert_eq!(stdout, "status=1\n");
    assert!(
        stderr
            .as_str()
            .unwrap_or_default()
            .contains("does not know action id \"someone-else\""),
        "{stderr}"
    );
    let (stdout, stderr) = outcome(3);
    assert_eq!(stdout, "status=1\n");
    assert!(
        stderr
            .as_str()
            .unwrap_or_default()
            .contains("DIREKTIV_HTTP_BACKEND"),
        "{stderr}"
    );
    assert_eq!(
        outcome(4).0,
        "status=2\n",
        "a scope the sidecar never serves is a usage error"
    );
    assert!(sidecar.var_posts().is_empty());
}

/// Values larger than 2 MiB stream both ways, from a pipe too, always with Content-Length.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_value_streams_with_its_length() {
    let (sidecar, runner) = start_pair(&[]);
    let size = 3 * 1024 * 1024 + 7;
    let body = with_dcmd(json!([
        sh(&format!(
            r#"head -c {size} /dev/zero | tr '\0' v | "$DCMD" var set big"#
        )),
        sh(r#""$DCMD" var get big | wc -c"#),
    ]));
    let reply = sidecar.call(&runner, "var-large", body).await;
    reply.assert_success();
    assert_eq!(reply.command(1)["result"], json!(size));
    let posts = sidecar.var_posts();
    assert_eq!(posts[0].content_length, Some(size as u64));
    assert_eq!(posts[0].bytes, size);
}

/// Development mode (no sidecar): variables are files under `CMD_DEV_VARS`, by default
/// `$DIREKTIV_TEMPDIR/.direktiv-vars`.
#[tokio::test(flavor = "multi_thread")]
async fn var_keeps_variables_in_a_folder_in_development_mode() {
    let (sidecar, runner) = start_pair(&[]);
    let folder = tempfile::tempdir().expect("a folder");
    let body = with_dcmd(json!([
        sh(r#"echo v1 | "$DCMD" var set one && "$DCMD" var get one"#),
        sh(r#"test -f "$DIREKTIV_TEMPDIR/.direktiv-vars/instance/one""#),
        sh(r#""$DCMD" var get two --scope workflow; echo "status=$?""#),
        {"command": "sh -c 'echo kept | \"$DCMD\" var set three --scope namespace'",
         "env": {"CMD_DEV_VARS": folder.path().display().to_string()}},
    ]));
    let reply = sidecar.call(&runner, "development", body).await;
    reply.assert_success();
    assert_eq!(reply.command(0)["stdout"], "v1\n");
    assert_eq!(reply.command(2)["stdout"], "status=4\n");
    assert_eq!(
        std::fs::read_to_string(folder.path().join("namespace/three"))
            .ok()
            .as_deref(),
        Some("kept\n")
    );
    assert!(sidecar.var_posts().is_empty());
}

/// Commands are told the sidecar the runner uses and its development folder for variables,
/// also when they are set by flags rather than inherited through the environment.
#[tokio::test(flavor = "multi_thread")]
async fn commands_are_told_the_sidecar_and_dev_folder_set_by_flag() {
    let sidecar = crate::support::FakeSidecar::start();
    let folder = tempfile::tempdir().expect("a folder");
    let runner = crate::support::Runner::builder()
        .arg("--backend")
        .arg(sidecar.url())
        .arg("--dev-vars")
        .arg(folder.path())
        .start();
    sidecar.set_var("instance", "x", "found");
    let body = with_dcmd(json!([sh(
        r#"echo "$DIREKTIV_HTTP_BACKEND"; "$DCMD" var get x"#
    )]));
    let reply = sidecar.call(&runner, "by-flag", body).await;
    reply.assert_success();
    assert_eq!(
        reply.command(0)["stdout"],
        format!("{}\nfound", sidecar.url())
    );
    let body = with_dcmd(json!([sh(
        r#"echo dev | "$DCMD" var set d --scope workflow"#
    )]));
    sidecar
        .call(&runner, "development", body)
        .await
        .assert_success();
    assert_eq!(
        std::fs::read_to_string(folder.path().join("workflow/d"))
            .ok()
            .as_deref(),
        Some("dev\n")
    );
}

/// `retry` runs a command again while its failure matches `on`, waiting `delay` × `backoff`^n,
/// logs each retry, and reports `attempts` with the last attempt's output.
#[tokio::test(flavor = "multi_thread")]
async fn retry_runs_again_until_success_with_growing_waits() {
    let (sidecar, runner) = start_pair(&[]);
    let flaky = r#"n=$(cat n 2>/dev/null || echo 0); n=$((n+1)); echo $n > n; echo "try $n"; [ $n -ge 3 ] || exit 75"#;
    let body = json!({"commands": [{
        "command": flaky, "shell": true,
        "retry": {"attempts": 3, "on": ["cmd\\.exit\\.75"], "delay": 0.1, "backoff": 2}
    }]});
    let reply = sidecar.call(&runner, "retry-ok", body).await;
    reply.assert_success();
    let entry = reply.command(0);
    assert_eq!(entry["attempts"], 3);
    assert_eq!(entry["stdout"], "try 3\n");
    let lines = sidecar.lines("retry-ok");
    for expected in [
        "attempt 2 of 3 after cmd.exit.75, waiting 100ms",
        "attempt 3 of 3 after cmd.exit.75, waiting 200ms",
    ] {
        assert!(
            lines.contains(&expected.to_owned()),
            "{expected}: {lines:?}"
        );
    }
}

/// Out of attempts, the last failure stands; a failure `on` does not match is not retried;
/// by default every failure but cmd.cancelled, cmd.input, cmd.denied and cmd.notfound is.
#[tokio::test(flavor = "multi_thread")]
async fn retry_stops_at_attempts_and_follows_on() {
    let (sidecar, runner) = start_pair(&[]);
    let always = json!({"commands": [{
        "command": "echo again >> log; cat log; exit 75", "shell": true,
        "retry": {"attempts": 2}
    }]});
    let reply = sidecar.call(&runner, "retry-out", always).await;
    reply.assert_error("cmd.exit.75", 500);
    assert_eq!(reply.command(0)["attempts"], 2);
    assert_eq!(reply.command(0)["stdout"], "again\nagain\n");
    let other = json!({"commands": [{
        "command": "exit 1", "shell": true,
        "retry": {"attempts": 5, "on": ["cmd\\.exit\\.75", "cmd\\.timeout"]}
    }]});
    let reply = sidecar.call(&runner, "retry-other", other).await;
    reply.assert_error("cmd.exit.1", 500);
    assert_eq!(reply.command(0)["attempts"], 1);
    let missing = json!({"commands": [{"command": "no-such-tool-here", "retry": {"attempts": 5}}]});
    let reply = sidecar.call(&runner, "retry-missing", missing).await;
    reply.assert_error("cmd.notfound", 500);
    let lines = sidecar.lines("retry-missing");
    assert!(
        !lines.iter().any(|l| l.starts_with("attempt ")),
        "{lines:?}"
    );
}

/// A DELETE during the wait ends it at once: the request is cmd.cancelled.
#[tokio::test(flavor = "multi_thread")]
async fn cancellation_ends_a_retry_wait_at_once() {
    let (sidecar, runner) = crate::support::start_shared(&[]);
    let body = json!({"commands": [{
        "command": "exit 75", "shell": true,
        "retry": {"attempts": 2, "delay": "PT10M"}
    }]});
    let call = crate::support::call_in_background(&sidecar, &runner, "retry-cancel", body);
    let waiting = "attempt 2 of 2 after cmd.exit.75, waiting 10m".to_owned();
    crate::support::within(crate::support::PATIENCE, "the retry wait", async {
        while !sidecar.lines("retry-cancel").contains(&waiting) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    let asked = std::time::Instant::now();
    assert_eq!(sidecar.cancel(&runner, "retry-cancel").await, 200);
    let reply = crate::support::reply_within(call, std::time::Duration::from_secs(10)).await;
    reply.assert_error("cmd.cancelled", 500);
    assert!(asked.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(reply.command(0)["attempts"], 1);
}

/// A bad `retry` is cmd.input naming the field, before anything runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_bad_retry_is_cmd_input_naming_the_field() {
    let (sidecar, runner) = start_pair(&[]);
    for (retry, expected) in [
        (
            json!({"attempts": 0}),
            "commands[0].retry.attempts: expected a whole number from 1 to 100",
        ),
        (
            json!({"delay": "5s"}),
            "commands[0].retry: needs \"attempts\"",
        ),
        (
            json!({"attempts": 2, "on": ["cmd\\.exit\\.(75"]}),
            "commands[0].retry.on[0]: is not a regular expression",
        ),
        (
            json!({"attempts": 2, "backoff": 0.5}),
            "commands[0].retry.backoff: expected a number of at least 1",
        ),
        (
            json!({"attempts": 2, "delay": "soon"}),
            "commands[0].retry.delay: ",
        ),
        (
            json!({"attempts": 2, "dealy": "5s"}),
            "commands[0].retry.dealy: is not a field of retry; did you mean \"delay\"?",
        ),
    ] {
        let body = json!({"commands": [{"command": "touch ran", "retry": retry}]});
        let reply = sidecar.call(&runner, "bad-retry", body).await;
        reply.assert_error("cmd.input", 400);
        let message = reply.error_message().unwrap_or_default();
        assert!(message.starts_with(expected), "{message}");
    }
}

/// The direktiv-cmd shape retries too; `Output` is the last attempt's.
#[tokio::test(flavor = "multi_thread")]
async fn retry_in_the_direktiv_cmd_shape() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"data": {"commands": [{
        "command": "sh -c 'test -e done && echo ok && exit 0; touch done; exit 3'",
        "retry": {"attempts": 2}
    }]}});
    let reply = sidecar.call(&runner, "dcmd-retry", body).await;
    let entries: Vec<Value> = serde_json::from_value(reply.body().clone()).unwrap_or_default();
    assert_eq!(entries.len(), 1, "{reply:?}");
    assert_eq!(entries[0]["Output"], "ok\n");
    assert_eq!(entries[0]["Error"], "");
}

/// A script using `direktiv-cmd var` can be tried with `direktiv-cmd run`: with `--temp-dir`
/// its variables stay in `<dir>/.direktiv-vars` from one run to the next.
#[test]
fn var_works_under_direktiv_cmd_run() {
    let dir = tempfile::tempdir().expect("a folder");
    let request = with_dcmd(json!([sh(
        r#"n=$("$DCMD" var get n || echo 0); echo $((n + 1)) | "$DCMD" var set n; echo $((n + 1))"#
    )]));
    let body = serde_json::to_vec(&request).expect("JSON");
    for expected in [1, 2] {
        let finished = crate::support::Runner::builder()
            .arg("run")
            .arg("--temp-dir")
            .arg(dir.path())
            .arg("-")
            .run_to_exit(&body, crate::support::PATIENCE);
        assert!(finished.status.is_some_and(|s| s.success()), "{finished:?}");
        let reply: Value = serde_json::from_str(&finished.stdout).expect("the response");
        assert_eq!(
            reply["commands"][0]["result"],
            json!(expected),
            "{finished:?}"
        );
    }
    assert!(dir.path().join(".direktiv-vars/instance/n").is_file());
}

/// A command that removes the folder of result files (it shares the runner's uid) changes
/// nothing for the next command or request: a new folder is made. (Requests isolated by
/// Landlock have their files in their own temp dir instead.)
#[tokio::test(flavor = "multi_thread")]
async fn a_removed_result_folder_is_made_again() {
    let (sidecar, runner) = start_pair(&[("CMD_ISOLATION", "off")]);
    let body = json!({"commands": [
        sh(r#"rm -rf "$(dirname "$DIREKTIV_RESULT")""#),
        sh(r#"echo second > "$DIREKTIV_RESULT""#),
    ]});
    let reply = sidecar.call(&runner, "rm-results", body).await;
    reply.assert_success();
    assert_eq!(reply.command(1)["result"], "second");
    let body = json!({"commands": [sh(r#"echo next > "$DIREKTIV_RESULT"; ls -A"#)]});
    let reply = sidecar.call(&runner, "after-rm", body).await;
    reply.assert_success();
    assert_eq!(reply.command(0)["result"], "next");
    assert_eq!(
        reply.command(0)["stdout"],
        "out\n",
        "the temp dir shows no result file"
    );
}
