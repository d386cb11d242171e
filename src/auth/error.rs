//! Why authentication failed, typed so that the HTTP status, the close code,
//! the metric label and the log line all derive from one value. No variant
//! carries a token, a claim value or a user id: every one of them is safe to
//! log and has a fixed label.

use hyper::StatusCode;
use thiserror::Error;

use crate::protocol::close;

/// Why a token was refused: the client's fault, answered 401.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Invalid {
    /// Longer than [`super::jwt::MAX_TOKEN_LEN`]; refused before any decoding.
    #[error("token too large")]
    TooLarge,
    /// Not three dot-separated segments, or a header that is not a JWS header.
    #[error("malformed token")]
    Malformed,
    /// A segment is not base64url.
    #[error("token not base64url")]
    BadBase64,
    /// `alg: none`: an unsigned token.
    #[error("unsigned token (alg none)")]
    AlgNone,
    /// An algorithm the configuration does not accept.
    #[error("algorithm not accepted")]
    AlgorithmNotAllowed,
    /// No key of the token's algorithm and `kid`.
    #[error("no key for the token's kid and algorithm")]
    UnknownKey,
    /// No candidate key verifies the signature.
    #[error("bad signature")]
    BadSignature,
    /// A valid signature over a payload that is not a JSON object.
    #[error("payload not a JSON object")]
    NotAnObject,
    /// `exp` has passed (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is still ahead (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` is ahead (beyond the leeway): a token from the future.
    #[error("token issued in the future")]
    IssuedInFuture,
    /// `exp` is required and absent.
    #[error("token without exp")]
    MissingExpiry,
    /// `iss` absent or not an accepted issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` absent or naming no accepted audience.
    #[error("wrong audience")]
    WrongAudience,
    /// The user claim is absent.
    #[error("no user claim")]
    MissingUser,
    /// A registered, user or grant claim of the wrong type or form.
    #[error("invalid claim")]
    BadClaim,
}

impl Invalid {
    /// Every reason, for the tests that check each one's label and text.
    #[cfg(test)]
    pub(crate) const ALL: [Invalid; 16] = [
        Invalid::TooLarge,
        Invalid::Malformed,
        Invalid::BadBase64,
        Invalid::AlgNone,
        Invalid::AlgorithmNotAllowed,
        Invalid::UnknownKey,
        Invalid::BadSignature,
        Invalid::NotAnObject,
        Invalid::Expired,
        Invalid::NotYetValid,
        Invalid::IssuedInFuture,
        Invalid::MissingExpiry,
        Invalid::WrongIssuer,
        Invalid::WrongAudience,
        Invalid::MissingUser,
        Invalid::BadClaim,
    ];

    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Invalid::TooLarge => "too_large",
            Invalid::Malformed => "malformed",
            Invalid::BadBase64 => "bad_base64",
            Invalid::AlgNone => "alg_none",
            Invalid::AlgorithmNotAllowed => "alg_not_allowed",
            Invalid::UnknownKey => "unknown_key",
            Invalid::BadSignature => "bad_signature",
            Invalid::NotAnObject => "not_an_object",
            Invalid::Expired => "expired",
            Invalid::NotYetValid => "not_yet_valid",
            Invalid::IssuedInFuture => "issued_in_future",
            Invalid::MissingExpiry => "missing_exp",
            Invalid::WrongIssuer => "wrong_issuer",
            Invalid::WrongAudience => "wrong_audience",
            Invalid::MissingUser => "missing_user",
            Invalid::BadClaim => "bad_claim",
        }
    }
}

/// A backend that could not answer: the server's fault, answered 503.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Unavailable {
    /// The webhook did not answer within its timeout.
    #[error("the auth webhook timed out")]
    WebhookTimeout,
    /// The webhook could not be reached or answered an error status.
    #[error("the auth webhook is unreachable or failing")]
    WebhookDown,
    /// The webhook answered something that is not an allow or a deny.
    #[error("the auth webhook answered an unreadable decision")]
    WebhookBadAnswer,
    /// No JWKS key set could be fetched to verify the token with.
    #[error("the JWKS endpoint is unavailable")]
    Jwks,
}

impl Unavailable {
    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Unavailable::WebhookTimeout => "webhook_timeout",
            Unavailable::WebhookDown => "webhook_down",
            Unavailable::WebhookBadAnswer => "webhook_bad_answer",
            Unavailable::Jwks => "jwks_unavailable",
        }
    }
}

/// Why a connection is not (or no longer) authenticated or allowed.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum AuthError {
    /// No token in any configured source (and no webhook to ask).
    #[error("no credentials")]
    Missing,
    /// A token was found and refused.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The webhook denied the connection, not authenticated (its 401).
    #[error("the auth webhook denied the connection")]
    Denied,
    /// The webhook denied the connection as forbidden (its 403).
    #[error("the auth webhook forbade the connection")]
    DeniedForbidden,
    /// Authenticated, but not allowed to join this channel or room.
    #[error("not allowed to join this channel")]
    Forbidden,
    /// A refresh carried a token of another user.
    #[error("refresh token of another user")]
    OtherUser,
    /// A backend could not answer.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

impl AuthError {
    /// The handshake's answer: 401 for missing or refused credentials, 403
    /// for credentials without the permission, 503 when a backend failed
    /// (the client's credentials may be fine: retry later).
    pub(crate) fn status(self) -> StatusCode {
        match self {
            AuthError::Missing | AuthError::Invalid(_) | AuthError::Denied => {
                StatusCode::UNAUTHORIZED
            }
            AuthError::DeniedForbidden | AuthError::Forbidden | AuthError::OtherUser => {
                StatusCode::FORBIDDEN
            }
            AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The close code when the failure happens on an open connection (first
    /// message, refresh): a policy violation, or "try again later" when a
    /// backend failed.
    pub(crate) fn close_code(self) -> u16 {
        match self {
            AuthError::Unavailable(_) => close::TRY_AGAIN_LATER,
            _ => close::POLICY_VIOLATION,
        }
    }

    /// The metric label: one per variant and reason, never per user.
    pub(crate) fn label(self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Invalid(invalid) => invalid.label(),
            AuthError::Denied => "webhook_denied",
            AuthError::DeniedForbidden => "webhook_forbidden",
            AuthError::Forbidden => "forbidden",
            AuthError::OtherUser => "other_user",
            AuthError::Unavailable(unavailable) => unavailable.label(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn statuses_and_close_codes() {
        let cases = [
            (AuthError::Missing, 401, close::POLICY_VIOLATION),
            (
                AuthError::Invalid(Invalid::Expired),
                401,
                close::POLICY_VIOLATION,
            ),
            (AuthError::Denied, 401, close::POLICY_VIOLATION),
            (AuthError::DeniedForbidden, 403, close::POLICY_VIOLATION),
            (AuthError::Forbidden, 403, close::POLICY_VIOLATION),
            (AuthError::OtherUser, 403, close::POLICY_VIOLATION),
            (
                AuthError::Unavailable(Unavailable::WebhookTimeout),
                503,
                close::TRY_AGAIN_LATER,
            ),
            (
                AuthError::Unavailable(Unavailable::Jwks),
                503,
                close::TRY_AGAIN_LATER,
            ),
        ];
        for (error, status, code) in cases {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
            assert_eq!(error.close_code(), code, "{error:?}");
        }
    }

    #[test]
    fn labels_are_distinct() {
        let mut labels: Vec<&str> = Invalid::ALL.iter().map(|i| i.label()).collect();
        labels.extend(
            [
                Unavailable::WebhookTimeout,
                Unavailable::WebhookDown,
                Unavailable::WebhookBadAnswer,
                Unavailable::Jwks,
            ]
            .map(Unavailable::label),
        );
        labels.extend(
            [
                AuthError::Missing,
                AuthError::Denied,
                AuthError::DeniedForbidden,
                AuthError::Forbidden,
                AuthError::OtherUser,
            ]
            .map(AuthError::label),
        );
        let unique: HashSet<_> = labels.iter().collect();
        assert_eq!(unique.len(), labels.len());
    }
}
