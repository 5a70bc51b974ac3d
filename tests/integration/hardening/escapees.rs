//! No process a request started outlives it, even one that left the command's process group
//! (`setsid`, `setpgid`, double-forking daemons): such escapees are found by something they
//! cannot shed and stopped like the group, at the end of every command, on cancel and on
//! timeout, and counted in /metrics. Other requests' processes and the runner are never
//! touched.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{KillLeftovers, PROMPT};
use crate::support::procs::{self, Signal};
use crate::support::request::MARK_VAR;
use crate::support::{
    call_in_background, cgroups, marked, reply_within, sh, skip_without, start_pair, start_shared,
    within, Capability, FakeSidecar, Metrics, Runner, PATIENCE,
};

/// The metric counting escapees the runner stopped.
const ESCAPEES_KILLED: &str = "direktiv_cmd_escaped_processes_killed_total";

fn start() -> (Arc<FakeSidecar>, Arc<Runner>) {
    start_shared(&[("CMD_KILL_GRACE", "1s")])
}

/// Where a test's runner runs.
#[derive(Clone, Copy)]
enum Place {
    /// As this test runs it (as root in CI: a cgroup per request).
    Here,
    /// As Direktiv runs it in an unprivileged pod (`start_in_a_pod`).
    Pod,
}

fn start_in(place: Place) -> (Arc<FakeSidecar>, Arc<Runner>) {
    match place {
        Place::Here => start(),
        Place::Pod => start_in_a_pod(),
    }
}

/// The runner as Direktiv runs it in an unprivileged pod (`RunnerBuilder::in_a_pod`), where
/// a request's processes are found by their mark alone. Its start-up line is checked to say so.
fn start_in_a_pod() -> (Arc<FakeSidecar>, Arc<Runner>) {
    let sidecar = FakeSidecar::start();
    let runner = Runner::builder()
        .in_a_pod()
        .sidecar(&sidecar)
        .env("CMD_KILL_GRACE", "1s")
        .start();
    let line = runner
        .stderr_lines()
        .into_iter()
        .find(|line| line.contains("listening on"))
        .unwrap_or_default();
    assert!(
        line.contains("no writable cgroup for requests"),
        "the runner in a pod should find no cgroup to make: {line}"
    );
    (Arc::new(sidecar), Arc::new(runner))
}

/// Asserts that no live process carries `marker` right now (the response has been sent).
#[track_caller]
fn assert_none_left(marker: &str, case: &str) {
    let left = procs::alive_with_marker(marker);
    assert!(
        left.is_empty(),
        "{case}: still running after the response: {left:?}"
    );
}

/// Commands that leave a process outside their process group, and whether it has surely left
/// the group by the time the command ends, so that the runner must count it as an escapee (a
/// `nohup` child stays in the group and is stopped with it; a bare `setsid -f` returns before
/// its child has left the group, which the group's own stop may then catch).
fn escaping_commands() -> Vec<(&'static str, Value, bool)> {
    // The pause at the end of a shell command lets its escapee leave the group first.
    let settled = |script: &str| sh(&format!("{script}\nsleep 0.3"));
    vec![
        ("setsid -f", json!({"command": "setsid -f sleep 300"}), false),
        ("setsid -f, settled", settled("setsid -f sleep 300"), true),
        ("setsid in a shell", settled("setsid sleep 300 &"), true),
        (
            "sh -c setsid",
            json!({"command": "sh -c 'setsid sleep 300 & sleep 0.3'"}),
            true,
        ),
        (
            "setpgid",
            settled("perl -e 'setpgrp(0, 0); sleep 300' &"),
            true,
        ),
        (
            "double-forked daemon",
            json!({"args": ["perl", "-MPOSIX", "-e",
                            "if (fork) { select(undef, undef, undef, 0.3); exit } \
                             POSIX::setsid(); exit if fork; sleep 300"]}),
            true,
        ),
        ("nohup", sh("nohup sleep 300 >/dev/null 2>&1 &"), false),
        (
            "ignores SIGTERM",
            settled("setsid -f perl -e '$SIG{TERM} = \"IGNORE\"; sleep 300' >/dev/null 2>&1"),
            true,
        ),
        (
            "stopped",
            settled("setsid -f sh -c 'kill -STOP $$; sleep 300' >/dev/null 2>&1"),
            true,
        ),
        (
            "respawns",
            settled("setsid -f sh -c 'while :; do setsid -f sleep 300; sleep 0.05; done' >/dev/null 2>&1"),
            true,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn escapees_are_gone_when_the_response_is_sent() {
    escapees_are_gone_when_the_response_is_sent_in(Place::Here).await;
}

/// The same where only the mark finds them (no cgroup, a pod's own /proc).
#[tokio::test(flavor = "multi_thread")]
async fn escapees_are_gone_when_the_response_is_sent_in_a_pod() {
    skip_without!(Capability::PidNamespaces);
    escapees_are_gone_when_the_response_is_sent_in(Place::Pod).await;
}

async fn escapees_are_gone_when_the_response_is_sent_in(place: Place) {
    let (sidecar, runner) = start_in(place);
    for (i, (case, command, counted)) in escaping_commands().into_iter().enumerate() {
        let marker = procs::marker("escapee");
        let _cleanup = KillLeftovers(marker.clone());
        let before = Metrics::scrape(&runner).await.sum(ESCAPEES_KILLED);
        // The pause lets every escapee get going before the request ends.
        let body = marked(&marker, json!([command, {"command": "sleep 0.5"}]));
        let reply = within(
            PROMPT,
            case,
            sidecar.call(&runner, &format!("esc-{i}"), body),
        )
        .await;
        assert_none_left(&marker, case);
        reply.assert_success();
        if counted {
            let after = Metrics::scrape(&runner).await.sum(ESCAPEES_KILLED);
            assert!(
                after > before,
                "{case}: {ESCAPEES_KILLED} went from {before} to {after}"
            );
        }
    }
}

/// A request's `env` cannot switch the runner's tracking off by setting its variable.
#[tokio::test(flavor = "multi_thread")]
async fn the_request_env_cannot_untrack_an_escapee() {
    the_request_env_cannot_untrack_an_escapee_in(Place::Here).await;
}

/// The same where only the mark finds them: with a cgroup per request, the cgroup would find
/// the escapee whatever its environment says.
#[tokio::test(flavor = "multi_thread")]
async fn the_request_env_cannot_untrack_an_escapee_in_a_pod() {
    skip_without!(Capability::PidNamespaces);
    the_request_env_cannot_untrack_an_escapee_in(Place::Pod).await;
}

async fn the_request_env_cannot_untrack_an_escapee_in(place: Place) {
    let (sidecar, runner) = start_in(place);
    let marker = procs::marker("override");
    let _cleanup = KillLeftovers(marker.clone());
    let body = json!({
        "env": {MARK_VAR: &marker, "DIREKTIV_CMD_REQUEST": "mine"},
        "commands": [{"command": "setsid -f sleep 300", "env": {"DIREKTIV_CMD_REQUEST": ""}},
                     {"command": "sleep 0.5"}]
    });
    let reply = sidecar.call(&runner, "override", body).await;
    assert_none_left(&marker, "override");
    reply.assert_success();
}

/// An escapee of one command is gone before the next command starts.
#[tokio::test(flavor = "multi_thread")]
async fn escapees_are_stopped_at_the_end_of_each_command() {
    escapees_are_stopped_at_the_end_of_each_command_in(Place::Here).await;
}

/// The same where only the mark finds them.
#[tokio::test(flavor = "multi_thread")]
async fn escapees_are_stopped_at_the_end_of_each_command_in_a_pod() {
    skip_without!(Capability::PidNamespaces);
    escapees_are_stopped_at_the_end_of_each_command_in(Place::Pod).await;
}

async fn escapees_are_stopped_at_the_end_of_each_command_in(place: Place) {
    let (sidecar, runner) = start_in(place);
    let marker = procs::marker("per-command");
    let _cleanup = KillLeftovers(marker.clone());
    let leave = sh(
        "setsid -f sh -c 'echo $$ > esc.pid; exec sleep 300' >/dev/null 2>&1; \
                    while [ ! -s esc.pid ]; do sleep 0.05; done",
    );
    let check = sh("p=$(cat esc.pid); \
                    if [ -e /proc/$p ] && ! grep -q zombie /proc/$p/status; then echo alive; else echo gone; fi");
    let body = marked(&marker, json!([leave, check]));
    let reply = sidecar.call(&runner, "per-command", body).await;
    reply.assert_success();
    assert_eq!(reply.command(1)["result"], "gone", "{reply:?}");
}

/// Waits until `count` live `sleep` processes carry `marker`.
fn await_sleepers(marker: &str, count: usize) {
    let found = procs::wait_for(PATIENCE, || {
        let sleepers = procs::with_marker(marker)
            .into_iter()
            .filter(|p| p.comm == "sleep" && !p.is_zombie())
            .count();
        (sleepers >= count).then_some(())
    });
    assert!(found.is_some(), "the request's sleeps never started");
}

#[tokio::test(flavor = "multi_thread")]
async fn escapees_are_gone_after_cancel_and_after_timeout() {
    escapees_are_gone_after_cancel_and_after_timeout_in(Place::Here).await;
}

/// The same where only the mark finds them.
#[tokio::test(flavor = "multi_thread")]
async fn escapees_are_gone_after_cancel_and_after_timeout_in_a_pod() {
    skip_without!(Capability::PidNamespaces);
    escapees_are_gone_after_cancel_and_after_timeout_in(Place::Pod).await;
}

async fn escapees_are_gone_after_cancel_and_after_timeout_in(place: Place) {
    let (sidecar, runner) = start_in(place);
    let leave = "setsid -f sleep 300 >/dev/null 2>&1; sleep 300";

    let marker = procs::marker("cancelled");
    let _cleanup = KillLeftovers(marker.clone());
    let call = {
        let (sidecar, runner) = (sidecar.clone(), runner.clone());
        let body = marked(&marker, json!([sh(leave)]));
        tokio::spawn(async move { sidecar.call(&runner, "esc-cancel", body).await })
    };
    await_sleepers(&marker, 2);
    assert_eq!(sidecar.cancel(&runner, "esc-cancel").await, 200);
    let reply = within(PROMPT, "cancelled", call).await.unwrap();
    assert_none_left(&marker, "cancelled");
    reply.assert_error("cmd.cancelled", 500);

    let marker = procs::marker("timed-out");
    let _cleanup = KillLeftovers(marker.clone());
    let body = marked(
        &marker,
        json!([{"command": leave, "shell": true, "timeout": 2}]),
    );
    let reply = within(
        PROMPT,
        "timed out",
        sidecar.call(&runner, "esc-timeout", body),
    )
    .await;
    assert_none_left(&marker, "timed out");
    reply.assert_error("cmd.timeout", 500);
}

/// While one request's escapees are stopped, a concurrent request and a process outside the
/// runner that carries the same kind of variable run on untouched. The bystander starts while
/// the sweeping request runs, so nothing but the mark tells its processes apart.
#[tokio::test(flavor = "multi_thread")]
async fn the_sweep_spares_other_requests_and_outsiders() {
    the_sweep_spares_other_requests_and_outsiders_in(Place::Here).await;
}

/// The same in a pod, where the looks through /proc pass over the other requests' commands.
#[tokio::test(flavor = "multi_thread")]
async fn the_sweep_spares_other_requests_and_outsiders_in_a_pod() {
    skip_without!(Capability::PidNamespaces);
    the_sweep_spares_other_requests_and_outsiders_in(Place::Pod).await;
}

async fn the_sweep_spares_other_requests_and_outsiders_in(place: Place) {
    let (sidecar, runner) = start_in(place);
    let outsider_mark = procs::marker("outsider");
    let _outsider_cleanup = KillLeftovers(outsider_mark.clone());
    let mut outsider = std::process::Command::new("sleep")
        .arg("60")
        .env(MARK_VAR, &outsider_mark)
        .env("DIREKTIV_CMD_REQUEST", "not-a-request-of-this-runner")
        .spawn()
        .unwrap();
    // Each request waits for a file of its own that the test makes.
    let gates = tempfile::tempdir().unwrap();
    let gated = |name: &str, marker: &str, script: &str| {
        let gate = gates.path().join(name).display().to_string();
        let wait = format!("{script}while [ ! -e '{gate}' ]; do sleep 0.05; done");
        marked(marker, json!([sh(&wait), {"command": "echo survived"}]))
    };

    // The sweeper leaves an escapee, then waits.
    let marker = procs::marker("sweeper");
    let _cleanup = KillLeftovers(marker.clone());
    let sweeper = call_in_background(
        &sidecar,
        &runner,
        "sweeper",
        gated("sweep", &marker, "setsid -f sleep 300 >/dev/null 2>&1\n"),
    );
    await_sleepers(&marker, 1);

    let other_mark = procs::marker("other");
    let _other_cleanup = KillLeftovers(other_mark.clone());
    let other = call_in_background(&sidecar, &runner, "bystander", gated("go", &other_mark, ""));
    let waiting = procs::wait_for(PATIENCE, || {
        let shells = procs::alive_with_marker(&other_mark);
        shells.into_iter().find(|p| p.comm == "sh").map(|p| p.pid)
    })
    .expect("the bystander's shell never started");

    // The sweeper's command ends: its escapee is stopped, the bystander is not touched.
    std::fs::write(gates.path().join("sweep"), "").unwrap();
    let reply = reply_within(sweeper, PROMPT).await;
    assert_none_left(&marker, "sweeper");
    reply.assert_success();
    assert!(
        procs::alive(waiting) && !other.is_finished(),
        "the sweep must leave the bystander's waiting shell alone"
    );

    std::fs::write(gates.path().join("go"), "").unwrap();
    let other = reply_within(other, PROMPT).await;
    other.assert_success();
    assert_eq!(other.command(1)["result"], "survived");
    assert!(
        outsider.try_wait().unwrap().is_none(),
        "a process outside the runner was killed"
    );
    let _ = outsider.kill();
    let _ = outsider.wait();
    assert_eq!(runner.get("/healthz").await.status, 200);
}

/// The request cgroups runner `pid` has under `dir` now.
fn cgroups_of(dir: &std::path::Path, pid: u32) -> Vec<std::path::PathBuf> {
    let prefix = format!("direktiv-cmd-{pid}-");
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Request cgroups are kept for reuse between requests, never more than a few, never one
/// with a process in it, and none is left once the runner has exited.
#[tokio::test(flavor = "multi_thread")]
async fn request_cgroups_are_reused_and_removed_at_exit() {
    skip_without!(Capability::Cgroups);
    let dir = cgroups::own_dir().expect("the cgroup the runner makes its cgroups in");
    let (sidecar, mut runner) = start_pair(&[("CMD_KILL_GRACE", "1s")]);
    for round in 0..40 {
        let body = json!({"commands": [{"command": "true"}, sh("sleep 0.01 &")]});
        sidecar
            .call(&runner, &format!("cgroup-reuse-{round}"), body)
            .await
            .assert_success();
    }
    // Each request gave its cgroup back emptied (its processes are gone when its response is
    // sent), so the next one took it again: not one cgroup per request, and none with a
    // process in it.
    let kept = cgroups_of(&dir, runner.pid());
    let populated: Vec<_> = kept
        .iter()
        .filter(|cgroup| {
            !std::fs::read_to_string(cgroup.join("cgroup.events"))
                .unwrap_or_default()
                .contains("populated 0")
        })
        .collect();
    assert!(
        populated.is_empty(),
        "kept cgroups with processes: {populated:?}"
    );
    assert!(
        (1..=16).contains(&kept.len()),
        "40 requests left {} cgroups: {kept:?}",
        kept.len()
    );
    runner.signal(Signal::TERM);
    assert!(runner.wait_exit(PATIENCE).is_some(), "the runner exits");
    let left = cgroups_of(&dir, runner.pid());
    assert!(left.is_empty(), "cgroups left after exit: {left:?}");
}

/// Where the runner can make a cgroup per request, a process that clears its environment
/// (and so sheds the mark) is stopped all the same.
#[tokio::test(flavor = "multi_thread")]
async fn a_cleared_environment_does_not_escape_where_cgroups_can_be_made() {
    // Without request cgroups the runner tracks by the mark alone (docs/guarantees.md).
    skip_without!(Capability::Cgroups);
    let (sidecar, runner) = start();
    let marker = procs::marker("cleared-env");
    let _cleanup = KillLeftovers(marker.clone());
    let script = format!(
        "env -i /usr/bin/setsid -f /bin/sh -c 'while :; do sleep 1; done' {marker} \
         >/dev/null 2>&1\nsleep 0.3"
    );
    let body = json!({"commands": [sh(&script), {"command": "sleep 0.3"}]});
    let reply = sidecar.call(&runner, "cleared-env", body).await;
    assert_none_left(&marker, "env -i");
    reply.assert_success();
}

/// Where the runner can make a cgroup per request, killing an escapee through it
/// (`cgroup.kill`, for one that ignores SIGTERM) leaves the cgroup usable: the request's next
/// command runs, and so do later requests, which may be given the same cgroup. (Linux kills
/// every process later *created* in a cgroup that took a `cgroup.kill`.)
#[tokio::test(flavor = "multi_thread")]
async fn commands_after_a_cgroup_kill_still_run() {
    skip_without!(Capability::Cgroups);
    let (sidecar, runner) = start_shared(&[("CMD_KILL_GRACE", "100ms")]);
    let marker = procs::marker("after-kill");
    let _cleanup = KillLeftovers(marker.clone());
    let stubborn = sh(&format!(
        "setsid -f perl -e '$SIG{{TERM}} = \"IGNORE\"; sleep 300' {marker} >/dev/null 2>&1\n\
         sleep 0.3"
    ));
    let body = json!({"commands": [stubborn, {"command": "echo second"}]});
    let reply = sidecar.call(&runner, "after-kill", body).await;
    assert_none_left(&marker, "a process that ignores SIGTERM");
    reply.assert_success();
    assert_eq!(reply.command(1)["stdout"], "second\n", "{reply:?}");
    for round in 0..4 {
        let body = json!({"commands": [{"command": "echo again"}]});
        let reply = sidecar
            .call(&runner, &format!("after-kill-{round}"), body)
            .await;
        reply.assert_success();
    }
}
