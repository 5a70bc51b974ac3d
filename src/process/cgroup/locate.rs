//! Where the runner's own cgroups are, read one way for both cgroup versions: /proc/self/cgroup
//! says which cgroup of each hierarchy the runner is in, /proc/self/mountinfo where each
//! hierarchy is mounted and which part of it a mount shows. Request cgroups are made below the
//! runner's cgroup v2 (`unified`); the OOM counter reads the runner's memory cgroup, v1 or v2
//! (`candidates`).
//!
//! The mount's root matters inside a container without a cgroup namespace: /proc/self/cgroup
//! gives the host's path (`/docker/<id>`), while the container's mount shows only its own
//! cgroup, with `/docker/<id>` as its root.

use std::path::{Component, Path, PathBuf};
use std::sync::LazyLock;

/// One cgroup hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hierarchy<'a> {
    /// cgroup v2.
    Unified,
    /// The cgroup v1 hierarchy of this controller (`memory`).
    Controller(&'a str),
}

/// The runner's cgroups and the cgroup mounts it sees.
#[derive(Debug, Default)]
pub(crate) struct OwnCgroups {
    /// `(hierarchy's controllers, path)` per line of /proc/self/cgroup; v2's controllers are
    /// empty.
    membership: Vec<(String, String)>,
    mounts: Vec<CgroupMount>,
}

/// A cgroup file system mount, from a mountinfo line.
#[derive(Debug)]
struct CgroupMount {
    /// The part of the hierarchy the mount shows (`/` for all of it).
    root: String,
    mount_point: PathBuf,
    /// `None` for cgroup2; the controllers of a cgroup v1 mount (its super options).
    controllers: Option<Vec<String>>,
    /// Mounted read-only (`ro` in its mount or super options): nobody can write through it.
    read_only: bool,
}

impl OwnCgroups {
    /// This process's cgroups as /proc showed them when first asked, at start-up: the request
    /// cgroups' home, the memory cgroups' place and the OOM counter are each found once, at
    /// start, from this one read.
    pub(crate) fn at_start() -> &'static OwnCgroups {
        static AT_START: LazyLock<OwnCgroups> = LazyLock::new(OwnCgroups::read);
        &AT_START
    }

    /// This process's cgroups, as /proc shows them now (empty without /proc).
    fn read() -> Self {
        let read = |path| std::fs::read_to_string(path).unwrap_or_default();
        OwnCgroups::parse(&read("/proc/self/cgroup"), &read("/proc/self/mountinfo"))
    }

    pub(crate) fn parse(membership: &str, mountinfo: &str) -> Self {
        let membership = membership
            .lines()
            .filter_map(|line| {
                let mut fields = line.splitn(3, ':');
                let (_id, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
                Some((controllers.to_owned(), path.to_owned()))
            })
            .collect();
        let mounts = mountinfo.lines().filter_map(CgroupMount::parse).collect();
        OwnCgroups { membership, mounts }
    }

    /// The runner's own cgroup in `hierarchy`, as /proc/<pid>/cgroup shows it.
    pub(crate) fn path_in(&self, hierarchy: Hierarchy<'_>) -> Option<&str> {
        self.membership
            .iter()
            .find(|(controllers, _)| match hierarchy {
                Hierarchy::Unified => controllers.is_empty(),
                Hierarchy::Controller(wanted) => controllers.split(',').any(|c| c == wanted),
            })
            .map(|(_, path)| path.as_str())
    }

    /// The runner's cgroup v2 directory, when a cgroup2 mount shows it.
    pub(crate) fn unified(&self) -> Option<PathBuf> {
        let own = self.path_in(Hierarchy::Unified)?;
        self.mounts_of(Hierarchy::Unified)
            .find_map(|mount| mount.dir_of(own))
    }

    /// Where the runner's cgroup of `hierarchy` may be found, best first: its own directory
    /// under each mount that shows it, then each mount's root (a container's own cgroup when
    /// the listed path is the host's and not below the mount's root).
    pub(crate) fn candidates(&self, hierarchy: Hierarchy<'_>) -> Vec<PathBuf> {
        let Some(own) = self.path_in(hierarchy) else {
            return Vec::new();
        };
        let mounts: Vec<&CgroupMount> = self.mounts_of(hierarchy).collect();
        let exact = mounts.iter().filter_map(|mount| mount.dir_of(own));
        let roots = mounts.iter().map(|mount| mount.mount_point.clone());
        let mut found: Vec<PathBuf> = Vec::new();
        for dir in exact.chain(roots) {
            if !found.contains(&dir) {
                found.push(dir);
            }
        }
        found
    }

    /// The cgroup mounts that can be written through (not mounted read-only): where a command
    /// running as root could change a cgroup, its own or any other.
    pub(crate) fn writable_mounts(&self) -> Vec<PathBuf> {
        self.mounts
            .iter()
            .filter(|mount| !mount.read_only)
            .map(|mount| mount.mount_point.clone())
            .collect()
    }

    fn mounts_of<'a>(
        &'a self,
        hierarchy: Hierarchy<'a>,
    ) -> impl Iterator<Item = &'a CgroupMount> + 'a {
        self.mounts
            .iter()
            .filter(move |mount| match (&mount.controllers, hierarchy) {
                (None, Hierarchy::Unified) => true,
                (Some(controllers), Hierarchy::Controller(wanted)) => {
                    controllers.iter().any(|c| c == wanted)
                }
                _ => false,
            })
    }
}

impl CgroupMount {
    /// `<id> <parent> <dev> <root> <mount point> <options> [optional...] - <type> <source>
    /// <super options>`, when the type is cgroup or cgroup2.
    fn parse(line: &str) -> Option<CgroupMount> {
        let (fields, rest) = line.split_once(" - ")?;
        let mut rest = rest.split_whitespace();
        let fs_type = rest.next()?;
        let super_options = rest.nth(1).unwrap_or_default();
        let controllers = match fs_type {
            "cgroup2" => None,
            "cgroup" => Some(super_options.split(',').map(str::to_owned).collect()),
            _ => return None,
        };
        let mut fields = fields.split_whitespace();
        let root = unescape(fields.nth(3)?);
        let mount_point = PathBuf::from(unescape(fields.next()?));
        let read_only = [fields.next().unwrap_or_default(), super_options]
            .iter()
            .any(|options| options.split(',').any(|option| option == "ro"));
        Some(CgroupMount {
            root,
            mount_point,
            controllers,
            read_only,
        })
    }

    /// Where cgroup `path` (absolute in the hierarchy) is under this mount; `None` when the
    /// mount does not show it (a path outside its root, or one that climbs out with `..`).
    fn dir_of(&self, path: &str) -> Option<PathBuf> {
        let below = Path::new(path).strip_prefix(&self.root).ok()?;
        let inside = below
            .components()
            .all(|part| matches!(part, Component::Normal(_)));
        inside.then(|| self.mount_point.join(below))
    }
}

/// A mountinfo field with its octal escapes (`\040` for a space) decoded.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's kind: v1 controllers and a controller-less v2 beside them.
    const HYBRID_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn a_hybrid_host_has_request_cgroups_in_v2_and_memory_in_v1() {
        let own = OwnCgroups::parse(
            "4:memory:/process_api/abc\n3:cpu,cpuacct:/\n0::/service\n",
            HYBRID_MOUNTS,
        );
        assert_eq!(
            own.unified(),
            Some(PathBuf::from("/sys/fs/cgroup/unified/service"))
        );
        assert_eq!(own.path_in(Hierarchy::Unified), Some("/service"));
        assert_eq!(
            own.candidates(Hierarchy::Controller("memory")),
            [
                PathBuf::from("/sys/fs/cgroup/memory/process_api/abc"),
                PathBuf::from("/sys/fs/cgroup/memory"),
            ]
        );
        assert!(own.candidates(Hierarchy::Controller("pids")).is_empty());
    }

    #[test]
    fn a_container_without_a_cgroup_namespace_sees_its_cgroup_at_the_mount_root() {
        let mounts = "\
30 24 0:26 /docker/abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory
31 24 0:27 /docker/abc /sys/fs/cgroup/unified ro,nosuid - cgroup2 cgroup2 rw
";
        let own = OwnCgroups::parse("7:memory:/docker/abc\n0::/docker/abc\n", mounts);
        assert_eq!(own.unified(), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(
            own.candidates(Hierarchy::Controller("memory")),
            [PathBuf::from("/sys/fs/cgroup/memory")]
        );
    }

    #[test]
    fn only_mounts_that_can_be_written_through_are_writable() {
        let mounts = "\
30 24 0:26 /docker/abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory
31 24 0:27 /docker/abc /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
32 24 0:28 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup ro,pids
";
        let own = OwnCgroups::parse("0::/docker/abc\n", mounts);
        assert_eq!(
            own.writable_mounts(),
            [PathBuf::from("/sys/fs/cgroup/unified")]
        );
        assert_eq!(
            OwnCgroups::parse("", HYBRID_MOUNTS).writable_mounts().len(),
            4
        );
    }

    #[test]
    fn paths_the_mount_does_not_show_are_not_followed() {
        let mounts = "30 24 0:26 /kubepods /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        // Outside the mount's root, and out of the namespace with `..`.
        for listed in ["0::/system.slice/x\n", "0::/kubepods/../etc\n", "0::/..\n"] {
            let own = OwnCgroups::parse(listed, mounts);
            assert_eq!(own.unified(), None, "{listed}");
            assert_eq!(
                own.candidates(Hierarchy::Unified),
                [PathBuf::from("/sys/fs/cgroup")],
                "{listed}"
            );
        }
        let own = OwnCgroups::parse("0::/kubepods/pod1/c1\n", mounts);
        assert_eq!(own.unified(), Some(PathBuf::from("/sys/fs/cgroup/pod1/c1")));
    }

    #[test]
    fn escaped_mount_points_and_garbage() {
        let mounts = "41 31 0:38 / /mnt/cgroup\\040two rw - cgroup2 cgroup2 rw\nnonsense\n";
        let own = OwnCgroups::parse("0::/a\nnonsense\n", mounts);
        assert_eq!(own.unified(), Some(PathBuf::from("/mnt/cgroup two/a")));
        assert!(OwnCgroups::parse("", "").unified().is_none());
        assert_eq!(unescape("a\\134b\\"), "a\\b\\");
    }
}
