//! The measurements, one small function each. Every function runs against a server started
//! by `process::Server` and returns plain numbers for the report.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::client::Error;
use crate::delivery::{self, delivered, same, Delivery, Expected};
use crate::load::{self, percentile, Load, LoadStats, Sample};
use crate::process::Server;
use crate::sidecar::Sidecar;
use crate::target::{runner_command, runner_shell, Arm, LinesAt, Mode, Target};

/// Requests at c=1 before anything is measured (connections, allocator, page cache).
const WARMUP: usize = 200;
/// Requests measured per server at c=1 and at c=16 (with the fixed temp dir), and at c=16 with
/// a private temp dir (information only, and slow when the disk is busy, so fewer).
const C1_REQUESTS: usize = 1_200;
const C16_REQUESTS: usize = 6_000;
const C16_PRIVATE_REQUESTS: usize = 3_000;
/// Turns each server gets in a load measurement (a multiple of 2 and 3, so that with two or
/// three servers each goes first, middle and last equally often).
const ROUNDS: usize = 6;
/// Turns each of two arms gets when they are compared with each other (`paired`).
const PAIRED_ROUNDS: usize = 24;
/// Cold starts timed per server; the median is reported.
const STARTS: usize = 11;
/// Runs of `seq 1 100000` per server; the median is reported. Single requests on a shared
/// machine vary by several milliseconds, a floor's as much as the runner's: with three or nine
/// runs the protocol floor's median moved between 5.2 and 11.0 ms from one run to the next.
const SEQ_RUNS: usize = 25;
/// Single `true` requests per server after a quiet moment of `IDLE_GAP`; the median is reported.
const IDLE_RUNS: usize = 15;
const IDLE_GAP: Duration = Duration::from_millis(250);
const SEQ_LINES: u32 = 100_000;
/// The slow-sidecar runs: lines of the first command, bytes and line width of the second.
const SLOW_LINES: u32 = 2_000;
const BIG_BYTES: usize = 2_000_000;
const BIG_WIDTH: usize = 100;

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
    /// One `true` after `IDLE_GAP` without requests, on a fresh connection: what a function
    /// called now and then waits (work a kernel does lazily shows here, not under load).
    pub after_idle: Delivery,
}

/// What pod mode measures on one server: the figures the targets judge.
#[derive(Debug, Serialize)]
pub struct PodServerReport {
    pub ready_ms: f64,
    pub idle_rss_kib: u64,
    /// VmHWM right after the c=16 run.
    pub peak_rss_kib: u64,
    pub c1: LoadRun,
    pub c16: LoadRun,
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

/// The servers take turns in every measurement, in short rounds, each round starting with the
/// next server, so that load from elsewhere on the (shared, 2-core) machine falls on all alike.
pub fn turns(round: usize, servers: usize) -> Vec<usize> {
    (0..servers).map(|i| (round + i) % servers).collect()
}

/// Measures every target side by side and returns each report with its still-running server
/// (the runner stays up for the runs that follow). Every request carries `temp_dir` as its
/// `Direktiv-TempDir`, except those of the private-temp-dir run, which carry none.
pub async fn side_by_side(
    targets: &[Target],
    sidecar: &Sidecar,
    temp_dir: &str,
) -> Result<Vec<(ServerReport, Server)>, Error> {
    let ready = ready_times(targets, &Mode::Host).await?;
    let mut servers = Vec::with_capacity(targets.len());
    for target in targets {
        servers.push(target.start(&Mode::Host).await?);
    }
    let idle = memory(&servers, "VmRSS")?;
    let arms = |line: &str| -> Vec<Arm<'_>> {
        targets
            .iter()
            .zip(&servers)
            .map(|(target, server)| Arm::of(target, server, line))
            .collect()
    };
    let fixed = Some(temp_dir);
    let true_arms = arms("true");
    eprintln!("  warm-up, c=1, c=16");
    rounds(&true_arms, sidecar, 1, WARMUP, fixed).await?;
    let c1 = rounds(&true_arms, sidecar, 1, C1_REQUESTS, fixed).await?;
    let c16 = rounds(&true_arms, sidecar, 16, C16_REQUESTS, fixed).await?;
    let peak = memory(&servers, "VmHWM")?;
    eprintln!("  c=16 with a private temp dir per request");
    let private = rounds(&true_arms, sidecar, 16, C16_PRIVATE_REQUESTS, None).await?;
    eprintln!("  seq 1 {SEQ_LINES}");
    let seq = seq(&arms(&format!("seq 1 {SEQ_LINES}")), sidecar, temp_dir).await?;
    eprintln!("  true after {} ms idle", IDLE_GAP.as_millis());
    let after_idle = after_idle(&true_arms, sidecar, temp_dir).await?;
    let reports = (ready.into_iter().zip(idle).zip(peak))
        .zip(c1.into_iter().zip(c16).zip(private))
        .zip(seq.into_iter().zip(after_idle))
        .map(
            |((((ready, idle), peak), ((c1, c16), private)), (seq, after_idle))| ServerReport {
                ready_ms: ready.as_secs_f64() * 1e3,
                idle_rss_kib: idle,
                peak_rss_kib: peak,
                c1,
                c16,
                c16_private_temp_dir: private,
                seq,
                after_idle,
            },
        );
    Ok(reports.zip(servers).collect())
}

/// The load measurements of `side_by_side` in pod mode (pod.rs), each server stopped at the
/// end: start, memory, `true` at c=1 and c=16 with `temp_dir` as `Direktiv-TempDir`.
pub async fn pod_side_by_side(
    targets: &[Target],
    sidecar: &Sidecar,
    temp_dir: &str,
    mode: &Mode,
) -> Result<Vec<PodServerReport>, Error> {
    let ready = ready_times(targets, mode).await?;
    let mut servers = Vec::with_capacity(targets.len());
    for target in targets {
        servers.push(target.start(mode).await?);
    }
    let measured = async {
        let idle = memory(&servers, "VmRSS")?;
        let true_arms: Vec<Arm<'_>> = targets
            .iter()
            .zip(&servers)
            .map(|(target, server)| Arm::of(target, server, "true"))
            .collect();
        let fixed = Some(temp_dir);
        eprintln!("  pod mode: warm-up, c=1, c=16");
        rounds(&true_arms, sidecar, 1, WARMUP, fixed).await?;
        let c1 = rounds(&true_arms, sidecar, 1, C1_REQUESTS, fixed).await?;
        let c16 = rounds(&true_arms, sidecar, 16, C16_REQUESTS, fixed).await?;
        let peak = memory(&servers, "VmHWM")?;
        Ok::<_, Error>(
            (ready.into_iter().zip(idle).zip(peak))
                .zip(c1.into_iter().zip(c16))
                .map(|(((ready, idle), peak), (c1, c16))| PodServerReport {
                    ready_ms: ready.as_secs_f64() * 1e3,
                    idle_rss_kib: idle,
                    peak_rss_kib: peak,
                    c1,
                    c16,
                })
                .collect(),
        )
    }
    .await;
    for server in servers {
        server.stop().await?;
    }
    measured
}

/// Median exec-to-ready time of each target over several cold starts.
async fn ready_times(targets: &[Target], mode: &Mode) -> Result<Vec<Duration>, Error> {
    let mut samples = vec![Vec::with_capacity(STARTS); targets.len()];
    for round in 0..STARTS {
        for i in turns(round, targets.len()) {
            let server = targets[i].start(mode).await?;
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

/// `requests` runs of each arm's request at `concurrency`, each with `temp_dir` as its
/// `Direktiv-TempDir` (or none), in `ROUNDS` turns; with the server's own CPU time spent
/// during the arm's turns.
pub async fn rounds(
    arms: &[Arm<'_>],
    sidecar: &Sidecar,
    concurrency: usize,
    requests: usize,
    temp_dir: Option<&str>,
) -> Result<Vec<LoadRun>, Error> {
    rounds_of(arms, sidecar, concurrency, requests, ROUNDS, temp_dir).await
}

/// `true` at c=1 on two runners (or one runner with two bodies), after a warm-up, in
/// `PAIRED_ROUNDS` short turns: a ratio of a few percent between them must not be decided by
/// which of them a slow moment of a shared machine fell on.
pub async fn paired(
    arms: &[Arm<'_>],
    sidecar: &Sidecar,
    requests: usize,
    temp_dir: &str,
) -> Result<Vec<LoadRun>, Error> {
    rounds_of(arms, sidecar, 1, WARMUP, ROUNDS, Some(temp_dir)).await?;
    rounds_of(arms, sidecar, 1, requests, PAIRED_ROUNDS, Some(temp_dir)).await
}

async fn rounds_of(
    arms: &[Arm<'_>],
    sidecar: &Sidecar,
    concurrency: usize,
    requests: usize,
    rounds: usize,
    temp_dir: Option<&str>,
) -> Result<Vec<LoadRun>, Error> {
    let header = if temp_dir.is_some() { "fixed" } else { "none" };
    let mut totals: Vec<(Sample, Duration)> = arms.iter().map(|_| Default::default()).collect();
    for round in 0..rounds {
        for i in turns(round, arms.len()) {
            let arm = &arms[i];
            let load = Load {
                concurrency,
                requests: requests / rounds,
                body: arm.body.clone(),
                id_prefix: format!("bench-{}-c{concurrency}-{header}", arm.name),
                temp_dir: temp_dir.map(str::to_owned),
            };
            let before = arm.server.cpu_time()?;
            let sample = load::run(arm.server.addr, &load).await?;
            totals[i].1 += arm.server.cpu_time()?.saturating_sub(before);
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

/// The middle sample (nearest rank; zero when there are none).
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    percentile(&samples, 50.0)
}

/// `seq 1 100000` with the fast sidecar, a few runs per server taking turns.
async fn seq(arms: &[Arm<'_>], sidecar: &Sidecar, temp_dir: &str) -> Result<Vec<Delivery>, Error> {
    let numbers = |_: usize| Expected {
        lines: (1..=SEQ_LINES).map(|n| n.to_string()),
        matches: &same,
    };
    deliveries(arms, sidecar, temp_dir, SEQ_RUNS, numbers).await
}

/// `true` once after `IDLE_GAP` without a request, `IDLE_RUNS` times per server taking turns.
pub async fn after_idle(
    arms: &[Arm<'_>],
    sidecar: &Sidecar,
    temp_dir: &str,
) -> Result<Vec<Delivery>, Error> {
    let mut all: Vec<Vec<Delivery>> = arms.iter().map(|_| Vec::with_capacity(IDLE_RUNS)).collect();
    for run in 0..IDLE_RUNS {
        for i in turns(run, arms.len()) {
            tokio::time::sleep(IDLE_GAP).await;
            let nothing = Expected {
                lines: std::iter::empty::<String>(),
                matches: &same,
            };
            all[i].push(delivered(&arms[i], sidecar, temp_dir, nothing).await?);
        }
    }
    all.into_iter().map(delivery::median).collect()
}

/// `runs` deliveries of each arm's request, taking turns; the median run of each arm (or its
/// first failed one). `expected(i)` is what arm `i` must deliver.
pub async fn deliveries<'m, I, F>(
    arms: &[Arm<'_>],
    sidecar: &Sidecar,
    temp_dir: &str,
    runs: usize,
    expected: F,
) -> Result<Vec<Delivery>, Error>
where
    I: Iterator<Item = String>,
    F: Fn(usize) -> Expected<'m, I>,
{
    let mut all: Vec<Vec<Delivery>> = arms.iter().map(|_| Vec::with_capacity(runs)).collect();
    for run in 0..runs {
        for i in turns(run, arms.len()) {
            all[i].push(delivered(&arms[i], sidecar, temp_dir, expected(i)).await?);
        }
    }
    all.into_iter().map(delivery::median).collect()
}

/// `BIG_BYTES` of `x` in lines of `BIG_WIDTH`, made by the shell.
pub fn big_output_script() -> String {
    format!("head -c {BIG_BYTES} /dev/zero | tr '\\0' 'x' | fold -w {BIG_WIDTH}")
}

/// The lines of `big_output_script`.
pub fn big_output_lines() -> impl Iterator<Item = String> {
    std::iter::repeat_n("x".repeat(BIG_WIDTH), BIG_BYTES / BIG_WIDTH)
}

/// The two big outputs against a sidecar that answers each post after 50 ms, with `temp_dir`
/// as `Direktiv-TempDir`.
pub async fn slow_sidecar(
    runner: &Server,
    sidecar: &Sidecar,
    temp_dir: &str,
) -> Result<SlowReport, Error> {
    sidecar.set_delay(Duration::from_millis(50));
    let arm = |body| Arm {
        name: "runner-slow-sidecar",
        server: runner,
        body,
        lines_at: LinesAt::Sidecar,
    };
    let lines = Expected {
        lines: (1..=SLOW_LINES).map(|n| n.to_string()),
        matches: &same,
    };
    let body = runner_command(&format!("seq 1 {SLOW_LINES}"));
    let lines_2000 = delivered(&arm(body), sidecar, temp_dir, lines).await;
    let big = Expected {
        lines: big_output_lines(),
        matches: &same,
    };
    let body = runner_shell(&big_output_script());
    let output_2mb = delivered(&arm(body), sidecar, temp_dir, big).await;
    sidecar.set_delay(Duration::ZERO);
    Ok(SlowReport {
        lines_2000: lines_2000?,
        output_2mb: output_2mb?,
    })
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

    #[test]
    fn servers_alternate_who_goes_first() {
        assert_eq!(turns(0, 3), vec![0, 1, 2]);
        assert_eq!(turns(1, 3), vec![1, 2, 0]);
        assert_eq!(turns(2, 3), vec![2, 0, 1]);
        assert_eq!(turns(3, 3), vec![0, 1, 2]);
        assert_eq!(turns(1, 2), vec![1, 0]);
    }

    #[test]
    fn the_median_is_the_middle_sample() {
        let ms = |list: &[u64]| list.iter().map(|&n| Duration::from_millis(n)).collect();
        assert_eq!(median(ms(&[3, 1, 2])), Duration::from_millis(2));
        assert_eq!(median(ms(&[4, 1, 3, 2])), Duration::from_millis(2));
        assert_eq!(median(Vec::new()), Duration::ZERO);
    }
}
