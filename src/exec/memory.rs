//! A command's `memory` limit, seen from its life: which mechanism holds it (a memory cgroup
//! of its own where the runner makes them, else `RLIMIT_DATA`, as `CMD_LIMITS_MECHANISM` and
//! the machine allow), the cgroup made for it and removed after it, and on cgroup v1 the watch
//! that ends the whole command once the kernel killed a process of it (v2's `memory.oom.group`
//! does that itself). The cgroup itself is `crate::process::MemoryCgroup`.

use std::time::Duration;

use crate::config::{Config, LimitsMechanism};
use crate::limits::{Limits, MemoryBy};
use crate::process::{self, MemoryCgroup, RequestCgroup};

/// How `memory` limits are enforced: `CMD_LIMITS_MECHANISM`, and what the machine allows
/// (found once).
pub(crate) fn memory_by(config: &Config) -> MemoryBy {
    match config.limits_mechanism {
        LimitsMechanism::Auto if process::memory_mechanism().is_some() => MemoryBy::Cgroup,
        LimitsMechanism::Auto | LimitsMechanism::Rlimit => MemoryBy::Rlimit,
    }
}

/// How `memory` limits are enforced, for the start-up line (`crate::startup`).
pub(crate) fn memory_enforcement(config: &Config) -> String {
    match (config.limits_mechanism, process::memory_mechanism()) {
        (LimitsMechanism::Rlimit, _) => {
            "writable private memory (RLIMIT_DATA, as CMD_LIMITS_MECHANISM=rlimit says)".to_owned()
        }
        (LimitsMechanism::Auto, Some(cgroup)) => cgroup,
        (LimitsMechanism::Auto, None) => {
            "writable private memory (RLIMIT_DATA: no memory cgroup can be made here)".to_owned()
        }
    }
}

/// How often the OOM count of a command's cgroup v1 memory cgroup is read while it runs: v1
/// has no `memory.oom.group`, so the runner kills the rest of a command the kernel killed a
/// process of.
const MEMORY_WATCH: Duration = Duration::from_millis(50);

/// Returns once the kernel killed a process of a command in its v1 memory cgroup; never for a
/// command without one, or with one on v2, where the kernel kills the whole command.
pub(super) async fn memory_limit_passed(memory: Option<&MemoryCgroup>) {
    let Some(memory) = memory.filter(|memory| !memory.kills_group_itself()) else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(MEMORY_WATCH).await;
        if memory.oom_killed() {
            return;
        }
    }
}

/// A command's memory cgroup, disposed of when dropped (its processes are stopped by then):
/// kept for a later command or removed (`MemoryCgroup::dispose`).
pub(super) struct OwnMemoryCgroup(pub(super) Option<MemoryCgroup>);

impl Drop for OwnMemoryCgroup {
    fn drop(&mut self) {
        if let Some(memory) = self.0.take() {
            memory.dispose();
        }
    }
}

/// The memory cgroup for a command with a `memory` limit, where limits are enforced by memory
/// cgroups; `None` (the limit is then `RLIMIT_DATA`) otherwise, or when one cannot be made.
/// A command without one gets the request's cgroup ready to hold it (on v2 an earlier command's
/// memory cgroup was nested in it). Blocking (cgroupfs).
pub(super) fn memory_cgroup(
    memory_by: MemoryBy,
    limits: Limits,
    request: Option<&RequestCgroup>,
) -> Option<MemoryCgroup> {
    let made = match limits.memory.filter(|_| memory_by == MemoryBy::Cgroup) {
        Some(bytes) => MemoryCgroup::create(bytes, request).unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot make a memory cgroup for a command; its memory limit is RLIMIT_DATA");
            None
        }),
        None => None,
    };
    if let (None, Some(request)) = (&made, request) {
        process::leave_request_cgroup_open(request);
    }
    made
}
