//! The server against hostile or broken clients and surroundings (README "Lifecycle", "Logs"
//! and "Configuration"; docs/compatibility.md): stalled and trickling clients hold no slot and
//! never block shutdown, idle connections cannot exhaust descriptors, an undrained stdout or
//! stderr never stalls a request, and absurd durations are refused instead of overflowing time
//! arithmetic.
//!
//! Clients are raw TCP sockets that send exactly the bytes a test wants and then stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::support::connections::{server_side, IdleConnections};
use crate::support::procs::{self, Signal};
use crate::support::{
    call_in_background, reply_within, start_shared, within, FakeSidecar, Metrics, Runner, PATIENCE,
};

/// Time the runner may take beyond a configured bound on a loaded machine.
const SLACK: Duration = Duration::from_secs(4);

/// What the runner answers a request whose body does not arrive in time.
const TIMEOUT_ANSWER: &[u8] = b"HTTP/1.1 408";

/// What the runner answers a connection whose headers never arrive, or that idles: nothing.
const NO_ANSWER: &[u8] = b"";

/// A connection that sent a POST's headers announcing a `length`-byte body, then only `sent`.
async fn stalled_post(addr: SocketAddr, aid: &str, length: usize, sent: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nDirektiv-ActionID: {aid}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("send");
    stream.write_all(sent).await.expect("send");
    stream
}

/// A connection that sent a chunked POST's headers and a first chunk `{`, then nothing.
async fn stalled_chunked(addr: SocketAddr, aid: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nDirektiv-ActionID: {aid}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{{\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("send");
    stream
}

/// A connection that sent the start of a request's headers and never finishes them.
async fn stalled_headers(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!("POST / HTTP/1.1\r\nHost: {addr}\r\nDirektiv-ActionID: slow\r\n");
    stream.write_all(head.as_bytes()).await.expect("send");
    stream
}

/// A keep-alive connection that made one complete `GET /healthz` and now idles.
async fn idle_keep_alive(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let answer = within(PATIENCE, "GET /healthz", read_response(&mut stream)).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    stream
}

/// Reads one response with a `Content-Length` body off a keep-alive connection.
async fn read_response(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return got;
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// What became of a connection the test stopped writing to.
#[derive(Debug)]
enum Fate {
    /// The runner closed it (or reset it) `after` this long, having sent `answer` first.
    Closed { after: Duration, answer: Vec<u8> },
    /// Still open when the test stopped waiting.
    Open,
}

/// Reads from `stream` until the runner closes it or `since + limit` passes.
async fn fate(stream: &mut (impl AsyncRead + Unpin), since: Instant, limit: Duration) -> Fate {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::from_std(since + limit);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return Fate::Open,
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Fate::Closed {
                    after: since.elapsed(),
                    answer,
                }
            }
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
    }
}

/// Asserts that a connection was closed between `not_before` and `limit`, with an answer
/// that starts with `expected`, or with no answer at all when `expected` is empty.
#[track_caller]
fn assert_cut_off(what: &str, fate: Fate, not_before: Duration, limit: Duration, expected: &[u8]) {
    match fate {
        Fate::Open => panic!("{what}: the connection is still open after {limit:?}"),
        Fate::Closed { after, answer } => {
            assert!(
                after >= not_before,
                "{what}: closed after {after:?}, before the read timeout ({not_before:?})"
            );
            assert!(
                after <= limit,
                "{what}: closed only after {after:?} (limit {limit:?})"
            );
            let as_expected = if expected.is_empty() {
                answer.is_empty()
            } else {
                answer.starts_with(expected)
            };
            assert!(
                as_expected,
                "{what}: answered {:?}, expected {:?}",
                String::from_utf8_lossy(&answer),
                String::from_utf8_lossy(expected)
            );
        }
    }
}

/// Sends SIGTERM and asserts that the runner exits with 0 within `limit`.
#[track_caller]
fn assert_sigterm_ends_with_0(runner: &mut Runner, limit: Duration) {
    runner.signal(Signal::TERM);
    let status = runner.wait_exit(limit);
    assert!(
        status.is_some(),
        "SIGTERM did not end the runner within {limit:?}"
    );
    assert_eq!(status.and_then(|s| s.code()), Some(0));
}

/// Lines the runner dropped on `stream` (`stdout` or `stderr`) because nobody read them.
async fn dropped_lines(runner: &Runner, stream: &str) -> f64 {
    Metrics::scrape(runner).await.labelled(
        "direktiv_cmd_console_lines_dropped_total",
        &format!("stream=\"{stream}\""),
    )
}

/// Waits until the runner has read everything `connection` sent it (the kernel holds no
/// unread byte for it): from then on the runner knows all the client said.
#[track_caller]
fn await_read_by_runner(runner: &Runner, connection: &TcpStream) {
    let client = connection.local_addr().expect("client address");
    let read = procs::wait_for(PATIENCE, || {
        let side = server_side(runner.addr().port(), client)?;
        (side.unread == 0).then_some(())
    });
    assert!(read.is_some(), "the runner never read what {client} sent");
}

/// An http:// URL on which nothing listens: a sidecar that is down.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// Descriptors the process holding 1,100 idle connections may open.
const CLIENT_NOFILE: u64 = 2048;

/// The test process's hard descriptor limit, which bounds what its children may be given.
#[track_caller]
fn own_hard_nofile() -> u64 {
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(u64::MAX);
    assert!(
        hard >= CLIENT_NOFILE,
        "these tests need a hard descriptor limit of {CLIENT_NOFILE} (`ulimit -Hn` is {hard})"
    );
    hard
}

/// `count` connections to the runner that never send a byte, held by a process of their own.
async fn idle_connections(runner: &Runner, count: usize) -> IdleConnections {
    let addr = runner.addr();
    tokio::task::spawn_blocking(move || IdleConnections::open(addr, count, CLIENT_NOFILE))
        .await
        .expect("open the idle connections")
}

/// The soft `Max open files` of a process, from /proc.
fn soft_nofile(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

// --- 1. admission after the body ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn stalled_bodies_take_no_slot_and_no_action_id() {
    let (sidecar, runner) = start_shared(&[("CMD_MAX_INFLIGHT", "2")]);
    let addr = runner.addr();
    let mut stalled = [
        stalled_post(addr, "stall-1", 100, b"{").await,
        stalled_post(addr, "stall-2", 100, b"{").await,
        stalled_post(addr, "stall-3", 100, b"").await,
        stalled_chunked(addr, "stall-4").await,
    ];
    for connection in &stalled {
        await_read_by_runner(&runner, connection);
    }

    // Both slots are free: two requests run at the same time.
    let body = json!({"commands": [{"command": "sleep 1"}, {"command": "echo ran"}]});
    let first = call_in_background(&sidecar, &runner, "free-1", body.clone());
    let second = call_in_background(&sidecar, &runner, "free-2", body);
    for call in [first, second] {
        let reply = reply_within(call, PATIENCE).await;
        reply.assert_success();
        assert_eq!(reply.command(1)["result"], "ran");
    }

    // A stalled request is not running: its action id is free, before and after a DELETE.
    assert_eq!(sidecar.cancel(&runner, "stall-2").await, 200);
    for aid in ["stall-1", "stall-2", "stall-3", "stall-4"] {
        let reply = within(
            PATIENCE,
            aid,
            sidecar.call(&runner, aid, json!({"command": "echo mine"})),
        )
        .await;
        reply.assert_success();
    }

    // They were stalled all along (CMD_READ_TIMEOUT is 30s by default), not closed.
    for (i, connection) in stalled.iter_mut().enumerate() {
        let fate = fate(connection, Instant::now(), Duration::from_millis(100)).await;
        assert!(
            matches!(fate, Fate::Open),
            "stalled connection {i}: {fate:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_still_arriving_hold_bounded_memory_and_delay_no_small_request() {
    // What bodies still arriving may hold: CMD_MAX_INFLIGHT × CMD_MAX_BODY = 8 MiB.
    let (sidecar, runner) = start_shared(&[
        ("CMD_MAX_INFLIGHT", "1"),
        ("CMD_MAX_BODY", "8MiB"),
        ("CMD_READ_TIMEOUT", "120s"),
    ]);
    let before = procs::status_bytes(runner.pid(), "VmRSS").expect("the runner's VmRSS");
    // 40 clients send 7 MiB of an 8 MiB body, then stall: 280 MiB if the runner took it all.
    let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for n in 0..40 {
        let (addr, written) = (runner.addr(), Arc::clone(&written));
        clients.push(tokio::spawn(async move {
            let mut stream = stalled_post(addr, &format!("big-{n}"), 8 << 20, b"").await;
            let chunk = [b' '; 64 << 10];
            for _ in 0..(7 << 20) / chunk.len() {
                if stream.write_all(&chunk).await.is_err() {
                    break;
                }
                written.fetch_add(chunk.len(), std::sync::atomic::Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_secs(600)).await;
        }));
    }
    // The clients have sent all the runner takes from them once their writes stop making
    // progress: the rest waits in full socket buffers.
    let mut last = usize::MAX;
    let mut unchanged = 0;
    let settled = procs::wait_for(PATIENCE, || {
        let now = written.load(std::sync::atomic::Ordering::SeqCst);
        unchanged = if now == last { unchanged + 1 } else { 0 };
        last = now;
        (unchanged >= 20).then_some(now)
    });
    let sent = settled.expect("the clients' writes never settled");
    let peak = procs::peak_rss(runner.pid()).expect("the runner's VmHWM");
    let grown = peak.saturating_sub(before);
    assert!(
        grown < 100 << 20,
        "the runner's memory grew by {} MiB for bodies it has not admitted ({} MiB sent)",
        grown >> 20,
        sent >> 20
    );
    // An ordinary request does not wait for them.
    within(
        Duration::from_secs(10),
        "a small request beside stalled big bodies",
        sidecar.call(&runner, "small", json!({"command": "echo ok"})),
    )
    .await
    .assert_success();
    clients.iter().for_each(JoinHandle::abort);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_above_the_maximum_is_cmd_input_and_takes_no_slot() {
    let (sidecar, runner) = start_shared(&[("CMD_MAX_BODY", "1KiB"), ("CMD_MAX_INFLIGHT", "1")]);
    let body = json!({"command": "echo never", "padding": "x".repeat(2048)});
    let reply = sidecar.call(&runner, "too-big", body.clone()).await;
    reply.assert_error("cmd.input", 400);
    let message = reply.error_message().unwrap_or_default();
    assert!(message.contains("CMD_MAX_BODY"), "{message}");

    // Chunked, without a Content-Length: the limit applies as the bytes arrive.
    let mut stream = stalled_chunked(runner.addr(), "too-big-chunked").await;
    let bytes = serde_json::to_vec(&body).expect("json");
    for piece in bytes.chunks(256) {
        let chunk = [format!("{:x}\r\n", piece.len()).as_bytes(), piece, b"\r\n"].concat();
        if stream.write_all(&chunk).await.is_err() {
            break; // the runner answered and closed early
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let answer = within(
        PATIENCE,
        "an oversized chunked body",
        read_response(&mut stream),
    )
    .await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("CMD_MAX_BODY"), "{text}");

    sidecar
        .call(&runner, "fits", json!({"command": "echo ok"}))
        .await
        .assert_success();
}

// --- 2. read timeouts --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn stalled_bodies_are_cut_off_after_the_read_timeout() {
    let read_timeout = Duration::from_secs(1);
    let (sidecar, runner) = start_shared(&[("CMD_READ_TIMEOUT", "1s"), ("CMD_MAX_INFLIGHT", "2")]);
    let addr = runner.addr();
    let started = Instant::now();
    let stalled = [
        (
            "Content-Length, one byte sent",
            stalled_post(addr, "cut-1", 100, b"{").await,
        ),
        (
            "Content-Length, nothing sent",
            stalled_post(addr, "cut-2", 100, b"").await,
        ),
        (
            "chunked, one chunk sent",
            stalled_chunked(addr, "cut-3").await,
        ),
    ];
    for (what, mut connection) in stalled {
        let fate = fate(&mut connection, started, read_timeout + SLACK).await;
        assert_cut_off(
            what,
            fate,
            read_timeout - Duration::from_millis(100),
            read_timeout + SLACK,
            TIMEOUT_ANSWER,
        );
    }
    // Nothing of them is left: their action ids run.
    for aid in ["cut-1", "cut-2", "cut-3"] {
        within(
            PATIENCE,
            aid,
            sidecar.call(&runner, aid, json!({"command": "echo ok"})),
        )
        .await
        .assert_success();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trickled_body_does_not_outlive_the_read_timeout() {
    let read_timeout = Duration::from_secs(2);
    let (_sidecar, runner) = start_shared(&[("CMD_READ_TIMEOUT", "2s")]);
    let started = Instant::now();
    let connection = stalled_post(runner.addr(), "trickle", 100, b"").await;
    let (mut read, mut write) = connection.into_split();
    // One byte every 500 ms: every read makes progress, the whole body would take 50 s.
    let trickler = tokio::spawn(async move {
        for _ in 0..100 {
            if write.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let fate = fate(&mut read, started, read_timeout + SLACK).await;
    trickler.abort();
    assert_cut_off(
        "a body trickled byte by byte",
        fate,
        read_timeout - Duration::from_millis(100),
        read_timeout + SLACK,
        TIMEOUT_ANSWER,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_that_never_finish_are_cut_off() {
    let read_timeout = Duration::from_secs(1);
    let (sidecar, runner) = start_shared(&[("CMD_READ_TIMEOUT", "1s")]);
    let addr = runner.addr();
    let started = Instant::now();
    // Slowloris: a new header line every 300 ms, never the blank line that ends them.
    let (mut read, mut write) = stalled_headers(addr).await.into_split();
    let trickler = tokio::spawn(async move {
        for n in 0..200 {
            let line = format!("X-Slow-{n}: still here\r\n");
            if write.write_all(line.as_bytes()).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let mut partial = stalled_headers(addr).await;

    let slowloris = fate(&mut read, started, read_timeout + SLACK).await;
    trickler.abort();
    let limit = read_timeout + SLACK;
    let not_before = read_timeout - Duration::from_millis(100);
    assert_cut_off(
        "headers trickled line by line",
        slowloris,
        not_before,
        limit,
        NO_ANSWER,
    );
    let silent = fate(&mut silent, started, limit).await;
    assert_cut_off(
        "a connection that sends nothing",
        silent,
        not_before,
        limit,
        NO_ANSWER,
    );
    let partial = fate(&mut partial, started, limit).await;
    assert_cut_off("headers cut short", partial, not_before, limit, NO_ANSWER);

    within(
        PATIENCE,
        "after slowloris",
        sidecar.call(&runner, "after-slowloris", json!({"command": "echo ok"})),
    )
    .await
    .assert_success();
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_keep_alive_connections_are_closed_after_a_while() {
    let read_timeout = Duration::from_secs(1);
    let (_sidecar, runner) = start_shared(&[("CMD_READ_TIMEOUT", "1s")]);
    let mut idle = idle_keep_alive(runner.addr()).await;
    let since = Instant::now();
    let fate = fate(&mut idle, since, read_timeout + SLACK).await;
    assert_cut_off(
        "an idle keep-alive connection",
        fate,
        read_timeout - Duration::from_millis(100),
        read_timeout + SLACK,
        NO_ANSWER,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_the_client_never_reads_is_abandoned_after_the_read_timeout() {
    let read_timeout = Duration::from_secs(1);
    let (sidecar, runner) = start_shared(&[("CMD_READ_TIMEOUT", "1s"), ("CMD_MAX_OUTPUT", "4MiB")]);
    // Four commands of 4 MiB each: a 32 MiB response (stdout and result), far more than the
    // socket buffers hold.
    let big = json!({"command": "head -c 4194304 /dev/zero | tr '\\0' a",
                     "shell": true, "silent": true});
    let body = serde_json::to_vec(&json!({"commands": [big, big, big, big]})).expect("json");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let mut stream = socket.connect(runner.addr()).await.expect("connect");
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nDirektiv-ActionID: unread\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("send");
    stream.write_all(&body).await.expect("send");
    // The answer starts; then the client stops reading.
    let mut first = vec![0u8; 1024];
    let n = within(PATIENCE, "the response", stream.read(&mut first)).await;
    let first = &first[..n.expect("read")];
    let text = String::from_utf8_lossy(first).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    let length: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length");
    // The runner gives up on the client once it could not write for the read timeout.
    let client = stream.local_addr().expect("client address");
    let closed = procs::wait_for(read_timeout + SLACK, || {
        let side = server_side(runner.addr().port(), client);
        (!side.is_some_and(|side| side.established)).then_some(())
    });
    assert!(closed.is_some(), "the runner still holds the connection");

    // Reading again gets what the kernel still held, then the end: the runner gave up.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the runner still holds the connection");
    assert!(
        first.len() + rest.len() < length,
        "the whole response ({length} bytes) was still there to read"
    );
    // The runner is fine, and the action id is free.
    within(
        PATIENCE,
        "after an unread response",
        sidecar.call(&runner, "unread", json!({"command": "echo ok"})),
    )
    .await
    .assert_success();
}

// --- 3. descriptors ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_request_runs_while_1100_idle_connections_are_open() {
    let hard = own_hard_nofile().min(4096);
    let sidecar = FakeSidecar::start();
    let runner = Runner::builder()
        .sidecar(&sidecar)
        .nofile_limit(1024, hard)
        .start();
    let idle = idle_connections(&runner, 1100).await;
    // Each accepted connection holds one descriptor of the runner.
    let accepted = procs::wait_for(PATIENCE, || {
        procs::open_fds(runner.pid()).filter(|fds| *fds >= 1100)
    });

    let reply = within(
        PATIENCE,
        "a request beside 1,100 idle connections",
        sidecar.call(&runner, "beside-idle", json!({"command": "echo ok"})),
    )
    .await;
    reply.assert_success();
    assert!(
        accepted.is_some(),
        "the runner did not accept 1,100 connections (soft limit 1024, hard {hard})"
    );
    assert_eq!(
        soft_nofile(runner.pid()),
        Some(hard),
        "the runner raises its soft descriptor limit to the hard one"
    );
    drop(idle);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_beyond_the_hard_limit_are_shed_and_requests_run_again() {
    own_hard_nofile();
    let read_timeout = Duration::from_secs(2);
    let sidecar = FakeSidecar::start();
    let runner = Runner::builder()
        .sidecar(&sidecar)
        .nofile_limit(1024, 1024)
        .env("CMD_READ_TIMEOUT", "2s")
        .start();
    let idle = idle_connections(&runner, 1100).await;
    let reply = within(
        2 * read_timeout + SLACK,
        "a request after 1,100 idle connections (hard limit 1024)",
        sidecar.call(
            &runner,
            "after-flood",
            json!({"commands": [{"command": "echo ok"}, {"command": "sh -c 'echo spawned'"}]}),
        ),
    )
    .await;
    reply.assert_success();
    assert_eq!(reply.command(1)["result"], "spawned");
    drop(idle);
}

// --- 4. shutdown -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_stalled_and_idle_connections_exits_within_the_graces() {
    let (grace, kill_grace) = (Duration::from_secs(3), Duration::from_secs(1));
    let (sidecar, runner) = start_shared(&[
        ("CMD_GRACE", "3s"),
        ("CMD_KILL_GRACE", "1s"),
        // Far beyond the test: only shutdown itself may close these connections.
        ("CMD_READ_TIMEOUT", "300s"),
    ]);
    let addr = runner.addr();
    let _connections = [
        stalled_post(addr, "sigterm-stalled", 100, b"{").await,
        stalled_chunked(addr, "sigterm-chunked").await,
        stalled_headers(addr).await,
        idle_keep_alive(addr).await,
        TcpStream::connect(addr).await.expect("connect"),
    ];
    let (short, long) = (procs::marker("short"), procs::marker("long"));
    let short_call = call_in_background(
        &sidecar,
        &runner,
        "sigterm-short",
        json!({"env": {"HARDEN_MARK": &short}, "commands": [
            {"command": "sleep 1; echo done", "shell": true}]}),
    );
    let long_call = call_in_background(
        &sidecar,
        &runner,
        "sigterm-long",
        json!({"env": {"HARDEN_MARK": &long}, "commands": [
            {"command": "trap 'echo TERM' TERM; while :; do sleep 0.2; done", "shell": true}]}),
    );
    for marker in [&short, &long] {
        let running = procs::wait_for(PATIENCE, || {
            (!procs::with_marker(marker).is_empty()).then_some(())
        });
        assert!(running.is_some(), "request {marker} never started");
    }

    let terminated = Instant::now();
    runner.signal(Signal::TERM);
    let short_reply = reply_within(short_call, PATIENCE).await;
    short_reply.assert_success();
    assert_eq!(short_reply.command(0)["result"], "done");
    reply_within(long_call, PATIENCE)
        .await
        .assert_error("cmd.cancelled", 500);

    let mut runner = Arc::try_unwrap(runner).unwrap_or_else(|_| panic!("runner still shared"));
    let limit = grace + kill_grace + SLACK;
    let status = runner.wait_exit(limit.saturating_sub(terminated.elapsed()));
    assert!(
        status.is_some(),
        "the runner still runs {:?} after SIGTERM (CMD_GRACE 3s + CMD_KILL_GRACE 1s); stderr:\n{}",
        terminated.elapsed(),
        runner.stderr_lines().join("\n")
    );
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "a drained runner exits 0"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_does_not_wait_for_connections_that_carry_no_request() {
    let sidecar = FakeSidecar::start();
    // The default CMD_GRACE (20s) and CMD_READ_TIMEOUT (30s): neither may be waited out.
    let mut runner = Runner::start(&sidecar);
    let addr = runner.addr();
    let mut stalled_body = stalled_post(addr, "sigterm-body", 100, b"{").await;
    let others = [
        stalled_headers(addr).await,
        idle_keep_alive(addr).await,
        TcpStream::connect(addr).await.expect("connect"),
    ];
    for connection in others.iter().chain([&stalled_body]) {
        await_read_by_runner(&runner, connection);
    }

    let terminated = Instant::now();
    runner.signal(Signal::TERM);
    let status = runner.wait_exit(SLACK);
    assert!(
        status.is_some(),
        "the runner still runs {:?} after SIGTERM with no request in flight; stderr:\n{}",
        terminated.elapsed(),
        runner.stderr_lines().join("\n")
    );
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    // A request still arriving is a new request: refused as busy (the runner had read its
    // headers before SIGTERM, so it answers instead of just closing).
    let fate = fate(&mut stalled_body, terminated, SLACK).await;
    assert_cut_off(
        "a body still arriving at shutdown",
        fate,
        Duration::ZERO,
        SLACK,
        b"HTTP/1.1 503",
    );
}

// --- 5. stdout and stderr nobody reads ---------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn sidecar_down_and_stdout_not_drained_still_answers() {
    let mut runner = Runner::builder()
        .backend(&closed_port_url())
        .stdout_not_drained()
        .envs(&[("CMD_GRACE", "2s"), ("CMD_KILL_GRACE", "1s")])
        .start();
    let seq = json!({"command": "seq 1 50000"});
    let headers = [("Direktiv-ActionID", "undrained")];
    // Far more fallback output than the pipe (64 KiB) holds.
    let first = within(PATIENCE, "seq 1 50000", runner.post(seq.clone(), &headers)).await;
    first.assert_success();
    // The action id is free again, and a second run answers as well.
    let second = within(PATIENCE, "seq again", runner.post(seq.clone(), &headers)).await;
    second.assert_success();
    // Development mode writes every line to stdout too.
    let development = [("Direktiv-ActionID", "development")];
    let dev = within(PATIENCE, "development seq", runner.post(seq, &development)).await;
    dev.assert_success();
    assert_eq!(dev.command(0)["exit_code"], 0);

    assert!(
        dropped_lines(&runner, "stdout").await > 0.0,
        "lines nobody could take are counted"
    );
    assert_sigterm_ends_with_0(&mut runner, Duration::from_secs(3) + SLACK);
}

#[tokio::test(flavor = "multi_thread")]
async fn stderr_not_drained_never_stalls_the_runner() {
    let sidecar = FakeSidecar::start();
    let mut runner = Runner::builder()
        .sidecar(&sidecar)
        .stderr_not_drained()
        .envs(&[("CMD_GRACE", "2s"), ("CMD_KILL_GRACE", "1s")])
        .start();
    // Every DELETE writes a log line naming its action id: 600 of 8 KiB are far more than the
    // pipe and any in-memory buffer of the runner hold.
    let long_id = "x".repeat(8 << 10);
    let flood = async {
        for _ in 0..600 {
            let reply = runner
                .request(
                    reqwest::Method::DELETE,
                    "/",
                    &[("Direktiv-ActionID", long_id.as_str())],
                    Vec::new(),
                )
                .await;
            assert_eq!(reply.status, 200, "{reply:?}");
        }
    };
    within(PATIENCE, "600 DELETEs with stderr not drained", flood).await;
    within(
        PATIENCE,
        "a request with stderr not drained",
        sidecar.call(&runner, "quiet-stderr", json!({"command": "echo ok"})),
    )
    .await
    .assert_success();
    assert_eq!(runner.get_status_blocking("/healthz"), 200);
    assert!(
        dropped_lines(&runner, "stderr").await > 0.0,
        "log lines nobody could take are counted"
    );

    assert_sigterm_ends_with_0(&mut runner, Duration::from_secs(3) + SLACK);
}

// --- 6. absurd durations -----------------------------------------------------------------

/// Every duration setting of the runner.
const DURATION_SETTINGS: [&str; 5] = [
    "CMD_TIMEOUT",
    "CMD_KILL_GRACE",
    "CMD_GRACE",
    "CMD_READ_TIMEOUT",
    "CMD_LIMIT_CPU",
];

#[test]
fn durations_above_a_year_are_refused_at_start_naming_the_variable() {
    let values = [
        "18446744073709551615s",
        "18446744073709551615",
        "366d",
        "2y",
        "100000000h",
    ];
    let cases: Vec<(&str, &str)> = DURATION_SETTINGS
        .iter()
        .flat_map(|var| values.iter().map(move |value| (*var, *value)))
        .chain([("CMD_READ_TIMEOUT", "0")])
        .collect();
    let runs: Vec<_> = cases
        .into_iter()
        .map(|(var, value)| {
            std::thread::spawn(move || {
                let finished = Runner::builder()
                    .env(var, value)
                    .run_to_exit(b"", Duration::from_secs(10));
                (var, value, finished)
            })
        })
        .collect();
    let mut problems = Vec::new();
    for run in runs {
        let (var, value, finished) = run.join().expect("a start-up run panicked");
        let stderr = crate::support::strip_ansi(&finished.stderr);
        match finished.status {
            None => problems.push(format!("{var}={value}: kept running instead of stopping")),
            Some(status) if status.success() => {
                problems.push(format!("{var}={value}: exited 0 instead of failing"))
            }
            Some(_) if !stderr.contains(&format!("setting {var}")) => problems.push(format!(
                "{var}={value}: the message does not name {var}: {}",
                stderr.trim()
            )),
            Some(_) => {}
        }
        if stderr.contains("listening on") {
            problems.push(format!("{var}={value}: started serving"));
        }
        if stderr.contains("panicked") {
            problems.push(format!("{var}={value}: panicked: {}", stderr.trim()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_largest_durations_work_without_overflow() {
    let year = "365d";
    let env: Vec<(&str, &str)> = DURATION_SETTINGS.iter().map(|v| (*v, year)).collect();
    let sidecar = FakeSidecar::start();
    let mut runner = Runner::start_with(&sidecar, &env);
    // A timeout stops the group with CMD_KILL_GRACE (365 days) as its deadline.
    let timed_out = within(
        PATIENCE,
        "timeout",
        sidecar.call(
            &runner,
            "year-1",
            json!({"command": "sleep 30", "timeout": 1}),
        ),
    )
    .await;
    timed_out.assert_error("cmd.timeout", 500);
    // The default CMD_TIMEOUT (365 days) and a request timeout of a year are accepted.
    let body = json!({"commands": [{"command": "echo ok"},
                                   {"command": "echo ok", "timeout": "365d"}]});
    within(PATIENCE, "defaults", sidecar.call(&runner, "year-2", body))
        .await
        .assert_success();
    // Draining with CMD_GRACE of a year: nothing is in flight, so it ends at once.
    runner.signal(Signal::TERM);
    let status = runner.wait_exit(SLACK);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_timeout_above_a_year_is_cmd_input_naming_the_field() {
    let (sidecar, runner) = start_shared(&[]);
    let values = [
        json!("18446744073709551615s"),
        json!("366d"),
        json!("2y"),
        json!(1e15),
        json!(18_446_744_073_709_551_615u64),
    ];
    for (i, value) in values.into_iter().enumerate() {
        let body = json!({"commands": [{"command": "true"},
                                       {"command": "true", "timeout": value}]});
        let aid = format!("huge-timeout-{i}");
        let reply = within(PATIENCE, &aid, sidecar.call(&runner, &aid, body)).await;
        reply.assert_error("cmd.input", 400);
        let message = reply.error_message().unwrap_or_default();
        assert!(
            message.contains("commands[1].timeout"),
            "timeout {value}: the message must name the field: {message}"
        );
        assert!(!message.contains("overflow"), "timeout {value}: {message}");
    }
    // The other duration of a request: CPU time in `limits`.
    for (i, cpu) in [json!("2y"), json!(1e15)].into_iter().enumerate() {
        let body = json!({"commands": [{"command": "true"},
                                       {"command": "true", "limits": {"cpu": cpu}}]});
        let aid = format!("huge-cpu-{i}");
        let reply = within(PATIENCE, &aid, sidecar.call(&runner, &aid, body)).await;
        reply.assert_error("cmd.input", 400);
        let message = reply.error_message().unwrap_or_default();
        assert!(message.contains("commands[1].limits.cpu"), "{message}");
    }
}

#[test]
fn help_documents_the_read_timeout() {
    let finished = Runner::builder()
        .arg("--help")
        .run_to_exit(b"", Duration::from_secs(20));
    let help = crate::support::strip_ansi(&finished.stdout);
    let flat: String = help.split_whitespace().collect::<Vec<_>>().join(" ");
    let at = flat.find("CMD_READ_TIMEOUT");
    assert!(
        at.is_some(),
        "--help must mention CMD_READ_TIMEOUT:\n{help}"
    );
    // From the variable to the next option: `[env: CMD_READ_TIMEOUT=] [default: 30s]`.
    let section = &flat[at.unwrap_or(0)..];
    let section = &section[..section.find(" --").unwrap_or(section.len())];
    assert!(
        section.contains("[default: 30s]"),
        "--help must show the default 30s of CMD_READ_TIMEOUT:\n{help}"
    );
}
