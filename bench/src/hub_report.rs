//! `wsedge-bench hub-report`: the hub-rooms runs (room channel, hub with
//! one room per connection, hub with k) as hub.json and a table per load
//! in hub.md, each hub run with its ratios to the room channel's run of
//! the same load, measured back to back in the same process.

use std::{collections::BTreeMap, fmt::Write as _, fs, path::PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use crate::{
    record::Record,
    report::{number, write_notes},
};

#[derive(clap::Args)]
pub struct HubReportArgs {
    /// Directory for hub.json and hub.md.
    #[arg(long)]
    out_dir: PathBuf,
    /// Machine description for the report (cores, CPU model).
    #[arg(long, default_value = "")]
    machine: String,
    /// The command that produced the results.
    #[arg(long, default_value = "")]
    command: String,
    /// The JSON written by `run --scenarios hub-rooms`.
    input: PathBuf,
}

#[derive(Serialize)]
struct HubResult<'a> {
    machine: &'a str,
    command: &'a str,
    ratio_convention: &'static str,
    records: &'a [Record],
}

/// A load: rooms × members at a rate, whatever reaches it.
fn load_key(record: &Record) -> String {
    let param = |name: &str| {
        record
            .params
            .get(name)
            .map(ToString::to_string)
            .unwrap_or_default()
    };
    format!(
        "{} rooms x {} members, {}/s per member, {} B",
        param("rooms"),
        param("members"),
        param("rate_per_member"),
        param("size")
    )
}

pub fn write(args: &HubReportArgs) -> anyhow::Result<()> {
    let text = fs::read_to_string(&args.input)
        .with_context(|| format!("reading {}", args.input.display()))?;
    let records: Vec<Record> =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", args.input.display()))?;
    fs::create_dir_all(&args.out_dir)?;
    let result = HubResult {
        machine: &args.machine,
        command: &args.command,
        ratio_convention: "hub / room channel: > 1 means the hub delivered more (deliveries/s) or took more (p99, CPU per delivery)",
        records: &records,
    };
    fs::write(
        args.out_dir.join("hub.json"),
        serde_json::to_string_pretty(&result)?,
    )?;
    let md = markdown(&result);
    fs::write(args.out_dir.join("hub.md"), &md)?;
    print!("{md}");
    Ok(())
}

fn markdown(result: &HubResult<'_>) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Hub rooms against the room channel\n");
    let _ = writeln!(md, "- machine: {}", result.machine);
    let _ = writeln!(md, "- command: `{}`", result.command);
    let _ = writeln!(
        md,
        "- every row of a table is the same memberships, messages and deliveries; \
         the hub rows reach them over `/hub` with k rooms per connection (so with \
         1/k the connections); ratios are hub / room channel, measured back to back\n"
    );
    let mut loads: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
    for record in result.records {
        loads.entry(load_key(record)).or_default().push(record);
    }
    for (load, records) in loads {
        let _ = writeln!(md, "## {load}\n");
        let _ = writeln!(
            md,
            "| via | rooms/conn | connections | delivered/s | p50 ms | p99 ms | lost | server µs/delivery | delivered/s vs room | p99 vs room | µs/delivery vs room | server / client / others CPU |"
        );
        let _ = writeln!(
            md,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        let path = records.iter().find(|r| r.scenario == "rooms");
        for record in &records {
            let metric = |name: &str| record.metrics.get(name).copied().unwrap_or(f64::NAN);
            let ratio = |name: &str| match path {
                Some(path) if record.scenario != "rooms" => {
                    let base = path.metrics.get(name).copied().unwrap_or(f64::NAN);
                    format!("{:.2}x", metric(name) / base)
                }
                _ => "—".to_owned(),
            };
            let param = |name: &str| record.param_text(name);
            let _ = writeln!(
                md,
                "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0}% / {:.0}% / {:.0}% |",
                param("via"),
                param("rooms_per_connection"),
                number(metric("connections")),
                number(metric("delivered_per_s")),
                number(metric("p50_ms")),
                number(metric("p99_ms")),
                number(metric("lost")),
                number(metric("server_cpu_us_per_op")),
                ratio("delivered_per_s"),
                ratio("p99_ms"),
                ratio("server_cpu_us_per_op"),
                metric("server_cpu_pct"),
                metric("client_cpu_pct"),
                metric("others_cpu_pct"),
            );
        }
        write_notes(&mut md, records.iter().copied());
        let _ = writeln!(md);
    }
    md
}
