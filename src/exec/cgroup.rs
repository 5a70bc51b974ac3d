//! A cgroup (v2) per request, where the runner may make one. A process cannot leave its cgroup
//! by itself — moving it takes write access to another cgroup — so everything a request's
//! commands start stays in the request's cgroup, whatever it does to its session, process
//! group or environment, and `cgroup.kill` ends them all at once.
//!
//! Used only where the runner's own cgroup is writable and has `cgroup.kill` (Linux ≥ 5.14):
//! a privileged container, a systemd unit with `Delegate=yes`, a host. In the usual container
//! /sys/fs/cgroup is read-only, and the environment mark (`escapees`) is all there is. A
//! command moves itself into the request's cgroup between fork and exec (`spawn`'s vfork path),
//! so nothing it starts is ever outside.
//!
//! Blocking file-system calls (on cgroupfs: quick, and nothing a request names): callers run
//! them on the blocking pool.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use rustix::fs::{Mode, OFlags};

/// How often, and how long apart, removing an emptied cgroup is tried (its last processes may
/// still be exiting).
const REMOVE_TRIES: u32 = 50;
const REMOVE_PAUSE: Duration = Duration::from_millis(20);

/// The runner's own cgroup directory, when request cgroups can be made in it.
static PARENT: LazyLock<Option<PathBuf>> = LazyLock::new(|| {
    let parent = own_cgroup_dir()?;
    let probe = parent.join(format!("direktiv-cmd-{}-probe", std::process::id()));
    std::fs::create_dir(&probe).ok()?;
    let usable = probe.join("cgroup.kill").exists();
    let _ = std::fs::remove_dir(&probe);
    if usable {
        tracing::info!(dir = %parent.display(), "request processes are also tracked in cgroups");
    }
    usable.then_some(parent)
});

/// One request's cgroup.
#[derive(Debug)]
pub(super) struct RequestCgroup {
    dir: PathBuf,
}

impl RequestCgroup {
    /// Makes a new cgroup for a request; `None` where the runner cannot.
    pub(super) fn create() -> Option<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let parent = PARENT.as_ref()?;
        let serial = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = parent.join(format!("direktiv-cmd-{}-{serial}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => Some(RequestCgroup { dir }),
            Err(error) => {
                tracing::debug!(%error, "cannot make a cgroup for the request");
                None
            }
        }
    }

    /// `cgroup.procs`, open for writing (close-on-exec): a command writes `0` to it to move
    /// itself in before exec.
    pub(super) fn procs(&self) -> Option<OwnedFd> {
        let flags = OFlags::WRONLY | OFlags::CLOEXEC;
        match rustix::fs::open(self.dir.join("cgroup.procs"), flags, Mode::empty()) {
            Ok(fd) => Some(fd),
            Err(error) => {
                tracing::debug!(%error, "cannot open the request's cgroup.procs");
                None
            }
        }
    }

    /// The processes in the cgroup now.
    pub(super) fn members(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .map(|text| {
                text.lines()
                    .filter_map(|line| line.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether `pid` is in this cgroup (read from /proc/<pid>/cgroup).
    pub(super) fn holds(&self, pid: i32) -> bool {
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
        let _ = std::fs::write(self.dir.join("cgroup.kill"), b"1");
    }

    /// Removes the cgroup once its processes are gone.
    pub(super) fn remove(&self) {
        for _ in 0..REMOVE_TRIES {
            match std::fs::remove_dir(&self.dir) {
                Ok(()) => return,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return,
                Err(_) => std::thread::sleep(REMOVE_PAUSE),
            }
        }
        tracing::warn!(dir = %self.dir.display(), "could not remove a request's cgroup");
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
