//! The authenticator end to end: tokens signed by PyJWT (an implementation
//! that shares no code with ours), keys from files and from JWKS endpoints
//! served on loopback, the token sources of a handshake, the webhook
//! fallback, and the configuration errors caught at setup.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use hyper::{HeaderMap, StatusCode, Uri, header};
use serde_json::{Value, json};

use super::{
    error::Unavailable,
    messages::Control,
    permissions::Rooms,
    settings::{
        AbsentGrants, ClaimNames, DEFAULT_COOKIE, DEFAULT_PROTOCOL_MARKER, JwksUrlSettings,
        WebhookSettings,
    },
    test_support::{Backend, Reply, Signer, signer, unix_now},
    *,
};
use crate::sync::lock;

/// Claims that pass every check of [`settings`].
fn claims() -> Value {
    json!({
        "sub": "alice",
        "iss": "https://idp.test",
        "aud": ["other", "wsedge"],
        "iat": unix_now(0),
        "exp": unix_now(600),
        "join": "chat:team-*",
        "publish": ["chat:team-a"],
    })
}

/// `claims()` with `patch` applied (a `null` removes the claim).
fn claims_with(patch: Value) -> Value {
    let mut claims = claims();
    for (name, value) in patch.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

/// A signing request for `sign_jwt.py`.
fn request(alg: &str, key: &str, claims: Value, kid: Option<&str>, signer: &Signer) -> Value {
    let mut request = json!({"alg": alg, "key": signer.path(key), "claims": claims});
    if let Some(kid) = kid {
        request["headers"] = json!({"kid": kid});
    }
    request
}

/// The private key file that signs `alg`.
fn private_key(alg: Algorithm) -> &'static str {
    match alg {
        _ if alg.is_hmac() => "hmac.secret",
        Algorithm::Es256 => "p256.key.pem",
        Algorithm::Es384 => "p384.key.pem",
        Algorithm::EdDsa => "ed25519.key.pem",
        _ => "rsa.key.pem",
    }
}

/// Settings accepting `algorithms` with `keys`, checking issuer and audience.
fn settings(algorithms: Vec<Algorithm>, keys: Vec<KeySource>) -> AuthSettings {
    let mut jwt = JwtSettings::new(algorithms, keys);
    jwt.issuers = vec!["https://idp.test".into()];
    jwt.audiences = vec!["wsedge".into()];
    jwt.leeway = Duration::from_secs(5);
    AuthSettings::new(Some(jwt), None)
}

/// Every public key file and the secret, every algorithm accepted.
fn all_keys(signer: &Signer) -> Vec<KeySource> {
    let mut keys: Vec<KeySource> = ["rsa", "p256", "p384", "ed25519"]
        .iter()
        .map(|name| KeySource::PemFile(signer.path(&format!("{name}.pub.pem"))))
        .collect();
    keys.push(KeySource::Secret(signer.path("hmac.secret")));
    keys
}

async fn verify(authenticator: &Authenticator, token: &str) -> Result<Identity, AuthError> {
    authenticator.verify(&Token::new(token)).await
}

#[tokio::test]
async fn every_algorithm_from_pem_files_and_a_secret() {
    let Some(signer) = signer() else { return };
    let requests: Vec<Value> = Algorithm::ALL
        .iter()
        .map(|alg| request(alg.name(), private_key(*alg), claims(), None, signer))
        .collect();
    let tokens = signer.sign(&requests);
    let authenticator =
        Authenticator::new(&settings(Algorithm::ALL.to_vec(), all_keys(signer))).unwrap();
    for (alg, token) in Algorithm::ALL.iter().zip(&tokens) {
        let identity = verify(&authenticator, token)
            .await
            .unwrap_or_else(|error| panic!("{}: {error}", alg.name()));
        assert_eq!(identity.user, "alice", "{}", alg.name());
        assert!(identity.may_join("chat", Some("team-b"), Rooms::Shared));
        assert!(!identity.may_publish("chat", Some("team-b"), Rooms::Shared));
    }

    // Each algorithm alone accepts its own tokens and no other's.
    for (index, &alg) in Algorithm::ALL.iter().enumerate() {
        let keys = all_keys(signer)
            .into_iter()
            .filter(|key| match key {
                KeySource::Secret(_) => alg.is_hmac(),
                KeySource::PemFile(path) => {
                    !alg.is_hmac()
                        && signer.path(&private_key(alg).replace(".key.", ".pub.")) == *path
                }
                _ => false,
            })
            .collect();
        let only = Authenticator::new(&settings(vec![alg], keys)).unwrap();
        for (other, (signed_with, token)) in Algorithm::ALL.iter().zip(&tokens).enumerate() {
            let result = verify(&only, token).await.map(|identity| identity.user);
            if other == index {
                assert_eq!(result, Ok("alice".into()), "{}", alg.name());
            } else {
                assert_eq!(
                    result,
                    Err(Invalid::AlgorithmNotAllowed.into()),
                    "{} with {}",
                    signed_with.name(),
                    alg.name()
                );
            }
        }
    }
}

#[tokio::test]
async fn every_asymmetric_algorithm_from_a_jwks_file() {
    let Some(signer) = signer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(
        &jwks,
        signer.jwks(&["rsa", "rsa2", "p256", "p384", "ed25519"]),
    )
    .unwrap();
    let asymmetric: Vec<Algorithm> = Algorithm::ALL
        .into_iter()
        .filter(|alg| !alg.is_hmac())
        .collect();
    let kid = |alg: Algorithm| private_key(alg).split('.').next().unwrap().to_owned();
    let mut requests: Vec<Value> = asymmetric
        .iter()
        .map(|&alg| {
            request(
                alg.name(),
                private_key(alg),
                claims(),
                Some(&kid(alg)),
                signer,
            )
        })
        .collect();
    // Without a kid every key of the family is tried; with a wrong kid the
    // right key is not.
    requests.push(request("RS256", "rsa2.key.pem", claims(), None, signer));
    requests.push(request(
        "RS256",
        "rsa2.key.pem",
        claims(),
        Some("rsa"),
        signer,
    ));
    requests.push(request(
        "RS256",
        "rsa2.key.pem",
        claims(),
        Some("nope"),
        signer,
    ));
    let tokens = signer.sign(&requests);
    let authenticator = Authenticator::new(&settings(
        asymmetric.clone(),
        vec![KeySource::JwksFile(jwks)],
    ))
    .unwrap();
    for (alg, token) in asymmetric.iter().zip(&tokens) {
        assert_eq!(
            verify(&authenticator, token).await.map(|i| i.user),
            Ok("alice".into()),
            "{}",
            alg.name()
        );
    }
    let n = asymmetric.len();
    assert_eq!(
        verify(&authenticator, &tokens[n]).await.map(|i| i.user),
        Ok("alice".into())
    );
    assert_eq!(
        verify(&authenticator, &tokens[n + 1]).await,
        Err(Invalid::BadSignature.into())
    );
    assert_eq!(
        verify(&authenticator, &tokens[n + 2]).await,
        Err(Invalid::UnknownKey.into())
    );
}

#[tokio::test]
async fn hostile_tokens_are_refused_each_for_its_reason() {
    let Some(signer) = signer() else { return };
    let rs_hs = settings(
        vec![Algorithm::Rs256, Algorithm::Hs256],
        vec![
            KeySource::PemFile(signer.path("rsa.pub.pem")),
            KeySource::Secret(signer.path("hmac.secret")),
        ],
    );
    let rs_only = settings(
        vec![Algorithm::Rs256],
        vec![KeySource::PemFile(signer.path("rsa.pub.pem"))],
    );
    let rs = |claims: Value| request("RS256", "rsa.key.pem", claims, None, signer);
    let confusion = json!({"alg": "HS256", "key": signer.path("rsa.pub.pem"), "claims": claims(), "forge_hmac": true});
    let mut requests = vec![
        rs(claims()),
        json!({"alg": "none", "claims": claims()}),
        confusion,
        rs(claims_with(json!({"exp": unix_now(-100)}))),
        rs(claims_with(json!({"nbf": unix_now(100)}))),
        rs(claims_with(json!({"iat": unix_now(100)}))),
        rs(claims_with(json!({"iss": "https://evil.test"}))),
        rs(claims_with(json!({"aud": "other"}))),
        rs(claims_with(json!({"sub": null}))),
        rs(claims_with(json!({"padding": "x".repeat(16 * 1024)}))),
        json!({"alg": "RS256", "key": signer.path("rsa.key.pem"), "payload": "[\"sub\", \"alice\"]"}),
        request("RS256", "rsa2.key.pem", claims(), None, signer),
        rs(claims_with(json!({"exp": null}))),
        rs(claims_with(json!({"join": {"chat": true}}))),
    ];
    requests.push(rs(claims()));
    let tokens = signer.sign(&requests);
    let good = &tokens[0];
    let bad_base64 = {
        let (header, rest) = good.split_once('.').unwrap();
        format!("{header}.*{}", &rest[1..])
    };
    let authenticator = Authenticator::new(&rs_hs).unwrap();
    assert_eq!(
        verify(&authenticator, good).await.map(|i| i.user),
        Ok("alice".into())
    );
    let cases = [
        (&tokens[1], Invalid::AlgNone),
        (&tokens[2], Invalid::BadSignature),
        (&tokens[3], Invalid::Expired),
        (&tokens[4], Invalid::NotYetValid),
        (&tokens[5], Invalid::IssuedInFuture),
        (&tokens[6], Invalid::WrongIssuer),
        (&tokens[7], Invalid::WrongAudience),
        (&tokens[8], Invalid::MissingUser),
        (&tokens[9], Invalid::TooLarge),
        (&tokens[10], Invalid::NotAnObject),
        (&tokens[11], Invalid::BadSignature),
        (&tokens[12], Invalid::MissingExpiry),
        (&tokens[13], Invalid::BadClaim),
        (&bad_base64, Invalid::BadBase64),
    ];
    for (token, invalid) in cases {
        let error = verify(&authenticator, token).await.unwrap_err();
        assert_eq!(error, AuthError::Invalid(invalid));
        assert_eq!(error.status(), StatusCode::UNAUTHORIZED);
    }
    assert!(tokens[9].len() > 16 * 1024, "the large token is large");

    // With only RS256 accepted, the HS/RS confusion is refused before any
    // key is touched.
    let strict = Authenticator::new(&rs_only).unwrap();
    assert_eq!(
        verify(&strict, &tokens[2]).await,
        Err(Invalid::AlgorithmNotAllowed.into())
    );
}

#[tokio::test]
async fn claim_names_and_absent_grants_are_configurable() {
    let Some(signer) = signer() else { return };
    let token_claims = json!({"uid": "u-7", "exp": unix_now(600), "can_join": "news", "iss": "https://idp.test", "aud": "wsedge"});
    let tokens = signer.sign(&[request("HS512", "hmac.secret", token_claims, None, signer)]);
    let mut config = settings(
        vec![Algorithm::Hs512],
        vec![KeySource::Secret(signer.path("hmac.secret"))],
    );
    config.claims = ClaimNames {
        user: "uid".into(),
        join: "can_join".into(),
        publish: "can_publish".into(),
    };
    let identity = verify(&Authenticator::new(&config).unwrap(), &tokens[0])
        .await
        .unwrap();
    assert_eq!(identity.user, "u-7");
    assert!(identity.may_join("news", None, Rooms::Shared));
    assert!(
        !identity.may_publish("news", None, Rooms::Shared),
        "absent grants deny by default"
    );

    config.absent_grants = AbsentGrants::AllowAll;
    let identity = verify(&Authenticator::new(&config).unwrap(), &tokens[0])
        .await
        .unwrap();
    assert!(identity.may_publish("news", None, Rooms::Shared));
    assert!(
        !identity.may_join("chat", None, Rooms::Shared),
        "a present grant still limits"
    );

    config.claims = ClaimNames::default();
    let error = verify(&Authenticator::new(&config).unwrap(), &tokens[0])
        .await
        .unwrap_err();
    assert_eq!(error, Invalid::MissingUser.into());
}

#[tokio::test]
async fn a_secret_file_may_end_in_a_line_ending() {
    let Some(signer) = signer() else { return };
    let tokens = signer.sign(&[request("HS256", "hmac.secret", claims(), None, signer)]);
    let secret = std::fs::read(signer.path("hmac.secret")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for ending in [&b"\n"[..], b"\r\n"] {
        let path = dir.path().join("echoed.secret");
        std::fs::write(&path, [&secret[..], ending].concat()).unwrap();
        let authenticator = Authenticator::new(&settings(
            vec![Algorithm::Hs256],
            vec![KeySource::Secret(path)],
        ))
        .unwrap();
        assert_eq!(
            verify(&authenticator, &tokens[0]).await.map(|i| i.user),
            Ok("alice".into()),
            "{ending:?}"
        );
    }
}

/// A JWKS endpoint whose document the test changes.
struct Jwks {
    backend: Backend,
    document: Arc<Mutex<String>>,
}

impl Jwks {
    async fn serve(document: String, delay: Duration) -> Jwks {
        let document = Arc::new(Mutex::new(document));
        let served = document.clone();
        let backend =
            Backend::start(move |_| Reply::ok(lock(&served).clone().into_bytes()).after(delay))
                .await;
        Jwks { backend, document }
    }

    fn set(&self, document: String) {
        *lock(&self.document) = document;
    }
}

/// An authenticator of one JWKS URL, and its cache.
fn jwks_authenticator(
    url: &str,
    refresh: Duration,
    min_refetch: Duration,
) -> (Authenticator, Arc<JwksCache>) {
    let mut endpoint = JwksUrlSettings::new(url);
    endpoint.refresh = refresh;
    endpoint.min_refetch = min_refetch;
    let algorithms = vec![Algorithm::Rs256, Algorithm::Es256];
    let authenticator =
        Authenticator::new(&settings(algorithms, vec![KeySource::JwksUrl(endpoint)])).unwrap();
    let cache = authenticator.inner.jwt.as_ref().unwrap().remote()[0].clone();
    (authenticator, cache)
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn jwks_rotation_accepts_a_new_kid_after_the_refetch() {
    let Some(signer) = signer() else { return };
    let tokens = signer.sign(&[
        request("RS256", "rsa.key.pem", claims(), Some("rsa"), signer),
        request("RS256", "rsa2.key.pem", claims(), Some("rsa2"), signer),
        request("ES256", "p256.key.pem", claims(), Some("p256"), signer),
    ]);
    let jwks = Jwks::serve(signer.jwks(&["rsa"]), Duration::ZERO).await;
    let (authenticator, cache) =
        jwks_authenticator(&jwks.backend.url("/jwks"), HOUR, Duration::ZERO);
    jwks::wait_for_fetches(&mut cache.finished(), 1).await;
    assert_eq!(
        verify(&authenticator, &tokens[0]).await.map(|i| i.user),
        Ok("alice".into())
    );

    jwks.set(signer.jwks(&["rsa", "rsa2", "p256"]));
    assert_eq!(
        verify(&authenticator, &tokens[1]).await.map(|i| i.user),
        Ok("alice".into())
    );
    assert_eq!(
        verify(&authenticator, &tokens[2]).await.map(|i| i.user),
        Ok("alice".into()),
        "the refetched set is kept"
    );
    assert_eq!(
        jwks.backend.requests(),
        2,
        "the start-up fetch and one for the new kid"
    );
    assert_eq!(
        cache.stats(),
        JwksStats {
            fetches: 2,
            failures: 0,
            rate_limited: 0,
            keys: 3
        }
    );
    assert_eq!(authenticator.stats().jwks, cache.stats());
}

#[tokio::test]
async fn jwks_refresh_drops_a_removed_key() {
    let Some(signer) = signer() else { return };
    let tokens = signer.sign(&[
        request("RS256", "rsa.key.pem", claims(), Some("rsa"), signer),
        request("RS256", "rsa2.key.pem", claims(), Some("rsa2"), signer),
    ]);
    let jwks = Jwks::serve(signer.jwks(&["rsa", "rsa2"]), Duration::ZERO).await;
    let (authenticator, cache) =
        jwks_authenticator(&jwks.backend.url("/jwks"), Duration::from_millis(200), HOUR);
    let mut finished = cache.finished();
    jwks::wait_for_fetches(&mut finished, 1).await;
    assert_eq!(
        verify(&authenticator, &tokens[0]).await.map(|i| i.user),
        Ok("alice".into())
    );
    jwks.set(signer.jwks(&["rsa2"]));
    // The next fetch to finish may have read the old document; the one
    // after it started after the change.
    let seen = *finished.borrow_and_update();
    jwks::wait_for_fetches(&mut finished, seen + 2).await;

    assert_eq!(
        verify(&authenticator, &tokens[0]).await,
        Err(Invalid::UnknownKey.into())
    );
    assert_eq!(
        verify(&authenticator, &tokens[1]).await.map(|i| i.user),
        Ok("alice".into())
    );
    assert_eq!(cache.stats().keys, 1);
}

#[tokio::test]
async fn jwks_endpoint_down_keeps_the_last_good_keys() {
    let Some(signer) = signer() else { return };
    let tokens = signer.sign(&[
        request("RS256", "rsa.key.pem", claims(), Some("rsa"), signer),
        request("RS256", "rsa2.key.pem", claims(), Some("rsa2"), signer),
    ]);
    let jwks = Jwks::serve(signer.jwks(&["rsa"]), Duration::ZERO).await;
    let (authenticator, cache) = jwks_authenticator(
        &jwks.backend.url("/jwks"),
        Duration::from_millis(100),
        Duration::ZERO,
    );
    let mut finished = cache.finished();
    jwks::wait_for_fetches(&mut finished, 1).await;
    assert_eq!(
        verify(&authenticator, &tokens[0]).await.map(|i| i.user),
        Ok("alice".into())
    );
    jwks.backend.stop();
    // The next fetch to finish may have been answered before the stop.
    let seen = *finished.borrow_and_update();
    jwks::wait_for_fetches(&mut finished, seen + 2).await;
    assert!(cache.stats().failures >= 1);

    assert_eq!(
        verify(&authenticator, &tokens[0]).await.map(|i| i.user),
        Ok("alice".into()),
        "last good set"
    );
    let error = verify(&authenticator, &tokens[1]).await.unwrap_err();
    assert_eq!(
        (error, error.status()),
        (Unavailable::Jwks.into(), StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(cache.stats().keys, 1);
}

/// An RS256 token naming `kid`, with a signature nobody made: never checked
/// when the kid is unknown.
fn forged(kid: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "kid": kid}).to_string());
    format!("{header}.e30.AAAA")
}

/// An RSA JWK whose modulus is well-formed (no key signs for it).
fn dummy_jwks() -> String {
    let mut n = vec![0xab; 256];
    n[0] = 0xc5;
    json!({"keys": [{"kty": "RSA", "kid": "k1", "n": URL_SAFE_NO_PAD.encode(&n), "e": "AQAB"}]})
        .to_string()
}

/// How many tokens with random `kid`s the flood tests verify at once.
const FLOOD: usize = 200;

/// Verifies [`FLOOD`] tokens with random `kid`s concurrently, each refused.
async fn flood(authenticator: &Authenticator) {
    let verifications: Vec<_> = (0..FLOOD)
        .map(|i| {
            let authenticator = authenticator.clone();
            tokio::spawn(
                async move { verify(&authenticator, &forged(&format!("random-{i}"))).await },
            )
        })
        .collect();
    for verification in verifications {
        assert_eq!(verification.await.unwrap(), Err(Invalid::UnknownKey.into()));
    }
}

#[tokio::test]
async fn an_unknown_kid_flood_costs_one_fetch_per_interval() {
    // The endpoint answers slowly, so the whole flood arrives while the
    // flood's first fetch is in flight.
    let jwks = Jwks::serve(dummy_jwks(), Duration::from_millis(100)).await;
    let (authenticator, cache) = jwks_authenticator(&jwks.backend.url("/jwks"), HOUR, HOUR);
    jwks::wait_for_fetches(&mut cache.finished(), 1).await;
    flood(&authenticator).await;
    assert_eq!(
        jwks.backend.requests(),
        2,
        "the start-up fetch and one early fetch for the whole flood"
    );
    flood(&authenticator).await;
    assert_eq!(
        jwks.backend.requests(),
        2,
        "rate-limited until the interval passes"
    );
    let stats = cache.stats();
    assert_eq!((stats.fetches, stats.failures), (2, 0));
    assert!(stats.rate_limited >= FLOOD as u64, "{stats:?}");
}

#[tokio::test]
async fn concurrent_refetches_share_one_fetch() {
    // No rate limit at all: de-duplication alone makes a flood one fetch.
    let jwks = Jwks::serve(dummy_jwks(), Duration::from_millis(100)).await;
    let (authenticator, cache) =
        jwks_authenticator(&jwks.backend.url("/jwks"), HOUR, Duration::ZERO);
    jwks::wait_for_fetches(&mut cache.finished(), 1).await;
    flood(&authenticator).await;
    assert_eq!(
        jwks.backend.requests(),
        2,
        "the start-up fetch and one for the concurrent flood"
    );
    assert_eq!(cache.stats().rate_limited, 0);
}

#[tokio::test]
async fn a_jwks_endpoint_never_reached_is_a_503() {
    let url = Backend::closed_url("/jwks");
    let (authenticator, cache) = jwks_authenticator(&url, HOUR, HOUR);
    jwks::wait_for_fetches(&mut cache.finished(), 1).await;
    // The token's kid is unknown: one early fetch, which fails too.
    let error = verify(&authenticator, &forged("k1")).await.unwrap_err();
    assert_eq!(error, Unavailable::Jwks.into());
    assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        cache.stats(),
        JwksStats {
            fetches: 0,
            failures: 2,
            rate_limited: 0,
            keys: 0
        }
    );
    // Rate-limited now, and still no key set at all: still a 503.
    assert_eq!(
        verify(&authenticator, &forged("k1")).await,
        Err(Unavailable::Jwks.into())
    );
    assert_eq!(
        cache.stats(),
        JwksStats {
            fetches: 0,
            failures: 2,
            rate_limited: 1,
            keys: 0
        }
    );
}

fn facts<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> HandshakeFacts<'a> {
    HandshakeFacts {
        channel: "chat",
        room: Some("team-a"),
        uri,
        headers,
        client_ip: "127.0.0.1".parse().unwrap(),
    }
}

#[tokio::test]
async fn handshakes_authenticate_from_their_sources() {
    let Some(signer) = signer() else { return };
    let tokens = signer.sign(&[request("EdDSA", "ed25519.key.pem", claims(), None, signer)]);
    let token = &tokens[0];
    let mut config = settings(
        vec![Algorithm::EdDsa],
        vec![KeySource::PemFile(signer.path("ed25519.pub.pem"))],
    );
    let authenticator = Authenticator::new(&config).unwrap();
    let uri: Uri = "/chat/team-a".parse().unwrap();
    let cases = [
        (header::AUTHORIZATION, format!("Bearer {token}"), "bearer"),
        (
            header::COOKIE,
            format!("{DEFAULT_COOKIE}={token}"),
            "cookie",
        ),
        (
            header::SEC_WEBSOCKET_PROTOCOL,
            format!("chat.v1, {DEFAULT_PROTOCOL_MARKER}, {token}"),
            "protocol",
        ),
    ];
    for (name, value, label) in cases {
        let mut headers = HeaderMap::new();
        headers.insert(name, value.parse().unwrap());
        let Outcome::Identified { identity, via } = authenticator
            .authenticate(&facts(&uri, &headers))
            .await
            .unwrap()
        else {
            panic!("{label}: not identified");
        };
        assert_eq!((identity.user.as_str(), via.label()), ("alice", label));
        assert!(identity.may_join("chat", Some("team-a"), Rooms::Shared));
    }

    let none = HeaderMap::new();
    assert_eq!(
        authenticator.authenticate(&facts(&uri, &none)).await,
        Err(AuthError::Missing)
    );
    let mut bad = HeaderMap::new();
    bad.insert(header::AUTHORIZATION, "Bearer not-a-jwt".parse().unwrap());
    bad.insert(
        header::COOKIE,
        format!("{DEFAULT_COOKIE}={token}").parse().unwrap(),
    );
    assert_eq!(
        authenticator.authenticate(&facts(&uri, &bad)).await,
        Err(Invalid::Malformed.into()),
        "the first source present decides"
    );

    config.sources.push(TokenSource::FirstMessage);
    config.first_message_timeout = Duration::from_millis(1500);
    let in_band = Authenticator::new(&config).unwrap();
    assert_eq!(in_band.first_message_timeout(), Duration::from_millis(1500));
    assert_eq!(
        in_band.authenticate(&facts(&uri, &none)).await,
        Ok(Outcome::FirstMessage)
    );
    let Some(Control::Auth(first)) =
        messages::parse(&json!({"type": "auth", "token": token}).to_string())
    else {
        panic!("not an auth message");
    };
    let identity = in_band.verify(&first).await.unwrap();
    assert!(messages::auth_ok(&identity).starts_with(r#"{"type":"auth_ok","user":"alice","exp":"#));
}

#[tokio::test]
async fn refresh_extends_for_the_same_user_only() {
    let Some(signer) = signer() else { return };
    let ed = |claims: Value| request("EdDSA", "ed25519.key.pem", claims, None, signer);
    let tokens = signer.sign(&[
        ed(claims_with(json!({"exp": unix_now(60)}))),
        ed(claims_with(json!({"exp": unix_now(3600)}))),
        ed(claims_with(json!({"sub": "mallory"}))),
        ed(claims_with(json!({"exp": unix_now(-60)}))),
    ]);
    let config = settings(
        vec![Algorithm::EdDsa],
        vec![KeySource::PemFile(signer.path("ed25519.pub.pem"))],
    );
    let authenticator = Authenticator::new(&config).unwrap();
    let current = verify(&authenticator, &tokens[0]).await.unwrap();
    let [longer, mallory, expired] = [1, 2, 3].map(|i| Token::new(tokens[i].as_str()));
    let extended = authenticator.refresh(&current, &longer).await.unwrap();
    assert!(extended.expires_at > current.expires_at);
    let other = authenticator.refresh(&current, &mallory).await.unwrap_err();
    assert_eq!(
        (other, other.close_code()),
        (
            AuthError::OtherUser,
            crate::protocol::close::POLICY_VIOLATION
        )
    );
    assert_eq!(
        authenticator.refresh(&current, &expired).await,
        Err(Invalid::Expired.into())
    );
}

#[tokio::test]
async fn the_webhook_answers_when_no_token_is_found() {
    let Some(signer) = signer() else { return };
    let tokens = signer.sign(&[request("HS256", "hmac.secret", claims(), None, signer)]);
    let backend = Backend::start(|request| {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        match body["headers"]["cookie"].as_str() {
            Some("session=s3cret") => Reply::ok(
                br#"{"allow": true, "user": "bob", "permissions": {"join": "*"}}"#.to_vec(),
            ),
            _ => Reply::ok(br#"{"allow": false}"#.to_vec()),
        }
    })
    .await;
    let mut config = settings(
        vec![Algorithm::Hs256],
        vec![KeySource::Secret(signer.path("hmac.secret"))],
    );
    config.webhook = Some(WebhookSettings::new(backend.url("/ws-auth")));
    let authenticator = Authenticator::new(&config).unwrap();
    let uri: Uri = "/chat/team-a".parse().unwrap();

    let mut bearer = HeaderMap::new();
    bearer.insert(
        header::AUTHORIZATION,
        format!("Bearer {}", tokens[0]).parse().unwrap(),
    );
    let outcome = authenticator
        .authenticate(&facts(&uri, &bearer))
        .await
        .unwrap();
    assert!(
        matches!(
            outcome,
            Outcome::Identified {
                via: Via::Token(_),
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(
        backend.requests(),
        0,
        "a token is verified without the webhook"
    );

    let mut session = HeaderMap::new();
    session.insert(header::COOKIE, "session=s3cret".parse().unwrap());
    let Outcome::Identified { identity, via } = authenticator
        .authenticate(&facts(&uri, &session))
        .await
        .unwrap()
    else {
        panic!("not identified");
    };
    assert_eq!((identity.user.as_str(), via), ("bob", Via::Webhook));
    let error = authenticator
        .authenticate(&facts(&uri, &HeaderMap::new()))
        .await
        .unwrap_err();
    assert_eq!(
        (error, error.status()),
        (AuthError::Denied, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        authenticator.stats().webhook,
        WebhookStats {
            allowed: 1,
            denied: 1,
            failed: 0
        }
    );
}

#[test]
fn settings_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, contents: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    };
    let short = write(
        "short.secret",
        b"0123456789012345678901234567890123456789\n",
    );
    let long = write("long.secret", &[7; 64]);
    let private = write(
        "private.pem",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let jwks = write("jwks.json", dummy_jwks().as_bytes());
    let jwt = |algorithms: Vec<Algorithm>, keys: Vec<KeySource>| {
        AuthSettings::new(Some(JwtSettings::new(algorithms, keys)), None)
    };
    let with_sources = |sources: Vec<TokenSource>| AuthSettings {
        sources,
        ..jwt(
            vec![Algorithm::Hs256],
            vec![KeySource::Secret(long.clone())],
        )
    };
    let cases = [
        (AuthSettings::new(None, None), "needs a verifier"),
        (
            jwt(vec![], vec![KeySource::Secret(long.clone())]),
            "no JWT algorithm",
        ),
        (
            jwt(vec![Algorithm::Hs256], vec![]),
            "no secret is configured",
        ),
        (
            jwt(
                vec![Algorithm::Rs256],
                vec![KeySource::Secret(long.clone())],
            ),
            "no HS* algorithm accepts it",
        ),
        (
            jwt(
                vec![Algorithm::Hs384],
                vec![KeySource::Secret(short.clone())],
            ),
            "the secret is 40 bytes; HS384 needs at least 48",
        ),
        (
            jwt(
                vec![Algorithm::Hs256],
                vec![
                    KeySource::Secret(long.clone()),
                    KeySource::Secret(long.clone()),
                ],
            ),
            "more than one secret",
        ),
        (
            jwt(
                vec![Algorithm::Es256],
                vec![KeySource::JwksFile(jwks.clone())],
            ),
            "ES256 is accepted but none of the public keys",
        ),
        (
            jwt(vec![Algorithm::Rs256], vec![KeySource::PemFile(private)]),
            "this is a private key",
        ),
        (
            jwt(
                vec![Algorithm::Rs256],
                vec![KeySource::PemFile(dir.path().join("missing.pem"))],
            ),
            "missing.pem",
        ),
        (
            jwt(
                vec![Algorithm::Rs256],
                vec![KeySource::JwksUrl(JwksUrlSettings::new(
                    "http://idp.example.com/jwks",
                ))],
            ),
            "plain HTTP",
        ),
        (
            with_sources(vec![TokenSource::FirstMessage, TokenSource::Bearer]),
            "must be the last source",
        ),
        (
            with_sources(vec![TokenSource::Bearer, TokenSource::Bearer]),
            "listed once",
        ),
        (
            AuthSettings {
                sources: vec![TokenSource::FirstMessage],
                ..AuthSettings::new(None, Some(WebhookSettings::new("http://127.0.0.1:1/")))
            },
            "needs JWT keys",
        ),
    ];
    for (settings, expected) in cases {
        let error = Authenticator::new(&settings).unwrap_err().to_string();
        assert!(error.contains(expected), "{expected:?} not in {error:?}");
    }
    assert!(
        Authenticator::new(&jwt(vec![Algorithm::Hs256], vec![KeySource::Secret(short)])).is_ok(),
        "newline stripped, 40 >= 32"
    );
    assert!(
        Authenticator::new(&jwt(
            vec![Algorithm::Rs256],
            vec![KeySource::JwksFile(jwks)]
        ))
        .is_ok()
    );
    let remote = jwt(
        vec![Algorithm::Rs256],
        vec![KeySource::JwksUrl(JwksUrlSettings::new(
            "http://127.0.0.1:1/jwks",
        ))],
    );
    assert!(matches!(
        Authenticator::new(&remote),
        Err(SetupError::NoRuntime)
    ));
}
