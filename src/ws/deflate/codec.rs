//! Compressing and inflating one permessage-deflate message (RFC 7692
//! section 7.2), with flate2 on the zlib-rs backend.
//!
//! Compression uses a sync flush and strips the trailing `00 00 ff ff`.
//! `compress_vec` is called until all input is consumed *and* the output has
//! room left over, because a sync flush that fills the output exactly may
//! still owe bytes (a prototype lost data with less; `DeflateEncoder::flush`
//! lost bytes too). Inflating stops as soon as the output would pass the
//! caller's limit, so a decompression bomb costs at most that limit.

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The empty stored block a sync flush ends with; stripped on the wire.
const SYNC_TRAILER: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];
/// Output growth step while compressing or inflating.
const CHUNK: usize = 16 * 1024;
/// The smallest output buffer an inflate starts with: deflate's smallest
/// messages grow several times over, so twice the input is often short.
const MIN_OUTPUT: usize = 64;

/// One direction's compressor.
pub(crate) struct Deflater {
    compress: Compress,
    reset_each_message: bool,
    level: u32,
    window_bits: u8,
}

impl Deflater {
    /// `window_bits` 9-15; `reset_each_message` for no-context-takeover.
    pub(crate) fn new(level: u32, window_bits: u8, reset_each_message: bool) -> Self {
        Self {
            compress: Compress::new_with_window_bits(Compression::new(level), false, window_bits),
            reset_each_message,
            level,
            window_bits,
        }
    }

    /// The level and window it compresses with.
    pub(crate) fn params(&self) -> (u32, u8) {
        (self.level, self.window_bits)
    }

    /// Compresses one whole message payload.
    pub(crate) fn compress(&mut self, payload: &[u8]) -> Bytes {
        if payload.is_empty() {
            // A sync flush with nothing new may emit nothing at all; RFC 7692
            // section 7.2.3.6 gives the one-byte form of an empty message.
            return Bytes::from_static(&[0x00]);
        }
        let mut out = Vec::with_capacity(payload.len() / 2 + 64);
        let start_in = self.compress.total_in();
        loop {
            let consumed = (self.compress.total_in() - start_in) as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(CHUNK);
            }
            self.compress
                .compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync)
                .expect("deflate cannot fail on a valid stream");
            let done = (self.compress.total_in() - start_in) as usize == payload.len();
            if done && out.len() < out.capacity() {
                break;
            }
        }
        assert!(
            out.ends_with(&SYNC_TRAILER),
            "a sync flush ends with an empty stored block"
        );
        out.truncate(out.len() - SYNC_TRAILER.len());
        if self.reset_each_message {
            self.compress.reset();
        }
        Bytes::from(out)
    }
}

/// Why an inbound message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// It inflates to more than the limit (close 1009).
    TooBig,
    /// It is not valid deflate data (close 1007).
    Corrupt,
}

/// One direction's decompressor.
pub(crate) struct Inflater {
    decompress: Decompress,
    reset_each_message: bool,
}

impl Inflater {
    /// Inflates with a 32 KiB window, which decodes whatever window the peer
    /// compressed with; `reset_each_message` for no-context-takeover.
    pub(crate) fn new(reset_each_message: bool) -> Self {
        Self {
            decompress: Decompress::new_with_window_bits(false, 15),
            reset_each_message,
        }
    }

    /// Inflates one message payload (trailer stripped), refusing to produce
    /// more than `limit` bytes.
    pub(crate) fn inflate(
        &mut self,
        payload: &[u8],
        limit: usize,
    ) -> Result<Vec<u8>, InflateError> {
        // Never more than one byte past the limit, which may be tiny.
        let capacity = (payload.len() * 2)
            .max(MIN_OUTPUT)
            .min(limit.saturating_add(1));
        let mut out = Vec::with_capacity(capacity);
        let mut ended = false;
        let mut result = Ok(());
        for input in [payload, &SYNC_TRAILER[..]] {
            if ended || result.is_err() {
                break;
            }
            (ended, result) = match self.inflate_into(input, &mut out, limit) {
                Ok(ended) => (ended, Ok(())),
                Err(error) => (false, Err(error)),
            };
        }
        // A final block (allowed, if unusual) or an error ends the stream:
        // the next message starts afresh.
        if self.reset_each_message || ended || result.is_err() {
            self.decompress.reset(false);
        }
        result.map(|()| out)
    }

    /// Feeds `input` completely; returns whether the deflate stream ended.
    fn inflate_into(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<bool, InflateError> {
        let start_in = self.decompress.total_in();
        loop {
            if out.len() == out.capacity() {
                // One byte past the limit is enough to know it is too big.
                let room = (limit + 1).saturating_sub(out.len()).min(CHUNK);
                if room == 0 {
                    return Err(InflateError::TooBig);
                }
                out.reserve_exact(room);
            }
            let consumed = (self.decompress.total_in() - start_in) as usize;
            let produced = out.len();
            let status = self
                .decompress
                .decompress_vec(&input[consumed..], out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            if status == Status::StreamEnd {
                return Ok(true);
            }
            let all_in = (self.decompress.total_in() - start_in) as usize == input.len();
            let stalled = (self.decompress.total_in() - start_in) as usize == consumed
                && out.len() == produced;
            // Done once the input is consumed and zlib stopped with output
            // room to spare; no progress with room to spare is done too.
            if (all_in || stalled) && out.len() < out.capacity() {
                return Ok(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| {
                b"{\"user\":\"alice\",\"seq\":12345,\"text\":\"hello\"}"[i % 43] ^ (i / 997) as u8
            })
            .collect()
    }

    #[test]
    fn round_trips_with_and_without_context_takeover() {
        for window in [9, 12, 15] {
            for takeover in [true, false] {
                let mut deflater = Deflater::new(6, window, !takeover);
                let mut inflater = Inflater::new(!takeover);
                for len in [0, 1, 100, 0, 65_536, 0, 300_000] {
                    let payload = sample(len);
                    let compressed = deflater.compress(&payload);
                    assert_eq!(
                        inflater.inflate(&compressed, 1 << 20).unwrap(),
                        payload,
                        "window {window}, takeover {takeover}, len {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn context_takeover_shrinks_repeated_messages() {
        let payload = sample(2000);
        let mut taking = Deflater::new(6, 15, false);
        let first = taking.compress(&payload).len();
        let second = taking.compress(&payload).len();
        assert!(second < first / 2, "second {second} vs first {first}");
        let mut fresh = Deflater::new(6, 15, true);
        assert_eq!(
            fresh.compress(&payload).len(),
            fresh.compress(&payload).len()
        );
    }

    #[test]
    fn incompressible_data_round_trips() {
        let mut state = 0x12345678u32;
        let noise: Vec<u8> = (0..200_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        let compressed = Deflater::new(9, 15, true).compress(&noise);
        assert!(compressed.len() as u64 <= crate::ws::guard::compressed_bound(noise.len() as u64));
        assert_eq!(
            Inflater::new(true)
                .inflate(&compressed, noise.len())
                .unwrap(),
            noise
        );
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 16 << 20];
        let compressed = Deflater::new(9, 15, true).compress(&zeros);
        assert!(compressed.len() < 100_000);
        assert_eq!(
            Inflater::new(true).inflate(&compressed, 64 * 1024),
            Err(InflateError::TooBig)
        );
        assert_eq!(
            Inflater::new(true)
                .inflate(&compressed, 16 << 20)
                .map(|v| v.len()),
            Ok(16 << 20)
        );
    }

    #[test]
    fn garbage_is_corrupt() {
        assert_eq!(
            Inflater::new(true).inflate(&[0xFF, 0xFF, 0xFF, 0x00, 0x12], 1024),
            Err(InflateError::Corrupt)
        );
    }
}
