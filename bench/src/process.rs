//! A server under measurement, run as its own process: start it, learn its port from the
//! `listening on <ip>:<port>` line on stderr, time it to the first `/healthz` 200, and read its
//! CPU time and memory from /proc.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};
use tokio::sync::oneshot;

use crate::client::{healthy, Error};

/// How long a server may take to print its address and answer `/healthz`.
const START_LIMIT: Duration = Duration::from_secs(10);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(10);
/// Lines of the server's stderr kept to explain a failure.
const STDERR_TAIL: usize = 20;

/// A running server process.
pub struct Server {
    /// The process the harness started: the server, or in pod mode `unshare`.
    child: Child,
    /// The server itself: signalled to stop, and measured.
    pid: Pid,
    /// In pod mode, the init of the server's pid namespace (as this machine numbers it):
    /// killing it ends everything in the namespace.
    init: Option<Pid>,
    /// Where to reach it: loopback, on the port it announced.
    pub addr: SocketAddr,
    /// From just before exec to the first 200 on `/healthz`.
    pub ready: Duration,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

impl Server {
    /// Starts `command` and waits until it answers `/healthz` with 200. With `pod`, `command`
    /// is `unshare` starting the server under an init of its own (pod.rs).
    pub async fn start(mut command: Command, pod: bool) -> Result<Self, Error> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let started = Instant::now();
        let mut child = command.spawn()?;
        let pid = child
            .id()
            .and_then(|id| Pid::from_raw(id as i32))
            .ok_or("no pid")?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let (port_tx, port_rx) = oneshot::channel();
        tokio::spawn(read_stderr(stderr, port_tx, stderr_tail.clone()));
        let mut server = Self {
            child,
            pid,
            init: None,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            ready: Duration::ZERO,
            stderr_tail,
        };
        let port = tokio::time::timeout(START_LIMIT, port_rx).await;
        server.addr.set_port(match port {
            Ok(Ok(port)) => port,
            _ => return Err(server.failure("never printed `listening on <ip>:<port>`")),
        });
        while !healthy(server.addr).await {
            if started.elapsed() > START_LIMIT {
                return Err(server.failure("never answered /healthz with 200"));
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        server.ready = started.elapsed();
        if pod {
            // unshare → the namespace's init → the server, which is up by now.
            let only_child = |parent| match crate::pod::children_of(parent)[..] {
                [child] => Ok(child),
                ref children => Err(format!("{parent:?} has children {children:?}, not one")),
            };
            let init = only_child(server.pid).map_err(|e| server.failure(&e))?;
            server.init = Some(init);
            server.pid = only_child(init).map_err(|e| server.failure(&e))?;
        }
        Ok(server)
    }

    /// The server's process id.
    pub fn pid(&self) -> i32 {
        self.pid.as_raw_nonzero().get()
    }

    /// User plus system CPU time of the server process itself (not its children):
    /// fields 14 and 15 of /proc/<pid>/stat.
    pub fn cpu_time(&self) -> Result<Duration, Error> {
        self.stat_time(11)
    }

    /// User plus system CPU time of the server's children it has waited for (its commands,
    /// from their clone on): fields 16 and 17 of /proc/<pid>/stat.
    pub fn children_cpu_time(&self) -> Result<Duration, Error> {
        self.stat_time(13)
    }

    /// The sum of the two tick counts of /proc/<pid>/stat at `index` and the one after it,
    /// counting the fields after the command name from 0.
    fn stat_time(&self, index: usize) -> Result<Duration, Error> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid.as_raw_nonzero()))?;
        // The command name (field 2) may hold spaces; the fields after it are plain numbers.
        let after_name = stat.rsplit_once(')').ok_or("malformed stat")?.1;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: u64 = fields.get(index).ok_or("short stat")?.parse::<u64>()?
            + fields.get(index + 1).ok_or("short stat")?.parse::<u64>()?;
        let per_second = rustix::param::clock_ticks_per_second();
        Ok(Duration::from_secs_f64(ticks as f64 / per_second as f64))
    }

    /// Starts `VmHWM` over from the current RSS (`clear_refs` 5), so that the next reading
    /// is the peak of what follows.
    pub fn reset_peak_rss(&self) -> Result<(), Error> {
        let path = format!("/proc/{}/clear_refs", self.pid.as_raw_nonzero());
        std::fs::write(&path, "5").map_err(|e| format!("{path}: {e}"))?;
        Ok(())
    }

    /// A `VmRSS`/`VmHWM`-style line of /proc/<pid>/status, in KiB.
    pub fn memory_kib(&self, field: &str) -> Result<u64, Error> {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid.as_raw_nonzero()))?;
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .ok_or_else(|| format!("no {field} in status"))?;
        Ok(line.trim().trim_end_matches("kB").trim().parse()?)
    }

    /// SIGTERM, then SIGKILL if it has not exited within the limit. In pod mode the init exits
    /// once the server has, and `unshare` with it; SIGKILL goes to the init, which ends the
    /// whole namespace.
    pub async fn stop(mut self) -> Result<(), Error> {
        kill_process(self.pid, Signal::TERM)?;
        if tokio::time::timeout(STOP_LIMIT, self.child.wait())
            .await
            .is_err()
        {
            if let Some(init) = self.init {
                let _ = kill_process(init, Signal::KILL);
            }
            self.child.kill().await?;
            return Err(self.failure("did not exit within 10 s of SIGTERM"));
        }
        Ok(())
    }

    /// An error naming what went wrong, followed by the last lines the server wrote to stderr.
    fn failure(&self, what: &str) -> Error {
        let tail = self
            .stderr_tail
            .lock()
            .map(|t| Vec::from(t.clone()))
            .unwrap_or_default();
        format!("server {what}; its last stderr lines:\n{}", tail.join("\n")).into()
    }
}

/// Reads the server's stderr to its end: reports the announced port once, and keeps the last
/// lines for error messages (the pipe must be drained or the server would block on logging).
async fn read_stderr(
    stderr: ChildStderr,
    port_tx: oneshot::Sender<u16>,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut port_tx = Some(port_tx);
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(port) = port_tx.is_some().then(|| announced_port(&line)).flatten() {
            port_tx.take().map(|tx| tx.send(port));
        }
        if let Ok(mut tail) = tail.lock() {
            if tail.len() == STDERR_TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
}

/// The port of a `... listening on <ip>:<port>` log line.
fn announced_port(line: &str) -> Option<u16> {
    let (_, rest) = line.split_once("listening on ")?;
    let addr = rest.split_whitespace().next()?;
    let port = addr.rsplit_once(':')?.1;
    port.trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::announced_port;

    #[test]
    fn finds_the_port_in_log_lines() {
        let text = "2026-01-01T00:00:00Z  INFO direktiv_cmd::server: listening on 0.0.0.0:41234";
        assert_eq!(announced_port(text), Some(41234));
        assert_eq!(announced_port("listening on 127.0.0.1:8080"), Some(8080));
        assert_eq!(announced_port("listening on [::]:9000\""), Some(9000));
        assert_eq!(announced_port("starting"), None);
    }
}
