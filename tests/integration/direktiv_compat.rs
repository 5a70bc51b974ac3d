//! Direktiv's own acceptance scenarios for its command runners, re-run against the real binary
//! through the fake sidecar.
//!
//! Every test names its scenario id (A1, C7, E4, ...). Where direktiv-cmd deliberately differs
//! from Direktiv's runners, the test asserts our documented behaviour and says what Direktiv
//! does instead; docs/compatibility.md lists those differences.
//!
//! - A, C, D: Direktiv's special-command shape (`{"data": {"commands": [...]}}`), answered with
//!   `[{"Error", "Output"}]`.
//! - B: the log stream itself (one log line per output line, in order; a post may carry several).
//! - E, G: the native (function-builder) shape, with `CMD_RESULT_KEY=bash` where the original
//!   reads `.return.bash`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::{
    start_pair, ActionFile, CallOptions, FakeSidecar, Reply, Runner, TempDirHeader,
};
use serde_json::{json, Value};

/// The one error code Direktiv's special-command runner raises, kept for `stop` failures.
const EXECUTION: &str = "io.direktiv.error.execution";

/// A request in Direktiv's special-command shape.
fn special(commands: Value) -> Value {
    json!({ "data": { "commands": commands } })
}

/// Asserts a special-command success (200, JSON, no error headers) and returns its entries.
#[track_caller]
fn special_entries(reply: &Reply) -> Vec<Value> {
    assert_eq!(reply.status, 200, "expected success: {reply:?}");
    let content_type = reply.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "success must be application/json: {reply:?}"
    );
    assert!(reply.error_code().is_none(), "{reply:?}");
    assert!(reply.error_message().is_none(), "{reply:?}");
    match reply.body() {
        Value::Array(entries) => entries.clone(),
        other => panic!("expected a JSON array, got {other}"),
    }
}

/// Asserts the answer to a `stop` failure: 500, `io.direktiv.error.execution`, and the message
/// repeated as a plain-text body, as Direktiv's runner answers.
#[track_caller]
fn assert_stopped(reply: &Reply) -> String {
    reply.assert_error(EXECUTION, 500);
    let message = reply.error_message().unwrap_or_default();
    assert_eq!(
        reply.text.trim_end(),
        message,
        "the body must be the plain-text message: {reply:?}"
    );
    message
}

/// Asserts a special-command failure other than `stop`: the native code and status, and the
/// message repeated as a plain-text body.
#[track_caller]
fn assert_plain_error(reply: &Reply, code: &str, status: u16) {
    reply.assert_error(code, status);
    let message = reply.error_message().unwrap_or_default();
    assert_eq!(reply.text.trim_end(), message, "plain-text body: {reply:?}");
}

/// The `Output` of every entry.
fn outputs(entries: &[Value]) -> Vec<Value> {
    entries.iter().map(|e| e["Output"].clone()).collect()
}

/// The `Error` of every entry.
fn errors(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["Error"].as_str().expect("Error is a string").to_string())
        .collect()
}

/// Asserts a native success keyed `key` and returns its per-command results.
#[track_caller]
fn native_results(reply: &Reply, key: &str) -> Vec<Value> {
    reply.assert_success();
    reply.results_under(key)
}

/// `(result, success)` of every native result, the two fields Direktiv's tests compare.
fn result_pairs(results: &[Value]) -> Vec<(Value, bool)> {
    results
        .iter()
        .map(|r| {
            let success = r["success"].as_bool().expect("success is a bool");
            (r["result"].clone(), success)
        })
        .collect()
}

/// Options that keep the per-action dir after the call, so the test can inspect it.
fn keep_dir() -> CallOptions {
    CallOptions {
        keep_dir: true,
        ..CallOptions::default()
    }
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

// ---------------------------------------------------------------------------------------------
// A. cmd-exec server: headers and bodies.
// ---------------------------------------------------------------------------------------------

/// A1: no headers at all. Direktiv answers 400 `no temp directory provided`; a missing
/// `Direktiv-TempDir` is fine for us (a private temp dir is made), but the missing
/// `Direktiv-ActionID` is `cmd.input`.
#[tokio::test(flavor = "multi_thread")]
async fn a1_no_headers_is_an_input_error() {
    let (_sidecar, runner) = start_pair(&[]);
    let reply = runner
        .post(json!({"Dummy": "Data", "Integer": 1}), &[])
        .await;
    reply.assert_error("cmd.input", 400);
}

/// A2: `Direktiv-TempDir` but no `Direktiv-ActionID`: `cmd.input`, and nothing is run or
/// written in the temp dir (Direktiv: 400 `no action id provided`).
#[tokio::test(flavor = "multi_thread")]
async fn a2_missing_action_id_is_an_input_error_and_runs_nothing() {
    let (_sidecar, runner) = start_pair(&[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let temp = dir.path().to_string_lossy().into_owned();
    let body = special(json!([{"command": "touch ran"}]));
    let reply = runner
        .post(body, &[("Direktiv-TempDir", temp.as_str())])
        .await;
    reply.assert_error("cmd.input", 400);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read the temp dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "nothing may be written: {left:?}");
}

/// A1 without the error: a request with an action id but no `Direktiv-TempDir` runs in a
/// private temp dir that is removed afterwards (Direktiv: 400 `no temp directory provided`).
#[tokio::test(flavor = "multi_thread")]
async fn a1_without_temp_dir_a_private_dir_is_used_and_removed() {
    let (sidecar, runner) = start_pair(&[]);
    let options = CallOptions {
        temp_dir: TempDirHeader::Omitted,
        ..CallOptions::default()
    };
    let body = special(json!([{"command": "pwd"}, {"command": "touch made-here"}]));
    let reply = sidecar
        .call_with(&runner, "a1-private", body, &options)
        .await;
    let entries = special_entries(&reply);
    let dir = entries[0]["Output"]
        .as_str()
        .expect("pwd output")
        .trim()
        .to_string();
    assert!(Path::new(&dir).is_absolute(), "{dir:?}");
    assert_ne!(Path::new(&dir), sidecar.action_dir("a1-private"));
    assert!(
        !Path::new(&dir).exists(),
        "the private temp dir {dir} must be removed"
    );
}

/// A3 and A6: a body with only unknown fields. Direktiv runs zero commands and answers 200
/// `[]`; we refuse it as `cmd.input` rather than report an empty success.
#[tokio::test(flavor = "multi_thread")]
async fn a3_a6_unknown_fields_only_are_refused() {
    let (sidecar, runner) = start_pair(&[]);
    for (aid, integer) in [("a3", 1), ("a6", 500)] {
        let reply = sidecar
            .call(&runner, aid, json!({"Dummy": "Data", "Integer": integer}))
            .await;
        reply.assert_error("cmd.input", 400);
    }
}

/// A4: a body that is not JSON: 400, like Direktiv, with our `cmd.input` code.
#[tokio::test(flavor = "multi_thread")]
async fn a4_invalid_json_is_an_input_error() {
    let (sidecar, runner) = start_pair(&[]);
    let reply = sidecar
        .call(&runner, "a4", "random data\nhello world")
        .await;
    reply.assert_error("cmd.input", 400);
}

/// A5: an empty body. Direktiv answers 200 with zero commands; we answer `cmd.input`.
#[tokio::test(flavor = "multi_thread")]
async fn a5_empty_body_is_an_input_error() {
    let (sidecar, runner) = start_pair(&[]);
    let reply = sidecar.call(&runner, "a5", "").await;
    reply.assert_error("cmd.input", 400);
}

/// A7: a file with `permission: 493` (0755) lands in the temp dir executable and runs.
#[tokio::test(flavor = "multi_thread")]
async fn a7_file_with_permission_is_executable() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({
        "files": [{"name": "hello.sh", "permission": 493,
                   "content": "#!/bin/sh\necho -n hello"}],
        "data": {"commands": [{"command": "./hello.sh"}]}
    });
    let reply = sidecar.call_with(&runner, "a7", body, &keep_dir()).await;
    let dir = sidecar.action_dir("a7");
    let mode = mode_of(&dir.join("hello.sh"));
    let content = std::fs::read_to_string(dir.join("hello.sh")).expect("read hello.sh");
    let _ = std::fs::remove_dir_all(&dir);
    let entries = special_entries(&reply);
    assert_eq!(errors(&entries), [""]);
    assert_eq!(outputs(&entries), [json!("hello")]);
    assert_eq!(mode, 0o755);
    assert_eq!(content, "#!/bin/sh\necho -n hello");
}

/// A7 variant: a file without `permission`. Direktiv chmods it to 000; we write 0644.
#[tokio::test(flavor = "multi_thread")]
async fn a7_file_without_permission_gets_0644() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({
        "files": [{"name": "plain.txt", "content": "x"}],
        "data": {"commands": [{"command": "stat -c %a plain.txt"}, {"command": "cat plain.txt"}]}
    });
    let entries = special_entries(&sidecar.call(&runner, "a7-default", body).await);
    assert_eq!(outputs(&entries), [json!(644), json!("x")]);
}

// ---------------------------------------------------------------------------------------------
// B. The log stream. Direktiv's logger appends `\n` to every message; we send each line
// without its newline (README, "Logs"), one log entry per line.
// ---------------------------------------------------------------------------------------------

/// What the sidecar received for one action: every POST body, and those split into lines.
struct Logged {
    messages: Vec<String>,
    lines: Vec<String>,
}

/// Runs one native command with `print: false` (so only its output is logged).
async fn logged(aid: &str, command: &str) -> Logged {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"commands": [{"command": command, "print": false}]});
    sidecar.call(&runner, aid, body).await.assert_success();
    Logged {
        messages: sidecar.messages(aid),
        lines: sidecar.lines(aid),
    }
}

/// B1: one line is one log message, without its newline.
#[tokio::test(flavor = "multi_thread")]
async fn b1_one_line_is_one_message() {
    let logged = logged("b1", "echo 'Hello World'").await;
    assert_eq!(logged.messages, ["Hello World"]);
}

/// B2: output without a final newline is still delivered, exactly.
#[tokio::test(flavor = "multi_thread")]
async fn b2_last_line_without_newline_is_delivered() {
    let logged = logged("b2", "printf 'Hello World'").await;
    assert_eq!(logged.messages, ["Hello World"]);
}

/// B3: two lines arrive in order (possibly coalesced into one post, never reordered).
#[tokio::test(flavor = "multi_thread")]
async fn b3_two_lines_in_order() {
    let logged = logged("b3", r"printf 'First Log Entry\nSecond Log Entry\n'").await;
    assert_eq!(logged.lines, ["First Log Entry", "Second Log Entry"]);
}

/// B4: a single 1 MiB write (below the 4 MiB message cap) arrives unchanged in one message.
#[tokio::test(flavor = "multi_thread")]
async fn b4_large_write_arrives_unchanged() {
    let command = "python3 -c \"import sys; sys.stdout.write('A' + 'B' * 1048576)\"";
    let logged = logged("b4", command).await;
    let expected = format!("A{}", "B".repeat(1_048_576));
    assert_eq!(logged.messages.len(), 1, "one message expected");
    assert!(logged.messages[0] == expected, "the large line was altered");
}

/// B5: a command that writes nothing produces no log message at all.
#[tokio::test(flavor = "multi_thread")]
async fn b5_no_output_no_message() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"commands": [{"command": "printf ''", "print": false}]});
    sidecar.call(&runner, "b5", body).await.assert_success();
    assert_eq!(sidecar.post_count("b5"), 0, "{:?}", sidecar.messages("b5"));
}

// ---------------------------------------------------------------------------------------------
// C. cmd-exec command runner: exact log streams.
// ---------------------------------------------------------------------------------------------

/// Runs a special-command request and returns the reply and the action's log lines.
async fn special_call(aid: &str, commands: Value) -> (Reply, Vec<String>) {
    let (sidecar, runner) = start_pair(&[]);
    let reply = sidecar.call(&runner, aid, special(commands)).await;
    let lines = sidecar.lines(aid);
    (reply, lines)
}

/// C1: the stream starts with the command count and the echoed command.
#[tokio::test(flavor = "multi_thread")]
async fn c1_logs_count_and_command() {
    let (reply, lines) = special_call("c1", json!([{"command": "ls"}])).await;
    special_entries(&reply);
    assert_eq!(lines[..2], ["running 1 commands", "running command 'ls'"]);
}

/// C2: `suppress_command` echoes the command's index instead of its text.
#[tokio::test(flavor = "multi_thread")]
async fn c2_suppress_command_logs_index() {
    let commands = json!([{"command": "ls", "suppress_command": true}]);
    let (reply, lines) = special_call("c2", commands).await;
    special_entries(&reply);
    assert_eq!(lines[..2], ["running 1 commands", "running command 0"]);
}

/// C3: `suppress_output` keeps the output out of the log, but (as in Direktiv v0.9+) not out
/// of `Output`.
#[tokio::test(flavor = "multi_thread")]
async fn c3_suppress_output_is_not_logged_but_returned() {
    let commands = json!([{"command": "echo jens", "suppress_output": true}]);
    let (reply, lines) = special_call("c3", commands).await;
    let entries = special_entries(&reply);
    assert_eq!(lines, ["running 1 commands", "running command 'echo jens'"]);
    assert_eq!(outputs(&entries), [json!("jens\n")]);
}

/// C4: the exact stream of one command with output.
#[tokio::test(flavor = "multi_thread")]
async fn c4_output_is_logged() {
    let (reply, lines) = special_call("c4", json!([{"command": "echo jens"}])).await;
    let entries = special_entries(&reply);
    assert_eq!(
        lines,
        ["running 1 commands", "running command 'echo jens'", "jens"]
    );
    assert_eq!(entries, [json!({"Error": "", "Output": "jens\n"})]);
}

/// C5 and C6: a missing executable logs one failure line (even with `suppress_output`),
/// sets `Error`, and the request still succeeds (continue is the default).
#[tokio::test(flavor = "multi_thread")]
async fn c5_c6_missing_executable_logs_the_failure() {
    for (aid, suppress) in [("c5", true), ("c6", false)] {
        let commands = json!([{"command": "onetwo", "suppress_output": suppress}]);
        let (reply, lines) = special_call(aid, commands).await;
        let entries = special_entries(&reply);
        assert_eq!(lines.len(), 3, "{aid}: {lines:?}");
        assert_eq!(
            lines[..2],
            ["running 1 commands", "running command 'onetwo'"]
        );
        assert!(
            lines[2].starts_with("command 'onetwo' "),
            "{aid}: failure line {:?}",
            lines[2]
        );
        let error = &errors(&entries)[0];
        assert!(error.contains("onetwo"), "{aid}: Error {error:?}");
    }
}

/// C7: `stop` on a failing command ends the request: its failure is logged, then
/// `stopping execution due to error in command 1`, and the third command never runs.
#[tokio::test(flavor = "multi_thread")]
async fn c7_stop_ends_the_request() {
    let commands = json!([
        {"command": "echo hello1", "stop": true},
        {"command": "does not exist", "stop": true},
        {"command": "echo hello2", "stop": true}
    ]);
    let (reply, lines) = special_call("c7", commands).await;
    let message = assert_stopped(&reply);
    assert!(
        message.starts_with("stopped because command 1 failed"),
        "Direktiv's wording first: {message}"
    );
    assert_eq!(lines.len(), 6, "{lines:?}");
    assert_eq!(
        lines[..4],
        [
            "running 3 commands",
            "running command 'echo hello1'",
            "hello1",
            "running command 'does not exist'",
        ]
    );
    assert!(
        lines[4].starts_with("command 'does not exist' "),
        "failure line {:?}",
        lines[4]
    );
    assert_eq!(lines[5], "stopping execution due to error in command 1");
}

/// C8: C7 with the failing command not stopping: the third command runs.
#[tokio::test(flavor = "multi_thread")]
async fn c8_without_stop_execution_continues() {
    let commands = json!([
        {"command": "echo hello1", "stop": true},
        {"command": "does not exist", "stop": false},
        {"command": "echo hello2", "stop": true}
    ]);
    let (reply, lines) = special_call("c8", commands).await;
    let entries = special_entries(&reply);
    assert_eq!(entries.len(), 3);
    assert_eq!(errors(&entries)[0], "");
    assert_ne!(errors(&entries)[1], "");
    assert_eq!(errors(&entries)[2], "");
    assert_eq!(lines.len(), 7, "{lines:?}");
    assert!(
        lines[4].starts_with("command 'does not exist' "),
        "{lines:?}"
    );
    assert_eq!(lines[5..], ["running command 'echo hello2'", "hello2"]);
}

/// C9 (and D2): `envs` reach the command and, as in Direktiv, an ordinary value shows in the
/// log and in `Output`. A value marked `"secret": true` (or whose name looks secret) is masked
/// in both (README, "Secrets").
#[tokio::test(flavor = "multi_thread")]
async fn c9_d2_envs_reach_the_command_and_secret_ones_are_masked_in_logs() {
    let commands = json!([{
        "command": "bash -c 'env | grep -E \"^(HELLO|PASS)=\" | sort'",
        "envs": [{"name": "HELLO", "value": "WORLD"},
                 {"name": "PASS", "value": "open-sesame", "secret": true}]
    }]);
    let (reply, lines) = special_call("c9", commands).await;
    let entries = special_entries(&reply);
    assert_eq!(outputs(&entries), [json!("HELLO=WORLD\nPASS=***\n")]);
    assert!(lines.iter().any(|l| l == "HELLO=WORLD"), "{lines:?}");
    assert!(lines.iter().any(|l| l == "PASS=***"), "{lines:?}");
    assert!(
        !lines.iter().any(|l| l.contains("open-sesame")),
        "{lines:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// D. Direktiv end-to-end with the special command.
// ---------------------------------------------------------------------------------------------

/// D1: files with permissions, a script reading one of them, and JSON-embedded output
/// (`444\n` becomes the number 444, as in Direktiv v0.10).
#[tokio::test(flavor = "multi_thread")]
async fn d1_files_and_json_output() {
    let body = json!({
        "files": [
            {"name": "script.sh", "content": "#!/bin/bash\n\ncat hello.txt\n", "permission": 493},
            {"name": "hello.txt", "content": "HELLO", "permission": 292}
        ],
        "data": {"commands": [
            {"command": "./script.sh"},
            {"command": "stat -c \"%a\" hello.txt"}
        ]}
    });
    let (sidecar, runner) = start_pair(&[]);
    let entries = special_entries(&sidecar.call(&runner, "d1", body).await);
    assert_eq!(outputs(&entries), [json!("HELLO"), json!(444)]);
}

/// D3 and D4: both outputs are returned; only the unsuppressed one is logged.
#[tokio::test(flavor = "multi_thread")]
async fn d3_d4_suppressed_output_is_returned_not_logged() {
    let commands = json!([
        {"command": "echo hello1"},
        {"command": "echo hello2", "suppress_output": true}
    ]);
    let (reply, lines) = special_call("d3", commands).await;
    let entries = special_entries(&reply);
    assert_eq!(outputs(&entries), [json!("hello1\n"), json!("hello2\n")]);
    assert!(lines.iter().any(|l| l == "hello1"), "{lines:?}");
    assert!(!lines.iter().any(|l| l == "hello2"), "{lines:?}");
}

/// D5: a failing `stop` command fails the action (500 with Direktiv's code); `ls` never runs.
#[tokio::test(flavor = "multi_thread")]
async fn d5_stop_fails_the_action() {
    let commands = json!([{"command": "lsaasdasd", "stop": true}, {"command": "ls"}]);
    let (reply, lines) = special_call("d5", commands).await;
    assert_stopped(&reply);
    assert!(
        !lines.iter().any(|l| l == "running command 'ls'"),
        "{lines:?}"
    );
}

/// D6: without `stop` both commands run and the action succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn d6_failure_without_stop_continues() {
    let commands = json!([{"command": "lsaasdasd"}, {"command": "ls"}]);
    let (reply, _) = special_call("d6", commands).await;
    let entries = special_entries(&reply);
    assert_eq!(entries.len(), 2);
    assert_ne!(errors(&entries)[0], "");
    assert_eq!(errors(&entries)[1], "");
}

/// D7: `echo -n data` gives exactly `data`.
#[tokio::test(flavor = "multi_thread")]
async fn d7_output_without_newline() {
    let (reply, _) = special_call("d7", json!([{"command": "echo -n data"}])).await;
    assert_eq!(outputs(&special_entries(&reply)), [json!("data")]);
}

/// C9/D2 variant: Direktiv's runner expands `$VAR` and backticks while parsing, from its own
/// environment (so `$HELLO` from `envs` is empty and backticks run in the runner). We expand
/// nothing: the shell the user named sees `$HELLO` and expands it from the command env.
#[tokio::test(flavor = "multi_thread")]
async fn c9_no_expansion_by_the_runner() {
    let commands = json!([
        {"command": "bash -c 'echo \"$HELLO\"'", "envs": [{"name": "HELLO", "value": "WORLD"}]},
        {"command": "echo '`whoami`' '$(whoami)' $HOME"}
    ]);
    let (reply, _) = special_call("c9-literal", commands).await;
    let entries = special_entries(&reply);
    assert_eq!(
        outputs(&entries),
        [json!("WORLD\n"), json!("`whoami` $(whoami) $HOME\n")]
    );
}

/// Cancel: Direktiv's runner has no `DELETE /` (its commands run on); here it ends the
/// request with `cmd.cancelled`, answered as plain text like every special-shape error.
#[tokio::test(flavor = "multi_thread")]
async fn special_shape_can_be_cancelled() {
    let (sidecar, runner) = start_pair(&[]);
    let (sidecar, runner) = (std::sync::Arc::new(sidecar), std::sync::Arc::new(runner));
    let call = {
        let (sidecar, runner) = (sidecar.clone(), runner.clone());
        let body = special(json!([{"command": "sleep 60"}, {"command": "echo after"}]));
        tokio::spawn(async move { sidecar.call(&runner, "cancel-me", body).await })
    };
    let deadline = std::time::Instant::now() + crate::support::PATIENCE;
    while !sidecar
        .lines("cancel-me")
        .iter()
        .any(|l| l == "running command 'sleep 60'")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the command never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(sidecar.cancel(&runner, "cancel-me").await, 200);
    let reply = tokio::time::timeout(std::time::Duration::from_secs(45), call)
        .await
        .expect("the cancelled request must end long before its sleep")
        .expect("the call task");
    assert_plain_error(&reply, "cmd.cancelled", 500);
    assert!(!sidecar.lines("cancel-me").iter().any(|l| l == "after"));
}

/// Timeouts: Direktiv's runner has none; `CMD_TIMEOUT` bounds special-shape commands too. A
/// timed-out command is a failed command: without `stop` the next one runs, with `stop` the
/// request fails with the native `cmd.timeout` (plain text).
#[tokio::test(flavor = "multi_thread")]
async fn special_shape_commands_time_out() {
    let (sidecar, runner) = start_pair(&[("CMD_TIMEOUT", "1s")]);
    let limit = std::time::Duration::from_secs(45);
    let body = special(json!([{"command": "sleep 60"}, {"command": "echo after"}]));
    let reply = tokio::time::timeout(limit, sidecar.call(&runner, "timeout-go-on", body))
        .await
        .expect("the command must be stopped at its timeout");
    let entries = special_entries(&reply);
    assert!(errors(&entries)[0].contains("timed out"), "{entries:?}");
    assert_eq!(entries[1], json!({"Error": "", "Output": "after\n"}));

    let body = special(json!([{"command": "sleep 60", "stop": true}, {"command": "echo after"}]));
    let reply = tokio::time::timeout(limit, sidecar.call(&runner, "timeout-stop", body))
        .await
        .expect("the command must be stopped at its timeout");
    assert_plain_error(&reply, "cmd.timeout", 500);
}

/// A4 with the special shape's codes: input errors are `cmd.input` as plain text, where
/// Direktiv uses `io.direktiv.error.execution` for everything.
#[tokio::test(flavor = "multi_thread")]
async fn a4_special_shape_input_error_is_plain_text() {
    let (sidecar, runner) = start_pair(&[]);
    let body = special(json!([{"command": "echo 'unterminated"}]));
    let reply = sidecar.call(&runner, "a4-special", body).await;
    assert_plain_error(&reply, "cmd.input", 400);
}

/// The `development` action id (the convention of Direktiv's SDKs and karate suites) switches
/// the special shape to stdout logging as well; Direktiv's special command only knows
/// `DIREKTIV_DEV_MODE` and would post to the sidecar.
#[tokio::test(flavor = "multi_thread")]
async fn special_shape_development_logs_to_stdout() {
    let (sidecar, runner) = start_pair(&[]);
    let body = special(json!([{"command": "echo dev-line"}]));
    let entries = special_entries(&sidecar.call(&runner, "development", body).await);
    assert_eq!(outputs(&entries), [json!("dev-line\n")]);
    assert_eq!(sidecar.post_count("development"), 0);
    assert!(
        runner.wait_stdout(crate::support::PATIENCE, |l| l == "dev-line"),
        "{:?}",
        runner.stdout_lines()
    );
}

// ---------------------------------------------------------------------------------------------
// E. Sidecar semantics with the native (function-builder) shape, `CMD_RESULT_KEY=bash`.
// ---------------------------------------------------------------------------------------------

fn bash_pair() -> (FakeSidecar, Runner) {
    start_pair(&[("CMD_RESULT_KEY", "bash")])
}

/// E1: JSON stdout becomes a JSON `result`.
#[tokio::test(flavor = "multi_thread")]
async fn e1_json_stdout_is_embedded() {
    let (sidecar, runner) = bash_pair();
    let body = json!({"commands": [{"command": r#"echo '{"hello":"world"}'"#}]});
    let results = native_results(&sidecar.call(&runner, "e1", body).await, "bash");
    assert_eq!(result_pairs(&results), [(json!({"hello": "world"}), true)]);
}

/// E2: a file without `mode` gets 0644, so running it is refused. Direktiv reports
/// `io.direktiv.command.error` `permission denied`; we report `cmd.denied`, and the failure
/// body keeps the renamed key.
#[tokio::test(flavor = "multi_thread")]
async fn e2_file_without_mode_is_not_executable() {
    let (sidecar, runner) = bash_pair();
    let body = json!({
        "files": [{"name": "hello.sh", "data": "#!/bin/bash\necho 'Hello World'"}],
        "commands": [{"command": "./hello.sh"}]
    });
    let reply = sidecar.call(&runner, "e2", body).await;
    reply.assert_error("cmd.denied", 500);
    let message = reply.error_message().unwrap_or_default();
    assert!(message.contains("hello.sh"), "{message}");
    assert_eq!(reply.body()["errorCode"], "cmd.denied");
    assert_eq!(reply.body()["errorMessage"], json!(message));
    assert!(reply.body()["bash"].is_array(), "{reply:?}");
    assert!(reply.body().get("commands").is_none(), "{reply:?}");
}

/// E3: E2 with `mode: "0755"` runs.
#[tokio::test(flavor = "multi_thread")]
async fn e3_file_with_mode_runs() {
    let (sidecar, runner) = bash_pair();
    let body = json!({
        "files": [{"name": "hello.sh", "data": "#!/bin/bash\necho 'Hello World'", "mode": "0755"}],
        "commands": [{"command": "./hello.sh"}]
    });
    let results = native_results(&sidecar.call(&runner, "e3", body).await, "bash");
    assert_eq!(result_pairs(&results), [(json!("Hello World"), true)]);
}

/// Asserts a refused shell operator: `cmd.input`, a hint at `shell: true`, nothing run.
#[track_caller]
fn assert_operator_refused(reply: &Reply, dir: &Path) {
    reply.assert_error("cmd.input", 400);
    let message = reply.error_message().unwrap_or_default();
    assert!(
        message.contains(r#"set "shell": true to run it through the shell"#),
        "the message must point at shell mode: {message}"
    );
    assert!(!dir.join("executed").exists(), "nothing may run");
}

/// E4: Direktiv cuts `touch executed && cat executed` at `&&` and reports an empty success;
/// we refuse it (`cmd.input`, nothing runs), and the `shell: true` form does what was meant.
#[tokio::test(flavor = "multi_thread")]
async fn e4_shell_operator_is_refused_and_shell_form_works() {
    let (sidecar, runner) = bash_pair();
    let refused = json!({"commands": [{"command": "touch executed && cat executed"}]});
    let reply = sidecar
        .call_with(&runner, "e4-refused", refused, &keep_dir())
        .await;
    let dir = sidecar.action_dir("e4-refused");
    assert_operator_refused(&reply, &dir);
    let _ = std::fs::remove_dir_all(&dir);

    let shell = json!({"commands": [{"command": "touch executed && cat executed", "shell": true}]});
    let results = native_results(&sidecar.call(&runner, "e4", shell).await, "bash");
    assert_eq!(result_pairs(&results), [(json!(""), true)]);
}

/// E5: the next action has a fresh temp dir, so `executed` is gone: `cmd.exit.1` with the
/// stderr tail in the message (Direktiv: `io.direktiv.command.error`).
#[tokio::test(flavor = "multi_thread")]
async fn e5_next_action_has_a_fresh_temp_dir() {
    let (sidecar, runner) = bash_pair();
    let first = json!({"commands": [{"command": "touch executed", "shell": true}]});
    native_results(&sidecar.call(&runner, "e5-first", first).await, "bash");
    for (aid, temp_dir) in [
        ("e5", TempDirHeader::Sent),
        ("e5-private", TempDirHeader::Omitted),
    ] {
        let options = CallOptions {
            temp_dir,
            ..CallOptions::default()
        };
        let body = json!({"commands": [{"command": "cat executed"}]});
        let reply = sidecar.call_with(&runner, aid, body, &options).await;
        reply.assert_error("cmd.exit.1", 500);
        assert_eq!(
            reply.error_message().as_deref(),
            Some("command 'cat executed' exited with status 1: cat: executed: No such file or directory"),
            "{aid}"
        );
    }
}

/// E6: `sleep 1 && cat executed` is refused before anything runs (the first command included);
/// with `shell: true` both commands succeed with an empty result, as in Direktiv.
#[tokio::test(flavor = "multi_thread")]
async fn e6_refusal_happens_before_any_command_runs() {
    let (sidecar, runner) = bash_pair();
    let refused = json!({"commands": [
        {"command": "touch executed"},
        {"command": "sleep 1 && cat executed"}
    ]});
    let reply = sidecar
        .call_with(&runner, "e6-refused", refused, &keep_dir())
        .await;
    let dir = sidecar.action_dir("e6-refused");
    assert_operator_refused(&reply, &dir);
    let _ = std::fs::remove_dir_all(&dir);

    let shell = json!({"commands": [
        {"command": "touch executed"},
        {"command": "sleep 1 && cat executed", "shell": true}
    ]});
    let results = native_results(&sidecar.call(&runner, "e6", shell).await, "bash");
    assert_eq!(
        result_pairs(&results),
        [(json!(""), true), (json!(""), true)]
    );
}

/// E7: a workflow variable placed by the sidecar (`files: [{key: myvar, scope: workflow}]`)
/// is readable by the command.
#[tokio::test(flavor = "multi_thread")]
async fn e7_variable_file_from_the_sidecar() {
    let (sidecar, runner) = start_pair(&[]);
    sidecar.set_var("workflow", "myvar", "Hello World 55");
    let options = CallOptions {
        files: vec![ActionFile::new("workflow", "myvar")],
        ..CallOptions::default()
    };
    let body = json!({"commands": [{"command": "cat myvar"}]});
    let reply = sidecar.call_with(&runner, "e7", body, &options).await;
    let results = native_results(&reply, "commands");
    assert_eq!(result_pairs(&results), [(json!("Hello World 55"), true)]);
}

/// E8: a file written to `out/workflow/` becomes a workflow variable next to the existing one.
#[tokio::test(flavor = "multi_thread")]
async fn e8_out_folder_becomes_variables() {
    let (sidecar, runner) = bash_pair();
    sidecar.set_var("workflow", "existing", "1");
    let body = json!({"commands": [{"command": "bash -c 'echo hi > out/workflow/somevar1'"}]});
    let reply = sidecar.call(&runner, "e8", body).await;
    native_results(&reply, "bash");
    assert_eq!(
        reply.vars.get("workflow/somevar1").map(Vec::as_slice),
        Some(&b"hi\n"[..])
    );
    assert_eq!(
        sidecar.var("workflow", "somevar1").as_deref(),
        Some(&b"hi\n"[..])
    );
    assert_eq!(
        sidecar.var("workflow", "existing").as_deref(),
        Some(&b"1"[..])
    );
}

/// E8 without `Direktiv-TempDir`: the runner's private temp dir has the `out/` folders too,
/// so the same command does not fail.
#[tokio::test(flavor = "multi_thread")]
async fn e8_private_temp_dir_has_out_folders() {
    let (sidecar, runner) = bash_pair();
    let options = CallOptions {
        temp_dir: TempDirHeader::Omitted,
        ..CallOptions::default()
    };
    let body = json!({"commands": [
        {"command": "bash -c 'echo hi > out/workflow/somevar1'"},
        {"command": "ls out"}
    ]});
    let reply = sidecar
        .call_with(&runner, "e8-private", body, &options)
        .await;
    let results = native_results(&reply, "bash");
    assert_eq!(results[1]["result"], "instance\nnamespace\nworkflow");
}

// ---------------------------------------------------------------------------------------------
// G. direktiv-apps karate suites: `Direktiv-ActionID: development`, native shape.
// ---------------------------------------------------------------------------------------------

/// Runs a native request as the karate suites do (action id `development`) and checks that
/// development mode sent nothing to the sidecar.
async fn karate(key: &str, body: Value) -> (Reply, Runner) {
    let (sidecar, runner) = start_pair(&[("CMD_RESULT_KEY", key)]);
    let reply = sidecar.call(&runner, "development", body).await;
    assert_eq!(
        sidecar.post_count("development"),
        0,
        "development mode must not post logs"
    );
    (reply, runner)
}

/// G1: `$Key` stays literal for the runner and is expanded by bash from the command env. A
/// name containing KEY holds a secret (README, "Secrets"), so the result that shows the value
/// reads `***`, which only the expanded value gives; with `CMD_MASK_RESPONSE=false` it is the
/// value itself, as the function-builder image returns it.
#[tokio::test(flavor = "multi_thread")]
async fn g1_env_is_expanded_by_the_shell_not_the_runner() {
    let body = json!({"commands": [{
        "command": "bash -c 'echo $Key'", "silent": true, "print": false,
        "envs": [{"name": "Key", "value": "Value"}]
    }]});
    let (reply, _) = karate("bash", body.clone()).await;
    let results = native_results(&reply, "bash");
    assert_eq!(result_pairs(&results), [(json!("***"), true)]);

    let (sidecar, runner) =
        start_pair(&[("CMD_RESULT_KEY", "bash"), ("CMD_MASK_RESPONSE", "false")]);
    let reply = sidecar.call(&runner, "development", body).await;
    let results = native_results(&reply, "bash");
    assert_eq!(result_pairs(&results), [(json!("Value"), true)]);
}

/// G2: an executable file from `files` with `mode: "0755"`.
#[tokio::test(flavor = "multi_thread")]
async fn g2_executable_file() {
    let body = json!({
        "files": [{"name": "run.sh", "data": "#!/bin/bash\necho TEST", "mode": "0755"}],
        "commands": [{"command": "./run.sh", "silent": true, "print": false}]
    });
    let (reply, _) = karate("bash", body).await;
    let results = native_results(&reply, "bash");
    assert_eq!(result_pairs(&results), [(json!("TEST"), true)]);
}

/// G3: `python3 --version`, result trimmed; in development mode the output goes to the
/// runner's stdout.
#[tokio::test(flavor = "multi_thread")]
async fn g3_python_version() {
    let body = json!({"commands": [{"command": "python3 --version"}]});
    let (reply, runner) = karate("python", body).await;
    let results = native_results(&reply, "python");
    let version = results[0]["result"].as_str().expect("a string result");
    assert!(version.starts_with("Python 3."), "{version:?}");
    assert_eq!(results[0]["success"], true);
    assert!(
        runner.wait_stdout(crate::support::PATIENCE, |l| l == version),
        "development output must reach stdout: {:?}",
        runner.stdout_lines()
    );
}

/// Stand-ins for pyenv's `pyenv local` and `python3` shim, working as pyenv does: `pyenv
/// local V` writes `.python-version` in the working directory, and the shim runs the version
/// the nearest `.python-version` names (here it only says which).
const PYENV_STAND_INS: [(&str, &str); 2] = [
    (
        "pyenv",
        "#!/bin/sh\n[ \"$1\" = local ] && printf '%s\\n' \"$2\" > .python-version\n",
    ),
    (
        "python3",
        "#!/bin/sh\ndir=$PWD\n\
         while [ ! -f \"$dir/.python-version\" ] && [ \"$dir\" != / ]; do dir=$(dirname \"$dir\"); done\n\
         version=$(cat \"$dir/.python-version\" 2>/dev/null || echo system)\n\
         [ \"$1\" = -V ] && echo \"Python $version\"\n",
    ),
];

/// G4: `pyenv local` switches the Python of later commands, because every command of a request
/// runs in the same temp dir. The karate suite's image has pyenv with 3.8.13 and 3.10.5; here
/// stand-ins for its commands (`PYENV_STAND_INS`) come first in the container's PATH.
#[tokio::test(flavor = "multi_thread")]
async fn g4_pyenv_local_switches_version() {
    let shims = tempfile::tempdir().unwrap();
    for (name, script) in PYENV_STAND_INS {
        let path = shims.path().join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        shims.path().display(),
        std::env::var("PATH").unwrap()
    );
    let (first, second) = ("3.8.13", "3.10.5");
    let body = json!({"commands": [
        {"command": format!("pyenv local {first}")},
        {"command": "python3 -V"},
        {"command": format!("pyenv local {second}")},
        {"command": "python3 -V"}
    ]});
    let (sidecar, runner) = start_pair(&[("CMD_RESULT_KEY", "python"), ("PATH", &path)]);
    let reply = sidecar.call(&runner, "development", body).await;
    let results = native_results(&reply, "python");
    assert_eq!(
        result_pairs(&results),
        [
            (json!(""), true),
            (json!(format!("Python {first}")), true),
            (json!(""), true),
            (json!(format!("Python {second}")), true),
        ]
    );
}

/// G5: `envs` reach a Python process.
#[tokio::test(flavor = "multi_thread")]
async fn g5_python_sees_envs() {
    let body = json!({"commands": [{
        "command": r#"python3 -c 'import os;print(os.environ["ONE"])'"#,
        "envs": [{"name": "ONE", "value": "two"}]
    }]});
    let (reply, _) = karate("python", body).await;
    let results = native_results(&reply, "python");
    assert_eq!(result_pairs(&results), [(json!("two"), true)]);
}
