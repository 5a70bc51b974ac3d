//! Concurrent requests are independent (README, "Lifecycle"): logs, files, environment,
//! results and cancellation never cross between action ids. Direktiv's sidecar sends up to 10
//! requests at once; these tests send 12.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{start_pair, CallOptions, FakeSidecar, Reply, TempDirHeader, PATIENCE};
use serde_json::{json, Value};

/// Concurrent requests in the main test.
const REQUESTS: usize = 12;

/// The request that is cancelled while the others run.
const VICTIM: usize = 5;

fn aid(i: usize) -> String {
    format!("iso-{i}")
}

/// Request `i`: its own file, env value and output tokens, a pause so that all requests
/// overlap, and an `out/` file. Tokens end in `-` so `tok-1-` never matches `tok-11-`.
fn request(i: usize) -> Value {
    // The victim's pause may fail without ending the request (`continue`), yet a cancel must
    // still end the whole request.
    let pause = if i == VICTIM {
        json!({"command": "sleep 600", "continue": true})
    } else {
        json!({"command": "sleep 3"})
    };
    json!({
        "files": [{"name": format!("own-{i}.txt"), "data": format!("file-{i}-")}],
        "env": {"ISO_VALUE": format!("envval-{i}-")},
        "commands": [
            {"command": format!("cat own-{i}.txt")},
            {"command": format!("echo tok-{i}-a")},
            pause,
            // The command's own DIREKTIV_RESULT file is in its temp dir where requests are
            // isolated by Landlock; nothing else but the request's own files may be there.
            {"command": "ls -A -I .direktiv-result-*"},
            {"command": "sh -c 'env | grep ^ISO_ | sort'"},
            {"command": format!("sh -c 'echo tok-{i}-b >&2; echo done-{i}- > out/instance/marker'")}
        ]
    })
}

/// The exact log stream of a request that ran to the end.
fn expected_lines(i: usize) -> Vec<String> {
    [
        format!("running command 'cat own-{i}.txt'"),
        format!("file-{i}-"),
        format!("running command 'echo tok-{i}-a'"),
        format!("tok-{i}-a"),
        "running command 'sleep 3'".into(),
        "running command 'ls -A -I .direktiv-result-*'".into(),
        "out".into(),
        format!("own-{i}.txt"),
        "running command \"sh -c 'env | grep ^ISO_ | sort'\"".into(),
        format!("ISO_VALUE=envval-{i}-"),
        format!(
            "running command \"sh -c 'echo tok-{i}-b >&2; echo done-{i}- > out/instance/marker'\""
        ),
        format!("tok-{i}-b"),
    ]
    .into()
}

/// Even requests get the sidecar's per-action dir, odd ones a private temp dir.
fn options(i: usize) -> CallOptions {
    let temp_dir = if i.is_multiple_of(2) {
        TempDirHeader::Sent
    } else {
        TempDirHeader::Omitted
    };
    CallOptions {
        temp_dir,
        ..CallOptions::default()
    }
}

/// Waits until every action has logged its first token, i.e. all requests run at once.
async fn await_all_started(sidecar: &FakeSidecar) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pending: Vec<usize> = (0..REQUESTS)
            .filter(|&i| !sidecar.lines(&aid(i)).contains(&format!("tok-{i}-a")))
            .collect();
        if pending.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "requests {pending:?} never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that request `i` saw only its own world.
#[track_caller]
fn assert_own_world(i: usize, reply: &Reply, lines: &[String]) {
    reply.assert_success();
    let results = reply.results();
    assert_eq!(
        results,
        [
            json!(format!("file-{i}-")),
            json!(format!("tok-{i}-a")),
            json!(""),
            json!(format!("out\nown-{i}.txt")),
            json!(format!("ISO_VALUE=envval-{i}-")),
            json!(""),
        ],
        "request {i}"
    );
    assert_eq!(lines, expected_lines(i), "log stream of request {i}");
    let expected_vars: BTreeMap<String, Vec<u8>> = if i.is_multiple_of(2) {
        [(
            "instance/marker".into(),
            format!("done-{i}-\n").into_bytes(),
        )]
        .into()
    } else {
        BTreeMap::new()
    };
    assert_eq!(reply.vars, expected_vars, "out/ variables of request {i}");
}

/// Asserts the log stream of the cancelled request: its lines up to the long pause, the line
/// that says it was cancelled, and nothing of the commands after it.
#[track_caller]
fn assert_cancelled_stream(i: usize, lines: &[String]) {
    let mut expected = expected_lines(i)[..4].to_vec();
    expected.push("running command 'sleep 600'".into());
    expected.push("command 'sleep 600' was cancelled: cancel request (DELETE /) received".into());
    assert_eq!(
        lines, expected,
        "request {i}: its lines up to the pause, then the cancellation"
    );
}

/// Asserts that no log line of request `i` carries another request's token.
#[track_caller]
fn assert_no_foreign_tokens(i: usize, lines: &[String]) {
    for j in (0..REQUESTS).filter(|&j| j != i) {
        for token in [
            format!("tok-{j}-"),
            format!("file-{j}-"),
            format!("own-{j}."),
            format!("envval-{j}-"),
            format!("done-{j}-"),
        ] {
            assert!(
                !lines.iter().any(|l| l.contains(&token)),
                "request {i} logged {token:?} of request {j}: {lines:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_requests_do_not_cross_and_cancel_ends_only_its_own() {
    let (sidecar, runner) = start_pair(&[("CMD_MAX_INFLIGHT", "16")]);
    let (sidecar, runner) = (Arc::new(sidecar), Arc::new(runner));
    let calls: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let (sidecar, runner) = (sidecar.clone(), runner.clone());
            tokio::spawn(async move {
                sidecar
                    .call_with(&runner, &aid(i), request(i), &options(i))
                    .await
            })
        })
        .collect();
    await_all_started(&sidecar).await;

    assert_eq!(sidecar.cancel(&runner, "iso-unknown").await, 200);
    assert_eq!(sidecar.cancel(&runner, &aid(VICTIM)).await, 200);

    let mut replies = Vec::new();
    for call in calls {
        let reply = tokio::time::timeout(Duration::from_secs(180), call)
            .await
            .expect("a request hung")
            .expect("the call task panicked");
        replies.push(reply);
    }
    for (i, reply) in replies.iter().enumerate() {
        let lines = sidecar.lines(&aid(i));
        assert_no_foreign_tokens(i, &lines);
        if i == VICTIM {
            // Answered long before its 600 s sleep would end (the 180 s bound above).
            reply.assert_error("cmd.cancelled", 500);
            assert_cancelled_stream(i, &lines);
        } else {
            assert_own_world(i, reply, &lines);
        }
    }
    assert!(
        sidecar.rejected().is_empty(),
        "late logs: {:?}",
        sidecar.rejected()
    );
}

/// The same action id twice at once: the second is `cmd.busy` with 409, the first is unharmed.
#[tokio::test(flavor = "multi_thread")]
async fn duplicate_action_id_is_refused_while_running() {
    let (sidecar, runner) = start_pair(&[]);
    let (sidecar, runner) = (Arc::new(sidecar), Arc::new(runner));
    let body = json!({"commands": [{"command": "sleep 5"}, {"command": "echo first"}]});
    let first = {
        let (sidecar, runner) = (sidecar.clone(), runner.clone());
        tokio::spawn(async move { sidecar.call(&runner, "dup", body).await })
    };
    let deadline = Instant::now() + PATIENCE;
    while !sidecar
        .lines("dup")
        .iter()
        .any(|l| l == "running command 'sleep 5'")
    {
        assert!(Instant::now() < deadline, "the first request never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = runner
        .post(
            json!({"commands": [{"command": "echo second"}]}),
            &[("Direktiv-ActionID", "dup")],
        )
        .await;
    second.assert_error("cmd.busy", 409);
    let first = first.await.expect("the first call");
    first.assert_success();
    assert_eq!(first.command(1)["result"], "first");
    assert!(!sidecar.lines("dup").iter().any(|l| l.contains("second")));
}

/// A request's env reaches only its own commands, never the runner or a later request.
#[tokio::test(flavor = "multi_thread")]
async fn env_of_one_request_does_not_reach_the_next() {
    let (sidecar, runner) = start_pair(&[]);
    let first = json!({
        "env": {"LEAKY_REQUEST": "request-value"},
        "commands": [{"command": "printenv LEAKY_REQUEST", "env": {"LEAKY_COMMAND": "x1"}},
                     {"command": "printenv LEAKY_COMMAND", "continue": true}]
    });
    let reply = sidecar.call(&runner, "env-1", first).await;
    reply.assert_success();
    assert_eq!(reply.command(0)["result"], "request-value");
    assert_eq!(
        reply.command(1)["success"],
        false,
        "command env leaked to the next command"
    );

    let second = json!({"commands": [
        {"command": "sh -c 'env | grep ^LEAKY_ || true'"}
    ]});
    let reply = sidecar.call(&runner, "env-2", second).await;
    reply.assert_success();
    assert_eq!(
        reply.command(0)["result"],
        "",
        "env leaked into a later request"
    );
}
