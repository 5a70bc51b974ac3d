//! Process-tree inspection through /proc, for tests that prove no process of a request and no
//! zombie is left behind.
//!
//! Tests mark the processes of a request with a unique environment variable (inherited by
//! everything a command starts, even `sleep` behind a shell) and then look for that marker.
//! Everything here reads /proc directly: no `ps`, so what the test sees is what the kernel sees.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

pub use rustix::process::Signal;

/// One process as /proc/<pid>/stat describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    /// The one-letter state: R, S, D, Z (zombie), T, ...
    pub state: char,
    /// The executable name (at most 15 bytes, as the kernel keeps it).
    pub comm: String,
}

impl Proc {
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }
}

/// Reads /proc/<pid>/stat; `None` when the process is gone.
pub fn stat(pid: u32) -> Option<Proc> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses a stat line. `comm` may hold spaces and parentheses, so the fields after it are
/// found from the last `)`.
pub fn parse_stat(line: &str) -> Option<Proc> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let pid = line[..open].trim().parse().ok()?;
    let comm = line[open + 1..close].to_owned();
    let mut rest = line[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let pgid = rest.next()?.parse().ok()?;
    Some(Proc {
        pid,
        ppid,
        pgid,
        state,
        comm,
    })
}

/// Every process visible in /proc right now.
pub fn all() -> Vec<Proc> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(stat)
        .collect()
}

/// All descendants of `root` (children, grandchildren, ...), not `root` itself.
pub fn descendants(root: u32) -> Vec<Proc> {
    let procs = all();
    let mut found: Vec<Proc> = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for proc in procs.iter().filter(|p| p.ppid == parent) {
            if found.iter().all(|f| f.pid != proc.pid) {
                frontier.push(proc.pid);
                found.push(proc.clone());
            }
        }
    }
    found
}

/// The zombies among `root`'s descendants.
pub fn zombies_under(root: u32) -> Vec<Proc> {
    descendants(root)
        .into_iter()
        .filter(Proc::is_zombie)
        .collect()
}

/// NUL-separated /proc file (cmdline, environ) as a list of strings; empty when unreadable.
fn nul_list(path: &Path) -> Vec<String> {
    fs::read(path)
        .map(|bytes| {
            bytes
                .split(|b| *b == 0)
                .filter(|part| !part.is_empty())
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The argv of a process.
pub fn cmdline(pid: u32) -> Vec<String> {
    nul_list(Path::new(&format!("/proc/{pid}/cmdline")))
}

/// The environment of a process as `KEY=value` strings.
pub fn environ(pid: u32) -> Vec<String> {
    nul_list(Path::new(&format!("/proc/{pid}/environ")))
}

/// Processes whose argv or environment contains `marker`. Zombies are included (their argv
/// and environ read empty, so they only match through their live siblings; use
/// `zombies_under` for them).
pub fn with_marker(marker: &str) -> Vec<Proc> {
    let me = std::process::id();
    all()
        .into_iter()
        .filter(|p| p.pid != me)
        .filter(|p| {
            cmdline(p.pid).iter().any(|arg| arg.contains(marker))
                || environ(p.pid).iter().any(|var| var.contains(marker))
        })
        .collect()
}

/// The live (not zombie) processes that carry `marker`: what must be gone once a request's
/// response is sent.
pub fn alive_with_marker(marker: &str) -> Vec<Proc> {
    with_marker(marker)
        .into_iter()
        .filter(|p| !p.is_zombie())
        .collect()
}

/// A fresh marker, unique across the tests of one run, usable as an env value and in argv.
pub fn marker(label: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("dcmdmark-{label}-{}-{n}", std::process::id())
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until no live process carries `marker`; returns the ones still there on timeout.
pub fn wait_marker_gone(marker: &str, timeout: Duration) -> Vec<Proc> {
    let mut left = Vec::new();
    let gone = wait_for(timeout, || {
        left = with_marker(marker);
        left.is_empty().then_some(())
    });
    if gone.is_some() {
        Vec::new()
    } else {
        left
    }
}

/// Waits until `root` has no zombie descendants; returns the ones still there on timeout.
pub fn wait_no_zombies(root: u32, timeout: Duration) -> Vec<Proc> {
    let mut left = Vec::new();
    let clean = wait_for(timeout, || {
        left = zombies_under(root);
        left.is_empty().then_some(())
    });
    if clean.is_some() {
        Vec::new()
    } else {
        left
    }
}

/// A `kB` field of /proc/<pid>/status (e.g. `VmHWM`, `VmRSS`) in bytes.
pub fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|line| line.split(':').next() == Some(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Peak resident set size of a process, in bytes.
pub fn peak_rss(pid: u32) -> Option<u64> {
    status_bytes(pid, "VmHWM")
}

/// Number of open file descriptors of a process.
pub fn open_fds(pid: u32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|p| !p.is_zombie())
}

/// Sends `signal` to process `pid`; an error when there is no such process.
pub fn send_signal(pid: u32, signal: Signal) -> std::io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| std::io::Error::other(format!("{pid} is not a process id")))?;
    Ok(rustix::process::kill_process(pid, signal)?)
}
