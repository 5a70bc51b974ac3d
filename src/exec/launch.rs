//! From a `CommandSpec` to a spawned process: which executable, allowed or not, and how a spawn
//! failure is reported.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use crate::config::AllowList;
use crate::error::Failure;
use crate::plan::{CommandSpec, Program};

/// The executable and argv of one command, after shell mode and `CMD_ALLOW` were applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// What is passed to exec: a bare name (looked up in PATH by the spawn) or a path.
    pub program: OsString,
    pub args: Vec<String>,
    /// The executable as the user named it, for messages.
    pub shown_name: String,
}

/// Decides what to execute for `spec`, refusing what the configuration does not allow.
///
/// With an allowlist, a bare name is resolved here against the runner's own PATH and the
/// resolved absolute path is executed, so a `PATH` in the request's env cannot point an allowed
/// name at another executable.
pub fn resolve(
    spec: &CommandSpec,
    shell: Option<&Path>,
    allow: &AllowList,
) -> Result<Launch, Failure> {
    let (argv0, args) = match &spec.program {
        Program::Argv(argv) => match argv.split_first() {
            Some((first, rest)) => (first.clone(), rest.to_vec()),
            None => return Err(Failure::input("empty command")),
        },
        Program::Shell(script) => {
            let shell = shell.ok_or_else(|| {
                Failure::input(
                    "cannot run: shell mode is disabled on this runner (CMD_SHELL is empty); \
                     pass the command without \"shell\": true",
                )
            })?;
            (
                shell.display().to_string(),
                vec!["-c".to_owned(), script.clone()],
            )
        }
    };
    if !allow.is_restricted() {
        return Ok(Launch {
            program: argv0.clone().into(),
            args,
            shown_name: argv0,
        });
    }
    match allowed_executable(&argv0, allow) {
        Some(path) => Ok(Launch {
            program: path.into_os_string(),
            args,
            shown_name: argv0,
        }),
        None => Err(Failure::Denied(format!(
            "is not allowed: '{argv0}' is not in CMD_ALLOW ({})",
            allow.entries.join(",")
        ))),
    }
}

/// The `CMD_ALLOW` entries that name no executable here: a bare name not found in the
/// runner's PATH, or an absolute path that is not an executable file.
pub(crate) fn unresolved_allow_entries(allow: &AllowList) -> Vec<&str> {
    let runner_path = std::env::var_os("PATH").unwrap_or_default();
    allow
        .entries
        .iter()
        .filter(|entry| {
            let path = Path::new(entry.as_str());
            let found = match (path.parent(), path.file_name()) {
                // An absolute path is searched as a PATH of one directory: its own.
                (Some(dir), Some(name)) if path.is_absolute() => {
                    super::spawn::search_path(name, dir.as_os_str(), Path::new("")).is_ok()
                }
                _ => find_in_path(entry, &runner_path).is_some(),
            };
            !found
        })
        .map(String::as_str)
        .collect()
}

/// The absolute path to run when `name` is allowed by the list, else `None`.
fn allowed_executable(name: &str, allow: &AllowList) -> Option<PathBuf> {
    let runner_path = std::env::var_os("PATH").unwrap_or_default();
    let wanted = if name.contains('/') {
        PathBuf::from(name)
    } else {
        find_in_path(name, &runner_path)?
    };
    allow.entries.iter().find_map(|entry| {
        let allowed = if entry.starts_with('/') {
            PathBuf::from(entry)
        } else {
            find_in_path(entry, &runner_path)?
        };
        same_file(&allowed, &wanted).then(|| wanted.clone())
    })
}

/// First executable regular file called `name` in a PATH-style list (relative entries from
/// the runner's working directory).
fn find_in_path(name: &str, path_var: &std::ffi::OsStr) -> Option<PathBuf> {
    super::spawn::search_path(std::ffi::OsStr::new(name), path_var, Path::new("")).ok()
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Turns a spawn error into the failure the user sees. `cwd` is the command's working
/// directory, where a script the request wrote usually is.
pub fn spawn_failure(error: &io::Error, launch: &Launch, cwd: &Path) -> Failure {
    let name = &launch.shown_name;
    match error.kind() {
        io::ErrorKind::NotFound if name.contains('/') => Failure::NotFound(format!(
            "failed: '{name}' not found (or the interpreter on its #! line is missing)"
        )),
        // A bare name is looked up in PATH only, as a shell does; `run.sh` next to the command
        // is a common slip for `./run.sh`.
        io::ErrorKind::NotFound if cwd.join(name).is_file() => Failure::NotFound(format!(
            "failed: executable '{name}' not found in PATH; did you mean ./{name}? \
             (a file in the working directory is run by its path)"
        )),
        io::ErrorKind::NotFound => {
            Failure::NotFound(format!("failed: executable '{name}' not found in PATH"))
        }
        io::ErrorKind::PermissionDenied => Failure::Denied(format!(
            "failed: permission denied running '{name}' (a file needs an executable mode such as \"0755\")"
        )),
        _ if error.raw_os_error() == Some(libc_enoexec()) => Failure::Denied(format!(
            "failed: '{name}' is not an executable format (a script needs a #! line)"
        )),
        _ => Failure::internal(format!("failed to start '{name}': {error}")),
    }
}

fn libc_enoexec() -> i32 {
    rustix::io::Errno::NOEXEC.raw_os_error()
}

#[cfg(test)]
mod tests {
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
        }
    }

    fn allow(entries: &[&str]) -> AllowList {
        AllowList {
            entries: entries.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn shell_mode_uses_the_configured_shell() {
        let launch = resolve(
            &spec(Program::Shell("echo hi | cat".into())),
            Some(Path::new("/bin/sh")),
            &AllowList::default(),
        )
        .unwrap();
        assert_eq!(launch.program, "/bin/sh");
        assert_eq!(launch.args, vec!["-c", "echo hi | cat"]);
    }

    #[test]
    fn disabled_shell_is_an_input_error() {
        let err = resolve(
            &spec(Program::Shell("x".into())),
            None,
            &AllowList::default(),
        );
        assert_eq!(err.unwrap_err().code(), "cmd.input");
    }

    #[test]
    fn allowlist_resolves_bare_names_and_refuses_others() {
        let list = allow(&["sh"]);
        let ok = resolve(&spec(Program::Argv(vec!["sh".into()])), None, &list).unwrap();
        assert!(PathBuf::from(&ok.program).is_absolute());
        let denied = resolve(&spec(Program::Argv(vec!["cat".into()])), None, &list);
        assert_eq!(denied.unwrap_err().code(), "cmd.denied");
    }

    #[test]
    fn allow_entries_that_name_nothing_are_found() {
        let sh = find_in_path("sh", &std::env::var_os("PATH").unwrap()).unwrap();
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
    fn allowlist_matches_absolute_paths_to_bare_entries() {
        let sh = find_in_path("sh", &std::env::var_os("PATH").unwrap()).unwrap();
        let list = allow(&["sh"]);
        let argv = vec![sh.display().to_string()];
        assert!(resolve(&spec(Program::Argv(argv)), None, &list).is_ok());
    }
}
