//! JWT verification (RFC 7519 over the JWS compact serialization, RFC 7515
//! section 7.1): bound the size, decode the three segments, take the
//! algorithm from the header only if the configuration accepts it, verify the
//! signature with a key of that algorithm's family, and only then read the
//! claims: `exp`, `nbf` and `iat` with a leeway, `iss` and `aud` when
//! configured, the user and the grants.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::{Map, Value};

use super::{
    base64url,
    error::{AuthError, Invalid, Unavailable},
    jwks::{JwksCache, Refetch},
    keys::{KeySet, MAX_KID_LEN},
    permissions::{self, Identity, Permissions},
    settings::{AbsentGrants, Algorithm, ClaimNames, JwtSettings},
    sources::Token,
};

/// Longest token read: real tokens are well under 2 KiB; 8 KiB leaves room
/// for generous grant claims and is still refused before any decoding, so a
/// hostile token costs a length comparison.
pub(crate) const MAX_TOKEN_LEN: usize = 8 * 1024;

/// A token split and decoded, its algorithm accepted, its signature not yet
/// checked.
pub(crate) struct Parsed<'t> {
    /// The header's `alg`, one of the configured algorithms.
    pub(crate) alg: Algorithm,
    /// The header's `kid`.
    pub(crate) kid: Option<String>,
    /// `header.payload`, the bytes the signature covers.
    signing_input: &'t str,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

/// Splits and decodes `token` and checks its header against `accepted`.
pub(crate) fn parse<'t>(token: &'t str, accepted: &[Algorithm]) -> Result<Parsed<'t>, Invalid> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Invalid::TooLarge);
    }
    let mut segments = token.splitn(4, '.');
    let (Some(header), Some(payload), Some(signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(Invalid::Malformed);
    };
    let signing_input = &token[..header.len() + 1 + payload.len()];
    let decode = |segment: &str| base64url(segment).map_err(|_| Invalid::BadBase64);
    let (header, payload, signature) = (decode(header)?, decode(payload)?, decode(signature)?);

    let header: Map<String, Value> =
        serde_json::from_slice(&header).map_err(|_| Invalid::Malformed)?;
    let alg = match header.get("alg") {
        Some(Value::String(alg)) if alg.eq_ignore_ascii_case("none") => {
            return Err(Invalid::AlgNone);
        }
        Some(Value::String(alg)) => Algorithm::from_name(alg)
            .filter(|alg| accepted.contains(alg))
            .ok_or(Invalid::AlgorithmNotAllowed)?,
        _ => return Err(Invalid::Malformed),
    };
    // RFC 7515 section 4.1.11: extensions a recipient does not understand
    // make the token invalid, and we understand none.
    if header.contains_key("crit") {
        return Err(Invalid::Malformed);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) if kid.len() <= MAX_KID_LEN => Some(kid.clone()),
        Some(_) => return Err(Invalid::Malformed),
    };
    Ok(Parsed {
        alg,
        kid,
        signing_input,
        payload,
        signature,
    })
}

impl std::fmt::Debug for Parsed<'_> {
    /// The header's facts only: the rest is the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parsed")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Parsed<'_> {
    /// Whether a key of `keys` signed the token; `None` when no key of its
    /// algorithm and `kid` is there.
    pub(crate) fn verified_by(&self, keys: &KeySet) -> Option<bool> {
        let mut candidates = keys.candidates(self.alg, self.kid.as_deref()).peekable();
        candidates.peek()?;
        Some(
            candidates
                .any(|key| key.verify(self.alg, self.signing_input.as_bytes(), &self.signature)),
        )
    }

    /// The claims, once the signature is verified.
    pub(crate) fn claims(&self) -> Result<Map<String, Value>, Invalid> {
        match serde_json::from_slice(&self.payload).map_err(|_| Invalid::Malformed)? {
            Value::Object(claims) => Ok(claims),
            _ => Err(Invalid::NotAnObject),
        }
    }
}

/// What the registered claims must satisfy.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub(crate) leeway: Duration,
    pub(crate) issuers: Vec<String>,
    pub(crate) audiences: Vec<String>,
    pub(crate) require_exp: bool,
}

/// Checks the registered claims at `now`, and returns when the token stops
/// being valid (`exp` plus the leeway).
pub(crate) fn check_claims(
    claims: &Map<String, Value>,
    rules: &Rules,
    now: SystemTime,
) -> Result<Option<SystemTime>, Invalid> {
    let now = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let leeway = rules.leeway.as_secs_f64();
    let date = |name: &str| match claims.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_f64()
            .filter(|secs| secs.is_finite())
            .map(Some)
            .ok_or(Invalid::BadClaim),
    };
    let expires_at = match date("exp")? {
        Some(exp) if now >= exp + leeway => return Err(Invalid::Expired),
        Some(exp) => Some(
            Duration::try_from_secs_f64(exp + leeway)
                .ok()
                .and_then(|since| UNIX_EPOCH.checked_add(since))
                .ok_or(Invalid::BadClaim)?,
        ),
        None if rules.require_exp => return Err(Invalid::MissingExpiry),
        None => None,
    };
    if date("nbf")?.is_some_and(|nbf| now + leeway < nbf) {
        return Err(Invalid::NotYetValid);
    }
    if date("iat")?.is_some_and(|iat| iat > now + leeway) {
        return Err(Invalid::IssuedInFuture);
    }
    if !rules.issuers.is_empty() {
        let issuer = claims.get("iss").and_then(Value::as_str);
        if !issuer.is_some_and(|issuer| rules.issuers.iter().any(|accepted| accepted == issuer)) {
            return Err(Invalid::WrongIssuer);
        }
    }
    if !rules.audiences.is_empty() {
        // RFC 7519 section 4.1.3: one string, or an array of strings.
        let accepted = |aud: &Value| {
            aud.as_str()
                .is_some_and(|aud| rules.audiences.iter().any(|ours| ours == aud))
        };
        let named = match claims.get("aud") {
            Some(Value::Array(auds)) => auds.iter().any(accepted),
            Some(aud) => accepted(aud),
            None => false,
        };
        if !named {
            return Err(Invalid::WrongAudience);
        }
    }
    Ok(expires_at)
}

/// Verifies tokens against the configured algorithms, keys and rules.
#[derive(Debug)]
pub(crate) struct Verifier {
    algorithms: Vec<Algorithm>,
    /// Secrets, PEM keys and JWKS files: loaded once.
    fixed: KeySet,
    /// JWKS URLs: refetched.
    remote: Vec<Arc<JwksCache>>,
    rules: Rules,
    claims: ClaimNames,
    absent: AbsentGrants,
}

impl Verifier {
    /// A verifier of loaded keys.
    pub(crate) fn new(
        settings: &JwtSettings,
        fixed: KeySet,
        remote: Vec<Arc<JwksCache>>,
        claims: ClaimNames,
        absent: AbsentGrants,
    ) -> Verifier {
        Verifier {
            algorithms: settings.algorithms.clone(),
            fixed,
            remote,
            rules: Rules {
                leeway: settings.leeway,
                issuers: settings.issuers.clone(),
                audiences: settings.audiences.clone(),
                require_exp: settings.require_exp,
            },
            claims,
            absent,
        }
    }

    /// The JWKS caches, for their statistics.
    pub(crate) fn remote(&self) -> &[Arc<JwksCache>] {
        &self.remote
    }

    /// Verifies `token` now and returns who it names.
    pub(crate) async fn verify(&self, token: &Token) -> Result<Identity, AuthError> {
        let parsed = parse(token.as_str(), &self.algorithms)?;
        self.check_signature(&parsed).await?;
        Ok(self.identity(&parsed.claims()?, SystemTime::now())?)
    }

    /// Finds a key that verifies the signature: the fixed keys, then each
    /// JWKS, refetching one whose set lacks the token's `kid` (the
    /// provider may have rotated keys since the last fetch).
    async fn check_signature(&self, parsed: &Parsed<'_>) -> Result<(), AuthError> {
        let mut found = parsed.verified_by(&self.fixed);
        let mut unavailable = false;
        for cache in &self.remote {
            if found == Some(true) {
                break;
            }
            let keys = cache.keys();
            let known_kid = parsed.kid.as_deref().is_none_or(|kid| keys.has_kid(kid));
            let mut verdict = parsed.verified_by(&keys);
            if verdict.is_none() || !known_kid {
                match cache.refetch().await {
                    Refetch::Fetched => verdict = parsed.verified_by(&cache.keys()),
                    Refetch::Failed => unavailable = true,
                    Refetch::RateLimited { never_loaded } => unavailable |= never_loaded,
                }
            }
            found = match (found, verdict) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), _) | (_, Some(false)) => Some(false),
                (None, None) => None,
            };
        }
        match found {
            Some(true) => Ok(()),
            Some(false) => Err(Invalid::BadSignature.into()),
            None if unavailable => Err(Unavailable::Jwks.into()),
            None => Err(Invalid::UnknownKey.into()),
        }
    }

    /// The identity verified claims state at `now`.
    pub(crate) fn identity(
        &self,
        claims: &Map<String, Value>,
        now: SystemTime,
    ) -> Result<Identity, Invalid> {
        let expires_at = check_claims(claims, &self.rules, now)?;
        Ok(Identity {
            user: permissions::user_id(claims.get(&self.claims.user))?,
            expires_at,
            permissions: Permissions::from_object(
                claims,
                &self.claims.join,
                &self.claims.publish,
                self.absent,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::Key;
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use serde_json::json;

    const SECRET: &[u8] = b"a shared secret of at least 32 bytes, for HS256";

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// An HS256 token made by hand: the pure parts' tests need exact control
    /// over every segment (the PyJWT-signed tokens are in `auth::tests`).
    fn token(header: &str, payload: &str) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET),
            input.as_bytes(),
        );
        format!("{input}.{}", b64(tag.as_ref()))
    }

    #[test]
    fn parse_refuses_bad_shapes_and_headers() {
        let hs = [Algorithm::Hs256];
        let good = token(r#"{"alg":"HS256","kid":"k"}"#, r#"{"sub":"a"}"#);
        let parsed = parse(&good, &hs).unwrap();
        assert_eq!(
            (parsed.alg, parsed.kid.as_deref()),
            (Algorithm::Hs256, Some("k"))
        );

        let cases: Vec<(String, Invalid)> = vec![
            ("x".repeat(MAX_TOKEN_LEN + 1), Invalid::TooLarge),
            ("a.b".into(), Invalid::Malformed),
            ("a.b.c.d".into(), Invalid::Malformed),
            (format!("{good}."), Invalid::Malformed),
            (good.replacen('.', ".!", 1), Invalid::BadBase64),
            (format!("{good}="), Invalid::BadBase64),
            (token(r#"{"alg":"none"}"#, "{}"), Invalid::AlgNone),
            (token(r#"{"alg":"None"}"#, "{}"), Invalid::AlgNone),
            (
                token(r#"{"alg":"RS256"}"#, "{}"),
                Invalid::AlgorithmNotAllowed,
            ),
            (
                token(r#"{"alg":"hs256"}"#, "{}"),
                Invalid::AlgorithmNotAllowed,
            ),
            (
                token(r#"{"alg":"HS1"}"#, "{}"),
                Invalid::AlgorithmNotAllowed,
            ),
            (token(r#"{"typ":"JWT"}"#, "{}"), Invalid::Malformed),
            (token(r#"["HS256"]"#, "{}"), Invalid::Malformed),
            (
                token(r#"{"alg":"HS256","crit":["exp"]}"#, "{}"),
                Invalid::Malformed,
            ),
            (
                token(r#"{"alg":"HS256","kid":7}"#, "{}"),
                Invalid::Malformed,
            ),
        ];
        for (token, invalid) in cases {
            assert_eq!(parse(&token, &hs).unwrap_err(), invalid, "{token:.60}");
        }
    }

    #[test]
    fn signature_then_payload() {
        let keys = KeySet::new(vec![Arc::new(Key::secret(SECRET))]);
        let hs = [Algorithm::Hs256];
        let good = token(r#"{"alg":"HS256"}"#, r#"{"sub":"a"}"#);
        let parsed = parse(&good, &hs).unwrap();
        assert_eq!(parsed.verified_by(&keys), Some(true));
        assert_eq!(parsed.verified_by(&KeySet::default()), None);

        let (input, _) = good.rsplit_once('.').unwrap();
        let forged = format!("{input}.{}", b64(b"not the tag"));
        assert_eq!(parse(&forged, &hs).unwrap().verified_by(&keys), Some(false));

        for (payload, expected) in [
            ("[1,2]", Invalid::NotAnObject),
            ("\"text\"", Invalid::NotAnObject),
            ("{", Invalid::Malformed),
        ] {
            let parsed_token = token(r#"{"alg":"HS256"}"#, payload);
            let parsed = parse(&parsed_token, &hs).unwrap();
            assert_eq!(parsed.verified_by(&keys), Some(true));
            assert_eq!(parsed.claims().unwrap_err(), expected, "{payload}");
        }
    }

    #[test]
    fn registered_claims_with_leeway() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let rules = Rules {
            leeway: Duration::from_secs(10),
            issuers: vec!["https://idp".into()],
            audiences: vec!["wsedge".into()],
            require_exp: true,
        };
        let base = json!({"iss": "https://idp", "aud": "wsedge", "exp": 1_000_100});
        let with = |patch: Value| {
            let mut claims = base.as_object().unwrap().clone();
            for (name, value) in patch.as_object().unwrap() {
                if value.is_null() {
                    claims.remove(name);
                } else {
                    claims.insert(name.clone(), value.clone());
                }
            }
            claims
        };
        let at = |secs: u64| Ok(Some(UNIX_EPOCH + Duration::from_secs(secs)));
        let cases = [
            (json!({}), at(1_000_110)),
            (json!({"exp": 999_991}), at(1_000_001)),
            (json!({"exp": 999_990}), Err(Invalid::Expired)),
            (
                json!({"exp": 1_000_000.5}),
                Ok(Some(UNIX_EPOCH + Duration::from_secs_f64(1_000_010.5))),
            ),
            (json!({"exp": "tomorrow"}), Err(Invalid::BadClaim)),
            (json!({"exp": 1e300}), Err(Invalid::BadClaim)),
            (json!({"exp": null}), Err(Invalid::MissingExpiry)),
            (json!({"nbf": 1_000_010}), at(1_000_110)),
            (json!({"nbf": 1_000_011}), Err(Invalid::NotYetValid)),
            (json!({"iat": 1_000_010}), at(1_000_110)),
            (json!({"iat": 1_000_011}), Err(Invalid::IssuedInFuture)),
            (json!({"iat": []}), Err(Invalid::BadClaim)),
            (json!({"iss": "https://other"}), Err(Invalid::WrongIssuer)),
            (json!({"iss": null}), Err(Invalid::WrongIssuer)),
            (json!({"iss": 1}), Err(Invalid::WrongIssuer)),
            (json!({"aud": ["x", "wsedge"]}), at(1_000_110)),
            (json!({"aud": ["x", "y"]}), Err(Invalid::WrongAudience)),
            (json!({"aud": "x"}), Err(Invalid::WrongAudience)),
            (json!({"aud": null}), Err(Invalid::WrongAudience)),
        ];
        for (patch, expected) in cases {
            assert_eq!(
                check_claims(&with(patch.clone()), &rules, now),
                expected,
                "{patch}"
            );
        }

        let lax = Rules {
            leeway: Duration::ZERO,
            issuers: vec![],
            audiences: vec![],
            require_exp: false,
        };
        assert_eq!(check_claims(&Map::new(), &lax, now), Ok(None));
        let at_exp = json!({"exp": 1_000_000});
        assert_eq!(
            check_claims(at_exp.as_object().unwrap(), &lax, now),
            Err(Invalid::Expired),
            "exp is exclusive"
        );
    }
}
