//! Faults the server must act on as soon as they show, over real sockets:
//! invalid UTF-8 in the first fragment of a text message (RFC 6455 section
//! 8.1: fail fast), compressed or not; bytes after a final deflate block;
//! and pings, which cost the server a pong each, spending the message rate.
//!
//! Each fault is followed by a ping: the server's first frame back must be
//! the close, not the pong of a server that is still waiting for the rest.

mod common;

use common::{deflate::Deflater, *};
use tokio::{io::AsyncWriteExt, net::TcpStream};

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

const CHANNELS: &str = r#"
[limits]
handshake_rate = { per_second = 1000, burst = 1000 }

[[channel]]
name = "echo"
path = "/echo"
kind = "echo"
compression = { mode = "dedicated" }

[[channel]]
name = "strict"
path = "/strict"
kind = "echo"
[channel.limits]
message_rate = { per_second = 1, burst = 5, on_exceed = "close" }
"#;

/// A raw connection on `path` that offered (and got) permessage-deflate.
async fn connect(server: &TestServer, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(server.ws).await.unwrap();
    assert_eq!(
        upgrade_status(
            &mut stream,
            path,
            "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n"
        )
        .await,
        101
    );
    stream
}

/// Writes `bytes` and a ping, and asserts that the server's first frame is
/// a close with `code`.
async fn assert_closed_before_the_pong(server: &TestServer, name: &str, bytes: &[u8], code: u16) {
    let mut stream = connect(server, "/echo").await;
    let mut attack = bytes.to_vec();
    attack.extend(client_frame(FIN | OP_PING, 4, b"ping"));
    stream.write_all(&attack).await.unwrap();
    let (first, payload) = read_server_frame(&mut stream)
        .await
        .unwrap_or_else(|| panic!("{name}: the connection ended without a frame"));
    assert_eq!(
        (first & 0x0F, payload.get(..2)),
        (OP_CLOSE, Some(&code.to_be_bytes()[..])),
        "{name}: expected close {code} first, got opcode {:#x} with {:?}",
        first & 0x0F,
        String::from_utf8_lossy(&payload)
    );
    wait_eof(&mut stream).await;
}

#[tokio::test]
async fn invalid_utf8_in_a_first_fragment_closes_1007_before_the_message_ends() {
    let server = start(CHANNELS).await;
    // 0xFF can never appear in UTF-8; the message is never finished.
    let plain = client_frame(OP_TEXT, 3, b"a\xFFb");
    assert_closed_before_the_pong(&server, "plain", &plain, 1007).await;
    // The same bytes, compressed: invalid once inflated.
    let compressed = Deflater::new(15, true).compress(b"a\xFFb");
    let frame = client_frame(RSV1 | OP_TEXT, compressed.len() as u64, &compressed);
    assert_closed_before_the_pong(&server, "compressed", &frame, 1007).await;
    // A character cut between fragments is not invalid yet: "é" split in
    // two is echoed whole.
    let mut stream = connect(&server, "/echo").await;
    let mut split = client_frame(OP_TEXT, 2, b"a\xC3");
    split.extend(client_frame(FIN, 2, b"\xA9b"));
    stream.write_all(&split).await.unwrap();
    assert_eq!(
        read_server_frame(&mut stream).await,
        Some((FIN | OP_TEXT, "aéb".as_bytes().to_vec()))
    );
    assert_eq!(server.handle.stats().enforced["protocol"], 2);
}

#[tokio::test]
async fn bytes_after_a_final_deflate_block_close_1007() {
    let server = start(CHANNELS).await;
    // A stored block with BFINAL set (01, LEN, NLEN, data) ends the deflate
    // stream; what follows it is not deflate data.
    let mut payload = vec![0x01, 0x02, 0x00, 0xFD, 0xFF];
    payload.extend_from_slice(b"hi");
    let alone = client_frame(FIN | RSV1 | OP_BINARY, payload.len() as u64, &payload);
    // Without trailing bytes the final block is allowed, and echoed.
    let mut stream = connect(&server, "/echo").await;
    stream.write_all(&alone).await.unwrap();
    assert_eq!(
        read_server_frame(&mut stream).await,
        Some((FIN | OP_BINARY, b"hi".to_vec()))
    );
    payload.extend_from_slice(b"junk");
    let trailing = client_frame(FIN | RSV1 | OP_BINARY, payload.len() as u64, &payload);
    assert_closed_before_the_pong(&server, "junk after the final block", &trailing, 1007).await;
    assert_eq!(server.handle.stats().enforced["protocol"], 1);
}

#[tokio::test]
async fn pings_spend_the_message_rate() {
    let server = start(CHANNELS).await;
    let mut stream = TcpStream::connect(server.ws).await.unwrap();
    upgrade(&mut stream, "/strict").await;
    let pings: Vec<u8> = (0..6u8)
        .flat_map(|i| client_frame(FIN | OP_PING, 1, &[i]))
        .collect();
    stream.write_all(&pings).await.unwrap();
    // The burst of 5 is answered; the sixth ping is over the rate.
    for i in 0..5u8 {
        assert_eq!(
            read_server_frame(&mut stream).await,
            Some((FIN | OP_PONG, vec![i])),
            "pong {i}"
        );
    }
    assert_eq!(read_close_code(&mut stream).await, Some(1008));
    assert_eq!(server.handle.stats().enforced["rate_limit"], 1);
}
