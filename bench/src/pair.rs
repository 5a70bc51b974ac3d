//! `direktiv-cmd-bench pair A B`: two builds of the runner side by side, for telling whether a
//! change made the runner faster. On a shared machine whose speed drifts by tens of percent
//! within minutes, two whole runs one after the other compare the machine's moments more than
//! the builds; here both runners serve at once, against one sidecar, and take turns in short
//! rounds (the order alternating), so that a slow moment falls on both.
//!
//! Per build it prints p50 (the median of the turns' p50s, which one slow turn does not move),
//! requests per second, and CPU per request: the runner's own and its children's, which hold
//! each command's work between its clone and its exec.

use std::path::PathBuf;
use std::time::Duration;

use axum::body::Bytes;

use crate::client::Error;
use crate::load::{self, Load, Sample};
use crate::measure::{median, turns};
use crate::sidecar::Sidecar;
use crate::target::{Mode, Target};

/// What `pair` compares, and how much of it.
#[derive(Debug, PartialEq)]
pub struct PairOptions {
    pub builds: [PathBuf; 2],
    pub concurrency: usize,
    /// Requests per build, in all.
    pub requests: usize,
    pub turns: usize,
    pub body: String,
}

/// Requests per build and turns unless told: about 20 seconds at c=1 on a 2-core machine.
const REQUESTS: usize = 6_000;
const TURNS: usize = 30;

/// Requests per build before the turns that count.
const WARMUP: usize = 200;

impl PairOptions {
    /// `A B [--concurrency C] [--requests N] [--turns T] [--body JSON]`.
    pub fn from_args(args: &[String]) -> Result<Self, Error> {
        let usage = "usage: pair A B [--concurrency C] [--requests N] [--turns T] [--body JSON]";
        let (a, b, flags) = match args {
            [a, b, flags @ ..] if !a.starts_with("--") && !b.starts_with("--") => (a, b, flags),
            _ => return Err(usage.into()),
        };
        let mut options = PairOptions {
            builds: [PathBuf::from(a), PathBuf::from(b)],
            concurrency: 1,
            requests: REQUESTS,
            turns: TURNS,
            body: r#"{"commands":[{"command":"true"}]}"#.to_owned(),
        };
        let mut flags = flags.iter();
        while let Some(flag) = flags.next() {
            let value = flags
                .next()
                .ok_or_else(|| format!("{flag} needs a value"))?;
            let count = || {
                value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{flag} needs a positive number, not {value:?}"))
            };
            match flag.as_str() {
                "--concurrency" => options.concurrency = count()?,
                "--requests" => options.requests = count()?,
                "--turns" => options.turns = count()?,
                "--body" => {
                    serde_json::from_str::<serde_json::Value>(value)
                        .map_err(|e| format!("--body is not JSON: {e}"))?;
                    options.body = value.clone();
                }
                _ => return Err(format!("unknown argument {flag}; {usage}").into()),
            }
        }
        if options.requests < options.turns * options.concurrency {
            return Err(format!(
                "--requests {} is fewer than --turns {} × --concurrency {}",
                options.requests, options.turns, options.concurrency
            )
            .into());
        }
        for build in &options.builds {
            if !build.is_file() {
                return Err(format!("no runner binary at {}", build.display()).into());
            }
        }
        Ok(options)
    }
}

/// What one build did over all its turns.
struct Totals {
    sample: Sample,
    turn_p50s: Vec<Duration>,
    own: Duration,
    children: Duration,
}

/// Runs the comparison and prints it.
pub fn run(options: &PairOptions) -> Result<(), Error> {
    let scratch = crate::Scratch::create()?;
    let temp_dir = scratch.fixed_temp_dir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let totals = runtime.block_on(compare(options, &temp_dir))?;
    let mut summaries = Vec::with_capacity(2);
    for (name, (build, totals)) in ["A", "B"].iter().zip(options.builds.iter().zip(totals)) {
        let requests = totals.sample.requests().max(1) as f64;
        let per_request = |cpu: Duration| cpu.as_secs_f64() * 1e6 / requests;
        let (own, children) = (per_request(totals.own), per_request(totals.children));
        let turns = totals.turn_p50s.len();
        let p50 = load::micros(median(totals.turn_p50s));
        let stats = totals.sample.stats(options.concurrency);
        println!(
            "{name} {}: p50 {p50:.0} µs (median of {} turns), {:.0} requests/s, CPU per request \
             {own:.0} µs own + {children:.0} µs children",
            build.display(),
            turns,
            stats.req_per_s,
        );
        summaries.push((p50, own + children));
    }
    if let [(p50_a, cpu_a), (p50_b, cpu_b)] = summaries[..] {
        println!(
            "B / A: p50 {:.3}×, CPU per request (own + children) {:.3}×",
            p50_b / p50_a,
            cpu_b / cpu_a
        );
    }
    Ok(())
}

/// Both builds started against one sidecar, warmed up, then taking turns.
async fn compare(options: &PairOptions, temp_dir: &str) -> Result<[Totals; 2], Error> {
    let sidecar = Sidecar::start().await?;
    let target = |binary: &PathBuf| Target::Runner {
        binary: binary.clone(),
        sidecar: sidecar.url(),
        env: Vec::new(),
    };
    let servers = [
        target(&options.builds[0]).start(&Mode::Host).await?,
        target(&options.builds[1]).start(&Mode::Host).await?,
    ];
    let body = Bytes::from(options.body.clone());
    let load = |requests: usize| Load {
        concurrency: options.concurrency,
        requests,
        body: body.clone(),
        id_prefix: "bench-pair".to_owned(),
        temp_dir: Some(temp_dir.to_owned()),
    };
    for server in &servers {
        load::run(server.addr, &load(WARMUP)).await?;
    }
    let mut totals = [(); 2].map(|()| Totals {
        sample: Sample::default(),
        turn_p50s: Vec::with_capacity(options.turns),
        own: Duration::ZERO,
        children: Duration::ZERO,
    });
    for turn in 0..options.turns {
        for i in turns(turn, servers.len()) {
            let server = &servers[i];
            let (own, children) = (server.cpu_time()?, server.children_cpu_time()?);
            let sample = load::run(server.addr, &load(options.requests / options.turns)).await?;
            totals[i].own += server.cpu_time()?.saturating_sub(own);
            totals[i].children += server.children_cpu_time()?.saturating_sub(children);
            totals[i].turn_p50s.push(sample.p50());
            totals[i].sample.absorb(sample);
            sidecar.clear();
        }
    }
    for (totals, server) in totals.iter().zip(&servers) {
        let errors = totals.sample.errors();
        if errors > 0 {
            return Err(format!("{errors} requests to {} failed", server.addr).into());
        }
    }
    let [a, b] = servers;
    a.stop().await?;
    b.stop().await?;
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn two_builds_and_flags_are_read_and_nonsense_is_refused() {
        let binary = std::env::current_exe().unwrap();
        let path = binary.to_str().unwrap();
        let options = PairOptions::from_args(&args(&[
            path,
            path,
            "--concurrency",
            "16",
            "--requests",
            "3200",
            "--body",
            r#"{"commands":[{"command":"seq 1 10"}]}"#,
        ]))
        .unwrap();
        assert_eq!(options.concurrency, 16);
        assert_eq!(options.requests, 3200);
        assert_eq!(options.turns, TURNS);
        assert!(options.body.contains("seq 1 10"));
        for wrong in [
            vec![path],
            vec![path, "--concurrency", "2"],
            vec![path, path, "--concurrency"],
            vec![path, path, "--concurrency", "0"],
            vec![path, path, "--turns", "x"],
            vec![path, path, "--body", "{not json"],
            vec![path, path, "--requests", "10", "--turns", "30"],
            vec![path, "/no/such/runner"],
            vec![path, path, "--what", "1"],
        ] {
            assert!(
                PairOptions::from_args(&args(&wrong)).is_err(),
                "{wrong:?} was taken"
            );
        }
    }
}
