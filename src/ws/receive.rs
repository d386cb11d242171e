//! What the session makes of what it reads, as pure functions: data frames
//! joined into messages, and read errors turned into the close code the
//! client is owed.
//!
//! A message is checked as its fragments arrive, not when it completes: a
//! compressed one is inflated fragment by fragment (never past
//! `max_payload`), and a text one is validated as UTF-8 fragment by fragment,
//! so that it fails with 1007 as soon as its bytes can no longer become valid
//! UTF-8 (RFC 6455 section 8.1). A single-frame message, the common case, is
//! checked whole, and handed on without a copy unless it was compressed.

use bytes::Bytes;

use super::{
    deflate::codec::{InflateError, Inflater},
    reader::{Frame, FrameKind, MessageMeta, ReadError, Violation},
};
use crate::{message::MessageKind, protocol::close, stats::Reason};

/// Why the session closes the connection: the close code, its reason and
/// the enforcement counter it bumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
    pub(crate) counted: Reason,
}

impl Failure {
    const TOO_BIG: Self = Self {
        code: close::TOO_BIG,
        reason: "message too big",
        counted: Reason::TooBig,
    };

    const INVALID_UTF8: Self = Self::protocol(close::INVALID_PAYLOAD, "invalid UTF-8");

    const CORRUPT: Self = Self::protocol(close::INVALID_PAYLOAD, "invalid compressed data");

    /// Frames the reader never lets through: kept so that the assembler
    /// keeps its promises on its own.
    const PROTOCOL: Self = Self::protocol(close::PROTOCOL_ERROR, "protocol error");

    /// Over `message_rate` or `byte_rate` in close mode.
    pub(crate) const RATE_LIMIT: Self = Self {
        code: close::POLICY_VIOLATION,
        reason: "rate limit",
        counted: Reason::RateLimit,
    };

    const fn protocol(code: u16, reason: &'static str) -> Self {
        Self {
            code,
            reason,
            counted: Reason::Protocol,
        }
    }

    /// The failure the frame reader reported.
    fn from_violation(violation: Violation) -> Self {
        let counted = if violation.code == close::TOO_BIG {
            Reason::TooBig
        } else {
            Reason::Protocol
        };
        Self {
            code: violation.code,
            reason: violation.reason,
            counted,
        }
    }
}

impl From<InflateError> for Failure {
    fn from(error: InflateError) -> Self {
        match error {
            InflateError::TooBig => Self::TOO_BIG,
            InflateError::Corrupt => Self::CORRUPT,
        }
    }
}

/// The close code, reason and counter for a read error, or `None` when the
/// connection is simply gone (nothing can be sent).
pub(crate) fn close_for(error: ReadError) -> Option<Failure> {
    match error {
        ReadError::Gone => None,
        ReadError::Broken(violation) => Some(Failure::from_violation(violation)),
    }
}

/// A complete message as the client sent it.
pub(crate) type Message = (MessageKind, Bytes);

/// What one frame amounts to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// The last frame of a message: the whole message.
    Message(Message),
    /// A ping, to be answered with a pong carrying this payload.
    Ping(Bytes),
    /// The client's close, to be answered with this payload.
    Close(Bytes),
    /// Nothing to act on: a fragment of a message still arriving, a pong.
    Nothing,
}

/// Joins one connection's data frames into messages.
pub(crate) struct Assembler {
    max_payload: usize,
    /// `Some` when permessage-deflate was negotiated: whether the client
    /// resets its compressor after every message.
    deflate: Option<bool>,
    /// Built on the first compressed message: a connection that negotiated
    /// deflate but sends nothing (or nothing compressed) pays nothing.
    inflater: Option<Inflater>,
    /// The fragmented message being received.
    partial: Option<Partial>,
}

/// A message whose last fragment has not arrived.
struct Partial {
    meta: MessageMeta,
    /// The payload so far, inflated if the message is compressed.
    data: Vec<u8>,
    /// How much of `data` is known to be valid UTF-8 (text only).
    checked: usize,
}

impl Assembler {
    /// `deflate`: `Some(client_no_context_takeover)` when permessage-deflate
    /// was negotiated.
    pub(crate) fn new(max_payload: usize, deflate: Option<bool>) -> Self {
        Self {
            max_payload,
            deflate,
            inflater: None,
            partial: None,
        }
    }

    /// Takes one frame: messages come out in the order their first frames
    /// came in.
    pub(crate) fn frame(&mut self, frame: Frame) -> Result<Received, Failure> {
        let start = match frame.kind {
            FrameKind::Start(meta) => Some(meta),
            FrameKind::Continuation => None,
            FrameKind::Close => return Ok(Received::Close(frame.payload)),
            FrameKind::Ping => return Ok(Received::Ping(frame.payload)),
            FrameKind::Pong => return Ok(Received::Nothing),
        };
        Ok(match self.push(start, frame.fin, frame.payload)? {
            Some(message) => Received::Message(message),
            None => Received::Nothing,
        })
    }

    /// Takes one data frame: `start` is its message's meta if the frame
    /// starts one, `None` for a continuation. Returns the message once its
    /// last frame is in.
    fn push(
        &mut self,
        start: Option<MessageMeta>,
        fin: bool,
        payload: Bytes,
    ) -> Result<Option<Message>, Failure> {
        let mut partial = match (start, self.partial.take()) {
            (Some(meta), None) if fin => {
                let payload = if meta.compressed {
                    let max_payload = self.max_payload;
                    Bytes::from(self.inflater()?.inflate(&payload, max_payload)?)
                } else {
                    payload
                };
                return whole(meta, payload).map(Some);
            }
            (Some(meta), None) => Partial {
                meta,
                data: Vec::new(),
                checked: 0,
            },
            (None, Some(partial)) => partial,
            // The reader fails both.
            (Some(_), Some(_)) | (None, None) => return Err(Failure::PROTOCOL),
        };
        self.append(&mut partial, &payload)?;
        if !fin {
            self.partial = Some(partial);
            return Ok(None);
        }
        if partial.meta.compressed {
            let max_payload = self.max_payload;
            self.inflater()?.finish(&mut partial.data, max_payload)?;
        }
        if partial.meta.text {
            check_utf8(&partial.data, &mut partial.checked, true)?;
        }
        Ok(Some((kind(partial.meta), Bytes::from(partial.data))))
    }

    /// Adds one fragment's payload: inflated if the message is compressed,
    /// and checked as far as it can be if it is text.
    fn append(&mut self, partial: &mut Partial, input: &[u8]) -> Result<(), Failure> {
        if partial.meta.compressed {
            let max_payload = self.max_payload;
            self.inflater()?
                .inflate_part(input, &mut partial.data, max_payload)?;
        } else {
            // The reader bounds the total already; this keeps the promise
            // whatever reads the frames.
            if partial.data.len() + input.len() > self.max_payload {
                return Err(Failure::TOO_BIG);
            }
            partial.data.extend_from_slice(input);
        }
        if partial.meta.text {
            check_utf8(&partial.data, &mut partial.checked, false)?;
        }
        Ok(())
    }

    /// Whether it holds nothing a later message depends on: no message
    /// half received, no inflater (whose window the client may refer to).
    pub(crate) fn is_idle(&self) -> bool {
        self.partial.is_none() && self.inflater.is_none()
    }

    /// The inflater, built on first use.
    fn inflater(&mut self) -> Result<&mut Inflater, Failure> {
        // The reader marks messages compressed only when deflate was agreed.
        let reset_each_message = self.deflate.ok_or(Failure::PROTOCOL)?;
        Ok(self
            .inflater
            .get_or_insert_with(|| Inflater::new(reset_each_message)))
    }
}

/// A message that arrived in one frame (inflated if it was compressed).
fn whole(meta: MessageMeta, payload: Bytes) -> Result<Message, Failure> {
    if meta.text && simdutf8::basic::from_utf8(&payload).is_err() {
        return Err(Failure::INVALID_UTF8);
    }
    Ok((kind(meta), payload))
}

fn kind(meta: MessageMeta) -> MessageKind {
    if meta.text {
        MessageKind::Text
    } else {
        MessageKind::Binary
    }
}

/// Validates `data[*checked..]`, moving `checked` past what is valid. Until
/// the message is `complete`, a character cut at the end of `data` may still
/// be completed by the next fragment; anything else invalid fails now.
fn check_utf8(data: &[u8], checked: &mut usize, complete: bool) -> Result<(), Failure> {
    match simdutf8::compat::from_utf8(&data[*checked..]) {
        Ok(_) => {
            *checked = data.len();
            Ok(())
        }
        Err(error) if error.error_len().is_none() && !complete => {
            *checked += error.valid_up_to();
            Ok(())
        }
        Err(_) => Err(Failure::INVALID_UTF8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::{
        deflate::codec::Deflater,
        reader::tests::{BINARY, COMPRESSED_BINARY, COMPRESSED_TEXT, TEXT},
    };

    /// One frame as the session hands it over: the meta if it starts a
    /// message, FIN, and the payload.
    type In = (Option<MessageMeta>, bool, Vec<u8>);

    fn start(meta: MessageMeta, fin: bool, payload: &[u8]) -> In {
        (Some(meta), fin, payload.to_vec())
    }

    fn more(fin: bool, payload: &[u8]) -> In {
        (None, fin, payload.to_vec())
    }

    /// What one frame produced.
    type Out = Result<Option<Message>, Failure>;

    /// What each of `frames` produced, in order.
    fn run(assembler: &mut Assembler, frames: &[In]) -> Vec<Out> {
        frames
            .iter()
            .map(|(meta, fin, payload)| {
                assembler.push(*meta, *fin, Bytes::copy_from_slice(payload))
            })
            .collect()
    }

    fn text(payload: &[u8]) -> Out {
        Ok(Some((MessageKind::Text, Bytes::copy_from_slice(payload))))
    }

    fn binary(payload: &[u8]) -> Out {
        Ok(Some((MessageKind::Binary, Bytes::copy_from_slice(payload))))
    }

    const PENDING: Out = Ok(None);

    fn deflate(payload: &[u8]) -> Vec<u8> {
        Deflater::new(6, 15, true).compress(payload).to_vec()
    }

    #[test]
    fn frames_become_messages_or_failures() {
        let abc = deflate(b"abcabcabc");
        let (abc_head, abc_tail) = abc.split_at(abc.len() / 2);
        let bad_text = deflate(b"ok \xFF");
        // A final stored block ("hi"), then junk.
        let final_block = [0x01, 0x02, 0x00, 0xFD, 0xFF, b'h', b'i'];
        let cases: Vec<(&str, Vec<In>, Vec<Out>)> = vec![
            (
                "one text frame",
                vec![start(TEXT, true, b"hello")],
                vec![text(b"hello")],
            ),
            (
                "text in fragments, control frames aside",
                vec![
                    start(TEXT, false, b"he"),
                    more(false, b""),
                    more(true, b"llo"),
                ],
                vec![PENDING, PENDING, text(b"hello")],
            ),
            (
                "binary is never checked",
                vec![start(BINARY, true, b"\xFF\xFE")],
                vec![binary(b"\xFF\xFE")],
            ),
            (
                "invalid UTF-8 in one frame",
                vec![start(TEXT, true, b"a\xFF")],
                vec![Err(Failure::INVALID_UTF8)],
            ),
            (
                "invalid UTF-8 fails at its fragment",
                vec![start(TEXT, false, b"ok"), more(false, b"a\xFFb")],
                vec![PENDING, Err(Failure::INVALID_UTF8)],
            ),
            (
                "a character split between fragments",
                vec![start(TEXT, false, b"a\xC3"), more(true, b"\xA9b")],
                vec![PENDING, text("aéb".as_bytes())],
            ),
            (
                "a lead byte followed by a non-continuation",
                vec![start(TEXT, false, b"\xC3"), more(false, b"(")],
                vec![PENDING, Err(Failure::INVALID_UTF8)],
            ),
            (
                "a text ending mid-character",
                vec![start(TEXT, false, b"a\xE2\x82"), more(true, b"")],
                vec![PENDING, Err(Failure::INVALID_UTF8)],
            ),
            (
                "fragments past max_payload",
                vec![start(BINARY, false, &[0; 8]), more(true, &[0; 3])],
                vec![PENDING, Err(Failure::TOO_BIG)],
            ),
            (
                "exactly max_payload in fragments",
                vec![start(BINARY, false, &[1; 8]), more(true, &[1; 2])],
                vec![PENDING, binary(&[1; 10])],
            ),
            (
                "one compressed frame",
                vec![start(COMPRESSED_TEXT, true, &abc)],
                vec![text(b"abcabcabc")],
            ),
            (
                "compressed, in fragments",
                vec![
                    start(COMPRESSED_BINARY, false, abc_head),
                    more(true, abc_tail),
                ],
                vec![PENDING, binary(b"abcabcabc")],
            ),
            (
                "compressed empty message",
                vec![start(COMPRESSED_TEXT, true, &[0x00])],
                vec![text(b"")],
            ),
            (
                "compressed invalid UTF-8 fails before the message ends",
                vec![start(COMPRESSED_TEXT, false, &bad_text)],
                vec![Err(Failure::INVALID_UTF8)],
            ),
            (
                "compressed past max_payload",
                vec![start(COMPRESSED_BINARY, true, &deflate(&[0; 11]))],
                vec![Err(Failure::TOO_BIG)],
            ),
            (
                "a final block alone",
                vec![start(COMPRESSED_BINARY, true, &final_block)],
                vec![binary(b"hi")],
            ),
            (
                "bytes after a final block",
                vec![start(
                    COMPRESSED_BINARY,
                    true,
                    &[&final_block[..], b"x"].concat(),
                )],
                vec![Err(Failure::CORRUPT)],
            ),
            (
                "a fragment after a final block",
                vec![
                    start(COMPRESSED_BINARY, false, &final_block),
                    more(true, b"x"),
                ],
                vec![PENDING, Err(Failure::CORRUPT)],
            ),
            (
                "garbage",
                vec![start(COMPRESSED_BINARY, true, &[0xFF; 8])],
                vec![Err(Failure::CORRUPT)],
            ),
            (
                "a continuation outside a message",
                vec![more(true, b"x")],
                vec![Err(Failure::PROTOCOL)],
            ),
            (
                "a new message inside one",
                vec![start(TEXT, false, b"a"), start(TEXT, true, b"b")],
                vec![PENDING, Err(Failure::PROTOCOL)],
            ),
        ];
        for (name, frames, expected) in cases {
            let mut assembler = Assembler::new(10, Some(true));
            assert_eq!(run(&mut assembler, &frames), expected, "{name}");
        }
    }

    #[test]
    fn compressed_data_without_deflate_is_a_protocol_error() {
        let mut assembler = Assembler::new(100, None);
        let frames = [start(COMPRESSED_TEXT, true, &deflate(b"hi"))];
        assert_eq!(run(&mut assembler, &frames), vec![Err(Failure::PROTOCOL)]);
    }

    #[test]
    fn the_inflater_is_built_by_the_first_compressed_message_only() {
        let mut assembler = Assembler::new(100, Some(false));
        let plain = [start(TEXT, true, b"plain"), start(BINARY, false, b"x")];
        run(&mut assembler, &plain);
        assert!(assembler.inflater.is_none());
        let mut assembler = Assembler::new(100, Some(false));
        run(
            &mut assembler,
            &[start(COMPRESSED_TEXT, true, &deflate(b"hi"))],
        );
        assert!(assembler.inflater.is_some());
    }

    #[test]
    fn context_takeover_carries_over_between_messages() {
        let mut deflater = Deflater::new(6, 15, false);
        let mut assembler = Assembler::new(1000, Some(false));
        for _ in 0..3 {
            let compressed = deflater.compress(b"the same words, the same words");
            let frames = [start(COMPRESSED_TEXT, true, &compressed)];
            assert_eq!(
                run(&mut assembler, &frames),
                vec![text(b"the same words, the same words")]
            );
        }
    }

    #[test]
    fn read_errors_map_to_close_codes() {
        let violation = Violation {
            code: close::PROTOCOL_ERROR,
            reason: "client frames must be masked",
        };
        let cases = [
            (
                ReadError::Broken(violation),
                Some(Failure::protocol(
                    close::PROTOCOL_ERROR,
                    "client frames must be masked",
                )),
            ),
            (
                ReadError::Broken(Violation::TOO_BIG),
                Some(Failure::TOO_BIG),
            ),
            // The peer is gone: nothing can be sent.
            (ReadError::Gone, None),
        ];
        for (error, expected) in cases {
            assert_eq!(close_for(error), expected, "{error:?}");
        }
    }

    #[test]
    fn utf8_is_checked_as_far_as_it_can_be() {
        // (bytes, complete?, result, how far it is known valid)
        let cases: [(&[u8], bool, bool, usize); 7] = [
            (b"abc", false, true, 3),
            (b"ab\xC3", false, true, 2),
            (b"ab\xC3", true, false, 2),
            (b"ab\xE2\x82", false, true, 2),
            (b"ab\xFF", false, false, 0),
            (b"\xC3\xA9", true, true, 2),
            (b"\xED\xA0\x80", false, false, 0),
        ];
        for (bytes, complete, ok, valid) in cases {
            let mut checked = 0;
            let result = check_utf8(bytes, &mut checked, complete);
            assert_eq!(result.is_ok(), ok, "{bytes:?}");
            if ok {
                assert_eq!(checked, valid, "{bytes:?}");
            }
        }
    }
}
