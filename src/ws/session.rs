//! One upgraded connection: a reader (fastwebsockets' split read half over
//! the [`FrameGuard`](super::guard::FrameGuard)), a writer (the outbox
//! drained with vectored writes) and a heartbeat, driven together in one task.
//!
//! Closing: whoever closes first queues a close frame in the outbox; the
//! session then waits at most `close_timeout` for the other side before
//! dropping the socket. The socket is dropped after the channel membership
//! and the connection slots, so a client that sees its connection end also
//! sees it gone from `stats()`.

use std::{convert::Infallible, future::ready};

use fastwebsockets::{FragmentCollectorRead, Frame, OpCode, Role, WebSocketError};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::{io::AsyncRead, time::Instant};

use super::{
    frame,
    guard::{Activity, FrameGuard, Violation},
    outbox::{Outbox, OutboxReceiver},
};
use crate::{
    channel::{Membership, PublishError},
    config::Limits,
    limits::{caps::Slots, rate::MessageLimiter},
    message::MessageKind,
    stats::Reason,
};

/// A connection that has been upgraded and joined its channel.
pub(crate) struct Session {
    pub(crate) membership: Membership,
    pub(crate) outbox: Outbox,
    pub(crate) receiver: OutboxReceiver,
    /// Held for the life of the connection: its share of the caps.
    pub(crate) slots: Slots,
}

impl Session {
    /// Serves the connection until it closes.
    pub(crate) async fn run(self, io: TokioIo<Upgraded>) {
        // Declared first so that it is dropped last (see the module doc).
        let (read, mut write) = tokio::io::split(io);
        let Session {
            membership,
            outbox,
            receiver,
            slots,
        } = self;
        let limits = membership.config().limits.clone();
        let activity = Activity::new();
        let reading = read_messages(
            FrameGuard::new(read, limits.max_payload, &activity),
            &membership,
            &outbox,
            &limits,
        );
        let writing = receiver.run_writer(&mut write);
        let watching = heartbeat(&activity, &outbox, &limits);
        tokio::pin!(reading, writing, watching);
        tokio::select! {
            () = &mut reading => {
                outbox.finish();
                let _ = tokio::time::timeout(limits.close_timeout, writing).await;
            }
            written = &mut writing => {
                // Our close frame went out: wait for the peer's. If the write
                // failed, the peer is gone and there is nothing to wait for.
                if written.is_ok() {
                    let _ = tokio::time::timeout(limits.close_timeout, reading).await;
                }
            }
            () = &mut watching => {
                membership.counters().record(Reason::Idle);
                outbox.close(1001, "idle timeout");
                let _ = tokio::time::timeout(limits.close_timeout, writing).await;
            }
            // A close frame that cannot even be written (the peer stopped
            // reading) bounds the handshake too.
            () = async {
                outbox.closing().await;
                tokio::time::sleep(limits.close_timeout).await;
            } => {}
        }
        drop(slots);
    }
}

/// Reads messages until the peer closes, the stream ends or breaks the
/// protocol or a limit. Each failure queues the matching close frame.
async fn read_messages<R: AsyncRead + Unpin>(
    read: R,
    membership: &Membership,
    outbox: &Outbox,
    limits: &Limits,
) {
    let counters = membership.counters();
    let limiter = MessageLimiter::new(&limits.message_rate, limits.byte_rate.as_ref());
    let (mut reader, _) =
        fastwebsockets::after_handshake_split(read, tokio::io::sink(), Role::Server);
    // Per frame, checked before fastwebsockets reserves the buffer; the guard
    // has already enforced the same limit on the whole message.
    reader.set_max_message_size(limits.max_payload.saturating_add(1));
    let mut reader = FragmentCollectorRead::new(reader);
    // fastwebsockets answers pings and closes through this callback; the
    // answers go through the same outbox so that the writer keeps one order.
    let mut reply = |frame: Frame<'_>| {
        let encoded = frame::encode(frame.opcode, &frame.payload);
        if frame.opcode == OpCode::Close {
            outbox.close_with(encoded);
        } else {
            let _ = outbox.send(encoded);
        }
        ready(Ok::<(), Infallible>(()))
    };
    loop {
        let frame = match reader.read_frame(&mut reply).await {
            Ok(frame) => frame,
            Err(error) => {
                if let Some((code, reason, counted)) = close_for(&error) {
                    counters.record(counted);
                    tracing::debug!(code, %error, "closing on a protocol error");
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
        if limiter.admit(frame.payload.len()).await.is_err() {
            counters.record(Reason::RateLimit);
            outbox.close(1008, "rate limit");
            return;
        }
        if let Err(PublishError::ClientsMayNotPublish) = membership.dispatch(kind, &frame.payload) {
            outbox.close(1008, "clients may not publish on this channel");
        }
    }
}

/// Pings every `ping_interval`; returns when nothing has been received for
/// `idle_timeout`.
async fn heartbeat(activity: &Activity, outbox: &Outbox, limits: &Limits) {
    let ping = frame::encode(OpCode::Ping, b"");
    let mut next_ping = Instant::now() + limits.ping_interval;
    loop {
        let idle_at = activity.last() + limits.idle_timeout;
        tokio::time::sleep_until(next_ping.min(idle_at)).await;
        let now = Instant::now();
        if now >= activity.last() + limits.idle_timeout {
            return;
        }
        if now >= next_ping {
            let _ = outbox.send(ping.clone());
            next_ping = now + limits.ping_interval;
        }
    }
}

/// The close code, reason and counter for a read error, or `None` when the
/// connection is simply gone (nothing can be sent).
fn close_for(error: &WebSocketError) -> Option<(u16, &'static str, Reason)> {
    let counted = |code| {
        if code == 1009 {
            Reason::TooBig
        } else {
            Reason::Protocol
        }
    };
    match error {
        WebSocketError::IoError(io) => {
            Violation::find(io).map(|v| (v.code, v.reason, counted(v.code)))
        }
        WebSocketError::UnexpectedEOF | WebSocketError::ConnectionClosed => None,
        WebSocketError::InvalidUTF8 => Some((1007, "invalid UTF-8", Reason::Protocol)),
        WebSocketError::FrameTooLarge => Some((1009, "message too big", Reason::TooBig)),
        _ => Some((1002, "protocol error", Reason::Protocol)),
    }
}
