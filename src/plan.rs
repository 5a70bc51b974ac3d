//! The validated form of one request. `request` turns wire JSON into a `Plan`; everything after
//! it (workspace, execution, responses) handles a `Plan` and never sees `serde_json::Value`.

use std::path::PathBuf;
use std::time::Duration;

use crate::limits::Limits;
use crate::retry::Retry;

/// Which wire format the request came in; the response is answered in the same dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `{"commands": [...]}` (direktiv-apps / aws-cli style), answered with `{"<key>": [...]}`.
    Native,
    /// `{"data": {"commands": [...]}}` (Direktiv's special `direktiv-cmd` command), answered
    /// with `[{"Error": "", "Output": ...}]`.
    DirektivCmd,
}

/// One request: files to place, then commands to run one after another.
#[derive(Debug, Clone)]
pub struct Plan {
    pub dialect: Dialect,
    pub files: Vec<InputFile>,
    /// Request-level environment, applied to every command (before the command's own env).
    pub env: Vec<(String, String)>,
    pub commands: Vec<CommandSpec>,
    /// The values the request itself marks secret: its `mask` list and env entries with
    /// `"secret": true`. Env values that are secret by their name are added by
    /// `mask::SecretPolicy`, which knows the configuration. Values shorter than 4 bytes are
    /// filtered by the masker, not here.
    pub secrets: Vec<String>,
    /// What the request held that is not read (unknown fields where they are not refused),
    /// to be logged once as a warning.
    pub warning: Option<String>,
}

/// A file to write into the request's temp dir before any command runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Relative path, already checked lexically: not empty, not absolute, no `..` or `.`
    /// components, no NUL. Symlink escapes are checked against the disk by `workspace`.
    pub path: PathBuf,
    pub data: Vec<u8>,
    /// Permission bits (e.g. 0o644).
    pub mode: u32,
}

/// How the executable of a command is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// argv, from `command` split with shell-words rules or from `args`. Never empty.
    Argv(Vec<String>),
    /// `shell: true`: the script is passed to the configured shell as `-c <script>`.
    Shell(String),
}

/// One command of a request, with every alias and default already resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    /// The command as the user wrote it (`command`, or `args` joined with shell quoting).
    /// Masked before it is shown anywhere.
    pub display: String,
    pub program: Program,
    /// The command's own environment, applied after the request-level env.
    pub env: Vec<(String, String)>,
    /// Bytes fed to stdin; `None` gives the command an empty stdin (EOF at once).
    pub stdin: Option<Vec<u8>>,
    /// Working directory relative to the temp dir, lexically checked like file paths.
    pub workdir: Option<FieldPath>,
    /// The command's own timeout; `None` falls back to the configured default.
    pub timeout: Option<Duration>,
    /// Do not stream this command's output to the log endpoint.
    pub silent: bool,
    /// Log `running command '<masked command>'` before running it.
    pub print: bool,
    /// When this command fails, go on with the next one instead of failing the request.
    pub continue_on_error: bool,
    /// A file (relative to the temp dir) whose content becomes the command's `result`.
    pub output: Option<FieldPath>,
    /// The command's `limits` over the request's; the configured defaults come last, at
    /// execution.
    pub limits: Limits,
    /// `errors`: exit statuses (1-255) and the error codes they fail with, checked.
    pub errors: Vec<(i32, String)>,
    /// `retry`: run again after a failure worth another try.
    pub retry: Option<Retry>,
}

/// A path relative to the temp dir, lexically checked like file paths, with the JSON path of
/// the field that named it (`commands[1].workdir`): what the disk refuses later is reported
/// against that field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    pub path: PathBuf,
    /// The field's JSON path in the request.
    pub field: String,
}
