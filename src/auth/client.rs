//! A small HTTP/1.1 client for the auth backends (a JWKS endpoint, the
//! connect webhook): one fixed URL per [`Endpoint`], HTTPS through
//! tokio-rustls on ring or plain HTTP to a loopback address, hyper's
//! connection-level client, idle connections kept for reuse, every call under
//! one deadline and every response body bounded.
//!
//! Plain HTTP is refused beyond loopback because these requests carry what
//! must not cross a network in clear: signing keys an attacker could swap, a
//! client's cookies and credentials.

use std::{
    fs, io,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    Method, Request, StatusCode, Uri,
    client::conn::http1::{self, SendRequest},
    header,
};
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, rustls};

use crate::sync::lock;

/// Idle connections kept per endpoint: enough for a burst of handshakes to
/// reuse connections instead of opening one each, few enough that an idle
/// server holds almost nothing open to its backends.
const MAX_IDLE: usize = 16;

/// Sent as `User-Agent`, so backend logs can tell who calls.
const USER_AGENT: &str = concat!("wsedge/", env!("CARGO_PKG_VERSION"));

/// Why an endpoint cannot be used at all: a configuration error.
#[derive(Debug, Error)]
pub(crate) enum EndpointError {
    /// Not an absolute `http://` or `https://` URL.
    #[error("{0:?} is not an http:// or https:// URL")]
    BadUrl(String),
    /// `http://` to a host that is not loopback.
    #[error(
        "{0:?} is plain HTTP to a non-loopback host; use https:// (plain http:// is for 127.0.0.1, [::1] and localhost only)"
    )]
    PlainHttp(String),
    /// The CA file could not be read or holds no certificate.
    #[error("CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The system's trust store yielded no usable certificate.
    #[error(
        "no trusted CA certificates in the system store ({0}); install ca-certificates or set a CA file"
    )]
    NoRoots(String),
}

/// Why one call failed: the backend's or the network's fault.
#[derive(Debug, Error)]
pub(crate) enum CallError {
    /// The deadline passed.
    #[error("timed out")]
    Timeout,
    /// TCP connect or the TLS handshake failed.
    #[error("connect: {0}")]
    Connect(io::Error),
    /// The HTTP exchange failed.
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// The response body is larger than allowed.
    #[error("response body over {0} bytes")]
    TooLarge(usize),
}

/// A status and a complete body.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
}

/// How the connection to the endpoint is secured.
enum Transport {
    Plain,
    Tls {
        connector: TlsConnector,
        name: ServerName<'static>,
    },
}

/// One backend URL and its idle connections.
pub(crate) struct Endpoint {
    to: Target,
    transport: Transport,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Endpoint").field(&self.to.display).finish()
    }
}

/// What a URL says about where to connect, checked without any I/O.
struct Target {
    /// `scheme://authority/path`, for logs: never the query.
    display: String,
    host: String,
    port: u16,
    /// The `Host` header.
    authority: String,
    /// The request target.
    target: String,
    /// HTTPS, or plain HTTP to a loopback host.
    scheme: Scheme,
}

/// How an endpoint URL is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `https://`: TLS, verified against a CA file or the system's store.
    Https,
    /// `http://` to 127.0.0.1, [::1] or localhost.
    LoopbackHttp,
}

impl Target {
    fn parse(url: &str) -> Result<Target, EndpointError> {
        let bad = || EndpointError::BadUrl(url.to_owned());
        let uri: Uri = url.parse().map_err(|_| bad())?;
        let authority = uri.authority().ok_or_else(bad)?.as_str().to_owned();
        if authority.contains('@') {
            return Err(bad());
        }
        let host = uri.host().ok_or_else(bad)?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_owned();
        let (scheme, default_port) = match uri.scheme_str() {
            Some("https") => {
                ServerName::try_from(host.as_str()).map_err(|_| bad())?;
                (Scheme::Https, 443)
            }
            Some("http") if is_loopback(&host) => (Scheme::LoopbackHttp, 80),
            Some("http") => return Err(EndpointError::PlainHttp(url.to_owned())),
            _ => return Err(bad()),
        };
        let target = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
        Ok(Target {
            display: format!(
                "{}://{authority}{}",
                uri.scheme_str().unwrap_or_default(),
                uri.path()
            ),
            port: uri.port_u16().unwrap_or(default_port),
            host,
            authority,
            target,
            scheme,
        })
    }
}

/// Checks `url` as [`Endpoint::new`] would, without reading anything: for
/// the configuration, which reports a bad URL at its key.
pub(crate) fn check_url(url: &str) -> Result<Scheme, EndpointError> {
    Target::parse(url).map(|target| target.scheme)
}

impl Endpoint {
    /// An endpoint for `url`, trusting `ca_file`'s certificates or else the
    /// system's store.
    pub(crate) fn new(url: &str, ca_file: Option<&Path>) -> Result<Endpoint, EndpointError> {
        let to = Target::parse(url)?;
        let transport = match to.scheme {
            Scheme::Https => Transport::Tls {
                connector: TlsConnector::from(Arc::new(client_config(ca_file)?)),
                name: ServerName::try_from(to.host.clone())
                    .expect("the host was checked as a server name by Target::parse"),
            },
            Scheme::LoopbackHttp => Transport::Plain,
        };
        Ok(Endpoint {
            to,
            transport,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// The URL without its query, for logs.
    pub(crate) fn display(&self) -> &str {
        &self.to.display
    }

    /// GET the URL.
    pub(crate) async fn get(
        &self,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Response, CallError> {
        self.call(Method::GET, None, timeout, max_body).await
    }

    /// POST `json` to the URL.
    pub(crate) async fn post_json(
        &self,
        json: Bytes,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Response, CallError> {
        self.call(Method::POST, Some(json), timeout, max_body).await
    }

    async fn call(
        &self,
        method: Method,
        body: Option<Bytes>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Response, CallError> {
        tokio::time::timeout(timeout, self.exchange(method, body, max_body))
            .await
            .unwrap_or(Err(CallError::Timeout))
    }

    /// One request on an idle connection, or on a new one when none is idle
    /// or the idle one turns out closed (the server's keep-alive timeout can
    /// close it just as we pick it).
    async fn exchange(
        &self,
        method: Method,
        body: Option<Bytes>,
        max_body: usize,
    ) -> Result<Response, CallError> {
        if let Some(sender) = self.take_idle() {
            match self
                .send(sender, method.clone(), body.clone(), max_body)
                .await
            {
                Err(CallError::Http(error))
                    if error.is_canceled()
                        || error.is_closed()
                        || error.is_incomplete_message() => {}
                result => return result,
            }
        }
        let sender = self.connect().await?;
        self.send(sender, method, body, max_body).await
    }

    /// One exchange on `sender`, which goes back to the idle list once the
    /// whole body is read.
    async fn send(
        &self,
        mut sender: SendRequest<Full<Bytes>>,
        method: Method,
        body: Option<Bytes>,
        max_body: usize,
    ) -> Result<Response, CallError> {
        sender.ready().await?;
        let mut request = Request::builder()
            .method(method)
            .uri(&self.to.target)
            .header(header::HOST, &self.to.authority)
            .header(header::USER_AGENT, USER_AGENT)
            .header(header::ACCEPT, "application/json");
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .expect("the method, target and headers were validated when the endpoint was built");
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = Limited::new(response.into_body(), max_body)
            .collect()
            .await
            .map_err(|error| match error.downcast::<hyper::Error>() {
                Ok(error) => CallError::Http(*error),
                // The one other error `Limited` produces.
                Err(_) => CallError::TooLarge(max_body),
            })?;
        self.put_idle(sender);
        Ok(Response {
            status,
            body: body.to_bytes(),
        })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, CallError> {
        let tcp = TcpStream::connect((self.to.host.as_str(), self.to.port))
            .await
            .map_err(CallError::Connect)?;
        // Requests are small and latency-bound.
        tcp.set_nodelay(true).map_err(CallError::Connect)?;
        let sender = match &self.transport {
            Transport::Plain => spawn_connection(TokioIo::new(tcp)).await?,
            Transport::Tls { connector, name } => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(CallError::Connect)?;
                spawn_connection(TokioIo::new(tls)).await?
            }
        };
        Ok(sender)
    }

    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = lock(&self.idle);
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn put_idle(&self, sender: SendRequest<Full<Bytes>>) {
        let mut idle = lock(&self.idle);
        if !sender.is_closed() && idle.len() < MAX_IDLE {
            idle.push(sender);
        }
    }
}

/// Runs an HTTP/1.1 connection over `io` in its own task, which ends when
/// the server closes it or its last sender is dropped.
async fn spawn_connection<T>(io: T) -> Result<SendRequest<Full<Bytes>>, CallError>
where
    T: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
{
    let (sender, connection) = http1::handshake(io).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(error = %error, "auth backend connection ended");
        }
    });
    Ok(sender)
}

/// Whether `host` (brackets stripped) names this machine.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The CA certificates of a PEM file, at least one.
pub(crate) fn ca_roots(path: &Path) -> Result<rustls::RootCertStore, EndpointError> {
    let ca_error = |reason: String| EndpointError::CaFile {
        path: path.to_owned(),
        reason,
    };
    let pem = fs::read(path).map_err(|error| ca_error(format!("cannot read it: {error}")))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|error| ca_error(error.to_string()))?;
        roots
            .add(cert)
            .map_err(|error| ca_error(error.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ca_error("no \"-----BEGIN CERTIFICATE-----\" block".into()));
    }
    Ok(roots)
}

/// A TLS client configuration on ring, trusting `ca_file` or the system.
fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, EndpointError> {
    let roots = match ca_file {
        Some(path) => ca_roots(path)?,
        None => {
            let mut roots = rustls::RootCertStore::empty();
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                let reasons: Vec<String> = native.errors.iter().map(ToString::to_string).collect();
                return Err(EndpointError::NoRoots(reasons.join("; ")));
            }
            roots
        }
    };
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::test_support::{Backend, Reply};

    #[test]
    fn urls() {
        let ok = [
            (
                "http://127.0.0.1:8080/jwks?x=1",
                "http://127.0.0.1:8080/jwks",
                "/jwks?x=1",
                8080,
            ),
            (
                "http://localhost/jwks",
                "http://localhost/jwks",
                "/jwks",
                80,
            ),
            ("http://[::1]:9/a", "http://[::1]:9/a", "/a", 9),
            (
                "https://idp.example.com/.well-known/jwks.json",
                "https://idp.example.com/.well-known/jwks.json",
                "/.well-known/jwks.json",
                443,
            ),
        ];
        for (url, display, target, port) in ok {
            let endpoint = Endpoint::new(url, None).unwrap();
            assert_eq!(
                (
                    endpoint.display(),
                    endpoint.to.target.as_str(),
                    endpoint.to.port
                ),
                (display, target, port),
                "{url}"
            );
        }
        let refused = [
            ("http://10.0.0.1/jwks", "plain HTTP"),
            ("http://idp.example.com/jwks", "plain HTTP"),
            ("ftp://127.0.0.1/x", "not an http"),
            ("/jwks", "not an http"),
            ("https://user:pw@idp.example.com/", "not an http"),
        ];
        for (url, message) in refused {
            let error = Endpoint::new(url, None).unwrap_err().to_string();
            assert!(error.contains(message), "{url}: {error}");
        }
        assert!(matches!(
            check_url("https://idp.example.com/jwks"),
            Ok(Scheme::Https)
        ));
        assert!(matches!(
            check_url("http://localhost:8080/jwks"),
            Ok(Scheme::LoopbackHttp)
        ));
        assert!(matches!(
            check_url("http://10.0.0.1/jwks"),
            Err(EndpointError::PlainHttp(_))
        ));
        let missing = Endpoint::new("https://x.example/", Some(Path::new("/nonexistent/ca.pem")))
            .unwrap_err();
        assert!(matches!(missing, EndpointError::CaFile { .. }), "{missing}");
    }

    #[tokio::test]
    async fn reuses_connections_and_bounds_bodies() {
        let backend = Backend::start(|request| {
            let body = if request.uri == "/big" {
                vec![b'x'; 100]
            } else {
                request.body.to_vec()
            };
            Reply::ok(body)
        })
        .await;
        let endpoint = Endpoint::new(&backend.url("/echo"), None).unwrap();
        for round in 0..3 {
            let response = endpoint
                .post_json(
                    Bytes::from(format!("{{\"n\":{round}}}")),
                    Duration::from_secs(5),
                    1024,
                )
                .await
                .unwrap();
            assert_eq!(response.status, StatusCode::OK);
            assert_eq!(response.body, format!("{{\"n\":{round}}}"));
        }
        assert_eq!(backend.requests(), 3);
        assert_eq!(
            backend.connections(),
            1,
            "one kept-alive connection served all three"
        );

        let big = Endpoint::new(&backend.url("/big"), None).unwrap();
        let error = big.get(Duration::from_secs(5), 99).await.unwrap_err();
        assert!(matches!(error, CallError::TooLarge(99)), "{error}");
    }

    #[tokio::test]
    async fn times_out_and_reports_refused_connections() {
        let backend =
            Backend::start(|_| Reply::ok(b"late".to_vec()).after(Duration::from_secs(30))).await;
        let endpoint = Endpoint::new(&backend.url("/slow"), None).unwrap();
        let error = endpoint
            .get(Duration::from_millis(100), 1024)
            .await
            .unwrap_err();
        assert!(matches!(error, CallError::Timeout), "{error}");

        let url = Backend::closed_url("/down");
        let error = Endpoint::new(&url, None)
            .unwrap()
            .get(Duration::from_secs(5), 1024)
            .await
            .unwrap_err();
        assert!(matches!(error, CallError::Connect(_)), "{error}");
    }

    #[tokio::test]
    async fn speaks_https_with_a_configured_ca() {
        let backend = Backend::start_tls(|_| Reply::ok(b"{}".to_vec())).await;
        let endpoint = Endpoint::new(&backend.url("/jwks"), Some(&backend.ca_file())).unwrap();
        let response = endpoint.get(Duration::from_secs(5), 1024).await.unwrap();
        assert_eq!(
            (response.status, &response.body[..]),
            (StatusCode::OK, &b"{}"[..])
        );

        // The system store does not trust the test CA.
        let untrusted = Endpoint::new(&backend.url("/jwks"), None).unwrap();
        let error = untrusted
            .get(Duration::from_secs(5), 1024)
            .await
            .unwrap_err();
        assert!(matches!(error, CallError::Connect(_)), "{error}");
    }
}
