//! The one line the runner logs once it listens, saying how it will behave: where it listens,
//! where command output goes, the shell, how limits are enforced, how a request's processes
//! are tracked, and whether it is PID 1. A reader of `docker logs` or `kubectl logs` learns
//! from it what a request will meet, before sending one.
//!
//! Each part is a phrase from the subsystem that knows it, labelled. A new mechanism is one
//! more `part` in `Behaviour::of`, with its phrase from its own module.

use std::fmt;
use std::net::SocketAddr;

use crate::config::{Config, ShellSetting, DEFAULT_SHELL};
use crate::direktiv::DEVELOPMENT_ACTION_ID;
use crate::limits::Limits;
use crate::size::format as size;

/// How the runner will behave: labelled phrases, in the order they are said.
pub struct Behaviour {
    parts: Vec<(&'static str, String)>,
}

impl Behaviour {
    /// Asks every subsystem for its phrase (each is quick: a look at the configuration or one
    /// probe of the system, made at start-up instead of at the first request).
    pub fn of(config: &Config) -> Self {
        let mut behaviour = Behaviour { parts: Vec::new() };
        behaviour.part("logs", logs(config));
        behaviour.part("shell", shell(config));
        behaviour.part(
            "limits",
            limits(
                &crate::exec::memory_enforcement(config),
                &config.default_limits(),
            ),
        );
        behaviour.part("processes", crate::exec::tracking());
        behaviour.part("isolation", crate::isolation::phrase(config.isolation));
        behaviour.part("pid 1", crate::init::role().to_owned());
        behaviour
    }

    fn part(&mut self, label: &'static str, phrase: String) {
        self.parts.push((label, phrase));
    }

    /// The start-up line: `listening on <addr>; logs: ...; shell: ...; ...`.
    pub fn line(&self, addr: SocketAddr) -> String {
        format!("listening on {addr}; {self}")
    }
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, (label, phrase)) in self.parts.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{label}: {phrase}")?;
        }
        Ok(())
    }
}

/// Where command output goes.
fn logs(config: &Config) -> String {
    if config.dev_mode {
        "stdout (development mode, DIREKTIV_DEV_MODE)".to_owned()
    } else {
        format!(
            "sidecar {}/log (stdout for action id \"{DEVELOPMENT_ACTION_ID}\")",
            config.backend
        )
    }
}

/// What `shell: true` runs.
fn shell(config: &Config) -> String {
    match &config.shell {
        ShellSetting::Disabled => "off (CMD_SHELL is empty)".to_owned(),
        // Only the default can be missing: any other value was checked.
        ShellSetting::Program(shell)
            if crate::exec::path_search::executable_here(DEFAULT_SHELL).is_err()
                && shell.as_os_str() == DEFAULT_SHELL =>
        {
            format!("{DEFAULT_SHELL}, which this image lacks (shell: true commands fail; set CMD_SHELL)")
        }
        ShellSetting::Program(shell) => shell.display().to_string(),
    }
}

/// How limits are enforced (`memory` as the mechanism says), and the configured defaults.
fn limits(memory: &str, defaults: &Limits) -> String {
    let mut set = Vec::new();
    if let Some(bytes) = defaults.memory {
        set.push(format!("memory {}", size(bytes)));
    }
    if let Some(seconds) = defaults.cpu {
        set.push(format!("cpu {seconds}s"));
    }
    if let Some(bytes) = defaults.file_size {
        set.push(format!("file_size {}", size(bytes)));
    }
    if let Some(count) = defaults.open_files {
        set.push(format!("open_files {count}"));
    }
    let defaults = match set.is_empty() {
        true => "none".to_owned(),
        false => set.join(", "),
    };
    format!(
        "{} (defaults: {defaults})",
        crate::limits::enforcement(memory)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(args: &[&str]) -> Config {
        let mut argv = vec!["direktiv-cmd"];
        argv.extend_from_slice(args);
        crate::config::Cli::try_parse_from(argv).unwrap().config
    }

    #[test]
    fn each_part_is_labelled_in_one_line() {
        let line = Behaviour::of(&config(&[])).line(SocketAddr::from(([0, 0, 0, 0], 8080)));
        assert!(
            line.starts_with(
                "listening on 0.0.0.0:8080; logs: sidecar http://127.0.0.1:8889/log (stdout \
                 for action id \"development\"); shell: /bin/sh; limits: "
            ),
            "{line}"
        );
        assert!(
            line.contains("; processes: ")
                && line.contains("; isolation: ")
                && line.contains("; pid 1: "),
            "{line}"
        );
        assert!(!line.contains('\n'), "{line}");
    }

    #[test]
    fn development_mode_shell_off_and_default_limits() {
        let behaviour = Behaviour::of(&config(&[
            "--dev-mode",
            "--shell",
            "",
            "--limit-memory",
            "256Mi",
            "--limit-cpu",
            "30s",
        ]))
        .to_string();
        assert!(
            behaviour.starts_with("logs: stdout (development mode"),
            "{behaviour}"
        );
        assert!(
            behaviour.contains("shell: off (CMD_SHELL is empty)"),
            "{behaviour}"
        );
        assert!(
            behaviour.contains("(defaults: memory 256Mi, cpu 30s); processes: "),
            "{behaviour}"
        );
    }
}
