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

use crate::protocol::window_bits;

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

/// One direction's decompressor. It inflates a message piece by piece, as
/// its fragments arrive, into the caller's buffer.
pub(crate) struct Inflater {
    decompress: Decompress,
    reset_each_message: bool,
    /// The current message ended its deflate stream with a final block:
    /// any byte after it is corrupt.
    ended: bool,
}

impl Inflater {
    /// Inflates with a 32 KiB window, which decodes whatever window the peer
    /// compressed with; `reset_each_message` for no-context-takeover.
    pub(crate) fn new(reset_each_message: bool) -> Self {
        Self {
            decompress: Decompress::new_with_window_bits(false, window_bits::MAX),
            reset_each_message,
            ended: false,
        }
    }

    /// Inflates one whole message payload (trailer stripped), refusing to
    /// produce more than `limit` bytes.
    pub(crate) fn inflate(
        &mut self,
        payload: &[u8],
        limit: usize,
    ) -> Result<Vec<u8>, InflateError> {
        let mut out = Vec::with_capacity(first_capacity(payload.len(), limit));
        self.inflate_part(payload, &mut out, limit)?;
        self.finish(&mut out, limit)?;
        Ok(out)
    }

    /// Inflates the next piece of a message's payload onto `out`, which may
    /// not grow past `limit` bytes. On an error the message is over and the
    /// inflater is ready for a fresh stream.
    pub(crate) fn inflate_part(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        if input.is_empty() {
            return Ok(());
        }
        let result = if self.ended {
            // Bytes after a final block are not deflate data.
            Err(InflateError::Corrupt)
        } else {
            self.inflate_into(input, out, limit)
        };
        self.settle(result)
    }

    /// Ends the message: inflates the trailer the sender stripped, and resets
    /// the stream if the message ended it or no context is kept.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<(), InflateError> {
        let result = if self.ended {
            Ok(())
        } else {
            self.inflate_into(&SYNC_TRAILER, out, limit)
        };
        let result = self.settle(result);
        if result.is_ok() && (self.reset_each_message || self.ended) {
            self.reset();
        }
        result
    }

    /// A final block (allowed, if unusual) or an error ends the stream: the
    /// next message starts afresh.
    fn settle(&mut self, result: Result<(), InflateError>) -> Result<(), InflateError> {
        if result.is_err() {
            self.reset();
        }
        result
    }

    fn reset(&mut self) {
        self.decompress.reset(false);
        self.ended = false;
    }

    /// Feeds `input` completely, noting whether the deflate stream ended;
    /// input left over after its end is corrupt.
    fn inflate_into(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        let start_in = self.decompress.total_in();
        let consumed = |decompress: &Decompress| (decompress.total_in() - start_in) as usize;
        loop {
            if out.len() == out.capacity() {
                // One byte past the limit is enough to know it is too big.
                let room = limit.saturating_add(1).saturating_sub(out.len());
                if room == 0 {
                    return Err(InflateError::TooBig);
                }
                // Doubling, from a first guess at the size.
                let step = out.len().max(first_capacity(input.len(), limit));
                out.reserve_exact(step.min(room));
            }
            let before = consumed(&self.decompress);
            let produced = out.len();
            let status = self
                .decompress
                .decompress_vec(&input[before..], out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            let all_in = consumed(&self.decompress) == input.len();
            if status == Status::StreamEnd {
                self.ended = true;
                return if all_in {
                    Ok(())
                } else {
                    Err(InflateError::Corrupt)
                };
            }
            // Done once the input is consumed and zlib stopped with output
            // room to spare.
            if all_in && out.len() < out.capacity() {
                return Ok(());
            }
            // Input zlib will not take although it has room to write: not
            // deflate data.
            if consumed(&self.decompress) == before
                && out.len() == produced
                && out.len() < out.capacity()
            {
                return Err(InflateError::Corrupt);
            }
        }
    }
}

/// The first output buffer for inflating `input_len` bytes: twice the input,
/// at least [`MIN_OUTPUT`], never more than one byte past the limit (which
/// may be tiny).
fn first_capacity(input_len: usize, limit: usize) -> usize {
    input_len
        .saturating_mul(2)
        .max(MIN_OUTPUT)
        .min(limit.saturating_add(1))
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
        assert!(compressed.len() as u64 <= crate::ws::reader::compressed_bound(noise.len() as u64));
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
    fn a_message_inflates_the_same_in_any_pieces() {
        let payload = sample(50_000);
        let compressed = Deflater::new(6, 15, false).compress(&payload);
        for piece in [1, 7, 1000, compressed.len()] {
            let mut inflater = Inflater::new(false);
            let mut out = Vec::new();
            for part in compressed.chunks(piece) {
                inflater.inflate_part(part, &mut out, 1 << 20).unwrap();
            }
            inflater.finish(&mut out, 1 << 20).unwrap();
            assert_eq!(out, payload, "pieces of {piece}");
        }
    }

    /// `payload` as one final stored block (BFINAL set): a whole deflate stream.
    fn final_stored_block(payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u16;
        let mut block = vec![0x01];
        block.extend_from_slice(&len.to_le_bytes());
        block.extend_from_slice(&(!len).to_le_bytes());
        block.extend_from_slice(payload);
        block
    }

    #[test]
    fn a_final_block_ends_the_message_and_bytes_after_it_are_corrupt() {
        let mut inflater = Inflater::new(false);
        let whole = final_stored_block(b"hello");
        assert_eq!(inflater.inflate(&whole, 100), Ok(b"hello".to_vec()));
        // The stream ended: the next message starts a fresh one.
        let next = Deflater::new(6, 15, false).compress(b"again");
        assert_eq!(inflater.inflate(&next, 100), Ok(b"again".to_vec()));
        // Trailing bytes in the same piece, or in a later fragment.
        let trailing = [&whole[..], b"junk"].concat();
        assert_eq!(inflater.inflate(&trailing, 100), Err(InflateError::Corrupt));
        let mut out = Vec::new();
        assert_eq!(inflater.inflate_part(&whole, &mut out, 100), Ok(()));
        assert_eq!(
            inflater.inflate_part(&[0x00], &mut out, 100),
            Err(InflateError::Corrupt)
        );
        // And the inflater recovers for a fresh stream.
        assert_eq!(inflater.inflate(&next, 100), Ok(b"again".to_vec()));
    }

    #[test]
    fn tiny_limits_neither_panic_nor_pass_too_much() {
        let compressed = Deflater::new(6, 15, true).compress(b"abcabcabc");
        for limit in 0..12 {
            let result = Inflater::new(true).inflate(&compressed, limit);
            if limit < 9 {
                assert_eq!(result, Err(InflateError::TooBig), "limit {limit}");
            } else {
                assert_eq!(result, Ok(b"abcabcabc".to_vec()), "limit {limit}");
            }
        }
        assert_eq!(Inflater::new(true).inflate(&[0x00], 0), Ok(Vec::new()));
    }

    #[test]
    fn garbage_is_corrupt() {
        assert_eq!(
            Inflater::new(true).inflate(&[0xFF, 0xFF, 0xFF, 0x00, 0x12], 1024),
            Err(InflateError::Corrupt)
        );
    }
}
