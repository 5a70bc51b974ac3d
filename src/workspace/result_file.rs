//! `DIREKTIV_RESULT`: the empty file each command gets to leave its `result` in (Tekton's
//! result files), mode 0600, removed once read.
//!
//! Where: beside the private temp dirs, in one folder of the runner's own (`Home`, made at
//! start in `TMPDIR`, mode 0700), so the file is never among what a command finds in its temp
//! dir (`ls -A` there shows its input files and `out/`, nothing else) and never reaches the
//! sidecar's shared folder or `out/`. Where that folder cannot be made (a read-only `TMPDIR`),
//! the request's temp dir takes the files, under a dot name made with `O_EXCL`.
//!
//! The command may do anything to it: replace it with a symlink to a secret, a FIFO that never
//! opens, a huge file. So it is looked at without following a symlink (`AT_SYMLINK_NOFOLLOW`,
//! `O_NOFOLLOW`), opened without blocking (`O_NONBLOCK`), read only when it is a regular file,
//! and never past `CMD_MAX_RESULT`. The cost for a command that leaves it empty: one `openat`
//! and `close` before the start (in the trip to the blocking pool the start makes anyway), one
//! `statat` and `unlinkat` after, on the async worker when the folder is the runner's own
//! (`remove_if_empty`: no open, so nothing there can make it wait); only a file with something
//! in it goes to the blocking pool to be read.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::not_regular;

use crate::error::Failure;

/// Names taken by this runner, so that requests sharing a folder never race for one.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// The runner's folder for result files, made once at start; `None` when it could not be.
static HOME: OnceLock<Option<Home>> = OnceLock::new();

/// A folder for result files, open.
#[derive(Debug)]
pub(crate) struct Home {
    pub(crate) dir: Arc<OwnedFd>,
    pub(crate) path: PathBuf,
}

impl Home {
    /// The runner's folder for result files: made on the first call (at start), in `TMPDIR`
    /// beside the private temp dirs. `None` when it cannot be made: each request's temp dir
    /// holds them then.
    pub(crate) fn shared() -> Option<&'static Home> {
        HOME.get_or_init(|| match Home::make() {
            Ok(home) => Some(home),
            Err(error) => {
                tracing::warn!(
                    %error,
                    "no folder for DIREKTIV_RESULT files in TMPDIR; they are made in each \
                     request's temp dir"
                );
                None
            }
        })
        .as_ref()
    }

    fn make() -> io::Result<Home> {
        let path = tempfile::Builder::new()
            .prefix("direktiv-cmd-results-")
            .tempdir()?
            .keep();
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        match rustix::fs::open(&path, flags, Mode::empty()) {
            Ok(dir) => Ok(Home {
                dir: Arc::new(dir),
                path,
            }),
            Err(errno) => {
                let _ = std::fs::remove_dir(&path);
                Err(errno.into())
            }
        }
    }

    /// At exit: the folder goes (each file went with its command).
    pub(crate) fn remove() {
        if let Some(Some(home)) = HOME.get() {
            let _ = std::fs::remove_dir(&home.path);
        }
    }
}

/// A command's result file, made and not yet removed.
#[derive(Debug)]
pub(crate) struct ResultFile {
    /// Its name in the temp dir's top folder.
    name: OsString,
    /// Its whole path, for the command's environment.
    path: PathBuf,
}

/// What a command left in its result file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Left {
    /// Nothing: empty, removed, or not a regular file (`Ignored` says why).
    Nothing,
    /// Something that is not a regular file, which is not read: what it is.
    Ignored(&'static str),
    /// The bytes it holds.
    Bytes(Vec<u8>),
}

impl ResultFile {
    /// Makes an empty result file in `dir` (open; its path is `root`).
    pub(crate) fn create(dir: BorrowedFd<'_>, root: &Path) -> Result<ResultFile, Failure> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        loop {
            let name = format!(
                ".direktiv-result-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            match rustix::fs::openat(dir, &name, flags | OFlags::CLOEXEC, Mode::RUSR | Mode::WUSR) {
                Ok(_created) => {
                    return Ok(ResultFile {
                        path: root.join(&name),
                        name: name.into(),
                    })
                }
                // Left by a runner before this one (the same pid as PID 1), or made by a command.
                Err(Errno::EXIST) => continue,
                Err(errno) => {
                    return Err(Failure::io(
                        "cannot create the DIREKTIV_RESULT file in the temp dir",
                        errno.into(),
                    ))
                }
            }
        }
    }

    /// The path the command is told.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads what the command left (at most `max` bytes: more is cmd.result.too_large) and
    /// removes the file.
    pub(crate) fn take(self, dir: BorrowedFd<'_>, max: usize) -> Result<Left, Failure> {
        let left = self.read(dir, max);
        // Whatever it became (a folder a command made there stays: it is the command's).
        let _ = rustix::fs::unlinkat(dir, &self.name, AtFlags::empty());
        left
    }

    /// Removes the file when it is still the empty regular file it was made, without opening
    /// it; true when that is so. No open, so nothing a command puts there (a FIFO) can make
    /// this wait: cheap enough for an async worker where the folder is the runner's own.
    pub(crate) fn remove_if_empty(&self, dir: BorrowedFd<'_>) -> bool {
        let empty =
            rustix::fs::statat(dir, &self.name, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|stat| {
                FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile && stat.st_size == 0
            });
        empty && rustix::fs::unlinkat(dir, &self.name, AtFlags::empty()).is_ok()
    }

    /// Removes the file unread (the command never started).
    pub(crate) fn remove(self, dir: BorrowedFd<'_>) {
        let _ = rustix::fs::unlinkat(dir, &self.name, AtFlags::empty());
    }

    fn read(&self, dir: BorrowedFd<'_>, max: usize) -> Result<Left, Failure> {
        let name: &OsStr = &self.name;
        let failed = |e: Errno| Failure::io("the DIREKTIV_RESULT file cannot be read", e.into());
        let stat = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => return Ok(Left::Nothing),
            Err(errno) => return Err(failed(errno)),
        };
        if let Some(kind) = not_regular(FileType::from_raw_mode(stat.st_mode)) {
            return Ok(Left::Ignored(kind));
        }
        if stat.st_size == 0 {
            return Ok(Left::Nothing);
        }
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY;
        let fd: OwnedFd =
            match rustix::fs::openat(dir, name, flags | OFlags::CLOEXEC, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => return Ok(Left::Nothing),
                Err(Errno::LOOP) => return Ok(Left::Ignored("a symbolic link")),
                Err(errno) => return Err(failed(errno)),
            };
        // Again on what was opened: the name may have been replaced in between.
        let stat = rustix::fs::fstat(fd.as_fd()).map_err(failed)?;
        if let Some(kind) = not_regular(FileType::from_raw_mode(stat.st_mode)) {
            return Ok(Left::Ignored(kind));
        }
        let too_large = || Failure::ResultTooLarge { limit: max };
        if u64::try_from(stat.st_size).unwrap_or(u64::MAX) > max as u64 {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        std::fs::File::from(fd)
            .take(max as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e: io::Error| Failure::io("the DIREKTIV_RESULT file cannot be read", e))?;
        match bytes.len() {
            0 => Ok(Left::Nothing),
            len if len > max => Err(too_large()),
            _ => Ok(Left::Bytes(bytes)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn open(dir: &Path) -> OwnedFd {
        rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap()
    }

    #[test]
    fn an_empty_private_file_is_made_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        let file = ResultFile::create(dir.as_fd(), tmp.path()).unwrap();
        let meta = std::fs::metadata(file.path()).unwrap();
        assert_eq!(meta.len(), 0);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let name = file.path().file_name().unwrap().to_string_lossy();
        assert!(name.starts_with(".direktiv-result-"), "{name}");
        assert_eq!(file.take(dir.as_fd(), 10).unwrap(), Left::Nothing);
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn only_an_empty_regular_file_is_removed_without_a_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        let empty = ResultFile::create(dir.as_fd(), tmp.path()).unwrap();
        assert!(empty.remove_if_empty(dir.as_fd()));
        assert!(!empty.path().exists());
        let written = ResultFile::create(dir.as_fd(), tmp.path()).unwrap();
        std::fs::write(written.path(), b"x").unwrap();
        assert!(!written.remove_if_empty(dir.as_fd()));
        let fifo = ResultFile::create(dir.as_fd(), tmp.path()).unwrap();
        std::fs::remove_file(fifo.path()).unwrap();
        let name = fifo.path().file_name().unwrap();
        rustix::fs::mknodat(dir.as_fd(), name, FileType::Fifo, Mode::RUSR, 0).unwrap();
        assert!(!fifo.remove_if_empty(dir.as_fd()));
        assert_eq!(
            written.take(dir.as_fd(), 10).unwrap(),
            Left::Bytes(b"x".to_vec())
        );
        assert_eq!(fifo.take(dir.as_fd(), 10).unwrap(), Left::Ignored("a FIFO"));
    }

    #[test]
    fn content_is_read_up_to_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        let file = ResultFile::create(dir.as_fd(), tmp.path()).unwrap();
        std::fs::write(file.path(), b"{\"b\":1,\"a\":2}").unwrap();
        let left = file.take(dir.as_fd(), 13).unwrap();
        assert_eq!(left, Left::Bytes(b"{\"b\":1,\"a\":2}".to_vec()));
        let file = ResultFile::create(dir.as_fd(), tmp.path()).unwrap();
        std::fs::write(file.path(), b"12345").unwrap();
        let failure = file.take(dir.as_fd(), 4).unwrap_err();
        assert_eq!(failure.code(), "cmd.result.too_large");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_symlink_or_fifo_in_its_place_is_not_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        let secret = tmp.path().join("secret");
        std::fs::write(&secret, b"do not read").unwrap();
        let file = ResultFile::create(dir.as_fd(), tmp.path()).unwrap();
        std::fs::remove_file(file.path()).unwrap();
        std::os::unix::fs::symlink(&secret, file.path()).unwrap();
        assert_eq!(
            file.take(dir.as_fd(), 100).unwrap(),
            Left::Ignored("a symbolic link")
        );
        let file = ResultFile::create(dir.as_fd(), tmp.path()).unwrap();
        std::fs::remove_file(file.path()).unwrap();
        rustix::fs::mknodat(
            dir.as_fd(),
            file.path().file_name().unwrap(),
            FileType::Fifo,
            Mode::RUSR | Mode::WUSR,
            0,
        )
        .unwrap();
        assert_eq!(
            file.take(dir.as_fd(), 100).unwrap(),
            Left::Ignored("a FIFO")
        );
        let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the secret is left");
    }
}
