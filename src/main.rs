//! Entry point: read the configuration, become a tiny init when PID 1, then serve (or run one
//! request with `direktiv-cmd run`).

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use direktiv_cmd::config::{Cli, Config, LogFormat, Mode, RunOptions};
use direktiv_cmd::{init, pipeline, process, server, startup, stdio};

/// At exit, how long queued output may take to reach a reader that still reads.
const FINAL_FLUSH: Duration = Duration::from_secs(2);

/// At exit, how long blocking work still running (file work of a request that did not end in
/// time) may hold the process: dropping the runtime would wait for it without end.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    // First of all: no process of the same uid may read the runner's environment or memory,
    // not even in the moments before the first request.
    if let Err(error) = process::become_undumpable() {
        eprintln!("direktiv-cmd: cannot make the runner non-dumpable ({error}); continuing");
    }
    // Before anything else, while the process has a single thread: fork() is only safe then.
    init::become_init_if_pid1();
    // `var` runs inside a command: none of the runner's settings apply to it.
    if std::env::args_os().nth(1).is_some_and(|arg| arg == "var") {
        return direktiv_cmd::var::main(std::env::args_os().skip(1));
    }
    limit_malloc_arenas();

    let cli = Cli::try_parse().unwrap_or_else(|error| config_error(error));
    // For `run`, the runner's own info lines (a failing command, once more) only repeat what
    // the log lines on stderr show.
    let default_level = match cli.command {
        None => tracing::Level::INFO,
        Some(Mode::Run { .. }) => tracing::Level::WARN,
        // Handled before the settings are read (above); never reached.
        Some(Mode::Var { .. }) => return ExitCode::from(2),
    };
    if let Some(refusal) = direktiv_cmd::isolation::refusal(cli.config.isolation) {
        eprintln!("direktiv-cmd: {refusal}; nothing was started");
        return ExitCode::from(2);
    }
    init_tracing(&cli.config, default_level);
    // Before any request, and before the runner logs anything of a request.
    if let Err(error) = pipeline::install_container_secrets(&cli.config) {
        eprintln!("direktiv-cmd: {error}; nothing was started");
        return ExitCode::from(2);
    }
    block_sigchld();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("direktiv-cmd: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = match cli.command {
        None => runtime.block_on(serve(cli.config)),
        Some(Mode::Run { options, request }) => {
            runtime.block_on(run_once(cli.config, &options, &request))
        }
        Some(Mode::Var { .. }) => ExitCode::from(2),
    };
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    pipeline::close();
    stdio::flush(FINAL_FLUSH);
    code
}

/// Arenas glibc's malloc may create: two, unless the environment sets its own limit. By
/// default every thread that allocates gets an arena of its own, up to eight per core: each
/// runtime worker and each blocking-pool thread then keeps a partly used heap of its own, about
/// 0.4 MiB of the runner's peak RSS at 16 concurrent requests. Threads' own caches (tcache)
/// still serve most small allocations without taking an arena's lock; throughput at c=16 is
/// the same within noise.
fn limit_malloc_arenas() {
    const ARENAS: i32 = 2;
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() || tunables.contains("arena_max") {
        return;
    }
    process::limit_malloc_arenas(ARENAS);
}

/// Commands' exits are observed through pidfds and `waitid`, never through SIGCHLD. While a
/// thread is inside posix_spawn (all signals blocked), the kernel cannot drop an exiting
/// command's SIGCHLD as ignored and instead wakes some idle thread just to discard it: about
/// one needless context switch per command under load. Blocked in every thread (the runtime's
/// threads inherit this mask; commands get an empty one), it stays pending and wakes nobody.
fn block_sigchld() {
    if let Err(error) = process::block_sigchld() {
        eprintln!("direktiv-cmd: cannot block SIGCHLD ({error}); continuing");
    }
}

async fn serve(config: Config) -> ExitCode {
    let port = config.port;
    // Everything start-up has to say (warnings about settings) comes before "listening on",
    // the line that tells a reader the runner is up and how it will behave.
    let behaviour = startup::Behaviour::of(&config);
    let app = server::App::new(config);
    let signals = server::ShutdownSignals::install();
    let listener = match server::bind(port).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, port, "cannot listen (PORT)");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => tracing::info!("{}", behaviour.line(addr)),
        Err(error) => tracing::warn!(%error, "listening, address unknown"),
    }
    match server::serve(app, listener, signals).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "server failed");
            ExitCode::FAILURE
        }
    }
}

/// `direktiv-cmd run <file|->`: one request without HTTP, for trying an image locally.
async fn run_once(config: Config, options: &RunOptions, source: &str) -> ExitCode {
    let body = if source == "-" {
        let mut body = Vec::new();
        std::io::stdin().read_to_end(&mut body).map(|_| body)
    } else {
        std::fs::read(source)
    };
    let body = match body {
        Ok(body) => body,
        Err(error) => {
            eprintln!("direktiv-cmd: cannot read the request '{source}': {error}");
            return ExitCode::FAILURE;
        }
    };
    let run = pipeline::run_local(config, options, &body).await;
    // The command output shown on stderr comes before the verdict.
    stdio::flush(FINAL_FLUSH);
    println!("{}", String::from_utf8_lossy(&run.reply.body));
    if let Some(failure) = &run.unlogged_failure {
        eprintln!("direktiv-cmd: {failure}");
    }
    ExitCode::from(run.exit_status)
}

/// Stops start-up on a bad setting. Values mostly come from environment variables, so the
/// message names the variable, not just the flag clap knows the value by.
fn config_error(error: clap::Error) -> ! {
    use clap::error::{ContextKind, ContextValue};
    use clap::CommandFactory;
    if let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) {
        let flag = arg
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .trim_start_matches('-');
        let command = Cli::command();
        let variable = command
            .get_arguments()
            .find(|a| a.get_long() == Some(flag))
            .and_then(|a| a.get_env());
        if let Some(variable) = variable {
            eprintln!(
                "direktiv-cmd: invalid setting {} (flag --{flag}); nothing was started",
                variable.to_string_lossy()
            );
        }
    }
    error.exit()
}

/// The runner's own log lines on stderr: text, or JSON with the request's span (its
/// `action_id`) on every line; the level comes from RUST_LOG, else `default_level`.
fn init_tracing(config: &Config, default_level: tracing::Level) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // `Targets` reads the `level` and `target=level,...` forms of RUST_LOG without a regex
    // engine (span filters are not needed): about 0.5 MiB less binary, and so less memory.
    let default = || Targets::new().with_default(default_level);
    let (filter, unreadable) = match std::env::var("RUST_LOG") {
        Ok(setting) if !setting.trim().is_empty() => match setting.parse::<Targets>() {
            Ok(filter) => (filter, None),
            Err(error) => (default(), Some(error)),
        },
        _ => (default(), None),
    };
    // Each log line is queued whole and never waited for: a stderr nobody reads must not
    // stall the thread that logs (an async worker, in the middle of a request).
    let layer = tracing_subscriber::fmt::layer().with_writer(stdio::masked_stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match config.log_format {
        LogFormat::Json => registry
            .with(layer.json().with_current_span(true).with_span_list(false))
            .init(),
        LogFormat::Text => registry.with(layer.with_ansi(false)).init(),
    }
    if let Some(error) = unreadable {
        tracing::warn!(%error, "RUST_LOG not understood; logging at {default_level}");
    }
}
