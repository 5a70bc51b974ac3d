//! The files of a request cgroup, opened once with the cgroup and kept open with it, in the pool
//! too (close-on-exec: no command inherits them): opening a cgroupfs file costs several times
//! what reading it does. Reads are `pread`s from the start, which cgroupfs answers with the
//! file's current content.
//!
//! They hold what the cgroup was like when the runner made it (`made`): a kept cgroup is given
//! to another request only while it is still so (`Files::unchanged`).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

/// Settings of cgroup v2 itself a command may change (as root) and that would stay with the
/// cgroup: how many and how deep nested cgroups may be, its type (`threaded`), pressure
/// accounting, and the controllers it has (each controller brings limits of its own —
/// `memory.max`, `pids.max`, ... — so a cgroup with any is never reused). `cgroup.subtree_control`
/// can only enable controllers the cgroup has, and `cgroup.freeze` shows in `cgroup.events`.
const SETTINGS: [&str; 5] = [
    "cgroup.controllers",
    "cgroup.max.descendants",
    "cgroup.max.depth",
    "cgroup.type",
    "cgroup.pressure",
];

/// The open files of one cgroup.
#[derive(Debug)]
pub(super) struct Files {
    /// The cgroup's directory: a command is created in it (clone3's `CLONE_INTO_CGROUP`).
    pub(super) dir: OwnedFd,
    /// `cgroup.procs` for writing: a command writes `0` to it to move itself in before exec,
    /// and the runner moves a process back out through its own cgroup's.
    pub(super) join: OwnedFd,
    /// `cgroup.procs` for reading: the processes in the cgroup.
    pub(super) procs: OwnedFd,
    /// `cgroup.events`: `populated 0` once no process is left in it or below, `frozen 1`.
    pub(super) events: OwnedFd,
    /// `cgroup.stat`: `nr_descendants`.
    pub(super) stat: OwnedFd,
    /// `cgroup.freeze`, to thaw it.
    pub(super) freeze: OwnedFd,
    /// `cgroup.kill`, to kill everything in it and below at once.
    pub(super) kill: OwnedFd,
    /// Each of `SETTINGS` the kernel has, with its content when the cgroup was made: exactly
    /// that many bytes, since every pooled cgroup keeps them (a read's 4 KiB buffer for each
    /// would be a quarter MiB of the runner's heap at 16 pooled cgroups).
    settings: Vec<(&'static str, OwnedFd, Box<[u8]>)>,
    /// Who may change the cgroup (create cgroups in it, move processes in), when it was made.
    owners: Owners,
    /// When `cgroup.kill` was last written, as it was when the cgroup was made: a write
    /// updates it, so a kill by anyone shows here.
    kill_time: (i64, i64),
}

/// Mode and owner of the cgroup's directory and of its `cgroup.procs`.
type Owners = [(u32, u32, u32); 2];

impl Files {
    /// Opens the files of the cgroup at `dir`, just made, and notes what it is like now.
    pub(super) fn open(dir: &Path) -> io::Result<Self> {
        let dir = rustix::fs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let open = |name: &str, flags: OFlags| {
            rustix::fs::openat(&dir, name, flags | OFlags::CLOEXEC, Mode::empty())
        };
        let mut settings = Vec::with_capacity(SETTINGS.len());
        for name in SETTINGS {
            match open(name, OFlags::RDONLY) {
                Ok(file) => {
                    let made = read_from_start(file.as_fd())?.into_boxed_slice();
                    settings.push((name, file, made));
                }
                // Not every kernel has every setting (cgroup.pressure: Linux 6.1).
                Err(Errno::NOENT) => {}
                Err(error) => return Err(error.into()),
            }
        }
        let files = Files {
            join: open("cgroup.procs", OFlags::WRONLY)?,
            procs: open("cgroup.procs", OFlags::RDONLY)?,
            events: open("cgroup.events", OFlags::RDONLY)?,
            stat: open("cgroup.stat", OFlags::RDONLY)?,
            freeze: open("cgroup.freeze", OFlags::RDWR)?,
            kill: open("cgroup.kill", OFlags::WRONLY)?,
            settings,
            owners: [(0, 0, 0); 2],
            kill_time: (0, 0),
            dir,
        };
        Ok(Files {
            owners: files.owners()?,
            kill_time: files.kill_time()?,
            ..files
        })
    }

    fn owners(&self) -> io::Result<Owners> {
        let of = |fd: BorrowedFd<'_>| {
            rustix::fs::fstat(fd).map(|stat| (stat.st_mode, stat.st_uid, stat.st_gid))
        };
        Ok([of(self.dir.as_fd())?, of(self.join.as_fd())?])
    }

    /// The modification time of `cgroup.kill` (seconds, nanoseconds).
    fn kill_time(&self) -> io::Result<(i64, i64)> {
        let stat = rustix::fs::fstat(&self.kill)?;
        Ok((stat.st_mtime as i64, stat.st_mtime_nsec as i64))
    }

    /// Why the cgroup is not as the runner made it, if it is not: anything in it or below,
    /// nested cgroups, frozen, killed, a setting or an owner changed, or controllers.
    pub(super) fn unchanged(&self) -> Result<(), String> {
        let unreadable = |error: io::Error| format!("its files cannot be read: {error}");
        let events = read_text(self.events.as_fd()).map_err(unreadable)?;
        if line_value(&events, "populated") != Some("0") {
            return Err("processes in it".into());
        }
        if line_value(&events, "frozen") != Some("0") {
            return Err("frozen".into());
        }
        if self.descendants().map_err(unreadable)? != 0 {
            return Err("cgroups nested in it".into());
        }
        if self.kill_time().map_err(unreadable)? != self.kill_time {
            return Err("killed (cgroup.kill was written)".into());
        }
        for (name, file, made) in &self.settings {
            let now = read_from_start(file.as_fd()).map_err(unreadable)?;
            if now[..] != made[..] {
                return Err(format!("{name} changed"));
            }
            if *name == "cgroup.controllers" && !now.iter().all(u8::is_ascii_whitespace) {
                return Err("controllers, whose limits are not checked".into());
            }
        }
        if self.owners().map_err(unreadable)? != self.owners {
            return Err("its owner or mode changed".into());
        }
        Ok(())
    }

    /// How many cgroups are nested in it (`nr_descendants` of `cgroup.stat`).
    pub(super) fn descendants(&self) -> io::Result<u64> {
        let stat = read_text(self.stat.as_fd())?;
        line_value(&stat, "nr_descendants")
            .and_then(|value| value.parse().ok())
            .ok_or_else(|| io::Error::other("cgroup.stat without nr_descendants"))
    }

    /// What `cgroup.events` says: whether a process is in it or below (`None` when that cannot
    /// be read), and whether it is frozen.
    pub(super) fn state(&self) -> (Option<bool>, bool) {
        let Ok(events) = read_text(self.events.as_fd()) else {
            return (None, false);
        };
        let populated = line_value(&events, "populated").map(|value| value != "0");
        (populated, line_value(&events, "frozen") == Some("1"))
    }
}

/// The value of the `key value` line of a cgroup file.
pub(super) fn line_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then_some(value.trim())
    })
}

/// The process ids in a `cgroup.procs`.
pub(super) fn pids_in(procs: BorrowedFd<'_>) -> Vec<i32> {
    read_text(procs)
        .map(|text| {
            text.lines()
                .filter_map(|line| line.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn read_text(file: BorrowedFd<'_>) -> io::Result<String> {
    let bytes = read_from_start(file)?;
    Ok(String::from_utf8(bytes)
        .unwrap_or_else(|not_utf8| String::from_utf8_lossy(not_utf8.as_bytes()).into_owned()))
}

/// How much more room each read of a cgroupfs file gets: all but `cgroup.procs` of a busy
/// cgroup fit at once.
const READ_CHUNK: usize = 4096;

/// The whole content of an open cgroupfs file, read from its start whatever was read before.
/// cgroupfs hands over all it has for a read that leaves room: a read that does not fill the
/// buffer is the last, so a small file takes one `pread`. The kernel writes into the vector's
/// spare room directly (nothing is zeroed first).
fn read_from_start(file: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let mut text = Vec::new();
    loop {
        let filled = text.len();
        text.reserve(READ_CHUNK);
        let room = text.capacity() - filled;
        let read = rustix::io::pread(
            file,
            rustix::buffer::spare_capacity(&mut text),
            filled as u64,
        );
        match read {
            Ok(n) if n < room => return Ok(text),
            Ok(_) | Err(Errno::INTR) => {}
            Err(error) => return Err(error.into()),
        }
    }
}

/// Writes all of `text` to an open cgroupfs file (one write: cgroupfs takes it whole or not).
pub(super) fn write(file: BorrowedFd<'_>, text: &[u8]) -> io::Result<()> {
    loop {
        match rustix::io::write(file, text) {
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => {}
            Err(error) => return Err(error.into()),
        }
    }
}

#[cfg(test)]
pub(super) mod stand_in {
    //! A plain folder with the files of a fresh cgroup, for tests without cgroupfs: what the
    //! runner reads there is what a test wrote.

    use std::path::Path;

    /// Writes the files of a fresh, empty cgroup v2 without controllers into `dir`.
    pub(crate) fn fresh_cgroup(dir: &Path) {
        for (name, text) in [
            ("cgroup.procs", ""),
            ("cgroup.events", "populated 0\nfrozen 0\n"),
            ("cgroup.stat", "nr_descendants 0\nnr_dying_descendants 0\n"),
            ("cgroup.freeze", "0\n"),
            ("cgroup.kill", ""),
            ("cgroup.controllers", "\n"),
            ("cgroup.max.descendants", "max\n"),
            ("cgroup.max.depth", "max\n"),
            ("cgroup.type", "domain\n"),
        ] {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn made(dir: &Path) -> Files {
        stand_in::fresh_cgroup(dir);
        Files::open(dir).unwrap()
    }

    #[test]
    fn a_cgroup_as_it_was_made_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let files = made(dir.path());
        assert_eq!(files.unchanged(), Ok(()));
        assert_eq!(files.state(), (Some(false), false));
    }

    #[test]
    fn every_change_a_command_can_make_is_seen() {
        let changes: [(&str, &str, &str); 9] = [
            (
                "cgroup.events",
                "populated 1\nfrozen 0\n",
                "processes in it",
            ),
            ("cgroup.events", "populated 0\nfrozen 1\n", "frozen"),
            ("cgroup.stat", "nr_descendants 2\n", "cgroups nested in it"),
            (
                "cgroup.max.descendants",
                "0\n",
                "cgroup.max.descendants changed",
            ),
            ("cgroup.max.depth", "1\n", "cgroup.max.depth changed"),
            ("cgroup.type", "threaded\n", "cgroup.type changed"),
            (
                "cgroup.controllers",
                "memory pids\n",
                "cgroup.controllers changed",
            ),
            ("cgroup.kill", "1", "killed (cgroup.kill was written)"),
            ("cgroup.procs", "", "its owner or mode changed"),
        ];
        for (name, text, why) in changes {
            let dir = tempfile::tempdir().unwrap();
            let files = made(dir.path());
            std::thread::sleep(std::time::Duration::from_millis(10));
            std::fs::write(dir.path().join(name), text).unwrap();
            if name == "cgroup.procs" {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::Permissions::from_mode(0o666);
                std::fs::set_permissions(dir.path().join(name), mode).unwrap();
            }
            assert_eq!(files.unchanged(), Err(why.to_owned()), "{name}");
        }
    }

    #[test]
    fn controllers_from_the_start_are_never_unchanged_enough() {
        let dir = tempfile::tempdir().unwrap();
        stand_in::fresh_cgroup(dir.path());
        std::fs::write(dir.path().join("cgroup.controllers"), "pids\n").unwrap();
        let files = Files::open(dir.path()).unwrap();
        assert_eq!(
            files.unchanged(),
            Err("controllers, whose limits are not checked".to_owned())
        );
    }

    /// A `cgroup.procs` of many processes is longer than one read's room; an empty file is
    /// read as empty; both come back whole, read from the start again on every call.
    #[test]
    fn files_of_any_length_are_read_whole_from_their_start() {
        let dir = tempfile::tempdir().unwrap();
        let pids: String = (1..=3000).map(|pid| format!("{pid}\n")).collect();
        assert!(
            pids.len() > 3 * READ_CHUNK,
            "the file must take several reads"
        );
        for text in ["", "populated 0\n", pids.as_str()] {
            let path = dir.path().join("file");
            std::fs::write(&path, text).unwrap();
            let file = std::fs::File::open(&path).unwrap();
            for _ in 0..2 {
                assert_eq!(read_from_start(file.as_fd()).unwrap(), text.as_bytes());
            }
        }
        let file = std::fs::File::open(dir.path().join("file")).unwrap();
        assert_eq!(pids_in(file.as_fd()).len(), 3000);
    }
}
