//! Just enough of Socket.IO's wire format (Engine.IO 4 over a plain
//! WebSocket) for the load generator to be a Socket.IO client: connect to
//! the default namespace, emit and receive one event, answer the heartbeat.
//!
//! A Socket.IO client crate would bring its own runtime, reconnection and
//! an allocation per event; what the benchmark needs is four packets:
//!
//! - the server's Engine.IO `open` packet, `0{"sid":...}`, the first message;
//! - the namespace `connect` the client sends, `40`, answered with
//!   `40{"sid":...}` once the socket has joined (a broadcast reaches it from
//!   then on) or `44{...}` if refused;
//! - events, `42["news","..."]`, in both directions, as text;
//! - the server's heartbeat ping `2`, answered with `3` by the connection
//!   itself ([`Conn::answer_engine_io_pings`]).
//!
//! Each event carries one string: the message's sequence number and send
//! time in decimal, then padding, so that it is as long as the binary
//! messages sent to wsedge.

use std::time::Duration;

use anyhow::Context as _;

use crate::client::{self, Conn, OPCODE_TEXT, Target};

/// The Engine.IO endpoint, WebSocket transport from the start (no HTTP
/// long-polling first).
pub const PATH: &str = "/socket.io/?EIO=4&transport=websocket";

/// Engine.IO packet types: the server's open packet, and a message
/// carrying a Socket.IO packet.
const ENGINE_OPEN: u8 = b'0';
/// Socket.IO packets inside an Engine.IO message: namespace connect (sent,
/// and its acknowledgement) and a refused connect.
const NAMESPACE_CONNECT: &[u8] = b"40";
const NAMESPACE_REFUSED: &[u8] = b"44";
/// The start of an event of the benchmark's one event name, up to its
/// string argument.
const EVENT_PREFIX: &[u8] = br#"42["news",""#;
const EVENT_SUFFIX: &[u8] = br#""]"#;
/// How long the server may take with the open packet and the connect.
const CONNECT_PATIENCE: Duration = Duration::from_secs(10);

/// Connects to the default namespace: WebSocket upgrade, the open packet,
/// the namespace connect and its acknowledgement.
pub async fn connect(target: &Target) -> anyhow::Result<Conn> {
    let mut conn = client::connect(target, PATH).await?;
    conn.answer_engine_io_pings();
    let mut first = None;
    tokio::time::timeout(CONNECT_PATIENCE, async {
        while first.is_none() {
            conn.read_frames(|payload| {
                first.get_or_insert_with(|| payload.to_vec());
            })
            .await?;
        }
        Ok::<_, std::io::Error>(())
    })
    .await
    .context("no Engine.IO open packet")??;
    let first = first.expect("read until set");
    anyhow::ensure!(
        first.first() == Some(&ENGINE_OPEN),
        "expected the Engine.IO open packet, got {:?}",
        String::from_utf8_lossy(&first)
    );
    let mut frame = Vec::new();
    client::encode_frame_with(OPCODE_TEXT, false, NAMESPACE_CONNECT, &mut frame);
    conn.write_all(&frame).await?;
    let mut answer = None;
    tokio::time::timeout(CONNECT_PATIENCE, async {
        while answer.is_none() {
            conn.read_frames(|payload| {
                if payload.starts_with(NAMESPACE_CONNECT) || payload.starts_with(NAMESPACE_REFUSED)
                {
                    answer.get_or_insert(payload.starts_with(NAMESPACE_CONNECT));
                }
            })
            .await?;
        }
        Ok::<_, std::io::Error>(())
    })
    .await
    .context("no answer to the namespace connect")??;
    anyhow::ensure!(answer == Some(true), "the namespace connect was refused");
    Ok(conn)
}

/// An event carrying `seq` and `sent_ns`, padded so that the WebSocket
/// payload is `size` bytes (or as short as the two numbers allow), encoded
/// as a masked text frame.
pub fn event_frame(seq: u64, sent_ns: u64, size: usize, out: &mut Vec<u8>) {
    out.clear();
    client::encode_frame_with(OPCODE_TEXT, false, &event(seq, sent_ns, size), out);
}

fn event(seq: u64, sent_ns: u64, size: usize) -> Vec<u8> {
    let mut payload = Vec::with_capacity(size.max(64));
    payload.extend_from_slice(EVENT_PREFIX);
    payload.extend_from_slice(format!("{seq} {sent_ns} ").as_bytes());
    let padding = size.saturating_sub(payload.len() + EVENT_SUFFIX.len());
    payload.resize(payload.len() + padding, b'x');
    payload.extend_from_slice(EVENT_SUFFIX);
    payload
}

/// The sequence number and send time of an event [`event_frame`] wrote, as
/// the server relays it.
pub fn event_stamp(payload: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(payload.strip_prefix(EVENT_PREFIX)?).ok()?;
    let mut fields = text.split(' ');
    let seq = fields.next()?.parse().ok()?;
    let sent = fields.next()?.parse().ok()?;
    Some((seq, sent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_their_stamp_and_size() {
        let payload = event(41, 1_234_567_890, 64);
        assert_eq!(payload.len(), 64);
        assert!(payload.starts_with(br#"42["news","41 1234567890 x"#));
        assert!(payload.ends_with(br#"x"]"#));
        assert_eq!(event_stamp(&payload), Some((41, 1_234_567_890)));
        // Longer than asked when the numbers do not fit.
        let short = event(7, u64::MAX, 8);
        assert_eq!(event_stamp(&short), Some((7, u64::MAX)));
    }

    #[test]
    fn other_packets_have_no_stamp() {
        for packet in [
            &b"2"[..],
            b"40{\"sid\":\"abc\"}",
            br#"42["other","1 2 "]"#,
            br#"42["news","x y"]"#,
        ] {
            assert_eq!(event_stamp(packet), None, "{packet:?}");
        }
    }
}
