//! One upgraded connection: a reader (fastwebsockets' split read half, so a
//! later permessage-deflate adapter can slide under it) and a writer (the
//! outbox drained with vectored writes), driven together in one task.
//!
//! Closing: whoever closes first queues a close frame in the outbox; the
//! session then waits at most [`CLOSE_TIMEOUT`] for the other side's close
//! before dropping the socket.

use std::{convert::Infallible, future::ready, time::Duration};

use fastwebsockets::{Frame, FragmentCollectorRead, OpCode, Role, WebSocketError};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, ReadHalf};

use super::{
    frame,
    outbox::{Outbox, OutboxReceiver},
};
use crate::{
    channel::{Membership, PublishError},
    message::MessageKind,
};

/// How long either side of the close handshake may take: the peer's close
/// reply after ours, or our last write after the peer went away.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection that has been upgraded and joined its channel.
pub(crate) struct Session {
    pub(crate) membership: Membership,
    pub(crate) outbox: Outbox,
    pub(crate) receiver: OutboxReceiver,
}

impl Session {
    /// Serves the connection until it closes.
    pub(crate) async fn run(self, io: TokioIo<Upgraded>) {
        // Declared before the session parts so that they are dropped after
        // them: the socket closes only once the membership is gone, so a
        // client that sees the connection end also sees it left its channel.
        let (mut read, mut write) = tokio::io::split(io);
        let Session { membership, outbox, receiver } = self;
        let reading = read_messages(&mut read, &membership, &outbox);
        let writing = receiver.run_writer(&mut write);
        tokio::pin!(reading, writing);
        tokio::select! {
            () = &mut reading => {
                outbox.finish();
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, writing).await;
            }
            written = &mut writing => {
                // Our close frame went out: wait for the peer's. If the write
                // failed, the peer is gone and there is nothing to wait for.
                if written.is_ok() {
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, reading).await;
                }
            }
        }
    }
}

/// Reads frames until the peer closes, the stream ends or breaks the
/// protocol. Protocol errors queue the matching close frame.
async fn read_messages(read: &mut ReadHalf<TokioIo<Upgraded>>, membership: &Membership, outbox: &Outbox) {
    let max_payload = membership.config().limits.max_payload;
    let mut reader = frame_reader(read, max_payload);
    // fastwebsockets answers pings and closes through this callback; the
    // answers go through the same outbox so that the writer keeps one order.
    let mut reply = |frame: Frame<'_>| {
        let encoded = frame::encode(frame.opcode, &frame.payload);
        match frame.opcode {
            OpCode::Close => {
                outbox.close_with(encoded);
            }
            _ => {
                let _ = outbox.send(encoded);
            }
        }
        ready(Ok::<(), Infallible>(()))
    };
    loop {
        let frame = match reader.read_frame(&mut reply).await {
            Ok(frame) => frame,
            Err(error) => {
                if let Some((code, reason)) = close_code_for(&error) {
                    tracing::debug!(code, %error, "closing on protocol error");
                    outbox.close(code, reason);
                }
                return;
            }
        };
        let kind = match frame.opcode {
            OpCode::Text => MessageKind::Text,
            OpCode::Binary => MessageKind::Binary,
            OpCode::Close => return,
            _ => continue,
        };
        if outbox.is_closing() {
            // After our close frame only the peer's close matters.
            continue;
        }
        if frame.payload.len() > max_payload {
            outbox.close(1009, "message too big");
            return;
        }
        if let Err(PublishError::ClientsMayNotPublish) = membership.dispatch(kind, &frame.payload) {
            outbox.close(1008, "clients may not publish on this channel");
        }
    }
}

fn frame_reader<R: AsyncRead + Unpin>(read: R, max_payload: usize) -> FragmentCollectorRead<R> {
    let (mut reader, _) = fastwebsockets::after_handshake_split(read, tokio::io::sink(), Role::Server);
    // fastwebsockets rejects a frame whose length is >= this value.
    reader.set_max_message_size(max_payload.saturating_add(1));
    FragmentCollectorRead::new(reader)
}

/// The close code for a read error, or `None` when the connection is simply
/// gone (nothing can be sent).
fn close_code_for(error: &WebSocketError) -> Option<(u16, &'static str)> {
    match error {
        WebSocketError::InvalidUTF8 => Some((1007, "invalid UTF-8")),
        WebSocketError::FrameTooLarge => Some((1009, "message too big")),
        WebSocketError::UnexpectedEOF | WebSocketError::IoError(_) | WebSocketError::ConnectionClosed => None,
        _ => Some((1002, "protocol error")),
    }
}
