//! The effective configuration written back as TOML, for `print-config`.
//!
//! It goes through the same raw mirror that parses the file, so what is
//! printed parses again to the same configuration, and keywords are written
//! by serde, in the one spelling that the parser reads.

use toml::Spanned;

use super::{
    Admission, ChannelConfig, ChannelKind, Compression, Config, Limits, OriginPolicy, Rate,
    TlsSettings,
    keyword::Word,
    raw::{
        Field, RawAdmin, RawAuth, RawChannel, RawCompression, RawConfig, RawLimits, RawRate,
        RawServer, RawTls, RawWebhook,
    },
    units,
};
use crate::auth::{AuthSettings, JwtSettings, KeySource, TokenSource, settings::WebhookSettings};

pub(super) fn to_toml_string(config: &Config) -> String {
    let raw = RawConfig {
        server: field(RawServer {
            listen: field(list(config.server.listen.iter().map(ToString::to_string))),
            plain: field(list(config.server.plain.iter().map(ToString::to_string))),
            proxy_protocol: field(list(
                config.server.proxy_protocol.iter().map(ToString::to_string),
            )),
            trusted_proxies: field(list(
                config
                    .server
                    .trusted_proxies
                    .iter()
                    .map(ToString::to_string),
            )),
            handshake_timeout: field(units::format_duration(config.server.handshake_timeout)),
            drain_window: field(units::format_duration(config.server.drain_window)),
            shutdown_timeout: field(units::format_duration(config.server.shutdown_timeout)),
            tls: config
                .server
                .tls
                .as_ref()
                .and_then(|tls| field(raw_tls(tls))),
        }),
        limits: Some(global_limits(&config.admission, &config.limits)),
        // Compression is written out per channel, fully resolved.
        compression: None,
        // The token itself is never printed, only where it comes from.
        admin: config.admin.as_ref().and_then(|admin| {
            field(RawAdmin {
                listen: field(admin.listen.to_string()),
                token_file: admin
                    .token_file
                    .as_ref()
                    .and_then(|file| field(file.display().to_string())),
            })
        }),
        auth: config.auth.as_ref().and_then(|auth| field(raw_auth(auth))),
        cluster: config.cluster.as_ref().and_then(|c| field(c.to_raw())),
        channels: config
            .channels
            .iter()
            .map(|c| Spanned::new(0..0, raw_channel(c)))
            .collect(),
    };
    toml::to_string(&raw).expect("the raw mirror holds only strings, integers, booleans and tables")
}

fn field<T>(value: T) -> Field<T> {
    Some(Spanned::new(0..0, value))
}

fn list(items: impl Iterator<Item = String>) -> Vec<Spanned<String>> {
    items.map(|item| Spanned::new(0..0, item)).collect()
}

fn raw_tls(tls: &TlsSettings) -> RawTls {
    match tls {
        TlsSettings::Files { cert, key, .. } => RawTls {
            cert: field(cert.display().to_string()),
            key: field(key.display().to_string()),
            self_signed: None,
        },
        TlsSettings::SelfSigned { names } => RawTls {
            self_signed: field(list(names.iter().cloned())),
            ..RawTls::default()
        },
    }
}

fn global_limits(admission: &Admission, limits: &Limits) -> RawLimits {
    RawLimits {
        max_connections_per_ip: field(admission.max_connections_per_ip as i64),
        ipv6_prefix: field(admission.ipv6_prefix.into()),
        handshake_rate: field(RawRate {
            on_exceed: None,
            ..count_rate(&admission.handshake_rate)
        }),
        ..raw_limits(limits)
    }
}

/// The per-connection keys, valid in `[limits]` and `[channel.limits]`.
fn raw_limits(limits: &Limits) -> RawLimits {
    RawLimits {
        max_connections: field(limits.max_connections as i64),
        max_connections_per_ip: None,
        ipv6_prefix: None,
        handshake_rate: None,
        max_payload: field(units::format_size(limits.max_payload)),
        send_buffer: field(units::format_size(limits.send_buffer)),
        on_slow_consumer: field(Word::Known(limits.on_slow_consumer)),
        message_rate: field(count_rate(&limits.message_rate)),
        byte_rate: limits.byte_rate.as_ref().and_then(|rate| {
            field(RawRate {
                per_second: field(units::format_size(rate.per_second.get() as usize)),
                burst: field(units::format_size(rate.burst.get() as usize)),
                on_exceed: field(Word::Known(rate.on_exceed)),
            })
        }),
        ping_interval: field(units::format_duration(limits.ping_interval)),
        idle_timeout: field(units::format_duration(limits.idle_timeout)),
        close_timeout: field(units::format_duration(limits.close_timeout)),
    }
}

fn count_rate(rate: &Rate) -> RawRate<i64> {
    RawRate {
        per_second: field(rate.per_second.get().into()),
        burst: field(rate.burst.get().into()),
        on_exceed: field(Word::Known(rate.on_exceed)),
    }
}

fn raw_channel(channel: &ChannelConfig) -> RawChannel {
    let fanout = channel.kind != ChannelKind::Echo;
    let room = channel.kind.has_rooms();
    let hub = channel.kind == ChannelKind::Hub;
    let (origins, allow_missing_origin) = match &channel.origins {
        OriginPolicy::Any => (list(["*".to_owned()].into_iter()), None),
        OriginPolicy::Only {
            patterns,
            allow_missing,
        } => (
            list(patterns.iter().map(ToString::to_string)),
            field(*allow_missing),
        ),
    };
    RawChannel {
        name: field(channel.name.clone()),
        path: field(channel.path.to_string()),
        kind: field(Word::Known(channel.kind)),
        origins: field(origins),
        allow_missing_origin,
        publish: if fanout {
            field(Word::Known(channel.publish))
        } else {
            None
        },
        echo_to_sender: if fanout {
            field(channel.echo_to_sender)
        } else {
            None
        },
        subprotocols: field(list(channel.subprotocols.iter().cloned())),
        max_members: if room {
            field(channel.max_members as i64)
        } else {
            None
        },
        max_rooms: if room {
            field(channel.max_rooms as i64)
        } else {
            None
        },
        max_rooms_per_connection: if hub {
            field(channel.max_rooms_per_connection as i64)
        } else {
            None
        },
        presence_events: if room {
            field(channel.presence_events)
        } else {
            None
        },
        auth: field(Word::Known(channel.auth.mode)),
        rooms: if room {
            field(Word::Known(channel.auth.rooms))
        } else {
            None
        },
        limits: Some(raw_limits(&channel.limits)),
        compression: Some(raw_compression(&channel.compression)),
    }
}

/// `[auth]`. The keys of a source that is not listed, and the JWT keys
/// without JWT, are left out: the parser refuses them as keys that do nothing.
fn raw_auth(auth: &AuthSettings) -> RawAuth {
    let raw = RawAuth {
        absent_grants: field(Word::Known(auth.absent_grants)),
        webhook: auth.webhook.as_ref().and_then(|w| field(raw_webhook(w))),
        ..RawAuth::default()
    };
    match &auth.jwt {
        Some(jwt) => raw_jwt(auth, jwt, raw),
        None => raw,
    }
}

/// The JWT keys of `[auth]`, over `raw`.
fn raw_jwt(auth: &AuthSettings, jwt: &JwtSettings, mut raw: RawAuth) -> RawAuth {
    let path = |path: &std::path::Path| field(path.display().to_string());
    raw.algorithms = field(
        jwt.algorithms
            .iter()
            .map(|alg| Spanned::new(0..0, Word::Known(*alg)))
            .collect(),
    );
    let mut public_keys = Vec::new();
    for source in &jwt.keys {
        match source {
            KeySource::Secret(file) => raw.secret_file = path(file),
            KeySource::PemFile(file) => {
                public_keys.push(Spanned::new(0..0, file.display().to_string()))
            }
            KeySource::JwksFile(file) => raw.jwks_file = path(file),
            KeySource::JwksUrl(url) => {
                raw.jwks_url = field(url.url.clone());
                raw.jwks_refresh = field(units::format_duration(url.refresh));
                raw.jwks_min_refetch = field(units::format_duration(url.min_refetch));
                raw.jwks_timeout = field(units::format_duration(url.timeout));
                raw.ca_file = url.ca_file.as_deref().and_then(path);
            }
        }
    }
    if !public_keys.is_empty() {
        raw.public_keys = field(public_keys);
    }
    raw.leeway = field(units::format_duration(jwt.leeway));
    raw.issuers = field(list(jwt.issuers.iter().cloned()));
    raw.audiences = field(list(jwt.audiences.iter().cloned()));
    raw.require_exp = field(jwt.require_exp);
    raw.sources = field(
        auth.sources
            .iter()
            .map(|source| Spanned::new(0..0, Word::Known(source.kind())))
            .collect(),
    );
    for source in &auth.sources {
        match source {
            TokenSource::Bearer => {}
            TokenSource::Cookie(name) => raw.cookie = field(name.clone()),
            TokenSource::Protocol(marker) => raw.protocol_marker = field(marker.clone()),
            TokenSource::Query(name) => raw.query_parameter = field(name.clone()),
            TokenSource::FirstMessage => {
                raw.first_message_timeout =
                    field(units::format_duration(auth.first_message_timeout));
            }
        }
    }
    raw.user_claim = field(auth.claims.user.clone());
    raw.join_claim = field(auth.claims.join.clone());
    raw.publish_claim = field(auth.claims.publish.clone());
    raw
}

fn raw_webhook(webhook: &WebhookSettings) -> RawWebhook {
    RawWebhook {
        url: field(webhook.url.clone()),
        timeout: field(units::format_duration(webhook.timeout)),
        headers: field(list(webhook.headers.iter().cloned())),
        ca_file: webhook
            .ca_file
            .as_ref()
            .and_then(|file| field(file.display().to_string())),
    }
}

fn raw_compression(compression: &Compression) -> RawCompression {
    RawCompression {
        enabled: field(compression.enabled),
        mode: field(Word::Known(compression.mode)),
        threshold: field(units::format_size(compression.threshold)),
        level: field(compression.level.into()),
        server_max_window_bits: field(compression.server_max_window_bits.into()),
        client_max_window_bits: field(compression.client_max_window_bits.into()),
        server_no_context_takeover: field(compression.server_no_context_takeover),
        client_no_context_takeover: field(compression.client_no_context_takeover),
    }
}
