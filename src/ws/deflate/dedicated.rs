//! A connection's own compressor (dedicated mode): built when the first
//! message above the threshold is sent, not at the upgrade, and released
//! once it has been idle for [`IDLE_RELEASE`].
//!
//! A zlib compressor with a 32 KiB window holds about 300 KiB, most of a
//! connection's cost; most connections of an edge server are idle most of
//! the time. Releasing one is always safe, with or without context
//! takeover: a fresh compressor's output makes no reference to earlier
//! messages, and the client's inflater, which keeps its window, decodes it
//! as the next blocks of its stream. The price is a compression ratio that
//! starts over, and an allocation when the connection speaks again.

use bytes::Bytes;
use tokio::time::Instant;

use super::codec::Deflater;

/// How long an unused compressor is kept. Long enough that a conversation
/// (messages seconds apart) keeps its context and its ratio; short enough
/// that a connection that went quiet soon gives its ~300 KiB back.
pub(crate) const IDLE_RELEASE: std::time::Duration = std::time::Duration::from_secs(10);

/// The compressor parameters agreed for one connection, and the compressor
/// itself while it is in use.
pub(crate) struct DedicatedCompressor {
    level: u32,
    window_bits: u8,
    reset_each_message: bool,
    deflater: Option<Deflater>,
    last_used: Instant,
}

impl DedicatedCompressor {
    /// Allocates nothing: the compressor is built on first use.
    pub(crate) fn new(level: u32, window_bits: u8, reset_each_message: bool) -> Self {
        Self {
            level,
            window_bits,
            reset_each_message,
            deflater: None,
            last_used: Instant::now(),
        }
    }

    /// Compresses one whole message payload.
    pub(crate) fn compress(&mut self, payload: &[u8]) -> Bytes {
        self.last_used = Instant::now();
        self.deflater
            .get_or_insert_with(|| {
                Deflater::new(self.level, self.window_bits, self.reset_each_message)
            })
            .compress(payload)
    }

    /// When the compressor held is due for release; `None` if none is held.
    pub(crate) fn release_at(&self) -> Option<Instant> {
        self.deflater
            .as_ref()
            .map(|_| self.last_used + IDLE_RELEASE)
    }

    /// Releases the compressor if it is idle past [`IDLE_RELEASE`].
    pub(crate) fn release_if_idle(&mut self) {
        if self.release_at().is_some_and(|at| at <= Instant::now()) {
            self.deflater = None;
        }
    }

    /// Whether a compressor is held.
    #[cfg(test)]
    pub(crate) fn is_held(&self) -> bool {
        self.deflater.is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::{
        config::SlowConsumer,
        message::MessageKind,
        stats::Counters,
        ws::{
            deflate::codec::Inflater,
            encoder::{Outgoing, WriterEncoder},
            outbox,
        },
    };

    /// Reads one server frame's payload.
    async fn frame_payload(io: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
        let mut head = [0u8; 2];
        io.read_exact(&mut head).await.unwrap();
        let len = match head[1] {
            126 => usize::from(io.read_u16().await.unwrap()),
            len => usize::from(len),
        };
        let mut payload = vec![0; len];
        io.read_exact(&mut payload).await.unwrap();
        payload
    }

    #[tokio::test(start_paused = true)]
    async fn the_writer_releases_an_idle_compressor() {
        let (outbox, receiver) = outbox::channel(1 << 20, SlowConsumer::Close);
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let compressor = DedicatedCompressor::new(6, 15, false);
        let encoder = WriterEncoder::with(Some(compressor), 0, Arc::new(Counters::default()));
        let _writer = tokio::spawn(receiver.run(Box::new(server), encoder));
        let message = bytes::Bytes::from(b"the same words, and the same words again".repeat(20));
        let mut send = async || {
            outbox
                .send(Outgoing::Message(MessageKind::Text, message.clone()))
                .unwrap();
            frame_payload(&mut client).await
        };
        let first = send().await;
        let second = send().await;
        assert!(second.len() < first.len() / 2, "context taken over");
        // Paused time jumps to the writer's release timer first.
        tokio::time::sleep(IDLE_RELEASE + std::time::Duration::from_millis(1)).await;
        let third = send().await;
        assert_eq!(third, first, "a fresh compressor after the idle release");
        let mut inflater = Inflater::new(false);
        for compressed in [first, second, third] {
            assert_eq!(inflater.inflate(&compressed, 1 << 20).unwrap(), message);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn built_on_first_use_and_released_when_idle() {
        let mut compressor = DedicatedCompressor::new(6, 15, false);
        assert!(!compressor.is_held());
        assert_eq!(compressor.release_at(), None);
        let message = b"the same words, and the same words again".repeat(20);
        let mut inflater = Inflater::new(false);
        let first = compressor.compress(&message);
        assert!(compressor.is_held());
        let second = compressor.compress(&message);
        assert!(second.len() < first.len() / 2, "context taken over");
        tokio::time::advance(IDLE_RELEASE - std::time::Duration::from_millis(1)).await;
        compressor.release_if_idle();
        assert!(compressor.is_held(), "not idle long enough");
        tokio::time::advance(std::time::Duration::from_millis(1)).await;
        compressor.release_if_idle();
        assert!(!compressor.is_held());
        // A fresh compressor starts over, and the client's inflater, which
        // kept its context, decodes all three.
        let third = compressor.compress(&message);
        assert_eq!(third.len(), first.len());
        for compressed in [first, second, third] {
            assert_eq!(inflater.inflate(&compressed, 1 << 20).unwrap(), message);
        }
    }
}
