//! Connections held for minutes, each carrying traffic in which every
//! message is accounted for: the part of the soak and reload scenarios that
//! must come through untouched.
//!
//! - `/news` (broadcast): one publisher sends numbered messages at a fixed
//!   rate; every subscriber checks that the numbers arrive in order without
//!   a gap. Some subscribers offer permessage-deflate as browsers do, so
//!   that compressed deliveries cross the reloads too. The messages are
//!   about 600 bytes, above every compression threshold the scenarios'
//!   configurations set.
//! - `/echo`: each connection sends a numbered message at a fixed interval
//!   and checks that the same bytes come back.
//! - `/chat/steady-N` (rooms): every member sends numbered messages; each
//!   member counts the messages of the others (its own, which a channel
//!   with `echo_to_sender` returns, are ignored) against what was sent.
//!
//! A held connection that ends (a close frame, a reset, the end of the
//! stream) before [`Steady::stop`] is a dropped connection.

use std::{
    cell::{Cell, RefCell},
    rc::Rc,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::{
    client::{self, Conn},
    deflate::{self, Inflater},
    json,
    scenarios::{self, Context},
};

/// Each publisher message: sequence number, send time, then JSON up to
/// about this size.
const NEWS_MESSAGE_BYTES: usize = 600;
/// Each room message: member id (u32), its sequence number (u32), padding.
const ROOM_MESSAGE_BYTES: usize = 32;
/// How long `stop` waits for the last messages (at most four times this
/// when they keep arriving).
const DRAIN: Duration = Duration::from_secs(3);

/// What to hold.
#[derive(Debug, Clone, Serialize)]
pub struct Spec {
    /// Subscribers of `/news` (the publisher comes on top).
    pub subscribers: usize,
    /// Of those, how many offer permessage-deflate.
    pub deflate_subscribers: usize,
    pub publish_period: Duration,
    /// Connections on `/echo`.
    pub echo: usize,
    pub echo_period: Duration,
    pub rooms: usize,
    pub members: usize,
    /// How often each member sends.
    pub room_period: Duration,
}

impl Spec {
    /// Connections held in all.
    pub fn connections(&self) -> usize {
        self.subscribers + 1 + self.echo + self.rooms * self.members
    }
}

/// Counters shared by the tasks (one thread: plain cells).
#[derive(Default)]
struct Tally {
    stopping: Cell<bool>,
    dropped: Cell<u64>,
    first_drop: RefCell<Option<String>>,
    published: Cell<u64>,
    news_received: Cell<u64>,
    news_compressed: Cell<u64>,
    /// Messages a subscriber skipped (the next one it saw had a higher
    /// number).
    news_gaps: Cell<u64>,
    /// Messages that arrived with a number already seen or passed.
    news_reordered: Cell<u64>,
    news_bad: Cell<u64>,
    first_bad: RefCell<Option<String>>,
    news_latency: RefCell<Option<Histogram<u64>>>,
    echo_ok: Cell<u64>,
    echo_mismatched: Cell<u64>,
    room_sent: Cell<u64>,
    room_expected: Cell<u64>,
    room_received: Cell<u64>,
}

impl Tally {
    fn dropped(&self, what: &str, error: &dyn std::fmt::Display) {
        if self.stopping.get() {
            return;
        }
        self.dropped.set(self.dropped.get() + 1);
        self.first_drop
            .borrow_mut()
            .get_or_insert_with(|| format!("{what}: {error}"));
    }

    fn bad(&self, why: String) {
        self.news_bad.set(self.news_bad.get() + 1);
        self.first_bad.borrow_mut().get_or_insert(why);
    }
}

/// What the held connections saw, from start to [`Steady::stop`].
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub spec: Spec,
    /// Connections opened and held.
    pub held: usize,
    /// Connections that could not be opened.
    pub failed_to_open: usize,
    /// Held connections that ended before the stop.
    pub dropped: u64,
    pub first_drop: Option<String>,
    pub published: u64,
    pub news_received: u64,
    pub news_compressed: u64,
    /// Messages a live subscriber never received: gaps plus the tail it
    /// was missing after the drain.
    pub news_lost: u64,
    pub news_reordered: u64,
    /// Messages that did not inflate or parse.
    pub news_bad: u64,
    pub first_bad: Option<String>,
    pub news_p50_ms: Option<f64>,
    pub news_p99_ms: Option<f64>,
    pub news_max_ms: Option<f64>,
    pub echo_round_trips: u64,
    pub echo_mismatched: u64,
    pub room_sent: u64,
    pub room_expected: u64,
    pub room_received: u64,
    pub room_lost: u64,
}

impl Report {
    /// Nothing dropped, lost, reordered or mangled.
    pub fn clean(&self) -> bool {
        self.failed_to_open == 0
            && self.dropped == 0
            && self.news_lost == 0
            && self.news_reordered == 0
            && self.news_bad == 0
            && self.echo_mismatched == 0
            && self.room_lost == 0
    }
}

/// Broadcast delivery latency over a window.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub deliveries: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl Latency {
    fn of(histogram: &Histogram<u64>) -> Self {
        let at =
            |q: f64| (!histogram.is_empty()).then(|| histogram.value_at_quantile(q) as f64 / 1e6);
        Self {
            deliveries: histogram.len(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: (!histogram.is_empty()).then(|| histogram.max() as f64 / 1e6),
        }
    }
}

/// The held connections and their tasks.
pub struct Steady {
    spec: Spec,
    tally: Rc<Tally>,
    /// Each live subscriber's next expected number.
    next: Vec<Rc<Cell<u64>>>,
    tasks: Vec<JoinHandle<()>>,
    held: usize,
    failed_to_open: usize,
}

impl Steady {
    /// Opens every connection and starts the traffic.
    pub async fn start(ctx: &Context, spec: Spec) -> anyhow::Result<Self> {
        let tally = Rc::new(Tally::default());
        *tally.news_latency.borrow_mut() = Some(scenarios::histogram());
        let plain = spec.subscribers - spec.deflate_subscribers.min(spec.subscribers);
        let concurrency = ctx.connect_concurrency;
        let (mut subs, mut failed, _) =
            scenarios::connect_many(ctx, vec!["/news".to_owned(); plain], concurrency, None).await;
        let (deflated, failures, _) = scenarios::connect_many(
            ctx,
            vec!["/news".to_owned(); spec.subscribers - plain],
            concurrency,
            Some(deflate::BROWSER_OFFER),
        )
        .await;
        failed += failures;
        subs.extend(deflated);
        let (echo, failures, _) =
            scenarios::connect_many(ctx, vec!["/echo".to_owned(); spec.echo], concurrency, None)
                .await;
        failed += failures;
        let paths = (0..spec.rooms * spec.members)
            .map(|i| format!("/chat/steady-{}", i % spec.rooms.max(1)))
            .collect();
        let (members, failures, error) =
            scenarios::connect_many(ctx, paths, concurrency, None).await;
        failed += failures;
        if failed > 0 {
            eprintln!(
                "  {failed} held connections could not be opened{}",
                error.map(|e| format!("; e.g. {e}")).unwrap_or_default()
            );
        }
        let publisher = client::connect(&ctx.target, "/news").await?;
        // Joining completes with the 101; give the last joins a moment.
        tokio::time::sleep(Duration::from_millis(200)).await;

        let held = subs.len() + echo.len() + members.len() + 1;
        let mut tasks = Vec::with_capacity(held);
        let mut next = Vec::with_capacity(subs.len());
        for (_, conn) in subs {
            let cell = Rc::new(Cell::new(0));
            next.push(cell.clone());
            tasks.push(tokio::task::spawn_local(subscribe(
                conn,
                cell,
                tally.clone(),
            )));
        }
        tasks.push(tokio::task::spawn_local(publish(
            publisher,
            spec.publish_period,
            tally.clone(),
        )));
        let echo_count = echo.len();
        for (order, (id, conn)) in echo.into_iter().enumerate() {
            let offset = spec.echo_period.mul_f64(order as f64 / echo_count as f64);
            tasks.push(tokio::task::spawn_local(echo_loop(
                conn,
                id as u64,
                spec.echo_period,
                offset,
                tally.clone(),
            )));
        }
        let mut per_room = vec![0u64; spec.rooms.max(1)];
        for (index, _) in &members {
            per_room[index % spec.rooms.max(1)] += 1;
        }
        let member_count = members.len();
        for (order, (index, conn)) in members.into_iter().enumerate() {
            let recipients = per_room[index % spec.rooms.max(1)].saturating_sub(1);
            let offset = spec.room_period.mul_f64(order as f64 / member_count as f64);
            tasks.push(tokio::task::spawn_local(member(
                conn,
                index as u32,
                recipients,
                spec.room_period,
                offset,
                tally.clone(),
            )));
        }
        Ok(Self {
            spec,
            tally,
            next,
            tasks,
            held,
            failed_to_open: failed,
        })
    }

    /// Held connections that ended so far.
    pub fn dropped(&self) -> u64 {
        self.tally.dropped.get()
    }

    /// Connections opened and held.
    pub fn held(&self) -> usize {
        self.held
    }

    /// The broadcast delivery latency since the start or the last call;
    /// starts a new window.
    pub fn take_news_latency(&self) -> Latency {
        let mut histogram = self.tally.news_latency.borrow_mut();
        let latency = histogram.as_ref().map(Latency::of);
        *histogram = Some(scenarios::histogram());
        latency.expect("the histogram is set at the start")
    }

    /// Stops sending, waits for the last messages, closes everything and
    /// says what happened.
    pub async fn stop(self) -> Report {
        let tally = &self.tally;
        // Senders stop at their next tick; what they sent before counts.
        tally.stopping.set(true);
        // Wait until every subscriber has the last number and every room
        // message arrived, or nothing arrives for DRAIN.
        let done = |this: &Self| {
            let published = this.tally.published.get();
            this.next.iter().all(|n| n.get() >= published)
                && this.tally.room_received.get() >= this.tally.room_expected.get()
        };
        let started = Instant::now();
        let mut progress = Instant::now();
        let mut seen = (tally.news_received.get(), tally.room_received.get());
        while !done(&self) && progress.elapsed() < DRAIN && started.elapsed() < DRAIN * 4 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let now = (tally.news_received.get(), tally.room_received.get());
            if now != seen {
                seen = now;
                progress = Instant::now();
            }
        }
        for task in &self.tasks {
            task.abort();
        }
        let published = tally.published.get();
        let tail: u64 = self
            .next
            .iter()
            .map(|n| published.saturating_sub(n.get()))
            .sum();
        let histogram = tally.news_latency.borrow();
        let quantile = |q: f64| {
            histogram
                .as_ref()
                .filter(|h| !h.is_empty())
                .map(|h| h.value_at_quantile(q) as f64 / 1e6)
        };
        Report {
            spec: self.spec.clone(),
            held: self.held,
            failed_to_open: self.failed_to_open,
            dropped: tally.dropped.get(),
            first_drop: tally.first_drop.borrow().clone(),
            published,
            news_received: tally.news_received.get(),
            news_compressed: tally.news_compressed.get(),
            news_lost: tally.news_gaps.get() + tail,
            news_reordered: tally.news_reordered.get(),
            news_bad: tally.news_bad.get(),
            first_bad: tally.first_bad.borrow().clone(),
            news_p50_ms: quantile(0.5),
            news_p99_ms: quantile(0.99),
            news_max_ms: histogram
                .as_ref()
                .filter(|h| !h.is_empty())
                .map(|h| h.max() as f64 / 1e6),
            echo_round_trips: tally.echo_ok.get(),
            echo_mismatched: tally.echo_mismatched.get(),
            room_sent: tally.room_sent.get(),
            room_expected: tally.room_expected.get(),
            room_received: tally.room_received.get(),
            room_lost: tally
                .room_expected
                .get()
                .saturating_sub(tally.room_received.get()),
        }
    }
}

/// One news message: number, send time, JSON filler.
fn news_frame(seq: u64, filler: &[u8], out: &mut Vec<u8>) {
    let mut payload = Vec::with_capacity(16 + filler.len());
    payload.extend_from_slice(&seq.to_le_bytes());
    payload.extend_from_slice(&scenarios::now_ns().to_le_bytes());
    payload.extend_from_slice(filler);
    out.clear();
    client::encode_frame(&payload, out);
}

/// The publisher: a numbered message every `period`. It also reads, since
/// a configuration with `echo_to_sender` sends it its own messages.
async fn publish(mut conn: Conn, period: Duration, tally: Rc<Tally>) {
    let mut filler = json::events(1).remove(0).into_bytes();
    filler.truncate(NEWS_MESSAGE_BYTES - 16);
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut frame = Vec::new();
    loop {
        tokio::select! {
            read = conn.read_frames(|_| {}) => if let Err(error) = read {
                tally.dropped("publisher", &error);
                return;
            },
            _ = ticks.tick() => {
                if tally.stopping.get() {
                    continue;
                }
                news_frame(tally.published.get(), &filler, &mut frame);
                if let Err(error) = conn.write_all(&frame).await {
                    tally.dropped("publisher", &error);
                    return;
                }
                tally.published.set(tally.published.get() + 1);
            }
        }
    }
}

/// A subscriber: checks every number, in order.
async fn subscribe(mut conn: Conn, next: Rc<Cell<u64>>, tally: Rc<Tally>) {
    let mut inflater = conn.deflate.as_ref().map(Inflater::new);
    loop {
        let read = conn
            .read_frames_rsv1(|payload, rsv1| {
                let payload = match (rsv1, inflater.as_mut()) {
                    (false, _) => payload,
                    (true, Some(inflater)) => match inflater.inflate(payload) {
                        Ok(payload) => payload,
                        Err(error) => return tally.bad(format!("did not inflate: {error}")),
                    },
                    (true, None) => return tally.bad("RSV1 without deflate".to_owned()),
                };
                let (Some(seq), Some(sent)) = (read_u64(payload, 0), read_u64(payload, 8)) else {
                    return tally.bad(format!("a message of {} bytes", payload.len()));
                };
                tally.news_received.set(tally.news_received.get() + 1);
                if rsv1 {
                    tally.news_compressed.set(tally.news_compressed.get() + 1);
                }
                if let Some(histogram) = tally.news_latency.borrow_mut().as_mut() {
                    histogram
                        .record(scenarios::now_ns().saturating_sub(sent).max(1))
                        .ok();
                }
                let expected = next.get();
                if seq >= expected {
                    tally.news_gaps.set(tally.news_gaps.get() + seq - expected);
                    next.set(seq + 1);
                } else {
                    tally.news_reordered.set(tally.news_reordered.get() + 1);
                }
            })
            .await;
        if let Err(error) = read {
            tally.dropped("subscriber", &error);
            // What it missed from now on is counted as a drop, not a loss.
            next.set(u64::MAX);
            return;
        }
    }
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// An echo connection: a numbered message every `period`, checked when it
/// comes back.
async fn echo_loop(mut conn: Conn, id: u64, period: Duration, offset: Duration, tally: Rc<Tally>) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut frame = Vec::new();
    for seq in 0u64.. {
        ticks.tick().await;
        if tally.stopping.get() {
            return;
        }
        let mut payload = [0u8; 16];
        payload[..8].copy_from_slice(&id.to_le_bytes());
        payload[8..].copy_from_slice(&seq.to_le_bytes());
        frame.clear();
        client::encode_frame(&payload, &mut frame);
        let mut echoed = None;
        let result = async {
            conn.write_all(&frame).await?;
            while echoed.is_none() {
                conn.read_frames(|got| {
                    echoed.get_or_insert(got == payload);
                })
                .await?;
            }
            Ok::<_, std::io::Error>(())
        }
        .await;
        match (result, echoed) {
            (Err(error), _) => {
                tally.dropped("echo", &error);
                return;
            }
            (Ok(()), Some(true)) => tally.echo_ok.set(tally.echo_ok.get() + 1),
            (Ok(()), _) => tally.echo_mismatched.set(tally.echo_mismatched.get() + 1),
        }
    }
}

/// A room member: sends every `period`, counts what the others send.
async fn member(
    mut conn: Conn,
    id: u32,
    recipients: u64,
    period: Duration,
    offset: Duration,
    tally: Rc<Tally>,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut frame = Vec::new();
    let mut seq = 0u32;
    loop {
        tokio::select! {
            read = conn.read_frames(|payload| {
                let from = payload.get(..4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
                if from != Some(id) {
                    tally.room_received.set(tally.room_received.get() + 1);
                }
            }) => if let Err(error) = read {
                tally.dropped("room member", &error);
                return;
            },
            _ = ticks.tick() => {
                if tally.stopping.get() {
                    continue;
                }
                let mut payload = [0u8; ROOM_MESSAGE_BYTES];
                payload[..4].copy_from_slice(&id.to_le_bytes());
                payload[4..8].copy_from_slice(&seq.to_le_bytes());
                seq = seq.wrapping_add(1);
                frame.clear();
                client::encode_frame(&payload, &mut frame);
                if let Err(error) = conn.write_all(&frame).await {
                    tally.dropped("room member", &error);
                    return;
                }
                tally.room_sent.set(tally.room_sent.get() + 1);
                tally.room_expected.set(tally.room_expected.get() + recipients);
            }
        }
    }
}
