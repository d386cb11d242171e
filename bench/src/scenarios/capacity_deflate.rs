//! Capacity with permessage-deflate: idle connections that negotiated
//! permessage-deflate, offered as browsers offer it
//! ([`deflate::BROWSER_OFFER`]), held on a freshly started server on an echo
//! channel (wsedge: dedicated mode, one compressor per connection) or on a
//! broadcast channel (shared mode: compressors pooled), then some traffic,
//! then the memory again.
//!
//! Two records per run (three on the echo channel), each the server's
//! resident memory (VmRSS) per connection:
//!
//! - idle: the growth from before the first connect to after the hold,
//!   divided by the connections held, exactly as the plain capacity
//!   scenario measures it;
//! - after one message: on the echo channel the first [`ECHO_TRAFFIC`]
//!   connections each send one compressed JSON message and inflate and
//!   check its echo; on the broadcast channel one JSON message is published
//!   to every connection, each inflating and checking it. The figure is the
//!   idle figure plus the growth over the traffic phase divided by the
//!   connections that had traffic: what a connection costs once it has
//!   carried a message;
//! - on the echo channel, the same after [`RELEASE_WAIT`] more without
//!   traffic: whether the server gives back what a dedicated compressor
//!   and inflater took once the connection is idle again.
//!
//! Then every echo connection must still echo; on the broadcast channel the
//! published message is the check.

use anyhow::Context as _;

use super::*;
use crate::{
    deflate::{self, Inflater},
    json,
};

/// Echo connections that exchange a message in the traffic phase: enough
/// for a per-connection figure, few enough that a server that keeps a
/// window-15 compressor and inflater per connection (a few hundred KiB
/// each) stays well inside the memory of a shared machine.
const ECHO_TRAFFIC: usize = 2_000;
/// zlib level of the clients' messages (zlib's default, as browsers).
const CLIENT_LEVEL: u32 = 6;
/// Distinct messages the echo connections send (in turn).
const MESSAGES: usize = 64;
/// Time the server gets after the traffic before its memory is read, as
/// after the idle hold: writers and pooled buffers settle.
const SETTLE: Duration = Duration::from_secs(1);
/// How long the echo connections stay silent after their message before the
/// last reading: longer than the 10 s after which wsedge releases an idle
/// dedicated compressor.
const RELEASE_WAIT: Duration = Duration::from_secs(15);
/// Bound on the whole traffic phase.
const TRAFFIC_LIMIT: Duration = Duration::from_secs(60);

/// Which channel the connections are held on.
#[derive(Clone, Copy, Debug)]
pub enum DeflateChannel {
    /// `/echo`: in wsedge, dedicated mode.
    Echo,
    /// `/news`: in wsedge, shared mode.
    Broadcast,
}

impl DeflateChannel {
    fn path(self) -> &'static str {
        match self {
            DeflateChannel::Echo => "/echo",
            DeflateChannel::Broadcast => "/news",
        }
    }

    /// How many connections have traffic, of `count`.
    pub fn traffic(self, count: usize) -> usize {
        match self {
            DeflateChannel::Echo => count.min(ECHO_TRAFFIC),
            DeflateChannel::Broadcast => count,
        }
    }
}

/// What the traffic phase saw.
#[derive(Default)]
struct Checked {
    /// Messages that came back (echo) or arrived (broadcast) as sent.
    ok: usize,
    /// Of those, the ones that arrived compressed.
    compressed: usize,
    /// Messages missing, late or not as sent.
    bad: usize,
    first_bad: Option<String>,
}

impl Checked {
    fn check(&mut self, result: anyhow::Result<bool>) {
        match result {
            Ok(compressed) => {
                self.ok += 1;
                self.compressed += usize::from(compressed);
            }
            Err(error) => {
                self.bad += 1;
                self.first_bad.get_or_insert_with(|| format!("{error:#}"));
            }
        }
    }
}

/// Holds `count` connections offering permessage-deflate on `channel` for
/// `hold`, then lets some carry a message; returns the idle and the
/// after-one-message records, and on the echo channel the after-idle one.
pub async fn capacity_deflate(
    ctx: &Context,
    channel: DeflateChannel,
    count: usize,
    hold: Duration,
) -> Vec<Record> {
    let path = channel.path();
    let traffic = channel.traffic(count);
    let mut idle = Record::new(
        &ctx.server,
        "capacity-deflate",
        format!("capacity-deflate {} {path} idle c={count}", ctx.transport()),
        "rss_per_conn_kib",
        false,
    );
    let mut after = Record::new(
        &ctx.server,
        "capacity-deflate",
        format!(
            "capacity-deflate {} {path} after one message c={traffic}",
            ctx.transport()
        ),
        "rss_per_conn_kib",
        false,
    );
    let mut released = Record::new(
        &ctx.server,
        "capacity-deflate",
        format!(
            "capacity-deflate {} {path} after one message and {}s idle c={traffic}",
            ctx.transport(),
            RELEASE_WAIT.as_secs()
        ),
        "rss_per_conn_kib",
        false,
    );
    for record in [&mut idle, &mut after, &mut released] {
        record
            .param("connections", count)
            .param("traffic_connections", traffic)
            .param("path", path)
            .param("offer", deflate::BROWSER_OFFER)
            .param("hold_s", hold.as_secs())
            .param("transport", ctx.transport());
    }
    let Some(pid) = ctx.pid else {
        idle.notes
            .push("no server pid: cannot read its memory".to_owned());
        return vec![idle];
    };

    let before = procfs::rss_kib(pid);
    let started = Instant::now();
    let cpu = CpuWindow::start(ctx.pid);
    let (mut conns, failures, error) = connect_many(
        ctx,
        vec![path.to_owned(); count],
        ctx.connect_concurrency,
        Some(deflate::BROWSER_OFFER),
    )
    .await;
    let elapsed = started.elapsed();
    idle.cpu(cpu.finish());
    connect_notes(&mut idle, count, conns.len(), failures, error);
    idle.metric("connect_per_s", conns.len() as f64 / elapsed.as_secs_f64());
    idle.cpu_per_op("connect_per_s");
    let agreed = conns.iter().filter(|(_, c)| c.deflate.is_some()).count();
    idle.metric("deflate_connections", agreed as f64);
    if agreed < conns.len() {
        idle.notes.push(format!(
            "only {agreed} of {} connections negotiated permessage-deflate",
            conns.len()
        ));
    }
    // Held silent, as in the plain capacity scenario.
    tokio::time::sleep(hold).await;
    let idle_rss = procfs::rss_kib(pid);
    let idle_per_conn = match (before, idle_rss) {
        (Some(before), Some(idle_rss)) if !conns.is_empty() => {
            let per_conn = idle_rss.saturating_sub(before) as f64 / conns.len() as f64;
            idle.metric("rss_before_kib", before as f64)
                .metric("rss_after_kib", idle_rss as f64)
                .metric("rss_per_conn_kib", per_conn);
            Some(per_conn)
        }
        _ => None,
    };

    let deadline = tokio::time::Instant::now() + TRAFFIC_LIMIT;
    let carriers = traffic.min(conns.len());
    let checked = match channel {
        DeflateChannel::Echo => echo_once(&mut conns[..carriers], deadline).await,
        DeflateChannel::Broadcast => match publish_once(ctx, &mut conns, deadline).await {
            Ok(checked) => checked,
            Err(error) => {
                after.notes.push(format!("the publisher failed: {error:#}"));
                Checked::default()
            }
        },
    };
    tokio::time::sleep(SETTLE).await;
    let after_rss = procfs::rss_kib(pid);
    let carried = checked.ok + checked.bad;
    after
        .metric("traffic_ok", checked.ok as f64)
        .metric("traffic_compressed", checked.compressed as f64)
        .metric("traffic_bad", checked.bad as f64);
    if let Some(first) = &checked.first_bad {
        after.notes.push(format!(
            "{} of {carried} messages did not arrive as sent; first: {first}",
            checked.bad
        ));
    }
    if checked.compressed < checked.ok {
        after.notes.push(format!(
            "only {} of {} messages arrived compressed",
            checked.compressed, checked.ok
        ));
    }
    let per_carrier = |record: &mut Record, rss: Option<u64>| {
        if let (Some(idle_per_conn), Some(idle_rss), Some(rss), true) =
            (idle_per_conn, idle_rss, rss, carried > 0)
        {
            let growth = rss.saturating_sub(idle_rss) as f64 / carried as f64;
            record
                .metric("rss_idle_kib", idle_rss as f64)
                .metric("rss_after_kib", rss as f64)
                .metric("traffic_growth_per_conn_kib", growth)
                .metric("rss_per_conn_kib", idle_per_conn + growth);
        }
    };
    per_carrier(&mut after, after_rss);
    let mut records = vec![idle, after];
    if let DeflateChannel::Echo = channel {
        tokio::time::sleep(RELEASE_WAIT).await;
        per_carrier(&mut released, procfs::rss_kib(pid));
        records.push(released);
    }

    let alive = match channel {
        DeflateChannel::Echo => echo_alive(&mut conns).await,
        DeflateChannel::Broadcast => checked.ok,
    };
    alive_notes(&mut records[0], alive, conns.len(), hold);
    drop(conns);
    records
}

/// The messages, each compressed on its own as a client frame (RSV1 set).
fn compressed_frames(texts: &[String]) -> Vec<Vec<u8>> {
    texts
        .iter()
        .map(|text| {
            let mut frame = Vec::with_capacity(text.len());
            let payload = deflate::compress_message(text.as_bytes(), CLIENT_LEVEL);
            client::encode_frame_with(client::OPCODE_TEXT, true, &payload, &mut frame);
            frame
        })
        .collect()
}

/// Inflates `payload` if it is compressed and compares it with `sent`;
/// `Ok(compressed)` when it is what was sent.
fn check_message(
    inflater: &mut Option<Inflater>,
    payload: &[u8],
    rsv1: bool,
    sent: &str,
) -> anyhow::Result<bool> {
    let text = match (rsv1, inflater) {
        (false, _) => payload,
        (true, Some(inflater)) => inflater.inflate(payload)?,
        (true, None) => anyhow::bail!("RSV1 set on a connection without permessage-deflate"),
    };
    anyhow::ensure!(
        text == sent.as_bytes(),
        "{} bytes arrived for a message of {}",
        text.len(),
        sent.len()
    );
    Ok(rsv1)
}

/// Reads one message from `conn` before `deadline` and checks it.
async fn receive_one(
    conn: &mut Conn,
    sent: &str,
    deadline: tokio::time::Instant,
) -> anyhow::Result<bool> {
    let mut inflater = conn.deflate.as_ref().map(Inflater::new);
    let mut outcome = None;
    tokio::time::timeout_at(
        deadline,
        conn.read_frames_rsv1(|payload, rsv1| {
            outcome.get_or_insert_with(|| check_message(&mut inflater, payload, rsv1, sent));
        }),
    )
    .await
    .context("no message before the deadline")??;
    outcome.context("no data frame")?
}

/// Each of `conns` sends one compressed message and checks its echo, one
/// connection after the other.
async fn echo_once(conns: &mut [(usize, Conn)], deadline: tokio::time::Instant) -> Checked {
    let texts = json::events(MESSAGES);
    let frames = compressed_frames(&texts);
    let mut checked = Checked::default();
    for (order, (_, conn)) in conns.iter_mut().enumerate() {
        let index = order % MESSAGES;
        let result = async {
            conn.write_all(&frames[index]).await?;
            receive_one(conn, &texts[index], deadline).await
        }
        .await;
        checked.check(result);
    }
    checked
}

/// Publishes one JSON message on the broadcast channel from a connection of
/// its own; every one of `conns` must receive it.
async fn publish_once(
    ctx: &Context,
    conns: &mut [(usize, Conn)],
    deadline: tokio::time::Instant,
) -> anyhow::Result<Checked> {
    let text = json::events(1).remove(0);
    let mut publisher = client::connect(&ctx.target, "/news").await?;
    // Joining completes with (wsedge) or just after (peers) the 101.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut frame = Vec::new();
    client::encode_frame_with(client::OPCODE_TEXT, false, text.as_bytes(), &mut frame);
    publisher.write_all(&frame).await?;
    let mut checked = Checked::default();
    for (_, conn) in conns.iter_mut() {
        checked.check(receive_one(conn, &text, deadline).await);
    }
    drop(publisher);
    Ok(checked)
}
