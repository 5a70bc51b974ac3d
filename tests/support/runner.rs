//! A handle on the real `direktiv-cmd` binary: started with `PORT=0`, its address read from the
//! `listening on <ip>:<port>` log line, its stdout and stderr collected line by line in the
//! background, and the process ended when the handle is dropped.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::procs::{send_signal, Signal};
use super::reply::{Body, Reply};
use super::sidecar::{http_client, FakeSidecar};

/// How long start-up may take on a loaded machine before the test fails.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings the runner reads that the test environment must not leak into it.
const SCRUBBED_ENV: &[&str] = &[
    "PORT",
    "DIREKTIV_HTTP_BACKEND",
    "DIREKTIV_DEV_MODE",
    "CMD_TIMEOUT",
    "CMD_KILL_GRACE",
    "CMD_GRACE",
    "CMD_MAX_INFLIGHT",
    "CMD_MAX_OUTPUT",
    "CMD_MAX_BODY",
    "CMD_MAX_RESULT",
    "CMD_DEV_VARS",
    "CMD_ALLOW",
    "CMD_SHELL",
    "CMD_RESULT_KEY",
    "CMD_LOG_FORMAT",
    "CMD_READ_TIMEOUT",
    "CMD_MASK_NAMES",
    "CMD_MASK_RESPONSE",
    "CMD_LIMIT_MEMORY",
    "CMD_LIMIT_CPU",
    "CMD_LIMIT_FILE_SIZE",
    "CMD_LIMIT_OPEN_FILES",
    "RUST_LOG",
];

/// Lines read from one of the runner's output streams, shared with a reader thread.
type Lines = Arc<Mutex<Vec<String>>>;

/// The path of the binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_direktiv-cmd"))
}

/// Builds a [`Runner`]: program, arguments, environment.
#[derive(Debug, Clone)]
pub struct RunnerBuilder {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    backend: Option<String>,
    current_dir: Option<PathBuf>,
    stdout: Drain,
    stderr: Drain,
    nofile: Option<(u64, u64)>,
    no_landlock: bool,
}

/// Whether the test reads one of the runner's output pipes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drain {
    /// Every line is read and collected.
    Always,
    /// The pipe is held open but never read (stdout), or read only up to the `listening on`
    /// line (stderr): once the pipe buffer is full, the runner's writes to it cannot complete.
    Stalled,
}

impl Default for RunnerBuilder {
    fn default() -> Self {
        RunnerBuilder {
            program: binary().into_os_string(),
            args: Vec::new(),
            env: Vec::new(),
            backend: None,
            current_dir: None,
            stdout: Drain::Always,
            stderr: Drain::Always,
            nofile: None,
            no_landlock: false,
        }
    }
}

impl RunnerBuilder {
    /// Points `DIREKTIV_HTTP_BACKEND` at `sidecar`.
    pub fn sidecar(mut self, sidecar: &FakeSidecar) -> Self {
        self.backend = Some(sidecar.url());
        self
    }

    /// Sets `DIREKTIV_HTTP_BACKEND` to any URL (e.g. a closed port).
    pub fn backend(mut self, url: &str) -> Self {
        self.backend = Some(url.to_string());
        self
    }

    /// Adds an environment variable (later calls win).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Adds several environment variables.
    pub fn envs(mut self, vars: &[(&str, &str)]) -> Self {
        for (key, value) in vars {
            self.env.push((key.to_string(), value.to_string()));
        }
        self
    }

    /// Adds a command-line argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Runs another program instead of the binary (e.g. `chroot <dir> /direktiv-cmd`); the
    /// arguments given with [`arg`](Self::arg) follow it.
    pub fn program(mut self, program: impl Into<OsString>) -> Self {
        self.program = program.into();
        self
    }

    /// Runs the runner as Direktiv runs it in an unprivileged pod: in mount and pid namespaces
    /// of its own (/proc shows only the pod's processes, and the runner is PID 1, as a
    /// container's entrypoint) with every cgroup mount read-only, so that it can make no cgroup
    /// and finds a request's processes by their mark alone. Needs
    /// [`Capability::PidNamespaces`](crate::support::Capability) (root).
    pub fn in_a_pod(self) -> Self {
        const READ_ONLY_CGROUPS: &str = "for d in $(findmnt -rn -t cgroup,cgroup2 -o TARGET); \
            do mount --bind \"$d\" \"$d\" && mount -o remount,bind,ro \"$d\" || exit 1; done; \
            exec \"$@\"";
        let namespaces = [
            "--mount",
            "--pid",
            "--fork",
            "--mount-proc",
            "--propagation",
            "private",
            "--kill-child",
        ];
        namespaces
            .into_iter()
            .chain(["sh", "-c", READ_ONLY_CGROUPS, "pod"])
            .fold(self.program("unshare"), |builder, arg| builder.arg(arg))
            .arg(binary())
    }

    /// Starts the runner in `dir` instead of the test's working directory (images set no
    /// WORKDIR, so a container's runner usually starts in `/`).
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// Holds the runner's stdout pipe open without ever reading it, like a container whose log
    /// collector stopped reading.
    pub fn stdout_not_drained(mut self) -> Self {
        self.stdout = Drain::Stalled;
        self
    }

    /// Reads the runner's stderr only up to its `listening on` line, then holds the pipe open
    /// without reading.
    pub fn stderr_not_drained(mut self) -> Self {
        self.stderr = Drain::Stalled;
        self
    }

    /// Starts the runner with this soft and hard `RLIMIT_NOFILE`.
    pub fn nofile_limit(mut self, soft: u64, hard: u64) -> Self {
        self.nofile = Some((soft, hard));
        self
    }

    /// Starts the runner under a seccomp filter that answers `landlock_create_ruleset` with
    /// ENOSYS, as on a kernel built without Landlock.
    pub fn without_landlock(mut self) -> Self {
        self.no_landlock = true;
        self
    }

    /// The configured command, environment scrubbed of runner settings.
    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        if let Some((soft, hard)) = self.nofile {
            use std::os::unix::process::CommandExt;
            let limit = rustix::process::Rlimit {
                current: Some(soft),
                maximum: Some(hard),
            };
            // SAFETY: the closure runs in the forked child before exec, where only
            // async-signal-safe work is allowed. It makes one setrlimit system call on a value
            // built before the fork: no allocation, no lock, no other library state.
            unsafe {
                command.pre_exec(move || {
                    rustix::process::setrlimit(rustix::process::Resource::Nofile, limit)
                        .map_err(std::io::Error::from)
                });
            }
        }
        if self.no_landlock {
            use std::os::unix::process::CommandExt;
            // SAFETY: the closure runs in the forked child before exec and makes two prctl
            // system calls on a filter that lives in the closure: no allocation, no lock.
            unsafe { command.pre_exec(deny_landlock) };
        }
        command.args(&self.args);
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        for key in SCRUBBED_ENV {
            command.env_remove(key);
        }
        command.env("PORT", "0").env("RUST_LOG", "info");
        if let Some(backend) = &self.backend {
            command.env("DIREKTIV_HTTP_BACKEND", backend);
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    /// Starts the runner and waits until it listens (and, by default, is ready).
    pub fn start(self) -> Runner {
        let mut command = self.command();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start direktiv-cmd");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (addr_tx, addr_rx) = mpsc::channel();
        let (release, held) = mpsc::channel();
        let mut readers = Vec::new();
        let (stdout_lines, held_stdout) = match self.stdout {
            Drain::Always => {
                let (lines, reader) = collect_stdout(stdout);
                readers.push(reader);
                (lines, None)
            }
            Drain::Stalled => (Lines::default(), Some(stdout)),
        };
        let hold = (self.stderr == Drain::Stalled).then_some(held);
        let (stderr_lines, reader) = collect_stderr(stderr, addr_tx, hold);
        readers.push(reader);
        let mut runner = Runner {
            child,
            addr: None,
            stdout: stdout_lines,
            stderr: stderr_lines,
            readers,
            _held_stdout: held_stdout,
            release_stderr: Some(release),
        };
        runner.addr = Some(runner.await_address(&addr_rx));
        runner.await_ready();
        runner
    }

    /// Runs the program to completion (killing it after `timeout`) without waiting for it to
    /// listen: for start-up failures, `--help`, `--version` and the `run` subcommand.
    pub fn run_to_exit(self, stdin: &[u8], timeout: Duration) -> Finished {
        let mut command = self.command();
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start direktiv-cmd");
        if let Some(mut input) = child.stdin.take() {
            let _ = input.write_all(stdin);
        }
        let stdout = read_all_in_background(child.stdout.take().expect("piped stdout"));
        let stderr = read_all_in_background(child.stderr.take().expect("piped stderr"));
        let status = wait_or_kill(&mut child, timeout);
        Finished {
            status,
            stdout: String::from_utf8_lossy(&stdout.join().unwrap_or_default()).into_owned(),
            stderr: String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned(),
        }
    }
}

/// The outcome of [`RunnerBuilder::run_to_exit`].
#[derive(Debug)]
pub struct Finished {
    /// `None` when the program had to be killed after the timeout.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

/// A running `direktiv-cmd`. Dropping it sends SIGTERM, then SIGKILL after a few seconds.
pub struct Runner {
    child: Child,
    addr: Option<SocketAddr>,
    stdout: Lines,
    stderr: Lines,
    /// The stdout pipe, held unread (see [`RunnerBuilder::stdout_not_drained`]).
    _held_stdout: Option<ChildStdout>,
    /// Dropping it lets a stderr reader that stopped reading close the pipe.
    release_stderr: Option<Sender<()>>,
    /// The threads that read stdout and stderr; they end when the runner has exited.
    readers: Vec<JoinHandle<()>>,
}

/// Everything a runner wrote, read once it had exited.
#[derive(Debug)]
pub struct Stopped {
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

impl Runner {
    /// A builder with the defaults (`PORT=0`, `RUST_LOG=info`, the real binary).
    pub fn builder() -> RunnerBuilder {
        RunnerBuilder::default()
    }

    /// Starts the runner against `sidecar`.
    pub fn start(sidecar: &FakeSidecar) -> Runner {
        Runner::builder().sidecar(sidecar).start()
    }

    /// Starts the runner against `sidecar` with extra environment variables.
    pub fn start_with(sidecar: &FakeSidecar, env: &[(&str, &str)]) -> Runner {
        Runner::builder().sidecar(sidecar).envs(env).start()
    }

    /// The address the runner listens on, reached through 127.0.0.1.
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("runner address")
    }

    /// `http://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr())
    }

    /// The runner's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lines the runner wrote to stdout so far (command output in development mode, and the
    /// fallback when the sidecar is down).
    pub fn stdout_lines(&self) -> Vec<String> {
        snapshot(&self.stdout)
    }

    /// Lines the runner wrote to stderr so far (its own log).
    pub fn stderr_lines(&self) -> Vec<String> {
        snapshot(&self.stderr)
    }

    /// Waits until a stdout line satisfies `pred`; returns whether one did within `timeout`.
    pub fn wait_stdout(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
        wait_for_line(&self.stdout, timeout, pred)
    }

    /// Waits until a stderr line satisfies `pred`; returns whether one did within `timeout`.
    pub fn wait_stderr(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
        wait_for_line(&self.stderr, timeout, pred)
    }

    /// Sends `signal` to the runner process.
    pub fn signal(&self, signal: Signal) {
        send_signal(self.pid(), signal).expect("signal the runner");
    }

    /// Waits for the runner to exit; `None` if it still runs after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a raw request: any method, path, headers and body.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Reply {
        let url = format!("http://{}{}", self.addr(), path);
        let mut request = http_client().request(method, url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        match request.body(body.into().0).send().await {
            Ok(response) => Reply::read(response).await,
            Err(error) => Reply::transport_error(error),
        }
    }

    /// `POST /` with exactly these headers and this body (no headers added).
    pub async fn post(&self, body: impl Into<Body>, headers: &[(&str, &str)]) -> Reply {
        self.request(reqwest::Method::POST, "/", headers, body)
            .await
    }

    /// `GET <path>`.
    pub async fn get(&self, path: &str) -> Reply {
        self.request(reqwest::Method::GET, path, &[], Vec::new())
            .await
    }

    /// A blocking `GET <path>` returning the status (0 when unreachable); usable anywhere.
    pub fn get_status_blocking(&self, path: &str) -> u16 {
        blocking_get_status(self.addr(), path)
    }

    fn await_address(&mut self, addr_rx: &Receiver<SocketAddr>) -> SocketAddr {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(addr) = addr_rx.recv_timeout(Duration::from_millis(50)) {
                return addr;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "direktiv-cmd exited with {status} before listening; stderr:\n{}",
                    self.stderr_lines().join("\n")
                );
            }
        }
        panic!(
            "direktiv-cmd logged no `listening on` line; stderr:\n{}",
            self.stderr_lines().join("\n")
        );
    }

    fn await_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if self.get_status_blocking("/readyz") == 200 {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "direktiv-cmd never answered /readyz with 200; stderr:\n{}",
            self.stderr_lines().join("\n")
        );
    }
}

impl Runner {
    /// Ends the runner (SIGTERM, then SIGKILL after a few seconds) and reads what it wrote to
    /// the end: nothing it printed at any time is missing, however late.
    pub fn stop(mut self) -> Stopped {
        self.terminate();
        self.release_stderr = None;
        for reader in std::mem::take(&mut self.readers) {
            let _ = reader.join();
        }
        Stopped {
            stdout: self.stdout_lines(),
            stderr: self.stderr_lines(),
        }
    }

    /// SIGTERM, and SIGKILL if the runner still runs a few seconds later; its exit status
    /// unless it had to be killed.
    fn terminate(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        let _ = send_signal(self.runner_pid(), Signal::TERM);
        let status = self.wait_exit(Duration::from_secs(3));
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        status
    }
}

impl Runner {
    /// The process a SIGTERM is for: the child, unless it is a wrapper that keeps signals from
    /// the runner (`unshare --fork` blocks SIGTERM while it waits; a SIGKILL after it would
    /// kill the runner with no shutdown at all, leaving its cgroups behind). Then the topmost
    /// process below it running the runner's binary: as PID 1 of a namespace, the init, which
    /// hands the signal to the server.
    fn runner_pid(&self) -> u32 {
        let child = self.child.id();
        let binary = binary();
        let runs_binary = |pid: u32| {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == binary)
        };
        if runs_binary(child) {
            return child;
        }
        super::procs::descendants(child)
            .into_iter()
            .find(|proc| runs_binary(proc.pid) && !runs_binary(proc.ppid))
            .map_or(child, |proc| proc.pid)
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Parses `listening on <ip>:<port>` out of a log line (ANSI colours tolerated) and returns
/// the address to connect to: 127.0.0.1 when the runner listens on all addresses.
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    let plain = strip_ansi(line);
    let rest = &plain[plain.find("listening on ")? + "listening on ".len()..];
    let token: String = rest
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    let addr: SocketAddr = token.parse().ok()?;
    if addr.ip().is_unspecified() || addr.ip().is_loopback() {
        return Some(SocketAddr::from(([127, 0, 0, 1], addr.port())));
    }
    Some(addr)
}

/// Removes ANSI escape sequences (CSI and two-byte escapes) from `text`.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}

fn snapshot(lines: &Lines) -> Vec<String> {
    lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

fn wait_for_line(lines: &Lines, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if snapshot(lines).iter().any(|l| pred(l)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads `stream` line by line (bytes, decoded lossily, so invalid UTF-8 is kept visible),
/// handing each line to `on_line`.
fn read_lines(stream: impl Read, mut on_line: impl FnMut(String)) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                }
                on_line(String::from_utf8_lossy(&buf).into_owned());
            }
        }
    }
}

fn collect_stdout(stdout: ChildStdout) -> (Lines, JoinHandle<()>) {
    let lines = Lines::default();
    let sink = lines.clone();
    let reader = std::thread::spawn(move || {
        read_lines(stdout, |line| {
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(line)
        })
    });
    (lines, reader)
}

/// Collects stderr lines and reports the `listening on` address. With `hold`, reading stops
/// after that line and the pipe stays open, unread, until `hold`'s sender is dropped.
fn collect_stderr(
    stderr: ChildStderr,
    addr_tx: Sender<SocketAddr>,
    hold: Option<Receiver<()>>,
) -> (Lines, JoinHandle<()>) {
    let lines = Lines::default();
    let sink = lines.clone();
    let thread = std::thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if buf.last() == Some(&b'\n') {
                buf.pop();
            }
            let line = String::from_utf8_lossy(&buf).into_owned();
            let listening = parse_listening(&line);
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            if let Some(addr) = listening {
                let _ = addr_tx.send(addr);
                if let Some(hold) = &hold {
                    // Blocks until the runner handle is dropped; `reader` keeps the pipe open.
                    let _ = hold.recv();
                    return;
                }
            }
        }
    });
    (lines, thread)
}

fn read_all_in_background(
    mut stream: impl Read + Send + 'static,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stream.read_to_end(&mut all);
        all
    })
}

fn wait_or_kill(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A minimal HTTP/1.1 GET over a std socket, so readiness can be polled without a runtime.
fn blocking_get_status(addr: SocketAddr, path: &str) -> u16 {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return 0;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut head = [0u8; 64];
    let Ok(n) = stream.read(&mut head) else {
        return 0;
    };
    let text = String::from_utf8_lossy(&head[..n]);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Installs a seccomp filter on the calling process (a runner about to be exec'd) under which
/// `landlock_create_ruleset` fails with ENOSYS and every other system call runs.
fn deny_landlock() -> std::io::Result<()> {
    // Classic BPF over `struct seccomp_data`, whose first field is the system call number.
    const LOAD_WORD_ABS: u16 = 0x20;
    const JUMP_IF_EQUAL: u16 = 0x15;
    const RETURN: u16 = 0x06;
    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_ERRNO: u32 = 0x0005_0000;
    let statement = |code, k| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let mut filter = [
        statement(LOAD_WORD_ABS, 0),
        libc::sock_filter {
            code: JUMP_IF_EQUAL,
            jt: 0,
            jf: 1,
            k: libc::SYS_landlock_create_ruleset as u32,
        },
        statement(RETURN, RET_ERRNO | libc::ENOSYS as u32),
        statement(RETURN, RET_ALLOW),
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: plain prctl calls; the filter program is alive for the call, which copies it.
    let done = unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
            && libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &program as *const libc::sock_fprog,
            ) == 0
    };
    match done {
        true => Ok(()),
        false => Err(std::io::Error::last_os_error()),
    }
}
