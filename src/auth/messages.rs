//! The in-band authentication messages, pure: parsing what a client sends
//! and writing what the server answers. Only on channels where in-band
//! authentication is enabled; elsewhere messages stay verbatim.
//!
//! Client to server, as text messages:
//!
//! ```json
//! {"type": "auth", "token": "eyJ..."}
//! {"type": "refresh", "token": "eyJ..."}
//! ```
//!
//! `auth` must be the first message of a connection that authenticates in
//! band, within the first-message timeout; anything else first, a bad token
//! or the timeout closes 1008 with the reason. `refresh` replaces the
//! connection's credentials with a token for the same user (another user's
//! closes 1008). Other members are ignored, so clients may add their own.
//!
//! Server to client:
//!
//! ```json
//! {"type": "auth_ok", "user": "alice", "exp": 1767225600}
//! {"type": "refreshed", "user": "alice", "exp": 1767229200}
//! ```
//!
//! `exp` is when the connection will be closed with [`EXPIRED`] (4401,
//! "token expired") unless refreshed (Unix seconds; absent when the
//! credentials do not expire).

use std::{borrow::Cow, time::UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{permissions::Identity, sources::Token};
use crate::protocol::close;

/// A close frame's status code and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Close {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
}

/// The connection's credentials expired and were not refreshed.
pub(crate) const EXPIRED: Close = Close {
    code: close::TOKEN_EXPIRED,
    reason: "token expired",
};

/// The first message of an in-band connection was not `auth`.
pub(crate) const NOT_AUTH: Close = Close {
    code: close::POLICY_VIOLATION,
    reason: "expected an auth message",
};

/// No `auth` message came within the first-message timeout.
pub(crate) const AUTH_TIMEOUT: Close = Close {
    code: close::POLICY_VIOLATION,
    reason: "no auth message in time",
};

/// An in-band authentication message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Control {
    /// `{"type":"auth","token":...}`.
    Auth(Token),
    /// `{"type":"refresh","token":...}`.
    Refresh(Token),
}

/// The members read; a borrowed parse that copies only the token.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    token: Option<Value>,
}

/// The control message `text` is, if it is one: a JSON object whose `type`
/// is `auth` or `refresh`. A `token` that is absent or not a string reads as
/// an empty token, which verification refuses (so a malformed control
/// message is answered, never relayed).
pub(crate) fn parse(text: &str) -> Option<Control> {
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let envelope: Envelope = serde_json::from_str(text).ok()?;
    let token = || match envelope.token {
        Some(Value::String(ref token)) => Token::new(token.as_str()),
        _ => Token::new(""),
    };
    match envelope.kind.as_deref() {
        Some("auth") => Some(Control::Auth(token())),
        Some("refresh") => Some(Control::Refresh(token())),
        _ => None,
    }
}

/// The answer to a successful `auth`.
pub(crate) fn auth_ok(identity: &Identity) -> String {
    answer("auth_ok", identity)
}

/// The answer to a successful `refresh`.
pub(crate) fn refreshed(identity: &Identity) -> String {
    answer("refreshed", identity)
}

/// `auth_ok` and `refreshed`, members in this order.
#[derive(Serialize)]
struct Answer<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
}

fn answer(kind: &str, identity: &Identity) -> String {
    let exp = identity
        .expires_at
        .map(|at| at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs());
    serde_json::to_string(&Answer {
        kind,
        user: &identity.user,
        exp,
    })
    .expect("an answer serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        auth::{
            error::{AuthError, Invalid, Unavailable},
            permissions::{Grant, Permissions},
            settings::AbsentGrants,
        },
        protocol::frame::MAX_CONTROL_PAYLOAD,
    };
    use std::time::Duration;

    /// What fits in a close frame after the two-byte code.
    const MAX_REASON_LEN: usize = MAX_CONTROL_PAYLOAD as usize - 2;

    #[test]
    fn close_reasons_fit_a_close_frame() {
        for frame in [EXPIRED, NOT_AUTH, AUTH_TIMEOUT] {
            assert!(frame.reason.len() <= MAX_REASON_LEN, "{frame:?}");
        }
        assert_eq!(EXPIRED.code, 4401);
        // A failed in-band auth or refresh closes with the error as the reason.
        let errors = Invalid::ALL.map(AuthError::Invalid).into_iter().chain([
            AuthError::Missing,
            AuthError::Denied,
            AuthError::DeniedForbidden,
            AuthError::Forbidden,
            AuthError::OtherUser,
            AuthError::Unavailable(Unavailable::Jwks),
            AuthError::Unavailable(Unavailable::WebhookBadAnswer),
        ]);
        for error in errors {
            assert!(error.to_string().len() <= MAX_REASON_LEN, "{error:?}");
        }
    }

    #[test]
    fn control_messages() {
        let cases = [
            (
                r#"{"type":"auth","token":"a.b.c"}"#,
                Some(Control::Auth(Token::new("a.b.c"))),
            ),
            (
                r#"  {"token":"a.b.c","type":"refresh","id":7}"#,
                Some(Control::Refresh(Token::new("a.b.c"))),
            ),
            (r#"{"type":"auth"}"#, Some(Control::Auth(Token::new("")))),
            (
                r#"{"type":"refresh","token":42}"#,
                Some(Control::Refresh(Token::new(""))),
            ),
            (
                r#"{"type":"au\u0074h","token":"x"}"#,
                Some(Control::Auth(Token::new("x"))),
            ),
            (r#"{"type":"chat","text":"auth"}"#, None),
            (r#"{"type":7}"#, None),
            (r#"{"kind":"auth","token":"x"}"#, None),
            (r#"["auth"]"#, None),
            (r#"{"type":"auth""#, None),
            ("auth", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), expected, "{text}");
        }
    }

    #[test]
    fn answers() {
        let permissions = Permissions {
            join: Grant::from_value(None, AbsentGrants::Deny).unwrap(),
            publish: Grant::from_value(None, AbsentGrants::Deny).unwrap(),
        };
        let mut alice = Identity {
            user: "al\"ice".into(),
            expires_at: None,
            permissions,
        };
        assert_eq!(auth_ok(&alice), r#"{"type":"auth_ok","user":"al\"ice"}"#);
        alice.expires_at = Some(UNIX_EPOCH + Duration::from_millis(1_767_225_600_900));
        assert_eq!(
            refreshed(&alice),
            r#"{"type":"refreshed","user":"al\"ice","exp":1767225600}"#
        );
    }
}
