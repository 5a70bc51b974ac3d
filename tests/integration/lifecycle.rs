//! The life of a request's processes, against the real binary with real processes and signals:
//! cancel, timeouts, client disconnects, background children, SIGTERM drain, busy limits, the
//! allowlist and output bounds. Every test checks through /proc that nothing of the request is
//! left running.
//!
//! Processes of a request are found by a unique marker in their environment (request-level
//! `env`, `support::marked`), which every process a command starts inherits. They must be gone
//! when the response is sent (SPEC §4, §7), so that is checked at once, not after a wait.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::procs::{self, Signal};
use crate::support::{
    call_in_background, marked, reply_within, sh, start_shared, within, FakeSidecar, Runner,
    PATIENCE,
};
use serde_json::json;
use tokio::io::AsyncWriteExt;

/// A shell loop that traps SIGTERM (says so and keeps running): only SIGKILL ends it.
const TRAPS_TERM: &str = "trap 'echo got TERM' TERM; echo ready; while :; do sleep 0.2; done";

/// Waits until at least `count` live processes carry `marker` (the command really runs).
#[track_caller]
fn await_running(marker: &str, count: usize) -> Vec<procs::Proc> {
    let found = procs::wait_for(PATIENCE, || {
        let live = procs::alive_with_marker(marker);
        (live.len() >= count).then_some(live)
    });
    found.unwrap_or_else(|| panic!("no {count} running process(es) with marker {marker}"))
}

/// Asserts, right after the response, that no process of `marker` is alive and that the
/// runner holds no zombie: the response is sent only once they are gone.
#[track_caller]
fn assert_all_gone(marker: &str, runner: &Runner) {
    let left = procs::alive_with_marker(marker);
    assert!(left.is_empty(), "running after the response: {left:?}");
    let zombies = procs::zombies_under(runner.pid());
    assert!(
        zombies.is_empty(),
        "zombies after the response: {zombies:?}"
    );
}

// --- 1. cancel ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn delete_stops_the_whole_group_with_term_then_kill_and_skips_the_rest() {
    let grace = Duration::from_secs(3);
    let (sidecar, runner) = start_shared(&[("CMD_KILL_GRACE", "3s")]);
    let marker = procs::marker("cancel");
    let body = marked(
        &marker,
        json!([sh(&format!("sleep 600 & {TRAPS_TERM}")), {"command": "echo second"}]),
    );
    let call = call_in_background(&sidecar, &runner, "cancel-1", body);
    let running = await_running(&marker, 2);
    let leader = running.iter().map(|p| p.pgid).next().unwrap_or_default();
    assert!(
        running
            .iter()
            .all(|p| p.pgid == leader && p.pgid != runner.pid()),
        "a command runs in its own process group: {running:?}"
    );

    let asked = Instant::now();
    assert_eq!(sidecar.cancel(&runner, "cancel-1").await, 200);
    // DELETE answers at once: it does not wait for the kill grace to run out.
    assert!(
        !call.is_finished(),
        "DELETE must not wait for the request to end"
    );

    let reply = reply_within(call, PATIENCE).await;
    let waited = asked.elapsed();
    reply.assert_error("cmd.cancelled", 500);
    // SIGTERM first: the trap ran and said so, in the log and in the command's stdout (the
    // reply's `command` field holds the script text, so only whole lines count).
    let logged = sidecar.lines("cancel-1");
    let at = |line: &str| logged.iter().position(|l| l == line);
    assert!(
        matches!((at("ready"), at("got TERM")), (Some(ready), Some(term)) if ready < term),
        "SIGTERM must reach the command first: {logged:?}"
    );
    let stdout = reply.command(0)["stdout"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(stdout, "ready\ngot TERM\n", "{reply:?}");
    // SIGKILL only after the grace: the trap kept the command alive until then.
    assert!(
        waited >= grace - Duration::from_millis(500),
        "a command that traps SIGTERM gets CMD_KILL_GRACE before SIGKILL (ended after {waited:?})"
    );
    assert_eq!(
        reply.commands().len(),
        1,
        "the second command is skipped: {reply:?}"
    );
    assert!(!logged.iter().any(|l| l == "second"), "{logged:?}");
    assert_all_gone(&marker, &runner);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_of_an_unknown_action_id_answers_200() {
    let (sidecar, runner) = start_shared(&[]);
    assert_eq!(sidecar.cancel(&runner, "nobody-runs-this").await, 200);
    // And the runner is still fine afterwards.
    sidecar
        .call(&runner, "after-unknown", json!({"command": "echo ok"}))
        .await
        .assert_success();
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_ends_a_plain_command_at_once_and_only_its_own_request() {
    // A grace far beyond the test's patience: only SIGTERM can end the request in time.
    let (sidecar, runner) = start_shared(&[("CMD_KILL_GRACE", "600s")]);
    let (doomed, spared) = (procs::marker("doomed"), procs::marker("spared"));
    let first = call_in_background(
        &sidecar,
        &runner,
        "doomed",
        marked(&doomed, json!([{"command": "sleep 600"}])),
    );
    let second = call_in_background(
        &sidecar,
        &runner,
        "spared",
        marked(&spared, json!([sh("sleep 2; echo survived")])),
    );
    await_running(&doomed, 1);
    await_running(&spared, 1);
    assert_eq!(sidecar.cancel(&runner, "doomed").await, 200);
    // sleep dies on SIGTERM, so no kill grace is involved.
    reply_within(first, PATIENCE)
        .await
        .assert_error("cmd.cancelled", 500);
    let spared_reply = reply_within(second, PATIENCE).await;
    spared_reply.assert_success();
    assert_eq!(spared_reply.command(0)["result"], "survived");
    assert_all_gone(&doomed, &runner);
    assert_all_gone(&spared, &runner);
}

// --- 2. timeouts -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn per_command_timeout_kills_the_group_and_answers_cmd_timeout() {
    let (sidecar, runner) = start_shared(&[("CMD_KILL_GRACE", "1s")]);
    let marker = procs::marker("timeout");
    let mut command = sh(&format!("sleep 600 & {TRAPS_TERM}"));
    command["timeout"] = json!(1);
    let body = marked(&marker, json!([command, {"command": "echo after"}]));
    let started = Instant::now();
    let reply = within(
        PATIENCE,
        "timeout-1",
        sidecar.call(&runner, "timeout-1", body),
    )
    .await;
    reply.assert_error("cmd.timeout", 500);
    assert!(
        started.elapsed() >= Duration::from_secs(2) - Duration::from_millis(300),
        "timeout (1s) plus kill grace (1s) for a command that traps SIGTERM: {:?}",
        started.elapsed()
    );
    assert_eq!(
        reply.commands().len(),
        1,
        "nothing runs after a timeout: {reply:?}"
    );
    assert_all_gone(&marker, &runner);
}

/// A command that answers SIGTERM by writing far more than a pipe holds before it exits: the
/// runner keeps reading while it stops the group, so the command exits at once instead of
/// blocking on a full pipe until SIGKILL, which the long grace would put off far beyond the
/// test's patience.
#[tokio::test(flavor = "multi_thread")]
async fn output_written_while_stopping_is_drained_and_the_command_exits_on_sigterm() {
    let (sidecar, runner) = start_shared(&[("CMD_KILL_GRACE", "600s")]);
    let marker = procs::marker("drain-on-term");
    let script = "trap 'seq 1 200000; exit 0' TERM; echo ready; while :; do sleep 0.1; done";
    let mut command = sh(script);
    command["timeout"] = json!(1);
    let call = sidecar.call(&runner, "drain-on-term", marked(&marker, json!([command])));
    let reply = within(PATIENCE, "a command that exits on SIGTERM", call).await;
    reply.assert_error("cmd.timeout", 500);
    let lines = sidecar.lines("drain-on-term");
    assert!(lines.iter().any(|l| l == "200000"), "every line logged");
    assert_all_gone(&marker, &runner);
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_as_a_duration_string() {
    let (sidecar, runner) = start_shared(&[]);
    let marker = procs::marker("timeout-str");
    let body = marked(&marker, json!([{"command": "sleep 600", "timeout": "1s"}]));
    let reply = sidecar.call(&runner, "timeout-str", body).await;
    reply.assert_error("cmd.timeout", 500);
    assert_all_gone(&marker, &runner);
}

#[tokio::test(flavor = "multi_thread")]
async fn default_timeout_from_cmd_timeout() {
    let (sidecar, runner) = start_shared(&[("CMD_TIMEOUT", "1"), ("CMD_KILL_GRACE", "1s")]);
    let marker = procs::marker("cmd-timeout");
    let body = marked(&marker, json!([{"command": "sleep 600"}]));
    let reply = within(
        PATIENCE,
        "cmd-timeout",
        sidecar.call(&runner, "cmd-timeout", body),
    )
    .await;
    reply.assert_error("cmd.timeout", 500);
    assert_all_gone(&marker, &runner);
    // A command that is quick enough is not affected.
    sidecar
        .call(&runner, "cmd-timeout-ok", json!({"command": "echo fast"}))
        .await
        .assert_success();
}

// --- 3. client disconnect ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn client_disconnect_kills_the_group() {
    let (sidecar, runner) = start_shared(&[("CMD_KILL_GRACE", "1s")]);
    let marker = procs::marker("disconnect");
    sidecar.register("disconnect-1");
    let body = marked(&marker, json!([sh(&format!("sleep 600 & {TRAPS_TERM}"))])).to_string();
    let mut stream = tokio::net::TcpStream::connect(runner.addr()).await.unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {}\r\nDirektiv-ActionID: disconnect-1\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        runner.addr(),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    await_running(&marker, 2);
    drop(stream);
    // No response marks the end here: the processes go once the runner notices the client left.
    let left = procs::wait_marker_gone(&marker, PATIENCE);
    assert!(left.is_empty(), "running after the client left: {left:?}");
    let zombies = procs::wait_no_zombies(runner.pid(), PATIENCE);
    assert!(
        zombies.is_empty(),
        "zombies after the client left: {zombies:?}"
    );
    // The runner keeps serving.
    sidecar
        .call(&runner, "after-disconnect", json!({"command": "echo ok"}))
        .await
        .assert_success();
}

// --- 4. background children --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn background_child_holding_stdout_does_not_hang_the_request() {
    let (sidecar, runner) = start_shared(&[]);
    let marker = procs::marker("background");
    let body = marked(&marker, json!([sh("sleep 600 & echo started")]));
    // Long before the background sleep would end (the reading that is left is about a second).
    let call = sidecar.call(&runner, "background-1", body);
    let reply = within(PATIENCE, "a command with a background child", call).await;
    reply.assert_success();
    assert_eq!(reply.command(0)["result"], "started");
    assert_all_gone(&marker, &runner);
}

// --- 6. SIGTERM drain --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_lets_short_requests_finish_and_cancels_long_ones() {
    let (sidecar, runner) = start_shared(&[("CMD_GRACE", "4s"), ("CMD_KILL_GRACE", "1s")]);
    let (short, long) = (procs::marker("short"), procs::marker("long"));
    let short_call = call_in_background(
        &sidecar,
        &runner,
        "drain-short",
        marked(&short, json!([sh("sleep 2; echo finished")])),
    );
    let long_call = call_in_background(
        &sidecar,
        &runner,
        "drain-long",
        marked(&long, json!([{"command": "sleep 600"}])),
    );
    await_running(&short, 1);
    await_running(&long, 1);

    let terminated = Instant::now();
    runner.signal(Signal::TERM);
    let not_ready = procs::wait_for(PATIENCE, || {
        (runner.get_status_blocking("/readyz") == 503).then_some(())
    });
    assert!(not_ready.is_some(), "/readyz must turn 503 while draining");
    let refused = sidecar
        .call(&runner, "drain-new", json!({"command": "echo too late"}))
        .await;
    refused.assert_error("cmd.busy", 503);

    let short_reply = reply_within(short_call, PATIENCE).await;
    short_reply.assert_success();
    assert_eq!(short_reply.command(0)["result"], "finished");
    assert_all_gone(&short, &runner);
    let long_reply = reply_within(long_call, PATIENCE).await;
    long_reply.assert_error("cmd.cancelled", 500);
    assert_all_gone(&long, &runner);
    assert!(
        terminated.elapsed() >= Duration::from_millis(3500),
        "a long request is cancelled only once CMD_GRACE (4s) ran out: {:?}",
        terminated.elapsed()
    );

    let mut runner = Arc::try_unwrap(runner).unwrap_or_else(|_| panic!("runner still shared"));
    let status = runner
        .wait_exit(PATIENCE)
        .expect("the runner exits after draining");
    assert_eq!(status.code(), Some(0), "a drained runner exits 0");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_when_idle_exits_0_promptly() {
    let sidecar = FakeSidecar::start();
    let mut runner = Runner::start(&sidecar);
    runner.signal(Signal::TERM);
    let status = runner
        .wait_exit(PATIENCE)
        .expect("an idle runner exits on SIGTERM");
    assert_eq!(status.code(), Some(0));
}

// --- 7. limits ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn inflight_limit_and_duplicate_action_ids_answer_cmd_busy() {
    let (sidecar, runner) = start_shared(&[("CMD_MAX_INFLIGHT", "2")]);
    let record = tempfile::NamedTempFile::new().unwrap();
    let record_path = record.path().display().to_string();
    let marker = procs::marker("limits");
    let long = marked(
        &marker,
        json!([sh(&format!("echo run >> {record_path}; sleep 600"))]),
    );
    let first = call_in_background(&sidecar, &runner, "limit-1", long.clone());
    let second = call_in_background(&sidecar, &runner, "limit-2", long.clone());
    await_running(&marker, 2);

    // Busy order: the same action id (409) is checked before the in-flight limit (503).
    let duplicate = runner
        .post(long.clone(), &[("Direktiv-ActionID", "limit-1")])
        .await;
    duplicate.assert_error("cmd.busy", 409);
    let third = runner
        .post(
            json!({"command": "echo third"}),
            &[("Direktiv-ActionID", "limit-3")],
        )
        .await;
    third.assert_error("cmd.busy", 503);

    for aid in ["limit-1", "limit-2"] {
        assert_eq!(sidecar.cancel(&runner, aid).await, 200);
    }
    reply_within(first, PATIENCE)
        .await
        .assert_error("cmd.cancelled", 500);
    reply_within(second, PATIENCE)
        .await
        .assert_error("cmd.cancelled", 500);
    let runs = std::fs::read_to_string(record.path()).unwrap();
    assert_eq!(
        runs.lines().count(),
        2,
        "a duplicate action id never runs: {runs:?}"
    );
    assert_all_gone(&marker, &runner);

    // Slots are free again once the requests ended.
    sidecar
        .call(&runner, "limit-4", json!({"command": "echo free"}))
        .await
        .assert_success();
}

#[tokio::test(flavor = "multi_thread")]
async fn development_action_id_may_run_twice_at_once() {
    let (_sidecar, runner) = start_shared(&[]);
    let marker = procs::marker("development");
    let body = marked(&marker, json!([sh("sleep 2; echo dev")]));
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let (runner, body) = (runner.clone(), body.clone());
            tokio::spawn(async move {
                runner
                    .post(body, &[("Direktiv-ActionID", "development")])
                    .await
            })
        })
        .collect();
    await_running(&marker, 2);
    for call in calls {
        let reply = reply_within(call, PATIENCE).await;
        reply.assert_success();
        assert_eq!(reply.command(0)["result"], "dev");
    }
    assert_all_gone(&marker, &runner);
}

// --- 8. allowlist ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn allowlist_runs_listed_executables_only() {
    let (sidecar, runner) = start_shared(&[("CMD_ALLOW", "echo")]);
    let ok = sidecar
        .call(&runner, "allow-echo", json!({"command": "echo allowed"}))
        .await;
    ok.assert_success();
    assert_eq!(ok.command(0)["result"], "allowed");

    let denied = sidecar
        .call(
            &runner,
            "allow-cat",
            json!({"command": "cat /etc/hostname"}),
        )
        .await;
    denied.assert_error("cmd.denied", 500);
    let message = denied.error_message().unwrap_or_default();
    assert!(
        message
            .starts_with("command 'cat /etc/hostname' is not allowed: 'cat' is not in CMD_ALLOW"),
        "the message names the refused command: {message}"
    );
    let shell = sidecar
        .call(
            &runner,
            "allow-shell",
            json!({"command": "echo hi", "shell": true}),
        )
        .await;
    shell.assert_error("cmd.denied", 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn shell_mode_works_when_the_shell_is_listed() {
    let (sidecar, runner) =
        start_shared(&[("CMD_ALLOW", "echo,/bin/sh"), ("CMD_SHELL", "/bin/sh")]);
    let reply = sidecar
        .call(
            &runner,
            "allow-listed-shell",
            json!({"command": "echo a && echo b", "shell": true}),
        )
        .await;
    reply.assert_success();
    assert_eq!(reply.command(0)["stdout"], "a\nb\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn request_path_cannot_redirect_an_allowed_name() {
    let (sidecar, runner) = start_shared(&[("CMD_ALLOW", "echo")]);
    let decoy = tempfile::tempdir().unwrap();
    let fake = decoy.path().join("echo");
    std::fs::write(&fake, "#!/bin/sh\necho hijacked\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", decoy.path().display());
    for (aid, body) in [
        (
            "path-request",
            json!({"env": {"PATH": path}, "command": "echo real"}),
        ),
        (
            "path-command",
            json!({"commands": [{"command": "echo real", "env": {"PATH": path}}]}),
        ),
    ] {
        // `echo` resolves through the request's PATH to the decoy, which CMD_ALLOW does not
        // name: refused before anything runs.
        let reply = sidecar.call(&runner, aid, body).await;
        reply.assert_error("cmd.denied", 500);
        let message = reply.error_message().unwrap_or_default();
        assert!(
            message.contains("'echo' is not in CMD_ALLOW"),
            "{aid}: {message}"
        );
        assert!(!reply.text.contains("hijacked"), "{aid}: {reply:?}");
    }
}

// --- 9. output bounds --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn huge_output_is_bounded_in_the_response_and_complete_in_the_logs() {
    const LINES: u64 = 1_000_000;
    const LINE: &str =
        "0123456789012345678901234567890123456789012345678901234567890123456789012345678";
    let max_output = 1usize << 20;
    let (sidecar, runner) = start_shared(&[("CMD_MAX_OUTPUT", "1MiB")]);
    let script = format!("yes {LINE} | head -n {LINES}");
    let body = json!({"commands": [{"command": script, "shell": true, "print": false}]});
    let reply = sidecar.call(&runner, "huge-output", body).await;
    reply.assert_success();

    let result = reply.command(0);
    assert_eq!(result["truncated"], true, "80 MB of output is truncated");
    let kept = result["stdout"].as_str().unwrap_or_default().len();
    assert!(
        kept <= max_output && kept + 4096 >= max_output,
        "stdout keeps CMD_MAX_OUTPUT bytes ({max_output}), kept {kept}"
    );

    // How much memory the runner needs for this is a bound for a quiet machine: `make soak`
    // (soak/bounds.rs) checks it.

    // Every byte reached the log endpoint: each message is newline-joined lines without the
    // final newline, so bytes = message bytes + one newline per message.
    let messages = sidecar.raw_messages("huge-output");
    let logged_bytes: u64 = messages.iter().map(|m| m.len() as u64 + 1).sum();
    let logged_lines: u64 = messages
        .iter()
        .map(|m| m.iter().filter(|b| **b == b'\n').count() as u64 + 1)
        .sum();
    let line_len = LINE.len() as u64 + 1;
    assert_eq!(
        logged_lines,
        LINES,
        "every line is logged ({} posts to /log, {} output lines fell back to stdout, \
         largest message {} bytes; runner: {:?})",
        sidecar.post_count("huge-output"),
        runner.stdout_lines().len(),
        messages.iter().map(Vec::len).max().unwrap_or(0),
        runner
            .stderr_lines()
            .iter()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect::<Vec<_>>()
    );
    assert_eq!(logged_bytes, LINES * line_len, "every byte is logged");
    assert!(
        messages
            .iter()
            .all(|m| m.split(|b| *b == b'\n').all(|line| line == LINE.as_bytes())),
        "lines arrive unbroken and unprefixed"
    );
}
