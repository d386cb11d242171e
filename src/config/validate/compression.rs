//! `[compression]` and `[channel.compression]`: permessage-deflate. Each
//! table is validated once, on its own, into the keys it sets; a channel's
//! settings then resolve key by key: the channel's value, else the global
//! one, else the default for the channel's kind.

use toml::Spanned;

use super::fields;
use crate::{
    config::{
        ChannelKind, Compression, CompressionMode, raw::RawCompression, report::Scope, units,
    },
    protocol::window_bits,
};

/// Highest zlib level (smallest output).
const LEVEL_MAX: u32 = 9;

/// The keys one compression table sets, validated; `None` where it leaves a
/// key out (or its value was bad, and reported).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Overrides {
    enabled: Option<bool>,
    mode: Option<CompressionMode>,
    threshold: Option<usize>,
    level: Option<u32>,
    server_max_window_bits: Option<u8>,
    client_max_window_bits: Option<u8>,
    server_no_context_takeover: Option<bool>,
    client_no_context_takeover: Option<bool>,
}

/// Validates one compression table; `scope` is the table's.
pub(super) fn table(raw: Option<&RawCompression>, scope: &mut Scope<'_, '_>) -> Overrides {
    let Some(raw) = raw else {
        return Overrides::default();
    };
    let flag = |field: &Option<Spanned<bool>>| field.as_ref().map(|v| *v.get_ref());
    Overrides {
        enabled: flag(&raw.enabled),
        mode: fields::keyword(raw.mode.as_ref(), "mode", scope),
        threshold: raw.threshold.as_ref().and_then(|value| {
            // Zero is allowed: compress every message.
            units::parse_size(value.get_ref())
                .map_err(|message| scope.error(value.span(), "threshold", message))
                .ok()
        }),
        level: raw.level.as_ref().and_then(|value| {
            u32::try_from(*value.get_ref())
                .ok()
                .filter(|level| *level <= LEVEL_MAX)
                .or_else(|| {
                    scope.error(
                        value.span(),
                        "level",
                        format!(
                            "{} is not a zlib level; use 0 (store) to {LEVEL_MAX} (smallest)",
                            value.get_ref()
                        ),
                    );
                    None
                })
        }),
        server_max_window_bits: bits(
            raw.server_max_window_bits.as_ref(),
            "server_max_window_bits",
            scope,
        ),
        client_max_window_bits: bits(
            raw.client_max_window_bits.as_ref(),
            "client_max_window_bits",
            scope,
        ),
        server_no_context_takeover: flag(&raw.server_no_context_takeover),
        client_no_context_takeover: flag(&raw.client_no_context_takeover),
    }
}

/// A window size zlib can use for raw deflate.
fn bits(field: Option<&Spanned<i64>>, name: &str, scope: &mut Scope<'_, '_>) -> Option<u8> {
    let value = field?;
    match u8::try_from(*value.get_ref()) {
        Ok(bits) if (window_bits::MIN..=window_bits::MAX).contains(&bits) => Some(bits),
        _ => {
            scope.error(value.span(), name, format!("{} is not a window size zlib can use; use {} to {} (8 is not supported for raw deflate)", value.get_ref(), window_bits::MIN, window_bits::MAX));
            None
        }
    }
}

impl Overrides {
    /// A channel's settings: each key from `self` (the channel's table),
    /// else from `global`, else the default for `kind`.
    pub(super) fn resolve(self, global: &Self, kind: Option<ChannelKind>) -> Compression {
        let default = Compression::for_kind(kind);
        Compression {
            enabled: self.enabled.or(global.enabled).unwrap_or(default.enabled),
            mode: self.mode.or(global.mode).unwrap_or(default.mode),
            threshold: self
                .threshold
                .or(global.threshold)
                .unwrap_or(default.threshold),
            level: self.level.or(global.level).unwrap_or(default.level),
            server_max_window_bits: self
                .server_max_window_bits
                .or(global.server_max_window_bits)
                .unwrap_or(default.server_max_window_bits),
            client_max_window_bits: self
                .client_max_window_bits
                .or(global.client_max_window_bits)
                .unwrap_or(default.client_max_window_bits),
            server_no_context_takeover: self
                .server_no_context_takeover
                .or(global.server_no_context_takeover)
                .unwrap_or(default.server_no_context_takeover),
            client_no_context_takeover: self
                .client_no_context_takeover
                .or(global.client_no_context_takeover)
                .unwrap_or(default.client_no_context_takeover),
        }
    }
}
