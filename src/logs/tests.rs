//! The log shipper against a real HTTP endpoint that records what it is sent.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;

use super::*;
use crate::direktiv::LOG_MESSAGE_CAP;
use crate::metrics::METRICS;

/// Generous: the test machine is shared and loaded.
const PATIENCE: Duration = Duration::from_secs(60);

/// One POST the fake sidecar accepted.
#[derive(Debug, Clone)]
struct Post {
    aid: String,
    content_type: String,
    peer: SocketAddr,
    body: Vec<u8>,
}

/// How the fake sidecar behaves.
#[derive(Default)]
struct Sidecar {
    posts: Mutex<Vec<Post>>,
    /// Time taken before each answer.
    delay: Duration,
    /// This many first POSTs get a 500.
    fail_first: usize,
    tries: AtomicUsize,
}

impl Sidecar {
    fn posts(&self) -> Vec<Post> {
        self.posts.lock().unwrap().clone()
    }

    /// Every line received, in order (a coalesced POST carries several).
    fn lines(&self) -> Vec<Vec<u8>> {
        self.posts()
            .iter()
            .flat_map(|post| post.body.split(|&b| b == b'\n').map(<[u8]>::to_vec))
            .collect()
    }
}

async fn record(
    State(sidecar): State<Arc<Sidecar>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let attempt = sidecar.tries.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(sidecar.delay).await;
    if attempt < sidecar.fail_first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    sidecar.posts.lock().unwrap().push(Post {
        aid: query.get("aid").cloned().unwrap_or_default(),
        content_type,
        peer,
        body: body.to_vec(),
    });
    StatusCode::OK
}

/// Starts the fake sidecar; returns it and its base URL (spelled with `localhost`).
async fn start_sidecar(sidecar: Sidecar) -> (Arc<Sidecar>, String) {
    let sidecar = Arc::new(sidecar);
    let app = Router::new()
        .route("/log", post(record))
        .layer(DefaultBodyLimit::max(2 * LOG_MESSAGE_CAP))
        .with_state(sidecar.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    (sidecar, format!("http://localhost:{port}/"))
}

/// Lines written to the console seam.
#[derive(Default)]
struct Captured(Mutex<Vec<u8>>);

impl Console for Captured {
    fn write_lines(&self, lines: Vec<u8>) {
        self.0.lock().unwrap().extend_from_slice(&lines);
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn shipper(backend: &str, dev_mode: bool) -> (LogShipper, Arc<Captured>) {
    let captured = Arc::new(Captured::default());
    let shipper = LogShipper::new(backend, dev_mode).with_console(captured.clone());
    (shipper, captured)
}

/// Opens a stream whose delivery runs in a task of its own.
fn open(
    shipper: &LogShipper,
    action_id: &str,
    masker: Arc<Masker>,
) -> (LogStream, tokio::task::JoinHandle<()>) {
    let (stream, delivery) = shipper.open_with_delivery(action_id, masker);
    (stream, tokio::spawn(delivery.run()))
}

/// Closes the stream and waits until its delivery has handled every line.
async fn finish_in_time(stream: LogStream, delivery: tokio::task::JoinHandle<()>) {
    drop(stream);
    tokio::time::timeout(PATIENCE, delivery)
        .await
        .expect("the delivery did not end")
        .expect("the delivery panicked");
}

/// Waits until `done` holds, or [`PATIENCE`] has passed (the caller's assertion then fails).
async fn eventually(done: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the sidecar has received `count` posts.
async fn posts_arrive(sidecar: &Sidecar, count: usize) {
    eventually(|| sidecar.posts().len() >= count).await;
}

/// Opens a stream whose delivery runs on the log delivery thread (`Delivery::start`).
fn open_started(shipper: &LogShipper, action_id: &str) -> (LogStream, Delivered) {
    let (stream, delivery) = shipper.open_with_delivery(action_id, Arc::new(Masker::default()));
    (stream, delivery.start())
}

/// The queue and start slot of a delivery `Delivery::start` returned.
fn deferred(delivered: &Delivered) -> (&Arc<queue::Queue>, &Arc<Mutex<Option<Delivered>>>) {
    let Delivered::Deferred { queue, started } = delivered else {
        panic!("the delivery started before any message");
    };
    (queue, started)
}

/// Waits for a started delivery to end; `stuck` says what it means when it does not.
async fn finished_in_time(delivered: Delivered, stuck: &str) {
    tokio::time::timeout(PATIENCE, delivered.finished())
        .await
        .expect(stuck);
}

fn numbered(count: usize) -> Vec<u8> {
    (0..count)
        .flat_map(|i| format!("line {i}\n").into_bytes())
        .collect()
}

fn expected_numbered(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| format!("line {i}").into_bytes())
        .collect()
}

#[tokio::test]
async fn twenty_thousand_lines_arrive_complete_and_in_order() {
    let (sidecar, backend) = start_sidecar(Sidecar::default()).await;
    let (shipper, console) = shipper(&backend, false);
    let (stream, delivery) = open(&shipper, "4f1c-aid/1&x", Arc::new(Masker::default()));
    let mut framer = stream.framer();
    // Odd chunk sizes, so lines straddle reads.
    for chunk in numbered(20_000).chunks(4093) {
        framer.write(chunk).await;
    }
    framer.close().await;
    finish_in_time(stream, delivery).await;

    assert_eq!(sidecar.lines(), expected_numbered(20_000));
    let posts = sidecar.posts();
    assert!(posts.iter().all(|p| p.aid == "4f1c-aid/1&x"));
    assert!(posts
        .iter()
        .all(|p| p.content_type == "text/plain; charset=utf-8"));
    assert!(console.text().is_empty());
}

#[tokio::test]
async fn posts_reuse_one_keep_alive_connection() {
    let (sidecar, backend) = start_sidecar(Sidecar::default()).await;
    let (shipper, _) = shipper(&backend, false);
    let (stream, delivery) = open(&shipper, "aid", Arc::new(Masker::default()));
    for i in 0..10 {
        stream.line(&format!("message {i}"));
        // Wait for each message so every one is its own POST.
        posts_arrive(&sidecar, i + 1).await;
    }
    finish_in_time(stream, delivery).await;
    let posts = sidecar.posts();
    assert_eq!(posts.len(), 10);
    let peers: HashSet<SocketAddr> = posts.iter().map(|p| p.peer).collect();
    assert_eq!(peers.len(), 1, "connections: {peers:?}");
}

#[tokio::test]
async fn line_ends_invalid_utf8_and_a_last_line_without_newline() {
    let (sidecar, backend) = start_sidecar(Sidecar::default()).await;
    let (shipper, _) = shipper(&backend, false);
    let (stream, delivery) = open(&shipper, "aid", Arc::new(Masker::default()));
    let mut framer = stream.framer();
    framer
        .write(b"dos line\r\nbad \xff\xfe byte\n  indented  \n\nlast")
        .await;
    framer.close().await;
    finish_in_time(stream, delivery).await;
    let expected: Vec<Vec<u8>> = vec![
        b"dos line".to_vec(),
        "bad \u{fffd}\u{fffd} byte".as_bytes().to_vec(),
        b"  indented  ".to_vec(),
        b"last".to_vec(),
    ];
    assert_eq!(sidecar.lines(), expected);
}

#[tokio::test]
async fn a_line_over_the_cap_is_the_only_one_split() {
    let (sidecar, backend) = start_sidecar(Sidecar::default()).await;
    let (shipper, _) = shipper(&backend, false);
    let (stream, delivery) = open(&shipper, "aid", Arc::new(Masker::default()));
    let mut output = b"before\n".to_vec();
    output.extend(std::iter::repeat_n(b'x', 5 * 1024 * 1024));
    output.extend_from_slice(b"\nafter\n");
    let mut framer = stream.framer();
    for chunk in output.chunks(64 * 1024) {
        framer.write(chunk).await;
    }
    framer.close().await;
    finish_in_time(stream, delivery).await;

    let lines = sidecar.lines();
    let lengths: Vec<usize> = lines.iter().map(Vec::len).collect();
    assert_eq!(lengths, [6, LOG_MESSAGE_CAP, 1024 * 1024, 5]);
    assert_eq!(lines[0], b"before");
    assert_eq!(lines[3], b"after");
    assert!(sidecar
        .posts()
        .iter()
        .all(|p| p.body.len() <= LOG_MESSAGE_CAP));
}

#[tokio::test]
async fn a_slow_endpoint_gets_few_coalesced_posts() {
    let (sidecar, backend) = start_sidecar(Sidecar {
        delay: Duration::from_millis(50),
        ..Sidecar::default()
    })
    .await;
    let (shipper, _) = shipper(&backend, false);
    let coalesced_before = METRICS.log_posts_coalesced.get();
    let (stream, delivery) = open(&shipper, "aid", Arc::new(Masker::default()));
    let mut framer = stream.framer();
    for line in numbered(2_000).split_inclusive(|&b| b == b'\n') {
        framer.write(line).await;
    }
    framer.close().await;
    finish_in_time(stream, delivery).await;

    assert_eq!(sidecar.lines(), expected_numbered(2_000));
    let posts = sidecar.posts().len();
    assert!(posts <= 20, "{posts} posts for 2000 lines");
    assert!(METRICS.log_posts_coalesced.get() > coalesced_before);
}

#[tokio::test]
async fn a_down_endpoint_sends_the_lines_to_stdout_with_the_action_id() {
    // A port that was just free: nothing listens there.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (shipper, console) = shipper(&format!("http://localhost:{port}"), false);
    let failures_before = METRICS.log_post_failures.get();
    let (stream, delivery) = open(&shipper, "aid-7", Arc::new(Masker::default()));
    stream.line("running command 'seq 3'");
    let mut framer = stream.framer();
    framer.write(b"1\n2\n3\n").await;
    framer.close().await;

    let started = Instant::now();
    finish_in_time(stream, delivery).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        console.text(),
        "[aid-7] running command 'seq 3'\n[aid-7] 1\n[aid-7] 2\n[aid-7] 3\n"
    );
    // The first message was tried with retries, the later ones not at all.
    assert!(METRICS.log_post_failures.get() >= failures_before + 2);
}

#[tokio::test]
async fn posts_failing_twice_are_retried_without_loss() {
    let (sidecar, backend) = start_sidecar(Sidecar {
        fail_first: 2,
        ..Sidecar::default()
    })
    .await;
    let (shipper, console) = shipper(&backend, false);
    let (stream, delivery) = open(&shipper, "aid", Arc::new(Masker::default()));
    let mut framer = stream.framer();
    framer.write(&numbered(500)).await;
    framer.close().await;
    finish_in_time(stream, delivery).await;

    assert_eq!(sidecar.lines(), expected_numbered(500));
    assert!(console.text().is_empty());
}

#[tokio::test]
async fn a_fast_writer_is_held_at_the_queue_bound() {
    let (sidecar, backend) = start_sidecar(Sidecar {
        delay: Duration::from_millis(100),
        ..Sidecar::default()
    })
    .await;
    let (shipper, _) = shipper(&backend, false);
    let (stream, delivery) = open(&shipper, "aid", Arc::new(Masker::default()));
    let line = [b'q'; 1023]
        .iter()
        .chain(b"\n")
        .copied()
        .collect::<Vec<u8>>();
    let chunk: Vec<u8> = line.repeat(64);
    let mut framer = stream.framer();
    // 40 MiB, far more than the bound, written as fast as the framer lets us.
    for _ in 0..640 {
        framer.write(&chunk).await;
    }
    framer.close().await;
    let peak = stream.queue().peak();
    finish_in_time(stream, delivery).await;

    assert!(peak <= queue::QUEUE_BOUND, "peak {peak}");
    assert!(peak > LOG_MESSAGE_CAP, "the writer never got ahead: {peak}");
    let lines = sidecar.lines();
    assert_eq!(lines.len(), 640 * 64);
    assert!(lines.iter().all(|l| l == &line[..1023]));
}

#[tokio::test]
async fn secrets_are_masked_even_split_across_reads() {
    let (sidecar, backend) = start_sidecar(Sidecar::default()).await;
    let (shipper, _) = shipper(&backend, false);
    let masker = Arc::new(Masker::new(["s3cr3t-value"]));
    let (stream, delivery) = open(&shipper, "aid", masker);
    stream.line("running command 'login s3cr3t-value'");
    let mut framer = stream.framer();
    framer.write(b"token=s3cr").await;
    framer.write(b"3t-value end\n").await;
    framer.close().await;
    finish_in_time(stream, delivery).await;
    assert_eq!(
        sidecar.lines(),
        [
            b"running command 'login ***'".to_vec(),
            b"token=*** end".to_vec()
        ]
    );
}

#[tokio::test]
async fn development_mode_writes_raw_lines_to_stdout_only() {
    let (sidecar, backend) = start_sidecar(Sidecar::default()).await;
    for (dev_mode, action_id) in [(false, "Development"), (true, "aid-1")] {
        let (shipper, console) = shipper(&backend, dev_mode);
        let (stream, delivery) = open(&shipper, action_id, Arc::new(Masker::new(["hunter22"])));
        stream.line("running command 'echo hunter22'");
        let mut framer = stream.framer();
        framer.write(b"out 1\r\nout 2\n\nend").await;
        framer.close().await;
        finish_in_time(stream, delivery).await;
        assert_eq!(
            console.text(),
            "running command 'echo ***'\nout 1\nout 2\nend\n"
        );
    }
    assert!(sidecar.posts().is_empty());
}

#[tokio::test]
async fn a_dropped_stream_still_drains() {
    let (sidecar, backend) = start_sidecar(Sidecar {
        delay: Duration::from_millis(20),
        ..Sidecar::default()
    })
    .await;
    let (shipper, _) = shipper(&backend, false);
    // Its delivery goes on by itself, nobody waiting for it.
    let (stream, _delivery) = open(&shipper, "aid", Arc::new(Masker::default()));
    let mut framer = stream.framer();
    framer.write(&numbered(300)).await;
    drop(framer);
    drop(stream);
    eventually(|| sidecar.lines().len() >= 300).await;
    assert_eq!(sidecar.lines(), expected_numbered(300));
}

#[tokio::test]
async fn runner_messages_and_output_keep_their_order() {
    let (sidecar, backend) = start_sidecar(Sidecar::default()).await;
    let (shipper, _) = shipper(&backend, false);
    let (stream, delivery) = open(&shipper, "aid", Arc::new(Masker::default()));
    stream.line("running 2 commands");
    for command in ["a", "b"] {
        stream.line(&format!("running command '{command}'"));
        let mut framer = stream.framer();
        framer
            .write(format!("output of {command}\n").as_bytes())
            .await;
        framer.close().await;
    }
    finish_in_time(stream, delivery).await;
    let expected: Vec<Vec<u8>> = [
        "running 2 commands",
        "running command 'a'",
        "output of a",
        "running command 'b'",
        "output of b",
    ]
    .iter()
    .map(|l| l.as_bytes().to_vec())
    .collect();
    assert_eq!(sidecar.lines(), expected);
}

#[tokio::test]
async fn streams_and_their_futures_can_move_between_threads() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    let (shipper, _) = shipper("http://localhost:1", true);
    let (stream, delivery) = shipper.open_with_delivery("aid", Arc::new(Masker::default()));
    assert_send_sync(&shipper);
    assert_send_sync(&stream);
    let mut framer = stream.framer();
    assert_send(&framer.write(b"x\n"));
    assert_send(&framer.close());
    assert_send(&delivery.run());
}

/// `Delivery::start` starts the sender with the first message: a request that logs nothing
/// starts none, and what it held (the sender holds the queue) is freed with the stream.
#[tokio::test]
async fn a_stream_that_queues_nothing_starts_no_delivery_and_frees_its_queue() {
    let (shipper, captured) = shipper("http://localhost:1", false);
    let (stream, delivered) = open_started(&shipper, "aid");
    let (queue, started) = deferred(&delivered);
    drop(stream);
    assert!(
        started.lock().unwrap().is_none(),
        "a sender started for no message"
    );
    // Closed empty, the queue let go of the sender it was to start (which holds the queue).
    assert_eq!(
        Arc::strong_count(queue),
        1,
        "the queue still holds its unneeded sender"
    );
    let queue = Arc::downgrade(queue);
    finished_in_time(
        delivered,
        "finished waited for a delivery that has nothing to send",
    )
    .await;
    assert!(
        queue.upgrade().is_none(),
        "the queue outlived its stream and its delivery"
    );
    assert_eq!(captured.text(), "");
}

/// The first message starts the sender, and `finished` waits for every line, also for those a
/// clone of the stream queues after `finished` was called.
#[tokio::test]
async fn lines_queued_before_and_after_finished_is_called_all_arrive() {
    let (sidecar, url) = start_sidecar(Sidecar::default()).await;
    let (shipper, _) = shipper(&url, false);
    let (stream, delivered) = open_started(&shipper, "aid-late");
    let late = stream.clone();
    drop(stream);
    let finished = tokio::spawn(delivered.finished());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !finished.is_finished(),
        "finished did not wait for an open stream"
    );
    late.line("queued after finished");
    let mut framer = late.framer();
    framer.write(b"and its output\n").await;
    framer.close().await;
    drop(late);
    tokio::time::timeout(PATIENCE, finished)
        .await
        .expect("finished did not end")
        .expect("finished panicked");
    let expected: Vec<Vec<u8>> = ["queued after finished", "and its output"]
        .iter()
        .map(|l| l.as_bytes().to_vec())
        .collect();
    assert_eq!(
        sidecar.lines(),
        expected,
        "finished returned before every line arrived"
    );
}

/// Holds the log delivery thread until the returned sender is dropped (or sent to).
fn hold_the_delivery_thread() -> std::sync::mpsc::Sender<()> {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (running, is_running) = std::sync::mpsc::channel::<()>();
    drop(thread::spawn(async move {
        let _ = running.send(());
        let _ = held.recv();
    }));
    is_running
        .recv_timeout(PATIENCE)
        .expect("the delivery thread did not take the holding task");
    release
}

/// Once every line is out, the response need not wait for the delivery thread to notice the
/// close; while a line is still queued, it must.
#[tokio::test]
async fn finished_waits_for_the_delivery_thread_only_while_lines_are_left() {
    let (sidecar, url) = start_sidecar(Sidecar::default()).await;
    let (shipper, _) = shipper(&url, false);

    // Every line delivered before the end: finished returns with the delivery thread held.
    let (stream, delivered) = open_started(&shipper, "aid-out");
    stream.line("delivered while the command ran");
    posts_arrive(&sidecar, 1).await;
    let (queue, _) = deferred(&delivered);
    let queue = Arc::clone(queue);
    // The sender asks for its next message once the POST is done.
    eventually(|| queue.is_idle()).await;
    let release = hold_the_delivery_thread();
    drop(stream);
    finished_in_time(
        delivered,
        "finished waited for the delivery thread with every line out",
    )
    .await;
    drop(release);

    // A line still queued: finished waits until it is out.
    let (stream, delivered) = open_started(&shipper, "aid-left");
    let release = hold_the_delivery_thread();
    stream.line("queued while the delivery thread was held");
    drop(stream);
    let finished = tokio::spawn(delivered.finished());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !finished.is_finished(),
        "finished returned with a line left"
    );
    drop(release);
    tokio::time::timeout(PATIENCE, finished)
        .await
        .expect("finished did not end")
        .expect("finished panicked");
    let left: Vec<_> = sidecar
        .posts()
        .into_iter()
        .filter(|p| p.aid == "aid-left")
        .collect();
    assert_eq!(
        left.len(),
        1,
        "finished returned before the queued line was delivered"
    );

    // A line taken by the sender, its POST not answered yet: finished waits for the answer.
    let slow = Sidecar {
        delay: Duration::from_millis(300),
        ..Sidecar::default()
    };
    let (slow, url) = start_sidecar(slow).await;
    let (slow_shipper, _) = self::shipper(&url, false);
    let (stream, delivered) = open_started(&slow_shipper, "aid-posting");
    stream.line("being posted");
    let (queue, _) = deferred(&delivered);
    eventually(|| queue.queued() == 0).await;
    drop(stream);
    finished_in_time(delivered, "finished did not end").await;
    assert_eq!(
        slow.posts().len(),
        1,
        "finished returned while a POST was unanswered"
    );
}
