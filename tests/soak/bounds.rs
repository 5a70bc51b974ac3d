//! Bounds that hold on a quiet machine, not on one where other builds share the cores: how long
//! `/healthz` may take while huge trees are written or removed, and how much memory the
//! runner needs to stream 80 MB of output. The test suite checks what these show without a
//! clock (file work off the async workers, every line logged); `make soak` checks the bounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{
    procs, sh, start_pair, within, CallOptions, FakeSidecar, Reply, Runner, TempDirHeader,
};

/// Runs `body` without `Direktiv-TempDir`: in a private temp dir the runner makes and removes.
async fn call_private(sidecar: &FakeSidecar, runner: &Runner, aid: &str, body: &Value) -> Reply {
    let options = CallOptions {
        temp_dir: TempDirHeader::Omitted,
        ..CallOptions::default()
    };
    sidecar.call_with(runner, aid, body, &options).await
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
    calls: &[tokio::task::JoinHandle<Reply>],
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
#[ignore = "a bound for a quiet machine; run with `make soak`"]
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
            tokio::spawn(async move { call_private(&sidecar, &runner, &aid, &body).await })
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
#[ignore = "a bound for a quiet machine; run with `make soak`"]
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
                tokio::spawn(async move { call_private(&sidecar, &runner, &aid, &body).await })
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

/// Streaming 80 MB of output (a million lines) takes the runner less than 40 MiB: it passes
/// output on instead of keeping it (`lifecycle` checks that every line arrives).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a bound for a quiet machine; run with `make soak`"]
async fn streaming_80_mb_of_output_takes_less_than_40_mib() {
    let (sidecar, runner) = start_pair(&[("CMD_MAX_OUTPUT", "1MiB")]);
    let line = "0123456789012345678901234567890123456789012345678901234567890123456789012345678";
    let script = format!("yes {line} | head -n 1000000");
    let body = json!({"commands": [{"command": script, "shell": true, "print": false}]});
    let reply = sidecar.call(&runner, "huge-output", body).await;
    reply.assert_success();
    let peak = procs::peak_rss(runner.pid()).expect("VmHWM of the runner");
    println!("peak RSS while streaming 80 MB: {} MiB", peak >> 20);
    assert!(
        peak < 40 << 20,
        "the runner streams instead of buffering: peak RSS {} MiB",
        peak >> 20
    );
}
