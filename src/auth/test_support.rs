//! What the auth tests share: the independent token signer (PyJWT with
//! `cryptography`, `tests/peers/sign_jwt.py`, installed by
//! `tests/peers/install.sh`) with keys it generates once per test run into a
//! temporary directory, and loopback HTTP(S) backends that count what they
//! serve. Without the signer a test is skipped with a note, except under CI
//! (`CI` set), where it fails.

use std::{
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Response, StatusCode, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::sync::lock;

fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "false" && value != "0")
}

/// Keys made by the independent signer, and the signer itself.
pub(crate) struct Signer {
    python: PathBuf,
    dir: tempfile::TempDir,
}

/// The signer with its keys, generated on first use; `None` (after a note)
/// when PyJWT is not installed outside CI.
pub(crate) fn signer() -> Option<&'static Signer> {
    static SIGNER: OnceLock<Option<Signer>> = OnceLock::new();
    let signer = SIGNER.get_or_init(|| {
        let python = peers_dir().join(".venv/bin/python");
        let installed = Command::new(&python)
            .args(["-c", "import jwt, cryptography"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !installed {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new(&python)
            .arg(peers_dir().join("sign_jwt.py"))
            .arg("keygen")
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "sign_jwt.py keygen failed");
        Some(Signer { python, dir })
    });
    if signer.is_none() {
        let message = "PyJWT is not installed (tests/peers/.venv): run tests/peers/install.sh";
        assert!(!in_ci(), "{message}");
        // Straight to the process's stderr: libtest would swallow `eprintln!`
        // of a passing test.
        let _ = writeln!(
            std::io::stderr(),
            "\n**********\n** NOTE: skipping this test: {message}\n**********"
        );
    }
    signer.as_ref()
}

impl Signer {
    /// A file of the generated keys: `rsa.pub.pem`, `p256.key.pem`,
    /// `hmac.secret`, `ed25519.jwk.json`...
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The public JWK of key `name` (its `kid` is the name).
    pub(crate) fn jwk(&self, name: &str) -> Value {
        serde_json::from_slice(&std::fs::read(self.path(&format!("{name}.jwk.json"))).unwrap())
            .unwrap()
    }

    /// A JWKS document of these keys.
    pub(crate) fn jwks(&self, names: &[&str]) -> String {
        serde_json::json!({"keys": names.iter().map(|name| self.jwk(name)).collect::<Vec<_>>()})
            .to_string()
    }

    /// Signs each request (see `sign_jwt.py`) in one run of the signer.
    pub(crate) fn sign(&self, requests: &[Value]) -> Vec<String> {
        let mut child = Command::new(&self.python)
            .arg(peers_dir().join("sign_jwt.py"))
            .arg("sign")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        for request in requests {
            writeln!(stdin, "{request}").unwrap();
        }
        drop(stdin);
        let tokens: Vec<String> = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map(Result::unwrap)
            .collect();
        assert!(child.wait().unwrap().success(), "sign_jwt.py sign failed");
        assert_eq!(tokens.len(), requests.len());
        tokens
    }
}

/// Seconds since the epoch, `offset` from now: claim times.
pub(crate) fn unix_now(offset: i64) -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + offset
}

/// A request a backend received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) method: Method,
    pub(crate) uri: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// What a backend answers.
pub(crate) struct Reply {
    status: StatusCode,
    body: Vec<u8>,
    delay: Duration,
}

impl Reply {
    /// 200 with `body`.
    pub(crate) fn ok(body: Vec<u8>) -> Reply {
        Reply::status(StatusCode::OK, body)
    }

    /// `status` with `body`.
    pub(crate) fn status(status: StatusCode, body: Vec<u8>) -> Reply {
        Reply {
            status,
            body,
            delay: Duration::ZERO,
        }
    }

    /// The same, answered after `delay`.
    pub(crate) fn after(self, delay: Duration) -> Reply {
        Reply { delay, ..self }
    }
}

type Handler = dyn Fn(&Received) -> Reply + Send + Sync;

struct State {
    handler: Box<Handler>,
    requests: AtomicUsize,
    connections: AtomicUsize,
    last: Mutex<Option<Received>>,
}

/// A loopback HTTP/1.1 server answering with a handler; stopped (listener
/// and open connections) when dropped or by [`Backend::stop`].
pub(crate) struct Backend {
    addr: SocketAddr,
    scheme: &'static str,
    ca: Option<tempfile::TempDir>,
    state: Arc<State>,
    stop: CancellationToken,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Backend {
    /// A plain HTTP backend on 127.0.0.1.
    pub(crate) async fn start(
        handler: impl Fn(&Received) -> Reply + Send + Sync + 'static,
    ) -> Backend {
        Backend::serve(Box::new(handler), None).await
    }

    /// An HTTPS backend on 127.0.0.1 with a fresh self-signed certificate,
    /// which [`Backend::ca_file`] holds.
    pub(crate) async fn start_tls(
        handler: impl Fn(&Received) -> Reply + Send + Sync + 'static,
    ) -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), signing_key.serialize_pem()).unwrap();
        let identity = crate::tls::Identity::from_pem_files(
            &dir.path().join("cert.pem"),
            &dir.path().join("key.pem"),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config().unwrap());
        let mut backend = Backend::serve(Box::new(handler), Some(acceptor)).await;
        backend.ca = Some(dir);
        backend
    }

    async fn serve(handler: Box<Handler>, tls: Option<tokio_rustls::TlsAcceptor>) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            handler,
            requests: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            last: Mutex::new(None),
        });
        let stop = CancellationToken::new();
        let scheme = if tls.is_some() { "https" } else { "http" };
        tokio::spawn({
            let (state, stop) = (state.clone(), stop.clone());
            async move {
                loop {
                    let (tcp, _) = tokio::select! {
                        accepted = listener.accept() => accepted.unwrap(),
                        () = stop.cancelled() => return,
                    };
                    state.connections.fetch_add(1, Ordering::SeqCst);
                    let (state, stop, tls) = (state.clone(), stop.clone(), tls.clone());
                    tokio::spawn(async move {
                        let service = service_fn(move |request| answer(state.clone(), request));
                        match tls {
                            None => {
                                let connection = http1::Builder::new()
                                    .serve_connection(TokioIo::new(tcp), service);
                                tokio::select! { _ = connection => {}, () = stop.cancelled() => {} }
                            }
                            Some(acceptor) => {
                                let Ok(stream) = acceptor.accept(tcp).await else {
                                    return;
                                };
                                let connection = http1::Builder::new()
                                    .serve_connection(TokioIo::new(stream), service);
                                tokio::select! { _ = connection => {}, () = stop.cancelled() => {} }
                            }
                        }
                    });
                }
            }
        });
        Backend {
            addr,
            scheme,
            ca: None,
            state,
            stop,
        }
    }

    /// The URL of `path` on this backend.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// The CA file that trusts an HTTPS backend.
    pub(crate) fn ca_file(&self) -> PathBuf {
        self.ca
            .as_ref()
            .expect("an HTTPS backend")
            .path()
            .join("cert.pem")
    }

    /// Requests answered so far.
    pub(crate) fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub(crate) fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// The last request received.
    pub(crate) fn last_request(&self) -> Received {
        lock(&self.state.last)
            .clone()
            .expect("a request was received")
    }

    /// Closes the listener and every open connection: the backend is down.
    pub(crate) fn stop(&self) {
        self.stop.cancel();
    }

    /// A loopback URL nothing listens on: connections are refused.
    pub(crate) fn closed_url(path: &str) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}{path}")
    }
}

async fn answer(
    state: Arc<State>,
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = request.into_parts();
    let received = Received {
        method: parts.method,
        uri: parts.uri.to_string(),
        headers: parts.headers,
        body: body.collect().await?.to_bytes(),
    };
    let reply = (state.handler)(&received);
    *lock(&state.last) = Some(received);
    state.requests.fetch_add(1, Ordering::SeqCst);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = reply.status;
    Ok(response)
}
