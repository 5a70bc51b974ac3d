//! The kernel half of running commands, in one room: every `unsafe` block of the product lives
//! here, behind the small safe API below. `exec` runs one command's life on top of it.
//!
//! ```text
//! image      what a child execs (path, argv, env, cwd), prepared before the clone
//! spawn      pipes and the start ─ clone (CLONE_VM|CLONE_VFORK, pooled `stack`; `clone3`
//!            into the request's cgroup) ─ child (the duties before exec, in order)
//! group      a command's process group: wait for its leader, stop it
//! reap       how a process ended (ExitKind) and what it used (wait4)
//! tracker    every process of one request: its cgroup and its environment mark
//! leaders    the live command leaders and their requests, which a look for a mark passes over
//! stop       the one stop policy: SIGTERM, grace, SIGKILL, bounded wait
//! cgroup     request cgroups: locate, make, verify, keep, sweep, kill, remove; a memory
//!            cgroup per command with a `memory` limit (v2 nested, or v1, kept and verified)
//! oom        the memory cgroup's OOM-kill count, the children's raised OOM score
//! landlock   a request's ruleset, built once; entered by each of its children before exec
//! procfs     what /proc says about a process
//! signals    masks and dispositions rustix has no call for; `own`: fork as PID 1, malloc
//! ```
//!
//! What a request does to its processes and cgroups ends with it: nothing kept between
//! requests (cgroups in the pool, child stacks) is handed on changed (`cgroup`).

mod cgroup;
mod child;
mod clone;
mod clone3;
mod group;
mod image;
mod landlock;
mod leaders;
mod oom;
mod own;
mod procfs;
mod reap;
mod signals;
mod spawn;
mod stack;
mod stop;
mod tracker;

pub(crate) use cgroup::{
    home_dir as cgroup_home, leave_request_cgroup_open, memory_mechanism,
    writable_mounts as writable_cgroup_mounts, MemoryCgroup, RequestCgroup,
};

/// Removes the kept cgroups, request and memory ones; later emptied ones are removed, not
/// kept. Called at exit, once no request runs.
pub(crate) fn remove_spare_cgroups() {
    cgroup::remove_request_spares();
    cgroup::remove_memory_spares();
}
pub(crate) use group::ProcessGroup;
pub(crate) use image::{ChildEnv, Image};
pub(crate) use landlock::{abi as landlock_abi, Access, GrantTarget, Ruleset};
pub(crate) use oom::{count as oom_kills, rose as oom_kills_rose};
pub use own::{become_undumpable, block_sigchld, limit_malloc_arenas};
pub(crate) use own::{fork_single_threaded, Forked};
pub(crate) use reap::{signal_name, ExitKind, Usage};
pub(crate) use signals::SignalSet;
pub(crate) use spawn::{spawn, SpawnRequest, Spawned};
pub(crate) use stop::{StopPolicy, Stopped};
pub(crate) use tracker::{RequestTracker, MARK_VARIABLE};
