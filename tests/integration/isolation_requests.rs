//! Concurrent requests are isolated from each other (README, "Guarantees"): their commands share
//! the container's uid, yet one request's commands cannot read another's environment through
//! /proc, signal its processes or read its temp dir, and no command can read the runner's own
//! environment or memory. With `CMD_ISOLATION=off` every one of those leaks is there (the
//! control case, which shows the snooper below would see them); with the default they are
//! gone, for a root runner and for a runner of an ordinary uid. Ordinary work inside a domain
//! keeps working, and where the kernel has no Landlock `CMD_ISOLATION=require` runs requests
//! one at a time.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{
    binary, call_in_background, skip_without, within, CallOptions, Capability, FakeSidecar,
    Metrics, Runner, TempDirHeader, PATIENCE,
};

/// The victim's secret, in its command's environment while it sleeps (and the test's pause
/// after it, so that a snooper finds only its own test's victim: the tests run side by side).
const VICTIM_SECRET: &str = "victim-pw-881";
/// The content of the victim's input file, with the pause after it (not a secret: shown
/// plainly if read).
const VICTIM_FILE: &str = "victim-file-881";
/// What the victim leaves in its `DIREKTIV_RESULT` file, with the pause after it.
const VICTIM_RESULT: &str = "victim-result-881";
/// In the runner's own environment only.
const RUNNER_CANARY: &str = "RUNNER_CANARY_7731";

/// A request that keeps `VICTIM_SECRET` in its environment, `VICTIM_FILE` in its temp dir,
/// `VICTIM_RESULT` in its result file and an abstract unix socket listening while its
/// `sleep <pause>` runs (a pause of its own per test:
/// the snooper kills by name).
fn victim(pause: &str) -> Value {
    json!({
        "env": {"OTHER_TEAM_PASSWORD": format!("{VICTIM_SECRET}-{pause}")},
        "files": [{"name": "secret.txt", "data": format!("{VICTIM_FILE}-{pause}")}],
        "commands": [{"command": format!(
            r#"echo {VICTIM_RESULT}-{pause} > "$DIREKTIV_RESULT"; /usr/bin/python3 -c 'import socket, time; s = socket.socket(socket.AF_UNIX); s.bind("\x00iso-{pause}"); s.listen(); open("listening", "w").close(); time.sleep(60)' & while [ ! -e listening ]; do sleep 0.01; done; sleep {pause}"#
        ), "shell": true}]
    })
}

/// Tries each leak and prints a marker line for each that worked: the victim's environment,
/// its input file (in the shared TempDir root beside its own, or among the private temp
/// dirs), its result file (wherever result files are made: a folder a command of the same uid
/// can make listable with chmod), the runner's environment and memory map, connecting to the victim's abstract unix
/// socket, and killing the victim's command.
fn snooper(runner_pid: u32, pause: &str) -> Value {
    let script = format!(
        r#"cat /proc/[0-9]*/environ 2>/dev/null | tr "\0" "\n" | grep -a -q -F {VICTIM_SECRET}-{pause} && echo LEAK-ENVIRON
cat "$DIREKTIV_TEMPDIR"/../*/secret.txt /tmp/direktiv-cmd-*/secret.txt /var/tmp/direktiv-cmd-*/*/secret.txt 2>/dev/null | grep -q -F {VICTIM_FILE}-{pause} && echo LEAK-FILES
for d in /tmp/direktiv-cmd-results-* "$DIREKTIV_TEMPDIR"/../* /tmp/direktiv-cmd-* /var/tmp/direktiv-cmd-*/*; do chmod u+rwx "$d" 2>/dev/null; cat "$d"/.direktiv-result-* 2>/dev/null; done | grep -q -F {VICTIM_RESULT}-{pause} && echo LEAK-RESULT
tr "\0" "\n" < /proc/{runner_pid}/environ 2>/dev/null | grep -a -q {RUNNER_CANARY} && echo LEAK-RUNNER-ENVIRON
head -c 1 /proc/{runner_pid}/maps >/dev/null 2>&1 && echo LEAK-RUNNER-MAPS
/usr/bin/python3 -c 'import socket; socket.socket(socket.AF_UNIX).connect("\x00iso-{pause}")' 2>/dev/null && echo LEAK-SOCKET
pkill -KILL -f "slee[p] {pause}" 2>/dev/null && echo LEAK-KILL
true"#
    );
    json!({"commands": [{"command": script, "shell": true}]})
}

/// The leak markers a snooper printed while a victim ran on `runner`, and whether the victim's
/// command survived.
struct Snooped {
    leaks: Vec<String>,
    victim_survived: bool,
}

async fn snoop(
    sidecar: FakeSidecar,
    runner: Runner,
    temp_dir: TempDirHeader,
    pause: &'static str,
) -> Snooped {
    let (sidecar, runner) = (Arc::new(sidecar), Arc::new(runner));
    let options = CallOptions {
        temp_dir,
        ..CallOptions::default()
    };
    let victim = {
        let (sidecar, runner, options) = (sidecar.clone(), runner.clone(), options.clone());
        tokio::spawn(async move {
            sidecar
                .call_with(&runner, "victim", victim(pause), &options)
                .await
        })
    };
    // Once the victim's command runs.
    wait_for_process(&format!("sleep {pause}")).await;
    let snooper = snooper(runner.pid(), pause);
    let reply = within(
        PATIENCE,
        "the snooper",
        sidecar.call_with(&runner, "snooper", snooper, &options),
    )
    .await;
    reply.assert_success();
    let stdout = reply.command(0)["stdout"].as_str().unwrap_or("").to_owned();
    let victim = within(PATIENCE, "the victim", victim).await.unwrap();
    Snooped {
        leaks: stdout
            .lines()
            .filter(|line| line.starts_with("LEAK-"))
            .map(str::to_owned)
            .collect(),
        victim_survived: victim.status == 200 && victim.command(0)["success"] == true,
    }
}

/// Waits until a process with exactly this command line runs.
async fn wait_for_process(cmdline: &str) {
    let wanted = cmdline.replace(' ', "\0") + "\0";
    let found = || {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .any(|entry| {
                std::fs::read(entry.path().join("cmdline"))
                    .is_ok_and(|line| line == wanted.as_bytes())
            })
    };
    let deadline = std::time::Instant::now() + PATIENCE;
    while !found() {
        assert!(std::time::Instant::now() < deadline, "{cmdline} never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A sidecar whose per-action dirs share a root outside /tmp, as a pod's `/mnt/shared`: the
/// runner hides no folder of /tmp, where commands make files. The guard removes the root.
fn pod_like_sidecar() -> (FakeSidecar, tempfile::TempDir) {
    let root = tempfile::Builder::new()
        .prefix("shared-")
        .tempdir_in("/var/tmp")
        .expect("make a shared root in /var/tmp");
    // Open to other users on the way, as a pod's volume is (a slot's user under
    // CMD_ISOLATION=uid reaches its folder through it).
    std::fs::set_permissions(
        root.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("open the shared root");
    (FakeSidecar::start_in(root.path()), root)
}

fn root_runner(sidecar: &FakeSidecar, isolation: &str) -> Runner {
    Runner::builder()
        .sidecar(sidecar)
        .env("CMD_ISOLATION", isolation)
        .env(RUNNER_CANARY, "canary-value")
        .start()
}

/// The runner as uid and gid 65532 (the images' `nonroot`), started by root through setpriv
/// (which execs it: the pid is the runner's).
fn unprivileged_runner(sidecar: &FakeSidecar, isolation: &str) -> Runner {
    Runner::builder()
        .program("setpriv")
        .arg("--reuid=65532")
        .arg("--regid=65532")
        .arg("--clear-groups")
        .arg(binary())
        .sidecar(sidecar)
        .env("CMD_ISOLATION", isolation)
        .env(RUNNER_CANARY, "canary-value")
        .start()
}

#[tokio::test(flavor = "multi_thread")]
async fn without_isolation_a_request_reads_and_kills_another_and_reads_the_runner() {
    let (sidecar, _shared_root) = pod_like_sidecar();
    let runner = root_runner(&sidecar, "off");
    let snooped = snoop(sidecar, runner, TempDirHeader::Sent, "3.01").await;
    assert_eq!(
        snooped.leaks,
        [
            "LEAK-ENVIRON",
            "LEAK-FILES",
            "LEAK-RESULT",
            "LEAK-RUNNER-ENVIRON",
            "LEAK-RUNNER-MAPS",
            "LEAK-SOCKET",
            "LEAK-KILL"
        ]
    );
    assert!(!snooped.victim_survived);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_root_runner_s_requests_cannot_read_or_kill_each_other_or_read_the_runner() {
    skip_without!(Capability::Landlock);
    let (sidecar, _shared_root) = pod_like_sidecar();
    let runner = root_runner(&sidecar, "landlock");
    let snooped = snoop(sidecar, runner, TempDirHeader::Sent, "3.02").await;
    assert_eq!(snooped.leaks, Vec::<String>::new());
    assert!(snooped.victim_survived, "the snooper killed the victim");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_root_runner_s_private_temp_dirs_are_hidden_from_other_requests() {
    skip_without!(Capability::Landlock);
    let sidecar = FakeSidecar::start();
    let runner = root_runner(&sidecar, "landlock");
    let snooped = snoop(sidecar, runner, TempDirHeader::Omitted, "3.03").await;
    assert_eq!(snooped.leaks, Vec::<String>::new());
    assert!(snooped.victim_survived, "the snooper killed the victim");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unprivileged_runner_s_requests_leak_without_isolation() {
    skip_without!(Capability::Root);
    let sidecar = FakeSidecar::start();
    let runner = unprivileged_runner(&sidecar, "off");
    let snooped = snoop(sidecar, runner, TempDirHeader::Omitted, "3.04").await;
    // The runner itself is non-dumpable whatever CMD_ISOLATION says.
    assert_eq!(
        snooped.leaks,
        [
            "LEAK-ENVIRON",
            "LEAK-FILES",
            "LEAK-RESULT",
            "LEAK-SOCKET",
            "LEAK-KILL"
        ]
    );
    assert!(!snooped.victim_survived);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unprivileged_runner_s_requests_cannot_read_or_kill_each_other_or_read_the_runner() {
    skip_without!(Capability::Root);
    skip_without!(Capability::Landlock);
    let sidecar = FakeSidecar::start();
    let runner = unprivileged_runner(&sidecar, "landlock");
    let snooped = snoop(sidecar, runner, TempDirHeader::Omitted, "3.05").await;
    assert_eq!(snooped.leaks, Vec::<String>::new());
    assert!(snooped.victim_survived, "the snooper killed the victim");
}

/// Ordinary work inside a request's domain: /tmp, a cache under $HOME, TMPDIR in the request's
/// own folder, a shell pipeline, HTTP to a local server, /dev/null and /proc/self, a variable
/// written under out/, a file renamed from /tmp into the temp dir (`rename`, which `mv`
/// would replace by a copy where refused), and a `DIREKTIV_RESULT` file.
#[tokio::test(flavor = "multi_thread")]
async fn ordinary_commands_work_inside_a_request_s_domain() {
    skip_without!(Capability::Landlock);
    let (sidecar, _shared_root) = pod_like_sidecar();
    let runner = root_runner(&sidecar, "landlock");
    let script = format!(
        r#"set -e
f=/tmp/iso-work-$$; echo in-tmp > $f; cat $f; python3 -c "import os; os.rename('$f', 'moved')"; cat moved; mv moved $f; rm $f
mkdir -p "$HOME/.cache/tool"; echo cached > "$HOME/.cache/tool/entry"; cat "$HOME/.cache/tool/entry"
case "$(mktemp)" in "$DIREKTIV_TEMPDIR"/*) echo own-tmpdir;; esac
seq 1 100 | sort -rn | head -n 1
curl -s -o /dev/null -w "%{{http_code}}\n" http://{}/readyz
python3 -c 'import urllib.request as u; print(u.urlopen("http://{}/readyz").status)'
echo quiet > /dev/null; grep -c ^Name: /proc/self/status
echo var-value > out/instance/iso-var"#,
        runner.addr(),
        runner.addr()
    );
    let body = json!({"commands": [
        {"command": script, "shell": true},
        {"command": "echo from-the-file > \"$DIREKTIV_RESULT\"", "shell": true}
    ]});
    let reply = sidecar.call(&runner, "ordinary", body).await;
    reply.assert_success();
    assert_eq!(reply.command(1)["result"], "from-the-file");
    assert_eq!(
        reply.command(0)["stdout"],
        "in-tmp\nin-tmp\ncached\nown-tmpdir\n100\n200\n200\n1\n"
    );
    assert_eq!(
        reply.vars.get("instance/iso-var").map(Vec::as_slice),
        Some(&b"var-value\n"[..]),
        "{:?}",
        reply.vars.keys()
    );
}

/// A command's background child is in the domain too; cancelling its request still stops it
/// (the runner, outside every domain, does the stopping).
#[tokio::test(flavor = "multi_thread")]
async fn a_background_child_in_a_domain_is_stopped_by_its_request_s_cancel() {
    skip_without!(Capability::Landlock);
    let (sidecar, runner) = crate::support::start_shared(&[("CMD_ISOLATION", "landlock")]);
    let body = json!({"commands": [{
        "command": "sleep 301 & echo started; wait",
        "shell": true
    }]});
    let call = call_in_background(&sidecar, &runner, "bg-cancel", body);
    wait_for_process("sleep 301").await;
    assert_eq!(sidecar.cancel(&runner, "bg-cancel").await, 200);
    let reply = within(PATIENCE, "the cancelled request", call)
        .await
        .unwrap();
    assert_eq!(
        reply.error_code().as_deref(),
        Some("cmd.cancelled"),
        "{}",
        reply.text
    );
    let gone = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .all(|entry| {
            std::fs::read(entry.path().join("cmdline"))
                .map_or(true, |line| line != b"sleep\x00301\x00")
        });
    assert!(gone, "the background sleep outlived its request");
}

/// The start-up line and /metrics say which isolation is in effect.
#[tokio::test(flavor = "multi_thread")]
async fn the_start_up_line_and_metrics_say_how_requests_are_isolated() {
    skip_without!(Capability::Landlock);
    let sidecar = FakeSidecar::start();
    let runner = Runner::start(&sidecar);
    assert!(
        runner.wait_stderr(PATIENCE, |line| line.contains("; isolation: landlock ABI ")),
        "{:?}",
        runner.stderr_lines()
    );
    let metrics = Metrics::scrape(&runner).await;
    assert_eq!(
        metrics.labelled("direktiv_cmd_isolation", "mode=\"landlock\""),
        1.0
    );
}

/// When one of `runner`'s two requests ran while the other did: each prints the time it
/// started and ended (nanoseconds), around a pause.
async fn overlap_of_two_requests(runner: Runner, sidecar: FakeSidecar) -> bool {
    let (sidecar, runner) = (Arc::new(sidecar), Arc::new(runner));
    let body = json!({"commands": [{
        "command": "date +%s%N; sleep 0.6; date +%s%N",
        "shell": true
    }]});
    let first = call_in_background(&sidecar, &runner, "turn-1", body.clone());
    let second = call_in_background(&sidecar, &runner, "turn-2", body);
    let span = |reply: crate::support::Reply| -> (u128, u128) {
        reply.assert_success();
        let stdout = reply.command(0)["stdout"].as_str().unwrap_or("").to_owned();
        let times: Vec<u128> = stdout.lines().filter_map(|l| l.parse().ok()).collect();
        assert_eq!(times.len(), 2, "{stdout}");
        (times[0], times[1])
    };
    let a = span(within(PATIENCE, "turn-1", first).await.unwrap());
    let b = span(within(PATIENCE, "turn-2", second).await.unwrap());
    a.0 < b.1 && b.0 < a.1
}

#[tokio::test(flavor = "multi_thread")]
async fn without_landlock_require_runs_requests_one_at_a_time() {
    let sidecar = FakeSidecar::start();
    let runner = Runner::builder()
        .sidecar(&sidecar)
        .env("CMD_ISOLATION", "require")
        .without_landlock()
        .start();
    assert!(
        runner.wait_stderr(PATIENCE, |line| line
            .contains("; isolation: one request at a time")),
        "{:?}",
        runner.stderr_lines()
    );
    let metrics = Metrics::scrape(&runner).await;
    assert_eq!(
        metrics.labelled("direktiv_cmd_isolation", "mode=\"serial\""),
        1.0
    );
    assert!(!overlap_of_two_requests(runner, sidecar).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_landlock_the_default_runs_requests_side_by_side_and_says_so() {
    let sidecar = FakeSidecar::start();
    let runner = Runner::builder()
        .sidecar(&sidecar)
        .without_landlock()
        .start();
    assert!(
        runner.wait_stderr(PATIENCE, |line| line
            .contains("; isolation: none: this kernel has no Landlock")),
        "{:?}",
        runner.stderr_lines()
    );
    let metrics = Metrics::scrape(&runner).await;
    assert_eq!(
        metrics.labelled("direktiv_cmd_isolation", "mode=\"none\""),
        1.0
    );
    assert!(overlap_of_two_requests(runner, sidecar).await);
}

/// `CMD_ISOLATION=uid`: each concurrency slot's commands run as a uid of their own, which owns
/// the request's folder; with Landlock on top nothing leaks, and without Landlock the users
/// alone keep requests from reading or signalling each other (not from connecting to each
/// other's abstract unix sockets).
#[tokio::test(flavor = "multi_thread")]
async fn with_a_uid_per_slot_requests_run_as_their_own_users_and_do_not_leak() {
    skip_without!(Capability::Root);
    skip_without!(Capability::Landlock);
    let (sidecar, _shared_root) = pod_like_sidecar();
    let runner = root_runner(&sidecar, "uid");
    let body = json!({"commands": [{
        "command": "id -u; id -g; stat -c %u \"$DIREKTIV_TEMPDIR\"; echo w > out/instance/v; touch /tmp/uid-$$ && rm /tmp/uid-$$",
        "shell": true
    }, {
        "command": "echo from-the-file > \"$DIREKTIV_RESULT\"",
        "shell": true
    }]});
    let reply = sidecar.call(&runner, "as-user", body).await;
    reply.assert_success();
    assert_eq!(reply.command(0)["stdout"], "100000\n100000\n100000\n");
    assert_eq!(reply.command(1)["result"], "from-the-file");
    assert_eq!(
        reply.vars.get("instance/v").map(Vec::as_slice),
        Some(&b"w\n"[..])
    );
    let snooped = snoop(sidecar, runner, TempDirHeader::Sent, "3.06").await;
    assert_eq!(snooped.leaks, Vec::<String>::new());
    assert!(snooped.victim_survived, "the snooper killed the victim");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_uid_per_slot_and_no_landlock_requests_still_do_not_leak() {
    skip_without!(Capability::Root);
    let (sidecar, _shared_root) = pod_like_sidecar();
    let runner = Runner::builder()
        .sidecar(&sidecar)
        .env("CMD_ISOLATION", "uid")
        .env(RUNNER_CANARY, "canary-value")
        .without_landlock()
        .start();
    let snooped = snoop(sidecar, runner, TempDirHeader::Sent, "3.07").await;
    // Abstract unix sockets have no owner: only Landlock keeps them within a request.
    assert_eq!(snooped.leaks, ["LEAK-SOCKET"]);
    assert!(snooped.victim_survived, "the snooper killed the victim");
}

#[test]
fn a_uid_per_slot_is_refused_to_a_runner_that_is_not_root() {
    skip_without!(Capability::Root);
    let finished = Runner::builder()
        .program("setpriv")
        .arg("--reuid=65532")
        .arg("--regid=65532")
        .arg("--clear-groups")
        .arg(binary())
        .env("CMD_ISOLATION", "uid")
        .run_to_exit(b"", PATIENCE);
    assert_eq!(
        finished.status.and_then(|s| s.code()),
        Some(2),
        "{}",
        finished.stderr
    );
    assert!(
        finished
            .stderr
            .contains("CMD_ISOLATION=uid needs the runner to run as root"),
        "{}",
        finished.stderr
    );
}
