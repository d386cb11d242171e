//! The validated authentication settings: plain data with named defaults.
//! They name files and URLs but read none: [`super::Authenticator::new`]
//! loads the keys and checks what only the loaded material can tell (a
//! secret long enough, a PEM that holds a public key), and
//! [`super::check_files`] does the same reading for the configuration's load
//! step, so that `wsedge check` reports a bad key file at its key.
//!
//! The keywords the configuration file uses for these settings are the serde
//! names of the enums here ([`Algorithm`], [`SourceKind`], [`AbsentGrants`]).

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use crate::variants::words;

/// How long a connection using first-message authentication has to send
/// `{"type":"auth",...}`: long enough for a page to fetch a token over a
/// slow link, short enough that silent sockets do not pile up.
pub(crate) const DEFAULT_FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Clock skew tolerated on `exp`, `nbf` and `iat`: issuers and this node keep
/// time with NTP, far closer than this; a minute is what most verifiers allow.
pub(crate) const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// How often a JWKS URL is fetched again without a reason: identity
/// providers announce new keys well ahead of using them, and an unknown
/// `kid` triggers an early fetch anyway.
pub(crate) const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);

/// At most one JWKS fetch per this interval, whatever the tokens say: a flood
/// of random `kid`s costs the identity provider one request per interval.
pub(crate) const DEFAULT_JWKS_MIN_REFETCH: Duration = Duration::from_secs(30);

/// How long one JWKS fetch may take, connect to last byte.
pub(crate) const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the connect webhook may take before the handshake is answered
/// 503: a session lookup takes milliseconds, and a client is waiting.
pub(crate) const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(2);

/// The claim that names the user (RFC 7519 section 4.1.2).
pub(crate) const DEFAULT_USER_CLAIM: &str = "sub";

/// The claim listing where a token may join (see `permissions`).
pub(crate) const DEFAULT_JOIN_CLAIM: &str = "join";

/// The claim listing where a token may publish.
pub(crate) const DEFAULT_PUBLISH_CLAIM: &str = "publish";

/// The cookie a browser's token is read from.
pub(crate) const DEFAULT_COOKIE: &str = "access_token";

/// The query parameter a token is read from when that source is enabled
/// (the name RFC 6750 section 2.3 uses).
pub(crate) const DEFAULT_QUERY_PARAMETER: &str = "access_token";

/// The `Sec-WebSocket-Protocol` entry that says "the next entry is a token".
pub(crate) const DEFAULT_PROTOCOL_MARKER: &str = "bearer";

/// The request headers the webhook receives by default: those a backend
/// session lives in.
pub(crate) const DEFAULT_WEBHOOK_HEADERS: [&str; 2] = ["cookie", "authorization"];

/// Everything authentication runs with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AuthSettings {
    /// Token verification, when tokens are accepted.
    pub(crate) jwt: Option<JwtSettings>,
    /// The connect webhook, asked when no token is found.
    pub(crate) webhook: Option<WebhookSettings>,
    /// Where tokens are looked for, in order; [`TokenSource::defaults`].
    pub(crate) sources: Vec<TokenSource>,
    /// Which claims carry the user and the grants.
    pub(crate) claims: ClaimNames,
    /// What a token without a grant claim may do.
    pub(crate) absent_grants: AbsentGrants,
    /// How long first-message authentication waits for its message.
    pub(crate) first_message_timeout: Duration,
}

impl AuthSettings {
    #[cfg(test)]
    /// Settings with these verifiers, every other field its default.
    pub(crate) fn new(jwt: Option<JwtSettings>, webhook: Option<WebhookSettings>) -> Self {
        AuthSettings {
            jwt,
            webhook,
            sources: TokenSource::defaults(),
            claims: ClaimNames::default(),
            absent_grants: AbsentGrants::default(),
            first_message_timeout: DEFAULT_FIRST_MESSAGE_TIMEOUT,
        }
    }
}

/// A JWS algorithm (RFC 7518 section 3.1, RFC 8037 for EdDSA) this server
/// verifies. Which ones a deployment accepts is configured, never read from
/// the token alone.
///
/// The serde name of each variant is its `alg` header value, the one
/// spelling that [`Algorithm::name`] and the configuration file both use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum Algorithm {
    /// HMAC with SHA-256.
    #[serde(rename = "HS256")]
    Hs256,
    /// HMAC with SHA-384.
    #[serde(rename = "HS384")]
    Hs384,
    /// HMAC with SHA-512.
    #[serde(rename = "HS512")]
    Hs512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    #[serde(rename = "RS256")]
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    #[serde(rename = "RS384")]
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    #[serde(rename = "RS512")]
    Rs512,
    /// RSASSA-PSS with SHA-256 and MGF1 with SHA-256.
    #[serde(rename = "PS256")]
    Ps256,
    /// ECDSA with P-256 and SHA-256.
    #[serde(rename = "ES256")]
    Es256,
    /// ECDSA with P-384 and SHA-384.
    #[serde(rename = "ES384")]
    Es384,
    /// EdDSA with Ed25519.
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl Algorithm {
    /// Every algorithm, in declaration order, for tables and error hints.
    pub(crate) const ALL: [Algorithm; 10] = [
        Algorithm::Hs256,
        Algorithm::Hs384,
        Algorithm::Hs512,
        Algorithm::Rs256,
        Algorithm::Rs384,
        Algorithm::Rs512,
        Algorithm::Ps256,
        Algorithm::Es256,
        Algorithm::Es384,
        Algorithm::EdDsa,
    ];

    /// The `alg` header value (serde's name for the variant: the variants
    /// are listed in declaration order, without explicit discriminants).
    pub(crate) fn name(self) -> &'static str {
        words::<Self>()[self as usize]
    }

    /// The algorithm an `alg` header value names (case-sensitive, as JWS says).
    pub(crate) fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// Whether the algorithm is an HMAC, verified with a shared secret.
    pub(crate) fn is_hmac(self) -> bool {
        matches!(self, Algorithm::Hs256 | Algorithm::Hs384 | Algorithm::Hs512)
    }
}

/// Token verification.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JwtSettings {
    /// The accepted algorithms; a token naming another is refused. No default.
    pub(crate) algorithms: Vec<Algorithm>,
    /// Where the verification keys come from; all sources are used together.
    pub(crate) keys: Vec<KeySource>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`; [`DEFAULT_LEEWAY`].
    pub(crate) leeway: Duration,
    /// Accepted `iss` values; empty: not checked.
    pub(crate) issuers: Vec<String>,
    /// Accepted `aud` values (the token must name one); empty: not checked.
    pub(crate) audiences: Vec<String>,
    /// Whether a token without `exp` is refused (default): a token that never
    /// expires cannot be taken back from a connection that lives for days.
    pub(crate) require_exp: bool,
}

impl JwtSettings {
    #[cfg(test)]
    /// `algorithms` verified with `keys`, every other field its default.
    pub(crate) fn new(algorithms: Vec<Algorithm>, keys: Vec<KeySource>) -> Self {
        JwtSettings {
            algorithms,
            keys,
            leeway: DEFAULT_LEEWAY,
            issuers: Vec::new(),
            audiences: Vec::new(),
            require_exp: true,
        }
    }
}

/// Where verification keys come from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum KeySource {
    /// A file of secret bytes for the HS* algorithms; one trailing line
    /// ending (`\n` or `\r\n`) is not part of the secret.
    Secret(PathBuf),
    /// A PEM file of one or more public keys (`-----BEGIN PUBLIC KEY-----`,
    /// SubjectPublicKeyInfo): RSA, P-256, P-384 or Ed25519.
    PemFile(PathBuf),
    /// A JWKS document (RFC 7517 section 5) in a file.
    JwksFile(PathBuf),
    /// A JWKS document fetched over HTTPS (or HTTP on loopback) and cached.
    JwksUrl(JwksUrlSettings),
}

/// A JWKS endpoint.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JwksUrlSettings {
    /// `https://...`, or `http://` to a loopback address.
    pub(crate) url: String,
    /// How often it is fetched without a reason; [`DEFAULT_JWKS_REFRESH`].
    pub(crate) refresh: Duration,
    /// At most one fetch per this interval; [`DEFAULT_JWKS_MIN_REFETCH`].
    pub(crate) min_refetch: Duration,
    /// One fetch's deadline; [`DEFAULT_JWKS_TIMEOUT`].
    pub(crate) timeout: Duration,
    /// PEM CA certificates to trust instead of the system's store.
    pub(crate) ca_file: Option<PathBuf>,
}

impl JwksUrlSettings {
    #[cfg(test)]
    /// `url` with the default intervals and the system's trust store.
    pub(crate) fn new(url: impl Into<String>) -> Self {
        JwksUrlSettings {
            url: url.into(),
            refresh: DEFAULT_JWKS_REFRESH,
            min_refetch: DEFAULT_JWKS_MIN_REFETCH,
            timeout: DEFAULT_JWKS_TIMEOUT,
            ca_file: None,
        }
    }
}

/// The connect webhook.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WebhookSettings {
    /// `https://...`, or `http://` to a loopback address: the request carries
    /// the client's cookies and credentials.
    pub(crate) url: String,
    /// The whole call's deadline; [`DEFAULT_WEBHOOK_TIMEOUT`].
    pub(crate) timeout: Duration,
    /// Request headers passed on (lower case); [`DEFAULT_WEBHOOK_HEADERS`].
    pub(crate) headers: Vec<String>,
    /// PEM CA certificates to trust instead of the system's store.
    pub(crate) ca_file: Option<PathBuf>,
}

impl WebhookSettings {
    #[cfg(test)]
    /// `url` with the default timeout and headers.
    pub(crate) fn new(url: impl Into<String>) -> Self {
        WebhookSettings {
            url: url.into(),
            timeout: DEFAULT_WEBHOOK_TIMEOUT,
            headers: DEFAULT_WEBHOOK_HEADERS.map(String::from).to_vec(),
            ca_file: None,
        }
    }
}

/// Where a token is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenSource {
    /// `Authorization: Bearer <token>`: native clients and servers.
    Bearer,
    /// A cookie of this name: browsers (an HttpOnly cookie works).
    Cookie(String),
    /// The `Sec-WebSocket-Protocol` entry after this marker entry: the one
    /// header a browser's `WebSocket` constructor can set.
    Protocol(String),
    /// A query parameter of this name. Off by default: URLs end up in proxy
    /// logs and browser history.
    Query(String),
    /// The first message, `{"type":"auth","token":"..."}`. Must be the last
    /// source: nothing is looked for after it.
    FirstMessage,
}

impl TokenSource {
    /// Bearer, then the [`DEFAULT_COOKIE`], then the [`DEFAULT_PROTOCOL_MARKER`]
    /// entry: every source that keeps the token out of URLs and needs no
    /// change to the message protocol.
    pub(crate) fn defaults() -> Vec<TokenSource> {
        vec![
            TokenSource::Bearer,
            TokenSource::Cookie(DEFAULT_COOKIE.into()),
            TokenSource::Protocol(DEFAULT_PROTOCOL_MARKER.into()),
        ]
    }

    /// Which kind of source this is.
    pub(crate) fn kind(&self) -> SourceKind {
        match self {
            TokenSource::Bearer => SourceKind::Bearer,
            TokenSource::Cookie(_) => SourceKind::Cookie,
            TokenSource::Protocol(_) => SourceKind::Protocol,
            TokenSource::Query(_) => SourceKind::Query,
            TokenSource::FirstMessage => SourceKind::FirstMessage,
        }
    }

    /// The label of the source in logs and metrics.
    pub(crate) fn label(&self) -> &'static str {
        self.kind().as_str()
    }
}

/// The kinds of [`TokenSource`], named as in the configuration's `sources`
/// list, in logs and in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SourceKind {
    /// [`TokenSource::Bearer`].
    Bearer,
    /// [`TokenSource::Cookie`].
    Cookie,
    /// [`TokenSource::Protocol`].
    Protocol,
    /// [`TokenSource::Query`].
    Query,
    /// [`TokenSource::FirstMessage`].
    FirstMessage,
}

impl SourceKind {
    /// The word for the kind (serde's name for the variant: the variants are
    /// listed in declaration order, without explicit discriminants).
    pub(crate) fn as_str(self) -> &'static str {
        words::<Self>()[self as usize]
    }
}

/// Which claims carry the user and the grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimNames {
    /// The user id; [`DEFAULT_USER_CLAIM`].
    pub(crate) user: String,
    /// Where the token may join; [`DEFAULT_JOIN_CLAIM`].
    pub(crate) join: String,
    /// Where the token may publish; [`DEFAULT_PUBLISH_CLAIM`].
    pub(crate) publish: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        ClaimNames {
            user: DEFAULT_USER_CLAIM.into(),
            join: DEFAULT_JOIN_CLAIM.into(),
            publish: DEFAULT_PUBLISH_CLAIM.into(),
        }
    }
}

/// What a token (or webhook answer) without a `join` or `publish` grant may
/// do there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AbsentGrants {
    /// Nothing (default): a channel is never opened by a claim left out.
    #[default]
    Deny,
    /// Everything: authentication proves who, channels decide the rest.
    AllowAll,
}
