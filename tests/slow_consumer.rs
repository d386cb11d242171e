//! A slow consumer among a hundred healthy subscribers of a 200 msg/s
//! broadcast. In its own test binary so that no other test competes for the
//! CPU while it measures that nobody else waits.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

const CHANNELS: &str = r#"
[limits]
# 32 messages of slack for a healthy reader; the slow one overflows it.
send_buffer = "256KiB"
close_timeout = "300ms"
max_connections_per_ip = 200
handshake_rate = { per_second = 1000, burst = 1000 }

[[channel]]
name = "news"
path = "/news"
kind = "broadcast"
"#;

#[tokio::test]
async fn a_slow_consumer_is_closed_with_1013_and_nobody_else_waits() {
    let server = start(CHANNELS).await;
    // The slow consumer: a tiny receive window, and it never reads.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(server.ws).await.unwrap();
    upgrade(&mut slow, "/news").await;
    let epoch = Instant::now();
    let mut readers = Vec::new();
    for _ in 0..100 {
        let mut ws = server.ws("/news").await;
        readers.push(tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            for expected in 0u64.. {
                let Message::Text(text) = next_data(&mut ws).await else {
                    panic!("text expected")
                };
                let mut fields = text.split(' ');
                let (seq, sent) = (fields.next().unwrap(), fields.next().unwrap());
                if seq == "end" {
                    return (expected, worst);
                }
                assert_eq!(seq.parse::<u64>().unwrap(), expected, "in order, none lost");
                worst = worst.max(
                    epoch
                        .elapsed()
                        .saturating_sub(Duration::from_nanos(sent.parse().unwrap())),
                );
            }
            unreachable!()
        }));
    }
    // 200 messages a second until the slow one overflows its send buffer.
    let payload = "x".repeat(8 * 1024);
    let mut publisher = tokio::time::interval(Duration::from_millis(5));
    let mut published = 0u64;
    while server.handle.stats().enforced["slow_consumer"] == 0 {
        assert!(published < 4000, "the slow consumer was never closed");
        publisher.tick().await;
        let sent = epoch.elapsed().as_nanos();
        server
            .handle
            .publish(
                "news",
                None,
                wsedge::Message::text(format!("{published} {sent} {payload}")),
            )
            .unwrap();
        published += 1;
    }
    // Its close frame waits behind what the kernel already holds; the server
    // hangs up close_timeout later, and the others are still all there.
    assert_eq!(read_close_code(&mut slow).await, Some(1013));
    wait_eof(&mut slow).await;
    assert_eq!(
        server.handle.stats().channel("news").unwrap().connections,
        100,
        "only the slow one left"
    );
    server
        .handle
        .publish("news", None, wsedge::Message::text("end 0"))
        .unwrap();
    let mut worst = Duration::ZERO;
    for reader in readers {
        let (received, reader_worst) = reader.await.unwrap();
        assert_eq!(received, published);
        worst = worst.max(reader_worst);
    }
    println!(
        "slow consumer closed after {published} messages; worst delivery latency to the others {worst:?}"
    );
}

#[tokio::test]
async fn the_drop_policy_keeps_a_slow_consumer_and_counts_what_it_missed() {
    let server = start(&CHANNELS.replace(
        "close_timeout",
        "on_slow_consumer = \"drop\"\nclose_timeout",
    ))
    .await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(server.ws).await.unwrap();
    upgrade(&mut slow, "/news").await;
    let mut healthy = server.ws("/news").await;
    let payload = "y".repeat(8 * 1024);
    let mut published = 0u64;
    while server.handle.stats().messages_dropped == 0 {
        assert!(published < 4000, "nothing was ever dropped");
        server
            .handle
            .publish(
                "news",
                None,
                wsedge::Message::text(format!("{published} {payload}")),
            )
            .unwrap();
        published += 1;
        let Message::Text(text) = next_data(&mut healthy).await else {
            panic!("text expected")
        };
        assert!(
            text.starts_with(&format!("{} ", published - 1)),
            "the healthy reader misses nothing"
        );
    }
    let stats = server.handle.stats();
    assert_eq!(stats.enforced["slow_consumer"], 0, "nobody was closed");
    assert_eq!(stats.channel("news").unwrap().connections, 2);
}
