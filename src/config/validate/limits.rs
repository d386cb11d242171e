//! `[limits]` and `[channel.limits]`: the server-wide admission limits (global
//! table only) and the per-connection limits, each channel's over the global
//! ones, with their cross-checks.

use std::{num::NonZeroU32, ops::Range};

use toml::Spanned;

use super::fields;
use crate::config::{
    Admission, DEFAULT_HANDSHAKE_RATE, DEFAULT_IPV6_PREFIX, DEFAULT_MAX_CONNECTIONS_PER_IP,
    DEFAULT_ON_EXCEED, Limits, Rate,
    raw::{RawLimits, RawRate},
    report::Scope,
    units,
};

/// Largest IPv6 prefix length: one address.
const IPV6_PREFIX_MAX: usize = 128;

/// Validates the global `[limits]` over the defaults; `scope` is the table's.
pub(super) fn global(raw: Option<&RawLimits>, scope: &mut Scope<'_, '_>) -> (Admission, Limits) {
    let Some(raw) = raw else {
        return (Admission::default(), Limits::default());
    };
    let limits = connection(raw, &Limits::default(), scope);
    if let Some(on_exceed) = raw
        .handshake_rate
        .as_ref()
        .and_then(|r| r.get_ref().on_exceed.as_ref())
    {
        scope.error(
            on_exceed.span(),
            "handshake_rate.on_exceed",
            "handshakes over the rate always get 429 with Retry-After; remove `on_exceed`",
        );
    }
    let handshake_rate = raw
        .handshake_rate
        .as_ref()
        .and_then(|r| rate(r, "handshake_rate", positive_count, scope))
        // Handshakes have no policy of their own; keep the one of the
        // default, so that writing the default out changes nothing.
        .map_or(DEFAULT_HANDSHAKE_RATE, |rate| Rate {
            on_exceed: DEFAULT_HANDSHAKE_RATE.on_exceed,
            ..rate
        });
    let admission = Admission {
        max_connections: limits.max_connections,
        max_connections_per_ip: fields::count(
            raw.max_connections_per_ip.as_ref(),
            "max_connections_per_ip",
            DEFAULT_MAX_CONNECTIONS_PER_IP,
            1..=usize::MAX,
            scope,
        ),
        ipv6_prefix: fields::count(
            raw.ipv6_prefix.as_ref(),
            "ipv6_prefix",
            DEFAULT_IPV6_PREFIX.into(),
            1..=IPV6_PREFIX_MAX,
            scope,
        ) as u8,
        handshake_rate,
    };
    (admission, limits)
}

/// Validates a channel's `[channel.limits]` over the global limits
/// (`inherited`); `scope` is the table's. The server-wide keys are errors
/// here.
pub(super) fn channel(
    raw: Option<&RawLimits>,
    inherited: &Limits,
    scope: &mut Scope<'_, '_>,
) -> Limits {
    let Some(raw) = raw else {
        return inherited.clone();
    };
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
            scope.error(span, name, format!("`{name}` applies before a request is routed, so only in the global [limits] table; move it there"));
        }
    }
    connection(raw, inherited, scope)
}

/// The per-connection keys, valid in both tables, over `inherited`.
fn connection(raw: &RawLimits, inherited: &Limits, scope: &mut Scope<'_, '_>) -> Limits {
    let limits = Limits {
        max_connections: fields::count(
            raw.max_connections.as_ref(),
            "max_connections",
            inherited.max_connections,
            1..=usize::MAX,
            scope,
        ),
        max_payload: fields::size(
            raw.max_payload.as_ref(),
            "max_payload",
            inherited.max_payload,
            scope,
        ),
        send_buffer: fields::size(
            raw.send_buffer.as_ref(),
            "send_buffer",
            inherited.send_buffer,
            scope,
        ),
        on_slow_consumer: fields::keyword(raw.on_slow_consumer.as_ref(), "on_slow_consumer", scope)
            .unwrap_or(inherited.on_slow_consumer),
        message_rate: raw
            .message_rate
            .as_ref()
            .and_then(|r| rate(r, "message_rate", positive_count, scope))
            .unwrap_or(inherited.message_rate),
        byte_rate: match raw.byte_rate.as_ref() {
            None => inherited.byte_rate,
            Some(r) => rate(r, "byte_rate", positive_size, scope),
        },
        ping_interval: fields::duration(
            raw.ping_interval.as_ref(),
            "ping_interval",
            inherited.ping_interval,
            scope,
        ),
        idle_timeout: fields::duration(
            raw.idle_timeout.as_ref(),
            "idle_timeout",
            inherited.idle_timeout,
            scope,
        ),
        close_timeout: fields::duration(
            raw.close_timeout.as_ref(),
            "close_timeout",
            inherited.close_timeout,
            scope,
        ),
    };
    // A conflict between two keys is reported in a table that sets one of
    // them, at that key; one inherited whole was reported where it was written.
    let mut conflict = |keys: [(Option<Range<usize>>, &str); 2], message: String| {
        if let Some((span, name)) = keys
            .into_iter()
            .find_map(|(span, name)| span.map(|span| (span, name)))
        {
            scope.error(span, name, message);
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

/// Reads the rate table `name`; `per_second` is required, `burst` defaults to
/// it and `on_exceed` to the default policy. `None` (after reporting) when
/// unusable.
fn rate<T>(
    raw: &Spanned<RawRate<T>>,
    name: &str,
    parse: fn(&Spanned<T>) -> Result<NonZeroU32, String>,
    scope: &mut Scope<'_, '_>,
) -> Option<Rate> {
    let table = raw.get_ref();
    let mut scope = scope.table(name);
    let field = |value: Option<&Spanned<T>>, name: &str, scope: &mut Scope<'_, '_>| {
        value.and_then(|value| {
            parse(value)
                .map_err(|message| scope.error(value.span(), name, message))
                .ok()
        })
    };
    let per_second = field(table.per_second.as_ref(), "per_second", &mut scope);
    let burst = field(table.burst.as_ref(), "burst", &mut scope);
    if table.per_second.is_none() {
        scope.error(
            raw.span(),
            "per_second",
            "missing `per_second`; write a rate such as { per_second = 100, burst = 200 }",
        );
    }
    let on_exceed = fields::keyword(table.on_exceed.as_ref(), "on_exceed", &mut scope)
        .unwrap_or(DEFAULT_ON_EXCEED);
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
