//! Admission answers over real sockets: every refusal's status, headers and
//! body, the 101 itself, origins, rooms, subprotocols and the handshake
//! timeout.

mod common;

use common::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Short enough that the timeout test is quick.
const SERVER_KEYS: &str = r#"handshake_timeout = "1s""#;

const CHANNELS: &str = r#"
[[channel]]
name = "echo"
path = "/echo"
kind = "echo"
subprotocols = ["chat.v2", "chat.v1"]

[[channel]]
name = "site"
path = "/site"
kind = "echo"
origins = ["https://example.com", "https://*.example.org"]

[[channel]]
name = "tools"
path = "/tools"
kind = "echo"
origins = ["https://example.com"]
allow_missing_origin = true

[[channel]]
name = "chat"
path = "/chat/{room}"
kind = "room"
max_members = 2
max_rooms = 2
"#;

async fn server() -> TestServer {
    start_with_server_keys(SERVER_KEYS, CHANNELS).await
}

#[tokio::test]
async fn unknown_path_is_404() {
    let server = server().await;
    let answer = server.raw_http(&upgrade_request("/nope", "")).await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.body, "no channel at this path\n");
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(answer.header("connection"), Some("close"));
}

#[tokio::test]
async fn plain_get_on_a_channel_is_426_with_upgrade_header() {
    let server = server().await;
    let answer = server
        .raw_http("GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    assert_eq!(answer.status, 426);
    assert_eq!(answer.header("upgrade"), Some("websocket"));
    assert_eq!(answer.body, "this path serves WebSocket connections only\n");
}

#[tokio::test]
async fn other_methods_are_405() {
    let server = server().await;
    let answer = server
        .raw_http("POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")
        .await;
    assert_eq!(answer.status, 405);
    assert_eq!(answer.header("allow"), Some("GET"));
}

#[tokio::test]
async fn malformed_upgrades_are_400() {
    let server = server().await;
    let no_key = "GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let answer = server.raw_http(no_key).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (400, "missing or malformed Sec-WebSocket-Key\n")
    );

    let old_version = upgrade_request("/echo", "")
        .replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
    let answer = server.raw_http(&old_version).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.header("sec-websocket-version"), Some("13"));
    assert_eq!(
        answer.body,
        "unsupported Sec-WebSocket-Version; this server speaks version 13\n"
    );

    let no_connection = upgrade_request("/echo", "").replace("Connection: Upgrade\r\n", "");
    let answer = server.raw_http(&no_connection).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (400, "the Connection header must include Upgrade\n")
    );
}

/// A body on an upgrade request would be dropped or read as WebSocket
/// frames depending on how the packets fell: refused, and counted.
#[tokio::test]
async fn an_upgrade_with_a_body_is_400() {
    let server = server().await;
    for (headers, body) in [
        ("Content-Length: 6\r\n", "abcdef"),
        ("Transfer-Encoding: chunked\r\n", "2\r\nhi\r\n0\r\n\r\n"),
    ] {
        let request = format!("{}{body}", upgrade_request("/echo", headers));
        let answer = server.raw_http(&request).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (400, "a WebSocket upgrade request must not have a body\n"),
            "{headers:?}"
        );
        assert_eq!(answer.header("connection"), Some("close"));
    }
    let empty = upgrade_request("/echo", "Content-Length: 0\r\n");
    assert_eq!(server.raw_http(&empty).await.status, 101);
    let handshakes = server.handle.stats().traffic.handshakes;
    assert_eq!(handshakes[&("rejected", "bad_request")], 2);
}

#[tokio::test]
async fn a_good_upgrade_is_101_with_the_rfc_accept_key() {
    let server = server().await;
    let answer = server.raw_http(&upgrade_request("/echo", "")).await;
    assert_eq!(answer.status, 101);
    // The worked example of RFC 6455 section 1.3.
    assert_eq!(
        answer.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert_eq!(answer.header("sec-websocket-protocol"), None);
    assert_eq!(
        answer.header("sec-websocket-extensions"),
        None,
        "extensions are not negotiated yet"
    );
}

#[tokio::test]
async fn origins_are_checked_against_the_allow_list() {
    let server = server().await;
    let cases = [
        ("/site", Some("https://example.com"), 101),
        ("/site", Some("https://chat.example.org"), 101),
        ("/site", Some("https://example.org"), 403),
        ("/site", Some("https://evil.com"), 403),
        ("/site", Some("http://example.com"), 403),
        ("/site", None, 403),
        ("/tools", None, 101),
        ("/tools", Some("https://evil.com"), 403),
        ("/echo", Some("https://anything.test"), 101),
    ];
    for (path, origin, status) in cases {
        let header = origin
            .map(|o| format!("Origin: {o}\r\n"))
            .unwrap_or_default();
        let answer = server.raw_http(&upgrade_request(path, &header)).await;
        assert_eq!(answer.status, status, "{path} with origin {origin:?}");
        if status == 403 {
            assert_eq!(answer.body, "origin not allowed\n");
        }
    }
}

#[tokio::test]
async fn room_names_outside_the_alphabet_are_400() {
    let server = server().await;
    let long = format!("/chat/{}", "r".repeat(65));
    for path in ["/chat/a%20b", "/chat/caf%C3%A9", "/chat/a!b", long.as_str()] {
        let answer = server.raw_http(&upgrade_request(path, "")).await;
        assert_eq!(answer.status, 400, "{path}");
        assert!(
            answer.body.starts_with("room names are 1-64 characters"),
            "{path}: {}",
            answer.body
        );
    }
    let answer = server
        .raw_http(&upgrade_request(&format!("/chat/{}", "r".repeat(64)), ""))
        .await;
    assert_eq!(answer.status, 101);
}

#[tokio::test]
async fn full_rooms_and_too_many_rooms_are_503() {
    let server = server().await;
    let _a1 = server.ws("/chat/a").await;
    let _a2 = server.ws("/chat/a").await;
    let answer = server.raw_http(&upgrade_request("/chat/a", "")).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (503, "room is full\n")
    );

    let _b = server.ws("/chat/b").await;
    let answer = server.raw_http(&upgrade_request("/chat/c", "")).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (503, "too many rooms\n")
    );

    let stats = server.handle.stats();
    let chat = stats.channel("chat").unwrap();
    assert_eq!(chat.connections, 3, "refused clients never joined");
    assert_eq!(chat.rooms.len(), 2);
}

#[tokio::test]
async fn the_first_offered_accepted_subprotocol_is_selected() {
    let server = server().await;
    let cases = [
        ("chat.v1, chat.v2", Some("chat.v1")),
        ("x, chat.v2", Some("chat.v2")),
        ("x, y", None),
    ];
    for (offer, selected) in cases {
        let mut request = format!("ws://{}/echo", server.ws)
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", offer.parse().unwrap());
        let answer = server
            .raw_http(&upgrade_request(
                "/echo",
                &format!("Sec-WebSocket-Protocol: {offer}\r\n"),
            ))
            .await;
        assert_eq!(answer.status, 101);
        assert_eq!(
            answer.header("sec-websocket-protocol"),
            selected,
            "offer {offer}"
        );
        if selected.is_some() {
            // An independent client accepts the server's choice.
            server
                .ws_request(request)
                .await
                .unwrap_or_else(|e| panic!("offer {offer}: {e}"));
        }
    }
}

#[tokio::test]
async fn a_silent_client_is_dropped_at_the_handshake_timeout() {
    let server = server().await;
    // Plain: part of a request line, then nothing (slowloris).
    let mut plain = TcpStream::connect(server.ws).await.unwrap();
    plain
        .write_all(b"GET /echo HTTP/1.1\r\nHost: local")
        .await
        .unwrap();
    // TLS: a TCP connection that never starts the handshake.
    let mut tls = TcpStream::connect(server.wss).await.unwrap();
    for stream in [&mut plain, &mut tls] {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest))
            .await
            .expect("the server hangs up");
        assert!(
            read.is_ok_and(|_| !String::from_utf8_lossy(&rest).contains("101")),
            "no upgrade for a timed-out client"
        );
    }
}
