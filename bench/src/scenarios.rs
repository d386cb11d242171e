//! The scenarios. Each opens its own connections, measures for a bounded
//! time, closes everything and returns one [`Record`].
//!
//! All of them run on the load generator's single-threaded runtime (one core,
//! `taskset -c 1`), as local tasks sharing plain `Rc` state.

mod auth_handshakes;
mod burst;
mod capacity_deflate;
mod cluster;
mod compression;
mod rooms;

use std::{
    cell::{Cell, RefCell},
    net::SocketAddr,
    rc::Rc,
    sync::OnceLock,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use hyper::header::HeaderValue;
use tokio::{sync::Notify, task::JoinHandle, time::sleep_until};

pub use self::{
    auth_handshakes::{Credentials, auth_handshakes},
    burst::burst,
    capacity_deflate::{DeflateChannel, capacity_deflate},
    cluster::{Node, Setup, cluster, cluster_record, node_label},
    compression::{compression_echo, compression_fanout},
    rooms::{RoomsVia, rooms},
};
use crate::{
    client::{self, Conn, Target},
    procfs::{self, CpuUse, CpuWindow},
    record::Record,
    socketio,
};

/// Where the scenarios connect and what they report about.
pub struct Context {
    pub server: String,
    pub pid: Option<u32>,
    pub target: Target,
    pub warmup: Duration,
    pub duration: Duration,
    /// How long fan-out and rooms wait for stragglers after the last send.
    pub drain: Duration,
    /// Connections opened at once while setting up.
    pub connect_concurrency: usize,
    /// The server's admin address, whose `/metrics` the compression
    /// scenario reads (wsedge only).
    pub metrics: Option<SocketAddr>,
}

impl Context {
    fn transport(&self) -> &'static str {
        if self.target.is_tls() { "wss" } else { "ws" }
    }
}

/// Timestamps in payloads: nanoseconds since this process-wide origin.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

pub(crate) fn now_ns() -> u64 {
    origin().elapsed().as_nanos() as u64
}

pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000_000, 3).expect("valid histogram bounds")
}

fn tinstant(deadline: Instant) -> tokio::time::Instant {
    tokio::time::Instant::from_std(deadline)
}

/// Connects `paths.len()` connections, `concurrency` at a time, sending
/// `offer` as `Sec-WebSocket-Extensions` if given. Returns the connections
/// that succeeded (in no particular order), the failure count and the first
/// error.
pub(crate) async fn connect_many(
    ctx: &Context,
    paths: Vec<String>,
    concurrency: usize,
    offer: Option<&'static str>,
) -> (Vec<(usize, Conn)>, usize, Option<String>) {
    let (target, count, paths) = (Rc::new(ctx.target.clone()), paths.len(), Rc::new(paths));
    connect_each(
        count,
        concurrency,
        Rc::new(move |index: usize| {
            let (target, paths): (Rc<Target>, Rc<Vec<String>>) = (target.clone(), paths.clone());
            async move { client::connect_with(&target, &paths[index], offer).await }
        }),
    )
    .await
}

/// Opens `count` connections with `connect` (given each one's index),
/// `concurrency` at a time, each within 10 seconds. Returns the
/// connections that succeeded (in no particular order), the failure count
/// and the first error.
pub(crate) async fn connect_each<F, Fut>(
    count: usize,
    concurrency: usize,
    connect: Rc<F>,
) -> (Vec<(usize, Conn)>, usize, Option<String>)
where
    F: Fn(usize) -> Fut + 'static,
    Fut: std::future::Future<Output = anyhow::Result<Conn>> + 'static,
{
    let next = Rc::new(Cell::new(0));
    let done = Rc::new(RefCell::new(Vec::with_capacity(count)));
    let failures = Rc::new(Cell::new(0));
    let first_error = Rc::new(RefCell::new(None));
    let workers: Vec<JoinHandle<()>> = (0..concurrency.min(count))
        .map(|_| {
            let (connect, next, done, failures, first_error) = (
                connect.clone(),
                next.clone(),
                done.clone(),
                failures.clone(),
                first_error.clone(),
            );
            tokio::task::spawn_local(async move {
                loop {
                    let index = next.get();
                    if index >= count {
                        return;
                    }
                    next.set(index + 1);
                    match tokio::time::timeout(Duration::from_secs(10), connect(index)).await {
                        Ok(Ok(conn)) => done.borrow_mut().push((index, conn)),
                        result => {
                            failures.set(failures.get() + 1);
                            let error = match result {
                                Ok(Err(error)) => format!("{error:#}"),
                                _ => "connect timed out after 10s".to_owned(),
                            };
                            first_error.borrow_mut().get_or_insert(error);
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    let conns = std::mem::take(&mut *done.borrow_mut());
    let error = first_error.borrow_mut().take();
    (conns, failures.get(), error)
}

fn connect_notes(
    record: &mut Record,
    wanted: usize,
    connected: usize,
    failures: usize,
    error: Option<String>,
) {
    record.metric("connections", connected as f64);
    if failures > 0 {
        record.notes.push(format!(
            "{failures} of {wanted} connections failed; first error: {}",
            error.unwrap_or_default()
        ));
    }
}

/// Echo: `conns` connections each keep `inflight` messages of `size` bytes
/// in flight, written together in one write; the next batch goes when the
/// whole batch is back. Messages/s and round-trip latency.
pub async fn echo(ctx: &Context, conns: usize, size: usize, inflight: usize) -> Record {
    let id = format!(
        "echo {} c={conns} size={size}B inflight={inflight}",
        ctx.transport()
    );
    let mut record = Record::new(&ctx.server, "echo", id, "msgs_per_s", true);
    record
        .param("connections", conns)
        .param("size", size)
        .param("inflight", inflight)
        .param("transport", ctx.transport());
    let (opened, failures, error) = connect_many(
        ctx,
        vec!["/echo".to_owned(); conns],
        ctx.connect_concurrency,
        None,
    )
    .await;
    connect_notes(&mut record, conns, opened.len(), failures, error);
    if opened.is_empty() {
        return record;
    }

    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + ctx.warmup;
    let end = measure_from + ctx.duration;
    let hist = Rc::new(RefCell::new(histogram()));
    let completed = Rc::new(Cell::new(0u64));
    let errors = Rc::new(RefCell::new(Vec::new()));
    let payload = vec![0x5A; size];
    let tasks: Vec<JoinHandle<()>> = opened
        .into_iter()
        .map(|(_, mut conn)| {
            let mut batch = Vec::with_capacity(inflight * (size + 14));
            for _ in 0..inflight {
                client::encode_frame(&payload, &mut batch);
            }
            let (hist, completed, errors) = (hist.clone(), completed.clone(), errors.clone());
            tokio::task::spawn_local(async move {
                sleep_until(tinstant(start)).await;
                let result: std::io::Result<()> = async {
                    while Instant::now() < end {
                        let sent = Instant::now();
                        conn.write_all(&batch).await?;
                        let mut got = 0;
                        while got < inflight {
                            let n = conn.read_frames(|_| {}).await?;
                            got += n;
                            let now = Instant::now();
                            if sent >= measure_from && now <= end {
                                let nanos = (now - sent).as_nanos() as u64;
                                hist.borrow_mut().record_n(nanos.max(1), n as u64).ok();
                                completed.set(completed.get() + n as u64);
                            }
                        }
                    }
                    Ok(())
                }
                .await;
                if let Err(error) = result {
                    errors.borrow_mut().push(error.to_string());
                }
                drop(conn);
            })
        })
        .collect();
    sleep_until(tinstant(measure_from)).await;
    let cpu = CpuWindow::start(ctx.pid);
    sleep_until(tinstant(end)).await;
    record.cpu(cpu.finish());
    join_all(tasks, Duration::from_secs(5)).await;

    let hist = hist.borrow();
    record.metric(
        "msgs_per_s",
        completed.get() as f64 / ctx.duration.as_secs_f64(),
    );
    record.cpu_per_op("msgs_per_s");
    latency_metrics(&mut record, &hist, 1e3, "us", &[0.5, 0.99, 0.999]);
    error_notes(&mut record, &errors.borrow());
    record
}

/// Waits for tasks to finish, aborting those still running after `grace`.
async fn join_all(tasks: Vec<JoinHandle<()>>, grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    for task in tasks {
        let abort = task.abort_handle();
        if tokio::time::timeout_at(deadline, task).await.is_err() {
            abort.abort();
        }
    }
}

fn latency_metrics(
    record: &mut Record,
    hist: &Histogram<u64>,
    unit_ns: f64,
    unit: &str,
    quantiles: &[f64],
) {
    if hist.is_empty() {
        return;
    }
    for &quantile in quantiles {
        let name = match quantile {
            0.5 => "p50",
            0.99 => "p99",
            0.999 => "p999",
            _ => "p?",
        };
        record.metric(
            &format!("{name}_{unit}"),
            hist.value_at_quantile(quantile) as f64 / unit_ns,
        );
    }
    record.metric(&format!("max_{unit}"), hist.max() as f64 / unit_ns);
}

fn error_notes(record: &mut Record, errors: &[String]) {
    if let Some(first) = errors.first() {
        record.metric("errors", errors.len() as f64);
        record.notes.push(format!(
            "{} connections ended with an error; first: {first}",
            errors.len()
        ));
    }
}

/// Shared state of the receivers of fan-out and rooms.
pub(crate) struct Delivery {
    received: Cell<u64>,
    hist: RefCell<Histogram<u64>>,
    first_send: Cell<Option<Instant>>,
    last_receive: Cell<Option<Instant>>,
    closed: Cell<u64>,
    first_close: RefCell<Option<String>>,
}

impl Delivery {
    fn new() -> Rc<Self> {
        Rc::new(Self {
            received: Cell::new(0),
            hist: RefCell::new(histogram()),
            first_send: Cell::new(None),
            last_receive: Cell::new(None),
            closed: Cell::new(0),
            first_close: RefCell::new(None),
        })
    }

    /// Records one received message sent at `sent_ns` (when it carried
    /// its send time).
    fn receive(&self, sent_ns: Option<u64>, now_ns: u64) {
        if let Some(sent) = sent_ns {
            self.hist
                .borrow_mut()
                .record(now_ns.saturating_sub(sent).max(1))
                .ok();
        }
        self.received.set(self.received.get() + 1);
    }

    fn closed(&self, error: std::io::Error) {
        self.closed.set(self.closed.get() + 1);
        self.first_close
            .borrow_mut()
            .get_or_insert_with(|| error.to_string());
    }

    /// Waits until `expected` messages arrived, or none arrived for `drain`
    /// (at most four times `drain` in all). Returns how long it waited.
    async fn drain(&self, expected: u64, drain_for: Duration) -> Duration {
        drain(&self.received, expected, drain_for).await
    }

    fn report(&self, record: &mut Record, sent: u64, expected: u64) {
        let received = self.received.get();
        record
            .metric("sent", sent as f64)
            .metric("expected", expected as f64)
            .metric("received", received as f64);
        record.metric("lost", expected.saturating_sub(received) as f64);
        if let (Some(first), Some(last)) = (self.first_send.get(), self.last_receive.get()) {
            let seconds = (last - first).as_secs_f64().max(1e-9);
            record.metric("delivered_per_s", received as f64 / seconds);
        }
        record.cpu_per_op("delivered_per_s");
        latency_metrics(record, &self.hist.borrow(), 1e6, "ms", &[0.5, 0.99]);
        if self.closed.get() > 0 {
            record.metric("receivers_closed", self.closed.get() as f64);
            record.notes.push(format!(
                "{} receivers were disconnected; first: {}",
                self.closed.get(),
                self.first_close.borrow().clone().unwrap_or_default()
            ));
        }
    }
}

/// Waits until `received` counts `expected` messages, or it did not move
/// for `patience` (at most four times `patience` in all). Returns how long
/// it waited.
async fn drain(received: &Cell<u64>, expected: u64, patience: Duration) -> Duration {
    let started = Instant::now();
    let mut seen = received.get();
    let mut progress = started;
    while received.get() < expected
        && progress.elapsed() < patience
        && started.elapsed() < patience * 4
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if received.get() != seen {
            seen = received.get();
            progress = Instant::now();
        }
    }
    started.elapsed()
}

/// The send time of a [`timestamped_frame`]'s payload.
fn binary_stamp(payload: &[u8]) -> Option<u64> {
    let stamp = payload.get(8..16)?;
    Some(u64::from_le_bytes(stamp.try_into().expect("8 bytes")))
}

/// A message of `size` bytes (at least 16) carrying a sequence number and
/// the send time, encoded as a masked client frame.
fn timestamped_frame(seq: u64, size: usize, out: &mut Vec<u8>) {
    let mut payload = vec![0u8; size.max(16)];
    payload[..8].copy_from_slice(&seq.to_le_bytes());
    payload[8..16].copy_from_slice(&now_ns().to_le_bytes());
    out.clear();
    client::encode_frame(&payload, out);
}

/// How the load generator speaks to a server on its broadcast channel:
/// WebSocket messages on `/news` (wsedge and the peers of the main run), or
/// Socket.IO events in the default namespace (the Socket.IO peer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    WebSocket,
    SocketIo,
}

impl Wire {
    /// Opens a subscriber's (or the publisher's) connection.
    async fn connect(self, target: &Target) -> anyhow::Result<Conn> {
        match self {
            Wire::WebSocket => client::connect(target, "/news").await,
            Wire::SocketIo => socketio::connect(target).await,
        }
    }

    /// A message of about `size` bytes carrying `seq` and the send time.
    fn stamped_frame(self, seq: u64, size: usize, out: &mut Vec<u8>) {
        match self {
            Wire::WebSocket => timestamped_frame(seq, size, out),
            Wire::SocketIo => socketio::event_frame(seq, now_ns(), size, out),
        }
    }

    /// The send time of a message [`Wire::stamped_frame`] wrote.
    fn sent_ns(self, payload: &[u8]) -> Option<u64> {
        match self {
            Wire::WebSocket => binary_stamp(payload),
            Wire::SocketIo => socketio::event_stamp(payload).map(|(_, sent)| sent),
        }
    }
}

/// A fan-out to be measured: one publisher, subscribers spread over one or
/// more servers (the nodes of a cluster, or one server).
pub(crate) struct FanoutPlan<'a> {
    pub wire: Wire,
    /// Where the publisher connects.
    pub publisher: &'a Target,
    /// Each server and how many subscribers connect to it.
    pub groups: &'a [(Target, usize)],
    /// Messages a second; 0: saturate (see [`fanout`]).
    pub rate: u32,
    pub window: u64,
    pub size: usize,
    pub duration: Duration,
    pub drain: Duration,
    pub connect_concurrency: usize,
    /// The processes whose CPU time is measured over the run.
    pub pids: &'a [Option<u32>],
}

/// The subscribers of one server in a [`FanoutPlan`].
pub(crate) struct FanoutGroup {
    pub wanted: usize,
    pub connected: u64,
    pub failures: usize,
    pub first_error: Option<String>,
    pub delivery: Rc<Delivery>,
}

/// What a measured fan-out sent, and what the processes spent.
pub(crate) struct FanoutRun {
    pub sent: u64,
    /// Each process of [`FanoutPlan::pids`], in percent of a core.
    pub each_cpu: Vec<Option<f64>>,
    pub cpu: CpuUse,
    /// The CPU window: from the first send to the end of the drain.
    pub window: Duration,
    pub drained: Duration,
}

pub(crate) struct FanoutOutcome {
    pub groups: Vec<FanoutGroup>,
    /// `None` when nothing could be measured (see `notes`).
    pub run: Option<FanoutRun>,
    pub notes: Vec<String>,
}

/// Connects every group's subscribers and the publisher, then publishes
/// at the plan's rate (or saturating, with the window counted over all
/// subscribers) for its duration, and waits for the stragglers.
pub(crate) async fn fan_out(plan: &FanoutPlan<'_>) -> FanoutOutcome {
    let wire = plan.wire;
    let mut groups = Vec::with_capacity(plan.groups.len());
    let mut subscribers = Vec::new();
    for (target, count) in plan.groups {
        let target = Rc::new(target.clone());
        let (subs, failures, first_error) = connect_each(
            *count,
            plan.connect_concurrency,
            Rc::new(move |_| {
                let target = target.clone();
                async move { wire.connect(&target).await }
            }),
        )
        .await;
        let delivery = Delivery::new();
        groups.push(FanoutGroup {
            wanted: *count,
            connected: subs.len() as u64,
            failures,
            first_error,
            delivery: delivery.clone(),
        });
        subscribers.extend(subs.into_iter().map(|(_, conn)| (conn, delivery.clone())));
    }
    let mut notes = Vec::new();
    let mut publisher = match wire.connect(plan.publisher).await {
        Ok(conn) => conn,
        Err(error) => {
            notes.push(format!("publisher could not connect: {error:#}"));
            return FanoutOutcome {
                groups,
                run: None,
                notes,
            };
        }
    };
    let receivers = subscribers.len() as u64;
    if receivers == 0 {
        return FanoutOutcome {
            groups,
            run: None,
            notes,
        };
    }
    // Joining completes with (wsedge) or just after (peers) the 101; a
    // cluster node subscribes in Redis tens of milliseconds after its
    // first member.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (rate, window) = (plan.rate, plan.window);
    let received = Rc::new(Cell::new(0u64));
    let sent = Rc::new(Cell::new(0u64));
    let waiting = Rc::new(Notify::new());
    let tasks: Vec<JoinHandle<()>> = subscribers
        .into_iter()
        .map(|(mut conn, delivery)| {
            let (received, sent, waiting) = (received.clone(), sent.clone(), waiting.clone());
            tokio::task::spawn_local(async move {
                loop {
                    match conn
                        .read_frames(|payload| {
                            delivery.receive(wire.sent_ns(payload), now_ns());
                            received.set(received.get() + 1);
                        })
                        .await
                    {
                        Ok(_) => {
                            delivery.last_receive.set(Some(Instant::now()));
                            if rate == 0
                                && sent.get() * receivers - received.get() <= window * receivers
                            {
                                waiting.notify_one();
                            }
                        }
                        Err(error) => {
                            delivery.closed(error);
                            return;
                        }
                    }
                }
            })
        })
        .collect();

    let end = Instant::now() + plan.duration;
    let cpu_started = Instant::now();
    let cpu = CpuWindow::start_all(plan.pids);
    for group in &groups {
        group.delivery.first_send.set(Some(Instant::now()));
    }
    let mut frame = Vec::new();
    let mut ticks = (rate > 0).then(|| {
        let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        interval
    });
    let publish_error = loop {
        if Instant::now() >= end {
            break None;
        }
        match &mut ticks {
            Some(interval) => {
                if tokio::time::timeout_at(tinstant(end), interval.tick())
                    .await
                    .is_err()
                {
                    break None;
                }
            }
            None => {
                while sent.get() * receivers - received.get().min(sent.get() * receivers)
                    > window * receivers
                    && Instant::now() < end
                {
                    let _ =
                        tokio::time::timeout(Duration::from_millis(50), waiting.notified()).await;
                }
                if Instant::now() >= end {
                    break None;
                }
            }
        }
        wire.stamped_frame(sent.get(), plan.size, &mut frame);
        if let Err(error) = publisher.write_all(&frame).await {
            break Some(error);
        }
        sent.set(sent.get() + 1);
    };
    if let Some(error) = publish_error {
        notes.push(format!("publisher failed: {error}"));
    }
    let drained = drain(&received, sent.get() * receivers, plan.drain).await;
    let (each_cpu, cpu) = cpu.finish_all();
    let window = cpu_started.elapsed();
    for task in &tasks {
        task.abort();
    }
    join_all(tasks, Duration::from_secs(1)).await;
    drop(publisher);
    FanoutOutcome {
        groups,
        run: Some(FanoutRun {
            sent: sent.get(),
            each_cpu,
            cpu,
            window,
            drained,
        }),
        notes,
    }
}

/// Fan-out: one publisher, `subscribers` receivers on the broadcast channel.
/// With `rate` > 0 the publisher sends `rate` messages a second; with `rate`
/// 0 it sends as fast as the subscribers receive, keeping at most `window`
/// messages per subscriber undelivered (the channel's saturation point).
pub async fn fanout(
    ctx: &Context,
    subscribers: usize,
    rate: u32,
    window: u64,
    size: usize,
) -> Record {
    let mode = if rate > 0 {
        format!("rate={rate}/s")
    } else {
        format!("saturate window={window}")
    };
    let id = format!(
        "fanout {} subs={subscribers} {mode} size={size}B",
        ctx.transport()
    );
    let headline = if rate > 0 {
        "p99_ms"
    } else {
        "delivered_per_s"
    };
    let mut record = Record::new(&ctx.server, "fanout", id, headline, rate == 0);
    record
        .param("subscribers", subscribers)
        .param("rate", rate)
        .param("window", window)
        .param("size", size);
    let outcome = fan_out(&FanoutPlan {
        wire: Wire::WebSocket,
        publisher: &ctx.target,
        groups: &[(ctx.target.clone(), subscribers)],
        rate,
        window,
        size,
        duration: ctx.duration,
        drain: ctx.drain,
        connect_concurrency: ctx.connect_concurrency,
        pids: &[ctx.pid],
    })
    .await;
    let group = &outcome.groups[0];
    connect_notes(
        &mut record,
        subscribers,
        group.connected as usize,
        group.failures,
        group.first_error.clone(),
    );
    record.notes.extend(outcome.notes);
    if let Some(run) = outcome.run {
        record.metric("drain_ms", run.drained.as_secs_f64() * 1e3);
        record.cpu(run.cpu);
        group
            .delivery
            .report(&mut record, run.sent, run.sent * group.connected);
    }
    record
}

/// Capacity: holds `count` idle connections on the echo channel of a freshly
/// started server for `hold`, reports how much the server's resident memory
/// grew per connection, then checks that every connection still echoes.
pub async fn capacity(ctx: &Context, count: usize, hold: Duration) -> Record {
    let id = format!("capacity {} idle c={count}", ctx.transport());
    let mut record = Record::new(&ctx.server, "capacity", id, "rss_per_conn_kib", false);
    record
        .param("connections", count)
        .param("hold_s", hold.as_secs())
        .param("transport", ctx.transport());
    let Some(pid) = ctx.pid else {
        record
            .notes
            .push("no server pid: cannot read its memory".to_owned());
        return record;
    };
    let before = procfs::rss_kib(pid);
    let started = Instant::now();
    let cpu = CpuWindow::start(ctx.pid);
    let (mut conns, failures, error) = connect_many(
        ctx,
        vec!["/echo".to_owned(); count],
        ctx.connect_concurrency,
        None,
    )
    .await;
    let elapsed = started.elapsed();
    record.cpu(cpu.finish());
    connect_notes(&mut record, count, conns.len(), failures, error);
    record.metric("connect_per_s", conns.len() as f64 / elapsed.as_secs_f64());
    record.cpu_per_op("connect_per_s");
    // Hold them idle (the server pings them; the client answers pongs as it
    // reads at the end), letting the server settle after the last upgrades.
    tokio::time::sleep(hold).await;
    let after = procfs::rss_kib(pid);
    if let (Some(before), Some(after)) = (before, after) {
        record
            .metric("rss_before_kib", before as f64)
            .metric("rss_after_kib", after as f64);
        if !conns.is_empty() {
            record.metric(
                "rss_per_conn_kib",
                after.saturating_sub(before) as f64 / conns.len() as f64,
            );
        }
    }
    let alive = echo_alive(&mut conns).await;
    alive_notes(&mut record, alive, conns.len(), hold);
    drop(conns);
    record
}

/// How many of `conns` (on an echo channel) echo one small message, each
/// within 2 seconds.
async fn echo_alive(conns: &mut [(usize, Conn)]) -> usize {
    let mut frame = Vec::new();
    client::encode_frame(b"still there?", &mut frame);
    let mut alive = 0;
    for (_, conn) in conns.iter_mut() {
        let round_trip = async {
            conn.write_all(&frame).await?;
            conn.read_frames(|_| {}).await
        };
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), round_trip).await {
            alive += 1;
        }
    }
    alive
}

/// Records how many of `held` connections were still alive after `hold`.
fn alive_notes(record: &mut Record, alive: usize, held: usize, hold: Duration) {
    record
        .metric("alive_after_hold", alive as f64)
        .metric("dropped_during_hold", (held - alive) as f64);
    if alive < held {
        record.notes.push(format!(
            "only {alive} of {held} idle connections were still alive after {hold:?}"
        ));
    }
}

/// Handshakes: `concurrency` workers each connect, upgrade and drop (RST)
/// in a loop. New connections per second and set-up latency.
pub async fn handshakes(ctx: &Context, concurrency: usize) -> Record {
    let id = format!("handshakes {} concurrency={concurrency}", ctx.transport());
    let mut record = Record::new(&ctx.server, "handshakes", id, "handshakes_per_s", true);
    record
        .param("concurrency", concurrency)
        .param("transport", ctx.transport());
    handshake_loop(ctx, concurrency, "/echo", None, &mut record).await;
    record
}

/// The handshake loop of [`handshakes`] and [`auth_handshakes`]:
/// `concurrency` workers connect to `path`, upgrade and drop (RST) until
/// the end of the window, each upgrade with the next token of `tokens`
/// (as `Authorization`) if given, the pool cycled in order. Fills in the
/// rate, the server CPU per handshake, latencies and errors, and returns
/// how many upgrades succeeded, warm-up and stragglers included.
pub(crate) async fn handshake_loop(
    ctx: &Context,
    concurrency: usize,
    path: &'static str,
    tokens: Option<Rc<[HeaderValue]>>,
    record: &mut Record,
) -> u64 {
    let start = Instant::now() + Duration::from_millis(20);
    let measure_from = start + ctx.warmup;
    let end = measure_from + ctx.duration;
    let hist = Rc::new(RefCell::new(histogram()));
    let completed = Rc::new(Cell::new(0u64));
    let upgraded = Rc::new(Cell::new(0u64));
    let next_token = Rc::new(Cell::new(0usize));
    let errors = Rc::new(RefCell::new(Vec::new()));
    let tasks: Vec<JoinHandle<()>> = (0..concurrency)
        .map(|_| {
            let (hist, completed, upgraded, next_token, tokens, errors, target) = (
                hist.clone(),
                completed.clone(),
                upgraded.clone(),
                next_token.clone(),
                tokens.clone(),
                errors.clone(),
                ctx.target.clone(),
            );
            tokio::task::spawn_local(async move {
                sleep_until(tinstant(start)).await;
                while Instant::now() < end {
                    let token = tokens.as_ref().map(|tokens| {
                        let index = next_token.get();
                        next_token.set((index + 1) % tokens.len());
                        &tokens[index]
                    });
                    let began = Instant::now();
                    let connect = async {
                        match token {
                            Some(token) => client::connect_authorized(&target, path, token).await,
                            None => client::connect(&target, path).await,
                        }
                    };
                    match tokio::time::timeout(Duration::from_secs(10), connect).await {
                        Ok(Ok(conn)) => {
                            let now = Instant::now();
                            upgraded.set(upgraded.get() + 1);
                            if began >= measure_from && now <= end {
                                hist.borrow_mut()
                                    .record((now - began).as_nanos() as u64)
                                    .ok();
                                completed.set(completed.get() + 1);
                            }
                            drop(conn);
                        }
                        Ok(Err(error)) => errors.borrow_mut().push(format!("{error:#}")),
                        Err(_) => errors
                            .borrow_mut()
                            .push("handshake timed out after 10s".to_owned()),
                    }
                }
            })
        })
        .collect();
    sleep_until(tinstant(measure_from)).await;
    let cpu = CpuWindow::start(ctx.pid);
    sleep_until(tinstant(end)).await;
    record.cpu(cpu.finish());
    join_all(tasks, Duration::from_secs(11)).await;
    record.metric(
        "handshakes_per_s",
        completed.get() as f64 / ctx.duration.as_secs_f64(),
    );
    record.cpu_per_op("handshakes_per_s");
    latency_metrics(record, &hist.borrow(), 1e3, "us", &[0.5, 0.99]);
    error_notes(record, &errors.borrow());
    upgraded.get()
}
