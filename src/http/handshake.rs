//! The HTTP side of admission: what a request must look like to be upgraded,
//! the answers to those that do not, and subprotocol selection.
//!
//! Pure functions over headers, tested with tables; the service in the parent
//! module applies them in order.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    HeaderMap, Method, Response, StatusCode, Version,
    header::{self, HeaderName, HeaderValue},
};

/// A refused request: status, a short plain-text reason, and at most one
/// header the client needs to do better.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub(crate) status: StatusCode,
    pub(crate) reason: &'static str,
    pub(crate) header: Option<(HeaderName, HeaderValue)>,
}

impl Rejection {
    pub(crate) const fn new(status: StatusCode, reason: &'static str) -> Self {
        Self {
            status,
            reason,
            header: None,
        }
    }

    pub(crate) fn with_header(self, name: HeaderName, value: HeaderValue) -> Self {
        Self {
            header: Some((name, value)),
            ..self
        }
    }

    pub(crate) fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(format!("{}\n", self.reason))));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        // One request per connection: a refused client reconnects afresh.
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        if let Some((name, value)) = self.header {
            headers.insert(name, value);
        }
        response
    }
}

/// Checks that a request on a channel path is a well-formed WebSocket
/// upgrade (RFC 6455 section 4.2.1).
pub(crate) fn check_upgrade(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Result<(), Rejection> {
    if method != Method::GET {
        return Err(Rejection::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET can open a WebSocket",
        )
        .with_header(header::ALLOW, HeaderValue::from_static("GET")));
    }
    if !has_token(headers, &header::UPGRADE, "websocket") {
        return Err(Rejection::new(
            StatusCode::UPGRADE_REQUIRED,
            "this path serves WebSocket connections only",
        )
        .with_header(header::UPGRADE, HeaderValue::from_static("websocket")));
    }
    if version != Version::HTTP_11 {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade needs HTTP/1.1",
        ));
    }
    if !has_token(headers, &header::CONNECTION, "upgrade") {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "the Connection header must include Upgrade",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "unsupported Sec-WebSocket-Version; this server speaks version 13",
        )
        .with_header(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        ));
    }
    if !headers
        .get(header::SEC_WEBSOCKET_KEY)
        .is_some_and(|key| is_valid_key(key.as_bytes()))
    {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "missing or malformed Sec-WebSocket-Key",
        ));
    }
    Ok(())
}

/// A key is the base64 encoding of 16 bytes: 22 characters and "==".
fn is_valid_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

/// Whether a comma-separated header (possibly repeated) contains `token`,
/// compared case-insensitively.
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    comma_separated(headers, name).any(|value| value.eq_ignore_ascii_case(token))
}

fn comma_separated<'h>(headers: &'h HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'h str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|value| !value.is_empty())
}

/// The first subprotocol the client offers that the channel accepts.
pub(crate) fn select_subprotocol<'a>(
    headers: &HeaderMap,
    accepted: &'a [String],
) -> Option<&'a str> {
    comma_separated(headers, &header::SEC_WEBSOCKET_PROTOCOL)
        .find_map(|offered| accepted.iter().find(|name| *name == offered))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn upgrade_checks_in_order() {
        let good = [
            ("upgrade", "websocket"),
            ("connection", "keep-alive, Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", KEY),
        ];
        type Case<'a> = (Method, Version, Vec<(&'a str, &'a str)>, Option<StatusCode>);
        let cases: Vec<Case> = vec![
            (Method::GET, Version::HTTP_11, good.to_vec(), None),
            (
                Method::POST,
                Version::HTTP_11,
                good.to_vec(),
                Some(StatusCode::METHOD_NOT_ALLOWED),
            ),
            (
                Method::GET,
                Version::HTTP_11,
                vec![],
                Some(StatusCode::UPGRADE_REQUIRED),
            ),
            (
                Method::GET,
                Version::HTTP_11,
                vec![("upgrade", "h2c")],
                Some(StatusCode::UPGRADE_REQUIRED),
            ),
            (
                Method::GET,
                Version::HTTP_10,
                good.to_vec(),
                Some(StatusCode::BAD_REQUEST),
            ),
            (
                Method::GET,
                Version::HTTP_11,
                vec![good[0], good[2], good[3]],
                Some(StatusCode::BAD_REQUEST),
            ),
            (
                Method::GET,
                Version::HTTP_11,
                vec![good[0], good[1], ("sec-websocket-version", "8"), good[3]],
                Some(StatusCode::BAD_REQUEST),
            ),
            (
                Method::GET,
                Version::HTTP_11,
                vec![good[0], good[1], good[2]],
                Some(StatusCode::BAD_REQUEST),
            ),
            (
                Method::GET,
                Version::HTTP_11,
                vec![good[0], good[1], good[2], ("sec-websocket-key", "short")],
                Some(StatusCode::BAD_REQUEST),
            ),
        ];
        for (method, version, pairs, expected) in cases {
            let result = check_upgrade(&method, version, &headers(&pairs));
            assert_eq!(
                result.err().map(|r| r.status),
                expected,
                "{method} {version:?} {pairs:?}"
            );
        }
    }

    #[test]
    fn version_mismatch_names_the_supported_version() {
        let pairs = [
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
            ("sec-websocket-version", "8"),
            ("sec-websocket-key", KEY),
        ];
        let rejection =
            check_upgrade(&Method::GET, Version::HTTP_11, &headers(&pairs)).unwrap_err();
        assert_eq!(
            rejection.header,
            Some((
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13")
            ))
        );
    }

    #[test]
    fn subprotocol_is_the_clients_first_accepted_choice() {
        let accepted = vec!["v2".to_owned(), "v1".to_owned()];
        let cases = [
            (vec![("sec-websocket-protocol", "v1, v2")], Some("v1")),
            (
                vec![
                    ("sec-websocket-protocol", "x"),
                    ("sec-websocket-protocol", "v2"),
                ],
                Some("v2"),
            ),
            (vec![("sec-websocket-protocol", "x, y")], None),
            (vec![], None),
        ];
        for (pairs, expected) in cases {
            assert_eq!(
                select_subprotocol(&headers(&pairs), &accepted),
                expected,
                "{pairs:?}"
            );
        }
    }
}
