//! Reload under load: thousands of connections held, with accounted traffic
//! ([`steady`]), through a long series of reloads (SIGHUP, [`Reloader`])
//! alternating two configurations, one of which changes every setting a
//! reload applies. Every held connection is on a channel both
//! configurations keep (same name, kind and path), so none may be dropped
//! and no message may be lost, reordered or mangled.
//!
//! Each reload is confirmed (the server's configuration generation went up)
//! before the next is sent; the time from the signal to the confirmation is
//! reported. A reload the server refuses (both files are valid, so that is
//! the server's failure) is counted and sent again after [`RETRY_AFTER`],
//! at most [`RETRIES`] times in a row, so that the held traffic is still
//! carried through the number of reloads asked for. The server's resident memory and open files are read before
//! and after the reloads (an even number, so both on the first
//! configuration), and its disconnect counter over the reloads must not
//! move.

use std::{
    fmt::Write as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde::Serialize;

use crate::{
    client::Target,
    metrics, procfs,
    reloader::{Reloaded, Reloader},
    report::number,
    scenarios::{self, Context},
    steady::{self, Steady},
};

/// Pause between a confirmed reload and the next signal, so that traffic
/// flows between reloads too (a few publisher messages every ten reloads).
const RELOAD_GAP: Duration = Duration::from_millis(10);
/// After a refused reload: the pause before sending it again, and how many
/// times in a row.
const RETRY_AFTER: Duration = Duration::from_millis(100);
const RETRIES: u32 = 10;
/// How long the traffic runs before the first reload (the latency without
/// reloads is measured over it) and after the last.
const SETTLE: Duration = Duration::from_secs(5);
/// The server is sampled every this many reloads.
const SAMPLE_EVERY: u64 = 100;

#[derive(clap::Args)]
pub struct ReloadArgs {
    /// The server: NAME,PID,URL (ws:// on loopback).
    #[arg(long, value_parser = crate::parse_target)]
    target: (String, Option<u32>, String),
    /// Its admin listener, IP:PORT.
    #[arg(long)]
    metrics: std::net::SocketAddr,
    /// The configuration file the server runs with.
    #[arg(long)]
    config: PathBuf,
    /// The configurations to alternate (the file must hold the first now).
    #[arg(long = "alternate", required = true)]
    alternates: Vec<PathBuf>,
    /// Reloads to apply (even, to end on the first configuration).
    #[arg(long, default_value_t = 1_000)]
    reloads: u64,
    /// Connections to hold, at most 19,900 (the file limit).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1_100..=19_900))]
    connections: u64,
    /// Where reload.json and reload.md go.
    #[arg(long)]
    out_dir: PathBuf,
    /// Machine description for the report.
    #[arg(long, default_value = "")]
    machine: String,
    /// The command that produced the results.
    #[arg(long, default_value = "")]
    command: String,
}

/// `connections` held: 500 on echo, 50 rooms of 10, one publisher and
/// the rest subscribers of the broadcast channel (a tenth of them offering
/// permessage-deflate).
fn spec(connections: usize) -> steady::Spec {
    let (echo, rooms, members) = (500, 50, 10);
    let subscribers = connections - echo - rooms * members - 1;
    steady::Spec {
        subscribers,
        deflate_subscribers: subscribers / 10,
        publish_period: Duration::from_millis(100),
        echo,
        echo_period: Duration::from_secs(1),
        rooms,
        members,
        room_period: Duration::from_secs(2),
    }
}

/// The server after some reloads.
#[derive(Serialize)]
struct Sample {
    reloads: u64,
    t_s: f64,
    rss_kib: Option<u64>,
    fds: Option<usize>,
}

#[derive(Serialize)]
struct Server {
    rss_kib: Option<u64>,
    fds: Option<usize>,
    connections_active: Option<f64>,
}

#[derive(Serialize)]
struct ReloadResult<'a> {
    machine: &'a str,
    command: &'a str,
    requested: u64,
    applied: u64,
    /// Reloads the server refused (each sent again).
    refused: u64,
    failed: Option<String>,
    reloads_wall_s: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    /// Before the first reload, after the last (same configuration).
    before: Server,
    after: Server,
    /// `wsedge_disconnects_total` over the reloads (all codes).
    server_disconnects: f64,
    /// Every SAMPLE_EVERY reloads.
    samples: Vec<Sample>,
    /// Broadcast delivery latency before the first reload, and during the
    /// reloads.
    latency_without_reloads: steady::Latency,
    latency_during_reloads: steady::Latency,
    steady: steady::Report,
    passed: bool,
}

/// Runs the scenario and writes reload.json and reload.md.
pub fn run(args: ReloadArgs) -> anyhow::Result<()> {
    let (name, pid, url) = args.target.clone();
    let pid = pid.context("the reload scenario needs the server's pid")?;
    let ctx = Context {
        server: name,
        pid: Some(pid),
        target: Target::parse(&url)?,
        warmup: Duration::ZERO,
        duration: Duration::ZERO,
        drain: Duration::ZERO,
        connect_concurrency: 128,
        metrics: Some(args.metrics),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&runtime, reload(&args, &ctx, pid))?;
    std::fs::create_dir_all(&args.out_dir)?;
    std::fs::write(
        args.out_dir.join("reload.json"),
        serde_json::to_string_pretty(&result)?,
    )?;
    let md = markdown(&result);
    std::fs::write(args.out_dir.join("reload.md"), &md)?;
    print!("{md}");
    anyhow::ensure!(result.passed, "the reload scenario failed: see reload.md");
    Ok(())
}

async fn server(pid: u32, addr: std::net::SocketAddr) -> Server {
    Server {
        rss_kib: procfs::rss_kib(pid),
        fds: procfs::open_fds(pid),
        connections_active: metrics::scrape(addr)
            .await
            .ok()
            .and_then(|s| s.get("wsedge_connections_active").copied()),
    }
}

async fn reload<'a>(
    args: &'a ReloadArgs,
    ctx: &Context,
    pid: u32,
) -> anyhow::Result<ReloadResult<'a>> {
    let mut reloader = Reloader::new(pid, &args.config, &args.alternates, args.metrics).await?;
    let spec = spec(args.connections as usize);
    eprintln!(
        "== reload: {} connections held through {} reloads",
        spec.connections(),
        args.reloads
    );
    let steady = Steady::start(ctx, spec).await?;
    eprintln!("  holding {} connections", steady.held());
    tokio::time::sleep(SETTLE).await;
    let latency_without_reloads = steady.take_news_latency();
    let before = server(pid, args.metrics).await;
    let disconnects_before = metrics::sum(
        &metrics::scrape(args.metrics).await?,
        "wsedge_disconnects_total",
    );
    let mut latencies = scenarios::histogram();
    let mut failed = None;
    let mut refused = 0;
    let started = Instant::now();
    let mut samples = vec![Sample {
        reloads: 0,
        t_s: 0.0,
        rss_kib: before.rss_kib,
        fds: before.fds,
    }];
    'reloads: for done in 1..=args.reloads {
        let mut tries = 0;
        loop {
            match reloader.reload().await {
                Ok(Reloaded::Applied(took)) => {
                    latencies.record(took.as_nanos().max(1) as u64).ok();
                    break;
                }
                Ok(Reloaded::Refused) if tries < RETRIES => {
                    refused += 1;
                    tries += 1;
                    tokio::time::sleep(RETRY_AFTER).await;
                }
                Ok(Reloaded::Refused) => {
                    failed = Some(format!("reload {done}: refused {tries} times in a row"));
                    break 'reloads;
                }
                Err(error) => {
                    failed = Some(format!("reload {done}: {error:#}"));
                    break 'reloads;
                }
            }
        }
        if done % SAMPLE_EVERY == 0 {
            samples.push(Sample {
                reloads: done,
                t_s: started.elapsed().as_secs_f64(),
                rss_kib: procfs::rss_kib(pid),
                fds: procfs::open_fds(pid),
            });
            eprintln!(
                "  {done} reloads (generation {}), {} connections dropped so far",
                reloader.generation(),
                steady.dropped()
            );
        }
        tokio::time::sleep(RELOAD_GAP).await;
    }
    let reloads_wall = started.elapsed();
    let latency_during_reloads = steady.take_news_latency();
    tokio::time::sleep(SETTLE).await;
    let disconnects_after = metrics::sum(
        &metrics::scrape(args.metrics).await?,
        "wsedge_disconnects_total",
    );
    let after = server(pid, args.metrics).await;
    let steady = steady.stop().await;
    let applied = latencies.len();
    let quantile =
        |q: f64| (!latencies.is_empty()).then(|| latencies.value_at_quantile(q) as f64 / 1e6);
    let server_disconnects = disconnects_after - disconnects_before;
    let passed = failed.is_none()
        && refused == 0
        && applied == args.reloads
        && steady.clean()
        && steady.held == steady.spec.connections()
        && server_disconnects == 0.0;
    Ok(ReloadResult {
        machine: &args.machine,
        command: &args.command,
        requested: args.reloads,
        applied,
        refused,
        failed,
        reloads_wall_s: reloads_wall.as_secs_f64(),
        p50_ms: quantile(0.5),
        p99_ms: quantile(0.99),
        max_ms: (!latencies.is_empty()).then(|| latencies.max() as f64 / 1e6),
        before,
        after,
        server_disconnects,
        samples,
        latency_without_reloads,
        latency_during_reloads,
        steady,
        passed,
    })
}

fn opt(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_owned(), number)
}

fn markdown(r: &ReloadResult<'_>) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# wsedge reload under load\n");
    if !r.machine.is_empty() {
        let _ = writeln!(md, "Machine: {}  ", r.machine);
    }
    if !r.command.is_empty() {
        let _ = writeln!(md, "Command: `{}`  ", r.command);
    }
    let s = &r.steady;
    let _ = writeln!(
        md,
        "{} connections held through {} reloads alternating two configurations (one changes every reloadable setting), in {:.1} s. Result: **{}**.\n",
        number(s.held as f64),
        number(r.applied as f64),
        r.reloads_wall_s,
        if r.passed { "passed" } else { "failed" }
    );
    let _ = writeln!(md, "| check | measured |");
    let _ = writeln!(md, "|---|---|");
    let _ = writeln!(
        md,
        "| reloads applied | {} of {}{}; refused (and sent again): {}{} |",
        number(r.applied as f64),
        number(r.requested as f64),
        r.failed
            .as_ref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default(),
        r.refused,
        if r.refused > 0 {
            " (the server's log says why)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        md,
        "| SIGHUP to applied (generation visible in /metrics) | p50 {} ms, p99 {} ms, max {} ms |",
        opt(r.p50_ms),
        opt(r.p99_ms),
        opt(r.max_ms)
    );
    let _ = writeln!(
        md,
        "| connections dropped | {} of {} held ({} failed to open){}; server disconnects over the reloads: {} |",
        s.dropped,
        number(s.held as f64),
        s.failed_to_open,
        s.first_drop
            .as_ref()
            .map(|d| format!(", first: {d}"))
            .unwrap_or_default(),
        number(r.server_disconnects)
    );
    let _ = writeln!(
        md,
        "| broadcast `/news`, numbered | {} messages to {} subscribers ({} offering deflate): {} delivered ({} compressed), **{} lost**, {} out of order, {} bad |",
        number(s.published as f64),
        number(s.spec.subscribers as f64),
        number(s.spec.deflate_subscribers as f64),
        number(s.news_received as f64),
        number(s.news_compressed as f64),
        s.news_lost,
        s.news_reordered,
        s.news_bad,
    );
    let _ = writeln!(
        md,
        "| echo `/echo` | {} connections: {} round trips, {} mismatched |",
        s.spec.echo,
        number(s.echo_round_trips as f64),
        s.echo_mismatched
    );
    let _ = writeln!(
        md,
        "| rooms `/chat/{{room}}` | {} x {}: {} of {} expected deliveries ({} lost) |",
        s.spec.rooms,
        s.spec.members,
        number(s.room_received as f64),
        number(s.room_expected as f64),
        s.room_lost
    );
    let latency = |l: &steady::Latency| {
        format!(
            "p50 {} ms, p99 {} ms, max {} ms ({} deliveries)",
            opt(l.p50_ms),
            opt(l.p99_ms),
            opt(l.max_ms),
            number(l.deliveries as f64)
        )
    };
    let _ = writeln!(
        md,
        "| broadcast latency without reloads (the {} s before the first) / during the reloads | {} / {} |",
        SETTLE.as_secs(),
        latency(&r.latency_without_reloads),
        latency(&r.latency_during_reloads)
    );
    let show = |server: &Server| {
        format!(
            "{} KiB, {} open files, {} connections",
            server.rss_kib.map_or("?".into(), |v| number(v as f64)),
            server.fds.map_or("?".into(), |v| v.to_string()),
            opt(server.connections_active)
        )
    };
    let _ = writeln!(
        md,
        "| server before the first reload / after the last | {} / {} |",
        show(&r.before),
        show(&r.after)
    );
    let _ = writeln!(md, "\n| reloads | t (s) | VmRSS (KiB) | open files |");
    let _ = writeln!(md, "|---:|---:|---:|---:|");
    for s in &r.samples {
        let _ = writeln!(
            md,
            "| {} | {:.1} | {} | {} |",
            number(s.reloads as f64),
            s.t_s,
            s.rss_kib.map_or("?".into(), |v| number(v as f64)),
            s.fds.map_or("?".into(), |v| v.to_string())
        );
    }
    md
}
