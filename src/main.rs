//! The `wsedge` command: a thin CLI over the library. Argument parsing,
//! logging, signals and systemd notifications live here; everything else is
//! in `wsedge::`.

mod logging;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use clap::{Parser, Subcommand};
use sd_notify::NotifyState;
use tokio::signal::unix::{Signal, SignalKind, signal};
use wsedge::{Config, Handle, Listener, Server};

/// A WebSocket edge server: TLS, admission control and fan-out from one TOML file.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines on stderr as text or JSON. Without it, logs go to journald
    /// when systemd connected stderr to the journal, else to stderr as text.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    log_format: Option<logging::LogFormat>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the configured listeners until SIGINT or SIGTERM; SIGHUP reloads the file.
    Run(ConfigArg),
    /// Validate the configuration without binding anything; exit 1 listing every error.
    Check(ConfigArg),
    /// Print the effective configuration, with every default filled in.
    PrintConfig(ConfigArg),
}

#[derive(clap::Args)]
struct ConfigArg {
    /// The TOML configuration file.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let result = match cli.command {
        Command::Run(arg) => load(&arg).and_then(|config| run(&arg.config, config)),
        Command::Check(arg) => {
            load(&arg).map(|_| println!("{}: configuration is valid", arg.config.display()))
        }
        Command::PrintConfig(arg) => load(&arg).map(|config| print!("{}", config.to_toml_string())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(arg: &ConfigArg) -> anyhow::Result<Config> {
    let config = Config::from_file(&arg.config)?;
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    Ok(config)
}

fn run(path: &Path, config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Installed before anything is bound: a signal that arrives as soon
        // as the listeners are up must be handled, not kill the process.
        let signals = Signals::install()?;
        let listeners = Listener::bind_all(&config).await?;
        let server = Server::new(config)?;
        let handle = server.handle();
        notify(&[NotifyState::Ready, NotifyState::Status(&status(&handle))]);
        let stopping = tokio_util::sync::CancellationToken::new();
        tokio::spawn(reload_on_hangup(
            signals.hangup,
            path.to_owned(),
            handle.clone(),
            stopping.clone(),
        ));
        if let Some(interval) = sd_notify::watchdog_enabled() {
            tokio::spawn(watchdog(interval));
        }
        let stop = async move {
            signals.stop.await;
            stopping.cancel();
            notify(&[
                NotifyState::Stopping,
                NotifyState::Status("draining connections"),
            ]);
        };
        server.serve(listeners, stop).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// The process's signal handlers.
struct Signals {
    /// Completes on the first SIGINT or SIGTERM.
    stop: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    /// SIGHUP: reload. Signals that arrive during a reload are coalesced
    /// into one more reload.
    hangup: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
        let stop = Box::pin(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        });
        Ok(Self { stop, hangup })
    }
}

/// Reloads the configuration file on every SIGHUP, telling systemd
/// RELOADING (with the monotonic time it asks for) and then READY, with the
/// outcome in STATUS. A file that does not validate keeps the running
/// configuration. Once shutdown has started SIGHUP is ignored: a drain
/// never reloads, and systemd never hears READY after STOPPING.
async fn reload_on_hangup(
    mut hangup: Signal,
    path: PathBuf,
    handle: Handle,
    stopping: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            biased;
            () = stopping.cancelled() => return,
            received = hangup.recv() => if received.is_none() { return },
        }
        match NotifyState::monotonic_usec_now() {
            Ok(now) => notify(&[NotifyState::Reloading, now]),
            Err(error) => tracing::warn!(%error, "cannot read the monotonic clock for systemd"),
        }
        let outcome = match handle.reload_from_file(&path).await {
            Ok(_) => status(&handle),
            Err(error) => {
                tracing::error!(
                    "reload of {} failed, the running configuration stays:\n{error:#}",
                    path.display()
                );
                let first = error
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                format!("{}; last reload failed: {first}", status(&handle))
            }
        };
        notify(&[NotifyState::Ready, NotifyState::Status(&outcome)]);
    }
}

/// Pings the systemd watchdog at half its interval while the runtime runs.
async fn watchdog(interval: std::time::Duration) {
    let mut ticks = tokio::time::interval(interval / 2);
    loop {
        ticks.tick().await;
        notify(&[NotifyState::Watchdog]);
    }
}

/// The STATUS line: what is running.
fn status(handle: &Handle) -> String {
    let stats = handle.stats();
    format!(
        "generation {}, {} connections",
        stats.generation, stats.connections
    )
}

/// Sends a notification; outside systemd (no NOTIFY_SOCKET) it does nothing.
fn notify(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "systemd notification failed");
    }
}
