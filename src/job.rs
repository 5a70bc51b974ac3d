//! One request from a validated `Plan` to its outcome: prepare the temp dir, place the input
//! files, run the commands one after another, and make sure every log line is out before the
//! outcome is returned. Used by the HTTP server and by `direktiv-cmd run`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cancel::Cancel;
use crate::error::Failure;
use crate::exec::{self, CommandRun, ExecSettings, Execution};
use crate::files;
use crate::logs::LogShipper;
use crate::mask::{Masker, SecretPolicy};
use crate::plan::{CommandSpec, Dialect, Plan};
use crate::response::{failure_message, result_value};

/// The folders Direktiv collects output variables from after an action.
const OUT_DIRS: [&str; 3] = ["out/instance", "out/workflow", "out/namespace"];

/// What a job needs from the runner: shared by every request.
pub struct JobContext {
    pub settings: ExecSettings,
    pub shipper: LogShipper,
    /// Which env values are secret by their name.
    pub secrets: SecretPolicy,
}

/// Where a request's files go and its commands run.
pub enum TempDirChoice {
    /// `Direktiv-TempDir`: the sidecar owns it (and removes it); we only use it.
    Given(PathBuf),
    /// No header: a private directory made for this request and removed afterwards.
    Private,
}

/// One command's outcome as the response reports it.
#[derive(Debug)]
pub struct CommandReport {
    /// The command line, masked.
    pub display: String,
    pub run: CommandRun,
    /// `result`: stdout (or the `output` file) as JSON when it is JSON, else trimmed text.
    pub result: serde_json::Value,
    /// The one-line failure message, when the command failed.
    pub message: Option<String>,
}

/// Why a request failed as a whole.
#[derive(Debug)]
pub struct JobFailure {
    pub failure: Failure,
    /// The command that failed (0-based), when a command did.
    pub command: Option<usize>,
    /// One line, masked, at most 4 KiB.
    pub message: String,
}

/// Everything a response is built from.
#[derive(Debug)]
pub struct JobOutcome {
    pub dialect: Dialect,
    pub reports: Vec<CommandReport>,
    pub failure: Option<JobFailure>,
}

impl JobOutcome {
    /// A request refused before anything ran; `command` names the command that was refused.
    pub(crate) fn rejected(
        dialect: Dialect,
        failure: Failure,
        command: Option<&str>,
        masker: &Masker,
    ) -> Self {
        let command = command.map(|c| masker.mask(c).into_owned());
        let message = failure_message(command.as_deref(), &failure, b"", masker);
        JobOutcome {
            dialect,
            reports: Vec::new(),
            failure: Some(JobFailure {
                failure,
                command: None,
                message,
            }),
        }
    }
}

/// Runs a request to its end.
pub async fn run(
    ctx: &JobContext,
    action_id: &str,
    tempdir: TempDirChoice,
    plan: Plan,
    cancel: Cancel,
) -> JobOutcome {
    let masker = Arc::new(Masker::new(ctx.secrets.secrets_of(&plan)));
    let dialect = plan.dialect;

    // Refuse what cannot run before anything is written or started.
    for spec in &plan.commands {
        if let Err(failure) = ctx.settings.check(spec) {
            return JobOutcome::rejected(dialect, failure, Some(&spec.display), &masker);
        }
    }
    let dir = match prepare_dir(tempdir, &plan) {
        Ok(dir) => dir,
        Err(failure) => return JobOutcome::rejected(dialect, failure, None, &masker),
    };

    let logs = ctx.shipper.open(action_id, Arc::clone(&masker));
    let env = base_env(action_id, dir.path(), &plan.env);
    let execution = Execution {
        tempdir: dir.path(),
        env: &env,
        logs: &logs,
        cancel: &cancel,
        settings: &ctx.settings,
        combine: dialect == Dialect::DirektivCmd,
    };
    let mut outcome = JobOutcome {
        dialect,
        reports: Vec::with_capacity(plan.commands.len()),
        failure: None,
    };
    if dialect == Dialect::DirektivCmd {
        logs.line(&format!("running {} commands", plan.commands.len()));
    }
    for (index, spec) in plan.commands.iter().enumerate() {
        if let Some(reason) = cancel.reason() {
            let failure = Failure::Cancelled { reason };
            let message = failure_message(None, &failure, b"", &masker);
            outcome.failure = Some(JobFailure {
                failure,
                command: None,
                message,
            });
            break;
        }
        let shown = masker.mask(&spec.display).into_owned();
        if spec.print {
            logs.line(&format!("running command '{shown}'"));
        } else if dialect == Dialect::DirektivCmd {
            logs.line(&format!("running command {index}"));
        }
        tracing::debug!(command = %shown, "running command");

        let mut run = exec::run(spec, &execution).await;
        let result = command_result(spec, dir.path(), &mut run, ctx.settings.max_output);
        let message = run.failure.as_ref().map(|failure| {
            let tail = run.stderr.masked_tail(&masker.snapshot());
            failure_message(Some(&shown), failure, &tail, &masker)
        });
        if let Some(message) = &message {
            logs.line(message);
            tracing::info!(command = %shown, error = %message, "command failed");
        }
        let fatal = run.failure.as_ref().is_some_and(|f| is_fatal(f, spec));
        let failure = fatal.then(|| run.failure.clone()).flatten();
        outcome.reports.push(CommandReport {
            display: shown,
            run,
            result,
            message: message.clone(),
        });
        if let Some(failure) = failure {
            if dialect == Dialect::DirektivCmd {
                logs.line(&format!(
                    "stopping execution due to error in command {index}"
                ));
            }
            outcome.failure = Some(JobFailure {
                failure,
                command: Some(index),
                message: message.unwrap_or_default(),
            });
            break;
        }
    }
    logs.finish().await;
    dir.close();
    outcome
}

/// A failure ends the request unless the command may continue; cancellation and invalid
/// input always end it.
fn is_fatal(failure: &Failure, spec: &CommandSpec) -> bool {
    match failure {
        Failure::Cancelled { .. } | Failure::Input(_) => true,
        _ => !spec.continue_on_error,
    }
}

/// `result`: the `output` file when the command names one, else stdout.
fn command_result(
    spec: &CommandSpec,
    tempdir: &Path,
    run: &mut CommandRun,
    max_output: usize,
) -> serde_json::Value {
    let Some(output) = &spec.output else {
        return result_value(run.stdout.bytes());
    };
    match read_output_file(tempdir, output, max_output) {
        Ok(bytes) => result_value(&bytes),
        Err(failure) => {
            if run.failure.is_none() {
                run.failure = Some(failure);
            }
            serde_json::Value::Null
        }
    }
}

/// Reads the `output` file, refusing one that resolves outside the temp dir.
fn read_output_file(tempdir: &Path, output: &Path, max: usize) -> Result<Vec<u8>, Failure> {
    use std::io::Read;
    let shown = output.display();
    let path = files::resolve_inside(tempdir, output).map_err(|e| {
        Failure::internal(format!("failed: output file '{shown}' cannot be read: {e}"))
    })?;
    let Some(path) = path else {
        return Err(Failure::input(format!(
            "output file '{shown}' leads outside the request's temp dir"
        )));
    };
    let file = std::fs::File::open(&path).map_err(|e| {
        Failure::internal(format!("failed: output file '{shown}' cannot be read: {e}"))
    })?;
    let mut bytes = Vec::new();
    file.take(max as u64).read_to_end(&mut bytes).map_err(|e| {
        Failure::internal(format!("failed: output file '{shown}' cannot be read: {e}"))
    })?;
    Ok(bytes)
}

/// HOME, DIREKTIV_ACTION_ID, DIREKTIV_TEMPDIR, then the request's env (later wins).
fn base_env(
    action_id: &str,
    dir: &Path,
    request_env: &[(String, String)],
) -> Vec<(String, String)> {
    let dir = dir.display().to_string();
    let mut env = vec![
        ("HOME".to_owned(), dir.clone()),
        ("DIREKTIV_ACTION_ID".to_owned(), action_id.to_owned()),
        ("DIREKTIV_TEMPDIR".to_owned(), dir),
    ];
    env.extend(request_env.iter().cloned());
    env
}

/// The request's working directory, with input files and `out/` folders in place.
enum RequestDir {
    Given(PathBuf),
    Private(tempfile::TempDir),
}

impl RequestDir {
    fn path(&self) -> &Path {
        match self {
            RequestDir::Given(path) => path,
            RequestDir::Private(dir) => dir.path(),
        }
    }

    /// Removes a private directory (a given one belongs to the sidecar).
    ///
    /// Most commands leave nothing behind, so the skeleton this runner made is removed with
    /// five `rmdir`s; only when one fails (something was left) is the tree walked.
    fn close(self) {
        let RequestDir::Private(dir) = self else {
            return;
        };
        let root = dir.keep();
        let skeleton = OUT_DIRS
            .iter()
            .map(|out| root.join(out))
            .chain([root.join("out"), root.clone()]);
        let mut emptied = true;
        for path in skeleton {
            if std::fs::remove_dir(&path).is_err() {
                emptied = false;
                break;
            }
        }
        if !emptied {
            if let Err(error) = std::fs::remove_dir_all(&root) {
                tracing::warn!(%error, dir = %root.display(), "could not remove the request's private temp dir");
            }
        }
    }
}

fn prepare_dir(choice: TempDirChoice, plan: &Plan) -> Result<RequestDir, Failure> {
    let dir = match choice {
        TempDirChoice::Given(path) => {
            if !path.is_absolute() {
                return Err(Failure::input(format!(
                    "Direktiv-TempDir must be an absolute path, got '{}'",
                    path.display()
                )));
            }
            std::fs::create_dir_all(&path).map_err(|e| {
                Failure::internal(format!(
                    "temp dir '{}' cannot be created: {e}",
                    path.display()
                ))
            })?;
            RequestDir::Given(path)
        }
        TempDirChoice::Private => RequestDir::Private(
            tempfile::Builder::new()
                .prefix("direktiv-cmd-")
                .tempdir()
                .map_err(|e| Failure::internal(format!("cannot create a temp dir: {e}")))?,
        ),
    };
    files::write_files(dir.path(), &plan.files)?;
    make_out_dirs(&dir)?;
    Ok(dir)
}

/// `out/instance`, `out/workflow`, `out/namespace`, where missing. A private dir is fresh, so
/// plain mkdirs do (input files may already have made some: that is fine); a given dir usually
/// has them from the sidecar.
fn make_out_dirs(dir: &RequestDir) -> Result<(), Failure> {
    let root = dir.path();
    let result = match dir {
        RequestDir::Private(_) => std::iter::once("out")
            .chain(OUT_DIRS)
            .try_for_each(|d| create_dir_if_missing(&root.join(d))),
        RequestDir::Given(_) => OUT_DIRS
            .iter()
            .try_for_each(|d| std::fs::create_dir_all(root.join(d))),
    };
    result.map_err(|e| {
        Failure::internal(format!(
            "cannot create the out/ folders in the temp dir: {e}"
        ))
    })
}

fn create_dir_if_missing(path: &Path) -> std::io::Result<()> {
    match std::fs::create_dir(path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        other => other,
    }
}
