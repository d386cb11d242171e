//! Verification keys: a shared secret, PEM public keys and JWKS documents
//! (RFC 7517) read into one [`KeySet`], and the signature check of each key
//! with ring. A key is bound to its family (HMAC, RSA, P-256, P-384, Ed25519)
//! and, when a JWK says so, to one algorithm: a token can pick a key by
//! `kid` but never make an RSA public key act as an HMAC secret.

use std::{fmt, sync::Arc};

use ring::{hmac, signature};
use rustls_pki_types::pem::{PemObject, SectionKind};
use serde::Deserialize;
use thiserror::Error;

use super::{
    base64url,
    der::{self, DerError, PublicKey},
    settings::Algorithm,
};

/// Most keys a JWKS document may hold: providers publish two or three
/// (current, next, previous); more is a mistake or an attack on our memory.
pub(crate) const MAX_JWKS_KEYS: usize = 64;

/// Longest `kid` kept: ids are short names or hashes.
pub(crate) const MAX_KID_LEN: usize = 256;

/// RSA moduli ring verifies with (its `RSA_*_2048_8192_*` parameters):
/// smaller ones are breakable, larger ones a denial of service.
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// Why keys could not be read.
#[derive(Debug, Error)]
pub(crate) enum KeyError {
    /// The PEM text is not readable.
    #[error("unreadable PEM: {0}")]
    Pem(String),
    /// The PEM file has a private key where a public key belongs.
    #[error(
        "this is a private key; give the public key (`openssl pkey -pubout` prints it): a verifier never needs the private one"
    )]
    PrivateKey,
    /// The PEM file has a certificate where a public key belongs.
    #[error("this is a certificate; give its public key (`openssl x509 -pubkey -noout` prints it)")]
    Certificate,
    /// The PEM file has no `PUBLIC KEY` block.
    #[error("no \"-----BEGIN PUBLIC KEY-----\" block")]
    NoPublicKey,
    /// A public key is not usable.
    #[error(transparent)]
    Der(#[from] DerError),
    /// An RSA key outside the sizes ring verifies with.
    #[error("an RSA key of {0} bits; use 2048 to 8192 bits")]
    RsaSize(usize),
    /// The JWKS document is not JSON of the expected shape.
    #[error("not a JWKS document ({0})")]
    Jwks(String),
    /// The JWKS document has more keys than [`MAX_JWKS_KEYS`].
    #[error("the JWKS document has {0} keys, more than {MAX_JWKS_KEYS}")]
    TooManyKeys(usize),
    /// The JWKS document has no key this server can verify with.
    #[error("the JWKS document has no usable signing key ({0} skipped)")]
    NoUsableKeys(usize),
}

/// Key material, ready for ring.
enum Material {
    /// One shared secret, keyed for each HMAC hash (boxed: three keys
    /// dwarf the other variants).
    Hmac(Box<HmacKeys>),
    /// RSA modulus and exponent.
    Rsa(signature::RsaPublicKeyComponents<Vec<u8>>),
    /// An uncompressed P-256 point.
    P256(Vec<u8>),
    /// An uncompressed P-384 point.
    P384(Vec<u8>),
    /// An Ed25519 public key.
    Ed25519(Vec<u8>),
}

/// A secret keyed for each HMAC hash.
struct HmacKeys {
    sha256: hmac::Key,
    sha384: hmac::Key,
    sha512: hmac::Key,
}

/// One verification key.
pub(crate) struct Key {
    /// The JWK `kid`; PEM keys and secrets have none and match any `kid`.
    kid: Option<String>,
    /// The JWK `alg`: when set, the one algorithm the key verifies.
    alg: Option<Algorithm>,
    material: Material,
}

impl fmt::Debug for Key {
    /// Never the secret: the family, the `kid` and the pinned algorithm.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("family", &self.family())
            .field("kid", &self.kid)
            .field("alg", &self.alg.map(Algorithm::name))
            .finish()
    }
}

impl Key {
    /// A shared secret for the HS* algorithms.
    pub(crate) fn secret(secret: &[u8]) -> Key {
        Key {
            kid: None,
            alg: None,
            material: Material::Hmac(Box::new(HmacKeys {
                sha256: hmac::Key::new(hmac::HMAC_SHA256, secret),
                sha384: hmac::Key::new(hmac::HMAC_SHA384, secret),
                sha512: hmac::Key::new(hmac::HMAC_SHA512, secret),
            })),
        }
    }

    /// The public keys of a PEM text: every `PUBLIC KEY` block, at least one.
    pub(crate) fn from_pem(pem: &[u8]) -> Result<Vec<Key>, KeyError> {
        let mut keys = Vec::new();
        for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
            let (kind, der) = section.map_err(|error| KeyError::Pem(error.to_string()))?;
            match kind {
                SectionKind::PublicKey => {
                    keys.push(Key::from_public(der::parse_spki(&der)?, None, None)?)
                }
                SectionKind::PrivateKey
                | SectionKind::RsaPrivateKey
                | SectionKind::EcPrivateKey => {
                    return Err(KeyError::PrivateKey);
                }
                SectionKind::Certificate => return Err(KeyError::Certificate),
                _ => {}
            }
        }
        if keys.is_empty() {
            return Err(KeyError::NoPublicKey);
        }
        Ok(keys)
    }

    fn from_public(
        key: PublicKey,
        kid: Option<String>,
        alg: Option<Algorithm>,
    ) -> Result<Key, KeyError> {
        let material = match key {
            PublicKey::Rsa { n, e } => {
                let bits = bit_len(&n);
                if !RSA_BITS.contains(&bits) {
                    return Err(KeyError::RsaSize(bits));
                }
                Material::Rsa(signature::RsaPublicKeyComponents { n, e })
            }
            PublicKey::P256(point) => Material::P256(point),
            PublicKey::P384(point) => Material::P384(point),
            PublicKey::Ed25519(key) => Material::Ed25519(key),
        };
        let key = Key { kid, alg, material };
        match alg {
            Some(alg) if !key.fits(alg) => Err(KeyError::Jwks(format!(
                "\"alg\" {} does not fit the key type",
                alg.name()
            ))),
            _ => Ok(key),
        }
    }

    /// The key's family, as people name it: "RSA", "P-256", "Ed25519".
    pub(crate) fn family(&self) -> &'static str {
        match self.material {
            Material::Hmac(_) => "HMAC",
            Material::Rsa(_) => "RSA",
            Material::P256(_) => "P-256",
            Material::P384(_) => "P-384",
            Material::Ed25519(_) => "Ed25519",
        }
    }

    /// The key's `kid`, if it has one.
    pub(crate) fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Whether the key's family is the one `alg` signs with.
    fn fits(&self, alg: Algorithm) -> bool {
        use Algorithm::*;
        matches!(
            (&self.material, alg),
            (Material::Hmac(_), Hs256 | Hs384 | Hs512)
                | (Material::Rsa(_), Rs256 | Rs384 | Rs512 | Ps256)
                | (Material::P256(_), Es256)
                | (Material::P384(_), Es384)
                | (Material::Ed25519(_), EdDsa)
        )
    }

    /// Whether the key may verify a token signed with `alg` and naming `kid`.
    pub(crate) fn accepts(&self, alg: Algorithm, kid: Option<&str>) -> bool {
        self.fits(alg)
            && self.alg.is_none_or(|pinned| pinned == alg)
            && match (self.kid.as_deref(), kid) {
                (Some(ours), Some(theirs)) => ours == theirs,
                _ => true,
            }
    }

    /// Whether `signature` is `alg`'s signature of `message` by this key.
    /// False for an algorithm of another family.
    pub(crate) fn verify(&self, alg: Algorithm, message: &[u8], sig: &[u8]) -> bool {
        use Algorithm::*;
        let unparsed = |algorithm: &'static dyn signature::VerificationAlgorithm, key: &[u8]| {
            signature::UnparsedPublicKey::new(algorithm, key)
                .verify(message, sig)
                .is_ok()
        };
        match (&self.material, alg) {
            (Material::Hmac(keys), Hs256) => hmac::verify(&keys.sha256, message, sig).is_ok(),
            (Material::Hmac(keys), Hs384) => hmac::verify(&keys.sha384, message, sig).is_ok(),
            (Material::Hmac(keys), Hs512) => hmac::verify(&keys.sha512, message, sig).is_ok(),
            (Material::Rsa(key), Rs256) => key
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
                .is_ok(),
            (Material::Rsa(key), Rs384) => key
                .verify(&signature::RSA_PKCS1_2048_8192_SHA384, message, sig)
                .is_ok(),
            (Material::Rsa(key), Rs512) => key
                .verify(&signature::RSA_PKCS1_2048_8192_SHA512, message, sig)
                .is_ok(),
            (Material::Rsa(key), Ps256) => key
                .verify(&signature::RSA_PSS_2048_8192_SHA256, message, sig)
                .is_ok(),
            (Material::P256(point), Es256) => unparsed(&signature::ECDSA_P256_SHA256_FIXED, point),
            (Material::P384(point), Es384) => unparsed(&signature::ECDSA_P384_SHA384_FIXED, point),
            (Material::Ed25519(key), EdDsa) => unparsed(&signature::ED25519, key),
            _ => false,
        }
    }
}

/// The bit length of a big-endian unsigned integer without leading zeros.
fn bit_len(bytes: &[u8]) -> usize {
    match bytes.first() {
        None => 0,
        Some(&top) => (bytes.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

/// The verification keys in force: what the configured sources held at the
/// last (re)load. Immutable; a refresh builds a new one.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    keys: Vec<Arc<Key>>,
}

impl KeySet {
    /// A set of these keys.
    pub(crate) fn new(keys: Vec<Arc<Key>>) -> KeySet {
        KeySet { keys }
    }

    /// How many keys the set holds.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The keys that may verify a token with `alg` and `kid`.
    pub(crate) fn candidates(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> impl Iterator<Item = &Key> {
        self.keys
            .iter()
            .map(|key| &**key)
            .filter(move |key| key.accepts(alg, kid))
    }

    /// Whether any key carries this `kid`.
    pub(crate) fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|key| key.kid() == Some(kid))
    }
}

/// A JWKS document's members we read; others are ignored (RFC 7517 section 5).
#[derive(Deserialize)]
struct Document {
    keys: Vec<serde_json::Value>,
}

/// A JWK's members we read (RFC 7517 section 4, RFC 7518 section 6).
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// The signing keys of a JWKS document, and how many of its keys were
/// skipped (encryption keys, unsupported types or curves, broken members):
/// one odd key does not take the others down with it.
pub(crate) fn parse_jwks(json: &[u8]) -> Result<(Vec<Key>, usize), KeyError> {
    let document: Document =
        serde_json::from_slice(json).map_err(|error| KeyError::Jwks(error.to_string()))?;
    if document.keys.len() > MAX_JWKS_KEYS {
        return Err(KeyError::TooManyKeys(document.keys.len()));
    }
    let total = document.keys.len();
    let keys: Vec<Key> = document
        .keys
        .into_iter()
        .filter_map(|value| jwk(value).ok())
        .collect();
    let skipped = total - keys.len();
    if keys.is_empty() {
        return Err(KeyError::NoUsableKeys(skipped));
    }
    Ok((keys, skipped))
}

/// One JWK as a verification key.
fn jwk(value: serde_json::Value) -> Result<Key, KeyError> {
    let bad = |what: &str| KeyError::Jwks(what.to_owned());
    let jwk: Jwk =
        serde_json::from_value(value).map_err(|error| KeyError::Jwks(error.to_string()))?;
    if jwk.usage.as_deref().is_some_and(|usage| usage != "sig") {
        return Err(bad("not a signing key"));
    }
    if jwk
        .key_ops
        .as_ref()
        .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
    {
        return Err(bad("not a verification key"));
    }
    if jwk.kid.as_ref().is_some_and(|kid| kid.len() > MAX_KID_LEN) {
        return Err(bad("kid too long"));
    }
    let alg = match jwk.alg.as_deref() {
        None => None,
        Some(name) => Some(Algorithm::from_name(name).ok_or_else(|| bad("unsupported alg"))?),
    };
    let member = |value: &Option<String>, name: &str| {
        value
            .as_deref()
            .and_then(|text| base64url(text).ok())
            .ok_or_else(|| bad(name))
    };
    let point = |len: usize| -> Result<Vec<u8>, KeyError> {
        let (x, y) = (member(&jwk.x, "x")?, member(&jwk.y, "y")?);
        if x.len() != len || y.len() != len {
            return Err(bad("coordinate of the wrong length"));
        }
        Ok([&[der::UNCOMPRESSED_POINT][..], &x, &y].concat())
    };
    let public = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => {
            let strip = |bytes: Vec<u8>| {
                bytes
                    .into_iter()
                    .skip_while(|&b| b == 0)
                    .collect::<Vec<u8>>()
            };
            let (n, e) = (strip(member(&jwk.n, "n")?), strip(member(&jwk.e, "e")?));
            if e.is_empty() {
                return Err(bad("e"));
            }
            PublicKey::Rsa { n, e }
        }
        ("EC", Some("P-256")) => PublicKey::P256(point((der::P256_POINT_LEN - 1) / 2)?),
        ("EC", Some("P-384")) => PublicKey::P384(point((der::P384_POINT_LEN - 1) / 2)?),
        ("OKP", Some("Ed25519")) => {
            let x = member(&jwk.x, "x")?;
            if x.len() != der::ED25519_KEY_LEN {
                return Err(bad("x of the wrong length"));
            }
            PublicKey::Ed25519(x)
        }
        _ => return Err(bad("unsupported key type")),
    };
    Key::from_public(public, jwk.kid, alg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn rsa_jwk(bits: usize) -> serde_json::Value {
        let mut n = vec![0xff; bits / 8];
        n[0] = 0xc0;
        serde_json::json!({"kty": "RSA", "kid": "r", "n": b64(&n), "e": b64(&[1, 0, 1])})
    }

    #[test]
    fn a_key_verifies_only_its_own_family() {
        let secret = Key::secret(b"0123456789abcdef0123456789abcdef");
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, b"0123456789abcdef0123456789abcdef"),
            b"m",
        );
        assert!(secret.verify(Algorithm::Hs256, b"m", tag.as_ref()));
        assert!(!secret.verify(Algorithm::Hs384, b"m", tag.as_ref()));
        assert!(!secret.verify(Algorithm::Rs256, b"m", tag.as_ref()));
        for alg in Algorithm::ALL {
            assert_eq!(
                secret.accepts(alg, Some("any")),
                alg.is_hmac(),
                "{}",
                alg.name()
            );
        }

        let (keys, _) = parse_jwks(
            serde_json::json!({"keys": [rsa_jwk(2048)]})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        let rsa = &keys[0];
        let rsa_algs: Vec<_> = Algorithm::ALL
            .into_iter()
            .filter(|&alg| rsa.accepts(alg, Some("r")))
            .collect();
        assert_eq!(
            rsa_algs,
            [
                Algorithm::Rs256,
                Algorithm::Rs384,
                Algorithm::Rs512,
                Algorithm::Ps256
            ]
        );
        assert!(!rsa.accepts(Algorithm::Rs256, Some("other")));
        assert!(rsa.accepts(Algorithm::Rs256, None));
    }

    #[test]
    fn jwks_keeps_the_usable_signing_keys() {
        let p256 = serde_json::json!({"kty": "EC", "crv": "P-256", "kid": "e", "x": b64(&[1; 32]), "y": b64(&[2; 32])});
        let document = serde_json::json!({"keys": [
            rsa_jwk(2048),
            p256,
            {"kty": "OKP", "crv": "Ed25519", "x": b64(&[3; 32]), "alg": "EdDSA"},
            {"kty": "RSA", "use": "enc", "n": b64(&[0xc0; 256]), "e": "AQAB"},
            {"kty": "RSA", "key_ops": ["encrypt"], "n": b64(&[0xc0; 256]), "e": "AQAB"},
            {"kty": "EC", "crv": "P-521", "x": b64(&[1; 66]), "y": b64(&[1; 66])},
            {"kty": "EC", "crv": "P-256", "x": b64(&[1; 31]), "y": b64(&[2; 32])},
            {"kty": "oct", "k": b64(&[1; 32])},
            rsa_jwk(1024),
            {"kty": "RSA", "n": "not base64!", "e": "AQAB"},
            {"kty": "OKP", "crv": "Ed25519", "x": b64(&[3; 32]), "alg": "RS256"},
            {"kty": "OKP", "crv": "Ed25519", "x": b64(&[3; 32]), "alg": "none"},
            "not an object",
        ]});
        let (keys, skipped) = parse_jwks(document.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 3);
        assert_eq!(skipped, 10);
        assert_eq!(
            format!("{:?}", keys[2]),
            r#"Key { family: "Ed25519", kid: None, alg: Some("EdDSA") }"#
        );
        assert!(keys[2].accepts(Algorithm::EdDsa, None));
    }

    #[test]
    fn jwks_documents_that_yield_nothing_are_errors() {
        let many = serde_json::json!({"keys": vec![rsa_jwk(2048); MAX_JWKS_KEYS + 1]}).to_string();
        let cases = [
            (&b"not json"[..], "not a JWKS document"),
            (br#"{"keys": {}}"#, "not a JWKS document"),
            (br#"{"keys": []}"#, "no usable signing key (0 skipped)"),
            (
                br#"{"keys": [{"kty": "oct"}]}"#,
                "no usable signing key (1 skipped)",
            ),
            (many.as_bytes(), "more than 64"),
        ];
        for (json, expected) in cases {
            let error = parse_jwks(json).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn pem_files_must_hold_public_keys() {
        let private = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(matches!(Key::from_pem(private), Err(KeyError::PrivateKey)));
        let certificate = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            Key::from_pem(certificate),
            Err(KeyError::Certificate)
        ));
        assert!(matches!(
            Key::from_pem(b"just text"),
            Err(KeyError::NoPublicKey)
        ));
        let garbage = b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert!(matches!(Key::from_pem(garbage), Err(KeyError::Der(_))));
    }
}
