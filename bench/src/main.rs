//! Benchmark harness for direktiv-cmd (`make bench`).
//!
//! One run measures the floors (spawn+wait of `/bin/true`, and a floor server built from the
//! same crates that only spawns a process per request and returns its stdout), then the runner
//! against a fake sidecar, prints one table with the targets as ratios to the floor of the
//! same run, and writes it as JSON.
//!
//! How it stays fair on a small shared machine:
//! - floor server and runner are built with the same profile and static linking, started and
//!   timed the same way (exec → first 200 on `/healthz`), and measured by the same client;
//! - they take turns in short rounds, alternating who goes first, so that other load on the
//!   machine falls on both alike;
//! - CPU is the server process's own utime+stime (children excluded), before/after its turns;
//! - the runner gets `CMD_MAX_INFLIGHT=64` so that c=16 measures work, not `cmd.busy`.
//!
//! Which `Direktiv-TempDir` each request carries (the table's `TempDir` column, and the
//! `direktiv_tempdir` of each row in the JSON):
//! - `fixed`: one directory the harness makes once under its own temp dir and sends with every
//!   request, as Direktiv main always sends `/tmp`. Direktiv ≤ v0.10 sends `/mnt/shared/<aid>`,
//!   which its sidecar makes before the call and removes after: that work is the sidecar's, not
//!   the runner's. The c=1 and c=16 `true` runs, the peak RSS after them, `seq 1 100000` and the
//!   50 ms sidecar runs use it, and the targets are judged on them.
//! - `none`: no header, so the runner makes and removes a private temp dir for every request.
//!   The "private temp dir" rows measure `true` at c=16 this way, for information (no target),
//!   to show what that path costs.
//!
//! The floor server ignores the header; it gets the same requests as the runner.
//!
//! ```text
//! direktiv-cmd-bench [--runner PATH] [--out PATH]   run everything
//! direktiv-cmd-bench floor-server                    serve as the floor server (used by the run)
//! direktiv-cmd-bench sidecar                         serve the fake sidecar alone (for profiling)
//! direktiv-cmd-bench load ADDR C N BODY [TEMPDIR]     N posts of BODY at concurrency C to a
//!                                                     loopback ADDR, with TEMPDIR as
//!                                                     Direktiv-TempDir if given; stats as JSON
//!                                                     (for profiling)
//! ```
//! Only loopback addresses are used; every loop is bounded in count and time.

mod client;
mod floor;
mod load;
mod measure;
mod process;
mod report;
mod sidecar;

use std::path::PathBuf;
use std::process::ExitCode;

use client::Error;
use measure::Target;
use report::Report;
use sidecar::Sidecar;

/// Spawn+wait samples of `/bin/true`.
const SPAWN_RUNS: usize = 1_000;

/// Where the runner and the JSON report are.
struct Options {
    runner: PathBuf,
    out: PathBuf,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("floor-server") => floor::serve(),
        Some("sidecar") => sidecar::serve(),
        Some("load") => load_only(&args[1..]),
        _ => options(&args).and_then(run),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
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
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--runner" => options.runner = PathBuf::from(value),
            "--out" => options.out = PathBuf::from(value),
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

/// The whole benchmark. Targets that fail are reported, not treated as errors: the table is
/// the product of this run either way.
fn run(options: Options) -> Result<(), Error> {
    let load_before = report::load_average();
    let scratch = Scratch::create()?;
    let temp_dir = scratch.fixed_temp_dir()?;
    eprintln!("spawn floor: {SPAWN_RUNS} × /bin/true");
    let spawn = measure::spawn_floor(SPAWN_RUNS)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut report = runtime.block_on(servers(&options, &temp_dir))?;
    report.spawn_true_p50_us = load::micros(spawn);
    report.binary_stripped_bytes = measure::stripped_size(&options.runner)?;
    report.load_average = [load_before, report::load_average()];
    report.judge();
    report.print();
    report.write_json(&options.out)?;
    println!(
        "\n{} of {} targets failed; written to {}",
        report.failed(),
        report.targets.len(),
        options.out.display()
    );
    Ok(())
}

/// Floor server and runner side by side, then the runner alone with a slow sidecar; requests
/// carry `temp_dir` as `Direktiv-TempDir` except in the private-temp-dir run.
async fn servers(options: &Options, temp_dir: &str) -> Result<Report, Error> {
    let sidecar = Sidecar::start().await?;
    let floor = Target::Floor {
        harness: std::env::current_exe()?,
    };
    let runner = Target::Runner {
        binary: options.runner.clone(),
        sidecar: sidecar.url(),
    };
    eprintln!(
        "floor server and direktiv-cmd, taking turns: starts, c=1, c=16, c=16 private temp dir, seq"
    );
    let mut measured = measure::side_by_side(&[floor, runner.clone()], &sidecar, temp_dir).await?;
    let (runner_report, runner_server) = measured.pop().ok_or("no runner measured")?;
    let (floor_report, floor_server) = measured.pop().ok_or("no floor measured")?;
    floor_server.stop().await?;
    eprintln!("direktiv-cmd: 50 ms sidecar");
    let slow = measure::slow_sidecar(&runner_server, &runner, &sidecar, temp_dir).await?;
    runner_server.stop().await?;

    Ok(Report {
        direktiv_tempdir: temp_dir.to_owned(),
        spawn_true_p50_us: 0.0,
        floor: floor_report,
        runner: runner_report,
        slow_sidecar: slow,
        binary_stripped_bytes: 0,
        load_average: Default::default(),
        targets: Vec::new(),
        information: Vec::new(),
    })
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
