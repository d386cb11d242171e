//! The hub channel over real sockets, with connections that carry no
//! identity: joining and leaving rooms, room messages stamped by the
//! server, request ids and acknowledgements, every error answer, the
//! per-connection and per-room caps, and API publishes in the hub's shape.
//! (Identities, direct messages and presence are in tests/users.rs.)

mod common;

use common::*;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use wsedge::Message as ServerMessage;

const CHANNELS: &str = r#"
[limits]
handshake_rate = { per_second = 1000, burst = 1000 }
message_rate = { per_second = 1000, burst = 1000 }

[[channel]]
name = "hub"
path = "/hub"
kind = "hub"
max_rooms_per_connection = 2
max_members = 3
"#;

async fn request(ws: &mut Ws, value: Value) -> Value {
    send_text(ws, &value.to_string()).await;
    next_json(ws).await
}

#[tokio::test]
async fn rooms_are_joined_messaged_and_left_over_one_connection() {
    let server = start(CHANNELS).await;
    let (mut a, mut b) = (server.ws("/hub").await, server.ws("/hub").await);
    for ws in [&mut a, &mut b] {
        assert_eq!(
            request(ws, json!({"type": "join", "room": "lobby", "id": 1})).await,
            json!({"type": "joined", "room": "lobby", "replyTo": 1})
        );
    }
    assert_eq!(
        request(&mut a, json!({"type": "join", "room": "games"})).await,
        json!({"type": "joined", "room": "games"})
    );
    // A message with an id is acknowledged with its delivery count; the
    // other member gets it stamped by the server ("from" is null: no
    // identity), whatever "from" the client wrote.
    let sent = json!({"type": "message", "room": "lobby", "payload": {"text": "hi"}, "from": "forged", "id": "m1"});
    assert_eq!(
        request(&mut a, sent).await,
        json!({"type": "ack", "delivered": 1, "replyTo": "m1"})
    );
    assert_eq!(
        next_json(&mut b).await,
        json!({"type": "message", "room": "lobby", "from": null, "payload": {"text": "hi"}})
    );
    // Without an id there is no acknowledgement: the next answer is the
    // leave's.
    send_text(
        &mut a,
        &json!({"type": "message", "room": "games", "payload": 1}).to_string(),
    )
    .await;
    assert_eq!(
        request(&mut b, json!({"type": "leave", "room": "lobby", "id": 2})).await,
        json!({"type": "left", "room": "lobby", "replyTo": 2})
    );
    assert_eq!(
        request(
            &mut b,
            json!({"type": "message", "room": "lobby", "payload": 1, "id": 3})
        )
        .await["code"],
        "not_joined"
    );
    assert_eq!(
        request(&mut a, json!({"type": "leave", "room": "lobby"})).await,
        json!({"type": "left", "room": "lobby"})
    );
    let stats = server.handle.stats();
    let hub = stats.channel("hub").unwrap();
    assert_eq!((hub.connections, hub.rooms.len()), (2, 1), "{hub:?}");
    assert_eq!(hub.rooms["games"], 1);
}

#[tokio::test]
async fn refusals_are_answers_and_the_connection_stays() {
    let server = start(CHANNELS).await;
    let mut ws = server.ws("/hub").await;
    let cases = [
        (Message::text("not json"), "bad_json", None),
        (Message::binary(vec![1, 2, 3]), "bad_json", None),
        (
            Message::text(json!({"type": "shout", "id": 5}).to_string()),
            "unknown_type",
            Some(json!(5)),
        ),
        (
            Message::text(json!({"type": "join", "id": "x"}).to_string()),
            "bad_request",
            Some(json!("x")),
        ),
        (
            Message::text(json!({"type": "join", "room": "a/b", "id": 6}).to_string()),
            "bad_room",
            Some(json!(6)),
        ),
        (
            Message::text(json!({"type": "join", "room": "a b"}).to_string()),
            "bad_room",
            None,
        ),
        (
            Message::text(json!({"type": "dm", "to": "u2", "payload": 1}).to_string()),
            "no_identity",
            None,
        ),
    ];
    for (message, code, reply_to) in cases {
        ws.send(message.clone()).await.unwrap();
        let answer = next_json(&mut ws).await;
        assert_eq!(answer["type"], "error", "{message:?}: {answer}");
        assert_eq!(answer["code"], code, "{message:?}: {answer}");
        assert!(answer["message"].is_string());
        assert_eq!(answer.get("replyTo").cloned(), reply_to, "{message:?}");
    }
    // Two rooms per connection; a third is refused until one is left.
    for room in ["r1", "r2"] {
        assert_eq!(
            request(&mut ws, json!({"type": "join", "room": room})).await["type"],
            "joined"
        );
    }
    assert_eq!(
        request(&mut ws, json!({"type": "join", "room": "r3"})).await["code"],
        "too_many_rooms"
    );
    assert_eq!(
        request(&mut ws, json!({"type": "join", "room": "r1"})).await["type"],
        "joined",
        "joining a room it is in is not a new room"
    );
    request(&mut ws, json!({"type": "leave", "room": "r2"})).await;
    assert_eq!(
        request(&mut ws, json!({"type": "join", "room": "r3"})).await["type"],
        "joined"
    );
}

#[tokio::test]
async fn a_full_room_refuses_the_next_member() {
    let server = start(CHANNELS).await;
    let mut members = Vec::new();
    for _ in 0..3 {
        let mut ws = server.ws("/hub").await;
        assert_eq!(
            request(&mut ws, json!({"type": "join", "room": "small"})).await["type"],
            "joined"
        );
        members.push(ws);
    }
    let mut late = server.ws("/hub").await;
    assert_eq!(
        request(&mut late, json!({"type": "join", "room": "small"})).await["code"],
        "room_full"
    );
    close_and_wait(members.pop().unwrap()).await;
    assert_eq!(
        request(&mut late, json!({"type": "join", "room": "small"})).await["type"],
        "joined",
        "the leaver's place is free once its connection is gone"
    );
}

#[tokio::test]
async fn api_publishes_arrive_in_the_hubs_shape() {
    let server = start(CHANNELS).await;
    let mut ws = server.ws("/hub").await;
    request(&mut ws, json!({"type": "join", "room": "news"})).await;
    let delivered = server
        .handle
        .publish(
            "hub",
            Some("news"),
            ServerMessage::text(r#"{"headline":"up"}"#),
        )
        .unwrap();
    assert_eq!(delivered, 1);
    assert_eq!(
        next_json(&mut ws).await,
        json!({"type": "message", "room": "news", "from": null, "payload": {"headline": "up"}})
    );
    let refused = server
        .handle
        .publish("hub", Some("news"), ServerMessage::text("not json"))
        .unwrap_err();
    assert_eq!(refused, wsedge::PublishError::NotJson);
    assert!(matches!(
        server.handle.publish("hub", None, ServerMessage::text("1")),
        Err(wsedge::PublishError::RoomMismatch {
            needs_room: true,
            ..
        })
    ));
}
