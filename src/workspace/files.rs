//! Input files into the request's temp dir, refusing any path that would land outside it.
//!
//! `write_files(tempdir, files)` is all or nothing, and blocking (the workspace calls it off the
//! async worker threads). Escapes (through a symlink already inside the temp dir) and names
//! the file system refuses (too long, through a file) are `Failure::Input` naming the file;
//! the runner's own I/O errors are `Failure::Internal`; on any error nothing this call created
//! is left behind. Every lookup is relative to a descriptor of the temp dir.
//!
//! Paths arrive lexically clean from `request` (relative, no `.`/`..`), so the only way out of
//! the temp dir is a symlink that is already there (left by an earlier command in a shared
//! `/tmp`, or planted by the sidecar's `files:`). Every path is first checked against the disk,
//! and then written by walking directory file descriptors with `O_NOFOLLOW`, so a symlink that
//! appears between the check and the write makes the write fail instead of escaping. A file
//! that already exists is replaced by rename, never written through: that keeps its old
//! content when the request fails, and a hard link to a file outside is never modified.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::error::Failure;
use crate::plan::InputFile;

/// Mode of folders created for files in sub-folders (before the umask).
const DIR_MODE: u32 = 0o755;

/// Writes every file of a request into the folder `tempdir`, or none.
pub fn write_files(tempdir: &Path, files: &[InputFile]) -> Result<(), Failure> {
    if files.is_empty() {
        return Ok(());
    }
    let root = open_dir_at(rustix::fs::CWD, tempdir)
        .map_err(|e| Failure::io(format!("cannot open the temp dir {}", tempdir.display()), e))?;
    write_files_at(root.as_fd(), files)
}

/// Writes every file of a request into the open folder `root`, or none.
pub(crate) fn write_files_at(root: BorrowedFd<'_>, files: &[InputFile]) -> Result<(), Failure> {
    for (index, file) in files.iter().enumerate() {
        check_on_disk(root, file).map_err(|problem| problem.into_failure(index, file))?;
    }
    let mut created = Vec::new();
    let result = write_all(root, files, &mut created);
    if result.is_err() {
        remove_created(root, &created);
    }
    result
}

/// What the disk check found wrong with a path.
enum Problem {
    /// The request's fault: the path goes through, or ends in, something it must not.
    Refused(String),
    /// The temp dir could not be inspected.
    Io(io::Error),
}

impl Problem {
    fn into_failure(self, index: usize, file: &InputFile) -> Failure {
        let name = serde_json::Value::String(file.path.display().to_string());
        match self {
            Problem::Refused(why) => Failure::input(format!(
                "files[{index}].name: {name} {why}; input files are written only inside the \
                 temp dir"
            )),
            Problem::Io(e) => match refused_name(&e) {
                Some(why) => Problem::Refused(why.into()).into_failure(index, file),
                None => Failure::io(
                    format!("cannot check where input file {name} would be written"),
                    e,
                ),
            },
        }
    }
}

/// Why the file system refuses a name, when an error says the request's name is at fault;
/// `None` for the runner's own trouble (no space, I/O error).
fn refused_name(error: &io::Error) -> Option<&'static str> {
    Some(match Errno::from_io_error(error)? {
        Errno::NAMETOOLONG => "is longer than the file system allows",
        Errno::NOTDIR => "goes through something that is not a folder",
        Errno::LOOP => "goes through a symbolic link",
        Errno::EXIST | Errno::ISDIR => "is in the way of something that already exists",
        _ => return None,
    })
}

/// Walks the existing part of a file's path: every folder on the way must be a real folder
/// (not a symlink), and the file itself, when it exists, a regular file.
fn check_on_disk(root: BorrowedFd<'_>, file: &InputFile) -> Result<(), Problem> {
    let parts: Vec<&OsStr> = file.path.iter().collect();
    let mut current = PathBuf::new();
    for (i, part) in parts.iter().enumerate() {
        current.push(part);
        let shown = || serde_json::Value::String(current.display().to_string());
        let kind = match rustix::fs::statat(root, &current, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => FileType::from_raw_mode(stat.st_mode),
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(Problem::Io(e.into())),
        };
        let last = i + 1 == parts.len();
        if kind == FileType::Symlink && last {
            return Err(Problem::Refused("is a symbolic link".into()));
        }
        if kind == FileType::Symlink {
            return Err(Problem::Refused(format!(
                "goes through {}, which is a symbolic link",
                shown()
            )));
        }
        if !last && kind != FileType::Directory {
            return Err(Problem::Refused(format!(
                "needs {} to be a folder, but it is not one",
                shown()
            )));
        }
        if last && kind == FileType::Directory {
            return Err(Problem::Refused("is an existing folder".into()));
        }
        if last && kind != FileType::RegularFile {
            return Err(Problem::Refused("exists and is not a regular file".into()));
        }
    }
    Ok(())
}

/// Something this call created, relative to the temp dir, in creation order.
enum Created {
    Dir(PathBuf),
    File(PathBuf),
}

/// New content for a file that already exists: written beside it under a staging name and
/// renamed over it only after every file is written, so a failed request leaves the old
/// content in place, and a hard link to a file outside the temp dir is replaced, not written
/// through.
struct Replacement {
    dir: OwnedFd,
    staged: OsString,
    name: OsString,
    /// The file's index in the request, for messages.
    index: usize,
}

/// Writes the files one by one, recording what it creates, then puts replacements in place.
fn write_all(
    root: BorrowedFd<'_>,
    files: &[InputFile],
    created: &mut Vec<Created>,
) -> Result<(), Failure> {
    let mut replacements = Vec::new();
    for (index, file) in files.iter().enumerate() {
        write_one(root, index, file, created, &mut replacements)
            .map_err(|e| write_failure(index, file, e))?;
    }
    for r in &replacements {
        rustix::fs::renameat(&r.dir, &r.staged, &r.dir, &r.name)
            .map_err(|e| write_failure(r.index, &files[r.index], e.into()))?;
    }
    Ok(())
}

/// A failed write: the request's fault when the file system refuses the name (named by its
/// field), else the runner's.
fn write_failure(index: usize, file: &InputFile, e: io::Error) -> Failure {
    if refused_name(&e).is_some() {
        return Problem::Io(e).into_failure(index, file);
    }
    let name = serde_json::Value::String(file.path.display().to_string());
    Failure::io(format!("cannot write input file {name}"), e)
}

/// Creates the file's missing folders, then the file (or its replacement) with its exact mode.
fn write_one(
    root: BorrowedFd<'_>,
    index: usize,
    file: &InputFile,
    created: &mut Vec<Created>,
    replacements: &mut Vec<Replacement>,
) -> io::Result<()> {
    let parts: Vec<&OsStr> = file.path.iter().collect();
    let Some((name, folders)) = parts.split_last() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty path"));
    };
    let mut relative = PathBuf::new();
    let mut dir: Option<OwnedFd> = None;
    for folder in folders {
        relative.push(folder);
        let parent = dir.as_ref().map_or(root, |fd| fd.as_fd());
        dir = Some(enter_or_create_dir(parent, folder, &relative, created)?);
    }
    let parent = dir.as_ref().map_or(root, |fd| fd.as_fd());
    let mut out = match create_new(parent, name)? {
        Some(out) => {
            created.push(Created::File(relative.join(name)));
            out
        }
        None => {
            let staged = staging_name();
            let out = create_new(parent, &staged)?.ok_or_else(|| {
                io::Error::new(io::ErrorKind::AlreadyExists, "the staging name is taken")
            })?;
            created.push(Created::File(relative.join(&staged)));
            replacements.push(Replacement {
                dir: parent.try_clone_to_owned()?,
                staged,
                name: name.to_os_string(),
                index,
            });
            out
        }
    };
    out.write_all(&file.data)?;
    // fchmod, not the open mode: the open mode is reduced by the umask.
    rustix::fs::fchmod(&out, Mode::from_raw_mode(file.mode & 0o7777))?;
    Ok(())
}

/// Opens a folder without following a symlink.
fn open_dir_at(
    parent: impl std::os::fd::AsFd,
    name: impl rustix::path::Arg,
) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(parent, name, flags, Mode::empty())?)
}

/// Opens the sub-folder `name` of `parent`, creating it when missing.
fn enter_or_create_dir(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    relative: &Path,
    created: &mut Vec<Created>,
) -> io::Result<OwnedFd> {
    match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(DIR_MODE)) {
        Ok(()) => created.push(Created::Dir(relative.to_path_buf())),
        Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    open_dir_at(parent, name)
}

/// Creates `name` as a new file; `None` when something already has that name.
/// `O_EXCL` with `O_NOFOLLOW` never opens an existing file or a symlink's target.
fn create_new(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<File>> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(parent, name, flags, Mode::from_raw_mode(0o600)) {
        Ok(fd) => Ok(Some(File::from(fd))),
        Err(rustix::io::Errno::EXIST) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A name for a replacement while it is written, unique within this process (and `O_EXCL`
/// guards against anyone else's file of that name).
fn staging_name() -> OsString {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!(".direktiv-cmd-{}-{n}.part", std::process::id()).into()
}

/// Undoes what `write_all` created, newest first (files before their folders). Best effort:
/// the request already fails, and a leftover is reported in the runner's log.
fn remove_created(root: BorrowedFd<'_>, created: &[Created]) {
    for item in created.iter().rev() {
        let (path, flags) = match item {
            Created::File(path) => (path, AtFlags::empty()),
            Created::Dir(path) => (path, AtFlags::REMOVEDIR),
        };
        match rustix::fs::unlinkat(root, path, flags) {
            // A staged replacement already renamed into place is gone under its staging name.
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = %e,
                "could not remove a partly written input file"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;

    fn input(path: &str, data: &str, mode: u32) -> InputFile {
        InputFile {
            path: path.into(),
            data: data.as_bytes().to_vec(),
            mode,
        }
    }

    /// Every path under `dir` (symlinks not followed), sorted.
    fn tree(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(current) = pending.pop() {
            for entry in std::fs::read_dir(&current).unwrap() {
                let path = entry.unwrap().path();
                if std::fs::symlink_metadata(&path).unwrap().is_dir() {
                    pending.push(path.clone());
                }
                found.push(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
        found.sort();
        found
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn refused(tempdir: &Path, files: &[InputFile]) -> String {
        match write_files(tempdir, files) {
            Err(Failure::Input(message)) => message,
            other => panic!("expected an input failure, got {other:?}"),
        }
    }

    #[test]
    fn writes_files_in_sub_folders_with_their_exact_mode() {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            input("run.sh", "#!/bin/sh\necho hi\n", 0o777),
            input("conf/deep/a.ini", "a=1", 0o600),
            input("conf/b", "", 0),
        ];
        write_files(dir.path(), &files).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("run.sh")).unwrap(),
            files[0].data
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("conf/deep/a.ini")).unwrap(),
            "a=1"
        );
        assert_eq!(
            mode_of(&dir.path().join("run.sh")),
            0o777,
            "the umask must not apply"
        );
        assert_eq!(mode_of(&dir.path().join("conf/deep/a.ini")), 0o600);
        assert_eq!(mode_of(&dir.path().join("conf/b")), 0);
        assert!(dir.path().join("conf/deep").is_dir());
    }

    #[test]
    fn overwrites_an_existing_regular_file_and_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        std::fs::write(&target, "a much longer old content").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_files(dir.path(), &[input("f", "new", 0o640)]).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(mode_of(&target), 0o640);
    }

    #[test]
    fn refuses_a_symlinked_folder_on_the_way_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), dir.path().join("link")).unwrap();
        let before = tree(dir.path());
        let message = refused(
            dir.path(),
            &[
                input("first", "x", 0o644),
                input("sub/y", "y", 0o644),
                input("link/x", "x", 0o644),
            ],
        );
        assert!(
            message.starts_with(
                "files[2].name: \"link/x\" goes through \"link\", which is a symbolic link"
            ),
            "{message}"
        );
        assert_eq!(
            tree(dir.path()),
            before,
            "nothing written for a refused request"
        );
        assert!(tree(outside.path()).is_empty());
    }

    #[test]
    fn refuses_a_symlink_as_the_file_itself() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        symlink(&victim, dir.path().join("d/f")).unwrap();
        let message = refused(dir.path(), &[input("d/f", "overwritten", 0o644)]);
        assert!(
            message.starts_with("files[0].name: \"d/f\" is a symbolic link; "),
            "{message}"
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        // A dangling link is refused too: following it would create a file outside.
        symlink(outside.path().join("new"), dir.path().join("dangling")).unwrap();
        refused(dir.path(), &[input("dangling", "x", 0o644)]);
        assert!(!outside.path().join("new").exists());
    }

    #[test]
    fn refuses_folders_files_and_fifos_in_the_wrong_place() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("folder")).unwrap();
        std::fs::write(dir.path().join("plain"), "").unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.path().join("fifo"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let message = refused(dir.path(), &[input("folder", "x", 0o644)]);
        assert!(message.contains("is an existing folder"), "{message}");
        let message = refused(dir.path(), &[input("plain/x", "x", 0o644)]);
        assert!(
            message.contains("needs \"plain\" to be a folder"),
            "{message}"
        );
        let message = refused(dir.path(), &[input("fifo", "x", 0o644)]);
        assert!(message.contains("is not a regular file"), "{message}");
    }

    #[test]
    fn removes_what_it_created_when_a_write_fails() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kept"), "old").unwrap();
        // `x/y/z` is written as a file, so `x/y/z/w` then fails on disk (the request parser
        // refuses such a pair; here it stands for any error after the first writes). The file
        // system refusing the name is the request's fault, named by its field.
        let files = [
            input("kept", "new", 0o644),
            input("x/y/z", "z", 0o644),
            input("x/y/z/w", "w", 0o644),
        ];
        let message = refused(dir.path(), &files);
        assert!(
            message.starts_with(
                "files[2].name: \"x/y/z/w\" goes through something that is not a folder"
            ),
            "{message}"
        );
        assert_eq!(tree(dir.path()), [PathBuf::from("kept")]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("kept")).unwrap(),
            "old",
            "an existing file keeps its content when the request fails"
        );
    }

    #[test]
    fn replaces_a_hard_link_instead_of_writing_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        let tempdir = dir.path().join("tmp");
        std::fs::create_dir(&tempdir).unwrap();
        std::fs::write(&outside, "keep").unwrap();
        std::fs::hard_link(&outside, tempdir.join("f")).unwrap();
        write_files(&tempdir, &[input("f", "new", 0o600)]).unwrap();
        assert_eq!(std::fs::read_to_string(tempdir.join("f")).unwrap(), "new");
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");
        assert_eq!(
            tree(&tempdir),
            [PathBuf::from("f")],
            "no staging file is left"
        );
    }

    #[test]
    fn no_files_is_nothing_to_do() {
        let dir = tempfile::tempdir().unwrap();
        write_files(dir.path(), &[]).unwrap();
        assert!(tree(dir.path()).is_empty());
    }
}
