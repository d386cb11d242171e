//! The frame-boundary guard: an `AsyncRead` adapter under fastwebsockets'
//! reader that follows frame headers as the bytes pass, fails the connection
//! before fastwebsockets buffers anything it should not, and rewrites the
//! first header of each message so that fastwebsockets only ever assembles
//! binary messages.
//!
//! What it enforces, because fastwebsockets does not:
//! - the total of a fragmented message against `max_payload` (fastwebsockets
//!   checks single frames only), compressed messages against a bound that
//!   allows deflate's worst-case overhead;
//! - fragmentation rules: no new data message inside an open one, no
//!   continuation outside one (fastwebsockets silently replaces or appends);
//! - masked client frames, the 125-byte control-frame limit for every control
//!   opcode, and RSV1 only on the first frame of a data message and only
//!   when permessage-deflate was negotiated.
//!
//! What it rewrites: RSV1 is cleared (fastwebsockets rejects it) and text
//! opcodes become binary, so that fastwebsockets never validates UTF-8 of
//! compressed bytes nor truncates a fragmented text that ends mid-character.
//! For each message it records `MessageMeta` (text? compressed?) in a FIFO
//! ([`Metas`]) that the session pops as it receives messages; `ws::receive` inflates and
//! validates UTF-8 as the fragments arrive. Read-ahead is harmless: a message's meta is recorded when
//! its first header passes, always before fastwebsockets can return it.
//!
//! Bytes before a violating frame are still delivered; the error comes on the
//! next read, so messages that were complete are not lost to a later fault.
//! It also stamps the time of the last byte received, for the idle timeout.

use std::{
    collections::VecDeque,
    fmt, io,
    pin::Pin,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, ready},
};

use tokio::{
    io::{AsyncRead, ReadBuf},
    time::Instant,
};

use crate::protocol::{
    close,
    frame::{
        FIN, MAX_CLIENT_HEADER_LEN, MAX_CONTROL_PAYLOAD, OPCODE_BINARY, OPCODE_CONTINUATION,
        OPCODE_TEXT, RSV1,
    },
};

/// Why the guard failed the connection: the close code to send, carried
/// inside the `io::Error` that fastwebsockets hands back.
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

    const TOO_BIG: Self = Self {
        code: close::TOO_BIG,
        reason: "message too big",
    };

    /// The violation inside an error returned by a guarded read, if any.
    pub(crate) fn find(error: &io::Error) -> Option<Self> {
        error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<Self>())
            .copied()
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.code)
    }
}

impl std::error::Error for Violation {}

/// What the client sent, for one message, before the guard rewrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MessageMeta {
    /// The client sent a text message (it reaches fastwebsockets as binary).
    pub(crate) text: bool,
    /// RSV1 was set: the payload is deflate-compressed.
    pub(crate) compressed: bool,
}

impl MessageMeta {
    const fn bits(self) -> u64 {
        self.text as u64 | (self.compressed as u64) << 1
    }

    const fn from_bits(bits: u64) -> Self {
        Self {
            text: bits & 1 != 0,
            compressed: bits & 2 != 0,
        }
    }
}

/// Metas of messages a word holds, two bits each above the count.
const PACKED: u64 = 29;
/// The low bits of the word that count its metas.
const COUNT_BITS: u32 = 5;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// The word's top bit: more metas wait in the overflow queue, behind the
/// packed ones.
const SPILLED: u64 = 1 << 63;

/// The metas of messages whose first header passed the guard and that the
/// session has not taken yet, oldest first.
///
/// The guard pushes and the session pops from one task, one after the
/// other, never at once: the word is read and written with plain loads and
/// stores (an atomic only so that the task may move between threads), and
/// a message costs no lock. A read that brings in more than [`PACKED`]
/// messages ahead of the session (a pipelining client) spills the rest into
/// a locked queue until the session has caught up.
struct Metas {
    word: AtomicU64,
    overflow: Mutex<VecDeque<MessageMeta>>,
}

impl Metas {
    fn new() -> Self {
        Self {
            word: AtomicU64::new(0),
            overflow: Mutex::default(),
        }
    }

    fn push(&self, meta: MessageMeta) {
        let word = self.word.load(Ordering::Relaxed);
        let count = word & COUNT_MASK;
        if word & SPILLED != 0 || count == PACKED {
            crate::sync::lock(&self.overflow).push_back(meta);
            self.word.store(word | SPILLED, Ordering::Relaxed);
            return;
        }
        let at = u64::from(COUNT_BITS) + 2 * count;
        self.word
            .store((word | meta.bits() << at) + 1, Ordering::Relaxed);
    }

    fn pop(&self) -> Option<MessageMeta> {
        let word = self.word.load(Ordering::Relaxed);
        let count = word & COUNT_MASK;
        if count > 0 {
            let meta = MessageMeta::from_bits(word >> COUNT_BITS);
            let rest = (word & !SPILLED) >> (COUNT_BITS + 2) << COUNT_BITS;
            self.word
                .store(rest | (word & SPILLED) | (count - 1), Ordering::Relaxed);
            return Some(meta);
        }
        if word & SPILLED == 0 {
            return None;
        }
        let mut overflow = crate::sync::lock(&self.overflow);
        let meta = overflow.pop_front();
        if overflow.is_empty() {
            // Everything packed was taken before: the word is empty.
            self.word.store(0, Ordering::Relaxed);
        }
        meta
    }
}

/// State shared between the guard (inside fastwebsockets' reader) and the
/// session that reads messages out of it.
pub(crate) struct Inbound {
    start: Instant,
    last_nanos: AtomicU64,
    messages: Metas,
    /// How many frames had passed whole when the last read ended between
    /// two frames; [`MID_FRAME`] when it ended inside one.
    settled: AtomicU64,
}

/// [`Inbound::settled`] after a read that ended inside a frame.
const MID_FRAME: u64 = u64::MAX;

impl Inbound {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            last_nanos: AtomicU64::new(0),
            messages: Metas::new(),
            settled: AtomicU64::new(0),
        }
    }

    /// Whether everything the client sent has been read out as frames:
    /// the last read ended between two frames, after `frames_read` of them,
    /// so that nothing waits in the reader's buffer.
    pub(crate) fn drained(&self, frames_read: u64) -> bool {
        self.settled.load(Ordering::Relaxed) == frames_read
    }

    fn touch(&self) {
        let nanos = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_nanos.store(nanos, Ordering::Relaxed);
    }

    /// The instant of the last byte received (or of the session start).
    pub(crate) fn last_activity(&self) -> Instant {
        self.start + std::time::Duration::from_nanos(self.last_nanos.load(Ordering::Relaxed))
    }

    /// The meta of the oldest message not yet taken.
    pub(crate) fn next_message(&self) -> Option<MessageMeta> {
        self.messages.pop()
    }
}

/// Where the parser is in the client's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    Header {
        bytes: [u8; MAX_CLIENT_HEADER_LEN],
        have: usize,
    },
    Payload {
        remaining: u64,
    },
}

const NEW_HEADER: Position = Position::Header {
    bytes: [0; MAX_CLIENT_HEADER_LEN],
    have: 0,
};

/// Frame-boundary tracking over the client's bytes. Pure: fed slices, it
/// rewrites first headers in place, records message metas and answers where
/// the first violation starts.
#[derive(Debug, Clone)]
pub(crate) struct FrameTracker {
    position: Position,
    /// A fragmented data message is open (its last frame had no FIN).
    in_message: bool,
    /// Wire bytes of the current message so far.
    message_len: u64,
    /// The current message is compressed.
    compressed: bool,
    max_payload: u64,
    deflate: bool,
    /// Frames that have passed whole.
    frames: u64,
}

impl FrameTracker {
    /// `deflate`: permessage-deflate was negotiated, so RSV1 marks a
    /// compressed message.
    pub(crate) fn new(max_payload: usize, deflate: bool) -> Self {
        Self {
            position: NEW_HEADER,
            in_message: false,
            message_len: 0,
            compressed: false,
            max_payload: max_payload as u64,
            deflate,
            frames: 0,
        }
    }

    /// Frames passed whole, if the bytes so far end between two frames.
    fn settled(&self) -> Option<u64> {
        matches!(self.position, Position::Header { have: 0, .. }).then_some(self.frames)
    }

    /// Follows `data`, rewriting first header bytes and handing one meta per
    /// message to `record`. On a violation returns the offset in `data` where
    /// the offending frame's header starts (0 if it began earlier).
    pub(crate) fn feed(
        &mut self,
        data: &mut [u8],
        record: &mut impl FnMut(MessageMeta),
    ) -> Result<(), (usize, Violation)> {
        let mut at = 0;
        while at < data.len() {
            // The common case: a whole header in this read, taken at once
            // rather than byte by byte.
            if matches!(self.position, Position::Header { have: 0, .. })
                && let Some(needed) = header_len(&data[at..])
                && needed <= data.len() - at
            {
                let mut header = [0; MAX_CLIENT_HEADER_LEN];
                header[..needed].copy_from_slice(&data[at..at + needed]);
                data[at] = rewrite_first_byte(data[at], self.in_message, self.deflate);
                let payload = self
                    .check(&header[..needed], record)
                    .map_err(|violation| (at, violation))?;
                at += needed;
                if payload > 0 {
                    self.position = Position::Payload { remaining: payload };
                } else {
                    self.frames += 1;
                }
                continue;
            }
            match &mut self.position {
                Position::Payload { remaining } => {
                    let take = (*remaining).min((data.len() - at) as u64);
                    *remaining -= take;
                    at += take as usize;
                    if *remaining == 0 {
                        self.position = NEW_HEADER;
                        self.frames += 1;
                    }
                }
                Position::Header { bytes, have } => {
                    let started_at = at.saturating_sub(*have);
                    bytes[*have] = data[at];
                    if *have == 0 {
                        // Rewritten as it passes, even if the rest of the
                        // header only arrives in a later read.
                        data[at] = rewrite_first_byte(data[at], self.in_message, self.deflate);
                    }
                    *have += 1;
                    at += 1;
                    let Some(needed) = header_len(&bytes[..*have]) else {
                        continue;
                    };
                    if *have < needed {
                        continue;
                    }
                    let header = *bytes;
                    let payload = self
                        .check(&header[..needed], record)
                        .map_err(|violation| (started_at, violation))?;
                    self.position = if payload == 0 {
                        self.frames += 1;
                        NEW_HEADER
                    } else {
                        Position::Payload { remaining: payload }
                    };
                }
            }
        }
        Ok(())
    }

    /// Checks one complete header (as the client sent it) and returns its
    /// payload length.
    fn check(
        &mut self,
        header: &[u8],
        record: &mut impl FnMut(MessageMeta),
    ) -> Result<u64, Violation> {
        let first = header[0];
        let fin = first & FIN != 0;
        let rsv1 = first & RSV1 != 0;
        let opcode = first & 0x0F;
        let masked = header[1] & 0x80 != 0;
        let len = match header[1] & 0x7F {
            126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
            127 => u64::from_be_bytes(header[2..10].try_into().expect("8 length bytes")),
            short => u64::from(short),
        };
        if !masked {
            return Err(Violation::protocol("client frames must be masked"));
        }
        if opcode & 0x8 != 0 {
            if len > MAX_CONTROL_PAYLOAD {
                return Err(Violation::protocol("control frame longer than 125 bytes"));
            }
            if rsv1 {
                return Err(Violation::protocol("RSV1 on a control frame"));
            }
            return Ok(len);
        }
        match opcode {
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
            }
            OPCODE_TEXT | OPCODE_BINARY => {
                if self.in_message {
                    return Err(Violation::protocol(
                        "new message inside a fragmented message",
                    ));
                }
                // RSV1 without deflate is left for fastwebsockets to refuse.
                self.compressed = rsv1 && self.deflate;
                self.message_len = len;
                record(MessageMeta {
                    text: opcode == OPCODE_TEXT,
                    compressed: self.compressed,
                });
            }
            // Reserved opcodes are left for fastwebsockets to refuse.
            _ => return Ok(len),
        }
        self.in_message = !fin;
        let limit = if self.compressed {
            compressed_bound(self.max_payload)
        } else {
            self.max_payload
        };
        if self.message_len > limit {
            return Err(Violation::TOO_BIG);
        }
        Ok(len)
    }
}

/// The first header byte as fastwebsockets should see it: the first frame of
/// a data message becomes binary, without RSV1 if it marks compression.
/// Anything else passes unchanged (and is judged by `check` or by
/// fastwebsockets).
fn rewrite_first_byte(first: u8, in_message: bool, deflate: bool) -> u8 {
    let opcode = first & 0x0F;
    if in_message || (opcode != OPCODE_TEXT && opcode != OPCODE_BINARY) {
        return first;
    }
    let clear = if deflate { RSV1 } else { 0 };
    (first & !clear & 0xF0) | OPCODE_BINARY
}

/// The largest compressed size of a message that inflates to `max` bytes:
/// deflate's stored blocks add 5 bytes per 65,535, plus a little framing.
pub(crate) fn compressed_bound(max: u64) -> u64 {
    max + (max / 65_535 + 1) * 5 + 64
}

/// The length of the header that starts with `prefix`, once known.
fn header_len(prefix: &[u8]) -> Option<usize> {
    let second = *prefix.get(1)?;
    let extended = match second & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    Some(2 + extended + mask)
}

/// The guard around the read half of a connection.
pub(crate) struct FrameGuard<'a, R> {
    inner: R,
    tracker: FrameTracker,
    inbound: &'a Inbound,
    pending: Option<Violation>,
    /// A byte read (and checked) ahead by [`FrameGuard::wait_for_data`],
    /// handed out first.
    replay: Option<u8>,
}

impl<'a, R: AsyncRead + Unpin> FrameGuard<'a, R> {
    pub(crate) fn new(inner: R, tracker: FrameTracker, inbound: &'a Inbound) -> Self {
        Self {
            inner,
            tracker,
            inbound,
            pending: None,
            replay: None,
        }
    }

    /// Waits until the client sends its first byte (`false` if it hangs up
    /// first). The byte is kept and handed out by the next read.
    pub(crate) async fn wait_for_data(&mut self) -> io::Result<bool> {
        let mut first = [0u8; 1];
        if tokio::io::AsyncReadExt::read(self, &mut first).await? == 0 {
            return Ok(false);
        }
        self.replay = Some(first[0]);
        Ok(true)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for FrameGuard<'_, R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(violation) = this.pending {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, violation)));
        }
        if buf.remaining() > 0
            && let Some(byte) = this.replay.take()
        {
            // Already checked and rewritten on its way in.
            buf.put_slice(&[byte]);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let new = &mut buf.filled_mut()[before..];
        if new.is_empty() {
            return Poll::Ready(Ok(()));
        }
        this.inbound.touch();
        let metas = &this.inbound.messages;
        if let Err((offset, violation)) = this.tracker.feed(new, &mut |meta| metas.push(meta)) {
            if offset == 0 {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, violation)));
            }
            buf.set_filled(before + offset);
            this.pending = Some(violation);
            return Poll::Ready(Ok(()));
        }
        let settled = this.tracker.settled().unwrap_or(MID_FRAME);
        this.inbound.settled.store(settled, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
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

    const TEXT: MessageMeta = MessageMeta {
        text: true,
        compressed: false,
    };
    const BINARY: MessageMeta = MessageMeta {
        text: false,
        compressed: false,
    };
    const COMPRESSED_TEXT: MessageMeta = MessageMeta {
        text: true,
        compressed: true,
    };

    /// What feeding a stream produced: the bytes as rewritten, the metas,
    /// and the violation with the offset its frame starts at.
    type Outcome = (Vec<u8>, Vec<MessageMeta>, Option<(usize, Violation)>);

    /// Feeds `stream` in pieces of `piece` bytes, as reads would deliver
    /// it, stopping at the first violation. Its offset is from the start of
    /// the stream: where the violating frame starts, or where the read that
    /// found it starts if the frame began in an earlier one.
    fn feed(tracker: &mut FrameTracker, stream: &[u8], piece: usize) -> Outcome {
        let mut out = stream.to_vec();
        let mut metas = VecDeque::new();
        let mut at = 0;
        for chunk in out.chunks_mut(piece) {
            let len = chunk.len();
            if let Err((offset, violation)) = tracker.feed(chunk, &mut |meta| metas.push_back(meta))
            {
                return (out, metas.into(), Some((at + offset, violation)));
            }
            at += len;
        }
        (out, metas.into(), None)
    }

    fn protocol(reason: &'static str) -> Violation {
        Violation::protocol(reason)
    }

    #[test]
    fn first_headers_are_rewritten_and_metas_recorded() {
        // (what the client sends, deflate negotiated, the first byte
        // fastwebsockets sees, the meta recorded)
        let cases = [
            (0x81, false, 0x82, Some(TEXT)),
            (0x82, false, 0x82, Some(BINARY)),
            // RSV1 marks compression only when deflate was agreed; without
            // it the bit is left for fastwebsockets to refuse.
            (0xC1, true, 0x82, Some(COMPRESSED_TEXT)),
            (0xC1, false, 0xC2, Some(TEXT)),
            // Control and reserved opcodes pass unchanged, with no meta.
            (0x89, true, 0x89, None),
            (0x8A, false, 0x8A, None),
            (0x88, false, 0x88, None),
            (0x83, false, 0x83, None),
        ];
        for (first, deflate, seen, meta) in cases {
            let mut tracker = FrameTracker::new(100, deflate);
            let (out, metas, violation) = feed(&mut tracker, &whole(first, b"hi"), usize::MAX);
            assert_eq!(violation, None, "{first:#x}");
            assert_eq!(out[0], seen, "{first:#x}, deflate {deflate}");
            assert_eq!(&out[1..], &whole(first, b"hi")[1..], "only the first byte");
            assert_eq!(metas, meta.into_iter().collect::<Vec<_>>(), "{first:#x}");
        }
    }

    #[test]
    fn continuations_and_interleaved_control_frames_pass_unchanged() {
        let stream = [
            whole(0x01, b"he"),
            whole(0x89, b"ping"),
            whole(0x00, b"ll"),
            whole(0x8A, b""),
            whole(0x80, b"o"),
            whole(0x82, b"next"),
        ]
        .concat();
        let (out, metas, violation) = feed(&mut FrameTracker::new(100, false), &stream, usize::MAX);
        assert_eq!(violation, None);
        assert_eq!(metas, vec![TEXT, BINARY]);
        let mut expected = stream.clone();
        expected[0] = 0x02;
        assert_eq!(out, expected, "only the first frame's opcode changes");
    }

    #[test]
    fn violations_and_where_their_frame_starts() {
        let ok = whole(0x81, b"fine");
        let at = ok.len();
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
            (false, 100, frame(0x82, 101, &[]), Violation::TOO_BIG),
            (false, 100, frame(0x82, 1 << 40, &[]), Violation::TOO_BIG),
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
                let mut tracker = FrameTracker::new(max_payload, deflate);
                let (_, metas, found) = feed(&mut tracker, &stream, piece);
                let (offset, found) = found.unwrap_or_else(|| panic!("{violation}: none found"));
                assert_eq!(found, violation, "pieces of {piece}");
                assert!(offset >= at, "{violation}: the good frame passes");
                assert_eq!(metas[0], TEXT, "{violation}");
            }
        }
    }

    #[test]
    fn a_compressed_message_may_use_deflate_overhead() {
        let mut tracker = FrameTracker::new(100, true);
        let stream = frame(0xC2, compressed_bound(100), &[]);
        let (_, metas, violation) = feed(&mut tracker, &stream, usize::MAX);
        assert_eq!(violation, None);
        assert_eq!(metas.len(), 1);
    }

    #[test]
    fn any_chunking_gives_the_same_rewrite_and_metas() {
        let stream = [
            whole(0x81, b"one"),
            frame(0x02, 300, &[7; 300]),
            whole(0x89, b""),
            frame(0x80, 70_000, &[8; 70_000]),
            whole(0xC1, b"x"),
            whole(0x88, &1000u16.to_be_bytes()),
        ]
        .concat();
        let whole_read = feed(&mut FrameTracker::new(1 << 20, true), &stream, usize::MAX);
        assert_eq!(whole_read.2, None);
        assert_eq!(whole_read.1, vec![TEXT, BINARY, COMPRESSED_TEXT]);
        for piece in [1, 2, 5, 13, 4096] {
            let pieces = feed(&mut FrameTracker::new(1 << 20, true), &stream, piece);
            assert_eq!(pieces, whole_read, "pieces of {piece}");
        }
    }

    #[test]
    fn metas_come_out_in_order_however_many_wait() {
        let kinds = [TEXT, BINARY, COMPRESSED_TEXT, BINARY, TEXT];
        let metas = Metas::new();
        let mut model = VecDeque::new();
        let mut next = 0;
        // Bursts past the packed word's capacity, drained in steps that
        // leave some behind, so that pushes land in the word, in the
        // overflow and in the word again.
        for (burst, drain) in [(3, 2), (40, 10), (5, 38), (70, 70), (2, 0), (1, 3)] {
            for _ in 0..burst {
                let meta = kinds[next % kinds.len()];
                next += 1;
                metas.push(meta);
                model.push_back(meta);
            }
            for _ in 0..drain {
                assert_eq!(metas.pop(), model.pop_front());
            }
        }
        assert_eq!(metas.pop(), None);
        assert_eq!(metas.word.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_offset_is_the_violating_frames_first_byte_in_this_read() {
        let ok = whole(0x82, b"fine");
        let bad = whole(0x80, b"x");
        let mut data = [&ok[..], &bad[..]].concat();
        let mut record = |_| {};
        let result = FrameTracker::new(100, false).feed(&mut data, &mut record);
        assert_eq!(
            result,
            Err((
                ok.len(),
                protocol("continuation frame outside a fragmented message")
            ))
        );
        // A header split across reads reports 0: it began in an earlier one.
        let mut tracker = FrameTracker::new(100, false);
        assert_eq!(tracker.feed(&mut bad.clone()[..1], &mut record), Ok(()));
        assert_eq!(
            tracker.feed(&mut bad.clone()[1..], &mut record),
            Err((
                0,
                protocol("continuation frame outside a fragmented message")
            ))
        );
    }
}
