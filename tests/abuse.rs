//! A hostile client against a real server: each attack is made on its own
//! raw connection while a well-behaved client stays connected, and must get
//! the exact close code and enforcement counter while the server stays up and
//! the well-behaved client keeps echoing. A last test runs every attack at
//! once among twenty busy clients.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};
use tokio_tungstenite::tungstenite::Message;
use wsedge::Stats;

/// Short enough that the slowloris test is quick.
const SERVER_KEYS: &str = r#"handshake_timeout = "1s""#;

const CHANNELS: &str = r#"
[limits]
max_payload = "64KiB"
handshake_rate = { per_second = 1000, burst = 1000 }

[[channel]]
name = "echo"
path = "/echo"
kind = "echo"
"#;

/// Pause between two bytes of the slowloris request: the attack's own
/// pacing, well inside the 1 s handshake timeout per byte but far too slow
/// for the whole request.
const SLOWLORIS_GAP: Duration = Duration::from_millis(150);

async fn server() -> TestServer {
    start_with_server_keys(SERVER_KEYS, CHANNELS).await
}

/// One attack on one upgraded connection: the bytes the attacker writes, the
/// close code it must receive and the enforcement counter it must bump.
struct FrameAttack {
    name: String,
    bytes: Vec<u8>,
    code: u16,
    counter: &'static str,
}

fn attack(
    name: impl Into<String>,
    bytes: Vec<u8>,
    code: u16,
    counter: &'static str,
) -> FrameAttack {
    FrameAttack {
        name: name.into(),
        bytes,
        code,
        counter,
    }
}

/// 1: a binary frame announcing 1 GiB, with no body at all.
fn gigabyte_header() -> FrameAttack {
    attack(
        "1 GiB header",
        client_frame(0x82, 1 << 30, &[]),
        1009,
        "too_big",
    )
}

/// 3: a text frame whose payload is not UTF-8 (0xC3 starts a two-byte
/// sequence, 0x28 is not a continuation byte).
fn invalid_utf8() -> FrameAttack {
    attack(
        "invalid UTF-8",
        client_frame(0x81, 2, &[0xC3, 0x28]),
        1007,
        "protocol",
    )
}

/// 4: a text frame without the mask bit (client frames must be masked).
fn unmasked() -> FrameAttack {
    attack(
        "unmasked frame",
        vec![0x81, 0x05, b'h', b'e', b'l', b'l', b'o'],
        1002,
        "protocol",
    )
}

/// 5: a text frame with one reserved bit set; no extension was negotiated.
fn reserved_bits() -> Vec<FrameAttack> {
    [(0xC1, "RSV1"), (0xA1, "RSV2"), (0x91, "RSV3")]
        .into_iter()
        .map(|(first, bit)| {
            attack(
                format!("{bit} set"),
                client_frame(first, 2, b"hi"),
                1002,
                "protocol",
            )
        })
        .collect()
}

/// 6: a ping one byte over the 125-byte control-frame limit.
fn long_ping() -> FrameAttack {
    attack(
        "126-byte ping",
        client_frame(0x89, 126, &[0x50; 126]),
        1002,
        "protocol",
    )
}

/// 7a: one binary frame announcing 10,000,000 bytes, followed by the start of
/// its body.
fn ten_megabyte_frame() -> FrameAttack {
    attack(
        "10 MB frame",
        client_frame(0x82, 10_000_000, &[0x55; 4096]),
        1009,
        "too_big",
    )
}

/// 7b: two 40 KiB fragments: each fits `max_payload`, the message does not.
/// The second fragment is sent as its header only: the server must decide on
/// the header, and a body it never reads would only make it reset the
/// connection.
fn oversized_fragments() -> FrameAttack {
    let mut bytes = client_frame(0x02, 40 * 1024, &[0xAA; 40 * 1024]);
    bytes.extend(client_frame(0x80, 40 * 1024, &[]));
    attack("two 40 KiB fragments", bytes, 1009, "too_big")
}

/// Close codes a client may not send: 1005, 1006 and 1015 are reserved for
/// reporting, 999 and 5000 are outside the defined ranges.
const INVALID_CLOSE_CODES: [u16; 5] = [1005, 999, 5000, 1006, 1015];

/// 8: a close frame carrying an invalid status code.
fn invalid_close_codes() -> Vec<FrameAttack> {
    INVALID_CLOSE_CODES
        .into_iter()
        .map(|code| {
            attack(
                format!("close with code {code}"),
                client_frame(0x88, 2, &code.to_be_bytes()),
                1002,
                "protocol",
            )
        })
        .collect()
}

/// 9: a text message in fragments with a complete new text frame between
/// its first fragment and its continuation.
fn interleaved_data_frame() -> FrameAttack {
    let mut bytes = client_frame(0x01, 3, b"hel");
    bytes.extend(client_frame(0x81, 3, b"new"));
    bytes.extend(client_frame(0x80, 2, b"lo"));
    attack("interleaved data frame", bytes, 1002, "protocol")
}

/// 10: frames the protocol does not define, or allows only whole:
/// reserved opcodes (a data one and a control one), a ping without FIN.
fn undefined_frames() -> Vec<FrameAttack> {
    vec![
        attack(
            "reserved data opcode 0x3",
            client_frame(0x83, 2, b"hi"),
            1002,
            "protocol",
        ),
        attack(
            "reserved control opcode 0xB",
            client_frame(0x8B, 0, &[]),
            1002,
            "protocol",
        ),
        attack(
            "fragmented ping",
            client_frame(0x09, 2, b"hi"),
            1002,
            "protocol",
        ),
    ]
}

/// 11: malformed close frames: half a status code, and a reason that is
/// not UTF-8.
fn malformed_closes() -> Vec<FrameAttack> {
    vec![
        attack(
            "one-byte close",
            client_frame(0x88, 1, &[0x03]),
            1002,
            "protocol",
        ),
        attack(
            "close reason not UTF-8",
            client_frame(0x88, 4, &[0x03, 0xE8, 0xC3, 0x28]),
            1007,
            "protocol",
        ),
    ]
}

/// Every frame-level attack, each for its own connection.
fn all_frame_attacks() -> Vec<FrameAttack> {
    let mut attacks = vec![
        gigabyte_header(),
        invalid_utf8(),
        unmasked(),
        long_ping(),
        ten_megabyte_frame(),
        oversized_fragments(),
        interleaved_data_frame(),
    ];
    attacks.extend(reserved_bits());
    attacks.extend(invalid_close_codes());
    attacks.extend(undefined_frames());
    attacks.extend(malformed_closes());
    attacks
}

/// Makes `attack` on a fresh upgraded connection; returns once the server
/// has closed it, after checking the close code.
async fn run_attack(server: &TestServer, attack: &FrameAttack) {
    let mut stream = server.raw_ws("/echo").await;
    stream
        .write_all(&attack.bytes)
        .await
        .unwrap_or_else(|e| panic!("{}: writing the attack failed: {e}", attack.name));
    assert_eq!(
        read_close_code(&mut stream).await,
        Some(attack.code),
        "{}: close code",
        attack.name
    );
    wait_eof(&mut stream).await;
}

/// Slowloris: trickles an upgrade request one byte per [`SLOWLORIS_GAP`].
/// Returns once the server has hung up; panics if the whole request went out
/// first or if the server answered anything like a 101.
async fn slowloris(server: &TestServer) {
    let started = Instant::now();
    let (mut read, mut write) = TcpStream::connect(server.ws).await.unwrap().into_split();
    let request = upgrade_request("/echo", "");
    let trickle = async {
        for byte in request.bytes() {
            if write.write_all(&[byte]).await.is_err() {
                // The server is gone; its hang-up is what `hang_up` reports.
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(SLOWLORIS_GAP).await;
        }
    };
    let hang_up = async {
        let mut received = Vec::new();
        // A reset instead of a clean end is fine: a byte may cross the close.
        let _ = read.read_to_end(&mut received).await;
        received
    };
    let received = tokio::time::timeout(PATIENCE, async {
        tokio::select! {
            received = hang_up => received,
            () = trickle => panic!("slowloris: the whole request went out and the server never hung up"),
        }
    })
    .await
    .expect("slowloris: the server hangs up within PATIENCE");
    assert!(
        !received.starts_with(b"HTTP/1.1 101"),
        "slowloris: the server upgraded a request it cannot have read: {:?}",
        String::from_utf8_lossy(&received)
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "slowloris: hung up after {:?}, before the 1 s handshake timeout",
        started.elapsed()
    );
}

/// Connects a well-behaved client and checks that it echoes.
async fn good_client(server: &TestServer) -> Ws {
    let mut ws = server.ws("/echo").await;
    assert_echoes(&mut ws, "before the attack").await;
    ws
}

async fn assert_echoes(ws: &mut Ws, text: &str) {
    send_text(ws, text).await;
    assert_eq!(next_data(ws).await, Message::text(text));
}

/// After an attack: the well-behaved client still echoes, text and binary,
/// and a new client can still connect.
async fn assert_unaffected(server: &TestServer, good: &mut Ws) {
    assert_echoes(good, "after the attack").await;
    let binary = Message::binary(vec![0u8, 1, 2, 254, 255]);
    good.send(binary.clone()).await.unwrap();
    assert_eq!(next_data(good).await, binary);
    let mut fresh = server.ws("/echo").await;
    assert_echoes(&mut fresh, "a new client").await;
    close_and_wait(fresh).await;
}

/// Asserts that the enforcement counters are exactly `expected`, every
/// other reason zero.
fn assert_enforced(stats: &Stats, expected: &[(&str, u64)]) {
    let mut want = stats.enforced.clone();
    want.values_mut().for_each(|count| *count = 0);
    for &(reason, count) in expected {
        *want
            .get_mut(reason)
            .unwrap_or_else(|| panic!("unknown reason {reason}")) += count;
    }
    assert_eq!(stats.enforced, want, "enforcement counters");
}

/// The standard shape of a single-attack test: a good client, the attacks
/// one after another, then the checks.
async fn check_frame_attacks(attacks: &[FrameAttack]) {
    let server = server().await;
    let mut good = good_client(&server).await;
    let mut expected = Vec::new();
    for attack in attacks {
        run_attack(&server, attack).await;
        expected.push((attack.counter, 1));
    }
    let stats = server.handle.stats();
    assert_enforced(&stats, &expected);
    // The attackers' slots are released before their sockets close.
    assert_eq!(stats.connections, 1, "only the good client holds a slot");
    assert_unaffected(&server, &mut good).await;
}

#[tokio::test]
async fn a_gigabyte_frame_header_is_closed_with_1009() {
    check_frame_attacks(&[gigabyte_header()]).await;
}

#[tokio::test]
async fn slowloris_is_cut_off_at_the_handshake_timeout() {
    let server = server().await;
    let mut good = good_client(&server).await;
    slowloris(&server).await;
    // The counter is recorded before the socket is dropped.
    assert_enforced(&server.handle.stats(), &[("timeout", 1)]);
    // Hyper drops the socket before the service that holds the slot.
    eventually(&server.handle, |stats| stats.connections == 1).await;
    assert_unaffected(&server, &mut good).await;
}

#[tokio::test]
async fn invalid_utf8_text_is_closed_with_1007() {
    check_frame_attacks(&[invalid_utf8()]).await;
}

#[tokio::test]
async fn an_unmasked_frame_is_closed_with_1002() {
    check_frame_attacks(&[unmasked()]).await;
}

#[tokio::test]
async fn reserved_bits_without_an_extension_are_closed_with_1002() {
    check_frame_attacks(&reserved_bits()).await;
}

#[tokio::test]
async fn a_126_byte_ping_is_closed_with_1002() {
    check_frame_attacks(&[long_ping()]).await;
}

#[tokio::test]
async fn a_ten_megabyte_frame_is_closed_with_1009() {
    check_frame_attacks(&[ten_megabyte_frame()]).await;
}

#[tokio::test]
async fn fragments_adding_up_past_max_payload_are_closed_with_1009() {
    check_frame_attacks(&[oversized_fragments()]).await;
}

#[tokio::test]
async fn invalid_close_codes_are_answered_with_1002() {
    check_frame_attacks(&invalid_close_codes()).await;
}

#[tokio::test]
async fn reserved_opcodes_and_a_fragmented_ping_are_closed_with_1002() {
    check_frame_attacks(&undefined_frames()).await;
}

#[tokio::test]
async fn malformed_close_frames_are_answered_with_1002_or_1007() {
    check_frame_attacks(&malformed_closes()).await;
}

#[tokio::test]
async fn a_clients_close_is_answered_with_its_code_and_reason() {
    let server = server().await;
    for payload in [&b""[..], &1000u16.to_be_bytes(), b"\x0f\xa0bye \xc3\xa9"] {
        let mut stream = server.raw_ws("/echo").await;
        stream
            .write_all(&client_frame(0x88, payload.len() as u64, payload))
            .await
            .unwrap();
        let answer = read_server_frame(&mut stream).await;
        assert_eq!(answer, Some((0x88, payload.to_vec())), "{payload:?}");
        wait_eof(&mut stream).await;
    }
    assert_enforced(&server.handle.stats(), &[]);
}

#[tokio::test]
async fn a_data_frame_inside_a_fragmented_message_is_closed_with_1002() {
    check_frame_attacks(&[interleaved_data_frame()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_attacks_at_once_leave_twenty_busy_clients_unaffected() {
    const CLIENTS: usize = 20;
    const MESSAGES: usize = 50;
    let server = server().await;
    let mut goods = Vec::new();
    for _ in 0..CLIENTS {
        goods.push(good_client(&server).await);
    }
    let attacks = all_frame_attacks();

    let echoing = goods
        .into_iter()
        .enumerate()
        .map(|(client, ws)| async move {
            let (mut sink, mut stream) = ws.split();
            let sent: Vec<Message> = (0..MESSAGES)
                .map(|i| Message::text(format!("client {client} message {i}")))
                .collect();
            let sending = async {
                for message in &sent {
                    sink.send(message.clone()).await.unwrap();
                }
            };
            let receiving = async {
                let mut received = Vec::new();
                while received.len() < MESSAGES {
                    let message = tokio::time::timeout(PATIENCE, stream.next())
                        .await
                        .expect("an echo within PATIENCE")
                        .expect("stream open")
                        .expect("no protocol error");
                    match message {
                        Message::Text(_) | Message::Binary(_) => received.push(message),
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                        Message::Close(frame) => {
                            panic!("client {client}: unexpected close {frame:?}")
                        }
                    }
                }
                received
            };
            let ((), received) = tokio::join!(sending, receiving);
            assert_eq!(
                received, sent,
                "client {client}: every message echoed, in order"
            );
            sink.reunite(stream).unwrap()
        });
    let attacking =
        futures_util::future::join_all(attacks.iter().map(|attack| run_attack(&server, attack)));
    let (mut goods, _, ()) = tokio::join!(
        futures_util::future::join_all(echoing),
        attacking,
        slowloris(&server)
    );

    let mut expected: Vec<(&str, u64)> = attacks.iter().map(|attack| (attack.counter, 1)).collect();
    expected.push(("timeout", 1));
    let stats = server.handle.stats();
    assert_enforced(&stats, &expected);
    // The sums, spelled out.
    assert_eq!(
        stats.enforced["too_big"], 3,
        "1 GiB header, 10 MB frame, oversized fragments"
    );
    assert_eq!(
        stats.enforced["protocol"],
        3 + 1 + 1 + 1 + 1 + INVALID_CLOSE_CODES.len() as u64 + 3 + 2,
        "reserved bits, invalid UTF-8, unmasked, long ping, interleaved data frame, \
         invalid close codes, undefined frames, malformed closes"
    );
    assert_eq!(stats.enforced["timeout"], 1, "slowloris");
    eventually(&server.handle, |stats| stats.connections == CLIENTS).await;
    for ws in &mut goods {
        assert_unaffected(&server, ws).await;
    }
}

// Fragmentation faults fastwebsockets 0.10's reader lets through (it
// replaces or appends silently); ours refuses them.

/// The first frame the server sends: its opcode and payload.
async fn first_server_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let read = async {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).await?;
        let len = match head[1] & 0x7F {
            126 => u64::from(stream.read_u16().await?),
            127 => stream.read_u64().await?,
            n => u64::from(n),
        };
        let mut payload = vec![0u8; len as usize];
        stream.read_exact(&mut payload).await?;
        Ok::<_, std::io::Error>((head[0] & 0x0F, payload))
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("the server sends a frame within PATIENCE")
        .expect("a whole frame")
}

/// Makes `attack` and asserts that the server's first frame is the expected
/// close, and the counter; a data frame instead fails with its payload.
async fn check_first_frame_is_close(attack: FrameAttack) {
    let server = server().await;
    let mut good = good_client(&server).await;
    let mut stream = server.raw_ws("/echo").await;
    stream.write_all(&attack.bytes).await.unwrap();
    let (opcode, payload) = first_server_frame(&mut stream).await;
    assert_eq!(
        (
            opcode,
            payload
                .get(..2)
                .map(|code| u16::from_be_bytes([code[0], code[1]]))
        ),
        (0x8, Some(attack.code)),
        "{}: expected close {}, the server sent opcode {opcode:#x} with {:?}",
        attack.name,
        attack.code,
        String::from_utf8_lossy(&payload)
    );
    wait_eof(&mut stream).await;
    assert_enforced(&server.handle.stats(), &[(attack.counter, 1)]);
    assert_unaffected(&server, &mut good).await;
}

#[tokio::test]
async fn a_new_fragmented_message_inside_a_fragmented_message_is_closed_with_1002() {
    // Observed: the server echoes "newlo" ("hel" is lost) and keeps the
    // connection open; with 0x02 as the second opcode the text message even
    // turns binary.
    let mut bytes = client_frame(0x01, 3, b"hel");
    bytes.extend(client_frame(0x01, 3, b"new"));
    bytes.extend(client_frame(0x80, 2, b"lo"));
    check_first_frame_is_close(attack(
        "non-final data frame inside a message",
        bytes,
        1002,
        "protocol",
    ))
    .await;
}

#[tokio::test]
async fn a_fragmented_text_ending_mid_character_is_closed_with_1007() {
    // Observed: the server echoes "a" (the dangling 0xC3 is dropped) and
    // keeps the connection open.
    let mut bytes = client_frame(0x01, 1, b"a");
    bytes.extend(client_frame(0x80, 1, &[0xC3]));
    check_first_frame_is_close(attack("text ending mid-character", bytes, 1007, "protocol")).await;
}

#[tokio::test]
async fn a_stray_continuation_after_a_large_message_is_closed_with_1002() {
    // A complete 40 KiB message (echoed), then a continuation frame that
    // continues nothing. Observed: close 1009 "message too big" and
    // too_big = 1, because 40 KiB + 40 KiB > max_payload; a small stray
    // continuation gets 1002 as it should.
    let server = server().await;
    let mut stream = server.raw_ws("/echo").await;
    let mut bytes = client_frame(0x81, 40 * 1024, &[b'a'; 40 * 1024]);
    bytes.extend(client_frame(0x80, 40 * 1024, &[]));
    stream.write_all(&bytes).await.unwrap();
    let (opcode, echo) = first_server_frame(&mut stream).await;
    assert_eq!(
        (opcode, echo.len()),
        (0x1, 40 * 1024),
        "the complete message is echoed first"
    );
    assert_eq!(
        read_close_code(&mut stream).await,
        Some(1002),
        "a continuation without a message is a protocol error"
    );
    wait_eof(&mut stream).await;
    assert_enforced(&server.handle.stats(), &[("protocol", 1)]);
}
