//! What a connection can make the server hold in memory, measured as the
//! resident set of this process (the servers under test run in it):
//! `send_buffer` bounds a client that floods tiny messages and never reads,
//! whatever the message size.
//!
//! RSS is one number per process and the tests of one binary run in
//! parallel threads, so this binary has a single test whose scenarios run
//! one after another. Memory a scenario frees is reused by the next one, so
//! each measures growth from where the previous one left off, and the idle
//! connections, whose cost is smallest, come last.

mod common;

use common::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

/// The default `send_buffer`: what one connection may hold queued.
const SEND_BUFFER: &str = "1MiB";
/// "A few times `send_buffer`": room for the queue itself, allocator slack
/// and the read buffers of the flood, far below what an unbounded queue
/// reaches (tens of megabytes at ~50 bytes per queued item).
const MAX_GROWTH: u64 = 8 << 20;
/// Frames a flood may send before the test gives up on a 1013.
const MAX_FLOOD_FRAMES: usize = 10_000_000;
/// Frames written per `write_all`: the flood's own buffer, built once.
const FRAMES_PER_WRITE: usize = 4096;

fn channels() -> String {
    format!(
        r#"
[limits]
send_buffer = "{SEND_BUFFER}"
close_timeout = "2s"
handshake_rate = {{ per_second = 1000, burst = 1000 }}
# The flood is the point: no rate stands in its way.
message_rate = {{ per_second = 100000000, burst = 100000000 }}

[[channel]]
name = "echo"
path = "/echo"
kind = "echo"

[[channel]]
name = "chat"
path = "/chat/{{room}}"
kind = "room"
"#
    )
}

/// Dedicated compression on echo (as configured by default), shared on
/// broadcast; a quick heartbeat, and room for many connections from one
/// address.
fn idle_channels() -> String {
    r#"
[limits]
ping_interval = "100ms"
max_connections_per_ip = 10000
handshake_rate = { per_second = 100000, burst = 100000 }

[[channel]]
name = "echo"
path = "/echo"
kind = "echo"

[[channel]]
name = "news"
path = "/news"
kind = "broadcast"
"#
    .to_owned()
}

/// This process's resident set, from `/proc/self/status`.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .expect("a VmRSS line in kB");
    kib * 1024
}

/// A raw connection upgraded on `path` whose tiny receive window fills at
/// once: a client that stopped reading.
async fn non_reader(server: &TestServer, path: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(server.ws).await.unwrap();
    upgrade(&mut stream, path).await;
    stream
}

/// Writes `frame` over and over on `flooder` until the server has closed a
/// slow consumer, sampling RSS as it goes. Returns the frames sent and the
/// largest RSS growth seen; fails once the growth passes [`MAX_GROWTH`].
async fn flood_until_slow_consumer(
    server: &TestServer,
    flooder: &mut TcpStream,
    frame: &[u8],
    scenario: &str,
) -> (usize, u64) {
    let chunk = frame.repeat(FRAMES_PER_WRITE);
    let closed = || server.handle.stats().enforced["slow_consumer"];
    let closed_before = closed();
    let baseline = rss();
    let mut growth = 0;
    let mut sent = 0;
    while closed() == closed_before {
        assert!(
            sent < MAX_FLOOD_FRAMES,
            "{scenario}: {sent} frames and no 1013"
        );
        tokio::time::timeout(PATIENCE, flooder.write_all(&chunk))
            .await
            .unwrap_or_else(|_| panic!("{scenario}: the server stopped reading"))
            .unwrap_or_else(|e| panic!("{scenario}: the flood failed after {sent} frames: {e}"));
        sent += FRAMES_PER_WRITE;
        growth = growth.max(rss().saturating_sub(baseline));
        assert!(
            growth < MAX_GROWTH,
            "{scenario}: RSS grew by {} KiB after {sent} frames and the connection is still open",
            growth >> 10
        );
    }
    (sent, growth)
}

/// An echo client that never reads floods empty frames: each echo is a
/// 2-byte frame, and the queue must still stop at `send_buffer`.
async fn empty_frames_on_an_echo_channel(server: &TestServer) {
    let mut stream = non_reader(server, "/echo").await;
    let (sent, growth) = flood_until_slow_consumer(
        server,
        &mut stream,
        &client_frame(0x82, 0, &[]),
        "echo, empty frames",
    )
    .await;
    println!(
        "echo, empty frames: closed after {sent} frames, RSS growth {} KiB",
        growth >> 10
    );
    assert_eq!(read_close_code(&mut stream).await, Some(1013));
}

/// A room member that stopped reading while another member floods 1-byte
/// messages: each reaches it as a 3-byte frame.
async fn tiny_messages_to_a_stalled_room_member(server: &TestServer) {
    let mut stalled = non_reader(server, "/chat/flood").await;
    let mut flooder = server.raw_ws("/chat/flood").await;
    let (sent, growth) = flood_until_slow_consumer(
        server,
        &mut flooder,
        &client_frame(0x81, 1, b"x"),
        "room, 1-byte messages",
    )
    .await;
    println!(
        "room, 1-byte messages: closed after {sent} frames, RSS growth {} KiB",
        growth >> 10
    );
    assert_eq!(read_close_code(&mut stalled).await, Some(1013));
}

/// Idle connections held per scenario: enough that a few KiB each stand out
/// of the allocator's noise.
const IDLE_CONNECTIONS: usize = 1000;

/// What an idle connection may cost, whatever it negotiated: the session
/// task, its queue and socket buffers, not a compressor (~300 KiB each) or an
/// inflater it has not used.
const MAX_IDLE_COST: u64 = 32 << 10;

/// Opens [`IDLE_CONNECTIONS`] connections on `path` that offer
/// permessage-deflate as browsers do and then send nothing; returns them
/// (still open) and the RSS growth per connection.
async fn idle_cost(server: &TestServer, path: &str, agreed: &str) -> (Vec<TcpStream>, u64) {
    let baseline = rss();
    let mut held = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        let mut stream = TcpStream::connect(server.ws).await.unwrap();
        stream
            .write_all(
                upgrade_request(
                    path,
                    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let head = read_head(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{path}: {head}");
        assert!(head.contains(agreed), "{path}: {head}");
        held.push(stream);
    }
    // The first heartbeat ping shows each session running and settled.
    for stream in &mut held {
        let (first, _) = read_server_frame(stream).await.expect("a ping");
        assert_eq!(first & 0x0F, 0x9, "{path}: a ping");
    }
    let cost = rss().saturating_sub(baseline) / IDLE_CONNECTIONS as u64;
    println!("{path}: an idle connection with permessage-deflate costs {cost} bytes");
    (held, cost)
}

/// The response head, read byte by byte so that no frame is read with it.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.expect("a response head"));
    }
    String::from_utf8(head).unwrap()
}

/// What an idle connection whose client answers the heartbeat may cost: a
/// silent one's share and no more than allocator slack. A session that kept
/// its reader (an 8 KiB read buffer, the reading loop's state) after
/// the pong would cost about 5 KiB more.
const MAX_ANSWERING_COST: u64 = 5 << 10;

/// Connections on a broadcast channel whose client answers the first ping
/// with a pong and then sends nothing: once the pong is read, the session
/// gives its reader back. Returns the RSS growth per connection.
async fn idle_after_a_pong() -> u64 {
    let server = start(&idle_channels()).await;
    let received = |server: &TestServer| server.handle.stats().traffic.wire_bytes_received;
    let before = received(&server);
    let baseline = rss();
    let mut held = Vec::with_capacity(IDLE_CONNECTIONS);
    let mut upgrades = 0;
    for _ in 0..IDLE_CONNECTIONS {
        let mut stream = TcpStream::connect(server.ws).await.unwrap();
        let request = upgrade_request("/news", "");
        upgrades += request.len() as u64;
        stream.write_all(request.as_bytes()).await.unwrap();
        let head = read_head(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        held.push(stream);
    }
    let mut pongs = 0;
    for stream in &mut held {
        let (first, payload) = read_server_frame(stream).await.expect("a ping");
        assert_eq!(first & 0x0F, 0x9, "a ping");
        let pong = client_frame(0x8A, payload.len() as u64, &payload);
        pongs += pong.len() as u64;
        stream.write_all(&pong).await.unwrap();
    }
    // Every pong read by the server.
    eventually(&server.handle, |_| {
        received(&server) >= before + upgrades + pongs
    })
    .await;
    let cost = rss().saturating_sub(baseline) / IDLE_CONNECTIONS as u64;
    println!("/news: an idle connection that answered a ping costs {cost} bytes");
    drop(held);
    cost
}

/// Idle deflate connections on echo and broadcast channels, held until both
/// are measured: memory freed meanwhile would be reused and hide what a
/// connection costs. (What the floods before freed, about 1 MiB, hides at
/// most a KiB per connection.)
async fn idle_deflate_connections() {
    let server = start(&idle_channels()).await;
    let mut held = Vec::new();
    for (path, agreed) in [
        ("/echo", "permessage-deflate"),
        ("/news", "server_no_context_takeover"),
    ] {
        let (streams, cost) = idle_cost(&server, path, agreed).await;
        held.push(streams);
        assert!(
            cost < MAX_IDLE_COST,
            "{path}: an idle deflate connection costs {} KiB",
            cost >> 10
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_per_connection_is_bounded() {
    let server = start(&channels()).await;
    empty_frames_on_an_echo_channel(&server).await;
    eventually(&server.handle, |stats| stats.connections == 0).await;
    tiny_messages_to_a_stalled_room_member(&server).await;
    let answering = idle_after_a_pong().await;
    assert!(
        answering < MAX_ANSWERING_COST,
        "an idle connection that answered a ping costs {answering} bytes"
    );
    idle_deflate_connections().await;
}
