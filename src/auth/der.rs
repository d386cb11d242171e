//! Just enough DER (X.690) to take a public key out of a SubjectPublicKeyInfo
//! (RFC 5280 section 4.1.2.7): ring verifies with raw key material (an RSA
//! modulus and exponent, an uncompressed EC point, 32 Ed25519 bytes) and does
//! not parse SPKI itself. Definite lengths only, no constructed strings:
//! what DER allows and every PEM public key uses.

use thiserror::Error;

/// Why a public key could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum DerError {
    /// The bytes are not the DER structure a SubjectPublicKeyInfo has.
    #[error("not a DER SubjectPublicKeyInfo ({0})")]
    Malformed(&'static str),
    /// The key's algorithm or curve is none that a JWT algorithm here uses.
    #[error("unsupported public key type (use an RSA, P-256, P-384 or Ed25519 key); OID {0}")]
    UnsupportedAlgorithm(String),
}

/// A public key as ring verifies with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublicKey {
    /// RSA: big-endian modulus and exponent, without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// P-256: the uncompressed point (0x04, X, Y).
    P256(Vec<u8>),
    /// P-384: the uncompressed point (0x04, X, Y).
    P384(Vec<u8>),
    /// Ed25519: the 32-byte public key.
    Ed25519(Vec<u8>),
}

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_NULL: u8 = 0x05;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;

/// rsaEncryption, 1.2.840.113549.1.1.1.
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-ecPublicKey, 1.2.840.10045.2.1.
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1 (P-256), 1.2.840.10045.3.1.7.
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// secp384r1 (P-384), 1.3.132.0.34.
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
/// id-Ed25519, 1.3.101.112.
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// Uncompressed point lengths: the 0x04 marker and two coordinates.
pub(crate) const P256_POINT_LEN: usize = 1 + 2 * 32;
pub(crate) const P384_POINT_LEN: usize = 1 + 2 * 48;
/// The marker byte of an uncompressed EC point (SEC 1 section 2.3.3).
pub(crate) const UNCOMPRESSED_POINT: u8 = 0x04;
/// An Ed25519 public key's length (RFC 8032).
pub(crate) const ED25519_KEY_LEN: usize = 32;

/// Longest length field we read: four bytes is 4 GiB, far beyond any key.
const MAX_LENGTH_BYTES: usize = 4;

/// A cursor over DER bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// Reads one element with `tag` and returns its contents.
    fn read(&mut self, tag: u8) -> Result<&'a [u8], DerError> {
        let (&found, rest) = self
            .0
            .split_first()
            .ok_or(DerError::Malformed("truncated"))?;
        if found != tag {
            return Err(DerError::Malformed("unexpected element"));
        }
        let (&first, mut rest) = rest.split_first().ok_or(DerError::Malformed("truncated"))?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > MAX_LENGTH_BYTES || rest.len() < count {
                return Err(DerError::Malformed("bad length"));
            }
            let (bytes, after) = rest.split_at(count);
            rest = after;
            bytes
                .iter()
                .fold(0usize, |len, &b| (len << 8) | usize::from(b))
        };
        if rest.len() < len {
            return Err(DerError::Malformed("truncated"));
        }
        let (contents, after) = rest.split_at(len);
        self.0 = after;
        Ok(contents)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn finish(&self) -> Result<(), DerError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DerError::Malformed("trailing bytes"))
        }
    }
}

/// Reads the public key of a DER SubjectPublicKeyInfo.
pub(crate) fn parse_spki(der: &[u8]) -> Result<PublicKey, DerError> {
    let mut outer = Reader(der);
    let mut spki = Reader(outer.read(TAG_SEQUENCE)?);
    outer.finish()?;
    let mut algorithm = Reader(spki.read(TAG_SEQUENCE)?);
    let bits = spki.read(TAG_BIT_STRING)?;
    spki.finish()?;
    let key = match bits.split_first() {
        Some((0, key)) => key,
        _ => return Err(DerError::Malformed("bit string with unused bits")),
    };
    let oid = algorithm.read(TAG_OID)?;
    let key = match oid {
        OID_RSA => {
            // The parameters are NULL, which some encoders omit.
            if !algorithm.is_empty() {
                algorithm.read(TAG_NULL)?;
            }
            parse_rsa_public_key(key)?
        }
        OID_EC => match algorithm.read(TAG_OID)? {
            OID_P256 => PublicKey::P256(ec_point(key, P256_POINT_LEN)?),
            OID_P384 => PublicKey::P384(ec_point(key, P384_POINT_LEN)?),
            curve => return Err(DerError::UnsupportedAlgorithm(oid_text(curve))),
        },
        OID_ED25519 if key.len() == ED25519_KEY_LEN => PublicKey::Ed25519(key.to_vec()),
        OID_ED25519 => return Err(DerError::Malformed("Ed25519 key of the wrong length")),
        other => return Err(DerError::UnsupportedAlgorithm(oid_text(other))),
    };
    algorithm.finish()?;
    Ok(key)
}

/// Reads a PKCS#1 RSAPublicKey: a SEQUENCE of the modulus and the exponent.
fn parse_rsa_public_key(der: &[u8]) -> Result<PublicKey, DerError> {
    let mut outer = Reader(der);
    let mut key = Reader(outer.read(TAG_SEQUENCE)?);
    outer.finish()?;
    let n = unsigned(key.read(TAG_INTEGER)?)?;
    let e = unsigned(key.read(TAG_INTEGER)?)?;
    key.finish()?;
    Ok(PublicKey::Rsa { n, e })
}

/// A positive DER INTEGER as big-endian bytes without leading zeros (DER
/// adds one zero byte when the top bit is set).
fn unsigned(integer: &[u8]) -> Result<Vec<u8>, DerError> {
    if integer.first().is_none_or(|&b| b & 0x80 != 0) {
        return Err(DerError::Malformed("RSA integer not positive"));
    }
    let start = integer
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(integer.len());
    if start == integer.len() {
        return Err(DerError::Malformed("RSA integer is zero"));
    }
    Ok(integer[start..].to_vec())
}

/// An uncompressed point of the expected length (ring reads no compressed ones).
fn ec_point(point: &[u8], len: usize) -> Result<Vec<u8>, DerError> {
    if point.len() == len && point[0] == UNCOMPRESSED_POINT {
        Ok(point.to_vec())
    } else {
        Err(DerError::Malformed(
            "EC point not uncompressed or of the wrong length",
        ))
    }
}

/// An OID in dotted form, for error messages.
fn oid_text(oid: &[u8]) -> String {
    let mut arcs = Vec::new();
    let mut value: u64 = 0;
    for &b in oid {
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wraps `contents` in a DER element (short or two-byte long form).
    fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match contents.len() {
            len @ 0..0x80 => out.push(len as u8),
            len @ 0x80..0x100 => out.extend([0x81, len as u8]),
            len => out.extend([0x82, (len >> 8) as u8, len as u8]),
        }
        out.extend_from_slice(contents);
        out
    }

    fn spki(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
        let mut bits = vec![0];
        bits.extend_from_slice(key);
        tlv(
            TAG_SEQUENCE,
            &[tlv(TAG_SEQUENCE, algorithm), tlv(TAG_BIT_STRING, &bits)].concat(),
        )
    }

    fn rsa_algorithm() -> Vec<u8> {
        [tlv(TAG_OID, OID_RSA), tlv(TAG_NULL, &[])].concat()
    }

    fn rsa_key(n: &[u8], e: &[u8]) -> Vec<u8> {
        tlv(
            TAG_SEQUENCE,
            &[tlv(TAG_INTEGER, n), tlv(TAG_INTEGER, e)].concat(),
        )
    }

    fn point(len: usize) -> Vec<u8> {
        let mut point = vec![7; len];
        point[0] = UNCOMPRESSED_POINT;
        point
    }

    #[test]
    fn reads_each_key_type() {
        let mut n = vec![0x00, 0xc1];
        n.extend([0x5a; 255]);
        let rsa = spki(&rsa_algorithm(), &rsa_key(&n, &[0x01, 0x00, 0x01]));
        assert_eq!(
            parse_spki(&rsa),
            Ok(PublicKey::Rsa {
                n: n[1..].to_vec(),
                e: vec![1, 0, 1]
            })
        );

        let ec = |curve: &[u8], len| {
            spki(
                &[tlv(TAG_OID, OID_EC), tlv(TAG_OID, curve)].concat(),
                &point(len),
            )
        };
        assert_eq!(
            parse_spki(&ec(OID_P256, P256_POINT_LEN)),
            Ok(PublicKey::P256(point(P256_POINT_LEN)))
        );
        assert_eq!(
            parse_spki(&ec(OID_P384, P384_POINT_LEN)),
            Ok(PublicKey::P384(point(P384_POINT_LEN)))
        );

        let ed = spki(&tlv(TAG_OID, OID_ED25519), &[9; ED25519_KEY_LEN]);
        assert_eq!(
            parse_spki(&ed),
            Ok(PublicKey::Ed25519(vec![9; ED25519_KEY_LEN]))
        );
    }

    #[test]
    fn refuses_what_is_not_a_usable_key() {
        let secp256k1 = [0x2b, 0x81, 0x04, 0x00, 0x0a];
        let dsa = [0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01];
        let cases: Vec<(&str, Vec<u8>, DerError)> = vec![
            ("empty", vec![], DerError::Malformed("truncated")),
            (
                "not a sequence",
                tlv(TAG_INTEGER, &[1]),
                DerError::Malformed("unexpected element"),
            ),
            (
                "trailing bytes",
                [
                    spki(&tlv(TAG_OID, OID_ED25519), &[9; ED25519_KEY_LEN]),
                    vec![0],
                ]
                .concat(),
                DerError::Malformed("trailing bytes"),
            ),
            (
                "truncated",
                spki(&tlv(TAG_OID, OID_ED25519), &[9; ED25519_KEY_LEN])[..20].to_vec(),
                DerError::Malformed("truncated"),
            ),
            (
                "compressed point",
                spki(
                    &[tlv(TAG_OID, OID_EC), tlv(TAG_OID, OID_P256)].concat(),
                    &[0x02; 33],
                ),
                DerError::Malformed("EC point not uncompressed or of the wrong length"),
            ),
            (
                "P-384 point on a P-256 key",
                spki(
                    &[tlv(TAG_OID, OID_EC), tlv(TAG_OID, OID_P256)].concat(),
                    &point(P384_POINT_LEN),
                ),
                DerError::Malformed("EC point not uncompressed or of the wrong length"),
            ),
            (
                "other curve",
                spki(
                    &[tlv(TAG_OID, OID_EC), tlv(TAG_OID, &secp256k1)].concat(),
                    &point(P256_POINT_LEN),
                ),
                DerError::UnsupportedAlgorithm("1.3.132.0.10".into()),
            ),
            (
                "DSA",
                spki(&tlv(TAG_OID, &dsa), &[1; 10]),
                DerError::UnsupportedAlgorithm("1.2.840.10040.4.1".into()),
            ),
            (
                "negative modulus",
                spki(&rsa_algorithm(), &rsa_key(&[0x80, 1], &[3])),
                DerError::Malformed("RSA integer not positive"),
            ),
            (
                "zero exponent",
                spki(&rsa_algorithm(), &rsa_key(&[0x7f, 1], &[0])),
                DerError::Malformed("RSA integer is zero"),
            ),
            (
                "short Ed25519",
                spki(&tlv(TAG_OID, OID_ED25519), &[9; 31]),
                DerError::Malformed("Ed25519 key of the wrong length"),
            ),
            (
                "indefinite length",
                vec![TAG_SEQUENCE, 0x80, 0, 0],
                DerError::Malformed("bad length"),
            ),
        ];
        for (name, der, error) in cases {
            assert_eq!(parse_spki(&der), Err(error), "{name}");
        }
    }
}
