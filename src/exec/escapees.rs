//! Processes that left their command's process group: `setsid`, `setpgid`, daemonizing tools.
//! A process group cannot hold them, so every command of a request gets a mark in its
//! environment, `DIREKTIV_CMD_REQUEST=<unique value>`, which everything it starts inherits
//! whatever group or session it moves to. At the end of every command and of the request the
//! runner looks through /proc for live processes carrying the mark and stops them like a group:
//! SIGTERM, then SIGKILL for whatever is left after the grace period.
//!
//! What the mark cannot catch (README): a process that starts a program with a cleared or
//! rewritten environment (`env -i`, a daemon that overwrites its environment for its process
//! title), or that runs as another user whose environment the runner may not read.
//!
//! The mark is set last, over the request's own `env`, so a request cannot untrack itself by
//! setting the variable. The runner itself never carries a mark of its own and is skipped,
//! as is its parent (the init when the runner is PID 1); a request only ever stops processes
//! carrying its own mark.

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustix::process::{Pid, PidfdFlags, Signal};
use tokio::time::{sleep, Instant};

use super::procfs;
use crate::metrics::METRICS;

/// The variable that marks a request's processes.
pub(crate) const MARK_VARIABLE: &str = "DIREKTIV_CMD_REQUEST";

/// How often /proc is looked through again while escapees are being stopped.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How long escapees get to disappear after SIGKILL: it takes effect within milliseconds;
/// this only bounds the wait for processes stuck in the kernel.
const KILLED_WAIT: Duration = Duration::from_secs(2);

/// The mark of one request's processes.
pub(crate) struct RequestMark {
    /// `DIREKTIV_CMD_REQUEST=<value>`, as it appears in /proc/<pid>/environ.
    entry: String,
    /// Start time (clock ticks since boot) of the request's first process: nothing started
    /// earlier can carry the mark, so older processes are not even read.
    first_start: AtomicU64,
}

impl RequestMark {
    /// A mark no other request of this runner (or of another runner on the machine) has.
    pub(crate) fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let serial = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let value = format!("{}-{serial}-{nanos:x}", std::process::id());
        RequestMark {
            entry: format!("{MARK_VARIABLE}={value}"),
            first_start: AtomicU64::new(u64::MAX),
        }
    }

    /// The variable's value, set in every command's environment.
    pub(crate) fn value(&self) -> &str {
        &self.entry[MARK_VARIABLE.len() + 1..]
    }

    /// Notes a process the request started, to narrow later searches to newer processes.
    pub(crate) fn started(&self, pid: Pid) {
        if let Some(stat) = procfs::stat(pid.as_raw_nonzero().get()) {
            self.first_start
                .fetch_min(stat.start_time, Ordering::Relaxed);
        }
    }

    /// Stops every live process carrying the mark, except members of `group` (a command's
    /// own process group, stopped with the group): SIGTERM, SIGKILL for what is left after
    /// `grace`. Returns once none is left (or `KILLED_WAIT` after SIGKILL); counts what it
    /// stopped in `direktiv_cmd_escaped_processes_killed`.
    pub(crate) async fn stop_escapees(&self, group: Option<Pid>, grace: Duration) -> usize {
        let mut signalled = HashSet::new();
        let term_until = Instant::now() + grace;
        let mut kill_until = None;
        loop {
            let found = self.find(group).await;
            if found.is_empty() {
                break;
            }
            let now = Instant::now();
            let signal = if now < term_until {
                Signal::TERM
            } else {
                Signal::KILL
            };
            for pid in found {
                // New escapees get SIGTERM once; after the grace everything gets SIGKILL.
                if signalled.insert(pid) || signal == Signal::KILL {
                    self.send(pid, signal);
                }
            }
            if signal == Signal::KILL {
                let until = *kill_until.get_or_insert(now + KILLED_WAIT);
                if now >= until {
                    tracing::warn!(
                        "processes that left their command's group did not die after SIGKILL"
                    );
                    break;
                }
            }
            sleep(POLL_INTERVAL).await;
        }
        if !signalled.is_empty() {
            tracing::info!(
                count = signalled.len(),
                "stopped processes that had left their command's process group"
            );
            METRICS
                .escaped_processes_killed
                .inc_by(signalled.len() as u64);
        }
        signalled.len()
    }

    /// The live processes carrying the mark, outside `group`; read on the blocking pool.
    async fn find(&self, group: Option<Pid>) -> Vec<i32> {
        let entry = self.entry.clone();
        let since = self.first_start.load(Ordering::Relaxed);
        let group = group.map(|pid| pid.as_raw_nonzero().get());
        tokio::task::spawn_blocking(move || marked_processes(entry.as_bytes(), since, group))
            .await
            .unwrap_or_default()
    }

    /// Signals `pid` through a pidfd after checking, with the pidfd open, that it still carries
    /// the mark: a number reused by an unrelated process in the meantime is never signalled.
    fn send(&self, pid: i32, signal: Signal) {
        let Some(pid_value) = Pid::from_raw(pid) else {
            return;
        };
        let Ok(pidfd): Result<OwnedFd, _> =
            rustix::process::pidfd_open(pid_value, PidfdFlags::empty())
        else {
            return;
        };
        if procfs::environ_has(pid, self.entry.as_bytes()) {
            let _ = rustix::process::pidfd_send_signal(&pidfd, signal);
        }
    }
}

/// Live processes started at or after `since` whose environment holds `entry`, not in `group`,
/// never the runner or its parent.
fn marked_processes(entry: &[u8], since: u64, group: Option<i32>) -> Vec<i32> {
    let me = std::process::id() as i32;
    let parent = rustix::process::getppid().map_or(0, |pid| pid.as_raw_nonzero().get());
    procfs::pids()
        .filter(|&pid| pid != me && pid != parent)
        .filter(|&pid| {
            procfs::stat(pid).is_some_and(|stat| {
                !stat.has_exited() && stat.start_time >= since && Some(stat.pgrp) != group
            })
        })
        .filter(|&pid| procfs::environ_has(pid, entry))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::{CommandExt, ExitStatusExt};

    use super::*;

    #[tokio::test]
    async fn stops_marked_processes_outside_the_group_and_nothing_else() {
        let mark = RequestMark::new();
        let unmarked = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut escapee = std::process::Command::new("sleep")
            .arg("30")
            .env(MARK_VARIABLE, mark.value())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut member = std::process::Command::new("sleep")
            .arg("30")
            .env(MARK_VARIABLE, mark.value())
            .process_group(0)
            .spawn()
            .unwrap();
        let group = Pid::from_child(&member);
        mark.started(Pid::from_child(&escapee));
        let stopped = mark
            .stop_escapees(Some(group), Duration::from_secs(1))
            .await;
        assert_eq!(stopped, 1);
        assert!(
            escapee.wait().unwrap().signal().is_some(),
            "the escapee was stopped"
        );
        assert!(
            member.try_wait().unwrap().is_none(),
            "the group is the group's business"
        );
        let mut unmarked = unmarked;
        assert!(unmarked.try_wait().unwrap().is_none());
        for mut child in [member, unmarked] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    #[test]
    fn marks_differ() {
        assert_ne!(RequestMark::new().value(), RequestMark::new().value());
    }
}
