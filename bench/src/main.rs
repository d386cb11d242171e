//! `wsedge-bench`: the load generator for wsedge and its peers.
//!
//! ```text
//! wsedge-bench run --target wsedge,PID,ws://127.0.0.1:39181 \
//!     --target raw-fastwebsockets,PID,ws://127.0.0.1:39183 \
//!     --profile quick --scenarios echo,fanout,rooms,handshakes --out results.json
//! wsedge-bench run --target wsedge,PID,ws://127.0.0.1:39181 \
//!     --metrics wsedge,127.0.0.1:39185 --scenarios compression --out compression.json
//! wsedge-bench report --out-dir bench/results FILE...
//! wsedge-bench soak --target wsedge,PID,ws://127.0.0.1:39181 --metrics 127.0.0.1:39185 \
//!     --config wsedge.toml --alternate a.toml --alternate b.toml --minutes 30 --out-dir bench/results
//! wsedge-bench cluster --redis-pid PID \
//!     --setup wsedge-2-nodes,websocket,PID@ws://127.0.0.1:29401,PID@ws://127.0.0.1:29402 \
//!     --setup wsedge-1-node,websocket,PID@ws://127.0.0.1:29403 --out-dir bench/results
//! wsedge-bench reload --target wsedge,PID,ws://127.0.0.1:39181 --metrics 127.0.0.1:39185 \
//!     --config wsedge.toml --alternate a.toml --alternate b.toml --out-dir bench/results
//! wsedge-bench auth --target wsedge,PID,ws://127.0.0.1:39181 --tls wss://127.0.0.1:39182 \
//!     --metrics 127.0.0.1:39185 --keys KEYDIR --out-dir bench/results
//! ```
//!
//! Loopback only; every run is bounded in time and in connections.
//! `bench/run.sh` drives it; see bench/README.md.

mod auth;
mod client;
mod cluster;
mod deflate;
mod hub_report;
mod json;
mod means;
mod metrics;
mod presence;
mod procfs;
mod record;
mod reload;
mod reloader;
mod report;
mod scenarios;
mod soak;
mod socketio;
mod steady;
mod tokens;
mod trend;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use crate::{
    client::Target,
    record::Record,
    scenarios::{Context, RoomsVia},
};

#[derive(Parser)]
#[command(about = "Load generator for wsedge and its peers (loopback only)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenarios against one or more servers and write their records as JSON.
    Run(RunArgs),
    /// Combine the JSON of several runs into latest.json, latest.md and latest.svg.
    Report(report::ReportArgs),
    /// Per measurement, each server's mean over repeated rounds and its
    /// ratio to a reference server (bench/compare.sh with ROUNDS).
    Means(means::MeansArgs),
    /// Turn a hub-rooms run into hub.json and hub.md (hub against room
    /// channel, load by load).
    HubReport(hub_report::HubReportArgs),
    /// Open and hold members of one room on one node, each its own user
    /// (presence scenario; one process per node).
    PresenceHold(presence::HoldArgs),
    /// Measure GET /presence/... on one node: the count, a page, the
    /// whole list; appends to a JSON file.
    PresenceQuery(presence::QueryArgs),
    /// Turn presence-query runs into presence.json and presence.md.
    PresenceReport(presence::PresenceReportArgs),
    /// Minutes of churn, traffic, slow consumers and reloads against one
    /// wsedge, sampling its memory and open files; writes soak.json and
    /// soak.md.
    Soak(soak::SoakArgs),
    /// Thousands of connections held through a series of reloads; writes
    /// reload.json and reload.md.
    Reload(reload::ReloadArgs),
    /// Handshakes with HS256, RS256, ES256 and EdDSA tokens and without
    /// any, on one wsedge in the same run; writes auth.json and auth.md.
    Auth(auth::AuthArgs),
    /// Fan-out through nodes sharing one Redis, next to one node with as
    /// many subscribers, for wsedge and Socket.IO's Redis adapter; writes
    /// cluster.json and cluster.md.
    Cluster(cluster::ClusterArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// A server to load: NAME,PID,URL (e.g.
    /// wsedge,1234,ws://127.0.0.1:39181). The URL's server serves /echo,
    /// /news and /chat/{room}; the PID (or "-") is for its memory and CPU
    /// time. Repeatable: each measurement then runs against every server in
    /// turn, so that whatever else happens on the machine meanwhile affects
    /// them alike.
    #[arg(long = "target", required = true, value_parser = parse_target)]
    targets: Vec<(String, Option<u32>, String)>,
    #[arg(long, value_enum, default_value = "quick")]
    profile: Profile,
    /// Comma-separated: echo, fanout, rooms, hub-rooms, capacity,
    /// capacity-deflate-echo, capacity-deflate-news, burst, handshakes,
    /// compression. compression needs the paths /echo-uncompressed and
    /// /news-uncompressed besides /echo and /news (bench/run.sh's wsedge
    /// configuration has them); hub-rooms needs a hub channel at /hub. The
    /// capacity scenarios want a freshly started server each.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "echo,fanout,rooms,handshakes"
    )]
    scenarios: Vec<Scenario>,
    /// Where to write the records (a JSON array).
    #[arg(long)]
    out: PathBuf,
    /// A target's admin address, NAME,IP:PORT (e.g. wsedge,127.0.0.1:39185):
    /// the compression scenario reads the server's compression counters from
    /// its /metrics. Repeatable.
    #[arg(long = "metrics", value_parser = parse_metrics)]
    metrics: Vec<(String, SocketAddr)>,
    /// Replace the profile's echo runs: CONNECTIONS:SIZE:IN_FLIGHT, repeatable
    /// (e.g. --echo 100:4096:1 for one run to profile).
    #[arg(long, value_parser = parse_echo)]
    echo: Vec<(usize, usize, usize)>,
    /// Replace the profile's fan-out runs: SUBSCRIBERS:RATE, repeatable,
    /// RATE 0 for a saturating run (window 8); 64-byte messages (e.g.
    /// --fanout 10000:10 for the lone-delivery run alone).
    #[arg(long, value_parser = parse_fanout)]
    fanout: Vec<(usize, u32)>,
}

pub(crate) fn parse_target(text: &str) -> Result<(String, Option<u32>, String), String> {
    let mut parts = text.splitn(3, ',');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(name), Some(pid), Some(url)) if !name.is_empty() => {
            let pid = match pid {
                "-" => None,
                pid => Some(
                    pid.parse()
                        .map_err(|_| format!("{text:?}: the PID must be a number or -"))?,
                ),
            };
            Ok((name.to_owned(), pid, url.to_owned()))
        }
        _ => Err(format!("{text:?}: expected NAME,PID,URL")),
    }
}

pub(crate) fn parse_metrics(text: &str) -> Result<(String, SocketAddr), String> {
    let (name, addr) = text
        .split_once(',')
        .ok_or_else(|| format!("{text:?}: expected NAME,IP:PORT"))?;
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| format!("{text:?}: expected NAME,IP:PORT"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("{text:?}: only loopback addresses are allowed"));
    }
    Ok((name.to_owned(), addr))
}

/// The window and message size of a fan-out run given with `--fanout`,
/// the profiles' own.
const FANOUT_WINDOW: u64 = 8;
const FANOUT_SIZE: usize = 64;

fn parse_fanout(text: &str) -> Result<(usize, u32), String> {
    let expected = || format!("{text:?}: expected SUBSCRIBERS:RATE");
    let (subscribers, rate) = text.split_once(':').ok_or_else(expected)?;
    let subscribers: usize = subscribers.parse().map_err(|_| expected())?;
    let rate: u32 = rate.parse().map_err(|_| expected())?;
    if subscribers == 0 || subscribers > 19_900 {
        return Err(format!("{text:?}: 1 to 19,900 subscribers"));
    }
    Ok((subscribers, rate))
}

fn parse_echo(text: &str) -> Result<(usize, usize, usize), String> {
    let parts: Vec<usize> = text
        .split(':')
        .map(|part| {
            part.parse()
                .map_err(|_| format!("{text:?}: expected CONNECTIONS:SIZE:IN_FLIGHT"))
        })
        .collect::<Result<_, _>>()?;
    match parts[..] {
        [conns, size, inflight] if conns > 0 && inflight > 0 && conns <= 19_900 => {
            Ok((conns, size, inflight))
        }
        _ => Err(format!(
            "{text:?}: expected CONNECTIONS:SIZE:IN_FLIGHT, 1 to 19,900 connections"
        )),
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Profile {
    /// A few seconds per scenario; the whole run.sh under 3 minutes.
    Quick,
    /// Longer runs and the full capacity of ~19,900 connections.
    Full,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Echo,
    Fanout,
    Rooms,
    /// The rooms load over the hub channel, next to the room channel.
    HubRooms,
    Capacity,
    /// Idle connections that negotiated permessage-deflate on /echo.
    CapacityDeflateEcho,
    /// The same on /news.
    CapacityDeflateNews,
    /// Connections opened in waves.
    Burst,
    Handshakes,
    Compression,
}

/// What a profile runs.
struct Plan {
    warmup: Duration,
    duration: Duration,
    drain: Duration,
    /// (connections, size, in flight)
    echo: Vec<(usize, usize, usize)>,
    /// (subscribers, rate (0 = saturate), window, size)
    fanout: Vec<(usize, u32, u64, usize)>,
    /// (rooms, members, rate per member, size)
    rooms: Vec<(usize, usize, f64, usize)>,
    /// The same loads for hub-rooms, and how many rooms each hub
    /// connection joins besides the one-room-per-connection run.
    hub_rooms: Vec<(usize, usize, f64, usize, usize)>,
    capacity: usize,
    /// How long the idle connections are held before every one is checked.
    capacity_hold: Duration,
    /// Idle connections offering permessage-deflate (held as long).
    capacity_deflate: usize,
    /// Connect burst: (connections, opened at once).
    burst: (usize, usize),
    handshake_concurrency: usize,
    /// Compression echo runs: connections.
    compression_echo: Vec<usize>,
    /// Compression fan-out runs: (subscribers, window).
    compression_fanout: Vec<(usize, u64)>,
}

/// A reconnect storm's worth: 10,000 connections, 1,000 at a time, in
/// either profile (it takes a second or two per server).
const BURST: (usize, usize) = (10_000, 1_000);

impl Profile {
    fn plan(self) -> Plan {
        match self {
            Profile::Quick => Plan {
                warmup: Duration::from_millis(500),
                duration: Duration::from_secs(3),
                drain: Duration::from_secs(1),
                echo: vec![(100, 64, 1), (100, 64, 16), (100, 4096, 1)],
                fanout: vec![(10_000, 10, 0, 64), (1_000, 0, 8, 64)],
                rooms: vec![(50, 20, 5.0, 64)],
                hub_rooms: vec![(50, 20, 5.0, 64, 5)],
                capacity: 5_000,
                capacity_hold: Duration::from_secs(1),
                capacity_deflate: 5_000,
                burst: BURST,
                handshake_concurrency: 32,
                compression_echo: vec![100],
                compression_fanout: vec![(1_000, 8)],
            },
            Profile::Full => Plan {
                warmup: Duration::from_secs(2),
                duration: Duration::from_secs(10),
                drain: Duration::from_secs(2),
                echo: vec![
                    (10, 64, 1),
                    (100, 64, 1),
                    (1_000, 64, 1),
                    (100, 1024, 1),
                    (100, 16_384, 1),
                    (100, 64, 16),
                    (1_000, 64, 16),
                ],
                fanout: vec![
                    (10_000, 10, 0, 64),
                    (10_000, 100, 0, 64),
                    (1_000, 0, 8, 64),
                    (10_000, 0, 8, 64),
                ],
                rooms: vec![(100, 10, 5.0, 64), (10, 100, 1.0, 64)],
                hub_rooms: vec![(50, 20, 5.0, 64, 5), (100, 20, 2.0, 64, 10)],
                capacity: 19_900,
                // The issue's bar: the file limit's worth, held a minute.
                capacity_hold: Duration::from_secs(60),
                capacity_deflate: 19_900,
                burst: BURST,
                handshake_concurrency: 64,
                compression_echo: vec![100, 1_000],
                compression_fanout: vec![(1_000, 8), (10_000, 8)],
            },
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(args),
        Command::Report(args) => report::write(&args),
        Command::Means(args) => means::print(&args),
        Command::HubReport(args) => hub_report::write(&args),
        Command::PresenceHold(args) => presence::hold(args),
        Command::PresenceQuery(args) => presence::query(args),
        Command::PresenceReport(args) => presence::report(args),
        Command::Soak(args) => soak::run(args),
        Command::Reload(args) => reload::run(args),
        Command::Auth(args) => auth::run(args),
        Command::Cluster(args) => cluster::run(args),
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut plan = args.profile.plan();
    if !args.echo.is_empty() {
        plan.echo = args.echo.clone();
    }
    if !args.fanout.is_empty() {
        plan.fanout = args
            .fanout
            .iter()
            .map(|&(subscribers, rate)| {
                let window = if rate == 0 { FANOUT_WINDOW } else { 0 };
                (subscribers, rate, window, FANOUT_SIZE)
            })
            .collect();
    }
    let contexts = args
        .targets
        .iter()
        .map(|(name, pid, url)| {
            Ok(Context {
                server: name.clone(),
                pid: *pid,
                target: Target::parse(url)?,
                warmup: plan.warmup,
                duration: plan.duration,
                drain: plan.drain,
                connect_concurrency: 128,
                metrics: args
                    .metrics
                    .iter()
                    .find(|(target, _)| target == name)
                    .map(|(_, addr)| *addr),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Every measurement, against each server in turn (starting with a
    // different one each time, so that none is always first).
    let mut measurements: Vec<Measurement> = Vec::new();
    for &scenario in &args.scenarios {
        match scenario {
            Scenario::Echo => measurements.extend(
                plan.echo
                    .iter()
                    .map(|&(c, s, i)| Measurement::Echo(c, s, i)),
            ),
            Scenario::Fanout => measurements.extend(
                plan.fanout
                    .iter()
                    .map(|&(s, r, w, z)| Measurement::Fanout(s, r, w, z)),
            ),
            Scenario::Rooms => measurements.extend(
                plan.rooms
                    .iter()
                    .map(|&(r, m, p, z)| Measurement::Rooms(r, m, p, z, RoomsVia::Path)),
            ),
            // The path-named rooms, then the hub with one room per
            // connection (the same connections), then with k.
            Scenario::HubRooms => {
                for &(r, m, p, z, k) in &plan.hub_rooms {
                    for via in [
                        RoomsVia::Path,
                        RoomsVia::Hub { per_connection: 1 },
                        RoomsVia::Hub { per_connection: k },
                    ] {
                        measurements.push(Measurement::Rooms(r, m, p, z, via));
                    }
                }
            }
            Scenario::Capacity => {
                measurements.push(Measurement::Capacity(plan.capacity, plan.capacity_hold))
            }
            Scenario::CapacityDeflateEcho => measurements.push(Measurement::CapacityDeflate(
                scenarios::DeflateChannel::Echo,
                plan.capacity_deflate,
                plan.capacity_hold,
            )),
            Scenario::CapacityDeflateNews => measurements.push(Measurement::CapacityDeflate(
                scenarios::DeflateChannel::Broadcast,
                plan.capacity_deflate,
                plan.capacity_hold,
            )),
            Scenario::Burst => measurements.push(Measurement::Burst(plan.burst.0, plan.burst.1)),
            Scenario::Handshakes => {
                measurements.push(Measurement::Handshakes(plan.handshake_concurrency))
            }
            // On and off back to back, so that both see the same machine.
            Scenario::Compression => {
                for &conns in &plan.compression_echo {
                    measurements.push(Measurement::CompressionEcho(conns, true));
                    measurements.push(Measurement::CompressionEcho(conns, false));
                }
                for &(subs, window) in &plan.compression_fanout {
                    measurements.push(Measurement::CompressionFanout(subs, window, true));
                    measurements.push(Measurement::CompressionFanout(subs, window, false));
                }
            }
        }
    }
    // One thread: the load generator gets one core (taskset -c 1).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let records = local.block_on(&runtime, async {
        let mut records = Vec::new();
        for (index, measurement) in measurements.iter().enumerate() {
            for turn in 0..contexts.len() {
                let ctx = &contexts[(index + turn) % contexts.len()];
                let produced = match *measurement {
                    Measurement::Echo(conns, size, inflight) => {
                        vec![scenarios::echo(ctx, conns, size, inflight).await]
                    }
                    Measurement::Fanout(subs, rate, window, size) => {
                        vec![scenarios::fanout(ctx, subs, rate, window, size).await]
                    }
                    Measurement::Rooms(rooms, members, rate, size, via) => {
                        vec![scenarios::rooms(ctx, rooms, members, rate, size, via).await]
                    }
                    Measurement::Capacity(count, hold) => {
                        vec![scenarios::capacity(ctx, count, hold).await]
                    }
                    Measurement::CapacityDeflate(channel, count, hold) => {
                        scenarios::capacity_deflate(ctx, channel, count, hold).await
                    }
                    Measurement::Burst(total, wave) => {
                        vec![scenarios::burst(ctx, total, wave).await]
                    }
                    Measurement::Handshakes(concurrency) => {
                        vec![scenarios::handshakes(ctx, concurrency).await]
                    }
                    Measurement::CompressionEcho(conns, deflate) => {
                        vec![scenarios::compression_echo(ctx, conns, deflate).await]
                    }
                    Measurement::CompressionFanout(subs, window, deflate) => {
                        vec![scenarios::compression_fanout(ctx, subs, window, deflate).await]
                    }
                };
                for record in produced {
                    eprintln!(
                        "  {:<20} {:<58} {}",
                        record.server,
                        record.id,
                        summary(&record)
                    );
                    for note in &record.notes {
                        eprintln!("  {:<20}   note: {note}", "");
                    }
                    records.push(record);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        records
    });
    let json = serde_json::to_string_pretty(&records)?;
    std::fs::write(&args.out, json).with_context(|| format!("writing {}", args.out.display()))?;
    Ok(())
}

/// One run of one scenario with its parameters.
enum Measurement {
    Echo(usize, usize, usize),
    Fanout(usize, u32, u64, usize),
    Rooms(usize, usize, f64, usize, RoomsVia),
    /// (connections, hold)
    Capacity(usize, Duration),
    /// (channel, connections, hold)
    CapacityDeflate(scenarios::DeflateChannel, usize, Duration),
    /// (connections, wave)
    Burst(usize, usize),
    Handshakes(usize),
    /// (connections, deflate on)
    CompressionEcho(usize, bool),
    /// (subscribers, window, deflate on)
    CompressionFanout(usize, u64, bool),
}

/// One line for the console.
pub(crate) fn summary(record: &Record) -> String {
    let mut parts = Vec::new();
    for (name, value) in &record.metrics {
        if name.ends_with("_pct") || name.starts_with("rss_before") || name.starts_with("rss_after")
        {
            continue;
        }
        parts.push(format!("{name}={}", report::number(*value)));
    }
    let pct = |name: &str| {
        record
            .metrics
            .get(name)
            .map_or_else(|| "?".to_owned(), |v| format!("{v:.0}%"))
    };
    parts.push(format!(
        "cpu server/client/others={}/{}/{}",
        pct("server_cpu_pct"),
        pct("client_cpu_pct"),
        pct("others_cpu_pct")
    ));
    parts.join(" ")
}
