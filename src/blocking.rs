//! Where a request's short file-system work runs: the steps that may block (open a temp dir,
//! locate and start a command, read a result file, look through a large /proc) but normally
//! take well under a millisecond.
//!
//! They run on a few threads of their own, not on the runtime's blocking pool. That pool adds a
//! thread whenever none is idle, so at 16 concurrent requests it grew to some thirty threads,
//! each with its own stack and glibc cache of freed memory, and every hand-over woke a
//! different one. Four threads keep up with two cores' worth of starts; measured on this
//! project's 2-core machine at 16 concurrent `true` requests in an unprivileged pod (4,000
//! requests a round, four rounds): about 12 % less of the runner's CPU per request, 5 % more
//! requests per second and 0.9 MiB less peak RSS.
//!
//! A fixed number of threads must not let a few stuck calls (a hung mount in `PATH`, a process
//! holding its memory map lock) stop every start: work those threads have not taken up within
//! [`OVERFLOW_AFTER`] goes to the runtime's blocking pool instead, as all of it did before. The
//! work is handed over through a slot that exactly one thread empties, so it runs once.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::runtime::{Handle, Runtime};

/// Threads of the short-work pool per core.
const THREADS_PER_CORE: usize = 2;

/// How long work may wait for the pool's threads before the runtime's blocking pool runs it:
/// far beyond any normal wait (a few hundred microseconds at 16 concurrent requests on two
/// cores), short against a request's own duration.
const OVERFLOW_AFTER: Duration = Duration::from_millis(20);

/// The work could not run to its end: it panicked (the message says where), or the runtime
/// shut down first.
#[derive(Debug)]
pub(crate) struct Lost(String);

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<tokio::task::JoinError> for Lost {
    fn from(error: tokio::task::JoinError) -> Lost {
        Lost(error.to_string())
    }
}

/// Runs `work` off the async workers, on the short-work pool (or, when that pool does not take
/// it up in time or could not be made, on the runtime's blocking pool). Must be called from
/// within the runtime; `work` runs with the same runtime entered, so what it spawns lands
/// there.
pub(crate) async fn run<T, F>(work: F) -> Result<T, Lost>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    run_in(pool(), work).await
}

/// [`run`] on the given pool.
async fn run_in<T, F>(pool: Option<&Handle>, work: F) -> Result<T, Lost>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    // Only this boxing is made per call site; the hand-over below exists once in the binary
    // (one copy per site made the binary 280 KB larger, and its idle RSS with it).
    let (answer, mut answered) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        // Nobody waits any more when the request was given up meanwhile.
        let _ = answer.send(work());
    });
    run_on(pool, job).await?;
    answered
        .try_recv()
        .map_err(|_| Lost("the work ended without an answer".to_owned()))
}

/// Work with its answer channel, boxed.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// Runs `job` on `pool` (the blocking pool when there is none); returns once it has run.
async fn run_on(pool: Option<&Handle>, job: Job) -> Result<(), Lost> {
    let Some(pool) = pool else {
        return Ok(tokio::task::spawn_blocking(job).await?);
    };
    let slot = Slot::new(job);
    let runtime = Handle::current();
    let mut first = pool.spawn_blocking({
        let slot = slot.clone();
        move || {
            let _entered = runtime.enter();
            slot.run()
        }
    });
    tokio::select! {
        biased;
        done = &mut first => return taken(done),
        () = tokio::time::sleep(OVERFLOW_AFTER) => {}
    }
    // The pool's threads are all held up: the blocking pool runs the job unless a pool
    // thread took it meanwhile, in which case that thread's end is the one to wait for.
    if tokio::task::spawn_blocking(move || slot.run()).await? {
        Ok(())
    } else {
        taken(first.await)
    }
}

/// What the pool thread's end says: it ran the job (`true`), or found it taken (`false`), which
/// cannot be when the overflow thread was not asked or found the slot empty itself.
fn taken(done: Result<bool, tokio::task::JoinError>) -> Result<(), Lost> {
    if done? {
        Ok(())
    } else {
        Err(Lost("the work was taken by another thread".to_owned()))
    }
}

/// The pool's threads: the blocking pool of a runtime of their own, which never runs tasks
/// (nothing drives it), made at the first use. `None` when it cannot be made.
fn pool() -> Option<&'static Handle> {
    static POOL: OnceLock<Option<Runtime>> = OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        new_pool(cores * THREADS_PER_CORE)
            .inspect_err(|error| {
                tracing::warn!(%error, "no pool for short file work; the blocking pool runs it");
            })
            .ok()
    })
    .as_ref()
    .map(Runtime::handle)
}

fn new_pool(threads: usize) -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(threads)
        .thread_name(POOL_THREAD)
        .build()
}

/// The name of the pool's threads (as `top -H` shows them).
const POOL_THREAD: &str = "direktiv-cmd-files";

/// A job that one of two threads runs: whichever empties the slot first.
#[derive(Clone)]
struct Slot(Arc<Mutex<Option<Job>>>);

impl Slot {
    fn new(job: Job) -> Self {
        Slot(Arc::new(Mutex::new(Some(job))))
    }

    /// Runs the job if nobody took it yet (the lock is held only to take it); whether it ran.
    fn run(&self) -> bool {
        let job = crate::sync::lock(&self.0).take();
        job.map(|job| job()).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn work_runs_off_the_async_workers_and_its_answer_comes_back() {
        let worker = std::thread::current().id();
        let (thread, answer) = run(move || (std::thread::current().id(), 42))
            .await
            .unwrap();
        assert_eq!(answer, 42);
        assert_ne!(thread, worker, "the work ran on the calling worker");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn work_sees_the_callers_runtime() {
        let caller = Handle::current().id();
        let seen = run(|| Handle::try_current().map(|h| h.id())).await.unwrap();
        assert_eq!(
            seen.ok(),
            Some(caller),
            "spawns from the work would be lost"
        );
    }

    /// Every pool thread held by a call that does not return (a hung mount): later work still
    /// runs, on the blocking pool, after the overflow wait.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stuck_pool_threads_do_not_stop_later_work() {
        const THREADS: usize = 2;
        let pool = new_pool(THREADS).unwrap();
        let (release, held) = mpsc::channel::<()>();
        let held = Arc::new(Mutex::new(held));
        let (started_tx, started) = mpsc::channel();
        let mut stuck = Vec::new();
        for _ in 0..THREADS {
            let (held, started_tx) = (held.clone(), started_tx.clone());
            let handle = pool.handle().clone();
            stuck.push(tokio::spawn(async move {
                run_in(Some(&handle), move || {
                    let name = std::thread::current().name().map(str::to_owned);
                    started_tx.send(name).unwrap();
                    // Held until released (one receive at a time: the others wait on the lock).
                    let _ = crate::sync::lock(&held).recv();
                })
                .await
            }));
        }
        for _ in 0..THREADS {
            let name = started.recv_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(
                name.as_deref(),
                Some(POOL_THREAD),
                "held work ran elsewhere"
            );
        }
        let later = tokio::time::timeout(
            Duration::from_secs(5),
            run_in(Some(pool.handle()), || {
                std::thread::current().name().map(str::to_owned)
            }),
        )
        .await;
        let ran_on = later.expect("later work waited for stuck threads").unwrap();
        assert_ne!(ran_on.as_deref(), Some(POOL_THREAD));
        for _ in 0..THREADS {
            release.send(()).unwrap();
        }
        for task in stuck {
            task.await.unwrap().unwrap();
        }
        pool.shutdown_background();
    }
}
