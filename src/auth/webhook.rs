//! The connect webhook: for deployments whose login lives in a backend
//! session, the handshake's facts are POSTed to a backend that answers allow
//! (with the user, the grants and an optional expiry) or deny.
//!
//! The request body:
//!
//! ```json
//! {
//!   "channel": "chat",
//!   "room": "team-1",
//!   "path": "/chat/team-1",
//!   "origin": "https://app.example.com",
//!   "client_ip": "203.0.113.7",
//!   "headers": { "cookie": "session=...", "authorization": "Bearer ..." }
//! }
//! ```
//!
//! `room` and `origin` are `null` when absent; `path` never has the query
//! (it may carry secrets); `headers` holds the configured headers the request
//! has, lower-case names, repeated headers joined (`; ` for cookies, `, `
//! otherwise).
//!
//! The answer, status 200:
//!
//! ```json
//! { "allow": true, "user": "alice",
//!   "permissions": { "join": ["chat:team-*"], "publish": "chat:team-1" },
//!   "exp": 1767225600 }
//! { "allow": false }
//! { "allow": false, "status": 403 }
//! ```
//!
//! `permissions` and `exp` (Unix seconds) are optional: grants left out are
//! the configured absent grants, no `exp` means the connection does not
//! expire. A deny is answered 401, or 403 with `"status": 403`; the backend
//! may also answer HTTP 401 or 403 directly. Any other status, an unreadable
//! body, a timeout or a refused connection is the backend's failure: the
//! client gets 503, not 401, and it is counted apart.

use std::{
    net::IpAddr,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use hyper::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use super::{
    HandshakeFacts,
    client::{CallError, Endpoint, EndpointError},
    error::{AuthError, Invalid, Unavailable},
    permissions::{self, Grant, Identity, Permissions},
    settings::{AbsentGrants, WebhookSettings},
};

/// Largest answer read: a decision with grants is a few hundred bytes.
const MAX_ANSWER_LEN: usize = 64 * 1024;

/// Most webhook calls in flight: past this, handshakes wait (within the
/// timeout) instead of opening ever more connections to a struggling backend.
const MAX_IN_FLIGHT: usize = 256;

/// Counters of the webhook, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WebhookStats {
    /// Calls answered allow.
    pub(crate) allowed: u64,
    /// Calls answered deny.
    pub(crate) denied: u64,
    /// Calls that failed: timeout, connection, status or unreadable answer.
    pub(crate) failed: u64,
}

/// The request body.
#[derive(Serialize)]
struct Facts<'a> {
    channel: &'a str,
    room: Option<&'a str>,
    path: &'a str,
    origin: Option<&'a str>,
    client_ip: IpAddr,
    headers: Map<String, Value>,
}

/// The answer body.
#[derive(Deserialize)]
struct Answer {
    allow: bool,
    user: Option<Value>,
    permissions: Option<Map<String, Value>>,
    exp: Option<f64>,
    status: Option<u16>,
}

/// The configured webhook.
#[derive(Debug)]
pub(crate) struct Webhook {
    endpoint: Endpoint,
    timeout: Duration,
    headers: Vec<String>,
    absent: AbsentGrants,
    in_flight: Semaphore,
    allowed: AtomicU64,
    denied: AtomicU64,
    failed: AtomicU64,
}

impl Webhook {
    /// The webhook of `settings`.
    pub(crate) fn new(
        settings: &WebhookSettings,
        absent: AbsentGrants,
    ) -> Result<Webhook, EndpointError> {
        Ok(Webhook {
            endpoint: Endpoint::new(&settings.url, settings.ca_file.as_deref())?,
            timeout: settings.timeout,
            headers: settings
                .headers
                .iter()
                .map(|name| name.to_ascii_lowercase())
                .collect(),
            absent,
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
            allowed: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        })
    }

    /// The counters.
    pub(crate) fn stats(&self) -> WebhookStats {
        WebhookStats {
            allowed: self.allowed.load(Ordering::Relaxed),
            denied: self.denied.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    /// Asks the backend about one handshake.
    pub(crate) async fn ask(&self, facts: &HandshakeFacts<'_>) -> Result<Identity, AuthError> {
        let body = serde_json::to_vec(&Facts {
            channel: facts.channel,
            room: facts.room,
            path: facts.uri.path(),
            origin: facts
                .headers
                .get(header::ORIGIN)
                .and_then(|value| value.to_str().ok()),
            client_ip: facts.client_ip,
            headers: self.selected_headers(facts.headers),
        })
        .expect("the facts serialise");
        let outcome = tokio::time::timeout(self.timeout, async {
            let _permit = self
                .in_flight
                .acquire()
                .await
                .expect("the semaphore is never closed");
            self.endpoint
                .post_json(Bytes::from(body), self.timeout, MAX_ANSWER_LEN)
                .await
        })
        .await
        .unwrap_or(Err(CallError::Timeout));
        let decision = match outcome {
            Ok(response) => self.decide(response.status, &response.body, SystemTime::now()),
            Err(CallError::Timeout) => Err(Unavailable::WebhookTimeout.into()),
            Err(_) => Err(Unavailable::WebhookDown.into()),
        };
        let counter = match &decision {
            Ok(_) => &self.allowed,
            Err(AuthError::Unavailable(unavailable)) => {
                tracing::warn!(
                    url = self.endpoint.display(),
                    reason = unavailable.label(),
                    "auth webhook failed"
                );
                &self.failed
            }
            Err(_) => &self.denied,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        decision
    }

    /// The configured headers the request has.
    fn selected_headers(&self, headers: &HeaderMap) -> Map<String, Value> {
        let mut selected = Map::new();
        for name in &self.headers {
            let values: Vec<&str> = headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            if !values.is_empty() {
                let separator = if name == header::COOKIE.as_str() {
                    "; "
                } else {
                    ", "
                };
                selected.insert(name.clone(), Value::String(values.join(separator)));
            }
        }
        selected
    }

    /// The decision an answer states.
    fn decide(
        &self,
        status: StatusCode,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Identity, AuthError> {
        match status {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED => return Err(AuthError::Denied),
            StatusCode::FORBIDDEN => return Err(AuthError::DeniedForbidden),
            _ => return Err(Unavailable::WebhookDown.into()),
        }
        let bad = AuthError::Unavailable(Unavailable::WebhookBadAnswer);
        let answer: Answer = serde_json::from_slice(body).map_err(|_| bad)?;
        if !answer.allow {
            return match answer.status {
                None | Some(401) => Err(AuthError::Denied),
                Some(403) => Err(AuthError::DeniedForbidden),
                Some(_) => Err(bad),
            };
        }
        let user = permissions::user_id(answer.user.as_ref()).map_err(|_| bad)?;
        let permissions = match answer.permissions {
            Some(grants) => Permissions::from_object(&grants, "join", "publish", self.absent)
                .map_err(|_| bad)?,
            None => Permissions {
                join: Grant::from_value(None, self.absent).map_err(|_| bad)?,
                publish: Grant::from_value(None, self.absent).map_err(|_| bad)?,
            },
        };
        let expires_at = match answer.exp {
            None => None,
            Some(exp) => {
                let at = Duration::try_from_secs_f64(exp)
                    .ok()
                    .and_then(|since| UNIX_EPOCH.checked_add(since))
                    .ok_or(bad)?;
                if at <= now {
                    return Err(Invalid::Expired.into());
                }
                Some(at)
            }
        };
        Ok(Identity {
            user,
            expires_at,
            permissions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::test_support::{Backend, Reply};
    use hyper::Uri;
    use serde_json::json;

    fn webhook(url: &str, timeout: Duration) -> Webhook {
        let mut settings = WebhookSettings::new(url);
        settings.timeout = timeout;
        settings.headers.push("X-Tenant".into());
        Webhook::new(&settings, AbsentGrants::Deny).unwrap()
    }

    fn facts<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> HandshakeFacts<'a> {
        HandshakeFacts {
            channel: "chat",
            room: Some("team-1"),
            uri,
            headers,
            client_ip: "203.0.113.7".parse().unwrap(),
        }
    }

    #[test]
    fn decisions() {
        let hook = webhook("http://127.0.0.1:1/", Duration::from_secs(1));
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let allow = |answer: Value| hook.decide(StatusCode::OK, answer.to_string().as_bytes(), now);
        let alice = allow(json!({"allow": true, "user": "alice", "permissions": {"join": "chat:*"}, "exp": 2_000})).unwrap();
        assert_eq!(alice.user, "alice");
        assert_eq!(
            alice.expires_at,
            Some(UNIX_EPOCH + Duration::from_secs(2_000))
        );
        assert!(alice.permissions.join.allows("chat", Some("x")));
        assert!(
            !alice.permissions.publish.allows("chat", Some("x")),
            "absent grants deny"
        );

        let bad = AuthError::Unavailable(Unavailable::WebhookBadAnswer);
        let cases = [
            (json!({"allow": false}), AuthError::Denied),
            (
                json!({"allow": false, "status": 403}),
                AuthError::DeniedForbidden,
            ),
            (json!({"allow": false, "status": 500}), bad),
            (json!({"allow": true}), bad),
            (json!({"allow": true, "user": 7}), bad),
            (
                json!({"allow": true, "user": "a", "permissions": {"join": 1}}),
                bad,
            ),
            (
                json!({"allow": true, "user": "a", "exp": 999}),
                AuthError::Invalid(Invalid::Expired),
            ),
            (json!({"allow": "yes"}), bad),
            (json!(["allow"]), bad),
        ];
        for (answer, expected) in cases {
            assert_eq!(allow(answer.clone()).unwrap_err(), expected, "{answer}");
        }
        let status = |code| hook.decide(code, b"{}", now).unwrap_err();
        assert_eq!(status(StatusCode::UNAUTHORIZED), AuthError::Denied);
        assert_eq!(status(StatusCode::FORBIDDEN), AuthError::DeniedForbidden);
        assert_eq!(
            status(StatusCode::BAD_GATEWAY),
            Unavailable::WebhookDown.into()
        );
    }

    #[tokio::test]
    async fn allow_posts_the_facts() {
        let backend = Backend::start(|_| {
            Reply::ok(br#"{"allow": true, "user": "alice", "permissions": {"join": "*"}}"#.to_vec())
        })
        .await;
        let hook = webhook(&backend.url("/ws-auth"), Duration::from_secs(5));
        let uri: Uri = "/chat/team-1?access_token=secret".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, "a=1".parse().unwrap());
        headers.append(header::COOKIE, "b=2".parse().unwrap());
        headers.append(header::ORIGIN, "https://app.example".parse().unwrap());
        headers.append("x-tenant", "acme".parse().unwrap());
        headers.append("x-other", "not forwarded".parse().unwrap());
        let identity = hook.ask(&facts(&uri, &headers)).await.unwrap();
        assert_eq!(
            (identity.user.as_str(), identity.expires_at),
            ("alice", None)
        );

        let request = backend.last_request();
        assert_eq!(
            (request.method.as_str(), request.uri.as_str()),
            ("POST", "/ws-auth")
        );
        assert_eq!(request.headers[header::CONTENT_TYPE], "application/json");
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            body,
            json!({
                "channel": "chat", "room": "team-1", "path": "/chat/team-1",
                "origin": "https://app.example", "client_ip": "203.0.113.7",
                "headers": {"cookie": "a=1; b=2", "x-tenant": "acme"},
            })
        );
        assert_eq!(
            hook.stats(),
            WebhookStats {
                allowed: 1,
                denied: 0,
                failed: 0
            }
        );
    }

    #[tokio::test]
    async fn deny_slow_and_down_are_told_apart() {
        let deny = Backend::start(|_| Reply::ok(br#"{"allow": false}"#.to_vec())).await;
        let forbid = Backend::start(|_| Reply::status(StatusCode::FORBIDDEN, b"no".to_vec())).await;
        let failing =
            Backend::start(|_| Reply::status(StatusCode::INTERNAL_SERVER_ERROR, b"oops".to_vec()))
                .await;
        let slow = Backend::start(|_| {
            Reply::ok(br#"{"allow": true, "user": "a"}"#.to_vec()).after(Duration::from_secs(30))
        })
        .await;
        let down = Backend::closed_url("/ws-auth");
        let uri: Uri = "/chat/team-1".parse().unwrap();
        let headers = HeaderMap::new();
        let cases = [
            (deny.url("/"), AuthError::Denied, 401),
            (forbid.url("/"), AuthError::DeniedForbidden, 403),
            (failing.url("/"), Unavailable::WebhookDown.into(), 503),
            (slow.url("/"), Unavailable::WebhookTimeout.into(), 503),
            (down, Unavailable::WebhookDown.into(), 503),
        ];
        for (url, expected, status) in cases {
            let hook = webhook(&url, Duration::from_millis(300));
            let error = hook.ask(&facts(&uri, &headers)).await.unwrap_err();
            assert_eq!(
                (error, error.status().as_u16()),
                (expected, status),
                "{url}"
            );
            let stats = hook.stats();
            let failed = u64::from(status == 503);
            assert_eq!(
                stats,
                WebhookStats {
                    allowed: 0,
                    denied: 1 - failed,
                    failed
                },
                "{url}"
            );
        }
    }
}
