//! A connection's writer: drains its outbox, frames whole messages with
//! the connection's encoder, and writes each batch with as few vectored
//! writes as the kernel allows and one flush.

use std::{
    collections::VecDeque,
    io::{self, IoSlice},
};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{
    encoder::{Framed, WriterEncoder},
    frame,
    outbox::{OutboxReceiver, Outgoing},
};

/// Slices handed to one `write_vectored` call. Linux accepts 1024; 64 already
/// covers a large batch of small frames.
const MAX_IO_SLICES: usize = 64;

/// Drains `outbox` into `io` until the close frame is written or the queue
/// is finished. The socket is left open: the session closes it once the
/// close handshake is over (RFC 6455 section 7.1.1).
pub(crate) async fn run<W: AsyncWrite + Unpin>(
    outbox: OutboxReceiver,
    mut io: W,
    mut encoder: WriterEncoder,
) -> io::Result<()> {
    let mut batch = VecDeque::new();
    let mut wire = VecDeque::new();
    loop {
        let (charged, last) = match encoder.release_at() {
            // `next_batch` takes items only when it completes: losing the
            // race to the timer loses nothing.
            Some(at) => tokio::select! {
                next = outbox.next_batch(&mut batch) => next,
                () = tokio::time::sleep_until(at) => {
                    encoder.release_if_idle();
                    continue;
                }
            },
            None => outbox.next_batch(&mut batch).await,
        };
        for item in batch.drain(..) {
            push_chunks(item, &mut encoder, &mut wire);
        }
        write_all_vectored(&mut io, &mut wire).await?;
        io.flush().await?;
        outbox.written(charged);
        if last {
            return Ok(());
        }
    }
}

/// Appends the wire chunks of one item to `wire`.
fn push_chunks(item: Outgoing, encoder: &mut WriterEncoder, wire: &mut VecDeque<Chunk>) {
    match item {
        Outgoing::Wire(bytes) => wire.push_back(Chunk::Shared(bytes)),
        Outgoing::Message(kind, payload) => match encoder.encode(kind, payload) {
            Framed::Whole(bytes) => wire.push_back(Chunk::Shared(bytes)),
            Framed::Split(header, payload) => {
                wire.push_back(Chunk::Header(header));
                // An empty slice would make the kernel report 0 bytes
                // written, which reads as a dead peer.
                if !payload.is_empty() {
                    wire.push_back(Chunk::Shared(payload));
                }
            }
        },
    }
}

/// Writes every chunk in `chunks`, emptying it, coping with partial writes.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    io: &mut W,
    chunks: &mut VecDeque<Chunk>,
) -> io::Result<()> {
    // Only non-empty chunks: a write of nothing returns 0, which is WriteZero.
    chunks.retain(|chunk| !chunk.remaining().is_empty());
    while !chunks.is_empty() {
        let written = {
            let mut slices = [IoSlice::new(&[]); MAX_IO_SLICES];
            let count = chunks.len().min(MAX_IO_SLICES);
            for (slice, chunk) in slices.iter_mut().zip(chunks.iter()) {
                *slice = IoSlice::new(chunk.remaining());
            }
            io.write_vectored(&slices[..count]).await?
        };
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let mut left = written;
        while left > 0 {
            let front = chunks
                .front_mut()
                .expect("the kernel wrote no more than it was given");
            let len = front.remaining().len();
            if len <= left {
                left -= len;
                chunks.pop_front();
            } else {
                front.advance(left);
                left = 0;
            }
        }
    }
    Ok(())
}

/// One piece of a vectored write: an inline header, or shared bytes.
enum Chunk {
    Header(frame::Header),
    Shared(Bytes),
}

impl Chunk {
    fn remaining(&self) -> &[u8] {
        match self {
            Self::Header(header) => header.remaining(),
            Self::Shared(bytes) => bytes,
        }
    }

    fn advance(&mut self, count: usize) {
        match self {
            Self::Header(header) => header.advance(count),
            Self::Shared(bytes) => bytes.advance(count),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{config::SlowConsumer, message::MessageKind, stats::Counters, ws::outbox};

    fn plain(counters: &Arc<Counters>) -> WriterEncoder {
        WriterEncoder::with(None, 0, counters.clone())
    }

    #[tokio::test]
    async fn writer_frames_messages_and_stops_after_the_close_frame() {
        let counters = Arc::new(Counters::default());
        let (outbox, receiver) = outbox::channel(1 << 20, SlowConsumer::Close);
        outbox
            .send(Outgoing::Message(
                MessageKind::Text,
                Bytes::from_static(b"hi"),
            ))
            .unwrap();
        assert!(outbox.close(1000, "bye"));
        assert!(!outbox.close(1001, "again"));
        let mut written = Vec::new();
        run(receiver, &mut written, plain(&counters)).await.unwrap();
        assert_eq!(&written[..4], b"\x81\x02hi");
        assert_eq!(&written[4..], &frame::close(1000, "bye")[..]);
    }

    #[tokio::test]
    async fn dedicated_compression_sets_rsv1_above_the_threshold_only() {
        let counters = Arc::new(Counters::default());
        let (outbox, receiver) = outbox::channel(1 << 20, SlowConsumer::Close);
        let big = Bytes::from(vec![b'a'; 1000]);
        outbox
            .send(Outgoing::Message(
                MessageKind::Binary,
                Bytes::from_static(b"tiny"),
            ))
            .unwrap();
        outbox
            .send(Outgoing::Message(MessageKind::Binary, big.clone()))
            .unwrap();
        outbox.finish();
        let mut written = Vec::new();
        let compressor = crate::ws::deflate::dedicated::DedicatedCompressor::new(6, 15, false);
        let encoder = WriterEncoder::with(Some(compressor), 100, counters.clone());
        run(receiver, &mut written, encoder).await.unwrap();
        assert_eq!(&written[..6], b"\x82\x04tiny");
        assert_eq!(written[6], 0x80 | 0x40 | 0x2, "FIN, RSV1, binary");
        let compressed = &written[8..];
        assert_eq!(written[7] as usize, compressed.len());
        let inflated = crate::ws::deflate::codec::Inflater::new(true)
            .inflate(compressed, 10_000)
            .unwrap();
        assert_eq!(inflated, big);
    }
}
