//! How a command's main process ended and what it cost, from the kernel's own accounting:
//! reaping it with `wait4` returns the exit status together with the resource usage.
//!
//! What the numbers cover, exactly (Linux `wait4`, which reports `getrusage(RUSAGE_BOTH)` of
//! the reaped process): the main process itself plus every descendant that was waited for,
//! directly or through the processes in between. A shell's foreground commands, a pipeline's
//! stages and anything `wait`ed for are included; a background process the command left
//! behind without waiting for (it was reparented, then killed or reaped elsewhere) is not.
//! `max_rss_kib` is the largest resident set of any single one of those processes, not a sum;
//! `user_ms` and `sys_ms` are sums.
//!
//! A floor under `max_rss_kib`: Linux counts, in a process's peak, the memory of the image its
//! exec replaced. For a command that image is the runner's (shared by the vfork-style clone, or
//! copied by fork), so a tiny command reports about the runner's resident size at the moment
//! it started (a few MiB); `reset_own_peak_rss` keeps it from being the runner's peak ever.

use std::fs::File;
use std::io::{self, Write};
use std::sync::LazyLock;

use rustix::process::Pid;
use serde::Serialize;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// It exited with this status.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl ExitKind {
    /// From a raw wait status; `None` for one that is no ending (stopped, continued).
    pub(crate) fn from_wait_status(status: i32) -> Option<Self> {
        if libc::WIFSIGNALED(status) {
            Some(ExitKind::Signal(libc::WTERMSIG(status)))
        } else if libc::WIFEXITED(status) {
            Some(ExitKind::Code(libc::WEXITSTATUS(status)))
        } else {
            None
        }
    }

    /// The shell's convention: the exit status, or 128 + the signal's number.
    pub(crate) fn shell_status(self) -> i32 {
        match self {
            ExitKind::Code(code) => code,
            ExitKind::Signal(signal) => 128 + signal,
        }
    }
}

/// The conventional name of a signal number (`SIGKILL`), for `cmd.signal.NAME`; `SIG<n>` for
/// one without a name (real-time signals).
pub fn signal_name(signal: i32) -> String {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    usize::try_from(signal)
        .ok()
        .and_then(|n| NAMES.get(n.checked_sub(1)?))
        .map_or_else(|| format!("SIG{signal}"), |name| (*name).to_owned())
}

/// The resources one command used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Peak resident memory (KiB) of the largest process counted.
    pub max_rss_kib: u64,
    /// CPU time spent in user mode (milliseconds).
    pub user_ms: u64,
    /// CPU time spent in the kernel on the command's behalf (milliseconds).
    pub sys_ms: u64,
}

impl Usage {
    /// Converts the kernel's record (Linux reports `ru_maxrss` in KiB).
    pub fn from_rusage(usage: &libc::rusage) -> Self {
        Usage {
            max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
            user_ms: millis(&usage.ru_utime),
            sys_ms: millis(&usage.ru_stime),
        }
    }

    /// User plus system time: what `RLIMIT_CPU` counts.
    pub fn cpu_ms(&self) -> u64 {
        self.user_ms.saturating_add(self.sys_ms)
    }
}

fn millis(time: &libc::timeval) -> u64 {
    let seconds = u64::try_from(time.tv_sec).unwrap_or(0);
    let micros = u64::try_from(time.tv_usec).unwrap_or(0);
    seconds.saturating_mul(1000).saturating_add(micros / 1000)
}

/// Resets the runner's own peak resident size (`VmHWM`) to its current size, so the next
/// command's `max_rss_kib` starts from what the runner holds now (see the module doc). Best
/// effort: one write to `/proc/self/clear_refs`, opened once.
pub fn reset_own_peak_rss() {
    static CLEAR_REFS: LazyLock<Option<File>> = LazyLock::new(|| {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/proc/self/clear_refs")
            .ok()
    });
    if let Some(file) = CLEAR_REFS.as_ref() {
        // "5": reset the peak RSS (proc(5), /proc/pid/clear_refs).
        let _ = (&*file).write(b"5");
    }
}

/// Reaps the child `pid` with `wait4`, waiting for it to exit (call it for a process known
/// to have exited or just killed, and only where blocking is fine): how it ended and what it
/// used. An error means it is not (or no longer) a child of this process (`ECHILD`).
pub fn reap(pid: Pid) -> io::Result<(ExitKind, Usage)> {
    loop {
        if let Some(reaped) = wait4(pid, 0)? {
            return Ok(reaped);
        }
    }
}

/// Reaps the child `pid` with `wait4` if it has exited, without waiting: `None` while it has
/// not (a process SIGKILL has not ended yet).
pub fn reap_if_exited(pid: Pid) -> io::Result<Option<(ExitKind, Usage)>> {
    wait4(pid, libc::WNOHANG)
}

/// One `wait4` for `pid` (retried when a signal interrupts it); `None` when `WNOHANG` found
/// it still running.
fn wait4(pid: Pid, options: libc::c_int) -> io::Result<Option<(ExitKind, Usage)>> {
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct of integers.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `usage` are valid, writable locals of the types wait4 writes;
        // the kernel writes them only during the call. `pid` is positive (a `Pid`), so wait4
        // waits for that one child and never for an arbitrary one.
        let reaped =
            unsafe { libc::wait4(pid.as_raw_nonzero().get(), &mut status, options, &mut usage) };
        if reaped > 0 {
            // wait4 without WUNTRACED or WCONTINUED reports only endings.
            let exit = ExitKind::from_wait_status(status).unwrap_or(ExitKind::Code(status));
            return Ok(Some((exit, Usage::from_rusage(&usage))));
        }
        if reaped == 0 {
            return Ok(None);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// Starts `sh -c script`; the test reaps it with `reap`, not through the std handle.
    #[allow(clippy::zombie_processes)]
    fn spawn(script: &str) -> Pid {
        let child = Command::new("sh")
            .args(["-c", script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Pid::from_raw(child.id() as i32).unwrap()
    }

    #[test]
    fn reaping_gives_the_exit_and_the_usage() {
        // A busy loop in the shell itself: user time of the reaped process.
        let pid = spawn("i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; exit 3");
        let (exit, usage) = reap(pid).unwrap();
        assert_eq!(exit, ExitKind::Code(3));
        assert!(usage.user_ms + usage.sys_ms > 50, "{usage:?}");
        assert!(usage.max_rss_kib > 0, "{usage:?}");
        assert_eq!(usage.cpu_ms(), usage.user_ms + usage.sys_ms);
        // Reaped once: the pid is no longer a child.
        assert!(reap(pid).is_err());
    }

    #[test]
    fn waited_for_descendants_count_and_abandoned_ones_do_not() {
        const MIB: u64 = 1024;
        // dd fills a 256 MiB buffer: far above the floor this test process puts under the
        // figure (its own resident size). `; true` keeps the shell from exec'ing dd in its
        // own place, so dd is a child the shell waits for.
        reset_own_peak_rss();
        let waited = spawn("dd if=/dev/zero of=/dev/null bs=256M count=1; true");
        let (_, usage) = reap(waited).unwrap();
        assert!(usage.max_rss_kib > 250 * MIB, "{usage:?}");

        // The same child left in the background and not waited for is not counted. The floor
        // is this process's size when the shell starts, which other tests running beside this
        // one can raise for a moment: counted, dd would be in every try, so one try below the
        // mark shows it is not.
        let below = |usage: &Usage| usage.max_rss_kib < 200 * MIB;
        let mut tries: Vec<Usage> = Vec::new();
        while tries.len() < 5 && !tries.last().is_some_and(below) {
            reset_own_peak_rss();
            let abandoned = spawn("dd if=/dev/zero of=/dev/null bs=256M count=1 & exit 0");
            tries.push(reap(abandoned).unwrap().1);
        }
        assert!(tries.last().is_some_and(below), "{tries:?}");
    }

    #[test]
    fn resetting_the_peak_brings_it_down_to_the_current_size() {
        let status = |key: &str| {
            std::fs::read_to_string("/proc/self/status")
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
                .and_then(|v| v.trim_end_matches(" kB").parse::<u64>().ok())
                .unwrap()
        };
        // Touch 64 MiB and free it: the peak stays above the current size; then reset. Other
        // tests in this process allocate, free and start commands (each start resets the
        // peak) too, so a try counts only where the peak was high before this reset; a reset
        // that works brings it down in one of a few such tries, one that does not, in none.
        let mut readings = Vec::new();
        for _ in 0..20 {
            let block = vec![1u8; 64 << 20];
            assert_eq!(block.iter().map(|&b| u64::from(b)).sum::<u64>(), 64 << 20);
            drop(block);
            let before = (status("VmHWM:"), status("VmRSS:"));
            reset_own_peak_rss();
            let after = (status("VmHWM:"), status("VmRSS:"));
            readings.push((before, after));
            if before.0 > before.1 + 32 * 1024 && after.0 < after.1 + 32 * 1024 {
                return;
            }
        }
        panic!("(peak, current) kB before and after each reset: {readings:?}");
    }

    #[test]
    fn signals_are_reported() {
        let pid = spawn("sleep 30");
        rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
        let (exit, _) = reap(pid).unwrap();
        assert_eq!(exit, ExitKind::Signal(libc::SIGKILL));
    }

    #[test]
    fn signals_have_their_names_and_statuses_the_shells_numbers() {
        assert_eq!(signal_name(libc::SIGKILL), "SIGKILL");
        assert_eq!(signal_name(libc::SIGHUP), "SIGHUP");
        assert_eq!(signal_name(libc::SIGSYS), "SIGSYS");
        assert_eq!(signal_name(libc::SIGXCPU), "SIGXCPU");
        assert_eq!(signal_name(40), "SIG40");
        assert_eq!(signal_name(0), "SIG0");
        assert_eq!(signal_name(-3), "SIG-3");
        assert_eq!(ExitKind::Signal(9).shell_status(), 137);
        assert_eq!(ExitKind::Code(3).shell_status(), 3);
        // Raw statuses: exited 3, killed by 9, stopped by 19.
        assert_eq!(ExitKind::from_wait_status(3 << 8), Some(ExitKind::Code(3)));
        assert_eq!(ExitKind::from_wait_status(9), Some(ExitKind::Signal(9)));
        assert_eq!(ExitKind::from_wait_status((19 << 8) | 0x7f), None);
    }

    #[test]
    fn rusage_conversion() {
        // SAFETY: plain C struct of integers; all-zero is valid.
        let mut raw: libc::rusage = unsafe { std::mem::zeroed() };
        raw.ru_maxrss = 2048;
        raw.ru_utime.tv_sec = 1;
        raw.ru_utime.tv_usec = 250_999;
        raw.ru_stime.tv_usec = 3_000;
        assert_eq!(
            Usage::from_rusage(&raw),
            Usage {
                max_rss_kib: 2048,
                user_ms: 1250,
                sys_ms: 3,
            }
        );
        raw.ru_maxrss = -1;
        assert_eq!(Usage::from_rusage(&raw).max_rss_kib, 0);
    }
}
