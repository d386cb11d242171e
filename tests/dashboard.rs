//! The admin dashboard: the page and its files on the admin listener, the
//! live feed (`GET /events`, Server-Sent Events behind the token) read by an
//! independent HTTP client (hyper's client half), and the page itself in
//! headless Chromium (playwright-core, `tests/peers/chromium_dashboard.mjs`):
//! logging in, a connection appearing and leaving, publishing from the form
//! to a real subscriber, disconnecting a user (tokens signed by PyJWT), a
//! wrong token. The feed is bounded: at most eight
//! at once, a client that stops reading is dropped, and one that falls
//! behind skips frames instead of getting a backlog. The README shows a
//! screenshot this test takes (docs/dashboard.png).

mod common;

use std::{
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::{
    ADMIN_TOKEN, AdminServer, PATIENCE,
    browser::{Browser, assert_screenshot},
    close_and_wait, http,
    jwt::{signer, unix_now},
    next_close, next_data, peers, send_text, start_with_admin, upgrade_status,
};
use http_body_util::{BodyExt, Empty};
use hyper::{Request, body::Incoming, client::conn::http1};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    task::JoinHandle,
};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

/// The server's cap on open feeds.
const MAX_FEEDS: usize = 8;

/// The server's write deadline on admin connections.
const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A client receive buffer that fills at once: the kernel's minimum.
const TINY_RECEIVE_BUFFER: u32 = 4096;

const CHANNELS: &str = r#"
[server]
plain = ["127.0.0.1:0"]

[[channel]]
name = "echo"
path = "/echo"
kind = "echo"

[[channel]]
name = "news"
path = "/news"
kind = "broadcast"

[[channel]]
name = "chat"
path = "/chat/{room}"
kind = "room"
"#;

/// Channels enough for frames of about 20 KiB, so that a client that stops
/// reading fills its socket within a frame or two instead of minutes.
fn many_channels() -> String {
    let mut config = CHANNELS.to_owned();
    for i in 0..300 {
        config.push_str(&format!(
            "\n[[channel]]\nname = \"c{i:03}\"\npath = \"/c{i:03}\"\nkind = \"broadcast\"\n"
        ));
    }
    config
}

/// One open `GET /events` answer, read through hyper's client.
struct Feed {
    body: Incoming,
    /// Bytes of the event stream not yet split into events.
    pending: String,
    /// The client connection's task; aborting it closes the socket.
    connection: JoinHandle<()>,
}

/// `GET /events` on `stream` with `authorization`: the open feed, or the
/// refusal's status and body.
async fn request_feed(
    stream: TcpStream,
    authorization: Option<&str>,
) -> Result<Feed, (u16, Vec<(String, String)>, String)> {
    let (mut sender, connection) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut request = Request::get("/events").header("Host", "admin");
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    let response = tokio::time::timeout(
        PATIENCE,
        sender.send_request(request.body(Empty::new()).unwrap()),
    )
    .await
    .expect("an answer")
    .expect("an HTTP answer");
    let status = response.status().as_u16();
    if status != 200 {
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        connection.abort();
        return Err((status, headers, String::from_utf8_lossy(&body).into_owned()));
    }
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "{response:?}"
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    Ok(Feed {
        body: response.into_body(),
        pending: String::new(),
        connection,
    })
}

async fn open_feed(admin: SocketAddr) -> Feed {
    let stream = TcpStream::connect(admin).await.unwrap();
    request_feed(stream, Some(&format!("Bearer {ADMIN_TOKEN}")))
        .await
        .unwrap_or_else(|refused| panic!("feed refused: {refused:?}"))
}

impl Feed {
    /// The next event's JSON; checks that its `id` is its `seq`.
    async fn next_frame(&mut self) -> Value {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let event: String = self.pending.drain(..end + 2).collect();
                let mut id = None;
                let mut data = None;
                for line in event.lines() {
                    if let Some(value) = line.strip_prefix("id: ") {
                        id = Some(value.parse::<u64>().unwrap());
                    } else if let Some(value) = line.strip_prefix("data: ") {
                        data = Some(value.to_owned());
                    }
                }
                let json: Value = serde_json::from_str(&data.expect("a data line"))
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {event}"));
                assert_eq!(id, json["seq"].as_u64(), "{event}");
                return json;
            }
            let frame = tokio::time::timeout(PATIENCE, self.body.frame())
                .await
                .expect("a frame within PATIENCE")
                .expect("the feed is open")
                .expect("a readable feed");
            if let Ok(data) = frame.into_data() {
                self.pending.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }

    /// Reads frames until one satisfies `condition`, for at most `within`.
    async fn until(&mut self, within: Duration, condition: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let frame = self.next_frame().await;
            if condition(&frame) {
                return frame;
            }
            assert!(
                Instant::now() < deadline,
                "no such frame within {within:?}; the last: {frame:#}"
            );
        }
    }

    fn close(self) {
        self.connection.abort();
    }
}

fn channel<'a>(frame: &'a Value, name: &str) -> &'a Value {
    frame["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|channel| channel["name"] == name)
        .unwrap_or_else(|| panic!("no channel {name} in {frame:#}"))
}

#[tokio::test]
async fn the_page_and_its_files_need_no_token() {
    let server = start_with_admin(CHANNELS).await;
    let page = server.admin_get("/").await;
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let policy = page.header("content-security-policy").unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{policy}");
    }
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    // The page is a login form and an empty, hidden dashboard: no data
    // before a token.
    assert!(
        page.body.contains(r#"<form id="login-form">"#),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"<main id="dashboard" hidden>"#));
    for data in ["\"echo\"", "\"news\"", "\"chat\""] {
        assert!(!page.body.contains(data), "{data} in the page");
    }
    // No inline script: the policy would block it.
    assert!(!page.body.contains("<script>"));
    for (path, content_type) in [
        ("/dashboard.js", "text/javascript; charset=utf-8"),
        ("/dashboard.css", "text/css; charset=utf-8"),
    ] {
        let file = server.admin_get(path).await;
        assert_eq!(file.status, 200, "{path}: {file:?}");
        assert_eq!(file.header("content-type"), Some(content_type), "{path}");
        assert!(file.body.len() > 1000, "{path}");
    }
    let head = http(server.admin, "HEAD / HTTP/1.1", b"").await;
    assert_eq!(head.status, 200);
    let post = http(server.admin, "POST / HTTP/1.1", b"x").await;
    assert_eq!(
        (post.status, post.header("allow")),
        (405, Some("GET, HEAD"))
    );
    assert_eq!(server.admin_get("/dashboard").await.status, 404);
}

#[tokio::test]
async fn the_feed_needs_the_token_in_the_header() {
    let server = start_with_admin(CHANNELS).await;
    for authorization in [
        None,
        Some("Bearer wrong".to_owned()),
        Some(format!("Bearer {ADMIN_TOKEN}x")),
        Some(format!("Basic {ADMIN_TOKEN}")),
    ] {
        let stream = TcpStream::connect(server.admin).await.unwrap();
        let refused = request_feed(stream, authorization.as_deref()).await;
        let Err((status, headers, body)) = refused else {
            panic!("{authorization:?} opened a feed");
        };
        assert_eq!(status, 401, "{authorization:?}: {body}");
        assert!(
            headers
                .iter()
                .any(|(n, v)| n == "www-authenticate" && v.starts_with("Bearer")),
            "{headers:?}"
        );
        assert!(!body.contains("channels"), "{body}");
    }
    // Not in the query string either: a URL ends up in logs and histories.
    let query = server
        .admin_get(&format!("/events?token={ADMIN_TOKEN}"))
        .await;
    assert_eq!(query.status, 401, "{query:?}");
    let post = http(
        server.admin,
        &format!("POST /events HTTP/1.1\r\nAuthorization: Bearer {ADMIN_TOKEN}"),
        b"",
    )
    .await;
    assert_eq!((post.status, post.header("allow")), (405, Some("GET")));
}

#[tokio::test]
async fn the_feed_follows_a_connection_and_its_messages() {
    let server = start_with_admin(CHANNELS).await;
    let mut feed = open_feed(server.admin).await;
    let first = feed.next_frame().await;
    assert_eq!(first["connections"], 0, "{first:#}");
    assert_eq!(first["feeds"]["open"], 1, "{first:#}");
    assert_eq!(first["reload"]["generation"], 1, "{first:#}");
    assert_eq!(channel(&first, "chat")["kind"], "room");

    let mut client = server.ws("/echo").await;
    let frame = feed
        .until(PATIENCE, |f| {
            f["connections"] == 1 && channel(f, "echo")["connections"] == 1
        })
        .await;
    assert_eq!(channel(&frame, "news")["connections"], 0, "{frame:#}");
    for i in 0..10 {
        send_text(&mut client, &format!("message {i}")).await;
        assert_eq!(
            next_data(&mut client).await,
            Message::text(format!("message {i}"))
        );
    }
    let frame = feed
        .until(PATIENCE, |f| f["totals"]["messages_received"] == 10)
        .await;
    assert_eq!(frame["totals"]["messages_delivered"], 10, "{frame:#}");
    // Rates come from successive snapshots: the first frame that counts
    // the last message covers an interval in which it was received.
    let rate = frame["rates"]["messages_received"].as_f64().unwrap();
    assert!(rate > 0.0, "{frame:#}");

    close_and_wait(client).await;
    // The connection leaves its channel, then its close (a close frame
    // without a code: 1005) is counted.
    let closed_by_client = |f: &Value| {
        f["disconnects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["code"] == "1005" && d["initiator"] == "client" && d["count"] == 1)
    };
    let frame = feed
        .until(PATIENCE, |f| {
            channel(f, "echo")["connections"] == 0 && closed_by_client(f)
        })
        .await;
    assert_eq!(frame["connections"], 0, "{frame:#}");
    // A refused handshake shows under its reason.
    refuse_a_handshake(&server).await;
    let frame = feed
        .until(PATIENCE, |f| {
            f["rejections"]["handshakes"]["not_found"] == 1
        })
        .await;
    assert_eq!(frame["rejections"]["enforced"]["slow_consumer"], 0);
    feed.close();
}

#[tokio::test]
async fn feeds_are_capped_and_a_closed_one_gives_its_slot_back() {
    let server = start_with_admin(CHANNELS).await;
    let mut observer = open_feed(server.admin).await;
    observer.next_frame().await;
    let mut others = Vec::new();
    for _ in 1..MAX_FEEDS {
        let mut feed = open_feed(server.admin).await;
        feed.next_frame().await;
        others.push(feed);
    }
    observer
        .until(PATIENCE, |f| f["feeds"]["open"] == MAX_FEEDS)
        .await;
    let stream = TcpStream::connect(server.admin).await.unwrap();
    let Err((status, headers, body)) =
        request_feed(stream, Some(&format!("Bearer {ADMIN_TOKEN}"))).await
    else {
        panic!("a feed beyond the cap was opened");
    };
    assert_eq!(status, 503, "{body}");
    assert!(
        headers.iter().any(|(n, v)| n == "retry-after" && v == "5"),
        "{headers:?}"
    );
    // The other endpoints are still served.
    assert_eq!(server.admin_get("/healthz").await.status, 200);

    others.pop().unwrap().close();
    observer
        .until(PATIENCE, |f| f["feeds"]["open"] == MAX_FEEDS - 1)
        .await;
    let mut again = open_feed(server.admin).await;
    assert_eq!(again.next_frame().await["feeds"]["open"], MAX_FEEDS);
}

/// A raw connection with a tiny receive buffer that asks for the feed and
/// then does not read.
async fn stuck_feed(admin: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(TINY_RECEIVE_BUFFER).unwrap();
    let mut stream = socket.connect(admin).await.unwrap();
    let request = format!(
        "GET /events HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// A client that asks for the feed and never reads: once its socket stops
/// taking bytes, the server stops writing, drops the connection after its
/// write deadline and gives the slot back. What the client finds when it
/// finally reads is the little the kernel held, not a backlog.
#[tokio::test]
async fn a_feed_that_is_never_read_is_dropped() {
    let server = start_with_admin(&many_channels()).await;
    let mut observer = open_feed(server.admin).await;
    let frame_size = observer.next_frame().await.to_string().len();
    assert!(frame_size > 16 * 1024, "frames of {frame_size} bytes");
    let started = Instant::now();
    let mut stuck = stuck_feed(server.admin).await;
    observer.until(PATIENCE, |f| f["feeds"]["open"] == 2).await;
    // The socket fills within a few frames, then the deadline runs.
    let frame = observer
        .until(WRITE_STALL_TIMEOUT + PATIENCE, |f| f["feeds"]["open"] == 1)
        .await;
    let dropped_after = started.elapsed();
    assert!(
        dropped_after >= WRITE_STALL_TIMEOUT,
        "dropped after {dropped_after:?}: {frame:#}"
    );
    let mut received = Vec::new();
    tokio::time::timeout(PATIENCE, stuck.read_to_end(&mut received))
        .await
        .expect("the server closed the stuck connection")
        .expect("a clean end of the stream");
    assert!(received.starts_with(b"HTTP/1.1 200"));
    // Everything the stuck client ever gets: what the kernel buffers held
    // when the server stopped writing, a few frames' worth.
    assert!(
        received.len() < 8 * frame_size,
        "{} bytes reached the stuck client ({frame_size}-byte frames, {dropped_after:?})",
        received.len()
    );
    println!(
        "stuck feed dropped after {dropped_after:?}; it had {} bytes in its buffers ({frame_size}-byte frames)",
        received.len()
    );
}

/// A client that pauses reading long enough for its socket to fill, but
/// less than the write deadline: frames are skipped while it is behind (the
/// ids jump), and it gets the latest ones when it reads again.
#[tokio::test]
async fn a_feed_that_falls_behind_skips_frames() {
    let server = start_with_admin(&many_channels()).await;
    let mut observer = open_feed(server.admin).await;
    observer.next_frame().await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(TINY_RECEIVE_BUFFER).unwrap();
    let stream = socket.connect(server.admin).await.unwrap();
    let mut slow = request_feed(stream, Some(&format!("Bearer {ADMIN_TOKEN}")))
        .await
        .expect("the feed opens");
    let first = slow.next_frame().await["seq"].as_u64().unwrap();
    // Six frames go by on the observer while the slow one reads nothing.
    let paused = observer.next_frame().await["seq"].as_u64().unwrap();
    let resumed = observer
        .until(PATIENCE, |f| f["seq"].as_u64() >= Some(paused + 6))
        .await["seq"]
        .as_u64()
        .unwrap();
    let mut seqs = vec![first];
    while *seqs.last().unwrap() < resumed + 1 {
        seqs.push(slow.next_frame().await["seq"].as_u64().unwrap());
    }
    let skipped: u64 = seqs.windows(2).map(|pair| pair[1] - pair[0] - 1).sum();
    assert!(skipped > 0, "no frame was skipped: {seqs:?}");
    println!("a feed paused for six frames received {seqs:?}");
}

/// The configuration of the Chromium run: the example's channels, open to
/// anonymous clients and to users with a token (signed by PyJWT).
fn identity_channels(secret_file: &str) -> String {
    format!(
        r#"
[server]
plain = ["127.0.0.1:0"]

[[channel]]
name = "echo"
path = "/echo"
kind = "echo"
auth = "optional"

[[channel]]
name = "news"
path = "/news"
kind = "broadcast"
auth = "optional"

[[channel]]
name = "chat"
path = "/chat/{{room}}"
kind = "room"
auth = "optional"

[auth]
algorithms = ["HS256"]
secret_file = {secret_file:?}
sources = ["bearer"]
"#
    )
}

/// A ws:// client on `path` with `token` as its bearer credentials.
async fn connect_as(server: &AdminServer, path: &str, token: &str) -> common::Ws {
    let mut request = format!("ws://{}{path}", server.ws)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let stream = TcpStream::connect(server.ws).await.unwrap();
    tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap_or_else(|e| panic!("connect to {path}: {e}"))
        .0
}

/// The page in Chromium: log in (no token and a wrong token first), watch
/// a connection come and go, publish from the form to a user's connections
/// on a broadcast channel and in a room, see a reload and a refusal,
/// screenshot, disconnect the user from the form, log out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_chromium() {
    let Some(node) = peers::chromium() else {
        return;
    };
    let Some(signer) = signer() else { return };
    let config = identity_channels(&signer.path("hmac.secret"));
    let server = start_with_admin(&config).await;
    let alice = signer.hs256(json!({
        "sub": "alice",
        "exp": unix_now(600),
        "join": ["news", "chat"],
        "publish": ["chat"],
    }));
    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let url = format!("http://{}/", server.admin);
    let mut browser = Browser::start(
        &node,
        "chromium_dashboard.mjs",
        &[&url, ADMIN_TOKEN, screenshot.to_str().unwrap()],
    );
    browser.expect("READY").await;

    let client = server.ws("/echo").await;
    browser.tell("CONNECTIONS echo 1").await;
    browser.expect("DONE").await;
    close_and_wait(client).await;
    browser.tell("CONNECTIONS echo 0").await;
    browser.expect("DONE").await;

    let mut news = connect_as(&server, "/news", &alice).await;
    let mut lobby = connect_as(&server, "/chat/lobby", &alice).await;
    browser.tell("TILE users 1").await;
    browser.expect("DONE").await;
    let text = "maintenance at 22:00 UTC";
    browser.tell(&format!("PUBLISH news - {text}")).await;
    browser.expect("DONE").await;
    assert_eq!(next_data(&mut news).await, Message::text(text));
    let text = "the lobby closes in five minutes";
    browser.tell(&format!("PUBLISH chat lobby {text}")).await;
    browser.expect("DONE").await;
    assert_eq!(next_data(&mut lobby).await, Message::text(text));

    let reloaded = wsedge::Config::from_toml_str(&format!(
        "{config}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = {:?}\n",
        server.dir.path().join("admin.token").display().to_string()
    ))
    .unwrap();
    server
        .handle
        .reload(reloaded)
        .await
        .expect("reload applies");
    browser.tell("RELOADED 2").await;
    browser.expect("DONE").await;
    refuse_a_handshake(&server).await;
    browser.tell("REFUSED not_found").await;
    browser.expect("DONE").await;

    // Some traffic for the picture: alice chats with an anonymous member
    // of the lobby.
    let mut lobby_peer = server.ws("/chat/lobby").await;
    for i in 0..20 {
        send_text(&mut lobby, &format!("line {i}")).await;
        assert_eq!(
            next_data(&mut lobby_peer).await,
            Message::text(format!("line {i}"))
        );
    }
    browser.tell("SCREENSHOT").await;
    browser.expect("DONE").await;
    assert_screenshot(&screenshot);

    browser.tell("DISCONNECT alice 2").await;
    for ws in [&mut news, &mut lobby] {
        let close = next_close(ws).await.expect("a close frame");
        assert_eq!(u16::from(close.code), 4000, "{close:?}");
    }
    browser.expect("DONE").await;
    browser.tell("TILE users 0").await;
    browser.expect("DONE").await;

    browser.tell("LOGOUT").await;
    browser.finish().await;
    close_and_wait(lobby_peer).await;
}

/// A WebSocket handshake on a path with no channel: answered 404.
async fn refuse_a_handshake(server: &AdminServer) {
    let mut stream = TcpStream::connect(server.ws).await.unwrap();
    assert_eq!(upgrade_status(&mut stream, "/nowhere", "").await, 404);
}
