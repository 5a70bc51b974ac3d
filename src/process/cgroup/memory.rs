//! A memory cgroup of its own for each command with a `memory` limit, where the runner can make
//! one: the limit is then memory the command *uses* (`memory.max`), not address space it
//! reserves, so the JVM, V8, Go and Bun — which reserve gigabytes they never touch — start
//! under a few hundred MiB, and a command that passes its limit is killed by the kernel inside
//! its own cgroup, counted there, and told apart from the container's own OOM kill.
//!
//! Two places qualify, found once at start-up (`memory_place`):
//!
//! - cgroup v2, when the runner's cgroup delegates the memory controller (`memory` in its
//!   `cgroup.subtree_control`): every request cgroup then has it, and the command's memory
//!   cgroup is nested in the request's, so everything the request tracks still holds. `memory`
//!   is turned on in the request cgroup for its first limited command (between commands it
//!   holds no process, so no process moves: no wait for the kernel) and left on while its
//!   commands have memory limits; a command without one turns it off first
//!   (`leave_request_cgroup_open`), since a cgroup with it on can hold no process itself.
//!   Turning it off waits for the kernel to finish with the memory cgroups removed just
//!   before: on the blocking pool, and only when a command without a limit follows one with.
//!   `memory.max` = the limit, `memory.swap.max` = 0, `memory.oom.group` = 1: an OOM kill
//!   takes the whole command.
//! - a writable cgroup v1 memory hierarchy (the runner's own memory cgroup): the command's
//!   memory cgroup is made below it. `memory.limit_in_bytes` = the limit, and
//!   `memory.memsw.limit_in_bytes` the same where swap is accounted (no swap on top). v1 has no
//!   `oom.group`: the runner watches the count and kills the rest of the command itself
//!   (`kills_group_itself`).
//!
//! A command's memory cgroup is made before its start and entered before its exec (created in it
//! by clone3 on v2, moving itself in on v1). Once its processes are stopped it is removed, on v2
//! with whatever a command did to it (a raised limit, cgroups nested in it); on v1, where making
//! and removing one is most of a limited command's cost, it is kept for a later command when it
//! is empty and never saw an OOM kill, and given out again only as it was made
//! (`memory_pool`).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use rustix::fs::{Mode, OFlags};
use rustix::process::{Pid, PidfdFlags, Signal};

use super::files::{pids_in, read_text, write};
use super::memory_place::{make_dir, open_in, Place, PLACE};
use super::memory_pool::AsMade;
use super::spares::Spares;
use super::{tree, RequestCgroup};

/// What a command writes `0` to to move itself into its v1 memory cgroup: `tasks`, which moves
/// the writing thread alone. The command is one thread then (between its clone and its exec),
/// so that is the whole process; and the kernel moves the writer itself without the lock a move
/// of a whole process (`cgroup.procs`) takes, which after a quiet moment waits for an RCU grace
/// period: measured here, a command's move after 0.3 s without one took 6–14 ms through
/// `cgroup.procs` and 60–110 µs through `tasks`.
const JOIN_V1: &str = "tasks";

/// Emptied v1 memory cgroups kept for later limited commands (`memory_pool`).
static SPARE: Spares<MemoryCgroup> = Spares::new();

/// Removes the kept memory cgroups; later emptied ones are removed, not kept. Called at exit,
/// once no request runs.
pub(crate) fn remove_spares() {
    for memory in SPARE.drain() {
        memory.remove_patiently();
    }
}

/// One command's memory cgroup.
#[derive(Debug)]
pub(crate) struct MemoryCgroup {
    dir: PathBuf,
    /// The cgroup's directory: on v2 the command is created in it. (Files a command seldom
    /// needs — its `cgroup.procs` for reading, the folder to walk for nested cgroups — are
    /// opened when it does: every open is paid by every limited command.)
    dir_fd: OwnedFd,
    /// `tasks` (v1) or `cgroup.procs` (v2) for writing: the command moves itself in before exec
    /// (`JOIN_V1`).
    join: OwnedFd,
    /// `memory.events` (v2) or `memory.oom_control` (v1): the `oom_kill` count.
    counter: OwnedFd,
    /// Nested in the request's cgroup (v2).
    nested: bool,
    /// The limit, in bytes.
    bytes: u64,
    /// On v1: what it was like when made, to give it to a later command only while it still
    /// is, and the files its limit is written to.
    as_made: Option<AsMade>,
}

impl MemoryCgroup {
    /// A memory cgroup limited to `bytes` for a command of the request whose cgroup is
    /// `request`. `Ok(None)` where the runner makes none (then the limit is an rlimit).
    pub(crate) fn create(bytes: u64, request: Option<&RequestCgroup>) -> io::Result<Option<Self>> {
        match (PLACE.as_ref(), request) {
            (Some(Place::V1 { dir, memsw }), _) => Self::create_v1(dir, *memsw, bytes).map(Some),
            (Some(Place::V2), Some(request)) => Self::create_v2(request, bytes).map(Some),
            // The request has no cgroup to nest one in (it could not be made).
            (Some(Place::V2), None) => Err(io::Error::other("the request has no cgroup")),
            (None, _) => Ok(None),
        }
    }

    fn create_v1(parent: &Path, memsw: bool, bytes: u64) -> io::Result<Self> {
        let discard = |changed: MemoryCgroup, why: String| {
            tracing::info!(why, "a kept memory cgroup was changed; it is removed");
            changed.remove_soon();
        };
        if let Some(kept) = SPARE.take(|kept| kept.reuse(bytes), discard) {
            return Ok(kept);
        }
        let dir = make_dir(parent)?;
        let made = (|| {
            let mut cgroup = Self::open(&dir, "memory.oom_control", JOIN_V1, bytes)?;
            let as_made = AsMade::note(&dir, cgroup.dir_fd.as_fd(), memsw)?;
            as_made.set_limit(u64::MAX, bytes)?;
            cgroup.as_made = Some(as_made);
            Ok(cgroup)
        })();
        if made.is_err() {
            let _ = std::fs::remove_dir(&dir);
        }
        made
    }

    fn create_v2(request: &RequestCgroup, bytes: u64) -> io::Result<Self> {
        if !request.memory_on.load(Ordering::SeqCst) {
            write_subtree_control(request, b"+memory")?;
            request.memory_on.store(true, Ordering::SeqCst);
        }
        let made = make_dir(&request.dir).and_then(|dir| {
            let settings = (|| {
                let set = |name: &str, value: &[u8]| match open_in(&dir, name, OFlags::WRONLY) {
                    Ok(file) => write(file.as_fd(), value),
                    // Without swap accounting there is no swap to turn off.
                    Err(error)
                        if name == "memory.swap.max" && error.kind() == io::ErrorKind::NotFound =>
                    {
                        Ok(())
                    }
                    Err(error) => Err(error),
                };
                set("memory.max", bytes.to_string().as_bytes())?;
                set("memory.swap.max", b"0")?;
                set("memory.oom.group", b"1")
            })();
            let opened =
                settings.and_then(|()| Self::open(&dir, "memory.events", "cgroup.procs", bytes));
            if opened.is_err() {
                let _ = std::fs::remove_dir(&dir);
            }
            opened
        });
        // On failure `memory` stays on: the next command without a memory cgroup turns it off.
        made.map(|cgroup| MemoryCgroup {
            nested: true,
            ..cgroup
        })
    }

    fn open(dir: &Path, counter: &str, join: &str, bytes: u64) -> io::Result<Self> {
        Ok(MemoryCgroup {
            dir_fd: open_in(dir, ".", OFlags::RDONLY | OFlags::DIRECTORY)?,
            join: open_in(dir, join, OFlags::WRONLY)?,
            counter: open_in(dir, counter, OFlags::RDONLY)?,
            dir: dir.to_owned(),
            nested: false,
            bytes,
            as_made: None,
        })
    }

    /// Makes a kept cgroup (v1) the memory cgroup of a command limited to `bytes`, if it is
    /// still as it was made; why not otherwise.
    pub(super) fn reuse(&mut self, bytes: u64) -> Result<(), String> {
        let as_made = self.as_made.as_ref().ok_or("not a kept cgroup")?;
        as_made.changed(self.dir_fd.as_fd(), self.counter.as_fd(), self.bytes, bytes)?;
        as_made
            .set_limit(self.bytes, bytes)
            .map_err(|error| format!("its limit cannot be set: {error}"))?;
        self.bytes = bytes;
        Ok(())
    }

    /// The limit, in bytes.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The cgroup v2 directory to create the command in (nested in the request's cgroup);
    /// `None` on v1, where the command moves itself in.
    pub(in crate::process) fn dir_to_create_in(&self) -> Option<BorrowedFd<'_>> {
        self.nested.then(|| self.dir_fd.as_fd())
    }

    /// The file a command writes `0` to to move itself in, open for writing: `tasks` on v1,
    /// `cgroup.procs` on v2.
    pub(in crate::process) fn procs_to_join(&self) -> BorrowedFd<'_> {
        self.join.as_fd()
    }

    /// Whether it is nested in the request's cgroup (v2): a command in it is in the request's.
    pub(in crate::process) fn in_request_cgroup(&self) -> bool {
        self.nested
    }

    /// Whether the kernel kills every process of the command when one passes the limit (v2's
    /// `memory.oom.group`); on v1 the runner does (`oom_killed`, then `kill`).
    pub(crate) fn kills_group_itself(&self) -> bool {
        self.nested
    }

    /// Whether the kernel's OOM killer killed a process in it: the command passed its limit.
    /// One read of a small cgroup file.
    pub(crate) fn oom_killed(&self) -> bool {
        read_text(self.counter.as_fd())
            .ok()
            .and_then(|text| crate::process::oom::parse_oom_kill(&text))
            .is_some_and(|kills| kills > 0)
    }

    /// SIGKILL to every process in it: what `memory.oom.group` does on v2, for v1. A pid is
    /// signalled through a pidfd opened while it was listed and still listed after: a number
    /// reused meanwhile is never signalled.
    pub(crate) fn kill(&self) {
        let Ok(procs) = open_in(&self.dir, "cgroup.procs", OFlags::RDONLY) else {
            return;
        };
        let listed = pids_in(procs.as_fd());
        let opened: Vec<(i32, OwnedFd)> = listed
            .into_iter()
            .filter_map(|pid| {
                let pidfd = rustix::process::pidfd_open(Pid::from_raw(pid)?, PidfdFlags::empty());
                Some((pid, pidfd.ok()?))
            })
            .collect();
        let still = pids_in(procs.as_fd());
        for (pid, pidfd) in opened.iter().filter(|(pid, _)| still.contains(pid)) {
            if rustix::process::pidfd_send_signal(pidfd, Signal::KILL).is_ok() {
                tracing::debug!(
                    pid,
                    "killed a process of a command that passed its memory limit"
                );
            }
        }
    }

    /// Removes the cgroup once its processes are stopped; false while something is still in
    /// it (the caller tries again later). Cgroups a command running as root nested in it are
    /// removed first; whatever is left in it then is not the request's (such a command may move
    /// another process in): it is moved out.
    pub(crate) fn remove(&self) -> bool {
        match std::fs::remove_dir(&self.dir) {
            Ok(()) => true,
            Err(error) if error.kind() == io::ErrorKind::NotFound => true,
            Err(error) => {
                let nested_gone = open_in(&self.dir, ".", OFlags::RDONLY | OFlags::DIRECTORY)
                    .is_ok_and(|dir| tree::remove_below(dir.as_fd()));
                self.move_out();
                tracing::debug!(%error, nested_gone, dir = %self.dir.display(), "a command's memory cgroup is not empty yet");
                std::fs::remove_dir(&self.dir).is_ok()
            }
        }
    }

    /// Moves every process in it to the cgroup above (v1) or the runner's own (v2).
    fn move_out(&self) {
        let parent = match self.nested {
            true => super::HOME
                .as_ref()
                .map(|home| home.dir.join("cgroup.procs")),
            false => self.dir.parent().map(|dir| dir.join("cgroup.procs")),
        };
        let Some(Ok(parent)) = parent
            .map(|path| rustix::fs::open(path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()))
        else {
            return;
        };
        let Ok(procs) = open_in(&self.dir, "cgroup.procs", OFlags::RDONLY) else {
            return;
        };
        for pid in pids_in(procs.as_fd()) {
            let _ = write(parent.as_fd(), pid.to_string().as_bytes());
        }
    }
}

/// Makes the request's cgroup (v2) able to hold a command again: turns `memory` off where a
/// command with a memory limit turned it on. Called before a command without a memory cgroup
/// starts; nothing to do unless one with a limit ran before it. Blocking: the kernel first
/// finishes with the memory cgroups just removed (for the blocking pool).
pub(crate) fn leave_request_cgroup_open(request: &RequestCgroup) {
    if !request.memory_on.load(Ordering::SeqCst) {
        return;
    }
    match write_subtree_control(request, b"-memory") {
        Ok(()) => request.memory_on.store(false, Ordering::SeqCst),
        // The command then starts outside the request's cgroup, tracked by its mark.
        Err(error) => {
            tracing::warn!(%error, "cannot turn the memory controller off in a request's cgroup")
        }
    }
}

/// Writes `change` (`+memory`, `-memory`) to the request cgroup's `cgroup.subtree_control`.
fn write_subtree_control(request: &RequestCgroup, change: &[u8]) -> io::Result<()> {
    let file = rustix::fs::openat(
        &request.files.dir,
        "cgroup.subtree_control",
        OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    write(file.as_fd(), change)
}

/// How often `remove` is tried for a cgroup whose last processes are still exiting, and the
/// pause between tries.
const REMOVE_TRIES: u32 = 50;
const REMOVE_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

impl MemoryCgroup {
    /// Done with, its command's processes stopped: kept for a later command where that may be
    /// (v1, emptied, never OOM-killed: what else a command may have changed is checked when it
    /// is taken again), else removed (`remove_soon`).
    pub(crate) fn dispose(self) {
        let emptied = self.as_made.is_some() && AsMade::is_empty(self.dir_fd.as_fd());
        if emptied && !self.oom_killed() {
            if let Err(memory) = SPARE.give_back(self) {
                memory.remove_soon();
            }
            return;
        }
        self.remove_soon();
    }

    /// Removes it at once where that is one `rmdir` (v2: the request's next command finds it
    /// gone), else on the blocking pool, so that neither a response nor a command's start
    /// waits for the kernel to take some 30 cgroup files down or for a process to leave.
    pub(super) fn remove_soon(self) {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if !self.kills_group_itself() => {
                drop(runtime.spawn_blocking(move || self.remove_patiently()));
            }
            Ok(runtime) if !self.remove() => {
                drop(runtime.spawn_blocking(move || self.remove_patiently()));
            }
            Ok(_) => {}
            Err(_) => self.remove_patiently(),
        }
    }

    /// `remove`, tried until it works (blocking: for the blocking pool); a warning when the
    /// cgroup stays.
    pub(crate) fn remove_patiently(&self) {
        for _ in 0..REMOVE_TRIES {
            if self.remove() {
                return;
            }
            std::thread::sleep(REMOVE_PAUSE);
        }
        tracing::warn!(dir = %self.dir.display(), "a command's memory cgroup did not empty; it is left");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in request cgroup (a plain folder: no memory cgroup can be made in it) with an
    /// empty `cgroup.subtree_control`.
    fn request(dir: &Path) -> RequestCgroup {
        let request = RequestCgroup::stand_in(dir);
        std::fs::write(dir.join("cgroup.subtree_control"), "").unwrap();
        request
    }

    fn subtree_control(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap()
    }

    #[test]
    fn memory_stays_on_in_the_request_cgroup_until_a_command_without_a_limit() {
        let dir = tempfile::tempdir().unwrap();
        let request = request(dir.path());
        // Nothing to do while no command turned it on.
        leave_request_cgroup_open(&request);
        assert_eq!(subtree_control(dir.path()), "");

        // Turned on first; the folder has no memory.max, so the command's cgroup cannot be
        // made, and none is left behind.
        assert!(MemoryCgroup::create_v2(&request, 256 << 20).is_err());
        assert_eq!(subtree_control(dir.path()), "+memory");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|entry| entry.path().is_dir())
            .collect();
        assert!(left.is_empty(), "{left:?}");

        // Left on for the next limited command (not written again)...
        std::fs::write(dir.path().join("cgroup.subtree_control"), "").unwrap();
        assert!(MemoryCgroup::create_v2(&request, 256 << 20).is_err());
        assert_eq!(subtree_control(dir.path()), "");

        // ...and turned off once before a command without one.
        leave_request_cgroup_open(&request);
        assert_eq!(subtree_control(dir.path()), "-memory");
        std::fs::write(dir.path().join("cgroup.subtree_control"), "").unwrap();
        leave_request_cgroup_open(&request);
        assert_eq!(subtree_control(dir.path()), "");
    }
}
