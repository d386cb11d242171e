//! Who a connection belongs to: token verification (JWT with keys from
//! secrets, PEM files, JWKS files and JWKS URLs), the connect webhook, where
//! a handshake carries its token, the in-band `auth` and `refresh` messages,
//! and the grants that say where an identity may join and publish.
//!
//! Admission calls [`Authenticator::authenticate`] with the handshake's
//! [`HandshakeFacts`]. The configured token sources are read in order
//! ([`sources`]); a token found is verified ([`jwt`]), and when none is
//! found the webhook is asked ([`webhook`]) or, if the first message is a
//! source, the connection authenticates in band ([`messages`]). The answer is
//! an [`Identity`] (user, expiry, grants) or an [`AuthError`] from which the
//! status (401, 403, 503), the close code and the metric label derive.
//!
//! What this module decides and what it leaves to its caller: it verifies
//! credentials and states grants; the caller checks the grants against the
//! channel ([`Identity::may_join`]), closes a connection when its identity
//! expires, and keeps the token out of the subprotocol it selects
//! ([`sources::Found::consumes_protocol`]). Tokens are never logged: they
//! travel as [`sources::Token`], whose `Debug` shows only a length.

mod client;
mod der;
pub(crate) mod error;
mod jwks;
mod jwt;
mod keys;
pub(crate) mod messages;
pub(crate) mod permissions;
pub(crate) mod settings;
pub(crate) mod sources;
mod webhook;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

use std::{fs, io, net::IpAddr, path::PathBuf, sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hyper::{HeaderMap, Uri};
use thiserror::Error;

pub(crate) use self::{
    client::{EndpointError, Scheme, check_url},
    error::{AuthError, Invalid},
    jwks::JwksStats,
    keys::KeyError,
    permissions::Identity,
    settings::{Algorithm, AuthSettings, JwtSettings, KeySource, TokenSource},
    sources::{Found, Token},
    webhook::WebhookStats,
};
use self::{
    jwks::JwksCache,
    jwt::Verifier,
    keys::{Key, KeySet},
    sources::Lookup,
    webhook::Webhook,
};

/// Decodes base64url without padding (RFC 7515 section 2), rejecting
/// non-canonical trailing bits.
fn base64url(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    URL_SAFE_NO_PAD.decode(text)
}

/// What admission knows about a handshake. No `Debug`: the headers hold
/// credentials.
#[derive(Clone, Copy)]
pub(crate) struct HandshakeFacts<'a> {
    /// The channel's name.
    pub(crate) channel: &'a str,
    /// The room, on a room channel.
    pub(crate) room: Option<&'a str>,
    /// The request target (the query is read only by the query source).
    pub(crate) uri: &'a Uri,
    /// The request headers.
    pub(crate) headers: &'a HeaderMap,
    /// The client's address (after PROXY and forwarded handling).
    pub(crate) client_ip: IpAddr,
}

/// How a handshake authenticated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Authenticated now.
    Identified {
        /// Who.
        identity: Identity,
        /// By what.
        via: Via,
    },
    /// No credentials in the handshake, and the first message is a token
    /// source: upgrade, then wait [`Authenticator::first_message_timeout`]
    /// for `{"type":"auth",...}`.
    FirstMessage,
}

/// What authenticated a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Via {
    /// A token in the request head.
    Token(Found),
    /// The connect webhook.
    Webhook,
}

impl Via {
    /// The metric label.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Via::Token(found) => found.source.label(),
            Via::Webhook => "webhook",
        }
    }
}

/// Why settings cannot be used: configuration errors, each naming the fix.
#[derive(Debug, Error)]
pub(crate) enum SetupError {
    /// Neither JWT nor a webhook is configured.
    #[error("auth needs a verifier: configure JWT keys or a webhook")]
    NoVerifier,
    /// JWT without algorithms.
    #[error("no JWT algorithm accepted; name the ones your issuer signs with, such as [\"RS256\"]")]
    NoAlgorithms,
    /// An HS* algorithm without a secret, or a secret without one.
    #[error("{0}")]
    Secret(&'static str),
    /// A secret shorter than its algorithm's hash.
    #[error("the secret is {len} bytes; {alg} needs at least {min} (RFC 7518 section 3.2)")]
    SecretTooShort {
        /// The algorithm.
        alg: &'static str,
        /// The secret's length.
        len: usize,
        /// The least length.
        min: usize,
    },
    /// An asymmetric algorithm that no configured key verifies.
    #[error(
        "{0} is accepted but none of the public keys (PEM files, JWKS file) verifies {0} tokens, and no JWKS URL may bring one that does; add its public key, or stop accepting {0}"
    )]
    NoPublicKeys(&'static str),
    /// A PEM key that no accepted algorithm verifies with.
    #[error(
        "{path}: none of the accepted algorithms verifies with its {family} key; accept one that does, or remove the key"
    )]
    UnusedKey {
        /// The file.
        path: PathBuf,
        /// The key's family.
        family: &'static str,
    },
    /// A key file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// A key file holds no usable key.
    #[error("{path}: {error}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        error: KeyError,
    },
    /// A URL that cannot be used.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The token sources are not a usable order.
    #[error("token sources: {0}")]
    Sources(&'static str),
    /// A JWKS URL is configured outside a Tokio runtime.
    #[error("a JWKS URL needs a Tokio runtime to refresh it in")]
    NoRuntime,
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AuthStats {
    /// All JWKS URLs, summed.
    pub(crate) jwks: JwksStats,
    /// The webhook (zero when none).
    pub(crate) webhook: WebhookStats,
}

/// Authentication as configured: cheap to clone and share (one `Arc`).
#[derive(Debug, Clone)]
pub(crate) struct Authenticator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    jwt: Option<Verifier>,
    webhook: Option<Webhook>,
    sources: Vec<TokenSource>,
    first_message_timeout: Duration,
}

impl Authenticator {
    /// Loads the keys of `settings` and checks what the loaded material can
    /// tell. Starts a refresh task per JWKS URL (which then needs a Tokio
    /// runtime); the tasks end when the authenticator is dropped.
    pub(crate) fn new(settings: &AuthSettings) -> Result<Authenticator, SetupError> {
        check_sources(settings)?;
        if settings.jwt.is_none() && settings.webhook.is_none() {
            return Err(SetupError::NoVerifier);
        }
        let jwt = settings
            .jwt
            .as_ref()
            .map(|jwt| verifier(settings, jwt))
            .transpose()?;
        let webhook = settings
            .webhook
            .as_ref()
            .map(|webhook| Webhook::new(webhook, settings.absent_grants))
            .transpose()?;
        Ok(Authenticator {
            inner: Arc::new(Inner {
                jwt,
                webhook,
                sources: settings.sources.clone(),
                first_message_timeout: settings.first_message_timeout,
            }),
        })
    }

    /// Authenticates a handshake: a token from the configured sources,
    /// else the webhook, else in band if the first message is a source.
    pub(crate) async fn authenticate(
        &self,
        facts: &HandshakeFacts<'_>,
    ) -> Result<Outcome, AuthError> {
        let lookup = match self.inner.jwt {
            Some(_) => sources::find(facts.headers, facts.uri, &self.inner.sources),
            None => Lookup::Missing,
        };
        match lookup {
            Lookup::Found(found) => {
                let identity = self.verify(&found.token).await?;
                Ok(Outcome::Identified {
                    identity,
                    via: Via::Token(found),
                })
            }
            _ if self.inner.webhook.is_some() => {
                let webhook = self.inner.webhook.as_ref().expect("checked just above");
                let identity = webhook.ask(facts).await?;
                Ok(Outcome::Identified {
                    identity,
                    via: Via::Webhook,
                })
            }
            Lookup::FirstMessage => Ok(Outcome::FirstMessage),
            Lookup::Missing => Err(AuthError::Missing),
        }
    }

    /// Verifies a token (from the head, or an in-band `auth` message).
    pub(crate) async fn verify(&self, token: &Token) -> Result<Identity, AuthError> {
        match &self.inner.jwt {
            Some(verifier) => verifier.verify(token).await,
            None => Err(Invalid::AlgorithmNotAllowed.into()),
        }
    }

    /// Verifies an in-band `refresh`: a valid token for the same user
    /// replaces `current` (and with it the expiry and the grants).
    pub(crate) async fn refresh(
        &self,
        current: &Identity,
        token: &Token,
    ) -> Result<Identity, AuthError> {
        let fresh = self.verify(token).await?;
        if fresh.user != current.user {
            return Err(AuthError::OtherUser);
        }
        Ok(fresh)
    }

    /// How long in-band authentication waits for its `auth` message.
    pub(crate) fn first_message_timeout(&self) -> Duration {
        self.inner.first_message_timeout
    }

    /// The counters.
    pub(crate) fn stats(&self) -> AuthStats {
        let mut jwks = JwksStats::default();
        for cache in self.inner.jwt.iter().flat_map(Verifier::remote) {
            let one = cache.stats();
            jwks.fetches += one.fetches;
            jwks.failures += one.failures;
            jwks.rate_limited += one.rate_limited;
            jwks.keys += one.keys;
        }
        let webhook = self
            .inner
            .webhook
            .as_ref()
            .map(Webhook::stats)
            .unwrap_or_default();
        AuthStats { jwks, webhook }
    }
}

/// Each source at most once, the first message last and only with JWT (its
/// message carries a token).
fn check_sources(settings: &AuthSettings) -> Result<(), SetupError> {
    let sources = &settings.sources;
    for (index, source) in sources.iter().enumerate() {
        if sources[..index]
            .iter()
            .any(|earlier| earlier.label() == source.label())
        {
            return Err(SetupError::Sources("each source may be listed once"));
        }
        if *source == TokenSource::FirstMessage && index + 1 != sources.len() {
            return Err(SetupError::Sources(
                "the first message must be the last source",
            ));
        }
    }
    if sources.contains(&TokenSource::FirstMessage) && settings.jwt.is_none() {
        return Err(SetupError::Sources(
            "the first message carries a token: it needs JWT keys",
        ));
    }
    Ok(())
}

/// The JWT verifier: fixed keys loaded, JWKS caches started.
fn verifier(settings: &AuthSettings, jwt: &JwtSettings) -> Result<Verifier, SetupError> {
    if jwt.algorithms.is_empty() {
        return Err(SetupError::NoAlgorithms);
    }
    let secrets = jwt
        .keys
        .iter()
        .filter(|source| matches!(source, KeySource::Secret(_)))
        .count();
    let hmac = jwt.algorithms.iter().any(|alg| alg.is_hmac());
    match (secrets, hmac) {
        (0, true) => {
            return Err(SetupError::Secret(
                "an HS* algorithm is accepted but no secret is configured",
            ));
        }
        (1.., false) => {
            return Err(SetupError::Secret(
                "a secret is configured but no HS* algorithm accepts it",
            ));
        }
        (2.., true) => return Err(SetupError::Secret("more than one secret configured")),
        _ => {}
    }
    let mut fixed = Vec::new();
    let mut remote = Vec::new();
    for source in &jwt.keys {
        match source {
            KeySource::JwksUrl(url) => remote.push(Arc::new(JwksCache::new(url)?)),
            source => fixed.extend(
                read_keys(source, &jwt.algorithms)?
                    .into_iter()
                    .map(Arc::new),
            ),
        }
    }
    let fixed = KeySet::new(fixed);
    if let Some(alg) = uncovered(&jwt.algorithms, &fixed, !remote.is_empty()).next() {
        return Err(SetupError::NoPublicKeys(alg.name()));
    }
    if !remote.is_empty() {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SetupError::NoRuntime)?;
        for cache in &remote {
            cache.spawn_refresher(&runtime);
        }
    }
    Ok(Verifier::new(
        jwt,
        fixed,
        remote,
        settings.claims.clone(),
        settings.absent_grants,
    ))
}

/// The keys of one fixed source (a secret, a PEM file, a JWKS file), read
/// and checked against the accepted `algorithms`; a JWKS URL has none until
/// it is fetched.
fn read_keys(source: &KeySource, algorithms: &[Algorithm]) -> Result<Vec<Key>, SetupError> {
    let read = |path: &PathBuf| {
        fs::read(path).map_err(|error| SetupError::Read {
            path: path.clone(),
            error,
        })
    };
    match source {
        KeySource::Secret(path) => {
            let bytes = read(path)?;
            // A file written by `echo` ends in a line ending that is no part of the secret.
            let secret = bytes
                .strip_suffix(b"\r\n")
                .or_else(|| bytes.strip_suffix(b"\n"))
                .unwrap_or(&bytes);
            for &alg in algorithms.iter().filter(|alg| alg.is_hmac()) {
                let min = hmac_min_len(alg);
                if secret.len() < min {
                    return Err(SetupError::SecretTooShort {
                        alg: alg.name(),
                        len: secret.len(),
                        min,
                    });
                }
            }
            Ok(vec![Key::secret(secret)])
        }
        KeySource::PemFile(path) => {
            let keys = Key::from_pem(&read(path)?).map_err(|error| SetupError::Key {
                path: path.clone(),
                error,
            })?;
            if let Some(unused) = keys
                .iter()
                .find(|key| !algorithms.iter().any(|&alg| key.accepts(alg, None)))
            {
                return Err(SetupError::UnusedKey {
                    path: path.clone(),
                    family: unused.family(),
                });
            }
            Ok(keys)
        }
        KeySource::JwksFile(path) => {
            let (keys, _) = keys::parse_jwks(&read(path)?).map_err(|error| SetupError::Key {
                path: path.clone(),
                error,
            })?;
            Ok(keys)
        }
        KeySource::JwksUrl(_) => Ok(Vec::new()),
    }
}

/// The accepted asymmetric algorithms that no fixed key verifies, when no
/// JWKS URL (`remote`) may bring a key for them.
fn uncovered<'a>(
    algorithms: &'a [Algorithm],
    fixed: &'a KeySet,
    remote: bool,
) -> impl Iterator<Item = Algorithm> + 'a {
    algorithms.iter().copied().filter(move |&alg| {
        !remote && !alg.is_hmac() && fixed.candidates(alg, None).next().is_none()
    })
}

/// What a problem found by [`check_files`] is about, so that the
/// configuration can point at the key that named it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subject {
    /// The JWT key source at this index of [`JwtSettings::keys`] (for a JWKS
    /// URL, its CA file).
    Key(usize),
    /// An accepted algorithm that none of the keys verifies.
    Algorithm(Algorithm),
    /// The webhook's CA file.
    WebhookCaFile,
}

/// Reads every file `settings` names and checks what the material tells,
/// as [`Authenticator::new`] does, but starting nothing and reporting every
/// problem with what it is about, not only the first. The settings' shape
/// (algorithms, sources, one secret) is the configuration's to check; this
/// is the part only the files can tell.
pub(crate) fn check_files(settings: &AuthSettings) -> Vec<(Subject, SetupError)> {
    let mut problems = Vec::new();
    if let Some(jwt) = &settings.jwt {
        let mut fixed = Vec::new();
        for (index, source) in jwt.keys.iter().enumerate() {
            let keys = match source {
                KeySource::JwksUrl(url) => url
                    .ca_file
                    .as_deref()
                    .map_or(Ok(()), |ca| client::ca_roots(ca).map(drop))
                    .map(|()| Vec::new())
                    .map_err(SetupError::from),
                source => read_keys(source, &jwt.algorithms),
            };
            match keys {
                Ok(keys) => fixed.extend(keys.into_iter().map(Arc::new)),
                Err(error) => problems.push((Subject::Key(index), error)),
            }
        }
        // A source that could not be read may hold the key an algorithm
        // lacks: say so only when every source was read.
        if problems.is_empty() {
            let remote = jwt
                .keys
                .iter()
                .any(|source| matches!(source, KeySource::JwksUrl(_)));
            let fixed = KeySet::new(fixed);
            problems.extend(uncovered(&jwt.algorithms, &fixed, remote).map(|alg| {
                (
                    Subject::Algorithm(alg),
                    SetupError::NoPublicKeys(alg.name()),
                )
            }));
        }
    }
    if let Some(ca) = settings.webhook.as_ref().and_then(|w| w.ca_file.as_deref()) {
        if let Err(error) = client::ca_roots(ca) {
            problems.push((Subject::WebhookCaFile, error.into()));
        }
    }
    problems
}

/// The least secret length for an HMAC: its hash's output size.
fn hmac_min_len(alg: Algorithm) -> usize {
    match alg {
        Algorithm::Hs384 => 48,
        Algorithm::Hs512 => 64,
        _ => 32,
    }
}
