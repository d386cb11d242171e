//! Wire encoding of outbound messages, in one place: framing, and
//! permessage-deflate in both of its modes.
//!
//! - Shared mode: a fan-out message is compressed once per distinct window
//!   (without context takeover) and the same frame bytes go to every member
//!   that negotiated it ([`Delivery`], with a channel's
//!   [`SharedCompressors`]).
//! - Dedicated mode: each connection's writer compresses with the context it
//!   negotiated ([`WriterEncoder`]).
//!
//! Channels hand messages and recipients to this module; they never build
//! frames themselves.

use std::{cell::OnceCell, sync::Arc};

use bytes::Bytes;
use tokio::time::Instant;

use super::{
    deflate::{codec::Deflater, dedicated::DedicatedCompressor, negotiate::Agreement},
    frame,
};
use crate::{
    config::{Compression, CompressionMode},
    message::MessageKind,
    protocol::window_bits,
    stats::Counters,
    sync::lock,
};

/// How a connection takes its messages, fixed when it joined: what it
/// negotiated never changes, whatever a reload does to the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// No permessage-deflate: plain frames.
    Plain,
    /// Shared-mode deflate: frames compressed once per message for every
    /// connection with the same window, without context takeover.
    Shared { window_bits: u8 },
    /// Dedicated-mode deflate: the connection's own writer compresses, with
    /// the context it negotiated.
    Dedicated,
}

impl Encoding {
    /// The encoding for a connection that agreed `deflate` (or nothing) on
    /// a channel compressing in `mode`.
    pub(crate) fn negotiated(deflate: Option<&Agreement>, mode: CompressionMode) -> Self {
        match (deflate, mode) {
            (None, _) => Self::Plain,
            (Some(agreement), CompressionMode::Shared) => Self::Shared {
                window_bits: agreement.server_max_window_bits,
            },
            (Some(_), CompressionMode::Dedicated) => Self::Dedicated,
        }
    }
}

/// A channel's idle shared-mode compressors (no context takeover), reused so
/// that a fan-out does not allocate a zlib state per message.
#[derive(Default)]
pub(crate) struct SharedCompressors {
    idle: std::sync::Mutex<Vec<Deflater>>,
}

impl SharedCompressors {
    /// Compresses with a pooled compressor of the given parameters.
    fn compress(&self, payload: &[u8], level: u32, window_bits: u8, counters: &Counters) -> Bytes {
        let pooled = {
            let mut idle = lock(&self.idle);
            idle.iter()
                .position(|d| d.params() == (level, window_bits))
                .map(|index| idle.swap_remove(index))
        };
        let mut deflater = pooled.unwrap_or_else(|| Deflater::new(level, window_bits, true));
        let compressed = deflater.compress(payload);
        counters.record_compression(payload.len(), compressed.len());
        lock(&self.idle).push(deflater);
        compressed
    }

    /// Forgets the compressors of any other level: after a reload changes
    /// the channel's level they would never be taken again.
    pub(crate) fn keep_level(&self, level: u32) {
        lock(&self.idle).retain(|deflater| deflater.params().0 == level);
    }

    /// Idle compressors held (for tests of eviction).
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.idle).len()
    }
}

/// One message on its way to many connections. Each encoding is produced
/// at most once, when the first member that needs it is reached, and its
/// bytes are shared by every member that takes it.
pub(crate) struct Delivery<'c> {
    kind: MessageKind,
    payload: Bytes,
    settings: Compression,
    compressors: &'c SharedCompressors,
    counters: &'c Counters,
    plain: OnceCell<Bytes>,
    /// Compressed frames by window bits (`None`: send plain).
    compressed: [OnceCell<Option<Bytes>>; window_bits::COUNT],
}

impl<'c> Delivery<'c> {
    pub(crate) fn new(
        kind: MessageKind,
        payload: Bytes,
        settings: Compression,
        compressors: &'c SharedCompressors,
        counters: &'c Counters,
    ) -> Self {
        Self {
            kind,
            payload,
            settings,
            compressors,
            counters,
            plain: OnceCell::new(),
            compressed: Default::default(),
        }
    }

    /// The item to queue for a member that takes messages as `encoding`.
    pub(crate) fn item_for(&self, encoding: Encoding) -> Outgoing {
        let plain = || {
            self.plain
                .get_or_init(|| frame::encode_message(self.kind, &self.payload, false))
                .clone()
        };
        match encoding {
            Encoding::Dedicated => Outgoing::Message(self.kind, self.payload.clone()),
            Encoding::Plain => Outgoing::Wire(plain()),
            Encoding::Shared { window_bits } => {
                let window = window_bits.clamp(window_bits::MIN, window_bits::MAX);
                let slot = &self.compressed[usize::from(window - window_bits::MIN)];
                match slot.get_or_init(|| self.compress(window)) {
                    Some(compressed) => Outgoing::Wire(compressed.clone()),
                    None => Outgoing::Wire(plain()),
                }
            }
        }
    }

    /// The compressed frame for `window`, or `None` when the message goes
    /// out plain (compression off, or below the threshold).
    fn compress(&self, window: u8) -> Option<Bytes> {
        let settings = &self.settings;
        (settings.enabled && self.payload.len() >= settings.threshold).then(|| {
            let compressed =
                self.compressors
                    .compress(&self.payload, settings.level, window, self.counters);
            frame::encode_message(self.kind, &compressed, true)
        })
    }
}

/// One queued item.
#[derive(Debug, Clone)]
pub(crate) enum Outgoing {
    /// Bytes ready for the wire (one or more whole frames).
    Wire(Bytes),
    /// A whole message the writer frames (and maybe compresses) itself.
    Message(MessageKind, Bytes),
}

impl Outgoing {
    /// The bytes this item puts on the wire (before compression).
    pub(crate) fn wire_len(&self) -> usize {
        match self {
            Self::Wire(bytes) => bytes.len(),
            Self::Message(_, payload) => frame::header_len(payload.len()) + payload.len(),
        }
    }
}

/// A connection writer's encoder for whole messages (`Outgoing::Message`):
/// with the connection's own compressor in dedicated mode, else as a small
/// header in front of the shared payload.
pub(crate) struct WriterEncoder {
    /// The connection's own compressor (dedicated mode), if negotiated:
    /// built on first use, released when idle. Boxed: every connection's
    /// outbox holds an encoder, and most have no compressor of their own.
    compressor: Option<Box<DedicatedCompressor>>,
    /// Messages smaller than this are not compressed.
    threshold: usize,
    counters: Arc<Counters>,
}

impl WriterEncoder {
    /// When the connection's compressor is due for release, if one is held.
    pub(crate) fn release_at(&self) -> Option<Instant> {
        self.compressor
            .as_deref()
            .and_then(DedicatedCompressor::release_at)
    }

    /// Whether this encoder compresses (dedicated mode with
    /// permessage-deflate): its messages cost more than a header to frame.
    pub(crate) fn compresses(&self) -> bool {
        self.compressor.is_some()
    }

    /// Releases the connection's compressor if it has been idle long enough.
    pub(crate) fn release_if_idle(&mut self) {
        if let Some(compressor) = &mut self.compressor {
            compressor.release_if_idle();
        }
    }
}

/// One message framed for the wire.
pub(crate) enum Framed {
    /// Header and payload in one buffer.
    Whole(Bytes),
    /// An inline header and the shared payload, written as two slices of
    /// one vectored write: the payload is never copied.
    Split(frame::Header, Bytes),
}

impl WriterEncoder {
    /// The encoder for a connection that agreed `deflate` (or nothing) and
    /// takes its messages as `encoding` on a channel with `settings`. Only
    /// dedicated-mode connections compress here: shared-mode frames arrive
    /// compressed already.
    pub(crate) fn new(
        deflate: Option<&Agreement>,
        encoding: Encoding,
        settings: &Compression,
        counters: Arc<Counters>,
    ) -> Self {
        let compressor = deflate
            .filter(|_| encoding == Encoding::Dedicated)
            .map(|agreement| {
                Box::new(DedicatedCompressor::new(
                    settings.level,
                    agreement.server_max_window_bits,
                    agreement.server_no_context_takeover,
                ))
            });
        Self {
            compressor,
            threshold: settings.threshold,
            counters,
        }
    }

    /// An encoder with the given compressor (or none), for writer tests.
    #[cfg(test)]
    pub(crate) fn with(
        compressor: Option<DedicatedCompressor>,
        threshold: usize,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            compressor: compressor.map(Box::new),
            threshold,
            counters,
        }
    }

    /// Frames one message.
    pub(crate) fn encode(&mut self, kind: MessageKind, payload: Bytes) -> Framed {
        match &mut self.compressor {
            Some(compressor) if payload.len() >= self.threshold => {
                let compressed = compressor.compress(&payload);
                self.counters
                    .record_compression(payload.len(), compressed.len());
                Framed::Whole(frame::encode_message(kind, &compressed, true))
            }
            _ => Framed::Split(
                frame::Header::new(kind.opcode(), payload.len(), false),
                payload,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(level: u32) -> Compression {
        Compression {
            threshold: 0,
            level,
            ..Compression::default()
        }
    }

    #[test]
    fn each_encoding_is_made_once_and_shared() {
        let (pool, counters) = (SharedCompressors::default(), Counters::default());
        let payload = Bytes::from(vec![b'a'; 1000]);
        let delivery = Delivery::new(MessageKind::Text, payload, settings(6), &pool, &counters);
        let shared = Encoding::Shared { window_bits: 12 };
        let (Outgoing::Wire(first), Outgoing::Wire(second)) =
            (delivery.item_for(shared), delivery.item_for(shared))
        else {
            panic!("shared-mode members get wire bytes");
        };
        assert_eq!(first.as_ptr(), second.as_ptr(), "one buffer for both");
        assert_eq!(first[0] & crate::protocol::frame::RSV1, 0x40);
        let _ = delivery.item_for(Encoding::Shared { window_bits: 15 });
        assert_eq!(
            counters.snapshot(vec![], Default::default()).compressions,
            2
        );
    }

    #[test]
    fn below_the_threshold_shared_members_get_the_plain_frame() {
        let (pool, counters) = (SharedCompressors::default(), Counters::default());
        let small = Compression {
            threshold: 100,
            ..settings(6)
        };
        let delivery = Delivery::new(
            MessageKind::Binary,
            Bytes::from_static(b"hi"),
            small,
            &pool,
            &counters,
        );
        let (Outgoing::Wire(shared), Outgoing::Wire(plain)) = (
            delivery.item_for(Encoding::Shared { window_bits: 15 }),
            delivery.item_for(Encoding::Plain),
        ) else {
            panic!("wire bytes");
        };
        assert_eq!(shared.as_ptr(), plain.as_ptr());
        assert_eq!(&plain[..], &[0x82, 2, b'h', b'i']);
    }

    #[test]
    fn a_new_level_evicts_the_pooled_compressors_of_the_old_one() {
        let (pool, counters) = (SharedCompressors::default(), Counters::default());
        for level in [1, 6] {
            let delivery = Delivery::new(
                MessageKind::Text,
                Bytes::from_static(b"hello hello hello"),
                settings(level),
                &pool,
                &counters,
            );
            let _ = delivery.item_for(Encoding::Shared { window_bits: 15 });
        }
        assert_eq!(pool.len(), 2);
        pool.keep_level(6);
        assert_eq!(pool.len(), 1);
    }
}
