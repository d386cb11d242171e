//! Test harness: starts a real server from a TOML string on 127.0.0.1 port 0
//! (TLS with a freshly generated certificate loaded from PEM files) and
//! connects independent clients (tokio-tungstenite over tokio-rustls, or raw
//! TCP for HTTP answers).

#![allow(dead_code)] // each test binary uses its own subset of the helpers

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
    pub cert: CertificateDer<'static>,
    pub task: JoinHandle<Result<(), wsedge::Error>>,
    _dir: tempfile::TempDir,
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
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), signing_key.serialize_pem()).unwrap();
        Self { cert: cert.der().clone(), dir }
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
pub async fn start_with_server_keys(server_keys: &str, rest: &str) -> TestServer {
    let files = CertFiles::generate();
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nplain = [\"127.0.0.1:0\"]\n{server_keys}\n[server.tls]\ncert = {:?}\nkey = {:?}\n{rest}",
        files.cert_path(),
        files.key_path()
    );
    let config = Config::from_toml_str(&toml).unwrap_or_else(|e| panic!("test config is invalid:\n{e}\n---\n{toml}"));
    let server = Server::new(config).expect("server builds");
    let tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (wss, ws) = (tls.local_addr().unwrap(), plain.local_addr().unwrap());
    let handle = server.handle();
    let listeners = vec![Listener::tls(tls), Listener::plain(plain)];
    let task = tokio::spawn(server.serve(listeners, std::future::pending()));
    TestServer { handle, wss, ws, cert: files.cert.clone(), task, _dir: files.dir }
}

impl TestServer {
    /// A ws:// client on `path`.
    pub async fn ws(&self, path: &str) -> Ws {
        self.ws_request(format!("ws://{}{path}", self.ws).into_client_request().unwrap())
            .await
            .unwrap_or_else(|e| panic!("ws connect to {path} failed: {e}"))
    }

    /// A ws:// handshake with a custom request; the error carries the HTTP
    /// answer of a refused upgrade.
    pub async fn ws_request(&self, request: tungstenite::handshake::client::Request) -> Result<Ws, tungstenite::Error> {
        let stream = TcpStream::connect(self.ws).await.unwrap();
        let (ws, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::client_async(request, stream)).await.expect("handshake answered")?;
        Ok(ws)
    }

    /// A wss:// client on `path`, trusting only the test certificate.
    pub async fn wss(&self, path: &str) -> Wss {
        let stream = tls_connect(self.wss, &self.cert).await;
        let request = format!("wss://localhost:{}{path}", self.wss.port()).into_client_request().unwrap();
        let (ws, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::client_async(request, stream))
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
        tokio::time::timeout(PATIENCE, read_response(&mut stream)).await.expect("server answers")
    }
}

async fn read_response(stream: &mut TcpStream) -> HttpAnswer {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let mut answer = HttpAnswer::parse_head(&bytes[..end]);
            let length: usize = answer.header("content-length").map_or(0, |l| l.parse().unwrap());
            while bytes.len() < end + 4 + length {
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed inside the body");
                bytes.extend_from_slice(&chunk[..n]);
            }
            answer.body = String::from_utf8_lossy(&bytes[end + 4..end + 4 + length]).into_owned();
            return answer;
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a response: {:?}", String::from_utf8_lossy(&bytes));
        bytes.extend_from_slice(&chunk[..n]);
    }
}

/// A TLS connection to `addr` as "localhost", trusting only `cert`.
pub async fn tls_connect(addr: SocketAddr, cert: &CertificateDer<'static>) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let stream = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), stream)
        .await
        .expect("TLS handshake with the test certificate")
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpAnswer {
    fn parse_head(head: &[u8]) -> Self {
        let head = String::from_utf8_lossy(head);
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        Self { status, headers, body: String::new() }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
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

/// Reads until the server's close frame and returns it.
pub async fn next_close<S>(ws: &mut WebSocketStream<S>) -> Option<CloseFrame>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await.expect("a close within PATIENCE") {
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
        match tokio::time::timeout(PATIENCE, ws.next()).await.expect("the server closes within PATIENCE") {
            None | Some(Err(_)) => return,
            Some(Ok(_)) => continue,
        }
    }
}
