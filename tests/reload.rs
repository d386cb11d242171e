//! Hot reload and graceful drain over real sockets: connections and messages
//! survive reloads, invalid configurations change nothing, certificates
//! rotate for new handshakes only, removed channels close with 1001, and the
//! drain spreads its closes over the window.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::SinkExt;
use tokio::{io::AsyncWriteExt, net::TcpListener};
use tokio_tungstenite::tungstenite::{Message, protocol::frame::coding::CloseCode};
use wsedge::{Config, Listener, Server};

const CHANNELS: &str = r#"
[limits]
max_connections_per_ip = 1000
handshake_rate = { per_second = 10000, burst = 10000 }
message_rate = { per_second = 10000, burst = 10000 }

[[channel]]
name = "echo"
path = "/echo"
kind = "echo"

[[channel]]
name = "news"
path = "/news"
kind = "broadcast"
publish = "clients"
"#;

fn variant(server: &TestServer, from: &str, to: &str) -> Config {
    assert!(
        server.config_text.contains(from),
        "{from:?} not in the configuration"
    );
    Config::from_toml_str(&server.config_text.replace(from, to)).unwrap()
}

#[tokio::test]
async fn connections_and_messages_survive_twenty_reloads() {
    let server = start(CHANNELS).await;
    let (a, b) = (
        Config::from_toml_str(&server.config_text).unwrap(),
        variant(
            &server,
            "publish = \"clients\"",
            "publish = \"clients\"\necho_to_sender = true\n[channel.limits]\nmax_payload = \"32KiB\"",
        ),
    );
    let mut clients = Vec::new();
    for _ in 0..200 {
        clients.push(server.ws("/echo").await);
    }
    for round in 0..20u32 {
        let config = if round % 2 == 0 { b.clone() } else { a.clone() };
        let report = server
            .handle
            .reload(config)
            .await
            .expect("a valid reload applies");
        assert_eq!(report.generation, u64::from(round) + 2);
        assert_eq!(report.changed, ["news"]);
        assert!(report.removed.is_empty());
        // Every client sends during the reload window and gets every echo.
        for (i, ws) in clients.iter_mut().enumerate() {
            ws.feed(Message::text(format!("{round}:{i}")))
                .await
                .unwrap();
        }
        for ws in &mut clients {
            ws.flush().await.unwrap();
        }
        for (i, ws) in clients.iter_mut().enumerate() {
            assert_eq!(next_data(ws).await, Message::text(format!("{round}:{i}")));
        }
    }
    let stats = server.handle.stats();
    assert_eq!(
        (stats.generation, stats.channel("echo").unwrap().connections),
        (21, 200)
    );
}

#[tokio::test]
async fn a_changed_channel_applies_its_new_policy_to_new_messages() {
    let server = start(CHANNELS).await;
    let mut sender = server.ws("/news").await;
    let mut other = server.ws("/news").await;
    send_text(&mut sender, "before").await;
    assert_eq!(next_data(&mut other).await, Message::text("before"));
    server
        .handle
        .reload(variant(
            &server,
            "publish = \"clients\"",
            "publish = \"clients\"\necho_to_sender = true",
        ))
        .await
        .unwrap();
    send_text(&mut sender, "after").await;
    assert_eq!(
        next_data(&mut sender).await,
        Message::text("after"),
        "the same connection now gets its own message"
    );
    assert_eq!(next_data(&mut other).await, Message::text("after"));
}

#[tokio::test]
async fn an_invalid_reload_changes_nothing() {
    let server = start(CHANNELS).await;
    let mut ws = server.ws("/echo").await;
    let broken = server.dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        server
            .config_text
            .replace("kind = \"echo\"", "kind = \"mirror\""),
    )
    .unwrap();
    let error = server
        .handle
        .reload_from_file(&broken)
        .await
        .expect_err("an invalid file is refused");
    assert!(
        error
            .to_string()
            .contains("\"mirror\" is not a channel kind"),
        "{error}"
    );
    let stats = server.handle.stats();
    assert_eq!(
        (
            stats.generation,
            stats.last_reload_successful,
            stats.reload_failures
        ),
        (1, false, 1)
    );
    send_text(&mut ws, "still echoing").await;
    assert_eq!(next_data(&mut ws).await, Message::text("still echoing"));
    let _fresh = server.ws("/echo").await;
}

#[tokio::test]
async fn a_removed_channel_closes_its_connections_with_1001() {
    let server = start(CHANNELS).await;
    let mut news = server.ws("/news").await;
    let mut echo = server.ws("/echo").await;
    let without_news = server.config_text.replace("[[channel]]\nname = \"news\"\npath = \"/news\"\nkind = \"broadcast\"\npublish = \"clients\"\n", "");
    let report = server
        .handle
        .reload(Config::from_toml_str(&without_news).unwrap())
        .await
        .unwrap();
    assert_eq!(report.removed, ["news"]);
    let close = next_close(&mut news).await.expect("a close code");
    assert_eq!(
        (close.code, close.reason.as_str()),
        (CloseCode::Away, "channel removed")
    );
    assert_eq!(
        server.raw_http(&upgrade_request("/news", "")).await.status,
        404
    );
    send_text(&mut echo, "unaffected").await;
    assert_eq!(next_data(&mut echo).await, Message::text("unaffected"));
}

#[tokio::test]
async fn an_added_channel_accepts_at_once() {
    let server = start(CHANNELS).await;
    let added = format!(
        "{}[[channel]]\nname = \"chat\"\npath = \"/chat/{{room}}\"\nkind = \"room\"\n",
        server.config_text
    );
    let report = server
        .handle
        .reload(Config::from_toml_str(&added).unwrap())
        .await
        .unwrap();
    assert_eq!(report.added, ["chat"]);
    let mut a = server.ws("/chat/lobby").await;
    let mut b = server.ws("/chat/lobby").await;
    send_text(&mut a, "hello room").await;
    assert_eq!(next_data(&mut b).await, Message::text("hello room"));
}

#[tokio::test]
async fn a_rotated_certificate_serves_new_handshakes_only() {
    let server = start(CHANNELS).await;
    let mut old_session = server.wss("/echo").await;
    let rotated = CertFiles::generate();
    let old_paths = (
        server.dir.path().join("cert.pem"),
        server.dir.path().join("key.pem"),
    );
    let text = server
        .config_text
        .replace(
            &format!("{:?}", old_paths.0.display().to_string()),
            &format!("{:?}", rotated.cert_path()),
        )
        .replace(
            &format!("{:?}", old_paths.1.display().to_string()),
            &format!("{:?}", rotated.key_path()),
        );
    let report = server
        .handle
        .reload(Config::from_toml_str(&text).unwrap())
        .await
        .unwrap();
    assert!(report.certificate_changed);
    assert_eq!(server.handle.tls_identity().unwrap().leaf(), &rotated.cert);
    // A new handshake presents the new certificate (and fails against the old one).
    let tls = tls_connect(server.wss, &rotated.cert).await;
    assert_eq!(
        tls.get_ref().1.peer_certificates().unwrap()[0],
        rotated.cert
    );
    // The established session is untouched.
    send_text(&mut old_session, "old certificate, same session").await;
    assert_eq!(
        next_data(&mut old_session).await,
        Message::text("old certificate, same session")
    );
}

#[tokio::test]
async fn listeners_open_and_close_with_the_configuration() {
    let free_port = || async {
        TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (first, second) = (free_port().await, free_port().await);
    let config = |ports: &[u16]| {
        let plain: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
        Config::from_toml_str(&format!(
            "[server]\nplain = [{}]\ndrain_window = \"100ms\"\n{CHANNELS}",
            plain.join(", ")
        ))
        .unwrap()
    };
    let server = Server::new(config(&[first])).unwrap();
    let handle = server.handle();
    let listeners = Listener::bind_all(&config(&[first])).await.unwrap();
    let task = tokio::spawn(server.serve(listeners, std::future::pending()));
    let url = |port: u16| format!("ws://127.0.0.1:{port}/echo");
    let (mut on_first, _) = tokio_tungstenite::connect_async(url(first)).await.unwrap();

    let report = handle.reload(config(&[second])).await.unwrap();
    assert_eq!((report.opened.len(), report.closed.len()), (1, 1));
    // The closed listener's socket is gone when the reload reports: the
    // address can be taken again at once, by a reload or anyone.
    drop(
        TcpListener::bind(("127.0.0.1", first))
            .await
            .expect("the closed address is free"),
    );
    let (mut on_second, _) = tokio_tungstenite::connect_async(url(second))
        .await
        .expect("the new listener accepts");
    assert!(
        tokio_tungstenite::connect_async(url(first)).await.is_err(),
        "the old listener is closed"
    );
    // The connection accepted by the closed listener stays.
    for ws in [&mut on_first, &mut on_second] {
        send_text(ws, "ping").await;
        assert_eq!(next_data(ws).await, Message::text("ping"));
    }
    handle.shutdown();
    drop((on_first, on_second));
    tokio::time::timeout(PATIENCE, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_listener_changes_role_on_the_same_socket() {
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = |extra: &str| {
        Config::from_toml_str(&format!(
            "[server]\nplain = [\"127.0.0.1:{port}\"]\ndrain_window = \"100ms\"\n{extra}\n{CHANNELS}"
        ))
        .unwrap()
    };
    let plain = config("");
    let server = Server::new(plain.clone()).unwrap();
    let handle = server.handle();
    let task = tokio::spawn(server.serve(
        Listener::bind_all(&plain).await.unwrap(),
        std::future::pending(),
    ));
    let connect = || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap()
    };
    let mut before = connect().await;
    assert_eq!(upgrade_status(&mut before, "/echo", "").await, 101);

    let proxied = config(&format!(
        "trusted_proxies = [\"127.0.0.1\"]\nproxy_protocol = [\"127.0.0.1:{port}\"]"
    ));
    let report = handle.reload(proxied).await.unwrap();
    assert_eq!((report.opened.len(), report.closed.len()), (1, 1));
    // The same port now wants a PROXY header first...
    let mut bare = connect().await;
    assert_eq!(
        upgrade_status(&mut bare, "/echo", "").await,
        0,
        "no PROXY header: refused"
    );
    let mut with_header = connect().await;
    with_header
        .write_all(format!("PROXY TCP4 203.0.113.9 127.0.0.1 40000 {port}\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(upgrade_status(&mut with_header, "/echo", "").await, 101);
    // ...and the connection accepted before the change is still open: the
    // drain reaches it with 1001.
    handle.shutdown();
    assert_eq!(read_close_code(&mut before).await, Some(1001));
    drop((before, bare, with_header));
    tokio::time::timeout(PATIENCE, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_drain_spreads_closes_over_the_window() {
    let server = start_with_server_keys("drain_window = \"1s\"", CHANNELS).await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(server.ws("/echo").await);
    }
    let started = Instant::now();
    server.handle.shutdown();
    let arrivals = futures_util::future::join_all(clients.into_iter().map(|mut ws| async move {
        let close = next_close(&mut ws).await.expect("a close code");
        assert_eq!(close.code, CloseCode::Away);
        let at = started.elapsed();
        drop(ws);
        at
    }))
    .await;
    let (first, last) = (
        arrivals.iter().min().unwrap(),
        arrivals.iter().max().unwrap(),
    );
    println!("closes arrived from {first:?} to {last:?}");
    assert!(
        *last - *first >= Duration::from_millis(500),
        "closes were not paced: {first:?}..{last:?}"
    );
    assert!(
        *last < Duration::from_secs(3),
        "the drain overran its window: {last:?}"
    );
    tokio::time::timeout(PATIENCE, server.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn shutdown_timeout_drops_clients_that_never_answer() {
    let server = start_with_server_keys(
        "drain_window = \"100ms\"\nshutdown_timeout = \"500ms\"",
        &CHANNELS.replace("[limits]", "[limits]\nclose_timeout = \"30s\""),
    )
    .await;
    // A raw client that reads nothing and never answers the close.
    let mut mute = server.raw_ws("/echo").await;
    let started = Instant::now();
    server.handle.shutdown();
    tokio::time::timeout(PATIENCE, server.task)
        .await
        .expect("serve returns at shutdown_timeout")
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "close_timeout (30s) did not hold shutdown up"
    );
    wait_eof(&mut mute).await;
}

/// Admissions racing reloads that flip a channel's route, subprotocol and
/// compression window at once: every admitted connection was answered from
/// one configuration, never a mix of the old and the new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admissions_racing_reloads_each_see_one_configuration() {
    let policy = |path: &str, protocol: &str, window: u8| {
        format!(
            "[[channel]]\nname = \"flip\"\npath = \"{path}\"\nkind = \"broadcast\"\nsubprotocols = [\"{protocol}\"]\n[channel.compression]\nenabled = true\nserver_max_window_bits = {window}\n"
        )
    };
    let a = policy("/a", "proto-a", 10);
    let b = policy("/b", "proto-b", 12);
    let server = start(&format!("{CHANNELS}\n{a}")).await;
    let configs = [
        variant(&server, &a, &b),
        Config::from_toml_str(&server.config_text).unwrap(),
    ];
    let done = std::sync::atomic::AtomicBool::new(false);
    let reloads = std::sync::atomic::AtomicUsize::new(0);
    let reloading = async {
        let mut round = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            server
                .handle
                .reload(configs[round % 2].clone())
                .await
                .unwrap();
            round += 1;
            reloads.store(round, std::sync::atomic::Ordering::Relaxed);
            tokio::task::yield_now().await;
        }
        round
    };
    // At least this many admissions, and on until both configurations have
    // admitted some and the reloads have run a while (bounded: a loaded
    // machine may starve either side for a moment).
    const ATTEMPTS: usize = 400;
    let admitting = async {
        let mut seen = [0usize; 2];
        for attempt in 0..ATTEMPTS * 25 {
            let raced = seen.iter().all(|&n| n > 0)
                && reloads.load(std::sync::atomic::Ordering::Relaxed) > 10;
            if attempt >= ATTEMPTS && raced {
                break;
            }
            // Not in step with the reloads' alternation.
            let which = (attempt.wrapping_mul(2_654_435_761) >> 7) % 2;
            let path = ["/a", "/b"][which];
            let request = upgrade_request(
                path,
                "Sec-WebSocket-Protocol: proto-a, proto-b\r\nSec-WebSocket-Extensions: permessage-deflate\r\n",
            );
            let answer = server.raw_http(&request).await;
            if answer.status == 404 {
                continue;
            }
            assert_eq!(answer.status, 101, "{answer:?}");
            let (protocol, window) = if path == "/a" {
                ("proto-a", "server_max_window_bits=10")
            } else {
                ("proto-b", "server_max_window_bits=12")
            };
            assert_eq!(
                answer.header("sec-websocket-protocol"),
                Some(protocol),
                "{path}: {answer:?}"
            );
            let extensions = answer
                .header("sec-websocket-extensions")
                .unwrap_or_default();
            assert!(extensions.contains(window), "{path}: {answer:?}");
            seen[which] += 1;
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        seen
    };
    let (reloads, seen) = tokio::join!(reloading, admitting);
    assert!(reloads > 10, "the reloads raced the admissions: {reloads}");
    assert!(
        seen.iter().all(|&n| n > 0),
        "both configurations admitted: {seen:?}"
    );
}
