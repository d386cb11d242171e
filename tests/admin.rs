//! The admin listener through a real server on 127.0.0.1 port 0: every
//! endpoint's statuses, the bearer token, publishing text and binary to
//! real subscribers, /channels, /metrics values after known traffic,
//! readiness during shutdown, and (through the binary at RUST_LOG=trace)
//! that no query string, Authorization, cookie or subprotocol value ever
//! reaches a log line.

mod common;

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use common::{
    HttpAnswer, KillOnDrop, PATIENCE, close_and_wait, next_close, next_data, send_text, wait_closed,
};
use futures_util::SinkExt;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tokio_tungstenite::tungstenite::{
    Message,
    client::IntoClientRequest,
    http::HeaderValue,
    protocol::{CloseFrame, frame::coding::CloseCode},
};
use wsedge::{Config, Handle, Listener, Server};

const TOKEN: &str = "test-admin-token-5b1d";

/// A server with one plain WebSocket listener and the admin listener.
struct AdminServer {
    handle: Handle,
    ws: SocketAddr,
    admin: SocketAddr,
    task: JoinHandle<Result<(), wsedge::Error>>,
    _dir: tempfile::TempDir,
}

/// Starts a server from `[server]` keys, whether to configure a token, and
/// the rest of the file (limits, channels).
async fn start(server_keys: &str, with_token: bool, rest: &str) -> AdminServer {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let token_line = if with_token {
        format!("token_file = {:?}\n", token_file.display().to_string())
    } else {
        String::new()
    };
    let toml = format!(
        "[server]\nplain = [\"127.0.0.1:0\"]\n{server_keys}\n\n[admin]\nlisten = \"127.0.0.1:0\"\n{token_line}\n{rest}"
    );
    let config = Config::from_toml_str(&toml)
        .unwrap_or_else(|e| panic!("test config is invalid:\n{e}\n---\n{toml}"));
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (ws, admin_addr) = (plain.local_addr().unwrap(), admin.local_addr().unwrap());
    let server = Server::new(config).expect("server builds");
    let handle = server.handle();
    let listeners = vec![Listener::plain(plain), Listener::admin(admin)];
    let task = tokio::spawn(server.serve(listeners, std::future::pending()));
    AdminServer {
        handle,
        ws,
        admin: admin_addr,
        task,
        _dir: dir,
    }
}

const CHANNELS: &str = r#"
[[channel]]
name = "echo"
path = "/echo"
kind = "echo"
[channel.limits]
max_payload = "1KiB"

[[channel]]
name = "news"
path = "/news"
kind = "broadcast"
[channel.limits]
max_payload = "1KiB"

[[channel]]
name = "chat"
path = "/chat/{room}"
kind = "room"
"#;

/// An HTTP answer read to the end of the connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }
}

/// Sends `head` (request line and headers, without the final blank line),
/// then `Connection: close` and `body`, and reads the answer until the
/// server closes. `Content-Length` is added when `body` is not empty.
async fn http(addr: SocketAddr, head: &str, body: &[u8]) -> Answer {
    let length = if body.is_empty() {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    let mut request =
        format!("{head}\r\nHost: admin\r\nConnection: close\r\n{length}\r\n").into_bytes();
    request.extend_from_slice(body);
    send_raw(addr, &request).await
}

/// Writes `bytes` verbatim and reads the answer until the server closes.
async fn send_raw(addr: SocketAddr, bytes: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
        .await
        .expect("the server answers and closes within PATIENCE")
        .expect("read the answer");
    parse_answer(&raw)
}

fn parse_answer(raw: &[u8]) -> Answer {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = HttpAnswer::parse_head(&raw[..end]);
    let mut body = raw[end + 4..].to_vec();
    if head.header("transfer-encoding") == Some("chunked") {
        body = dechunk(&body);
    }
    Answer {
        status: head.status,
        headers: head.headers,
        body,
    }
}

fn dechunk(mut chunked: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = chunked.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&chunked[..line_end]).unwrap(), 16).unwrap();
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&chunked[line_end + 2..line_end + 2 + size]);
        chunked = &chunked[line_end + 2 + size + 2..];
    }
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

/// POSTs `body` to `path` with the right token and a content type.
async fn publish(
    server: &AdminServer,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Answer {
    let content_type = content_type.map_or(String::new(), |t| format!("\r\nContent-Type: {t}"));
    http(
        server.admin,
        &format!("POST {path} HTTP/1.1\r\n{}{content_type}", bearer(TOKEN)),
        body,
    )
    .await
}

/// `/metrics` as a map from series (name and labels, as written) to value.
async fn scrape(server: &AdminServer) -> HashMap<String, f64> {
    let answer = http(server.admin, "GET /metrics HTTP/1.1", b"").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = answer.text();
    assert!(text.ends_with("# EOF\n"), "{text}");
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

fn value(metrics: &HashMap<String, f64>, series: &str) -> f64 {
    metrics.get(series).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn health_readiness_and_unknown_paths() {
    let server = start(
        "drain_window = \"100ms\"",
        true,
        &format!("[limits]\nclose_timeout = \"20s\"\n{CHANNELS}"),
    )
    .await;
    let admin = server.admin;
    let healthz = http(admin, "GET /healthz HTTP/1.1", b"").await;
    assert_eq!((healthz.status, healthz.text().as_str()), (200, "ok\n"));
    assert_eq!(http(admin, "HEAD /healthz HTTP/1.1", b"").await.status, 200);
    let readyz = http(admin, "GET /readyz HTTP/1.1", b"").await;
    assert_eq!((readyz.status, readyz.text().as_str()), (200, "ready\n"));
    for (head, status, allow) in [
        ("POST /readyz HTTP/1.1", 405, Some("GET, HEAD")),
        ("DELETE /metrics HTTP/1.1", 405, Some("GET, HEAD")),
        ("PUT /channels HTTP/1.1", 405, Some("GET, HEAD")),
        ("GET /publish/news HTTP/1.1", 405, Some("POST")),
        ("GET /nothing-here HTTP/1.1", 404, None),
        // The dashboard page (its login form needs no token).
        ("GET / HTTP/1.1", 200, None),
        ("POST / HTTP/1.1", 405, Some("GET, HEAD")),
        ("POST /publish HTTP/1.1", 404, None),
        ("GET /metrics?extra=1 HTTP/1.1", 200, None),
    ] {
        let answer = http(admin, head, b"").await;
        assert_eq!(answer.status, status, "{head}: {answer:?}");
        assert_eq!(answer.header("allow"), allow, "{head}");
    }

    // A client that does not answer the close keeps the drain going.
    let (mut client, _) = tokio_tungstenite::client_async(
        format!("ws://{}/echo", server.ws),
        TcpStream::connect(server.ws).await.unwrap(),
    )
    .await
    .unwrap();
    server.handle.shutdown();
    let readyz = http(admin, "GET /readyz HTTP/1.1", b"").await;
    assert_eq!(
        (readyz.status, readyz.text().as_str()),
        (503, "shutting down\n")
    );
    assert_eq!(http(admin, "GET /healthz HTTP/1.1", b"").await.status, 200);
    assert_eq!(http(admin, "GET /metrics HTTP/1.1", b"").await.status, 200);

    let close = next_close(&mut client).await.expect("a close code");
    assert_eq!(close.code, CloseCode::Away);
    wait_closed(&mut client).await;
    drop(client);
    tokio::time::timeout(PATIENCE, server.task)
        .await
        .expect("serve returns once the drain is over")
        .unwrap()
        .unwrap();
    // The admin listener went with it.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while TcpStream::connect(admin).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "admin still accepting"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn token_guards_channels_and_publish() {
    let server = start("", true, CHANNELS).await;
    let admin = server.admin;
    let refused = [
        String::new(),
        bearer("wrong"),
        bearer(&TOKEN[..TOKEN.len() - 1]),
        bearer(&format!("{TOKEN}x")),
        format!("Authorization: Basic {TOKEN}"),
        format!("Authorization: {TOKEN}"),
    ];
    for authorization in &refused {
        let separator = if authorization.is_empty() { "" } else { "\r\n" };
        for head in [
            format!("GET /channels HTTP/1.1{separator}{authorization}"),
            format!(
                "POST /publish/news HTTP/1.1\r\nContent-Type: text/plain{separator}{authorization}"
            ),
        ] {
            let answer = http(admin, &head, b"hi").await;
            assert_eq!(answer.status, 401, "{head}: {answer:?}");
            assert!(
                answer
                    .header("www-authenticate")
                    .is_some_and(|v| v.starts_with("Bearer")),
                "{answer:?}"
            );
        }
    }
    let channels = http(
        admin,
        &format!("GET /channels HTTP/1.1\r\n{}", bearer(TOKEN)),
        b"",
    )
    .await;
    assert_eq!(channels.status, 200, "{channels:?}");
    assert_eq!(channels.header("content-type"), Some("application/json"));
    let lowercase = http(
        admin,
        &format!("GET /channels HTTP/1.1\r\nauthorization: bearer {TOKEN}"),
        b"",
    )
    .await;
    assert_eq!(lowercase.status, 200, "the scheme is case-insensitive");
    // Health and metrics need no token.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let answer = http(admin, &format!("GET {path} HTTP/1.1"), b"").await;
        assert_eq!(answer.status, 200, "{path}");
    }

    // Without token_file nothing is authorized, whatever is presented.
    let untokened = start("", false, CHANNELS).await;
    let answer = http(
        untokened.admin,
        &format!("GET /channels HTTP/1.1\r\n{}", bearer(TOKEN)),
        b"",
    )
    .await;
    assert_eq!(answer.status, 401);
    assert!(answer.text().contains("no admin token"), "{answer:?}");
    let answer = http(
        untokened.admin,
        &format!("POST /publish/news HTTP/1.1\r\n{}", bearer(TOKEN)),
        b"x",
    )
    .await;
    assert_eq!(answer.status, 401);
}

#[tokio::test]
async fn publish_delivers_text_and_binary() {
    let server = start("", true, CHANNELS).await;
    let mut subscriber = connect(&server, "/news").await;
    let mut member = connect(&server, "/chat/lobby").await;

    let answer = publish(&server, "/publish/news", Some("text/plain"), b"hello").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json(), serde_json::json!({ "delivered": 1 }));
    assert_eq!(next_data(&mut subscriber).await, Message::text("hello"));

    let answer = publish(
        &server,
        "/publish/news",
        Some("text/markdown; charset=utf-8"),
        "*héllo*".as_bytes(),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(next_data(&mut subscriber).await, Message::text("*héllo*"));

    let bytes = [0u8, 1, 2, 255];
    let answer = publish(
        &server,
        "/publish/news",
        Some("application/octet-stream"),
        &bytes,
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        next_data(&mut subscriber).await,
        Message::binary(bytes.to_vec())
    );

    let answer = publish(&server, "/publish/news", Some("application/json"), b"{}").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        next_data(&mut subscriber).await,
        Message::binary(b"{}".to_vec())
    );

    let answer = publish(&server, "/publish/news", None, b"raw").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        next_data(&mut subscriber).await,
        Message::binary(b"raw".to_vec())
    );

    // Exactly max_payload (1 KiB) passes.
    let full = vec![b'a'; 1024];
    let answer = publish(&server, "/publish/news", Some("text/plain"), &full).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        next_data(&mut subscriber).await,
        Message::text(String::from_utf8(full).unwrap())
    );

    let answer = publish(
        &server,
        "/publish/chat/lobby",
        Some("text/plain"),
        b"hi room",
    )
    .await;
    assert_eq!(answer.json(), serde_json::json!({ "delivered": 1 }));
    assert_eq!(next_data(&mut member).await, Message::text("hi room"));
    let answer = publish(
        &server,
        "/publish/chat/empty",
        Some("text/plain"),
        b"nobody",
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json(), serde_json::json!({ "delivered": 0 }));

    for (path, content_type, body, status) in [
        ("/publish/nope", Some("text/plain"), &b"x"[..], 404),
        ("/publish/nope/room", None, b"x", 404),
        ("/publish/chat", Some("text/plain"), b"x", 400),
        ("/publish/news/room", Some("text/plain"), b"x", 400),
        ("/publish/echo", Some("text/plain"), b"x", 400),
        ("/publish/chat/bad%20name", Some("text/plain"), b"x", 400),
        ("/publish/news", Some("text/plain"), b"\xff\xfe", 400),
        ("/publish/news/", None, b"x", 404),
    ] {
        let answer = publish(&server, path, content_type, body).await;
        assert_eq!(answer.status, status, "{path}: {answer:?}");
    }

    // Over max_payload by Content-Length: refused before the body is sent.
    let head = format!(
        "POST /publish/news HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n{}\r\nContent-Length: 1025\r\n\r\n",
        bearer(TOKEN)
    );
    let answer = send_raw(server.admin, head.as_bytes()).await;
    assert_eq!(answer.status, 413, "{answer:?}");
    // Over max_payload in a chunked body: refused once the limit is passed.
    let mut chunked = format!(
        "POST /publish/news HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n{}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        bearer(TOKEN),
        1025
    )
    .into_bytes();
    chunked.extend_from_slice(&[b'b'; 1025]);
    let answer = send_raw(server.admin, &chunked).await;
    assert_eq!(answer.status, 413, "{answer:?}");

    // The same operation stays on the embedded handle.
    let delivered = server
        .handle
        .publish("news", None, wsedge::Message::text("from the handle"))
        .unwrap();
    assert_eq!(delivered, 1);
    assert_eq!(
        next_data(&mut subscriber).await,
        Message::text("from the handle")
    );
    close_and_wait(subscriber).await;
    close_and_wait(member).await;
}

/// A ws:// client on `path` of `server`.
async fn connect(server: &AdminServer, path: &str) -> common::Ws {
    let stream = TcpStream::connect(server.ws).await.unwrap();
    let request = format!("ws://{}{path}", server.ws)
        .into_client_request()
        .unwrap();
    tokio::time::timeout(PATIENCE, tokio_tungstenite::client_async(request, stream))
        .await
        .expect("handshake answered")
        .unwrap_or_else(|e| panic!("connect to {path} failed: {e}"))
        .0
}

#[tokio::test]
async fn channels_reports_channels_rooms_and_counters() {
    let server = start("", true, CHANNELS).await;
    let clients = [
        connect(&server, "/chat/lobby").await,
        connect(&server, "/chat/lobby").await,
        connect(&server, "/chat/dev").await,
        connect(&server, "/news").await,
    ];
    let answer = http(
        server.admin,
        &format!("GET /channels HTTP/1.1\r\n{}", bearer(TOKEN)),
        b"",
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let document = answer.json();
    let channel = |name: &str| {
        document["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {document}"))
            .clone()
    };
    assert_eq!(channel("chat")["kind"], "room");
    assert_eq!(channel("chat")["connections"], 3);
    assert_eq!(
        channel("chat")["rooms"],
        serde_json::json!({ "lobby": 2, "dev": 1 })
    );
    assert_eq!(channel("news")["kind"], "broadcast");
    assert_eq!(channel("news")["connections"], 1);
    assert_eq!(channel("echo")["connections"], 0);
    assert_eq!(document["connections"], 4);
    assert_eq!(document["connections_accepted"], 4);
    assert!(document["messages_received"].is_u64(), "{document}");
    assert!(document["enforced"]["ip_cap"].is_u64(), "{document}");
    assert_eq!(document["last_reload_successful"], true);
    for client in clients {
        close_and_wait(client).await;
    }
}

/// Accepts wait for the client's first bytes: a connection that has sent
/// nothing is not the server's yet (not counted, holding no slot), while one
/// opened after it and upgraded at once is; once it speaks, it is served.
#[tokio::test]
async fn a_connection_is_accepted_once_its_first_bytes_arrive() {
    let server = start("", true, CHANNELS).await;
    let before = scrape(&server).await;
    let accepted = |metrics: &HashMap<String, f64>| {
        value(metrics, "wsedge_connections_accepted_total")
            - value(&before, "wsedge_connections_accepted_total")
    };
    let mut silent = TcpStream::connect(server.ws).await.unwrap();
    let client = connect(&server, "/echo").await;
    let meanwhile = scrape(&server).await;
    assert_eq!(accepted(&meanwhile), 1.0, "only the connection that spoke");
    assert_eq!(value(&meanwhile, "wsedge_connections_active"), 1.0);

    common::upgrade(&mut silent, "/echo").await;
    assert_eq!(accepted(&scrape(&server).await), 2.0);
    close_and_wait(client).await;
}

#[tokio::test]
async fn metrics_follow_known_traffic() {
    let server = start("", true, CHANNELS).await;
    let before = scrape(&server).await;
    assert_eq!(value(&before, "wsedge_connections_active"), 0.0);
    assert_eq!(value(&before, "wsedge_config_last_reload_successful"), 1.0);
    let applied = value(
        &before,
        "wsedge_config_last_reload_success_timestamp_seconds",
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        applied > now - 600.0 && applied <= now + 1.0,
        "{applied} vs {now}"
    );
    assert_eq!(
        value(
            &before,
            &format!(
                "wsedge_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        1.0
    );

    // 3 connections, 5 messages of 10 + 20 + 30 + 40 + 50 bytes, all echoed.
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connect(&server, "/echo").await);
    }
    let sizes = [10usize, 20, 30, 40, 50];
    for (index, size) in sizes.iter().enumerate() {
        let client = &mut clients[index % 3];
        let text = "m".repeat(*size);
        send_text(client, &text).await;
        assert_eq!(next_data(client).await, Message::text(text));
    }
    let refused = common::upgrade_request("/nowhere", "");
    assert_eq!(send_raw(server.ws, refused.as_bytes()).await.status, 404);

    let after = scrape(&server).await;
    let delta = |series: &str| value(&after, series) - value(&before, series);
    let total: f64 = sizes.iter().sum::<usize>() as f64;
    assert_eq!(value(&after, "wsedge_connections_active"), 3.0);
    assert_eq!(delta("wsedge_connections_accepted_total"), 4.0);
    assert_eq!(
        delta("wsedge_handshakes_total{result=\"accepted\",reason=\"none\"}"),
        3.0
    );
    assert_eq!(
        delta("wsedge_handshakes_total{result=\"rejected\",reason=\"not_found\"}"),
        1.0
    );
    assert_eq!(
        delta("wsedge_messages_received_total{channel_kind=\"echo\"}"),
        5.0
    );
    assert_eq!(
        delta("wsedge_messages_sent_total{channel_kind=\"echo\"}"),
        5.0
    );
    assert_eq!(
        delta("wsedge_messages_received_total{channel_kind=\"room\"}"),
        0.0
    );
    assert_eq!(delta("wsedge_payload_received_bytes_total"), total);
    assert_eq!(delta("wsedge_payload_sent_bytes_total"), total);
    // Client frames carry a 6-byte header, server frames 2; plus the handshakes.
    assert!(delta("wsedge_wire_received_bytes_total") >= total + 5.0 * 6.0);
    assert!(delta("wsedge_wire_sent_bytes_total") >= total + 5.0 * 2.0);
    assert_eq!(
        value(
            &after,
            "wsedge_channel_connections{channel=\"echo\",channel_kind=\"echo\"}"
        ),
        3.0
    );

    // Two clients close with 1000; the third sends more than max_payload.
    let mut third = clients.pop().unwrap();
    for mut client in clients {
        let normal = CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        };
        client.close(Some(normal)).await.unwrap();
        wait_closed(&mut client).await;
    }
    third.send(Message::binary(vec![0u8; 2048])).await.unwrap();
    let close = next_close(&mut third).await.expect("a close code");
    assert_eq!(close.code, CloseCode::Size);
    wait_closed(&mut third).await;

    let end = scrape(&server).await;
    let delta = |series: &str| value(&end, series) - value(&before, series);
    assert_eq!(value(&end, "wsedge_connections_active"), 0.0);
    assert_eq!(
        delta("wsedge_disconnects_total{code=\"1000\",initiator=\"client\"}"),
        2.0
    );
    assert_eq!(
        delta("wsedge_disconnects_total{code=\"1009\",initiator=\"server\"}"),
        1.0
    );
    assert_eq!(
        delta("wsedge_limits_enforced_total{reason=\"too_big\"}"),
        1.0
    );
}

#[tokio::test]
async fn metrics_carry_no_room_or_client_labels() {
    let server = start("", true, CHANNELS).await;
    let member = connect(&server, "/chat/secret-room-name").await;
    let answer = http(server.admin, "GET /metrics HTTP/1.1", b"").await;
    let text = answer.text();
    assert!(!text.contains("secret-room-name"), "{text}");
    assert!(!text.contains("127.0.0.1"), "{text}");
    assert!(
        text.contains("wsedge_channel_rooms{channel=\"chat\"} 1"),
        "{text}"
    );
    close_and_wait(member).await;
}

/// Markers sent where secrets go; none may appear in any log line.
const QUERY: &str = "QUERYMARKER91c2";
const AUTH: &str = "AUTHMARKER4e7d";
const COOKIE: &str = "COOKIEMARKER0b55";
const PROTOCOL: &str = "PROTOMARKER3a9f";
const SECRET_TOKEN: &str = "TOKENMARKER77e0";

#[tokio::test]
async fn no_query_string_authorization_cookie_or_subprotocol_in_logs() {
    let files = common::CertFiles::generate();
    let token_file = files.dir.path().join("admin.token");
    std::fs::write(&token_file, SECRET_TOKEN).unwrap();
    let jwt_secret = files.dir.path().join("jwt.secret");
    std::fs::write(&jwt_secret, "s".repeat(64)).unwrap();
    let config = files.dir.path().join("wsedge.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
listen = ["127.0.0.1:0"]
plain = ["127.0.0.1:0"]
drain_window = "100ms"

[server.tls]
cert = {cert:?}
key = {key:?}

[admin]
listen = "127.0.0.1:0"
token_file = {token:?}

[auth]
algorithms = ["HS256"]
secret_file = {jwt_secret:?}
sources = ["bearer", "first_message"]

[[channel]]
name = "echo"
path = "/echo"
kind = "echo"
subprotocols = ["chat.v1"]
auth = "none"

[[channel]]
name = "news"
path = "/news"
kind = "broadcast"
auth = "none"

[[channel]]
name = "secure"
path = "/secure"
kind = "echo"
"#,
            cert = files.cert_path(),
            key = files.key_path(),
            token = token_file.display().to_string(),
            jwt_secret = jwt_secret.display().to_string(),
        ),
    )
    .unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_wsedge"))
        .args([
            "run",
            "-c",
            config.to_str().unwrap(),
            "--log-format",
            "json",
        ])
        .env("RUST_LOG", "trace")
        .env("NO_COLOR", "1")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the wsedge binary starts");
    let pid = child.id();
    let mut guard = KillOnDrop { pid, exited: false };
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let (line_tx, mut line_rx) = tokio::sync::mpsc::unbounded_channel();
    let stderr = child.stderr.take().unwrap();
    let collected = lines.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            collected.lock().unwrap().push(line.clone());
            let _ = line_tx.send(line);
        }
        child.wait()
    });

    // Addresses from the start-up lines.
    let (mut ws, mut wss, mut admin) = (None, None, None);
    while ws.is_none() || wss.is_none() || admin.is_none() {
        let line = tokio::time::timeout(PATIENCE, line_rx.recv())
            .await
            .expect("start-up lines within PATIENCE")
            .expect("wsedge is running");
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let fields = &event["fields"];
        let addr = || {
            fields["addr"]
                .as_str()
                .unwrap()
                .parse::<SocketAddr>()
                .unwrap()
        };
        match (fields["message"].as_str(), fields["scheme"].as_str()) {
            (Some("listening"), Some("ws")) => ws = Some(addr()),
            (Some("listening"), Some("wss")) => wss = Some(addr()),
            (Some("admin listening"), _) => admin = Some(addr()),
            _ => {}
        }
    }
    let (ws, wss, admin) = (ws.unwrap(), wss.unwrap(), admin.unwrap());

    let secret_headers = format!(
        "Authorization: Bearer {AUTH}\r\nCookie: session={COOKIE}; theme=dark\r\nSec-WebSocket-Protocol: {PROTOCOL}, chat.v1"
    );
    let request = |scheme: &str, addr: SocketAddr| {
        let mut request = format!(
            "{scheme}://localhost:{}/echo?access_token={QUERY}",
            addr.port()
        )
        .into_client_request()
        .unwrap();
        let headers = request.headers_mut();
        headers.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {AUTH}")).unwrap(),
        );
        headers.insert(
            "cookie",
            HeaderValue::from_str(&format!("session={COOKIE}")).unwrap(),
        );
        headers.insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(&format!("{PROTOCOL}, chat.v1")).unwrap(),
        );
        request
    };
    // Upgraded over ws:// and wss://, a message each way, a clean close.
    let (mut client, response) =
        tokio_tungstenite::client_async(request("ws", ws), TcpStream::connect(ws).await.unwrap())
            .await
            .expect("ws upgrade with the markers");
    assert_eq!(
        response.headers().get("sec-websocket-protocol").unwrap(),
        "chat.v1"
    );
    send_text(&mut client, "over ws").await;
    assert_eq!(next_data(&mut client).await, Message::text("over ws"));
    close_and_wait(client).await;
    let tls = common::tls_connect(wss, &files.cert).await;
    let (mut client, _) = tokio_tungstenite::client_async(request("wss", wss), tls)
        .await
        .expect("wss upgrade with the markers");
    send_text(&mut client, "over wss").await;
    assert_eq!(next_data(&mut client).await, Message::text("over wss"));
    close_and_wait(client).await;

    // Credentials refused: a bad bearer token in the head (401), and a bad
    // token in band, as the first message (1008).
    let refused = http(
        ws,
        &format!("{}Authorization: Bearer {AUTH}", upgrade_head("/secure")),
        b"",
    )
    .await;
    assert_eq!(refused.status, 401, "{refused:?}");
    let (mut in_band, _) = tokio_tungstenite::client_async(
        format!("ws://localhost:{}/secure", ws.port()),
        TcpStream::connect(ws).await.unwrap(),
    )
    .await
    .expect("upgraded, to authenticate in band");
    send_text(
        &mut in_band,
        &format!(r#"{{"type":"auth","token":"{QUERY}"}}"#),
    )
    .await;
    assert_eq!(
        next_close(&mut in_band).await.map(|close| close.code),
        Some(CloseCode::Policy)
    );

    // Refused WebSocket requests: unknown path (404), plain GET (426).
    for head in [
        format!("GET /missing?token={QUERY} HTTP/1.1"),
        format!("GET /echo?token={QUERY} HTTP/1.1"),
    ] {
        let answer = http(ws, &format!("{head}\r\n{secret_headers}"), b"").await;
        assert!(matches!(answer.status, 404 | 426), "{head}: {answer:?}");
    }
    // Admin requests, refused and accepted, with the real token too.
    for (head, status) in [
        (
            format!("GET /metrics?token={QUERY} HTTP/1.1\r\n{secret_headers}"),
            200,
        ),
        (
            format!("GET /channels?token={QUERY} HTTP/1.1\r\n{secret_headers}"),
            401,
        ),
        (
            format!(
                "GET /channels?token={QUERY} HTTP/1.1\r\nAuthorization: Bearer {SECRET_TOKEN}\r\nCookie: c={COOKIE}"
            ),
            200,
        ),
        (
            format!(
                "POST /publish/news?sig={QUERY} HTTP/1.1\r\nAuthorization: Bearer {SECRET_TOKEN}\r\nCookie: c={COOKIE}\r\nSec-WebSocket-Protocol: {PROTOCOL}\r\nContent-Type: text/plain"
            ),
            200,
        ),
        (
            format!("GET /nowhere?token={QUERY} HTTP/1.1\r\n{secret_headers}"),
            404,
        ),
    ] {
        let answer = http(admin, &head, b"published").await;
        assert_eq!(answer.status, status, "{head}: {answer:?}");
    }

    let kill = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(reader.join()));
    let status = rx
        .recv_timeout(PATIENCE)
        .expect("wsedge exits within PATIENCE after SIGTERM")
        .unwrap()
        .unwrap();
    guard.exited = true;
    let lines = lines.lock().unwrap();
    assert!(
        status.success(),
        "exit {status}; stderr:\n{}",
        lines.join("\n")
    );

    // The logging was really at trace level and in JSON...
    for line in lines.iter() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
    }
    for expected in ["\"admin request\"", "\"request refused\"", "\"DEBUG\""] {
        assert!(
            lines.iter().any(|l| l.contains(expected)),
            "no line with {expected}; stderr:\n{}",
            lines.join("\n")
        );
    }
    // ...and no marker reached it.
    for marker in [QUERY, AUTH, COOKIE, PROTOCOL, SECRET_TOKEN] {
        let leaks: Vec<_> = lines.iter().filter(|l| l.contains(marker)).collect();
        assert!(leaks.is_empty(), "{marker} logged:\n{leaks:#?}");
    }
}

#[test]
fn journal_stream_falls_back_to_stderr_without_a_journal() {
    use std::os::unix::fs::MetadataExt;
    if std::path::Path::new("/run/systemd/journal/socket").exists() {
        eprintln!("skipped: a journal runs here, and would take the lines");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wsedge.toml");
    // A plain listener beyond loopback: `check` logs a warning about it.
    std::fs::write(
        &config,
        "[server]\nplain = [\"0.0.0.0:0\"]\n\n[[channel]]\nname = \"e\"\npath = \"/e\"\nkind = \"echo\"\n",
    )
    .unwrap();
    let check = |journal_stream: Option<String>| {
        let path = dir.path().join("stderr.log");
        let file = std::fs::File::create(&path).unwrap();
        let identity = file.metadata().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_wsedge"));
        command
            .args(["check", "-c", config.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(file);
        match journal_stream {
            Some(value) => command.env("JOURNAL_STREAM", value),
            None => command.env(
                "JOURNAL_STREAM",
                format!("{}:{}", identity.dev(), identity.ino()),
            ),
        };
        assert!(command.status().unwrap().success());
        std::fs::read_to_string(path).unwrap()
    };
    // JOURNAL_STREAM names our stderr, but no journal listens.
    let logged = check(None);
    assert!(logged.contains("cannot reach journald"), "{logged}");
    assert!(logged.contains("unencrypted"), "{logged}");
    // A JOURNAL_STREAM inherited from elsewhere is not ours: stderr, quietly.
    let logged = check(Some("1:1".to_owned()));
    assert!(!logged.contains("journald"), "{logged}");
    assert!(logged.contains("unencrypted"), "{logged}");
}

/// The head of an upgrade request for `path`, up to the headers a caller
/// adds (each ending in CRLF; `http` adds the blank line).
fn upgrade_head(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    )
}

/// Opens a connection to `to` from the loopback address `source`.
async fn connect_from(source: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((source, 0)))
        .expect("127.0.0.0/8 is loopback");
    socket.connect(to).await.unwrap()
}

/// Whether the admin listener serves a request on `stream` (rather than
/// closing it at accept).
async fn is_served(mut stream: TcpStream) -> bool {
    let request = "GET /healthz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut raw = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
        .await
        .expect("an answer or a close");
    read.is_ok() && raw.starts_with(b"HTTP/1.1 200")
}

/// One peer holding idle admin connections gets at most its share; others
/// are still served, and the peer gets its slots back as it closes them.
#[tokio::test]
async fn one_peer_cannot_take_every_admin_connection() {
    let server = start("", true, CHANNELS).await;
    let mut idle = Vec::new();
    for _ in 0..16 {
        idle.push(connect_from([127, 0, 0, 1], server.admin).await);
    }
    assert!(
        !is_served(connect_from([127, 0, 0, 1], server.admin).await).await,
        "a 17th connection from the same peer is closed"
    );
    assert!(
        is_served(connect_from([127, 0, 0, 2], server.admin).await).await,
        "another peer is served"
    );
    drop(idle.pop());
    // The server learns of the close when the connection's task ends.
    let mut attempts = 0;
    while !is_served(connect_from([127, 0, 0, 1], server.admin).await).await {
        attempts += 1;
        assert!(attempts < 1000, "the closed connection's slot came back");
        tokio::task::yield_now().await;
    }
}
