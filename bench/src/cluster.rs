//! `wsedge-bench cluster`: fan-out through two nodes sharing one Redis,
//! next to one node with as many subscribers, for wsedge and for Socket.IO
//! with its Redis adapter, every measurement against every setup in turn;
//! writes cluster.json and cluster.md with the targets.
//!
//! The targets: no message lost while Redis is healthy; at a fixed rate,
//! the p99 of the subscribers on the node that did not publish (their
//! messages went through Redis) at most the single node's p99 plus
//! [`CROSS_NODE_ALLOWANCE_MS`]; and wsedge's deliveries per second of
//! server (node) CPU at least [`CPU_RATIO_TARGET`] times Socket.IO's.

use std::{
    fmt::Write as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde::Serialize;

use crate::{
    client::Target,
    metrics,
    procfs::CpuWindow,
    record::Record,
    report::number,
    scenarios::{self, Node, Setup, Wire},
};

/// The name ending of a setup whose nodes run on a core each (run.sh puts
/// node B on the load generator's core): the deployment's shape, where a
/// node's fan-out does not take turns with another's. Its latency is
/// compared with one node's; its CPU is not (it has more than one core).
const OWN_CORES_SUFFIX: &str = "-own-cores";

/// What the cross-node path may add to the single node's p99.
const CROSS_NODE_ALLOWANCE_MS: f64 = 2.0;
/// wsedge's deliveries per CPU second over Socket.IO's, at least.
const CPU_RATIO_TARGET: f64 = 5.0;
/// Before each measurement the servers must be idle: a server that fell
/// behind the last run's rate goes on writing its backlog after the run,
/// on the core the next setup shares. Idle is under `SETTLED_PCT` of a core
/// (all servers together) over one `SETTLE_SAMPLE`, waited for at most
/// `SETTLE_LIMIT`.
const SETTLED_PCT: f64 = 5.0;
const SETTLE_SAMPLE: Duration = Duration::from_millis(500);
const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// How long a run waits for its last deliveries when none arrive (the
/// fan-out's drain: at most four times this in all), as the main run's
/// quick profile (1 s) doubled for the Redis hop and the shared core.
const DRAIN: Duration = Duration::from_secs(2);

#[derive(clap::Args)]
pub struct ClusterArgs {
    /// A setup: NAME,WIRE,PID@URL[,PID@URL...], WIRE `websocket` (wsedge's
    /// /news) or `socket.io`; one PID@URL per node, the publisher on the
    /// first. Repeatable.
    #[arg(long = "setup", required = true, value_parser = parse_setup)]
    setups: Vec<SetupArg>,
    /// The redis-server the setups of several nodes share (its CPU time).
    #[arg(long)]
    redis_pid: Option<u32>,
    /// A wsedge cluster node's admin listener, NAME,IP:PORT: its link
    /// metrics (probe round trips through Redis, publishes lost) are read
    /// before and after the measurements. Repeatable.
    #[arg(long = "link-metrics", value_parser = crate::parse_metrics)]
    link_metrics: Vec<(String, std::net::SocketAddr)>,
    /// Subscribers per setup, spread over its nodes (one connection more
    /// for the publisher; at most 19,900, the file limit).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(2..=19_900))]
    subscribers: u64,
    /// Fixed publishing rates, messages per second (comma-separated). A
    /// message that travels alone costs each recipient a write of its own
    /// (~10 µs of a core here), so 10/s to 10,000 subscribers already keeps
    /// the servers' core ~90% busy and its p99 is mostly queueing; 2/s
    /// leaves it mostly idle, where the p99 shows what the path adds. 50/s
    /// is for the setups that batch (messages close together share writes).
    #[arg(long, value_delimiter = ',', default_value = "2,10,50")]
    rates: Vec<u32>,
    /// The saturating run's messages in flight per subscriber.
    #[arg(long, default_value_t = 8)]
    window: u64,
    /// Seconds of publishing per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Message size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Where cluster.json and cluster.md go.
    #[arg(long)]
    out_dir: PathBuf,
    /// Machine description for the report.
    #[arg(long, default_value = "")]
    machine: String,
    /// How the setups were started (pinning, versions), for the report.
    #[arg(long, default_value = "")]
    setup_notes: String,
    /// The command that produced the results.
    #[arg(long, default_value = "")]
    command: String,
}

#[derive(Clone)]
struct SetupArg {
    name: String,
    wire: Wire,
    nodes: Vec<(u32, String)>,
}

fn parse_setup(text: &str) -> Result<SetupArg, String> {
    let wrong = || format!("{text:?}: expected NAME,WIRE,PID@URL[,PID@URL...]");
    let mut parts = text.split(',');
    let name = parts.next().filter(|n| !n.is_empty()).ok_or_else(wrong)?;
    let wire = match parts.next() {
        Some("websocket") => Wire::WebSocket,
        Some("socket.io") => Wire::SocketIo,
        _ => return Err(format!("{text:?}: WIRE is websocket or socket.io")),
    };
    let nodes = parts
        .map(|node| {
            let (pid, url) = node.split_once('@').ok_or_else(wrong)?;
            Ok((pid.parse().map_err(|_| wrong())?, url.to_owned()))
        })
        .collect::<Result<Vec<_>, String>>()?;
    if nodes.is_empty() {
        return Err(wrong());
    }
    Ok(SetupArg {
        name: name.to_owned(),
        wire,
        nodes,
    })
}

/// One measurement: a fixed rate, or saturating (0).
#[derive(Clone, Copy)]
struct Measurement {
    rate: u32,
}

#[derive(Serialize)]
struct Output<'a> {
    machine: &'a str,
    command: &'a str,
    setup_notes: &'a str,
    records: &'a [Record],
    links: &'a [LinkReport],
    targets: &'a [Goal],
}

/// What a wsedge node's cluster link counted over all the measurements.
#[derive(Serialize)]
struct LinkReport {
    node: String,
    /// Probes that came back, and their mean and longest round trip
    /// (publisher connection to Redis to subscriber connection).
    probes_ok: Option<f64>,
    probes_missed: Option<f64>,
    probe_rtt_mean_ms: Option<f64>,
    probe_rtt_max_ms: Option<f64>,
    published: Option<f64>,
    publish_lost: Option<f64>,
    received: Option<f64>,
}

/// The first sample whose series starts with `name` and contains `label`.
fn sample(samples: &metrics::Samples, name: &str, label: &str) -> Option<f64> {
    samples
        .iter()
        .find(|(series, _)| series.starts_with(name) && series.contains(label))
        .map(|(_, value)| *value)
}

fn link_report(node: &str, before: &metrics::Samples, after: &metrics::Samples) -> LinkReport {
    let delta =
        |name: &str, label: &str| Some(sample(after, name, label)? - sample(before, name, label)?);
    let probes_ok = delta("wsedge_cluster_probes", "\"ok\"");
    let rtt_sum = delta("wsedge_cluster_probe_rtt_seconds", "");
    LinkReport {
        node: node.to_owned(),
        probes_ok,
        probes_missed: delta("wsedge_cluster_probes", "\"missed\""),
        probe_rtt_mean_ms: rtt_sum
            .zip(probes_ok)
            .filter(|(_, ok)| *ok > 0.0)
            .map(|(sum, ok)| sum / ok * 1e3),
        probe_rtt_max_ms: sample(after, "wsedge_cluster_probe_rtt_max_seconds", "")
            .map(|s| s * 1e3),
        published: delta("wsedge_cluster_published", ""),
        publish_lost: delta("wsedge_cluster_publish_lost", ""),
        received: delta("wsedge_cluster_received", ""),
    }
}

/// One target and whether it was met.
#[derive(Serialize)]
struct Goal {
    target: String,
    measured: String,
    met: Option<bool>,
}

pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let setups = args
        .setups
        .iter()
        .map(|setup| {
            Ok(Setup {
                name: setup.name.clone(),
                wire: setup.wire,
                nodes: setup
                    .nodes
                    .iter()
                    .map(|(pid, url)| {
                        Ok(Node {
                            pid: Some(*pid),
                            target: Target::parse(url)?,
                        })
                    })
                    .collect::<anyhow::Result<_>>()?,
                redis: args.redis_pid,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Saturating first: a fixed rate above what a setup delivers
    // saturating would measure only the backlog it builds (and leave it to
    // be written during the next runs), so such a run is skipped.
    let mut measurements = vec![Measurement { rate: 0 }];
    measurements.extend(args.rates.iter().map(|&rate| Measurement { rate }));
    let duration = Duration::from_secs(args.seconds);
    // One thread: the load generator gets one core (taskset -c 1).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let (records, links) = local.block_on(&runtime, async {
        let mut before = Vec::new();
        for (name, addr) in &args.link_metrics {
            before.push(
                metrics::scrape(*addr)
                    .await
                    .with_context(|| format!("{name}'s /metrics"))?,
            );
        }
        let mut records: Vec<Record> = Vec::new();
        let subscribers = args.subscribers as usize;
        for (index, measurement) in measurements.iter().enumerate() {
            // Each setup in turn, starting with a different one each time.
            for turn in 0..setups.len() {
                let setup = &setups[(index + turn) % setups.len()];
                let capacity = records
                    .iter()
                    .find(|r| r.server == setup.name && r.params.get("rate") == Some(&0.into()))
                    .and_then(|r| r.metrics.get("delivered_per_s").copied());
                let wanted = f64::from(measurement.rate) * subscribers as f64;
                if let Some(capacity) = capacity.filter(|&c| measurement.rate > 0 && wanted > c) {
                    let mut record = scenarios::cluster_record(
                        setup,
                        subscribers,
                        measurement.rate,
                        args.window,
                        args.size,
                    );
                    record.notes.push(format!(
                        "not run: {} deliveries/s is above the {} this setup delivered saturating",
                        number(wanted),
                        number(capacity)
                    ));
                    eprintln!("  {:<20} {:<46} skipped", record.server, record.id);
                    records.push(record);
                    continue;
                }
                let waited = settle(&setups).await;
                let mut record = scenarios::cluster(
                    setup,
                    subscribers,
                    measurement.rate,
                    args.window,
                    args.size,
                    duration,
                    DRAIN,
                )
                .await;
                eprintln!(
                    "  {:<20} {:<46} {}",
                    record.server,
                    record.id,
                    crate::summary(&record)
                );
                if waited >= SETTLE_LIMIT {
                    record.notes.push(format!(
                        "the servers were still busy {SETTLE_LIMIT:?} after the last run"
                    ));
                }
                for note in &record.notes {
                    eprintln!("  {:<20}   note: {note}", "");
                }
                records.push(record);
            }
        }
        let mut links = Vec::new();
        for ((name, addr), before) in args.link_metrics.iter().zip(&before) {
            let after = metrics::scrape(*addr)
                .await
                .with_context(|| format!("{name}'s /metrics"))?;
            links.push(link_report(name, before, &after));
        }
        Ok::<_, anyhow::Error>((records, links))
    })?;
    let targets = targets(&records, &measurements);
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("creating {}", args.out_dir.display()))?;
    let json = serde_json::to_string_pretty(&Output {
        machine: &args.machine,
        command: &args.command,
        setup_notes: &args.setup_notes,
        records: &records,
        links: &links,
        targets: &targets,
    })?;
    std::fs::write(args.out_dir.join("cluster.json"), json)?;
    let md = markdown(&args, &records, &measurements, &links, &targets);
    std::fs::write(args.out_dir.join("cluster.md"), &md)?;
    print!("{md}");
    Ok(())
}

/// Waits until every server of every setup (and Redis) is idle, at most
/// [`SETTLE_LIMIT`]; returns how long it waited.
async fn settle(setups: &[Setup]) -> Duration {
    let mut pids: Vec<Option<u32>> = setups
        .iter()
        .flat_map(|setup| setup.nodes.iter().map(|node| node.pid))
        .collect();
    pids.extend(setups.first().and_then(|s| s.redis).map(Some));
    let started = Instant::now();
    while started.elapsed() < SETTLE_LIMIT {
        let window = CpuWindow::start_all(&pids);
        tokio::time::sleep(SETTLE_SAMPLE).await;
        let busy: f64 = window.finish_all().0.iter().flatten().sum();
        if busy < SETTLED_PCT {
            break;
        }
    }
    started.elapsed()
}

/// Which product a record measured, and on how many nodes.
fn kind(record: &Record) -> (&str, u64) {
    let wire = record
        .params
        .get("wire")
        .and_then(|w| w.as_str())
        .unwrap_or("");
    let nodes = record
        .params
        .get("nodes")
        .and_then(|n| n.as_u64())
        .unwrap_or(0);
    (wire, nodes)
}

fn find<'a>(records: &'a [Record], id: &str, wire: &str, several: bool) -> Option<&'a Record> {
    records.iter().find(|r| {
        let (w, nodes) = kind(r);
        r.id == id && w == wire && (nodes > 1) == several
    })
}

fn id_of(records: &[Record], measurement: Measurement) -> Option<String> {
    records
        .iter()
        .find(|r| r.params.get("rate").and_then(|v| v.as_u64()) == Some(measurement.rate.into()))
        .map(|r| r.id.clone())
}

fn metric(record: Option<&Record>, name: &str) -> Option<f64> {
    record?.metrics.get(name).copied()
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_owned(), |v| format!("{v:.2} ms"))
}

/// ` (+1.23 ms)`: how much `a` exceeds `b`, when both are known.
fn difference(a: Option<f64>, b: Option<f64>) -> String {
    a.zip(b)
        .map_or(String::new(), |(a, b)| format!(" ({:+.2} ms)", a - b))
}

fn targets(records: &[Record], measurements: &[Measurement]) -> Vec<Goal> {
    let mut targets = Vec::new();
    let clustered: Vec<&Record> = records
        .iter()
        .filter(|r| kind(r).0 == "websocket" && kind(r).1 > 1)
        .collect();
    // Counts: summed from 0 (an empty f64 sum is -0).
    let total = |name: &str| {
        clustered
            .iter()
            .filter_map(|r| metric(Some(r), name))
            .fold(0.0, |sum, v| sum + v)
    };
    let (lost, expected, closed) = (total("lost"), total("expected"), total("receivers_closed"));
    targets.push(Goal {
        target: "wsedge on two nodes: zero loss with Redis healthy (every run)".to_owned(),
        measured: format!(
            "{} of {} deliveries lost, {} subscribers disconnected",
            number(lost),
            number(expected),
            number(closed)
        ),
        met: (!clustered.is_empty()).then_some(lost == 0.0 && closed == 0.0 && expected > 0.0),
    });
    for &measurement in measurements {
        let Some(id) = id_of(records, measurement) else {
            continue;
        };
        // The nodes sharing one core (the CPU comparison's setup).
        let two = records.iter().find(|r| {
            r.id == id && kind(r) == ("websocket", 2) && !r.server.ends_with(OWN_CORES_SUFFIX)
        });
        let one = find(records, &id, "websocket", false);
        if measurement.rate > 0 {
            // Every multi-node wsedge setup of this measurement: the nodes
            // sharing one core, and on a core each where run.sh starts them so.
            let setups = records
                .iter()
                .filter(|r| r.id == id && kind(r).0 == "websocket" && kind(r).1 > 1);
            for setup in setups {
                let cross = metric(Some(setup), "b_p99_ms");
                let single = metric(one, "p99_ms");
                let local = metric(Some(setup), "a_p99_ms");
                targets.push(Goal {
                    target: format!(
                        "cross-node p99 <= single-node p99 + {CROSS_NODE_ALLOWANCE_MS} ms at {}/s ({})",
                        measurement.rate, setup.server
                    ),
                    measured: format!(
                        "node B (via Redis) {}, one node {}{}; node A (local, same run) {}{}",
                        ms(cross),
                        ms(single),
                        difference(cross, single),
                        ms(local),
                        difference(cross, local),
                    ),
                    met: cross
                        .zip(single)
                        .map(|(c, s)| c <= s + CROSS_NODE_ALLOWANCE_MS),
                });
            }
        }
        let ours = metric(two, "deliveries_per_cpu_s");
        let theirs = metric(
            find(records, &id, "socket.io", true),
            "deliveries_per_cpu_s",
        );
        let ratio = ours.zip(theirs).map(|(o, t)| o / t.max(1e-9));
        let mode = if measurement.rate > 0 {
            format!("at {}/s", measurement.rate)
        } else {
            "saturating".to_owned()
        };
        targets.push(Goal {
            target: format!(
                "two nodes, {mode}: wsedge >= {CPU_RATIO_TARGET}x Socket.IO's deliveries per second of node CPU"
            ),
            measured: format!(
                "{} against {} deliveries per CPU second{}",
                ours.map_or("—".to_owned(), number),
                theirs.map_or("—".to_owned(), number),
                ratio.map_or(String::new(), |r| format!(": {r:.2}x"))
            ),
            met: ratio.map(|r| r >= CPU_RATIO_TARGET),
        });
    }
    targets
}

fn opt(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_owned(), number)
}

fn markdown(
    args: &ClusterArgs,
    records: &[Record],
    measurements: &[Measurement],
    links: &[LinkReport],
    targets: &[Goal],
) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Fan-out across nodes: wsedge and Socket.IO's Redis adapter\n"
    );
    if !args.machine.is_empty() {
        let _ = writeln!(md, "Machine: {}  ", args.machine);
    }
    if !args.command.is_empty() {
        let _ = writeln!(md, "Command: `{}`  ", args.command);
    }
    if !args.setup_notes.is_empty() {
        let _ = writeln!(md, "Setup: {}", args.setup_notes);
    }
    let _ = writeln!(
        md,
        "\n{} subscribers per setup, spread evenly over its nodes; one publisher on node A \
         ({}-byte messages carrying their send time); {} s of publishing per run, at fixed \
         rates and saturating ({} messages per subscriber in flight). Node A's subscribers \
         get each message from A itself; node B's through Redis. Latency is from the \
         publisher's write to the subscriber's read. CPU: each process's user + system time \
         from /proc over the run (first send to the end of the drain); per delivery is node \
         CPU over that node's deliveries, Redis per message is Redis CPU over messages \
         published. Lost: deliveries that had not arrived when the drain ended (no \
         progress for 2 s, or 8 s in all); for a server that fell behind the rate, that \
         is the backlog it still held, which it may or may not have delivered later. \
         Before each run the load generator waits until every server is idle. The \
         saturating runs come first; a fixed rate whose deliveries per second exceed what \
         a setup delivered saturating is not run for that setup (it would measure only \
         the backlog).\n",
        number(args.subscribers as f64),
        args.size,
        args.seconds,
        args.window
    );
    for &measurement in measurements {
        let Some(id) = id_of(records, measurement) else {
            continue;
        };
        let _ = writeln!(md, "## {id}\n");
        let _ = writeln!(
            md,
            "| setup | node | subscribers | deliveries/s | p50 | p99 | max | lost / expected | node CPU | CPU µs / delivery | deliveries per CPU s | Redis CPU | Redis µs / msg | CPU server/client/others |"
        );
        let _ = writeln!(
            md,
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for record in records.iter().filter(|r| r.id == id) {
            let nodes = kind(record).1 as usize;
            let m = |name: &str| record.metrics.get(name).copied();
            let pct = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |v| format!("{v:.0}%"));
            if m("sent").is_none() {
                let _ = writeln!(
                    md,
                    "| {} | not run (see below) | | | | | | | | | | | | |",
                    record.server
                );
                continue;
            }
            for index in 0..nodes.max(1) {
                if nodes < 2 {
                    break;
                }
                let l = scenarios::node_label(index);
                let g = |name: &str| m(&format!("{l}_{name}"));
                let sent = m("sent").unwrap_or(0.0);
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} | | | | |",
                    record.server,
                    l.to_ascii_uppercase(),
                    opt(g("connections")),
                    opt(g("delivered_per_s")),
                    ms(g("p50_ms")),
                    ms(g("p99_ms")),
                    ms(g("max_ms")),
                    opt(g("lost")),
                    number(sent * g("connections").unwrap_or(0.0)),
                    pct(g("cpu_pct")),
                    opt(g("cpu_us_per_delivery")),
                );
            }
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} | {}/{}/{} |",
                record.server,
                if nodes > 1 { "all" } else { "A" },
                opt(m("connections")),
                opt(m("delivered_per_s")),
                ms(m("p50_ms")),
                ms(m("p99_ms")),
                ms(m("max_ms")),
                opt(m("lost")),
                opt(m("expected")),
                pct(m("server_cpu_pct")),
                opt(m("server_cpu_us_per_op")),
                opt(m("deliveries_per_cpu_s")),
                pct(m("redis_cpu_pct")),
                opt(m("redis_cpu_us_per_msg")),
                pct(m("server_cpu_pct")),
                pct(m("client_cpu_pct")),
                pct(m("others_cpu_pct")),
            );
        }
        let notes: Vec<String> = records
            .iter()
            .filter(|r| r.id == id)
            .flat_map(|r| r.notes.iter().map(move |n| format!("- {}: {n}", r.server)))
            .collect();
        if !notes.is_empty() {
            let _ = writeln!(md, "\n{}", notes.join("\n"));
        }
        let _ = writeln!(md);
    }
    if !links.is_empty() {
        let _ = writeln!(
            md,
            "## The Redis link, as the wsedge nodes counted it over all the runs\n\n\
             The probe goes every second from each node's publisher connection through \
             Redis to its own subscriber connection: the path of every cross-node \
             message, measured by the node (in the load's midst, on the shared core).\n"
        );
        let _ = writeln!(
            md,
            "| node | probes back / missed | probe round trip mean | max | published | publishes lost | received |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
        for link in links {
            let _ = writeln!(
                md,
                "| {} | {} / {} | {} | {} | {} | {} | {} |",
                link.node,
                opt(link.probes_ok),
                opt(link.probes_missed),
                ms(link.probe_rtt_mean_ms),
                ms(link.probe_rtt_max_ms),
                opt(link.published),
                opt(link.publish_lost),
                opt(link.received),
            );
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "## Targets\n");
    let _ = writeln!(md, "| target | measured | met |");
    let _ = writeln!(md, "|---|---|---|");
    for target in targets {
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            target.target,
            target.measured,
            match target.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "—",
            }
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setups_parse_with_every_node() {
        let setup =
            parse_setup("wsedge-2,websocket,11@ws://127.0.0.1:29401,12@ws://127.0.0.1:29402")
                .unwrap();
        assert_eq!(setup.name, "wsedge-2");
        assert_eq!(setup.wire, Wire::WebSocket);
        assert_eq!(
            setup.nodes,
            vec![
                (11, "ws://127.0.0.1:29401".to_owned()),
                (12, "ws://127.0.0.1:29402".to_owned())
            ]
        );
        assert_eq!(
            parse_setup("sio,socket.io,5@ws://127.0.0.1:1")
                .unwrap()
                .wire,
            Wire::SocketIo
        );
        for bad in [
            "",
            "x,websocket",
            "x,tcp,1@ws://127.0.0.1:1",
            "x,websocket,ws://a",
        ] {
            assert!(parse_setup(bad).is_err(), "{bad:?}");
        }
    }
}
