//! The dashboard page: `GET /` and its script and style sheet, plain files
//! embedded in the binary (no build step, nothing fetched from elsewhere,
//! so it works on an offline machine).
//!
//! The page itself holds no data and needs no token: it shows a login form,
//! keeps the token the operator types in `sessionStorage` (gone with the
//! tab), and sends it as `Authorization: Bearer` to the live feed
//! (`/events`, read with a streaming `fetch`, so the token never goes into
//! a URL) and to the publish and disconnect APIs. A refused token brings
//! the login form back and clears what was shown.
//!
//! Answers carry a Content-Security-Policy that allows only these files:
//! no inline script, no other origin, no framing.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Response,
    header::{self, HeaderName, HeaderValue},
};

use super::{Reply, method_not_allowed};

/// The page, its script and its style sheet, by path.
const ASSETS: [(&str, &str, &str); 3] = [
    ("/", "text/html; charset=utf-8", include_str!("index.html")),
    (
        "/dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard.js"),
    ),
    (
        "/dashboard.css",
        "text/css; charset=utf-8",
        include_str!("dashboard.css"),
    ),
];

/// Only our own files and our own API; the `data:` image is the empty
/// favicon, so that browsers do not ask for `/favicon.ico`.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The dashboard file at `path`; `None` for other paths.
pub(super) fn asset(method: &Method, path: &str) -> Option<Reply> {
    let (_, content_type, body) = ASSETS.iter().find(|(asset, _, _)| *asset == path)?;
    if !matches!(*method, Method::GET | Method::HEAD) {
        return Some(method_not_allowed("GET, HEAD"));
    }
    let mut answer = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let headers = answer.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, *content_type),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        // The files change with the binary; revalidating costs nothing on
        // a loopback listener.
        (header::CACHE_CONTROL, "no-cache"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    Some(answer)
}
