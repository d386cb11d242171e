//! permessage-deflate (RFC 7692) for the load generator: the offer, reading
//! the server's answer, inflating the server's messages and compressing the
//! client's.
//!
//! The client offers `client_no_context_takeover`: it compresses every
//! message on its own, so each distinct message is compressed once, before
//! the run, and its frame reused; the hot path never compresses. Server
//! messages are inflated as a browser would, keeping the server's context
//! unless the server announced `server_no_context_takeover`.

use std::io;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

/// What the compression scenario offers in `Sec-WebSocket-Extensions`.
pub const OFFER: &str = "permessage-deflate; client_no_context_takeover";

/// What Chromium and Firefox offer: the client keeps its context and lets
/// the server choose the client's window. The capacity, soak and reload
/// scenarios offer this, so that the server holds what it holds for a
/// browser. (Messages compressed each on its own, as [`compress_message`]
/// does, refer to nothing before them, so they are valid whatever the
/// server answers about the client's context.)
pub const BROWSER_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// The empty stored block a sync flush ends with, stripped on the wire
/// (RFC 7692 section 7.2.1) and appended again before inflating.
const SYNC_TRAILER: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// The parameters the server accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    /// The server resets its compressor after every message: so must we.
    pub server_no_context_takeover: bool,
    /// The window the server compresses with.
    pub server_max_window_bits: u8,
}

/// Reads the server's `Sec-WebSocket-Extensions` answer. `None` when it
/// accepted no permessage-deflate offer (compression off).
pub fn agreement(response: Option<&str>) -> Option<Agreement> {
    let first = response?.split(',').next()?;
    let mut params = first.split(';').map(str::trim);
    if !params.next()?.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let mut agreement = Agreement {
        server_no_context_takeover: false,
        server_max_window_bits: 15,
    };
    for param in params {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (param, None),
        };
        match (name.to_ascii_lowercase().as_str(), value) {
            ("server_no_context_takeover", None) => agreement.server_no_context_takeover = true,
            ("server_max_window_bits", Some(bits)) => {
                agreement.server_max_window_bits =
                    bits.parse().ok().filter(|b| (9..=15).contains(b))?;
            }
            _ => {}
        }
    }
    Some(agreement)
}

/// Inflates the server's compressed messages on one connection.
pub struct Inflater {
    inner: Decompress,
    reset_each_message: bool,
    out: Vec<u8>,
}

impl Inflater {
    pub fn new(agreement: &Agreement) -> Self {
        Self {
            inner: Decompress::new_with_window_bits(false, agreement.server_max_window_bits),
            reset_each_message: agreement.server_no_context_takeover,
            out: Vec::with_capacity(4096),
        }
    }

    /// Inflates one whole message payload (RSV1 set) and returns it.
    pub fn inflate(&mut self, payload: &[u8]) -> io::Result<&[u8]> {
        self.out.clear();
        self.feed(payload)?;
        self.feed(&SYNC_TRAILER)?;
        if self.reset_each_message {
            self.inner.reset(false);
        }
        Ok(&self.out)
    }

    /// Inflates `input` whole into `out`; done once the input is consumed
    /// and the output was not full (a full output may hide pending bytes).
    fn feed(&mut self, mut input: &[u8]) -> io::Result<()> {
        loop {
            if self.out.capacity() - self.out.len() < 1024 {
                self.out.reserve(16 * 1024);
            }
            let (before_in, before_out) = (self.inner.total_in(), self.inner.total_out());
            self.inner
                .decompress_vec(input, &mut self.out, FlushDecompress::Sync)
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
            let consumed = (self.inner.total_in() - before_in) as usize;
            let produced = self.inner.total_out() - before_out;
            input = &input[consumed..];
            if input.is_empty() && self.out.len() < self.out.capacity() {
                return Ok(());
            }
            if consumed == 0 && produced == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the deflate stream made no progress",
                ));
            }
        }
    }
}

/// Compresses one message on its own (no context), as a client that
/// offered `client_no_context_takeover` does: raw deflate, sync flush,
/// trailer stripped.
pub fn compress_message(payload: &[u8], level: u32) -> Vec<u8> {
    if payload.is_empty() {
        return vec![0x00];
    }
    let mut compress = Compress::new_with_window_bits(Compression::new(level), false, 15);
    let mut out = Vec::with_capacity(payload.len() / 2 + 64);
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(16 * 1024);
        }
        let consumed = compress.total_in() as usize;
        compress
            .compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync)
            .expect("deflate cannot fail on a fresh stream");
        if compress.total_in() as usize == payload.len() && out.len() < out.capacity() {
            break;
        }
    }
    assert!(
        out.ends_with(&SYNC_TRAILER),
        "a sync flush ends with an empty stored block"
    );
    out.truncate(out.len() - SYNC_TRAILER.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_answer() {
        assert_eq!(agreement(None), None);
        assert_eq!(agreement(Some("x-webkit-deflate-frame")), None);
        assert_eq!(
            agreement(Some("permessage-deflate")),
            Some(Agreement {
                server_no_context_takeover: false,
                server_max_window_bits: 15
            })
        );
        assert_eq!(
            agreement(Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"
            )),
            Some(Agreement {
                server_no_context_takeover: true,
                server_max_window_bits: 10
            })
        );
    }

    #[test]
    fn round_trips_with_and_without_context() {
        let messages: Vec<Vec<u8>> = (0..50)
            .map(|i| {
                format!(
                    "{{\"seq\":{i},\"text\":\"{}\"}}",
                    "hello world ".repeat(i % 7 + 1)
                )
                .into_bytes()
            })
            .collect();
        // Independent messages inflate with or without keeping context.
        for reset in [false, true] {
            let mut inflater = Inflater::new(&Agreement {
                server_no_context_takeover: reset,
                server_max_window_bits: 15,
            });
            for message in &messages {
                let compressed = compress_message(message, 6);
                assert_eq!(inflater.inflate(&compressed).unwrap(), &message[..]);
            }
        }
        // A context-keeping stream (as in dedicated mode) needs the context.
        let mut stream = Compress::new_with_window_bits(Compression::new(6), false, 15);
        let mut inflater = Inflater::new(&Agreement {
            server_no_context_takeover: false,
            server_max_window_bits: 15,
        });
        for message in &messages {
            let mut out = Vec::with_capacity(message.len() + 64);
            stream
                .compress_vec(message, &mut out, FlushCompress::Sync)
                .unwrap();
            out.truncate(out.len() - 4);
            assert_eq!(inflater.inflate(&out).unwrap(), &message[..]);
        }
        // The one-byte empty message.
        assert_eq!(inflater.inflate(&[0x00]).unwrap(), b"");
    }
}
