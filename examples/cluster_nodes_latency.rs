//! Measures cross-node delivery through real servers: two wsedge nodes in
//! this process on one redis-server, `SUBSCRIBERS` WebSocket clients on
//! each node's broadcast channel, and one client on node A publishing at a
//! fixed rate. Every message carries its send time; every subscriber
//! records its latency, so node A's subscribers give the single-node
//! latency and node B's the cross-node one, measured in the same run under
//! the same load. Reports p50 / p99 / max for each, and what was lost.
//! The clients run in the same process as the servers: on a small machine
//! they dominate the latency of both paths alike; the difference between
//! the two is what Redis adds.
//!
//! ```sh
//! cargo run --release --example cluster_nodes_latency
//! ```
//!
//! Loopback only; every phase is bounded in count and time.

#[path = "support/mod.rs"]
mod support;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use support::{percentile, start_redis};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use wsedge::{Config, Listener, Server, cluster::LinkState};

/// Subscribers per node.
const SUBSCRIBERS: usize = 200;
/// Messages per second from the publisher.
const RATE: u64 = 500;
/// How long the publisher sends.
const SEND_PHASE: Duration = Duration::from_secs(5);
/// How long anything may take before the run gives up.
const PATIENCE: Duration = Duration::from_secs(60);

/// Starts a node on `redis` and returns its WebSocket address.
async fn node(redis: &str, name: &str) -> (wsedge::Handle, SocketAddr) {
    let config = format!(
        r#"
[server]
plain = ["127.0.0.1:0"]
[limits]
max_connections_per_ip = 100000
handshake_rate = {{ per_second = 100000, burst = 100000 }}
message_rate = {{ per_second = 100000, burst = 100000 }}
[[channel]]
name = "news"
path = "/news"
kind = "broadcast"
publish = "clients"
[cluster]
url = "{redis}"
node_name = "{name}"
"#
    );
    let server = Server::new(Config::from_toml_str(&config).unwrap()).unwrap();
    let handle = server.handle();
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(server.serve(vec![Listener::plain(socket)], std::future::pending()));
    (handle, addr)
}

async fn client(addr: SocketAddr) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_tungstenite::client_async(format!("ws://{addr}/news"), stream)
        .await
        .unwrap()
        .0
}

async fn wait(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Latencies in nanoseconds, and messages received, per node.
#[derive(Default)]
struct Received {
    latencies: Vec<u64>,
    messages: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (_redis, url) = start_redis();
    let (a, a_addr) = node(&url, "node-a").await;
    let (b, b_addr) = node(&url, "node-b").await;
    wait("both links up", || {
        a.cluster_state() == Some(LinkState::Up) && b.cluster_state() == Some(LinkState::Up)
    })
    .await;
    let epoch = Instant::now();
    let expected = RATE * SEND_PHASE.as_secs();
    let results: Vec<Arc<Mutex<Received>>> = (0..2).map(|_| Arc::default()).collect();
    let mut readers = Vec::new();
    for (addr, received) in [(a_addr, &results[0]), (b_addr, &results[1])] {
        for _ in 0..SUBSCRIBERS {
            let mut ws = client(addr).await;
            let received = received.clone();
            readers.push(tokio::spawn(async move {
                let mut mine = Vec::with_capacity(expected as usize);
                while mine.len() < expected as usize {
                    let Ok(Some(Ok(Message::Binary(payload)))) =
                        tokio::time::timeout(Duration::from_secs(2), ws.next()).await
                    else {
                        break;
                    };
                    let sent = u64::from_be_bytes(payload[..8].try_into().unwrap());
                    mine.push(epoch.elapsed().as_nanos() as u64 - sent);
                }
                let mut received = received.lock().unwrap();
                received.messages += mine.len() as u64;
                received.latencies.extend(mine);
            }));
        }
    }
    wait("every subscriber joined", || {
        let joined = |handle: &wsedge::Handle| {
            handle
                .stats()
                .channel("news")
                .is_some_and(|c| c.connections == SUBSCRIBERS)
        };
        joined(&a) && joined(&b) && b.stats().cluster.is_some_and(|c| c.subscriptions == 1)
    })
    .await;

    let mut publisher = client(a_addr).await;
    let interval = Duration::from_nanos(1_000_000_000 / RATE);
    let start = tokio::time::Instant::now();
    for i in 0..expected {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let mut payload = vec![b'x'; 64];
        payload[..8].copy_from_slice(&(epoch.elapsed().as_nanos() as u64).to_be_bytes());
        publisher.send(Message::binary(payload)).await.unwrap();
    }
    for reader in readers {
        reader.await.unwrap();
    }
    println!(
        "{SUBSCRIBERS} subscribers on each of two nodes, {RATE} messages/s from a client on node A for {SEND_PHASE:?}"
    );
    for (name, received) in ["node A (single-node path)", "node B (across Redis)"]
        .iter()
        .zip(&results)
    {
        let mut received = received.lock().unwrap();
        received.latencies.sort_unstable();
        let all = &received.latencies;
        println!(
            "  {name}: p50 {:.2?}, p99 {:.2?}, max {:.2?}; received {} of {}",
            percentile(all, 0.50),
            percentile(all, 0.99),
            percentile(all, 1.0),
            received.messages,
            expected * SUBSCRIBERS as u64,
        );
    }
    let link = a.stats().cluster.unwrap();
    println!(
        "  link of node A: published {}, lost {}, probe round trip {:.2?}",
        link.published, link.publish_lost, link.probe_rtt_last
    );
}
