//! A command's process group: the unit the runner stops. Every command is spawned as the leader
//! of a new group (`setpgid(0, 0)` through posix_spawn or the vfork path), so its whole tree — shells, pipelines,
//! background jobs — can be signalled at once with `kill(-pgid)`.

use std::os::fd::{AsFd, OwnedFd};
#[cfg(test)]
use std::os::unix::process::CommandExt;
use std::time::Duration;

use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};
use tokio::io::unix::AsyncFd;
use tokio::time::{sleep, timeout, Instant};

use super::procfs;
use super::usage::{self, Usage};

/// How often an exit or an empty group is polled for where no event announces it (no pidfd,
/// or waiting for the last members of a group): short enough not to add noticeable latency to
/// a response, long enough to cost nothing measurable while a command runs.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How long the leader gets to exit after SIGKILL: a process in uninterruptible sleep (a hung
/// NFS read) dies only when the kernel call returns. After that it is handed to a thread of
/// its own to be reaped whenever it dies, never waited for on an async worker thread.
const KILL_EXIT_WAIT: Duration = Duration::from_secs(2);

/// How long the rest of a killed group gets to disappear: SIGKILL takes effect within
/// milliseconds; this only bounds the wait for members stuck in the kernel.
const KILLED_GROUP_WAIT: Duration = Duration::from_millis(500);

/// How the leader process of a group ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// It exited with this status.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

/// A spawned command's process group, led by the command's main process.
///
/// The leader is not reaped until `reap` is called: while it is a zombie its pid stays
/// allocated, so `kill(-pgid)` can never reach a newer, unrelated group that reused the number.
pub struct ProcessGroup {
    leader: Pid,
    /// Readable once the leader has exited (Linux ≥ 5.3); `None` falls back to polling.
    pidfd: Option<AsyncFd<OwnedFd>>,
    reaped: bool,
    /// What the leader (and the descendants it waited for) used, once reaped.
    usage: Option<Usage>,
}

impl ProcessGroup {
    /// Takes charge of a freshly spawned group leader.
    pub fn new(leader: Pid) -> Self {
        let pidfd = rustix::process::pidfd_open(leader, rustix::process::PidfdFlags::empty())
            .ok()
            .and_then(|fd| {
                // SAFETY: the `OwnedFd` is moved into the `AsyncFd` and owned by it alone, so
                // the descriptor stays open and refers to the same pidfd until the `AsyncFd`
                // is dropped; `OwnedFd::as_raw_fd` always returns that same number.
                unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.ok()
            });
        ProcessGroup {
            leader,
            pidfd,
            reaped: false,
            usage: None,
        }
    }

    /// Waits until the leader exits and returns how, without reaping it.
    pub async fn wait_leader(&self) -> ExitKind {
        loop {
            if let Some(kind) = self.peek_exit() {
                return kind;
            }
            match &self.pidfd {
                Some(fd) => match fd.readable().await {
                    Ok(mut guard) => guard.clear_ready(),
                    Err(_) => sleep(POLL_INTERVAL).await,
                },
                None => sleep(POLL_INTERVAL).await,
            }
        }
    }

    /// The leader's exit, if it has exited; leaves it unreaped (`WNOWAIT`).
    fn peek_exit(&self) -> Option<ExitKind> {
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
        let status = match &self.pidfd {
            Some(fd) => rustix::process::waitid(WaitId::PidFd(fd.get_ref().as_fd()), options),
            None => rustix::process::waitid(WaitId::Pid(self.leader), options),
        };
        let status = status.ok().flatten()?;
        if let Some(signal) = status.terminating_signal() {
            Some(ExitKind::Signal(signal))
        } else {
            status.exit_status().map(ExitKind::Code)
        }
    }

    /// Sends a signal to every process of the group. Errors (the group is gone) are ignored.
    pub fn signal(&self, signal: Signal) {
        let _ = rustix::process::kill_process_group(self.leader, signal);
    }

    /// True while a live process is in the group.
    ///
    /// `kill(-pgid, 0)` also counts zombies, and an orphaned member's zombie lingers until its
    /// new parent reaps it — at once under our own PID-1 init, but some inits reap lazily. So
    /// when the kernel says "someone is there", /proc decides whether anyone is alive.
    fn has_members(&self) -> bool {
        if rustix::process::test_kill_process_group(self.leader).is_err() {
            return false;
        }
        live_member_in_proc(self.leader.as_raw_nonzero().get()).unwrap_or(true)
    }

    /// Stops the whole group: SIGTERM, then SIGKILL for whatever is left after `grace`.
    /// Returns once the leader has exited and been reaped, and the group is empty or
    /// `KILLED_GROUP_WAIT` passed after SIGKILL. A leader stuck in uninterruptible sleep past
    /// SIGKILL and `KILL_EXIT_WAIT` is left to a reaper thread (`reap`).
    pub async fn terminate(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        self.signal(Signal::TERM);
        if tokio::time::timeout_at(deadline, self.wait_leader())
            .await
            .is_ok()
        {
            self.reap();
            self.wait_empty(deadline).await;
        }
        if !self.reaped || self.has_members() {
            self.signal(Signal::KILL);
            let _ = timeout(KILL_EXIT_WAIT, self.wait_leader()).await;
            self.reap();
            self.wait_empty(Instant::now() + KILLED_GROUP_WAIT).await;
        }
    }

    /// Kills whatever is left of the group once the leader has exited (background children
    /// that outlived it). Reaps the leader first: its zombie keeps the group "non-empty".
    pub async fn clean_up_after_exit(&mut self, grace: Duration) {
        self.reap();
        if !self.has_members() {
            return;
        }
        self.signal(Signal::TERM);
        if !self.wait_empty(Instant::now() + grace).await {
            self.signal(Signal::KILL);
            self.wait_empty(Instant::now() + KILLED_GROUP_WAIT).await;
        }
    }

    /// Polls until the group has no process left or `deadline` passes; true when empty.
    ///
    /// Only called after the leader is reaped. The pgid cannot be handed to a new group while
    /// any member lives; the window between the last member dying and our next poll
    /// (`POLL_INTERVAL`) is far shorter than the kernel's pid allocator needs to wrap around
    /// to the same number.
    async fn wait_empty(&self, deadline: Instant) -> bool {
        loop {
            if !self.has_members() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            sleep(POLL_INTERVAL).await;
        }
    }

    /// What the leader used (see `usage`), once it has been reaped.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Reaps the leader with wait4, which tells what it used, without ever blocking: at once
    /// when it has exited, else (a process SIGKILL has not ended yet, stuck in the kernel) on
    /// a thread of its own that waits for it. Either way the group is done with it.
    fn reap(&mut self) {
        if self.reaped {
            return;
        }
        self.reaped = true;
        match usage::reap_if_exited(self.leader) {
            Ok(Some((_, usage))) => self.usage = Some(usage),
            Ok(None) => reap_when_it_dies(self.leader),
            Err(_) => {}
        }
    }
}

impl Drop for ProcessGroup {
    /// A group is never left running: if the owner is dropped early (a bug, or a panic), the
    /// whole group is killed and the leader reaped.
    fn drop(&mut self) {
        if !self.reaped {
            self.signal(Signal::KILL);
            self.reap();
        }
    }
}

/// Waits for `pid` on a thread of its own. Only for a killed process that has not died yet:
/// blocking a thread that does nothing else is the price of never leaving a zombie.
fn reap_when_it_dies(pid: Pid) {
    tracing::warn!(
        pid = pid.as_raw_nonzero().get(),
        "a killed command has not exited yet; it is reaped when it does"
    );
    let spawned = std::thread::Builder::new()
        .name("reaper".into())
        .spawn(move || {
            let _ = usage::reap(pid);
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start a thread to reap a killed command");
    }
}

/// The conventional name of a signal number (`SIGKILL`), for `cmd.signal.NAME`.
pub fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("SIG{signal}"))
}

/// Whether /proc shows a process of group `pgid` that has not exited; `None` without /proc.
fn live_member_in_proc(pgid: i32) -> Option<bool> {
    std::fs::metadata("/proc/self").ok()?;
    Some(
        procfs::pids().any(|pid| {
            procfs::stat(pid).is_some_and(|stat| stat.pgrp == pgid && !stat.has_exited())
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn terminate_stops_the_whole_group() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let mut group = ProcessGroup::new(Pid::from_child(&child));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(group.has_members());
        group.terminate(Duration::from_secs(2)).await;
        assert!(!group.has_members());
        assert!(group.usage().is_some(), "reaped with its usage");
        // Already reaped by `terminate`; this only tells the std handle so.
        let _ = child.try_wait();
    }
}
