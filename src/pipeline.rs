//! The one path of a request, shared by the HTTP server and `direktiv-cmd run`:
//!
//! body → `request::parse` → `Plan` → its secrets registered (`mask::Masker`) → what can never
//! run refused (`exec`) → `Workspace` (temp dir, input files, `out/`) → commands one after
//! another (`exec::run`, output to `logs`) → escapees stopped → every log line out →
//! `JobOutcome` → `response::render` → `Reply`.
//!
//! Nothing here masks: the log stream and the renderer mask everything they are given, with
//! the request's `Masker`, which the outcome carries to the renderer.
//!
//! Admission (busy, duplicate ids, draining) and cancellation sources are the server's; this
//! module takes a `Cancel` and honours it between and during commands.

use std::path::Path;
use std::sync::Arc;

use crate::cancel::Cancel;
use crate::config::{Config, RunOptions};
use crate::direktiv::{ENV_ACTION_ID, ENV_HTTP_BACKEND, ENV_TEMP_DIR};
use crate::error::{CancelReason, Failure};
use crate::exec::{self, ExecSettings, Execution, Ground, Launch, Preparation, Setup};
use crate::isolation::{hand_over, Isolation, SlotUser};
use crate::logs::{LogShipper, LogStream};
use crate::mask::{Masker, Registry, SecretPolicy};
use crate::outcome::{quoted_command, CommandReport, JobOutcome, OutputFile, MAX_MESSAGE};
use crate::plan::{CommandSpec, Dialect, InputFile, Plan};
use crate::process::{RequestTracker, StopPolicy};
use crate::request;
use crate::response::{self, Reply};
use crate::trace::TraceContext;
use crate::var::ENV_DEV_VARS;
use crate::workspace::{TempDir, TempDirChoice, Workspace};

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
    /// Every request's secrets in flight, and the container's.
    pub(crate) registry: Arc<Registry>,
    /// `DIREKTIV_HTTP_BACKEND`, told to every command (`direktiv-cmd var` finds the sidecar
    /// there).
    pub(crate) backend: String,
    /// `CMD_DEV_VARS`, told to every command when set.
    pub(crate) dev_vars: Option<String>,
    /// `CMD_ISOLATION`: how requests are kept apart.
    pub(crate) isolation: Isolation,
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
            registry: Arc::clone(Registry::global()),
            backend: config.backend.clone(),
            dev_vars: config
                .dev_vars
                .as_ref()
                .map(|dir| dir.display().to_string()),
            isolation: Isolation::new(config.isolation, config.max_inflight as usize),
        }
        // The folder of DIREKTIV_RESULT files, made now rather than by the first request.
        .with_result_home()
    }

    fn with_result_home(self) -> Self {
        let _ = crate::workspace::ResultHome::current();
        self
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
    response::render(&outcome, &ctx.result_key, ctx.mask_response)
}

/// Parses and runs one request; `env` joins the request's own (see `request::parse_with_env`).
async fn outcome(ctx: &Context, request: Request<'_>, env: &[(String, String)]) -> JobOutcome {
    match request::parse_with_env(request.body, env) {
        Ok(plan) => run(ctx, request, plan).await,
        Err(failure) => refused(ctx, request.body, env, failure).await,
    }
}

/// A request whose body was refused, masked with the secrets that can be read from it.
async fn refused(
    ctx: &Context,
    body: &[u8],
    env: &[(String, String)],
    failure: Failure,
) -> JobOutcome {
    let found = request::secrets_of_refused(body, env);
    let secrets = ctx.secrets.secrets(&found.marked, found.env.iter());
    let masker = Masker::detached(&ctx.registry, &secrets).await;
    JobOutcome::rejected(guess_dialect(body), failure, None, Arc::new(masker))
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

/// At start: the container's own env values that are secret by the name rule
/// (`CMD_MASK_NAMES`) are masked in every request from now on; the runner's own settings
/// (`CMD_RESULT_KEY=aws-cli` has the word KEY) are not secrets. Refused (with the names) when
/// they are too large to mask.
pub fn install_container_secrets(config: &Config) -> Result<(), String> {
    let settings = crate::config::Cli::setting_variables();
    let vars = std::env::vars().filter(|(name, _)| !settings.contains(name));
    crate::mask::install_container_secrets(&config.secret_names, vars)
}

/// At exit, once no request runs any more (the runtime has stopped): removes what the runner
/// kept between requests outside its own memory (emptied request cgroups kept for reuse).
pub fn close() {
    crate::process::remove_spare_cgroups();
    crate::workspace::ResultHome::remove();
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
    let reply = response::render(&outcome, &ctx.result_key, ctx.mask_response);
    let failure = outcome.failure.as_ref();
    let exit_status = match failure.map(|failed| &failed.failure) {
        None => 0,
        Some(Failure::Exit { code } | Failure::Reported { status: code, .. }) => {
            u8::try_from(*code).ok().filter(|c| *c != 0).unwrap_or(1)
        }
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

/// Runs a parsed request to its end: its secrets registered, what can never run refused,
/// its workspace prepared, its commands run with their output logged, its files removed.
async fn run(ctx: &Context, request: Request<'_>, mut plan: Plan) -> JobOutcome {
    let dialect = plan.dialect;
    let secrets = match Masker::register(&ctx.registry, &ctx.secrets.secrets_of(&plan)).await {
        Ok(secrets) => Arc::new(secrets),
        Err(too_large) => {
            let failure = Failure::input(too_large.to_string());
            let everyone = Arc::new(Masker::everyone(&ctx.registry));
            return JobOutcome::rejected(dialect, failure, None, everyone);
        }
    };
    // It may quote the request (an unknown field's name): shown masked, then cut.
    let warning = plan
        .warning
        .as_deref()
        .map(|warning| crate::outcome::shown_line(warning, &secrets.snapshot(), MAX_MESSAGE));
    if let Some(warning) = &warning {
        tracing::warn!("{warning}");
    }
    // Refuse what cannot run before anything is written or started.
    let launches = match ctx.settings.resolve(&plan.commands, &plan.env).await {
        Ok(launches) => launches,
        Err((index, failure)) => {
            let display = plan.commands.get(index).map(|spec| spec.display.as_str());
            return JobOutcome::rejected(dialect, failure, display, secrets);
        }
    };
    // Where requests may not run side by side unisolated, each waits for its turn here and
    // holds it until its files are removed.
    let _turn = ctx.isolation.turn(&request.cancel).await;
    if let Err(failure) = Workspace::check(&request.tempdir) {
        return JobOutcome::rejected(dialect, failure, None, secrets);
    }
    let user = ctx.isolation.user();
    let env = CommandEnv::new(ctx, request.action_id, &request.trace, &plan.env);
    let files = std::mem::take(&mut plan.files);
    let uid = user.as_ref().map(SlotUser::uid);
    let setup = Setup::new(preparation(ctx, request.tempdir, files, env, uid));
    // The first command's start makes the request's ground; without commands, this does.
    if plan.commands.is_empty() {
        if let Err(failure) = setup.make().await {
            return JobOutcome::rejected(dialect, failure, None, secrets);
        }
    }
    let (logs, delivery) = ctx
        .shipper
        .open_with_delivery(request.action_id, Arc::clone(&secrets));
    let delivered = delivery.start();
    let job = Job {
        ctx,
        plan: &plan,
        launches: &launches,
        setup: &setup,
        logs,
        secrets,
        cancel: &request.cancel,
        user: uid,
        warning,
    };
    let outcome = job.run_commands().await;
    // The log stream is closed (dropped with the job): the delivery ends once all is out.
    delivered.finished().await;
    if let Some(workspace) = setup.into_workspace() {
        workspace.close().await;
    }
    outcome
}

/// How the request's ground is made, in its first command's start trip: its Landlock ruleset
/// (built from what exists before the temp dir is made), its temp dir and files, the temp dir
/// handed to the slot's user (`CMD_ISOLATION=uid`) and granted in the ruleset, then the
/// environment, which names the temp dir. A failure after the temp dir was made removes it.
fn preparation(
    ctx: &Context,
    tempdir: TempDirChoice,
    files: Vec<InputFile>,
    env: CommandEnv,
    uid: Option<u32>,
) -> Preparation {
    let private_in = ctx.isolation.private_root();
    let given = match &tempdir {
        TempDirChoice::Given(path) => Some(path.clone()),
        TempDirChoice::Private => None,
    };
    let domain_work = ctx.isolation.domain_work(given.as_deref());
    // The pool's threads do not carry the request's span; what is said here should.
    let span = tracing::Span::current();
    Box::new(move || {
        span.in_scope(|| {
            let domain = domain_work();
            let workspace = Workspace::prepare(tempdir, &files, private_in.as_deref())?;
            let temp_dir = workspace.temp_dir().clone();
            let handed = match uid {
                Some(uid) => hand_over(temp_dir.path(), uid),
                None => Ok(()),
            };
            let domain = handed
                .and(domain)
                .and_then(|domain| Isolation::with_own_folder(domain, temp_dir.dir()));
            let domain = match domain {
                Ok(domain) => domain,
                Err(failure) => {
                    workspace.close_now();
                    return Err(failure);
                }
            };
            let env = env.for_temp_dir(temp_dir.path(), domain.is_some()).into();
            let ground = Ground {
                temp_dir,
                env,
                domain,
            };
            Ok((workspace, ground))
        })
    })
}

/// A request whose commands are about to run, and all they run with.
struct Job<'a> {
    ctx: &'a Context,
    plan: &'a Plan,
    launches: &'a [Launch],
    /// Its ground (temp dir, environment, Landlock ruleset), made by the first start.
    setup: &'a Setup,
    logs: LogStream,
    secrets: Arc<Masker>,
    cancel: &'a Cancel,
    /// What the request is warned of (unknown top-level fields), as shown.
    warning: Option<String>,
    /// The uid its commands run as (`CMD_ISOLATION=uid`).
    user: Option<u32>,
}

impl Job<'_> {
    /// Runs the commands one after another until one ends the request. A request whose ground
    /// could not be made (its first start says why) is refused as a whole.
    async fn run_commands(self) -> JobOutcome {
        let dialect = self.plan.dialect;
        let tracker = RequestTracker::new();
        let execution = Execution {
            setup: self.setup,
            tracker: &tracker,
            logs: &self.logs,
            secrets: &self.secrets,
            cancel: self.cancel,
            settings: &self.ctx.settings,
            combine: dialect == Dialect::DirektivCmd,
            user: self.user,
        };
        let mut outcome = JobOutcome::running(dialect, Arc::clone(&self.secrets));
        // Logged with the first command's own line, once the request's ground is made.
        let mut preamble = match (dialect, &self.warning) {
            (Dialect::DirektivCmd, _) => {
                let count = self.plan.commands.len();
                Some(format!("running {count} commands"))
            }
            // Where the workflow's author looks: the instance log. The direktiv-cmd shape's
            // log stays the one Direktiv's runner writes.
            (Dialect::Native, Some(warning)) => Some(format!("warning: {warning}")),
            (Dialect::Native, None) => None,
        };
        let mut refused = None;
        for (index, (spec, launch)) in self.plan.commands.iter().zip(self.launches).enumerate() {
            if let Some(reason) = self.cancel.reason() {
                outcome.cancel(reason);
                break;
            }
            let at_start = preamble
                .take()
                .into_iter()
                .chain(self.announce(spec, index));
            let ran = self.run_command(spec, launch, &execution, at_start.collect());
            let (report, cancelled) = match ran.await {
                Ok(ran) => ran,
                Err(failure) => {
                    refused = Some(failure);
                    break;
                }
            };
            let ended = outcome.record(index, spec.continue_on_error, report);
            // Cancelled while it waited to try again: the request ends as cancelled.
            if let Some(reason) = cancelled {
                outcome.cancel(reason);
                break;
            }
            if ended {
                if dialect == Dialect::DirektivCmd {
                    let stop = format!("stopping execution due to error in command {index}");
                    self.logs.line(&stop);
                }
                break;
            }
        }
        // Each command stopped what it left behind; this catches anything started in between
        // (nothing to look for when the last command's whole look found none left).
        let policy = StopPolicy::with_grace(self.ctx.settings.kill_grace);
        tracker.stop_rest(policy).await;
        tracker.close();
        match refused {
            Some(failure) => JobOutcome::rejected(dialect, failure, None, self.secrets),
            None => outcome,
        }
    }

    /// Runs a command, again while its `retry` wants another attempt; the report is the last
    /// attempt's. A cancellation during a wait ends the wait at once, and is returned.
    /// `at_start` goes to the log once the first attempt is started. Fails, with nothing
    /// logged, when the request's ground could not be made.
    async fn run_command(
        &self,
        spec: &CommandSpec,
        launch: &Launch,
        execution: &Execution<'_>,
        mut at_start: Vec<String>,
    ) -> Result<(CommandReport, Option<CancelReason>), Failure> {
        let mut attempt = 1;
        loop {
            let command = exec::Command {
                spec,
                launch,
                at_start: std::mem::take(&mut at_start),
            };
            let run = exec::run(command, execution).await;
            let Some(temp_dir) = self.setup.temp_dir() else {
                let unprepared = || Failure::internal(exec::GROUND_LOST);
                return Err(run.failure.unwrap_or_else(unprepared));
            };
            let output_file = self.read_output(spec, &temp_dir).await;
            let mut report = CommandReport::new(&spec.display, run, output_file);
            self.log_failure(&report);
            let Some(retry) = &spec.retry else {
                return Ok((report, None));
            };
            report.attempts = Some(attempt);
            let failure = report.run.failure.as_ref();
            let Some(wait) = failure.and_then(|failure| retry.wait_before(attempt + 1, failure))
            else {
                return Ok((report, None));
            };
            let code = failure.map(Failure::code).unwrap_or_default();
            self.logs.line(&format!(
                "attempt {} of {} after {code}, waiting {}",
                attempt + 1,
                retry.attempts,
                humantime::format_duration(wait)
            ));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                reason = self.cancel.cancelled() => return Ok((report, Some(reason))),
            }
            attempt += 1;
        }
    }

    /// `running command '…'` (the log stream masks it), or its index in the direktiv-cmd
    /// shape when the command line is not to be shown.
    fn announce(&self, spec: &CommandSpec, index: usize) -> Option<String> {
        tracing::debug!(command = %self.secrets.mask(&spec.display), "running command");
        if spec.print {
            Some(format!("running command {}", quoted_command(&spec.display)))
        } else if self.plan.dialect == Dialect::DirektivCmd {
            Some(format!("running command {index}"))
        } else {
            None
        }
    }

    /// The first bytes of the command's `output` file, when it names one.
    async fn read_output(
        &self,
        spec: &CommandSpec,
        temp_dir: &TempDir,
    ) -> Option<Result<OutputFile, Failure>> {
        let output = spec.output.as_ref()?;
        let max = self.ctx.settings.max_output;
        let read = temp_dir.read_output(output, max).await;
        Some(read.map(|bytes| OutputFile {
            // A file of `max` bytes may go on after them.
            cut: bytes.len() >= max,
            bytes,
        }))
    }

    /// A failed command's message, in the request's log and the runner's.
    fn log_failure(&self, report: &CommandReport) {
        if let Some(message) = &report.message {
            let shown = message.render(&self.secrets.snapshot());
            self.logs.line(&shown);
            let command = self.secrets.mask(&report.display);
            tracing::info!(%command, error = %shown, "command failed");
        }
    }
}

/// The environment every command of a request gets over the runner's own, but for what names
/// its temp dir, which is made with the request's ground.
struct CommandEnv {
    backend: String,
    action_id: String,
    dev_vars: Option<String>,
    /// TRACEPARENT, TRACESTATE, BAGGAGE.
    trace: Vec<(String, String)>,
    /// The request's `env`.
    request: Vec<(String, String)>,
}

impl CommandEnv {
    fn new(
        ctx: &Context,
        action_id: &str,
        trace: &TraceContext,
        request_env: &[(String, String)],
    ) -> CommandEnv {
        CommandEnv {
            backend: ctx.backend.clone(),
            action_id: action_id.to_owned(),
            dev_vars: ctx.dev_vars.clone(),
            trace: trace
                .env()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
            request: request_env.to_vec(),
        }
    }

    /// HOME, DIREKTIV_HTTP_BACKEND, DIREKTIV_ACTION_ID, DIREKTIV_TEMPDIR, CMD_DEV_VARS, TMPDIR
    /// when isolated, the trace context, then the request's env (later wins).
    fn for_temp_dir(self, dir: &Path, isolated: bool) -> Vec<(String, String)> {
        let dir = dir.display().to_string();
        let mut env = vec![
            ("HOME".to_owned(), dir.clone()),
            (ENV_HTTP_BACKEND.to_owned(), self.backend),
            (ENV_ACTION_ID.to_owned(), self.action_id),
            (ENV_TEMP_DIR.to_owned(), dir.clone()),
        ];
        if let Some(dir) = self.dev_vars {
            env.push((ENV_DEV_VARS.to_owned(), dir));
        }
        // An isolated request's temp files go to its own folder, which it alone can read; the
        // request's env may still say otherwise.
        if isolated {
            env.push(("TMPDIR".to_owned(), dir));
        }
        env.extend(self.trace);
        env.extend(self.request);
        env
    }
}
