//! The `Origin` allow-list of a channel: parsing the configured entries and
//! matching the header a browser sends.
//!
//! Entries are exact origins (`https://example.com`, `http://localhost:3000`),
//! subdomain wildcards (`https://*.example.com`, which matches
//! `https://a.example.com` but not `https://example.com`), or `"*"`.

use std::fmt;

/// Who may open a connection, judged by the `Origin` request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPolicy {
    /// Every origin, and requests without one.
    Any,
    /// Only the listed origins.
    Only {
        /// The allowed origins.
        patterns: Vec<OriginPattern>,
        /// Whether a request without an `Origin` header (a non-browser
        /// client) is allowed.
        allow_missing: bool,
    },
}

impl OriginPolicy {
    /// Whether a request with this `Origin` header value (or none) may connect.
    pub fn allows(&self, origin: Option<&[u8]>) -> bool {
        match (self, origin) {
            (Self::Any, _) => true,
            (Self::Only { allow_missing, .. }, None) => *allow_missing,
            (Self::Only { patterns, .. }, Some(origin)) => {
                let Some(origin) = std::str::from_utf8(origin)
                    .ok()
                    .and_then(|o| Origin::parse(o).ok())
                else {
                    return false;
                };
                patterns.iter().any(|pattern| pattern.matches(&origin))
            }
        }
    }
}

/// One allowed origin, possibly with a subdomain wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    origin: Origin,
    subdomains: bool,
}

impl OriginPattern {
    /// Parses a configured entry such as `https://*.example.com`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (origin, subdomains) = match text.split_once("://*.") {
            Some((scheme, rest)) => (Origin::parse(&format!("{scheme}://{rest}"))?, true),
            None => (Origin::parse(text)?, false),
        };
        Ok(Self { origin, subdomains })
    }

    fn matches(&self, origin: &Origin) -> bool {
        if self.origin.scheme != origin.scheme || self.origin.port != origin.port {
            return false;
        }
        if self.subdomains {
            origin
                .host
                .strip_suffix(self.origin.host.as_str())
                .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.'))
        } else {
            self.origin.host == origin.host
        }
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Origin { scheme, host, port } = &self.origin;
        let wildcard = if self.subdomains { "*." } else { "" };
        write!(f, "{scheme}://{wildcard}{host}")?;
        if Some(*port) != default_port(scheme) {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// A serialized origin (RFC 6454): scheme, host and port, lowercased, with
/// the scheme's default port filled in so that `https://a` equals `https://a:443`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    fn parse(text: &str) -> Result<Self, String> {
        let hint = "write scheme://host[:port] such as \"https://example.com\", \"https://*.example.com\" or \"http://localhost:3000\", or \"*\" for any origin";
        let (scheme, authority) = text
            .split_once("://")
            .ok_or_else(|| format!("origin {text:?} has no scheme; {hint}"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return Err(format!("origin {text:?} has an invalid scheme; {hint}"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| format!("origin {text:?} has an invalid port; {hint}"))?;
                (host, Some(port))
            }
            _ => (authority, None),
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
            && !host.starts_with('.')
            && !host.ends_with('.');
        if !host_ok {
            return Err(format!(
                "origin {text:?} has an invalid host (no path, query or user info allowed); {hint}"
            ));
        }
        let port = port.or_else(|| default_port(&scheme)).ok_or_else(|| {
            format!("origin {text:?} needs a port: {scheme:?} has no default; {hint}")
        })?;
        Ok(Self {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(entries: &[&str], allow_missing: bool) -> OriginPolicy {
        let patterns = entries
            .iter()
            .map(|e| OriginPattern::parse(e).unwrap())
            .collect();
        OriginPolicy::Only {
            patterns,
            allow_missing,
        }
    }

    #[test]
    fn matches_exact_wildcard_and_default_ports() {
        let policy = only(
            &[
                "https://example.com",
                "https://*.example.org",
                "http://localhost:3000",
            ],
            false,
        );
        let cases: [(Option<&str>, bool); 12] = [
            (Some("https://example.com"), true),
            (Some("https://EXAMPLE.com:443"), true),
            (Some("http://example.com"), false),
            (Some("https://example.com:8443"), false),
            (Some("https://evil-example.com"), false),
            (Some("https://a.example.org"), true),
            (Some("https://a.b.example.org"), true),
            (Some("https://example.org"), false),
            (Some("https://aexample.org"), false),
            (Some("http://localhost:3000"), true),
            (Some("null"), false),
            (None, false),
        ];
        for (origin, expected) in cases {
            assert_eq!(
                policy.allows(origin.map(str::as_bytes)),
                expected,
                "{origin:?}"
            );
        }
    }

    #[test]
    fn any_and_missing() {
        assert!(OriginPolicy::Any.allows(None));
        assert!(OriginPolicy::Any.allows(Some(b"null")));
        assert!(only(&["https://example.com"], true).allows(None));
    }

    #[test]
    fn rejects_malformed_entries() {
        for text in [
            "example.com",
            "https://",
            "https://example.com/path",
            "https://example.com:99999",
            "https://user@example.com",
            "ftp://example.com",
            "https://.example.com",
        ] {
            assert!(
                OriginPattern::parse(text).is_err(),
                "{text} should be rejected"
            );
        }
    }

    #[test]
    fn displays_in_the_configured_form() {
        for text in [
            "https://example.com",
            "https://*.example.com",
            "http://localhost:3000",
        ] {
            assert_eq!(OriginPattern::parse(text).unwrap().to_string(), text);
        }
    }
}
