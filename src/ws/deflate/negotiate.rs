//! permessage-deflate negotiation (RFC 7692 sections 5-7): parse every offer
//! in `Sec-WebSocket-Extensions`, accept the first that fits the channel's
//! settings, and state the agreed parameters in the response. An offer that
//! cannot be honoured is declined (the connection goes on uncompressed),
//! never failed.

use hyper::{HeaderMap, header};

use crate::config::{Compression, CompressionMode};

/// Window bits zlib accepts for raw deflate streams.
use crate::protocol::window_bits::{MAX as MAX_WINDOW_BITS, MIN as MIN_WINDOW_BITS};

/// The parameters agreed for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Agreement {
    /// The server resets its compressor after every message.
    pub(crate) server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
    pub(crate) client_no_context_takeover: bool,
    /// The window the server compresses with.
    pub(crate) server_max_window_bits: u8,
    /// Stated in the response only when the client offered the parameter
    /// and the server limits it.
    pub(crate) client_max_window_bits: Option<u8>,
    /// Whether the response states `server_max_window_bits` (the client asked,
    /// or the server uses less than 15).
    state_server_window: bool,
}

impl Agreement {
    /// The `Sec-WebSocket-Extensions` response value.
    pub(crate) fn response(&self) -> String {
        let mut response = String::from("permessage-deflate");
        if self.server_no_context_takeover {
            response.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            response.push_str("; client_no_context_takeover");
        }
        if self.state_server_window {
            response.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        if let Some(bits) = self.client_max_window_bits {
            response.push_str(&format!("; client_max_window_bits={bits}"));
        }
        response
    }
}

/// The first acceptable permessage-deflate offer, agreed under `settings`.
pub(crate) fn negotiate(headers: &HeaderMap, settings: &Compression) -> Option<Agreement> {
    if !settings.enabled {
        return None;
    }
    let values: Vec<&str> = headers
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    split_outside_quotes(&values.join(","), ',')
        .into_iter()
        .filter_map(Offer::parse)
        .find_map(|offer| offer.accept(settings))
}

/// One permessage-deflate offer's parameters.
#[derive(Debug, Default, PartialEq, Eq)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value.
    client_max_window_bits: Option<Option<u8>>,
}

impl Offer {
    /// `None` for another extension or an offer with a duplicate, unknown or
    /// out-of-range parameter.
    fn parse(extension: &str) -> Option<Self> {
        let mut parts = split_outside_quotes(extension, ';')
            .into_iter()
            .map(str::trim);
        if !parts.next()?.eq_ignore_ascii_case("permessage-deflate") {
            return None;
        }
        let mut offer = Offer::default();
        let mut seen: Vec<String> = Vec::new();
        for param in parts {
            let (name, value) = match param.split_once('=') {
                Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
                None => (param, None),
            };
            let name = name.to_ascii_lowercase();
            if seen.contains(&name) {
                return None;
            }
            match (name.as_str(), value) {
                ("server_no_context_takeover", None) => offer.server_no_context_takeover = true,
                ("client_no_context_takeover", None) => offer.client_no_context_takeover = true,
                ("server_max_window_bits", Some(value)) => {
                    offer.server_max_window_bits = Some(window_bits(value)?)
                }
                ("client_max_window_bits", None) => offer.client_max_window_bits = Some(None),
                ("client_max_window_bits", Some(value)) => {
                    offer.client_max_window_bits = Some(Some(window_bits(value)?))
                }
                _ => return None,
            }
            seen.push(name);
        }
        Some(offer)
    }

    fn accept(&self, settings: &Compression) -> Option<Agreement> {
        let shared = settings.mode == CompressionMode::Shared;
        let server_max_window_bits = match self.server_max_window_bits {
            // zlib cannot compress with a 256-byte window: decline.
            Some(bits) if bits < MIN_WINDOW_BITS => return None,
            // A shared stream is compressed once, with the channel's window.
            Some(bits) if shared && bits < settings.server_max_window_bits => return None,
            Some(bits) => bits.min(settings.server_max_window_bits),
            None => settings.server_max_window_bits,
        };
        let client_max_window_bits = match self.client_max_window_bits {
            Some(offered) if settings.client_max_window_bits < MAX_WINDOW_BITS => {
                Some(offered.map_or(settings.client_max_window_bits, |bits| {
                    bits.min(settings.client_max_window_bits)
                }))
            }
            _ => None,
        };
        Some(Agreement {
            // Shared mode compresses each message once for everyone, so no
            // subscriber may expect the server to keep context (RFC 7692
            // section 7.1.1.1 lets the server add this).
            server_no_context_takeover: self.server_no_context_takeover
                || settings.server_no_context_takeover
                || shared,
            client_no_context_takeover: self.client_no_context_takeover
                || settings.client_no_context_takeover,
            server_max_window_bits,
            client_max_window_bits,
            state_server_window: self.server_max_window_bits.is_some()
                || server_max_window_bits < MAX_WINDOW_BITS,
        })
    }
}

fn window_bits(value: &str) -> Option<u8> {
    // RFC 7692 allows 8-15, written without leading zeros.
    if value.starts_with('0') {
        return None;
    }
    value
        .parse::<u8>()
        .ok()
        .filter(|bits| (8..=MAX_WINDOW_BITS).contains(bits))
}

/// Splits on `separator` except inside double quotes.
fn split_outside_quotes(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (index, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
        .into_iter()
        .filter(|part| !part.trim().is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    fn settings(mode: CompressionMode) -> Compression {
        Compression {
            mode,
            ..Compression::default()
        }
    }

    fn answer(offers: &[&str], settings: &Compression) -> Option<String> {
        let mut headers = HeaderMap::new();
        for offer in offers {
            headers.append(
                header::SEC_WEBSOCKET_EXTENSIONS,
                HeaderValue::from_str(offer).unwrap(),
            );
        }
        negotiate(&headers, settings).map(|agreement| agreement.response())
    }

    #[test]
    fn offers_map_to_responses() {
        let dedicated = settings(CompressionMode::Dedicated);
        let shared = settings(CompressionMode::Shared);
        let cases: Vec<(&[&str], &Compression, Option<&str>)> = vec![
            (&[], &dedicated, None),
            (&["x-webkit-deflate-frame"], &dedicated, None),
            (
                &["permessage-deflate"],
                &dedicated,
                Some("permessage-deflate"),
            ),
            (
                &["permessage-deflate; client_max_window_bits"],
                &dedicated,
                Some("permessage-deflate"),
            ),
            (
                &["permessage-deflate"],
                &shared,
                Some("permessage-deflate; server_no_context_takeover"),
            ),
            (
                &["permessage-deflate; server_no_context_takeover; client_no_context_takeover"],
                &dedicated,
                Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
            ),
            (
                &["permessage-deflate; server_max_window_bits=10"],
                &dedicated,
                Some("permessage-deflate; server_max_window_bits=10"),
            ),
            (
                &["permessage-deflate; server_max_window_bits=\"12\""],
                &dedicated,
                Some("permessage-deflate; server_max_window_bits=12"),
            ),
            // Window 8 cannot be honoured by zlib: that offer is declined, the next accepted.
            (
                &["permessage-deflate; server_max_window_bits=8, permessage-deflate"],
                &dedicated,
                Some("permessage-deflate"),
            ),
            (
                &["permessage-deflate; server_max_window_bits=8"],
                &dedicated,
                None,
            ),
            // A shared stream cannot use a smaller window for one client.
            (
                &["permessage-deflate; server_max_window_bits=10"],
                &shared,
                None,
            ),
            // Duplicate, unknown, valueless or out-of-range parameters decline the offer.
            (
                &["permessage-deflate; server_no_context_takeover; server_no_context_takeover"],
                &dedicated,
                None,
            ),
            (
                &["permessage-deflate; foo=1", "permessage-deflate"],
                &dedicated,
                Some("permessage-deflate"),
            ),
            (
                &["permessage-deflate; server_max_window_bits"],
                &dedicated,
                None,
            ),
            (
                &["permessage-deflate; client_max_window_bits=16"],
                &dedicated,
                None,
            ),
            (
                &["permessage-deflate; server_max_window_bits=010"],
                &dedicated,
                None,
            ),
            (
                &["permessage-deflate; server_no_context_takeover=1"],
                &dedicated,
                None,
            ),
            (
                &["PerMessage-Deflate; Client_Max_Window_Bits"],
                &dedicated,
                Some("permessage-deflate"),
            ),
        ];
        for (offers, settings, expected) in cases {
            assert_eq!(
                answer(offers, settings).as_deref(),
                expected,
                "{offers:?} ({:?})",
                settings.mode
            );
        }
    }

    #[test]
    fn server_limits_are_stated() {
        let limited = Compression {
            server_max_window_bits: 11,
            client_max_window_bits: 10,
            ..settings(CompressionMode::Dedicated)
        };
        assert_eq!(
            answer(&["permessage-deflate"], &limited).as_deref(),
            Some("permessage-deflate; server_max_window_bits=11")
        );
        assert_eq!(
            answer(&["permessage-deflate; client_max_window_bits"], &limited).as_deref(),
            Some("permessage-deflate; server_max_window_bits=11; client_max_window_bits=10")
        );
        assert_eq!(
            answer(
                &["permessage-deflate; client_max_window_bits=9; server_max_window_bits=13"],
                &limited
            )
            .as_deref(),
            Some("permessage-deflate; server_max_window_bits=11; client_max_window_bits=9")
        );
        let off = Compression {
            enabled: false,
            ..limited
        };
        assert_eq!(answer(&["permessage-deflate"], &off), None);
    }
}
