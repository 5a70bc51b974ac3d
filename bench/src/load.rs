//! The load generator: a fixed number of requests over `concurrency` keep-alive connections,
//! each request timed on its own, the whole run bounded in time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use crate::client::{Client, Error};

/// A load run stops starting new requests after this long, whatever the count.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// Requests sent by this process so far: the tail of every action id, so no id repeats within
/// a run whatever the prefixes (the runner rightly refuses an id it is running with 409).
static SENT: AtomicU64 = AtomicU64::new(0);

/// A `Direktiv-ActionID` no other request of this process has had: `<prefix>-<n>`.
pub fn action_id(prefix: &str) -> String {
    format!("{prefix}-{}", SENT.fetch_add(1, Ordering::Relaxed))
}

/// What to send: the same body and headers every time, a fresh action id per request.
pub struct Load {
    pub concurrency: usize,
    pub requests: usize,
    pub body: Bytes,
    /// Prefix of the `Direktiv-ActionID`, to tell runs apart in logs (see `action_id`).
    pub id_prefix: String,
    /// The `Direktiv-TempDir` of every request; `None` sends no header.
    pub temp_dir: Option<String>,
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

/// The raw outcome of one or more load runs against the same server.
#[derive(Default)]
pub struct Sample {
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
    /// Wall time spent sending, summed over runs.
    elapsed: Duration,
}

impl Sample {
    /// Adds another run's outcome (the harness alternates servers in short rounds, so that
    /// load from elsewhere on the machine falls on both alike).
    pub fn absorb(&mut self, other: Sample) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
        self.elapsed += other.elapsed;
    }

    fn fail(&mut self, why: String) {
        self.errors += 1;
        self.first_error.get_or_insert(why);
    }

    /// Total requests sent, failed ones included.
    pub fn requests(&self) -> usize {
        self.latencies.len() + self.errors
    }

    /// Requests that failed to complete or got a status other than 200.
    pub fn errors(&self) -> usize {
        self.errors
    }

    /// The median latency so far.
    pub fn p50(&self) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        percentile(&sorted, 50.0)
    }

    pub fn stats(mut self, concurrency: usize) -> LoadStats {
        self.latencies.sort_unstable();
        let ok = self.latencies.len();
        LoadStats {
            concurrency,
            requests: ok + self.errors,
            errors: self.errors,
            elapsed_s: self.elapsed.as_secs_f64(),
            req_per_s: ok as f64 / self.elapsed.as_secs_f64().max(1e-9),
            p50_us: micros(percentile(&self.latencies, 50.0)),
            p99_us: micros(percentile(&self.latencies, 99.0)),
            first_error: self.first_error,
        }
    }
}

/// Runs the load against `addr`; connections are opened before the clock starts.
pub async fn run(addr: SocketAddr, load: &Load) -> Result<Sample, Error> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::with_capacity(load.concurrency);
    for _ in 0..load.concurrency {
        clients.push(Client::connect(addr).await?);
    }
    let started = Instant::now();
    let workers: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let job = Job {
                next: next.clone(),
                total: load.requests,
                body: load.body.clone(),
                id_prefix: load.id_prefix.clone(),
                temp_dir: load.temp_dir.clone(),
                started,
            };
            tokio::spawn(job.work(client))
        })
        .collect();
    let mut all = Sample::default();
    for worker in workers {
        all.absorb(worker.await?);
    }
    all.elapsed = started.elapsed();
    Ok(all)
}

/// One worker's share: take request numbers from the shared counter until none are left.
struct Job {
    next: Arc<AtomicUsize>,
    total: usize,
    body: Bytes,
    id_prefix: String,
    temp_dir: Option<String>,
    started: Instant,
}

impl Job {
    async fn work(self, mut client: Client) -> Sample {
        let mut log = Sample::default();
        loop {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            if n >= self.total || self.started.elapsed() > RUN_LIMIT {
                return log;
            }
            let action_id = action_id(&self.id_prefix);
            let sent = Instant::now();
            let outcome = client
                .post(&action_id, self.temp_dir.as_deref(), self.body.clone())
                .await;
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
    use std::collections::HashSet;
    use std::sync::Mutex;

    use axum::http::{HeaderMap, StatusCode};

    /// A server that, like the runner for an id it is running, refuses an id it has seen.
    async fn refusing_repeated_ids() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(HashSet::new()));
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move |headers: HeaderMap| async move {
                let id = headers["direktiv-actionid"].to_str().unwrap().to_owned();
                if seen.lock().unwrap().insert(id) {
                    StatusCode::OK
                } else {
                    StatusCode::CONFLICT
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    #[tokio::test]
    async fn every_request_has_its_own_action_id_even_with_the_same_prefix() {
        let addr = refusing_repeated_ids().await;
        let load = || Load {
            concurrency: 4,
            requests: 50,
            body: Bytes::new(),
            id_prefix: "same".to_owned(),
            temp_dir: None,
        };
        for _ in 0..2 {
            let stats = run(addr, &load()).await.unwrap().stats(4);
            assert_eq!(
                (stats.requests, stats.errors),
                (50, 0),
                "{:?}",
                stats.first_error
            );
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&samples, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&samples[..1], 99.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }
}
