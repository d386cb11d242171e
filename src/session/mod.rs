//! One upgraded connection: a reader (the
//! [`FrameReader`](crate::ws::reader::FrameReader)), corked so that what
//! one read brings in leaves as one write per recipient, a heartbeat, the
//! credentials' deadline and the writer for what the senders could not
//! write themselves (`ws::outbox`), driven together in one task. Each
//! client message goes to the channel under its current policy; `auth` and
//! `refresh` control messages go to the credentials (`credentials`). A connection that authenticates in band
//! joins its channel only once it has: nothing it sends before is relayed.
//!
//! Closing: whoever closes first queues a close frame in the outbox; the
//! session then waits at most `close_timeout` for the other side. It leaves
//! its channel and gives its slots back before the peer can see the
//! connection end (so a client that sees it end also sees it gone from
//! `stats()`), then half-closes and drains until the peer hangs up.

use std::{pin::Pin, sync::Arc, task::Poll, time::Duration};

use arc_swap::ArcSwap;

use fastwebsockets::{OpCode, upgrade::UpgradeFut};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    time::{Instant, Sleep},
};
use tokio_util::sync::CancellationToken;

mod credentials;

use bytes::Bytes;

use self::credentials::{Credentials, Handled};
use crate::{
    auth::{
        Authenticator, Identity,
        messages::{Close, NOT_AUTH},
    },
    channel::{Channel, JoinError, Joiner, Membership, PublishError},
    config::{ChannelConfig, ChannelKind, Limits},
    http::Caller,
    limits::{budget::MessageLimiter, caps::Slots},
    message::MessageKind,
    protocol::close,
    snapshot::Snapshot,
    stats::{Counters, Reason},
    ws::{
        cork,
        deflate::negotiate::Agreement,
        encoder::{Encoding, Outgoing, WriterEncoder},
        frame,
        outbox::{Outbox, OutboxReceiver},
        reader::{Activity, Checker, FrameReader, ReadError},
        receive::{Assembler, Failure, Received, close_for},
        socket,
    },
};

/// Where a session stands in its channel.
pub(crate) enum Place {
    /// A member.
    Joined(Membership),
    /// Not yet: it authenticates in band first, then joins this.
    Waiting(Waiting),
}

/// The join an in-band authentication unlocks.
pub(crate) struct Waiting {
    pub(crate) channel: Arc<Channel>,
    pub(crate) config: Arc<ChannelConfig>,
    pub(crate) room: Option<String>,
    pub(crate) encoding: Encoding,
}

/// A connection that has been upgraded (and joined its channel, unless it
/// authenticates in band).
pub(crate) struct Session {
    pub(crate) place: Place,
    /// Who admission found it to be.
    pub(crate) caller: Caller,
    /// Verifies in-band `auth` and `refresh` where the channel checks
    /// identities; `None` where control messages are the application's.
    pub(crate) in_band: Option<Authenticator>,
    pub(crate) encoding: Encoding,
    pub(crate) counters: Arc<Counters>,
    pub(crate) outbox: Outbox,
    pub(crate) receiver: OutboxReceiver,
    /// Held for the life of the connection: its share of the caps.
    pub(crate) slots: Slots,
    /// The channel's configuration admission read: the per-connection
    /// limits and the compression settings are fixed for the connection's
    /// life (the permessage-deflate agreement cannot change after the
    /// 101). Shared, not copied: every session would hold its own.
    pub(crate) config: Arc<ChannelConfig>,
    /// The permessage-deflate parameters, if negotiated.
    pub(crate) deflate: Option<Agreement>,
    /// The running configuration: each client message follows the
    /// channel's policy as the current snapshot has it.
    pub(crate) policy: Arc<ArcSwap<Snapshot>>,
    /// Cancelled at `shutdown_timeout`: drop the connection at once.
    pub(crate) hard_stop: CancellationToken,
}

impl Session {
    /// Serves the connection until it closes.
    ///
    /// Not an `async fn`: that would keep the whole `Session` in the task
    /// next to the fields taken out of it, for the connection's life.
    pub(crate) fn run(self, upgrade: UpgradeFut) -> impl Future<Output = ()> + Send {
        let Session {
            mut place,
            caller,
            in_band,
            encoding,
            counters,
            outbox,
            receiver,
            slots,
            config,
            deflate,
            policy,
            hard_stop,
        } = self;
        // Made here, not in the future: what they are made of would stay
        // in the task beside them.
        let mut credentials = Credentials::new(caller, in_band);
        let expiring = credentials.expiry().wait();
        async move {
            let limits = &config.limits;
            let io = match upgrade.await {
                Ok(websocket) => websocket.into_inner(),
                Err(error) => return tracing::debug!(%error, "upgrade did not complete"),
            };
            let (mut read, write) = socket::split(io);
            let encoder = WriterEncoder::new(
                deflate.as_ref(),
                encoding,
                &config.compression,
                counters.clone(),
            );
            // The writer runs in this task: senders write to the socket
            // themselves, so it has work only where a write could not
            // finish or a message is compressed for this connection alone,
            // and a task of its own would cost every idle connection its
            // allocation. It hands the write half back for the lingering
            // close.
            let running = receiver.run(write, encoder);
            let writer = async move {
                let (write, written) = running.await;
                (write, written.is_ok())
            };
            tokio::pin!(writer, expiring);
            let activity = Activity::new();
            let exchange = async {
                let reading = read_messages(
                    &mut read,
                    &activity,
                    deflate,
                    Handling {
                        place: &mut place,
                        credentials: &mut credentials,
                        policy: &policy,
                        counters: &counters,
                        outbox: &outbox,
                    },
                    limits,
                );
                let watching = heartbeat(&activity, &outbox, limits);
                tokio::pin!(reading, watching);
                // Made once a close frame is queued.
                let mut stuck: Option<Pin<Box<Sleep>>> = None;
                // Each fires rarely (the heartbeat once per ping interval,
                // the others once in the connection's life, the writer
                // only where a sender's write could not finish): polled
                // only once woken (the outbox wakes it when a close frame
                // is queued), not for every message.
                let mut rare = outbox.quiet(std::future::poll_fn(|cx| {
                    if let Poll::Ready(written) = writer.as_mut().poll(cx) {
                        return Poll::Ready(Ended::Written(written));
                    }
                    if watching.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Ended::Idle);
                    }
                    if let Poll::Ready(expired) = expiring.as_mut().poll(cx) {
                        return Poll::Ready(Ended::Expired(expired));
                    }
                    if !outbox.is_closing() {
                        return Poll::Pending;
                    }
                    // A close frame that cannot even be written (the peer
                    // stopped reading) bounds the handshake too.
                    stuck
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(limits.close_timeout)))
                        .as_mut()
                        .poll(cx)
                        .map(|()| Ended::Stuck)
                }));
                // Corked: what one read brings in leaves as one write per
                // recipient, once the reader has nothing more to read.
                let mut reading = cork::corked(reading);
                // Biased: the reader first; no random start to draw.
                let ended = tokio::select! {
                    biased;
                    () = &mut reading => Ended::Read,
                    ended = &mut rare => ended,
                };
                // Boxed: the close handshake's timers would otherwise sit in
                // every session's task for its whole life.
                let (outbox, counters, close_timeout) = (&outbox, &counters, limits.close_timeout);
                Box::pin(async move {
                    match ended {
                        Ended::Read => {
                            outbox.finish();
                            tokio::time::timeout(close_timeout, writer).await.ok()
                        }
                        Ended::Written(written) => {
                            // Our close frame went out: wait for the peer's. If
                            // the write failed, the peer is gone: nothing to wait
                            // for.
                            if written.1 {
                                let _ = tokio::time::timeout(close_timeout, reading).await;
                            }
                            Some(written)
                        }
                        Ended::Idle => {
                            counters.record(Reason::Idle);
                            outbox.close(close::GOING_AWAY, "idle timeout");
                            let _ = tokio::time::timeout(close_timeout, writer).await;
                            None
                        }
                        Ended::Expired(expired) => {
                            let (result, reason) = match expired.code {
                                close::TOKEN_EXPIRED => ("expired", "token"),
                                _ => ("rejected", "first_message_timeout"),
                            };
                            counters.record_auth(result, reason);
                            outbox.close(expired.code, expired.reason);
                            let _ = tokio::time::timeout(close_timeout, writer).await;
                            None
                        }
                        Ended::Stuck => None,
                    }
                })
                .await
            };
            // Past shutdown_timeout nothing is waited for any more.
            let stopping = hard_stop.cancelled();
            tokio::pin!(stopping);
            let finished = tokio::select! {
                biased;
                finished = exchange => finished,
                () = outbox.quiet(stopping) => None,
            };
            // Leave the channel and give the slots back before the peer can see
            // the connection end, so that `stats()` agrees with what it sees.
            counters.traffic.record_disconnect(outbox.closed_by());
            drop((place, outbox, slots));
            if let Some((mut write, true)) = finished {
                tokio::select! {
                    // Boxed: its scratch buffer would otherwise sit in every
                    // session's task for its whole life.
                    () = Box::pin(linger(&mut read, &mut write, limits.close_timeout)) => {}
                    () = hard_stop.cancelled() => {}
                }
            }
        }
    }
}

/// Why a session's exchange of messages ended.
enum Ended<W> {
    /// The reader is done: the peer closed, or broke the protocol or a
    /// limit (the matching close is queued), or the stream ended.
    Read,
    /// The writer stopped: our close frame went out, or a write failed
    /// (`false`).
    Written((W, bool)),
    /// Nothing was received for `idle_timeout`.
    Idle,
    /// The credentials' deadline passed: close with this.
    Expired(Close),
    /// A close frame was queued and could not be written in
    /// `close_timeout`.
    Stuck,
}

/// Half-closes our side and reads (discarding) until the peer closes its
/// side or `timeout` passes. Dropping a socket with unread bytes makes the
/// kernel send a reset, which can destroy our close frame in the peer's
/// buffers before it reads it: a client that was still sending when we
/// closed for a limit must still see 1008 or 1009, not 1006.
async fn linger<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    read: &mut R,
    write: &mut W,
    timeout: Duration,
) {
    let drain = async {
        let _ = write.shutdown().await;
        let mut scratch = [0u8; 4096];
        while matches!(read.read(&mut scratch).await, Ok(n) if n > 0) {}
    };
    let _ = tokio::time::timeout(timeout, drain).await;
}

/// How a reader that had frames to read stopped.
enum Stopped {
    /// The connection is over (closed, broken, or closing).
    Ended,
    /// The client went quiet with nothing left to read: the reader is
    /// given back until it sends again.
    Quiet,
}

/// Reads messages until the peer closes, the stream ends or breaks the
/// protocol or a limit; each failure queues the matching close frame.
/// Waits for the client's first byte, then reads frames until the
/// connection ends or goes quiet, and waits again.
async fn read_messages<R: AsyncRead + Unpin>(
    read: &mut R,
    activity: &Activity,
    deflate: Option<Agreement>,
    mut handling: Handling<'_>,
    limits: &Limits,
) {
    // When the last frame arrived (the session's start before any).
    let mut previous = activity.last();
    loop {
        let checker = Checker::new(limits.max_payload, deflate.is_some());
        let mut reader = FrameReader::new(&mut *read, checker, activity);
        // The reader's buffer is 8 KiB, and the reading loop's state
        // several hundred bytes more. Most connections of a fan-out server
        // are silent, or answer a ping now and then: they pay for both only
        // while their client sends something, the loop boxed then, so that
        // an idle connection's task holds no more than this wait.
        if !reader.wait_for_data().await {
            return;
        }
        let reading = read_frames(
            reader,
            activity,
            deflate,
            &mut handling,
            &mut previous,
            limits,
        );
        if let Stopped::Ended = Box::pin(reading).await {
            return;
        }
    }
}

/// Reads frames once the client has sent its first byte: see
/// [`read_messages`]. Gives the reader back ([`Stopped::Quiet`]) after a
/// frame that came at least half a ping interval after the one before,
/// when nothing more has arrived and nothing is held for the frames to
/// come (no message half received, no inflater, the rate budgets full): a
/// client that only answers pings holds it for a moment each time.
async fn read_frames<R: AsyncRead + Unpin>(
    mut reader: FrameReader<'_, R>,
    activity: &Activity,
    deflate: Option<Agreement>,
    handling: &mut Handling<'_>,
    previous: &mut Instant,
    limits: &Limits,
) -> Stopped {
    let (counters, outbox) = (handling.counters, handling.outbox);
    let limiter = MessageLimiter::new(&limits.message_rate, limits.byte_rate.as_ref());
    let mut assembler = Assembler::new(
        limits.max_payload,
        deflate.map(|agreement| agreement.client_no_context_takeover),
    );
    // A client that only answers pings sends a frame per ping interval;
    // one that talks, several.
    let quiet_gap = limits.ping_interval / 2;
    let closing = |failure: Failure| {
        counters.record(failure.counted);
        outbox.close(failure.code, failure.reason);
        Stopped::Ended
    };
    loop {
        let frame = match reader.frame().await {
            Ok(frame) => frame,
            Err(error) => {
                fail(error, counters, outbox);
                return Stopped::Ended;
            }
        };
        let arrived = activity.last();
        let quiet = arrived.duration_since(*previous) >= quiet_gap;
        *previous = arrived;
        match assembler.frame(frame) {
            Ok(Received::Message((kind, payload))) => {
                // After our close frame only the peer's close matters.
                if !outbox.is_closing() {
                    if let Err(failure) = admit(&limiter, payload.len(), arrived).await {
                        return closing(failure);
                    }
                    if handling.message(kind, payload).await.is_err() {
                        return Stopped::Ended;
                    }
                }
            }
            Ok(Received::Nothing) => {}
            Ok(Received::Close(payload)) => {
                // Answered through the outbox, so that the writer keeps one
                // order.
                outbox.close_with(frame::encode(OpCode::Close, &payload));
                return Stopped::Ended;
            }
            Ok(Received::Ping(payload)) => {
                // A ping costs a pong, as a message costs its echo: both
                // spend the same budget.
                if !outbox.is_closing() {
                    if let Err(failure) = admit(&limiter, payload.len(), arrived).await {
                        return closing(failure);
                    }
                    let pong = frame::encode(OpCode::Pong, &payload);
                    let _ = outbox.send(Outgoing::Wire(pong));
                }
            }
            Err(failure) => return closing(failure),
        }
        if quiet && reader.is_drained() && assembler.is_idle() && limiter.is_full(Instant::now()) {
            return Stopped::Quiet;
        }
    }
}

/// What a session's reader hands each client message to.
struct Handling<'s> {
    place: &'s mut Place,
    credentials: &'s mut Credentials,
    policy: &'s ArcSwap<Snapshot>,
    counters: &'s Counters,
    outbox: &'s Outbox,
}

/// The session closes (its close frame is queued).
struct Closed;

impl Handling<'_> {
    /// Handles one client message: a control message goes to the
    /// credentials, anything else to the channel (once joined).
    async fn message(&mut self, kind: MessageKind, payload: Bytes) -> Result<(), Closed> {
        let control = match kind {
            MessageKind::Text => self.credentials.control(&payload),
            MessageKind::Binary => None,
        };
        if let Some(control) = control {
            // Boxed: verifying (maybe fetching keys) is rare and its state
            // large; the reading loop that every message passes through
            // should not carry it.
            return match Box::pin(self.credentials.handle(control, self.counters)).await {
                Handled::Authenticated(identity, answer) => {
                    self.join(identity)?;
                    self.answer(answer);
                    Ok(())
                }
                Handled::Refreshed(identity, answer) => {
                    if let Place::Joined(membership) = self.place {
                        membership.refreshed(identity);
                    }
                    self.answer(answer);
                    Ok(())
                }
                Handled::Refused(close) => self.close(close.code, close.reason),
            };
        }
        let Place::Joined(membership) = self.place else {
            return self.close(NOT_AUTH.code, NOT_AUTH.reason);
        };
        let snapshot = self.policy.load();
        // A channel a reload removed is closing its connections: what they
        // still send goes nowhere.
        let Some(config) = snapshot.policy_of(membership.channel()) else {
            return Ok(());
        };
        match membership.dispatch(config, kind, payload) {
            Err(PublishError::ClientsMayNotPublish) => self.close(
                close::POLICY_VIOLATION,
                "clients may not publish on this channel",
            ),
            Err(PublishError::Forbidden) => {
                self.close(close::POLICY_VIOLATION, "not permitted to publish here")
            }
            _ => Ok(()),
        }
    }

    /// Joins the channel the in-band authentication was for.
    fn join(&mut self, identity: Identity) -> Result<(), Closed> {
        let Place::Waiting(waiting) = &*self.place else {
            return Ok(());
        };
        let config = &waiting.config;
        let room = waiting.room.as_deref();
        // As at the handshake: a hub's grants are checked at each join.
        if config.kind != ChannelKind::Hub
            && !identity.may_join(&config.name, room, config.auth.rooms)
        {
            self.counters.record_auth("rejected", "forbidden");
            return self.close(close::POLICY_VIOLATION, "not permitted on this channel");
        }
        let joiner = Joiner {
            outbox: self.outbox.clone(),
            encoding: waiting.encoding,
            identity: Some(identity),
        };
        match waiting.channel.join(config, room, joiner) {
            Ok(membership) => {
                *self.place = Place::Joined(membership);
                Ok(())
            }
            Err(error) => {
                let code = match error {
                    JoinError::Closing => close::GOING_AWAY,
                    _ => close::TRY_AGAIN_LATER,
                };
                self.close(code, &error.to_string())
            }
        }
    }

    /// Queues an answer for the client.
    fn answer(&self, text: String) {
        let _ = self
            .outbox
            .send(Outgoing::Message(MessageKind::Text, Bytes::from(text)));
    }

    fn close(&self, code: u16, reason: &str) -> Result<(), Closed> {
        self.outbox.close(code, reason);
        Err(Closed)
    }
}

/// Spends the rate budgets on one message (or ping) of `len` bytes that
/// `arrived` with the read that brought it in, waiting if the channel
/// throttles.
async fn admit(limiter: &MessageLimiter, len: usize, arrived: Instant) -> Result<(), Failure> {
    limiter
        .admit(len, arrived)
        .await
        .map_err(|_| Failure::RATE_LIMIT)
}

/// Pings every `ping_interval`; returns when nothing has been received for
/// `idle_timeout`.
///
/// Not an `async fn`: that would keep a second copy of its arguments in
/// every session's task.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn stores its arguments twice"
)]
fn heartbeat<'s>(
    activity: &'s Activity,
    outbox: &'s Outbox,
    limits: &'s Limits,
) -> impl Future<Output = ()> + 's {
    async move {
        let mut next_ping = Instant::now() + limits.ping_interval;
        loop {
            let idle_at = activity.last() + limits.idle_timeout;
            tokio::time::sleep_until(next_ping.min(idle_at)).await;
            let now = Instant::now();
            if now >= activity.last() + limits.idle_timeout {
                return;
            }
            if now >= next_ping {
                let _ = outbox.send(Outgoing::Wire(frame::EMPTY_PING));
                next_ping = now + limits.ping_interval;
            }
        }
    }
}

/// Closes with the code a read error calls for, if the peer can still hear it.
fn fail(error: ReadError, counters: &Counters, outbox: &Outbox) {
    if let Some(failure) = close_for(error) {
        counters.record(failure.counted);
        tracing::debug!(
            code = failure.code,
            reason = failure.reason,
            "closing on a protocol error"
        );
        outbox.close(failure.code, failure.reason);
    }
}
