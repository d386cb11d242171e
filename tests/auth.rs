//! Identity at the handshake and over a connection's life, through a real
//! server, with tokens signed by PyJWT (tests/peers/sign_jwt.py): every
//! token source, the answers to missing, bad and forbidden credentials,
//! per-user rooms, first-message authentication, expiry and refresh, and
//! the connect webhook served on loopback. (Every algorithm and hostile
//! token is in the auth module's own tests; here the server's behaviour.)

mod common;

use std::time::Duration;

use common::{jwt::*, *};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tokio_tungstenite::tungstenite::{Message, protocol::frame::coding::CloseCode};

const LIMITS: &str = r#"
[limits]
handshake_rate = { per_second = 1000, burst = 1000 }
message_rate = { per_second = 1000, burst = 1000 }
"#;

const CHANNELS: &str = r#"
[[channel]]
name = "echo"
path = "/echo"
kind = "echo"

[[channel]]
name = "open"
path = "/open"
kind = "echo"
auth = "none"

[[channel]]
name = "maybe"
path = "/maybe"
kind = "echo"
auth = "optional"

[[channel]]
name = "chat"
path = "/chat/{room}"
kind = "room"

[[channel]]
name = "inbox"
path = "/inbox/{room}"
kind = "room"
rooms = "per_user"
"#;

/// A server whose tokens are HS256 over the signer's secret, read from
/// `sources`.
async fn server(signer: &Signer, sources: &str, extra: &str) -> TestServer {
    let timeout = if sources.contains("first_message") {
        "first_message_timeout = \"1s\"\n"
    } else {
        ""
    };
    start(&format!(
        "{LIMITS}\n[auth]\nalgorithms = [\"HS256\"]\nsecret_file = {:?}\nsources = {sources}\nleeway = \"0s\"\n{timeout}{extra}\n{CHANNELS}",
        signer.path("hmac.secret")
    ))
    .await
}

fn claims(user: &str, expires_in: i64, join: &[&str]) -> Value {
    json!({"sub": user, "exp": unix_now(expires_in), "join": join, "publish": join})
}

/// An upgrade on the plain listener with extra header lines; the answer.
async fn handshake(server: &TestServer, path: &str, headers: &str) -> HttpAnswer {
    server.raw_http(&upgrade_request(path, headers)).await
}

fn count(server: &TestServer, result: &str, reason: &str) -> u64 {
    server
        .handle
        .stats()
        .auth
        .get(&(result, reason))
        .copied()
        .unwrap_or(0)
}

fn handshakes(server: &TestServer, reason: &str) -> u64 {
    server.handle.stats().traffic.handshakes[&("rejected", reason)]
}

#[tokio::test]
async fn a_token_is_read_from_the_bearer_header_a_cookie_or_a_subprotocol_entry() {
    let Some(signer) = signer() else { return };
    let server = server(signer, r#"["bearer", "cookie", "protocol"]"#, "").await;
    let token = signer.hs256(claims("alice", 300, &["echo"]));
    let bearer = handshake(
        &server,
        "/echo",
        &format!("Authorization: Bearer {token}\r\n"),
    )
    .await;
    assert_eq!(bearer.status, 101, "{bearer:?}");
    let cookie = handshake(
        &server,
        "/echo",
        &format!("Cookie: theme=dark; access_token={token}\r\n"),
    )
    .await;
    assert_eq!(cookie.status, 101, "{cookie:?}");
    // The token entry is never selected: the marker is answered.
    let protocol = handshake(
        &server,
        "/echo",
        &format!("Sec-WebSocket-Protocol: bearer, {token}\r\n"),
    )
    .await;
    assert_eq!(protocol.status, 101, "{protocol:?}");
    assert_eq!(protocol.header("sec-websocket-protocol"), Some("bearer"));
    // The query is off by default: it ends up in proxy logs.
    let query = handshake(&server, &format!("/echo?access_token={token}"), "").await;
    assert_eq!(query.status, 401);
    for source in ["bearer", "cookie", "protocol"] {
        assert_eq!(count(&server, "accepted", source), 1, "{source}");
    }
    assert_eq!(count(&server, "rejected", "missing"), 1);
}

#[tokio::test]
async fn missing_bad_and_forbidden_credentials_are_answered_and_counted() {
    let Some(signer) = signer() else { return };
    let server = server(signer, r#"["bearer"]"#, "").await;
    let good = signer.hs256(claims("alice", 300, &["echo", "chat:team-*"]));
    let expired = signer.hs256(claims("alice", -60, &["echo"]));
    let none = signer
        .sign(&[json!({"alg": "none", "key": "", "claims": claims("alice", 300, &["echo"])})])
        .remove(0);
    let mut tampered = good.clone();
    tampered.pop();
    tampered.push(if good.ends_with('A') { 'B' } else { 'A' });
    let bearer = |token: &str| format!("Authorization: Bearer {token}\r\n");
    let cases = [
        ("/echo", String::new(), 401),
        ("/echo", bearer("not.a.token"), 401),
        ("/echo", bearer(&expired), 401),
        ("/echo", bearer(&none), 401),
        ("/echo", bearer(&tampered), 401),
        ("/chat/team-a", bearer(&good), 101),
        ("/chat/lobby", bearer(&good), 403),
        ("/inbox/alice", bearer(&good), 101),
        ("/inbox/bob", bearer(&good), 403),
        ("/open", String::new(), 101),
        ("/maybe", String::new(), 101),
        ("/maybe", bearer(&expired), 401),
    ];
    for (path, headers, status) in &cases {
        let answer = handshake(&server, path, headers).await;
        assert_eq!(answer.status, *status, "{path} {headers:?}: {answer:?}");
        let expected_body = match status {
            401 => Some("a valid token is required\n"),
            403 => Some("not permitted on this channel\n"),
            _ => None,
        };
        if let Some(body) = expected_body {
            assert_eq!(answer.body, body);
        }
    }
    assert_eq!(handshakes(&server, "unauthorized"), 6);
    assert_eq!(handshakes(&server, "forbidden"), 2);
    assert_eq!(count(&server, "rejected", "forbidden"), 2);
    assert_eq!(count(&server, "anonymous", "none"), 1);
}

#[tokio::test]
async fn first_message_auth_joins_only_once_authenticated() {
    let Some(signer) = signer() else { return };
    let server = server(signer, r#"["bearer", "first_message"]"#, "").await;
    let token = signer.hs256(claims("carol", 300, &["echo"]));
    // Authenticated in band: answered, then an ordinary echo connection.
    let mut ws = server.ws("/echo").await;
    send_text(
        &mut ws,
        &json!({"type": "auth", "token": token}).to_string(),
    )
    .await;
    let Message::Text(answer) = next_data(&mut ws).await else {
        panic!("auth_ok")
    };
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        (answer["type"].as_str(), answer["user"].as_str()),
        (Some("auth_ok"), Some("carol"))
    );
    assert_eq!(
        server.handle.stats().channel("echo").unwrap().connections,
        1
    );
    send_text(&mut ws, "hello").await;
    assert_eq!(next_data(&mut ws).await, Message::text("hello"));
    // Anything else first is refused, and never relayed.
    let mut eager = server.ws("/echo").await;
    send_text(&mut eager, "hello").await;
    let close = next_close(&mut eager).await.expect("a close frame");
    assert_eq!(
        (close.code, close.reason.as_str()),
        (CloseCode::Policy, "expected an auth message")
    );
    // Silence past first_message_timeout is refused too.
    let mut silent = server.ws("/echo").await;
    let close = next_close(&mut silent).await.expect("a close frame");
    assert_eq!(
        (close.code, close.reason.as_str()),
        (CloseCode::Policy, "no auth message in time")
    );
    // A bad token in band.
    let mut bad = server.ws("/echo").await;
    send_text(&mut bad, r#"{"type":"auth","token":"x.y.z"}"#).await;
    assert_eq!(next_close(&mut bad).await.unwrap().code, CloseCode::Policy);
    assert_eq!(
        server.handle.stats().channel("echo").unwrap().connections,
        1,
        "only carol joined"
    );
}

#[tokio::test]
async fn an_expiring_token_closes_4401_unless_refreshed_by_the_same_user() {
    let Some(signer) = signer() else { return };
    let server = server(signer, r#"["bearer"]"#, "").await;
    let tokens = signer.sign(&[
        json!({"alg": "HS256", "key": signer.path("hmac.secret"), "claims": claims("dave", 2, &["echo"])}),
        json!({"alg": "HS256", "key": signer.path("hmac.secret"), "claims": claims("dave", 2, &["echo"])}),
        json!({"alg": "HS256", "key": signer.path("hmac.secret"), "claims": claims("dave", 300, &["echo"])}),
        json!({"alg": "HS256", "key": signer.path("hmac.secret"), "claims": claims("mallory", 300, &["echo"])}),
    ]);
    let addr = server.ws;
    let connect = |token: &str| {
        let request = format!("Bearer {token}");
        async move {
            let mut req =
                tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                    format!("ws://{addr}/echo"),
                )
                .unwrap();
            req.headers_mut()
                .insert("authorization", request.parse().unwrap());
            tokio_tungstenite::connect_async(req).await.unwrap().0
        }
    };
    // Both connect while their 2-second tokens are good; one refreshes.
    let mut lapsing = connect(&tokens[0]).await;
    let mut renewed = connect(&tokens[1]).await;
    send_text(
        &mut renewed,
        &json!({"type": "refresh", "token": tokens[2]}).to_string(),
    )
    .await;
    let Message::Text(answer) = next_data(&mut renewed).await else {
        panic!("refreshed")
    };
    assert!(answer.contains(r#""type":"refreshed""#), "{answer}");
    // Not refreshed: closed at exp with 4401.
    let close = next_close(&mut lapsing).await.expect("a close frame");
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (4401, "token expired")
    );
    assert_eq!(count(&server, "expired", "token"), 1);
    // Refreshed: still open after the first exp.
    send_text(&mut renewed, "still here").await;
    assert_eq!(next_data(&mut renewed).await, Message::text("still here"));
    // Another user's token closes 1008.
    send_text(
        &mut renewed,
        &json!({"type": "refresh", "token": tokens[3]}).to_string(),
    )
    .await;
    let close = next_close(&mut renewed).await.expect("a close frame");
    assert_eq!(close.code, CloseCode::Policy);
    assert_eq!(count(&server, "rejected", "other_user"), 1);
}

/// A connect webhook served on loopback: one canned answer (after a
/// delay) for every call; counts the calls.
async fn webhook(answer: &'static str, delay: Duration) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/check", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut chunk = [0u8; 4096];
                // The head, then the JSON body announced by Content-Length.
                while let Ok(n) = stream.read(&mut chunk).await {
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length: usize = text[..end]
                            .lines()
                            .find_map(|line| {
                                line.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                tokio::time::sleep(delay).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    (url, task)
}

#[tokio::test]
async fn the_connect_webhook_allows_denies_and_its_failure_is_503() {
    let Some(signer) = signer() else { return };
    let allow = r#"{"allow": true, "user": "web1", "permissions": {"join": ["echo"], "publish": ["echo"]}}"#;
    let cases = [
        (allow, Duration::ZERO, 101, None),
        (
            r#"{"allow": false}"#,
            Duration::ZERO,
            401,
            Some("unauthorized"),
        ),
        (
            r#"{"allow": false, "status": 403}"#,
            Duration::ZERO,
            403,
            Some("forbidden"),
        ),
        (allow, Duration::from_secs(3), 503, Some("auth_unavailable")),
    ];
    for (answer, delay, status, label) in cases {
        let (url, _backend) = webhook(answer, delay).await;
        let server = server(
            signer,
            r#"["bearer"]"#,
            &format!("[auth.webhook]\nurl = {url:?}\ntimeout = \"500ms\"\n"),
        )
        .await;
        let got = handshake(&server, "/echo", "Cookie: session=s3cret\r\n").await;
        assert_eq!(got.status, status, "{answer} after {delay:?}: {got:?}");
        if let Some(label) = label {
            assert_eq!(handshakes(&server, label), 1, "{label}");
        }
    }
    // A webhook that is not there at all is a failure too, not a denial.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/check", closed.local_addr().unwrap());
    drop(closed);
    let server = server(
        signer,
        r#"["bearer"]"#,
        &format!("[auth.webhook]\nurl = {url:?}\n"),
    )
    .await;
    assert_eq!(handshake(&server, "/echo", "").await.status, 503);
    assert_eq!(server.handle.stats().auth_backends.webhook_failed, 1);
}

/// Headless Chromium authenticates with a cookie, with a subprotocol entry
/// (answered with the marker, never the token) and with its first message,
/// then two of its sockets chat over the hub (tests/peers/chromium_auth.mjs).
#[tokio::test]
async fn chromium_authenticates_by_cookie_subprotocol_and_first_message() {
    let Some(signer) = signer() else { return };
    let Some(node) = common::peers::chromium() else {
        return;
    };
    let hubs = "[[channel]]\nname = \"inband\"\npath = \"/inband\"\nkind = \"echo\"\n\n[[channel]]\nname = \"hubinband\"\npath = \"/hubinband\"\nkind = \"hub\"\n";
    let server = server(
        signer,
        r#"["bearer", "protocol", "cookie", "first_message"]"#,
        "",
    )
    .await;
    let reloaded = format!("{}\n{hubs}", server.config_text);
    server
        .handle
        .reload(wsedge::Config::from_toml_str(&reloaded).unwrap())
        .await
        .unwrap();
    let grants = ["echo", "inband", "hubinband"];
    let (alice, bob) = (
        signer.hs256(claims("alice", 300, &grants)),
        signer.hs256(claims("bob", 300, &grants)),
    );
    let output = tokio::process::Command::new(&node)
        .current_dir(common::peers::peers_dir())
        .arg("chromium_auth.mjs")
        .arg(format!("ws://127.0.0.1:{}", server.ws.port()))
        .args([&alice, &bob])
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .expect("chromium_auth.mjs finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "chromium_auth.mjs failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok: ")).count(),
        8,
        "{stdout}"
    );
    assert_eq!(count(&server, "accepted", "cookie"), 1);
    assert_eq!(count(&server, "accepted", "protocol"), 2);
    assert_eq!(count(&server, "accepted", "message"), 2);
}
