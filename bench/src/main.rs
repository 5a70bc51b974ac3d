//! Benchmark harness for direktiv-cmd (`make bench`).
//!
//! One run measures the floors, then the runner against a fake sidecar, prints one table with
//! the targets as ratios to a floor of the same run, and writes it as JSON. The floors are two
//! servers built from the same crates as the runner (floor.rs):
//! - the *spawn floor* spawns the command and answers with its stdout;
//! - the *protocol floor* also makes the one log POST the contract needs (the `running command`
//!   line and the output, awaited before answering), over a pooled hyper-util client like
//!   the runner's, and answers with the contract's JSON body. Every target is judged against
//!   it; the spawn floor is a second reference.
//!
//! How it stays fair on a small shared machine:
//! - floors and runner are built with the same profile and static linking, started and timed
//!   the same way (exec → first 200 on `/healthz`), and measured by the same client;
//! - they take turns in short rounds, each round started by the next server, so that other
//!   load on the machine falls on all alike;
//! - CPU is the server process's own utime+stime (children excluded), before/after its turns;
//! - every request has its own `Direktiv-ActionID`, and the runner gets `CMD_MAX_INFLIGHT=64`
//!   so that c=16 measures work, not `cmd.busy`.
//!
//! Which `Direktiv-TempDir` each request carries (the table's `TempDir` column, and the
//! `direktiv_tempdir` of each row in the JSON):
//! - `fixed`: one directory the harness makes once under its own temp dir and sends with every
//!   request, as Direktiv main always sends `/tmp`. Direktiv ≤ v0.10 sends `/mnt/shared/<aid>`,
//!   which its sidecar makes before the call and removes after: that work is the sidecar's, not
//!   the runner's. Every target is judged on `fixed` runs.
//! - `none`: no header, so the runner makes and removes a private temp dir for every request.
//!   The "private temp dir" rows measure `true` at c=16 this way, for information (no target),
//!   to show what that path costs.
//!
//! The floors ignore the header; they get the same requests as the runner.
//!
//! Pod mode (pod.rs): the floors and the runner once more, each in its own mount and pid
//! namespaces with the cgroup mounts read-only, as in an unprivileged Direktiv pod where the
//! runner makes no cgroup and finds a request's processes through /proc. Start, memory and
//! `true` at c=1 and c=16, judged with the same limits against the protocol floor in pod mode.
//! It needs root; without it the rows say why they are missing.
//!
//! On the runner alone, with the same request with and without the feature: masking (2 MB of
//! output, 20 secrets of 20–60 bytes in `mask`, target ≤ 1.10×) and `limits` (information).
//!
//! ```text
//! direktiv-cmd-bench [--runner PATH] [--out PATH] [--strict] [--pod-only]
//!                                    run everything; --strict: exit 1 when a target is missed;
//!                                    --pod-only: only the pod-mode rows (a short run)
//! direktiv-cmd-bench floor-server    serve as the spawn floor (used by the run)
//! direktiv-cmd-bench protocol-floor SIDECAR_URL
//!                                    serve as the protocol floor (used by the run)
//! direktiv-cmd-bench pod-init HOST_MNT_NS PROGRAM ARGS…
//!                                    be the init of a pod-mode namespace (used by the run)
//! direktiv-cmd-bench sidecar         serve the fake sidecar alone (for profiling)
//! direktiv-cmd-bench load ADDR C N BODY [TEMPDIR]
//!                                    N posts of BODY at concurrency C to a loopback ADDR, with
//!                                    TEMPDIR as Direktiv-TempDir if given; stats as JSON (for
//!                                    profiling)
//! direktiv-cmd-bench pair A B [--concurrency C] [--requests N] [--turns T] [--body JSON]
//!                                    two runner builds side by side, taking turns against one
//!                                    sidecar: p50, requests/s and CPU per request of each, and
//!                                    B / A (`make pair`; pair.rs)
//! direktiv-cmd-bench layout PROBE OUT
//!                                    the functions of the runner that run, for the linker to
//!                                    place together (`make layout`; layout.rs)
//! ```
//! Only loopback addresses are used; every loop is bounded in count and time.

mod client;
mod compare;
mod delivery;
mod floor;
mod layout;
mod load;
mod measure;
mod pair;
mod pod;
mod process;
mod report;
mod sidecar;
mod table;
mod target;

use std::path::PathBuf;
use std::process::ExitCode;

use client::Error;
use floor::Floor;
use report::{PodMode, Report};
use sidecar::Sidecar;
use target::{Mode, Target};

/// Spawn+wait samples of `/bin/true`.
const SPAWN_RUNS: usize = 1_000;

/// Where the runner and the JSON report are, and whether a missed target fails the run.
struct Options {
    runner: PathBuf,
    out: PathBuf,
    strict: bool,
    /// Only the pod-mode measurements.
    pod_only: bool,
}

/// How a run ended when nothing went wrong.
enum Verdict {
    Done,
    /// `--strict`, and a target was missed.
    Missed,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some(mode @ ("floor-server" | "protocol-floor")) => Floor::from_args(mode, &args[1..])
            .and_then(floor::serve)
            .map(|()| Verdict::Done),
        Some("pod-init") => {
            return pod::init(&args[1..]).unwrap_or_else(|e| {
                eprintln!("direktiv-cmd-bench pod-init: {e}");
                ExitCode::FAILURE
            })
        }
        Some("sidecar") => sidecar::serve().map(|()| Verdict::Done),
        Some("load") => load_only(&args[1..]).map(|()| Verdict::Done),
        Some("layout") => layout::run(&args[1..]).map(|()| Verdict::Done),
        Some("pair") => pair::PairOptions::from_args(&args[1..])
            .and_then(|options| pair::run(&options))
            .map(|()| Verdict::Done),
        _ => options(&args).and_then(run),
    };
    match outcome {
        Ok(Verdict::Done) => ExitCode::SUCCESS,
        Ok(Verdict::Missed) => ExitCode::from(1),
        Err(e) => {
            eprintln!("direktiv-cmd-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The load generator alone, for profiling a runner started by hand.
fn load_only(args: &[String]) -> Result<(), Error> {
    let (addr, concurrency, requests, body, temp_dir) = match args {
        [a, c, n, b] => (a, c, n, b, None),
        [a, c, n, b, t] => (a, c, n, b, Some(t.clone())),
        _ => return Err("usage: load ADDR CONCURRENCY REQUESTS BODY [TEMPDIR]".into()),
    };
    let addr: std::net::SocketAddr = addr.parse()?;
    if !addr.ip().is_loopback() {
        return Err(format!("{addr} is not a loopback address").into());
    }
    let concurrency: usize = concurrency.parse()?;
    let load = load::Load {
        concurrency,
        requests: requests.parse()?,
        body: bytes::Bytes::from(body.clone()),
        id_prefix: format!("bench-load-{}", std::process::id()),
        temp_dir,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let stats = runtime.block_on(load::run(addr, &load))?.stats(concurrency);
    println!("{}", serde_json::to_string_pretty(&stats)?);
    Ok(())
}

fn options(args: &[String]) -> Result<Options, Error> {
    let mut options = Options {
        runner: PathBuf::from("target/static/direktiv-cmd"),
        out: PathBuf::from("bench-results/latest.json"),
        strict: false,
        pod_only: false,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--runner" => options.runner = PathBuf::from(value()?),
            "--out" => options.out = PathBuf::from(value()?),
            "--strict" => options.strict = true,
            "--pod-only" => options.pod_only = true,
            _ => {
                return Err(format!(
                    "unknown argument {flag}; see the doc comment of bench/src/main.rs"
                )
                .into())
            }
        }
    }
    if !options.runner.is_file() {
        return Err(format!(
            "no runner binary at {} (run `make static` first)",
            options.runner.display()
        )
        .into());
    }
    Ok(options)
}

/// The whole benchmark. The table and the JSON are written either way; a missed target is an
/// error only with `--strict`.
fn run(options: Options) -> Result<Verdict, Error> {
    if options.pod_only {
        return run_pod_only(&options);
    }
    let started = std::time::Instant::now();
    let load_before = report::load_average();
    let scratch = Scratch::create()?;
    let temp_dir = scratch.fixed_temp_dir()?;
    eprintln!("spawn+wait: {SPAWN_RUNS} × /bin/true");
    let spawn = measure::spawn_floor(SPAWN_RUNS)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut report = runtime.block_on(servers(&options, &temp_dir))?;
    report.spawn_true_p50_us = load::micros(spawn);
    report.binary_stripped_bytes = measure::stripped_size(&options.runner)?;
    report.load_average = [load_before, report::load_average()];
    report.strict = options.strict;
    report.run_s = started.elapsed().as_secs_f64();
    report.judge();
    report.print();
    report.write_json(&options.out)?;
    let failed = report.failed();
    println!(
        "\n{failed} of {} targets failed in a {:.0} s run; written to {}",
        report.targets.len(),
        report.run_s,
        options.out.display()
    );
    Ok(if options.strict && failed > 0 {
        Verdict::Missed
    } else {
        Verdict::Done
    })
}

/// The floors and the runner side by side, then the runner alone: a slow sidecar, masking and
/// `limits`. Requests carry `temp_dir` as `Direktiv-TempDir` except in the private-temp-dir run.
async fn servers(options: &Options, temp_dir: &str) -> Result<Report, Error> {
    let sidecar = Sidecar::start().await?;
    let targets = targets(options, &sidecar)?;
    eprintln!("spawn floor, protocol floor and direktiv-cmd, taking turns: starts");
    let mut measured = measure::side_by_side(&targets, &sidecar, temp_dir).await?;
    let (runner, runner_server) = measured.pop().ok_or("no runner measured")?;
    let (protocol_floor, protocol_server) = measured.pop().ok_or("no protocol floor measured")?;
    let (spawn_floor, spawn_server) = measured.pop().ok_or("no spawn floor measured")?;
    protocol_server.stop().await?;
    spawn_server.stop().await?;
    eprintln!("direktiv-cmd: 50 ms sidecar");
    let slow_sidecar = measure::slow_sidecar(&runner_server, &sidecar, temp_dir).await?;
    eprintln!("direktiv-cmd: masking, limits");
    let masking = compare::masking(&runner_server, &sidecar, temp_dir).await?;
    eprintln!("direktiv-cmd: 2,000 mask entries, 19 MB of near-matches");
    let near_matches = compare::near_matches(&runner_server, &sidecar, temp_dir).await?;
    let limits = compare::limits(&runner_server, &sidecar, temp_dir).await?;
    runner_server.stop().await?;
    // Two new runners, alike but for isolation: the one above has been through the masking
    // and near-match runs, and a heap that grew to 20 MiB would weigh on one side only.
    eprintln!("direktiv-cmd: isolated (a Landlock domain per request) and not, two new runners");
    let isolated = targets[2].start(&Mode::Host).await?;
    let unisolated = targets[2]
        .with_env("CMD_ISOLATION", "off")
        .start(&Mode::Host)
        .await?;
    let isolation = compare::isolation(&isolated, &unisolated, &sidecar, temp_dir).await?;
    unisolated.stop().await?;
    isolated.stop().await?;
    let pod_mode = pod_mode(&targets, &sidecar, temp_dir).await?;

    Ok(Report {
        direktiv_tempdir: temp_dir.to_owned(),
        spawn_true_p50_us: 0.0,
        spawn_floor,
        protocol_floor,
        runner,
        slow_sidecar,
        masking,
        near_matches,
        limits,
        isolation,
        pod_mode,
        binary_stripped_bytes: 0,
        load_average: Default::default(),
        strict: false,
        run_s: 0.0,
        targets: Vec::new(),
        information: Vec::new(),
    })
}

/// The three servers of `targets` measured in pod mode, or why they could not be: not root, or
/// the first start in a namespace failed (a container that may not make namespaces).
async fn pod_mode(targets: &[Target], sidecar: &Sidecar, temp_dir: &str) -> Result<PodMode, Error> {
    if let Some(reason) = pod::unavailable() {
        return Ok(PodMode::Unavailable { reason });
    }
    let mode = Mode::Pod {
        harness: std::env::current_exe()?,
        host_mount_ns: pod::mount_namespace()?,
    };
    eprintln!("pod mode: spawn floor, protocol floor and direktiv-cmd, taking turns");
    match targets[0].start(&mode).await {
        Ok(server) => server.stop().await?,
        Err(e) => {
            return Ok(PodMode::Unavailable {
                reason: format!("a server could not start in a namespace: {e}"),
            })
        }
    }
    let mut measured = measure::pod_side_by_side(targets, sidecar, temp_dir, &mode).await?;
    let runner = measured.pop().ok_or("no runner measured")?;
    let protocol_floor = measured.pop().ok_or("no protocol floor measured")?;
    let spawn_floor = measured.pop().ok_or("no spawn floor measured")?;
    Ok(PodMode::Measured(Box::new(report::PodServers {
        spawn_floor,
        protocol_floor,
        runner,
    })))
}

/// `--pod-only`: the pod-mode rows and targets alone, printed and written as JSON.
fn run_pod_only(options: &Options) -> Result<Verdict, Error> {
    #[derive(serde::Serialize)]
    struct PodOnly {
        pod_mode: PodMode,
        targets: Vec<report::Check>,
        load_average: [String; 2],
        run_s: f64,
    }
    let started = std::time::Instant::now();
    let load_before = report::load_average();
    let scratch = Scratch::create()?;
    let temp_dir = scratch.fixed_temp_dir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let pod_mode = runtime.block_on(async {
        let sidecar = Sidecar::start().await?;
        pod_mode(&targets(options, &sidecar)?, &sidecar, &temp_dir).await
    })?;
    let report = PodOnly {
        targets: pod_mode.targets(),
        pod_mode,
        load_average: [load_before, report::load_average()],
        run_s: started.elapsed().as_secs_f64(),
    };
    println!(
        "\n{:<44} {:>7} {:>14} {:>18} {:>24}",
        "measurement", "TempDir", "spawn floor", "protocol floor", "direktiv-cmd"
    );
    table::print_pod_rows(&report.pod_mode);
    println!("\ntargets (ratios are direktiv-cmd / protocol floor, both in pod mode, same run)");
    report::print_checks(&report.targets);
    if let Some(dir) = options.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&options.out, serde_json::to_string_pretty(&report)? + "\n")?;
    let failed = report.targets.iter().filter(|c| !c.pass).count();
    println!(
        "\n{failed} of {} targets failed in a {:.0} s run (load average {} / {}); written to {}",
        report.targets.len(),
        report.run_s,
        report.load_average[0],
        report.load_average[1],
        options.out.display()
    );
    Ok(if options.strict && failed > 0 {
        Verdict::Missed
    } else {
        Verdict::Done
    })
}

/// The spawn floor, the protocol floor and the runner, logging to `sidecar`.
fn targets(options: &Options, sidecar: &Sidecar) -> Result<[Target; 3], Error> {
    let harness = std::env::current_exe()?;
    Ok([
        Target::SpawnFloor {
            harness: harness.clone(),
        },
        Target::ProtocolFloor {
            harness,
            sidecar: sidecar.url(),
        },
        Target::Runner {
            binary: options.runner.clone(),
            sidecar: sidecar.url(),
            env: Vec::new(),
        },
    ])
}

/// The harness's own temp dir, removed with everything in it when the run ends.
struct Scratch(PathBuf);

impl Scratch {
    fn create() -> Result<Self, Error> {
        let path = std::env::temp_dir().join(format!("direktiv-cmd-bench-{}", std::process::id()));
        std::fs::create_dir(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Self(path))
    }

    /// Makes the one directory every `fixed` request names in `Direktiv-TempDir`, the way
    /// Direktiv main names `/tmp`: it exists before the first request and is shared by all.
    fn fixed_temp_dir(&self) -> Result<String, Error> {
        let dir = self.0.join("tmp");
        std::fs::create_dir(&dir)?;
        dir.into_os_string()
            .into_string()
            .map_err(|dir| format!("temp dir {dir:?} is not UTF-8").into())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::Scratch;

    #[test]
    fn the_fixed_temp_dir_exists_until_the_run_ends() {
        let scratch = Scratch::create().unwrap();
        let dir = std::path::PathBuf::from(scratch.fixed_temp_dir().unwrap());
        assert!(dir.is_dir() && dir.starts_with(&scratch.0));
        std::fs::write(dir.join("left-behind"), "x").unwrap();
        drop(scratch);
        assert!(!dir.exists());
    }
}
