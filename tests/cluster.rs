//! Several wsedge nodes sharing channels, rooms, users and presence through
//! one real `redis-server`: two or three servers in this process (and one
//! `wsedge` process, for a node that is killed), clients on each over real
//! sockets. What the tests observe is what users and operators would: the
//! messages each client receives (sequence numbers in the payloads show
//! there is no duplicate and no reordering), close codes, `/readyz`,
//! `/metrics`, `/presence`, and what Redis itself counts (`PUBSUB NUMSUB`).
//! Redis is killed and restarted under traffic.
//!
//! A missing redis-server fails these tests under CI and skips them (with
//! a note) elsewhere; the identity tests need the PyJWT signer as well
//! (tests/peers/install.sh installs both).

mod common;
mod redis_server;

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{jwt::*, *};
use futures_util::SinkExt;
use redis_server::{RedisServer, installed};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{
    Message, client::IntoClientRequest, protocol::frame::coding::CloseCode,
};
use wsedge::{Config, Message as ServerMessage, cluster::LinkState};

/// The probe timings of these nodes: a failure is noticed within
/// `PROBE_INTERVAL + PROBE_TIMEOUT`.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);
const PROBE_TIMEOUT: Duration = Duration::from_millis(750);

/// The presence TTL of these nodes: short, so a killed node ages out soon.
const PRESENCE_TTL: Duration = Duration::from_secs(2);

/// Scheduling slack on top of a documented bound: two cores shared with
/// other work.
const SLACK: Duration = Duration::from_millis(1500);

const CHANNELS: &str = r#"
[server]
plain = ["127.0.0.1:0"]
drain_window = "100ms"

[limits]
handshake_rate = { per_second = 1000, burst = 1000 }
message_rate = { per_second = 1000, burst = 1000 }

[[channel]]
name = "news"
path = "/news"
kind = "broadcast"
publish = "clients"

[[channel]]
name = "chat"
path = "/chat/{room}"
kind = "room"

[[channel]]
name = "hub"
path = "/hub"
kind = "hub"
max_rooms_per_connection = 64
"#;

/// The `[cluster]` table of node `name` on `redis`.
fn cluster_table(redis: &RedisServer, name: &str) -> String {
    format!(
        "[cluster]\nurl = {:?}\nnode_name = {name:?}\nprobe_interval = \"250ms\"\nprobe_timeout = \"750ms\"\nreconnect_min = \"50ms\"\nreconnect_max = \"400ms\"\npresence_ttl = \"2s\"\n",
        redis.url()
    )
}

/// The `[auth]` table of the identity tests.
fn auth_table(signer: &Signer) -> String {
    format!(
        "[auth]\nalgorithms = [\"HS256\"]\nsecret_file = {:?}\nsources = [\"bearer\"]\n",
        signer.path("hmac.secret")
    )
}

/// A node: an in-process server with a plain listener and the admin API.
async fn node(redis: &RedisServer, name: &str, extra: &str) -> AdminServer {
    start_with_admin(&format!(
        "{CHANNELS}\n{extra}\n{}",
        cluster_table(redis, name)
    ))
    .await
}

/// Nodes named `names`, each with its link up.
async fn nodes(redis: &RedisServer, names: &[&str], extra: &str) -> Vec<AdminServer> {
    let mut nodes = Vec::new();
    for name in names {
        nodes.push(node(redis, name, extra).await);
    }
    for node in &nodes {
        link_state(node, LinkState::Up).await;
    }
    nodes
}

/// Waits until `node`'s link is in `state`.
async fn link_state(node: &AdminServer, state: LinkState) {
    let deadline = Instant::now() + PATIENCE;
    while node.handle.cluster_state() != Some(state) {
        assert!(
            Instant::now() < deadline,
            "the link stayed {:?}, not {state:?}: {:?}",
            node.handle.cluster_state(),
            node.handle.stats().cluster
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The link's counters of `node`.
fn link(node: &AdminServer) -> wsedge::cluster::LinkStats {
    node.handle.stats().cluster.expect("a link runs")
}

/// Waits until Redis counts `count` subscribers (nodes) of `topic`.
async fn numsub(redis: &RedisServer, topic: &str, count: i64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let out = redis.cli(&["PUBSUB", "NUMSUB", topic]);
        let now: i64 = out.lines().nth(1).unwrap().trim().parse().unwrap();
        if now == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{topic} has {now} subscribers, not {count}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls `done` until it holds, failing after [`PATIENCE`].
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn expect_text(ws: &mut Ws, text: &str) {
    assert_eq!(next_data(ws).await, Message::text(text));
}

async fn next_json(ws: &mut Ws) -> Value {
    match next_data(ws).await {
        Message::Text(text) => serde_json::from_str(&text).expect("JSON"),
        other => panic!("expected text, got {other:?}"),
    }
}

/// `GET /presence/{target}` on `node`, as JSON.
async fn presence(node: &AdminServer, target: &str) -> Value {
    let answer = http(
        node.admin,
        &format!("GET /presence/{target} HTTP/1.1\r\nAuthorization: Bearer {ADMIN_TOKEN}"),
        b"",
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    serde_json::from_str(&answer.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_messages_reach_every_node_once_and_in_order() {
    if !installed() {
        return;
    }
    let redis = RedisServer::standalone();
    let nodes = nodes(&redis, &["node-a", "node-b", "node-c"], "").await;
    let mut sender = nodes[0].ws("/news").await;
    let mut receivers = Vec::new();
    for node in &nodes {
        receivers.push(node.ws("/news").await);
    }
    numsub(&redis, "wsedge:channel:news", 3).await;

    const COUNT: usize = 50;
    for i in 0..COUNT {
        send_text(&mut sender, &format!("news {i}")).await;
    }
    for ws in &mut receivers {
        for i in 0..COUNT {
            expect_text(ws, &format!("news {i}")).await;
        }
    }
    // An API publish on a, once the client's messages are everywhere: the
    // next thing every client gets. The sender does not get its own
    // messages back (no echo_to_sender): the fence is its first.
    nodes[0].publish_text("news", "fence").await;
    for ws in &mut receivers {
        expect_text(ws, "fence").await;
    }
    expect_text(&mut sender, "fence").await;

    // a subscribes to news too: Redis hands a its own messages, which it
    // ignores. Once it has seen all of them, a fence from b is the next
    // thing every client of a gets: no message was delivered twice.
    until("a ignored its own messages", || {
        link(&nodes[0]).ignored_own == COUNT as u64 + 1
    })
    .await;
    nodes[1].publish_text("news", "fence from b").await;
    expect_text(&mut receivers[0], "fence from b").await;
    expect_text(&mut sender, "fence from b").await;
    let a = link(&nodes[0]);
    assert_eq!(a.published, COUNT as u64 + 1, "{a:?}");
    assert_eq!((a.delivered, a.publish_lost), (1, 0), "{a:?}");
    // b: a's messages, and its own back from Redis, ignored; c: a's and b's.
    until("b ignored its own fence", || {
        link(&nodes[1]).ignored_own == 1
    })
    .await;
    assert_eq!(link(&nodes[1]).delivered, COUNT as u64 + 1);
    until("c got the fence from b", || {
        link(&nodes[2]).delivered == COUNT as u64 + 2
    })
    .await;
    assert_eq!(link(&nodes[2]).ignored_own, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_traffic_reaches_only_the_nodes_with_members() {
    if !installed() {
        return;
    }
    let redis = RedisServer::standalone();
    let nodes = nodes(&redis, &["node-a", "node-b", "node-c"], "").await;
    let mut sender = nodes[0].ws("/chat/lobby").await;
    let mut local = nodes[0].ws("/chat/lobby").await;
    let mut remote = nodes[1].ws("/chat/lobby").await;
    let mut elsewhere = nodes[2].ws("/chat/other").await;
    numsub(&redis, "wsedge:room:chat:lobby", 2).await;
    numsub(&redis, "wsedge:room:chat:other", 1).await;
    let c_before = link(&nodes[2]).received;

    const COUNT: usize = 30;
    for i in 0..COUNT {
        send_text(&mut sender, &format!("lobby {i}")).await;
    }
    for ws in [&mut local, &mut remote] {
        for i in 0..COUNT {
            expect_text(ws, &format!("lobby {i}")).await;
        }
    }
    nodes[1].publish_text("chat/lobby", "fence").await;
    for ws in [&mut local, &mut remote] {
        expect_text(ws, "fence").await;
    }
    // c has no member in the lobby: its subscriber connection carried
    // none of it. What a's API sends to c's room is the one thing it got.
    nodes[0].publish_text("chat/other", "for c").await;
    expect_text(&mut elsewhere, "for c").await;
    assert_eq!(link(&nodes[2]).received, c_before + 1);

    // The last member of a room on a node takes the node's subscription
    // with it.
    close_and_wait(remote).await;
    numsub(&redis, "wsedge:room:chat:lobby", 1).await;
    drop(sender);
    drop(local);
    numsub(&redis, "wsedge:room:chat:lobby", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_joins_and_leaves_is_a_few_subscribe_commands() {
    if !installed() {
        return;
    }
    let redis = RedisServer::standalone();
    let nodes = nodes(&redis, &["node-a"], "").await;
    let mut hub = nodes[0].ws("/hub").await;
    const ROOMS: usize = 40;
    let before = link(&nodes[0]).subscribe_commands;
    // Forty joins sent at once, as a client restoring its rooms would.
    for i in 0..ROOMS {
        hub.feed(Message::text(
            json!({"type": "join", "room": format!("r{i}")}).to_string(),
        ))
        .await
        .unwrap();
    }
    hub.flush().await.unwrap();
    for i in 0..ROOMS {
        assert_eq!(
            next_json(&mut hub).await,
            json!({"type": "joined", "room": format!("r{i}")})
        );
    }
    until("every room subscribed", || {
        link(&nodes[0]).subscriptions == ROOMS as u64
    })
    .await;
    let joined = link(&nodes[0]).subscribe_commands - before;
    assert!(joined <= 3, "{joined} SUBSCRIBE commands for {ROOMS} rooms");
    close_and_wait(hub).await;
    until("every room unsubscribed", || {
        link(&nodes[0]).subscriptions == 0
    })
    .await;
    let left = link(&nodes[0]).subscribe_commands - before - joined;
    assert!(left <= 3, "{left} UNSUBSCRIBE commands for {ROOMS} rooms");
    numsub(&redis, "wsedge:room:hub:r0", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_rooms_and_api_publishes_cross_nodes() {
    if !installed() {
        return;
    }
    let redis = RedisServer::standalone();
    let nodes = nodes(&redis, &["node-a", "node-b", "node-c"], "").await;
    let mut on_a = nodes[0].ws("/hub").await;
    let mut on_c = nodes[2].ws("/hub").await;
    for ws in [&mut on_a, &mut on_c] {
        send_text(ws, r#"{"type":"join","room":"lobby"}"#).await;
        assert_eq!(
            next_json(ws).await,
            json!({"type": "joined", "room": "lobby"})
        );
    }
    numsub(&redis, "wsedge:room:hub:lobby", 2).await;
    send_text(
        &mut on_a,
        r#"{"type":"message","room":"lobby","payload":{"n":1},"id":7}"#,
    )
    .await;
    // The ack counts a's recipients; c's member gets it stamped.
    assert_eq!(
        next_json(&mut on_a).await,
        json!({"type": "ack", "delivered": 0, "replyTo": 7})
    );
    assert_eq!(
        next_json(&mut on_c).await,
        json!({"type": "message", "room": "lobby", "from": null, "payload": {"n": 1}})
    );

    // b has no member: its publish reaches a's and c's, in the hub's shape.
    let delivered = nodes[1]
        .handle
        .publish("hub", Some("lobby"), ServerMessage::text(r#"{"n":2}"#))
        .unwrap();
    assert_eq!(delivered, 0, "b's own recipients");
    for ws in [&mut on_a, &mut on_c] {
        assert_eq!(
            next_json(ws).await,
            json!({"type": "message", "room": "lobby", "from": null, "payload": {"n": 2}})
        );
    }
    // The admin API of a, binary, to a broadcast channel with clients on b
    // and c only.
    let mut news_b = nodes[1].ws("/news").await;
    let mut news_c = nodes[2].ws("/news").await;
    numsub(&redis, "wsedge:channel:news", 2).await;
    let answer = http(
        nodes[0].admin,
        &format!(
            "POST /publish/news HTTP/1.1\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/octet-stream"
        ),
        &[0, 1, 255],
    )
    .await;
    assert_eq!(
        (answer.status, answer.body.trim()),
        (200, r#"{"delivered":0}"#)
    );
    for ws in [&mut news_b, &mut news_c] {
        assert_eq!(next_data(ws).await, Message::binary(vec![0u8, 1, 255]));
    }
}

/// A client of `node` on `path` with `token` as its bearer token.
async fn connect(node: &AdminServer, path: &str, token: &str) -> Ws {
    let mut request = format!("ws://{}{path}", node.ws)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let stream = tokio::net::TcpStream::connect(node.ws).await.unwrap();
    tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap_or_else(|e| panic!("connect to {path}: {e}"))
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_reached_on_every_node_dms_publishes_disconnects_and_presence() {
    if !installed() {
        return;
    }
    let Some(signer) = signer() else { return };
    let redis = RedisServer::standalone();
    let nodes = nodes(&redis, &["node-a", "node-b", "node-c"], &auth_table(signer)).await;
    let everywhere = |user: &str| {
        signer.hs256(json!({"sub": user, "exp": unix_now(600), "join": ["news", "hub"], "publish": ["news", "hub"]}))
    };
    let (alice, bob, carol) = (everywhere("alice"), everywhere("bob"), everywhere("carol"));
    let mut alice_hub = connect(&nodes[0], "/hub", &alice).await;
    let mut bob_hub = connect(&nodes[1], "/hub", &bob).await;
    let mut bob_news = connect(&nodes[2], "/news", &bob).await;
    numsub(&redis, "wsedge:user:bob", 2).await;

    // A direct message from a reaches bob's hub connection on b, not his
    // news connection on c (a dm stays on its channel).
    send_text(
        &mut alice_hub,
        r#"{"type":"dm","to":"bob","payload":{"hi":1},"id":1}"#,
    )
    .await;
    assert_eq!(
        next_json(&mut alice_hub).await,
        json!({"type": "ack", "delivered": 0, "replyTo": 1})
    );
    assert_eq!(
        next_json(&mut bob_hub).await,
        json!({"type": "dm", "from": "alice", "payload": {"hi": 1}})
    );
    // A publish to bob on a, on every channel, reaches both; one to bob on
    // news only reaches c's. Each comes after the dm: the dm reached the
    // news connection never.
    let delivered = nodes[0]
        .handle
        .publish_to_user("bob", None, ServerMessage::text("to bob"))
        .unwrap();
    assert_eq!(delivered, 0);
    expect_text(&mut bob_hub, "to bob").await;
    expect_text(&mut bob_news, "to bob").await;
    nodes[0]
        .handle
        .publish_to_user("bob", Some("news"), ServerMessage::text("news for bob"))
        .unwrap();
    expect_text(&mut bob_news, "news for bob").await;

    // Presence is cluster-wide: alice and carol on news on a, bob on c.
    let _alice_news = connect(&nodes[0], "/news", &alice).await;
    let _carol_news = connect(&nodes[1], "/news", &carol).await;
    let deadline = Instant::now() + PATIENCE;
    let page = loop {
        let page = presence(&nodes[0], "news?limit=2").await;
        if page["connections"] == 3 {
            break page;
        }
        assert!(Instant::now() < deadline, "presence stayed {page}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        page,
        json!({"connections": 3, "users": 3, "list": ["alice", "bob"], "next": "bob", "scope": "cluster"})
    );
    let rest = presence(&nodes[2], "news?after=bob").await;
    assert_eq!(rest["list"], json!(["carol"]));
    assert_eq!(rest["next"], Value::Null);

    // "Log out my other devices" from a, keeping bob's connection on c:
    // b's closes, c's stays (and keeps receiving).
    let keep = nodes[2].handle.user_connections("bob")[0].id;
    assert!(nodes[1].handle.user_connections("bob")[0].id != keep);
    let closed = nodes[0]
        .handle
        .disconnect_user("bob", Some(keep), 4001, "logged out")
        .unwrap();
    assert_eq!(closed, 0, "a has none of bob's connections");
    let close = next_close(&mut bob_hub).await.expect("a close frame");
    assert_eq!(
        (close.code, close.reason.as_str()),
        (CloseCode::from(4001), "logged out")
    );
    nodes[0]
        .handle
        .publish_to_user("bob", None, ServerMessage::text("still here"))
        .unwrap();
    expect_text(&mut bob_news, "still here").await;
    numsub(&redis, "wsedge:user:bob", 1).await;
}

/// A `wsedge` process: its admin and ws addresses, read from its logs.
struct Process {
    guard: KillOnDrop,
    ws: SocketAddr,
    admin: SocketAddr,
    _dir: tempfile::TempDir,
}

/// Runs the `wsedge` binary as node `name`.
async fn process_node(redis: &RedisServer, name: &str) -> Process {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, ADMIN_TOKEN).unwrap();
    let config = dir.path().join("wsedge.toml");
    std::fs::write(
        &config,
        format!(
            "{CHANNELS}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = {:?}\n{}",
            token_file.display().to_string(),
            cluster_table(redis, name)
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
        .env("RUST_LOG", "info")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the wsedge binary starts");
    let guard = KillOnDrop {
        pid: child.id(),
        exited: false,
    };
    let (lines, mut line_rx) = tokio::sync::mpsc::unbounded_channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
        child.wait()
    });
    let (mut ws, mut admin) = (None, None);
    while ws.is_none() || admin.is_none() {
        let line = tokio::time::timeout(PATIENCE, line_rx.recv())
            .await
            .expect("start-up lines within PATIENCE")
            .expect("wsedge is running");
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
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
        match fields["message"].as_str() {
            Some("listening") => ws = Some(addr()),
            Some("admin listening") => admin = Some(addr()),
            _ => {}
        }
    }
    Process {
        guard,
        ws: ws.unwrap(),
        admin: admin.unwrap(),
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_adds_up_over_nodes_and_a_killed_node_ages_out_within_the_ttl() {
    if !installed() {
        return;
    }
    let redis = RedisServer::standalone();
    let mut nodes = nodes(&redis, &["node-a", "node-b"], "").await;
    let mut process = process_node(&redis, "node-c").await;
    let mut clients = Vec::new();
    for (node, count) in [(nodes[0].ws, 2), (process.ws, 3)] {
        for _ in 0..count {
            let stream = tokio::net::TcpStream::connect(node).await.unwrap();
            let request = format!("ws://{node}/news").into_client_request().unwrap();
            clients.push(
                tokio_tungstenite::client_async(request, stream)
                    .await
                    .unwrap()
                    .0,
            );
        }
    }
    // b's client answers the close of b's drain.
    let mut on_b = nodes[1].ws("/news").await;
    let answering = tokio::spawn(async move { wait_closed(&mut on_b).await });
    let deadline = Instant::now() + PATIENCE;
    loop {
        let page = presence(&nodes[0], "news").await;
        if page["connections"] == 6 {
            assert_eq!(page["scope"], "cluster");
            break;
        }
        assert!(Instant::now() < deadline, "presence stayed {page}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The process's own view agrees (it runs the same library).
    let answer = http(
        process.admin,
        &format!("GET /presence/news HTTP/1.1\r\nAuthorization: Bearer {ADMIN_TOKEN}"),
        b"",
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&answer.body).unwrap()["connections"],
        6
    );

    // SIGKILL: no cleanup. Its share counts until its TTL runs out.
    let status = Command::new("kill")
        .args(["-KILL", &process.guard.pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    process.guard.exited = true;
    let killed = Instant::now();
    loop {
        let page = presence(&nodes[1], "news").await;
        if page["connections"] == 3 {
            break;
        }
        assert!(
            killed.elapsed() < PRESENCE_TTL + SLACK,
            "the killed node still counts after {:?}: {page}",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A clean stop: b's connection leaves in its drain, and the end of
    // the drain takes b's share away at once, not at its TTL.
    let mut b = nodes.remove(1);
    b.handle.shutdown();
    answering.await.unwrap();
    let stopped = Instant::now();
    tokio::time::timeout(PATIENCE, &mut b.task)
        .await
        .expect("b stops")
        .unwrap()
        .unwrap();
    assert_eq!(presence(&nodes[0], "news").await["connections"], 2);
    assert_eq!(redis.cli(&["EXISTS", "wsedge:presence:node-b"]).trim(), "0");
    assert!(
        stopped.elapsed() < PRESENCE_TTL / 2,
        "{:?}",
        stopped.elapsed()
    );
    assert_eq!(redis.cli(&["SMEMBERS", "wsedge:nodes"]).trim(), "node-a");
}

/// `GET /readyz` on `node`: the status.
async fn readyz(node: &AdminServer) -> u16 {
    node.admin_get("/readyz").await.status
}

/// The value of the sample `name` (without labels) in `/metrics`.
async fn metric(node: &AdminServer, name: &str) -> f64 {
    let text = node.admin_get("/metrics").await.body;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
        .parse()
        .unwrap()
}

/// The sequence number in a "seq N" message.
fn seq(message: Message) -> u64 {
    let Message::Text(text) = message else {
        panic!("expected text, got {message:?}")
    };
    text.strip_prefix("seq ").unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_under_traffic() {
    if !installed() {
        return;
    }
    let mut redis = RedisServer::standalone();
    let nodes = nodes(&redis, &["node-a", "node-b"], "").await;
    let mut sender = nodes[0].ws("/chat/lobby").await;
    let mut local = nodes[0].ws("/chat/lobby").await;
    let mut remote = nodes[1].ws("/chat/lobby").await;
    numsub(&redis, "wsedge:room:chat:lobby", 2).await;
    assert_eq!(readyz(&nodes[0]).await, 200);
    assert_eq!(metric(&nodes[0], "wsedge_cluster_link_state").await, 2.0);

    // Traffic: one message every 5 ms from a client on a, numbered.
    let traffic = tokio::spawn(async move {
        let mut next = 0u64;
        loop {
            if sender
                .send(Message::text(format!("seq {next}")))
                .await
                .is_err()
            {
                return;
            }
            next += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    // Both receivers see the traffic, in order.
    let (mut last_local, mut last_remote) = (seq(next_data(&mut local).await), 0);
    for _ in 0..20 {
        last_remote = seq(next_data(&mut remote).await);
    }

    redis.kill();
    let killed = Instant::now();
    // /readyz turns 503 within the probe's bound.
    loop {
        if readyz(&nodes[0]).await == 503 {
            break;
        }
        assert!(
            killed.elapsed() < PROBE_INTERVAL + PROBE_TIMEOUT + SLACK,
            "/readyz still 200 after {:?}",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body = nodes[0].admin_get("/readyz").await.body;
    assert!(body.starts_with("cluster link "), "{body}");
    assert_eq!(metric(&nodes[0], "wsedge_cluster_link_state").await, 0.0);
    // Local delivery goes on: 50 more messages, in order, on a.
    for _ in 0..50 {
        let now = seq(next_data(&mut local).await);
        assert_eq!(
            now,
            last_local + 1,
            "a's local delivery skipped or repeated"
        );
        last_local = now;
    }
    let lost = link(&nodes[0]).publish_lost;
    assert!(
        lost > 0,
        "messages sent while Redis is down are counted lost"
    );
    assert!(metric(&nodes[0], "wsedge_cluster_publish_lost_total").await >= lost as f64);

    redis.restart();
    link_state(&nodes[0], LinkState::Up).await;
    link_state(&nodes[1], LinkState::Up).await;
    assert_eq!(readyz(&nodes[0]).await, 200);
    assert_eq!(readyz(&nodes[1]).await, 200);
    // Every subscription is restored: b receives again, with a gap (the
    // lost messages) but never a repeat or a step back.
    let resumed = loop {
        let now = seq(next_data(&mut remote).await);
        assert!(now > last_remote, "{now} after {last_remote}");
        if now > last_local {
            break now;
        }
        last_remote = now;
    };
    let mut last = resumed;
    for _ in 0..20 {
        let now = seq(next_data(&mut remote).await);
        assert_eq!(
            now,
            last + 1,
            "cross-node delivery resumed with a gap or a repeat"
        );
        last = now;
    }
    traffic.abort();
    let a = link(&nodes[0]);
    assert!(a.reconnects >= 1, "{a:?}");
    assert!(a.published > 0 && a.publish_lost >= lost, "{a:?}");
    // The nodes kept serving: a new client on b joins and hears a's API.
    let mut late = nodes[1].ws("/chat/lobby").await;
    nodes[0]
        .publish_text("chat/lobby", "after the outage")
        .await;
    loop {
        if next_data(&mut late).await == Message::text("after the outage") {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_adds_or_removes_cluster_restarts_the_link_with_the_members_it_has() {
    if !installed() {
        return;
    }
    let redis = RedisServer::standalone();
    let peer = nodes(&redis, &["node-b"], "").await.remove(0);
    // a starts alone, with a member in the lobby already.
    let alone = start_with_admin(CHANNELS).await;
    let mut on_a = alone.ws("/chat/lobby").await;
    let mut on_b = peer.ws("/chat/lobby").await;
    assert_eq!(alone.handle.cluster_state(), None);
    assert_eq!(readyz(&alone).await, 200);

    let admin = format!(
        "\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = {:?}\n",
        alone.dir.path().join("admin.token").display().to_string()
    );
    let with_cluster = format!("{CHANNELS}{admin}{}", cluster_table(&redis, "node-a"));
    let report = alone
        .handle
        .reload(Config::from_toml_str(&with_cluster).unwrap())
        .await
        .unwrap();
    assert!(report.cluster_restarted, "{report:?}");
    link_state(&alone, LinkState::Up).await;
    // The member that was already there is subscribed.
    numsub(&redis, "wsedge:room:chat:lobby", 2).await;
    send_text(&mut on_b, "from b").await;
    expect_text(&mut on_a, "from b").await;

    // An unchanged table keeps the link (a new one would count from zero).
    let received = link(&alone).received;
    assert!(received > 0);
    let report = alone
        .handle
        .reload(Config::from_toml_str(&with_cluster).unwrap())
        .await
        .unwrap();
    assert!(!report.cluster_restarted);
    assert_eq!(link(&alone).received, received);

    // Removing the table stops the link and takes a's share away.
    let report = alone
        .handle
        .reload(Config::from_toml_str(&format!("{CHANNELS}{admin}")).unwrap())
        .await
        .unwrap();
    assert!(report.cluster_restarted);
    assert_eq!(alone.handle.cluster_state(), None);
    numsub(&redis, "wsedge:room:chat:lobby", 1).await;
    until("a's presence share removed", || {
        redis.cli(&["EXISTS", "wsedge:presence:node-a"]).trim() == "0"
    })
    .await;
    // a's own clients are served as before.
    let mut second = alone.ws("/chat/lobby").await;
    send_text(&mut second, "alone again").await;
    expect_text(&mut on_a, "alone again").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_from_another_node_is_checked_before_it_closes_anything() {
    if !installed() {
        return;
    }
    let Some(signer) = signer() else { return };
    let redis = RedisServer::standalone();
    let node = nodes(&redis, &["node-a"], &auth_table(signer))
        .await
        .remove(0);
    let bob = signer.hs256(json!({"sub": "bob", "exp": unix_now(600), "join": ["news"]}));
    let mut on_a = connect(&node, "/news", &bob).await;
    numsub(&redis, "wsedge:user:bob", 1).await;
    // Another node, as the library: what it publishes is what a node of
    // another build (or a bad actor on Redis) could.
    let mut settings =
        wsedge::cluster::ClusterSettings::new(&redis.url(), wsedge::cluster::Mode::Standalone)
            .unwrap();
    settings.node_name = "other".to_owned();
    let other = wsedge::cluster::Link::start(settings, |_| {}).unwrap();
    until("the other link up", || other.state() == LinkState::Up).await;
    // 1006 is never sent in a close frame, and a reason must fit in one.
    assert!(other.publish_disconnect("bob", None, 1006, ""));
    assert!(other.publish_disconnect("bob", None, 4000, &"x".repeat(124)));
    let bob_target = wsedge::cluster::Target::User {
        user: "bob".into(),
        channel: None,
    };
    assert!(other.publish(&bob_target, &ServerMessage::text("still open"), None));
    expect_text(&mut on_a, "still open").await;
    assert!(other.publish_disconnect("bob", None, 4002, "from elsewhere"));
    let close = next_close(&mut on_a).await.expect("a close frame");
    assert_eq!(
        (close.code, close.reason.as_str()),
        (CloseCode::from(4002), "from elsewhere")
    );
}
