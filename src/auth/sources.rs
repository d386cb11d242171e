//! Where a handshake carries its token: a pure lookup over the request head
//! in the configured order. The first source present wins, valid or not (a
//! bad bearer token is not rescued by a good cookie).
//!
//! The `Sec-WebSocket-Protocol` form, for browsers, whose `WebSocket`
//! constructor can set no other header: the client offers a marker entry
//! (`bearer` by default) immediately followed by the token, and any real
//! subprotocols around them:
//!
//! ```js
//! new WebSocket("wss://edge.example.com/chat", ["chat.v1", "bearer", token]);
//! ```
//!
//! Both entries are consumed ([`Found::consumes_protocol`]): subprotocol
//! selection must skip them, so the token is never echoed back. A browser
//! fails a handshake whose answer selects none of the protocols it offered,
//! so when the channel accepts none of the other entries the server answers
//! with the marker ([`Found::protocol_marker`]).

use std::fmt;

use hyper::{HeaderMap, Uri, header};

use super::settings::{SourceKind, TokenSource};

/// A bearer token. Its `Debug` shows only the length, and it has no
/// `Display`: a token cannot end up in a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Token(String);

impl Token {
    /// Wraps a token's text.
    pub(crate) fn new(text: impl Into<String>) -> Token {
        Token(text.into())
    }

    /// The token's text, for verification only.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(<{} bytes>)", self.0.len())
    }
}

/// Where in the request head a token was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// `Authorization: Bearer`.
    Bearer,
    /// A cookie.
    Cookie,
    /// A `Sec-WebSocket-Protocol` entry.
    Protocol,
    /// A query parameter.
    Query,
}

impl Source {
    /// The metric label: the name of the source's kind.
    pub(crate) fn label(self) -> &'static str {
        let kind = match self {
            Source::Bearer => SourceKind::Bearer,
            Source::Cookie => SourceKind::Cookie,
            Source::Protocol => SourceKind::Protocol,
            Source::Query => SourceKind::Query,
        };
        kind.as_str()
    }
}

/// A token found in the request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    /// The token (possibly empty: a source present without a value).
    pub(crate) token: Token,
    /// Where it was.
    pub(crate) source: Source,
    /// For [`Source::Protocol`], the marker entry.
    marker: Option<String>,
}

impl Found {
    /// Whether subprotocol selection must skip `entry`: the marker and the
    /// token entries of the `Sec-WebSocket-Protocol` form.
    pub(crate) fn consumes_protocol(&self, entry: &str) -> bool {
        self.marker
            .as_deref()
            .is_some_and(|marker| entry == marker || entry == self.token.as_str())
    }

    /// The entry to answer as the subprotocol when the channel accepts none
    /// of the client's other entries (only for [`Source::Protocol`]).
    pub(crate) fn protocol_marker(&self) -> Option<&str> {
        self.marker.as_deref()
    }
}

/// What the lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// A token in the head.
    Found(Found),
    /// None in the head, and the first message is the next source.
    FirstMessage,
    /// None anywhere.
    Missing,
}

/// Looks for a token in `headers` and `uri` from each source in order.
pub(crate) fn find(headers: &HeaderMap, uri: &Uri, sources: &[TokenSource]) -> Lookup {
    for source in sources {
        let found = match source {
            TokenSource::Bearer => bearer(headers).map(|token| (token, Source::Bearer, None)),
            TokenSource::Cookie(name) => {
                cookie(headers, name).map(|token| (token, Source::Cookie, None))
            }
            TokenSource::Protocol(marker) => protocol(headers, marker)
                .map(|token| (token, Source::Protocol, Some(marker.clone()))),
            TokenSource::Query(name) => query(uri, name).map(|token| (token, Source::Query, None)),
            TokenSource::FirstMessage => return Lookup::FirstMessage,
        };
        if let Some((token, source, marker)) = found {
            return Lookup::Found(Found {
                token: Token::new(token),
                source,
                marker,
            });
        }
    }
    Lookup::Missing
}

/// The credentials of the first `Authorization: Bearer` header; the scheme
/// is case-insensitive (RFC 9110 section 11.1).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .find_map(|value| {
            let value = value.to_str().ok()?;
            let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| credentials.trim())
        })
}

/// The value of the first cookie named `name` (RFC 6265 section 5.4),
/// without the optional double quotes.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key.trim() == name).then(|| {
                let value = value.trim();
                value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value)
            })
        })
}

/// The `Sec-WebSocket-Protocol` entry after the first `marker` entry.
fn protocol<'h>(headers: &'h HeaderMap, marker: &str) -> Option<&'h str> {
    let mut entries = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty());
    entries.find(|entry| *entry == marker)?;
    Some(entries.next().unwrap_or(""))
}

/// The raw value of the first query parameter named `name`. Not
/// percent-decoded: a JWT never needs escaping, and a mangled one fails
/// verification.
fn query<'u>(uri: &'u Uri, name: &str) -> Option<&'u str> {
    uri.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::settings::{DEFAULT_COOKIE, DEFAULT_PROTOCOL_MARKER, DEFAULT_QUERY_PARAMETER};

    fn head(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        headers
    }

    fn all_sources() -> Vec<TokenSource> {
        let mut sources = TokenSource::defaults();
        sources.push(TokenSource::Query(DEFAULT_QUERY_PARAMETER.into()));
        sources.push(TokenSource::FirstMessage);
        sources
    }

    fn found(token: &str, source: Source) -> Lookup {
        let marker = (source == Source::Protocol).then(|| DEFAULT_PROTOCOL_MARKER.to_owned());
        Lookup::Found(Found {
            token: Token::new(token),
            source,
            marker,
        })
    }

    #[test]
    fn each_source_in_order() {
        let cookie = format!("theme=dark; {DEFAULT_COOKIE}=\"c.o.k\"; other=1");
        // Request headers, the target, and what the lookup finds.
        type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, Lookup);
        let cases: Vec<Case> = vec![
            (
                vec![("authorization", "Bearer b.e.r")],
                "/",
                found("b.e.r", Source::Bearer),
            ),
            (
                vec![("authorization", "bearer   b.e.r ")],
                "/",
                found("b.e.r", Source::Bearer),
            ),
            (
                vec![("authorization", "Bearer")],
                "/",
                found("", Source::Bearer),
            ),
            (
                vec![
                    ("authorization", "Basic dXNlcg=="),
                    ("authorization", "Bearer x.y.z"),
                ],
                "/",
                found("x.y.z", Source::Bearer),
            ),
            (
                vec![("authorization", "Basic dXNlcg==")],
                "/",
                Lookup::FirstMessage,
            ),
            (
                vec![("cookie", &cookie)],
                "/",
                found("c.o.k", Source::Cookie),
            ),
            (
                vec![("cookie", "x_access_token=no")],
                "/",
                Lookup::FirstMessage,
            ),
            (
                vec![("sec-websocket-protocol", "chat.v1, bearer, p.r.o")],
                "/",
                found("p.r.o", Source::Protocol),
            ),
            (
                vec![
                    ("sec-websocket-protocol", "bearer"),
                    ("sec-websocket-protocol", "p.r.o, chat.v1"),
                ],
                "/",
                found("p.r.o", Source::Protocol),
            ),
            (
                vec![("sec-websocket-protocol", "chat.v1, bearer")],
                "/",
                found("", Source::Protocol),
            ),
            (
                vec![("sec-websocket-protocol", "chat.v1")],
                "/",
                Lookup::FirstMessage,
            ),
            (
                vec![],
                "/chat?x=1&access_token=q.u.e",
                found("q.u.e", Source::Query),
            ),
            (vec![], "/chat?access_token", found("", Source::Query)),
            (vec![], "/chat?my_access_token=1", Lookup::FirstMessage),
            (vec![], "/chat", Lookup::FirstMessage),
            (
                vec![
                    ("authorization", "Bearer first"),
                    ("cookie", &cookie),
                    ("sec-websocket-protocol", "bearer, third"),
                ],
                "/?access_token=fourth",
                found("first", Source::Bearer),
            ),
            (
                vec![
                    ("cookie", &cookie),
                    ("sec-websocket-protocol", "bearer, third"),
                ],
                "/?access_token=fourth",
                found("c.o.k", Source::Cookie),
            ),
        ];
        for (pairs, uri, expected) in cases {
            let uri: Uri = uri.parse().unwrap();
            assert_eq!(
                find(&head(&pairs), &uri, &all_sources()),
                expected,
                "{pairs:?} {uri}"
            );
        }
    }

    #[test]
    fn only_configured_sources_are_read() {
        let headers = head(&[("authorization", "Bearer b"), ("cookie", "access_token=c")]);
        let uri: Uri = "/?access_token=q".parse().unwrap();
        assert_eq!(find(&headers, &uri, &[]), Lookup::Missing);
        let defaults = TokenSource::defaults();
        assert_eq!(
            find(&head(&[]), &uri, &defaults),
            Lookup::Missing,
            "the query is off by default"
        );
        let cookie_first = [
            TokenSource::Cookie("access_token".into()),
            TokenSource::Bearer,
        ];
        assert_eq!(
            find(&headers, &uri, &cookie_first),
            found("c", Source::Cookie)
        );
    }

    #[test]
    fn protocol_entries_consumed() {
        let headers = head(&[("sec-websocket-protocol", "chat.v1, bearer, t.o.k")]);
        let Lookup::Found(found) = find(&headers, &"/".parse().unwrap(), &TokenSource::defaults())
        else {
            panic!("no token found");
        };
        let consumed: Vec<bool> = ["chat.v1", "bearer", "t.o.k"]
            .iter()
            .map(|e| found.consumes_protocol(e))
            .collect();
        assert_eq!(consumed, [false, true, true]);
        assert_eq!(found.protocol_marker(), Some("bearer"));

        let Lookup::Found(bearer) = find(
            &head(&[("authorization", "Bearer t.o.k")]),
            &"/".parse().unwrap(),
            &TokenSource::defaults(),
        ) else {
            panic!("no token found");
        };
        assert!(!bearer.consumes_protocol("t.o.k"));
        assert_eq!(bearer.protocol_marker(), None);
    }

    #[test]
    fn tokens_do_not_print() {
        let token = Token::new("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln");
        assert_eq!(format!("{token:?}"), "Token(<41 bytes>)");
    }
}
