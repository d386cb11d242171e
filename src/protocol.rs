//! WebSocket protocol constants (RFC 6455, RFC 7692), named once for every
//! module that reads or writes frames, sends close codes or negotiates
//! compression windows.

/// Close codes (RFC 6455 section 7.4.1, and the IANA registry for 1012-1014).
pub(crate) mod close {
    /// The purpose of the connection was fulfilled.
    pub(crate) const NORMAL: u16 = 1000;
    /// The server is going away: shutdown, reload removed the channel, idle.
    pub(crate) const GOING_AWAY: u16 = 1001;
    /// The peer broke the framing rules.
    pub(crate) const PROTOCOL_ERROR: u16 = 1002;
    /// A close frame without a status code (never sent, only reported).
    pub(crate) const NO_STATUS: u16 = 1005;
    /// The connection ended without a close frame (never sent, only reported).
    pub(crate) const ABNORMAL: u16 = 1006;
    /// A text message was not UTF-8, or compressed data was corrupt.
    pub(crate) const INVALID_PAYLOAD: u16 = 1007;
    /// The peer broke a policy: a rate limit, publishing where it may not.
    pub(crate) const POLICY_VIOLATION: u16 = 1008;
    /// A message exceeded `max_payload`.
    pub(crate) const TOO_BIG: u16 = 1009;
    /// The client cannot keep up (or the server is overloaded): try again later.
    pub(crate) const TRY_AGAIN_LATER: u16 = 1013;
    /// The connection's credentials expired without an in-band refresh. In
    /// the private-use range (4000-4999), mirroring HTTP's 401.
    // The session sends it once it is wired to `auth`; until then only docs name it.
    pub(crate) const TOKEN_EXPIRED: u16 = 4401;
}

/// Frame header bits and sizes (RFC 6455 section 5.2).
pub(crate) mod frame {
    /// FIN: the last frame of a message.
    pub(crate) const FIN: u8 = 0x80;
    /// RSV1: the message is compressed (permessage-deflate).
    pub(crate) const RSV1: u8 = 0x40;
    /// RSV2 and RSV3: no extension we agree to defines them.
    pub(crate) const RSV2_RSV3: u8 = 0x30;
    /// The opcode's bits in the first header byte.
    pub(crate) const OPCODE: u8 = 0x0F;
    /// Set in every control frame's opcode.
    pub(crate) const CONTROL: u8 = 0x8;
    /// Continuation frame opcode.
    pub(crate) const OPCODE_CONTINUATION: u8 = 0x0;
    /// Text frame opcode.
    pub(crate) const OPCODE_TEXT: u8 = 0x1;
    /// Binary frame opcode.
    pub(crate) const OPCODE_BINARY: u8 = 0x2;
    /// Close frame opcode.
    pub(crate) const OPCODE_CLOSE: u8 = 0x8;
    /// Ping frame opcode.
    pub(crate) const OPCODE_PING: u8 = 0x9;
    /// Pong frame opcode.
    pub(crate) const OPCODE_PONG: u8 = 0xA;
    /// In the second header byte: the payload is masked.
    pub(crate) const MASKED: u8 = 0x80;
    /// In the second header byte: the payload length's bits.
    pub(crate) const LENGTH: u8 = 0x7F;
    /// A length field announcing a 16-bit extended length.
    pub(crate) const LENGTH_16: u8 = 126;
    /// A length field announcing a 64-bit extended length.
    pub(crate) const LENGTH_64: u8 = 127;
    /// The masking key's size.
    pub(crate) const MASK_LEN: usize = 4;
    /// Largest header of a server frame: 2 bytes and a 64-bit length, no mask.
    pub(crate) const MAX_SERVER_HEADER_LEN: usize = 10;
    /// Largest header of a client frame: a server header plus the 4-byte mask.
    pub(crate) const MAX_CLIENT_HEADER_LEN: usize = MAX_SERVER_HEADER_LEN + 4;
    /// Largest control-frame payload (section 5.5).
    pub(crate) const MAX_CONTROL_PAYLOAD: u64 = 125;
}

/// permessage-deflate window sizes (RFC 7692 section 7.1.2): zlib honours
/// 9-15; 8 is in the RFC but zlib cannot produce it, so it is declined.
pub(crate) mod window_bits {
    /// Smallest LZ77 window we agree to (2^9 bytes).
    pub(crate) const MIN: u8 = 9;
    /// Largest LZ77 window, and the default (2^15 bytes).
    pub(crate) const MAX: u8 = 15;
    /// How many distinct windows there are.
    pub(crate) const COUNT: usize = (MAX - MIN + 1) as usize;
}
