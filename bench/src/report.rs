//! Combines the records of every server into latest.json, a markdown table
//! (latest.md) and an SVG bar chart of the ratios (latest.svg).
//!
//! A ratio compares wsedge with one peer on a scenario's headline metric and
//! is always oriented so that > 1 means wsedge did better: wsedge ÷ peer for
//! throughput, peer ÷ wsedge for latency and memory.
//!
//! The compression scenario has no peer (it compares wsedge with itself,
//! permessage-deflate on and off): its records get their own table instead
//! of ratios.

use std::{collections::BTreeMap, fmt::Write as _, fs, path::PathBuf};

use serde::Serialize;

use crate::record::{self, Record};

const SUBJECT: &str = "wsedge";
const PEERS: [&str; 2] = ["raw-fastwebsockets", "node-ws"];

#[derive(clap::Args)]
pub struct ReportArgs {
    /// Directory for latest.json, latest.md and latest.svg.
    #[arg(long)]
    out_dir: PathBuf,
    /// Machine description for the report (cores, CPU model).
    #[arg(long, default_value = "")]
    machine: String,
    /// The command that produced the results.
    #[arg(long, default_value = "")]
    command: String,
    /// Wall time of the whole run, in seconds, if known.
    #[arg(long)]
    wall_seconds: Option<f64>,
    /// JSON files written by `run`.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
}

#[derive(Serialize)]
struct Comparison {
    id: String,
    scenario: String,
    headline: String,
    higher_is_better: bool,
    values: BTreeMap<String, f64>,
    /// Peer name to ratio (> 1: wsedge better).
    ratios: BTreeMap<String, f64>,
}

#[derive(Serialize)]
struct Target {
    target: String,
    measured: String,
    met: Option<bool>,
}

#[derive(Serialize)]
struct Combined<'a> {
    machine: &'a str,
    command: &'a str,
    wall_seconds: Option<f64>,
    ratio_convention: &'static str,
    comparisons: Vec<Comparison>,
    /// The same scenarios compared on server CPU time per operation.
    cpu_per_op: Vec<Comparison>,
    targets: Vec<Target>,
    /// permessage-deflate on and off, side by side (records of the
    /// compression scenario, in run order).
    compression: Vec<CompressionRow>,
    records: Vec<Record>,
}

pub fn write(args: &ReportArgs) -> anyhow::Result<()> {
    let records = record::read_all(&args.inputs)?;
    let (compression, peer_records): (Vec<Record>, Vec<Record>) = records
        .iter()
        .cloned()
        .partition(|r| r.scenario == "compression");
    let comparisons = compare(&peer_records);
    let targets = targets(&comparisons, &peer_records);
    fs::create_dir_all(&args.out_dir)?;
    let combined = Combined {
        machine: &args.machine,
        command: &args.command,
        wall_seconds: args.wall_seconds,
        ratio_convention: "ratio > 1 means wsedge did better: wsedge/peer for throughput, peer/wsedge for latency and memory",
        comparisons,
        cpu_per_op: compare_cpu(&peer_records),
        targets,
        compression: compression.iter().map(CompressionRow::from).collect(),
        records,
    };
    fs::write(
        args.out_dir.join("latest.json"),
        serde_json::to_string_pretty(&combined)?,
    )?;
    fs::write(args.out_dir.join("latest.md"), markdown(&combined))?;
    fs::write(args.out_dir.join("latest.svg"), svg(&combined.comparisons))?;
    print!("{}", markdown(&combined));
    Ok(())
}

/// Groups records by id, in the order they were first run.
fn compare(records: &[Record]) -> Vec<Comparison> {
    compare_by(records, |r| (r.headline.clone(), r.higher_is_better))
}

/// Server CPU time per operation (message, delivery, handshake) for every
/// scenario that measured it: lower is better.
fn compare_cpu(records: &[Record]) -> Vec<Comparison> {
    compare_by(records, |_| (CPU_PER_OP.to_owned(), false))
        .into_iter()
        .filter(|c| !c.values.is_empty())
        .collect()
}

const CPU_PER_OP: &str = "server_cpu_us_per_op";

/// Groups records by id, in the order they were first run, comparing the
/// metric `pick` names (and whether higher is better).
fn compare_by(records: &[Record], pick: impl Fn(&Record) -> (String, bool)) -> Vec<Comparison> {
    let mut order: Vec<&str> = Vec::new();
    for record in records {
        if !order.contains(&record.id.as_str()) {
            order.push(&record.id);
        }
    }
    order
        .into_iter()
        .map(|id| {
            let group: Vec<&Record> = records.iter().filter(|r| r.id == id).collect();
            let first = group[0];
            let (metric, higher_is_better) = pick(first);
            let values: BTreeMap<String, f64> = group
                .iter()
                .filter_map(|r| r.metrics.get(&metric).map(|v| (r.server.clone(), *v)))
                .collect();
            let mut ratios = BTreeMap::new();
            if let Some(&ours) = values.get(SUBJECT) {
                for peer in PEERS {
                    if let Some(&theirs) = values.get(peer) {
                        let ratio = if higher_is_better {
                            ours / theirs
                        } else {
                            theirs / ours
                        };
                        if ratio.is_finite() && ratio > 0.0 {
                            ratios.insert(peer.to_owned(), ratio);
                        }
                    }
                }
            }
            Comparison {
                id: id.to_owned(),
                scenario: first.scenario.clone(),
                headline: metric,
                higher_is_better,
                values,
                ratios,
            }
        })
        .collect()
}

fn targets(comparisons: &[Comparison], records: &[Record]) -> Vec<Target> {
    let ratio = |id: &str, peer: &str| {
        comparisons
            .iter()
            .find(|c| c.id == id)
            .and_then(|c| c.ratios.get(peer).copied())
    };
    let mut targets = Vec::new();
    let mut at_least = |target: &str, value: Option<f64>, bound: f64| {
        targets.push(Target {
            target: target.to_owned(),
            measured: value.map_or_else(|| "not measured".to_owned(), |v| format!("{v:.2}x")),
            met: value.map(|v| v >= bound),
        });
    };
    let one = "echo ws c=100 size=64B inflight=1";
    let piped = "echo ws c=100 size=64B inflight=16";
    at_least(
        "echo one-in-flight >= 0.95x raw fastwebsockets",
        ratio(one, "raw-fastwebsockets"),
        0.95,
    );
    at_least(
        "echo one-in-flight >= 1.7x Node ws",
        ratio(one, "node-ws"),
        1.7,
    );
    at_least(
        "echo pipelined (16) >= 3.5x raw fastwebsockets (pipelined)",
        ratio(piped, "raw-fastwebsockets"),
        3.5,
    );
    let record_of = |server: &str, id: &str| {
        records
            .iter()
            .find(|r| r.server == server && r.id.starts_with(id))
    };
    let ours = |id: &str| record_of(SUBJECT, id);
    let lone_fanout = "fanout ws subs=10000 rate=10/s";
    // Server CPU per delivery, raw's over ours (> 1: wsedge spent less).
    let cpu_ratio = |id: &str| {
        let cpu = |server: &str| {
            record_of(server, id).and_then(|r| r.metrics.get("server_cpu_us_per_op").copied())
        };
        Some(cpu("raw-fastwebsockets")? / cpu(SUBJECT)?)
    };
    at_least(
        "fan-out to 10,000 subscribers at 10 msg/s: server CPU per delivery <= raw fastwebsockets'",
        cpu_ratio(lone_fanout),
        1.0,
    );
    let lone_fanout_id = comparisons
        .iter()
        .find(|c| c.id.starts_with(lone_fanout))
        .map(|c| c.id.clone())
        .unwrap_or_default();
    at_least(
        "fan-out to 10,000 subscribers at 10 msg/s: p99 <= raw fastwebsockets'",
        ratio(&lone_fanout_id, "raw-fastwebsockets"),
        1.0,
    );
    let fanout = ours(lone_fanout);
    targets.push(Target {
        target: "fan-out to 10,000 subscribers at 10 msg/s with zero losses".to_owned(),
        measured: fanout.map_or_else(
            || "not measured".to_owned(),
            |r| {
                format!(
                    "{} subscribers connected, {} of {} lost",
                    number(r.metrics.get("connections").copied().unwrap_or(0.0)),
                    number(r.metrics.get("lost").copied().unwrap_or(f64::NAN)),
                    number(r.metrics.get("expected").copied().unwrap_or(f64::NAN))
                )
            },
        ),
        met: fanout.map(|r| {
            r.metrics.get("lost") == Some(&0.0)
                && r.metrics.get("connections") == Some(&10_000.0)
                && r.metrics.get("expected").is_some_and(|&e| e > 0.0)
        }),
    });
    for (transport, bound) in [("ws", 3.0), ("wss", 8.0)] {
        let capacity = ours(&format!("capacity {transport} idle"));
        let per_conn = capacity.and_then(|r| r.metrics.get("rss_per_conn_kib").copied());
        targets.push(Target {
            target: format!("idle memory <= {bound} KiB per {transport} connection"),
            measured: per_conn.map_or_else(
                || "not measured".to_owned(),
                |v| format!("{v:.2} KiB ({})", capacity.map_or("", |r| r.id.as_str())),
            ),
            met: per_conn.map(|v| v <= bound),
        });
    }
    for (what, prefix) in [
        ("idle", "capacity-deflate ws /echo idle"),
        ("idle", "capacity-deflate ws /news idle"),
        (
            "after one message",
            "capacity-deflate ws /news after one message",
        ),
    ] {
        let record = ours(prefix);
        let per_conn = record.and_then(|r| r.metrics.get("rss_per_conn_kib").copied());
        let path = prefix.split(' ').nth(2).unwrap_or_default();
        targets.push(Target {
            target: format!(
                "memory <= 8 KiB per connection with permessage-deflate, {what} on {path}"
            ),
            measured: per_conn.map_or_else(
                || "not measured".to_owned(),
                |v| format!("{v:.2} KiB ({})", record.map_or("", |r| r.id.as_str())),
            ),
            met: per_conn.map(|v| v <= 8.0),
        });
    }
    let burst = ours("burst ws");
    let metric = |name: &str| burst.and_then(|r| r.metrics.get(name).copied());
    let wanted = burst.and_then(|r| r.params.get("connections").and_then(|v| v.as_f64()));
    targets.push(Target {
        target: "connect burst: every connection open, p99 connect time < 50 ms".to_owned(),
        measured: match (metric("all_open"), metric("p99_ms")) {
            (Some(open), Some(p99)) => format!(
                "{} of {} open, p99 {} ms ({})",
                number(open),
                number(wanted.unwrap_or(f64::NAN)),
                number(p99),
                burst.map_or("", |r| r.id.as_str())
            ),
            _ => "not measured".to_owned(),
        },
        met: burst.map(|_| {
            metric("all_open") == wanted && metric("p99_ms").is_some_and(|p99| p99 < 50.0)
        }),
    });
    targets
}

/// One compression measurement, as the report shows it.
#[derive(Serialize)]
struct CompressionRow {
    server: String,
    id: String,
    /// "echo `/echo`, 100 connections, 1 in flight" and the like.
    workload: String,
    /// "on (dedicated)", "on (shared)" or "off".
    deflate: String,
    /// Mean size of the messages sent.
    message_bytes_mean: Option<f64>,
    /// Messages echoed, or deliveries, per second.
    rate: Option<f64>,
    /// Server CPU microseconds per message (echo) or delivery (fan-out).
    server_cpu_us_per_msg: Option<f64>,
    /// Payload bytes per message, before compression.
    payload_bytes_per_msg: Option<f64>,
    /// Bytes the server wrote per message, frame headers included.
    wire_bytes_per_msg: Option<f64>,
    /// Compressed / uncompressed, from the server's counters.
    ratio: Option<f64>,
    /// The same from the client's byte counts.
    client_ratio: Option<f64>,
    server_cpu_pct: Option<f64>,
    client_cpu_pct: Option<f64>,
    notes: Vec<String>,
}

impl From<&Record> for CompressionRow {
    fn from(r: &Record) -> Self {
        let metric = |name: &str| r.metrics.get(name).copied();
        let param = |name: &str| {
            r.params
                .get(name)
                .map(|v| v.to_string().trim_matches('"').to_owned())
        };
        let workload = match param("workload").as_deref() {
            Some("echo") => format!(
                "echo `{}`, {} connections, 1 in flight",
                param("path").unwrap_or_default(),
                param("connections").unwrap_or_default()
            ),
            Some("fanout") => format!(
                "fan-out `{}`, {} subscribers, saturating",
                param("path").unwrap_or_default(),
                param("subscribers").unwrap_or_default()
            ),
            _ => r.id.clone(),
        };
        let deflate = match param("deflate").as_deref() {
            Some("on") => format!("on ({})", param("mode").unwrap_or_default()),
            other => other.unwrap_or_default().to_owned(),
        };
        Self {
            server: r.server.clone(),
            id: r.id.clone(),
            workload,
            deflate,
            message_bytes_mean: metric("message_bytes_mean"),
            rate: metric(&r.headline),
            server_cpu_us_per_msg: metric(CPU_PER_OP),
            payload_bytes_per_msg: metric("server_payload_bytes_per_msg")
                .or(metric("client_payload_bytes_per_msg")),
            wire_bytes_per_msg: metric("server_wire_bytes_per_msg"),
            ratio: metric("compression_ratio"),
            client_ratio: metric("client_ratio"),
            server_cpu_pct: metric("server_cpu_pct"),
            client_cpu_pct: metric("client_cpu_pct"),
            notes: r.notes.clone(),
        }
    }
}

/// The compression table: one row per measurement, on and off adjacent.
fn compression_table(md: &mut String, rows: &[CompressionRow]) {
    let mean = rows
        .iter()
        .find_map(|row| row.message_bytes_mean)
        .map_or_else(String::new, |mean| {
            format!(", {} B on average", number(mean))
        });
    let _ = writeln!(
        md,
        "Realistic JSON (order-book updates and chat messages of 500 B to 2 KiB{mean}), \
         every client offering permessage-deflate as browsers do; \"off\" is the same channel with \
         `[channel.compression] enabled = false`. Ratio: compressed / uncompressed payload bytes from the \
         server's `wsedge_compression_output_bytes_total` / `wsedge_compression_input_bytes_total` (the \
         client's own count in brackets); wire bytes: `wsedge_wire_sent_bytes_total` per message sent, frame \
         headers included. Fan-out rates and CPU are per delivery.\n"
    );
    let _ = writeln!(
        md,
        "| workload | deflate | msgs/s | server CPU us/msg | payload B/msg | wire B/msg | ratio (client) | CPU server/client |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|");
    let opt = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), number);
    for row in rows {
        let ratio = match (row.ratio, row.client_ratio) {
            (Some(r), Some(c)) => format!("{r:.3} ({c:.3})"),
            (None, Some(c)) => format!("— ({c:.3})"),
            (Some(r), None) => format!("{r:.3}"),
            (None, None) => "—".to_owned(),
        };
        let pct = |v: Option<f64>| v.map_or_else(|| "?".to_owned(), |v| format!("{v:.0}%"));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {}/{} |",
            row.workload,
            row.deflate,
            opt(row.rate),
            opt(row.server_cpu_us_per_msg),
            opt(row.payload_bytes_per_msg),
            opt(row.wire_bytes_per_msg),
            ratio,
            pct(row.server_cpu_pct),
            pct(row.client_cpu_pct),
        );
    }
}

/// Appends every record's notes, each under its record's id, as a list
/// (nothing when there are none).
pub fn write_notes<'a>(md: &mut String, records: impl IntoIterator<Item = &'a Record>) {
    let notes: Vec<String> = records
        .into_iter()
        .flat_map(|r| r.notes.iter().map(move |note| format!("{}: {note}", r.id)))
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(md);
        for note in notes {
            let _ = writeln!(md, "- {note}");
        }
    }
}

/// 3 significant digits below 1000, thousands separators above.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return "—".to_owned();
    }
    if value.abs() >= 1000.0 {
        let digits = format!("{:.0}", value.abs());
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if value < 0.0 { format!("-{out}") } else { out }
    } else if value == value.trunc() || value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn headline_label(c: &Comparison) -> String {
    format!(
        "{} ({})",
        c.headline,
        if c.higher_is_better {
            "higher is better"
        } else {
            "lower is better"
        }
    )
}

fn markdown(combined: &Combined<'_>) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# wsedge benchmark: latest run\n");
    if !combined.machine.is_empty() {
        let _ = writeln!(md, "Machine: {}  ", combined.machine);
    }
    if !combined.command.is_empty() {
        let _ = writeln!(md, "Command: `{}`  ", combined.command);
    }
    if let Some(seconds) = combined.wall_seconds {
        let _ = writeln!(md, "Wall time: {seconds:.0} s  ");
    }
    let _ = writeln!(
        md,
        "Server pinned to core 0, load generator to core 1. Ratios: {}.\n",
        combined.ratio_convention
    );
    let _ = writeln!(md, "## Ratios\n");
    comparison_table(&mut md, &combined.comparisons);
    let _ = writeln!(
        md,
        "\n## Server CPU time per operation\n\nMicroseconds of server CPU (user + system, from /proc) per message, delivery, \
         handshake or connection, over the same window: comparable even where the load generator limited the rate.\n"
    );
    comparison_table(&mut md, &combined.cpu_per_op);
    let _ = writeln!(md, "\n## Targets\n");
    let _ = writeln!(md, "| target | measured | met |");
    let _ = writeln!(md, "|---|---|---|");
    for t in &combined.targets {
        let met = match t.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        let _ = writeln!(md, "| {} | {} | {} |", t.target, t.measured, met);
    }
    if !combined.compression.is_empty() {
        let _ = writeln!(md, "\n## permessage-deflate, on and off\n");
        compression_table(&mut md, &combined.compression);
    }
    let _ = writeln!(md, "\n## Details\n");
    let _ = writeln!(md, "| server | scenario | metrics | notes |");
    let _ = writeln!(md, "|---|---|---|---|");
    for r in &combined.records {
        let metrics: Vec<String> = r
            .metrics
            .iter()
            .map(|(k, v)| format!("{k}={}", number(*v)))
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            r.server,
            r.id,
            metrics.join(" "),
            r.notes.join("; ").replace('|', "/")
        );
    }
    md
}

fn comparison_table(md: &mut String, comparisons: &[Comparison]) {
    let _ = writeln!(
        md,
        "| scenario | metric | wsedge | raw fastwebsockets | Node ws | wsedge vs raw | wsedge vs Node |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|");
    for c in comparisons {
        let value = |server: &str| {
            c.values
                .get(server)
                .map_or_else(|| "—".to_owned(), |v| number(*v))
        };
        let ratio = |peer: &str| {
            c.ratios
                .get(peer)
                .map_or_else(|| "—".to_owned(), |r| format!("{r:.2}x"))
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            c.id,
            headline_label(c),
            value(SUBJECT),
            value(PEERS[0]),
            value(PEERS[1]),
            ratio(PEERS[0]),
            ratio(PEERS[1])
        );
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Horizontal bars on a log scale around 1.0, two per scenario.
fn svg(comparisons: &[Comparison]) -> String {
    let rows: Vec<&Comparison> = comparisons
        .iter()
        .filter(|c| !c.ratios.is_empty())
        .collect();
    let colors = ["#4e79a7", "#f28e2b"];
    let (label_width, plot_width, bar, gap, top) = (430.0, 420.0, 12.0, 10.0, 60.0);
    let all: Vec<f64> = rows
        .iter()
        .flat_map(|c| c.ratios.values().copied())
        .filter(|r| *r > 0.0)
        .collect();
    let low = all.iter().copied().fold(0.25f64, f64::min).max(1e-3) / 1.2;
    let high = all.iter().copied().fold(4.0f64, f64::max) * 1.2;
    let (log_low, log_high) = (low.log2(), high.log2());
    let x = |ratio: f64| {
        label_width + plot_width * (ratio.max(low).log2() - log_low) / (log_high - log_low)
    };
    let group = 2.0 * bar + gap;
    let height = top + group * rows.len() as f64 + 40.0;
    let width = label_width + plot_width + 60.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="18" font-size="14" font-weight="bold">wsedge vs peers (ratio &gt; 1: wsedge better; log scale)</text>"#
    );
    for (i, peer) in PEERS.iter().enumerate() {
        let lx = 10.0 + 190.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="30" width="12" height="12" fill="{}"/>"#,
            colors[i]
        );
        let _ = writeln!(s, r#"<text x="{}" y="40">vs {peer}</text>"#, lx + 16.0);
    }
    let mut tick = 2f64.powi(low.log2().ceil() as i32);
    while tick <= high {
        let tx = x(tick);
        let stroke = if (tick - 1.0).abs() < 1e-9 {
            "#000"
        } else {
            "#ddd"
        };
        let _ = writeln!(
            s,
            r#"<line x1="{tx:.1}" y1="{}" x2="{tx:.1}" y2="{}" stroke="{stroke}"/>"#,
            top - 6.0,
            height - 30.0
        );
        let label = if tick >= 1.0 {
            format!("{tick:.0}x")
        } else {
            format!("{tick}x")
        };
        let _ = writeln!(
            s,
            r#"<text x="{tx:.1}" y="{}" text-anchor="middle">{label}</text>"#,
            height - 16.0
        );
        tick *= 2.0;
    }
    for (row, c) in rows.iter().enumerate() {
        let y0 = top + group * row as f64;
        let label = format!("{} [{}]", c.id, c.headline);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            label_width - 8.0,
            y0 + bar + 4.0,
            escape(&label)
        );
        for (i, peer) in PEERS.iter().enumerate() {
            let Some(&ratio) = c.ratios.get(*peer) else {
                continue;
            };
            let y = y0 + bar * i as f64;
            let (a, b) = (x(1.0), x(ratio));
            let (left, w) = if b >= a { (a, b - a) } else { (b, a - b) };
            let _ = writeln!(
                s,
                r#"<rect x="{left:.1}" y="{y:.1}" width="{:.1}" height="{}" fill="{}"/>"#,
                w.max(1.0),
                bar - 1.0,
                colors[i]
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}">{ratio:.2}x</text>"#,
                left + w.max(1.0) + 3.0,
                y + bar - 2.0
            );
        }
    }
    s.push_str("</svg>\n");
    s
}
