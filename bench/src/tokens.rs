//! JWTs for the authenticated-handshake scenario: a pool of distinct tokens
//! per algorithm (one user each, as real clients have), signed with ring
//! before the run, never on the hot path, over keys that `bench/run.sh`
//! generates with openssl into a temporary directory:
//!
//! | algorithm | private key (PKCS#8 PEM, or the secret) | public key given to wsedge |
//! |---|---|---|
//! | HS256 | `hs256.secret` | the same file |
//! | RS256 | `rs256.key.pem` (RSA 2048) | `rs256.pub.pem` |
//! | ES256 | `es256.key.pem` (P-256) | `es256.pub.pem` |
//! | EdDSA | `eddsa.key.pem` (Ed25519) | `eddsa.pub.pem` |

use std::{
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hyper::header::HeaderValue;
use ring::{
    hmac,
    rand::SystemRandom,
    signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair},
};
use rustls_pki_types::{PrivatePkcs8KeyDer, pem::PemObject};
use serde_json::json;

/// The signature algorithms measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Hs256,
    Rs256,
    Es256,
    EdDsa,
}

impl Algorithm {
    /// In the order measured (and reported).
    pub const ALL: [Algorithm; 4] = [
        Algorithm::Hs256,
        Algorithm::Rs256,
        Algorithm::Es256,
        Algorithm::EdDsa,
    ];

    /// The JOSE name (RFC 7518, RFC 8037), as the token's header says it.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Hs256 => "HS256",
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
            Algorithm::EdDsa => "EdDSA",
        }
    }

    /// The file in the key directory that signs.
    fn key_file(self) -> &'static str {
        match self {
            Algorithm::Hs256 => "hs256.secret",
            Algorithm::Rs256 => "rs256.key.pem",
            Algorithm::Es256 => "es256.key.pem",
            Algorithm::EdDsa => "eddsa.key.pem",
        }
    }
}

/// What every token claims besides its user: the claims a deployment
/// typically has wsedge check (issuer, audience, expiry, a join grant).
pub struct Claims<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    /// The channel the token may join.
    pub channel: &'a str,
    /// From now to `exp`: longer than any run.
    pub lifetime: Duration,
}

/// A signing key, loaded once.
enum Signer {
    Hmac(hmac::Key),
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl Signer {
    fn load(dir: &Path, alg: Algorithm) -> anyhow::Result<Signer> {
        let path = dir.join(alg.key_file());
        let pkcs8 = || {
            PrivatePkcs8KeyDer::from_pem_file(&path)
                .with_context(|| format!("{}: no PKCS#8 private key", path.display()))
        };
        let bad = |error: ring::error::KeyRejected| {
            anyhow::anyhow!("{}: ring refuses the key: {error}", path.display())
        };
        Ok(match alg {
            Algorithm::Hs256 => {
                Signer::Hmac(hmac::Key::new(hmac::HMAC_SHA256, &read_secret(&path)?))
            }
            Algorithm::Rs256 => {
                Signer::Rsa(RsaKeyPair::from_pkcs8(pkcs8()?.secret_pkcs8_der()).map_err(bad)?)
            }
            Algorithm::Es256 => Signer::Ecdsa(
                EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    pkcs8()?.secret_pkcs8_der(),
                    &SystemRandom::new(),
                )
                .map_err(bad)?,
            ),
            // openssl writes PKCS#8 v1 (no public key inside): ring's
            // checked constructor wants v2.
            Algorithm::EdDsa => Signer::Ed25519(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8()?.secret_pkcs8_der())
                    .map_err(bad)?,
            ),
        })
    }

    fn sign(&self, message: &[u8], rng: &SystemRandom) -> anyhow::Result<Vec<u8>> {
        Ok(match self {
            Signer::Hmac(key) => hmac::sign(key, message).as_ref().to_vec(),
            Signer::Rsa(key) => {
                let mut signature = vec![0; key.public().modulus_len()];
                key.sign(&signature::RSA_PKCS1_SHA256, rng, message, &mut signature)
                    .map_err(|_| anyhow::anyhow!("RSA signing failed"))?;
                signature
            }
            Signer::Ecdsa(key) => key
                .sign(rng, message)
                .map_err(|_| anyhow::anyhow!("ECDSA signing failed"))?
                .as_ref()
                .to_vec(),
            Signer::Ed25519(key) => key.sign(message).as_ref().to_vec(),
        })
    }
}

/// `count` tokens signed with `alg` by the key in `dir`, for the users
/// `user-0` to `user-{count - 1}`, each as an `Authorization: Bearer` value.
pub fn pool(
    dir: &Path,
    alg: Algorithm,
    count: usize,
    claims: &Claims<'_>,
) -> anyhow::Result<Vec<HeaderValue>> {
    let signer = Signer::load(dir, alg)?;
    let rng = SystemRandom::new();
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    (0..count)
        .map(|user| {
            let payload = json!({
                "sub": format!("user-{user}"),
                "iss": claims.issuer,
                "aud": claims.audience,
                "iat": now,
                "exp": now + claims.lifetime.as_secs(),
                "join": [claims.channel],
            });
            let token = jwt(alg, &payload, |input| signer.sign(input, &rng))?;
            Ok(HeaderValue::try_from(format!("Bearer {token}"))?)
        })
        .collect()
}

/// A secret file as wsedge reads `secret_file`: one trailing line ending is
/// no part of the secret.
pub fn read_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut bytes =
        std::fs::read(path).with_context(|| format!("reading the secret {}", path.display()))?;
    let ending = if bytes.ends_with(b"\r\n") {
        2
    } else {
        usize::from(bytes.ends_with(b"\n"))
    };
    bytes.truncate(bytes.len() - ending);
    Ok(bytes)
}

/// An HS256 JWT over `payload`.
pub fn hs256(key: &hmac::Key, payload: &serde_json::Value) -> String {
    jwt(Algorithm::Hs256, payload, |input| {
        Ok(hmac::sign(key, input).as_ref().to_vec())
    })
    .expect("HMAC signing cannot fail")
}

/// `header.payload.signature`, base64url, signed by `sign` over the first
/// two.
fn jwt(
    alg: Algorithm,
    payload: &serde_json::Value,
    sign: impl FnOnce(&[u8]) -> anyhow::Result<Vec<u8>>,
) -> anyhow::Result<String> {
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": alg.name(), "typ": "JWT"}).to_string());
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload.to_string()));
    let signature = URL_SAFE_NO_PAD.encode(sign(input.as_bytes())?);
    Ok(format!("{input}.{signature}"))
}
