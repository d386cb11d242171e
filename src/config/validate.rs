//! Turns the raw TOML mirror into a validated [`Config`], collecting every
//! problem with its location instead of stopping at the first.

use std::{collections::HashMap, net::SocketAddr, ops::Range, path::Path, time::Duration};

use toml::Spanned;

use super::{
    ChannelConfig, ChannelKind, Config, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_MEMBERS, DEFAULT_MAX_PAYLOAD,
    DEFAULT_MAX_ROOMS, DEFAULT_SEND_BUFFER, Limits, Publish, ServerSettings, TlsSettings,
    error::Issues,
    raw::{Field, RawChannel, RawConfig, RawLimits, RawServer, RawTls},
    units,
};
use crate::{
    http::{
        origin::{OriginPattern, OriginPolicy},
        route::PathPattern,
    },
    tls::Identity,
};

/// Where problems and warnings go while one file is validated.
pub(crate) struct Report<'s> {
    pub errors: Issues<'s>,
    pub warnings: Issues<'s>,
}

/// Validates `raw`; relative certificate paths are resolved against `base_dir`.
pub(crate) fn validate(raw: RawConfig, base_dir: &Path, report: &mut Report<'_>) -> Config {
    let whole_file = 0..0;
    let server = match raw.server {
        Some(server) => {
            let span = server.span();
            server_settings(server.into_inner(), span, base_dir, report)
        }
        None => {
            report.errors.push(whole_file, "server", "missing [server] table; add one with `listen = [\"0.0.0.0:8443\"]` and a [server.tls] table, or `plain = [\"127.0.0.1:8080\"]`");
            ServerSettings::default()
        }
    };
    let limits = limits(raw.limits.as_ref(), &Limits::default(), "limits", report);
    let channels = channels(raw.channels, &limits, report);
    Config { server, limits, channels, warnings: Vec::new() }
}

fn server_settings(raw: RawServer, span: Range<usize>, base_dir: &Path, report: &mut Report<'_>) -> ServerSettings {
    let listen = addresses(raw.listen.as_ref(), "server.listen", report);
    let plain = addresses(raw.plain.as_ref(), "server.plain", report);
    let mut seen: HashMap<SocketAddr, &str> = HashMap::new();
    for (addr, key) in listen.iter().map(|a| (a, "server.listen")).chain(plain.iter().map(|a| (a, "server.plain"))) {
        // Port 0 asks the kernel for a fresh port each time, so it may repeat.
        if addr.value.port() == 0 {
            continue;
        }
        if let Some(first) = seen.insert(addr.value, key) {
            report.errors.push(addr.span.clone(), key, format!("{} is already listed in {first}; each address may be bound once", addr.value));
        }
    }
    for addr in &plain {
        if !addr.value.ip().is_loopback() {
            report.warnings.push(addr.span.clone(), "server.plain", format!("{} serves unencrypted ws:// beyond this machine; put it behind a TLS proxy or use `listen`", addr.value));
        }
    }
    if listen.is_empty() && plain.is_empty() {
        report.errors.push(span.clone(), "server", "no listener: set `listen = [\"0.0.0.0:8443\"]` (wss://) or `plain = [\"127.0.0.1:8080\"]` (ws://)");
    }
    let handshake_timeout = duration(raw.handshake_timeout.as_ref(), "server.handshake_timeout", DEFAULT_HANDSHAKE_TIMEOUT, report);
    let tls_table_present = raw.tls.is_some();
    let tls = match raw.tls {
        Some(tls) => {
            let tls_span = tls.span();
            tls_settings(tls.into_inner(), tls_span, base_dir, report)
        }
        None => None,
    };
    // A [server.tls] table that is present but broken has been reported already.
    if !tls_table_present && !listen.is_empty() {
        report.errors.push(span, "server.tls", "`listen` serves wss:// and needs a [server.tls] table with `cert` and `key`, or `self_signed = [\"localhost\"]` for development");
    }
    ServerSettings {
        listen: listen.into_iter().map(|a| a.value).collect(),
        plain: plain.into_iter().map(|a| a.value).collect(),
        handshake_timeout,
        tls,
    }
}

struct Located<T> {
    value: T,
    span: Range<usize>,
}

fn addresses(field: Option<&Spanned<Vec<Spanned<String>>>>, key: &str, report: &mut Report<'_>) -> Vec<Located<SocketAddr>> {
    let Some(list) = field else { return Vec::new() };
    list.get_ref()
        .iter()
        .filter_map(|entry| match entry.get_ref().parse::<SocketAddr>() {
            Ok(value) => Some(Located { value, span: entry.span() }),
            Err(_) => {
                report.errors.push(entry.span(), key, format!("{:?} is not a socket address; write IP:PORT such as \"0.0.0.0:8443\" or \"[::]:8443\"", entry.get_ref()));
                None
            }
        })
        .collect()
}

fn tls_settings(raw: RawTls, span: Range<usize>, base_dir: &Path, report: &mut Report<'_>) -> Option<TlsSettings> {
    match (raw.cert, raw.key, raw.self_signed) {
        (None, None, Some(names)) => {
            let names_span = names.span();
            let names: Vec<String> = names.into_inner().into_iter().map(Spanned::into_inner).collect();
            if names.is_empty() || names.iter().any(|n| n.trim().is_empty()) {
                report.errors.push(names_span, "server.tls.self_signed", "list the host names or IP addresses the certificate is for, such as [\"localhost\", \"127.0.0.1\"]");
                return None;
            }
            Some(TlsSettings::SelfSigned { names })
        }
        (Some(cert), Some(key), None) => {
            let cert_path = base_dir.join(cert.get_ref());
            let key_path = base_dir.join(key.get_ref());
            match Identity::from_pem_files(&cert_path, &key_path) {
                Ok(identity) => Some(TlsSettings::Files { cert: cert_path, key: key_path, identity }),
                Err(error) => {
                    let (span, key) = match error {
                        crate::tls::TlsError::Key { .. } => (key.span(), "server.tls.key"),
                        _ => (cert.span(), "server.tls.cert"),
                    };
                    report.errors.push(span, key, error.to_string());
                    None
                }
            }
        }
        (_, _, Some(names)) => {
            report.errors.push(names.span(), "server.tls.self_signed", "`self_signed` generates a certificate and cannot be combined with `cert`/`key`; keep one or the other");
            None
        }
        _ => {
            report.errors.push(span, "server.tls", "set both `cert` and `key` (PEM files), or `self_signed = [\"localhost\"]` for development");
            None
        }
    }
}

fn duration(field: Option<&Spanned<String>>, key: &str, default: Duration, report: &mut Report<'_>) -> Duration {
    let Some(text) = field else { return default };
    match units::parse_duration(text.get_ref()) {
        Ok(value) if !value.is_zero() => value,
        Ok(_) => {
            report.errors.push(text.span(), key, "must be longer than zero");
            default
        }
        Err(message) => {
            report.errors.push(text.span(), key, message);
            default
        }
    }
}

fn size(field: Option<&Spanned<String>>, key: &str, default: usize, report: &mut Report<'_>) -> usize {
    let Some(text) = field else { return default };
    match units::parse_size(text.get_ref()) {
        Ok(0) => {
            report.errors.push(text.span(), key, "must be at least 1B");
            default
        }
        Ok(value) => value,
        Err(message) => {
            report.errors.push(text.span(), key, message);
            default
        }
    }
}

/// Reads a `[limits]` table over `inherited` values (the global limits for a
/// channel override, the built-in defaults for the global table).
fn limits(raw: Option<&RawLimits>, inherited: &Limits, key: &str, report: &mut Report<'_>) -> Limits {
    let Some(raw) = raw else { return inherited.clone() };
    let limits = Limits {
        max_payload: size(raw.max_payload.as_ref(), &format!("{key}.max_payload"), inherited.max_payload, report),
        send_buffer: size(raw.send_buffer.as_ref(), &format!("{key}.send_buffer"), inherited.send_buffer, report),
    };
    if limits.max_payload > limits.send_buffer {
        let span = raw.max_payload.as_ref().or(raw.send_buffer.as_ref()).map_or(0..0, Spanned::span);
        report.errors.push(
            span,
            format!("{key}.max_payload"),
            format!(
                "max_payload ({}) is larger than send_buffer ({}): a message that may be received could never be queued for sending; raise send_buffer or lower max_payload",
                units::format_size(limits.max_payload),
                units::format_size(limits.send_buffer)
            ),
        );
    }
    limits
}

fn channels(raw: Vec<Spanned<RawChannel>>, global: &Limits, report: &mut Report<'_>) -> Vec<ChannelConfig> {
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut accepted: Vec<(ChannelConfig, Range<usize>)> = Vec::new();
    for (index, entry) in raw.into_iter().enumerate() {
        let span = entry.span();
        let key = format!("channel[{index}]");
        let Some(channel) = channel(entry.into_inner(), span.clone(), &key, global, report) else { continue };
        if let Some(first) = names.insert(channel.name.clone(), index) {
            report.errors.push(span.clone(), format!("{key}.name"), format!("channel name {:?} is already used by channel[{first}]; names must be unique", channel.name));
        }
        if let Some((other, _)) = accepted.iter().find(|(other, _)| other.path.overlaps(&channel.path)) {
            report.errors.push(span.clone(), format!("{key}.path"), format!("path {} overlaps {} of channel {:?}: a request could match both; make them differ in a literal segment", channel.path, other.path, other.name));
        }
        accepted.push((channel, span));
    }
    accepted.into_iter().map(|(channel, _)| channel).collect()
}

/// Validates one `[[channel]]` table; `None` when a required key is unusable.
fn channel(raw: RawChannel, span: Range<usize>, key: &str, global: &Limits, report: &mut Report<'_>) -> Option<ChannelConfig> {
    let required = |field: &Field<String>, name: &str, hint: &str, report: &mut Report<'_>| {
        if field.is_none() {
            report.errors.push(span.clone(), format!("{key}.{name}"), format!("missing `{name}`; {hint}"));
        }
    };
    required(&raw.name, "name", "every channel needs a unique name such as \"chat\"", report);
    required(&raw.path, "path", "such as \"/news\", or \"/chat/{room}\" for rooms", report);
    required(&raw.kind, "kind", "one of \"echo\", \"broadcast\", \"room\"", report);

    let name = raw.name.as_ref().and_then(|name| {
        let valid = !name.get_ref().is_empty() && name.get_ref().bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !valid {
            report.errors.push(name.span(), format!("{key}.name"), format!("{:?} is not a channel name; use letters, digits, '_', '.' and '-'", name.get_ref()));
        }
        valid.then(|| name.get_ref().clone())
    });
    let kind = raw.kind.as_ref().and_then(|kind| match kind.get_ref().as_str() {
        "echo" => Some(ChannelKind::Echo),
        "broadcast" => Some(ChannelKind::Broadcast),
        "room" => Some(ChannelKind::Room),
        other => {
            report.errors.push(kind.span(), format!("{key}.kind"), format!("{other:?} is not a channel kind; use \"echo\", \"broadcast\" or \"room\""));
            None
        }
    });
    let path = raw.path.as_ref().and_then(|path| match PathPattern::parse(path.get_ref()) {
        Ok(pattern) => {
            match (kind, pattern.is_template()) {
                (Some(ChannelKind::Room), false) => report.errors.push(path.span(), format!("{key}.path"), format!("room channels need a template with a {{room}} segment, such as \"{}/{{room}}\"", path.get_ref().trim_end_matches('/'))),
                (Some(ChannelKind::Echo | ChannelKind::Broadcast), true) => report.errors.push(path.span(), format!("{key}.path"), "only room channels may use a {room} segment; use kind = \"room\" or a literal path"),
                _ => {}
            }
            Some(pattern)
        }
        Err(message) => {
            report.errors.push(path.span(), format!("{key}.path"), message);
            None
        }
    });

    let origins = origin_policy(&raw, key, report);
    let is_fanout = !matches!(kind, Some(ChannelKind::Echo));
    let fanout_only = |field: Option<Range<usize>>, name: &str, report: &mut Report<'_>| {
        if let (Some(span), false) = (field, is_fanout) {
            report.errors.push(span, format!("{key}.{name}"), format!("`{name}` applies to broadcast and room channels only; remove it from this echo channel"));
        }
    };
    fanout_only(raw.publish.as_ref().map(Spanned::span), "publish", report);
    fanout_only(raw.echo_to_sender.as_ref().map(Spanned::span), "echo_to_sender", report);
    let publish = match raw.publish.as_ref() {
        None if kind == Some(ChannelKind::Room) => Publish::Clients,
        None => Publish::Api,
        Some(publish) => match publish.get_ref().as_str() {
            "clients" => Publish::Clients,
            "api" => Publish::Api,
            other => {
                report.errors.push(publish.span(), format!("{key}.publish"), format!("{other:?} is not a publish mode; use \"clients\" (clients and the API publish) or \"api\" (only the API publishes)"));
                Publish::Api
            }
        },
    };
    let subprotocols = subprotocols(raw.subprotocols.as_ref(), key, report);
    let max_members = room_cap(raw.max_members.as_ref(), "max_members", DEFAULT_MAX_MEMBERS, kind, key, report);
    let max_rooms = room_cap(raw.max_rooms.as_ref(), "max_rooms", DEFAULT_MAX_ROOMS, kind, key, report);
    let limits = limits(raw.limits.as_ref(), global, &format!("{key}.limits"), report);

    Some(ChannelConfig {
        name: name?,
        path: path?,
        kind: kind?,
        origins,
        publish,
        echo_to_sender: raw.echo_to_sender.is_some_and(Spanned::into_inner),
        subprotocols,
        max_members,
        max_rooms,
        limits,
    })
}

fn origin_policy(raw: &RawChannel, key: &str, report: &mut Report<'_>) -> OriginPolicy {
    let Some(list) = raw.origins.as_ref() else { return OriginPolicy::Any };
    let allow_missing = raw.allow_missing_origin.as_ref().is_some_and(|a| *a.get_ref());
    let entries = list.get_ref();
    if entries.is_empty() {
        report.errors.push(list.span(), format!("{key}.origins"), "an empty list would refuse every browser; omit `origins` to allow any origin, or list the allowed ones");
        return OriginPolicy::Any;
    }
    if entries.iter().any(|e| e.get_ref() == "*") {
        if entries.len() > 1 {
            report.errors.push(list.span(), format!("{key}.origins"), "\"*\" already allows every origin; remove the other entries or remove \"*\"");
        }
        return OriginPolicy::Any;
    }
    let patterns = entries
        .iter()
        .filter_map(|entry| {
            OriginPattern::parse(entry.get_ref())
                .map_err(|message| report.errors.push(entry.span(), format!("{key}.origins"), message))
                .ok()
        })
        .collect();
    OriginPolicy::Only { patterns, allow_missing }
}

fn subprotocols(field: Option<&Spanned<Vec<Spanned<String>>>>, key: &str, report: &mut Report<'_>) -> Vec<String> {
    let Some(list) = field else { return Vec::new() };
    let mut accepted: Vec<String> = Vec::new();
    for entry in list.get_ref() {
        let name = entry.get_ref();
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            report.errors.push(entry.span(), format!("{key}.subprotocols"), format!("{name:?} is not a subprotocol token; use letters, digits and !#$%&'*+-.^_`|~ such as \"chat.v1\""));
        } else if accepted.contains(name) {
            report.errors.push(entry.span(), format!("{key}.subprotocols"), format!("{name:?} is listed twice"));
        } else {
            accepted.push(name.clone());
        }
    }
    accepted
}

/// An HTTP token character (RFC 9110 section 5.6.2).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn room_cap(field: Option<&Spanned<i64>>, name: &str, default: usize, kind: Option<ChannelKind>, key: &str, report: &mut Report<'_>) -> usize {
    let Some(value) = field else { return default };
    if kind.is_some_and(|k| k != ChannelKind::Room) {
        report.errors.push(value.span(), format!("{key}.{name}"), format!("`{name}` applies to room channels only; remove it or use kind = \"room\""));
    }
    match usize::try_from(*value.get_ref()) {
        Ok(n) if n > 0 => n,
        _ => {
            report.errors.push(value.span(), format!("{key}.{name}"), format!("{} is not a valid {name}; use a whole number of at least 1", value.get_ref()));
            default
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self { listen: Vec::new(), plain: Vec::new(), handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT, tls: None }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_payload: DEFAULT_MAX_PAYLOAD, send_buffer: DEFAULT_SEND_BUFFER }
    }
}
