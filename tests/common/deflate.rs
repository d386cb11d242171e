//! A client's side of permessage-deflate (RFC 7692), written on flate2
//! alone so that tests compress and inflate independently of the server's
//! codec: sync flushes with the trailer stripped, windows and context
//! takeover as agreed.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The empty stored block a sync flush ends with, stripped on the wire.
pub const TRAILER: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// Compresses messages as a client: sync flush, trailer stripped, window and
/// context takeover as agreed.
pub struct Deflater {
    compress: Compress,
    window: u8,
    reset: bool,
}

impl Deflater {
    pub fn new(window: u8, reset: bool) -> Self {
        Self {
            compress: Compress::new_with_window_bits(Compression::new(6), false, window),
            window,
            reset,
        }
    }

    pub fn compress(&mut self, data: &[u8]) -> Vec<u8> {
        if data.is_empty() {
            // RFC 7692 section 7.2.3.6: an empty message is the single octet 0x00.
            return vec![0x00];
        }
        let mut out = deflate_sync(&mut self.compress, data);
        assert!(out.ends_with(&TRAILER));
        out.truncate(out.len() - TRAILER.len());
        if self.reset {
            self.compress = Compress::new_with_window_bits(Compression::new(6), false, self.window);
        }
        out
    }
}

/// Compresses `data` and sync-flushes: the output ends with the trailer.
pub fn deflate_sync(compress: &mut Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    let start = compress.total_in();
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(4096));
        }
        let consumed = (compress.total_in() - start) as usize;
        compress
            .compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
            .unwrap();
        // zlib has flushed everything once it stops with output room to spare.
        if (compress.total_in() - start) as usize == data.len() && out.len() < out.capacity() {
            return out;
        }
    }
}

/// Inflates server messages with the agreed window; a fresh state per
/// message when the server does not keep its context.
pub struct Inflater {
    decompress: Decompress,
    window: u8,
    reset: bool,
}

impl Inflater {
    pub fn new(window: u8, reset: bool) -> Self {
        Self {
            decompress: Decompress::new_with_window_bits(false, window),
            window,
            reset,
        }
    }

    pub fn inflate(&mut self, data: &[u8]) -> Vec<u8> {
        if self.reset {
            self.decompress = Decompress::new_with_window_bits(false, self.window);
        }
        inflate_all(&mut self.decompress, &[data, &TRAILER].concat())
    }
}

/// Inflates all of `input` (which must be valid deflate data).
pub fn inflate_all(decompress: &mut Decompress, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() * 4 + 1024);
    let start = decompress.total_in();
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity());
        }
        let consumed = (decompress.total_in() - start) as usize;
        let produced = out.len();
        let status = decompress
            .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            .unwrap_or_else(|e| panic!("the server sent invalid deflate data: {e}"));
        let now = (decompress.total_in() - start) as usize;
        if status == Status::StreamEnd || (now == input.len() && out.len() < out.capacity()) {
            return out;
        }
        assert!(
            now > consumed || out.len() > produced,
            "inflating made no progress at {now} of {} bytes",
            input.len()
        );
    }
}
