//! Users across channels, through a real server with tokens signed by
//! PyJWT: "log out my other devices", publish to a user, the user's
//! connections, presence counts and lists (Handle and admin API) through
//! abrupt disconnects, presence notices without a second join for a second
//! tab, hub direct messages and the grants that gate hub joins and posts,
//! and a three-user hub chat from Python and from pages in Chromium.
//! (Presence through resets, timeouts and reloads: tests/presence.rs.)

mod common;

use common::{jwt::*, *};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, protocol::frame::coding::CloseCode};

const CONFIG: &str = r#"
[server]
plain = ["127.0.0.1:0"]

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
presence_events = true

[[channel]]
name = "hub"
path = "/hub"
kind = "hub"
presence_events = true
"#;

async fn server(signer: &Signer) -> AdminServer {
    server_reading(signer, r#"["bearer"]"#).await
}

/// A server that reads tokens from `sources`.
async fn server_reading(signer: &Signer, sources: &str) -> AdminServer {
    start_with_admin(&format!(
        "{CONFIG}\n[auth]\nalgorithms = [\"HS256\"]\nsecret_file = {:?}\nsources = {sources}\n",
        signer.path("hmac.secret")
    ))
    .await
}

/// Grants to join and publish on every channel of [`CONFIG`].
const EVERYWHERE: &[&str] = &["news", "chat", "hub"];

async fn admin_post(server: &AdminServer, path: &str, body: &str) -> HttpAnswer {
    http(
        server.admin,
        &format!("POST {path} HTTP/1.1\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json"),
        body.as_bytes(),
    )
    .await
}

#[tokio::test]
async fn log_out_my_other_devices_closes_all_but_one_connection() {
    let Some(signer) = signer() else { return };
    let server = server(signer).await;
    let u1 = user_token(signer, "u1", EVERYWHERE);
    let mut phone = server.ws_as("/news", &u1).await;
    let mut tablet = server.ws_as("/news", &u1).await;
    let mut laptop = server.ws_as("/chat/lobby", &u1).await;
    let other = server
        .ws_as("/news", &user_token(signer, "u2", EVERYWHERE))
        .await;
    let connections = server.handle.user_connections("u1");
    assert_eq!(connections.len(), 3, "{connections:?}");
    let keep = connections
        .iter()
        .find(|c| c.channel == "chat")
        .expect("the laptop's connection");
    assert_eq!(keep.room.as_deref(), Some("lobby"));
    let listed = http(
        server.admin,
        &format!("GET /users/u1/connections HTTP/1.1\r\nAuthorization: Bearer {ADMIN_TOKEN}"),
        b"",
    )
    .await;
    assert_eq!(listed.status, 200);
    let listed: Value = serde_json::from_str(&listed.body).unwrap();
    assert_eq!(listed["connections"].as_array().unwrap().len(), 3);

    let answer = admin_post(
        &server,
        "/users/u1/disconnect",
        &json!({"code": 4001, "reason": "logged out", "except": keep.id}).to_string(),
    )
    .await;
    assert_eq!(
        (answer.status, answer.body.trim()),
        (200, r#"{"closed":2}"#)
    );
    for ws in [&mut phone, &mut tablet] {
        let close = next_close(ws).await.expect("a close frame");
        assert_eq!(
            (u16::from(close.code), close.reason.as_str()),
            (4001, "logged out")
        );
    }
    // The one kept still receives, through its room and as its user.
    assert_eq!(server.publish_text("chat/lobby", "room news").await, 1);
    assert_eq!(next_data(&mut laptop).await, Message::text("room news"));
    let answer = admin_post(&server, "/users/u1/publish", "for you").await;
    assert_eq!(
        (answer.status, answer.body.trim()),
        (200, r#"{"delivered":1}"#)
    );
    assert_eq!(
        next_data(&mut laptop).await,
        Message::binary(b"for you".to_vec())
    );
    // Bad codes are refused, and the other user was never touched.
    let bad = admin_post(&server, "/users/u1/disconnect", r#"{"code": 1006}"#).await;
    assert_eq!(bad.status, 400);
    assert_eq!(server.handle.user_connections("u2").len(), 1);
    drop(other);
}

#[tokio::test]
async fn presence_counts_users_once_and_notices_first_joins_and_last_leaves() {
    let Some(signer) = signer() else { return };
    let server = server(signer).await;
    let (u1, u2) = (
        user_token(signer, "u1", EVERYWHERE),
        user_token(signer, "u2", EVERYWHERE),
    );
    let mut first = server.ws_as("/chat/lobby", &u1).await;
    let tab_a = server.ws_as("/chat/lobby", &u2).await;
    assert_eq!(
        next_json(&mut first).await,
        json!({"type": "presence", "event": "join", "room": "lobby", "user": "u2"})
    );
    // A second tab is no second join: the next thing u1 sees is a marker.
    let tab_b = server.ws_as("/chat/lobby", &u2).await;
    let page = server
        .handle
        .presence("chat", Some("lobby"), None, 10)
        .await
        .unwrap();
    assert_eq!((page.connections, page.users), (3, 2));
    assert_eq!(page.list, ["u1", "u2"]);
    let listed = http(
        server.admin,
        &format!(
            "GET /presence/chat/lobby?limit=1 HTTP/1.1\r\nAuthorization: Bearer {ADMIN_TOKEN}"
        ),
        b"",
    )
    .await;
    let listed: Value = serde_json::from_str(&listed.body).unwrap();
    assert_eq!(
        listed,
        json!({"connections": 3, "users": 2, "list": ["u1"], "next": "u1", "scope": "node"})
    );
    server.publish_text("chat/lobby", "marker").await;
    assert_eq!(next_data(&mut first).await, Message::text("marker"));
    // Both tabs vanish without a close frame: counts follow, one leave.
    drop(tab_a.into_inner());
    drop(tab_b.into_inner());
    assert_eq!(
        next_json(&mut first).await,
        json!({"type": "presence", "event": "leave", "room": "lobby", "user": "u2"})
    );
    let page = server
        .handle
        .presence("chat", Some("lobby"), None, 10)
        .await
        .unwrap();
    assert_eq!((page.connections, page.users, page.list.len()), (1, 1, 1));
    assert_eq!(server.handle.stats().users, 1);
}

#[tokio::test]
async fn hub_direct_messages_are_stamped_and_grants_gate_joins_and_posts() {
    let Some(signer) = signer() else { return };
    let server = server(signer).await;
    let mut alice = server
        .ws_as("/hub", &user_token(signer, "alice", EVERYWHERE))
        .await;
    let mut bob = server
        .ws_as("/hub", &user_token(signer, "bob", EVERYWHERE))
        .await;
    let mut guest = server
        .ws_as("/hub", &user_token(signer, "guest", &["hub:public"]))
        .await;
    send_text(
        &mut alice,
        &json!({"type": "dm", "to": "bob", "payload": {"hi": 1}, "from": "forged", "id": 1})
            .to_string(),
    )
    .await;
    assert_eq!(
        next_json(&mut alice).await,
        json!({"type": "ack", "delivered": 1, "replyTo": 1})
    );
    assert_eq!(
        next_json(&mut bob).await,
        json!({"type": "dm", "from": "alice", "payload": {"hi": 1}})
    );
    // The guest may join "public" only, and has no channel-wide grant to dm.
    send_text(
        &mut guest,
        &json!({"type": "join", "room": "public", "id": 2}).to_string(),
    )
    .await;
    assert_eq!(next_json(&mut guest).await["type"], "joined");
    send_text(
        &mut guest,
        &json!({"type": "join", "room": "private", "id": 3}).to_string(),
    )
    .await;
    assert_eq!(next_json(&mut guest).await["code"], "forbidden");
    send_text(
        &mut guest,
        &json!({"type": "dm", "to": "bob", "payload": 1, "id": 4}).to_string(),
    )
    .await;
    assert_eq!(next_json(&mut guest).await["code"], "forbidden");
    // Presence notices on the hub: bob's join is told to the guest.
    send_text(
        &mut bob,
        &json!({"type": "join", "room": "public"}).to_string(),
    )
    .await;
    assert_eq!(next_json(&mut bob).await["type"], "joined");
    assert_eq!(
        next_json(&mut guest).await,
        json!({"type": "presence", "event": "join", "room": "public", "user": "bob"})
    );
    // A client message on a broadcast channel without a publish grant
    // closes 1008.
    let join_only = signer
        .hs256(json!({"sub": "reader", "exp": unix_now(600), "join": ["news"], "publish": []}));
    let mut reader = server.ws_as("/news", &join_only).await;
    send_text(&mut reader, "hello").await;
    let close = next_close(&mut reader).await.expect("a close frame");
    assert_eq!(close.code, CloseCode::Policy);
}

/// Three users chat over the hub protocol from Python's `websockets`
/// (tests/peers/hub_chat.py): joins, presence notices, stamped room
/// messages, acks with request ids, a dm, a leave and an error.
#[tokio::test]
async fn three_users_chat_over_the_hub_from_python() {
    let Some(signer) = signer() else { return };
    let Some(python) = common::peers::python() else {
        return;
    };
    let server = server(signer).await;
    let tokens: Vec<String> = ["alice", "bob", "carol"]
        .iter()
        .map(|user| user_token(signer, user, EVERYWHERE))
        .collect();
    let output = tokio::process::Command::new(&python)
        .arg(common::peers::peers_dir().join("hub_chat.py"))
        .arg(format!("ws://{}/hub", server.ws))
        .args(&tokens)
        .output();
    let output = tokio::time::timeout(PATIENCE * 3, output)
        .await
        .expect("hub_chat.py finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "hub_chat.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|line| line.starts_with("ok: "))
            .count(),
        15,
        "{stdout}"
    );
}

/// The same three-user chat in headless Chromium
/// (tests/peers/chromium_hub_chat.mjs): each user a page of
/// tests/peers/hub_chat.html, a plain `WebSocket`, in a browser context of
/// its own; alice authenticated by her cookie, bob and carol by a
/// subprotocol entry. What each page received is asserted here: room
/// messages stamped with their sender and never echoed, the dm at its
/// target only, each join and leave told once to each other member, and
/// every request answered once under its id.
#[tokio::test]
async fn three_users_chat_over_the_hub_in_chromium() {
    let Some(signer) = signer() else { return };
    let Some(node) = common::peers::chromium() else {
        return;
    };
    let server = server_reading(signer, r#"["cookie", "protocol"]"#).await;
    let tokens: Vec<String> = ["alice", "bob", "carol"]
        .iter()
        .map(|user| user_token(signer, user, EVERYWHERE))
        .collect();
    let output = tokio::process::Command::new(&node)
        .current_dir(common::peers::peers_dir())
        .arg("chromium_hub_chat.mjs")
        .arg(format!("ws://{}/hub", server.ws))
        .args(&tokens)
        .kill_on_drop(true)
        .output();
    // Beyond the script's own bound (90 s), so that its FAIL line is seen.
    let output = tokio::time::timeout(common::browser::STEP_TIMEOUT + PATIENCE, output)
        .await
        .expect("chromium_hub_chat.mjs finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.ends_with("OK\n"),
        "chromium_hub_chat.mjs failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let observed: std::collections::HashMap<&str, Vec<Value>> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("observed "))
        .map(|rest| {
            let (user, json) = rest.split_once(' ').unwrap();
            (user, serde_json::from_str(json).unwrap())
        })
        .collect();
    assert_eq!(observed.len(), 3, "{stdout}");
    let users = ["alice", "bob", "carol"];
    let count =
        |value: &Value| users.map(|user| observed[user].iter().filter(|m| *m == value).count());

    let hello =
        json!({"type": "message", "room": "lobby", "from": "alice", "payload": {"text": "hello"}});
    assert_eq!(count(&hello), [0, 1, 1], "to the others, once: {stdout}");
    let dm = json!({"type": "dm", "from": "bob", "payload": "psst"});
    assert_eq!(count(&dm), [0, 0, 1], "to its target only: {stdout}");
    let deliveries = users.map(|user| {
        observed[user]
            .iter()
            .filter(|m| m["type"] == "message" || m["type"] == "dm")
            .count()
    });
    assert_eq!(
        deliveries,
        [0, 1, 2],
        "nothing else was delivered: {stdout}"
    );

    // Presence, in order: each change once to each member that saw it,
    // never about oneself. Alice's own join may have been waiting to be
    // coalesced when bob arrived; then bob was told of it.
    let notices = |user: &str| -> Vec<(&str, &str)> {
        observed[user]
            .iter()
            .filter(|m| m["type"] == "presence")
            .map(|m| {
                assert_eq!(m["room"], "lobby", "{m}");
                (m["event"].as_str().unwrap(), m["user"].as_str().unwrap())
            })
            .collect()
    };
    assert_eq!(
        notices("alice"),
        [("join", "bob"), ("join", "carol"), ("leave", "carol")]
    );
    let mut bob = notices("bob");
    if bob.first() == Some(&("join", "alice")) {
        bob.remove(0);
    }
    assert_eq!(
        bob,
        [("join", "carol"), ("leave", "carol"), ("leave", "alice")]
    );
    assert_eq!(
        notices("carol"),
        [],
        "carol came after the others' joins were told"
    );

    // Each request answered once, in order, its id back as replyTo.
    let answers = |user: &str| -> Vec<(&str, i64)> {
        observed[user]
            .iter()
            .filter(|m| m.get("replyTo").is_some())
            .map(|m| (m["type"].as_str().unwrap(), m["replyTo"].as_i64().unwrap()))
            .collect()
    };
    assert_eq!(
        answers("alice"),
        [("joined", 1), ("ack", 2), ("error", 3), ("left", 4)]
    );
    assert_eq!(answers("bob"), [("joined", 1), ("ack", 2)]);
    assert_eq!(answers("carol"), [("joined", 1), ("left", 2)]);

    let stats = eventually(&server.handle, |stats| stats.connections == 0).await;
    assert_eq!(stats.users, 0);
    assert_eq!(
        stats.auth.get(&("accepted", "cookie")),
        Some(&1),
        "{:?}",
        stats.auth
    );
    assert_eq!(
        stats.auth.get(&("accepted", "protocol")),
        Some(&2),
        "{:?}",
        stats.auth
    );
}
