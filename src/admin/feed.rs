//! `GET /events`: the dashboard's live feed, Server-Sent Events carrying
//! one JSON snapshot of the server every [`INTERVAL`].
//!
//! Bounded by construction:
//!
//! - One producer builds each frame once, whatever the number of feeds, and
//!   only while a feed is open. Frames go through a `watch` channel, which
//!   holds the latest frame only: a feed that is behind gets the newest
//!   frame when it catches up, never a backlog (the `id` numbers jump).
//! - A feed whose socket is refusing writes (see `deadline`) skips frames
//!   rather than fill hyper's write buffer; after `WRITE_STALL_TIMEOUT`
//!   without progress the connection is dropped, and its slot with it.
//! - At most [`MAX_FEEDS`] feeds are open at once; more are answered 503.
//!
//! Each event is `id: {seq}` and `data: {json}`; the JSON:
//!
//! | key | what |
//! |---|---|
//! | `seq`, `unix_ms` | frame number (consecutive unless frames were skipped), wall-clock time |
//! | `shutting_down` | the server is draining |
//! | `feeds` | `{open, max}` dashboard feeds |
//! | `connections`, `clients`, `users` | open connections, distinct client addresses, distinct users |
//! | `channels` | `[{name, kind, connections, rooms, largest_rooms: [{name, members}]}]` |
//! | `room_names` | whether `largest_rooms` was filled (only up to [`ROOM_NAMES_UP_TO`] rooms in all) |
//! | `totals` | message, byte and accepted-connection counters since start |
//! | `rates` | the same per second over the last interval; `null` in a first frame |
//! | `rejections` | `{handshakes: {reason: n}, enforced: {reason: n}}` |
//! | `slow_consumers` | `{closed, dropped}`: 1013 closes and messages dropped |
//! | `compression` | `{compressions, input_bytes, output_bytes, ratio}` (`ratio` null before any) |
//! | `reload` | `{generation, last_successful, last_success_unix, failures}` |
//! | `auth` | `{outcomes: [{result, reason, count}], backends: {...}}` |
//! | `disconnects` | `[{code, initiator, count}]` |

use std::{
    convert::Infallible,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http_body_util::Either;
use hyper::{
    Response, StatusCode,
    body::{Body, Frame},
    header::{self, HeaderValue},
};
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::sync::ReusableBoxFuture;

use super::{Body as AdminBody, deadline::WriteState, text};
use crate::{
    server::handle::Handle,
    stats::{ChannelStats, Stats},
};

/// Time between frames: live enough to watch a connection come and go,
/// cheap enough to build (one statistics snapshot per second, shared).
pub(super) const INTERVAL: Duration = Duration::from_secs(1);

/// Feeds open at once: a few operators with a few tabs each. Each costs a
/// connection and a frame copy per second, never a frame build.
pub(super) const MAX_FEEDS: usize = 8;

/// What a refused feed is told to wait: long enough for a closed tab's
/// feed to have ended.
const RETRY_AFTER_SECS: u32 = 5;

/// Rooms a frame names per channel: the largest, where the members are.
const ROOMS_LISTED: usize = 10;

/// Rooms in all up to which frames name rooms. Beyond it frames carry room
/// counts only: the names would be copied out of every room once a second.
const ROOM_NAMES_UP_TO: usize = 1000;

/// Oldest previous sample rates are computed from: after an idle spell (no
/// feed open), the first frame says "no rate yet" rather than averaging
/// over however long nobody watched.
const MAX_RATE_WINDOW: Duration = Duration::from_secs(3);

/// The open feeds and their shared producer.
pub(super) struct Feeds {
    slots: Arc<Semaphore>,
    /// The latest frame; feeds hold receivers.
    frames: watch::Sender<Bytes>,
    /// Asks the producer for a frame now (a feed just opened).
    wake: Notify,
}

impl Feeds {
    pub(super) fn new() -> Self {
        Self {
            slots: Arc::new(Semaphore::new(MAX_FEEDS)),
            frames: watch::Sender::new(Bytes::new()),
            wake: Notify::new(),
        }
    }

    /// The answer to an authorized `GET /events`: a feed whose first frame
    /// comes at once, or 503 when [`MAX_FEEDS`] are open.
    pub(super) fn open(&self, writer: WriteState) -> Response<AdminBody> {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            let why = format!("{MAX_FEEDS} dashboard feeds are open; close one or retry later");
            let mut answer = text(StatusCode::SERVICE_UNAVAILABLE, &why);
            answer
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            return answer.map(Either::Left);
        };
        let frames = self.frames.subscribe();
        self.wake.notify_one();
        let mut answer = Response::new(Either::Right(FeedBody {
            next: ReusableBoxFuture::new(changed(frames)),
            writer,
            _slot: slot,
        }));
        let headers = answer.headers_mut();
        for (name, value) in [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        answer
    }

    /// Builds a frame every [`INTERVAL`] while a feed is open, and one at
    /// once when a feed opens. Runs until aborted.
    pub(super) async fn run(self: Arc<Self>, handle: Handle) {
        let mut sampler = Sampler::default();
        loop {
            if self.frames.receiver_count() == 0 {
                self.wake.notified().await;
            } else {
                tokio::select! {
                    () = tokio::time::sleep(INTERVAL) => {}
                    () = self.wake.notified() => {}
                }
            }
            if self.frames.receiver_count() == 0 {
                continue;
            }
            let open = MAX_FEEDS - self.slots.available_permits();
            self.frames.send_replace(sampler.frame(&handle, open));
        }
    }
}

/// The next frame's arrival, owning the receiver so that the future can
/// be boxed once and reused.
async fn changed(
    mut frames: watch::Receiver<Bytes>,
) -> (Result<(), watch::error::RecvError>, watch::Receiver<Bytes>) {
    let result = frames.changed().await;
    (result, frames)
}

/// The body of one `GET /events` answer: the frames, as they come, for as
/// long as the client reads them.
pub(super) struct FeedBody {
    next: ReusableBoxFuture<'static, (Result<(), watch::error::RecvError>, watch::Receiver<Bytes>)>,
    writer: WriteState,
    /// Given back when the answer ends (the client left, or stalled).
    _slot: OwnedSemaphorePermit,
}

impl Body for FeedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        loop {
            let (result, mut frames) = ready!(this.next.poll(cx));
            if result.is_err() {
                // The feeds are gone with the admin listener.
                return Poll::Ready(None);
            }
            let frame = frames.borrow_and_update().clone();
            this.next.set(changed(frames));
            if !this.writer.is_blocked() {
                return Poll::Ready(Some(Ok(Frame::data(frame))));
            }
        }
    }
}

/// Statistics at one instant.
struct Sample {
    at: Instant,
    stats: Stats,
}

/// Builds frames, keeping the previous sample for the rates.
#[derive(Default)]
struct Sampler {
    seq: u64,
    previous: Option<Sample>,
}

impl Sampler {
    fn frame(&mut self, handle: &Handle, feeds_open: usize) -> Bytes {
        let totals = handle.totals();
        let rooms: usize = totals.channels.iter().map(|c| c.room_count).sum();
        let room_names = rooms <= ROOM_NAMES_UP_TO;
        let stats = if room_names { handle.stats() } else { totals };
        let now = Sample {
            at: Instant::now(),
            stats,
        };
        self.seq += 1;
        let meta = Meta {
            seq: self.seq,
            unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis()),
            shutting_down: handle.is_shutting_down(),
            feeds_open,
            room_names,
        };
        let previous = self
            .previous
            .as_ref()
            .filter(|previous| now.at.duration_since(previous.at) <= MAX_RATE_WINDOW);
        let json = snapshot(&now, previous, &meta);
        self.previous = Some(now);
        Bytes::from(format!("id: {}\ndata: {json}\n\n", self.seq))
    }
}

/// What a frame says besides the statistics.
struct Meta {
    seq: u64,
    unix_ms: u128,
    shutting_down: bool,
    feeds_open: usize,
    room_names: bool,
}

/// The counters that `totals` and `rates` report.
fn counters(stats: &Stats) -> [(&'static str, u64); 8] {
    let traffic = &stats.traffic;
    [
        ("messages_received", stats.messages_received),
        ("messages_delivered", stats.messages_delivered),
        ("messages_dropped", stats.messages_dropped),
        ("payload_bytes_received", traffic.payload_bytes_received),
        ("payload_bytes_sent", traffic.payload_bytes_sent),
        ("wire_bytes_received", traffic.wire_bytes_received),
        ("wire_bytes_sent", traffic.wire_bytes_sent),
        ("connections_accepted", traffic.connections_accepted),
    ]
}

/// The JSON of one frame (see the module docs).
fn snapshot(now: &Sample, previous: Option<&Sample>, meta: &Meta) -> Value {
    let stats = &now.stats;
    let totals: Map<String, Value> = counters(stats)
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.into()))
        .collect();
    let rates = previous.map(|previous| {
        let seconds = now.at.duration_since(previous.at).as_secs_f64();
        counters(stats)
            .into_iter()
            .zip(counters(&previous.stats))
            .map(|((name, value), (_, before))| {
                let rate = if seconds > 0.0 {
                    value.saturating_sub(before) as f64 / seconds
                } else {
                    0.0
                };
                (name.to_owned(), Value::from(rate))
            })
            .collect::<Map<String, Value>>()
    });
    let refused: Map<String, Value> = stats
        .traffic
        .handshakes
        .iter()
        .filter(|((result, _), _)| *result == "rejected")
        .map(|((_, reason), count)| ((*reason).to_owned(), (*count).into()))
        .collect();
    let ratio = (stats.compressed_from > 0)
        .then(|| stats.compressed_to as f64 / stats.compressed_from as f64);
    let backends = &stats.auth_backends;
    json!({
        "seq": meta.seq,
        "unix_ms": meta.unix_ms,
        "shutting_down": meta.shutting_down,
        "feeds": { "open": meta.feeds_open, "max": MAX_FEEDS },
        "connections": stats.connections,
        "clients": stats.clients,
        "users": stats.users,
        "room_names": meta.room_names,
        "channels": stats.channels.iter().map(channel).collect::<Vec<_>>(),
        "totals": totals,
        "rates": rates,
        "rejections": { "handshakes": refused, "enforced": stats.enforced },
        "slow_consumers": {
            "closed": stats.enforced.get("slow_consumer").copied().unwrap_or(0),
            "dropped": stats.messages_dropped,
        },
        "compression": {
            "compressions": stats.compressions,
            "input_bytes": stats.compressed_from,
            "output_bytes": stats.compressed_to,
            "ratio": ratio,
        },
        "reload": {
            "generation": stats.generation,
            "last_successful": stats.last_reload_successful,
            "last_success_unix": stats.last_reload_success_unix,
            "failures": stats.reload_failures,
        },
        "auth": {
            "outcomes": stats.auth.iter().map(|(&(result, reason), &count)| {
                json!({ "result": result, "reason": reason, "count": count })
            }).collect::<Vec<_>>(),
            "backends": {
                "jwks_fetches": backends.jwks_fetches,
                "jwks_failures": backends.jwks_failures,
                "jwks_rate_limited": backends.jwks_rate_limited,
                "jwks_keys": backends.jwks_keys,
                "webhook_allowed": backends.webhook_allowed,
                "webhook_denied": backends.webhook_denied,
                "webhook_failed": backends.webhook_failed,
            },
        },
        "disconnects": stats.traffic.disconnects.iter().map(|(&(code, initiator), &count)| {
            json!({ "code": code, "initiator": initiator, "count": count })
        }).collect::<Vec<_>>(),
    })
}

/// One channel's entry: its counts, and its largest rooms when the
/// statistics carry room sizes.
fn channel(channel: &ChannelStats) -> Value {
    let mut rooms: Vec<(&String, &usize)> = channel.rooms.iter().collect();
    rooms.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    rooms.truncate(ROOMS_LISTED);
    json!({
        "name": channel.name,
        "kind": channel.kind.as_str(),
        "connections": channel.connections,
        "rooms": channel.room_count,
        "largest_rooms": rooms.into_iter().map(|(name, members)| {
            json!({ "name": name, "members": members })
        }).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        config::ChannelKind,
        stats::{Counters, Gauges, Handshake, Reason},
    };

    const META: Meta = Meta {
        seq: 7,
        unix_ms: 1,
        shutting_down: false,
        feeds_open: 1,
        room_names: true,
    };

    fn sample(counters: &Counters, at: Instant, channels: Vec<ChannelStats>) -> Sample {
        Sample {
            at,
            stats: counters.snapshot(channels, Gauges::default()),
        }
    }

    #[test]
    fn rates_come_from_successive_samples() {
        let counters = Counters::default();
        let start = Instant::now();
        let first = sample(&counters, start, Vec::new());
        let alone = snapshot(&first, None, &META);
        assert_eq!(alone["rates"], Value::Null, "{alone}");
        assert_eq!(alone["compression"]["ratio"], Value::Null, "{alone}");

        for _ in 0..10 {
            counters.traffic.record_received(ChannelKind::Echo, 100);
        }
        counters.traffic.record_sent(ChannelKind::Broadcast, 4, 50);
        counters.record_compression(1000, 250);
        let second = sample(&counters, start + Duration::from_secs(2), Vec::new());
        let json = snapshot(&second, Some(&first), &META);
        let rates = &json["rates"];
        assert_eq!(rates["messages_received"], 5.0, "{json}");
        assert_eq!(rates["payload_bytes_received"], 500.0, "{json}");
        assert_eq!(rates["messages_delivered"], 2.0, "{json}");
        assert_eq!(rates["payload_bytes_sent"], 100.0, "{json}");
        assert_eq!(rates["connections_accepted"], 0.0, "{json}");
        assert_eq!(json["totals"]["messages_received"], 10, "{json}");
        assert_eq!(json["compression"]["ratio"], 0.25, "{json}");
        assert_eq!(json["seq"], 7);
    }

    #[test]
    fn rejections_and_slow_consumers_by_reason() {
        let counters = Counters::default();
        counters.traffic.record_handshake(Handshake::Accepted);
        counters.traffic.record_handshake(Handshake::RateLimit);
        counters.traffic.record_handshake(Handshake::RateLimit);
        counters.record(Reason::SlowConsumer);
        counters.record_dropped();
        let json = snapshot(&sample(&counters, Instant::now(), Vec::new()), None, &META);
        let refused = json["rejections"]["handshakes"].as_object().unwrap();
        assert_eq!(refused["rate_limit"], 2, "{json}");
        assert!(
            !refused.contains_key("none"),
            "accepted is no rejection: {json}"
        );
        assert_eq!(json["rejections"]["enforced"]["slow_consumer"], 1);
        assert_eq!(json["slow_consumers"]["closed"], 1);
        assert_eq!(json["slow_consumers"]["dropped"], 1);
    }

    #[test]
    fn channels_name_their_largest_rooms_only() {
        let rooms: BTreeMap<String, usize> = (0..ROOMS_LISTED + 5)
            .map(|i| (format!("r{i:02}"), i % 4 + 1))
            .collect();
        let chat = ChannelStats {
            name: "chat".to_owned(),
            kind: ChannelKind::Room,
            connections: rooms.values().sum(),
            room_count: rooms.len(),
            rooms,
        };
        let json = snapshot(
            &sample(&Counters::default(), Instant::now(), vec![chat]),
            None,
            &META,
        );
        let entry = &json["channels"][0];
        assert_eq!(entry["rooms"], ROOMS_LISTED + 5, "{entry}");
        let listed: Vec<(String, u64)> = entry["largest_rooms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|room| {
                let name = room["name"].as_str().unwrap().to_owned();
                (name, room["members"].as_u64().unwrap())
            })
            .collect();
        assert_eq!(listed.len(), ROOMS_LISTED);
        // Largest first, then by name: r03, r07, r11 have 4 members.
        assert_eq!(listed[0], ("r03".to_owned(), 4));
        assert_eq!(listed[1], ("r07".to_owned(), 4));
        assert_eq!(listed[2], ("r11".to_owned(), 4));
        assert!(listed.windows(2).all(|pair| pair[0].1 >= pair[1].1));
    }
}
