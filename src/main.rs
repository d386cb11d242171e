//! The `wsedge` command: a thin CLI over the library. Argument parsing,
//! logging and signals live here; everything else is in `wsedge::`.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};
use wsedge::{Config, Server};

/// A WebSocket edge server: TLS, admission control and fan-out from one TOML file.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the configured listeners until SIGINT or SIGTERM.
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(arg) => load(&arg).and_then(run),
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

fn run(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Installed before anything is bound: a signal that arrives as soon
        // as the listeners are up must stop the server gracefully, not kill it.
        let stop = stop_signal()?;
        let server = Server::new(config)?;
        server.run(stop).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// A future that completes on the first SIGINT or SIGTERM; the handlers are
/// installed when this function returns.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
