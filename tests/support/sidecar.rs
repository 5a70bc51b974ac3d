//! A fake Direktiv sidecar: the local `/log` and `/var` API on 127.0.0.1 and the per-action
//! choreography (temp dir, `files:`, `out/` variables, action id lifetime) around a call to the
//! runner, as Direktiv's sidecar does it (README, "Using it in Direktiv" and "Logs").
//!
//! It runs on its own thread with its own tokio runtime so it keeps answering while a test
//! blocks (for example in `Runner::wait_exit`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{any, post};
use axum::Router;
use base64::Engine as _;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::reply::{Body, Reply};
use super::runner::Runner;

/// The variable scopes the sidecar serves and for which it creates `out/<scope>` folders.
pub const SCOPES: [&str; 3] = ["namespace", "workflow", "instance"];

/// What `/log` answers for an action id that is not in flight (Direktiv v0.7–v0.8.0).
pub const MISSING_AID: &str = "the action id went missing";

/// Direktiv's cap on one log message; a longer body is answered 413 and not logged.
pub const LOG_CAP: usize = 4 * 1024 * 1024;

/// A `/log` post that was refused because its action id was not in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The `aid` query parameter as sent (empty when missing).
    pub aid: String,
    /// The message body, lossily decoded.
    pub message: String,
}

/// Mutable state shared between the HTTP handlers and the test.
#[derive(Default)]
struct Inner {
    /// Action ids currently in flight (between registration and the end of `call`).
    registered: HashSet<String>,
    /// Accepted `/log` bodies per action id, in arrival order, as raw bytes, with the time
    /// each arrived.
    messages: HashMap<String, Vec<(SystemTime, Vec<u8>)>>,
    /// When each `/log` post per action id arrived: accepted, rejected and failed on purpose.
    posts: HashMap<String, Vec<Instant>>,
    /// Posts refused because the action id was not in flight.
    rejected: Vec<Rejected>,
    /// Variables by (scope, name).
    vars: BTreeMap<(String, String), Vec<u8>>,
    /// Every `/var` POST, in arrival order.
    var_posts: Vec<VarPost>,
}

/// One `/var` POST as the sidecar received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarPost {
    pub scope: String,
    pub key: String,
    /// The `Content-Length` header, when the client sent one (not chunked).
    pub content_length: Option<u64>,
    /// The `Content-Type` header: the variable's mime type.
    pub mime: Option<String>,
    /// The body's size.
    pub bytes: usize,
}

/// Knobs and records of the fake sidecar.
#[derive(Default)]
struct Shared {
    inner: Mutex<Inner>,
    /// Delay applied to every `/log` post before it is answered, in milliseconds.
    delay_ms: AtomicU64,
    /// Number of upcoming `/log` posts to answer with 500.
    fail_next: AtomicUsize,
    /// Posts answered with 500 because of `fail_next`.
    failed: AtomicUsize,
    /// Posts answered with 413 because they exceeded [`LOG_CAP`].
    oversized: AtomicUsize,
    /// While set, new connections are closed at once and open ones fail on their next read.
    down: Arc<AtomicBool>,
    /// Connections open now (a connection's requests are all answered before it counts as
    /// closed).
    connections: Arc<AtomicUsize>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// A file the sidecar places into the action's temp dir from a variable before the call, like
/// an action's `files:` entry (types `plain` and `base64`).
#[derive(Debug, Clone)]
pub struct ActionFile {
    /// Variable name.
    pub key: String,
    /// Variable scope: `namespace`, `workflow` or `instance`.
    pub scope: String,
    /// Target name relative to the temp dir (`as:`); may contain sub-folders.
    pub as_name: Option<String>,
    /// `plain` (default) or `base64`.
    pub kind: String,
    /// Octal permissions applied after writing (`permissions:`).
    pub permissions: Option<u32>,
}

impl ActionFile {
    /// A plain file named after the variable.
    pub fn new(scope: &str, key: &str) -> Self {
        ActionFile {
            key: key.into(),
            scope: scope.into(),
            as_name: None,
            kind: "plain".into(),
            permissions: None,
        }
    }
}

/// How the `Direktiv-TempDir` header is sent on a call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TempDirHeader {
    /// The per-action dir `<base>/<aid>` (what Direktiv sends).
    #[default]
    Sent,
    /// No header: the runner must make (and remove) a private temp dir.
    Omitted,
    /// This value instead, e.g. the path of the per-action dir as seen inside a chroot.
    SentAs(String),
}

/// Options of [`FakeSidecar::call_with`].
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// `Direktiv-TempDir` handling.
    pub temp_dir: TempDirHeader,
    /// Files placed from variables before the call.
    pub files: Vec<ActionFile>,
    /// Extra request headers (e.g. `Direktiv-Iterator`).
    pub headers: Vec<(String, String)>,
    /// Keep the per-action dir after the call (the test removes it, or the sidecar's base dir
    /// goes away on drop).
    pub keep_dir: bool,
}

/// The fake sidecar. Dropping it stops the server and removes its base dir.
pub struct FakeSidecar {
    shared: Arc<Shared>,
    addr: SocketAddr,
    base: PathBuf,
    _base_guard: Option<tempfile::TempDir>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    client: reqwest::Client,
}

impl FakeSidecar {
    /// Starts a sidecar on 127.0.0.1 with a fresh base dir for per-action dirs.
    pub fn start() -> Self {
        let guard = tempfile::Builder::new()
            .prefix("fake-sidecar-")
            .tempdir()
            .expect("create the sidecar's base dir");
        let base = guard.path().to_path_buf();
        Self::spawn(base, Some(guard))
    }

    /// Starts a sidecar whose per-action dirs live under `base` (created when missing, not
    /// removed on drop), e.g. `<chroot>/mnt/shared`.
    pub fn start_in(base: &Path) -> Self {
        std::fs::create_dir_all(base).expect("create the sidecar's base dir");
        Self::spawn(base.to_path_buf(), None)
    }

    fn spawn(base: PathBuf, guard: Option<tempfile::TempDir>) -> Self {
        let shared = Arc::new(Shared::default());
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server_state = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fake-sidecar".into())
            .spawn(move || serve(server_state, addr_tx, stop_rx))
            .expect("spawn the sidecar thread");
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the sidecar did not start");
        FakeSidecar {
            shared,
            addr,
            base,
            _base_guard: guard,
            shutdown: Some(stop_tx),
            thread: Some(thread),
            client: http_client(),
        }
    }

    /// `http://127.0.0.1:<port>`: the value for `DIREKTIV_HTTP_BACKEND`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The port the sidecar listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Where per-action dirs are made (`/mnt/shared` in a pod).
    pub fn base_dir(&self) -> &Path {
        &self.base
    }

    /// The per-action dir of `aid` (exists only during a call).
    pub fn action_dir(&self, aid: &str) -> PathBuf {
        self.base.join(aid)
    }

    /// Delays every `/log` answer by `delay` (a slow sidecar).
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Answers the next `n` `/log` posts with 500 (without recording their messages).
    pub fn fail_next(&self, n: usize) {
        self.shared.fail_next.store(n, Ordering::SeqCst);
    }

    /// Number of posts answered with 500 because of [`fail_next`](Self::fail_next).
    pub fn failed_posts(&self) -> usize {
        self.shared.failed.load(Ordering::SeqCst)
    }

    /// Number of posts answered with 413 because their body exceeded [`LOG_CAP`].
    pub fn oversized_posts(&self) -> usize {
        self.shared.oversized.load(Ordering::SeqCst)
    }

    /// Takes the sidecar down (connections are closed without an answer) or back up.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Marks `aid` as in flight so `/log` and `/var` accept it. `call` does this itself.
    pub fn register(&self, aid: &str) {
        self.shared.lock().registered.insert(aid.to_string());
    }

    /// Forgets `aid`, as Direktiv does once the runner's response is in.
    pub fn deregister(&self, aid: &str) {
        self.shared.lock().registered.remove(aid);
    }

    /// Accepted `/log` messages of `aid` in arrival order (one entry per POST, lossily decoded).
    pub fn messages(&self, aid: &str) -> Vec<String> {
        self.raw_messages(aid)
            .iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect()
    }

    /// Accepted `/log` bodies of `aid` exactly as received.
    pub fn raw_messages(&self, aid: &str) -> Vec<Vec<u8>> {
        self.arrivals(aid)
            .into_iter()
            .map(|(_, body)| body)
            .collect()
    }

    /// How many log lines of `aid` had arrived before `instant` (by the system clock, which
    /// commands can read too).
    pub fn lines_before(&self, aid: &str, instant: SystemTime) -> usize {
        self.arrivals(aid)
            .iter()
            .filter(|(arrived, _)| *arrived < instant)
            .map(|(_, body)| body.split(|byte| *byte == b'\n').count())
            .sum()
    }

    /// Accepted `/log` bodies of `aid` with the time each arrived.
    fn arrivals(&self, aid: &str) -> Vec<(SystemTime, Vec<u8>)> {
        self.shared
            .lock()
            .messages
            .get(aid)
            .cloned()
            .unwrap_or_default()
    }

    /// The log lines of `aid`: every accepted message split at `\n`, so a POST that coalesces
    /// several lines counts as those lines.
    pub fn lines(&self, aid: &str) -> Vec<String> {
        self.messages(aid)
            .iter()
            .flat_map(|m| m.split('\n').map(str::to_string).collect::<Vec<_>>())
            .collect()
    }

    /// Posts refused because their action id was not in flight.
    pub fn rejected(&self) -> Vec<Rejected> {
        self.shared.lock().rejected.clone()
    }

    /// Every `/log` POST received for `aid`, accepted or not.
    pub fn post_count(&self, aid: &str) -> usize {
        self.shared.lock().posts.get(aid).map_or(0, Vec::len)
    }

    /// The time from the first `/log` POST received for `aid` to the last, accepted or not.
    pub fn post_span(&self, aid: &str) -> Duration {
        let inner = self.shared.lock();
        let times = inner.posts.get(aid).map(Vec::as_slice).unwrap_or_default();
        match (times.first(), times.last()) {
            (Some(first), Some(last)) => last.duration_since(*first),
            _ => Duration::ZERO,
        }
    }

    /// Waits until no client holds a connection to the sidecar: every request that reached it
    /// has been handled. Returns whether that happened within `timeout`.
    pub fn wait_no_connections(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.shared.connections.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Stops `runner` (SIGTERM, or SIGKILL after a few seconds) and waits until the sidecar
    /// has handled every request that came from it: from then on [`rejected`](Self::rejected)
    /// holds every post that arrived after its action id was forgotten.
    pub fn settle(&self, runner: Runner) {
        drop(runner);
        assert!(
            self.wait_no_connections(Duration::from_secs(30)),
            "connections to the sidecar stay open after the runner exited"
        );
    }

    /// Sets a variable (as if a workflow had stored it).
    pub fn set_var(&self, scope: &str, key: &str, value: impl Into<Vec<u8>>) {
        self.shared
            .lock()
            .vars
            .insert((scope.into(), key.into()), value.into());
    }

    /// A variable's value, if set.
    pub fn var(&self, scope: &str, key: &str) -> Option<Vec<u8>> {
        self.shared
            .lock()
            .vars
            .get(&(scope.to_string(), key.to_string()))
            .cloned()
    }

    /// Every `/var` POST so far.
    pub fn var_posts(&self) -> Vec<VarPost> {
        self.shared.lock().var_posts.clone()
    }

    /// Runs one action against `runner` the way the sidecar does, with default options.
    pub async fn call(&self, runner: &Runner, aid: &str, body: impl Into<Body>) -> Reply {
        self.call_with(runner, aid, body, &CallOptions::default())
            .await
    }

    /// Runs one action: makes `<base>/<aid>` with `out/{namespace,workflow,instance}`, places
    /// `files`, registers `aid`, POSTs `body` to the runner with `Direktiv-ActionID`,
    /// `Direktiv-TempDir` and `Content-Type: application/json`, reads the reply, collects
    /// `out/<scope>/<name>` files into variables, deregisters `aid` and removes the dir.
    pub async fn call_with(
        &self,
        runner: &Runner,
        aid: &str,
        body: impl Into<Body>,
        options: &CallOptions,
    ) -> Reply {
        let dir = self.action_dir(aid);
        prepare_action_dir(&dir);
        self.place_files(&dir, &options.files);
        self.register(aid);
        let mut request = self
            .client
            .post(runner.url())
            .header("Direktiv-ActionID", aid)
            .header("Content-Type", "application/json");
        match &options.temp_dir {
            TempDirHeader::Sent => request = request.header("Direktiv-TempDir", path_str(&dir)),
            TempDirHeader::SentAs(value) => request = request.header("Direktiv-TempDir", value),
            TempDirHeader::Omitted => {}
        }
        for (name, value) in &options.headers {
            request = request.header(name, value);
        }
        let result = request.body(body.into().0).send().await;
        let mut reply = match result {
            Ok(response) => Reply::read(response).await,
            Err(error) => Reply::transport_error(error),
        };
        reply.vars = self.collect_out(&dir);
        self.deregister(aid);
        if !options.keep_dir {
            let _ = std::fs::remove_dir_all(&dir);
        }
        reply
    }

    /// Sends `DELETE /` with `Direktiv-ActionID: aid` to the runner; returns the HTTP status.
    pub async fn cancel(&self, runner: &Runner, aid: &str) -> u16 {
        self.client
            .delete(runner.url())
            .header("Direktiv-ActionID", aid)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    fn place_files(&self, dir: &Path, files: &[ActionFile]) {
        for file in files {
            let raw = self.var(&file.scope, &file.key).unwrap_or_default();
            let data = match file.kind.as_str() {
                "base64" => base64::engine::general_purpose::STANDARD
                    .decode(&raw)
                    .expect("base64 variable"),
                _ => raw,
            };
            let target = dir.join(file.as_name.as_deref().unwrap_or(&file.key));
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).expect("create the file's folder");
            }
            std::fs::write(&target, data).expect("write the action file");
            if let Some(mode) = file.permissions {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                    .expect("chmod the action file");
            }
        }
    }

    /// Regular files in `out/<scope>/` become variables (directories are not packed here).
    fn collect_out(&self, dir: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut found = BTreeMap::new();
        for scope in SCOPES {
            let Ok(entries) = std::fs::read_dir(dir.join("out").join(scope)) else {
                continue;
            };
            for entry in entries.flatten() {
                let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
                let name = entry.file_name().to_string_lossy().into_owned();
                if let (true, Ok(bytes)) = (is_file, std::fs::read(entry.path())) {
                    self.set_var(scope, &name, bytes.clone());
                    found.insert(format!("{scope}/{name}"), bytes);
                }
            }
        }
        found
    }
}

impl Drop for FakeSidecar {
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A client for talking to the runner: no pooling surprises, generous timeouts.
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("build the HTTP client")
}

fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The sidecar makes the action dir and its `out/` folders (mode 0777) before the call.
fn prepare_action_dir(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for scope in SCOPES {
        let out = dir.join("out").join(scope);
        std::fs::create_dir_all(&out).expect("create the action's out dir");
        let _ = std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777));
    }
}

fn serve(
    shared: Arc<Shared>,
    addr_tx: std::sync::mpsc::Sender<SocketAddr>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build the sidecar runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the sidecar");
        let addr = listener.local_addr().expect("sidecar address");
        let gated = GatedListener {
            inner: listener,
            down: shared.down.clone(),
            connections: shared.connections.clone(),
        };
        let router = Router::new()
            .route("/log", post(log_handler))
            .route("/var", any(var_handler))
            // Bodies above the cap must reach the handler to be answered 413 like Direktiv.
            .layer(DefaultBodyLimit::max(16 * LOG_CAP))
            .with_state(shared);
        let _ = addr_tx.send(addr);
        let _ = axum::serve(gated, router)
            .with_graceful_shutdown(async {
                let _ = stop.await;
            })
            .await;
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
}

#[derive(Debug, Deserialize)]
struct LogQuery {
    #[serde(default)]
    aid: String,
}

async fn log_handler(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<LogQuery>,
    body: Bytes,
) -> (StatusCode, String) {
    let delay = shared.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let failing = shared
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let mut inner = shared.lock();
    inner
        .posts
        .entry(query.aid.clone())
        .or_default()
        .push(Instant::now());
    if failing {
        shared.failed.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "failing on purpose".into(),
        );
    }
    if body.len() > LOG_CAP {
        shared.oversized.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            "log message too large".into(),
        );
    }
    if !inner.registered.contains(&query.aid) {
        inner.rejected.push(Rejected {
            aid: query.aid,
            message: String::from_utf8_lossy(&body).into_owned(),
        });
        return (StatusCode::INTERNAL_SERVER_ERROR, MISSING_AID.into());
    }
    inner
        .messages
        .entry(query.aid)
        .or_default()
        .push((SystemTime::now(), body.to_vec()));
    (StatusCode::OK, String::new())
}

#[derive(Debug, Deserialize)]
struct VarQuery {
    #[serde(default)]
    aid: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    key: String,
}

/// `/var`, answered as Direktiv v0.10's sidecar answers it (direktiv-protocol.md §2.2, and
/// `docker/test-sidecar/src/vars.rs`): an action id not in flight is 404; a scope other than
/// `namespace`, `workflow`, `instance` (empty too) is 200 with `unknown scope: <scope>`; a
/// GET of a missing variable is 200 with `resource with key <name> not found in scope
/// <scope>`; a POST keeps the body and its `Content-Type` (the mime type); other methods 405.
/// Error texts end with a newline, as Go's `http.Error` writes them. Every POST is recorded
/// with the `Content-Length` it carried ([`FakeSidecar::var_posts`]).
async fn var_handler(
    State(shared): State<Arc<Shared>>,
    method: axum::http::Method,
    Query(query): Query<VarQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Vec<u8>) {
    let text = |status, message: String| (status, format!("{message}\n").into_bytes());
    let mut inner = shared.lock();
    if !inner.registered.contains(&query.aid) {
        return text(
            StatusCode::NOT_FOUND,
            format!("actionId {} not found", query.aid),
        );
    }
    if method != axum::http::Method::GET && method != axum::http::Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed".into());
    }
    if !SCOPES.contains(&query.scope.as_str()) {
        return text(StatusCode::OK, format!("unknown scope: {}", query.scope));
    }
    let slot = (query.scope, query.key);
    if method == axum::http::Method::GET {
        return match inner.vars.get(&slot) {
            Some(value) => (StatusCode::OK, value.clone()),
            None => text(
                StatusCode::OK,
                format!("resource with key {} not found in scope {}", slot.1, slot.0),
            ),
        };
    }
    let header = |name| {
        headers
            .get(name)
            .and_then(|value: &axum::http::HeaderValue| value.to_str().ok())
            .map(str::to_owned)
    };
    inner.var_posts.push(VarPost {
        scope: slot.0.clone(),
        key: slot.1.clone(),
        content_length: header(axum::http::header::CONTENT_LENGTH)
            .and_then(|length| length.parse().ok()),
        mime: header(axum::http::header::CONTENT_TYPE),
        bytes: body.len(),
    });
    inner.vars.insert(slot, body.to_vec());
    (StatusCode::OK, Vec::new())
}

/// A listener that, while "down", closes new connections at once; see [`GatedStream`].
struct GatedListener {
    inner: TcpListener,
    down: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
}

impl axum::serve::Listener for GatedListener {
    type Io = GatedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, _)) if self.down.load(Ordering::SeqCst) => drop(stream),
                Ok((stream, addr)) => {
                    self.connections.fetch_add(1, Ordering::SeqCst);
                    let gated = GatedStream {
                        inner: stream,
                        down: self.down.clone(),
                        connections: self.connections.clone(),
                    };
                    return (gated, addr);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that fails its next read once the sidecar is down, so keep-alive connections
/// opened earlier break too.
struct GatedStream {
    inner: TcpStream,
    down: Arc<AtomicBool>,
    /// Counts this connection while it is open.
    connections: Arc<AtomicUsize>,
}

impl Drop for GatedStream {
    fn drop(&mut self) {
        self.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AsyncRead for GatedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.down.load(Ordering::SeqCst) {
            return Poll::Ready(Err(std::io::ErrorKind::ConnectionReset.into()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for GatedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
