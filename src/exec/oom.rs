//! The kernel's OOM killer and the runner's commands: the memory cgroup's count of OOM kills
//! (read before and after a command, so a command killed while it rose is `cmd.oom`), and the
//! raised `oom_score_adj` that makes the kernel pick a command rather than the runner.
//!
//! The count is hierarchical: a kill anywhere below the cgroup read is counted there. On
//! cgroup v2 it is the `oom_kill` line of `memory.events`; on v1 the `oom_kill` line of
//! `memory.oom_control` (Linux ≥ 4.13). Both count kills by any OOM killer — the container's
//! memory limit or the whole machine running out.

use std::path::{Component, Path, PathBuf};
use std::sync::LazyLock;

use rustix::process::Pid;

/// Where cgroup file systems are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The `oom_score_adj` every command gets: the most likely victim. Raising the value needs
/// no privilege; with it, under the container's memory limit the kernel kills the largest
/// command, never the runner (and with it every other command and the request's answer).
const COMMAND_OOM_SCORE_ADJ: &[u8] = b"1000";

/// The runner's counter, found once: the runner does not change cgroups while it serves.
static COUNTER: LazyLock<Option<OomCounter>> = LazyLock::new(OomCounter::locate);

/// OOM kills in the runner's memory cgroup so far; `None` when the count cannot be read.
/// A read of a small in-memory cgroup file: it never blocks.
pub fn count() -> Option<u64> {
    COUNTER.as_ref()?.read()
}

/// Whether an OOM kill happened between two readings of `count`.
pub fn rose(before: Option<u64>, after: Option<u64>) -> bool {
    matches!((before, after), (Some(before), Some(after)) if after > before)
}

/// A memory cgroup's OOM-kill counter file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OomCounter {
    file: PathBuf,
}

impl OomCounter {
    /// The counter of the runner's own memory cgroup, `None` when there is none to read (no
    /// cgroup file system mounted, or a kernel too old to count).
    pub fn locate() -> Option<OomCounter> {
        let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        Self::locate_in(&membership, Path::new(CGROUP_ROOT))
    }

    /// The first readable counter for the cgroups listed in `membership` (the text of
    /// `/proc/self/cgroup`) under the mount point `root`. A v1 memory controller comes first
    /// (on a hybrid host v2 has no memory controller); the path as listed is tried first, then
    /// the mount's own root: inside a container without a cgroup namespace the listed path is
    /// the host's, while the container sees its own cgroup mounted at the root.
    fn locate_in(membership: &str, root: &Path) -> Option<OomCounter> {
        let (mut v1, mut v2) = (Vec::new(), Vec::new());
        for line in membership.lines() {
            let mut fields = line.splitn(3, ':');
            let (Some(_id), Some(controllers), Some(path)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if controllers.split(',').any(|c| c == "memory") {
                let mount = root.join("memory");
                v1.extend(nested(&mount, path).map(|dir| dir.join("memory.oom_control")));
                v1.push(mount.join("memory.oom_control"));
            } else if controllers.is_empty() {
                v2.extend(nested(root, path).map(|dir| dir.join("memory.events")));
                v2.push(root.join("memory.events"));
            }
        }
        let candidates = v1.into_iter().chain(v2);
        candidates
            .map(|file| OomCounter { file })
            .find(|counter| counter.read().is_some())
    }

    /// The number of OOM kills so far; `None` when the file cannot be read or has no count.
    pub fn read(&self) -> Option<u64> {
        parse_oom_kill(&std::fs::read_to_string(&self.file).ok()?)
    }
}

/// `root` joined with a cgroup path from /proc; `None` for a path that is not strictly below
/// it (`/..` shows a cgroup outside the process's cgroup namespace).
fn nested(root: &Path, cgroup: &str) -> Option<PathBuf> {
    let relative = Path::new(cgroup.trim_start_matches('/'));
    let inside = relative
        .components()
        .all(|part| matches!(part, Component::Normal(_)));
    (inside && !relative.as_os_str().is_empty()).then(|| root.join(relative))
}

/// The value of the `oom_kill` line (`memory.events` and `memory.oom_control` share it;
/// `oom_group_kill` and `oom_kill_disable` are other counters).
fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == "oom_kill").then(|| value.trim().parse().ok())?
    })
}

/// Makes a just-spawned command the OOM killer's first choice. Best effort: a process that
/// already exited or changed its credentials cannot be adjusted, and that is no error.
pub fn raise_oom_score(pid: Pid) {
    let file = format!("/proc/{}/oom_score_adj", pid.as_raw_nonzero());
    let _ = std::fs::write(file, COMMAND_OOM_SCORE_ADJ);
}

/// `raise_oom_score` for the calling process, for a child between fork and exec:
/// async-signal-safe (open, write and close system calls on a static path, no allocation).
/// Best effort like `raise_oom_score`.
pub fn raise_own_oom_score() {
    use rustix::fs::{Mode, OFlags};
    if let Ok(fd) = rustix::fs::open(
        c"/proc/self/oom_score_adj",
        OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        let _ = rustix::io::write(&fd, COMMAND_OOM_SCORE_ADJ);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_readable_increase_counts() {
        assert!(rose(Some(1), Some(2)));
        assert!(!rose(Some(2), Some(2)));
        assert!(!rose(None, Some(2)));
        assert!(!rose(Some(1), None));
        assert!(!rose(None, None));
    }

    #[test]
    fn counts_are_read_from_both_cgroup_versions() {
        let v2 = "low 0\nhigh 3\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_oom_kill(v2), Some(1));
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n";
        assert_eq!(parse_oom_kill(v1), Some(5));
        // Kernels before 4.13 have no oom_kill line in v1.
        assert_eq!(parse_oom_kill("oom_kill_disable 0\nunder_oom 0\n"), None);
        assert_eq!(parse_oom_kill("oom_kill many\n"), None);
        assert_eq!(parse_oom_kill(""), None);
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn v2_uses_the_listed_cgroup_then_the_mount_root() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let membership = "0::/kubepods/pod1/ctr\n";
        assert_eq!(OomCounter::locate_in(membership, root), None);

        // A container with its own cgroup mounted at the root (no cgroup namespace).
        write(&root.join("memory.events"), "oom 0\noom_kill 4\n");
        let counter = OomCounter::locate_in(membership, root).unwrap();
        assert_eq!(counter.file, root.join("memory.events"));
        assert_eq!(counter.read(), Some(4));

        // The listed cgroup, where it exists.
        write(
            &root.join("kubepods/pod1/ctr/memory.events"),
            "oom_kill 7\n",
        );
        let counter = OomCounter::locate_in(membership, root).unwrap();
        assert_eq!(counter.file, root.join("kubepods/pod1/ctr/memory.events"));
        assert_eq!(counter.read(), Some(7));
    }

    #[test]
    fn v1_memory_controller_wins_on_a_hybrid_host() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let membership = "0::/\n5:cpu,cpuacct:/a\n4:memory:/docker/abc\n";
        write(&root.join("memory.events"), "oom_kill 1\n");
        write(
            &root.join("memory/docker/abc/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        let counter = OomCounter::locate_in(membership, root).unwrap();
        assert_eq!(counter.read(), Some(2));

        // Inside a container: the host path is not visible, the container's cgroup is the
        // memory mount's root.
        std::fs::remove_dir_all(root.join("memory/docker")).unwrap();
        write(&root.join("memory/memory.oom_control"), "oom_kill 3\n");
        assert_eq!(
            OomCounter::locate_in(membership, root).unwrap().file,
            root.join("memory/memory.oom_control")
        );
    }

    #[test]
    fn paths_outside_the_namespace_are_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let mount = root.path().join("mnt");
        write(&root.path().join("memory.events"), "oom_kill 9\n");
        write(&mount.join("memory.events"), "oom_kill 1\n");
        // `/..` would lead from the mount to the file beside it.
        let counter = OomCounter::locate_in("0::/..\n", &mount).unwrap();
        assert_eq!(counter.file, mount.join("memory.events"));
        assert_eq!(nested(&mount, "/"), None);
        assert_eq!(nested(&mount, "/a/../b"), None);
        assert_eq!(nested(&mount, "/a/b"), Some(mount.join("a/b")));
    }

    #[test]
    fn garbage_membership_finds_nothing() {
        let root = tempfile::tempdir().unwrap();
        write(&root.path().join("memory.events"), "oom_kill 1\n");
        assert_eq!(OomCounter::locate_in("", root.path()), None);
        assert_eq!(OomCounter::locate_in("nonsense\n", root.path()), None);
    }

    #[test]
    fn a_spawned_process_gets_the_highest_oom_score_adj() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = Pid::from_raw(child.id() as i32).unwrap();
        raise_oom_score(pid);
        let adj = std::fs::read_to_string(format!("/proc/{}/oom_score_adj", child.id())).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(adj.trim(), "1000");
    }

    #[test]
    fn a_child_raises_its_own_oom_score_adj_before_exec() {
        use std::os::unix::process::CommandExt;
        let mut command = std::process::Command::new("cat");
        command.arg("/proc/self/oom_score_adj");
        // SAFETY: `raise_own_oom_score` makes only open/write/close system calls on a static
        // path: async-signal-safe, so sound between fork and exec.
        unsafe {
            command.pre_exec(|| {
                raise_own_oom_score();
                Ok(())
            })
        };
        let output = command.output().unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "1000");
    }
}
