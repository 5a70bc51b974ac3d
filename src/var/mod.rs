//! `direktiv-cmd var get|set`: Direktiv variables read and written from inside a command,
//! without a library or curl, through the sidecar's `/var` (direktiv-protocol.md §2.2) or, in
//! development mode, as files in a folder.
//!
//! It runs as a command of a request: the action id, the sidecar and the temp dir come from
//! the environment the runner gives every command (`DIREKTIV_ACTION_ID`,
//! `DIREKTIV_HTTP_BACKEND`, `DIREKTIV_TEMPDIR`), never from the runner's own settings, so a
//! command's env that happens to hold a setting the runner would refuse (`PORT=x`) does not
//! stop it. Values of any size are streamed, never held whole.
//!
//! Exit status: 0 on success, 4 when the variable does not exist, 1 with a message saying
//! what to do on anything else, 2 for a usage error (clap's).

mod folder;
mod http;

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::direktiv::{
    is_development, ENV_ACTION_ID, ENV_DEV_MODE, ENV_HTTP_BACKEND, ENV_TEMP_DIR,
};

/// Where development mode keeps variables: `CMD_DEV_VARS`, else this folder in the temp dir.
pub(crate) const ENV_DEV_VARS: &str = "CMD_DEV_VARS";
const DEV_VARS_FOLDER: &str = ".direktiv-vars";

/// The sidecar when `DIREKTIV_HTTP_BACKEND` is not set (the runner's default).
const DEFAULT_BACKEND: &str = "http://127.0.0.1:8889";

/// `direktiv-cmd var ...` on its own: parsed without the runner's settings.
#[derive(Debug, Parser)]
#[command(
    name = "direktiv-cmd var",
    bin_name = "direktiv-cmd var",
    about = "Read and write Direktiv variables from inside a command (exit 0, 4 when the \
             variable does not exist, 1 on anything else)"
)]
pub struct VarCli {
    #[command(subcommand)]
    pub command: VarCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum VarCommand {
    /// Print a variable's value (or write it to FILE). Exits 4 when it does not exist.
    Get {
        /// The variable's name.
        name: String,
        #[arg(long, value_enum, default_value_t = Scope::Instance)]
        scope: Scope,
        /// Write the value to FILE instead of stdout.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Set a variable to the content of FILE, or of stdin (`-`, the default).
    Set {
        /// The variable's name.
        name: String,
        /// The file whose content becomes the value; `-` reads stdin.
        #[arg(value_name = "FILE|-", default_value = "-")]
        source: String,
        #[arg(long, value_enum, default_value_t = Scope::Instance)]
        scope: Scope,
        /// The value's mime type (Direktiv shows and serves it with this type).
        #[arg(long = "type", value_name = "MIME")]
        mime: Option<String>,
    },
}

/// The variable scopes the sidecar serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scope {
    Instance,
    Workflow,
    Namespace,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Instance => "instance",
            Scope::Workflow => "workflow",
            Scope::Namespace => "namespace",
        }
    }
}

/// How a `var` command ended.
#[derive(Debug)]
pub(crate) enum Failed {
    /// The variable does not exist (exit 4).
    Missing(String),
    /// Anything else, with what to do about it (exit 1).
    Other(String),
}

impl Failed {
    fn other(message: impl Into<String>) -> Self {
        Failed::Other(message.into())
    }
}

/// Where the variables are.
enum Store {
    Sidecar { backend: String, action_id: String },
    Folder(PathBuf),
}

/// Runs `direktiv-cmd var ...` (the arguments after the program name).
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let cli = match VarCli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failed::Missing(message)) => {
            eprintln!("direktiv-cmd var: {message}");
            ExitCode::from(4)
        }
        Err(Failed::Other(message)) => {
            eprintln!("direktiv-cmd var: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: VarCommand) -> Result<(), Failed> {
    let name = match &command {
        VarCommand::Get { name, .. } | VarCommand::Set { name, .. } => name,
    };
    check_name(name)?;
    let store = store()?;
    match command {
        VarCommand::Get {
            name,
            scope,
            output,
        } => get(&store, &name, scope, output.as_deref()),
        VarCommand::Set {
            name,
            source,
            scope,
            mime,
        } => set(&store, &name, scope, &source, mime.as_deref()),
    }
}

/// Direktiv's rule for variable names, checked before anything is sent:
/// `^(([a-zA-Z][a-zA-Z0-9_\-\.]*[a-zA-Z0-9])|([a-zA-Z]))$`.
pub(crate) fn check_name(name: &str) -> Result<(), Failed> {
    let bytes = name.as_bytes();
    let ok = match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphabetic()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        }
        _ => false,
    };
    match ok {
        true => Ok(()),
        false => Err(Failed::other(format!(
            "{name:?} is not a variable name Direktiv accepts: it must start with a letter, end \
             with a letter or digit, and hold only letters, digits, '_', '-' and '.'"
        ))),
    }
}

/// The sidecar, or the development folder (action id `development`, or DIREKTIV_DEV_MODE).
fn store() -> Result<Store, Failed> {
    let env = |name| std::env::var(name).ok().filter(|value| !value.is_empty());
    let Some(action_id) = env(ENV_ACTION_ID) else {
        return Err(Failed::other(format!(
            "{ENV_ACTION_ID} is not set: `direktiv-cmd var` works inside a command that \
             direktiv-cmd runs; to try a script locally, set {ENV_ACTION_ID}=development and \
             {ENV_DEV_VARS} to a folder for the variables"
        )));
    };
    let dev_mode = env(ENV_DEV_MODE).is_some_and(|value| {
        !matches!(
            value.trim().to_ascii_lowercase().as_str(),
            "0" | "false" | "no" | "off"
        )
    });
    if is_development(&action_id) || dev_mode {
        let folder = match (env(ENV_DEV_VARS), env(ENV_TEMP_DIR)) {
            (Some(folder), _) => PathBuf::from(folder),
            (None, Some(temp)) => Path::new(&temp).join(DEV_VARS_FOLDER),
            (None, None) => {
                return Err(Failed::other(format!(
                    "development mode keeps variables in {ENV_DEV_VARS}, and neither it nor \
                     {ENV_TEMP_DIR} is set; set {ENV_DEV_VARS} to a folder"
                )))
            }
        };
        return Ok(Store::Folder(folder));
    }
    let backend = env(ENV_HTTP_BACKEND).unwrap_or_else(|| DEFAULT_BACKEND.to_owned());
    Ok(Store::Sidecar { backend, action_id })
}

fn get(store: &Store, name: &str, scope: Scope, output: Option<&Path>) -> Result<(), Failed> {
    let mut value: Box<dyn Read> = match store {
        Store::Folder(folder) => folder::get(folder, name, scope)?,
        Store::Sidecar { backend, action_id } => {
            http::get(backend, action_id, name, scope.as_str())?
        }
    };
    // Only now that the variable is known to exist is the output file made.
    let written = match output {
        Some(path) if path != Path::new("-") => {
            let mut file = std::fs::File::create(path).map_err(|error| {
                Failed::other(format!("cannot write '{}': {error}", path.display()))
            })?;
            copy(&mut value, &mut file)
        }
        _ => copy(&mut value, &mut io::stdout().lock()),
    };
    written.map_err(|error| Failed::other(format!("the value of {name:?}: {error}")))
}

fn set(
    store: &Store,
    name: &str,
    scope: Scope,
    source: &str,
    mime: Option<&str>,
) -> Result<(), Failed> {
    let value = Source::open(source)?;
    match store {
        Store::Folder(folder) => folder::set(folder, name, scope, value),
        Store::Sidecar { backend, action_id } => {
            http::set(backend, action_id, name, scope.as_str(), value, mime)
        }
    }
}

/// A value to send: a file (its size known) or stdin.
pub(crate) struct Source {
    reader: Box<dyn Read>,
    /// The size, when the source is a regular file.
    len: Option<u64>,
    what: String,
}

impl Source {
    fn open(source: &str) -> Result<Source, Failed> {
        if source == "-" {
            // Stdin redirected from a file has a size too.
            let stdin = std::fs::File::from(
                io::stdin()
                    .as_fd_owned()
                    .map_err(|error| Failed::other(format!("cannot read stdin: {error}")))?,
            );
            let len = regular_len(&stdin);
            return Ok(Source {
                reader: Box::new(stdin),
                len,
                what: "stdin".into(),
            });
        }
        let file = std::fs::File::open(source)
            .map_err(|error| Failed::other(format!("cannot read '{source}': {error}")))?;
        let len = regular_len(&file);
        Ok(Source {
            reader: Box::new(file),
            len,
            what: format!("'{source}'"),
        })
    }
}

/// A file's size when it is a regular file (a pipe or terminal has none).
fn regular_len(file: &std::fs::File) -> Option<u64> {
    file.metadata()
        .ok()
        .filter(|meta| meta.is_file())
        .map(|meta| meta.len())
}

/// `io::stdin()` as an owned file (a duplicate of descriptor 0), to stat and read it directly.
trait StdinFd {
    fn as_fd_owned(&self) -> io::Result<std::os::fd::OwnedFd>;
}

impl StdinFd for io::Stdin {
    fn as_fd_owned(&self) -> io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        self.as_fd().try_clone_to_owned()
    }
}

/// Copies all of `from` to `to` and flushes it.
fn copy(from: &mut dyn Read, to: &mut dyn Write) -> io::Result<()> {
    io::copy(from, to)?;
    to.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_direktiv_s_rule() {
        for good in ["a", "A", "my-var.json", "x_1", "ab"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1a", "a-", "a.", "-a", "a/b", "../x", ".x", "a b", "é"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
