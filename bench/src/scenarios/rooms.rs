//! Rooms: `rooms` rooms of `members` members each; every member sends
//! `rate` messages a second to its room (spread evenly over time) and
//! receives everyone else's. The same load reaches its rooms one of two
//! ways ([`RoomsVia`]): one connection per member on the path-named room
//! channel (`/chat/{room}`), or hub connections (`/hub`) that each join
//! several rooms in band and send the hub protocol's `message`s. With `k`
//! rooms per hub connection there are `rooms × members / k` connections for
//! the same memberships, messages and deliveries.

use std::{
    cell::Cell,
    rc::Rc,
    time::{Duration, Instant},
};

use tokio::{task::JoinHandle, time::sleep_until};

use super::{
    Context, Delivery, binary_stamp, connect_many, connect_notes, join_all, now_ns,
    timestamped_frame, tinstant,
};
use crate::{
    client::{self, Conn, OPCODE_TEXT},
    procfs::CpuWindow,
    record::Record,
};

/// How the rooms scenario's members reach their rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomsVia {
    /// One connection per member, on the room channel's path `/chat/{room}`;
    /// binary messages relayed verbatim.
    Path,
    /// Connections on the hub channel `/hub`, each joining `per_connection`
    /// rooms with `{"type":"join"}` and sending `{"type":"message"}`s.
    Hub { per_connection: usize },
}

impl RoomsVia {
    fn per_connection(self) -> usize {
        match self {
            RoomsVia::Path => 1,
            RoomsVia::Hub { per_connection } => per_connection,
        }
    }
}

/// How long a hub connection may take to have every join answered.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The hub protocol's text before the send time in a member's message (the
/// room goes before it, the padding and the closing after it).
const HUB_PAYLOAD_KEY: &str = r#""payload":""#;

/// Digits of the send time at the start of a hub message's payload string.
const STAMP_DIGITS: usize = 20;

/// The rooms (indices) connection `conn` is in: memberships are numbered
/// `0..rooms × members`, membership `m` is in room `m % rooms` and belongs
/// to connection `m / per_connection`, so every room gets `members`
/// memberships and a connection's rooms are distinct (`per_connection ≤
/// rooms`).
fn rooms_of(conn: usize, per_connection: usize, rooms: usize, memberships: usize) -> Vec<usize> {
    (conn * per_connection..((conn + 1) * per_connection).min(memberships))
        .map(|membership| membership % rooms)
        .collect()
}

fn room_name(room: usize) -> String {
    format!("room-{room}")
}

/// A hub `message` to `room` whose payload is a string of at least `size`
/// bytes starting with the send time (nanoseconds, [`STAMP_DIGITS`] digits).
fn hub_frame(room: &str, size: usize, out: &mut Vec<u8>) {
    let pad = size.saturating_sub(STAMP_DIGITS);
    let text = format!(
        r#"{{"type":"message","room":"{room}",{HUB_PAYLOAD_KEY}{:0width$}{:x<pad$}"}}"#,
        now_ns(),
        "",
        width = STAMP_DIGITS,
    );
    out.clear();
    client::encode_frame_with(OPCODE_TEXT, false, text.as_bytes(), out);
}

/// The send time of a delivered hub `message` ([`hub_frame`]'s payload).
fn hub_stamp(payload: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(payload).ok()?;
    let start = text.find(HUB_PAYLOAD_KEY)? + HUB_PAYLOAD_KEY.len();
    text.get(start..start + STAMP_DIGITS)?.parse().ok()
}

/// Sends one `join` per room in one write and reads until each is
/// answered `joined`; `Err` with the first other answer or failure.
async fn join_rooms(conn: &mut Conn, rooms: &[usize]) -> anyhow::Result<()> {
    let mut frames = Vec::new();
    for &room in rooms {
        let join = format!(r#"{{"type":"join","room":"{}"}}"#, room_name(room));
        client::encode_frame_with(OPCODE_TEXT, false, join.as_bytes(), &mut frames);
    }
    conn.write_all(&frames).await?;
    let mut joined = 0;
    let mut refused = None;
    while joined < rooms.len() && refused.is_none() {
        conn.read_frames(|answer| {
            if answer.starts_with(br#"{"type":"joined""#) {
                joined += 1;
            } else {
                refused.get_or_insert_with(|| String::from_utf8_lossy(answer).into_owned());
            }
        })
        .await?;
    }
    match refused {
        None => Ok(()),
        Some(answer) => anyhow::bail!("join answered {answer}"),
    }
}

/// Joins every hub connection to its rooms, all at once; returns those
/// whose joins were all answered, the failures and the first error.
async fn join_all_rooms(
    conns: Vec<(usize, Conn)>,
    rooms_of: impl Fn(usize) -> Vec<usize>,
) -> (Vec<(usize, Conn)>, usize, Option<String>) {
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|(index, mut conn)| {
            let rooms = rooms_of(index);
            tokio::task::spawn_local(async move {
                match tokio::time::timeout(JOIN_TIMEOUT, join_rooms(&mut conn, &rooms)).await {
                    Ok(Ok(())) => Ok((index, conn)),
                    Ok(Err(error)) => Err(format!("{error:#}")),
                    Err(_) => Err(format!("joins not answered within {JOIN_TIMEOUT:?}")),
                }
            })
        })
        .collect();
    let (mut joined, mut failures, mut first_error) = (Vec::new(), 0, None);
    for task in tasks {
        match task.await {
            Ok(Ok(conn)) => joined.push(conn),
            Ok(Err(error)) => {
                failures += 1;
                first_error.get_or_insert(error);
            }
            Err(error) => {
                failures += 1;
                first_error.get_or_insert(error.to_string());
            }
        }
    }
    (joined, failures, first_error)
}

/// The rooms scenario (see the module docs).
pub async fn rooms(
    ctx: &Context,
    rooms: usize,
    members: usize,
    rate: f64,
    size: usize,
    via: RoomsVia,
) -> Record {
    let per_connection = via.per_connection().clamp(1, rooms);
    let memberships = rooms * members;
    let connections = memberships.div_ceil(per_connection);
    let (scenario, id) = match via {
        RoomsVia::Path => (
            "rooms",
            format!(
                "rooms {} {rooms}x{members} rate={rate}/s/member size={size}B",
                ctx.transport()
            ),
        ),
        RoomsVia::Hub { .. } => (
            "hub-rooms",
            format!(
                "hub-rooms {} {rooms}x{members} rate={rate}/s/member size={size}B rooms/conn={per_connection}",
                ctx.transport()
            ),
        ),
    };
    let mut record = Record::new(&ctx.server, scenario, id, "p99_ms", false);
    record
        .param("rooms", rooms)
        .param("members", members)
        .param("rate_per_member", rate)
        .param("size", size)
        .param("rooms_per_connection", per_connection)
        .param(
            "via",
            match via {
                RoomsVia::Path => "/chat/{room}",
                RoomsVia::Hub { .. } => "/hub",
            },
        );
    let paths = (0..connections)
        .map(|conn| match via {
            RoomsVia::Path => format!("/chat/{}", room_name(conn % rooms)),
            RoomsVia::Hub { .. } => "/hub".to_owned(),
        })
        .collect();
    let rooms_of = |conn| rooms_of(conn, per_connection, rooms, memberships);
    let (mut conns, failures, error) =
        connect_many(ctx, paths, ctx.connect_concurrency, None).await;
    connect_notes(&mut record, connections, conns.len(), failures, error);
    if via != RoomsVia::Path {
        let (joined, failures, error) = join_all_rooms(conns, rooms_of).await;
        if failures > 0 {
            record.notes.push(format!(
                "{failures} hub connections could not join their rooms; first: {}",
                error.unwrap_or_default()
            ));
        }
        conns = joined;
    }
    if conns.is_empty() {
        return record;
    }
    // A member that failed to connect or join is not expected to receive.
    let mut per_room = vec![0u64; rooms];
    for (index, _) in &conns {
        for room in rooms_of(*index) {
            per_room[room] += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let delivery = Delivery::new();
    let expected = Rc::new(Cell::new(0u64));
    let sent = Rc::new(Cell::new(0u64));
    let start = Instant::now() + Duration::from_millis(20);
    let end = start + ctx.duration;
    let total = conns.len();
    let tasks: Vec<JoinHandle<()>> = conns
        .into_iter()
        .enumerate()
        .map(|(order, (index, mut conn))| {
            let own = rooms_of(index);
            let names: Vec<String> = own.iter().map(|&room| room_name(room)).collect();
            let recipients: Vec<u64> = own.iter().map(|&room| per_room[room] - 1).collect();
            // Each membership sends `rate` a second: the connection sends
            // to its rooms in turn, `rate` times as often as it has rooms.
            let period = Duration::from_secs_f64(1.0 / (rate * own.len() as f64));
            let (delivery, expected, sent) = (delivery.clone(), expected.clone(), sent.clone());
            // Spread first sends over one period so that sends are even.
            let first = start + period.mul_f64(order as f64 / total as f64);
            tokio::task::spawn_local(async move {
                let mut interval = tokio::time::interval_at(tinstant(first), period);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let stamp = match via {
                    RoomsVia::Path => binary_stamp,
                    RoomsVia::Hub { .. } => hub_stamp,
                };
                let mut frame = Vec::new();
                let mut seq = 0;
                loop {
                    tokio::select! {
                        biased;
                        read = conn.read_frames(|payload| delivery.receive(stamp(payload), now_ns())) => match read {
                            Ok(_) => delivery.last_receive.set(Some(Instant::now())),
                            Err(error) => {
                                delivery.closed(error);
                                return;
                            }
                        },
                        _ = interval.tick(), if Instant::now() < end => {
                            // The tick may come after the end; the drain
                            // counts only what was sent before it.
                            if Instant::now() >= end {
                                continue;
                            }
                            let turn = seq as usize % names.len();
                            match via {
                                RoomsVia::Path => timestamped_frame(seq, size, &mut frame),
                                RoomsVia::Hub { .. } => hub_frame(&names[turn], size, &mut frame),
                            }
                            seq += 1;
                            if let Err(error) = conn.write_all(&frame).await {
                                delivery.closed(error);
                                return;
                            }
                            sent.set(sent.get() + 1);
                            expected.set(expected.get() + recipients[turn]);
                        }
                    }
                }
            })
        })
        .collect();
    delivery.first_send.set(Some(start));
    sleep_until(tinstant(start)).await;
    let cpu = CpuWindow::start(ctx.pid);
    sleep_until(tinstant(end)).await;
    let drained = delivery.drain(expected.get(), ctx.drain).await;
    record.metric("drain_ms", drained.as_secs_f64() * 1e3);
    record.cpu(cpu.finish());
    for task in &tasks {
        task.abort();
    }
    join_all(tasks, Duration::from_secs(1)).await;
    delivery.report(&mut record, sent.get(), expected.get());
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_room_gets_its_members_and_a_connection_distinct_rooms() {
        for (rooms, members, per_connection) in [(50, 20, 1), (50, 20, 5), (7, 3, 3), (4, 5, 4)] {
            let memberships = rooms * members;
            let mut per_room = vec![0; rooms];
            for conn in 0..memberships.div_ceil(per_connection) {
                let own = rooms_of(conn, per_connection, rooms, memberships);
                let mut distinct = own.clone();
                distinct.sort_unstable();
                distinct.dedup();
                assert_eq!(distinct.len(), own.len(), "connection {conn}");
                for room in own {
                    per_room[room] += 1;
                }
            }
            assert_eq!(
                per_room,
                vec![members; rooms],
                "{rooms}x{members}/{per_connection}"
            );
        }
    }

    #[test]
    fn a_hub_message_carries_its_send_time_and_size() {
        let mut frame = Vec::new();
        hub_frame("room-3", 64, &mut frame);
        // A masked text frame: 2 header bytes and the 4-byte mask.
        assert_eq!(frame[0], 0x80 | OPCODE_TEXT);
        let len = usize::from(frame[1] & 0x7F);
        let payload: Vec<u8> = frame[6..6 + len]
            .iter()
            .enumerate()
            .map(|(i, byte)| byte ^ frame[2 + i % 4])
            .collect();
        let text = std::str::from_utf8(&payload).unwrap();
        assert!(
            text.starts_with(r#"{"type":"message","room":"room-3","payload":""#),
            "{text}"
        );
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(value["payload"].as_str().unwrap().len(), 64);
        // As the server delivers it: `from` stamped before the payload.
        let delivered = text.replacen(r#""payload""#, r#""from":null,"payload""#, 1);
        let stamp = hub_stamp(delivered.as_bytes()).unwrap();
        assert!(stamp <= now_ns());
    }
}
