//! Channel behaviour over real sockets: echo, broadcast, rooms, the publish
//! API, and the close handshake.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{
    Message,
    protocol::{
        CloseFrame,
        frame::{
            Frame,
            coding::{CloseCode, Data, OpCode},
        },
    },
};
use wsedge::{Message as Outgoing, PublishError};

const CHANNELS: &str = r#"
[limits]
max_payload = "2MiB"
send_buffer = "8MiB"
handshake_rate = { per_second = 1000, burst = 1000 }

[[channel]]
name = "echo"
path = "/echo"
kind = "echo"

[[channel]]
name = "news"
path = "/news"
kind = "broadcast"
publish = "clients"

[[channel]]
name = "loud"
path = "/loud"
kind = "broadcast"
publish = "clients"
echo_to_sender = true

[[channel]]
name = "feed"
path = "/feed"
kind = "broadcast"
publish = "api"

[[channel]]
name = "chat"
path = "/chat/{room}"
kind = "room"
"#;

#[tokio::test]
async fn echo_returns_text_and_binary_over_ws_and_wss() {
    let server = start(CHANNELS).await;
    let mut plain = server.ws("/echo").await;
    let mut secure = server.wss("/echo").await;
    for message in [
        Message::text("hello"),
        Message::binary(vec![0u8, 159, 146, 150]),
        Message::text(""),
    ] {
        plain.send(message.clone()).await.unwrap();
        assert_eq!(next_data(&mut plain).await, message);
        secure.send(message.clone()).await.unwrap();
        assert_eq!(next_data(&mut secure).await, message);
    }
}

#[tokio::test]
async fn echo_handles_a_one_mebibyte_message() {
    let server = start(CHANNELS).await;
    let payload: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let mut secure = server.wss("/echo").await;
    secure.send(Message::binary(payload.clone())).await.unwrap();
    assert_eq!(
        next_data(&mut secure).await,
        Message::binary(payload.clone())
    );
    let text = "ab".repeat(1 << 19);
    let mut plain = server.ws("/echo").await;
    plain.send(Message::text(text.clone())).await.unwrap();
    assert_eq!(next_data(&mut plain).await, Message::text(text));
}

#[tokio::test]
async fn echo_reassembles_a_fragmented_message() {
    let server = start(CHANNELS).await;
    let mut ws = server.ws("/echo").await;
    let parts = ["frag", "mented ", "héllo"];
    ws.send(Message::Frame(Frame::message(
        parts[0],
        OpCode::Data(Data::Text),
        false,
    )))
    .await
    .unwrap();
    // A ping between fragments is allowed (RFC 6455 section 5.4).
    ws.send(Message::Ping(b"between".to_vec().into()))
        .await
        .unwrap();
    ws.send(Message::Frame(Frame::message(
        parts[1],
        OpCode::Data(Data::Continue),
        false,
    )))
    .await
    .unwrap();
    ws.send(Message::Frame(Frame::message(
        parts[2],
        OpCode::Data(Data::Continue),
        true,
    )))
    .await
    .unwrap();
    let mut pong = None;
    let echoed = loop {
        match tokio::time::timeout(PATIENCE, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Message::Pong(payload) => pong = Some(payload),
            Message::Text(text) => break text,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(echoed.as_str(), parts.concat());
    assert_eq!(
        pong.as_deref(),
        Some(&b"between"[..]),
        "the ping is answered before the message completes"
    );
}

#[tokio::test]
async fn broadcast_reaches_every_other_subscriber_exactly_once() {
    let server = start(CHANNELS).await;
    let mut clients = Vec::new();
    for _ in 0..50 {
        clients.push(server.ws("/news").await);
    }
    assert_eq!(
        server.handle.stats().channel("news").unwrap().connections,
        50
    );
    let (sender, others) = clients.split_first_mut().unwrap();
    send_text(sender, "headline").await;
    send_text(sender, "second").await;
    for other in others.iter_mut() {
        assert_eq!(next_data(other).await, Message::text("headline"));
        assert_eq!(next_data(other).await, Message::text("second"));
    }
    // A marker published after the sender's messages is the first thing the
    // sender sees: it never got its own messages, and nobody got them twice.
    assert_eq!(
        server
            .handle
            .publish("news", None, Outgoing::text("marker")),
        Ok(50)
    );
    assert_eq!(next_data(sender).await, Message::text("marker"));
    for other in others.iter_mut() {
        assert_eq!(next_data(other).await, Message::text("marker"));
    }
}

#[tokio::test]
async fn echo_to_sender_returns_the_senders_own_broadcast() {
    let server = start(CHANNELS).await;
    let mut sender = server.ws("/loud").await;
    let mut other = server.wss("/loud").await;
    sender.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(next_data(&mut sender).await, Message::binary(vec![1, 2, 3]));
    assert_eq!(next_data(&mut other).await, Message::binary(vec![1, 2, 3]));
}

#[tokio::test]
async fn rooms_are_isolated_and_vanish_with_their_last_member() {
    let server = start(CHANNELS).await;
    let mut a1 = server.ws("/chat/a").await;
    let mut a2 = server.wss("/chat/a").await;
    let mut b1 = server.ws("/chat/b").await;
    let stats = server.handle.stats();
    let chat = stats.channel("chat").unwrap();
    assert_eq!(
        (chat.connections, chat.rooms.get("a"), chat.rooms.get("b")),
        (3, Some(&2), Some(&1))
    );

    send_text(&mut a1, "for room a").await;
    assert_eq!(next_data(&mut a2).await, Message::text("for room a"));
    assert_eq!(
        server
            .handle
            .publish("chat", Some("b"), Outgoing::text("only b")),
        Ok(1)
    );
    assert_eq!(
        next_data(&mut b1).await,
        Message::text("only b"),
        "room b never saw room a's message"
    );

    close_and_wait(b1).await;
    let stats = server.handle.stats();
    assert_eq!(
        stats
            .channel("chat")
            .unwrap()
            .rooms
            .keys()
            .collect::<Vec<_>>(),
        ["a"]
    );
    close_and_wait(a1).await;
    close_and_wait(a2).await;
    let stats = server.handle.stats();
    let chat = stats.channel("chat").unwrap();
    assert!(chat.rooms.is_empty(), "{chat:?}");
    assert_eq!(chat.connections, 0);
}

#[tokio::test]
async fn publish_reaches_a_broadcast_channel_and_one_room_only() {
    let server = start(CHANNELS).await;
    let mut feed_plain = server.ws("/feed").await;
    let mut feed_secure = server.wss("/feed").await;
    let mut lobby = server.ws("/chat/lobby").await;
    let mut dev = server.ws("/chat/dev").await;

    assert_eq!(
        server
            .handle
            .publish("feed", None, Outgoing::binary(vec![9u8; 3])),
        Ok(2)
    );
    assert_eq!(
        next_data(&mut feed_plain).await,
        Message::binary(vec![9u8; 3])
    );
    assert_eq!(
        next_data(&mut feed_secure).await,
        Message::binary(vec![9u8; 3])
    );
    assert_eq!(
        server
            .handle
            .publish("chat", Some("lobby"), Outgoing::text("lobby news")),
        Ok(1)
    );
    assert_eq!(
        server
            .handle
            .publish("chat", Some("dev"), Outgoing::text("dev news")),
        Ok(1)
    );
    assert_eq!(next_data(&mut lobby).await, Message::text("lobby news"));
    assert_eq!(next_data(&mut dev).await, Message::text("dev news"));
    assert_eq!(
        server
            .handle
            .publish("chat", Some("empty"), Outgoing::text("nobody")),
        Ok(0)
    );

    assert_eq!(
        server.handle.publish("nope", None, Outgoing::text("x")),
        Err(PublishError::UnknownChannel("nope".into()))
    );
    assert!(matches!(
        server.handle.publish("echo", None, Outgoing::text("x")),
        Err(PublishError::NotPublishable(_))
    ));
    assert!(matches!(
        server.handle.publish("chat", None, Outgoing::text("x")),
        Err(PublishError::RoomMismatch {
            needs_room: true,
            ..
        })
    ));
    assert!(matches!(
        server
            .handle
            .publish("feed", Some("a"), Outgoing::text("x")),
        Err(PublishError::RoomMismatch {
            needs_room: false,
            ..
        })
    ));
    let too_big = Outgoing::binary(vec![0u8; (2 << 20) + 1]);
    assert!(matches!(
        server.handle.publish("feed", None, too_big),
        Err(PublishError::TooLarge { .. })
    ));
}

#[tokio::test]
async fn a_client_publishing_on_an_api_only_channel_is_closed_with_1008() {
    let server = start(CHANNELS).await;
    let mut ws = server.ws("/feed").await;
    send_text(&mut ws, "not allowed").await;
    let close = next_close(&mut ws).await.expect("a close code");
    assert_eq!(close.code, CloseCode::Policy);
}

#[tokio::test]
async fn client_close_is_answered_with_the_same_code() {
    let server = start(CHANNELS).await;
    let mut ws = server.wss("/echo").await;
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    let reply = next_close(&mut ws)
        .await
        .expect("the server echoes the close code");
    assert_eq!(reply.code, CloseCode::Normal);
    wait_closed(&mut ws).await;
    assert_eq!(
        server.handle.stats().channel("echo").unwrap().connections,
        0
    );
}

#[tokio::test]
async fn shutdown_closes_every_connection_with_1001() {
    let server = start(CHANNELS).await;
    let mut clients = vec![
        server.ws("/echo").await,
        server.ws("/news").await,
        server.ws("/chat/x").await,
    ];
    let mut secure = server.wss("/echo").await;
    server.handle.shutdown();
    for client in &mut clients {
        assert_eq!(
            next_close(client).await.expect("a close code").code,
            CloseCode::Away
        );
    }
    assert_eq!(
        next_close(&mut secure).await.expect("a close code").code,
        CloseCode::Away
    );
    drop(clients);
    drop(secure);
    let result = tokio::time::timeout(PATIENCE, server.task)
        .await
        .expect("serve returns after shutdown");
    assert!(result.unwrap().is_ok());
}

/// A client may send its first frames right behind its upgrade request, in
/// the same write: hyper reads them with the request, and the session must
/// still receive them first, in order (a plain connection leaves hyper's
/// stream behind after the upgrade and hands those bytes out itself).
#[tokio::test]
async fn frames_sent_in_the_same_write_as_the_upgrade_request_are_echoed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start(CHANNELS).await;
    let mut stream = tokio::net::TcpStream::connect(server.ws).await.unwrap();
    let mut bytes = upgrade_request("/echo", "").into_bytes();
    bytes.extend(client_frame(0x81, 5, b"first"));
    bytes.extend(client_frame(0x82, 6, b"second"));
    stream.write_all(&bytes).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.unwrap());
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    assert_eq!(
        read_server_frame(&mut stream).await,
        Some((0x81, b"first".to_vec()))
    );
    assert_eq!(
        read_server_frame(&mut stream).await,
        Some((0x82, b"second".to_vec()))
    );
    // And the connection goes on as any other.
    stream
        .write_all(&client_frame(0x81, 5, b"third"))
        .await
        .unwrap();
    assert_eq!(
        read_server_frame(&mut stream).await,
        Some((0x81, b"third".to_vec()))
    );
}
