//! The client address named by `X-Forwarded-For`, believed only when the
//! peer is a trusted proxy.
//!
//! Each proxy appends the address it received the request from, so the
//! trustworthy answer is the rightmost entry that is not itself a trusted
//! proxy; everything left of it may be forged by the client.

use std::net::IpAddr;

use hyper::{HeaderMap, header::HeaderName};

use crate::config::Cidr;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The rightmost untrusted address in `X-Forwarded-For` (all headers, in
/// order), or `None` if there is none or an entry is not an IP address.
pub(crate) fn forwarded_client(headers: &HeaderMap, trusted: &[Cidr]) -> Option<IpAddr> {
    let entries: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    for entry in entries.iter().rev() {
        let addr = parse_entry(entry)?;
        if !trusted.iter().any(|cidr| cidr.contains(addr)) {
            return Some(addr);
        }
    }
    None
}

/// An address as proxies write it: bare, `[v6]`, or with a port.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(addr) = entry.parse() {
        return Some(addr);
    }
    if let Ok(socket) = entry.parse::<std::net::SocketAddr>() {
        return Some(socket.ip());
    }
    entry.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    #[test]
    fn takes_the_rightmost_untrusted_address() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let cases: [(&[&str], Option<&str>); 7] = [
            (&["203.0.113.9"], Some("203.0.113.9")),
            (&["6.6.6.6, 203.0.113.9, 10.0.0.2"], Some("203.0.113.9")),
            (&["6.6.6.6", "203.0.113.9, 10.1.1.1"], Some("203.0.113.9")),
            (&["10.0.0.1, 10.0.0.2"], None),
            (&["garbage, 10.0.0.2"], None),
            (&["[2001:db8::1]:443"], Some("2001:db8::1")),
            (&[], None),
        ];
        for (values, expected) in cases {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(&X_FORWARDED_FOR, HeaderValue::from_str(value).unwrap());
            }
            assert_eq!(
                forwarded_client(&headers, &trusted),
                expected.map(|e| e.parse().unwrap()),
                "{values:?}"
            );
        }
    }
}
