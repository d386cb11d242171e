//! The server's TLS layer as clients see it: key updates in the middle of
//! traffic, session resumption, close_notify at the end of a session, an
//! alert for a client that does not speak TLS (also midway through a
//! handshake message), hostile hellos and records, and a handshake left
//! half-sent. The client is rustls's (tokio-rustls), which lets a test ask
//! for a key update; the Python peer (OpenSSL) covers TLS 1.2 and 1.3 in
//! tests/deflate_peers.rs.

mod common;

use std::sync::Arc;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::{
    TlsConnector,
    rustls::{self, HandshakeKind},
};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

const SERVER_KEYS: &str = r#"handshake_timeout = "1s""#;

const CHANNELS: &str = r#"
[limits]
max_payload = "1MiB"
handshake_rate = { per_second = 1000, burst = 1000 }

[[channel]]
name = "echo"
path = "/echo"
kind = "echo"
"#;

/// The TLS record type of an alert.
const ALERT_RECORD: u8 = 21;

async fn server() -> TestServer {
    start_with_server_keys(SERVER_KEYS, CHANNELS).await
}

/// A websocket over `tls`, upgraded on `/echo`.
async fn upgrade(server: &TestServer) -> Wss {
    let stream = tls_connect(server.wss, &server.cert).await;
    let request = format!("wss://localhost:{}/echo", server.wss.port())
        .into_client_request()
        .unwrap();
    let (ws, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::client_async(request, stream))
        .await
        .expect("handshake answered")
        .expect("upgraded");
    ws
}

/// Everything the server sends on `stream` before it hangs up.
async fn answer_until_hang_up(stream: &mut TcpStream) -> Vec<u8> {
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("the server hangs up")
        .unwrap();
    answer
}

/// Waits until one handshake has been refused for `reason`.
async fn rejected_once(server: &TestServer, reason: &str) {
    eventually(&server.handle, |stats| {
        stats.traffic.handshakes.get(&("rejected", reason)) == Some(&1)
    })
    .await;
}

#[tokio::test]
async fn key_updates_from_the_client_keep_the_echo_going() {
    let server = server().await;
    let mut ws = upgrade(&server).await;
    for round in 0..3u8 {
        // A key_update that also asks the server to update its own keys:
        // every record after it, each way, is under new keys.
        ws.get_mut().get_mut().1.refresh_traffic_keys().unwrap();
        for size in [5, 40_000] {
            let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8 ^ round).collect();
            ws.send(Message::binary(payload.clone())).await.unwrap();
            assert_eq!(next_data(&mut ws).await, Message::binary(payload));
        }
    }
}

#[tokio::test]
async fn a_returning_client_resumes_its_session() {
    let server = server().await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server.cert.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // One connector, so one client session cache (rustls's default).
    let connector = TlsConnector::from(Arc::new(config));
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let tcp = TcpStream::connect(server.wss).await.unwrap();
        let tls = connector
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        kinds.push(tls.get_ref().1.handshake_kind());
        // The echo makes the client read the tickets sent after the handshake.
        let request = format!("wss://localhost:{}/echo", server.wss.port())
            .into_client_request()
            .unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(request, tls).await.unwrap();
        ws.send(Message::text("hello")).await.unwrap();
        assert_eq!(next_data(&mut ws).await, Message::text("hello"));
        ws.close(None).await.unwrap();
    }
    assert_eq!(
        kinds,
        [Some(HandshakeKind::Full), Some(HandshakeKind::Resumed)]
    );
}

#[tokio::test]
async fn a_closed_session_ends_with_close_notify() {
    let server = server().await;
    let mut ws = upgrade(&server).await;
    ws.send(Message::text("bye")).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Message::text("bye"));
    ws.close(None).await.unwrap();
    while let Some(frame) = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("the server answers the close")
    {
        if frame.is_err() {
            break;
        }
    }
    // rustls reports a connection cut without close_notify as an error.
    let mut tls = ws.into_inner();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(PATIENCE, tls.read_to_end(&mut rest))
        .await
        .expect("the server hangs up");
    assert!(read.is_ok(), "no close_notify: {read:?}");
}

#[tokio::test]
async fn a_client_that_does_not_speak_tls_gets_an_alert() {
    let server = server().await;
    let mut stream = TcpStream::connect(server.wss).await.unwrap();
    stream
        .write_all(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let answer = answer_until_hang_up(&mut stream).await;
    assert_eq!(answer.first(), Some(&ALERT_RECORD), "answer: {answer:?}");
    rejected_once(&server, "tls").await;
}

#[tokio::test]
async fn a_request_inside_a_half_sent_hello_gets_an_alert() {
    let server = server().await;
    let mut stream = TcpStream::connect(server.wss).await.unwrap();
    // A whole record holding the first 4 bytes of a 508-byte ClientHello,
    // then plain HTTP where the rest should be: rustls is midway through a
    // handshake message when the error comes.
    let mut bytes = vec![22, 3, 1, 0, 4, 1, 0, 1, 252];
    bytes.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    stream.write_all(&bytes).await.unwrap();
    let answer = answer_until_hang_up(&mut stream).await;
    assert_eq!(answer.first(), Some(&ALERT_RECORD), "answer: {answer:?}");
    rejected_once(&server, "tls").await;
}

/// Bytes where a ClientHello should be, made from `seed`: noise, a
/// handshake record of noise, or a record that starts a ClientHello and
/// goes wrong, each of a random length.
fn hostile_hello(seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let len = (next() % 600) as usize;
    let mut bytes: Vec<u8> = match seed % 3 {
        0 => Vec::new(),
        1 => vec![22, 3, 1, (next() % 64) as u8, next() as u8],
        _ => vec![
            22,
            3,
            1,
            0,
            4 + (next() % 8) as u8,
            1,
            0,
            (next() % 4) as u8,
            next() as u8,
        ],
    };
    bytes.extend((0..len).map(|_| next() as u8));
    bytes
}

#[tokio::test]
async fn hostile_hellos_are_each_refused_and_the_server_carries_on() {
    const CLIENTS: u64 = 120;
    let server = server().await;
    let clients = (0..CLIENTS).map(|seed| {
        let addr = server.wss;
        tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            // The server may close before all of it is written.
            let _ = stream.write_all(&hostile_hello(seed)).await;
            let _ = stream.shutdown().await;
            let mut answer = Vec::new();
            let closed = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer)).await;
            assert!(closed.is_ok(), "hello {seed}: the server hangs up");
        })
    });
    for client in clients.collect::<Vec<_>>() {
        client.await.unwrap();
    }
    // Each refused as a failed TLS handshake: a connection whose task
    // panicked would not be counted.
    eventually(&server.handle, |stats| {
        stats.traffic.handshakes.get(&("rejected", "tls")) == Some(&CLIENTS)
    })
    .await;
    let mut ws = upgrade(&server).await;
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Message::text("still here"));
}

#[tokio::test]
async fn a_bad_record_after_the_upgrade_ends_the_connection() {
    let server = server().await;
    let mut ws = upgrade(&server).await;
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Message::text("before"));
    // Beneath TLS: an application-data record whose tag cannot verify.
    let tcp = ws.get_mut().get_mut().0;
    let mut record = vec![23, 3, 3, 0, 40];
    record.extend_from_slice(&[0x5a; 40]);
    tcp.write_all(&record).await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut rest))
        .await
        .expect("the server hangs up");
    eventually(&server.handle, |stats| stats.connections == 0).await;
    let mut again = upgrade(&server).await;
    again.send(Message::text("after")).await.unwrap();
    assert_eq!(next_data(&mut again).await, Message::text("after"));
}

#[tokio::test]
async fn a_half_sent_hello_is_dropped_at_the_handshake_timeout() {
    let server = server().await;
    let mut stream = TcpStream::connect(server.wss).await.unwrap();
    // A handshake record announcing 512 bytes, of which 6 arrive.
    stream
        .write_all(&[22, 3, 1, 2, 0, 1, 0, 1, 252, 3, 3])
        .await
        .unwrap();
    let answer = answer_until_hang_up(&mut stream).await;
    assert!(answer.is_empty(), "answer: {answer:?}");
    rejected_once(&server, "timeout").await;
}
