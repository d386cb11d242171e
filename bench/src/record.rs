//! One measured result, as written to JSON and read back by `report`.

use std::{collections::BTreeMap, fs, path::PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::procfs::CpuUse;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// `wsedge`, `raw-fastwebsockets` or `node-ws`.
    pub server: String,
    /// echo, fanout, rooms, capacity or handshakes.
    pub scenario: String,
    /// Identifies the same measurement across servers, e.g.
    /// `echo ws c=100 size=64B inflight=1`.
    pub id: String,
    /// The metric that ratios compare.
    pub headline: String,
    /// Whether a larger headline is better (throughput) or worse (latency,
    /// memory).
    pub higher_is_better: bool,
    pub params: BTreeMap<String, serde_json::Value>,
    pub metrics: BTreeMap<String, f64>,
    /// Errors and warnings, e.g. that the load generator was the busier side.
    pub notes: Vec<String>,
}

impl Record {
    pub fn new(
        server: &str,
        scenario: &str,
        id: String,
        headline: &str,
        higher_is_better: bool,
    ) -> Self {
        Self {
            server: server.to_owned(),
            scenario: scenario.to_owned(),
            id,
            headline: headline.to_owned(),
            higher_is_better,
            params: BTreeMap::new(),
            metrics: BTreeMap::new(),
            notes: Vec::new(),
        }
    }

    pub fn param(&mut self, name: &str, value: impl Into<serde_json::Value>) -> &mut Self {
        self.params.insert(name.to_owned(), value.into());
        self
    }

    pub fn metric(&mut self, name: &str, value: f64) -> &mut Self {
        self.metrics.insert(name.to_owned(), value);
        self
    }

    /// A parameter as report text (a string without its quotes); empty
    /// when the record has none of that name.
    pub fn param_text(&self, name: &str) -> String {
        self.params
            .get(name)
            .map(|v| v.to_string().trim_matches('"').to_owned())
            .unwrap_or_default()
    }

    /// Server CPU time per operation, from the CPU share and the rate that
    /// the same window measured: comparable even when the load generator
    /// limited the rate.
    pub fn cpu_per_op(&mut self, rate_metric: &str) {
        if let (Some(&pct), Some(&rate)) = (
            self.metrics.get("server_cpu_pct"),
            self.metrics.get(rate_metric),
        ) {
            if rate > 0.0 {
                self.metric("server_cpu_us_per_op", pct * 1e4 / rate);
            }
        }
    }

    /// Records CPU use and flags a run where the load generator, not the
    /// server, was the busier side, or where other processes took a
    /// noticeable share of the machine.
    pub fn cpu(&mut self, cpu: CpuUse) {
        if let Some(server) = cpu.server {
            self.metric("server_cpu_pct", server);
        }
        if let Some(client) = cpu.client {
            self.metric("client_cpu_pct", client);
        }
        if let Some(others) = cpu.others {
            self.metric("others_cpu_pct", others);
            if others > 25.0 {
                self.notes.push(format!(
                    "other processes used {others:.0}% of a core meanwhile: contended run"
                ));
            }
        }
        if let (Some(server), Some(client)) = (cpu.server, cpu.client) {
            if client > 90.0 && server < 85.0 {
                self.notes.push(format!(
                    "load generator busier than the server ({client:.0}% vs {server:.0}% of a core): a lower bound"
                ));
            }
        }
    }
}

/// The records of every file in `paths` (each a JSON array), in order.
pub fn read_all(paths: &[PathBuf]) -> anyhow::Result<Vec<Record>> {
    let mut records = Vec::new();
    for path in paths {
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut some: Vec<Record> =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        records.append(&mut some);
    }
    Ok(records)
}
