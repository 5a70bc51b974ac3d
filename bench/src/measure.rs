//! The measurements, one small function each. Every function runs against a server started
//! by `process::Server` and returns plain numbers for the report.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::process::Command;

use crate::client::{Client, Error};
use crate::load::{self, percentile, Load, LoadStats};
use crate::process::Server;
use crate::sidecar::Sidecar;

/// Requests at c=1 before anything is measured (connections, allocator, page cache).
const WARMUP: usize = 200;
/// Requests measured at c=1 and at c=16.
const C1_REQUESTS: usize = 2_000;
const C16_REQUESTS: usize = 10_000;
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
    /// VmHWM right after the c=16 run.
    pub peak_rss_kib: u64,
    pub c1: LoadStats,
    pub c16: LoadStats,
    pub cpu_per_req_us_c1: f64,
    pub cpu_per_req_us_c16: f64,
    pub seq: Delivery,
}

/// One request whose output must arrive complete: how long it took and what arrived.
#[derive(Debug, Serialize)]
pub struct Delivery {
    pub ms: f64,
    pub status: u16,
    pub ok: bool,
    /// "all N lines in order", or what was wrong.
    pub check: String,
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

/// Median exec-to-ready time over several cold starts.
pub async fn ready_time(target: &Target) -> Result<Duration, Error> {
    let mut samples = Vec::with_capacity(STARTS);
    for _ in 0..STARTS {
        let server = target.start().await?;
        samples.push(server.ready);
        server.stop().await?;
    }
    samples.sort_unstable();
    Ok(percentile(&samples, 50.0))
}

/// The load, footprint and `seq` measurements of one server, in one process lifetime.
pub async fn server(target: &Target, sidecar: &Sidecar) -> Result<(ServerReport, Server), Error> {
    let ready = ready_time(target).await?;
    let server = target.start().await?;
    let idle_rss_kib = server.memory_kib("VmRSS")?;
    let body = target.body("true", false);
    load(&server, target, 1, WARMUP, body.clone(), "warmup").await?;
    sidecar.clear();
    let (c1, cpu_c1) = load(&server, target, 1, C1_REQUESTS, body.clone(), "c1").await?;
    sidecar.clear();
    let (c16, cpu_c16) = load(&server, target, 16, C16_REQUESTS, body, "c16").await?;
    sidecar.clear();
    let peak_rss_kib = server.memory_kib("VmHWM")?;
    let seq = seq(&server, target, sidecar).await?;
    let report = ServerReport {
        ready_ms: ready.as_secs_f64() * 1e3,
        idle_rss_kib,
        peak_rss_kib,
        cpu_per_req_us_c1: per_request_us(cpu_c1, &c1),
        cpu_per_req_us_c16: per_request_us(cpu_c16, &c16),
        c1,
        c16,
        seq,
    };
    Ok((report, server))
}

/// One load run, with the server's CPU time spent during it.
async fn load(
    server: &Server,
    target: &Target,
    concurrency: usize,
    requests: usize,
    body: Bytes,
    phase: &str,
) -> Result<(LoadStats, Duration), Error> {
    let load = Load {
        concurrency,
        requests,
        body,
        id_prefix: format!("bench-{}-{phase}", target.name()),
    };
    let before = server.cpu_time()?;
    let stats = load::run(server.addr, &load).await?;
    let cpu = server.cpu_time()?.saturating_sub(before);
    Ok((stats, cpu))
}

fn per_request_us(cpu: Duration, stats: &LoadStats) -> f64 {
    load::micros(cpu) / stats.requests.max(1) as f64
}

/// `seq 1 100000` with the fast sidecar, median of a few runs. For the runner, every line
/// must be at the sidecar, in order, when the response arrives; for the floor, in the body.
async fn seq(server: &Server, target: &Target, sidecar: &Sidecar) -> Result<Delivery, Error> {
    let line = format!("seq 1 {SEQ_LINES}");
    let expected = || (1..=SEQ_LINES).map(|n| n.to_string());
    let mut runs = Vec::with_capacity(SEQ_RUNS);
    for run in 0..SEQ_RUNS {
        let aid = format!("bench-{}-seq-{run}", target.name());
        let (elapsed, status, body) = request(server, &aid, target.body(&line, false)).await?;
        let check = match target {
            Target::Runner { .. } => check_lines(output_lines(&sidecar.lines(&aid)), expected()),
            Target::Floor { .. } => check_lines(String::from_utf8_lossy(&body).lines(), expected()),
        };
        runs.push(delivery(elapsed, status, check));
        sidecar.clear();
    }
    runs.sort_by(|a, b| a.ms.total_cmp(&b.ms));
    let failed = runs.iter().position(|d| !d.ok);
    Ok(runs.swap_remove(failed.unwrap_or(SEQ_RUNS / 2)))
}

/// The two big outputs against a sidecar that answers each post after 50 ms.
pub async fn slow_sidecar(
    server: &Server,
    target: &Target,
    sidecar: &Sidecar,
) -> Result<SlowReport, Error> {
    sidecar.set_delay(Duration::from_millis(50));
    let lines = format!("seq 1 {SLOW_LINES}");
    let lines_2000 = delivered(
        server,
        target,
        sidecar,
        "slow-lines",
        target.body(&lines, false),
        || (1..=SLOW_LINES).map(|n| n.to_string()),
    )
    .await;
    let big = format!("head -c {BIG_BYTES} /dev/zero | tr '\\0' 'x' | fold -w {BIG_WIDTH}");
    let output_2mb = delivered(
        server,
        target,
        sidecar,
        "slow-2mb",
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

/// One request whose output lines must all be at the sidecar when the response arrives.
async fn delivered<I: Iterator<Item = String>>(
    server: &Server,
    target: &Target,
    sidecar: &Sidecar,
    phase: &str,
    body: Bytes,
    expected: impl Fn() -> I,
) -> Result<Delivery, Error> {
    let aid = format!("bench-{}-{phase}", target.name());
    let (elapsed, status, _) = request(server, &aid, body).await?;
    let check = check_lines(output_lines(&sidecar.lines(&aid)), expected());
    sidecar.clear();
    Ok(delivery(elapsed, status, check))
}

/// One timed `POST /` on a fresh keep-alive connection.
async fn request(server: &Server, aid: &str, body: Bytes) -> Result<(Duration, u16, Bytes), Error> {
    let mut client = Client::connect(server.addr).await?;
    let started = Instant::now();
    let reply = client.post(aid, body).await?;
    Ok((started.elapsed(), reply.status.as_u16(), reply.body))
}

fn delivery(elapsed: Duration, status: u16, check: Result<usize, String>) -> Delivery {
    let ok = status == 200 && check.is_ok();
    let check = match check {
        Ok(n) => format!("all {n} lines in order"),
        Err(why) => why,
    };
    Delivery {
        ms: elapsed.as_secs_f64() * 1e3,
        status,
        ok,
        check,
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
}
