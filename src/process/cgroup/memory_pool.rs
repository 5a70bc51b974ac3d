//! Emptied cgroup v1 memory cgroups kept for later commands with a `memory` limit, and the rule
//! that keeps them from carrying anything of one command into another: a kept memory cgroup is
//! given out only while it is as the runner made it (`AsMade::changed`), checked when it is
//! taken, since a command of another request may change a kept one meanwhile. One that is not
//! is removed, and the command gets a new one.
//!
//! On cgroup v1 a command cannot be created in its memory cgroup; making one, opening and
//! writing its files and removing it again costs about 100 µs of kernel time per limited
//! command here, most of it before the command starts. The check is a few reads of files kept
//! open and a `stat` of each of the cgroup's other files, and the limit is written anew.
//!
//! What a command running as root may have done to its memory cgroup, and how each shows:
//! - any setting written (`memory.oom_control`, `memory.swappiness`,
//!   `memory.kmem.tcp.limit_in_bytes`, `memory.soft_limit_in_bytes`, knobs this code does not
//!   know of...), chmod-ed, chown-ed or its times set: the file's change time (`ctime`, which
//!   nothing can set back) is not as made;
//! - its limits changed (`memory.limit_in_bytes`, `memory.memsw.limit_in_bytes`, which the
//!   runner writes for each command): they no longer read as the runner set them;
//! - cgroups nested in it: the folder's link count;
//! - processes moved in, or left: `cgroup.procs`;
//! - memory still charged to it: none it cannot give back (`memory.stat`: a file in a tmpfs or
//!   a System V segment left, memory locked), and no more than an eighth of the next limit in
//!   all (`memory.usage_in_bytes`: the page cache of the files it read, kernel objects), which
//!   the kernel reclaims when the next command needs it;
//! - an OOM kill (the count the runner reads to tell a passed limit) or a pending OOM:
//!   `memory.oom_control`.
//!
//! cgroup v2 memory cgroups are nested in a request's cgroup, which is itself kept (`pool`):
//! they are made and removed with each command.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, Stat};

use super::files::{line_value, read_text, write};

/// The most memory a kept cgroup may hold that the kernel cannot reclaim (anonymous, tmpfs,
/// locked or swapped pages: none once its processes are gone, unless a command left a tmpfs
/// file or a System V segment), to be given out.
const UNRECLAIMABLE_MAX: u64 = 64 << 10;

/// The part of the next limit the memory still charged to a kept cgroup may be, at most, to be
/// given out: even a `true` leaves some hundreds of KiB (slab objects, the page cache of the
/// files it read), all of it reclaimable.
const CHARGED_PART: u64 = 8;

/// The `memory.stat` lines of memory the kernel cannot reclaim from a cgroup without processes
/// (swap is off for commands where it is accounted).
const UNRECLAIMABLE: [&str; 4] = ["rss", "shmem", "unevictable", "swap"];

/// The files the runner and its commands write in each use, left out of the change times:
/// the limits (written anew for each command) and the process and thread lists (a command
/// moves itself in through `tasks`).
const WRITTEN_IN_USE: [&str; 4] = [
    "cgroup.procs",
    "tasks",
    "memory.limit_in_bytes",
    "memory.memsw.limit_in_bytes",
];

/// The lists of the cgroup's processes and threads: who may write them may move processes in.
const LISTS: [&str; 2] = ["cgroup.procs", "tasks"];

/// Whether a write to the cgroup file `name` leaves nothing a later command would meet: a
/// counter reset (`*failcnt`, `*max_usage_in_bytes`), or a reclaim (`memory.force_empty`).
fn leaves_nothing(name: &str) -> bool {
    name.ends_with("failcnt")
        || name.ends_with("max_usage_in_bytes")
        || name == "memory.force_empty"
}

/// What a cgroup v1 memory cgroup was like when the runner made it, with the files that tell
/// whether it still is, and those the runner writes its limit to.
#[derive(Debug)]
pub(super) struct AsMade {
    /// `memory.usage_in_bytes` and `memory.stat`.
    usage: OwnedFd,
    stat: OwnedFd,
    /// `memory.limit_in_bytes` and `memory.memsw.limit_in_bytes` (where swap is accounted),
    /// for reading and writing.
    limit: OwnedFd,
    memsw: Option<OwnedFd>,
    /// Mode and owner of the folder, `cgroup.procs`, `tasks` and the limit files.
    owners: Vec<Owner>,
    /// Every other file that can be written (a file without write permission cannot, whatever
    /// its mode is changed to), with its change time; but those whose writes leave nothing.
    stamps: Vec<(String, (i64, i64))>,
}

/// Mode, owner and group of a file.
type Owner = (u32, u32, u32);

impl AsMade {
    /// Notes the cgroup at `path` (open as `dir`), just made; `memsw`: swap is accounted.
    pub(super) fn note(path: &Path, dir: BorrowedFd<'_>, memsw: bool) -> io::Result<AsMade> {
        let open = |name: &str, flags: OFlags| {
            rustix::fs::openat(dir, name, flags | OFlags::CLOEXEC, Mode::empty())
        };
        let memsw = match memsw {
            true => Some(open("memory.memsw.limit_in_bytes", OFlags::RDWR)?),
            false => None,
        };
        let mut made = AsMade {
            usage: open("memory.usage_in_bytes", OFlags::RDONLY)?,
            stat: open("memory.stat", OFlags::RDONLY)?,
            limit: open("memory.limit_in_bytes", OFlags::RDWR)?,
            memsw,
            owners: Vec::new(),
            stamps: Vec::new(),
        };
        made.owners = made.owners(dir, &rustix::fs::fstat(dir)?)?;
        for entry in std::fs::read_dir(path)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if WRITTEN_IN_USE.contains(&name.as_str()) || leaves_nothing(&name) {
                continue;
            }
            let stat = rustix::fs::statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)?;
            if stat.st_mode & 0o222 != 0 {
                made.stamps.push((name, change_time(&stat)));
            }
        }
        Ok(made)
    }

    /// The owners of the folder (`dir`, `folder` its `fstat`) and of the files written in use.
    fn owners(&self, dir: BorrowedFd<'_>, folder: &Stat) -> io::Result<Vec<Owner>> {
        let owner = |stat: &Stat| (stat.st_mode, stat.st_uid, stat.st_gid);
        let lists = LISTS.map(|name| {
            let stat = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
            Ok(owner(&stat))
        });
        let memsw = self.memsw.as_ref().map(AsFd::as_fd);
        let limits = [Some(self.limit.as_fd()), memsw].into_iter().flatten();
        let limits = limits.map(|fd| Ok(owner(&rustix::fs::fstat(fd)?)));
        std::iter::once(Ok(owner(folder)))
            .chain(lists)
            .chain(limits)
            .collect()
    }

    /// Whether no process is in the cgroup (open as `dir`). `cgroup.procs` is opened for each
    /// look: on v1 an open one keeps answering with the list it made first, for up to a second.
    pub(super) fn is_empty(dir: BorrowedFd<'_>) -> bool {
        rustix::fs::openat(
            dir,
            "cgroup.procs",
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)
        .and_then(|procs| read_text(procs.as_fd()))
        .is_ok_and(|procs| procs.trim().is_empty())
    }

    /// Why the cgroup (open as `dir`, its `memory.oom_control` as `oom`, last limited to `set`
    /// by the runner) is not as made, or not fit for a command limited to `bytes`, if it is
    /// not.
    pub(super) fn changed(
        &self,
        dir: BorrowedFd<'_>,
        oom: BorrowedFd<'_>,
        set: u64,
        bytes: u64,
    ) -> Result<(), String> {
        let unreadable = |error: io::Error| format!("its files cannot be read: {error}");
        let folder = rustix::fs::fstat(dir).map_err(|e| unreadable(e.into()))?;
        // A folder's links: its entry, its `.`, and each nested folder's `..`.
        if folder.st_nlink != 2 {
            return Err("cgroups nested in it".into());
        }
        if self.owners(dir, &folder).map_err(unreadable)? != self.owners {
            return Err("the mode or owner of its folder or its files changed".into());
        }
        // The kernel keeps a limit in whole pages.
        let page = rustix::param::page_size() as u64;
        let memsw = self.memsw.as_ref().map(AsFd::as_fd);
        for limit in [Some(self.limit.as_fd()), memsw].into_iter().flatten() {
            let now = read_text(limit).map_err(unreadable)?;
            if now.trim().parse::<u64>().ok() != Some(set / page * page) {
                return Err(format!("its limit was set to {} by a command", now.trim()));
            }
        }
        if !AsMade::is_empty(dir) {
            return Err("processes in it".into());
        }
        let oom = read_text(oom).map_err(unreadable)?;
        for (key, why) in [
            ("oom_kill_disable", "its OOM killer turned off"),
            ("under_oom", "out of memory"),
            ("oom_kill", "a process of it was OOM-killed"),
        ] {
            if line_value(&oom, key).is_some_and(|value| value != "0") {
                return Err(why.into());
            }
        }
        let stat = read_text(self.stat.as_fd()).map_err(unreadable)?;
        let unreclaimable: u64 = UNRECLAIMABLE
            .iter()
            .filter_map(|key| line_value(&stat, key)?.parse::<u64>().ok())
            .sum();
        if unreclaimable > UNRECLAIMABLE_MAX {
            return Err(format!(
                "{unreclaimable} bytes charged to it that cannot be reclaimed"
            ));
        }
        let usage = read_text(self.usage.as_fd()).map_err(unreadable)?;
        let usage: u64 = usage
            .trim()
            .parse()
            .map_err(|_| "its usage is unreadable")?;
        if usage > bytes / CHARGED_PART {
            return Err(format!(
                "{usage} bytes still charged to it, more than an eighth of the next limit"
            ));
        }
        for (name, made) in &self.stamps {
            if changed_at(dir, name).map_err(unreadable)? != *made {
                return Err(format!("{name} was written, chmod-ed or chown-ed"));
            }
        }
        Ok(())
    }

    /// Limits the cgroup to `bytes` where it was limited to `from`. v1 keeps
    /// `memory.limit_in_bytes` at most `memory.memsw.limit_in_bytes`: the outer one is raised
    /// first, the inner one lowered first.
    pub(super) fn set_limit(&self, from: u64, bytes: u64) -> io::Result<()> {
        let text = bytes.to_string();
        let limit = || write(self.limit.as_fd(), text.as_bytes());
        match &self.memsw {
            None => limit(),
            Some(memsw) if bytes > from => {
                write(memsw.as_fd(), text.as_bytes())?;
                limit()
            }
            Some(memsw) => {
                limit()?;
                write(memsw.as_fd(), text.as_bytes())
            }
        }
    }
}

/// The change time of `name` in `dir`.
fn changed_at(dir: BorrowedFd<'_>, name: &str) -> io::Result<(i64, i64)> {
    let stat = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(change_time(&stat))
}

/// A file's change time (seconds, nanoseconds).
fn change_time(stat: &Stat) -> (i64, i64) {
    (stat.st_ctime, stat.st_ctime_nsec as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in v1 memory cgroup: a plain folder with the files the check reads, as a fresh
    /// cgroup has them (`usage`: what `memory.usage_in_bytes` says).
    struct StandIn {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        fd: OwnedFd,
        oom: OwnedFd,
    }

    const OOM_CLEAN: &str = "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n";
    const STAT_CLEAN: &str = "cache 524288\nrss 0\nshmem 0\nunevictable 0\nswap 0\n";

    impl StandIn {
        fn new(usage: &str, stat: &str, oom: &str) -> StandIn {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().to_owned();
            for (name, text) in [
                ("cgroup.procs", ""),
                ("tasks", ""),
                ("memory.usage_in_bytes", usage),
                ("memory.stat", stat),
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
                ("memory.oom_control", oom),
                ("memory.swappiness", "60\n"),
                ("memory.failcnt", "0\n"),
            ] {
                std::fs::write(path.join(name), text).unwrap();
            }
            let open = |name: &str| {
                rustix::fs::open(path.join(name), OFlags::RDONLY, Mode::empty()).unwrap()
            };
            StandIn {
                fd: open("."),
                oom: open("memory.oom_control"),
                _dir: dir,
                path,
            }
        }

        fn clean() -> StandIn {
            StandIn::new("0\n", STAT_CLEAN, OOM_CLEAN)
        }

        fn note(&self) -> AsMade {
            AsMade::note(&self.path, self.fd.as_fd(), true).unwrap()
        }

        fn check(&self, made: &AsMade, bytes: u64) -> Result<(), String> {
            made.changed(self.fd.as_fd(), self.oom.as_fd(), UNLIMITED, bytes)
        }

        /// Writes `text` to `name` in place (the kept descriptors see it), a moment after the
        /// note so that the change time moves.
        fn write(&self, name: &str, text: &str) {
            std::thread::sleep(std::time::Duration::from_millis(20));
            std::fs::write(self.path.join(name), text).unwrap();
        }
    }

    const LIMIT: u64 = 256 << 20;

    /// What a new v1 memory cgroup's limits read.
    const UNLIMITED: u64 = 9223372036854771712;

    #[test]
    fn a_cgroup_as_made_is_fit_and_its_limits_and_process_list_may_be_written() {
        let cgroup = StandIn::clean();
        let made = cgroup.note();
        assert_eq!(cgroup.check(&made, LIMIT), Ok(()));
        // What every use writes does not count as a change.
        cgroup.write("tasks", "");
        // Nor does a counter reset, which leaves the next command nothing.
        cgroup.write("memory.failcnt", "0\n");
        assert_eq!(cgroup.check(&made, LIMIT), Ok(()));
    }

    #[test]
    fn a_limit_not_as_the_runner_set_it_is_a_change() {
        for file in ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"] {
            let cgroup = StandIn::clean();
            let made = cgroup.note();
            cgroup.write(file, "1073741824\n");
            let why = cgroup.check(&made, LIMIT).unwrap_err();
            assert!(
                why.contains("set to 1073741824 by a command"),
                "{file}: {why}"
            );
        }
    }

    #[test]
    fn a_written_setting_is_a_change() {
        let cgroup = StandIn::clean();
        let made = cgroup.note();
        cgroup.write("memory.swappiness", "60\n");
        let why = cgroup.check(&made, LIMIT).unwrap_err();
        assert!(why.contains("memory.swappiness"), "{why}");
    }

    #[test]
    fn a_chmod_of_a_file_written_in_use_is_a_change() {
        use std::os::unix::fs::PermissionsExt;
        for file in WRITTEN_IN_USE {
            let cgroup = StandIn::clean();
            let made = cgroup.note();
            let path = cgroup.path.join(file);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
            let why = cgroup.check(&made, LIMIT).unwrap_err();
            assert!(why.contains("mode or owner"), "{file}: {why}");
        }
    }

    #[test]
    fn nested_cgroups_and_processes_are_each_a_reason() {
        let cgroup = StandIn::clean();
        std::fs::create_dir(cgroup.path.join("nested")).unwrap();
        let why = cgroup.check(&cgroup.note(), LIMIT).unwrap_err();
        assert_eq!(why, "cgroups nested in it");

        let cgroup = StandIn::clean();
        let made = cgroup.note();
        cgroup.write("cgroup.procs", "4242\n");
        assert_eq!(cgroup.check(&made, LIMIT).unwrap_err(), "processes in it");
    }

    #[test]
    fn an_oom_state_is_a_reason() {
        for (oom, expected) in [
            (
                "oom_kill_disable 1\nunder_oom 0\noom_kill 0\n",
                "turned off",
            ),
            (
                "oom_kill_disable 0\nunder_oom 1\noom_kill 0\n",
                "out of memory",
            ),
            (
                "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
                "OOM-killed",
            ),
        ] {
            let cgroup = StandIn::new("0\n", STAT_CLEAN, oom);
            let why = cgroup.check(&cgroup.note(), LIMIT).unwrap_err();
            assert!(why.contains(expected), "{why}");
        }
    }

    #[test]
    fn memory_that_cannot_be_reclaimed_or_a_big_part_of_the_next_limit_is_a_reason() {
        for key in UNRECLAIMABLE {
            let stat = format!("cache 0\n{key} 2097152\n");
            let cgroup = StandIn::new("2097152\n", &stat, OOM_CLEAN);
            let why = cgroup.check(&cgroup.note(), LIMIT).unwrap_err();
            assert!(why.contains("cannot be reclaimed"), "{key}: {why}");
        }
        // Reclaimable, and less than an eighth of the next limit: fit; more: not.
        let cgroup = StandIn::new("4194304\n", STAT_CLEAN, OOM_CLEAN);
        let made = cgroup.note();
        assert_eq!(cgroup.check(&made, LIMIT), Ok(()));
        let why = cgroup.check(&made, 16 << 20).unwrap_err();
        assert!(why.contains("an eighth of the next limit"), "{why}");
    }
}
