//! Requests running at the same time share the container's uid. With `CMD_ISOLATION=off` (or a
//! kernel without Landlock) a command can read another running command's environment through
//! /proc; these tests turn isolation off to do so. Every secret of every request in flight is
//! masked in every request's output, whichever started first, including a value read while the
//! other request ran and printed after it ended: masking is the net under the isolation.

use std::time::Duration;

use serde_json::json;

use super::assert_hidden;
use crate::support::{call_in_background, start_shared, within, Reply, PATIENCE};

/// Requests not isolated from each other, so that one reads another's environment.
const UNISOLATED: &[(&str, &str)] = &[("CMD_ISOLATION", "off")];

/// The secret of the victim request, in its environment while it sleeps.
const VICTIM_SECRET: &str = "victim-pw-881-zq";

/// A request that keeps `VICTIM_SECRET` in its command's environment for `seconds`.
fn victim(seconds: u32) -> serde_json::Value {
    json!({
        "env": {"OTHER_TEAM_PASSWORD": VICTIM_SECRET},
        "commands": [{"command": format!("sleep {seconds}")}]
    })
}

/// Prints what other processes' environments say of OTHER_TEAM, at once or, `later`, after
/// waiting a second for the victim to start, reading, and waiting for it to end.
fn snooper(later: bool) -> serde_json::Value {
    let read = "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep OTHER_TEAM";
    let script = match later {
        false => format!("{read}; {read} >&2; true"),
        true => format!("sleep 1.5; v=$({read}); sleep 3; echo \"$v\"; echo \"$v\" >&2"),
    };
    json!({"commands": [{"command": script, "shell": true, "print": false}]})
}

/// The snooper found the victim's variable, and its logs and response show its value masked.
#[track_caller]
fn assert_snooper_saw_it_masked(reply: &Reply, lines: &[String]) {
    reply.assert_success();
    assert!(
        lines.iter().any(|line| line == "OTHER_TEAM_PASSWORD=***"),
        "the snooper read nothing: {lines:?}"
    );
    assert_hidden(lines.iter().chain([&reply.text]), &[VICTIM_SECRET]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_concurrent_request_s_secret_is_masked_in_another_request() {
    let (sidecar, runner) = start_shared(UNISOLATED);
    let victim = call_in_background(&sidecar, &runner, "victim", victim(4));
    // Once the victim's command runs.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let reply = within(
        PATIENCE,
        "the snooper",
        sidecar.call(&runner, "snooper", snooper(false)),
    )
    .await;
    assert_snooper_saw_it_masked(&reply, &sidecar.lines("snooper"));
    within(PATIENCE, "the victim", victim)
        .await
        .unwrap()
        .assert_success();
}

/// The snooper starts first, reads while the victim runs and prints after the victim has
/// answered: still masked, in its logs and its response.
#[tokio::test(flavor = "multi_thread")]
async fn a_secret_read_while_its_request_ran_is_masked_after_it_ended() {
    let (sidecar, runner) = start_shared(UNISOLATED);
    let snooper = call_in_background(&sidecar, &runner, "snooper-2", snooper(true));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let victim = call_in_background(&sidecar, &runner, "victim-2", victim(2));
    within(PATIENCE, "the victim", victim)
        .await
        .unwrap()
        .assert_success();
    let reply = within(PATIENCE, "the snooper", snooper).await.unwrap();
    assert_snooper_saw_it_masked(&reply, &sidecar.lines("snooper-2"));
}
