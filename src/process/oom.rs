//! The kernel's OOM killer and the runner's commands: the memory cgroup's count of OOM kills
//! (read before and after a command, so a command killed while it rose is `cmd.oom`), and the
//! raised `oom_score_adj` that makes the kernel pick a command rather than the runner.
//!
//! The count is hierarchical: a kill anywhere below the cgroup read is counted there. On
//! cgroup v2 it is the `oom_kill` line of `memory.events`; on v1 the `oom_kill` line of
//! `memory.oom_control` (Linux ≥ 4.13). Both count kills by any OOM killer — the container's
//! memory limit or the whole machine running out.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::LazyLock;

use super::cgroup::{Hierarchy, OwnCgroups};

/// The `oom_score_adj` every command gets: the most likely victim. Raising the value needs
/// no privilege; with it, under the container's memory limit the kernel kills the largest
/// command, never the runner (and with it every other command and the request's answer).
const COMMAND_OOM_SCORE_ADJ: &[u8] = b"1000";

/// Room for a counter file's text: `memory.events` and `memory.oom_control` are a few short
/// lines (about 100 bytes).
const COUNTER_TEXT_MAX: usize = 1024;

/// The runner's counter, found and opened once: the runner does not change cgroups while it
/// serves, and a read of the open file is one system call where open, stat, read and close of
/// the path (a long one inside a pod) were five.
static COUNTER: LazyLock<Option<OomCounter>> =
    LazyLock::new(|| OomCounter::locate(OwnCgroups::at_start()));

/// OOM kills in the runner's memory cgroup so far; `None` when the count cannot be read.
/// A read of a small in-memory cgroup file: it never blocks.
pub fn count() -> Option<u64> {
    COUNTER.as_ref()?.read()
}

/// Whether an OOM kill happened between two readings of `count`.
pub fn rose(before: Option<u64>, after: Option<u64>) -> bool {
    matches!((before, after), (Some(before), Some(after)) if after > before)
}

/// A memory cgroup's OOM-kill counter file, held open.
#[derive(Debug)]
pub struct OomCounter {
    file: File,
}

impl OomCounter {
    /// The counter of the runner's memory cgroup (`own`), `None` when there is none to read
    /// (no cgroup file system mounted, or a kernel too old to count). A v1 memory controller
    /// comes first (on a hybrid host v2 has no memory controller); within each, the runner's
    /// own cgroup, then the mount's root (see `OwnCgroups::candidates`).
    fn locate(own: &OwnCgroups) -> Option<OomCounter> {
        let v1 = own
            .candidates(Hierarchy::Controller("memory"))
            .into_iter()
            .map(|dir| dir.join("memory.oom_control"));
        let v2 = own
            .candidates(Hierarchy::Unified)
            .into_iter()
            .map(|dir| dir.join("memory.events"));
        v1.chain(v2)
            .filter_map(|path: PathBuf| {
                let file = File::open(path).ok()?;
                Some(OomCounter { file })
            })
            .find(|counter| counter.read().is_some())
    }

    /// The number of OOM kills so far; `None` when the file cannot be read or has no count.
    /// A read at offset 0 makes the kernel generate a cgroup file's text afresh, and it hands
    /// the whole text over in that one read.
    pub fn read(&self) -> Option<u64> {
        let mut text = [0u8; COUNTER_TEXT_MAX];
        let length = self.file.read_at(&mut text, 0).ok()?;
        parse_oom_kill(std::str::from_utf8(&text[..length]).ok()?)
    }
}

/// The value of the `oom_kill` line (`memory.events` and `memory.oom_control` share it;
/// `oom_group_kill` and `oom_kill_disable` are other counters).
pub(super) fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == "oom_kill").then(|| value.trim().parse().ok())?
    })
}

/// Makes the calling process (a child between its clone and its exec) the OOM killer's first
/// choice. Async-signal-safe: open, write and close system calls on a static path, no
/// allocation. Best effort: a process that cannot raise it is no error.
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

    fn write(path: &std::path::Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// The runner's cgroups as `membership` (/proc/self/cgroup) lists them, with a cgroup2
    /// mount showing `v2_root` at `root` and a v1 memory mount showing `v1_root` at
    /// `root/memory`.
    fn own(membership: &str, root: &std::path::Path, v2_root: &str, v1_root: &str) -> OwnCgroups {
        let mountinfo = format!(
            "41 31 0:38 {v2_root} {} rw - cgroup2 cgroup2 rw\n\
             35 31 0:32 {v1_root} {} rw - cgroup cgroup rw,memory\n",
            root.display(),
            root.join("memory").display()
        );
        OwnCgroups::parse(membership, &mountinfo)
    }

    #[test]
    fn v2_uses_the_runners_cgroup_then_the_mount_root() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let membership = "0::/kubepods/pod1/ctr\n";
        assert!(OomCounter::locate(&own(membership, root, "/", "/")).is_none());

        // A container with its own cgroup mounted at the root (no cgroup namespace, and a
        // mount whose root does not say so).
        write(&root.join("memory.events"), "oom 0\noom_kill 4\n");
        let counter = OomCounter::locate(&own(membership, root, "/", "/")).unwrap();
        assert_eq!(counter.read(), Some(4));

        // The runner's own cgroup, where it exists.
        write(
            &root.join("kubepods/pod1/ctr/memory.events"),
            "oom_kill 7\n",
        );
        let counter = OomCounter::locate(&own(membership, root, "/", "/")).unwrap();
        assert_eq!(counter.read(), Some(7));

        // The file stays open and every read sees the count as it is then.
        write(
            &root.join("kubepods/pod1/ctr/memory.events"),
            "oom_kill 8\n",
        );
        assert_eq!(counter.read(), Some(8));
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
        let counter = OomCounter::locate(&own(membership, root, "/", "/")).unwrap();
        assert_eq!(counter.read(), Some(2));

        // Inside a container whose mount shows only its own cgroup: the mount's root says so.
        std::fs::remove_dir_all(root.join("memory/docker")).unwrap();
        write(&root.join("memory/memory.oom_control"), "oom_kill 3\n");
        let counter = OomCounter::locate(&own(membership, root, "/", "/docker/abc")).unwrap();
        assert_eq!(counter.read(), Some(3));
    }

    #[test]
    fn paths_outside_the_namespace_are_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let mount = root.path().join("mnt");
        write(&root.path().join("memory.events"), "oom_kill 9\n");
        write(&mount.join("memory.events"), "oom_kill 1\n");
        // `/..` would lead from the mount to the file beside it.
        let counter = OomCounter::locate(&own("0::/..\n", &mount, "/", "/")).unwrap();
        assert_eq!(counter.read(), Some(1));
    }

    #[test]
    fn garbage_membership_finds_nothing() {
        let root = tempfile::tempdir().unwrap();
        write(&root.path().join("memory.events"), "oom_kill 1\n");
        assert!(OomCounter::locate(&own("", root.path(), "/", "/")).is_none());
        assert!(OomCounter::locate(&own("nonsense\n", root.path(), "/", "/")).is_none());
    }
}
