//! The runner's own stdout and stderr: writes that never hang on a reader who stopped reading.
//!
//! Both are pipes read by the container runtime (or a terminal, or a test). When nobody reads
//! them, a plain `write` blocks as soon as the pipe's buffer (64 KiB on Linux) is full, and
//! with it whatever was writing: a request's fallback log lines, a log line of the runner on an
//! async worker thread, shutdown. So each stream has one writer thread with a bounded queue in
//! front of it. Callers hand over whole lines and go on; the thread does the writes, which may
//! block. What does not fit is dropped, and counted in
//! `direktiv_cmd_console_lines_dropped_total{stream}`.
//!
//! A reader that is merely slower than a command is not a stalled one: fallback lines wait for
//! room while the writer keeps making progress (so a fast command loses nothing to a live
//! reader), and stop waiting once the writer has been stuck in one write for [`STALL`]. The
//! runner's own log lines never wait.
//!
//! One mechanism for both streams and both kinds of writer (fallback lines, log lines) instead
//! of a log-only crate (tracing-appender's lossy `non_blocking`): the bound must be in bytes,
//! since one fallback message may be megabytes while a log line is a hundred bytes, and the
//! drops must reach the runner's metrics.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::metrics::METRICS;

/// Bytes queued per stream before lines are dropped: a burst of a few thousand lines, and at
/// most a few MiB of memory for both streams (plus one oversized message, see `push`).
const CAPACITY: usize = 1 << 20;

/// A writer stuck this long in one write has a reader that stopped reading.
const STALL: Duration = Duration::from_secs(1);

static STDOUT: LazyLock<LossyWriter> =
    LazyLock::new(|| LossyWriter::new("stdout", std::io::stdout(), CAPACITY));
static STDERR: LazyLock<LossyWriter> =
    LazyLock::new(|| LossyWriter::new("stderr", std::io::stderr(), CAPACITY));

/// The process's stdout. Like `std::io::stdout()`, one per process: there is one fd 1.
pub fn stdout() -> &'static LossyWriter {
    &STDOUT
}

/// The process's stderr, where the runner's own log lines go.
pub fn stderr() -> &'static LossyWriter {
    &STDERR
}

/// Before the process exits: writes what is still queued on both streams, unless their
/// reader has stalled or `limit` passes first.
pub fn flush(limit: Duration) {
    let deadline = Instant::now().checked_add(limit);
    for writer in [&*STDOUT, &*STDERR] {
        let left = deadline.map_or(limit, |d| d.saturating_duration_since(Instant::now()));
        writer.flush(left);
    }
}

/// A bounded queue of whole lines in front of one output stream, drained by its own thread.
pub struct LossyWriter {
    shared: Arc<Shared>,
}

/// What the callers and the writer thread share.
struct Shared {
    /// `stdout` or `stderr`: the metric's label.
    stream: &'static str,
    capacity: usize,
    state: Mutex<State>,
    /// Wakes the writer thread: lines were queued.
    queued: Condvar,
    /// Wakes waiting callers and `flush`: a write finished.
    progressed: Condvar,
    /// Lines dropped so far (also in the metric, which is process-wide).
    dropped: AtomicU64,
}

#[derive(Default)]
struct State {
    chunks: VecDeque<Vec<u8>>,
    /// Bytes queued plus those being written: what `capacity` bounds.
    bytes: usize,
    /// When the write in progress started; `None` while the thread waits for work.
    writing_since: Option<Instant>,
    /// Set when the writer thread could not be started: every line is dropped.
    no_writer: bool,
}

impl State {
    /// Whether the reader has stopped reading: the writer is stuck in one write.
    fn stalled(&self) -> bool {
        self.no_writer
            || self
                .writing_since
                .is_some_and(|since| since.elapsed() >= STALL)
    }
}

impl LossyWriter {
    /// A writer of `capacity` bytes in front of `sink`, with its own thread.
    pub fn new(stream: &'static str, sink: impl Write + Send + 'static, capacity: usize) -> Self {
        let shared = Arc::new(Shared {
            stream,
            capacity,
            state: Mutex::new(State::default()),
            queued: Condvar::new(),
            progressed: Condvar::new(),
            dropped: AtomicU64::new(0),
        });
        let worker = Arc::clone(&shared);
        let started = std::thread::Builder::new()
            .name(format!("{stream}-writer"))
            .spawn(move || worker.run(sink));
        if started.is_err() {
            // Nothing else may write to the stream without the risk of blocking.
            shared.lock().no_writer = true;
        }
        LossyWriter { shared }
    }

    /// Queues whole lines (ending in `\n`) without waiting; drops them when the queue is full.
    /// Returns whether they were queued.
    pub fn write_now(&self, lines: Vec<u8>) -> bool {
        self.shared.push(lines, false)
    }

    /// Queues whole lines, waiting for room while the reader keeps reading; drops them once the
    /// writer has been stuck for [`STALL`]. Blocks the calling thread for as long: call it off
    /// the async workers.
    pub fn write_waiting(&self, lines: Vec<u8>) -> bool {
        self.shared.push(lines, true)
    }

    /// Waits until every queued line is written, the reader stalls, or `limit` passes.
    pub fn flush(&self, limit: Duration) {
        let started = Instant::now();
        let mut state = self.shared.lock();
        while state.bytes > 0 && !state.stalled() {
            let Some(left) = limit.checked_sub(started.elapsed()) else {
                return;
            };
            state = self.shared.wait_progress(state, left.min(STALL));
        }
    }

    /// Lines this writer dropped so far.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

/// The runner's own log lines on stderr, each masked with every secret in flight (and the
/// container's) before it is queued: a log line of the runner's never shows a secret, whatever
/// it quotes.
pub fn masked_stderr() -> impl Write {
    crate::mask::LogWriter::new(stderr())
}

/// As a `std::io::Write` (for the runner's log lines): each `write` is queued whole, never
/// waited for, and always reported as written: a dropped log line is counted, not an error.
impl Write for &LossyWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_now(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    fn wait_progress<'a>(
        &self,
        state: MutexGuard<'a, State>,
        limit: Duration,
    ) -> MutexGuard<'a, State> {
        self.progressed
            .wait_timeout(state, limit)
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }

    fn push(&self, lines: Vec<u8>, wait: bool) -> bool {
        if lines.is_empty() {
            return true;
        }
        let mut state = self.lock();
        loop {
            // An empty queue takes any message, however large, so an oversized one is written
            // rather than never; memory stays bounded by the capacity plus one message.
            let fits = state.bytes == 0 || state.bytes + lines.len() <= self.capacity;
            if fits && !state.no_writer {
                state.bytes += lines.len();
                state.chunks.push_back(lines);
                self.queued.notify_one();
                return true;
            }
            if !wait || state.stalled() {
                break;
            }
            // Until the next write finishes, or until the one in progress counts as stalled.
            let waited = state.writing_since.map_or(Duration::ZERO, |s| s.elapsed());
            let left = STALL.saturating_sub(waited).max(Duration::from_millis(10));
            state = self.wait_progress(state, left);
        }
        drop(state);
        self.count_dropped(&lines);
        false
    }

    fn count_dropped(&self, lines: &[u8]) {
        let count = memchr::memchr_iter(b'\n', lines).count().max(1) as u64;
        self.dropped.fetch_add(count, Ordering::Relaxed);
        METRICS.count_console_drop(self.stream, count);
    }

    /// The writer thread: writes queued chunks in order, one at a time, for the process's life.
    fn run(&self, mut sink: impl Write) {
        let mut state = self.lock();
        loop {
            let Some(chunk) = state.chunks.pop_front() else {
                state = self
                    .queued
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            state.writing_since = Some(Instant::now());
            drop(state);
            // A reader that went away (EPIPE) loses the lines; they are counted like drops.
            if sink.write_all(&chunk).and_then(|()| sink.flush()).is_err() {
                self.count_dropped(&chunk);
            }
            state = self.lock();
            state.writing_since = None;
            state.bytes = state.bytes.saturating_sub(chunk.len());
            self.progressed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::Read;

    /// A real pipe: the writer gets the write end, the test the read end.
    fn pipe() -> (File, File) {
        let (read, write) = rustix::pipe::pipe().expect("pipe");
        (File::from(read), File::from(write))
    }

    fn line(n: usize, width: usize) -> Vec<u8> {
        let mut line = format!("{n:0width$}").into_bytes();
        line.push(b'\n');
        line
    }

    /// Reads whole lines from `read` until `count` arrived.
    fn read_lines(read: &mut File, count: usize) -> Vec<String> {
        let mut text = String::new();
        let mut buf = vec![0u8; 1 << 16];
        while text.lines().count() < count {
            let n = read.read(&mut buf).expect("read the pipe");
            assert!(n > 0, "the pipe closed early");
            text.push_str(std::str::from_utf8(&buf[..n]).expect("utf-8"));
        }
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn a_reader_that_stopped_reading_costs_drops_not_waiting() {
        let (mut read, write) = pipe();
        let writer = LossyWriter::new("stdout", write, 64 << 10);
        let started = Instant::now();
        // 4 MiB of lines: 64 times the queue, 64 times the pipe.
        for n in 0..4096 {
            writer.write_now(line(n, 1023));
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "writing took {:?}",
            started.elapsed()
        );
        let dropped = writer.dropped();
        assert!(dropped > 3000, "only {dropped} lines dropped");

        // What was kept arrives whole and in order once the reader reads again.
        let kept = read_lines(&mut read, 4096 - dropped as usize);
        let numbers: Vec<usize> = kept
            .iter()
            .map(|l| l.parse().expect("a whole line"))
            .collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "out of order");
        assert_eq!(numbers.first(), Some(&0));
    }

    #[test]
    fn a_slow_reader_loses_nothing_when_the_caller_may_wait() {
        let (mut read, write) = pipe();
        let writer = LossyWriter::new("stdout", write, 16 << 10);
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut buf = [0u8; 4096];
            while all.len() < 2000 * 101 {
                std::thread::sleep(Duration::from_millis(1));
                let n = read.read(&mut buf).expect("read");
                all.extend_from_slice(&buf[..n]);
            }
            all
        });
        for n in 0..2000 {
            assert!(writer.write_waiting(line(n, 100)), "line {n} dropped");
        }
        let all = reader.join().expect("reader");
        assert_eq!(all.len(), 2000 * 101);
        assert_eq!(writer.dropped(), 0);
    }

    #[test]
    fn waiting_callers_give_up_once_the_reader_stalls() {
        let (_read, write) = pipe();
        let writer = LossyWriter::new("stderr", write, 4096);
        let started = Instant::now();
        let kept = (0..2000)
            .filter(|n| writer.write_waiting(line(*n, 100)))
            .count();
        let took = started.elapsed();
        assert!(kept < 2000, "nothing was dropped");
        assert!(
            took < STALL * 5,
            "waited {took:?} for a reader that stopped"
        );
        // And flushing a stalled stream does not hang either.
        let started = Instant::now();
        writer.flush(Duration::from_secs(30));
        assert!(started.elapsed() < STALL * 3);
    }

    #[test]
    fn flush_writes_what_is_queued() {
        let (mut read, write) = pipe();
        let writer = LossyWriter::new("stdout", write, 1 << 20);
        for n in 0..100 {
            writer.write_now(line(n, 10));
        }
        writer.flush(Duration::from_secs(30));
        assert_eq!(read_lines(&mut read, 100).len(), 100);
    }
}
