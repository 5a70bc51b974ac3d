//! A cgroup (v2) per request, where the runner may make one. A process cannot leave its cgroup
//! without write access to another one, so everything a request's commands start stays in the
//! request's cgroup or below it, whatever it does to its session, process group or environment,
//! and `cgroup.kill` ends them all at once.
//!
//! Used only where the runner's own cgroup is writable and has `cgroup.kill` (Linux ≥ 5.14): a
//! privileged container, a systemd unit with `Delegate=yes`, a host. In the usual container
//! the cgroup file system is read-only, and the environment mark is all there is. A command is
//! created in the request's cgroup (clone3), or where that is refused moves itself in between
//! clone and exec (`child`), so nothing it starts is ever outside.
//!
//! A command running as root can do more to its cgroup than run in it, and all of it ends with
//! the request: cgroups nested in it are the request's (`tree`); a frozen cgroup is thawed
//! before its processes are stopped; the runner itself (or its init) moved into it is moved
//! back out before the cgroup is killed; and a cgroup is given to a later request only as it
//! was made (`pool`). A name that is taken (a stale cgroup of a runner that was SIGKILLed: as
//! PID 1 the server's pid is always 2) is passed over for the next.
//!
//! File-system calls on cgroupfs only, never on anything a request names: quick, and none
//! waits for another process, so the sweeps of a request whose commands all joined its cgroup
//! make them on the async threads. Making the cgroup and waiting for it to empty run on the
//! blocking pool.

mod files;
mod locate;
mod memory;
mod memory_place;
mod memory_pool;
mod pool;
mod spares;
mod tree;

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use rustix::fs::{Mode, OFlags};

pub(crate) use locate::{Hierarchy, OwnCgroups};
pub(crate) use memory::{
    leave_request_cgroup_open, remove_spares as remove_memory_spares, MemoryCgroup,
};
pub(crate) use memory_place::mechanism as memory_mechanism;
pub(crate) use pool::remove_spares as remove_request_spares;

use crate::sync::lock;
use files::{pids_in, write, Files};

/// How often, and how long apart, releasing a cgroup whose last processes are still exiting
/// is tried.
const RELEASE_TRIES: u32 = 50;
const RELEASE_PAUSE: Duration = Duration::from_millis(20);

/// How many taken names are passed over before making a cgroup is given up.
const NAME_TRIES: u32 = 256;

/// Where request cgroups are made: the runner's own cgroup v2.
struct Home {
    dir: PathBuf,
    /// The runner's own cgroup as /proc/<pid>/cgroup shows it (`/` + path below the root).
    path: String,
    /// Its `cgroup.procs`, to move a process that must not be killed back out of a request's.
    procs: OwnedFd,
}

/// The runner's own cgroup, when request cgroups can be made in it: found once, and tried with
/// a first cgroup, which is kept for the first request.
static HOME: LazyLock<Option<Home>> = LazyLock::new(|| {
    let own = OwnCgroups::at_start();
    let dir = own.unified()?;
    let path = own.path_in(Hierarchy::Unified)?.to_owned();
    let procs = rustix::fs::open(
        dir.join("cgroup.procs"),
        OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let home = Home { dir, path, procs };
    let (first, files) = home.make().ok()?;
    pool::give_back(first, files);
    Some(home)
});

/// The cgroup mounts a command could write through (as root), as they were at start: what a
/// request's Landlock domain grants only for reading, so that no command can kill, freeze,
/// limit or move another request's processes (or the runner's) through cgroup files.
pub(crate) fn writable_mounts() -> Vec<PathBuf> {
    OwnCgroups::at_start().writable_mounts()
}

/// Where request cgroups are made, when they can be (found, and tried, at the first call).
pub(crate) fn home_dir() -> Option<&'static Path> {
    HOME.as_ref().map(|home| home.dir.as_path())
}

impl Home {
    /// A new cgroup with its files open, under a name no cgroup has.
    fn make(&self) -> io::Result<(PathBuf, Arc<Files>)> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let mut taken = 0;
        let dir = loop {
            let serial = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = self
                .dir
                .join(format!("direktiv-cmd-{}-{serial}", std::process::id()));
            match std::fs::create_dir(&dir) {
                Ok(()) => break dir,
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                    taken += 1;
                    if taken == NAME_TRIES {
                        return Err(error);
                    }
                }
                Err(error) => return Err(error),
            }
        };
        if taken > 0 {
            tracing::info!(taken, dir = %dir.display(), "passed over cgroup names already taken");
        }
        match Files::open(&dir) {
            Ok(files) => Ok((dir, Arc::new(files))),
            Err(error) => {
                let _ = std::fs::remove_dir(&dir);
                Err(error)
            }
        }
    }
}

/// One request's cgroup.
#[derive(Debug)]
pub(crate) struct RequestCgroup {
    dir: PathBuf,
    /// The cgroup as /proc/<pid>/cgroup shows it.
    path: String,
    files: Arc<Files>,
    /// Set when the request gives the cgroup back: it may then serve another request, so
    /// nothing of this one (a late look that timed out) may read or kill it any more. Held
    /// while killing, so a kill and the giving back never overlap.
    released: Mutex<bool>,
    /// Set once `cgroup.kill` was written, by the runner or (as a command created in it died
    /// before its first instruction showed) by anyone. Linux (6.18) then kills every process
    /// later created in the cgroup by clone3 (it compares the cgroup's kill count with the
    /// parent's own cgroup's), so later commands move themselves in instead, and the cgroup
    /// is never kept for another request.
    killed: AtomicBool,
    /// Whether `memory` is on in its `cgroup.subtree_control` (cgroup v2, where the runner's
    /// cgroup delegates it): turned on for a command with a memory limit, whose memory cgroup
    /// is nested in it (`memory`), and left on while the request's commands have limits. It
    /// holds no process of its own meanwhile, so it is turned off before a command without a
    /// memory cgroup starts (`memory::leave_request_cgroup_open`). Such a cgroup has a
    /// controller, so it is never kept for another request.
    memory_on: AtomicBool,
}

impl RequestCgroup {
    /// A cgroup for a request, kept from an earlier one (and unchanged) or made now; `None`
    /// where the runner cannot make one.
    pub(crate) fn create() -> Option<Self> {
        let home = HOME.as_ref()?;
        let (dir, files) = match pool::take() {
            Some(spare) => spare,
            None => match home.make() {
                Ok(made) => made,
                Err(error) => {
                    tracing::warn!(%error, "cannot make a cgroup for the request");
                    return None;
                }
            },
        };
        let name = dir.file_name()?.to_string_lossy().into_owned();
        Some(RequestCgroup {
            path: format!("{}/{name}", home.path.trim_end_matches('/')),
            dir,
            files,
            released: Mutex::new(false),
            killed: AtomicBool::new(false),
            memory_on: AtomicBool::new(false),
        })
    }

    fn is_released(&self) -> bool {
        *lock(&self.released)
    }

    /// The cgroup's directory, to create a command in; `None` once it was killed.
    pub(super) fn dir_to_create_in(&self) -> Option<BorrowedFd<'_>> {
        (!self.killed.load(Ordering::SeqCst)).then(|| self.files.dir.as_fd())
    }

    /// `cgroup.procs` open for writing, for a command that moves itself in.
    pub(super) fn procs_to_join(&self) -> BorrowedFd<'_> {
        self.files.join.as_fd()
    }

    /// Notes that a command created in the cgroup was killed before it ran: someone wrote
    /// `cgroup.kill`.
    pub(super) fn killed_by_someone(&self) {
        if !self.killed.swap(true, Ordering::SeqCst) {
            tracing::info!(dir = %self.dir.display(), "a command created in the request's cgroup was killed at once: the cgroup was killed; commands move in from now on, and it is not kept");
        }
    }

    /// The processes in the cgroup and in every cgroup nested in it now, thawing whatever of
    /// it is frozen (a frozen process takes SIGTERM only once thawed, and a command created in
    /// a frozen cgroup never gets to its exec). One read of `cgroup.events` when nothing is
    /// left, as after most commands.
    pub(crate) fn members(&self) -> Vec<i32> {
        if self.is_released() {
            return Vec::new();
        }
        let (populated, frozen) = self.files.state();
        if frozen {
            let _ = write(self.files.freeze.as_fd(), b"0");
        }
        if populated == Some(false) {
            return Vec::new();
        }
        let mut members = pids_in(self.files.procs.as_fd());
        if self.files.descendants().unwrap_or(1) > 0 {
            tree::thaw_below(self.files.dir.as_fd());
            members.extend(tree::members_below(self.files.dir.as_fd()));
        }
        members
    }

    /// Whether `pid` is in this cgroup or one nested in it (read from /proc/<pid>/cgroup).
    pub(crate) fn holds(&self, pid: i32) -> bool {
        if self.is_released() {
            return false;
        }
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|text| {
            text.lines()
                .filter_map(|line| line.strip_prefix("0::"))
                .any(|path| {
                    path.strip_prefix(self.path.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
                })
        })
    }

    /// Thaws the cgroup and those nested in it, where one is frozen: a frozen process takes
    /// SIGTERM only once thawed, and a command created in a frozen cgroup never gets to its
    /// exec (the start waiting for it would wait for good).
    pub(crate) fn thaw(&self) {
        if self.is_released() {
            return;
        }
        if self.files.state().1 {
            let _ = write(self.files.freeze.as_fd(), b"0");
        }
        if self.files.descendants().unwrap_or(1) > 0 {
            tree::thaw_below(self.files.dir.as_fd());
        }
    }

    /// SIGKILL to every process in the cgroup and below, atomically (a process forking
    /// meanwhile cannot slip out) — after moving out those the runner must never kill
    /// (`protected`: the runner itself, its init), which a command may have moved in.
    pub(crate) fn kill(&self, protected: impl Fn(i32) -> bool) {
        let released = lock(&self.released);
        if *released {
            return;
        }
        self.evict(&protected);
        self.killed.store(true, Ordering::SeqCst);
        if let Err(error) = write(self.files.kill.as_fd(), b"1") {
            tracing::warn!(%error, dir = %self.dir.display(), "cannot kill a request's cgroup");
        }
    }

    /// Moves every process of the cgroup (or below) that `protected` names back into the
    /// runner's own cgroup.
    fn evict(&self, protected: &impl Fn(i32) -> bool) {
        let Some(home) = HOME.as_ref() else {
            return;
        };
        let mut members = pids_in(self.files.procs.as_fd());
        if self.files.descendants().unwrap_or(1) > 0 {
            members.extend(tree::members_below(self.files.dir.as_fd()));
        }
        for pid in members.into_iter().filter(|&pid| protected(pid)) {
            match write(home.procs.as_fd(), pid.to_string().as_bytes()) {
                Ok(()) => tracing::warn!(
                    pid,
                    "moved a process the runner must not kill out of a request's cgroup"
                ),
                Err(error) => {
                    tracing::warn!(pid, %error, "cannot move a process the runner must not kill out of a request's cgroup")
                }
            }
        }
    }

    /// Once its processes are gone, keeps the cgroup for another request or removes it. For a
    /// cgroup `release_if_empty` just found populated: each try comes after a pause, and moves
    /// out what `protected` names (it never empties by itself). One left populated is left
    /// alone, with a warning: it is never reused while something may still run in it.
    pub(crate) fn release(&self, protected: impl Fn(i32) -> bool) {
        for _ in 0..RELEASE_TRIES {
            std::thread::sleep(RELEASE_PAUSE);
            if !self.is_released() {
                self.evict(&protected);
            }
            if self.release_if_empty() {
                return;
            }
        }
        tracing::warn!(dir = %self.dir.display(), "a request's cgroup did not empty; it is left");
    }

    /// `release`'s one try, which does not wait: true when the cgroup was empty and is kept or
    /// removed now. Kept only when it was never killed and nothing is nested in it (what else
    /// a command may have changed is checked when it is taken again).
    pub(crate) fn release_if_empty(&self) -> bool {
        if self.files.state().0 != Some(false) {
            return false;
        }
        let mut released = lock(&self.released);
        if *released {
            return true;
        }
        *released = true;
        drop(released);
        let clean = !self.killed.load(Ordering::SeqCst) && self.files.descendants().ok() == Some(0);
        if clean {
            pool::give_back(self.dir.clone(), Arc::clone(&self.files));
        } else {
            pool::remove(&self.dir, &self.files);
        }
        true
    }

    #[cfg(test)]
    pub(crate) fn stand_in(dir: &Path) -> Self {
        files::stand_in::fresh_cgroup(dir);
        RequestCgroup {
            dir: dir.to_owned(),
            path: "/stand-in".into(),
            files: Arc::new(Files::open(dir).unwrap()),
            released: Mutex::new(false),
            killed: AtomicBool::new(false),
            memory_on: AtomicBool::new(false),
        }
    }

    #[cfg(test)]
    pub(crate) fn mark_killed(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }
}
