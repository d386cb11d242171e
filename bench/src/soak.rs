//! The soak: minutes of everything at once against one wsedge, watching
//! whether its resident memory and open files grow.
//!
//! - held connections with accounted traffic ([`steady`]: broadcast with
//!   numbered messages, echo, rooms);
//! - churn: connections opened and closed at a steady rate (hundreds a
//!   second), on echo (some offering permessage-deflate and sending a
//!   compressed message), on rooms that come and go, and on the broadcast
//!   channel; a third close with a close handshake, the others with a reset;
//! - now and then a slow consumer: a client that floods the echo channel
//!   and reads nothing, until the server closes it (or, under a
//!   configuration with `on_slow_consumer = "drop"`, drops what it cannot
//!   queue);
//! - a reload (SIGHUP, [`Reloader`]) every `reload_every`, alternating two
//!   configurations;
//! - the server's VmRSS and open files, every `sample_every`.
//!
//! After a warm-up the samples are fitted ([`trend`]); the verdict is that
//! neither grows. After the load, and back on the first configuration, one
//! more sample shows what the server returns to.

use std::{
    cell::{Cell, RefCell},
    fmt::Write as _,
    path::PathBuf,
    rc::Rc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde::Serialize;

use crate::{
    client::{self, Target},
    deflate::{self, Inflater},
    json, metrics, procfs,
    reloader::{Reloaded, Reloader},
    report::number,
    scenarios::{self, Context},
    steady::{self, Steady},
    trend::{self, Trend},
};

/// Distinct rooms the churning connections join: each is created and
/// removed again and again as its members come and go.
const CHURN_ROOMS: usize = 50;
/// Churning connections open at once at most; a tick beyond it is skipped
/// (counted), so that a server that stops answering cannot make the load
/// generator pile up connections.
const CHURN_IN_FLIGHT: usize = 2_000;
/// A churning connection is held for up to this long (spread evenly).
const CHURN_HOLD_MAX_MS: u64 = 1_000;
/// Bound on a churning connection's set-up and on its one exchange.
const CHURN_STEP_LIMIT: Duration = Duration::from_secs(10);
/// How often a slow consumer starts, and its first start.
const SLOW_EVERY: Duration = Duration::from_secs(30);
const SLOW_FIRST: Duration = Duration::from_secs(15);
/// A slow consumer floods with frames of this size (under every
/// configuration's `max_payload`)...
const SLOW_FRAME: usize = 16 * 1024;
/// ...until it wrote this much (far above every `send_buffer` plus the
/// kernel's socket buffers) or a write blocked this long.
const SLOW_LIMIT: usize = 48 * 1024 * 1024;
const SLOW_BLOCKED: Duration = Duration::from_secs(2);
/// Then it reads for at most this long, for the server's close.
const SLOW_READ: Duration = Duration::from_secs(10);
/// After the load, how long the server gets to finish its closes before the
/// last sample (above every configuration's `close_timeout`).
const COOL_DOWN: Duration = Duration::from_secs(10);
/// The warm-up: this share of the run, at least [`WARMUP_MIN`].
const WARMUP_SHARE: f64 = 0.2;
/// By then every kind of event has happened a few times (five slow
/// consumers, under both configurations), each raising the allocator's
/// high-water mark once: in a 5-minute soak of wsedge (bc41932) RSS rose
/// 59.6 to 64.5 MB from 60 s to 150 s and then stayed within 0.6 MB.
const WARMUP_MIN: Duration = Duration::from_secs(150);

#[derive(clap::Args)]
pub struct SoakArgs {
    /// The server: NAME,PID,URL (ws:// on loopback).
    #[arg(long, value_parser = crate::parse_target)]
    target: (String, Option<u32>, String),
    /// Its admin listener, IP:PORT (for the configuration generation and
    /// the connection count).
    #[arg(long)]
    metrics: std::net::SocketAddr,
    /// The configuration file the server runs with.
    #[arg(long)]
    config: PathBuf,
    /// The configurations to alternate (the file must hold the first now).
    #[arg(long = "alternate", required = true)]
    alternates: Vec<PathBuf>,
    /// How long to run.
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// Seconds between reloads.
    #[arg(long, default_value_t = 10)]
    reload_every: u64,
    /// Seconds between samples of memory and open files.
    #[arg(long, default_value_t = 10)]
    sample_every: u64,
    /// Churning connections opened (and closed) per second.
    #[arg(long, default_value_t = 300)]
    churn_per_s: u32,
    /// Where soak.json and soak.md go.
    #[arg(long)]
    out_dir: PathBuf,
    /// Machine description for the report.
    #[arg(long, default_value = "")]
    machine: String,
    /// The command that produced the results.
    #[arg(long, default_value = "")]
    command: String,
}

/// What the soak holds steadily: a few hundred of each kind, so that the
/// churn is a good share of the connections.
fn spec() -> steady::Spec {
    steady::Spec {
        subscribers: 500,
        deflate_subscribers: 100,
        publish_period: Duration::from_millis(100),
        echo: 200,
        echo_period: Duration::from_millis(100),
        rooms: 20,
        members: 10,
        room_period: Duration::from_secs(1),
    }
}

/// One sample of the server.
#[derive(Debug, Clone, Serialize)]
struct Sample {
    t_s: f64,
    rss_kib: Option<u64>,
    fds: Option<usize>,
    connections_active: Option<f64>,
    generation: Option<f64>,
    churn_opened: u64,
}

#[derive(Default, Serialize)]
struct Churn {
    opened: Cell<u64>,
    failed: Cell<u64>,
    first_error: RefCell<Option<String>>,
    /// Ticks skipped because CHURN_IN_FLIGHT were open.
    skipped: Cell<u64>,
    #[serde(skip)]
    in_flight: Cell<usize>,
    deflate_agreed: Cell<u64>,
    echoed: Cell<u64>,
    echo_bad: Cell<u64>,
    closed_gracefully: Cell<u64>,
    /// Close handshakes that did not complete (no close frame back in time).
    close_failed: Cell<u64>,
}

impl Churn {
    fn failed(&self, error: String) {
        self.failed.set(self.failed.get() + 1);
        self.first_error.borrow_mut().get_or_insert(error);
    }
}

#[derive(Default, Serialize)]
struct Slow {
    started: Cell<u64>,
    /// The server closed it with 1013.
    closed_1013: Cell<u64>,
    /// It ended otherwise (another code, a reset).
    closed_otherwise: Cell<u64>,
    /// Still open after the flood and the read (a drop configuration).
    still_open: Cell<u64>,
    failed_to_open: Cell<u64>,
    bytes_written: Cell<u64>,
}

#[derive(Serialize)]
struct Reloads {
    applied: u64,
    /// Refused by the server (the next tick tries again).
    refused: u64,
    failed: Option<String>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
}

#[derive(Serialize)]
struct Verdict {
    rss_flat: Option<bool>,
    fds_flat: Option<bool>,
    held_traffic_clean: bool,
    churn_clean: bool,
    reloads_clean: bool,
}

#[derive(Serialize)]
struct SoakResult<'a> {
    machine: &'a str,
    command: &'a str,
    minutes: f64,
    warmup_s: f64,
    reload_every_s: u64,
    sample_every_s: u64,
    churn_per_s: u32,
    baseline: Sample,
    samples: Vec<Sample>,
    after_load: Sample,
    rss_trend: Option<Trend>,
    fds_trend: Option<Trend>,
    steady: steady::Report,
    churn: Rc<Churn>,
    slow: Rc<Slow>,
    reloads: Reloads,
    /// From the server's /metrics over the run.
    server_slow_consumer_closes: f64,
    server_messages_dropped: f64,
    verdict: Verdict,
    notes: Vec<String>,
}

/// Runs the soak and writes soak.json and soak.md.
pub fn run(args: SoakArgs) -> anyhow::Result<()> {
    let (name, pid, url) = args.target.clone();
    let pid = pid.context("the soak needs the server's pid")?;
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
    let result = local.block_on(&runtime, soak(&args, &ctx, pid))?;
    std::fs::create_dir_all(&args.out_dir)?;
    std::fs::write(
        args.out_dir.join("soak.json"),
        serde_json::to_string_pretty(&result)?,
    )?;
    let md = markdown(&result);
    std::fs::write(args.out_dir.join("soak.md"), &md)?;
    print!("{md}");
    Ok(())
}

async fn sample(
    pid: u32,
    started: Instant,
    metrics: std::net::SocketAddr,
    churn: &Churn,
) -> Sample {
    let scraped = metrics::scrape(metrics).await.ok();
    Sample {
        t_s: started.elapsed().as_secs_f64(),
        rss_kib: procfs::rss_kib(pid),
        fds: procfs::open_fds(pid),
        connections_active: scraped
            .as_ref()
            .and_then(|s| s.get("wsedge_connections_active").copied()),
        generation: scraped
            .as_ref()
            .and_then(|s| s.get("wsedge_config_generation").copied()),
        churn_opened: churn.opened.get(),
    }
}

async fn soak<'a>(args: &'a SoakArgs, ctx: &Context, pid: u32) -> anyhow::Result<SoakResult<'a>> {
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let warmup = duration.mul_f64(WARMUP_SHARE).max(WARMUP_MIN);
    let mut notes = Vec::new();
    let mut reloader = Reloader::new(pid, &args.config, &args.alternates, args.metrics).await?;
    let churn = Rc::new(Churn::default());
    let slow = Rc::new(Slow::default());
    let started = Instant::now();
    let baseline = sample(pid, started, args.metrics, &churn).await;
    let server_before = metrics::scrape(args.metrics).await?;
    eprintln!(
        "== soak: {:.0} min, warm-up {:.0} s, reload every {} s, churn {}/s",
        args.minutes,
        warmup.as_secs_f64(),
        args.reload_every,
        args.churn_per_s
    );
    let steady = Steady::start(ctx, spec()).await?;
    eprintln!("  holding {} connections", steady.held());
    let stop = Rc::new(Cell::new(false));
    let churner = tokio::task::spawn_local(churn_loop(
        ctx.target.clone(),
        args.churn_per_s,
        churn.clone(),
        stop.clone(),
    ));
    let flooder =
        tokio::task::spawn_local(slow_loop(ctx.target.clone(), slow.clone(), stop.clone()));

    let end = started + duration;
    let mut samples = Vec::new();
    let mut sample_ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(args.sample_every),
        Duration::from_secs(args.sample_every),
    );
    // Reloads fall between samples.
    let mut reload_ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(args.reload_every) / 2,
        Duration::from_secs(args.reload_every),
    );
    let mut latencies = scenarios::histogram();
    let mut refused = 0;
    let mut reload_error = None;
    while Instant::now() < end {
        tokio::select! {
            _ = sample_ticks.tick() => {
                let s = sample(pid, started, args.metrics, &churn).await;
                eprintln!(
                    "  t={:>5.0}s rss={} KiB fds={} connections={} generation={} churned={} dropped={}",
                    s.t_s,
                    s.rss_kib.map_or("?".into(), |v| v.to_string()),
                    s.fds.map_or("?".into(), |v| v.to_string()),
                    s.connections_active.map_or("?".into(), number),
                    s.generation.map_or("?".into(), number),
                    s.churn_opened,
                    steady.dropped(),
                );
                samples.push(s);
            }
            _ = reload_ticks.tick(), if reload_error.is_none() => {
                match reloader.reload().await {
                    Ok(Reloaded::Applied(took)) => { latencies.record(took.as_nanos() as u64).ok(); }
                    Ok(Reloaded::Refused) => refused += 1,
                    Err(error) => {
                        eprintln!("  reload failed: {error:#}");
                        reload_error = Some(format!("{error:#}"));
                    }
                }
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(end)) => {}
        }
    }
    stop.set(true);
    let _ = churner.await;
    let _ = flooder.await;
    let steady = steady.stop().await;
    // Back on the first configuration, so that the last sample compares
    // with the baseline (same listeners).
    if reloader.current() != 0 && reload_error.is_none() {
        match reloader.reload_to(0).await {
            Ok(Reloaded::Applied(_)) => {}
            Ok(Reloaded::Refused) => {
                refused += 1;
                notes.push(
                    "the reload back to the first configuration was refused: the last sample is on the second"
                        .to_owned(),
                );
            }
            Err(error) => reload_error = Some(format!("{error:#}")),
        }
    }
    // Churning connections still closing.
    while churn.in_flight.get() > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(COOL_DOWN).await;
    let after_load = sample(pid, started, args.metrics, &churn).await;
    let server_after = metrics::scrape(args.metrics).await?;

    let after_warmup: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.t_s >= warmup.as_secs_f64())
        .collect();
    let fit = |value: &dyn Fn(&Sample) -> Option<f64>| {
        let points: Vec<(f64, f64)> = after_warmup
            .iter()
            .filter_map(|s| value(s).map(|v| (s.t_s, v)))
            .collect();
        trend::fit(&points)
    };
    let rss_trend = fit(&|s| s.rss_kib.map(|v| v as f64));
    let fds_trend = fit(&|s| s.fds.map(|v| v as f64));
    if rss_trend.is_none() {
        notes.push("too few samples after the warm-up for a trend: run longer".to_owned());
    }
    let quantile =
        |q: f64| (!latencies.is_empty()).then(|| latencies.value_at_quantile(q) as f64 / 1e6);
    let reloads = Reloads {
        applied: latencies.len(),
        refused,
        failed: reload_error,
        p50_ms: quantile(0.5),
        p99_ms: quantile(0.99),
        max_ms: (!latencies.is_empty()).then(|| latencies.max() as f64 / 1e6),
    };
    let churn_clean = churn.failed.get() == 0 && churn.echo_bad.get() == 0;
    let verdict = Verdict {
        rss_flat: rss_trend.as_ref().map(|t| !t.grows),
        fds_flat: fds_trend.as_ref().map(|t| !t.grows),
        held_traffic_clean: steady.clean(),
        churn_clean,
        reloads_clean: reloads.failed.is_none() && reloads.refused == 0,
    };
    let delta = |name: &str| metrics::sum(&server_after, name) - metrics::sum(&server_before, name);
    Ok(SoakResult {
        machine: &args.machine,
        command: &args.command,
        minutes: args.minutes,
        warmup_s: warmup.as_secs_f64(),
        reload_every_s: args.reload_every,
        sample_every_s: args.sample_every,
        churn_per_s: args.churn_per_s,
        baseline,
        samples,
        after_load,
        rss_trend,
        fds_trend,
        steady,
        churn,
        slow,
        reloads,
        server_slow_consumer_closes: metrics::delta(
            &server_before,
            &server_after,
            "wsedge_limits_enforced_total{reason=\"slow_consumer\"}",
        ),
        server_messages_dropped: delta("wsedge_messages_dropped_total"),
        verdict,
        notes,
    })
}

/// Opens `per_s` connections a second until `stop`, each doing one thing
/// and closing.
async fn churn_loop(target: Target, per_s: u32, churn: Rc<Churn>, stop: Rc<Cell<bool>>) {
    let texts: Rc<Vec<String>> = Rc::new(json::events(64));
    let compressed: Rc<Vec<Vec<u8>>> = Rc::new(
        texts
            .iter()
            .map(|text| {
                let mut frame = Vec::new();
                let payload = deflate::compress_message(text.as_bytes(), 6);
                client::encode_frame_with(client::OPCODE_TEXT, true, &payload, &mut frame);
                frame
            })
            .collect(),
    );
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(per_s.max(1))));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for i in 0u64.. {
        ticks.tick().await;
        if stop.get() {
            return;
        }
        if churn.in_flight.get() >= CHURN_IN_FLIGHT {
            churn.skipped.set(churn.skipped.get() + 1);
            continue;
        }
        churn.in_flight.set(churn.in_flight.get() + 1);
        let (target, churn, texts, compressed) = (
            target.clone(),
            churn.clone(),
            texts.clone(),
            compressed.clone(),
        );
        tokio::task::spawn_local(async move {
            churn_one(i, &target, &churn, &texts, &compressed).await;
            churn.in_flight.set(churn.in_flight.get() - 1);
        });
    }
}

/// One churning connection: what it does is picked by `i`.
async fn churn_one(
    i: u64,
    target: &Target,
    churn: &Churn,
    texts: &[String],
    compressed: &[Vec<u8>],
) {
    let kind = i % 4;
    let (path, offer) = match kind {
        0 => ("/echo".to_owned(), None),
        1 => ("/echo".to_owned(), Some(deflate::BROWSER_OFFER)),
        2 => (format!("/chat/churn-{}", i as usize % CHURN_ROOMS), None),
        _ => ("/news".to_owned(), None),
    };
    let mut conn =
        match tokio::time::timeout(CHURN_STEP_LIMIT, client::connect_with(target, &path, offer))
            .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(error)) => return churn.failed(format!("{path}: {error:#}")),
            Err(_) => {
                return churn.failed(format!("{path}: no upgrade within {CHURN_STEP_LIMIT:?}"));
            }
        };
    churn.opened.set(churn.opened.get() + 1);
    if conn.deflate.is_some() {
        churn.deflate_agreed.set(churn.deflate_agreed.get() + 1);
    }
    let index = i as usize % texts.len();
    let exchange = async {
        match kind {
            0 | 1 => {
                let text = texts[index].as_bytes();
                if conn.deflate.is_some() {
                    conn.write_all(&compressed[index]).await?;
                } else {
                    let mut frame = Vec::new();
                    client::encode_frame_with(client::OPCODE_TEXT, false, text, &mut frame);
                    conn.write_all(&frame).await?;
                }
                let mut inflater = conn.deflate.as_ref().map(Inflater::new);
                let mut same = None;
                while same.is_none() {
                    conn.read_frames_rsv1(|payload, rsv1| {
                        same.get_or_insert_with(|| match (rsv1, inflater.as_mut()) {
                            (false, _) => payload == text,
                            (true, Some(inflater)) => {
                                inflater.inflate(payload).is_ok_and(|got| got == text)
                            }
                            (true, None) => false,
                        });
                    })
                    .await?;
                }
                Ok::<_, std::io::Error>(same)
            }
            2 => {
                let mut frame = Vec::new();
                client::encode_frame(b"churning through", &mut frame);
                conn.write_all(&frame).await?;
                Ok(None)
            }
            _ => Ok(None),
        }
    };
    match tokio::time::timeout(CHURN_STEP_LIMIT, exchange).await {
        Ok(Ok(Some(true))) => churn.echoed.set(churn.echoed.get() + 1),
        Ok(Ok(Some(false))) => churn.echo_bad.set(churn.echo_bad.get() + 1),
        Ok(Ok(None)) => {}
        Ok(Err(error)) => return churn.failed(format!("{path} exchange: {error}")),
        Err(_) => return churn.failed(format!("{path}: no echo within {CHURN_STEP_LIMIT:?}")),
    }
    tokio::time::sleep(Duration::from_millis(i * 7_919 % CHURN_HOLD_MAX_MS)).await;
    if i % 3 == 0 {
        match tokio::time::timeout(Duration::from_secs(2), conn.close(1000)).await {
            Ok(Ok(Some(_))) => churn
                .closed_gracefully
                .set(churn.closed_gracefully.get() + 1),
            _ => churn.close_failed.set(churn.close_failed.get() + 1),
        }
    }
}

/// Starts a slow consumer every SLOW_EVERY until `stop`.
async fn slow_loop(target: Target, slow: Rc<Slow>, stop: Rc<Cell<bool>>) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + SLOW_FIRST, SLOW_EVERY);
    loop {
        ticks.tick().await;
        if stop.get() {
            return;
        }
        slow_one(&target, &slow).await;
    }
}

/// One slow consumer: floods the echo channel, reads nothing, then reads
/// for the server's close.
async fn slow_one(target: &Target, slow: &Slow) {
    slow.started.set(slow.started.get() + 1);
    let Ok(mut conn) = client::connect(target, "/echo").await else {
        slow.failed_to_open.set(slow.failed_to_open.get() + 1);
        return;
    };
    let mut frame = Vec::with_capacity(SLOW_FRAME + 14);
    client::encode_frame(&vec![0x42; SLOW_FRAME], &mut frame);
    let mut written = 0;
    while written < SLOW_LIMIT {
        match tokio::time::timeout(SLOW_BLOCKED, conn.write_all(&frame)).await {
            Ok(Ok(())) => written += frame.len(),
            // The server closed it, or stopped reading: either way, done.
            Ok(Err(_)) | Err(_) => break,
        }
    }
    slow.bytes_written
        .set(slow.bytes_written.get() + written as u64);
    let read = tokio::time::timeout(SLOW_READ, async {
        loop {
            if let Err(error) = conn.read_frames(|_| {}).await {
                return error;
            }
        }
    })
    .await;
    match (read, conn.close_code()) {
        (Ok(_), Some(1013)) => slow.closed_1013.set(slow.closed_1013.get() + 1),
        (Ok(_), _) => slow.closed_otherwise.set(slow.closed_otherwise.get() + 1),
        (Err(_), _) => slow.still_open.set(slow.still_open.get() + 1),
    }
}

fn yes_no(value: Option<bool>) -> &'static str {
    match value {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "—",
    }
}

fn opt(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_owned(), number)
}

fn trend_row(md: &mut String, what: &str, unit: &str, trend: &Option<Trend>) {
    match trend {
        Some(t) => {
            let _ = writeln!(
                md,
                "| {what} | {} | {} | {} – {} | {} {unit}/min | {} | {} | {} |",
                number(t.first),
                number(t.last),
                number(t.min),
                number(t.max),
                number(t.slope_per_min),
                number(t.growth_over_window),
                number(t.threshold),
                if t.grows { "**grows**" } else { "flat" }
            );
        }
        None => {
            let _ = writeln!(md, "| {what} | — | — | — | — | — | — | — |");
        }
    }
}

fn markdown(r: &SoakResult<'_>) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# wsedge soak\n");
    if !r.machine.is_empty() {
        let _ = writeln!(md, "Machine: {}  ", r.machine);
    }
    if !r.command.is_empty() {
        let _ = writeln!(md, "Command: `{}`  ", r.command);
    }
    let _ = writeln!(
        md,
        "Duration: {} min (warm-up {:.0} s), a reload every {} s alternating two configurations, samples every {} s, churn {} connections/s.\n",
        number(r.minutes),
        r.warmup_s,
        r.reload_every_s,
        r.sample_every_s,
        r.churn_per_s
    );
    let _ = writeln!(md, "## Verdict\n");
    let _ = writeln!(md, "| check | result |");
    let _ = writeln!(md, "|---|---|");
    let _ = writeln!(
        md,
        "| resident memory flat after the warm-up | {} |",
        yes_no(r.verdict.rss_flat)
    );
    let _ = writeln!(
        md,
        "| open files flat after the warm-up | {} |",
        yes_no(r.verdict.fds_flat)
    );
    let _ = writeln!(
        md,
        "| held connections: none dropped, no message lost, reordered or mangled | {} |",
        yes_no(Some(r.verdict.held_traffic_clean))
    );
    let _ = writeln!(
        md,
        "| churn: every connection opened and echoed | {} |",
        yes_no(Some(r.verdict.churn_clean))
    );
    let _ = writeln!(
        md,
        "| every reload applied | {} |",
        yes_no(Some(r.verdict.reloads_clean))
    );
    let _ = writeln!(md, "\n## Trend after the warm-up\n");
    let _ = writeln!(
        md,
        "Least-squares fit over the samples after the warm-up; \"grows\" when the slope carried over the window exceeds both 3 standard deviations of the samples around the line and 2% of their mean.\n"
    );
    let _ = writeln!(
        md,
        "| series | first | last | range | slope | growth over the window | threshold | verdict |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---|");
    trend_row(&mut md, "VmRSS (KiB)", "KiB", &r.rss_trend);
    trend_row(&mut md, "open files", "", &r.fds_trend);
    let show = |s: &Sample| {
        format!(
            "{} KiB, {} files",
            s.rss_kib.map_or("?".into(), |v| number(v as f64)),
            s.fds.map_or("?".into(), |v| v.to_string())
        )
    };
    let _ = writeln!(
        md,
        "\nBefore the load: {}. After the load (all closed, {:.0} s later, first configuration): {}.\n",
        show(&r.baseline),
        COOL_DOWN.as_secs_f64(),
        show(&r.after_load)
    );
    let s = &r.steady;
    let _ = writeln!(md, "## Traffic\n");
    let _ = writeln!(md, "| what | figures |");
    let _ = writeln!(md, "|---|---|");
    let _ = writeln!(
        md,
        "| held connections | {} held ({} failed to open), {} dropped{} |",
        s.held,
        s.failed_to_open,
        s.dropped,
        s.first_drop
            .as_ref()
            .map(|d| format!(" (first: {d})"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        md,
        "| broadcast, numbered | {} published to {} subscribers ({} offering deflate): {} delivered ({} compressed), {} lost, {} out of order, {} bad; latency p50 {} ms, p99 {} ms, max {} ms |",
        number(s.published as f64),
        s.spec.subscribers,
        s.spec.deflate_subscribers,
        number(s.news_received as f64),
        number(s.news_compressed as f64),
        s.news_lost,
        s.news_reordered,
        s.news_bad,
        opt(s.news_p50_ms),
        opt(s.news_p99_ms),
        opt(s.news_max_ms)
    );
    let _ = writeln!(
        md,
        "| echo | {} connections: {} round trips, {} mismatched |",
        s.spec.echo,
        number(s.echo_round_trips as f64),
        s.echo_mismatched
    );
    let _ = writeln!(
        md,
        "| rooms | {} x {}: {} sent, {} of {} expected deliveries received ({} lost) |",
        s.spec.rooms,
        s.spec.members,
        number(s.room_sent as f64),
        number(s.room_received as f64),
        number(s.room_expected as f64),
        s.room_lost
    );
    let c = &r.churn;
    let _ = writeln!(
        md,
        "| churn | {} opened ({} negotiated deflate), {} failed{}, {} skipped at the in-flight cap; {} echoes checked, {} bad; {} closed with a close handshake, {} close handshakes unanswered |",
        number(c.opened.get() as f64),
        number(c.deflate_agreed.get() as f64),
        c.failed.get(),
        c.first_error
            .borrow()
            .as_ref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
        c.skipped.get(),
        number(c.echoed.get() as f64),
        c.echo_bad.get(),
        number(c.closed_gracefully.get() as f64),
        c.close_failed.get()
    );
    let w = &r.slow;
    let _ = writeln!(
        md,
        "| slow consumers | {} started ({} MiB written): {} closed with 1013, {} ended otherwise, {} still open (a `drop` configuration), {} failed to open; server: {} slow-consumer closes, {} messages dropped |",
        w.started.get(),
        number(w.bytes_written.get() as f64 / 1_048_576.0),
        w.closed_1013.get(),
        w.closed_otherwise.get(),
        w.still_open.get(),
        w.failed_to_open.get(),
        number(r.server_slow_consumer_closes),
        number(r.server_messages_dropped)
    );
    let _ = writeln!(
        md,
        "| reloads | {} applied, {} refused{}; SIGHUP to applied p50 {} ms, p99 {} ms, max {} ms |",
        r.reloads.applied,
        r.reloads.refused,
        r.reloads
            .failed
            .as_ref()
            .map(|e| format!(", then one failed: {e}"))
            .unwrap_or_default(),
        opt(r.reloads.p50_ms),
        opt(r.reloads.p99_ms),
        opt(r.reloads.max_ms)
    );
    for note in &r.notes {
        let _ = writeln!(md, "\nNote: {note}");
    }
    let _ = writeln!(md, "\n## Samples\n");
    let _ = writeln!(
        md,
        "| t (s) | VmRSS (KiB) | open files | connections | generation | churned so far |"
    );
    let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|");
    for s in std::iter::once(&r.baseline)
        .chain(&r.samples)
        .chain(std::iter::once(&r.after_load))
    {
        let _ = writeln!(
            md,
            "| {:.0} | {} | {} | {} | {} | {} |",
            s.t_s,
            s.rss_kib.map_or("?".into(), |v| number(v as f64)),
            s.fds.map_or("?".into(), |v| v.to_string()),
            opt(s.connections_active),
            opt(s.generation),
            number(s.churn_opened as f64)
        );
    }
    md
}
