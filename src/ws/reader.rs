//! The frame reader: reads a client's bytes into one buffer and hands out
//! whole frames, unmasked, each header parsed once and judged before any
//! room is reserved for its payload.
//!
//! What it enforces (RFC 6455 section 5), each as a [`Violation`] that
//! carries the close code the client is owed:
//! - masked client frames, reserved bits and opcodes refused, control
//!   frames unfragmented and at most 125 bytes, close frames with an
//!   allowed code and a UTF-8 reason;
//! - fragmentation rules: no new data message inside an open one, no
//!   continuation outside one;
//! - the total of a message against `max_payload`, a compressed one against
//!   a bound that allows deflate's worst-case overhead, so that a frame
//!   announcing more is refused before its bytes are awaited;
//! - RSV1 only on the first frame of a data message, and only when
//!   permessage-deflate was negotiated: it marks the message compressed.
//!
//! Frames before a violating one are handed out first, so that messages
//! that were complete are not lost to a later fault. The reader also stamps
//! the time of the last byte received, for the idle timeout.
//!
//! It is ours rather than fastwebsockets' because the session needs what
//! that reader throws away (RSV1, the text opcode of a fragmented message)
//! and checks it does not make (a fragmented message's total): following
//! the headers beside it cost every frame a second parse.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use fastwebsockets::CloseCode;
use tokio::{
    io::{AsyncRead, AsyncReadExt},
    time::Instant,
};

use crate::protocol::{
    close,
    frame::{
        CONTROL, FIN, LENGTH, LENGTH_16, LENGTH_64, MASK_LEN, MASKED, MAX_CLIENT_HEADER_LEN,
        MAX_CONTROL_PAYLOAD, OPCODE, OPCODE_BINARY, OPCODE_CLOSE, OPCODE_CONTINUATION, OPCODE_PING,
        OPCODE_PONG, OPCODE_TEXT, RSV1, RSV2_RSV3,
    },
};

/// Room made for one read: a burst of small frames comes in at once.
const READ_SIZE: usize = 8 * 1024;

/// Less spare room than this and the buffer grows before a read, so that no
/// read is a sliver.
const MIN_READ: usize = 1024;

/// Why the reader failed the connection: the close code to send and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Violation {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
}

impl Violation {
    const fn protocol(reason: &'static str) -> Self {
        Self {
            code: close::PROTOCOL_ERROR,
            reason,
        }
    }

    pub(crate) const TOO_BIG: Self = Self {
        code: close::TOO_BIG,
        reason: "message too big",
    };

    const CLOSE_REASON_NOT_UTF8: Self = Self {
        code: close::INVALID_PAYLOAD,
        reason: "invalid UTF-8",
    };
}

/// How reading a frame failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// The stream ended or broke: nothing can be sent any more.
    Gone,
    /// The client broke the protocol or a limit.
    Broken(Violation),
}

/// What the client sent, for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MessageMeta {
    /// A text message.
    pub(crate) text: bool,
    /// RSV1 was set: the payload is deflate-compressed.
    pub(crate) compressed: bool,
}

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameKind {
    /// The first frame of a data message.
    Start(MessageMeta),
    /// A later frame of a fragmented message.
    Continuation,
    Ping,
    Pong,
    Close,
}

/// One frame as the client sent it, unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) kind: FrameKind,
    /// The last frame of its message (always set on a control frame).
    pub(crate) fin: bool,
    pub(crate) payload: Bytes,
}

/// When the client last sent a byte: stamped by the reader on every read,
/// read by the heartbeat beside it and by the rate budgets.
///
/// Stamped from a coarse clock ([`coarse_nanos`]): the idle timeout, the
/// quiet gap and the budgets need a read's time to a kernel tick (1-10 ms
/// by the kernel's configuration), and the precise clock cost a lone echo
/// more than anything else the server adds to it. An arrival is stamped up
/// to two ticks early, never late, so that a budget is only ever stricter.
///
/// Real time, not tokio's: a session under tokio's paused test clock would
/// see its client's bytes arrive as time passes on the wall.
pub(crate) struct Activity {
    /// The session's start on tokio's clock.
    start: Instant,
    /// The coarse clock's reading at the start, plus a tick: the reading
    /// may lag the start by up to a tick, and a later stamp must not come
    /// out late for it.
    start_nanos: u64,
    /// The coarse clock's reading at the last byte.
    last_nanos: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Self {
        let start_nanos = coarse_nanos() + coarse_tick_nanos();
        Self {
            start: Instant::now(),
            start_nanos,
            last_nanos: AtomicU64::new(start_nanos),
        }
    }

    fn touch(&self) {
        self.last_nanos.store(coarse_nanos(), Ordering::Relaxed);
    }

    /// The instant of the last byte received (or of the session start).
    pub(crate) fn last(&self) -> Instant {
        let since_start = self
            .last_nanos
            .load(Ordering::Relaxed)
            .saturating_sub(self.start_nanos);
        self.start + std::time::Duration::from_nanos(since_start)
    }
}

/// Nanoseconds on Linux's coarse monotonic clock: read from the vDSO
/// without the timestamp counter, the time of the last tick.
#[cfg(target_os = "linux")]
fn coarse_nanos() -> u64 {
    nanos(rustix::time::clock_gettime(
        rustix::time::ClockId::MonotonicCoarse,
    ))
}

/// The coarse clock's tick: how far a reading may lag real time.
#[cfg(target_os = "linux")]
fn coarse_tick_nanos() -> u64 {
    nanos(rustix::time::clock_getres(
        rustix::time::ClockId::MonotonicCoarse,
    ))
}

#[cfg(target_os = "linux")]
fn nanos(time: rustix::time::Timespec) -> u64 {
    const NANOS_PER_SECOND: u64 = 1_000_000_000;
    // A monotonic clock's reading (and its resolution) is never negative.
    let seconds = u64::try_from(time.tv_sec).unwrap_or_default();
    let nanos = u64::try_from(time.tv_nsec).unwrap_or_default();
    seconds * NANOS_PER_SECOND + nanos
}

/// Nanoseconds on the precise clock, where there is no coarse one.
#[cfg(not(target_os = "linux"))]
fn coarse_nanos() -> u64 {
    static ORIGIN: std::sync::LazyLock<std::time::Instant> =
        std::sync::LazyLock::new(std::time::Instant::now);
    u64::try_from(ORIGIN.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The precise clock lags nothing.
#[cfg(not(target_os = "linux"))]
fn coarse_tick_nanos() -> u64 {
    0
}

/// The rules between frames: where a message stands and how big it is.
/// Pure: given each header's first byte and payload length in order, it
/// says what the frame is or which rule it breaks.
#[derive(Debug, Clone)]
pub(crate) struct Checker {
    /// A fragmented data message is open (its last frame had no FIN).
    in_message: bool,
    /// Wire bytes of the current message so far.
    message_len: u64,
    /// The current message is compressed.
    compressed: bool,
    max_payload: u64,
    /// permessage-deflate was negotiated: RSV1 marks a compressed message.
    deflate: bool,
}

impl Checker {
    pub(crate) fn new(max_payload: usize, deflate: bool) -> Self {
        Self {
            in_message: false,
            message_len: 0,
            compressed: false,
            max_payload: max_payload as u64,
            deflate,
        }
    }

    /// Judges one frame from its header's first byte and payload length.
    pub(crate) fn check(&mut self, first: u8, len: u64) -> Result<FrameKind, Violation> {
        let fin = first & FIN != 0;
        let rsv1 = first & RSV1 != 0;
        let opcode = first & OPCODE;
        if first & RSV2_RSV3 != 0 {
            return Err(Violation::protocol("reserved bits set"));
        }
        if opcode & CONTROL != 0 {
            let kind = match opcode {
                OPCODE_CLOSE => FrameKind::Close,
                OPCODE_PING => FrameKind::Ping,
                OPCODE_PONG => FrameKind::Pong,
                _ => return Err(Violation::protocol("reserved opcode")),
            };
            if !fin {
                return Err(Violation::protocol("fragmented control frame"));
            }
            if len > MAX_CONTROL_PAYLOAD {
                return Err(Violation::protocol("control frame longer than 125 bytes"));
            }
            if rsv1 {
                return Err(Violation::protocol("RSV1 on a control frame"));
            }
            return Ok(kind);
        }
        let kind = match opcode {
            OPCODE_CONTINUATION => {
                if !self.in_message {
                    return Err(Violation::protocol(
                        "continuation frame outside a fragmented message",
                    ));
                }
                if rsv1 {
                    return Err(Violation::protocol("RSV1 on a continuation frame"));
                }
                self.message_len = self.message_len.saturating_add(len);
                FrameKind::Continuation
            }
            OPCODE_TEXT | OPCODE_BINARY => {
                if self.in_message {
                    return Err(Violation::protocol(
                        "new message inside a fragmented message",
                    ));
                }
                if rsv1 && !self.deflate {
                    return Err(Violation::protocol("RSV1 without permessage-deflate"));
                }
                self.compressed = rsv1;
                self.message_len = len;
                FrameKind::Start(MessageMeta {
                    text: opcode == OPCODE_TEXT,
                    compressed: rsv1,
                })
            }
            _ => return Err(Violation::protocol("reserved opcode")),
        };
        self.in_message = !fin;
        let limit = if self.compressed {
            compressed_bound(self.max_payload)
        } else {
            self.max_payload
        };
        if self.message_len > limit {
            return Err(Violation::TOO_BIG);
        }
        Ok(kind)
    }
}

/// The largest compressed size of a message that inflates to `max` bytes:
/// deflate's stored blocks add 5 bytes per 65,535, plus a little framing.
pub(crate) fn compressed_bound(max: u64) -> u64 {
    max + (max / 65_535 + 1) * 5 + 64
}

/// A header that passed the checks, its payload not yet all read.
#[derive(Debug, Clone, Copy)]
struct Header {
    kind: FrameKind,
    fin: bool,
    mask: [u8; MASK_LEN],
    /// The payload's length.
    len: usize,
    /// The header's own length.
    header_len: usize,
}

impl Header {
    /// The whole frame's size on the wire.
    fn wire_len(&self) -> usize {
        self.header_len + self.len
    }
}

/// Reads frames from one connection's read half.
pub(crate) struct FrameReader<'a, R> {
    inner: R,
    /// Bytes read and not handed out yet. Empty (no allocation) until the
    /// client sends something.
    buffer: BytesMut,
    /// The header of the frame whose payload is being read.
    header: Option<Header>,
    /// The wire size of the last whole frame: a read makes room for one
    /// as large (up to [`READ_SIZE`]), so that a client that sends
    /// mid-sized messages one at a time has each taken in by one read, not
    /// cut by the end of the buffer.
    last_frame: usize,
    checker: Checker,
    activity: &'a Activity,
}

impl<'a, R: AsyncRead + Unpin> FrameReader<'a, R> {
    pub(crate) fn new(inner: R, checker: Checker, activity: &'a Activity) -> Self {
        Self {
            inner,
            buffer: BytesMut::new(),
            header: None,
            last_frame: 0,
            checker,
            activity,
        }
    }

    /// Waits until the client sends its first byte, without a buffer while
    /// it waits: `false` if the stream ends or breaks first (nothing can be
    /// sent then).
    pub(crate) async fn wait_for_data(&mut self) -> bool {
        let mut first = [0u8; 1];
        if !matches!(self.inner.read(&mut first).await, Ok(1)) {
            return false;
        }
        self.activity.touch();
        self.buffer.reserve(READ_SIZE);
        self.buffer.put_u8(first[0]);
        true
    }

    /// The next frame. After an error the stream is past saving: the
    /// session closes, and reads no more frames.
    pub(crate) async fn frame(&mut self) -> Result<Frame, ReadError> {
        loop {
            if let Some(frame) = self.parse().map_err(ReadError::Broken)? {
                return Ok(frame);
            }
            self.fill().await?;
        }
    }

    /// Whether everything the client sent so far has been handed out.
    pub(crate) fn is_drained(&self) -> bool {
        self.buffer.is_empty() && self.header.is_none()
    }

    /// The next frame if the buffer holds all of it.
    fn parse(&mut self) -> Result<Option<Frame>, Violation> {
        let header = match self.header.take() {
            Some(header) => header,
            None => match self.header()? {
                Some(header) => header,
                None => return Ok(None),
            },
        };
        if self.buffer.len() < header.len {
            // Room for the rest of the payload and the next header.
            self.buffer
                .reserve(header.len - self.buffer.len() + MAX_CLIENT_HEADER_LEN);
            self.header = Some(header);
            return Ok(None);
        }
        let mut payload = self.buffer.split_to(header.len);
        self.last_frame = header.wire_len();
        fastwebsockets::unmask(&mut payload, header.mask);
        if header.kind == FrameKind::Close {
            check_close(&payload)?;
        }
        Ok(Some(Frame {
            kind: header.kind,
            fin: header.fin,
            payload: payload.freeze(),
        }))
    }

    /// Takes a whole header off the buffer, if it holds one, and judges it.
    fn header(&mut self) -> Result<Option<Header>, Violation> {
        let &[first, second, ..] = &self.buffer[..] else {
            return Ok(None);
        };
        if second & MASKED == 0 {
            return Err(Violation::protocol("client frames must be masked"));
        }
        let extended = match second & LENGTH {
            LENGTH_16 => 2,
            LENGTH_64 => 8,
            _ => 0,
        };
        let header_len = 2 + extended + MASK_LEN;
        if self.buffer.len() < header_len {
            return Ok(None);
        }
        self.buffer.advance(2);
        let len = match extended {
            2 => u64::from(self.buffer.get_u16()),
            8 => self.buffer.get_u64(),
            _ => u64::from(second & LENGTH),
        };
        let mask = self.buffer.get_u32().to_be_bytes();
        let kind = self.checker.check(first, len)?;
        Ok(Some(Header {
            kind,
            fin: first & FIN != 0,
            mask,
            header_len,
            // The checker bounds every payload by `max_payload`'s worth.
            len: usize::try_from(len).map_err(|_| Violation::TOO_BIG)?,
        }))
    }

    /// Reads more of the client's bytes.
    async fn fill(&mut self) -> Result<(), ReadError> {
        let wanted = self.last_frame.clamp(MIN_READ, READ_SIZE);
        if self.buffer.capacity() - self.buffer.len() < wanted {
            self.buffer.reserve(READ_SIZE);
        }
        match self.inner.read_buf(&mut self.buffer).await {
            Ok(0) | Err(_) => Err(ReadError::Gone),
            Ok(_) => {
                self.activity.touch();
                Ok(())
            }
        }
    }
}

/// A close frame's payload: empty, or a code a peer may send and a UTF-8
/// reason (RFC 6455 sections 5.5.1 and 7.4).
fn check_close(payload: &[u8]) -> Result<(), Violation> {
    match payload {
        [] => Ok(()),
        [_] => Err(Violation::protocol("close frame of one byte")),
        [high, low, reason @ ..] => {
            if !CloseCode::from(u16::from_be_bytes([*high, *low])).is_allowed() {
                return Err(Violation::protocol("close code not allowed"));
            }
            simdutf8::basic::from_utf8(reason)
                .map(|_| ())
                .map_err(|_| Violation::CLOSE_REASON_NOT_UTF8)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::{
        io,
        pin::Pin,
        task::{Context, Poll},
    };

    use tokio::io::ReadBuf;

    use super::*;

    const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

    /// A masked client frame with first byte `first`, announcing `len`
    /// bytes and carrying `payload` (which may be shorter or longer).
    pub(crate) fn frame(first: u8, len: u64, payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![first];
        match len {
            0..=125 => bytes.push(0x80 | len as u8),
            126..=0xFFFF => {
                bytes.push(0x80 | 126);
                bytes.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                bytes.push(0x80 | 127);
                bytes.extend_from_slice(&len.to_be_bytes());
            }
        }
        bytes.extend_from_slice(&MASK);
        bytes.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        bytes
    }

    /// A masked client frame carrying all of `payload`.
    pub(crate) fn whole(first: u8, payload: &[u8]) -> Vec<u8> {
        frame(first, payload.len() as u64, payload)
    }

    /// A stream that hands out its bytes in reads of the given sizes, in
    /// turn, as a socket might.
    pub(crate) struct Pieces {
        data: Vec<u8>,
        at: usize,
        sizes: Vec<usize>,
        turn: usize,
        /// The room each read offered.
        offered: Vec<usize>,
    }

    impl Pieces {
        pub(crate) fn new(data: Vec<u8>, sizes: Vec<usize>) -> Self {
            Self {
                data,
                at: 0,
                sizes,
                turn: 0,
                offered: Vec::new(),
            }
        }
    }

    impl AsyncRead for Pieces {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            this.offered.push(buf.remaining());
            let size = this.sizes[this.turn % this.sizes.len()];
            this.turn += 1;
            let end = (this.at + size.min(buf.remaining())).min(this.data.len());
            buf.put_slice(&this.data[this.at..end]);
            this.at = end;
            Poll::Ready(Ok(()))
        }
    }

    pub(crate) const TEXT: MessageMeta = MessageMeta {
        text: true,
        compressed: false,
    };
    pub(crate) const BINARY: MessageMeta = MessageMeta {
        text: false,
        compressed: false,
    };
    pub(crate) const COMPRESSED_TEXT: MessageMeta = MessageMeta {
        text: true,
        compressed: true,
    };
    pub(crate) const COMPRESSED_BINARY: MessageMeta = MessageMeta {
        text: false,
        compressed: true,
    };

    /// Every frame of `stream` read in pieces of `piece` bytes, and how
    /// reading ended.
    fn read_all(
        stream: &[u8],
        piece: usize,
        max_payload: usize,
        deflate: bool,
    ) -> (Vec<Frame>, ReadError) {
        crate::fuzz::runtime().block_on(async {
            let activity = Activity::new();
            let pieces = Pieces::new(stream.to_vec(), vec![piece]);
            let checker = Checker::new(max_payload, deflate);
            let mut reader = FrameReader::new(pieces, checker, &activity);
            let mut frames = Vec::new();
            loop {
                match reader.frame().await {
                    Ok(frame) => frames.push(frame),
                    Err(end) => return (frames, end),
                }
            }
        })
    }

    fn protocol(reason: &'static str) -> Violation {
        Violation::protocol(reason)
    }

    #[test]
    fn frames_come_out_unmasked_with_what_they_are() {
        // (what the client sends, deflate negotiated, the frame's kind)
        let cases = [
            (0x81, false, FrameKind::Start(TEXT)),
            (0x82, false, FrameKind::Start(BINARY)),
            (0xC1, true, FrameKind::Start(COMPRESSED_TEXT)),
            (0x89, true, FrameKind::Ping),
            (0x8A, false, FrameKind::Pong),
        ];
        for (first, deflate, kind) in cases {
            let (frames, end) = read_all(&whole(first, b"hi"), usize::MAX, 100, deflate);
            let expected = Frame {
                kind,
                fin: true,
                payload: Bytes::from_static(b"hi"),
            };
            assert_eq!(frames, vec![expected], "{first:#x}");
            assert_eq!(end, ReadError::Gone);
        }
    }

    #[test]
    fn continuations_and_interleaved_control_frames() {
        let stream = [
            whole(0x01, b"he"),
            whole(0x89, b"ping"),
            whole(0x00, b"ll"),
            whole(0x8A, b""),
            whole(0x80, b"o"),
            whole(0x82, b"next"),
            whole(0x88, &[0x03, 0xE8, b'o', b'k']),
        ]
        .concat();
        let (frames, end) = read_all(&stream, usize::MAX, 100, false);
        let seen: Vec<_> = frames
            .iter()
            .map(|frame| (frame.kind, frame.fin, &frame.payload[..]))
            .collect();
        assert_eq!(
            seen,
            vec![
                (FrameKind::Start(TEXT), false, &b"he"[..]),
                (FrameKind::Ping, true, b"ping"),
                (FrameKind::Continuation, false, b"ll"),
                (FrameKind::Pong, true, b""),
                (FrameKind::Continuation, true, b"o"),
                (FrameKind::Start(BINARY), true, b"next"),
                (FrameKind::Close, true, b"\x03\xE8ok"),
            ]
        );
        assert_eq!(end, ReadError::Gone);
    }

    #[test]
    fn violations_come_after_the_frames_before_them() {
        let ok = whole(0x81, b"fine");
        // (deflate, max_payload, the offending bytes after a good frame,
        // the violation)
        let cases: Vec<(bool, usize, Vec<u8>, Violation)> = vec![
            (
                false,
                100,
                vec![0x81, 0x02, b'h', b'i'],
                protocol("client frames must be masked"),
            ),
            (
                false,
                100,
                whole(0xA1, b"hi"),
                protocol("reserved bits set"),
            ),
            (
                false,
                100,
                whole(0x91, b"hi"),
                protocol("reserved bits set"),
            ),
            (
                false,
                100,
                whole(0xC1, b"hi"),
                protocol("RSV1 without permessage-deflate"),
            ),
            (false, 100, whole(0x83, b""), protocol("reserved opcode")),
            (false, 100, whole(0x8B, b""), protocol("reserved opcode")),
            (
                false,
                100,
                whole(0x09, b""),
                protocol("fragmented control frame"),
            ),
            (
                false,
                100,
                frame(0x89, 126, &[0; 126]),
                protocol("control frame longer than 125 bytes"),
            ),
            (
                true,
                100,
                whole(0xC9, b""),
                protocol("RSV1 on a control frame"),
            ),
            (
                false,
                100,
                whole(0x80, b"x"),
                protocol("continuation frame outside a fragmented message"),
            ),
            (
                false,
                100,
                [whole(0x01, b"a"), whole(0x81, b"b")].concat(),
                protocol("new message inside a fragmented message"),
            ),
            (
                true,
                100,
                [whole(0x41, b"a"), whole(0xC0, b"b")].concat(),
                protocol("RSV1 on a continuation frame"),
            ),
            (
                false,
                100,
                whole(0x88, &[0x03]),
                protocol("close frame of one byte"),
            ),
            (
                false,
                100,
                whole(0x88, &1005u16.to_be_bytes()),
                protocol("close code not allowed"),
            ),
            (
                false,
                100,
                whole(0x88, &[0x03, 0xE8, 0xFF]),
                Violation::CLOSE_REASON_NOT_UTF8,
            ),
            (false, 100, frame(0x82, 101, &[]), Violation::TOO_BIG),
            (false, 100, frame(0x82, 1 << 40, &[]), Violation::TOO_BIG),
            (false, 100, frame(0x82, u64::MAX, &[]), Violation::TOO_BIG),
            (
                false,
                100,
                [whole(0x02, &[0; 60]), frame(0x80, 41, &[])].concat(),
                Violation::TOO_BIG,
            ),
            // Compressed messages may exceed max_payload on the wire, by
            // deflate's worst case, and no more.
            (
                true,
                100,
                frame(0xC2, compressed_bound(100) + 1, &[]),
                Violation::TOO_BIG,
            ),
        ];
        for (deflate, max_payload, bad, violation) in cases {
            let stream = [&ok[..], &bad[..]].concat();
            for piece in [1, 2, 3, 7, usize::MAX] {
                let (frames, end) = read_all(&stream, piece, max_payload, deflate);
                assert_eq!(end, ReadError::Broken(violation), "pieces of {piece}");
                assert_eq!(frames[0].payload, &b"fine"[..], "{violation:?}");
            }
        }
    }

    #[test]
    fn a_compressed_message_may_use_deflate_overhead() {
        let bound = compressed_bound(100);
        let mut checker = Checker::new(100, true);
        assert_eq!(
            checker.check(0xC2, bound),
            Ok(FrameKind::Start(COMPRESSED_BINARY))
        );
    }

    #[test]
    fn any_chunking_gives_the_same_frames() {
        let stream = [
            whole(0x81, b"one"),
            frame(0x02, 300, &[7; 300]),
            whole(0x89, b""),
            frame(0x80, 70_000, &[8; 70_000]),
            whole(0xC1, b"x"),
            whole(0x88, &1000u16.to_be_bytes()),
        ]
        .concat();
        let whole_read = read_all(&stream, usize::MAX, 1 << 20, true);
        assert_eq!(whole_read.0.len(), 6);
        for piece in [1, 2, 5, 13, 4096] {
            assert_eq!(
                read_all(&stream, piece, 1 << 20, true),
                whole_read,
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn every_read_has_room_for_a_frame_like_the_last() {
        let message = whole(0x82, &[5; 4096]);
        // The client's messages arrive one per read.
        let mut pieces = Pieces::new(message.repeat(4), vec![message.len()]);
        crate::fuzz::runtime().block_on(async {
            let activity = Activity::new();
            let checker = Checker::new(1 << 20, false);
            let mut reader = FrameReader::new(&mut pieces, checker, &activity);
            // Each held, as a session holds a message until it is written.
            let mut frames = Vec::new();
            for _ in 0..4 {
                frames.push(reader.frame().await.expect("a frame"));
            }
        });
        let offered = &pieces.offered;
        assert_eq!(offered.len(), 4, "one read per message: {offered:?}");
        assert!(
            offered.iter().all(|&room| room >= message.len()),
            "{offered:?}"
        );
    }

    #[test]
    fn drained_only_between_frames_with_nothing_buffered() {
        crate::fuzz::runtime().block_on(async {
            let activity = Activity::new();
            let first = whole(0x82, b"ab");
            let second = whole(0x82, b"cd");
            // The first frame and the first byte of the second in one read.
            let stream = [&first[..], &second[..]].concat();
            let pieces = Pieces::new(stream, vec![first.len() + 1, usize::MAX]);
            let mut reader = FrameReader::new(pieces, Checker::new(100, false), &activity);
            assert!(reader.is_drained(), "nothing read yet");
            reader.frame().await.expect("the first frame");
            assert!(!reader.is_drained(), "a byte of the next header waits");
            reader.frame().await.expect("the second frame");
            assert!(reader.is_drained());
        });
    }
}
