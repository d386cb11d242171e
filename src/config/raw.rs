//! The serde mirror of the TOML file: every table denies unknown keys and
//! every value keeps its span, so that validation can point at file:line:column.
//!
//! Keywords are their enums, read by serde as a [`Word`] so that an unknown
//! one is reported with the others instead of failing the whole file. Values
//! that need checking beyond their TOML type (units, addresses, paths) are
//! read as strings here and judged in `validate`, which collects every
//! problem instead of stopping at the first. The same types serialize the
//! effective configuration for `print-config`.

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{
    AuthMode, ChannelKind, CompressionMode, OnExceed, Publish, SlowConsumer, keyword::Word,
};
use crate::auth::{
    Algorithm,
    permissions::Rooms,
    settings::{AbsentGrants, SourceKind},
};
use crate::cluster::{Engine, Mode};

/// An optional value that remembers where it was written.
pub(crate) type Field<T> = Option<Spanned<T>>;

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Field<RawServer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<RawLimits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<RawCompression>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Field<RawAdmin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Field<RawAuth>,
    pub cluster: Field<RawCluster>,
    #[serde(default, rename = "channel", skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<Spanned<RawChannel>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Field<Vec<Spanned<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain: Field<Vec<Spanned<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Field<Vec<Spanned<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_proxies: Field<Vec<Spanned<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_timeout: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_window: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_timeout: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Field<RawTls>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_signed: Field<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Field<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections_per_ip: Field<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_prefix: Field<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_payload: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_buffer: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_slow_consumer: Field<Word<SlowConsumer>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_interval: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_timeout: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_rate: Field<RawRate<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_rate: Field<RawRate<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byte_rate: Field<RawRate<String>>,
}

/// A rate: `{ per_second = 100, burst = 200, on_exceed = "throttle" }`, with
/// counts for messages and handshakes, sizes (`"1MiB"`) for bytes.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRate<T> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_second: Field<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Field<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_exceed: Field<Word<OnExceed>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawChannel {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Field<Word<ChannelKind>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origins: Field<Vec<Spanned<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_missing_origin: Field<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Field<Word<Publish>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo_to_sender: Field<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subprotocols: Field<Vec<Spanned<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_members: Field<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rooms: Field<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rooms_per_connection: Field<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_events: Field<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Field<Word<AuthMode>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Field<Word<Rooms>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<RawLimits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<RawCompression>,
}

/// `[admin]`: health, metrics and the publish API.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Field<String>,
}

/// `[auth]`: JWT verification (algorithms, keys, claims checks), where
/// tokens are read from, the claims that carry the user and the grants, and
/// the `[auth.webhook]`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithms: Field<Vec<Spanned<Word<Algorithm>>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_keys: Field<Vec<Spanned<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_file: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_refresh: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_min_refetch: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_timeout: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leeway: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuers: Field<Vec<Spanned<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audiences: Field<Vec<Spanned<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_exp: Field<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Field<Vec<Spanned<Word<SourceKind>>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_marker: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_parameter: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_message_timeout: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_claim: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_claim: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_claim: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absent_grants: Field<Word<AbsentGrants>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Field<RawWebhook>,
}

/// `[auth.webhook]`: the connect webhook.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebhook {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Field<Vec<Spanned<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Field<String>,
}

/// `[compression]` and `[channel.compression]`: permessage-deflate.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCompression {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Field<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Field<Word<CompressionMode>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Field<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_max_window_bits: Field<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_max_window_bits: Field<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_no_context_takeover: Field<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_no_context_takeover: Field<bool>,
}

/// `[cluster]`: the Redis link between nodes.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Field<Word<Engine>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Field<Word<Mode>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_interval: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_timeout: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect_min: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect_max: Field<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_ttl: Field<String>,
}
