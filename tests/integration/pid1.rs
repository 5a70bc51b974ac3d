//! The runner as PID 1 of its own pid namespace (`unshare --pid --fork --mount-proc`), the way
//! it runs as a container's entrypoint: it reaps orphaned zombies, forwards SIGTERM/SIGINT to
//! the server, exits with the server's status, and never steals its commands' exit statuses.
//!
//! These tests need permission to create pid and mount namespaces (root, as in CI). Without it
//! they fail under `CI=true` and are skipped visibly elsewhere (`crate::support::environment`).

use std::sync::Arc;

use crate::support::cgroups::CgroupSandbox;
use crate::support::procs::{self, send_signal, Signal};
use crate::support::{binary, skip_without, Capability, FakeSidecar, Runner, PATIENCE};
use serde_json::json;

/// The runner as PID 1 of a new pid namespace, pointed at `sidecar`. `--kill-child` ends the
/// namespace if the test's handle (unshare) goes away first.
fn start_as_pid1(sidecar: &FakeSidecar, env: &[(&str, &str)]) -> Runner {
    AS_PID1
        .into_iter()
        .fold(Runner::builder().program("unshare"), |builder, arg| {
            builder.arg(arg)
        })
        .arg(binary())
        .sidecar(sidecar)
        .envs(env)
        .start()
}

/// `unshare`'s arguments before the binary, for `start_as_pid1`.
const AS_PID1: [&str; 3] = ["--pid", "--mount-proc", "--kill-child"];

/// Host pids of the init (the runner as PID 1) and of the server it forked.
struct Tree {
    init: u32,
    server: u32,
}

/// Finds the init below `unshare` and the server below the init.
#[track_caller]
fn tree(runner: &Runner) -> Tree {
    let child_of = |parent: u32| {
        procs::wait_for(PATIENCE, || {
            procs::all()
                .into_iter()
                .find(|p| p.ppid == parent && !p.is_zombie())
                .map(|p| p.pid)
        })
    };
    let init = child_of(runner.pid()).expect("unshare has the init as child");
    let server = child_of(init).expect("the init has the server as child");
    Tree { init, server }
}

/// The pid of `pid` inside its own namespace (last `NSpid` entry of /proc/<pid>/status).
fn namespace_pid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

fn signal(pid: u32, signal: Signal) {
    send_signal(pid, signal).expect("send the signal");
}

/// A command that leaves an orphan: a child in a session of its own (out of reach of the
/// runner's process-group kill) that outlives the command by `linger` seconds, then exits.
fn orphan_maker(linger: &str, then: &str) -> serde_json::Value {
    json!({
        "command": format!("setsid sh -c 'sleep {linger}' </dev/null >/dev/null 2>&1 & {then}"),
        "shell": true,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn forks_the_server_and_stays_behind_as_pid_1() {
    skip_without!(Capability::PidNamespaces);
    let sidecar = FakeSidecar::start();
    let runner = start_as_pid1(&sidecar, &[]);
    let Tree { init, server } = tree(&runner);
    assert_eq!(
        namespace_pid(init),
        Some(1),
        "the runner is PID 1 of the namespace"
    );
    assert_ne!(namespace_pid(server), Some(1));
    let init_children: Vec<_> = procs::all()
        .into_iter()
        .filter(|p| p.ppid == init)
        .collect();
    assert_eq!(
        init_children.len(),
        1,
        "the server is the init's only child: {init_children:?}"
    );
    sidecar
        .call(&runner, "pid1-echo", json!({"command": "echo hi"}))
        .await
        .assert_success();
    // The start-up line says so.
    let started: Vec<String> = runner
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains("listening on"))
        .collect();
    assert_eq!(started.len(), 1, "{started:?}");
    assert!(
        started[0].ends_with(
            "; pid 1: yes (a tiny init reaps orphans and forwards signals to this server)"
        ),
        "{started:?}"
    );
    signal(init, Signal::TERM);
}

/// An orphan (a process in a session of its own whose parent exited) is reparented to the init;
/// the runner stops it when its command ends (docs/guarantees.md), and the init reaps it.
#[tokio::test(flavor = "multi_thread")]
async fn orphaned_zombies_are_reaped() {
    skip_without!(Capability::PidNamespaces);
    let sidecar = FakeSidecar::start();
    let runner = start_as_pid1(&sidecar, &[("CMD_KILL_GRACE", "1s")]);
    let Tree { init, .. } = tree(&runner);
    let marker = procs::marker("orphan");
    // The subshell exits at once, so the orphan's parent is the init while the command runs.
    let script =
        "(setsid sh -c 'echo $$ > orphan.pid; exec sleep 30' </dev/null >/dev/null 2>&1 &); \
                  while [ ! -s orphan.pid ]; do sleep 0.05; done; sleep 0.2; \
                  cut -d' ' -f4 /proc/$(cat orphan.pid)/stat";
    let body =
        json!({"env": {"PID1_MARK": &marker}, "commands": [{"command": script, "shell": true}]});
    for round in 0..5 {
        let reply = sidecar
            .call(&runner, &format!("orphan-{round}"), body.clone())
            .await;
        reply.assert_success();
        assert_eq!(
            reply.command(0)["result"],
            json!(1),
            "the orphan is the init's child"
        );
        let left = procs::with_marker(&marker);
        assert!(left.is_empty(), "orphans outlived their request: {left:?}");
    }
    // Killed, their zombies went to the init, which collected them.
    let zombies = procs::wait_no_zombies(runner.pid(), PATIENCE);
    assert!(
        zombies.is_empty(),
        "zombies left in the namespace: {zombies:?}"
    );
    assert!(procs::alive(init));
    signal(init, Signal::TERM);
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_stay_correct_under_a_load_of_orphans() {
    skip_without!(Capability::PidNamespaces);
    let sidecar = Arc::new(FakeSidecar::start());
    let runner = Arc::new(start_as_pid1(&sidecar, &[]));
    let Tree { init, .. } = tree(&runner);
    let workers: Vec<_> = (0..6)
        .map(|worker| {
            let (sidecar, runner) = (sidecar.clone(), runner.clone());
            tokio::spawn(async move {
                for round in 0..8 {
                    let aid = format!("load-{worker}-{round}");
                    let failing = json!({"commands": [orphan_maker("0.3", "exit 3")]});
                    let reply = sidecar.call(&runner, &aid, failing).await;
                    reply.assert_error("cmd.exit.3", 500);
                    let ok = json!({"commands": [orphan_maker("0.2", "echo fine")]});
                    let reply = sidecar.call(&runner, &format!("{aid}-ok"), ok).await;
                    reply.assert_success();
                    assert_eq!(reply.command(0)["exit_code"], 0);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("a worker failed");
    }
    let zombies = procs::wait_no_zombies(runner.pid(), PATIENCE);
    assert!(
        zombies.is_empty(),
        "zombies left in the namespace: {zombies:?}"
    );
    signal(init, Signal::TERM);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_to_the_init_drains_the_server_and_exits_0() {
    skip_without!(Capability::PidNamespaces);
    let sidecar = Arc::new(FakeSidecar::start());
    let runner = Arc::new(start_as_pid1(&sidecar, &[("CMD_GRACE", "20s")]));
    let Tree { init, server } = tree(&runner);
    let marker = procs::marker("pid1-drain");
    let call = {
        let (sidecar, runner, marker) = (sidecar.clone(), runner.clone(), marker.clone());
        tokio::spawn(async move {
            let body = json!({"env": {"PID1_MARK": marker},
                              "commands": [{"command": "sleep 2; echo drained", "shell": true}]});
            sidecar.call(&runner, "pid1-drain", body).await
        })
    };
    procs::wait_for(PATIENCE, || {
        (!procs::with_marker(&marker).is_empty()).then_some(())
    })
    .expect("the command runs");
    signal(init, Signal::TERM);
    let reply = tokio::time::timeout(PATIENCE, call)
        .await
        .expect("the in-flight request ends")
        .expect("the call task");
    reply.assert_success();
    assert_eq!(reply.command(0)["result"], "drained");

    let mut runner = Arc::try_unwrap(runner).unwrap_or_else(|_| panic!("runner still shared"));
    let status = runner.wait_exit(PATIENCE).expect("the namespace ends");
    assert_eq!(
        status.code(),
        Some(0),
        "server drained and exited 0, init passed it on"
    );
    assert!(!procs::alive(server) && !procs::alive(init));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_is_forwarded_to_the_server() {
    skip_without!(Capability::PidNamespaces);
    let sidecar = FakeSidecar::start();
    let mut runner = start_as_pid1(&sidecar, &[]);
    let Tree { init, .. } = tree(&runner);
    signal(init, Signal::INT);
    let status = runner
        .wait_exit(PATIENCE)
        .expect("SIGINT ends the server, then the init");
    // The server drains on SIGINT as on SIGTERM and exits 0, which the init passes on; an init
    // that kept SIGINT to itself (or died of it, 130) would not end with 0.
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_init_exits_with_the_servers_status() {
    skip_without!(Capability::PidNamespaces);
    let sidecar = FakeSidecar::start();
    // A server killed outright removes nothing it made: where it makes request cgroups, it
    // makes them in a sandbox of the test's, which goes with the test.
    let sandbox = CgroupSandbox::new();
    let mut runner = match &sandbox {
        Some(sandbox) => {
            let binary = binary();
            let args: Vec<&str> = AS_PID1
                .into_iter()
                .chain([binary.to_str().expect("a UTF-8 binary path")])
                .collect();
            sandbox
                .runner(Some(("unshare", &args)))
                .sidecar(&sidecar)
                .start()
        }
        None => start_as_pid1(&sidecar, &[]),
    };
    let Tree { server, .. } = tree(&runner);
    signal(server, Signal::KILL);
    let status = runner
        .wait_exit(PATIENCE)
        .expect("the init exits when the server dies");
    assert_eq!(
        status.code(),
        Some(128 + 9),
        "128 + SIGKILL, as a shell reports it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_start_with_no_signal_blocked() {
    skip_without!(Capability::PidNamespaces);
    // The init blocks the signals it waits for; the server must undo that before running
    // anything, or commands would inherit a mask that makes SIGTERM from a cancel pend forever.
    let sidecar = FakeSidecar::start();
    let runner = start_as_pid1(&sidecar, &[]);
    let Tree { init, .. } = tree(&runner);
    let reply = sidecar
        .call(
            &runner,
            "pid1-mask",
            json!({"command": "grep SigBlk /proc/self/status"}),
        )
        .await;
    reply.assert_success();
    let mask = reply.command(0)["result"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        mask.starts_with("SigBlk:") && mask.trim_end().ends_with("0000000000000000"),
        "a command's blocked-signal mask must be empty: {mask:?}"
    );
    signal(init, Signal::TERM);
}

#[test]
fn run_mode_exit_status_passes_through_the_init() {
    skip_without!(Capability::PidNamespaces);
    let run = |request: &str| {
        Runner::builder()
            .program("unshare")
            .arg("--pid")
            .arg("--mount-proc")
            .arg("--kill-child")
            .arg(binary())
            .arg("run")
            .arg("-")
            .env("DIREKTIV_DEV_MODE", "1")
            .run_to_exit(request.as_bytes(), PATIENCE)
    };
    let ok = run(r#"{"command": "echo fine"}"#);
    assert_eq!(ok.status.and_then(|s| s.code()), Some(0), "{ok:?}");
    let failed = run(r#"{"command": "sh -c 'exit 3'"}"#);
    // `run` exits with the failing command's status (README, "direktiv-cmd run"), and the
    // init passes it on unchanged.
    assert_eq!(failed.status.and_then(|s| s.code()), Some(3), "{failed:?}");
    let body: serde_json::Value = serde_json::from_str(&failed.stdout).expect("JSON on stdout");
    assert_eq!(body["errorCode"], "cmd.exit.3", "{failed:?}");
}

/// The tests' handle stops a runner behind `unshare --fork`, which blocks SIGTERM while it
/// waits, through the runner's init: the server shuts down as in a container, and removes
/// what it made, instead of being killed with the namespace three seconds later.
#[tokio::test(flavor = "multi_thread")]
async fn the_handle_stops_the_server_behind_unshare_with_a_shutdown() {
    skip_without!(Capability::PidNamespaces);
    let sidecar = FakeSidecar::start();
    let runner = start_as_pid1(&sidecar, &[]);
    let stopped = runner.stop();
    assert!(
        stopped
            .stderr
            .iter()
            .any(|line| line.contains("drained; exiting")),
        "the server never shut down: {:?}",
        stopped.stderr
    );
}
