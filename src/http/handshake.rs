//! The HTTP side of admission: what a request must look like to be upgraded,
//! and subprotocol selection.
//!
//! Pure functions over headers, tested with tables; admission applies them
//! in order.

use hyper::{
    HeaderMap, Method, Version,
    header::{self, HeaderName, HeaderValue},
};

use super::rejection::BadUpgrade;

/// Checks that a request on a channel path is a well-formed WebSocket
/// upgrade (RFC 6455 section 4.2.1) without a body.
pub(crate) fn check_upgrade(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Result<(), BadUpgrade> {
    if method != Method::GET {
        return Err(BadUpgrade::Method);
    }
    if !has_token(headers, &header::UPGRADE, "websocket") {
        return Err(BadUpgrade::NotWebSocket);
    }
    if version != Version::HTTP_11 {
        return Err(BadUpgrade::Version);
    }
    if !has_token(headers, &header::CONNECTION, "upgrade") {
        return Err(BadUpgrade::Connection);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(BadUpgrade::WebSocketVersion);
    }
    if !headers
        .get(header::SEC_WEBSOCKET_KEY)
        .is_some_and(|key| is_valid_key(key.as_bytes()))
    {
        return Err(BadUpgrade::Key);
    }
    if has_body(headers) {
        return Err(BadUpgrade::Body);
    }
    Ok(())
}

/// Whether the request announces a body: any `Transfer-Encoding`, or a
/// `Content-Length` other than 0. After the 101 its bytes would be read as
/// WebSocket frames or dropped, depending on how the packets fell.
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|length| length.as_bytes().trim_ascii() != b"0")
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
    select_subprotocol_except(headers, accepted, |_| false)
}

/// The same, skipping the offered entries `skip` names (a token sent as a
/// subprotocol entry is never selected).
pub(crate) fn select_subprotocol_except<'a>(
    headers: &HeaderMap,
    accepted: &'a [String],
    skip: impl Fn(&str) -> bool,
) -> Option<&'a str> {
    comma_separated(headers, &header::SEC_WEBSOCKET_PROTOCOL)
        .filter(|offered| !skip(offered))
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
        type Case<'a> = (Method, Version, Vec<(&'a str, &'a str)>, Option<BadUpgrade>);
        let cases: Vec<Case> = vec![
            (Method::GET, Version::HTTP_11, good.to_vec(), None),
            (
                Method::POST,
                Version::HTTP_11,
                good.to_vec(),
                Some(BadUpgrade::Method),
            ),
            (
                Method::GET,
                Version::HTTP_11,
                vec![],
                Some(BadUpgrade::NotWebSocket),
            ),
            (
                Method::GET,
                Version::HTTP_11,
                vec![("upgrade", "h2c")],
                Some(BadUpgrade::NotWebSocket),
            ),
            (
                Method::GET,
                Version::HTTP_10,
                good.to_vec(),
                Some(BadUpgrade::Version),
            ),
            (
                Method::GET,
                Version::HTTP_11,
                vec![good[0], good[2], good[3]],
                Some(BadUpgrade::Connection),
            ),
            (
                Method::GET,
                Version::HTTP_11,
                vec![good[0], good[1], ("sec-websocket-version", "8"), good[3]],
                Some(BadUpgrade::WebSocketVersion),
            ),
            (
                Method::GET,
                Version::HTTP_11,
                vec![good[0], good[1], good[2]],
                Some(BadUpgrade::Key),
            ),
            (
                Method::GET,
                Version::HTTP_11,
                vec![good[0], good[1], good[2], ("sec-websocket-key", "short")],
                Some(BadUpgrade::Key),
            ),
            (
                Method::GET,
                Version::HTTP_11,
                [&good[..], &[("content-length", "0")]].concat(),
                None,
            ),
            (
                Method::GET,
                Version::HTTP_11,
                [&good[..], &[("content-length", "5")]].concat(),
                Some(BadUpgrade::Body),
            ),
            (
                Method::GET,
                Version::HTTP_11,
                [&good[..], &[("transfer-encoding", "chunked")]].concat(),
                Some(BadUpgrade::Body),
            ),
        ];
        for (method, version, pairs, expected) in cases {
            let result = check_upgrade(&method, version, &headers(&pairs));
            assert_eq!(result.err(), expected, "{method} {version:?} {pairs:?}");
        }
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
