//! Log streaming to the sidecar against the real binary (README, "Logs"): completeness and order,
//! slow, failing and down sidecars, long lines, invalid UTF-8, development mode, masking of the
//! echoed command line, and no post ever arriving after the action id is gone.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::json;

use crate::support::{start_pair, within, FakeSidecar, Runner, LOG_CAP, PATIENCE};

/// A post after the response would arrive after `call` forgot the action id and be rejected.
/// Once the runner has exited and the sidecar has handled every request it sent, none can
/// still come.
#[track_caller]
fn assert_no_late_posts(sidecar: &FakeSidecar, runner: Runner) {
    sidecar.settle(runner);
    assert_eq!(sidecar.rejected(), vec![], "posts after the response");
}

fn numbers(from: u32, to: u32) -> Vec<String> {
    (from..=to).map(|n| n.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_thousand_lines_arrive_complete_and_in_order_before_the_response() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"commands": [{"command": "seq 1 20000", "print": false}]});
    let reply = sidecar.call(&runner, "l1", body).await;
    reply.assert_success();
    assert_eq!(sidecar.lines("l1"), numbers(1, 20000));
    assert_no_late_posts(&sidecar, runner);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_line_is_sent_verbatim_without_prefix_or_newline() {
    let (sidecar, runner) = start_pair(&[]);
    let script = r"printf '  indented\ttab  \n\nafter empty\nlast without newline'";
    let body = json!({"commands": [{"args": ["sh", "-c", script], "print": false}]});
    sidecar.call(&runner, "l1", body).await.assert_success();
    let lines = sidecar.lines("l1");
    assert_eq!(
        lines.iter().filter(|l| !l.is_empty()).collect::<Vec<_>>(),
        ["  indented\ttab  ", "after empty", "last without newline"]
    );
    assert_no_late_posts(&sidecar, runner);
}

#[tokio::test(flavor = "multi_thread")]
async fn stdout_and_stderr_lines_are_both_logged_in_their_own_order() {
    let (sidecar, runner) = start_pair(&[]);
    let script = "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done";
    let body = json!({"commands": [{"args": ["sh", "-c", script], "print": false}]});
    sidecar.call(&runner, "l1", body).await.assert_success();
    let lines = sidecar.lines("l1");
    let out: Vec<_> = lines.iter().filter(|l| l.starts_with("out")).collect();
    let err: Vec<_> = lines.iter().filter(|l| l.starts_with("err")).collect();
    assert_eq!(out, ["out1", "out2", "out3", "out4", "out5"]);
    assert_eq!(err, ["err1", "err2", "err3", "err4", "err5"]);
    assert_eq!(lines.len(), 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_sidecar_does_not_slow_the_command() {
    let (sidecar, runner) = start_pair(&[]);
    // 2,000 lines of 100 bytes: three times a pipe buffer, so a runner that waited for a post
    // before reading on would hold the command up until the sidecar had answered. The command
    // notes when it has printed them all (`out/instance/printed`, nanoseconds); the sidecar
    // answers each post only after half a second.
    let script = "seq -f %0100.0f 1 2000; date +%s%N > out/instance/printed";
    let body = json!({"commands": [{"args": ["sh", "-c", script], "print": false}]});
    let expected: Vec<String> = (1..=2000).map(|n| format!("{n:0100}")).collect();
    sidecar.set_delay(Duration::from_millis(500));
    let reply = sidecar.call(&runner, "slow", body).await;
    reply.assert_success();
    assert_eq!(sidecar.lines("slow"), expected, "no line lost, order kept");
    assert!(
        sidecar.post_count("slow") < 200,
        "queued lines are coalesced: {} posts",
        sidecar.post_count("slow")
    );
    let printed = reply
        .vars
        .get("instance/printed")
        .expect("the command's note");
    let nanos: u64 = String::from_utf8_lossy(printed)
        .trim()
        .parse()
        .expect("date +%s%N");
    let printed = SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos);
    let delivered = sidecar.lines_before("slow", printed);
    assert_eq!(
        delivered, 0,
        "the command could finish printing only after the sidecar had taken {delivered} lines"
    );
    assert_no_late_posts(&sidecar, runner);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_one_megabyte_line_without_newline_arrives_whole() {
    let (sidecar, runner) = start_pair(&[]);
    let script = "head -c 1000000 /dev/zero | tr '\\0' a";
    let body = json!({"commands": [{"args": ["sh", "-c", script], "print": false}]});
    let reply = sidecar.call(&runner, "l1", body).await;
    reply.assert_success();
    let lines = sidecar.lines("l1");
    let long: Vec<_> = lines.iter().filter(|l| !l.is_empty()).collect();
    assert_eq!(long.len(), 1, "one line, not split");
    assert_eq!(long[0].len(), 1_000_000);
    assert!(long[0].bytes().all(|b| b == b'a'));
    assert_no_late_posts(&sidecar, runner);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_line_longer_than_the_message_cap_is_split_within_it() {
    let (sidecar, runner) = start_pair(&[]);
    let size = LOG_CAP + LOG_CAP / 4;
    let script = format!("head -c {size} /dev/zero | tr '\\0' b; echo; echo next");
    let body = json!({"commands": [{"args": ["sh", "-c", script], "print": false}]});
    sidecar.call(&runner, "l1", body).await.assert_success();
    assert_eq!(
        sidecar.oversized_posts(),
        0,
        "no post above Direktiv's 4 MiB cap"
    );
    for message in sidecar.raw_messages("l1") {
        assert!(
            message.len() <= LOG_CAP,
            "a post of {} bytes",
            message.len()
        );
    }
    let lines = sidecar.lines("l1");
    assert_eq!(lines.last().map(String::as_str), Some("next"));
    let pieces = &lines[..lines.len() - 1];
    assert!(pieces.len() >= 2, "the long line is split");
    assert_eq!(pieces.iter().map(String::len).sum::<usize>(), size);
    assert!(pieces.iter().all(|p| p.bytes().all(|b| b == b'b')));
    assert_no_late_posts(&sidecar, runner);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_utf8_arrives_lossily() {
    let (sidecar, runner) = start_pair(&[]);
    let script = r"printf 'ok\377\376end\n'";
    let body = json!({"commands": [{"args": ["sh", "-c", script], "print": false}]});
    sidecar.call(&runner, "l1", body).await.assert_success();
    let raw = sidecar.raw_messages("l1");
    assert!(!raw.is_empty());
    for message in &raw {
        assert!(
            std::str::from_utf8(message).is_ok(),
            "posts are valid UTF-8: {message:?}"
        );
    }
    let lines = sidecar.lines("l1");
    let line = lines
        .iter()
        .find(|l| l.starts_with("ok"))
        .expect("the line");
    assert!(line.ends_with("end"), "{line:?}");
    assert!(line.contains('\u{FFFD}'), "{line:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_down_sidecar_does_not_fail_the_command_and_lines_go_to_stdout() {
    let (sidecar, runner) = start_pair(&[]);
    // Warm a keep-alive connection first, so taking the sidecar down also breaks that.
    sidecar
        .call(&runner, "warm", json!({"command": "echo warm"}))
        .await
        .assert_success();
    sidecar.set_down(true);
    let body = json!({"commands": [{"command": "echo fell-back-to-stdout"}]});
    let reply = within(
        PATIENCE,
        "a down sidecar",
        sidecar.call(&runner, "down", body),
    )
    .await;
    reply.assert_success();
    assert_eq!(reply.command(0)["result"], "fell-back-to-stdout");
    // The output line itself, not the echoed command line that contains the same word.
    assert!(
        runner.wait_stdout(PATIENCE, |l| l == "[down] fell-back-to-stdout"),
        "stdout: {:?}",
        runner.stdout_lines()
    );
    assert!(sidecar.messages("down").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_sidecar_does_not_fail_the_command() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed = format!("http://{}", unused.local_addr().expect("addr"));
    drop(unused);
    let runner = Runner::builder().backend(&closed).start();
    let sidecar = FakeSidecar::start();
    let body = json!({"commands": [{"command": "echo nobody-listens"}]});
    let reply = sidecar.call(&runner, "gone", body).await;
    reply.assert_success();
    assert!(
        runner.wait_stdout(PATIENCE, |l| l == "[gone] nobody-listens"),
        "stdout: {:?}",
        runner.stdout_lines()
    );
}

/// A sidecar that refuses every post: the first message is tried for about a second (SPEC §5),
/// then it and every later line go to stdout without another try.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_sidecar_is_tried_for_about_a_second_then_lines_go_to_stdout() {
    let (sidecar, runner) = start_pair(&[]);
    sidecar.fail_next(usize::MAX);
    let body = json!({"commands": [{"command": "echo one"}, {"command": "echo two"}]});
    let reply = within(
        PATIENCE,
        "a failing sidecar",
        sidecar.call(&runner, "refused", body),
    )
    .await;
    reply.assert_success();
    let tries = sidecar.post_count("refused");
    let span = sidecar.post_span("refused");
    assert!(
        (2..=10).contains(&tries),
        "the first message is retried a few times, then no more posts: {tries} posts"
    );
    assert_eq!(sidecar.failed_posts(), tries);
    assert!(
        span >= Duration::from_millis(500) && span <= Duration::from_secs(3),
        "about a second between the first and the last try: {span:?}"
    );
    let fallback = [
        "[refused] running command 'echo one'",
        "[refused] one",
        "[refused] running command 'echo two'",
        "[refused] two",
    ];
    assert!(
        runner.wait_stdout(PATIENCE, |l| l == fallback[3]),
        "stdout: {:?}",
        runner.stdout_lines()
    );
    assert_eq!(runner.stdout_lines(), fallback);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_posts_are_retried_without_losing_lines() {
    let (sidecar, runner) = start_pair(&[]);
    sidecar.fail_next(2);
    let body = json!({"commands": [{"command": "seq 1 50", "print": false}]});
    sidecar.call(&runner, "l1", body).await.assert_success();
    assert_eq!(sidecar.failed_posts(), 2);
    assert_eq!(sidecar.lines("l1"), numbers(1, 50));
    assert_no_late_posts(&sidecar, runner);
}

#[tokio::test(flavor = "multi_thread")]
async fn development_action_id_posts_nothing_and_prints_to_stdout() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"commands": [{"command": "echo dev-id-line"}]});
    sidecar
        .call(&runner, "development", body)
        .await
        .assert_success();
    assert!(
        runner.wait_stdout(PATIENCE, |l| l == "dev-id-line"),
        "stdout: {:?}",
        runner.stdout_lines()
    );
    assert_eq!(sidecar.post_count("development"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_mode_setting_posts_nothing_and_prints_to_stdout() {
    let (sidecar, runner) = start_pair(&[("DIREKTIV_DEV_MODE", "1")]);
    let body = json!({"commands": [{"command": "echo dev-mode-line"}]});
    sidecar.call(&runner, "d1", body).await.assert_success();
    assert!(
        runner.wait_stdout(PATIENCE, |l| l == "dev-mode-line"),
        "stdout: {:?}",
        runner.stdout_lines()
    );
    assert_eq!(sidecar.post_count("d1"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn print_logs_the_masked_command_line_first() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({
        "env": {"API_TOKEN": "s3cr3t-token"},
        "mask": ["hidden-word"],
        "commands": [
            {"command": "echo s3cr3t-token hidden-word visible"},
            {"command": "echo second"}
        ]
    });
    let reply = sidecar.call(&runner, "l1", body).await;
    reply.assert_success();
    assert_eq!(
        sidecar.lines("l1"),
        [
            "running command 'echo *** *** visible'",
            "*** *** visible",
            "running command 'echo second'",
            "second"
        ]
    );
    assert_no_late_posts(&sidecar, runner);
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_reach_the_error_message() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({
        "commands": [{"command": "sh -c 'echo leaked-$0 >&2; exit 1' pa55word",
                      "env": {"DB_PASSWORD": "pa55word"}}]
    });
    let reply = sidecar.call(&runner, "l1", body).await;
    reply.assert_error("cmd.exit.1", 500);
    let message = reply.error_message().unwrap_or_default();
    assert!(!message.contains("pa55word"), "{message}");
    assert!(message.contains("***"), "{message}");
    for line in sidecar.lines("l1") {
        assert!(!line.contains("pa55word"), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_requests_never_post_after_their_response() {
    let (sidecar, runner) = start_pair(&[]);
    let (sidecar, runner) = (Arc::new(sidecar), Arc::new(runner));
    sidecar.set_delay(Duration::from_millis(5));
    let script = "i=0; while [ $i -lt 300 ]; do echo \"$DIREKTIV_ACTION_ID $i\"; \
                  echo \"$DIREKTIV_ACTION_ID e$i\" >&2; i=$((i+1)); done";
    let calls: Vec<_> = (0..5)
        .map(|n| {
            let body = json!({"commands": [{"args": ["sh", "-c", script], "print": false}]});
            let (sidecar, runner) = (sidecar.clone(), runner.clone());
            tokio::spawn(async move { sidecar.call(&runner, &format!("c{n}"), body).await })
        })
        .collect();
    for call in calls {
        call.await.expect("call task").assert_success();
    }
    for n in 0..5 {
        let aid = format!("c{n}");
        let lines = sidecar.lines(&aid);
        assert_eq!(lines.len(), 600, "{aid}");
        assert!(
            lines.iter().all(|l| l.starts_with(&format!("{aid} "))),
            "{aid}"
        );
    }
    let runner = Arc::try_unwrap(runner).unwrap_or_else(|_| panic!("the runner is still shared"));
    assert_no_late_posts(&sidecar, runner);
}

/// `direktiv_cmd_log_posts_total` as the runner's /metrics shows it.
async fn log_posts(runner: &Runner) -> u64 {
    let text = runner.get("/metrics").await.text;
    text.lines()
        .find_map(|line| line.strip_prefix("direktiv_cmd_log_posts_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no direktiv_cmd_log_posts_total in:\n{text}"))
}

/// A sidecar that does not answer at all is said once, not per request, and later requests
/// do not each wait through the retries for it; once it answers again, that is said once and
/// lines reach it.
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_sidecar_is_said_once_and_not_retried_per_request() {
    let (sidecar, runner) = start_pair(&[]);
    sidecar.set_down(true);
    let body = |word: &str| json!({"commands": [{"command": format!("echo {word}")}]});
    sidecar
        .call(&runner, "first", body("first"))
        .await
        .assert_success();
    let after_first = log_posts(&runner).await;
    assert!(
        after_first >= 3,
        "the first request retries its first message: {after_first} posts"
    );
    for i in 0..4 {
        let aid = format!("later-{i}");
        sidecar
            .call(&runner, &aid, body(&aid))
            .await
            .assert_success();
        assert!(
            runner.wait_stdout(PATIENCE, |l| l == format!("[{aid}] {aid}")),
            "stdout: {:?}",
            runner.stdout_lines()
        );
    }
    let later = log_posts(&runner).await - after_first;
    assert!(
        later <= 4,
        "each later request tries the silent sidecar once, without retries: {later} posts"
    );
    let said = |needle: &str| {
        runner
            .stderr_lines()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    };
    assert_eq!(
        said("the sidecar does not answer"),
        1,
        "{:?}",
        runner.stderr_lines()
    );
    assert_eq!(said("the log endpoint did not take"), 0);

    sidecar.set_down(false);
    sidecar
        .call(&runner, "back", body("back-again"))
        .await
        .assert_success();
    assert_eq!(
        sidecar.lines("back"),
        ["running command 'echo back-again'", "back-again"]
    );
    assert!(
        runner.wait_stderr(PATIENCE, |l| l.contains("the sidecar answers again")),
        "{:?}",
        runner.stderr_lines()
    );
    assert_eq!(said("the sidecar does not answer"), 1);
}
