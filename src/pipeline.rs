//! The one path of a request, shared by the HTTP server and `direktiv-cmd run`:
//!
//! body → `request::parse` → `Plan` → what can never run refused (`exec`) → `Workspace` (temp
//! dir, input files, `out/`) → commands one after another (`exec::run`, output to `logs`) →
//! escapees stopped → every log line out → `JobOutcome` → `response::render` → `Reply`.
//!
//! Admission (busy, duplicate ids, draining) and cancellation sources are the server's; this
//! module takes a `Cancel` and honours it between and during commands.

use std::path::Path;
use std::sync::Arc;

use crate::cancel::Cancel;
use crate::config::{Config, RunOptions};
use crate::direktiv::{ENV_ACTION_ID, ENV_TEMP_DIR};
use crate::error::Failure;
use crate::exec::{self, CommandRun, ExecSettings, Execution, Launch, RequestMark};
use crate::logs::LogShipper;
use crate::mask::{Masker, SecretPolicy, Snapshot};
use crate::outcome::{failure_message, result_value, CommandReport, JobFailure, JobOutcome};
use crate::plan::{CommandSpec, Dialect, Plan};
use crate::request;
use crate::response::{self, Reply};
use crate::trace::TraceContext;
use crate::workspace::{TempDirChoice, Workspace};

/// What every request shares: built once from the configuration.
pub(crate) struct Context {
    pub(crate) settings: ExecSettings,
    pub(crate) shipper: LogShipper,
    /// `CMD_RESULT_KEY`.
    pub(crate) result_key: String,
    /// `CMD_MASK_NAMES`: which env values are secret by their name.
    pub(crate) secrets: SecretPolicy,
    /// `CMD_MASK_RESPONSE`: mask the response too (logs and error messages always are).
    pub(crate) mask_response: bool,
}

impl Context {
    /// The server's context: logs go to the sidecar (or stdout in development mode).
    pub(crate) fn new(config: &Config) -> Self {
        // An entry that names nothing allows nothing: most likely a typo or a tool the image
        // lacks, which would otherwise show only as cmd.denied on the first request.
        for entry in exec::unresolved_allow_entries(&config.allow) {
            tracing::warn!(
                "CMD_ALLOW entry '{entry}' names no executable on this runner (not found in \
                 PATH, or not an executable file); it allows nothing"
            );
        }
        Context {
            settings: ExecSettings::from_config(config),
            shipper: LogShipper::new(&config.backend, config.dev_mode),
            result_key: config.result_key.clone(),
            secrets: config.secret_names.clone(),
            mask_response: config.mask_response,
        }
    }
}

/// One request as the pipeline takes it.
pub(crate) struct Request<'a> {
    pub(crate) action_id: &'a str,
    pub(crate) tempdir: TempDirChoice,
    pub(crate) body: &'a [u8],
    pub(crate) cancel: Cancel,
    /// The W3C trace context of the request's headers, for every command's environment.
    pub(crate) trace: TraceContext,
}

/// Answers one request: parse, run, render.
pub(crate) async fn answer(ctx: &Context, request: Request<'_>) -> Reply {
    let outcome = outcome(ctx, request, &[]).await;
    response::render(&outcome, &ctx.result_key)
}

/// Parses and runs one request; `env` joins the request's own (see `request::parse_with_env`).
async fn outcome(ctx: &Context, request: Request<'_>, env: &[(String, String)]) -> JobOutcome {
    match request::parse_with_env(request.body, env) {
        Ok(plan) => run(ctx, request, plan).await,
        // Refused before it was parsed: there are no secrets to mask yet.
        Err(failure) => JobOutcome::rejected(
            guess_dialect(request.body),
            failure,
            None,
            &Masker::default(),
        ),
    }
}

/// A request run by `direktiv-cmd run`.
pub struct LocalRun {
    /// The response, for stdout.
    pub reply: Reply,
    /// 0 on success; on failure the failing command's exit status when it exited with one
    /// (cmd.exit.3 → 3), else 1.
    pub exit_status: u8,
    /// `<code>: <message>` of a failure the log lines on stderr have not shown (the request
    /// was refused before a command ran); a command's failure is already there, once.
    pub unlogged_failure: Option<String>,
}

/// At exit, once no request runs any more (the runtime has stopped): removes what the runner
/// kept between requests outside its own memory (emptied request cgroups kept for reuse).
pub fn close() {
    exec::remove_spare_cgroups();
}

/// Runs one request without HTTP (`direktiv-cmd run`): development mode, logs to stderr.
pub async fn run_local(mut config: Config, options: &RunOptions, body: &[u8]) -> LocalRun {
    config.dev_mode = true;
    let ctx = Context {
        shipper: LogShipper::new(&config.backend, true).with_console(Arc::new(crate::logs::Stderr)),
        ..Context::new(&config)
    };
    let tempdir = match &options.temp_dir {
        // Like Direktiv-TempDir the directory must be absolute; on a command line a relative
        // one means the current directory's.
        Some(dir) => TempDirChoice::Given(std::path::absolute(dir).unwrap_or_else(|_| dir.clone())),
        None => TempDirChoice::Private,
    };
    let request = Request {
        action_id: &options.action_id,
        tempdir,
        body,
        cancel: Cancel::new(),
        trace: TraceContext::default(),
    };
    let outcome = outcome(&ctx, request, &options.env).await;
    let reply = response::render(&outcome, &ctx.result_key);
    let failure = outcome.failure.as_ref();
    let exit_status = match failure.map(|failed| &failed.failure) {
        None => 0,
        Some(Failure::Exit { code }) => u8::try_from(*code).ok().filter(|c| *c != 0).unwrap_or(1),
        Some(_) => 1,
    };
    let unlogged_failure = match (failure, &reply.error) {
        (Some(failed), Some((code, message))) if failed.command.is_none() => {
            Some(format!("{code}: {message}"))
        }
        _ => None,
    };
    LocalRun {
        reply,
        exit_status,
        unlogged_failure,
    }
}

/// For a body that failed to parse: answer in the direktiv-cmd dialect when it looks like one.
fn guess_dialect(body: &[u8]) -> Dialect {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(map)) if map.get("data").is_some_and(|d| d.is_object()) => {
            Dialect::DirektivCmd
        }
        _ => Dialect::Native,
    }
}

/// Runs a parsed request to its end.
async fn run(ctx: &Context, request: Request<'_>, mut plan: Plan) -> JobOutcome {
    let Request {
        action_id,
        tempdir,
        cancel,
        trace,
        ..
    } = request;
    let masker = Arc::new(Masker::new(ctx.secrets.secrets_of(&plan)));
    let dialect = plan.dialect;
    if let Some(warning) = &plan.warning {
        tracing::warn!("{}", masker.mask(warning));
    }

    // Refuse what cannot run before anything is written or started.
    let launches: Vec<Launch> = match ctx.settings.resolve(&plan.commands, &plan.env).await {
        Ok(launches) => launches,
        Err((index, failure)) => {
            let display = plan.commands.get(index).map(|spec| spec.display.as_str());
            return JobOutcome::rejected(dialect, failure, display, &masker);
        }
    };
    let files = std::mem::take(&mut plan.files);
    let workspace = match Workspace::prepare(tempdir, files).await {
        Ok(workspace) => workspace,
        Err(failure) => return JobOutcome::rejected(dialect, failure, None, &masker),
    };

    let (logs, delivery) = ctx
        .shipper
        .open_with_delivery(action_id, Arc::clone(&masker));
    // The commands and the delivery of their lines side by side in this task: a line needs no
    // hand-off to another task to leave. The delivery ends once the commands are done with the
    // log stream (dropped at the end of this block) and every line is out.
    let commands = async {
        let logs = logs;
        let env = base_env(action_id, workspace.path(), &trace, &plan.env);
        let mark = RequestMark::new();
        let execution = Execution {
            env: &env,
            mark: &mark,
            logs: &logs,
            secrets: &masker,
            cancel: &cancel,
            settings: &ctx.settings,
            combine: dialect == Dialect::DirektivCmd,
        };
        let mut outcome = JobOutcome {
            dialect,
            reports: Vec::with_capacity(plan.commands.len()),
            failure: None,
        };
        match (dialect, &plan.warning) {
            (Dialect::DirektivCmd, _) => {
                logs.line(&format!("running {} commands", plan.commands.len()));
            }
            // Where the workflow's author looks: the instance log. The direktiv-cmd shape's
            // log stays the one Direktiv's runner writes.
            (Dialect::Native, Some(warning)) => logs.line(&format!("warning: {warning}")),
            (Dialect::Native, None) => {}
        }
        for (index, (spec, launch)) in plan.commands.iter().zip(&launches).enumerate() {
            if let Some(reason) = cancel.reason() {
                let failure = Failure::Cancelled { reason };
                let message = failure_message(None, &failure, b"", &masker.snapshot());
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

            let command = exec::Command {
                spec,
                launch,
                cwd: workspace.workdir(spec.workdir.as_ref()).await,
            };
            let mut run = exec::run(command, &execution).await;
            // With what the command declared while it ran.
            let secrets = masker.snapshot();
            let response_secrets = ctx.mask_response.then_some(&*secrets);
            if let Some(secrets) = response_secrets {
                run.stdout.redact(secrets);
                run.stderr.redact(secrets);
                run.combined.redact(secrets);
            }
            let result = command_result(spec, &workspace, &mut run, ctx, response_secrets).await;
            let message = run.failure.as_ref().map(|failure| {
                let tail = run.stderr.masked_tail(&secrets);
                failure_message(Some(&spec.display), failure, &tail, &secrets)
            });
            if let Some(message) = &message {
                logs.line(message);
                tracing::info!(command = %secrets.mask(&spec.display), error = %message, "command failed");
            }
            let fatal = run.failure.as_ref().is_some_and(|f| is_fatal(f, spec));
            let failure = fatal.then(|| run.failure.clone()).flatten();
            let display = match response_secrets {
                Some(secrets) => secrets.mask(&spec.display).into_owned(),
                None => spec.display.clone(),
            };
            outcome.reports.push(CommandReport {
                display,
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
        // Each command stopped what it left behind; this catches anything started in between.
        mark.stop_escapees(None, ctx.settings.kill_grace).await;
        mark.close();
        outcome
    };
    let (outcome, ()) = tokio::join!(commands, delivery.run());
    workspace.close().await;
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

/// `result`: the `output` file when the command names one, else stdout (already masked when
/// `secrets` are given).
async fn command_result(
    spec: &CommandSpec,
    workspace: &Workspace,
    run: &mut CommandRun,
    ctx: &Context,
    secrets: Option<&Snapshot>,
) -> serde_json::Value {
    let Some(output) = &spec.output else {
        return result_value(run.stdout.bytes());
    };
    let max = ctx.settings.max_output;
    match workspace.read_output(output, max).await {
        Ok(bytes) => match secrets {
            // A file of `max` bytes may have been cut there.
            Some(secrets) if bytes.len() >= max => {
                result_value(&secrets.mask_prefix(&bytes, max).0)
            }
            Some(secrets) => result_value(&secrets.mask_bytes(&bytes)),
            None => result_value(&bytes),
        },
        Err(failure) => {
            if run.failure.is_none() {
                run.failure = Some(failure);
            }
            serde_json::Value::Null
        }
    }
}

/// HOME, DIREKTIV_ACTION_ID, DIREKTIV_TEMPDIR, the trace context (TRACEPARENT, TRACESTATE,
/// BAGGAGE), then the request's env (later wins).
fn base_env(
    action_id: &str,
    dir: &Path,
    trace: &TraceContext,
    request_env: &[(String, String)],
) -> Vec<(String, String)> {
    let dir = dir.display().to_string();
    let mut env = vec![
        ("HOME".to_owned(), dir.clone()),
        (ENV_ACTION_ID.to_owned(), action_id.to_owned()),
        (ENV_TEMP_DIR.to_owned(), dir),
    ];
    env.extend(
        trace
            .env()
            .map(|(name, value)| (name.to_owned(), value.to_owned())),
    );
    env.extend(request_env.iter().cloned());
    env
}
