//! One connection to one Redis: TCP, TLS (rustls with ring) or a unix
//! socket, the handshake (AUTH, SELECT, CLIENT SETNAME), and reading and
//! writing RESP under the link's timeout.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::BytesMut;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::{TcpStream, UnixStream},
};
use tokio_rustls::{
    TlsConnector,
    client::TlsStream,
    rustls::{self, RootCertStore, pki_types::ServerName},
};

use super::{
    error::LinkError,
    resp::{self, Value},
    settings::{Address, ClusterSettings, Password, TlsRoots},
};

/// How much the read buffer grows by at a time: a pub/sub push of a
/// typical WebSocket message fits, and a burst of them needs few reads.
const READ_CHUNK: usize = 64 * 1024;

/// A byte stream to Redis.
pub(crate) enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Unix(UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Tls(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Unix(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Unix(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            Self::Tls(stream) => Pin::new(stream).poll_flush(cx),
            Self::Unix(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Unix(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}

/// An established, authenticated connection with its read buffer.
pub(crate) struct Connection {
    stream: Stream,
    buf: BytesMut,
    address: String,
    timeout: Duration,
}

impl Connection {
    /// The address, for errors and logs.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// The next whole value already in the buffer.
    pub(crate) fn next_value(&mut self) -> Result<Option<Value>, LinkError> {
        resp::parse(&mut self.buf).map_err(|e| LinkError::Protocol(e.to_string()))
    }

    /// Reads more bytes into the buffer; end of stream is an error.
    /// Cancel safe: bytes read are never lost.
    pub(crate) async fn fill(&mut self) -> Result<(), LinkError> {
        self.buf.reserve(READ_CHUNK);
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => Err(self.io_error(io::ErrorKind::UnexpectedEof.into())),
            Ok(_) => Ok(()),
            Err(error) => Err(self.io_error(error)),
        }
    }

    /// Writes `bytes` whole, within the timeout (a paused Redis stops
    /// reading, and a full socket must not stall the link forever).
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        match tokio::time::timeout(self.timeout, self.stream.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(self.io_error(error)),
            Err(_) => Err(self.timed_out()),
        }
    }

    /// Sends one command and waits for its reply, within the timeout; an
    /// error reply is an error.
    pub(crate) async fn call(&mut self, args: &[&[u8]]) -> Result<Value, LinkError> {
        self.write(&resp::command(args)).await?;
        let reply = match tokio::time::timeout(self.timeout, self.read_value()).await {
            Ok(reply) => reply?,
            Err(_) => return Err(self.timed_out()),
        };
        match reply {
            Value::Error(message) => Err(LinkError::Redis(
                String::from_utf8_lossy(&message).into_owned(),
            )),
            reply => Ok(reply),
        }
    }

    async fn read_value(&mut self) -> Result<Value, LinkError> {
        loop {
            if let Some(value) = self.next_value()? {
                return Ok(value);
            }
            self.fill().await?;
        }
    }

    fn io_error(&self, source: io::Error) -> LinkError {
        LinkError::Io {
            address: self.address.clone(),
            source,
        }
    }

    pub(crate) fn timed_out(&self) -> LinkError {
        LinkError::Timeout {
            address: self.address.clone(),
            timeout: self.timeout,
        }
    }
}

/// Opens authenticated connections to the Redis nodes of one deployment.
pub(crate) struct Connector {
    tls: Option<TlsConnector>,
    username: Option<String>,
    password: Option<Password>,
    database: u32,
    timeout: Duration,
    node_name: String,
}

impl Connector {
    /// Builds the TLS client up front when the URL asks for TLS, so a
    /// missing trust store is an error at start rather than at each connect.
    pub(crate) fn new(settings: &ClusterSettings) -> Result<Self, LinkError> {
        let tls = match &settings.url.address {
            Address::Tcp { tls: true, .. } => Some(tls_connector(&settings.tls_roots)?),
            _ => None,
        };
        Ok(Self {
            tls,
            username: settings.url.username.clone(),
            password: settings.password.clone(),
            database: settings.url.database,
            timeout: settings.probe_timeout,
            node_name: settings.node_name.clone(),
        })
    }

    /// Connects to `address` and runs the handshake, all within the
    /// timeout. `tls_name` is the name the server's certificate must carry;
    /// `role` names the connection in Redis's `CLIENT LIST`.
    pub(crate) async fn connect(
        &self,
        address: &Address,
        tls_name: &str,
        role: &str,
    ) -> Result<Connection, LinkError> {
        let name = address.to_string();
        let timed_out = || LinkError::Timeout {
            address: name.clone(),
            timeout: self.timeout,
        };
        let deadline = tokio::time::Instant::now() + self.timeout;
        let stream = tokio::time::timeout_at(deadline, self.open(address, tls_name))
            .await
            .map_err(|_| timed_out())?
            .map_err(|source| LinkError::Io {
                address: name.clone(),
                source,
            })?;
        let mut connection = Connection {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            address: name.clone(),
            timeout: self.timeout,
        };
        tokio::time::timeout_at(deadline, self.handshake(&mut connection, role))
            .await
            .map_err(|_| timed_out())??;
        Ok(connection)
    }

    async fn open(&self, address: &Address, tls_name: &str) -> io::Result<Stream> {
        match address {
            Address::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path).await?)),
            Address::Tcp { host, port, tls } => {
                let tcp = TcpStream::connect((host.as_str(), *port)).await?;
                // Pub/sub is latency-bound small writes: never wait for Nagle.
                tcp.set_nodelay(true)?;
                match (&self.tls, tls) {
                    (Some(connector), true) => {
                        let server_name = ServerName::try_from(tls_name.to_owned())
                            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                        Ok(Stream::Tls(Box::new(
                            connector.connect(server_name, tcp).await?,
                        )))
                    }
                    (None, true) => Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "TLS requested but the URL is not rediss://",
                    )),
                    (_, false) => Ok(Stream::Tcp(tcp)),
                }
            }
        }
    }

    async fn handshake(&self, connection: &mut Connection, role: &str) -> Result<(), LinkError> {
        if let Some(password) = &self.password {
            let password = password.expose().as_bytes();
            match &self.username {
                Some(user) => {
                    connection
                        .call(&[b"AUTH", user.as_bytes(), password])
                        .await?
                }
                None => connection.call(&[b"AUTH", password]).await?,
            };
        }
        if self.database != 0 {
            connection
                .call(&[b"SELECT", self.database.to_string().as_bytes()])
                .await?;
        }
        let client_name = format!("wsedge-{}-{role}", self.node_name);
        connection
            .call(&[b"CLIENT", b"SETNAME", client_name.as_bytes()])
            .await?;
        Ok(())
    }
}

fn tls_connector(roots: &TlsRoots) -> Result<TlsConnector, LinkError> {
    let roots = match roots {
        TlsRoots::Custom(roots) => Arc::clone(roots),
        TlsRoots::System => {
            let found = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(LinkError::Tls(format!(
                    "no trusted certificate authority found in the system store ({} errors)",
                    found.errors.len()
                )));
            }
            Arc::new(store)
        }
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| LinkError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}
