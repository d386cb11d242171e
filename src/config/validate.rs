//! Turns the raw TOML mirror into a validated [`Config`], collecting every
//! problem with its location instead of stopping at the first.

use std::{
    collections::HashMap, net::SocketAddr, num::NonZeroU32, ops::Range, path::Path, time::Duration,
};

use toml::Spanned;

use super::{
    AdminSettings, AdminToken, Admission, ChannelConfig, ChannelKind, Cidr, Compression,
    CompressionMode, Config, DEFAULT_ADMIN_LISTEN, DEFAULT_CLOSE_TIMEOUT, DEFAULT_DRAIN_WINDOW,
    DEFAULT_HANDSHAKE_RATE, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_IPV6_PREFIX,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_IP, DEFAULT_MAX_MEMBERS,
    DEFAULT_MAX_PAYLOAD, DEFAULT_MAX_ROOMS, DEFAULT_MESSAGE_RATE, DEFAULT_PING_INTERVAL,
    DEFAULT_SEND_BUFFER, DEFAULT_SHUTDOWN_TIMEOUT, Limits, OnExceed, Publish, Rate, ServerSettings,
    SlowConsumer, TlsSettings,
    error::Issues,
    raw::{
        Field, RawAdmin, RawChannel, RawCompression, RawConfig, RawLimits, RawRate, RawServer,
        RawTls,
    },
    units,
};
use crate::{
    http::{
        origin::{OriginPattern, OriginPolicy},
        route::PathPattern,
    },
    protocol::window_bits,
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
    let admission = admission(raw.limits.as_ref(), report);
    let limits = limits(raw.limits.as_ref(), &Limits::default(), "limits", report);
    let limits = Limits {
        max_connections: admission.max_connections,
        ..limits
    };
    let channels = channels(raw.channels, &limits, raw.compression.as_ref(), report);
    let admin = raw
        .admin
        .and_then(|admin| self::admin(admin, base_dir, report));
    if let (Some(admin), true) = (
        &admin,
        !server.listen.is_empty() || !server.plain.is_empty(),
    ) {
        if server
            .listen
            .iter()
            .chain(&server.plain)
            .any(|addr| *addr == admin.listen && addr.port() != 0)
        {
            report.errors.push(
                0..0,
                "admin.listen",
                format!(
                    "{} is also a WebSocket listener; give the admin API its own address",
                    admin.listen
                ),
            );
        }
    }
    Config {
        server,
        admission,
        admin,
        limits,
        channels,
        warnings: Vec::new(),
    }
}

fn server_settings(
    raw: RawServer,
    span: Range<usize>,
    base_dir: &Path,
    report: &mut Report<'_>,
) -> ServerSettings {
    let listen = addresses(raw.listen.as_ref(), "server.listen", report);
    let plain = addresses(raw.plain.as_ref(), "server.plain", report);
    let mut seen: HashMap<SocketAddr, &str> = HashMap::new();
    for (addr, key) in listen
        .iter()
        .map(|a| (a, "server.listen"))
        .chain(plain.iter().map(|a| (a, "server.plain")))
    {
        // Port 0 asks the kernel for a fresh port each time, so it may repeat.
        if addr.value.port() == 0 {
            continue;
        }
        if let Some(first) = seen.insert(addr.value, key) {
            report.errors.push(
                addr.span.clone(),
                key,
                format!(
                    "{} is already listed in {first}; each address may be bound once",
                    addr.value
                ),
            );
        }
    }
    for addr in &plain {
        if !addr.value.ip().is_loopback() {
            report.warnings.push(addr.span.clone(), "server.plain", format!("{} serves unencrypted ws:// beyond this machine; put it behind a TLS proxy or use `listen`", addr.value));
        }
    }
    let trusted_proxies = networks(raw.trusted_proxies.as_ref(), report);
    let proxy_protocol = addresses(raw.proxy_protocol.as_ref(), "server.proxy_protocol", report);
    for addr in &proxy_protocol {
        if !listen.iter().chain(&plain).any(|l| l.value == addr.value) {
            report.errors.push(addr.span.clone(), "server.proxy_protocol", format!("{} is not one of the `listen` or `plain` addresses; list here the listeners that sit behind a PROXY-protocol load balancer", addr.value));
        }
    }
    if let (Some(first), true) = (proxy_protocol.first(), trusted_proxies.is_empty()) {
        report.errors.push(first.span.clone(), "server.proxy_protocol", "PROXY headers are believed only from `trusted_proxies`; list your load balancers' networks there, such as [\"10.0.0.0/8\"]");
    }
    if listen.is_empty() && plain.is_empty() {
        report.errors.push(span.clone(), "server", "no listener: set `listen = [\"0.0.0.0:8443\"]` (wss://) or `plain = [\"127.0.0.1:8080\"]` (ws://)");
    }
    let handshake_timeout = duration(
        raw.handshake_timeout.as_ref(),
        "server.handshake_timeout",
        DEFAULT_HANDSHAKE_TIMEOUT,
        report,
    );
    let drain_window = duration(
        raw.drain_window.as_ref(),
        "server.drain_window",
        DEFAULT_DRAIN_WINDOW,
        report,
    );
    let shutdown_timeout = duration(
        raw.shutdown_timeout.as_ref(),
        "server.shutdown_timeout",
        DEFAULT_SHUTDOWN_TIMEOUT,
        report,
    );
    if shutdown_timeout <= drain_window {
        let at = raw
            .shutdown_timeout
            .as_ref()
            .or(raw.drain_window.as_ref())
            .map_or(span.clone(), Spanned::span);
        report.errors.push(
            at,
            "server.shutdown_timeout",
            format!(
                "shutdown_timeout ({}) must be longer than drain_window ({}): the last closes of the drain need time to complete",
                units::format_duration(shutdown_timeout),
                units::format_duration(drain_window)
            ),
        );
    }
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
        proxy_protocol: proxy_protocol.into_iter().map(|a| a.value).collect(),
        trusted_proxies,
        handshake_timeout,
        drain_window,
        shutdown_timeout,
        tls,
    }
}

fn admin(
    raw: Spanned<RawAdmin>,
    base_dir: &Path,
    report: &mut Report<'_>,
) -> Option<AdminSettings> {
    let raw = raw.into_inner();
    let listen = match raw.listen.as_ref() {
        None => DEFAULT_ADMIN_LISTEN
            .parse()
            .expect("the default admin address parses"),
        Some(addr) => {
            match addr.get_ref().parse::<SocketAddr>() {
                Ok(addr) => addr,
                Err(_) => {
                    report.errors.push(addr.span(), "admin.listen", format!("{:?} is not a socket address; write IP:PORT such as \"127.0.0.1:9090\"", addr.get_ref()));
                    return None;
                }
            }
        }
    };
    let (token_file, token) = match raw.token_file.as_ref() {
        None => (None, None),
        Some(path) => {
            let joined = base_dir.join(path.get_ref());
            let file = std::path::absolute(&joined).unwrap_or(joined);
            match std::fs::read_to_string(&file) {
                Ok(text) if !text.trim().is_empty() => {
                    (Some(file), Some(AdminToken(text.trim().to_owned())))
                }
                Ok(_) => {
                    report.errors.push(path.span(), "admin.token_file", format!("{} is empty; put a long random token in it (for example `openssl rand -hex 32`)", file.display()));
                    return None;
                }
                Err(error) => {
                    report.errors.push(
                        path.span(),
                        "admin.token_file",
                        format!("cannot read {}: {error}", file.display()),
                    );
                    return None;
                }
            }
        }
    };
    Some(AdminSettings {
        listen,
        token_file,
        token,
    })
}

struct Located<T> {
    value: T,
    span: Range<usize>,
}

fn addresses(
    field: Option<&Spanned<Vec<Spanned<String>>>>,
    key: &str,
    report: &mut Report<'_>,
) -> Vec<Located<SocketAddr>> {
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

fn networks(field: Option<&Spanned<Vec<Spanned<String>>>>, report: &mut Report<'_>) -> Vec<Cidr> {
    let Some(list) = field else { return Vec::new() };
    list.get_ref()
        .iter()
        .filter_map(|entry| {
            Cidr::parse(entry.get_ref())
                .map_err(|message| {
                    report
                        .errors
                        .push(entry.span(), "server.trusted_proxies", message)
                })
                .ok()
        })
        .collect()
}

fn tls_settings(
    raw: RawTls,
    span: Range<usize>,
    base_dir: &Path,
    report: &mut Report<'_>,
) -> Option<TlsSettings> {
    match (raw.cert, raw.key, raw.self_signed) {
        (None, None, Some(names)) => {
            let names_span = names.span();
            let names: Vec<String> = names
                .into_inner()
                .into_iter()
                .map(Spanned::into_inner)
                .collect();
            if names.is_empty() || names.iter().any(|n| n.trim().is_empty()) {
                report.errors.push(names_span, "server.tls.self_signed", "list the host names or IP addresses the certificate is for, such as [\"localhost\", \"127.0.0.1\"]");
                return None;
            }
            Some(TlsSettings::SelfSigned { names })
        }
        (Some(cert), Some(key), None) => {
            // Absolute, so that print-config's output loads from anywhere.
            let resolve = |path: &str| {
                let joined = base_dir.join(path);
                std::path::absolute(&joined).unwrap_or(joined)
            };
            let (cert_path, key_path) = (resolve(cert.get_ref()), resolve(key.get_ref()));
            match Identity::from_pem_files(&cert_path, &key_path) {
                Ok(identity) => Some(TlsSettings::Files {
                    cert: cert_path,
                    key: key_path,
                    identity,
                }),
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

fn duration(
    field: Option<&Spanned<String>>,
    key: &str,
    default: Duration,
    report: &mut Report<'_>,
) -> Duration {
    let Some(text) = field else { return default };
    match units::parse_duration(text.get_ref()) {
        Ok(value) if !value.is_zero() => value,
        Ok(_) => {
            report
                .errors
                .push(text.span(), key, "must be longer than zero");
            default
        }
        Err(message) => {
            report.errors.push(text.span(), key, message);
            default
        }
    }
}

fn size(
    field: Option<&Spanned<String>>,
    key: &str,
    default: usize,
    report: &mut Report<'_>,
) -> usize {
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

/// Reads the server-wide keys of the global `[limits]` table.
fn admission(raw: Option<&RawLimits>, report: &mut Report<'_>) -> Admission {
    let default_rate = Rate::new(DEFAULT_HANDSHAKE_RATE, OnExceed::Close);
    let Some(raw) = raw else {
        return Admission {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
            handshake_rate: default_rate,
        };
    };
    if let Some(on_exceed) = raw
        .handshake_rate
        .as_ref()
        .and_then(|r| r.get_ref().on_exceed.as_ref())
    {
        report.errors.push(
            on_exceed.span(),
            "limits.handshake_rate.on_exceed",
            "handshakes over the rate always get 429 with Retry-After; remove `on_exceed`",
        );
    }
    Admission {
        max_connections: count(
            raw.max_connections.as_ref(),
            "limits.max_connections",
            DEFAULT_MAX_CONNECTIONS,
            1..=usize::MAX,
            report,
        ),
        max_connections_per_ip: count(
            raw.max_connections_per_ip.as_ref(),
            "limits.max_connections_per_ip",
            DEFAULT_MAX_CONNECTIONS_PER_IP,
            1..=usize::MAX,
            report,
        ),
        ipv6_prefix: count(
            raw.ipv6_prefix.as_ref(),
            "limits.ipv6_prefix",
            DEFAULT_IPV6_PREFIX.into(),
            1..=128,
            report,
        ) as u8,
        handshake_rate: raw.handshake_rate.as_ref().map_or(default_rate, |r| {
            rate(r, "limits.handshake_rate", positive_count, report).unwrap_or(default_rate)
        }),
    }
}

/// Reads the per-connection keys of a `[limits]` table over `inherited`
/// values (the global limits for a channel override, the built-in defaults
/// for the global table). In a channel table the server-wide keys are errors.
fn limits(
    raw: Option<&RawLimits>,
    inherited: &Limits,
    key: &str,
    report: &mut Report<'_>,
) -> Limits {
    let Some(raw) = raw else {
        return inherited.clone();
    };
    if key != "limits" {
        let server_wide = [
            (
                "max_connections_per_ip",
                raw.max_connections_per_ip.as_ref().map(Spanned::span),
            ),
            ("ipv6_prefix", raw.ipv6_prefix.as_ref().map(Spanned::span)),
            (
                "handshake_rate",
                raw.handshake_rate.as_ref().map(Spanned::span),
            ),
        ];
        for (name, span) in server_wide {
            if let Some(span) = span {
                report.errors.push(span, format!("{key}.{name}"), format!("`{name}` applies before a request is routed, so only in the global [limits] table; move it there"));
            }
        }
    }
    let limits = Limits {
        max_connections: count(
            raw.max_connections.as_ref(),
            &format!("{key}.max_connections"),
            inherited.max_connections,
            1..=usize::MAX,
            report,
        ),
        max_payload: size(
            raw.max_payload.as_ref(),
            &format!("{key}.max_payload"),
            inherited.max_payload,
            report,
        ),
        send_buffer: size(
            raw.send_buffer.as_ref(),
            &format!("{key}.send_buffer"),
            inherited.send_buffer,
            report,
        ),
        on_slow_consumer: match raw.on_slow_consumer.as_ref() {
            None => inherited.on_slow_consumer,
            Some(mode) => match mode.get_ref().as_str() {
                "close" => SlowConsumer::Close,
                "drop" => SlowConsumer::Drop,
                other => {
                    report.errors.push(mode.span(), format!("{key}.on_slow_consumer"), format!("{other:?} is not a slow-consumer policy; use \"close\" (close with 1013) or \"drop\" (drop what does not fit)"));
                    inherited.on_slow_consumer
                }
            },
        },
        message_rate: raw
            .message_rate
            .as_ref()
            .map_or(inherited.message_rate, |r| {
                rate(r, &format!("{key}.message_rate"), positive_count, report)
                    .unwrap_or(inherited.message_rate)
            }),
        byte_rate: match raw.byte_rate.as_ref() {
            None => inherited.byte_rate,
            Some(r) => rate(r, &format!("{key}.byte_rate"), positive_size, report),
        },
        ping_interval: duration(
            raw.ping_interval.as_ref(),
            &format!("{key}.ping_interval"),
            inherited.ping_interval,
            report,
        ),
        idle_timeout: duration(
            raw.idle_timeout.as_ref(),
            &format!("{key}.idle_timeout"),
            inherited.idle_timeout,
            report,
        ),
        close_timeout: duration(
            raw.close_timeout.as_ref(),
            &format!("{key}.close_timeout"),
            inherited.close_timeout,
            report,
        ),
    };
    // A conflict between two keys is reported in a table that sets one of
    // them, at that key; one inherited whole was reported where it was written.
    let mut conflict = |keys: [(Option<Range<usize>>, &str); 2], message: String| {
        if let Some((span, name)) = keys
            .into_iter()
            .find_map(|(span, name)| span.map(|span| (span, name)))
        {
            report.errors.push(span, format!("{key}.{name}"), message);
        }
    };
    let span = |field: Option<&Spanned<String>>| field.map(Spanned::span);
    if limits.max_payload > limits.send_buffer {
        conflict(
            [
                (span(raw.max_payload.as_ref()), "max_payload"),
                (span(raw.send_buffer.as_ref()), "send_buffer"),
            ],
            format!(
                "max_payload ({}) is larger than send_buffer ({}): a message that may be received could never be queued for sending; raise send_buffer or lower max_payload",
                units::format_size(limits.max_payload),
                units::format_size(limits.send_buffer)
            ),
        );
    }
    if limits.idle_timeout <= limits.ping_interval {
        conflict(
            [
                (span(raw.idle_timeout.as_ref()), "idle_timeout"),
                (span(raw.ping_interval.as_ref()), "ping_interval"),
            ],
            format!(
                "idle_timeout ({}) must be longer than ping_interval ({}), or a healthy client is dropped before it can answer a ping",
                units::format_duration(limits.idle_timeout),
                units::format_duration(limits.ping_interval)
            ),
        );
    }
    if let Some(bytes) = limits
        .byte_rate
        .filter(|b| (b.burst.get() as usize) < limits.max_payload)
    {
        conflict(
            [
                (raw.byte_rate.as_ref().map(Spanned::span), "byte_rate"),
                (span(raw.max_payload.as_ref()), "max_payload"),
            ],
            format!(
                "byte_rate burst ({}) is smaller than max_payload ({}): a message of max_payload bytes could never pass; raise the burst",
                units::format_size(bytes.burst.get() as usize),
                units::format_size(limits.max_payload)
            ),
        );
    }
    limits
}

/// Reads a rate table; `per_second` is required, `burst` defaults to it and
/// `on_exceed` to `"throttle"`. `None` (after reporting) when unusable.
fn rate<T>(
    raw: &Spanned<RawRate<T>>,
    key: &str,
    parse: fn(&Spanned<T>) -> Result<NonZeroU32, String>,
    report: &mut Report<'_>,
) -> Option<Rate> {
    let table = raw.get_ref();
    let mut field = |value: Option<&Spanned<T>>, name: &str| {
        value.and_then(|value| {
            parse(value)
                .map_err(|message| {
                    report
                        .errors
                        .push(value.span(), format!("{key}.{name}"), message)
                })
                .ok()
        })
    };
    let per_second = field(table.per_second.as_ref(), "per_second");
    let burst = field(table.burst.as_ref(), "burst");
    if table.per_second.is_none() {
        report.errors.push(
            raw.span(),
            format!("{key}.per_second"),
            "missing `per_second`; write a rate such as { per_second = 100, burst = 200 }",
        );
    }
    let on_exceed = match table.on_exceed.as_ref() {
        None => OnExceed::Throttle,
        Some(mode) => match mode.get_ref().as_str() {
            "throttle" => OnExceed::Throttle,
            "close" => OnExceed::Close,
            other => {
                report.errors.push(mode.span(), format!("{key}.on_exceed"), format!("{other:?} is not a policy; use \"throttle\" (stop reading until the rate allows) or \"close\" (close with 1008)"));
                OnExceed::Throttle
            }
        },
    };
    let per_second = per_second?;
    let burst = match (table.burst.is_some(), burst) {
        (true, None) => return None,
        (_, burst) => burst.unwrap_or(per_second),
    };
    Some(Rate {
        per_second,
        burst,
        on_exceed,
    })
}

fn positive_count(value: &Spanned<i64>) -> Result<NonZeroU32, String> {
    u32::try_from(*value.get_ref())
        .ok()
        .and_then(NonZeroU32::new)
        .ok_or_else(|| {
            format!(
                "{} is not a valid rate; use a whole number from 1 to {}",
                value.get_ref(),
                u32::MAX
            )
        })
}

fn positive_size(value: &Spanned<String>) -> Result<NonZeroU32, String> {
    let bytes = units::parse_size(value.get_ref())?;
    u32::try_from(bytes)
        .ok()
        .and_then(NonZeroU32::new)
        .ok_or_else(|| {
            format!(
                "{:?} is not a valid byte rate; use a size from 1B to 4GiB such as \"1MiB\"",
                value.get_ref()
            )
        })
}

/// Reads a whole number within `range`.
fn count(
    field: Option<&Spanned<i64>>,
    key: &str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
    report: &mut Report<'_>,
) -> usize {
    let Some(value) = field else { return default };
    match usize::try_from(*value.get_ref()) {
        Ok(n) if range.contains(&n) => n,
        _ => {
            report.errors.push(
                value.span(),
                key,
                format!(
                    "{} is out of range; use a whole number from {} to {}",
                    value.get_ref(),
                    range.start(),
                    range.end()
                ),
            );
            default
        }
    }
}

fn channels(
    raw: Vec<Spanned<RawChannel>>,
    global: &Limits,
    compression: Option<&RawCompression>,
    report: &mut Report<'_>,
) -> Vec<ChannelConfig> {
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut accepted: Vec<(ChannelConfig, Range<usize>)> = Vec::new();
    for (index, entry) in raw.into_iter().enumerate() {
        let span = entry.span();
        let key = format!("channel[{index}]");
        let Some(channel) = channel(
            entry.into_inner(),
            span.clone(),
            &key,
            global,
            compression,
            report,
        ) else {
            continue;
        };
        if let Some(first) = names.insert(channel.name.clone(), index) {
            report.errors.push(
                span.clone(),
                format!("{key}.name"),
                format!(
                    "channel name {:?} is already used by channel[{first}]; names must be unique",
                    channel.name
                ),
            );
        }
        if let Some((other, _)) = accepted
            .iter()
            .find(|(other, _)| other.path.overlaps(&channel.path))
        {
            report.errors.push(span.clone(), format!("{key}.path"), format!("path {} overlaps {} of channel {:?}: a request could match both; make them differ in a literal segment", channel.path, other.path, other.name));
        }
        accepted.push((channel, span));
    }
    accepted.into_iter().map(|(channel, _)| channel).collect()
}

/// Validates one `[[channel]]` table; `None` when a required key is unusable.
fn channel(
    raw: RawChannel,
    span: Range<usize>,
    key: &str,
    global: &Limits,
    global_compression: Option<&RawCompression>,
    report: &mut Report<'_>,
) -> Option<ChannelConfig> {
    let required = |field: &Field<String>, name: &str, hint: &str, report: &mut Report<'_>| {
        if field.is_none() {
            report.errors.push(
                span.clone(),
                format!("{key}.{name}"),
                format!("missing `{name}`; {hint}"),
            );
        }
    };
    required(
        &raw.name,
        "name",
        "every channel needs a unique name such as \"chat\"",
        report,
    );
    required(
        &raw.path,
        "path",
        "such as \"/news\", or \"/chat/{room}\" for rooms",
        report,
    );
    required(
        &raw.kind,
        "kind",
        "one of \"echo\", \"broadcast\", \"room\"",
        report,
    );

    let name = raw.name.as_ref().and_then(|name| {
        let valid = !name.get_ref().is_empty()
            && name
                .get_ref()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !valid {
            report.errors.push(
                name.span(),
                format!("{key}.name"),
                format!(
                    "{:?} is not a channel name; use letters, digits, '_', '.' and '-'",
                    name.get_ref()
                ),
            );
        }
        valid.then(|| name.get_ref().clone())
    });
    let kind = raw
        .kind
        .as_ref()
        .and_then(|kind| match kind.get_ref().as_str() {
            "echo" => Some(ChannelKind::Echo),
            "broadcast" => Some(ChannelKind::Broadcast),
            "room" => Some(ChannelKind::Room),
            other => {
                report.errors.push(
                    kind.span(),
                    format!("{key}.kind"),
                    format!(
                        "{other:?} is not a channel kind; use \"echo\", \"broadcast\" or \"room\""
                    ),
                );
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
    fanout_only(
        raw.echo_to_sender.as_ref().map(Spanned::span),
        "echo_to_sender",
        report,
    );
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
    let max_members = room_cap(
        raw.max_members.as_ref(),
        "max_members",
        DEFAULT_MAX_MEMBERS,
        kind,
        key,
        report,
    );
    let max_rooms = room_cap(
        raw.max_rooms.as_ref(),
        "max_rooms",
        DEFAULT_MAX_ROOMS,
        kind,
        key,
        report,
    );
    let limits = limits(
        raw.limits.as_ref(),
        global,
        &format!("{key}.limits"),
        report,
    );
    let compression = compression(
        global_compression,
        raw.compression.as_ref(),
        kind,
        key,
        report,
    );

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
        compression,
    })
}

/// Resolves one channel's compression: each key from `[channel.compression]`,
/// else from `[compression]`, else the default (whose mode depends on the
/// channel's kind).
fn compression(
    global: Option<&RawCompression>,
    own: Option<&RawCompression>,
    kind: Option<ChannelKind>,
    key: &str,
    report: &mut Report<'_>,
) -> Compression {
    let empty = RawCompression::default();
    let (global, own) = (global.unwrap_or(&empty), own.unwrap_or(&empty));
    // The table a key comes from, for error messages.
    fn pick<'a, T>(
        own: &'a Field<T>,
        global: &'a Field<T>,
        key: &str,
        name: &str,
    ) -> Option<(&'a Spanned<T>, String)> {
        match (own, global) {
            (Some(value), _) => Some((value, format!("{key}.compression.{name}"))),
            (None, Some(value)) => Some((value, format!("compression.{name}"))),
            (None, None) => None,
        }
    }
    let defaults = Compression {
        mode: if kind == Some(ChannelKind::Echo) {
            CompressionMode::Dedicated
        } else {
            CompressionMode::Shared
        },
        ..Compression::default()
    };
    let flag = |own: &Field<bool>, global: &Field<bool>, default: bool| {
        own.as_ref()
            .or(global.as_ref())
            .map_or(default, |v| *v.get_ref())
    };
    let bits = |own: &Field<i64>, global: &Field<i64>, name: &str, report: &mut Report<'_>| {
        match pick(own, global, key, name) {
            None => window_bits::MAX,
            Some((value, key)) => match u8::try_from(*value.get_ref()) {
                Ok(bits) if (window_bits::MIN..=window_bits::MAX).contains(&bits) => bits,
                _ => {
                    report.errors.push(value.span(), key, format!("{} is not a window size zlib can use; use {} to {} (8 is not supported for raw deflate)", value.get_ref(), window_bits::MIN, window_bits::MAX));
                    window_bits::MAX
                }
            },
        }
    };
    let server_max_window_bits = bits(
        &own.server_max_window_bits,
        &global.server_max_window_bits,
        "server_max_window_bits",
        report,
    );
    let client_max_window_bits = bits(
        &own.client_max_window_bits,
        &global.client_max_window_bits,
        "client_max_window_bits",
        report,
    );
    let level = match pick(&own.level, &global.level, key, "level") {
        None => defaults.level,
        Some((value, key)) => match u32::try_from(*value.get_ref()) {
            Ok(level @ 0..=9) => level,
            _ => {
                report.errors.push(
                    value.span(),
                    key,
                    format!(
                        "{} is not a zlib level; use 0 (store) to 9 (smallest)",
                        value.get_ref()
                    ),
                );
                defaults.level
            }
        },
    };
    let threshold = match pick(&own.threshold, &global.threshold, key, "threshold") {
        None => defaults.threshold,
        Some((value, key)) => units::parse_size(value.get_ref()).unwrap_or_else(|message| {
            report.errors.push(value.span(), key, message);
            defaults.threshold
        }),
    };
    let mode = match pick(&own.mode, &global.mode, key, "mode") {
        None => defaults.mode,
        Some((value, key)) => match value.get_ref().as_str() {
            "shared" => CompressionMode::Shared,
            "dedicated" => CompressionMode::Dedicated,
            other => {
                report.errors.push(value.span(), key, format!("{other:?} is not a compression mode; use \"shared\" (compress once per message for everyone) or \"dedicated\" (one compressor per connection)"));
                defaults.mode
            }
        },
    };
    Compression {
        enabled: flag(&own.enabled, &global.enabled, defaults.enabled),
        mode,
        threshold,
        level,
        server_max_window_bits,
        client_max_window_bits,
        server_no_context_takeover: flag(
            &own.server_no_context_takeover,
            &global.server_no_context_takeover,
            false,
        ),
        client_no_context_takeover: flag(
            &own.client_no_context_takeover,
            &global.client_no_context_takeover,
            false,
        ),
    }
}

fn origin_policy(raw: &RawChannel, key: &str, report: &mut Report<'_>) -> OriginPolicy {
    let Some(list) = raw.origins.as_ref() else {
        return OriginPolicy::Any;
    };
    let allow_missing = raw
        .allow_missing_origin
        .as_ref()
        .is_some_and(|a| *a.get_ref());
    let entries = list.get_ref();
    if entries.is_empty() {
        report.errors.push(list.span(), format!("{key}.origins"), "an empty list would refuse every browser; omit `origins` to allow any origin, or list the allowed ones");
        return OriginPolicy::Any;
    }
    if entries.iter().any(|e| e.get_ref() == "*") {
        if entries.len() > 1 {
            report.errors.push(
                list.span(),
                format!("{key}.origins"),
                "\"*\" already allows every origin; remove the other entries or remove \"*\"",
            );
        }
        return OriginPolicy::Any;
    }
    let patterns = entries
        .iter()
        .filter_map(|entry| {
            OriginPattern::parse(entry.get_ref())
                .map_err(|message| {
                    report
                        .errors
                        .push(entry.span(), format!("{key}.origins"), message)
                })
                .ok()
        })
        .collect();
    OriginPolicy::Only {
        patterns,
        allow_missing,
    }
}

fn subprotocols(
    field: Option<&Spanned<Vec<Spanned<String>>>>,
    key: &str,
    report: &mut Report<'_>,
) -> Vec<String> {
    let Some(list) = field else { return Vec::new() };
    let mut accepted: Vec<String> = Vec::new();
    for entry in list.get_ref() {
        let name = entry.get_ref();
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            report.errors.push(entry.span(), format!("{key}.subprotocols"), format!("{name:?} is not a subprotocol token; use letters, digits and !#$%&'*+-.^_`|~ such as \"chat.v1\""));
        } else if accepted.contains(name) {
            report.errors.push(
                entry.span(),
                format!("{key}.subprotocols"),
                format!("{name:?} is listed twice"),
            );
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

fn room_cap(
    field: Option<&Spanned<i64>>,
    name: &str,
    default: usize,
    kind: Option<ChannelKind>,
    key: &str,
    report: &mut Report<'_>,
) -> usize {
    if let (Some(value), true) = (field, kind.is_some_and(|k| k != ChannelKind::Room)) {
        report.errors.push(
            value.span(),
            format!("{key}.{name}"),
            format!("`{name}` applies to room channels only; remove it or use kind = \"room\""),
        );
    }
    count(
        field,
        &format!("{key}.{name}"),
        default,
        1..=usize::MAX,
        report,
    )
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            plain: Vec::new(),
            proxy_protocol: Vec::new(),
            trusted_proxies: Vec::new(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            drain_window: DEFAULT_DRAIN_WINDOW,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            tls: None,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_payload: DEFAULT_MAX_PAYLOAD,
            send_buffer: DEFAULT_SEND_BUFFER,
            on_slow_consumer: SlowConsumer::Close,
            message_rate: Rate::new(DEFAULT_MESSAGE_RATE, OnExceed::Throttle),
            byte_rate: None,
            ping_interval: DEFAULT_PING_INTERVAL,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
        }
    }
}

impl Rate {
    /// A rate from `(per_second, burst)` constants, which are never zero.
    fn new((per_second, burst): (u32, u32), on_exceed: OnExceed) -> Self {
        let nonzero = |n| NonZeroU32::new(n).expect("default rates are positive");
        Self {
            per_second: nonzero(per_second),
            burst: nonzero(burst),
            on_exceed,
        }
    }
}
