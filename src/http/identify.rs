//! The identity step of admission: who the client is, by the credentials
//! its handshake carries, and whether that identity may join. It follows
//! the pure decision (`admit`) because verification may wait on a JWKS
//! endpoint or the connect webhook; it reads the same snapshot.
//!
//! A channel's `auth` mode decides what a missing credential means:
//! `required` refuses it (401), unless the first message is a configured
//! source, in which case the connection is upgraded and must authenticate
//! in band; `optional` admits it anonymously; `none` never looks. A
//! credential that is present is always verified, and a bad one refused,
//! whatever the mode.

use hyper::{Request, header::HeaderValue};

use super::{Admitted, Rejection, handshake::select_subprotocol_except};
use crate::{
    auth::{AuthError, Authenticator, HandshakeFacts, Identity, Outcome, Via, sources::Source},
    config::{AuthMode, ChannelKind},
    stats::Counters,
};

/// Who an admitted connection is.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// No identity: an `auth = "none"` channel, or `"optional"` without
    /// credentials.
    Anonymous,
    /// Authenticated at the handshake.
    Known(Identity),
    /// Must send `{"type":"auth","token":...}` first (the session waits).
    FirstMessage(Authenticator),
}

/// Authenticates `request` for the channel `admitted` names, and checks
/// that the identity may join it. On success `admitted.caller` says who it
/// is, and the subprotocol selection leaves out a token sent as one.
pub(crate) async fn identify<B>(
    authenticator: Option<&Authenticator>,
    request: &Request<B>,
    admitted: &mut Admitted,
    counters: &Counters,
) -> Result<(), Rejection> {
    let config = admitted.config.clone();
    let (mode, Some(authenticator)) = (config.auth.mode, authenticator) else {
        return Ok(());
    };
    if mode == AuthMode::None {
        return Ok(());
    }
    let facts = HandshakeFacts {
        channel: &config.name,
        room: admitted.room.as_deref(),
        uri: request.uri(),
        headers: request.headers(),
        client_ip: admitted.client_ip,
    };
    let refuse = |error: AuthError| {
        counters.record_auth("rejected", error.label());
        Rejection::Auth(error)
    };
    let (identity, via) = match authenticator.authenticate(&facts).await {
        Ok(Outcome::Identified { identity, via }) => (identity, via),
        Ok(Outcome::FirstMessage) if mode == AuthMode::Required => {
            admitted.caller = Caller::FirstMessage(authenticator.clone());
            return Ok(());
        }
        Ok(Outcome::FirstMessage) | Err(AuthError::Missing) if mode == AuthMode::Optional => {
            counters.record_auth("anonymous", "none");
            return Ok(());
        }
        Ok(Outcome::FirstMessage) => return Err(refuse(AuthError::Missing)),
        Err(error) => return Err(refuse(error)),
    };
    // A hub connection's grants are checked at each join, room by room.
    if config.kind != ChannelKind::Hub
        && !identity.may_join(&config.name, admitted.room.as_deref(), config.auth.rooms)
    {
        return Err(refuse(AuthError::Forbidden));
    }
    if let Via::Token(found) = &via
        && found.source == Source::Protocol
    {
        // The token is no subprotocol: select among the other entries, and
        // answer the marker if the channel takes none of them (a browser
        // fails a handshake that selects nothing it offered).
        admitted.subprotocol =
            select_subprotocol_except(request.headers(), &config.subprotocols, |entry| {
                found.consumes_protocol(entry)
            })
            .or_else(|| found.protocol_marker())
            .and_then(|name| HeaderValue::from_str(name).ok());
    }
    counters.record_auth("accepted", via.label());
    admitted.caller = Caller::Known(identity);
    Ok(())
}
