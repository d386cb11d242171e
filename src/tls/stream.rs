//! The server side of a TLS connection: rustls's state machine, our
//! buffers, which exist only while bytes are in them.
//!
//! rustls's buffered connection reads into a receive buffer it keeps for
//! the connection's whole life, never smaller than 4 KiB: more than
//! everything else an idle wss connection holds. Over rustls's unbuffered
//! API the bytes are ours: a read allocates the receive buffer, which is
//! freed once its records are processed and no partial record is left;
//! what is encrypted is freed once the socket has taken it; decrypted data
//! is kept only until the reader takes it. An idle connection holds
//! rustls's state and the socket.
//!
//! The reader and the writer share the stream (behind the lock of tokio's
//! split after the upgrade). What the reader has to send itself (session
//! tickets, alerts, the reply to a key update) it queues in front of the
//! writer's records and sends only what the socket takes at once, so that
//! it never takes the writer's wake-up; the rest goes out with the
//! writer's next write or flush, which is when TLS 1.3 asks for a key
//! update's reply (before the next application data).

use std::{
    cell::RefCell,
    io::{self, IoSlice},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::rustls::{
    self, ServerConfig,
    server::UnbufferedServerConnection,
    unbuffered::{
        ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
    },
};

/// Room made for one read from the socket: a full record's plaintext (a
/// longer record completes on the next read).
const READ_SIZE: usize = 16 * 1024;

/// The most plaintext one write encrypts (a vectored one gathers): what a
/// connection holds encrypted and unsent is at most this much (plus the
/// records' overhead); the writer's batches are cut into records of up to
/// 16 KiB anyway.
const MAX_ENCRYPTED: usize = 64 * 1024;

/// What the stream needs of its socket beyond writing: to wait until there
/// is something to read without a buffer to read it into, and reads and
/// writes that never wait (and so never take another task's wake-up).
pub(crate) trait Socket: AsyncWrite + Unpin {
    /// Ready once the socket has something to read (or has failed).
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Reads what the socket has now into `buf`'s spare room.
    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize>;
    /// Writes what the socket takes now.
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
}

thread_local! {
    /// Where a vectored write's slices are gathered, kept by the thread: a
    /// connection holds no buffer for it, and a write allocates none.
    static GATHERED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A TLS connection after its handshake, readable and writable as plaintext.
pub(crate) struct TlsStream<S> {
    io: S,
    conn: UnbufferedServerConnection,
    /// Received bytes not yet processed: at rest, a partial record or nothing.
    received: BytesMut,
    /// Decrypted application data the reader has not taken yet.
    plaintext: BytesMut,
    /// Encoded records the socket has not taken yet, in sending order.
    sending: BytesMut,
    /// The peer sent close_notify: `plaintext` holds the last of its data.
    peer_closed: bool,
    /// Our close_notify is queued.
    close_queued: bool,
    /// TLS failed (a fatal alert is out): every later call answers this.
    failed: Option<io::ErrorKind>,
}

/// Where the state machine stopped.
enum Rest {
    /// The handshake waits for the client's next bytes.
    Handshaking,
    /// Application data can be sent (and was, if it was given).
    Open,
    /// Both sides sent close_notify.
    Closed,
}

/// What a turn of the state machine sends once the connection is open.
#[derive(Clone, Copy)]
enum Outgoing<'a> {
    Nothing,
    Data(&'a [u8]),
    CloseNotify,
}

/// Runs the handshake on an accepted connection. The caller bounds it in
/// time; an error is the client's (a bad or unsupported hello, a closed
/// socket), after the alert rustls chose has been sent if the socket took it.
pub(crate) async fn accept<S: Socket>(
    io: S,
    config: Arc<ServerConfig>,
) -> io::Result<TlsStream<S>> {
    let conn = UnbufferedServerConnection::new(config).map_err(invalid)?;
    let mut stream = TlsStream {
        io,
        conn,
        received: BytesMut::new(),
        plaintext: BytesMut::new(),
        sending: BytesMut::new(),
        peer_closed: false,
        close_queued: false,
        failed: None,
    };
    std::future::poll_fn(|cx| stream.poll_handshake(cx)).await?;
    stream.release_received();
    Ok(stream)
}

impl<S: Socket> TlsStream<S> {
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let rest = match self.turn(Outgoing::Nothing, None) {
                Ok(rest) => rest,
                Err(error) => return Poll::Ready(Err(self.fail(error))),
            };
            // The flight just queued goes out before the client's next one is awaited.
            ready!(self.poll_send(cx))?;
            match rest {
                Rest::Open => return Poll::Ready(Ok(())),
                Rest::Handshaking => {
                    if ready!(self.poll_receive(cx))? == 0 {
                        return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                    }
                }
                Rest::Closed => return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
            }
        }
    }

    /// Runs the state machine over what was received until it rests:
    /// decrypted data is kept for the reader, whatever rustls has to send is
    /// queued, and `outgoing` is encrypted once the connection is open.
    ///
    /// Decrypted data goes straight into `into` while it has room (and
    /// nothing is kept before it), the rest into `plaintext`.
    fn turn(
        &mut self,
        mut outgoing: Outgoing<'_>,
        mut into: Option<&mut ReadBuf<'_>>,
    ) -> Result<Rest, rustls::Error> {
        let Self {
            conn,
            received,
            plaintext,
            sending,
            peer_closed,
            ..
        } = self;
        loop {
            let UnbufferedStatus { mut discard, state } = conn.process_tls_records(received);
            let state = match state {
                Ok(state) => state,
                Err(error) => {
                    received.advance(discard);
                    return Err(error);
                }
            };
            let rest = match state {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record?;
                        discard += record.discard;
                        let mut payload = record.payload;
                        if let Some(buf) = into.as_deref_mut()
                            && plaintext.is_empty()
                        {
                            let taken = payload.len().min(buf.remaining());
                            buf.put_slice(&payload[..taken]);
                            payload = &payload[taken..];
                        }
                        plaintext.extend_from_slice(payload);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    append(sending, |buf| encode.encode(buf).map_err(encode_room))?;
                    None
                }
                // What was encoded waits in `sending`, which the socket
                // takes before anything queued after it.
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    None
                }
                ConnectionState::PeerClosed => {
                    *peer_closed = true;
                    None
                }
                ConnectionState::Closed => Some(Rest::Closed),
                ConnectionState::BlockedHandshake => Some(Rest::Handshaking),
                ConnectionState::WriteTraffic(mut traffic) => {
                    match outgoing {
                        Outgoing::Nothing => {}
                        Outgoing::Data(data) => append(sending, |buf| {
                            traffic.encrypt(data, buf).map_err(encrypt_room)
                        })?,
                        Outgoing::CloseNotify => append(sending, |buf| {
                            traffic.queue_close_notify(buf).map_err(encrypt_room)
                        })?,
                    }
                    outgoing = Outgoing::Nothing;
                    Some(Rest::Open)
                }
                // Early data is off (the configuration accepts none).
                _ => return Err(rustls::Error::General("unexpected TLS state".into())),
            };
            received.advance(discard);
            if let Some(rest) = rest {
                return Ok(rest);
            }
        }
    }

    /// Queues the alert rustls chose for `error` and sends it if the socket
    /// takes it now; the stream is failed after: nothing more is asked of
    /// rustls, whose state may point into what was received (asked to
    /// deframe again, it can fail again or index a buffer it no longer
    /// has).
    fn fail(&mut self, error: rustls::Error) -> io::Error {
        // The alert comes out before anything is deframed again.
        let UnbufferedStatus { state, .. } = self.conn.process_tls_records(&mut self.received);
        if let Ok(ConnectionState::EncodeTlsData(mut encode)) = state {
            let _ = append(&mut self.sending, |buf| {
                encode.encode(buf).map_err(encode_room)
            });
        }
        self.received = BytesMut::new();
        self.plaintext = BytesMut::new();
        let _ = self.send_now();
        let error = invalid(error);
        self.failed = Some(error.kind());
        error
    }

    /// The error a failed stream answers everything with.
    fn failed(&self) -> Option<io::Error> {
        self.failed.map(io::Error::from)
    }

    /// Reads what the socket has into `received`; Ready(0) at the end of
    /// the stream. The buffer is made once there are bytes for it: a
    /// connection waiting for its client holds none.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.io.poll_read_ready(cx))?;
            self.received.reserve(READ_SIZE);
            match self.io.try_read_buf(&mut self.received) {
                // Readiness was stale; the failed read cleared it.
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => self.release_received(),
                read => return Poll::Ready(read),
            }
        }
    }

    /// Frees the receive buffer once it holds nothing (no partial record).
    fn release_received(&mut self) {
        if self.received.is_empty() {
            self.received = BytesMut::new();
        }
    }

    /// Writes what is queued; Ready once the socket has taken all of it.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.sending.is_empty() {
            let written = ready!(Pin::new(&mut self.io).poll_write(cx, &self.sending))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sending.advance(written);
        }
        self.sending = BytesMut::new();
        Poll::Ready(Ok(()))
    }

    /// Writes what the socket takes now, without registering for a wake-up.
    fn send_now(&mut self) -> io::Result<()> {
        while !self.sending.is_empty() {
            match self.io.try_write(&self.sending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => self.sending.advance(written),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) => return Err(error),
            }
        }
        self.sending = BytesMut::new();
        Ok(())
    }
}

impl<S: Socket> AsyncRead for TlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(error) = this.failed() {
            return Poll::Ready(Err(error));
        }
        loop {
            if !this.plaintext.is_empty() || buf.remaining() == 0 {
                let taken = this.plaintext.len().min(buf.remaining());
                buf.put_slice(&this.plaintext[..taken]);
                this.plaintext.advance(taken);
                if this.plaintext.is_empty() {
                    this.plaintext = BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            if this.peer_closed {
                return Poll::Ready(Ok(()));
            }
            if ready!(this.poll_receive(cx))? == 0 {
                // A truncation attack looks the same: only close_notify
                // says the data is complete.
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the client closed the connection without close_notify",
                )));
            }
            let before = buf.filled().len();
            let rest = this.turn(Outgoing::Nothing, Some(buf));
            this.release_received();
            match rest {
                Ok(Rest::Closed) => this.peer_closed = true,
                Ok(_) => {}
                Err(error) => return Poll::Ready(Err(this.fail(error))),
            }
            // A socket that cannot send is the writer's to report: what
            // was just decrypted is handed out first.
            let _ = this.send_now();
            if buf.filled().len() > before {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: Socket> AsyncWrite for TlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(error) = this.failed() {
            return Poll::Ready(Err(error));
        }
        // What was queued before goes first, and bounds what is buffered to
        // one write's worth.
        ready!(this.poll_send(cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // A large frame (a shared fan-out frame is one chunk) is encrypted a
        // piece at a time, as the socket takes it: a connection that stopped
        // reading holds one piece of ciphertext, not the whole message.
        let data = &data[..data.len().min(MAX_ENCRYPTED)];
        match this.turn(Outgoing::Data(data), None) {
            Ok(Rest::Open) => {}
            Ok(_) => return Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
            Err(error) => return Poll::Ready(Err(this.fail(error))),
        }
        // Sent now if the socket takes it; otherwise by the next write or flush.
        if let Poll::Ready(Err(error)) = this.poll_send(cx) {
            return Poll::Ready(Err(error));
        }
        Poll::Ready(Ok(data.len()))
    }

    /// Gathers the slices into one plaintext, encrypted as one run of
    /// records: a frame's header and payload in one record, not two.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        GATHERED.with_borrow_mut(|gathered| {
            gathered.clear();
            for buf in bufs {
                let room = MAX_ENCRYPTED - gathered.len();
                gathered.extend_from_slice(&buf[..buf.len().min(room)]);
                if room <= buf.len() {
                    break;
                }
            }
            Pin::new(this).poll_write(cx, gathered)
        })
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        if let Some(error) = this.failed() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    /// Sends close_notify, then shuts the socket's sending side.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_queued && this.failed.is_none() {
            ready!(this.poll_send(cx))?;
            this.close_queued = true;
            if let Err(error) = this.turn(Outgoing::CloseNotify, None) {
                return Poll::Ready(Err(this.fail(error)));
            }
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// Appends what `encode` writes to `sending`, growing it to the size the
/// encoder asks for (`Err(Some(size))`); `Err(None)` is any other failure.
fn append(
    sending: &mut BytesMut,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) -> Result<(), rustls::Error> {
    let start = sending.len();
    let mut room = 0;
    loop {
        sending.resize(start + room, 0);
        match encode(&mut sending[start..]) {
            Ok(written) => {
                sending.truncate(start + written);
                return Ok(());
            }
            Err(Some(required)) if required > room => room = required,
            Err(_) => {
                sending.truncate(start);
                return Err(rustls::Error::EncryptError);
            }
        }
    }
}

/// The room an encoder asked for, if that is what it failed for.
fn encode_room(error: EncodeError) -> Option<usize> {
    match error {
        EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(required_size)
        }
        _ => None,
    }
}

/// The room an encryption asked for, if that is what it failed for.
fn encrypt_room(error: EncryptError) -> Option<usize> {
    match error {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(required_size)
        }
        _ => None,
    }
}

fn invalid(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

#[cfg(test)]
mod tests {
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
    };
    use tokio_rustls::{TlsConnector, rustls::RootCertStore};

    use super::*;
    use crate::{stats::Metered, tls::Identity};

    /// A client (tokio-rustls) connected to this stream over loopback TCP.
    async fn pair() -> (
        TlsStream<crate::stats::PlainStream>,
        tokio_rustls::client::TlsStream<TcpStream>,
    ) {
        let identity = Identity::self_signed(&["localhost".to_owned()]).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(identity.leaf().clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let client = async {
            let tcp = TcpStream::connect(addr).await.unwrap();
            TlsConnector::from(Arc::new(config))
                .connect("localhost".try_into().unwrap(), tcp)
                .await
                .unwrap()
        };
        let server = async {
            let (tcp, _) = listener.accept().await.unwrap();
            let io = Metered::new(tcp, Arc::default());
            accept(io, identity.server_config().unwrap()).await.unwrap()
        };
        tokio::join!(server, client)
    }

    #[tokio::test]
    async fn data_survives_small_reads_gathered_writes_and_close_notify() {
        let (mut server, mut client) = pair().await;
        let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let writing = async {
            client.write_all(&sent).await.unwrap();
            client.flush().await.unwrap();
        };
        // Seven bytes at a time: most of every record waits in `plaintext`.
        let reading = async {
            let mut received = Vec::new();
            let mut small = [0u8; 7];
            while received.len() < sent.len() {
                let read = server.read(&mut small).await.unwrap();
                assert!(read > 0, "the stream ended early");
                received.extend_from_slice(&small[..read]);
            }
            received
        };
        let ((), received) = tokio::join!(writing, reading);
        assert_eq!(received, sent);

        let (head, body) = sent.split_at(10);
        let slices = [IoSlice::new(head), IoSlice::new(body)];
        let writing = async {
            let written = server.write_vectored(&slices).await.unwrap();
            // A vectored write may take part: the rest is the caller's.
            server.write_all(&sent[written..]).await.unwrap();
            server.shutdown().await.unwrap();
        };
        let mut echoed = Vec::new();
        let reading = client.read_to_end(&mut echoed);
        let ((), read) = tokio::join!(writing, reading);
        read.expect("the stream ends with close_notify");
        assert_eq!(echoed, sent);
    }

    #[tokio::test]
    async fn an_idle_stream_holds_no_buffers() {
        let (mut server, mut client) = pair().await;
        client.write_all(b"hello").await.unwrap();
        let mut five = [0u8; 5];
        server.read_exact(&mut five).await.unwrap();
        server.write_all(b"world").await.unwrap();
        client.read_exact(&mut five).await.unwrap();
        assert_eq!(&five, b"world");
        // Waiting for the client's next bytes, as an idle session does.
        let mut one = [0u8; 1];
        let waiting = std::future::poll_fn(|cx| {
            let read = Pin::new(&mut server).poll_read(cx, &mut ReadBuf::new(&mut one));
            Poll::Ready(read.is_pending())
        })
        .await;
        assert!(waiting);
        for (name, buffer) in [
            ("received", &server.received),
            ("plaintext", &server.plaintext),
            ("sending", &server.sending),
        ] {
            assert_eq!(buffer.capacity(), 0, "{name} holds a buffer");
        }
    }
}
