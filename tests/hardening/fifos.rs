//! Nothing a request names can stall the runner: a FIFO, device, socket or folder where a
//! regular file is expected is refused at once as `cmd.input`, and `/healthz`, `DELETE /` and
//! SIGTERM keep working meanwhile; huge trees are removed off the async worker threads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::support::{procs, start_pair, FakeSidecar, Runner, PATIENCE};
use super::{assert_input_error, post_in, post_private, sh, within, PROMPT};

/// More FIFO requests at once than the runtime has worker threads on a 2-core machine.
const FIFO_REQUESTS: usize = 3;

/// A request whose second command names a FIFO the first one made as its `output`.
fn fifo_output_request() -> Value {
    json!({"commands": [{"command": "mkfifo o"}, {"command": "true", "output": "o", "timeout": 2}]})
}

fn fifo_aid(i: usize) -> String {
    format!("fifo-{i}")
}

/// Starts `FIFO_REQUESTS` FIFO-output requests and waits until one of them has reached the
/// command whose `output` is the FIFO.
async fn start_fifo_requests(
    sidecar: &Arc<FakeSidecar>,
    runner: &Arc<Runner>,
) -> Vec<tokio::task::JoinHandle<super::Reply>> {
    let calls = (0..FIFO_REQUESTS)
        .map(|i| {
            let (sidecar, runner) = (sidecar.clone(), runner.clone());
            tokio::spawn(async move {
                sidecar
                    .call(&runner, &fifo_aid(i), fifo_output_request())
                    .await
            })
        })
        .collect();
    let deadline = Instant::now() + PATIENCE;
    let reached = |i: usize| {
        sidecar
            .lines(&fifo_aid(i))
            .iter()
            .any(|l| l == "running command 'true'")
    };
    while !(0..FIFO_REQUESTS).any(reached) {
        assert!(Instant::now() < deadline, "no request got to `true`");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    calls
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fifo_as_output_is_refused_at_once_and_the_runner_keeps_answering() {
    let (sidecar, runner) = start_pair(&[("CMD_KILL_GRACE", "1s")]);
    let (sidecar, runner) = (Arc::new(sidecar), Arc::new(runner));
    let victim = {
        let (sidecar, runner) = (sidecar.clone(), runner.clone());
        tokio::spawn(async move {
            sidecar
                .call(&runner, "fifo-victim", json!({"command": "sleep 60"}))
                .await
        })
    };
    let calls = start_fifo_requests(&sidecar, &runner).await;

    let health = within(PROMPT, "/healthz", runner.get("/healthz")).await;
    assert_eq!(health.status, 200, "{health:?}");
    let cancel = within(PROMPT, "DELETE /", sidecar.cancel(&runner, "fifo-victim")).await;
    assert_eq!(cancel, 200);
    let victim = within(PROMPT, "the cancelled request", victim)
        .await
        .unwrap();
    victim.assert_error("cmd.cancelled", 500);

    for (i, call) in calls.into_iter().enumerate() {
        let reply = within(PROMPT, &fifo_aid(i), call).await.unwrap();
        assert_input_error(
            &reply,
            &["commands[1].output", "regular file"],
            &fifo_aid(i),
        );
    }
    assert_eq!(runner.get("/healthz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_the_runner_while_fifo_outputs_are_tried() {
    let (sidecar, runner) = start_pair(&[("CMD_KILL_GRACE", "1s"), ("CMD_GRACE", "3s")]);
    let (sidecar, runner) = (Arc::new(sidecar), Arc::new(runner));
    let _calls = start_fifo_requests(&sidecar, &runner).await;
    runner.signal(nix::sys::signal::Signal::SIGTERM);
    let pid = runner.pid();
    let exited = procs::wait_for(PROMPT, || (!procs::alive(pid)).then_some(()));
    assert!(
        exited.is_some(),
        "the runner must exit within {PROMPT:?} of SIGTERM"
    );
}

/// `output` names something other than a regular file: each is refused promptly, by name.
#[tokio::test(flavor = "multi_thread")]
async fn output_must_be_a_regular_file() {
    let (sidecar, runner) = start_pair(&[("CMD_KILL_GRACE", "1s")]);
    let socket =
        "perl -MIO::Socket::UNIX -e 'IO::Socket::UNIX->new(Local => \"o\", Listen => 1) or die'";
    let cases: [(&str, &str, &str); 7] = [
        ("a folder", "mkdir o", "regular file"),
        (
            "a FIFO in a folder",
            "mkdir d && mkfifo d/o",
            "regular file",
        ),
        (
            "a symlink to a FIFO",
            "mkfifo f && ln -s f o",
            "regular file",
        ),
        ("a socket", socket, "regular file"),
        ("a character device", "mknod o c 1 5", "regular file"),
        ("a symlink to /dev/zero", "ln -s /dev/zero o", "output"),
        ("a symlink to /dev/null", "ln -s /dev/null o", "output"),
    ];
    for (i, (case, setup, needle)) in cases.into_iter().enumerate() {
        let output = if case == "a FIFO in a folder" {
            "d/o"
        } else {
            "o"
        };
        let body = json!({"commands": [sh(setup), {"command": "true", "output": output}]});
        let aid = format!("output-{i}");
        let reply = within(PROMPT, case, sidecar.call(&runner, &aid, body)).await;
        assert_input_error(&reply, &["commands[1].output", needle], case);
    }
    assert_eq!(runner.get("/healthz").await.status, 200);
}

/// An earlier request in a shared temp dir left a FIFO, a device and a FIFO in a folder where a
/// later request's input files go: refused, nothing opened, nothing blocks.
#[tokio::test(flavor = "multi_thread")]
async fn input_files_over_fifos_and_devices_are_refused() {
    let (sidecar, runner) = start_pair(&[]);
    let shared = tempfile::tempdir().unwrap();
    let setup =
        json!({"commands": [sh("mkfifo pipe && mknod dev c 1 5 && mkdir sub && mkfifo sub/pipe")]});
    post_in(&sidecar, &runner, "plant", shared.path(), &setup)
        .await
        .assert_success();
    for (i, name) in ["pipe", "dev", "sub/pipe", "pipe/x"]
        .into_iter()
        .enumerate()
    {
        let body = json!({
            "files": [{"name": "fine.txt", "data": "x"}, {"name": name, "data": "x"}],
            "commands": [{"command": "true"}]
        });
        let aid = format!("over-{i}");
        let reply = within(
            PROMPT,
            name,
            post_in(&sidecar, &runner, &aid, shared.path(), &body),
        )
        .await;
        assert_input_error(&reply, &["files[1].name"], name);
        assert!(
            !shared.path().join("fine.txt").exists(),
            "{name}: nothing is written for a refused request"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fifo_as_workdir_is_refused() {
    let (sidecar, runner) = start_pair(&[]);
    for (i, workdir) in ["w", "w/sub"].into_iter().enumerate() {
        let body = json!({"commands": [
            {"command": "mkfifo w"},
            {"command": "pwd", "workdir": workdir}
        ]});
        let aid = format!("fifo-workdir-{i}");
        let reply = within(PROMPT, workdir, sidecar.call(&runner, &aid, body)).await;
        assert_input_error(&reply, &["commands[1].workdir"], workdir);
    }
}

/// `Direktiv-TempDir` naming a file, a FIFO, or a folder under a file is the request's fault.
#[tokio::test(flavor = "multi_thread")]
async fn a_temp_dir_header_naming_a_file_or_fifo_is_refused() {
    let (sidecar, runner) = start_pair(&[]);
    let base = tempfile::tempdir().unwrap();
    let file = base.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let fifo = base.path().join("fifo");
    super::mkfifo(&fifo);
    let body = json!({"commands": [{"command": "pwd"}]});
    for (i, dir) in [file.clone(), fifo, file.join("sub")]
        .into_iter()
        .enumerate()
    {
        let aid = format!("tempdir-{i}");
        let case = dir.display().to_string();
        let reply = within(PROMPT, &case, post_in(&sidecar, &runner, &aid, &dir, &body)).await;
        assert_input_error(&reply, &["Direktiv-TempDir"], &case);
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
}

/// The slowest `/healthz` answer allowed while huge trees are written or removed.
const HEALTHZ_BOUND: Duration = Duration::from_secs(1);

/// Requests at once in the huge-tree tests: as many as the runtime has worker threads (one per
/// CPU), so a runner that does the file work on its workers cannot hide the stall on an idle
/// one, while the blocking pool's threads leave the workers some CPU.
fn huge_requests() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

/// Polls `/healthz` until every call has answered; returns the slowest answer and the time
/// the calls took from now.
async fn slowest_healthz_until_done(
    runner: &Runner,
    calls: &[tokio::task::JoinHandle<super::Reply>],
) -> (Duration, Duration) {
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    while !calls.iter().all(|call| call.is_finished()) {
        let asked = Instant::now();
        let health = within(Duration::from_secs(300), "/healthz", runner.get("/healthz")).await;
        assert_eq!(health.status, 200, "{health:?}");
        slowest = slowest.max(asked.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (slowest, started.elapsed())
}

/// Files each command leaves in its private temp dir, tried in turn until removing them takes
/// longer than `HEALTHZ_BOUND` on this machine (a quiet one removes 60,000 in well under a
/// second; the test must outlast the bound to show anything).
const HUGE_TREE_FILES: [usize; 3] = [60_000, 200_000, 500_000];

/// Commands leave huge trees in their private temp dirs; the runner removes them all at once
/// after the test lets the commands end.
#[tokio::test(flavor = "multi_thread")]
async fn removing_huge_private_temp_dirs_does_not_stall_healthz() {
    let (sidecar, runner) = start_pair(&[]);
    let (sidecar, runner) = (Arc::new(sidecar), Arc::new(runner));
    for (round, files) in HUGE_TREE_FILES.into_iter().enumerate() {
        let (slowest, sweep) = remove_huge_trees(&sidecar, &runner, round, files).await;
        let requests = huge_requests();
        println!("removal of {requests} x {files} files: {sweep:?}, slowest /healthz: {slowest:?}");
        if sweep <= HEALTHZ_BOUND {
            continue;
        }
        assert!(
            slowest < HEALTHZ_BOUND,
            "/healthz took {slowest:?} while the temp dirs were removed"
        );
        return;
    }
    panic!("even {HUGE_TREE_FILES:?} files were removed too quickly to show a stall");
}

/// One round: every request's command makes `files` files and waits; once all have, the test
/// lets them end and measures `/healthz` while the runner removes the trees. Returns the
/// slowest answer and how long the removal took.
async fn remove_huge_trees(
    sidecar: &Arc<FakeSidecar>,
    runner: &Arc<Runner>,
    round: usize,
    files: usize,
) -> (Duration, Duration) {
    let gate = tempfile::tempdir().unwrap();
    let go = gate.path().join("go");
    let script = format!(
        "perl -e 'mkdir \"t\"; for (1..{files}) {{ open(my $f, \">\", \"t/f$_\") or die }}' \
         && echo made && while [ ! -e \"$GO\" ]; do sleep 0.05; done"
    );
    let aid = |i: usize| format!("huge-{round}-{i}");
    let calls: Vec<_> = (0..huge_requests())
        .map(|i| {
            let (sidecar, runner, aid) = (sidecar.clone(), runner.clone(), aid(i));
            let body = json!({"env": {"GO": go.display().to_string()}, "commands": [sh(&script)]});
            tokio::spawn(async move { post_private(&sidecar, &runner, &aid, &body).await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(900);
    for (i, call) in calls.iter().enumerate() {
        while !sidecar.lines(&aid(i)).iter().any(|l| l == "made") {
            assert!(
                Instant::now() < deadline,
                "request {i} never made its files"
            );
            assert!(!call.is_finished(), "request {i} ended early");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    std::fs::write(&go, "").unwrap();
    let measured = slowest_healthz_until_done(runner, &calls).await;
    for call in calls {
        call.await.unwrap().assert_success();
    }
    measured
}

/// Input files of each request, tried in turn until writing (and removing) them takes longer
/// than `HEALTHZ_BOUND` on this machine.
const INPUT_FILES: [usize; 3] = [20_000, 60_000, 150_000];

/// Requests with huge input file lists: written (and removed) without stalling `/healthz`.
#[tokio::test(flavor = "multi_thread")]
async fn writing_huge_input_file_lists_does_not_stall_healthz() {
    let (sidecar, runner) = start_pair(&[]);
    let (sidecar, runner) = (Arc::new(sidecar), Arc::new(runner));
    for (round, count) in INPUT_FILES.into_iter().enumerate() {
        let files: Vec<Value> = (0..count)
            .map(|n| json!({"name": format!("d{}/f{n}", n % 100), "data": "x"}))
            .collect();
        let body = Arc::new(json!({"files": files, "commands": [{"command": "true"}]}));
        let calls: Vec<_> = (0..huge_requests())
            .map(|i| {
                let (sidecar, runner, body) = (sidecar.clone(), runner.clone(), body.clone());
                let aid = format!("many-{round}-{i}");
                tokio::spawn(async move { post_private(&sidecar, &runner, &aid, &body).await })
            })
            .collect();
        let (slowest, took) = slowest_healthz_until_done(&runner, &calls).await;
        for call in calls {
            call.await.unwrap().assert_success();
        }
        let requests = huge_requests();
        println!("{requests} x {count} input files: {took:?}, slowest /healthz: {slowest:?}");
        if took <= HEALTHZ_BOUND {
            continue;
        }
        assert!(
            slowest < HEALTHZ_BOUND,
            "/healthz took {slowest:?} while input files were written"
        );
        return;
    }
    panic!("even {INPUT_FILES:?} input files were written too quickly to show a stall");
}
