//! Finding an executable file in a PATH, as execvp would: for a command (in its working
//! directory, with the PATH it gets) and for the runner's own settings (`CMD_SHELL`,
//! `CMD_ALLOW` entries, checked at start-up). Imports nothing of the runner, so the
//! configuration can ask it without importing `exec`.

use std::ffi::OsStr;
use std::io;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType};

/// PATH for a command when neither it nor the runner has one (what execvp assumes).
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Where the search for a command's executable happens.
#[derive(Clone, Copy)]
pub(crate) struct SearchPlace<'a> {
    /// The command's working directory; `None` before the temp dir exists (relative names
    /// and PATH entries are then left for the spawn to decide).
    pub(crate) cwd: Option<BorrowedFd<'a>>,
    /// The PATH the command gets.
    pub(crate) path: Option<&'a OsStr>,
}

/// The executable a setting names (`CMD_ALLOW` entries, `CMD_SHELL`): an absolute path, or a
/// bare name looked up in the runner's own PATH. Not found, or found without execute
/// permission (`PermissionDenied`), is an error.
pub(crate) fn executable_here(entry: &str) -> io::Result<PathBuf> {
    let path = Path::new(entry);
    match (path.parent(), path.file_name()) {
        // An absolute path is searched as a PATH of one directory: its own.
        (Some(dir), Some(name)) if path.is_absolute() => {
            let place = SearchPlace {
                cwd: None,
                path: Some(dir.as_os_str()),
            };
            search_path(name, place)
        }
        _ => {
            let runner_path = std::env::var_os("PATH");
            let place = SearchPlace {
                cwd: None,
                path: runner_path.as_deref(),
            };
            search_path(OsStr::new(entry), place)
        }
    }
}

/// The first executable regular file called `name` in the PATH of `place`, as execvp would
/// find it; relative PATH entries are taken from the command's working directory (and
/// skipped while there is none). `PermissionDenied` when only non-executable files of that
/// name exist.
pub(crate) fn search_path(name: &OsStr, place: SearchPlace<'_>) -> io::Result<PathBuf> {
    let path_var = place.path.unwrap_or(OsStr::new(DEFAULT_PATH));
    let mut denied = false;
    // A folder named twice (PATHs built by profile scripts often are) is looked in once.
    let mut seen: Vec<PathBuf> = Vec::new();
    for dir in std::env::split_paths(path_var) {
        if seen.contains(&dir) {
            continue;
        }
        let candidate = dir.join(name);
        seen.push(dir);
        let base = match (candidate.is_absolute(), place.cwd) {
            (true, _) => rustix::fs::CWD,
            (false, Some(cwd)) => cwd,
            (false, None) => continue,
        };
        match rustix::fs::statat(base, &candidate, AtFlags::empty()) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile => {
                if stat.st_mode & 0o111 != 0 {
                    return Ok(candidate);
                }
                denied = true;
            }
            Ok(_) | Err(_) => {}
        }
    }
    Err(io::Error::from(if denied {
        io::ErrorKind::PermissionDenied
    } else {
        io::ErrorKind::NotFound
    }))
}
