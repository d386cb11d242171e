//! Means over repeated rounds: `bench/compare.sh` with `ROUNDS=N` runs each
//! measurement N times, every round against every server in turn, and this
//! prints, per measurement, each server's mean headline metric and CPU per
//! operation and its ratio to a reference server's. On this kind of
//! machine one round of a lone-message measurement moves by 10-30%; the
//! mean of interleaved rounds is what a before/after should be read from.

use std::{collections::BTreeMap, path::PathBuf};

use crate::record::{self, Record};

#[derive(clap::Args)]
pub struct MeansArgs {
    /// The server the ratios are to (e.g. raw).
    #[arg(long)]
    reference: String,
    /// Run files (JSON arrays of records).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
}

const CPU_PER_OP: &str = "server_cpu_us_per_op";

/// Prints one markdown table: measurement, server, rounds, mean headline,
/// its ratio to the reference (> 1: better), mean CPU per operation and
/// its ratio (> 1: cheaper).
pub fn print(args: &MeansArgs) -> anyhow::Result<()> {
    let records = record::read_all(&args.inputs)?;
    println!(
        "| measurement | server | rounds | headline (mean) | vs {reference} | CPU µs/op (mean) | vs {reference} |",
        reference = args.reference
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for id in ids_in_run_order(&records) {
        let of_id: Vec<&Record> = records.iter().filter(|r| r.id == id).collect();
        let headline = of_id[0].headline.clone();
        let higher_is_better = of_id[0].higher_is_better;
        let means = |metric: &str| mean_by_server(&of_id, metric);
        let (headlines, cpu) = (means(&headline), means(CPU_PER_OP));
        for (server, &(rounds, value)) in &headlines {
            let ratio = headlines.get(&args.reference).map(|&(_, theirs)| {
                if higher_is_better {
                    value / theirs
                } else {
                    theirs / value
                }
            });
            let server_cpu = cpu.get(server).map(|&(_, v)| v);
            let cpu_ratio = cpu
                .get(&args.reference)
                .zip(server_cpu)
                .map(|(&(_, theirs), ours)| theirs / ours);
            println!(
                "| {id} | {server} | {rounds} | {} {headline} | {} | {} | {} |",
                crate::report::number(value),
                times(ratio),
                server_cpu.map_or("—".to_owned(), crate::report::number),
                times(cpu_ratio),
            );
        }
    }
    Ok(())
}

fn ids_in_run_order(records: &[Record]) -> Vec<&str> {
    let mut ids: Vec<&str> = Vec::new();
    for record in records {
        if !ids.contains(&record.id.as_str()) {
            ids.push(&record.id);
        }
    }
    ids
}

/// Per server: how many records had `metric`, and its mean.
fn mean_by_server(records: &[&Record], metric: &str) -> BTreeMap<String, (usize, f64)> {
    let mut sums: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    for record in records {
        if let Some(value) = record.metrics.get(metric) {
            let entry = sums.entry(record.server.clone()).or_default();
            *entry = (entry.0 + 1, entry.1 + value);
        }
    }
    sums.into_iter()
        .map(|(server, (n, sum))| (server, (n, sum / n as f64)))
        .collect()
}

fn times(ratio: Option<f64>) -> String {
    ratio.map_or("—".to_owned(), |r| format!("{r:.2}x"))
}
