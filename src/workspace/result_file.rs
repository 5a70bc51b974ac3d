//! `DIREKTIV_RESULT`: the empty file each command gets to leave its `result` in (Tekton's
//! result files), mode 0600, removed once read.
//!
//! Where: in a request confined by a Landlock domain of its own (the default where the kernel
//! has Landlock), in the request's temp dir under a dot name, since that folder is the one no
//! other request's command may open. Elsewhere (no isolation: any command could read another's
//! environment anyway) beside the private temp dirs, in one folder of the runner's own (`Home`,
//! made at start in `TMPDIR`), so the file is not among what a command finds in its temp dir
//! and never reaches the sidecar's shared folder. Never in `out/`. The folder is mode 0300: commands share the runner's uid, and without the
//! right to list it, and with names no one can guess, a command cannot find another request's
//! file. Should something remove the folder (a command may: same uid), the next command makes
//! a new one. Where no folder can be made (a read-only `TMPDIR`), the request's temp dir takes
//! the files, under a dot name made with `O_EXCL`.
//!
//! The command may do anything to its file: replace it with a symlink to a secret, a FIFO that
//! never opens, a huge file. So it is looked at without following a symlink
//! (`AT_SYMLINK_NOFOLLOW`, `O_NOFOLLOW`), opened without blocking (`O_NONBLOCK`), read only when
//! it is a regular file, and never past `CMD_MAX_RESULT`. The cost for a command that leaves it
//! empty: one `openat` and `close` before the start (in the trip to the blocking pool the start
//! makes anyway), one `statat` and `unlinkat` after, on the async worker when the folder is the
//! runner's own (`remove_if_empty`: no open, so nothing there can make it wait); only a file
//! with something in it goes to the blocking pool to be read.

use std::collections::hash_map::RandomState;
use std::ffi::{OsStr, OsString};
use std::hash::BuildHasher;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::not_regular;

use crate::error::Failure;

/// Names taken by this runner, so that requests sharing a folder never race for one.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// The runner's folder for result files; `None` once it could not be made.
static HOME: Mutex<Option<Option<Place>>> = Mutex::new(None);

/// A folder result files are made in, open.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    pub(crate) dir: Arc<OwnedFd>,
    pub(crate) path: PathBuf,
    /// The runner's own folder (in `TMPDIR`), not a request's temp dir (which Direktiv may
    /// share over a network file system): looking at an empty file there without a trip to
    /// the blocking pool is safe.
    pub(crate) runner_own: bool,
}

/// The runner's folder for result files.
pub(crate) struct Home;

impl Home {
    /// The runner's folder: made on the first call (at start), in `TMPDIR` beside the private
    /// temp dirs. `None` when it cannot be made: each request's temp dir holds the files then.
    pub(crate) fn current() -> Option<Place> {
        let mut home = crate::sync::lock(&HOME);
        home.get_or_insert_with(Home::make_or_warn).clone()
    }

    /// A new folder in place of `stale`, which is gone (unless another command renewed it
    /// already).
    fn renew(stale: &Place) -> Option<Place> {
        let mut home = crate::sync::lock(&HOME);
        let current = home.get_or_insert_with(Home::make_or_warn);
        if current
            .as_ref()
            .is_some_and(|place| Arc::ptr_eq(&place.dir, &stale.dir))
        {
            tracing::warn!(
                folder = %stale.path.display(),
                "the folder of DIREKTIV_RESULT files was removed; making a new one"
            );
            *current = Home::make_or_warn();
        }
        current.clone()
    }

    fn make_or_warn() -> Option<Place> {
        match Home::make() {
            Ok(place) => Some(place),
            Err(error) => {
                tracing::warn!(
                    %error,
                    "no folder for DIREKTIV_RESULT files in TMPDIR; they are made in each \
                     request's temp dir"
                );
                None
            }
        }
    }

    fn make() -> io::Result<Place> {
        let path = tempfile::Builder::new()
            .prefix("direktiv-cmd-results-")
            .tempdir()?
            .keep();
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let opened = rustix::fs::open(&path, flags, Mode::empty()).and_then(|dir| {
            // Write and enter, not list: a command (same uid) cannot find the names.
            rustix::fs::fchmod(&dir, Mode::WUSR | Mode::XUSR)?;
            Ok(dir)
        });
        match opened {
            Ok(dir) => Ok(Place {
                dir: Arc::new(dir),
                path,
                runner_own: true,
            }),
            Err(errno) => {
                let _ = std::fs::remove_dir(&path);
                Err(errno.into())
            }
        }
    }

    /// At exit: the folder goes (each file went with its command).
    pub(crate) fn remove() {
        if let Some(Some(place)) = crate::sync::lock(&HOME).as_ref() {
            let _ = std::fs::remove_dir(&place.path);
        }
    }
}

/// A command's result file, made and not yet removed.
#[derive(Debug)]
pub(crate) struct ResultFile {
    /// Its name in its folder.
    name: OsString,
    /// Its whole path, for the command's environment.
    path: PathBuf,
    /// Its folder.
    place: Place,
    /// Whether an empty file may be looked at and removed on an async worker
    /// (`remove_if_empty`): in the runner's own folder, or in the temp dir of a request
    /// confined to a Landlock domain, where none of its commands can mount anything and no
    /// other request can reach: nothing there can make a `statat` wait.
    inline: bool,
}

/// A name no one can guess: the runner's pid, a counter, and a keyed hash of both.
fn unguessable_name() -> String {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    let (pid, n) = (std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let hash = KEYS.get_or_init(RandomState::new).hash_one((pid, n));
    format!(".direktiv-result-{pid}-{n}-{hash:016x}")
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
    /// Makes an empty result file for a command running as `owner` (`CMD_ISOLATION=uid`), else
    /// as the runner, in a request that is `confined` (a Landlock domain of its own) or not.
    ///
    /// A confined request's file is made in `fallback`, the request's temp dir, which its
    /// domain alone may open: the runner's folder in `TMPDIR` is reachable from every domain,
    /// and a command sharing the runner's uid can give itself the right to list it (`chmod`),
    /// so another request's command could read the file there. A slot's user cannot reach the
    /// runner's folder at all (mode 0300, the runner's): its file is made in the temp dir too,
    /// which that user owns, and given to it.
    pub(crate) fn create_for(
        fallback: &Place,
        owner: Option<u32>,
        confined: bool,
    ) -> Result<ResultFile, Failure> {
        let refused = |errno: Errno| {
            Failure::io(
                "cannot create the DIREKTIV_RESULT file in the temp dir",
                errno.into(),
            )
        };
        let Some(id) = owner else {
            if confined {
                let mut file = ResultFile::create_in(fallback).map_err(refused)?;
                file.inline = true;
                return Ok(file);
            }
            return ResultFile::create(fallback);
        };
        let file = ResultFile::create_in(fallback).map_err(refused)?;
        let (uid, gid) = (
            rustix::process::Uid::from_raw(id),
            rustix::process::Gid::from_raw(id),
        );
        let flags = AtFlags::SYMLINK_NOFOLLOW;
        match rustix::fs::chownat(&*file.place.dir, &file.name, Some(uid), Some(gid), flags) {
            Ok(()) => Ok(file),
            Err(errno) => {
                file.remove();
                Err(refused(errno))
            }
        }
    }

    /// Makes an empty result file: in the runner's folder, else in `fallback` (the request's
    /// temp dir).
    pub(crate) fn create(fallback: &Place) -> Result<ResultFile, Failure> {
        if let Some(home) = Home::current() {
            match ResultFile::create_in(&home) {
                Err(Errno::NOENT) => {
                    if let Some(home) = Home::renew(&home) {
                        if let Ok(file) = ResultFile::create_in(&home) {
                            return Ok(file);
                        }
                    }
                }
                Ok(file) => return Ok(file),
                // Full, or no longer writable: the temp dir can still take it.
                Err(_) => {}
            }
        }
        ResultFile::create_in(fallback).map_err(|errno| {
            Failure::io(
                "cannot create the DIREKTIV_RESULT file in the temp dir",
                errno.into(),
            )
        })
    }

    /// Makes an empty result file in `place`.
    pub(crate) fn create_in(place: &Place) -> Result<ResultFile, Errno> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        loop {
            let name = unguessable_name();
            let mode = Mode::RUSR | Mode::WUSR;
            match rustix::fs::openat(&*place.dir, &name, flags | OFlags::CLOEXEC, mode) {
                Ok(_created) => {
                    return Ok(ResultFile {
                        path: place.path.join(&name),
                        name: name.into(),
                        place: place.clone(),
                        inline: place.runner_own,
                    })
                }
                // Left by a runner before this one (the same pid as PID 1), or made by a
                // command.
                Err(Errno::EXIST) => continue,
                Err(errno) => return Err(errno),
            }
        }
    }

    /// Whether its folder is the runner's own (see `Place::runner_own`).
    #[cfg(test)]
    pub(crate) fn in_runner_folder(&self) -> bool {
        self.place.runner_own
    }

    /// Whether an empty file may be looked at on an async worker (see `ResultFile::inline`).
    pub(crate) fn may_look_inline(&self) -> bool {
        self.inline
    }

    /// The path the command is told.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads what the command left (at most `max` bytes: more is cmd.result.too_large) and
    /// removes the file.
    pub(crate) fn take(self, max: usize) -> Result<Left, Failure> {
        let dir = self.place.dir.as_fd();
        let left = self.read(dir, max);
        // Whatever it became (a folder a command made there stays: it is the command's).
        let _ = rustix::fs::unlinkat(dir, &self.name, AtFlags::empty());
        left
    }

    /// Removes the file when it is still the empty regular file it was made, without opening
    /// it; true when that is so. No open, so nothing a command puts there (a FIFO) can make
    /// this wait: cheap enough for an async worker where the folder is the runner's own.
    pub(crate) fn remove_if_empty(&self) -> bool {
        let dir = self.place.dir.as_fd();
        let empty =
            rustix::fs::statat(dir, &self.name, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|stat| {
                FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile && stat.st_size == 0
            });
        empty && rustix::fs::unlinkat(dir, &self.name, AtFlags::empty()).is_ok()
    }

    /// Removes the file unread (the command never started).
    pub(crate) fn remove(self) {
        let _ = rustix::fs::unlinkat(self.place.dir.as_fd(), &self.name, AtFlags::empty());
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

    fn open(dir: &Path) -> Place {
        let fd = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        Place {
            dir: Arc::new(fd),
            path: dir.to_owned(),
            runner_own: false,
        }
    }

    #[test]
    fn an_empty_private_file_is_made_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        let file = ResultFile::create_in(&dir).unwrap();
        let meta = std::fs::metadata(file.path()).unwrap();
        assert_eq!(meta.len(), 0);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let name = file.path().file_name().unwrap().to_string_lossy();
        assert!(name.starts_with(".direktiv-result-"), "{name}");
        assert_eq!(file.take(10).unwrap(), Left::Nothing);
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn only_an_empty_regular_file_is_removed_without_a_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        let empty = ResultFile::create_in(&dir).unwrap();
        assert!(empty.remove_if_empty());
        assert!(!empty.path().exists());
        let written = ResultFile::create_in(&dir).unwrap();
        std::fs::write(written.path(), b"x").unwrap();
        assert!(!written.remove_if_empty());
        let fifo = ResultFile::create_in(&dir).unwrap();
        std::fs::remove_file(fifo.path()).unwrap();
        let name = fifo.path().file_name().unwrap();
        rustix::fs::mknodat(dir.dir.as_fd(), name, FileType::Fifo, Mode::RUSR, 0).unwrap();
        assert!(!fifo.remove_if_empty());
        assert_eq!(written.take(10).unwrap(), Left::Bytes(b"x".to_vec()));
        assert_eq!(fifo.take(10).unwrap(), Left::Ignored("a FIFO"));
    }

    #[test]
    fn the_runner_s_folder_cannot_be_listed_and_comes_back_when_removed() {
        let home = Home::current().expect("a folder in TMPDIR");
        let mode = std::fs::metadata(&home.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o300);
        let file = ResultFile::create_in(&home).unwrap();
        assert!(file.in_runner_folder());
        file.remove();
        std::fs::remove_dir(&home.path).unwrap();
        let fallback = open(&std::env::temp_dir());
        let file = ResultFile::create(&fallback).unwrap();
        assert!(file.in_runner_folder(), "a new folder, not the fallback");
        assert_ne!(file.path().parent(), Some(home.path.as_path()));
        file.remove();
        Home::remove();
    }

    #[test]
    fn content_is_read_up_to_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        let file = ResultFile::create_in(&dir).unwrap();
        std::fs::write(file.path(), b"{\"b\":1,\"a\":2}").unwrap();
        let left = file.take(13).unwrap();
        assert_eq!(left, Left::Bytes(b"{\"b\":1,\"a\":2}".to_vec()));
        let file = ResultFile::create_in(&dir).unwrap();
        std::fs::write(file.path(), b"12345").unwrap();
        let failure = file.take(4).unwrap_err();
        assert_eq!(failure.code(), "cmd.result.too_large");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_symlink_or_fifo_in_its_place_is_not_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        let secret = tmp.path().join("secret");
        std::fs::write(&secret, b"do not read").unwrap();
        let file = ResultFile::create_in(&dir).unwrap();
        std::fs::remove_file(file.path()).unwrap();
        std::os::unix::fs::symlink(&secret, file.path()).unwrap();
        assert_eq!(file.take(100).unwrap(), Left::Ignored("a symbolic link"));
        let file = ResultFile::create_in(&dir).unwrap();
        std::fs::remove_file(file.path()).unwrap();
        rustix::fs::mknodat(
            dir.dir.as_fd(),
            file.path().file_name().unwrap(),
            FileType::Fifo,
            Mode::RUSR | Mode::WUSR,
            0,
        )
        .unwrap();
        assert_eq!(file.take(100).unwrap(), Left::Ignored("a FIFO"));
        let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the secret is left");
    }
}
