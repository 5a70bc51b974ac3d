//! A cgroup (v2) per request, where the runner may make one. A process cannot leave its cgroup
//! by itself — moving it takes write access to another cgroup — so everything a request's
//! commands start stays in the request's cgroup, whatever it does to its session, process
//! group or environment, and `cgroup.kill` ends them all at once.
//!
//! Used only where the runner's own cgroup is writable and has `cgroup.kill` (Linux ≥ 5.14):
//! a privileged container, a systemd unit with `Delegate=yes`, a host. In the usual container
//! /sys/fs/cgroup is read-only, and the environment mark (`escapees`) is all there is. A
//! command is created in the request's cgroup (clone3), or where that is refused moves itself
//! in between fork and exec (`spawn`'s vfork path), so nothing it starts is ever outside.
//!
//! An emptied request cgroup is kept for a later request rather than removed (`SPARE`):
//! making and removing one is most of the kernel time a short request costs the runner, while
//! checking that one is empty is one small read. The spares are removed at exit
//! (`remove_spares`). A cgroup's files that every request uses are opened once, with the
//! cgroup, and kept open with it (`Files`): opening a cgroupfs file costs more than reading it.
//!
//! File-system calls on cgroupfs only, never on anything a request names: quick, and none
//! waits for another process, so the sweeps of a request whose commands all joined its cgroup
//! make them on the async threads. Making the cgroup and waiting for it to empty run on the
//! blocking pool.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use rustix::fs::{Mode, OFlags};

use crate::sync::lock;

/// How often, and how long apart, removing an emptied cgroup is tried (its last processes may
/// still be exiting).
const REMOVE_TRIES: u32 = 50;
const REMOVE_PAUSE: Duration = Duration::from_millis(20);

/// How many emptied cgroups are kept for reuse; more are removed.
const SPARE_MAX: usize = 16;

/// Emptied request cgroups, ready for the next requests. `None` once the runner is exiting:
/// from then on an emptied cgroup is removed.
static SPARE: Mutex<Option<Vec<Spare>>> = Mutex::new(Some(Vec::new()));

/// A kept cgroup: its directory and its open files.
type Spare = (PathBuf, Arc<Files>);

/// The runner's own cgroup directory, when request cgroups can be made in it.
static PARENT: LazyLock<Option<PathBuf>> = LazyLock::new(|| {
    let parent = own_cgroup_dir()?;
    let probe = parent.join(format!("direktiv-cmd-{}-probe", std::process::id()));
    std::fs::create_dir(&probe).ok()?;
    let usable = probe.join("cgroup.kill").exists();
    let _ = std::fs::remove_dir(&probe);
    usable.then_some(parent)
});

/// Where request cgroups are made, when they can be (looked for once, at the first call).
pub(crate) fn parent_dir() -> Option<&'static Path> {
    PARENT.as_deref()
}

/// How a command enters the request's cgroup.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CgroupEntry<'a> {
    /// The cgroup's directory, to create the command in it: no process moves, so no task
    /// migration, which takes a lock whose writer waits for an RCU grace period (5–20 ms on an
    /// idle machine) — every migration after a quiet moment paid that. `None` after a
    /// `cgroup.kill`.
    pub(crate) dir: Option<BorrowedFd<'a>>,
    /// `cgroup.procs`, open for writing: where the command cannot be created in the cgroup
    /// (no clone3 in this kernel or allowed by seccomp), it writes `0` there before exec.
    pub(crate) procs: BorrowedFd<'a>,
}

/// One request's cgroup.
#[derive(Debug)]
pub(super) struct RequestCgroup {
    dir: PathBuf,
    files: Arc<Files>,
    /// Set when the request gives the cgroup back: it may then serve another request, so
    /// nothing of this one (a late look that timed out) may read or kill it any more. Held
    /// while killing, so a kill and the giving back never overlap.
    released: Mutex<bool>,
    /// Set once `cgroup.kill` was written. Linux (6.18) then kills every process later
    /// created in the cgroup by clone3 (it compares the cgroup's kill count with the parent's
    /// own cgroup's), so later commands move themselves in instead, and the cgroup is not kept
    /// for another request.
    killed: AtomicBool,
}

/// The files of a cgroup that every request reads or writes, open for as long as the cgroup
/// is kept (close-on-exec: no command inherits them). Reads are `pread`s from the start, which
/// cgroupfs answers with the file's current content.
#[derive(Debug)]
struct Files {
    /// The cgroup's directory: a command is created in it (clone3's `CLONE_INTO_CGROUP`).
    dir: OwnedFd,
    /// `cgroup.procs` for writing: a command writes `0` to it to move itself in before exec.
    join: OwnedFd,
    /// `cgroup.procs` for reading: the processes in the cgroup.
    procs: OwnedFd,
    /// `cgroup.events`: `populated 0` once no process is left in it.
    events: OwnedFd,
}

impl Files {
    fn open(dir: &Path) -> rustix::io::Result<Self> {
        let open = |name: &str, flags: OFlags| {
            rustix::fs::open(dir.join(name), flags | OFlags::CLOEXEC, Mode::empty())
        };
        Ok(Files {
            dir: rustix::fs::open(
                dir,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?,
            join: open("cgroup.procs", OFlags::WRONLY)?,
            procs: open("cgroup.procs", OFlags::RDONLY)?,
            events: open("cgroup.events", OFlags::RDONLY)?,
        })
    }
}

impl RequestCgroup {
    /// A cgroup for a request, kept from an earlier one or made now; `None` where the runner
    /// cannot make one.
    pub(super) fn create() -> Option<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let parent = PARENT.as_ref()?;
        let spare = lock(&SPARE).as_mut().and_then(Vec::pop);
        let (dir, files) = match spare {
            Some(spare) => spare,
            None => {
                let serial = NEXT.fetch_add(1, Ordering::Relaxed);
                let dir = parent.join(format!("direktiv-cmd-{}-{serial}", std::process::id()));
                if let Err(error) = std::fs::create_dir(&dir) {
                    tracing::debug!(%error, "cannot make a cgroup for the request");
                    return None;
                }
                match Files::open(&dir) {
                    Ok(files) => (dir, Arc::new(files)),
                    Err(error) => {
                        tracing::debug!(%error, "cannot open the files of a request's cgroup");
                        let _ = std::fs::remove_dir(&dir);
                        return None;
                    }
                }
            }
        };
        Some(RequestCgroup {
            dir,
            files,
            released: Mutex::new(false),
            killed: AtomicBool::new(false),
        })
    }

    fn is_released(&self) -> bool {
        *lock(&self.released)
    }

    /// How a command gets into the cgroup: created in it, or moving itself in.
    pub(super) fn entry(&self) -> CgroupEntry<'_> {
        CgroupEntry {
            dir: (!self.killed.load(Ordering::SeqCst)).then(|| self.files.dir.as_fd()),
            procs: self.files.join.as_fd(),
        }
    }

    /// The processes in the cgroup now.
    pub(super) fn members(&self) -> Vec<i32> {
        if self.is_released() {
            return Vec::new();
        }
        let text = read_from_start(self.files.procs.as_fd()).unwrap_or_default();
        String::from_utf8_lossy(&text)
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect()
    }

    /// Whether `pid` is in this cgroup (read from /proc/<pid>/cgroup).
    pub(super) fn holds(&self, pid: i32) -> bool {
        if self.is_released() {
            return false;
        }
        let Some(name) = self.dir.file_name().and_then(|name| name.to_str()) else {
            return false;
        };
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|text| {
            text.lines()
                .filter_map(|line| line.strip_prefix("0::"))
                .any(|path| Path::new(path).file_name().and_then(|n| n.to_str()) == Some(name))
        })
    }

    /// SIGKILL to every process in the cgroup, atomically (a process forking meanwhile cannot
    /// slip out).
    pub(super) fn kill(&self) {
        let released = lock(&self.released);
        if !*released {
            self.killed.store(true, Ordering::SeqCst);
            let _ = std::fs::write(self.dir.join("cgroup.kill"), b"1");
        }
    }

    /// Once its processes are gone, keeps the cgroup for another request (or removes it when
    /// enough are kept or the runner is exiting). For a cgroup `release_if_empty` just found
    /// populated: each try comes after a pause. One left populated is left alone, with a
    /// warning: it is never reused while something may still run in it.
    pub(super) fn release(&self) {
        for _ in 0..REMOVE_TRIES {
            std::thread::sleep(REMOVE_PAUSE);
            if self.release_if_empty() {
                return;
            }
        }
        tracing::warn!(dir = %self.dir.display(), "could not remove a request's cgroup");
    }

    /// `release`'s one try, which does not wait: true when the cgroup was empty and is kept
    /// or removed now.
    pub(super) fn release_if_empty(&self) -> bool {
        if populated(self.files.events.as_fd()) != Some(false) {
            return false;
        }
        *lock(&self.released) = true;
        let mut spare = lock(&SPARE);
        let reusable = !self.killed.load(Ordering::SeqCst);
        if let Some(spare) = spare
            .as_mut()
            .filter(|spare| reusable && spare.len() < SPARE_MAX)
        {
            spare.push((self.dir.clone(), Arc::clone(&self.files)));
            return true;
        }
        drop(spare);
        match std::fs::remove_dir(&self.dir) {
            Ok(()) => true,
            Err(error) => error.kind() == std::io::ErrorKind::NotFound,
        }
    }
}

/// Whether a process is in the cgroup (`populated` in its `cgroup.events`); `None` when that
/// cannot be read.
fn populated(events: BorrowedFd<'_>) -> Option<bool> {
    let events = read_from_start(events).ok()?;
    String::from_utf8_lossy(&events)
        .lines()
        .find_map(|line| line.strip_prefix("populated "))
        .map(|value| value.trim() != "0")
}

/// The whole content of an open cgroupfs file, read from its start whatever was read before.
fn read_from_start(file: BorrowedFd<'_>) -> rustix::io::Result<Vec<u8>> {
    let mut text = Vec::with_capacity(128);
    loop {
        let filled = text.len();
        text.resize(filled + 4096, 0);
        let read = rustix::io::pread(file, &mut text[filled..], filled as u64);
        match read {
            Ok(0) => {
                text.truncate(filled);
                return Ok(text);
            }
            Ok(n) => text.truncate(filled + n),
            Err(rustix::io::Errno::INTR) => text.truncate(filled),
            Err(error) => return Err(error),
        }
    }
}

/// Removes the cgroups kept for reuse; later emptied ones are removed, not kept. Called at
/// exit, once no request runs.
pub(crate) fn remove_spares() {
    let spares = lock(&SPARE).take().unwrap_or_default();
    for (dir, files) in spares {
        drop(files);
        if let Err(error) = std::fs::remove_dir(&dir) {
            tracing::warn!(%error, dir = %dir.display(), "could not remove a spare cgroup");
        }
    }
}

/// The runner's own cgroup v2 directory: its path in /proc/self/cgroup (`0::<path>`) under
/// the cgroup2 mount of /proc/self/mountinfo.
fn own_cgroup_dir() -> Option<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = own
        .lines()
        .find_map(|line| line.strip_prefix("0::"))?
        .to_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts.lines().find_map(|line| cgroup2_dir(line, &own))
}

/// Where cgroup `own` is under the mount a mountinfo line describes, when it is a cgroup2
/// mount that shows it: `<id> <parent> <dev> <root> <mount point> <options> ... - <type> ...`.
fn cgroup2_dir(line: &str, own: &str) -> Option<PathBuf> {
    let (fields, rest) = line.split_once(" - ")?;
    if rest.split_whitespace().next() != Some("cgroup2") {
        return None;
    }
    let mut fields = fields.split_whitespace();
    let root = fields.nth(3)?;
    let mount_point = fields.next()?;
    let below = Path::new(own).strip_prefix(root).ok()?;
    Some(Path::new(mount_point).join(below))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_own_cgroup_under_the_cgroup2_mount() {
        let line = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";
        assert_eq!(
            cgroup2_dir(line, "/"),
            Some(PathBuf::from("/sys/fs/cgroup/unified/"))
        );
        let line = "30 24 0:26 /kubepods /sys/fs/cgroup rw - cgroup2 cgroup2 rw";
        assert_eq!(
            cgroup2_dir(line, "/kubepods/pod1/c1"),
            Some(PathBuf::from("/sys/fs/cgroup/pod1/c1"))
        );
        let v1 = "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory";
        assert_eq!(cgroup2_dir(v1, "/"), None);
    }
}
