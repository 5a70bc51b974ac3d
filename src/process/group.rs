//! A command's process group: the unit the runner stops. Every command is started as the leader
//! of a new group (the child's `OwnProcessGroup` duty), so its whole tree — shells, pipelines,
//! background jobs — can be signalled at once with `kill(-pgid)`.

use std::os::fd::{AsFd, OwnedFd};
#[cfg(test)]
use std::os::unix::process::CommandExt;
use std::time::Duration;

use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};
use tokio::io::unix::AsyncFd;
use tokio::time::sleep;

use super::procfs;
use super::reap::{self, ExitKind, Usage};
use super::stop::{Members, StopPolicy, Stopped};

/// How often an exit or an empty group is polled for where no event announces it (no pidfd,
/// or waiting for the last members of a group): short enough not to add noticeable latency to
/// a response, long enough to cost nothing measurable while a command runs.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// A started command's process group, led by the command's main process.
///
/// The leader is not reaped until `reap` is called: while it is a zombie its pid stays
/// allocated, so `kill(-pgid)` can never reach a newer, unrelated group that reused the number.
pub(crate) struct ProcessGroup {
    leader: Pid,
    /// Readable once the leader has exited (Linux ≥ 5.3); `None` falls back to polling.
    pidfd: Option<AsyncFd<OwnedFd>>,
    reaped: bool,
    /// What the leader (and the descendants it waited for) used, once reaped.
    usage: Option<Usage>,
    /// Whether the group was sent SIGTERM (once is enough).
    terminated: bool,
}

impl ProcessGroup {
    /// Takes charge of a freshly started group leader.
    pub(crate) fn new(leader: Pid) -> Self {
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
            terminated: false,
        }
    }

    /// Waits until the leader exits and returns how, without reaping it.
    pub(crate) async fn wait_leader(&self) -> ExitKind {
        loop {
            if let Some(kind) = self.peek_exit() {
                return kind;
            }
            self.leader_event(POLL_INTERVAL).await;
        }
    }

    /// Waits for the leader's pidfd to turn readable (it exited), at most `limit`.
    async fn leader_event(&self, limit: Duration) {
        match &self.pidfd {
            Some(fd) if !self.reaped => {
                if let Ok(Ok(mut guard)) = tokio::time::timeout(limit, fd.readable()).await {
                    guard.clear_ready();
                }
            }
            _ => sleep(limit.min(POLL_INTERVAL)).await,
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
    fn signal_all(&self, signal: Signal) {
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

    /// Stops the whole group with `policy` (at once when it is empty, as it usually is once the
    /// leader exited), reaping the leader on the way: its zombie keeps the group "non-empty".
    /// A leader stuck in uninterruptible sleep past SIGKILL is left to a reaper thread.
    pub(crate) async fn stop(&mut self, policy: StopPolicy) -> Stopped {
        let stopped = policy.stop(self).await;
        self.reap();
        stopped
    }

    /// What the leader used (see `reap`), once it has been reaped.
    pub(crate) fn usage(&self) -> Option<Usage> {
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
        // Before the reap frees its number (see `leaders`).
        super::leaders::reaping(self.leader.as_raw_nonzero().get());
        match reap::reap_if_exited(self.leader) {
            Ok(Some((_, usage))) => self.usage = Some(usage),
            Ok(None) => reap_when_it_dies(self.leader),
            Err(_) => {}
        }
    }

    /// Reaps the leader if it has exited (never waits).
    fn reap_if_exited(&mut self) {
        if !self.reaped && self.peek_exit().is_some() {
            self.reap();
        }
    }
}

impl Members for ProcessGroup {
    /// The leader counts until it is reaped: its zombie holds the group's number.
    async fn signal(&mut self, signal: Signal) -> Option<usize> {
        self.reap_if_exited();
        if self.reaped && !self.has_members() {
            return Some(0);
        }
        if signal != Signal::TERM || !self.terminated {
            self.terminated = true;
            self.signal_all(signal);
        }
        Some(1)
    }

    async fn pause(&self, limit: Duration) {
        self.leader_event(limit).await;
    }
}

impl Drop for ProcessGroup {
    /// A group is never left running: if the owner is dropped early (a bug, or a panic), the
    /// whole group is killed and the leader reaped.
    fn drop(&mut self) {
        if !self.reaped {
            self.signal_all(Signal::KILL);
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
            let _ = reap::reap(pid);
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start a thread to reap a killed command");
    }
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
    async fn a_leader_is_forgotten_before_it_is_reaped() {
        let mut child = std::process::Command::new("true")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = Pid::from_child(&child);
        let raw = pid.as_raw_nonzero().get();
        super::super::leaders::started(raw, u64::MAX - 3);
        let mut group = ProcessGroup::new(pid);
        group.wait_leader().await;
        assert!(super::super::leaders::held_by_other(raw, 0));
        group
            .stop(StopPolicy::with_grace(Duration::from_secs(1)))
            .await;
        assert!(!super::super::leaders::held_by_other(raw, 0));
        // Already reaped by `stop`; this only tells the std handle so.
        let _ = child.try_wait();
    }

    #[tokio::test]
    async fn stopping_ends_the_whole_group_and_reaps_the_leader() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let mut group = ProcessGroup::new(Pid::from_child(&child));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(group.has_members());
        let stopped = group
            .stop(StopPolicy::with_grace(Duration::from_secs(2)))
            .await;
        assert_eq!(stopped, Stopped::Gone);
        assert!(!group.has_members());
        assert!(group.usage().is_some(), "reaped with its usage");
        // Already reaped by `stop`; this only tells the std handle so.
        let _ = child.try_wait();
    }

    #[tokio::test]
    async fn a_group_that_ignores_sigterm_is_killed_after_the_grace_period() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "trap '' TERM; sleep 30 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let mut group = ProcessGroup::new(Pid::from_child(&child));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = std::time::Instant::now();
        let stopped = group
            .stop(StopPolicy::with_grace(Duration::from_millis(300)))
            .await;
        assert_eq!(stopped, Stopped::Killed);
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(!group.has_members());
        let _ = child.try_wait();
    }
}
