//! Outbound frame encoding: header and payload in one buffer, encoded once
//! and shared (`Bytes`) by every recipient.
//!
//! The server encodes its own frames rather than using fastwebsockets' write
//! half so that fan-out never re-frames per recipient and so that a later
//! permessage-deflate layer can set RSV1.

use bytes::{BufMut, Bytes, BytesMut};
use fastwebsockets::OpCode;

use crate::message::MessageKind;

use crate::protocol::frame::{FIN, LENGTH_16, LENGTH_64, MAX_SERVER_HEADER_LEN, OPCODE_PING, RSV1};

/// A ping without payload, the heartbeat's: one static frame for every
/// connection.
pub(crate) const EMPTY_PING: Bytes = Bytes::from_static(&[FIN | OPCODE_PING, 0]);

/// Encodes one unfragmented, unmasked server frame.
pub(crate) fn encode(opcode: OpCode, payload: &[u8]) -> Bytes {
    encode_with(opcode, payload, false)
}

/// Encodes a whole message, with RSV1 when its payload is compressed.
pub(crate) fn encode_message(kind: MessageKind, payload: &[u8], compressed: bool) -> Bytes {
    encode_with(kind.opcode(), payload, compressed)
}

fn encode_with(opcode: OpCode, payload: &[u8], compressed: bool) -> Bytes {
    let mut frame = BytesMut::with_capacity(MAX_SERVER_HEADER_LEN + payload.len());
    put_header(&mut frame, opcode, payload.len(), compressed);
    frame.put_slice(payload);
    frame.freeze()
}

/// A frame header alone, kept inline (no allocation), for a payload that is
/// written from its own shared buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    bytes: [u8; MAX_SERVER_HEADER_LEN],
    len: u8,
    /// Bytes already written (a vectored write may stop inside a header).
    written: u8,
}

impl Header {
    pub(crate) fn new(opcode: OpCode, payload_len: usize, compressed: bool) -> Self {
        let mut bytes = [0u8; MAX_SERVER_HEADER_LEN];
        let mut cursor = &mut bytes[..];
        put_header(&mut cursor, opcode, payload_len, compressed);
        let len = (MAX_SERVER_HEADER_LEN - cursor.len()) as u8;
        Self {
            bytes,
            len,
            written: 0,
        }
    }

    /// What is left to write.
    pub(crate) fn remaining(&self) -> &[u8] {
        &self.bytes[usize::from(self.written)..usize::from(self.len)]
    }

    pub(crate) fn advance(&mut self, count: usize) {
        self.written += count as u8;
    }
}

/// The length of a server frame header for a payload of `payload_len` bytes.
pub(crate) fn header_len(payload_len: usize) -> usize {
    match payload_len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => MAX_SERVER_HEADER_LEN,
    }
}

fn put_header(frame: &mut impl BufMut, opcode: OpCode, len: usize, compressed: bool) {
    frame.put_u8(FIN | if compressed { RSV1 } else { 0 } | opcode as u8);
    match len {
        0..=125 => frame.put_u8(len as u8),
        126..=0xFFFF => {
            frame.put_u8(LENGTH_16);
            frame.put_u16(len as u16);
        }
        _ => {
            frame.put_u8(LENGTH_64);
            frame.put_u64(len as u64);
        }
    }
}

/// Encodes a close frame with a status code and a reason, truncated to the
/// 123 bytes a control frame leaves for it (on a character boundary).
pub(crate) fn close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode(OpCode::Close, &payload)
}

/// The status code of an encoded server close frame, `None` for a close
/// without one. A close frame's payload is at most 125 bytes, so its header
/// is the 2-byte form and the code, if any, follows it.
pub(crate) fn close_code(frame: &[u8]) -> Option<u16> {
    frame
        .get(2..4)
        .map(|code| u16::from_be_bytes([code[0], code[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_each_length_form() {
        for (len, header) in [
            (0, vec![0x82, 0]),
            (125, vec![0x82, 125]),
            (126, vec![0x82, 126, 0, 126]),
            (65_536, vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let frame = encode(OpCode::Binary, &vec![7; len]);
            assert_eq!(&frame[..header.len()], &header[..], "length {len}");
            assert_eq!(frame.len(), header.len() + len);
        }
    }

    #[test]
    fn inline_headers_match_encoded_frames() {
        for len in [0, 125, 126, 65_535, 65_536] {
            let frame = encode_message(MessageKind::Text, &vec![b'x'; len], false);
            let header = Header::new(OpCode::Text, len, false);
            assert_eq!(
                header.remaining(),
                &frame[..frame.len() - len],
                "length {len}"
            );
            assert_eq!(header_len(len), header.remaining().len(), "length {len}");
        }
    }

    #[test]
    fn close_codes_are_read_back() {
        let cases: [(Bytes, Option<u16>); 5] = [
            (close(1000, "bye"), Some(1000)),
            (close(1013, ""), Some(1013)),
            (close(4999, &"x".repeat(200)), Some(4999)),
            // The echo of a client's close without a code.
            (encode(OpCode::Close, b""), None),
            // The echo of a client's close with a code and reason.
            (encode(OpCode::Close, b"\x03\xE9going"), Some(1001)),
        ];
        for (frame, code) in cases {
            assert_eq!(close_code(&frame), code, "{frame:?}");
        }
    }

    #[test]
    fn close_reason_fits_a_control_frame() {
        let frame = close(1001, &"é".repeat(100));
        assert_eq!(frame[0], 0x88);
        assert!(frame[1] <= 125);
        assert_eq!(&frame[2..4], &1001u16.to_be_bytes());
        assert!(std::str::from_utf8(&frame[4..]).is_ok());
    }
}
