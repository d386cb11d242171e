//! The frame-boundary guard: an `AsyncRead` adapter under fastwebsockets'
//! reader that follows frame headers as the bytes pass and fails the
//! connection before fastwebsockets buffers anything it should not.
//!
//! fastwebsockets checks the size of one frame but never the total of a
//! fragmented message, accepts unmasked client frames, and checks the
//! 125-byte control-frame limit only for pings. The guard enforces all three,
//! so that a 1 GiB frame header or an endless fragment stream costs nothing.
//! It also stamps the time of the last byte received, for the idle timeout.
//!
//! Bytes before a violating frame are still delivered; the error comes on the
//! next read, so messages that were complete are not lost to a later fault.

use std::{
    fmt, io,
    pin::Pin,
    sync::atomic::{AtomicU64, Ordering},
    task::{Context, Poll, ready},
};

use tokio::{
    io::{AsyncRead, ReadBuf},
    time::Instant,
};

/// Longest client frame header: 2 bytes, 8 of extended length, 4 of mask.
const MAX_HEADER_LEN: usize = 14;
/// Largest control-frame payload (RFC 6455 section 5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// Why the guard failed the connection: the close code to send, carried
/// inside the `io::Error` that fastwebsockets hands back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Violation {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.code)
    }
}

impl std::error::Error for Violation {}

impl Violation {
    /// The violation inside an error returned by a guarded read, if any.
    pub(crate) fn find(error: &io::Error) -> Option<Self> {
        error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<Self>())
            .copied()
    }
}

/// When the connection last received a byte, for the idle timeout.
pub(crate) struct Activity {
    start: Instant,
    last_nanos: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            last_nanos: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let nanos = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_nanos.store(nanos, Ordering::Relaxed);
    }

    /// The instant of the last byte received (or of the session start).
    pub(crate) fn last(&self) -> Instant {
        self.start + std::time::Duration::from_nanos(self.last_nanos.load(Ordering::Relaxed))
    }
}

/// Where the parser is in the client's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    Header {
        bytes: [u8; MAX_HEADER_LEN],
        have: usize,
    },
    Payload {
        remaining: u64,
    },
}

/// Frame-boundary tracking over the client's bytes. Pure: fed slices, it
/// answers where the first violation starts.
#[derive(Debug, Clone)]
pub(crate) struct FrameTracker {
    position: Position,
    message_len: u64,
    max_payload: u64,
}

impl FrameTracker {
    pub(crate) fn new(max_payload: usize) -> Self {
        Self {
            position: Position::Header {
                bytes: [0; MAX_HEADER_LEN],
                have: 0,
            },
            message_len: 0,
            max_payload: max_payload as u64,
        }
    }

    /// Follows `data`; on a violation returns it with the offset in `data`
    /// where the offending frame's header starts (0 if it began earlier).
    pub(crate) fn feed(&mut self, mut data: &[u8]) -> Result<(), (usize, Violation)> {
        let total = data.len();
        while !data.is_empty() {
            match &mut self.position {
                Position::Payload { remaining } => {
                    let take = (*remaining).min(data.len() as u64) as usize;
                    *remaining -= take as u64;
                    data = &data[take..];
                    if *remaining == 0 {
                        self.position = Position::Header {
                            bytes: [0; MAX_HEADER_LEN],
                            have: 0,
                        };
                    }
                }
                Position::Header { bytes, have } => {
                    let started_at = (total - data.len()).saturating_sub(*have);
                    bytes[*have] = data[0];
                    *have += 1;
                    data = &data[1..];
                    let Some(needed) = header_len(&bytes[..*have]) else {
                        continue;
                    };
                    if *have < needed {
                        continue;
                    }
                    let header = *bytes;
                    let payload = self
                        .check(&header[..needed])
                        .map_err(|violation| (started_at, violation))?;
                    self.position = if payload == 0 {
                        Position::Header {
                            bytes: [0; MAX_HEADER_LEN],
                            have: 0,
                        }
                    } else {
                        Position::Payload { remaining: payload }
                    };
                }
            }
        }
        Ok(())
    }

    /// Checks one complete header; returns its payload length.
    fn check(&mut self, header: &[u8]) -> Result<u64, Violation> {
        let opcode = header[0] & 0x0F;
        let masked = header[1] & 0x80 != 0;
        let len = match header[1] & 0x7F {
            126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
            127 => u64::from_be_bytes(header[2..10].try_into().expect("8 length bytes")),
            short => u64::from(short),
        };
        if !masked {
            return Err(Violation {
                code: 1002,
                reason: "client frames must be masked",
            });
        }
        if opcode & 0x8 != 0 {
            if len > MAX_CONTROL_PAYLOAD {
                return Err(Violation {
                    code: 1002,
                    reason: "control frame longer than 125 bytes",
                });
            }
            return Ok(len);
        }
        self.message_len = if opcode == 0 {
            self.message_len.saturating_add(len)
        } else {
            len
        };
        if self.message_len > self.max_payload {
            return Err(Violation {
                code: 1009,
                reason: "message too big",
            });
        }
        Ok(len)
    }
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
    activity: &'a Activity,
    pending: Option<Violation>,
}

impl<'a, R> FrameGuard<'a, R> {
    pub(crate) fn new(inner: R, max_payload: usize, activity: &'a Activity) -> Self {
        Self {
            inner,
            tracker: FrameTracker::new(max_payload),
            activity,
            pending: None,
        }
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
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        if new.is_empty() {
            return Poll::Ready(Ok(()));
        }
        this.activity.touch();
        if let Err((offset, violation)) = this.tracker.feed(new) {
            if offset == 0 {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, violation)));
            }
            buf.set_filled(before + offset);
            this.pending = Some(violation);
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(u8::from(fin) << 7) | opcode];
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
        out.extend_from_slice(&[1, 2, 3, 4]);
        out.extend(
            payload
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]),
        );
        out
    }

    #[test]
    fn accepts_valid_streams_split_at_every_byte() {
        let mut stream = frame(true, 1, b"hello");
        stream.extend(frame(false, 2, &[7; 300]));
        stream.extend(frame(true, 9, b"ping"));
        stream.extend(frame(true, 0, &[8; 70_000]));
        for split in 0..stream.len() {
            let mut tracker = FrameTracker::new(100_000);
            assert_eq!(tracker.feed(&stream[..split]), Ok(()), "split at {split}");
            assert_eq!(tracker.feed(&stream[split..]), Ok(()), "split at {split}");
            assert!(matches!(tracker.position, Position::Header { have: 0, .. }));
        }
    }

    #[test]
    fn fragments_add_up_to_the_message_limit() {
        let mut tracker = FrameTracker::new(100);
        assert_eq!(tracker.feed(&frame(false, 1, &[b'a'; 60])), Ok(()));
        let second = frame(true, 0, &[b'a'; 41]);
        assert_eq!(
            tracker.feed(&second),
            Err((
                0,
                Violation {
                    code: 1009,
                    reason: "message too big"
                }
            ))
        );
    }

    #[test]
    fn reports_where_the_bad_frame_starts() {
        let good = frame(true, 1, b"ok");
        let mut stream = good.clone();
        stream.extend_from_slice(&[0x82, 0x7F, 0, 0, 0, 0, 0x40, 0, 0, 0]); // 1 GiB, unmasked
        let mut tracker = FrameTracker::new(1 << 20);
        let (offset, violation) = tracker.feed(&stream).unwrap_err();
        assert_eq!(
            (offset, violation.code),
            (good.len(), 1002),
            "unmasked is caught first"
        );

        let mut tracker = FrameTracker::new(1 << 20);
        let mut huge = good.clone();
        huge.extend_from_slice(&[0x82, 0xFF, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4]);
        assert_eq!(
            tracker.feed(&huge).unwrap_err(),
            (
                good.len(),
                Violation {
                    code: 1009,
                    reason: "message too big"
                }
            )
        );
    }

    #[test]
    fn rejects_long_control_frames() {
        let mut tracker = FrameTracker::new(1 << 20);
        let (_, violation) = tracker.feed(&frame(true, 8, &[0; 126])).unwrap_err();
        assert_eq!(violation.code, 1002);
    }

    #[test]
    fn a_header_split_across_reads_reports_offset_zero() {
        let mut tracker = FrameTracker::new(10);
        let bad = frame(true, 2, &[0; 11]);
        assert_eq!(tracker.feed(&bad[..1]), Ok(()));
        assert_eq!(tracker.feed(&bad[1..]).unwrap_err().0, 0);
    }
}
