//! From a `CommandSpec` to the one file that is executed: shell mode, the PATH search and
//! `CMD_ALLOW`, and how a spawn failure is reported.
//!
//! The executable is located exactly once, just before the spawn, in the command's own working
//! directory and with the PATH the command gets, and the spawn executes the very path that was
//! located. With `CMD_ALLOW`, the located file must be one of the allowed executables (the same
//! file, compared by device and inode), and what is executed is then the allowed entry's own
//! path, so nothing the request controls (its PATH, files it planted, symlinks its commands
//! swap) can put another file in its place. A name with a `/` runs under `CMD_ALLOW` only when
//! it is an absolute path: a relative one means something different in the runner's working
//! directory and in the command's.
//!
//! `resolve` runs the same rules once more before anything of the request runs, to refuse a
//! command that cannot be allowed whatever the temp dir will hold.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType};
use rustix::io::Errno;

use super::path_search::{executable_here, search_path, SearchPlace};
use crate::config::AllowList;
use crate::error::Failure;
use crate::plan::{CommandSpec, Program};

/// The executable name and argv of one command, after shell mode was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// argv[0] as the user named it (or the configured shell): a bare name, looked up in the
    /// command's PATH, or a path.
    pub name: String,
    pub args: Vec<String>,
}

/// The shell and argv of `spec`; refuses, before anything of the request runs, a command the
/// runner will not start (shell mode disabled, an executable `CMD_ALLOW` cannot allow).
pub fn resolve(
    spec: &CommandSpec,
    shell: Option<&Path>,
    allow: &AllowList,
    path: Option<&OsStr>,
) -> Result<Launch, Failure> {
    let launch = launch_of(spec, shell)?;
    if !allow.is_restricted() {
        return Ok(launch);
    }
    let place = SearchPlace { cwd: None, path };
    match locate(&launch, place, allow) {
        Err(failure @ Failure::Denied(_)) => Err(failure),
        _ => Ok(launch),
    }
}

/// argv[0] and the rest of argv.
fn launch_of(spec: &CommandSpec, shell: Option<&Path>) -> Result<Launch, Failure> {
    match &spec.program {
        Program::Argv(argv) => match argv.split_first() {
            Some((first, rest)) => Ok(Launch {
                name: first.clone(),
                args: rest.to_vec(),
            }),
            None => Err(Failure::input("empty command")),
        },
        Program::Shell(script) => {
            let shell = shell.ok_or_else(|| {
                Failure::input(
                    "cannot run: shell mode is disabled on this runner (CMD_SHELL is empty); \
                     pass the command without \"shell\": true",
                )
            })?;
            Ok(Launch {
                name: shell.display().to_string(),
                args: vec!["-c".to_owned(), script.clone()],
            })
        }
    }
}

/// The `CMD_ALLOW` entries that name no executable here: a bare name not found in the
/// runner's PATH, or an absolute path that is not an executable file.
pub(crate) fn unresolved_allow_entries(allow: &AllowList) -> Vec<&str> {
    allow
        .entries
        .iter()
        .filter(|entry| executable_here(entry).is_err())
        .map(String::as_str)
        .collect()
}

/// The path to execute for `launch`: relative paths are relative to the command's working
/// directory (where the spawn changes to before it executes).
pub(super) fn locate(
    launch: &Launch,
    place: SearchPlace<'_>,
    allow: &AllowList,
) -> Result<OsString, Failure> {
    let name = OsStr::new(&launch.name);
    if !allow.is_restricted() {
        if has_slash(name) {
            return Ok(name.to_os_string());
        }
        return search_path(name, place)
            .map(PathBuf::into_os_string)
            .map_err(|e| spawn_failure(&e, launch, place.cwd));
    }
    let denied = |why: &str| {
        Failure::Denied(format!(
            "is not allowed: '{}' {why} ({})",
            launch.name,
            allow.entries.join(",")
        ))
    };
    if has_slash(name) && !name.as_bytes().starts_with(b"/") {
        return Err(denied(
            "is a relative path; with CMD_ALLOW a command names an allowed executable by its \
             bare name or absolute path",
        ));
    }
    let found = if has_slash(name) {
        Ok(PathBuf::from(name))
    } else {
        search_path(name, place)
    };
    let found = match found {
        Ok(found) => found,
        // Before the temp dir exists a missing file is not yet a reason to refuse.
        Err(_) if place.cwd.is_none() => return Ok(name.to_os_string()),
        Err(_) => return Err(denied("is not in CMD_ALLOW")),
    };
    let Some(identity) = identity(place.cwd, &found) else {
        return Err(denied("is not in CMD_ALLOW"));
    };
    allowed_executables(allow)
        .find(|(_, allowed)| *allowed == identity)
        .map(|(path, _)| path.into_os_string())
        .ok_or_else(|| denied("is not in CMD_ALLOW"))
}

/// The allowed executables as absolute paths, with their identities: absolute entries as
/// they are, bare ones looked up in the runner's own PATH.
fn allowed_executables(allow: &AllowList) -> impl Iterator<Item = (PathBuf, (u64, u64))> + '_ {
    let runner_path = std::env::var_os("PATH");
    allow.entries.iter().filter_map(move |entry| {
        let path = if entry.starts_with('/') {
            PathBuf::from(entry)
        } else {
            let place = SearchPlace {
                cwd: None,
                path: runner_path.as_deref(),
            };
            search_path(OsStr::new(entry), place).ok()?
        };
        // Absolute, so that the spawn's change of directory cannot change what it names.
        let path = std::fs::canonicalize(path).ok()?;
        let identity = identity(None, &path)?;
        Some((path, identity))
    })
}

/// Device and inode of the file `path` names (symlinks followed), relative to `cwd`.
fn identity(cwd: Option<BorrowedFd<'_>>, path: &Path) -> Option<(u64, u64)> {
    let stat = rustix::fs::statat(cwd.unwrap_or(rustix::fs::CWD), path, AtFlags::empty()).ok()?;
    Some((stat.st_dev, stat.st_ino))
}

fn has_slash(name: &OsStr) -> bool {
    name.as_bytes().contains(&b'/')
}

/// Turns a spawn error into the failure the user sees. `cwd` is the command's working
/// directory, where a script the request wrote usually is (`None` before it exists).
pub fn spawn_failure(error: &io::Error, launch: &Launch, cwd: Option<BorrowedFd<'_>>) -> Failure {
    let name = &launch.name;
    match error.kind() {
        io::ErrorKind::NotFound if name.contains('/') => Failure::NotFound(format!(
            "failed: '{name}' not found (or the interpreter on its #! line is missing)"
        )),
        // A bare name is looked up in PATH only, as a shell does; `run.sh` next to the command
        // is a common slip for `./run.sh`.
        io::ErrorKind::NotFound if is_file_in(cwd, name) => Failure::NotFound(format!(
            "failed: executable '{name}' not found in PATH; did you mean ./{name}? \
             (a file in the working directory is run by its path)"
        )),
        io::ErrorKind::NotFound => {
            Failure::NotFound(format!("failed: executable '{name}' not found in PATH"))
        }
        io::ErrorKind::PermissionDenied => Failure::Denied(format!(
            "failed: permission denied running '{name}' (a file needs an executable mode such as \"0755\")"
        )),
        _ if Errno::from_io_error(error) == Some(Errno::NOEXEC) => Failure::Denied(format!(
            "failed: '{name}' is not an executable format (a script needs a #! line)"
        )),
        _ => Failure::io(format!("failed to start '{name}'"), clone_error(error)),
    }
}

/// Whether `name` is a regular file (symlinks followed) in the folder `cwd`.
fn is_file_in(cwd: Option<BorrowedFd<'_>>, name: &str) -> bool {
    cwd.and_then(|cwd| rustix::fs::statat(cwd, name, AtFlags::empty()).ok())
        .is_some_and(|stat| FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile)
}

fn clone_error(error: &io::Error) -> io::Error {
    match error.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(error.kind(), error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, OwnedFd};
    use std::os::unix::fs::{symlink, PermissionsExt};

    use rustix::fs::{Mode, OFlags};

    use super::*;

    fn spec(program: Program) -> CommandSpec {
        CommandSpec {
            display: String::new(),
            program,
            env: vec![],
            stdin: None,
            workdir: None,
            timeout: None,
            silent: false,
            print: true,
            continue_on_error: false,
            output: None,
            limits: Default::default(),
            errors: vec![],
            retry: None,
        }
    }

    fn argv(name: &str) -> Launch {
        Launch {
            name: name.into(),
            args: vec![],
        }
    }

    fn allow(entries: &[&str]) -> AllowList {
        AllowList {
            entries: entries.iter().map(|e| e.to_string()).collect(),
        }
    }

    fn open(dir: &Path) -> OwnedFd {
        rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap()
    }

    fn executable(path: &Path) {
        std::fs::write(path, "#!/bin/sh\necho planted\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn code(result: Result<OsString, Failure>) -> String {
        match result {
            Ok(path) => format!("ok {}", path.to_string_lossy()),
            Err(failure) => failure.code(),
        }
    }

    #[test]
    fn shell_mode_uses_the_configured_shell() {
        let launch = resolve(
            &spec(Program::Shell("echo hi | cat".into())),
            Some(Path::new("/bin/sh")),
            &AllowList::default(),
            None,
        )
        .unwrap();
        assert_eq!(launch.name, "/bin/sh");
        assert_eq!(launch.args, vec!["-c", "echo hi | cat"]);
    }

    #[test]
    fn disabled_shell_is_an_input_error() {
        let err = resolve(
            &spec(Program::Shell("x".into())),
            None,
            &AllowList::default(),
            None,
        );
        assert_eq!(err.unwrap_err().code(), "cmd.input");
    }

    #[test]
    fn allowed_names_run_the_allowed_file() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = open(dir.path());
        let path_var = std::env::var_os("PATH");
        let place = SearchPlace {
            cwd: Some(cwd.as_fd()),
            path: path_var.as_deref(),
        };
        let sh = std::fs::canonicalize(search_path(OsStr::new("sh"), place).unwrap()).unwrap();
        let list = allow(&["sh"]);
        assert_eq!(
            code(locate(&argv("sh"), place, &list)),
            format!("ok {}", sh.display())
        );
        let by_path = argv(&sh.display().to_string());
        assert_eq!(
            code(locate(&by_path, place, &list)),
            format!("ok {}", sh.display())
        );
        assert_eq!(code(locate(&argv("cat"), place, &list)), "cmd.denied");
    }

    #[test]
    fn allow_entries_that_name_nothing_are_found() {
        let sh = search_path(
            OsStr::new("sh"),
            SearchPlace {
                cwd: None,
                path: std::env::var_os("PATH").as_deref(),
            },
        )
        .unwrap();
        let sh = sh.display().to_string();
        let list = allow(&[
            "sh",
            "no-such-tool",
            &sh,
            "/no/such/tool",
            "/etc/passwd",
            "/",
        ]);
        assert_eq!(
            unresolved_allow_entries(&list),
            ["no-such-tool", "/no/such/tool", "/etc/passwd", "/"]
        );
    }

    #[test]
    fn planted_files_and_relative_names_are_denied() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        executable(&dir.path().join("bin/sh"));
        executable(&dir.path().join("sh"));
        let cwd = open(dir.path());
        let list = allow(&["sh"]);
        for path in ["bin:/usr/bin:/bin", ".:/usr/bin:/bin", ":/usr/bin:/bin"] {
            let place = SearchPlace {
                cwd: Some(cwd.as_fd()),
                path: Some(OsStr::new(path)),
            };
            assert_eq!(
                code(locate(&argv("sh"), place, &list)),
                "cmd.denied",
                "{path}"
            );
        }
        let place = SearchPlace {
            cwd: Some(cwd.as_fd()),
            path: None,
        };
        for name in ["bin/sh", "./sh", "../../bin/sh"] {
            assert_eq!(
                code(locate(&argv(name), place, &list)),
                "cmd.denied",
                "{name}"
            );
        }
        // A symlink to the allowed file is that file: the allowed path itself is executed.
        let sh = std::fs::canonicalize(
            search_path(
                OsStr::new("sh"),
                SearchPlace {
                    cwd: None,
                    path: None,
                },
            )
            .unwrap(),
        )
        .unwrap();
        symlink(&sh, dir.path().join("alias")).unwrap();
        let alias = dir.path().join("alias").display().to_string();
        assert_eq!(
            code(locate(&argv(&alias), place, &list)),
            format!("ok {}", sh.display())
        );
    }

    #[test]
    fn without_an_allowlist_the_command_path_and_cwd_decide() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tools")).unwrap();
        executable(&dir.path().join("tools/hello"));
        let cwd = open(dir.path());
        let place = SearchPlace {
            cwd: Some(cwd.as_fd()),
            path: Some(OsStr::new("tools:/usr/bin:/bin")),
        };
        let none = AllowList::default();
        assert_eq!(code(locate(&argv("hello"), place, &none)), "ok tools/hello");
        assert_eq!(code(locate(&argv("./x/y"), place, &none)), "ok ./x/y");
        assert_eq!(
            code(locate(&argv("no-such-program"), place, &none)),
            "cmd.notfound"
        );
    }

    #[test]
    fn before_the_temp_dir_exists_only_certain_denials_refuse() {
        let list = allow(&["sh"]);
        let place = SearchPlace {
            cwd: None,
            path: None,
        };
        assert_eq!(code(locate(&argv("bin/sh"), place, &list)), "cmd.denied");
        assert_eq!(code(locate(&argv("cat"), place, &list)), "cmd.denied");
        assert_eq!(
            code(locate(&argv("not-yet-written"), place, &list)),
            "ok not-yet-written"
        );
    }
}
