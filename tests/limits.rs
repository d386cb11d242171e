//! Admission limits over real sockets: connection caps, client identity
//! (PROXY protocol, X-Forwarded-For), handshake and message rates, sizes,
//! heartbeats and idle timeouts, slow consumers.

mod common;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpSocket, TcpStream},
};
use tokio_tungstenite::tungstenite::{Message, protocol::frame::coding::CloseCode};

/// An echo channel and a clients-publish broadcast channel under `limits`.
fn channels(limits: &str) -> String {
    format!(
        r#"
[limits]
{limits}

[[channel]]
name = "echo"
path = "/echo"
kind = "echo"

[[channel]]
name = "news"
path = "/news"
kind = "broadcast"
publish = "clients"
"#
    )
}

/// Connects from a chosen loopback source address.
async fn connect_from(source: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).unwrap();
    socket.connect(to).await.unwrap()
}

#[tokio::test]
async fn one_ip_gets_exactly_its_cap_and_the_established_keep_echoing() {
    let server = start(&channels(
        "max_connections_per_ip = 50\nhandshake_rate = { per_second = 10000, burst = 10000 }",
    ))
    .await;
    let mut established = Vec::new();
    let mut refused = 0;
    for round in 0..10 {
        let attempts = (0..50).map(|_| server.ws_request_raw("/echo"));
        for result in futures_util::future::join_all(attempts).await {
            match result {
                Ok(ws) => established.push(ws),
                Err(_) => refused += 1,
            }
        }
        // The established ones keep working while the others are refused.
        for (i, ws) in established.iter_mut().enumerate() {
            let text = format!("round {round} client {i}");
            send_text(ws, &text).await;
            assert_eq!(next_data(ws).await, Message::text(text));
        }
    }
    assert_eq!((established.len(), refused), (50, 450));
    let stats = server.handle.stats();
    assert_eq!(stats.enforced["ip_cap"], 450);
    assert_eq!((stats.connections, stats.clients), (50, 1));
}

/// Users behind a carrier-grade NAT or a corporate proxy share one address:
/// the default limits admit a crowd of them at once, from a standing start.
#[tokio::test]
async fn the_defaults_admit_a_crowd_behind_one_address() {
    // Well over the former defaults (64 connections and a burst of 40
    // handshakes per address), and a small crowd for one CGNAT address.
    const CROWD: usize = 500;
    let server = start(&channels("")).await;
    let attempts = (0..CROWD).map(|_| server.ws_request_raw("/echo"));
    let mut established: Vec<Ws> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .enumerate()
        .map(|(i, result)| result.unwrap_or_else(|e| panic!("client {i} was refused: {e}")))
        .collect();
    for (i, ws) in established.iter_mut().enumerate() {
        let text = format!("client {i}");
        send_text(ws, &text).await;
        assert_eq!(next_data(ws).await, Message::text(text));
    }
    let stats = server.handle.stats();
    assert_eq!((stats.connections, stats.clients), (CROWD, 1));
    assert_eq!(
        (stats.enforced["ip_cap"], stats.enforced["rate_limit"]),
        (0, 0)
    );
}

#[tokio::test]
async fn the_global_cap_counts_every_client() {
    let server = start(&channels("max_connections = 3")).await;
    let mut held = Vec::new();
    for source in 1..=3 {
        let mut stream = connect_from(Ipv4Addr::new(127, 0, 0, source), server.ws).await;
        assert_eq!(upgrade_status(&mut stream, "/echo", "").await, 101);
        held.push(stream);
    }
    let mut fourth = connect_from(Ipv4Addr::new(127, 0, 0, 4), server.ws).await;
    assert_eq!(
        upgrade_status(&mut fourth, "/echo", "").await,
        0,
        "closed without an answer"
    );
    let stats = server.handle.stats();
    assert_eq!(
        (
            stats.enforced["global_cap"],
            stats.connections,
            stats.clients
        ),
        (1, 3, 3)
    );
}

#[tokio::test]
async fn slots_return_to_zero_after_ten_thousand_aborted_connections() {
    let server = start(&channels("max_connections_per_ip = 1000")).await;
    let attempts = futures_util::stream::iter(0..10_000u32).map(|i| {
        let (ws, wss) = (server.ws, server.wss);
        async move {
            // Spread over 40 source addresses to stay clear of port exhaustion.
            let source = Ipv4Addr::new(127, 0, 1, (i % 40) as u8 + 1);
            let target = if i % 2 == 0 { ws } else { wss };
            let mut stream = connect_from(source, target).await;
            match i % 4 {
                0 => {}
                1 => stream
                    .write_all(b"\x16\x03\x01\x02\x00\x01")
                    .await
                    .unwrap_or(()),
                2 => stream
                    .write_all(b"GET /echo HTTP/1.1\r\nHost:")
                    .await
                    .unwrap_or(()),
                _ => stream.write_all(b"\x16").await.unwrap_or(()),
            }
            // RST instead of FIN: the harshest way to vanish. (SO_LINGER 0
            // never blocks, which is what the deprecation warns about.)
            #[allow(deprecated)]
            let _ = stream.set_linger(Some(Duration::ZERO));
        }
    });
    attempts.buffer_unordered(64).collect::<Vec<()>>().await;
    let stats = eventually(&server.handle, |s| s.connections == 0 && s.clients == 0).await;
    assert_eq!(
        stats.channels.iter().map(|c| c.connections).sum::<usize>(),
        0
    );
    // The server still serves.
    let mut ws = server.ws("/echo").await;
    send_text(&mut ws, "still here").await;
    assert_eq!(next_data(&mut ws).await, Message::text("still here"));
}

/// A PROXY protocol v2 header for a TCP over IPv4 connection from `source`.
fn proxy_v2(source: [u8; 4]) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12]);
    header.extend_from_slice(&source);
    header.extend_from_slice(&[127, 0, 0, 1, 0xC3, 0x50, 0x1F, 0x90]);
    header
}

#[tokio::test]
async fn a_trusted_proxy_header_sets_the_client_the_caps_see() {
    let server = start_with_server_keys(
        "trusted_proxies = [\"127.0.0.1\"]\nproxy_protocol = [\"127.0.0.1:0\"]",
        &channels("max_connections_per_ip = 2"),
    )
    .await;
    let proxy = server.proxy.unwrap();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(proxy).await.unwrap();
        stream
            .write_all(&proxy_v2([198, 51, 100, 7]))
            .await
            .unwrap();
        assert_eq!(upgrade_status(&mut stream, "/echo", "").await, 101);
        held.push(stream);
    }
    let mut third = TcpStream::connect(proxy).await.unwrap();
    third.write_all(&proxy_v2([198, 51, 100, 7])).await.unwrap();
    assert_eq!(
        upgrade_status(&mut third, "/echo", "").await,
        0,
        "198.51.100.7 is at its cap"
    );
    // Another client behind the same proxy has its own budget, and so does
    // the proxy's own address on the direct listener.
    let mut other = TcpStream::connect(proxy).await.unwrap();
    other.write_all(&proxy_v2([198, 51, 100, 8])).await.unwrap();
    assert_eq!(upgrade_status(&mut other, "/echo", "").await, 101);
    let _direct = server.ws("/echo").await;
    let stats = server.handle.stats();
    assert_eq!((stats.clients, stats.enforced["ip_cap"]), (3, 1));
}

#[tokio::test]
async fn a_proxy_header_from_an_untrusted_peer_is_refused() {
    let server = start_with_server_keys(
        "trusted_proxies = [\"10.0.0.0/8\"]\nproxy_protocol = [\"127.0.0.1:0\"]",
        &channels(""),
    )
    .await;
    let mut stream = TcpStream::connect(server.proxy.unwrap()).await.unwrap();
    stream
        .write_all(&proxy_v2([198, 51, 100, 7]))
        .await
        .unwrap();
    assert_eq!(upgrade_status(&mut stream, "/echo", "").await, 0);
    // A trusted proxy's garbage header is refused too.
    assert_eq!(server.handle.stats().enforced["protocol"], 1);
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    // 127.0.0.1 is not trusted: X-Forwarded-For changes nothing.
    let untrusted = start_with_server_keys(
        "trusted_proxies = [\"10.0.0.0/8\"]",
        &channels("max_connections_per_ip = 1"),
    )
    .await;
    let mut first = TcpStream::connect(untrusted.ws).await.unwrap();
    assert_eq!(
        upgrade_status(&mut first, "/echo", "X-Forwarded-For: 1.2.3.4\r\n").await,
        101
    );
    let mut spoofed = TcpStream::connect(untrusted.ws).await.unwrap();
    assert_eq!(
        upgrade_status(&mut spoofed, "/echo", "X-Forwarded-For: 5.6.7.8\r\n").await,
        0,
        "capped as 127.0.0.1"
    );
    assert_eq!(untrusted.handle.stats().clients, 1);

    // 127.0.0.1 is trusted: each forwarded client has its own slot.
    let trusted = start_with_server_keys(
        "trusted_proxies = [\"127.0.0.0/8\"]",
        &channels("max_connections_per_ip = 1"),
    )
    .await;
    let mut held = Vec::new();
    for client in ["1.2.3.4", "5.6.7.8, 127.0.0.5"] {
        let mut stream = TcpStream::connect(trusted.ws).await.unwrap();
        assert_eq!(
            upgrade_status(
                &mut stream,
                "/echo",
                &format!("X-Forwarded-For: {client}\r\n")
            )
            .await,
            101,
            "{client}"
        );
        held.push(stream);
    }
    let mut again = TcpStream::connect(trusted.ws).await.unwrap();
    assert_eq!(
        upgrade_status(&mut again, "/echo", "X-Forwarded-For: 9.9.9.9, 1.2.3.4\r\n").await,
        503
    );
    let stats = trusted.handle.stats();
    assert_eq!((stats.clients, stats.enforced["ip_cap"]), (2, 1));
}

#[tokio::test]
async fn handshakes_over_the_rate_get_429_with_retry_after() {
    let server = start(&channels("handshake_rate = { per_second = 1, burst = 2 }")).await;
    for _ in 0..2 {
        assert_eq!(
            server.raw_http(&upgrade_request("/echo", "")).await.status,
            101
        );
    }
    let answer = server.raw_http(&upgrade_request("/echo", "")).await;
    assert_eq!(answer.status, 429);
    assert_eq!(answer.header("retry-after"), Some("1"));
    assert_eq!(server.handle.stats().enforced["rate_limit"], 1);
}

/// A client that completes TLS and hangs up, again and again, is counted
/// against `handshake_rate` too, and refused before the TLS handshake once
/// over it: the rate costs it TLS work, not us.
#[tokio::test]
async fn the_handshake_rate_is_paid_before_tls() {
    let server = start(&channels("handshake_rate = { per_second = 1, burst = 2 }")).await;
    for _ in 0..2 {
        let tls = try_tls_connect(server.wss, &server.cert).await;
        drop(tls.expect("within the burst"));
    }
    let refused = try_tls_connect(server.wss, &server.cert).await;
    assert!(refused.is_err(), "the third TLS handshake is refused");
    let stats = server.handle.stats();
    assert_eq!(stats.enforced["rate_limit"], 1);
    assert_eq!(stats.traffic.handshakes[&("rejected", "rate_limit")], 1);
    assert_eq!(stats.traffic.handshakes[&("rejected", "tls")], 0);
}

#[tokio::test]
async fn throttled_messages_all_arrive_in_order_only_later() {
    let server = start(&channels(
        "message_rate = { per_second = 100, burst = 10, on_exceed = \"throttle\" }",
    ))
    .await;
    let mut ws = server.ws("/echo").await;
    let started = Instant::now();
    // Five times the burst, sent at once.
    for i in 0..50 {
        ws.feed(Message::text(i.to_string())).await.unwrap();
    }
    ws.flush().await.unwrap();
    for i in 0..50 {
        assert_eq!(next_data(&mut ws).await, Message::text(i.to_string()));
    }
    // 40 messages beyond the burst at 100/s cannot arrive sooner than 0.4 s.
    assert!(
        started.elapsed() >= Duration::from_millis(380),
        "not throttled: {:?}",
        started.elapsed()
    );
    assert_eq!(
        server.handle.stats().enforced["rate_limit"],
        0,
        "throttling closes nothing"
    );
}

#[tokio::test]
async fn close_mode_closes_with_1008_past_the_burst() {
    let server = start(&channels(
        "message_rate = { per_second = 1, burst = 5, on_exceed = \"close\" }",
    ))
    .await;
    let mut ws = server.ws("/echo").await;
    for i in 0..6 {
        ws.feed(Message::text(i.to_string())).await.unwrap();
    }
    ws.flush().await.unwrap();
    for i in 0..5 {
        assert_eq!(next_data(&mut ws).await, Message::text(i.to_string()));
    }
    let close = next_close(&mut ws).await.expect("a close code");
    assert_eq!(
        (close.code, close.reason.as_str()),
        (CloseCode::Policy, "rate limit")
    );
    assert_eq!(server.handle.stats().enforced["rate_limit"], 1);
}

#[tokio::test]
async fn byte_rate_closes_a_client_that_sends_too_many_bytes() {
    let server = start(&channels("max_payload = \"1KiB\"\nbyte_rate = { per_second = \"1KiB\", burst = \"2KiB\", on_exceed = \"close\" }")).await;
    let mut ws = server.ws("/echo").await;
    for _ in 0..3 {
        ws.feed(Message::binary(vec![7u8; 1000])).await.unwrap();
    }
    ws.flush().await.unwrap();
    for _ in 0..2 {
        assert_eq!(next_data(&mut ws).await, Message::binary(vec![7u8; 1000]));
    }
    assert_eq!(
        next_close(&mut ws).await.expect("a close code").code,
        CloseCode::Policy
    );
}

#[tokio::test]
async fn messages_over_max_payload_close_with_1009() {
    let server = start(&channels("max_payload = \"1KiB\"")).await;
    let mut whole = server.ws("/echo").await;
    whole.send(Message::binary(vec![0u8; 1025])).await.unwrap();
    // A client that keeps sending after the fault still gets the close code.
    // (On loopback this also passes without the server's lingering close:
    // the reset it prevents hits clients whose close frame is still queued
    // on the server, which this test does not arrange.)
    let (mut sink, mut stream) = whole.split();
    let sending = tokio::spawn(async move {
        for _ in 0..2000 {
            if sink.send(Message::binary(vec![2u8; 1000])).await.is_err() {
                break;
            }
        }
    });
    let close = loop {
        match tokio::time::timeout(PATIENCE, stream.next())
            .await
            .expect("a close within PATIENCE")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected the 1009 close frame, got {other:?}"),
        }
    };
    assert_eq!(close.expect("a close code").code, CloseCode::Size);
    sending.abort();

    let mut exact = server.ws("/echo").await;
    exact.send(Message::binary(vec![1u8; 1024])).await.unwrap();
    assert_eq!(
        next_data(&mut exact).await,
        Message::binary(vec![1u8; 1024]),
        "exactly max_payload passes"
    );
    assert_eq!(server.handle.stats().enforced["too_big"], 1);
}

#[tokio::test]
async fn a_silent_connection_is_pinged_then_dropped_as_idle() {
    let server = start(&channels(
        "ping_interval = \"100ms\"\nidle_timeout = \"300ms\"",
    ))
    .await;
    // A client that reads answers every ping (tungstenite does) and outlives
    // several idle timeouts.
    let mut lively = server.ws("/echo").await;
    let mut pings = 0;
    while pings < 8 {
        match tokio::time::timeout(PATIENCE, lively.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Message::Ping(_) => pings += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    // A client that never reads nor writes after the upgrade is dropped,
    // while the lively one keeps reading (and so answering pings).
    let silent_check = async {
        let mut silent = server.raw_ws("/echo").await;
        assert_eq!(read_close_code(&mut silent).await, Some(1001));
        wait_eof(&mut silent).await;
    };
    let keep_reading = async {
        loop {
            match lively.next().await {
                Some(Ok(Message::Ping(_))) => {}
                other => panic!("the lively client was disturbed: {other:?}"),
            }
        }
    };
    tokio::select! {
        () = silent_check => {}
        () = keep_reading => {}
    }
    send_text(&mut lively, "alive").await;
    assert_eq!(next_data(&mut lively).await, Message::text("alive"));
    assert_eq!(server.handle.stats().enforced["idle"], 1);
}

#[tokio::test]
async fn an_unanswered_close_is_dropped_after_close_timeout() {
    let server = start(&channels("close_timeout = \"200ms\"")).await;
    let mut mute = server.raw_ws("/echo").await;
    server.handle.shutdown();
    assert_eq!(read_close_code(&mut mute).await, Some(1001));
    // The client never answers; the server hangs up on its own.
    wait_eof(&mut mute).await;
    tokio::time::timeout(PATIENCE, server.task)
        .await
        .expect("shutdown completes")
        .unwrap()
        .unwrap();
}

/// The listen backlog is the system's maximum, not std's 128: a burst of
/// simultaneous connects (a reconnect storm) finds room in the accept queue
/// instead of losing SYNs to a one-second retransmission. `ss` reports a
/// listening socket's backlog as its Send-Q.
#[tokio::test]
async fn listeners_ask_for_the_systems_largest_backlog() {
    let config = wsedge::Config::from_toml_str(
        "[server]\nplain = [\"127.0.0.1:0\"]\n\n[[channel]]\nname = \"echo\"\npath = \"/echo\"\nkind = \"echo\"\n",
    )
    .unwrap();
    let listeners = wsedge::Listener::bind_all(&config).await.unwrap();
    let port = listeners[0].local_addr().unwrap().port();
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let ss = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2) runs");
    let line = String::from_utf8(ss.stdout).unwrap();
    let backlog: u32 = line
        .split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("one listening socket in {line:?}"))
        .parse()
        .unwrap();
    assert_eq!(backlog, somaxconn.min(65_535), "{line}");
}
