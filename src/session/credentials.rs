//! A session's credentials over its life: the identity it was admitted
//! with (or the in-band `auth` it still owes), the deadline at which it
//! must be closed (the first-message timeout, then the token's expiry),
//! and the `auth` and `refresh` control messages that move that deadline.
//!
//! Control messages are consumed only where in-band authentication applies:
//! on a channel that checks identities, when `[auth]` is configured.
//! Elsewhere every message is the application's.

use std::{pin::Pin, time::SystemTime};

use tokio::{sync::watch, time::Instant};
use tokio_util::either::Either;

use crate::{
    auth::{
        Authenticator, Identity,
        messages::{self, AUTH_TIMEOUT, Close, Control, EXPIRED},
    },
    http::Caller,
    stats::Counters,
};

/// When the session must close, and with what.
type Deadline = Option<(Instant, Close)>;

/// The credentials of one session.
pub(super) struct Credentials {
    /// Verifies `auth` and `refresh`; `None` where control messages are
    /// the application's.
    authenticator: Option<Authenticator>,
    /// Who the connection is, once known. Boxed: most connections have
    /// no identity, and the credentials live as long as the connection.
    identity: Option<Box<Identity>>,
    deadline: Deadlines,
}

/// The deadline, as far as it can change.
enum Deadlines {
    /// Without an authenticator nothing moves it: most connections, which
    /// then need no watch channel (its shared state is a few hundred
    /// bytes).
    Fixed(Deadline),
    /// `auth` and `refresh` move it.
    Moving(watch::Sender<Deadline>),
}

/// What a control message did.
pub(super) enum Handled {
    /// The first `auth`: the session may now join, as this identity.
    Authenticated(Identity, String),
    /// A `refresh` (or a later `auth`): send the answer.
    Refreshed(Identity, String),
    /// Refused: close with this.
    Refused(Close),
}

impl Credentials {
    /// The credentials admission handed over; `in_band` when control
    /// messages are consumed on this channel.
    pub(super) fn new(caller: Caller, in_band: Option<Authenticator>) -> Self {
        let (authenticator, identity, deadline) = match caller {
            Caller::Anonymous => (in_band, None, None),
            Caller::Known(identity) => {
                let deadline = expiry(&identity);
                (in_band, Some(Box::new(identity)), deadline)
            }
            Caller::FirstMessage(authenticator) => {
                let at = Instant::now() + authenticator.first_message_timeout();
                (Some(authenticator), None, Some((at, AUTH_TIMEOUT)))
            }
        };
        let deadline = match authenticator {
            Some(_) => Deadlines::Moving(watch::Sender::new(deadline)),
            None => Deadlines::Fixed(deadline),
        };
        Self {
            authenticator,
            identity,
            deadline,
        }
    }

    /// The control message in a text message's `payload`, if control
    /// messages are consumed here (asked first: where they are not, a text
    /// message is not read again).
    pub(super) fn control(&self, payload: &[u8]) -> Option<Control> {
        self.authenticator.as_ref()?;
        messages::parse(std::str::from_utf8(payload).ok()?)
    }

    /// Carries out a control message.
    pub(super) async fn handle(&mut self, control: Control, counters: &Counters) -> Handled {
        let Some(authenticator) = &self.authenticator else {
            return Handled::Refused(messages::NOT_AUTH);
        };
        let token = match &control {
            Control::Auth(token) | Control::Refresh(token) => token,
        };
        let first = self.identity.is_none();
        let verified = match &self.identity {
            Some(current) => authenticator.refresh(current, token).await,
            None => authenticator.verify(token).await,
        };
        match verified {
            Ok(identity) => {
                counters.record_auth(if first { "accepted" } else { "refreshed" }, "message");
                if let Deadlines::Moving(deadline) = &self.deadline {
                    deadline.send_replace(expiry(&identity));
                }
                self.identity = Some(Box::new(identity.clone()));
                if first {
                    let answer = messages::auth_ok(&identity);
                    Handled::Authenticated(identity, answer)
                } else {
                    let answer = messages::refreshed(&identity);
                    Handled::Refreshed(identity, answer)
                }
            }
            Err(error) => {
                counters.record_auth("rejected", error.label());
                Handled::Refused(Close {
                    code: error.close_code(),
                    reason: if first {
                        "authentication failed"
                    } else {
                        "refresh failed"
                    },
                })
            }
        }
    }

    /// A watcher of the deadline, owned, so that the session can await it
    /// while it handles control messages.
    pub(super) fn expiry(&self) -> Expiry {
        match &self.deadline {
            Deadlines::Fixed(None) => Expiry::Never,
            Deadlines::Fixed(Some((at, close))) => Expiry::At(*at, *close),
            Deadlines::Moving(deadline) => Expiry::Moving(deadline.subscribe()),
        }
    }
}

/// A deadline's timer, boxed.
type Timer = Pin<Box<dyn Future<Output = Close> + Send>>;

/// Awaits a session's deadline, following every refresh.
pub(super) enum Expiry {
    /// No deadline, and none can come.
    Never,
    /// A deadline nothing moves.
    At(Instant, Close),
    /// A deadline that `auth` and `refresh` move.
    Moving(watch::Receiver<Deadline>),
}

impl Expiry {
    /// Completes when the deadline passes, with the close to send; never
    /// while there is none.
    ///
    /// Not an `async fn`, and the timers are boxed: this future sits in
    /// every session's task for its whole life, and most sessions never
    /// have a deadline.
    pub(super) fn wait(self) -> impl Future<Output = Close> + Send {
        match self {
            Self::Never => Either::Left(std::future::pending()),
            Self::At(at, close) => Either::Right(Box::pin(async move {
                tokio::time::sleep_until(at).await;
                close
            }) as Timer),
            Self::Moving(receiver) => Either::Right(Box::pin(follow(receiver)) as Timer),
        }
    }
}

/// Awaits a deadline that `auth` and `refresh` move.
async fn follow(mut receiver: watch::Receiver<Deadline>) -> Close {
    loop {
        let current = *receiver.borrow_and_update();
        let changed = match current {
            None => receiver.changed().await,
            Some((at, close)) => tokio::select! {
                () = tokio::time::sleep_until(at) => return close,
                changed = receiver.changed() => changed,
            },
        };
        if changed.is_err() {
            // The credentials are gone: so is the session.
            std::future::pending::<()>().await;
        }
    }
}

/// The deadline an identity's expiry sets.
fn expiry(identity: &Identity) -> Deadline {
    identity.expires_at.map(|at| {
        let left = at.duration_since(SystemTime::now()).unwrap_or_default();
        (Instant::now() + left, EXPIRED)
    })
}
