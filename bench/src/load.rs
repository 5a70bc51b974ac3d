//! The load generator: a fixed number of requests over `concurrency` keep-alive connections,
//! each request timed on its own, the whole run bounded in time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use crate::client::{Client, Error};

/// A load run stops starting new requests after this long, whatever the count.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// What to send: the same body every time, a fresh action id per request.
pub struct Load {
    pub concurrency: usize,
    pub requests: usize,
    pub body: Bytes,
    /// Prefix of the `Direktiv-ActionID`; the request number is appended so ids never repeat.
    pub id_prefix: String,
}

/// The outcome of one load run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadStats {
    pub concurrency: usize,
    pub requests: usize,
    /// Requests that failed to complete or got a status other than 200.
    pub errors: usize,
    pub elapsed_s: f64,
    pub req_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// The first error seen, so a failing run says why.
    pub first_error: Option<String>,
}

/// What one worker saw.
#[derive(Default)]
struct WorkerLog {
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
}

/// Runs the load against `addr` and summarises it.
pub async fn run(addr: SocketAddr, load: &Load) -> Result<LoadStats, Error> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(load.concurrency);
    for _ in 0..load.concurrency {
        let client = Client::connect(addr).await?;
        let job = Job {
            next: next.clone(),
            total: load.requests,
            body: load.body.clone(),
            id_prefix: load.id_prefix.clone(),
            started,
        };
        workers.push(tokio::spawn(job.work(client)));
    }
    let mut all = WorkerLog::default();
    for worker in workers {
        let log = worker.await?;
        all.latencies.extend(log.latencies);
        all.errors += log.errors;
        all.first_error = all.first_error.or(log.first_error);
    }
    Ok(summarise(load.concurrency, started.elapsed(), all))
}

/// One worker's share: take request numbers from the shared counter until none are left.
struct Job {
    next: Arc<AtomicUsize>,
    total: usize,
    body: Bytes,
    id_prefix: String,
    started: Instant,
}

impl Job {
    async fn work(self, mut client: Client) -> WorkerLog {
        let mut log = WorkerLog::default();
        loop {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            if n >= self.total || self.started.elapsed() > RUN_LIMIT {
                return log;
            }
            let action_id = format!("{}-{n}", self.id_prefix);
            let sent = Instant::now();
            let outcome = client.post(&action_id, self.body.clone()).await;
            let latency = sent.elapsed();
            match outcome {
                Ok(reply) if reply.status == 200 => log.latencies.push(latency),
                Ok(reply) => log.fail(format!(
                    "status {}: {}",
                    reply.status,
                    String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)])
                )),
                Err(e) => log.fail(e.to_string()),
            }
        }
    }
}

impl WorkerLog {
    fn fail(&mut self, why: String) {
        self.errors += 1;
        self.first_error.get_or_insert(why);
    }
}

fn summarise(concurrency: usize, elapsed: Duration, mut log: WorkerLog) -> LoadStats {
    log.latencies.sort_unstable();
    let ok = log.latencies.len();
    LoadStats {
        concurrency,
        requests: ok + log.errors,
        errors: log.errors,
        elapsed_s: elapsed.as_secs_f64(),
        req_per_s: ok as f64 / elapsed.as_secs_f64(),
        p50_us: micros(percentile(&log.latencies, 50.0)),
        p99_us: micros(percentile(&log.latencies, 99.0)),
        first_error: log.first_error,
    }
}

/// Nearest-rank percentile of sorted samples (zero when there are none).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&samples, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&samples[..1], 99.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }
}
