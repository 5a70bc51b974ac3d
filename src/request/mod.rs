//! Wire formats → one validated `Plan`. This is the only place that parses request JSON.
//!
//! INTERFACE: `parse(body) -> Result<Plan, Failure>`; every problem is `Failure::Input` with a
//! message that says what is wrong and where (e.g. `commands[1].timeout: ...`).

use crate::error::Failure;
use crate::plan::{CommandSpec, Dialect, Plan, Program};

/// Parses a request body in either dialect.
pub fn parse(body: &[u8]) -> Result<Plan, Failure> {
    #[derive(serde::Deserialize)]
    struct Minimal {
        commands: Vec<MinimalCommand>,
    }
    #[derive(serde::Deserialize)]
    struct MinimalCommand {
        command: String,
    }
    let minimal: Minimal = serde_json::from_slice(body)
        .map_err(|e| Failure::input(format!("the request body is not valid: {e}")))?;
    let commands = minimal
        .commands
        .into_iter()
        .map(|c| {
            let argv = shell_words::split(&c.command)
                .map_err(|e| Failure::input(format!("command: {e}")))?;
            Ok(CommandSpec {
                display: c.command,
                program: Program::Argv(argv),
                env: vec![],
                stdin: None,
                workdir: None,
                timeout: None,
                silent: false,
                print: true,
                continue_on_error: false,
                output: None,
            })
        })
        .collect::<Result<_, Failure>>()?;
    Ok(Plan {
        dialect: Dialect::Native,
        files: vec![],
        env: vec![],
        commands,
        secrets: vec![],
    })
}
