//! The measurements, one small function each. Every function runs against a server started
//! by `process::Server` and returns plain numbers for the report.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::process::Command;

use crate::client::{Client, Error};
use crate::load::{self, percentile, Load, LoadStats, Sample};
use crate::process::Server;
use crate::sidecar::Sidecar;

/// Requests at c=1 before anything is measured (connections, allocator, page cache).
const WARMUP: usize = 200;
/// Requests measured at c=1 and at c=16.
const C1_REQUESTS: usize = 2_000;
const C16_REQUESTS: usize = 10_000;
/// Turns each server gets in a load measurement.
const ROUNDS: usize = 4;
/// Cold starts timed per server; the median is reported.
const STARTS: usize = 5;
/// Runs of `seq 1 100000` per server; the median is reported.
const SEQ_RUNS: usize = 3;
const SEQ_LINES: u32 = 100_000;
/// The slow-sidecar runs: lines of the first command, bytes and line width of the second.
const SLOW_LINES: u32 = 2_000;
const BIG_BYTES: usize = 2_000_000;
const BIG_WIDTH: usize = 100;

/// The server under measurement, and how to talk to it.
#[derive(Clone)]
pub enum Target {
    /// The runner binary, logging to the fake sidecar.
    Runner { binary: PathBuf, sidecar: String },
    /// This harness binary re-executed as the floor server.
    Floor { harness: PathBuf },
}

impl Target {
    fn command(&self) -> Command {
        match self {
            Target::Runner { binary, sidecar } => {
                let mut command = Command::new(binary);
                command
                    .env("PORT", "0")
                    .env("DIREKTIV_HTTP_BACKEND", sidecar)
                    // The default of 10 in-flight requests would turn c=16 into `cmd.busy`.
                    .env("CMD_MAX_INFLIGHT", "64")
                    .env_remove("DIREKTIV_DEV_MODE")
                    .env_remove("RUST_LOG")
                    .env_remove("CMD_LOG_FORMAT");
                command
            }
            Target::Floor { harness } => {
                let mut command = Command::new(harness);
                command.arg("floor-server");
                command
            }
        }
    }

    /// The request body that runs `line`: the runner's native JSON, or the floor's plain text.
    fn body(&self, line: &str, shell: bool) -> Bytes {
        match self {
            Target::Runner { .. } => {
                let request = serde_json::json!({"commands": [{"command": line, "shell": shell}]});
                Bytes::from(request.to_string())
            }
            Target::Floor { .. } => Bytes::from(line.to_owned()),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Target::Runner { .. } => "runner",
            Target::Floor { .. } => "floor",
        }
    }

    pub async fn start(&self) -> Result<Server, Error> {
        Server::start(self.command()).await
    }
}

/// Everything measured on one server.
#[derive(Debug, Serialize)]
pub struct ServerReport {
    /// Median time from exec to the first 200 on `/healthz`.
    pub ready_ms: f64,
    pub idle_rss_kib: u64,
    /// VmHWM right after the c=16 run with the fixed temp dir (before the private one).
    pub peak_rss_kib: u64,
    /// `true` with the fixed `Direktiv-TempDir`, as Direktiv calls the runner.
    pub c1: LoadRun,
    pub c16: LoadRun,
    /// `true` with no `Direktiv-TempDir`: a private temp dir per request (no target).
    pub c16_private_temp_dir: LoadRun,
    pub seq: Delivery,
}

/// One load measurement of one server.
#[derive(Debug, Serialize)]
pub struct LoadRun {
    /// The `Direktiv-TempDir` every request carried; null: none.
    pub direktiv_tempdir: Option<String>,
    #[serde(flatten)]
    pub stats: LoadStats,
    /// The server's own CPU time (children excluded) per request.
    pub cpu_per_req_us: f64,
}

/// One request whose output must arrive complete: how long it took and what arrived.
#[derive(Debug, Serialize)]
pub struct Delivery {
    /// The `Direktiv-TempDir` the request carried; null: none.
    pub direktiv_tempdir: Option<String>,
    pub ms: f64,
    pub status: u16,
    pub ok: bool,
    /// "all N lines in order", or what was wrong.
    pub check: String,
    /// Log posts the sidecar got for the request (how well the runner coalesces lines).
    pub sidecar_posts: usize,
}

/// The runner with a sidecar that takes 50 ms per post.
#[derive(Debug, Serialize)]
pub struct SlowReport {
    pub lines_2000: Delivery,
    pub output_2mb: Delivery,
}

/// p50 of spawn+wait of `/bin/true`, the cost no command runner can avoid.
pub fn spawn_floor(runs: usize) -> Result<Duration, Error> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let status = std::process::Command::new("/bin/true").status()?;
        samples.push(started.elapsed());
        if !status.success() {
            return Err("/bin/true failed".into());
        }
    }
    samples.sort_unstable();
    Ok(percentile(&samples, 50.0))
}

/// The servers take turns in every measurement, in short rounds and alternating who goes
/// first, so that load from elsewhere on the (shared, 2-core) machine falls on both alike.
fn turns(round: usize, servers: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..servers).collect();
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

/// Measures every target side by side and returns each report with its still-running server
/// (the runner stays up for the slow-sidecar runs). Every request carries `temp_dir` as its
/// `Direktiv-TempDir`, except those of the private-temp-dir run, which carry none.
pub async fn side_by_side(
    targets: &[Target],
    sidecar: &Sidecar,
    temp_dir: &str,
) -> Result<Vec<(ServerReport, Server)>, Error> {
    let ready = ready_times(targets).await?;
    let mut servers = Vec::with_capacity(targets.len());
    for target in targets {
        servers.push(target.start().await?);
    }
    let idle = memory(&servers, "VmRSS")?;
    let fixed = Some(temp_dir);
    rounds(&servers, targets, sidecar, 1, WARMUP, fixed).await?;
    let c1 = rounds(&servers, targets, sidecar, 1, C1_REQUESTS, fixed).await?;
    let c16 = rounds(&servers, targets, sidecar, 16, C16_REQUESTS, fixed).await?;
    let peak = memory(&servers, "VmHWM")?;
    let private = rounds(&servers, targets, sidecar, 16, C16_REQUESTS, None).await?;
    let seq = seq(&servers, targets, sidecar, temp_dir).await?;
    let reports = (ready.into_iter().zip(idle).zip(peak))
        .zip(c1.into_iter().zip(c16).zip(private))
        .zip(seq)
        .map(
            |((((ready, idle), peak), ((c1, c16), private)), seq)| ServerReport {
                ready_ms: ready.as_secs_f64() * 1e3,
                idle_rss_kib: idle,
                peak_rss_kib: peak,
                c1,
                c16,
                c16_private_temp_dir: private,
                seq,
            },
        );
    Ok(reports.zip(servers).collect())
}

/// Median exec-to-ready time of each target over several cold starts.
async fn ready_times(targets: &[Target]) -> Result<Vec<Duration>, Error> {
    let mut samples = vec![Vec::with_capacity(STARTS); targets.len()];
    for round in 0..STARTS {
        for i in turns(round, targets.len()) {
            let server = targets[i].start().await?;
            samples[i].push(server.ready);
            server.stop().await?;
        }
    }
    Ok(samples.into_iter().map(median).collect())
}

/// A `VmRSS`-style figure of every server, now.
fn memory(servers: &[Server], field: &str) -> Result<Vec<u64>, Error> {
    servers.iter().map(|s| s.memory_kib(field)).collect()
}

/// `requests` runs of `true` at `concurrency` per server, each with `temp_dir` as its
/// `Direktiv-TempDir` (or none), in `ROUNDS` turns; with the server's own CPU time spent
/// during its turns.
async fn rounds(
    servers: &[Server],
    targets: &[Target],
    sidecar: &Sidecar,
    concurrency: usize,
    requests: usize,
    temp_dir: Option<&str>,
) -> Result<Vec<LoadRun>, Error> {
    let header = if temp_dir.is_some() { "fixed" } else { "none" };
    let mut totals: Vec<(Sample, Duration)> = targets.iter().map(|_| Default::default()).collect();
    for round in 0..ROUNDS {
        for i in turns(round, targets.len()) {
            let (server, target) = (&servers[i], &targets[i]);
            let load = Load {
                concurrency,
                requests: requests / ROUNDS,
                body: target.body("true", false),
                id_prefix: format!(
                    "bench-{}-c{concurrency}-{requests}-{header}-{round}",
                    target.name()
                ),
                temp_dir: temp_dir.map(str::to_owned),
            };
            let before = server.cpu_time()?;
            let sample = load::run(server.addr, &load).await?;
            totals[i].1 += server.cpu_time()?.saturating_sub(before);
            totals[i].0.absorb(sample);
            sidecar.clear();
        }
    }
    Ok(totals
        .into_iter()
        .map(|(sample, cpu)| LoadRun {
            direktiv_tempdir: temp_dir.map(str::to_owned),
            cpu_per_req_us: load::micros(cpu) / sample.requests().max(1) as f64,
            stats: sample.stats(concurrency),
        })
        .collect())
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    percentile(&samples, 50.0)
}

/// `seq 1 100000` with the fast sidecar and `temp_dir` as `Direktiv-TempDir`, a few runs per
/// server taking turns; the median run (or the first failed one) is reported.
async fn seq(
    servers: &[Server],
    targets: &[Target],
    sidecar: &Sidecar,
    temp_dir: &str,
) -> Result<Vec<Delivery>, Error> {
    let line = format!("seq 1 {SEQ_LINES}");
    let expected = || (1..=SEQ_LINES).map(|n| n.to_string());
    let mut runs: Vec<Vec<Delivery>> = targets.iter().map(|_| Vec::new()).collect();
    for run in 0..SEQ_RUNS {
        for i in turns(run, targets.len()) {
            let (server, target) = (&servers[i], &targets[i]);
            let aid = format!("bench-{}-seq-{run}", target.name());
            let body = target.body(&line, false);
            let run = delivered(server, target, sidecar, &aid, temp_dir, body, expected);
            runs[i].push(run.await?);
        }
    }
    Ok(runs.into_iter().map(median_delivery).collect())
}

fn median_delivery(mut runs: Vec<Delivery>) -> Delivery {
    runs.sort_by(|a, b| a.ms.total_cmp(&b.ms));
    let failed = runs.iter().position(|d| !d.ok);
    runs.swap_remove(failed.unwrap_or(runs.len() / 2))
}

/// The two big outputs against a sidecar that answers each post after 50 ms, with `temp_dir`
/// as `Direktiv-TempDir`.
pub async fn slow_sidecar(
    server: &Server,
    target: &Target,
    sidecar: &Sidecar,
    temp_dir: &str,
) -> Result<SlowReport, Error> {
    sidecar.set_delay(Duration::from_millis(50));
    let lines = format!("seq 1 {SLOW_LINES}");
    let lines_2000 = delivered(
        server,
        target,
        sidecar,
        &format!("bench-{}-slow-lines", target.name()),
        temp_dir,
        target.body(&lines, false),
        || (1..=SLOW_LINES).map(|n| n.to_string()),
    )
    .await;
    let big = format!("head -c {BIG_BYTES} /dev/zero | tr '\\0' 'x' | fold -w {BIG_WIDTH}");
    let output_2mb = delivered(
        server,
        target,
        sidecar,
        &format!("bench-{}-slow-2mb", target.name()),
        temp_dir,
        target.body(&big, true),
        || std::iter::repeat_n("x".repeat(BIG_WIDTH), BIG_BYTES / BIG_WIDTH),
    )
    .await;
    sidecar.set_delay(Duration::ZERO);
    Ok(SlowReport {
        lines_2000: lines_2000?,
        output_2mb: output_2mb?,
    })
}

/// One request whose output must arrive complete: for the runner, every line at the sidecar,
/// in order, by the time the response arrives; for the floor server, in the response body.
async fn delivered<I: Iterator<Item = String>>(
    server: &Server,
    target: &Target,
    sidecar: &Sidecar,
    aid: &str,
    temp_dir: &str,
    body: Bytes,
    expected: impl Fn() -> I,
) -> Result<Delivery, Error> {
    let (elapsed, status, reply) = request(server, aid, temp_dir, body).await?;
    let posts = sidecar.posts(aid);
    let check = match target {
        Target::Runner { .. } => check_lines(output_lines(&sidecar.lines(aid)), expected()),
        Target::Floor { .. } => check_lines(String::from_utf8_lossy(&reply).lines(), expected()),
    };
    sidecar.clear();
    Ok(delivery(elapsed, status, posts, check, temp_dir))
}

/// One timed `POST /` with `temp_dir` as `Direktiv-TempDir`, on a fresh keep-alive connection.
async fn request(
    server: &Server,
    aid: &str,
    temp_dir: &str,
    body: Bytes,
) -> Result<(Duration, u16, Bytes), Error> {
    let mut client = Client::connect(server.addr).await?;
    let started = Instant::now();
    let reply = client.post(aid, Some(temp_dir), body).await?;
    Ok((started.elapsed(), reply.status.as_u16(), reply.body))
}

fn delivery(
    elapsed: Duration,
    status: u16,
    sidecar_posts: usize,
    check: Result<usize, String>,
    temp_dir: &str,
) -> Delivery {
    let ok = status == 200 && check.is_ok();
    let check = match check {
        Ok(n) => format!("all {n} lines in order"),
        Err(why) => why,
    };
    Delivery {
        direktiv_tempdir: Some(temp_dir.to_owned()),
        ms: elapsed.as_secs_f64() * 1e3,
        status,
        ok,
        check,
        sidecar_posts,
    }
}

/// The command's own lines at the sidecar: the runner's `running command '...'` lines removed.
fn output_lines(lines: &[String]) -> impl Iterator<Item = &str> {
    lines
        .iter()
        .map(String::as_str)
        .filter(|l| !l.starts_with("running command"))
}

/// Compares received lines with the expected ones: the count on success, else the first
/// difference.
fn check_lines<'a>(
    received: impl Iterator<Item = &'a str>,
    mut expected: impl Iterator<Item = String>,
) -> Result<usize, String> {
    let mut count = 0;
    for got in received {
        match expected.next() {
            Some(want) if want == got => count += 1,
            Some(want) => {
                return Err(format!(
                    "line {count}: got {got:.40?}, expected {want:.40?}"
                ))
            }
            None => {
                return Err(format!(
                    "more lines than expected: extra {got:.40?} after {count}"
                ))
            }
        }
    }
    match expected.next() {
        None => Ok(count),
        Some(want) => Err(format!(
            "only {count} lines arrived; next expected {want:.40?}"
        )),
    }
}

/// Size of the binary after `strip` (the file itself when `strip` is not installed).
pub fn stripped_size(binary: &Path) -> Result<u64, Error> {
    let copy = std::env::temp_dir().join(format!(
        "direktiv-cmd-bench-stripped-{}",
        std::process::id()
    ));
    let stripped = std::process::Command::new("strip")
        .arg("-o")
        .arg(&copy)
        .arg(binary)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let size = std::fs::metadata(if stripped { &copy } else { binary })?.len();
    let _ = std::fs::remove_file(&copy);
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(n: u32) -> impl Iterator<Item = String> {
        (1..=n).map(|i| i.to_string())
    }

    #[test]
    fn line_check_counts_and_finds_differences() {
        assert_eq!(check_lines(["1", "2", "3"].into_iter(), numbers(3)), Ok(3));
        assert!(check_lines(["1", "3", "2"].into_iter(), numbers(3))
            .unwrap_err()
            .starts_with("line 1"));
        assert!(check_lines(["1", "2"].into_iter(), numbers(3))
            .unwrap_err()
            .starts_with("only 2"));
        assert!(check_lines(["1", "2", "3", "4"].into_iter(), numbers(3))
            .unwrap_err()
            .starts_with("more"));
    }

    #[test]
    fn the_runner_s_own_lines_are_not_output() {
        let lines = vec![
            "running command 'seq 1 2'".to_owned(),
            "1".to_owned(),
            "2".to_owned(),
        ];
        assert_eq!(check_lines(output_lines(&lines), numbers(2)), Ok(2));
    }

    #[test]
    fn servers_alternate_who_goes_first() {
        assert_eq!(turns(0, 2), vec![0, 1]);
        assert_eq!(turns(1, 2), vec![1, 0]);
        assert_eq!(turns(2, 2), vec![0, 1]);
    }
}
