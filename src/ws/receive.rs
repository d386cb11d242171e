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
use fastwebsockets::{Payload, WebSocketError};

use super::{
    deflate::codec::{InflateError, Inflater},
    guard::{MessageMeta, Violation},
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

    /// A frame no reader should have let through.
    pub(crate) const PROTOCOL: Self = Self::protocol(close::PROTOCOL_ERROR, "protocol error");

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

    /// The failure the frame guard reported.
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
pub(crate) fn close_for(error: &WebSocketError) -> Option<Failure> {
    match error {
        WebSocketError::IoError(io) => Violation::find(io).map(Failure::from_violation),
        WebSocketError::UnexpectedEOF | WebSocketError::ConnectionClosed => None,
        WebSocketError::InvalidUTF8 => Some(Failure::INVALID_UTF8),
        WebSocketError::FrameTooLarge => Some(Failure::TOO_BIG),
        _ => Some(Failure::PROTOCOL),
    }
}

/// A complete message as the client sent it.
pub(crate) type Message = (MessageKind, Bytes);

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

    /// Takes one data frame: `start` is the meta the guard recorded if the
    /// frame starts a message, `None` for a continuation. Returns the message
    /// once its last frame is in.
    pub(crate) fn push(
        &mut self,
        start: Option<MessageMeta>,
        fin: bool,
        payload: Payload<'_>,
    ) -> Result<Option<Message>, Failure> {
        let mut partial = match (start, self.partial.take()) {
            (Some(meta), None) if fin => {
                let payload = if meta.compressed {
                    let max_payload = self.max_payload;
                    Bytes::from(self.inflater()?.inflate(&payload, max_payload)?)
                } else {
                    into_bytes(payload)
                };
                return whole(meta, payload).map(Some);
            }
            (Some(meta), None) => Partial {
                meta,
                data: Vec::new(),
                checked: 0,
            },
            (None, Some(partial)) => partial,
            // The guard fails both before fastwebsockets reads them.
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
            // The guard bounds the total already; this keeps the promise
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

    /// The inflater, built on first use.
    fn inflater(&mut self) -> Result<&mut Inflater, Failure> {
        // The guard marks messages compressed only when deflate was agreed.
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

/// The payload as shared bytes, without a copy where fastwebsockets owns it.
fn into_bytes(payload: Payload<'_>) -> Bytes {
    match payload {
        Payload::Bytes(bytes) => bytes.freeze(),
        Payload::Owned(vec) => Bytes::from(vec),
        borrowed => Bytes::copy_from_slice(&borrowed),
    }
}
