//! Compression: permessage-deflate on realistic JSON (see `json`: order-book
//! updates and chat messages of 500 B to 2 KiB), measured with compression
//! on and off back to back, on two workloads:
//!
//! - echo, on `/echo` (dedicated mode: one compressor per connection,
//!   context kept between messages) against `/echo-uncompressed`;
//! - saturating fan-out on `/news` (a broadcast channel with `publish =
//!   "clients"`, shared mode: each message compressed once for every
//!   subscriber) against `/news-uncompressed`.
//!
//! The `-uncompressed` channels are the same channels with
//! `[channel.compression] enabled = false` (bench/run.sh writes them). Every
//! connection offers permessage-deflate, as browsers do; on the "off"
//! channels the server declines and everything goes uncompressed.
//!
//! Clients send each message compressed on its own
//! (`client_no_context_takeover`, frames prepared before the run) so the
//! load generator never compresses; it inflates what it receives, keeping
//! the server's context unless the server announced
//! `server_no_context_takeover`. In fan-out, where every message is
//! independent (shared mode), only [`INFLATE_SAMPLE`] subscribers inflate and
//! check what they receive; the others count bytes: inflating every copy
//! would make the one-core load generator the bottleneck, and a server that
//! waits for its client writes each delivery on its own instead of in
//! batches, which costs it more per delivery than the compression saves. The ratio is read from the server's admin
//! `/metrics` (`wsedge_compression_output_bytes_total` over
//! `wsedge_compression_input_bytes_total`) when the target has one
//! (`--metrics`), and from the client's own byte counts in any case.

use std::net::SocketAddr;

use super::*;
use crate::{
    deflate::{self, Inflater},
    json,
    metrics::{self, Samples},
};

/// Distinct messages: far more than a 32 KiB window holds, so that a
/// context-keeping compressor never sees an exact repeat.
const POOL: usize = 512;
/// zlib level the clients compress their own messages with (browsers use
/// zlib's default too).
const CLIENT_LEVEL: u32 = 6;
/// Fan-out subscribers that inflate and check every message.
const INFLATE_SAMPLE: usize = 50;

fn on_off(deflate: bool) -> &'static str {
    if deflate { "on" } else { "off" }
}

/// The messages, as text and as ready-made client frames (plain and
/// compressed).
struct Pool {
    texts: Vec<Vec<u8>>,
    plain: Vec<Vec<u8>>,
    deflated: Vec<Vec<u8>>,
}

impl Pool {
    fn new() -> Rc<Self> {
        let texts: Vec<Vec<u8>> = json::events(POOL)
            .into_iter()
            .map(String::into_bytes)
            .collect();
        let frame = |payload: &[u8], compressed: bool| {
            let mut out = Vec::with_capacity(payload.len() + 14);
            client::encode_frame_with(client::OPCODE_TEXT, compressed, payload, &mut out);
            out
        };
        let plain = texts.iter().map(|t| frame(t, false)).collect();
        let deflated = texts
            .iter()
            .map(|t| frame(&deflate::compress_message(t, CLIENT_LEVEL), true))
            .collect();
        Rc::new(Self {
            texts,
            plain,
            deflated,
        })
    }

    fn frame(&self, index: usize, compressed: bool) -> &[u8] {
        if compressed {
            &self.deflated[index]
        } else {
            &self.plain[index]
        }
    }

    fn mean_len(&self) -> f64 {
        self.texts.iter().map(Vec::len).sum::<usize>() as f64 / self.texts.len() as f64
    }
}

/// What the clients received (in the measured window).
#[derive(Default)]
struct Received {
    messages: Cell<u64>,
    /// Payload bytes as they arrived (compressed or not), frame headers aside.
    frame_bytes: Cell<u64>,
    /// Messages that arrived compressed (RSV1).
    compressed: Cell<u64>,
    /// Of those messages, the ones read whole (inflated if compressed) and
    /// checked, with their bytes before and after inflating.
    checked: Cell<u64>,
    checked_frame_bytes: Cell<u64>,
    checked_payload_bytes: Cell<u64>,
    /// Messages that did not inflate, or not to what was sent.
    bad: Cell<u64>,
    first_bad: RefCell<Option<String>>,
}

impl Received {
    /// A message of `frame` bytes on the wire; `payload` its inflated
    /// length if it was inflated and checked.
    fn add(&self, frame: usize, payload: Option<usize>, compressed: bool) {
        self.messages.set(self.messages.get() + 1);
        self.frame_bytes.set(self.frame_bytes.get() + frame as u64);
        if compressed {
            self.compressed.set(self.compressed.get() + 1);
        }
        if let Some(payload) = payload {
            self.checked.set(self.checked.get() + 1);
            self.checked_frame_bytes
                .set(self.checked_frame_bytes.get() + frame as u64);
            self.checked_payload_bytes
                .set(self.checked_payload_bytes.get() + payload as u64);
        }
    }

    fn bad(&self, why: String) {
        self.bad.set(self.bad.get() + 1);
        self.first_bad.borrow_mut().get_or_insert(why);
    }

    fn report(&self, record: &mut Record) {
        let messages = self.messages.get();
        record
            .metric("received", messages as f64)
            .metric("received_compressed", self.compressed.get() as f64)
            .metric("received_checked", self.checked.get() as f64);
        if messages > 0 {
            record.metric(
                "client_frame_bytes_per_msg",
                self.frame_bytes.get() as f64 / messages as f64,
            );
        }
        if self.checked.get() > 0 && self.checked_payload_bytes.get() > 0 {
            record
                .metric(
                    "client_payload_bytes_per_msg",
                    self.checked_payload_bytes.get() as f64 / self.checked.get() as f64,
                )
                .metric(
                    "client_ratio",
                    self.checked_frame_bytes.get() as f64 / self.checked_payload_bytes.get() as f64,
                );
        }
        if self.bad.get() > 0 {
            record.metric("bad_messages", self.bad.get() as f64);
            record.notes.push(format!(
                "{} messages did not inflate to what was sent; first: {}",
                self.bad.get(),
                self.first_bad.borrow().clone().unwrap_or_default()
            ));
        }
    }
}

/// Inflates one received payload if it is compressed.
fn inflate<'a>(
    inflater: &'a mut Option<Inflater>,
    payload: &'a [u8],
    rsv1: bool,
) -> std::io::Result<&'a [u8]> {
    match (rsv1, inflater) {
        (false, _) => Ok(payload),
        (true, Some(inflater)) => inflater.inflate(payload),
        (true, None) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "RSV1 set on a connection without permessage-deflate",
        )),
    }
}

/// Connection notes: how many negotiated deflate, against what was meant.
fn negotiation_notes(record: &mut Record, conns: &[&Conn], deflate: bool) {
    let agreed = conns.iter().filter(|c| c.deflate.is_some()).count();
    record.metric("deflate_connections", agreed as f64);
    if deflate && agreed < conns.len() {
        record.notes.push(format!(
            "only {agreed} of {} connections negotiated permessage-deflate",
            conns.len()
        ));
    }
    if !deflate && agreed > 0 {
        record.notes.push(format!(
            "compression was meant to be off, but {agreed} connections negotiated it"
        ));
    }
    if let Some(agreement) = conns.iter().find_map(|c| c.deflate) {
        record.param(
            "server_no_context_takeover",
            agreement.server_no_context_takeover,
        );
    }
}

async fn scrape(addr: Option<SocketAddr>, record: &mut Record) -> Option<Samples> {
    match metrics::scrape(addr?).await {
        Ok(samples) => Some(samples),
        Err(error) => {
            record
                .notes
                .push(format!("server metrics unavailable: {error:#}"));
            None
        }
    }
}

/// What the server counted between two scrapes, per message it sent to a
/// client of `kind` channels.
fn server_metrics(record: &mut Record, before: &Samples, after: &Samples, kind: &str) {
    let delta = |series: &str| metrics::delta(before, after, series);
    let sent = delta(&format!(
        "wsedge_messages_sent_total{{channel_kind=\"{kind}\"}}"
    ));
    let (input, output) = (
        delta("wsedge_compression_input_bytes_total"),
        delta("wsedge_compression_output_bytes_total"),
    );
    record.metric("server_messages_sent", sent);
    if sent > 0.0 {
        record
            .metric(
                "server_wire_bytes_per_msg",
                delta("wsedge_wire_sent_bytes_total") / sent,
            )
            .metric(
                "server_payload_bytes_per_msg",
                delta("wsedge_payload_sent_bytes_total") / sent,
            )
            .metric(
                "server_compressions_per_msg",
                delta("wsedge_compressions_total") / sent,
            );
    }
    if input > 0.0 {
        record
            .metric("compression_input_bytes", input)
            .metric("compression_output_bytes", output)
            .metric("compression_ratio", output / input);
    }
}

/// Echo: `conns` connections each send one JSON message and wait for it to
/// come back (inflating it and checking it is the message sent), again and
/// again. Messages/s, server CPU per message, bytes per message.
pub async fn compression_echo(ctx: &Context, conns: usize, deflate: bool) -> Record {
    let path = if deflate {
        "/echo"
    } else {
        "/echo-uncompressed"
    };
    let id = format!(
        "compression {} echo c={conns} json deflate={}",
        ctx.transport(),
        on_off(deflate)
    );
    let mut record = Record::new(&ctx.server, "compression", id, "msgs_per_s", true);
    let pool = Pool::new();
    record
        .param("workload", "echo")
        .param("mode", "dedicated")
        .param("deflate", on_off(deflate))
        .param("path", path)
        .param("connections", conns)
        .param("transport", ctx.transport())
        .metric("message_bytes_mean", pool.mean_len());
    let (opened, failures, error) = connect_many(
        ctx,
        vec![path.to_owned(); conns],
        ctx.connect_concurrency,
        Some(deflate::OFFER),
    )
    .await;
    connect_notes(&mut record, conns, opened.len(), failures, error);
    if opened.is_empty() {
        return record;
    }
    negotiation_notes(
        &mut record,
        &opened.iter().map(|(_, c)| c).collect::<Vec<_>>(),
        deflate,
    );

    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + ctx.warmup;
    let end = measure_from + ctx.duration;
    let hist = Rc::new(RefCell::new(histogram()));
    let received = Rc::new(Received::default());
    let errors = Rc::new(RefCell::new(Vec::new()));
    let tasks: Vec<JoinHandle<()>> = opened
        .into_iter()
        .enumerate()
        .map(|(order, (_, mut conn))| {
            let (pool, hist, received, errors) =
                (pool.clone(), hist.clone(), received.clone(), errors.clone());
            let mut inflater = conn.deflate.as_ref().map(Inflater::new);
            let compressed_sends = conn.deflate.is_some();
            tokio::task::spawn_local(async move {
                sleep_until(tinstant(start)).await;
                // Each connection walks the pool from its own place.
                let mut next = order * 61 % POOL;
                let result: std::io::Result<()> = async {
                    while Instant::now() < end {
                        let index = next;
                        next = (next + 1) % POOL;
                        let sent = Instant::now();
                        conn.write_all(pool.frame(index, compressed_sends)).await?;
                        let mut outcome = None;
                        while outcome.is_none() {
                            conn.read_frames_rsv1(|payload, rsv1| {
                                outcome = Some(match inflate(&mut inflater, payload, rsv1) {
                                    Ok(text) if text == &pool.texts[index][..] => {
                                        Ok((payload.len(), text.len(), rsv1))
                                    }
                                    Ok(text) => Err(format!(
                                        "message {index} came back as {} different bytes",
                                        text.len()
                                    )),
                                    Err(error) => Err(error.to_string()),
                                });
                            })
                            .await?;
                        }
                        let now = Instant::now();
                        match outcome.expect("set by the loop") {
                            Ok((frame, payload, compressed)) => {
                                if sent >= measure_from && now <= end {
                                    hist.borrow_mut()
                                        .record(((now - sent).as_nanos() as u64).max(1))
                                        .ok();
                                    received.add(frame, Some(payload), compressed);
                                }
                            }
                            Err(why) => received.bad(why),
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
    let before = scrape(ctx.metrics, &mut record).await;
    let cpu = CpuWindow::start(ctx.pid);
    sleep_until(tinstant(end)).await;
    record.cpu(cpu.finish());
    let after = scrape(ctx.metrics, &mut record).await;
    join_all(tasks, Duration::from_secs(5)).await;

    record.metric(
        "msgs_per_s",
        received.messages.get() as f64 / ctx.duration.as_secs_f64(),
    );
    record.cpu_per_op("msgs_per_s");
    received.report(&mut record);
    if let (Some(before), Some(after)) = (&before, &after) {
        server_metrics(&mut record, before, after, "echo");
    }
    latency_metrics(&mut record, &hist.borrow(), 1e3, "us", &[0.5, 0.99]);
    error_notes(&mut record, &errors.borrow());
    record
}

/// Fan-out: one publisher sends JSON messages on the broadcast channel to
/// `subscribers` receivers as fast as they take them, never more than
/// `window` messages per subscriber undelivered. Deliveries/s, server CPU
/// per delivery, bytes per delivery.
pub async fn compression_fanout(
    ctx: &Context,
    subscribers: usize,
    window: u64,
    deflate: bool,
) -> Record {
    let path = if deflate {
        "/news"
    } else {
        "/news-uncompressed"
    };
    let id = format!(
        "compression {} fanout subs={subscribers} saturate window={window} json deflate={}",
        ctx.transport(),
        on_off(deflate)
    );
    let mut record = Record::new(&ctx.server, "compression", id, "delivered_per_s", true);
    let pool = Pool::new();
    record
        .param("workload", "fanout")
        .param("mode", "shared")
        .param("deflate", on_off(deflate))
        .param("path", path)
        .param("subscribers", subscribers)
        .param("window", window)
        .param("transport", ctx.transport())
        .metric("message_bytes_mean", pool.mean_len());
    let (subs, failures, error) = connect_many(
        ctx,
        vec![path.to_owned(); subscribers],
        ctx.connect_concurrency,
        Some(deflate::OFFER),
    )
    .await;
    connect_notes(&mut record, subscribers, subs.len(), failures, error);
    let mut publisher = match client::connect_with(&ctx.target, path, Some(deflate::OFFER)).await {
        Ok(conn) => conn,
        Err(error) => {
            record
                .notes
                .push(format!("publisher could not connect: {error:#}"));
            return record;
        }
    };
    let receivers = subs.len() as u64;
    if receivers == 0 {
        return record;
    }
    negotiation_notes(
        &mut record,
        &subs
            .iter()
            .map(|(_, c)| c)
            .chain(std::iter::once(&publisher))
            .collect::<Vec<_>>(),
        deflate,
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let received = Rc::new(Received::default());
    let sent = Rc::new(Cell::new(0u64));
    let waiting = Rc::new(Notify::new());
    let last_receive = Rc::new(Cell::new(None::<Instant>));
    let closed = Rc::new(RefCell::new(Vec::new()));
    // Subscribers that inflate and check: a sample when messages are
    // independent, all of them when the server keeps context.
    let mut checking = 0u64;
    let tasks: Vec<JoinHandle<()>> = subs
        .into_iter()
        .enumerate()
        .map(|(order, (_, mut conn))| {
            let (received, sent, waiting, last_receive, closed) = (
                received.clone(),
                sent.clone(),
                waiting.clone(),
                last_receive.clone(),
                closed.clone(),
            );
            let check = order < INFLATE_SAMPLE
                || conn
                    .deflate
                    .is_some_and(|agreement| !agreement.server_no_context_takeover);
            checking += u64::from(check);
            let mut inflater = conn.deflate.as_ref().map(Inflater::new);
            tokio::task::spawn_local(async move {
                loop {
                    let read = conn
                        .read_frames_rsv1(|payload, rsv1| {
                            if !check {
                                return received.add(payload.len(), None, rsv1);
                            }
                            match inflate(&mut inflater, payload, rsv1) {
                                Ok(text)
                                    if text.first() == Some(&b'{')
                                        && text.last() == Some(&b'}') =>
                                {
                                    received.add(payload.len(), Some(text.len()), rsv1)
                                }
                                Ok(text) => received.bad(format!(
                                    "a delivery of {} bytes is not a JSON object",
                                    text.len()
                                )),
                                Err(error) => received.bad(error.to_string()),
                            }
                        })
                        .await;
                    match read {
                        Ok(_) => {
                            last_receive.set(Some(Instant::now()));
                            let done = received.messages.get() + received.bad.get();
                            if sent.get() * receivers - done.min(sent.get() * receivers)
                                <= window * receivers
                            {
                                waiting.notify_one();
                            }
                        }
                        Err(error) => {
                            closed.borrow_mut().push(error.to_string());
                            return;
                        }
                    }
                }
            })
        })
        .collect();

    let before = scrape(ctx.metrics, &mut record).await;
    let end = Instant::now() + ctx.duration;
    let cpu = CpuWindow::start(ctx.pid);
    let first_send = Instant::now();
    let compressed_sends = publisher.deflate.is_some();
    let mut sent_payload = 0u64;
    let publish_error = loop {
        let done = || received.messages.get() + received.bad.get();
        while sent.get() * receivers - done().min(sent.get() * receivers) > window * receivers
            && Instant::now() < end
        {
            let _ = tokio::time::timeout(Duration::from_millis(50), waiting.notified()).await;
        }
        if Instant::now() >= end {
            break None;
        }
        let index = sent.get() as usize % POOL;
        if let Err(error) = publisher
            .write_all(pool.frame(index, compressed_sends))
            .await
        {
            break Some(error);
        }
        sent_payload += pool.texts[index].len() as u64;
        sent.set(sent.get() + 1);
    };
    if let Some(error) = publish_error {
        record.notes.push(format!("publisher failed: {error}"));
    }
    // Wait for the stragglers: until everything arrived, or nothing did
    // for `drain` (at most four times `drain` in all).
    let expected = sent.get() * receivers;
    let (drain_started, mut progress) = (Instant::now(), Instant::now());
    let mut seen = received.messages.get();
    while received.messages.get() + received.bad.get() < expected
        && progress.elapsed() < ctx.drain
        && drain_started.elapsed() < ctx.drain * 4
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if received.messages.get() != seen {
            seen = received.messages.get();
            progress = Instant::now();
        }
    }
    record.cpu(cpu.finish());
    let after = scrape(ctx.metrics, &mut record).await;
    for task in &tasks {
        task.abort();
    }
    join_all(tasks, Duration::from_secs(1)).await;

    let delivered = received.messages.get();
    record
        .metric("sent", sent.get() as f64)
        .metric("expected", expected as f64)
        .metric("lost", expected.saturating_sub(delivered) as f64);
    if let Some(last) = last_receive.get() {
        let seconds = (last - first_send).as_secs_f64().max(1e-9);
        record
            .metric("delivered_per_s", delivered as f64 / seconds)
            .metric("published_per_s", sent.get() as f64 / seconds);
    }
    record.cpu_per_op("delivered_per_s");
    received.report(&mut record);
    record.param("checking_subscribers", checking);
    if delivered == expected && received.checked_payload_bytes.get() != sent_payload * checking {
        record.notes.push(format!(
            "the checking subscribers read {} payload bytes, {} were sent to them",
            received.checked_payload_bytes.get(),
            sent_payload * checking
        ));
    }
    if let (Some(before), Some(after)) = (&before, &after) {
        server_metrics(&mut record, before, after, "broadcast");
    }
    let closed = closed.borrow();
    if let Some(first) = closed.first() {
        record.metric("receivers_closed", closed.len() as f64);
        record.notes.push(format!(
            "{} receivers were disconnected; first: {first}",
            closed.len()
        ));
    }
    drop(publisher);
    record
}
