//! Reloads a running wsedge the way an operator does: write the new
//! configuration over the file the server was started with, send SIGHUP,
//! and read `/metrics` until `wsedge_config_generation` says it was applied
//! or `wsedge_config_reload_failures_total` that it was refused.
//!
//! The soak and reload scenarios alternate between configurations this way;
//! each reload is confirmed before the next one is sent (wsedge coalesces
//! signals that arrive during a reload, so unconfirmed ones could go
//! uncounted). Both configurations are valid, so a refusal is the server's
//! failure (its log says why); the scenarios count refusals and try again.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};

use crate::metrics;

const GENERATION: &str = "wsedge_config_generation";
const FAILURES: &str = "wsedge_config_reload_failures_total";
/// How often `/metrics` is read while a reload is pending: often enough to
/// time a reload to a few milliseconds, rarely enough that the scrapes cost
/// the server little.
const POLL: Duration = Duration::from_millis(2);
/// A reload not applied by then is a failure (a reload that regenerates a
/// certificate and rebinds listeners takes milliseconds).
const RELOAD_LIMIT: Duration = Duration::from_secs(10);

/// What became of one reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// Applied this long after the signal.
    Applied(Duration),
    /// The server kept its running configuration.
    Refused,
}

/// Alternates a running server between configurations.
pub struct Reloader {
    pid: u32,
    config: PathBuf,
    alternates: Vec<Vec<u8>>,
    /// The alternate the file holds now.
    current: usize,
    metrics: SocketAddr,
    generation: f64,
    failures: f64,
}

impl Reloader {
    /// `config` is the file the server (process `pid`) was started with; it
    /// must hold one of `alternates` now. `metrics` is its admin address.
    pub async fn new(
        pid: u32,
        config: &Path,
        alternates: &[PathBuf],
        metrics: SocketAddr,
    ) -> anyhow::Result<Self> {
        ensure!(
            alternates.len() >= 2,
            "give at least two configurations to alternate between"
        );
        let alternates = alternates
            .iter()
            .map(|path| std::fs::read(path).with_context(|| format!("reading {}", path.display())))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let now = std::fs::read(config).with_context(|| format!("reading {}", config.display()))?;
        let current = alternates
            .iter()
            .position(|alternate| *alternate == now)
            .with_context(|| {
                format!(
                    "{} holds none of the alternate configurations",
                    config.display()
                )
            })?;
        let samples = metrics::scrape(metrics).await?;
        Ok(Self {
            pid,
            config: config.to_owned(),
            alternates,
            current,
            metrics,
            generation: samples.get(GENERATION).copied().context("no generation")?,
            failures: samples.get(FAILURES).copied().unwrap_or(0.0),
        })
    }

    /// Which alternate is applied (index into the list given to `new`).
    pub fn current(&self) -> usize {
        self.current
    }

    /// The server's configuration generation, as last read.
    pub fn generation(&self) -> f64 {
        self.generation
    }

    /// Applies the next alternate (after a refusal, the same one again) and
    /// waits until the server says what it did. An error is a failure to
    /// signal or to read the server, or no answer in time.
    pub async fn reload(&mut self) -> anyhow::Result<Reloaded> {
        self.reload_to((self.current + 1) % self.alternates.len())
            .await
    }

    /// Applies alternate `index` (a reload even if it is the current one).
    pub async fn reload_to(&mut self, index: usize) -> anyhow::Result<Reloaded> {
        // Written beside the file and renamed over it, so that the server
        // never reads half a file.
        let staged = self.config.with_extension("next");
        std::fs::write(&staged, &self.alternates[index])?;
        std::fs::rename(&staged, &self.config)?;
        let signalled = Instant::now();
        let status = tokio::process::Command::new("kill")
            .args(["-HUP", &self.pid.to_string()])
            .status()
            .await
            .context("running kill")?;
        ensure!(status.success(), "kill -HUP {} failed: {status}", self.pid);
        loop {
            tokio::time::sleep(POLL).await;
            let samples = metrics::scrape(self.metrics).await?;
            let failures = samples.get(FAILURES).copied().unwrap_or(0.0);
            if failures > self.failures {
                self.failures = failures;
                return Ok(Reloaded::Refused);
            }
            let generation = samples.get(GENERATION).copied().unwrap_or(0.0);
            if generation > self.generation {
                self.generation = generation;
                self.current = index;
                return Ok(Reloaded::Applied(signalled.elapsed()));
            }
            if signalled.elapsed() > RELOAD_LIMIT {
                bail!("the reload was not applied within {RELOAD_LIMIT:?}");
            }
        }
    }
}
