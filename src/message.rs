//! The unit a channel relays: a whole text or binary message.

use bytes::Bytes;

/// A whole WebSocket message, relayed verbatim: text stays text and binary
/// stays binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    kind: MessageKind,
    payload: Bytes,
}

/// Text or binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A UTF-8 text message.
    Text,
    /// A binary message.
    Binary,
}

impl MessageKind {
    /// The frame opcode of this kind.
    pub(crate) fn opcode(self) -> fastwebsockets::OpCode {
        match self {
            Self::Text => fastwebsockets::OpCode::Text,
            Self::Binary => fastwebsockets::OpCode::Binary,
        }
    }
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            kind: MessageKind::Text,
            payload: Bytes::from(text.into()),
        }
    }

    /// A text message from bytes that must be UTF-8 (a message another
    /// node relayed): the bytes are shared, not copied.
    pub(crate) fn text_from_utf8(payload: Bytes) -> Result<Self, simdutf8::basic::Utf8Error> {
        simdutf8::basic::from_utf8(&payload)?;
        Ok(Self {
            kind: MessageKind::Text,
            payload,
        })
    }

    /// A message of `kind` whose payload the caller has checked (text a
    /// session validated as UTF-8).
    pub(crate) fn from_parts(kind: MessageKind, payload: Bytes) -> Self {
        Self { kind, payload }
    }

    /// A binary message.
    pub fn binary(payload: impl Into<Bytes>) -> Self {
        Self {
            kind: MessageKind::Binary,
            payload: payload.into(),
        }
    }

    /// Text or binary.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// The payload bytes.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }
}
