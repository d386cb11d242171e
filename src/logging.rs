//! Logging for the `wsedge` binary: where log lines go and which are kept.
//!
//! - `--log-format text` (the default) or `json` writes to stderr.
//! - Without `--log-format`, when systemd connected our stderr to the
//!   journal (`JOURNAL_STREAM` names the device and inode of our stderr),
//!   events go to journald natively, with their fields; if the journal
//!   socket cannot be reached, to stderr as text.
//! - `RUST_LOG` filters as usual (default `info`), but crates that could
//!   log request heads (hyper, h2, tungstenite...) are capped at `info`
//!   whatever `RUST_LOG` says: the cap is a second filter that every event
//!   must also pass, not a directive a user's `trace` can override. Our own
//!   code logs paths without query strings and never a header, so that
//!   query strings, `Authorization`, cookies and subprotocols never reach a
//!   log line (tests/admin.rs checks it at `RUST_LOG=trace`).

use std::{
    io::IsTerminal,
    os::{fd::AsFd, unix::fs::MetadataExt},
};

use tracing::level_filters::LevelFilter;
use tracing_subscriber::{
    EnvFilter, Layer, filter::Targets, layer::SubscriberExt, util::SubscriberInitExt,
};

/// Filter used when `RUST_LOG` is unset or invalid.
const DEFAULT_FILTER: &str = "info";

/// Targets that see HTTP or WebSocket request heads: never more verbose
/// than `info`, whatever `RUST_LOG` asks for.
const HEAD_READERS: [&str; 8] = [
    "hyper",
    "hyper_util",
    "h2",
    "http",
    "tungstenite",
    "tokio_tungstenite",
    "fastwebsockets",
    "tower_http",
];

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber. `format` is `--log-format`, if given.
pub(crate) fn init(format: Option<LogFormat>) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let cap = head_reader_cap();
    let (journald, journal_error) = match format {
        None if stderr_is_journal() => match tracing_journald::layer() {
            Ok(layer) => (Some(layer), None),
            Err(error) => (None, Some(error)),
        },
        _ => (None, None),
    };
    let stderr = journald.is_none().then(|| {
        let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
        match format.unwrap_or(LogFormat::Text) {
            LogFormat::Text => layer.with_ansi(colours()).boxed(),
            LogFormat::Json => layer.json().boxed(),
        }
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(cap)
        .with(journald)
        .with(stderr)
        .init();
    if let Some(error) = journal_error {
        tracing::warn!(%error, "cannot reach journald; logging to stderr");
    }
}

/// The second filter: [`HEAD_READERS`] at `info` at most, everything else
/// as `RUST_LOG` says.
fn head_reader_cap() -> Targets {
    HEAD_READERS.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |targets, target| targets.with_target(*target, LevelFilter::INFO),
    )
}

/// Whether systemd connected stderr to the journal: `JOURNAL_STREAM` is
/// `DEVICE:INODE` of that stream, and a child whose stderr was redirected
/// inherits the variable but not the stream.
fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((device, inode)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(fd).metadata() {
        Ok(metadata) => device.parse() == Ok(metadata.dev()) && inode.parse() == Ok(metadata.ino()),
        Err(_) => false,
    }
}

/// ANSI colours only on a terminal, and not when `NO_COLOR` is set.
fn colours() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write,
        sync::{Arc, Mutex},
    };

    use super::*;

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn rust_log_trace_cannot_open_the_head_readers() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry()
            .with(EnvFilter::new("trace,hyper=trace,tungstenite=trace"))
            .with(head_reader_cap())
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(move || writer.clone()),
            );
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "hyper::proto::h1::role", "head: trace-leak");
            tracing::debug!(target: "tungstenite::handshake", "head: debug-leak");
            tracing::info!(target: "hyper::server", "hyper-info-kept");
            tracing::trace!(target: "wsedge::http", "own-trace-kept");
        });
        let logged = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert!(!logged.contains("leak"), "{logged}");
        assert!(logged.contains("hyper-info-kept"), "{logged}");
        assert!(logged.contains("own-trace-kept"), "{logged}");
    }
}
