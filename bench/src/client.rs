//! The load generator's WebSocket client: a connection set-up and a hot
//! path that each cost less than the server's side of the same work.
//!
//! - The upgrade request goes out in one write and the answer is parsed
//!   with httparse from one read (a connect burst measures the server, not
//!   an HTTP client's machinery); a 101 without the accept key RFC 6455
//!   derives from the request's key is refused.
//! - Outgoing frames are encoded (and masked) once with fastwebsockets'
//!   `Frame` and written as raw bytes; echo connections reuse the same bytes
//!   for every round trip.
//! - Incoming (unmasked server) frames are parsed in place from one buffer
//!   per connection, without copying or allocating per frame.
//! - With a permessage-deflate offer ([`connect_with`]) the agreement is
//!   read from the server's answer and each data frame reports its RSV1 bit;
//!   inflating is the caller's (see `deflate`).
//! - Pings are answered (with a pong carrying the same payload) when the
//!   next data frame has been read, so that connections held for minutes
//!   (soak, reload) stay alive past the server's idle timeout. On an
//!   Engine.IO connection ([`Conn::answer_engine_io_pings`]) its own pings,
//!   a text message `2`, are answered the same way with `3`.
//! - Every socket is bound to one of several loopback source addresses so
//!   that tens of thousands of connections do not exhaust one address's
//!   ephemeral ports, and closes with RST (zero linger) so that no run leaves
//!   TIME_WAIT sockets behind for the next.

use std::{
    io,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::deflate::{self, Agreement};
use anyhow::Context;
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use fastwebsockets::{Frame, Payload, handshake};
use hyper::header::HeaderValue;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};
use tokio_rustls::{
    TlsConnector,
    rustls::{
        self, DigitallySignedStruct, SignatureScheme,
        client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
};

/// Source addresses 127.0.0.2 ..= 127.0.0.(1 + SOURCE_ADDRESSES): each has
/// its own ~28,000 ephemeral ports.
const SOURCE_ADDRESSES: usize = 16;
static NEXT_SOURCE: AtomicUsize = AtomicUsize::new(0);

/// Frame opcodes (RFC 6455 section 5.2) the load generator reads or writes.
pub const OPCODE_TEXT: u8 = 0x1;
pub const OPCODE_BINARY: u8 = 0x2;
pub const OPCODE_CLOSE: u8 = 0x8;
const OPCODE_PING: u8 = 0x9;
const OPCODE_PONG: u8 = 0xA;

/// Initial read buffer; grown for larger frames. Allocated on first read so
/// that idle connections cost the load generator little.
const READ_BUFFER: usize = 16 * 1024;

/// The server's answer to an upgrade is read into this much at first, and
/// refused past `MAX_ANSWER` bytes or `MAX_ANSWER_HEADERS` headers.
const ANSWER_BUFFER: usize = 1024;
const MAX_ANSWER: usize = 16 * 1024;
const MAX_ANSWER_HEADERS: usize = 32;

/// Hashed with the client's key into the server's `Sec-WebSocket-Accept`
/// (RFC 6455 section 1.3).
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Where to connect: a loopback address, and TLS or not.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    host: String,
    tls: Option<TlsConnector>,
}

impl Target {
    /// Parses `ws://127.0.0.1:PORT` or `wss://127.0.0.1:PORT`. Anything but
    /// a loopback address is refused: this tool only ever loads this machine.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("ws://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("wss://") {
            (true, rest)
        } else {
            anyhow::bail!("{url}: expected ws://127.0.0.1:PORT or wss://127.0.0.1:PORT");
        };
        let authority = rest.trim_end_matches('/');
        let addr: SocketAddr = authority
            .parse()
            .with_context(|| format!("{url}: the host must be an IPv4 address and a port"))?;
        anyhow::ensure!(
            addr.ip().is_loopback(),
            "{url}: only loopback targets (127.0.0.0/8) are allowed"
        );
        Ok(Self {
            addr,
            host: authority.to_owned(),
            tls: tls.then(insecure_tls_connector),
        })
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// A TLS client for the server's self-signed development certificate: it
/// accepts any certificate (a benchmark on loopback, never a real client) and
/// never resumes sessions, so every wss handshake is a full one.
fn insecure_tls_connector() -> TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    TlsConnector::from(Arc::new(config))
}

#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &rustls_pki_types::CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &rustls_pki_types::CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

type BoxedRead = Pin<Box<dyn AsyncRead + Send>>;
type BoxedWrite = Pin<Box<dyn AsyncWrite + Send>>;

/// An open WebSocket connection, split for the hot path.
pub struct Conn {
    read: BoxedRead,
    write: BoxedWrite,
    reader: FrameReader,
    /// The permessage-deflate parameters the server accepted, if any.
    pub deflate: Option<Agreement>,
    /// How long the TCP connect took (the rest of the set-up is TLS and the
    /// upgrade): the connect-burst scenario tells lost SYNs apart with it.
    pub tcp_connect: Duration,
    /// Bytes of `reader.pongs` already written: pongs go out a write at a
    /// time, so that a read cancelled in a `select!` never leaves half a
    /// frame on the wire.
    pongs_written: usize,
}

async fn tcp_connect(addr: SocketAddr) -> io::Result<(TcpStream, Duration)> {
    let index = NEXT_SOURCE.fetch_add(1, Ordering::Relaxed) % SOURCE_ADDRESSES;
    let source = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2 + index as u8), 0);
    let socket = TcpSocket::new_v4()?;
    socket.bind(source.into())?;
    let started = Instant::now();
    let stream = socket.connect(addr).await?;
    let elapsed = started.elapsed();
    stream.set_nodelay(true)?;
    stream.set_zero_linger()?;
    Ok((stream, elapsed))
}

/// Connects and upgrades to a WebSocket on `path` with fastwebsockets'
/// client handshake, without extensions.
pub async fn connect(target: &Target, path: &str) -> anyhow::Result<Conn> {
    connect_with(target, path, None).await
}

/// Connects and upgrades, sending `offer` (such as [`deflate::OFFER`] or
/// [`deflate::BROWSER_OFFER`]) as `Sec-WebSocket-Extensions` if given;
/// `Conn::deflate` says what the server accepted.
pub async fn connect_with(
    target: &Target,
    path: &str,
    offer: Option<&str>,
) -> anyhow::Result<Conn> {
    upgrade(target, path, offer, None).await
}

/// Connects and upgrades with `authorization` (such as `Bearer <token>`,
/// made before the run: cloning a `HeaderValue` shares its bytes) as the
/// `Authorization` header, without extensions.
pub async fn connect_authorized(
    target: &Target,
    path: &str,
    authorization: &HeaderValue,
) -> anyhow::Result<Conn> {
    upgrade(target, path, None, Some(authorization)).await
}

async fn upgrade(
    target: &Target,
    path: &str,
    offer: Option<&str>,
    authorization: Option<&HeaderValue>,
) -> anyhow::Result<Conn> {
    let (tcp, tcp_connect) = tcp_connect(target.addr).await.context("connect")?;
    let key = handshake::generate_key();
    let request = upgrade_request(&target.host, path, &key, offer, authorization);
    match &target.tls {
        None => {
            let mut tcp = tcp;
            let (leftover, deflate) = exchange(&mut tcp, &request, &key).await?;
            let (read, write) = tcp.into_split();
            Ok(Conn::new(
                Box::pin(read),
                Box::pin(write),
                leftover,
                deflate,
                tcp_connect,
            ))
        }
        Some(connector) => {
            let name =
                rustls_pki_types::ServerName::try_from("localhost").expect("a valid DNS name");
            let mut tls = connector
                .connect(name, tcp)
                .await
                .context("TLS handshake")?;
            let (leftover, deflate) = exchange(&mut tls, &request, &key).await?;
            let (read, write) = tokio::io::split(tls);
            Ok(Conn::new(
                Box::pin(read),
                Box::pin(write),
                leftover,
                deflate,
                tcp_connect,
            ))
        }
    }
}

/// The upgrade request (RFC 6455 section 4.1), written in one piece.
fn upgrade_request(
    host: &str,
    path: &str,
    key: &str,
    offer: Option<&str>,
    authorization: Option<&HeaderValue>,
) -> Vec<u8> {
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    )
    .into_bytes();
    if let Some(offer) = offer {
        request.extend_from_slice(format!("Sec-WebSocket-Extensions: {offer}\r\n").as_bytes());
    }
    if let Some(authorization) = authorization {
        request.extend_from_slice(b"Authorization: ");
        request.extend_from_slice(authorization.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    request
}

/// Sends `request` and reads the server's answer: it must be a 101 whose
/// `Sec-WebSocket-Accept` is the one RFC 6455 derives from `key`. Returns
/// the bytes read past the answer (frames the server sent at once) and the
/// permessage-deflate parameters it accepted.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &[u8],
    key: &str,
) -> anyhow::Result<(Vec<u8>, Option<Agreement>)> {
    stream
        .write_all(request)
        .await
        .context("send the upgrade request")?;
    let mut answer = Vec::with_capacity(ANSWER_BUFFER);
    loop {
        if answer.len() == answer.capacity() {
            anyhow::ensure!(
                answer.len() < MAX_ANSWER,
                "the server's answer to the upgrade is over {MAX_ANSWER} bytes"
            );
            answer.reserve(answer.len());
        }
        let read = stream
            .read_buf(&mut answer)
            .await
            .context("read the answer")?;
        anyhow::ensure!(read > 0, "the server closed before answering the upgrade");
        let mut headers = [httparse::EMPTY_HEADER; MAX_ANSWER_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head) = response.parse(&answer).context("the answer")?
        else {
            continue;
        };
        anyhow::ensure!(
            response.code == Some(101),
            "the server answered {:?} instead of 101",
            response.code
        );
        let header = |name: &str| {
            response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .and_then(|h| std::str::from_utf8(h.value).ok())
        };
        anyhow::ensure!(
            header("sec-websocket-accept") == Some(accept_key(key).as_str()),
            "the server's Sec-WebSocket-Accept does not match the key sent"
        );
        let deflate = deflate::agreement(header("sec-websocket-extensions"));
        return Ok((answer[head..].to_vec(), deflate));
    }
}

/// The `Sec-WebSocket-Accept` a server answers `key` with (RFC 6455
/// section 4.2.2): base64 of the SHA-1 of the key and the protocol's GUID.
fn accept_key(key: &str) -> String {
    let mut hashed = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    hashed.update(key.as_bytes());
    hashed.update(WEBSOCKET_GUID.as_bytes());
    BASE64.encode(hashed.finish())
}

impl Conn {
    fn new(
        read: BoxedRead,
        write: BoxedWrite,
        leftover: Vec<u8>,
        deflate: Option<Agreement>,
        tcp_connect: Duration,
    ) -> Self {
        Self {
            read,
            write,
            reader: FrameReader::new(leftover),
            deflate,
            tcp_connect,
            pongs_written: 0,
        }
    }

    /// Writes already encoded frames (after any pong still due).
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.flush_pongs().await?;
        self.write.write_all(bytes).await
    }

    /// Writes the pongs due. Cancel-safe: progress is kept per write.
    async fn flush_pongs(&mut self) -> io::Result<()> {
        while self.pongs_written < self.reader.pongs.len() {
            let n = self
                .write
                .write(&self.reader.pongs[self.pongs_written..])
                .await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.pongs_written += n;
        }
        self.reader.pongs.clear();
        self.pongs_written = 0;
        Ok(())
    }

    /// Waits for at least one whole data frame and hands each buffered one
    /// to `on_frame` (its payload). Returns how many data frames it saw; a
    /// close frame or the end of the stream is an error.
    pub async fn read_frames(&mut self, mut on_frame: impl FnMut(&[u8])) -> io::Result<usize> {
        self.read_frames_rsv1(|payload, _| on_frame(payload)).await
    }

    /// Like [`Conn::read_frames`], also passing each frame's RSV1 bit (set:
    /// a compressed message). Server messages are unfragmented. Answers the
    /// pings read on the way.
    pub async fn read_frames_rsv1(
        &mut self,
        on_frame: impl FnMut(&[u8], bool),
    ) -> io::Result<usize> {
        let frames = self.reader.read_frames(&mut self.read, on_frame).await?;
        self.flush_pongs().await?;
        Ok(frames)
    }

    /// Closes with a close handshake: sends a close frame with `code` and
    /// reads (discarding data) until the server's close frame or the end of
    /// the stream. Returns the server's close code, if it sent one.
    pub async fn close(mut self, code: u16) -> io::Result<Option<u16>> {
        let mut frame = Vec::with_capacity(8);
        encode_frame_with(OPCODE_CLOSE, false, &code.to_be_bytes(), &mut frame);
        self.write.write_all(&frame).await?;
        loop {
            if let Err(error) = self.read_frames(|_| {}).await {
                return match self.reader.close_code {
                    Some(code) => Ok(Some(code)),
                    None if error.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
                    None => Err(error),
                };
            }
        }
    }

    /// The code of the close frame the server sent, once one was read.
    pub fn close_code(&self) -> Option<u16> {
        self.reader.close_code
    }

    /// From now on answers Engine.IO pings (a text message `2`) with a pong
    /// (`3`) as WebSocket pings are answered, without handing them to the
    /// caller: the connection carries Socket.IO.
    pub fn answer_engine_io_pings(&mut self) {
        self.reader.engine_io = true;
    }
}

/// Encodes one masked client frame (binary) with fastwebsockets.
pub fn encode_frame(payload: &[u8], out: &mut Vec<u8>) {
    let mut frame = Frame::binary(Payload::Owned(payload.to_vec()));
    frame.mask();
    let mut scratch = Vec::new();
    out.extend_from_slice(frame.write(&mut scratch));
}

/// Encodes one masked client frame by hand: `opcode` (text, binary or a
/// control frame), with RSV1 for a compressed payload, which fastwebsockets'
/// `Frame` cannot set.
pub fn encode_frame_with(opcode: u8, rsv1: bool, payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x80 | if rsv1 { 0x40 } else { 0 } | opcode);
    match payload.len() {
        len @ 0..=125 => out.push(0x80 | len as u8),
        len @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    let mask = next_mask();
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
}

/// A fresh masking key (xorshift; a benchmark needs no cryptographic one).
fn next_mask() -> [u8; 4] {
    static STATE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0x9E37_79B9);
    let mut x = STATE.load(Ordering::Relaxed);
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    STATE.store(x, Ordering::Relaxed);
    x.to_be_bytes()
}

struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Pongs (encoded) answering the pings read, for the caller to write.
    pongs: Vec<u8>,
    /// The code of the server's close frame, once read.
    close_code: Option<u16>,
    /// Whether Engine.IO pings (text `2`) are answered (text `3`) and kept
    /// from the caller.
    engine_io: bool,
}

/// Engine.IO's heartbeat: the server's ping and the client's answer, each a
/// text message of one packet-type character.
const ENGINE_IO_PING: &[u8] = b"2";
const ENGINE_IO_PONG: &[u8] = b"3";

impl FrameReader {
    fn new(leftover: Vec<u8>) -> Self {
        Self {
            end: leftover.len(),
            buf: leftover,
            start: 0,
            pongs: Vec::new(),
            close_code: None,
            engine_io: false,
        }
    }

    async fn read_frames(
        &mut self,
        read: &mut BoxedRead,
        mut on_frame: impl FnMut(&[u8], bool),
    ) -> io::Result<usize> {
        loop {
            let mut frames = 0;
            let mut needed = 0;
            while let Some(parsed) = parse_frame(&self.buf[self.start..self.end]) {
                match parsed {
                    Parsed::Frame {
                        opcode,
                        rsv1,
                        header,
                        len,
                    } => {
                        let payload = &self.buf[self.start + header..self.start + header + len];
                        match opcode {
                            OPCODE_TEXT if self.engine_io && payload == ENGINE_IO_PING => {
                                encode_frame_with(
                                    OPCODE_TEXT,
                                    false,
                                    ENGINE_IO_PONG,
                                    &mut self.pongs,
                                )
                            }
                            OPCODE_TEXT | OPCODE_BINARY => {
                                on_frame(payload, rsv1);
                                frames += 1;
                            }
                            OPCODE_CLOSE => {
                                if let [a, b, ..] = payload {
                                    self.close_code = Some(u16::from_be_bytes([*a, *b]));
                                }
                                return Err(io::Error::new(
                                    io::ErrorKind::ConnectionAborted,
                                    close_reason(payload),
                                ));
                            }
                            OPCODE_PING => {
                                encode_frame_with(OPCODE_PONG, false, payload, &mut self.pongs)
                            }
                            _ => {}
                        }
                        self.start += header + len;
                    }
                    Parsed::Incomplete(total) => {
                        needed = total;
                        break;
                    }
                }
            }
            if frames > 0 {
                return Ok(frames);
            }
            // Make room for the rest of the frame, then read.
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
            }
            let wanted = needed.max(READ_BUFFER);
            if self.buf.len() - self.start < wanted {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                if self.buf.len() < wanted {
                    self.buf.resize(wanted, 0);
                }
            }
            let n = read.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.end += n;
        }
    }
}

fn close_reason(payload: &[u8]) -> String {
    match payload {
        [a, b, reason @ ..] => format!(
            "closed by the server: {} {}",
            u16::from_be_bytes([*a, *b]),
            String::from_utf8_lossy(reason)
        ),
        _ => "closed by the server".to_owned(),
    }
}

enum Parsed {
    Frame {
        opcode: u8,
        /// Set on the first frame of a compressed message.
        rsv1: bool,
        header: usize,
        len: usize,
    },
    /// Not a whole frame yet; the value is its total length when known
    /// (else 0).
    Incomplete(usize),
}

/// Parses one unmasked server frame header. `None` for an empty buffer.
fn parse_frame(bytes: &[u8]) -> Option<Parsed> {
    if bytes.is_empty() {
        return None;
    }
    if bytes.len() < 2 {
        return Some(Parsed::Incomplete(0));
    }
    let opcode = bytes[0] & 0x0F;
    let masked = bytes[1] & 0x80 != 0;
    let (mut header, len) = match bytes[1] & 0x7F {
        126 if bytes.len() >= 4 => (4, u16::from_be_bytes([bytes[2], bytes[3]]) as usize),
        127 if bytes.len() >= 10 => (
            10,
            u64::from_be_bytes(bytes[2..10].try_into().expect("8 bytes")) as usize,
        ),
        126 | 127 => return Some(Parsed::Incomplete(0)),
        len => (2, len as usize),
    };
    if masked {
        header += 4;
    }
    if bytes.len() < header + len {
        return Some(Parsed::Incomplete(header + len));
    }
    Some(Parsed::Frame {
        opcode,
        rsv1: bytes[0] & 0x40 != 0,
        header,
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_length_form_and_waits_for_the_rest() {
        let mut frame = vec![0x82, 126, 0x01, 0x00];
        frame.extend(vec![7; 256]);
        assert!(matches!(
            parse_frame(&frame),
            Some(Parsed::Frame {
                opcode: 2,
                rsv1: false,
                header: 4,
                len: 256
            })
        ));
        assert!(matches!(
            parse_frame(&frame[..100]),
            Some(Parsed::Incomplete(260))
        ));
        assert!(matches!(
            parse_frame(&[0xC1, 3, b'a', b'b', b'c']),
            Some(Parsed::Frame {
                opcode: 1,
                rsv1: true,
                header: 2,
                len: 3
            })
        ));
        assert!(matches!(
            parse_frame(&[0x82, 127, 0]),
            Some(Parsed::Incomplete(0))
        ));
        assert!(parse_frame(&[]).is_none());
    }

    #[test]
    fn the_accept_key_is_the_rfcs() {
        // RFC 6455 section 1.3's example.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    /// A scripted server's answer, split over two reads, with a frame behind
    /// it; and answers the client must refuse.
    #[tokio::test]
    async fn the_answer_is_checked_and_what_follows_it_kept() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let answer = |status: &str, accept: &str| {
            format!(
                "HTTP/1.1 {status}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {accept}\r\n\
                 Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n"
            )
            .into_bytes()
        };
        let good = answer("101 Switching Protocols", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let (client, mut server) = tokio::io::duplex(64);
        let serve = async move {
            let mut request = vec![0; 4];
            server.read_exact(&mut request).await.unwrap();
            server.write_all(&good[..20]).await.unwrap();
            server.write_all(&good[20..]).await.unwrap();
            server.write_all(&[0x82, 1, b'x']).await.unwrap();
            server
        };
        let mut client = client;
        let (exchanged, _server) = tokio::join!(exchange(&mut client, b"GET ", key), serve);
        let (leftover, deflate) = exchanged.unwrap();
        assert_eq!(leftover, [0x82, 1, b'x']);
        assert!(deflate.is_some());

        for (status, accept) in [
            ("200 OK", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            ("101 Switching Protocols", "wrong"),
        ] {
            let bad = answer(status, accept);
            let (mut client, mut server) = tokio::io::duplex(1024);
            server.write_all(&bad).await.unwrap();
            assert!(
                exchange(&mut client, b"GET ", key).await.is_err(),
                "{status} {accept}"
            );
        }
    }

    #[tokio::test]
    async fn pings_are_answered_and_the_close_code_kept() {
        // A ping and a message left over from the handshake; the close
        // arrives later.
        let leftover = vec![0x89, 2, b'h', b'i', 0x82, 1, b'x'];
        let mut reader = FrameReader::new(leftover);
        let later = std::io::Cursor::new(vec![0x88, 4, 0x03, 0xF5, b'b', b'y']);
        let mut read: BoxedRead = Box::pin(later);
        let mut seen = Vec::new();
        let frames = reader
            .read_frames(&mut read, |payload, _| seen.push(payload.to_vec()))
            .await
            .unwrap();
        assert_eq!((frames, seen), (1, vec![b"x".to_vec()]));
        // One masked pong carrying the ping's payload.
        let pong = &reader.pongs;
        assert_eq!(pong[..2], [0x8A, 0x80 | 2]);
        let unmasked: Vec<u8> = pong[6..]
            .iter()
            .zip(&pong[2..6])
            .map(|(b, m)| b ^ m)
            .collect();
        assert_eq!(unmasked, b"hi");
        let closed = reader.read_frames(&mut read, |_, _| {}).await.unwrap_err();
        assert_eq!(closed.kind(), io::ErrorKind::ConnectionAborted);
        assert_eq!(reader.close_code, Some(1013));
    }

    #[tokio::test]
    async fn engine_io_pings_are_answered_only_when_asked() {
        let frames = [0x81, 1, b'2', 0x81, 3, b'4', b'2', b'x'];
        for engine_io in [false, true] {
            let mut reader = FrameReader::new(frames.to_vec());
            reader.engine_io = engine_io;
            let mut read: BoxedRead = Box::pin(std::io::Cursor::new(Vec::new()));
            let mut seen = Vec::new();
            reader
                .read_frames(&mut read, |payload, _| seen.push(payload.to_vec()))
                .await
                .unwrap();
            if engine_io {
                assert_eq!(seen, vec![b"42x".to_vec()]);
                let pong = &reader.pongs;
                assert_eq!(pong[..2], [0x81, 0x80 | 1]);
                assert_eq!(pong[6] ^ pong[2], b'3');
            } else {
                assert_eq!(seen, vec![b"2".to_vec(), b"42x".to_vec()]);
                assert!(reader.pongs.is_empty());
            }
        }
    }

    #[test]
    fn client_frames_are_masked() {
        let mut out = Vec::new();
        encode_frame(&[1, 2, 3], &mut out);
        assert_eq!(out[0], 0x82);
        assert_eq!(out[1], 0x80 | 3);
        assert_eq!(out.len(), 2 + 4 + 3);
    }

    #[test]
    fn hand_encoded_frames_are_masked_with_rsv1() {
        for len in [0, 3, 125, 126, 1500, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = Vec::new();
            encode_frame_with(1, true, &payload, &mut out);
            assert_eq!(out[0], 0xC1);
            assert_eq!(out[1] & 0x80, 0x80, "masked");
            let header = match len {
                0..=125 => 2,
                126..=0xFFFF => 4,
                _ => 10,
            };
            assert_eq!(out.len(), header + 4 + len);
            let mask = &out[header..header + 4];
            let unmasked: Vec<u8> = out[header + 4..]
                .iter()
                .zip(mask.iter().cycle())
                .map(|(b, m)| b ^ m)
                .collect();
            assert_eq!(unmasked, payload, "length {len}");
        }
    }
}
