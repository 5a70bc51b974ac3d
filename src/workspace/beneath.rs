//! Opening and making paths under the temp dir without ever leaving it, whatever symlinks the
//! request's commands left there.
//!
//! Every lookup is relative to a descriptor of the temp dir, never a joined path string, so a
//! folder renamed or replaced while the request runs cannot redirect it. Symlinks are followed
//! only while they stay under the temp dir: the kernel enforces that with `openat2` and
//! `RESOLVE_BENEATH` (Linux ≥ 5.6). Where `openat2` is missing or blocked by a seccomp profile,
//! each component is opened with `O_NOFOLLOW` instead, so any symlink on the way is refused.
//! Folders are made with `mkdirat` in a folder opened that way: nothing is ever created
//! through a symlink that leads out.
//!
//! All of this blocks (a slow disk, a hung network mount): callers run it off the async worker
//! threads.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::LazyLock;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Mode of folders made for a `workdir` or `out/` (before the umask).
const DIR_MODE: u32 = 0o755;

/// How often a lookup is retried when `openat2` reports a concurrent rename (`EAGAIN`).
const RENAME_RETRIES: usize = 8;

/// A lookup that failed, and where on the path it did when that is known.
#[derive(Debug)]
pub(crate) struct PathError {
    /// The folder on the way (a strict prefix of the path) that could not be opened or made;
    /// `None` when the path itself failed, or the kernel did not say where.
    pub(crate) at: Option<PathBuf>,
    pub(crate) errno: Errno,
}

impl PathError {
    /// A failure at `prefix` of `whole`.
    fn new(prefix: &Path, whole: &Path, errno: Errno) -> Self {
        PathError {
            at: (prefix != whole).then(|| prefix.to_path_buf()),
            errno,
        }
    }

    /// Why the request's path cannot be used, when the request is at fault (a name the file
    /// system refuses, a symlink out, a file where a folder is needed...); `None` for the
    /// runner's own trouble (no space, I/O error, too many open files, permissions: those
    /// may well be the container's doing).
    pub(crate) fn refusal(&self) -> Option<String> {
        const LOOP: &str =
            "a symbolic link loop (or, on kernels without openat2, any symbolic link)";
        let at = self.at.as_deref().map(quoted);
        let why = match (self.errno, at) {
            (Errno::XDEV, Some(at)) => {
                format!(
                    "goes through {at}, a symbolic link that leads outside the request's temp dir"
                )
            }
            (Errno::XDEV, None) => {
                "leads outside the request's temp dir through a symbolic link".into()
            }
            (Errno::LOOP, Some(at)) => format!("goes through {at}: {LOOP}"),
            (Errno::LOOP, None) => format!("goes through {LOOP}"),
            (Errno::NOTDIR, Some(at)) => format!("needs {at} to be a folder, but it is not one"),
            (Errno::NOTDIR, None) => {
                "is not a folder, or goes through something that is not one".into()
            }
            (Errno::NAMETOOLONG, _) => "is longer than the file system allows".into(),
            (Errno::NOENT, Some(at)) => {
                format!("goes through {at}, which does not exist (a dangling symbolic link?)")
            }
            (Errno::NOENT, None) => "does not exist".into(),
            (Errno::NXIO | Errno::OPNOTSUPP, None) => "is a socket, not a regular file".into(),
            _ => return None,
        };
        Some(why)
    }
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(at) = &self.at {
            write!(f, "at {}: ", at.display())?;
        }
        write!(f, "{}", io::Error::from(self.errno))
    }
}

/// Opens `relative` under `root` with `flags` (`O_CLOEXEC` is added), following symlinks only
/// while they stay under `root`.
pub(crate) fn open(
    root: BorrowedFd<'_>,
    relative: &Path,
    flags: OFlags,
) -> Result<OwnedFd, PathError> {
    let flags = flags | OFlags::CLOEXEC;
    if *OPENAT2 {
        open_beneath(root, relative, flags)
            .map_err(|errno| PathError::new(relative, relative, errno))
    } else {
        open_without_symlinks(root, relative, flags)
    }
}

/// Opens the folder `relative` under `root`, making every missing folder on the way.
pub(crate) fn make_dirs(root: BorrowedFd<'_>, relative: &Path) -> Result<OwnedFd, PathError> {
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY;
    let mut prefix = PathBuf::new();
    let mut current: Option<OwnedFd> = None;
    for name in names(relative) {
        prefix.push(name);
        let parent = current.as_ref().map_or(root, |fd| fd.as_fd());
        match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(DIR_MODE)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(errno) => return Err(PathError::new(&prefix, relative, errno)),
        }
        // A real folder is entered directly; only a symlink needs the whole prefix resolved
        // from the top (its target may lead up and back down again).
        let entered = match open_no_symlink(parent, name, dir_flags) {
            Err(Errno::LOOP) => open(root, &prefix, dir_flags).map_err(|e| PathError {
                at: e
                    .at
                    .or_else(|| (prefix != relative).then(|| prefix.clone())),
                errno: e.errno,
            })?,
            Err(errno) => return Err(PathError::new(&prefix, relative, errno)),
            Ok(fd) => fd,
        };
        current = Some(entered);
    }
    match current {
        Some(fd) => Ok(fd),
        None => rustix::fs::openat(root, ".", dir_flags | OFlags::CLOEXEC, Mode::empty())
            .map_err(|errno| PathError::new(relative, relative, errno)),
    }
}

/// Whether this kernel lets the runner use `openat2` (Linux ≥ 5.6, not blocked by seccomp).
static OPENAT2: LazyLock<bool> = LazyLock::new(|| {
    let probe = rustix::fs::openat2(
        rustix::fs::CWD,
        "/",
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::empty(),
    );
    !matches!(probe, Err(Errno::NOSYS | Errno::PERM))
});

fn open_beneath(root: BorrowedFd<'_>, relative: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(root, relative, flags, Mode::empty(), resolve) {
            Err(Errno::AGAIN) if tries < RENAME_RETRIES => tries += 1,
            other => return other,
        }
    }
}

/// The fallback: every component opened with `O_NOFOLLOW`, so any symlink is `ELOOP`.
fn open_without_symlinks(
    root: BorrowedFd<'_>,
    relative: &Path,
    flags: OFlags,
) -> Result<OwnedFd, PathError> {
    let all: Vec<&OsStr> = names(relative).collect();
    let Some((last, folders)) = all.split_last() else {
        return rustix::fs::openat(root, ".", flags, Mode::empty())
            .map_err(|errno| PathError::new(relative, relative, errno));
    };
    let mut prefix = PathBuf::new();
    let mut current: Option<OwnedFd> = None;
    for name in folders {
        prefix.push(name);
        let parent = current.as_ref().map_or(root, |fd| fd.as_fd());
        current = Some(
            open_no_symlink(parent, name, OFlags::PATH | OFlags::DIRECTORY)
                .map_err(|errno| PathError::new(&prefix, relative, errno))?,
        );
    }
    let parent = current.as_ref().map_or(root, |fd| fd.as_fd());
    open_no_symlink(parent, last, flags).map_err(|errno| PathError::new(relative, relative, errno))
}

/// Opens `name` in `parent` without following a symlink; a symlink is `ELOOP` (with
/// `O_DIRECTORY` the kernel says `ENOTDIR` for it, which would read as "a file is in the way").
fn open_no_symlink(parent: BorrowedFd<'_>, name: &OsStr, flags: OFlags) -> Result<OwnedFd, Errno> {
    let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(parent, name, flags, Mode::empty()) {
        Err(Errno::NOTDIR) => {
            let stat = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
            if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink {
                Err(Errno::LOOP)
            } else {
                Err(Errno::NOTDIR)
            }
        }
        other => other,
    }
}

/// The plain names of a path (request paths have no `.`, `..` or root: `request` checked).
fn names(path: &Path) -> impl Iterator<Item = &OsStr> {
    path.components().filter_map(|component| match component {
        Component::Normal(name) => Some(name),
        _ => None,
    })
}

/// A path as a JSON string, for messages.
pub(crate) fn quoted(path: &Path) -> String {
    serde_json::Value::String(path.display().to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn root_of(dir: &tempfile::TempDir) -> OwnedFd {
        rustix::fs::open(
            dir.path(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    #[test]
    fn makes_folders_and_follows_symlinks_that_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = root_of(&dir);
        make_dirs(root.as_fd(), Path::new("a/b/c")).unwrap();
        assert!(dir.path().join("a/b/c").is_dir());
        symlink("a/b", dir.path().join("alias")).unwrap();
        make_dirs(root.as_fd(), Path::new("alias/d")).unwrap();
        if *OPENAT2 {
            assert!(dir.path().join("a/b/d").is_dir());
            std::fs::write(dir.path().join("a/b/c/f"), "x").unwrap();
            open(root.as_fd(), Path::new("alias/c/f"), OFlags::RDONLY).unwrap();
        }
    }

    #[test]
    fn creates_nothing_through_a_symlink_leading_out() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = root_of(&dir);
        symlink(outside.path(), dir.path().join("link")).unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        symlink("../..", dir.path().join("real/up")).unwrap();
        for path in ["link/made/here", "link", "real/up/made"] {
            let error = make_dirs(root.as_fd(), Path::new(path)).unwrap_err();
            assert!(
                matches!(error.errno, Errno::XDEV | Errno::LOOP),
                "{path}: {error}"
            );
            assert!(error.refusal().is_some());
        }
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        assert!(!dir.path().parent().unwrap().join("made").exists());
    }

    #[test]
    fn the_fallback_refuses_every_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let root = root_of(&dir);
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/f"), "x").unwrap();
        symlink("a", dir.path().join("alias")).unwrap();
        open_without_symlinks(root.as_fd(), Path::new("a/f"), OFlags::RDONLY).unwrap();
        let error =
            open_without_symlinks(root.as_fd(), Path::new("alias/f"), OFlags::RDONLY).unwrap_err();
        assert_eq!(error.errno, Errno::LOOP);
        assert_eq!(error.at.as_deref(), Some(Path::new("alias")));
    }

    #[test]
    fn names_where_a_path_fails() {
        let dir = tempfile::tempdir().unwrap();
        let root = root_of(&dir);
        std::fs::write(dir.path().join("file"), "x").unwrap();
        let error = make_dirs(root.as_fd(), Path::new("file/sub")).unwrap_err();
        assert_eq!(error.at.as_deref(), Some(Path::new("file")));
        let why = error.refusal().unwrap();
        assert_eq!(why, "needs \"file\" to be a folder, but it is not one");
        let error = open(root.as_fd(), Path::new("missing"), OFlags::RDONLY).unwrap_err();
        assert_eq!(error.refusal().unwrap(), "does not exist");
        let error = PathError::new(Path::new("x"), Path::new("x"), Errno::NOSPC);
        assert!(
            error.refusal().is_none(),
            "the runner's trouble, not the request's"
        );
    }
}
