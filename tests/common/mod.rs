//! Test harness: starts a real server from a TOML string on 127.0.0.1 port 0
//! (TLS with a freshly generated certificate loaded from PEM files) and
//! connects independent clients (tokio-tungstenite over tokio-rustls, or raw
//! TCP for HTTP answers).

#![allow(dead_code)] // each test binary uses its own subset of the helpers

pub mod browser;
pub mod deflate;
pub mod jwt;
pub mod peers;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use futures_util::{SinkExt, StreamExt};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tokio_rustls::{
    TlsConnector,
    client::TlsStream,
    rustls::{self, pki_types::CertificateDer},
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{self, Message, client::IntoClientRequest, protocol::CloseFrame},
};
use wsedge::{Config, Handle, Listener, Server};

/// Upper bound for anything a test awaits; a hung server fails the test
/// instead of hanging CI.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub type Ws = WebSocketStream<TcpStream>;
pub type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// A server serving on one wss:// and one ws:// listener.
pub struct TestServer {
    pub handle: Handle,
    pub wss: SocketAddr,
    pub ws: SocketAddr,
    /// A plain listener expecting PROXY headers, when the configuration
    /// lists `proxy_protocol` addresses.
    pub proxy: Option<SocketAddr>,
    pub cert: CertificateDer<'static>,
    pub task: JoinHandle<Result<(), wsedge::Error>>,
    /// The whole configuration the server started with, for tests that
    /// reload a variant of it.
    pub config_text: String,
    /// Where the certificate files live; tests may write more files here.
    pub dir: tempfile::TempDir,
}

/// A certificate for localhost/127.0.0.1 written as PEM files in a temporary
/// directory.
pub struct CertFiles {
    pub dir: tempfile::TempDir,
    pub cert: CertificateDer<'static>,
}

impl CertFiles {
    pub fn generate() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), signing_key.serialize_pem()).unwrap();
        Self {
            cert: cert.der().clone(),
            dir,
        }
    }

    pub fn cert_path(&self) -> String {
        self.dir.path().join("cert.pem").display().to_string()
    }

    pub fn key_path(&self) -> String {
        self.dir.path().join("key.pem").display().to_string()
    }
}

/// Starts a server whose configuration is a standard `[server]` section
/// followed by `rest` (limits and channels).
pub async fn start(rest: &str) -> TestServer {
    start_with_server_keys("", rest).await
}

/// Like [`start`], with extra `key = value` lines in the `[server]` table.
/// Unless they set it, the drain takes 100 ms rather than the production
/// default, so that tests that stop the server are quick.
pub async fn start_with_server_keys(server_keys: &str, rest: &str) -> TestServer {
    let files = CertFiles::generate();
    let drain = if server_keys.contains("drain_window") {
        ""
    } else {
        "drain_window = \"100ms\""
    };
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nplain = [\"127.0.0.1:0\"]\n{drain}\n{server_keys}\n[server.tls]\ncert = {:?}\nkey = {:?}\n{rest}",
        files.cert_path(),
        files.key_path()
    );
    let config = Config::from_toml_str(&toml)
        .unwrap_or_else(|e| panic!("test config is invalid:\n{e}\n---\n{toml}"));
    let wants_proxy = !config.server.proxy_protocol.is_empty();
    let tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (wss, ws) = (tls.local_addr().unwrap(), plain.local_addr().unwrap());
    let mut listeners = vec![Listener::tls(tls), Listener::plain(plain)];
    let mut proxy = None;
    if wants_proxy {
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        proxy = Some(socket.local_addr().unwrap());
        listeners.push(Listener::plain(socket).with_proxy_protocol());
    }
    let server = Server::new(config).expect("server builds");
    let handle = server.handle();
    let task = tokio::spawn(server.serve(listeners, std::future::pending()));
    TestServer {
        handle,
        wss,
        ws,
        proxy,
        cert: files.cert.clone(),
        task,
        config_text: toml,
        dir: files.dir,
    }
}

impl TestServer {
    /// A ws:// client on `path`.
    pub async fn ws(&self, path: &str) -> Ws {
        self.ws_request(
            format!("ws://{}{path}", self.ws)
                .into_client_request()
                .unwrap(),
        )
        .await
        .unwrap_or_else(|e| panic!("ws connect to {path} failed: {e}"))
    }

    /// A ws:// client on `path`, or the error of a refused handshake.
    pub async fn ws_request_raw(&self, path: &str) -> Result<Ws, tungstenite::Error> {
        self.ws_request(
            format!("ws://{}{path}", self.ws)
                .into_client_request()
                .unwrap(),
        )
        .await
    }

    /// A ws:// handshake with a custom request; the error carries the HTTP
    /// answer of a refused upgrade.
    pub async fn ws_request(
        &self,
        request: tungstenite::handshake::client::Request,
    ) -> Result<Ws, tungstenite::Error> {
        let stream = TcpStream::connect(self.ws).await.unwrap();
        let (ws, _) =
            tokio::time::timeout(PATIENCE, tokio_tungstenite::client_async(request, stream))
                .await
                .expect("handshake answered")?;
        Ok(ws)
    }

    /// A wss:// client on `path`, trusting only the test certificate.
    pub async fn wss(&self, path: &str) -> Wss {
        let stream = tls_connect(self.wss, &self.cert).await;
        let request = format!("wss://localhost:{}{path}", self.wss.port())
            .into_client_request()
            .unwrap();
        let (ws, _) =
            tokio::time::timeout(PATIENCE, tokio_tungstenite::client_async(request, stream))
                .await
                .expect("handshake answered")
                .unwrap_or_else(|e| panic!("wss connect to {path} failed: {e}"));
        ws
    }

    /// Sends `request` verbatim over plain TCP and reads one response: the
    /// head, and a body of `Content-Length` bytes.
    pub async fn raw_http(&self, request: &str) -> HttpAnswer {
        let mut stream = TcpStream::connect(self.ws).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        tokio::time::timeout(PATIENCE, read_response(&mut stream))
            .await
            .expect("server answers")
    }
}

async fn read_response(stream: &mut TcpStream) -> HttpAnswer {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let mut answer = HttpAnswer::parse_head(&bytes[..end]);
            let length: usize = answer
                .header("content-length")
                .map_or(0, |l| l.parse().unwrap());
            while bytes.len() < end + 4 + length {
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed inside the body");
                bytes.extend_from_slice(&chunk[..n]);
            }
            answer.body = String::from_utf8_lossy(&bytes[end + 4..end + 4 + length]).into_owned();
            return answer;
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "connection closed before a response: {:?}",
            String::from_utf8_lossy(&bytes)
        );
        bytes.extend_from_slice(&chunk[..n]);
    }
}

impl TestServer {
    /// A raw TCP connection to the plain listener that has completed a
    /// WebSocket upgrade on `path`: what follows is frames, written and read
    /// by hand (see [`client_frame`] and [`read_close_code`]).
    pub async fn raw_ws(&self, path: &str) -> TcpStream {
        let mut stream = TcpStream::connect(self.ws).await.unwrap();
        stream
            .write_all(upgrade_request(path, "").as_bytes())
            .await
            .unwrap();
        let answer = tokio::time::timeout(PATIENCE, read_response(&mut stream))
            .await
            .expect("server answers");
        assert_eq!(answer.status, 101, "upgrade refused: {answer:?}");
        stream
    }
}

/// Sends a raw upgrade for `path` with extra headers and returns the status
/// (0 if the server closed the connection without answering).
pub async fn upgrade_status(stream: &mut TcpStream, path: &str, extra_headers: &str) -> u16 {
    if stream
        .write_all(upgrade_request(path, extra_headers).as_bytes())
        .await
        .is_err()
    {
        return 0;
    }
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let read = async {
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("an answer or a close");
    let head = String::from_utf8_lossy(&head);
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Completes a WebSocket upgrade on a raw connection.
pub async fn upgrade(stream: &mut TcpStream, path: &str) {
    assert_eq!(
        upgrade_status(stream, path, "").await,
        101,
        "upgrade on {path}"
    );
}

/// A client frame with the mask bit set and the given first byte (FIN, RSV
/// and opcode bits), payload length and payload. The length field is written
/// as given, so a header may announce more than follows.
pub fn client_frame(first_byte: u8, announced_len: u64, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xFA, 0x21, 0x3D];
    let mut frame = vec![first_byte];
    match announced_len {
        0..=125 => frame.push(0x80 | announced_len as u8),
        126..=0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(announced_len as u16).to_be_bytes());
        }
        _ => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&announced_len.to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads one server frame: its first header byte (FIN, RSV and opcode bits)
/// and its payload; `None` if the connection ends first.
pub async fn read_server_frame(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let read = async {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).await.ok()?;
        let len = match head[1] & 0x7F {
            126 => u64::from(stream.read_u16().await.ok()?),
            127 => stream.read_u64().await.ok()?,
            n => u64::from(n),
        };
        let mut payload = vec![0u8; usize::try_from(len).ok()?];
        stream.read_exact(&mut payload).await.ok()?;
        Some((head[0], payload))
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("a frame or the end within PATIENCE")
}

/// Reads server frames until a close frame and returns its status code
/// (`None` if the connection ends without one).
pub async fn read_close_code(stream: &mut TcpStream) -> Option<u16> {
    let read = async {
        loop {
            let mut head = [0u8; 2];
            stream.read_exact(&mut head).await.ok()?;
            let len = match head[1] & 0x7F {
                126 => u64::from(stream.read_u16().await.ok()?),
                127 => stream.read_u64().await.ok()?,
                n => u64::from(n),
            };
            let mut payload = vec![0u8; len as usize];
            stream.read_exact(&mut payload).await.ok()?;
            if head[0] & 0x0F == 0x8 {
                return Some(u16::from_be_bytes([payload[0], payload[1]]));
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("the server closes within PATIENCE")
}

/// Reads until the server closes the TCP connection; panics after PATIENCE.
pub async fn wait_eof(stream: &mut TcpStream) {
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut sink))
        .await
        .expect("the server hangs up within PATIENCE");
}

/// Polls `condition` on the server's statistics until it holds. Only for
/// state no client can observe as an event (a connection the server is still
/// tearing down after the client vanished); bounded by PATIENCE.
pub async fn eventually(
    handle: &Handle,
    condition: impl Fn(&wsedge::Stats) -> bool,
) -> wsedge::Stats {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let stats = handle.stats();
        if condition(&stats) {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "statistics never reached the expected state: {stats:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A TLS connection to `addr` as "localhost", trusting only `cert`.
pub async fn tls_connect(addr: SocketAddr, cert: &CertificateDer<'static>) -> TlsStream<TcpStream> {
    try_tls_connect(addr, cert)
        .await
        .expect("TLS handshake with the test certificate")
}

/// A TLS handshake with `addr` as "localhost", trusting only `cert`; the
/// error when the server closes or refuses it.
pub async fn try_tls_connect(
    addr: SocketAddr,
    cert: &CertificateDer<'static>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let stream = TcpStream::connect(addr).await.unwrap();
    tokio::time::timeout(
        PATIENCE,
        TlsConnector::from(Arc::new(config)).connect("localhost".try_into().unwrap(), stream),
    )
    .await
    .expect("the TLS handshake ends")
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpAnswer {
    /// Parses a response head (status line and headers, without the blank
    /// line); the body is left empty.
    pub fn parse_head(head: &[u8]) -> Self {
        let head = String::from_utf8_lossy(head);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        Self {
            status,
            headers,
            body: String::new(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An upgrade request for `path` on `server`'s plain listener, as raw HTTP.
pub fn upgrade_request(path: &str, extra_headers: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra_headers}\r\n"
    )
}

/// The next data message, skipping pings and pongs; panics on close or timeout.
pub async fn next_data<S>(ws: &mut WebSocketStream<S>) -> Message
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let message = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a message within PATIENCE")
            .expect("stream open")
            .expect("no protocol error");
        match message {
            Message::Text(_) | Message::Binary(_) => return message,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            Message::Close(frame) => panic!("unexpected close: {frame:?}"),
        }
    }
}

/// The next data message as JSON (a hub's answers, presence notices);
/// panics on anything else.
pub async fn next_json<S>(ws: &mut WebSocketStream<S>) -> serde_json::Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match next_data(ws).await {
        Message::Text(text) => serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("expected JSON ({e}), got {text:?}")),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Reads until the server's close frame and returns it.
pub async fn next_close<S>(ws: &mut WebSocketStream<S>) -> Option<CloseFrame>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a close within PATIENCE")
        {
            Some(Ok(Message::Close(frame))) => return frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// Sends a text message.
pub async fn send_text<S>(ws: &mut WebSocketStream<S>, text: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(Message::text(text)).await.unwrap();
}

/// Closes from the client side and waits until the server has closed the
/// connection. The server drops a connection's channel membership before it
/// closes the socket, so `stats()` read after this no longer counts it.
pub async fn close_and_wait<S>(mut ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.close(None).await.unwrap();
    wait_closed(&mut ws).await;
}

/// Reads until the server ends the connection, ignoring any messages.
pub async fn wait_closed<S>(ws: &mut WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("the server closes within PATIENCE")
        {
            None | Some(Err(_)) => return,
            Some(Ok(_)) => continue,
        }
    }
}

/// Kills a child process (a `wsedge` binary under test) when a test fails
/// before the child has exited.
pub struct KillOnDrop {
    pub pid: u32,
    pub exited: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if !self.exited {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
    }
}

/// The bearer token of the admin listener [`start_with_admin`] starts.
pub const ADMIN_TOKEN: &str = "test-admin-token-9c4e";

/// A server with one plain WebSocket listener and the admin listener.
pub struct AdminServer {
    pub handle: Handle,
    pub ws: SocketAddr,
    pub admin: SocketAddr,
    pub task: JoinHandle<Result<(), wsedge::Error>>,
    /// Holds the admin token file.
    pub dir: tempfile::TempDir,
}

/// The text of `config.example.toml`, the configuration the README runs.
pub fn example_config() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Starts a server from a whole configuration file's text with an `[admin]`
/// table appended (its token file holds [`ADMIN_TOKEN`]). The addresses the
/// text names are not bound: a plain listener and the admin listener on
/// 127.0.0.1 port 0 serve instead, so that tests run beside a server
/// started from the same file.
pub async fn start_with_admin(config_text: &str) -> AdminServer {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n")).unwrap();
    let toml = format!(
        "{config_text}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = {:?}\n",
        token_file.display().to_string()
    );
    let config = Config::from_toml_str(&toml)
        .unwrap_or_else(|e| panic!("test config is invalid:\n{e}\n---\n{toml}"));
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (ws, admin_addr) = (plain.local_addr().unwrap(), admin.local_addr().unwrap());
    let server = Server::new(config).expect("server builds");
    let handle = server.handle();
    let listeners = vec![Listener::plain(plain), Listener::admin(admin)];
    let task = tokio::spawn(server.serve(listeners, std::future::pending()));
    AdminServer {
        handle,
        ws,
        admin: admin_addr,
        task,
        dir,
    }
}

impl AdminServer {
    /// A ws:// client on `path`.
    pub async fn ws(&self, path: &str) -> Ws {
        let stream = TcpStream::connect(self.ws).await.unwrap();
        let request = format!("ws://{}{path}", self.ws)
            .into_client_request()
            .unwrap();
        let (ws, _) =
            tokio::time::timeout(PATIENCE, tokio_tungstenite::client_async(request, stream))
                .await
                .expect("handshake answered")
                .unwrap_or_else(|e| panic!("ws connect to {path} failed: {e}"));
        ws
    }

    /// A ws:// client on `path` with `token` as its bearer credentials.
    pub async fn ws_as(&self, path: &str, token: &str) -> Ws {
        let mut request = format!("ws://{}{path}", self.ws)
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let stream = TcpStream::connect(self.ws).await.unwrap();
        let (ws, _) =
            tokio::time::timeout(PATIENCE, tokio_tungstenite::client_async(request, stream))
                .await
                .expect("handshake answered")
                .unwrap_or_else(|e| panic!("ws connect to {path} failed: {e}"));
        ws
    }

    /// Reloads with the configuration `text` and the `[admin]` table
    /// [`start_with_admin`] added; panics if the reload is refused.
    pub async fn reload(&self, text: &str) -> wsedge::ReloadReport {
        let admin = format!(
            "\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = {:?}\n",
            self.dir.path().join("admin.token").display().to_string()
        );
        let config = Config::from_toml_str(&format!("{text}{admin}"))
            .unwrap_or_else(|e| panic!("reload config is invalid: {e}"));
        self.handle.reload(config).await.expect("reload applies")
    }

    /// `GET path` on the admin listener.
    pub async fn admin_get(&self, path: &str) -> HttpAnswer {
        http(self.admin, &format!("GET {path} HTTP/1.1"), b"").await
    }

    /// Publishes `text` as a text message through the admin API to `target`
    /// (`channel` or `channel/room`) and returns how many connections it
    /// was queued for.
    pub async fn publish_text(&self, target: &str, text: &str) -> u64 {
        let answer = http(
            self.admin,
            &format!(
                "POST /publish/{target} HTTP/1.1\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: text/plain; charset=utf-8"
            ),
            text.as_bytes(),
        )
        .await;
        assert_eq!(answer.status, 200, "publish to {target}: {answer:?}");
        let delivered: serde_json::Value = serde_json::from_str(&answer.body)
            .unwrap_or_else(|e| panic!("publish answer is not JSON ({e}): {answer:?}"));
        delivered["delivered"]
            .as_u64()
            .unwrap_or_else(|| panic!("no \"delivered\" count: {answer:?}"))
    }
}

/// Sends `head` (request line and headers, without the final blank line)
/// with `Host`, `Connection: close` and, for a body, `Content-Length`, then
/// `body`, and reads the answer until the server closes the connection.
pub async fn http(addr: SocketAddr, head: &str, body: &[u8]) -> HttpAnswer {
    let length = if body.is_empty() {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    let mut request =
        format!("{head}\r\nHost: localhost\r\nConnection: close\r\n{length}\r\n").into_bytes();
    request.extend_from_slice(body);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&request).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
        .await
        .expect("the server answers and closes within PATIENCE")
        .expect("the answer is readable");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&raw)));
    let mut answer = HttpAnswer::parse_head(&raw[..end]);
    assert_ne!(
        answer.header("transfer-encoding"),
        Some("chunked"),
        "a chunked answer; this helper reads plain bodies"
    );
    answer.body = String::from_utf8_lossy(&raw[end + 4..]).into_owned();
    answer
}
