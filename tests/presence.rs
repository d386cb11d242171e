//! Presence when connections end the hard ways, through a real server with
//! tokens signed by PyJWT: a TCP reset (SO_LINGER 0), the idle timeout, a
//! slow-consumer close, and reloads that keep a channel, change its
//! settings or replace it. After each, the counts and the user list
//! (`Handle::presence` and the admin API's `/presence`, which must agree)
//! are exact, and a user's leave is told to the others once, only when its
//! last connection goes. (Ordinary closes and second tabs are in
//! tests/users.rs.)

mod common;

use std::time::Duration;

use common::{jwt::*, *};
use futures_util::{
    SinkExt, StreamExt,
    stream::{SplitSink, SplitStream},
};
use serde_json::{Value, json};
use tokio::{io::AsyncWriteExt, net::TcpStream, sync::mpsc, task::JoinHandle};
use tokio_tungstenite::tungstenite::{
    Message,
    protocol::{CloseFrame, frame::coding::CloseCode},
};

const CHANNELS: &str = r#"
[[channel]]
name = "news"
path = "/news"
kind = "broadcast"

[[channel]]
name = "chat"
path = "/chat/{room}"
kind = "room"
presence_events = true

[[channel]]
name = "hub"
path = "/hub"
kind = "hub"
presence_events = true
"#;

/// Grants to join and publish on every channel of [`CHANNELS`].
const EVERYWHERE: &[&str] = &["news", "chat", "hub"];

/// The server's configuration, with extra `[limits]` lines.
fn config(signer: &Signer, limits: &str) -> String {
    format!(
        "[server]\nplain = [\"127.0.0.1:0\"]\n\n[limits]\nhandshake_rate = {{ per_second = 1000, burst = 1000 }}\nmessage_rate = {{ per_second = 1000, burst = 1000 }}\n{limits}\n\n[auth]\nalgorithms = [\"HS256\"]\nsecret_file = {:?}\nsources = [\"bearer\"]\n{CHANNELS}",
        signer.path("hmac.secret")
    )
}

/// One token per user, allowed everywhere.
fn tokens<const N: usize>(signer: &Signer, users: [&str; N]) -> [String; N] {
    users.map(|user| user_token(signer, user, EVERYWHERE))
}

/// A presence notice as the server sends it.
fn notice(event: &str, room: &str, user: &str) -> Value {
    json!({"type": "presence", "event": event, "room": room, "user": user})
}

/// Who is on `target` (`news`, `chat/lobby`, `hub/lobby`): connections,
/// distinct users and the list, as `Handle::presence` says, after checking
/// that the admin API says the same.
async fn presence(server: &AdminServer, target: &str) -> (usize, usize, Vec<String>) {
    let (channel, room) = match target.split_once('/') {
        Some((channel, room)) => (channel, Some(room)),
        None => (target, None),
    };
    let page = server
        .handle
        .presence(channel, room, None, 100)
        .await
        .unwrap();
    let answer = http(
        server.admin,
        &format!("GET /presence/{target} HTTP/1.1\r\nAuthorization: Bearer {ADMIN_TOKEN}"),
        b"",
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let listed: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(
        listed,
        json!({"connections": page.connections, "users": page.users, "list": page.list, "next": null, "scope": "node"}),
        "the admin API and the Handle disagree on {target}"
    );
    (page.connections, page.users, page.list)
}

/// What [`presence`] returns for `connections` and `users`.
fn present(connections: usize, users: &[&str]) -> (usize, usize, Vec<String>) {
    (
        connections,
        users.len(),
        users.iter().map(|user| user.to_string()).collect(),
    )
}

/// Ends a connection with a TCP reset: SO_LINGER 0, then close. The
/// server sees neither a close frame nor a FIN.
fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
}

/// `stream` upgraded on `path` as the token's user; the test then
/// writes and reads its frames by hand (or never does).
async fn upgraded_as(mut stream: TcpStream, path: &str, token: &str) -> TcpStream {
    let status = upgrade_status(
        &mut stream,
        path,
        &format!("Authorization: Bearer {token}\r\n"),
    )
    .await;
    assert_eq!(status, 101, "upgrade on {path}");
    stream
}

/// A client read without pause by a task of its own, so that it answers
/// the server's pings however long the test waits elsewhere; the test
/// takes its messages in order (text that is not JSON as a JSON string).
struct Watcher {
    sink: SplitSink<Ws, Message>,
    inbox: mpsc::UnboundedReceiver<Value>,
    reader: JoinHandle<Option<CloseFrame>>,
}

impl Watcher {
    fn new(ws: Ws) -> Self {
        let (sink, stream) = ws.split();
        let (sender, inbox) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_all(stream, sender));
        Self {
            sink,
            inbox,
            reader,
        }
    }

    async fn next(&mut self) -> Value {
        tokio::time::timeout(PATIENCE, self.inbox.recv())
            .await
            .expect("a message within PATIENCE")
            .expect("the connection is open")
    }

    /// The next presence notice, past any other message.
    async fn next_presence(&mut self) -> Value {
        loop {
            let message = self.next().await;
            if message["type"] == "presence" {
                return message;
            }
        }
    }

    /// Sends a hub request and returns its answer.
    async fn request(&mut self, request: Value) -> Value {
        self.sink
            .send(Message::text(request.to_string()))
            .await
            .unwrap();
        self.next().await
    }

    /// Waits for the server to end the connection; its close frame.
    async fn closed(self) -> Option<CloseFrame> {
        tokio::time::timeout(PATIENCE, self.reader)
            .await
            .expect("the server closes within PATIENCE")
            .unwrap()
    }

    /// Closes from the client side and waits until the server is done.
    async fn close(mut self) {
        self.sink.send(Message::Close(None)).await.unwrap();
        self.closed().await;
    }
}

async fn read_all(
    mut stream: SplitStream<Ws>,
    sender: mpsc::UnboundedSender<Value>,
) -> Option<CloseFrame> {
    while let Some(Ok(message)) = stream.next().await {
        let value = match message {
            Message::Text(text) => {
                serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.to_string()))
            }
            Message::Close(frame) => return frame,
            _ => continue,
        };
        let _ = sender.send(value);
    }
    None
}

/// Joins `rooms` of a hub over `ws`.
async fn join_hub_rooms(ws: &mut Ws, rooms: &[&str]) {
    for room in rooms {
        send_text(ws, &json!({"type": "join", "room": room}).to_string()).await;
        assert_eq!(next_json(ws).await["type"], "joined", "{room}");
    }
}

#[tokio::test]
async fn reset_connections_leave_exact_counts_and_one_leave_notice() {
    let Some(signer) = signer() else { return };
    let server = start_with_admin(&config(signer, "")).await;
    let [u1, u2, u3, u4] = tokens(signer, ["u1", "u2", "u3", "u4"]);
    let mut lobby = Watcher::new(server.ws_as("/chat/lobby", &u1).await);
    let mut hub = Watcher::new(server.ws_as("/hub", &u3).await);
    assert_eq!(
        hub.request(json!({"type": "join", "room": "lobby"})).await["type"],
        "joined"
    );
    let _reader = server.ws_as("/news", &u3).await;
    // u2: two tabs in the lobby, a news reader, and a hub connection in two
    // rooms.
    let tabs = [
        server.ws_as("/chat/lobby", &u2).await,
        server.ws_as("/chat/lobby", &u2).await,
    ];
    let news = server.ws_as("/news", &u2).await;
    let mut hub_tab = server.ws_as("/hub", &u2).await;
    join_hub_rooms(&mut hub_tab, &["lobby", "games"]).await;
    assert_eq!(lobby.next_presence().await, notice("join", "lobby", "u2"));
    assert_eq!(hub.next_presence().await, notice("join", "lobby", "u2"));
    assert_eq!(
        presence(&server, "chat/lobby").await,
        present(3, &["u1", "u2"])
    );
    assert_eq!(presence(&server, "news").await, present(2, &["u2", "u3"]));
    assert_eq!(
        presence(&server, "hub/lobby").await,
        present(2, &["u2", "u3"])
    );
    assert_eq!(presence(&server, "hub/games").await, present(1, &["u2"]));
    // A room message on its way to the tabs when they vanish.
    assert_eq!(server.publish_text("chat/lobby", "in flight").await, 3);

    for ws in tabs.into_iter().chain([news, hub_tab]) {
        reset(ws.into_inner());
    }
    // One leave each, once both tabs are gone.
    assert_eq!(lobby.next_presence().await, notice("leave", "lobby", "u2"));
    assert_eq!(hub.next_presence().await, notice("leave", "lobby", "u2"));
    // The news reader has no room to be told in: its end is seen in the
    // statistics only.
    eventually(&server.handle, |stats| {
        stats.connections == 3 && stats.users == 2
    })
    .await;
    assert_eq!(presence(&server, "chat/lobby").await, present(1, &["u1"]));
    assert_eq!(presence(&server, "news").await, present(1, &["u3"]));
    assert_eq!(presence(&server, "hub/lobby").await, present(1, &["u3"]));
    assert_eq!(
        presence(&server, "hub/games").await,
        present(0, &[]),
        "the room vanished with its last member"
    );
    assert!(server.handle.user_connections("u2").is_empty());
    // Told once: the next notice each watcher gets is the next arrival's.
    let _late = server.ws_as("/chat/lobby", &u4).await;
    let mut late_hub = server.ws_as("/hub", &u4).await;
    join_hub_rooms(&mut late_hub, &["lobby"]).await;
    assert_eq!(lobby.next_presence().await, notice("join", "lobby", "u4"));
    assert_eq!(hub.next_presence().await, notice("join", "lobby", "u4"));
    assert_eq!(
        server
            .handle
            .stats()
            .traffic
            .disconnects
            .get(&("1006", "client")),
        Some(&4),
        "the four ended without a close frame"
    );
}

/// A short idle timeout, so that the idle test is quick (yet long enough
/// for a loaded machine to schedule the watchers); pings every 200 ms keep
/// the clients that read alive.
const IDLE_LIMITS: &str =
    "ping_interval = \"200ms\"\nidle_timeout = \"1s\"\nclose_timeout = \"200ms\"";

#[tokio::test]
async fn a_silent_connection_closed_as_idle_leaves_presence_exact() {
    let Some(signer) = signer() else { return };
    let server = start_with_admin(&config(signer, IDLE_LIMITS)).await;
    let [u1, u2, u3] = tokens(signer, ["u1", "u2", "u3"]);
    let mut lobby = Watcher::new(server.ws_as("/chat/lobby", &u1).await);
    let mut hub = Watcher::new(server.ws_as("/hub", &u1).await);
    assert_eq!(
        hub.request(json!({"type": "join", "room": "lobby"})).await["type"],
        "joined"
    );
    // u2: a tab that reads (and so answers pings) and one that went silent
    // after its upgrade; u3: a hub connection that joined and went silent.
    let lively = Watcher::new(server.ws_as("/chat/lobby", &u2).await);
    let mut silent = upgraded_as(
        TcpStream::connect(server.ws).await.unwrap(),
        "/chat/lobby",
        &u2,
    )
    .await;
    let mut silent_hub =
        upgraded_as(TcpStream::connect(server.ws).await.unwrap(), "/hub", &u3).await;
    let join = json!({"type": "join", "room": "lobby"}).to_string();
    silent_hub
        .write_all(&client_frame(0x81, join.len() as u64, join.as_bytes()))
        .await
        .unwrap();
    assert_eq!(lobby.next_presence().await, notice("join", "lobby", "u2"));
    assert_eq!(hub.next_presence().await, notice("join", "lobby", "u3"));
    assert_eq!(
        presence(&server, "chat/lobby").await,
        present(3, &["u1", "u2"])
    );

    // Both silent ones are closed 1001; the server has left their rooms
    // before it hangs up.
    for stream in [&mut silent, &mut silent_hub] {
        assert_eq!(read_close_code(stream).await, Some(1001));
        wait_eof(stream).await;
    }
    assert_eq!(server.handle.stats().enforced["idle"], 2);
    assert_eq!(
        presence(&server, "chat/lobby").await,
        present(2, &["u1", "u2"]),
        "u2's other tab keeps u2 there"
    );
    assert_eq!(presence(&server, "hub/lobby").await, present(1, &["u1"]));
    assert_eq!(hub.next_presence().await, notice("leave", "lobby", "u3"));
    // u2's silent tab said nothing: the next notice is its lively tab's
    // leave.
    lively.close().await;
    assert_eq!(lobby.next_presence().await, notice("leave", "lobby", "u2"));
    assert_eq!(presence(&server, "chat/lobby").await, present(1, &["u1"]));
    let stats = eventually(&server.handle, |stats| stats.users == 1).await;
    assert_eq!(stats.connections, 2, "the watchers outlived every timeout");
}

/// Messages the slow-consumer test's watcher may lag behind: an eighth of
/// its send buffer.
const FLOOD_WINDOW: usize = 4;

#[tokio::test]
async fn a_slow_consumer_closed_with_1013_leaves_presence_exact() {
    let Some(signer) = signer() else { return };
    // Room for 32 of the 8 KiB messages below: a reader keeps up, the one
    // that never reads overflows it.
    let server = start_with_admin(&config(
        signer,
        "send_buffer = \"256KiB\"\nclose_timeout = \"300ms\"",
    ))
    .await;
    let [u1, u2, u3] = tokens(signer, ["u1", "u2", "u3"]);
    let mut lobby = Watcher::new(server.ws_as("/chat/lobby", &u1).await);
    // The slow consumer: a tiny receive window, and it never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = upgraded_as(socket.connect(server.ws).await.unwrap(), "/chat/lobby", &u2).await;
    assert_eq!(lobby.next_presence().await, notice("join", "lobby", "u2"));
    assert_eq!(
        presence(&server, "chat/lobby").await,
        present(2, &["u1", "u2"])
    );
    // Messages until the slow one overflows, each published only once the
    // watcher has read all but FLOOD_WINDOW of the earlier ones: however
    // slowly this machine runs it, the watcher is never the slow one.
    let payload = "x".repeat(8 * 1024);
    let mut published = 0;
    while server.handle.stats().enforced["slow_consumer"] == 0 {
        assert!(published < 4000, "the slow consumer was never closed");
        server
            .handle
            .publish(
                "chat",
                Some("lobby"),
                wsedge::Message::text(payload.clone()),
            )
            .unwrap();
        published += 1;
        if published > FLOOD_WINDOW {
            assert_eq!(lobby.next().await, Value::String(payload.clone()));
        }
    }
    assert_eq!(read_close_code(&mut slow).await, Some(1013));
    wait_eof(&mut slow).await;
    assert_eq!(presence(&server, "chat/lobby").await, present(1, &["u1"]));
    assert_eq!(lobby.next_presence().await, notice("leave", "lobby", "u2"));
    // Told once: the next notice is the next arrival's.
    let _late = server.ws_as("/chat/lobby", &u3).await;
    assert_eq!(lobby.next_presence().await, notice("join", "lobby", "u3"));
    let stats = eventually(&server.handle, |stats| stats.users == 2).await;
    assert_eq!(stats.enforced["slow_consumer"], 1, "only the slow one");
    assert!(server.handle.user_connections("u2").is_empty());
}

/// [`CHANNELS`] with `chat` turned into a broadcast channel: a reload
/// replaces it.
fn chat_as_broadcast(text: &str) -> String {
    text.replace(
        "path = \"/chat/{room}\"\nkind = \"room\"\npresence_events = true",
        "path = \"/chat\"\nkind = \"broadcast\"",
    )
}

/// The presence of the targets the reload test watches.
const RELOAD_TARGETS: [&str; 3] = ["chat/lobby", "hub/lobby", "news"];

async fn presences(server: &AdminServer) -> Vec<(usize, usize, Vec<String>)> {
    let mut all = Vec::new();
    for target in RELOAD_TARGETS {
        all.push(presence(server, target).await);
    }
    all
}

/// The connections of the reload test's users.
fn connections(server: &AdminServer) -> [Vec<wsedge::ConnectionInfo>; 3] {
    ["u1", "u2", "u3"].map(|user| server.handle.user_connections(user))
}

/// Presence and the users' connections are what they were before a reload.
async fn assert_unchanged(
    server: &AdminServer,
    presence: &[(usize, usize, Vec<String>)],
    listed: &[Vec<wsedge::ConnectionInfo>; 3],
) {
    assert_eq!(presences(server).await, presence);
    assert_eq!(&connections(server), listed);
}

#[tokio::test]
async fn reloads_keep_presence_exact_and_leaves_told_once() {
    let Some(signer) = signer() else { return };
    let text = config(signer, "");
    let server = start_with_admin(&text).await;
    let [u1, u2, u3, u4] = tokens(signer, ["u1", "u2", "u3", "u4"]);
    let mut lobby = Watcher::new(server.ws_as("/chat/lobby", &u1).await);
    let mut hub = Watcher::new(server.ws_as("/hub", &u1).await);
    assert_eq!(
        hub.request(json!({"type": "join", "room": "lobby"})).await["type"],
        "joined"
    );
    let tabs = [
        server.ws_as("/chat/lobby", &u2).await,
        server.ws_as("/chat/lobby", &u2).await,
    ];
    let mut hub_tab = server.ws_as("/hub", &u2).await;
    join_hub_rooms(&mut hub_tab, &["lobby"]).await;
    let news = [
        server.ws_as("/news", &u2).await,
        server.ws_as("/news", &u3).await,
    ];
    assert_eq!(lobby.next_presence().await, notice("join", "lobby", "u2"));
    assert_eq!(hub.next_presence().await, notice("join", "lobby", "u2"));
    let before = presences(&server).await;
    assert_eq!(
        before,
        [
            present(3, &["u1", "u2"]),
            present(2, &["u1", "u2"]),
            present(2, &["u2", "u3"])
        ]
    );
    let listed = connections(&server);

    // A reload that keeps the channels as they are, one that changes their
    // settings: the connections stay, and so does who is where.
    let extra = "\n[[channel]]\nname = \"extra\"\npath = \"/extra\"\nkind = \"echo\"\n";
    let changed = text.replace("[limits]\n", "[limits]\nmax_payload = \"32KiB\"\n");
    let report = server.reload(&format!("{text}{extra}")).await;
    assert_eq!(
        (report.added, report.changed),
        (vec!["extra".to_owned()], vec![])
    );
    assert_unchanged(&server, &before, &listed).await;
    let report = server.reload(&changed).await;
    assert_eq!(report.changed, ["news", "chat", "hub"]);
    assert_unchanged(&server, &before, &listed).await;

    // Leaves after the reloads: once, when the user's last connection goes.
    for ws in tabs {
        close_and_wait(ws).await;
    }
    close_and_wait(hub_tab).await;
    assert_eq!(lobby.next_presence().await, notice("leave", "lobby", "u2"));
    assert_eq!(hub.next_presence().await, notice("leave", "lobby", "u2"));
    // Told once: the next notice each watcher gets is the next arrival's.
    let mut late = server.ws_as("/chat/lobby", &u4).await;
    let mut late_hub = server.ws_as("/hub", &u4).await;
    join_hub_rooms(&mut late_hub, &["lobby"]).await;
    assert_eq!(lobby.next_presence().await, notice("join", "lobby", "u4"));
    assert_eq!(hub.next_presence().await, notice("join", "lobby", "u4"));
    assert_eq!(
        presence(&server, "chat/lobby").await,
        present(2, &["u1", "u4"])
    );
    assert_eq!(
        presence(&server, "hub/lobby").await,
        present(2, &["u1", "u4"])
    );
    assert_eq!(presence(&server, "news").await, present(2, &["u2", "u3"]));

    // A reload that replaces `chat` (another kind) closes its connections
    // 1001; the new channel starts empty, the others are untouched.
    let report = server.reload(&chat_as_broadcast(&changed)).await;
    assert_eq!(
        (report.removed, report.added),
        (vec!["chat".to_owned()], vec!["chat".to_owned()])
    );
    let close = lobby.closed().await.expect("a close frame");
    assert_eq!(close.code, CloseCode::Away);
    assert_eq!(
        next_close(&mut late).await.map(|frame| frame.code),
        Some(CloseCode::Away)
    );
    wait_closed(&mut late).await;
    let stats = eventually(&server.handle, |stats| stats.connections == 4).await;
    assert_eq!(
        stats.users, 4,
        "u1 and u4 on the hub, u2 and u3 on news: {stats:#?}"
    );
    assert_eq!(presence(&server, "chat").await, present(0, &[]));
    assert_eq!(
        presence(&server, "hub/lobby").await,
        present(2, &["u1", "u4"])
    );
    assert_eq!(presence(&server, "news").await, present(2, &["u2", "u3"]));
    assert_eq!(
        server.handle.user_connections("u4").len(),
        1,
        "its hub connection"
    );
    drop((news, late_hub));
}
