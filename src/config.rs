//! Every setting of the runner, read once at start-up from flags and environment variables.
//!
//! Each setting is a flag and an environment variable (clap's `env` support), so a Dockerfile
//! `ENV`, a Direktiv function's `envs:` and a local `--flag` all configure the same thing.
//! An invalid value stops start-up with clap's message, which names the flag and variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::direktiv::{DEVELOPMENT_ACTION_ID, ENV_DEV_MODE, ENV_HTTP_BACKEND};
use crate::isolation::IsolationSetting;
use crate::limits::{self, Limits};
use crate::mask::{SecretPolicy, DEFAULT_SECRET_NAMES};

#[derive(Debug, Parser)]
#[command(
    name = "direktiv-cmd",
    version,
    about = "Generic command runner for Direktiv function containers",
    long_about = "Generic command runner for Direktiv function containers.\n\n\
        Serves Direktiv's function contract on $PORT: POST / runs the request's commands, \
        streams every output line to the sidecar's log endpoint and answers with JSON results \
        or a catchable cmd.* error. Every option is also an environment variable.\n\n\
        Exit status: 0 after a drain on SIGTERM; 2 when the command line or a setting is \
        invalid (the message names the variable; nothing was started); 1 when the runner \
        cannot start or serve."
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,

    #[command(subcommand)]
    pub command: Option<Mode>,
}

impl Cli {
    /// The environment variables the runner reads as its own settings (`CMD_RESULT_KEY`,
    /// `PORT`, ...): configuration, never secrets, whatever their names.
    pub fn setting_variables() -> Vec<String> {
        use clap::CommandFactory;
        Cli::command()
            .get_arguments()
            .filter_map(|argument| argument.get_env())
            .map(|name| name.to_string_lossy().into_owned())
            .collect()
    }
}

#[derive(Debug, Subcommand)]
pub enum Mode {
    /// Run one request from a file (or `-` for stdin) without HTTP: logs go to stderr, the
    /// response JSON to stdout. The exit status is 0 on success; on failure it is the failing
    /// command's exit status when it exited with one (cmd.exit.3 exits 3), else 1. A usage
    /// error exits 2 with no JSON on stdout.
    Run {
        #[command(flatten)]
        options: RunOptions,
        /// Path of the request JSON, or `-` to read it from stdin.
        request: String,
    },
    /// Read or write a Direktiv variable from inside a command, through the sidecar (in
    /// development mode, files under CMD_DEV_VARS, default $DIREKTIV_TEMPDIR/.direktiv-vars).
    /// Exit status: 0 on success, 4 when the variable does not exist, 1 on anything else.
    Var {
        #[command(subcommand)]
        command: crate::var::VarCommand,
    },
}

/// What `direktiv-cmd run` sets that an HTTP request gets from Direktiv.
#[derive(Debug, Clone, Args)]
pub struct RunOptions {
    /// The action id (DIREKTIV_ACTION_ID of the commands).
    #[arg(long, default_value = DEVELOPMENT_ACTION_ID,
          value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub action_id: String,

    /// Run in this directory, as with Direktiv-TempDir: created when missing and kept
    /// afterwards. Without it a private temp dir is made and removed.
    #[arg(long, value_name = "DIR")]
    pub temp_dir: Option<PathBuf>,

    /// A variable for the request's env, winning over the request's own value; repeatable.
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env_pair)]
    pub env: Vec<(String, String)>,
}

/// The runner's configuration. Cheap to share: wrapped in an `Arc` by the server.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Port to listen on (all addresses).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,

    /// Base URL of the Direktiv sidecar; logs go to <backend>/log?aid=<action id>.
    #[arg(long, env = ENV_HTTP_BACKEND, default_value = "http://127.0.0.1:8889",
          value_parser = parse_backend)]
    pub backend: String,

    /// Development mode: command output goes to stdout instead of the sidecar.
    /// Any non-empty value other than 0/false/no/off turns it on.
    #[arg(long = "dev-mode", env = ENV_DEV_MODE, default_value = "",
          hide_default_value = true, value_parser = parse_flag_value,
          num_args = 0..=1, default_missing_value = "true")]
    pub dev_mode: bool,

    /// Default timeout of one command (seconds, 90s/5m/1h30m or ISO 8601 like PT10M); 0 means none.
    #[arg(long, env = "CMD_TIMEOUT", default_value = "0", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Time between SIGTERM and SIGKILL when a command's process group is stopped.
    #[arg(long, env = "CMD_KILL_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub kill_grace: Duration,

    /// On SIGTERM, time in-flight requests get to finish before they are cancelled.
    #[arg(long, env = "CMD_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub grace: Duration,

    /// Longest wait for a request's headers, and for its whole body once they are in. An idle
    /// keep-alive connection is closed after as long without a new request.
    #[arg(long, env = "CMD_READ_TIMEOUT", default_value = "30s",
          value_parser = parse_positive_duration)]
    pub read_timeout: Duration,

    /// Requests run at the same time; more are answered 503 cmd.busy.
    #[arg(long, env = "CMD_MAX_INFLIGHT", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_inflight: u32,

    /// How concurrent requests are isolated from each other: `landlock` (a Landlock domain per
    /// request where the kernel has Landlock, else none), `require` (where it has not, one
    /// request at a time instead), `uid` (root only: each concurrency slot's commands run as
    /// uid and gid 100000 + slot, owning the request's folder, and Landlock where there is) or
    /// `off`.
    #[arg(long, env = "CMD_ISOLATION", default_value = "landlock", value_enum)]
    pub isolation: IsolationSetting,

    /// Bytes of stdout and of stderr kept per command in the response (logs get everything).
    #[arg(long, env = "CMD_MAX_OUTPUT", default_value = "1MiB", value_parser = parse_size)]
    pub max_output: usize,

    /// Largest `DIREKTIV_RESULT` file read back as a command's `result`; a larger one fails
    /// the command with cmd.result.too_large (Direktiv takes responses up to 128 MiB).
    #[arg(long, env = "CMD_MAX_RESULT", default_value = "64MiB", value_parser = parse_size)]
    pub max_result: usize,

    /// Where `direktiv-cmd var` keeps variables in development mode (no sidecar); commands are
    /// told it. Unset: `$DIREKTIV_TEMPDIR/.direktiv-vars`, the request's temp dir.
    #[arg(long, env = "CMD_DEV_VARS", value_name = "DIR")]
    pub dev_vars: Option<PathBuf>,

    /// Largest request body accepted.
    #[arg(long, env = "CMD_MAX_BODY", default_value = "32MiB", value_parser = parse_size)]
    pub max_body: usize,

    /// Comma-separated executables allowed to run, by bare name (looked up in PATH) or
    /// absolute path. Empty allows everything.
    #[arg(long, env = "CMD_ALLOW", default_value = "", value_parser = parse_allow_list,
          hide_default_value = true)]
    pub allow: AllowList,

    /// Shell used for `shell: true` commands: an absolute path, or a name found in PATH; it
    /// must be an executable file. Empty disables shell mode.
    #[arg(long, env = "CMD_SHELL", default_value = DEFAULT_SHELL, value_parser = parse_shell)]
    pub shell: ShellSetting,

    /// Top-level key of the native response (e.g. `bash` or `aws-cli` to replace those
    /// direktiv-apps functions without touching workflows).
    #[arg(long, env = "CMD_RESULT_KEY", default_value = "commands")]
    pub result_key: String,

    /// Format of the runner's own log lines on stderr; the level comes from RUST_LOG.
    #[arg(long, env = "CMD_LOG_FORMAT", default_value = "text", value_enum)]
    pub log_format: LogFormat,

    /// Env variables hold secrets when a WORD of their name matches this regular expression in
    /// full, ignoring case (names split at `_`, `-`, `.`, case changes and digits: `apiKey` is
    /// `api` `Key`; so `KEY` matches AWS_SECRET_ACCESS_KEY but not KEYBOARD), or the whole name
    /// does. Their values are masked, in requests' env and in the runner's own environment,
    /// unless they are `true`/`false`/`yes`/`no`/`on`/`off` or a number of fewer than 6 digits.
    /// Empty: no name makes a value secret.
    #[arg(long = "mask-names", env = "CMD_MASK_NAMES", default_value = DEFAULT_SECRET_NAMES,
          value_parser = SecretPolicy::parse)]
    pub secret_names: SecretPolicy,

    /// Also mask secrets in the response (`command`, `stdout`, `stderr`, `result`), which
    /// Direktiv keeps in the instance's data. Logs and error messages are always masked.
    #[arg(long = "mask-response", env = "CMD_MASK_RESPONSE", default_value = "true",
          value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub mask_response: bool,

    /// Default `memory` limit of every command: memory it uses (see --limits-mechanism), in
    /// bytes or like 256Mi, 1Gi, 500M. Empty: none.
    #[arg(long, env = "CMD_LIMIT_MEMORY", default_value = "", hide_default_value = true,
          value_parser = limit_setting(limits::parse_memory))]
    pub limit_memory: LimitSetting,

    /// Default `cpu` limit of every command: CPU time in seconds, or like 30s, 2m. Empty: none.
    #[arg(long, env = "CMD_LIMIT_CPU", default_value = "", hide_default_value = true,
          value_parser = limit_setting(limits::parse_cpu))]
    pub limit_cpu: LimitSetting,

    /// Default `file_size` limit of every command: the largest file it may write, in bytes or
    /// like 1Gi. Empty: none.
    #[arg(long, env = "CMD_LIMIT_FILE_SIZE", default_value = "", hide_default_value = true,
          value_parser = limit_setting(crate::size::parse))]
    pub limit_file_size: LimitSetting,

    /// Default `open_files` limit of every command: open file descriptors. Empty: none.
    #[arg(long, env = "CMD_LIMIT_OPEN_FILES", default_value = "", hide_default_value = true,
          value_parser = limit_setting(limits::parse_open_files))]
    pub limit_open_files: LimitSetting,

    /// How `memory` limits are enforced. auto: a memory cgroup per command (memory used;
    /// passing it is cmd.limit.memory) where the runner can make one, else RLIMIT_DATA;
    /// rlimit: RLIMIT_DATA always (writable private memory: an allocation past it fails).
    #[arg(long, env = "CMD_LIMITS_MECHANISM", default_value = "auto", value_enum)]
    pub limits_mechanism: LimitsMechanism,
}

/// `CMD_LIMITS_MECHANISM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LimitsMechanism {
    /// A memory cgroup per command where the runner can make one, else `RLIMIT_DATA`.
    Auto,
    /// `RLIMIT_DATA`, even where a memory cgroup could be made.
    Rlimit,
}

/// A `CMD_LIMIT_*` setting; empty (the default) sets no limit, so an image can clear a base
/// image's default with `ENV CMD_LIMIT_CPU=""`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitSetting(pub Option<u64>);

/// The parser of a `CMD_LIMIT_*` setting: empty, or a value `parse` accepts.
fn limit_setting(
    parse: fn(&str) -> Result<u64, String>,
) -> impl Fn(&str) -> Result<LimitSetting, String> + Clone + Send + Sync + 'static {
    move |value| match value.trim() {
        "" => Ok(LimitSetting(None)),
        _ => parse(value).map(|limit| LimitSetting(Some(limit))),
    }
}

/// `CMD_SHELL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellSetting {
    /// Set empty: shell mode is off.
    Disabled,
    /// An executable file, checked at start-up unless it is the default.
    Program(PathBuf),
}

/// The shell when `CMD_SHELL` is not set. It is not checked: an image without a shell (the
/// binary alone, `FROM scratch`) must still start; the start-up line says that it lacks one,
/// and its `shell: true` commands are `cmd.notfound`.
pub const DEFAULT_SHELL: &str = "/bin/sh";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The executables `CMD_ALLOW` permits. Empty means "everything".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    /// Entries as configured: bare names or absolute paths.
    pub entries: Vec<String>,
}

impl AllowList {
    pub fn is_restricted(&self) -> bool {
        !self.entries.is_empty()
    }
}

impl Config {
    /// The shell for `shell: true`, or `None` when shell mode is disabled.
    pub fn shell_path(&self) -> Option<PathBuf> {
        match &self.shell {
            ShellSetting::Disabled => None,
            ShellSetting::Program(shell) => Some(shell.clone()),
        }
    }

    /// The `CMD_LIMIT_*` defaults, under every request's own `limits`.
    pub fn default_limits(&self) -> Limits {
        Limits {
            memory: self.limit_memory.0,
            cpu: self.limit_cpu.0,
            file_size: self.limit_file_size.0,
            open_files: self.limit_open_files.0,
        }
    }

    /// The default command timeout, `None` when commands run without one.
    pub fn default_timeout(&self) -> Option<Duration> {
        (!self.timeout.is_zero()).then_some(self.timeout)
    }
}

/// Durations: plain seconds (`300`, `1.5`), units (`90s`, `5m`, `1h30m`) or ISO 8601
/// (`PT10M`), at most a year; see `crate::duration`.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    crate::duration::parse(value)
}

/// `CMD_SHELL`: empty, or an executable file here, so that a typo stops start-up instead of
/// failing every `shell: true` command later.
fn parse_shell(value: &str) -> Result<ShellSetting, String> {
    let shell = value.trim();
    if shell.is_empty() {
        return Ok(ShellSetting::Disabled);
    }
    if shell == DEFAULT_SHELL {
        return Ok(ShellSetting::Program(PathBuf::from(shell)));
    }
    if shell.contains('/') && !shell.starts_with('/') {
        return Err(format!(
            "'{shell}' must be an absolute path or a name found in PATH (commands run in \
             their own directory)"
        ));
    }
    match crate::exec::path_search::executable_here(shell) {
        Ok(_) => Ok(ShellSetting::Program(PathBuf::from(shell))),
        Err(error) => {
            let why = match error.kind() {
                std::io::ErrorKind::PermissionDenied => "is not executable",
                _ if shell.starts_with('/') => "is not an executable file here",
                _ => "is not found in PATH",
            };
            Err(format!(
                "'{shell}' {why}; set it to a shell this image has (e.g. /bin/sh or \
                 /bin/bash), or to empty to turn shell mode off"
            ))
        }
    }
}

/// A duration that must not be zero (a read timeout of 0 would refuse every request).
fn parse_positive_duration(value: &str) -> Result<Duration, String> {
    match parse_duration(value)? {
        duration if duration.is_zero() => Err(format!("\"{}\" must be more than 0", value.trim())),
        duration => Ok(duration),
    }
}

/// Sizes, in the one grammar of `crate::size`: bytes, `512Ki`, `1Mi` (`1MiB`), `2G`.
pub fn parse_size(value: &str) -> Result<usize, String> {
    crate::size::parse_usize(value)
}

fn parse_backend(value: &str) -> Result<String, String> {
    let uri: http::Uri = value.trim().parse().map_err(|e| {
        format!("'{value}' is not a URL ({e}); expected e.g. http://127.0.0.1:8889")
    })?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(format!(
            "'{value}': the sidecar URL must start with http:// and name a host"
        ));
    }
    Ok(uri.to_string().trim_end_matches('/').to_owned())
}

/// A setting that must be clearly on or off: a typo stops start-up instead of guessing.
fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("'{value}' is not a boolean; use true or false")),
    }
}

/// `NAME=VALUE`, split at the first `=`.
fn parse_env_pair(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("'{value}' is not NAME=VALUE")),
    }
}

fn parse_flag_value(value: &str) -> Result<bool, String> {
    let value = value.trim().to_ascii_lowercase();
    Ok(!matches!(value.as_str(), "" | "0" | "false" | "no" | "off"))
}

fn parse_allow_list(value: &str) -> Result<AllowList, String> {
    let entries: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(str::to_owned)
        .collect();
    for entry in &entries {
        if entry.contains('/') && !entry.starts_with('/') {
            return Err(format!(
                "'{entry}' must be a bare executable name or an absolute path"
            ));
        }
    }
    Ok(AllowList { entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_seconds_and_units() {
        assert_eq!(parse_duration("300"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn read_timeout_must_not_be_zero() {
        assert!(parse_positive_duration("0").is_err());
        assert!(parse_positive_duration("0s").is_err());
        assert_eq!(parse_positive_duration("1s"), Ok(Duration::from_secs(1)));
        assert!(parse_positive_duration("2y").is_err());
    }

    #[test]
    fn sizes_accept_units() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("32 MiB"), Ok(32 << 20));
        assert_eq!(parse_size("4Ki"), Ok(4096));
        assert_eq!(parse_size("4k"), Ok(4000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3 parsecs").is_err());
        assert!(parse_size("1MB")
            .unwrap_err()
            .contains("write 1Mi for 1048576 bytes"));
    }

    #[test]
    fn allow_list_rejects_relative_paths() {
        assert!(parse_allow_list("./run.sh").is_err());
        let list = parse_allow_list(" aws, /usr/bin/kubectl ,,").unwrap();
        assert_eq!(list.entries, vec!["aws", "/usr/bin/kubectl"]);
        assert!(!parse_allow_list("").unwrap().is_restricted());
    }

    #[test]
    fn env_pairs_split_at_the_first_equals_sign() {
        assert_eq!(parse_env_pair("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(
            parse_env_pair("EMPTY="),
            Ok(("EMPTY".into(), String::new()))
        );
        assert!(parse_env_pair("NOEQUALS").is_err());
        assert!(parse_env_pair("=value").is_err());
    }

    #[test]
    fn limit_settings_are_empty_or_valid() {
        let memory = limit_setting(limits::parse_memory);
        assert_eq!(memory(""), Ok(LimitSetting(None)));
        assert_eq!(memory("  "), Ok(LimitSetting(None)));
        assert_eq!(memory("1Gi"), Ok(LimitSetting(Some(1 << 30))));
        assert!(memory("256m").is_err());
        assert_eq!(
            limit_setting(limits::parse_cpu)("2m"),
            Ok(LimitSetting(Some(120)))
        );
    }

    #[test]
    fn dev_mode_values() {
        assert_eq!(parse_flag_value(""), Ok(false));
        assert_eq!(parse_flag_value("false"), Ok(false));
        assert_eq!(parse_flag_value("1"), Ok(true));
        assert_eq!(parse_flag_value("yes"), Ok(true));
    }

    #[test]
    fn booleans_are_strict() {
        assert_eq!(parse_bool("true"), Ok(true));
        assert_eq!(parse_bool(" Off "), Ok(false));
        assert!(parse_bool("flase").is_err());
        assert!(parse_bool("").is_err());
    }

    #[test]
    fn secret_names_default_and_custom() {
        let cli = Cli::try_parse_from(["direktiv-cmd"]).unwrap();
        let names = &cli.config.secret_names;
        assert!(names.is_secret_name("AWS_SECRET_ACCESS_KEY"));
        assert!(names.is_secret_name("github_token"));
        assert!(!names.is_secret_name("AWS_DEFAULT_REGION"));
        assert!(cli.config.mask_response);
        let cli = Cli::try_parse_from([
            "direktiv-cmd",
            "--mask-names",
            "^PIN$",
            "--mask-response",
            "false",
        ])
        .unwrap();
        assert!(cli.config.secret_names.is_secret_name("pin"));
        assert!(!cli.config.secret_names.is_secret_name("API_TOKEN"));
        assert!(!cli.config.mask_response);
        assert!(Cli::try_parse_from(["direktiv-cmd", "--mask-names", "(unclosed"]).is_err());
    }

    #[test]
    fn shell_must_be_an_executable_file_or_empty() {
        assert_eq!(parse_shell(""), Ok(ShellSetting::Disabled));
        assert_eq!(parse_shell("  "), Ok(ShellSetting::Disabled));
        assert_eq!(
            parse_shell("/bin/sh"),
            Ok(ShellSetting::Program("/bin/sh".into()))
        );
        assert_eq!(parse_shell("sh"), Ok(ShellSetting::Program("sh".into())));
        for (value, why) in [
            ("/bin/nosuchshell", "is not an executable file here"),
            ("/tmp", "is not an executable file here"),
            ("nosuchshell", "is not found in PATH"),
            ("./sh", "must be an absolute path"),
        ] {
            let error = parse_shell(value).unwrap_err();
            assert!(error.contains(why), "{value}: {error}");
        }
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "#!/bin/sh\n").unwrap();
        let error = parse_shell(plain.to_str().unwrap()).unwrap_err();
        assert!(error.contains("is not executable"), "{error}");
        let cli = Cli::try_parse_from(["direktiv-cmd"]).unwrap();
        assert_eq!(cli.config.shell_path(), Some(PathBuf::from("/bin/sh")));
    }

    #[test]
    fn backend_is_normalised() {
        assert_eq!(
            parse_backend("http://localhost:8889/"),
            Ok("http://localhost:8889".to_owned())
        );
        assert_eq!(
            parse_backend(" http://127.0.0.1:8889/base/ "),
            Ok("http://127.0.0.1:8889/base".to_owned())
        );
        assert!(parse_backend("127.0.0.1:8889").is_err());
        assert!(parse_backend("ftp://127.0.0.1:8889").is_err());
        assert!(parse_backend("http://sidecar\u{e9}:8889").is_err());
    }
}
