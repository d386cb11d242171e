//! `[auth]` and `[auth.webhook]`: which JWT algorithms are accepted and
//! where their keys come from, the checks on a token's claims, where tokens
//! are read from, which claims carry the user and the grants, and the
//! connect webhook.
//!
//! Everything here is the settings' shape; the key and CA files are read by
//! the load step, which reports a file it cannot use at the key recorded in
//! [`AuthFiles`]. A value reported here is left out of the settings (a key
//! source, an algorithm), so that the load step does not report it again.

use std::{collections::HashSet, ops::Range, path::Path};

use hyper::header::HeaderName;
use toml::Spanned;

use super::fields;
use crate::{
    auth::{
        Algorithm, AuthSettings, JwtSettings, KeySource, Scheme, TokenSource, check_url,
        settings::{
            ClaimNames, DEFAULT_COOKIE, DEFAULT_FIRST_MESSAGE_TIMEOUT, DEFAULT_JOIN_CLAIM,
            DEFAULT_JWKS_MIN_REFETCH, DEFAULT_JWKS_REFRESH, DEFAULT_JWKS_TIMEOUT, DEFAULT_LEEWAY,
            DEFAULT_PROTOCOL_MARKER, DEFAULT_PUBLISH_CLAIM, DEFAULT_QUERY_PARAMETER,
            DEFAULT_USER_CLAIM, DEFAULT_WEBHOOK_HEADERS, DEFAULT_WEBHOOK_TIMEOUT, JwksUrlSettings,
            SourceKind, WebhookSettings,
        },
    },
    config::{
        keyword::{self, Word},
        load::{AuthFiles, Named},
        raw::{Field, RawAuth, RawWebhook},
        report::Scope,
    },
};

/// Validates `[auth]`; `None` without the table. `scope` is the table's.
pub(super) fn validate(
    raw: Field<RawAuth>,
    base_dir: &Path,
    scope: &mut Scope<'_, '_>,
) -> Option<(AuthSettings, AuthFiles)> {
    let table = raw?;
    let span = table.span();
    let raw = table.into_inner();
    let mut files = AuthFiles {
        table: span.clone(),
        ..AuthFiles::default()
    };
    let webhook_present = raw.webhook.is_some();
    let jwt = jwt(&raw, base_dir, &mut files, scope);
    let sources = match jwt {
        Some(_) => sources(&raw, webhook_present, scope),
        None => TokenSource::defaults(),
    };
    if raw.algorithms.is_none() && first_jwt_key(&raw).is_none() && !webhook_present {
        scope.error(span, "", "[auth] needs a verifier: set `algorithms` and where their keys come from (`secret_file`, `public_keys`, `jwks_file` or `jwks_url`), or add an [auth.webhook] table");
    }
    let webhook = raw.webhook.and_then(|webhook| {
        self::webhook(webhook, base_dir, &mut files, &mut scope.table("webhook"))
    });
    let settings = AuthSettings {
        jwt,
        webhook,
        sources,
        claims: ClaimNames {
            user: claim(
                raw.user_claim.as_ref(),
                "user_claim",
                DEFAULT_USER_CLAIM,
                scope,
            ),
            join: claim(
                raw.join_claim.as_ref(),
                "join_claim",
                DEFAULT_JOIN_CLAIM,
                scope,
            ),
            publish: claim(
                raw.publish_claim.as_ref(),
                "publish_claim",
                DEFAULT_PUBLISH_CLAIM,
                scope,
            ),
        },
        absent_grants: fields::keyword(raw.absent_grants.as_ref(), "absent_grants", scope)
            .unwrap_or_default(),
        first_message_timeout: fields::duration(
            raw.first_message_timeout.as_ref(),
            "first_message_timeout",
            DEFAULT_FIRST_MESSAGE_TIMEOUT,
            scope,
        ),
    };
    Some((settings, files))
}

/// The keys that only JWT verification reads, with where each was written.
fn jwt_keys(raw: &RawAuth) -> [(&'static str, Option<Range<usize>>); 20] {
    use fields::span;
    [
        ("secret_file", span(&raw.secret_file)),
        ("public_keys", span(&raw.public_keys)),
        ("jwks_file", span(&raw.jwks_file)),
        ("jwks_url", span(&raw.jwks_url)),
        ("jwks_refresh", span(&raw.jwks_refresh)),
        ("jwks_min_refetch", span(&raw.jwks_min_refetch)),
        ("jwks_timeout", span(&raw.jwks_timeout)),
        ("ca_file", span(&raw.ca_file)),
        ("leeway", span(&raw.leeway)),
        ("issuers", span(&raw.issuers)),
        ("audiences", span(&raw.audiences)),
        ("require_exp", span(&raw.require_exp)),
        ("sources", span(&raw.sources)),
        ("cookie", span(&raw.cookie)),
        ("protocol_marker", span(&raw.protocol_marker)),
        ("query_parameter", span(&raw.query_parameter)),
        ("first_message_timeout", span(&raw.first_message_timeout)),
        ("user_claim", span(&raw.user_claim)),
        ("join_claim", span(&raw.join_claim)),
        ("publish_claim", span(&raw.publish_claim)),
    ]
}

/// The JWT key written first in the file, if any.
fn first_jwt_key(raw: &RawAuth) -> Option<(&'static str, Range<usize>)> {
    jwt_keys(raw)
        .into_iter()
        .filter_map(|(name, span)| span.map(|span| (name, span)))
        .min_by_key(|(_, span)| span.start)
}

/// JWT verification; `None` without `algorithms` (an error if another JWT
/// key is set). Records in `files` where each key source was named.
fn jwt(
    raw: &RawAuth,
    base_dir: &Path,
    files: &mut AuthFiles,
    scope: &mut Scope<'_, '_>,
) -> Option<JwtSettings> {
    let Some(list) = raw.algorithms.as_ref() else {
        if let Some((name, span)) = first_jwt_key(raw) {
            scope.error(span, "algorithms", format!("missing `algorithms`: `{name}` belongs to JWT verification, which needs the algorithms your tokens are signed with; {}", keyword::choices::<Algorithm>()));
        }
        return None;
    };
    let secret = raw.secret_file.as_ref();
    let algorithms = accepted_algorithms(raw, list, files, scope);
    let (any_hmac, any_public) = families_written(list);
    let mut keys = Vec::new();
    if let Some(path) = secret {
        if any_hmac {
            keys.push(KeySource::Secret(fields::resolve(base_dir, path.get_ref())));
            files.keys.push(Named::new(path.span(), "secret_file"));
        } else {
            scope.error(path.span(), "secret_file", "a secret verifies HS256, HS384 and HS512 tokens, and `algorithms` lists none of them; add one, or remove `secret_file`");
        }
    }
    let public_sources = [
        ("public_keys", fields::span(&raw.public_keys)),
        ("jwks_file", fields::span(&raw.jwks_file)),
        ("jwks_url", fields::span(&raw.jwks_url)),
    ];
    if !any_public {
        for (name, span) in public_sources {
            if let Some(span) = span {
                scope.error(span, name, format!("public keys verify RS*, PS256, ES* and EdDSA tokens, and `algorithms` lists none of them; add one, or remove `{name}`"));
            }
        }
    } else {
        public_keys(raw, base_dir, &mut keys, files, scope);
    }
    let jwks_url = jwks_url(raw, base_dir, any_public, scope);
    if let Some((url, named)) = jwks_url {
        keys.push(KeySource::JwksUrl(url));
        files.keys.push(named);
    }
    let sources_written = usize::from(secret.is_some())
        // An empty list was meant to name a key.
        + raw
            .public_keys
            .as_ref()
            .map_or(0, |list| list.get_ref().len().max(1))
        + usize::from(raw.jwks_file.is_some())
        + usize::from(raw.jwks_url.is_some());
    files.keys_left_out = keys.len() < sources_written;
    Some(JwtSettings {
        algorithms,
        keys,
        leeway: fields::duration_or_zero(raw.leeway.as_ref(), "leeway", DEFAULT_LEEWAY, scope),
        issuers: names(raw.issuers.as_ref(), "issuers", "an issuer", scope),
        audiences: names(raw.audiences.as_ref(), "audiences", "an audience", scope),
        require_exp: raw
            .require_exp
            .as_ref()
            .is_none_or(|value| *value.get_ref()),
    })
}

/// The entries of `algorithms` that are known, listed once and have a key
/// source of their kind (the others are reported and left out).
fn accepted_algorithms(
    raw: &RawAuth,
    list: &Spanned<Vec<Spanned<Word<Algorithm>>>>,
    files: &mut AuthFiles,
    scope: &mut Scope<'_, '_>,
) -> Vec<Algorithm> {
    let has_secret = raw.secret_file.is_some();
    let has_public = raw.public_keys.is_some() || raw.jwks_file.is_some() || raw.jwks_url.is_some();
    if list.get_ref().is_empty() {
        scope.error(
            list.span(),
            "algorithms",
            format!(
                "an empty list accepts no token; {}",
                keyword::choices::<Algorithm>()
            ),
        );
    }
    let mut algorithms = Vec::new();
    for entry in list.get_ref() {
        let Some(alg) = fields::keyword(Some(entry), "algorithms", scope) else {
            continue;
        };
        let problem = if algorithms.contains(&alg) {
            Some(format!("{} is listed twice", alg.name()))
        } else if alg.is_hmac() && !has_secret {
            Some(format!(
                "{} verifies with a shared secret; set `secret_file` to a file that holds it",
                alg.name()
            ))
        } else if !alg.is_hmac() && !has_public {
            Some(format!(
                "{} verifies with public keys; set `public_keys` (PEM files), `jwks_file` or `jwks_url`",
                alg.name()
            ))
        } else {
            None
        };
        match problem {
            Some(message) => scope.error(entry.span(), "algorithms", message),
            None => {
                algorithms.push(alg);
                files.algorithms.push((alg, entry.span()));
            }
        }
    }
    algorithms
}

/// Whether `algorithms` names an HS* algorithm, and one of the others. An
/// unknown word counts as both, so that a misspelt algorithm is reported
/// once, not again at a key source it would have used.
fn families_written(list: &Spanned<Vec<Spanned<Word<Algorithm>>>>) -> (bool, bool) {
    list.get_ref()
        .iter()
        .fold((false, false), |(hmac, public), entry| {
            match entry.get_ref() {
                Word::Known(alg) => (hmac || alg.is_hmac(), public || !alg.is_hmac()),
                Word::Unknown(_) => (true, true),
            }
        })
}

/// `public_keys` (PEM files) and `jwks_file`, appended to `keys`.
fn public_keys(
    raw: &RawAuth,
    base_dir: &Path,
    keys: &mut Vec<KeySource>,
    files: &mut AuthFiles,
    scope: &mut Scope<'_, '_>,
) {
    if let Some(list) = raw.public_keys.as_ref() {
        if list.get_ref().is_empty() {
            scope.error(list.span(), "public_keys", "an empty list names no key; list PEM files of public keys, or remove `public_keys`");
        }
        for entry in list.get_ref() {
            keys.push(KeySource::PemFile(fields::resolve(
                base_dir,
                entry.get_ref(),
            )));
            files.keys.push(Named::new(entry.span(), "public_keys"));
        }
    }
    if let Some(path) = raw.jwks_file.as_ref() {
        keys.push(KeySource::JwksFile(fields::resolve(
            base_dir,
            path.get_ref(),
        )));
        files.keys.push(Named::new(path.span(), "jwks_file"));
    }
}

/// `jwks_url` with its interval, timeout and CA keys, which are errors
/// without it. `None` (reported) when absent or unusable; with the URL, the
/// place load reports its CA file at.
fn jwks_url(
    raw: &RawAuth,
    base_dir: &Path,
    used: bool,
    scope: &mut Scope<'_, '_>,
) -> Option<(JwksUrlSettings, Named)> {
    let Some(url) = raw.jwks_url.as_ref() else {
        let dependent = [
            ("jwks_refresh", fields::span(&raw.jwks_refresh)),
            ("jwks_min_refetch", fields::span(&raw.jwks_min_refetch)),
            ("jwks_timeout", fields::span(&raw.jwks_timeout)),
            ("ca_file", fields::span(&raw.ca_file)),
        ];
        for (name, span) in dependent {
            if let Some(span) = span {
                scope.error(span, name, format!("`{name}` applies to `jwks_url`, which is not set; set it, or remove `{name}`"));
            }
        }
        return None;
    };
    if !used {
        // Reported with the other public key sources.
        return None;
    }
    let settings = JwksUrlSettings {
        url: url.get_ref().clone(),
        refresh: fields::duration(
            raw.jwks_refresh.as_ref(),
            "jwks_refresh",
            DEFAULT_JWKS_REFRESH,
            scope,
        ),
        min_refetch: fields::duration(
            raw.jwks_min_refetch.as_ref(),
            "jwks_min_refetch",
            DEFAULT_JWKS_MIN_REFETCH,
            scope,
        ),
        timeout: fields::duration(
            raw.jwks_timeout.as_ref(),
            "jwks_timeout",
            DEFAULT_JWKS_TIMEOUT,
            scope,
        ),
        ca_file: raw
            .ca_file
            .as_ref()
            .map(|path| fields::resolve(base_dir, path.get_ref())),
    };
    let named = match raw.ca_file.as_ref() {
        Some(path) => Named::new(path.span(), "ca_file"),
        None => Named::new(url.span(), "jwks_url"),
    };
    endpoint(url, "jwks_url", raw.ca_file.as_ref(), "ca_file", scope).then_some((settings, named))
}

/// Whether an endpoint URL and the CA file that goes with it are usable
/// (what is not, is reported).
fn endpoint(
    url: &Spanned<String>,
    url_key: &str,
    ca_file: Option<&Spanned<String>>,
    ca_key: &str,
    scope: &mut Scope<'_, '_>,
) -> bool {
    match (check_url(url.get_ref()), ca_file) {
        (Err(error), _) => {
            scope.error(url.span(), url_key, error.to_string());
            false
        }
        (Ok(Scheme::LoopbackHttp), Some(ca_file)) => {
            scope.error(ca_file.span(), ca_key, format!("`{ca_key}` verifies an https:// server, and `{url_key}` is plain http:// to this machine; remove `{ca_key}`, or use https://"));
            false
        }
        (Ok(_), _) => true,
    }
}

/// `sources`, with the names of the cookie, the protocol marker and the
/// query parameter, each of which is an error when its source is not used.
fn sources(raw: &RawAuth, webhook: bool, scope: &mut Scope<'_, '_>) -> Vec<TokenSource> {
    let kinds: Vec<SourceKind> = match raw.sources.as_ref() {
        None => TokenSource::defaults()
            .iter()
            .map(TokenSource::kind)
            .collect(),
        Some(list) => source_kinds(list, webhook, scope),
    };
    let named = [
        (SourceKind::Cookie, "cookie", raw.cookie.as_ref()),
        (
            SourceKind::Protocol,
            "protocol_marker",
            raw.protocol_marker.as_ref(),
        ),
        (
            SourceKind::Query,
            "query_parameter",
            raw.query_parameter.as_ref(),
        ),
        (
            SourceKind::FirstMessage,
            "first_message_timeout",
            raw.first_message_timeout.as_ref(),
        ),
    ];
    for (kind, name, field) in named {
        if let (Some(value), false) = (field, kinds.contains(&kind)) {
            scope.error(value.span(), name, format!("`{name}` applies to the {:?} token source, which `sources` does not list; add it there, or remove `{name}`", kind.as_str()));
        }
    }
    let cookie = source_name(
        raw.cookie.as_ref(),
        "cookie",
        DEFAULT_COOKIE,
        fields::is_token,
        "letters, digits and !#$%&'*+-.^_`|~, such as \"access_token\"",
        scope,
    );
    let marker = source_name(
        raw.protocol_marker.as_ref(),
        "protocol_marker",
        DEFAULT_PROTOCOL_MARKER,
        fields::is_token,
        "a subprotocol token such as \"bearer\"",
        scope,
    );
    let query = source_name(
        raw.query_parameter.as_ref(),
        "query_parameter",
        DEFAULT_QUERY_PARAMETER,
        is_query_name,
        "letters, digits and -._~, such as \"access_token\"",
        scope,
    );
    kinds
        .into_iter()
        .map(|kind| match kind {
            SourceKind::Bearer => TokenSource::Bearer,
            SourceKind::Cookie => TokenSource::Cookie(cookie.clone()),
            SourceKind::Protocol => TokenSource::Protocol(marker.clone()),
            SourceKind::Query => TokenSource::Query(query.clone()),
            SourceKind::FirstMessage => TokenSource::FirstMessage,
        })
        .collect()
}

/// The entries of `sources`: each once, the first message last and not
/// beside a webhook. Bad entries are reported and left out.
fn source_kinds(
    list: &Spanned<Vec<Spanned<Word<SourceKind>>>>,
    webhook: bool,
    scope: &mut Scope<'_, '_>,
) -> Vec<SourceKind> {
    if list.get_ref().is_empty() {
        scope.error(
            list.span(),
            "sources",
            format!(
                "an empty list reads no token; {}",
                keyword::choices::<SourceKind>()
            ),
        );
    }
    let mut kinds = Vec::new();
    let last = list.get_ref().len().saturating_sub(1);
    for (index, entry) in list.get_ref().iter().enumerate() {
        let Some(kind) = fields::keyword(Some(entry), "sources", scope) else {
            continue;
        };
        let problem = match kind {
            _ if kinds.contains(&kind) => Some(format!("{:?} is listed twice", kind.as_str())),
            SourceKind::FirstMessage if index != last => Some("\"first_message\" must be the last source: the connection is upgraded to wait for it, so nothing is looked for after it; move it to the end".to_owned()),
            SourceKind::FirstMessage if webhook => Some("with an [auth.webhook], a handshake without a token is decided by the webhook, so \"first_message\" would never be used; remove one of them".to_owned()),
            _ => None,
        };
        match problem {
            Some(message) => scope.error(entry.span(), "sources", message),
            None => kinds.push(kind),
        }
    }
    kinds
}

/// Whether `text` is a query parameter name that needs no percent-encoding
/// (RFC 3986 section 2.3): parameters are compared undecoded.
fn is_query_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// The cookie, marker or parameter name `name`; `default` when absent or bad.
fn source_name(
    field: Option<&Spanned<String>>,
    name: &str,
    default: &str,
    valid: fn(&str) -> bool,
    hint: &str,
    scope: &mut Scope<'_, '_>,
) -> String {
    match field {
        Some(value) if valid(value.get_ref()) => value.get_ref().clone(),
        Some(value) => {
            scope.error(
                value.span(),
                name,
                format!("{:?} is not a valid `{name}`; use {hint}", value.get_ref()),
            );
            default.to_owned()
        }
        None => default.to_owned(),
    }
}

/// A claim name; `default` when absent or empty (reported).
fn claim(
    field: Option<&Spanned<String>>,
    name: &str,
    default: &str,
    scope: &mut Scope<'_, '_>,
) -> String {
    match field {
        Some(value) if !value.get_ref().is_empty() => value.get_ref().clone(),
        Some(value) => {
            scope.error(
                value.span(),
                name,
                format!("an empty claim name matches no claim; name one such as {default:?}"),
            );
            default.to_owned()
        }
        None => default.to_owned(),
    }
}

/// `issuers` or `audiences`: non-empty strings, each once.
fn names(
    field: Option<&Spanned<Vec<Spanned<String>>>>,
    name: &str,
    what: &str,
    scope: &mut Scope<'_, '_>,
) -> Vec<String> {
    let Some(list) = field else { return Vec::new() };
    let mut accepted: Vec<String> = Vec::new();
    for entry in list.get_ref() {
        let value = entry.get_ref();
        if value.is_empty() {
            scope.error(entry.span(), name, format!("an empty string is not {what}; write it as tokens carry it, such as \"https://idp.example.com/\""));
        } else if accepted.contains(value) {
            scope.error(entry.span(), name, format!("{value:?} is listed twice"));
        } else {
            accepted.push(value.clone());
        }
    }
    accepted
}

/// `[auth.webhook]`; `None` when its URL is missing or unusable (reported).
/// `scope` is the table's.
fn webhook(
    table: Spanned<RawWebhook>,
    base_dir: &Path,
    files: &mut AuthFiles,
    scope: &mut Scope<'_, '_>,
) -> Option<WebhookSettings> {
    let span = table.span();
    let raw = table.into_inner();
    fields::require(
        raw.url.as_ref(),
        &span,
        "url",
        "the backend endpoint wsedge POSTs each handshake to, such as \"https://app.internal/ws-auth\"",
        scope,
    );
    let timeout = fields::duration(
        raw.timeout.as_ref(),
        "timeout",
        DEFAULT_WEBHOOK_TIMEOUT,
        scope,
    );
    let headers = match raw.headers.as_ref() {
        None => DEFAULT_WEBHOOK_HEADERS.map(String::from).to_vec(),
        Some(list) => header_names(list, scope),
    };
    let url = raw.url.as_ref()?;
    if !endpoint(url, "url", raw.ca_file.as_ref(), "ca_file", scope) {
        return None;
    }
    files.webhook_ca_file = fields::span(&raw.ca_file);
    Some(WebhookSettings {
        url: url.get_ref().clone(),
        timeout,
        headers,
        ca_file: raw
            .ca_file
            .as_ref()
            .map(|path| fields::resolve(base_dir, path.get_ref())),
    })
}

/// The request headers passed to the webhook, lower case, each once.
fn header_names(list: &Spanned<Vec<Spanned<String>>>, scope: &mut Scope<'_, '_>) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut names = Vec::new();
    for entry in list.get_ref() {
        match HeaderName::from_bytes(entry.get_ref().as_bytes()) {
            Err(_) => scope.error(
                entry.span(),
                "headers",
                format!(
                    "{:?} is not a header name; use names such as \"cookie\" or \"x-session\"",
                    entry.get_ref()
                ),
            ),
            // HeaderName is lower case.
            Ok(name) if !seen.insert(name.clone()) => scope.error(
                entry.span(),
                "headers",
                format!(
                    "{:?} is listed twice (header names are case-insensitive)",
                    entry.get_ref()
                ),
            ),
            Ok(name) => names.push(name.as_str().to_owned()),
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{
        auth::{
            Algorithm, AuthSettings, JwtSettings, KeySource, TokenSource,
            permissions::Rooms,
            settings::{AbsentGrants, ClaimNames, JwksUrlSettings, WebhookSettings},
        },
        config::{AuthMode, ChannelAuth, Config},
    };

    const SERVER: &str = "[server]\nplain = [\"127.0.0.1:8080\"]\n";

    fn load(toml: &str) -> Config {
        Config::from_toml_str(&format!("{SERVER}{toml}")).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_key_lands_in_its_setting() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        std::fs::write(dir.path().join("ed.pem"), key.public_key_pem()).unwrap();
        std::fs::write(dir.path().join("secret"), "s".repeat(32)).unwrap();
        let file = dir.path().join("wsedge.toml");
        std::fs::write(
            &file,
            format!(
                r#"{SERVER}
[auth]
algorithms = ["HS256", "EdDSA"]
secret_file = "secret"
public_keys = ["ed.pem"]
jwks_url = "https://idp.example.com/jwks"
jwks_refresh = "10m"
jwks_min_refetch = "1m"
jwks_timeout = "3s"
leeway = "0s"
issuers = ["https://idp.example.com/"]
audiences = ["wsedge"]
require_exp = false
sources = ["cookie", "query", "protocol"]
cookie = "session"
query_parameter = "token"
protocol_marker = "jwt"
user_claim = "uid"
join_claim = "rooms"
publish_claim = "talk"
absent_grants = "allow_all"
[auth.webhook]
url = "http://localhost:9000/auth"
timeout = "1s"
headers = ["X-Session"]
"#
            ),
        )
        .unwrap();
        let config = Config::from_file(&file).unwrap_or_else(|e| panic!("{e}"));
        let dir = std::path::absolute(dir.path()).unwrap();
        let expected = AuthSettings {
            jwt: Some(JwtSettings {
                algorithms: vec![Algorithm::Hs256, Algorithm::EdDsa],
                keys: vec![
                    KeySource::Secret(dir.join("secret")),
                    KeySource::PemFile(dir.join("ed.pem")),
                    KeySource::JwksUrl(JwksUrlSettings {
                        url: "https://idp.example.com/jwks".into(),
                        refresh: Duration::from_secs(600),
                        min_refetch: Duration::from_secs(60),
                        timeout: Duration::from_secs(3),
                        ca_file: None,
                    }),
                ],
                leeway: Duration::ZERO,
                issuers: vec!["https://idp.example.com/".into()],
                audiences: vec!["wsedge".into()],
                require_exp: false,
            }),
            webhook: Some(WebhookSettings {
                url: "http://localhost:9000/auth".into(),
                timeout: Duration::from_secs(1),
                headers: vec!["x-session".into()],
                ca_file: None,
            }),
            sources: vec![
                TokenSource::Cookie("session".into()),
                TokenSource::Query("token".into()),
                TokenSource::Protocol("jwt".into()),
            ],
            claims: ClaimNames {
                user: "uid".into(),
                join: "rooms".into(),
                publish: "talk".into(),
            },
            absent_grants: AbsentGrants::AllowAll,
            first_message_timeout: crate::auth::settings::DEFAULT_FIRST_MESSAGE_TIMEOUT,
        };
        assert_eq!(config.auth, Some(expected));
        let printed = config.to_toml_string();
        let reparsed = Config::from_toml_str(&printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
        assert_eq!(reparsed.auth, config.auth, "{printed}");
    }

    #[test]
    fn left_out_keys_are_the_named_defaults() {
        let url = "https://idp.example.com/jwks";
        let config = load(&format!(
            "[auth]\nalgorithms = [\"RS256\"]\njwks_url = {url:?}\n"
        ));
        let jwt = JwtSettings::new(
            vec![Algorithm::Rs256],
            vec![KeySource::JwksUrl(JwksUrlSettings::new(url))],
        );
        assert_eq!(config.auth, Some(AuthSettings::new(Some(jwt), None)));

        let config = load("[auth.webhook]\nurl = \"https://app.example.com/auth\"\n");
        let webhook = WebhookSettings::new("https://app.example.com/auth");
        assert_eq!(config.auth, Some(AuthSettings::new(None, Some(webhook))));

        let config = load(&format!(
            "[auth]\nalgorithms = [\"RS256\"]\njwks_url = {url:?}\nsources = [\"bearer\", \"first_message\"]\nfirst_message_timeout = \"2s\"\n"
        ));
        let auth = config.auth.unwrap();
        assert_eq!(
            (auth.sources, auth.first_message_timeout),
            (
                vec![TokenSource::Bearer, TokenSource::FirstMessage],
                Duration::from_secs(2)
            )
        );
        assert_eq!(load("").auth, None);
    }

    #[test]
    fn channels_require_an_identity_once_auth_exists() {
        let channels = "[[channel]]\nname = \"a\"\npath = \"/a/{room}\"\nkind = \"room\"\n\
            [[channel]]\nname = \"b\"\npath = \"/b\"\nkind = \"echo\"\nauth = \"none\"\n\
            [[channel]]\nname = \"c\"\npath = \"/c/{room}\"\nkind = \"room\"\nauth = \"optional\"\nrooms = \"per_user\"\n";
        let modes = |config: Config| -> Vec<ChannelAuth> {
            config.channels.iter().map(|c| c.auth).collect()
        };
        let with_auth = load(&format!(
            "[auth.webhook]\nurl = \"https://app.example.com/auth\"\n{channels}"
        ));
        let auth = |mode, rooms| ChannelAuth { mode, rooms };
        assert_eq!(
            modes(with_auth),
            [
                auth(AuthMode::Required, Rooms::Shared),
                auth(AuthMode::None, Rooms::Shared),
                auth(AuthMode::Optional, Rooms::PerUser),
            ]
        );
        let open = load("[[channel]]\nname = \"a\"\npath = \"/a/{room}\"\nkind = \"room\"\n");
        assert_eq!(modes(open), [auth(AuthMode::None, Rooms::Shared)]);
    }
}
