//! `[[channel]]`: each channel's route, kind, origins, publishers, room caps
//! and auth mode, with its `[channel.limits]` and `[channel.compression]`;
//! and what the channels must not share (names, overlapping paths).

use std::{collections::HashMap, ops::Range};

use toml::Spanned;

use super::{
    compression::{self, Overrides},
    fields, limits,
};
use crate::{
    auth::permissions::Rooms,
    config::{
        AuthMode, ChannelAuth, ChannelConfig, ChannelKind, DEFAULT_MAX_MEMBERS, DEFAULT_MAX_ROOMS,
        DEFAULT_MAX_ROOMS_PER_CONNECTION, Limits, OriginPattern, OriginPolicy, PathPattern,
        defaults, keyword, raw::RawChannel, report::Scope,
    },
};

/// Validates every `[[channel]]` table; `scope` is the whole file's, each
/// channel reports under `channel[index]`. Channels with an unusable name,
/// path or kind are left out (and reported). `auth_table`: whether the file
/// has an `[auth]` table.
pub(super) fn validate_all(
    raw: Vec<Spanned<RawChannel>>,
    limits: &Limits,
    compression: &Overrides,
    auth_table: bool,
    scope: &mut Scope<'_, '_>,
) -> Vec<ChannelConfig> {
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut accepted: Vec<ChannelConfig> = Vec::new();
    for (index, entry) in raw.into_iter().enumerate() {
        let span = entry.span();
        let mut scope = scope.entry("channel", index);
        let raw = entry.into_inner();
        let Some(channel) = validate(raw, &span, limits, compression, auth_table, &mut scope)
        else {
            continue;
        };
        if let Some(first) = names.insert(channel.name.clone(), index) {
            scope.error(
                span.clone(),
                "name",
                format!(
                    "channel name {:?} is already used by channel[{first}]; names must be unique",
                    channel.name
                ),
            );
        }
        if let Some(other) = accepted
            .iter()
            .find(|other| other.path.overlaps(&channel.path))
        {
            scope.error(span, "path", format!("path {} overlaps {} of channel {:?}: a request could match both; make them differ in a literal segment", channel.path, other.path, other.name));
        }
        accepted.push(channel);
    }
    accepted
}

/// Validates one `[[channel]]` table written at `span`; `None` when a
/// required key is unusable.
fn validate(
    raw: RawChannel,
    span: &Range<usize>,
    global_limits: &Limits,
    global_compression: &Overrides,
    auth_table: bool,
    scope: &mut Scope<'_, '_>,
) -> Option<ChannelConfig> {
    fields::require(
        raw.name.as_ref(),
        span,
        "name",
        "every channel needs a unique name such as \"chat\"",
        scope,
    );
    fields::require(
        raw.path.as_ref(),
        span,
        "path",
        "such as \"/news\", or \"/chat/{room}\" for rooms",
        scope,
    );
    fields::require(
        raw.kind.as_ref(),
        span,
        "kind",
        &keyword::choices::<ChannelKind>(),
        scope,
    );

    let name = raw.name.as_ref().and_then(|name| {
        let valid = !name.get_ref().is_empty()
            && name
                .get_ref()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !valid {
            scope.error(
                name.span(),
                "name",
                format!(
                    "{:?} is not a channel name; use letters, digits, '_', '.' and '-'",
                    name.get_ref()
                ),
            );
        }
        valid.then(|| name.get_ref().clone())
    });
    let kind = fields::keyword(raw.kind.as_ref(), "kind", scope);
    let path = raw.path.as_ref().and_then(|path| match PathPattern::parse(path.get_ref()) {
        Ok(pattern) => {
            match (kind, pattern.is_template()) {
                (Some(ChannelKind::Room), false) => scope.error(path.span(), "path", format!("room channels need a template with a {{room}} segment, such as \"{}/{{room}}\"", path.get_ref().trim_end_matches('/'))),
                (Some(ChannelKind::Echo | ChannelKind::Broadcast | ChannelKind::Hub), true) => scope.error(path.span(), "path", "only room channels may use a {room} segment (hub connections join rooms in band); use kind = \"room\" or a literal path"),
                _ => {}
            }
            Some(pattern)
        }
        Err(message) => {
            scope.error(path.span(), "path", message);
            None
        }
    });

    let origins = origin_policy(&raw, scope);
    if kind == Some(ChannelKind::Echo) {
        let fanout_only = [
            ("publish", raw.publish.as_ref().map(Spanned::span)),
            (
                "echo_to_sender",
                raw.echo_to_sender.as_ref().map(Spanned::span),
            ),
        ];
        for (name, span) in fanout_only {
            if let Some(span) = span {
                scope.error(span, name, format!("`{name}` applies to broadcast and room channels only; remove it from this echo channel"));
            }
        }
    }
    let publish = fields::keyword(raw.publish.as_ref(), "publish", scope)
        .unwrap_or_else(|| defaults::publish(kind));
    let subprotocols = subprotocols(raw.subprotocols.as_ref(), scope);
    let max_members = room_cap(
        raw.max_members.as_ref(),
        "max_members",
        DEFAULT_MAX_MEMBERS,
        kind,
        scope,
    );
    let max_rooms = room_cap(
        raw.max_rooms.as_ref(),
        "max_rooms",
        DEFAULT_MAX_ROOMS,
        kind,
        scope,
    );
    let field = raw.max_rooms_per_connection.as_ref();
    if let (Some(value), true) = (field, kind.is_some_and(|k| k != ChannelKind::Hub)) {
        scope.error(value.span(), "max_rooms_per_connection", "`max_rooms_per_connection` applies to hub channels only; remove it or use kind = \"hub\"");
    }
    let max_rooms_per_connection = fields::count(
        field,
        "max_rooms_per_connection",
        DEFAULT_MAX_ROOMS_PER_CONNECTION,
        1..=usize::MAX,
        scope,
    );
    if let (Some(value), true) = (
        raw.presence_events.as_ref(),
        kind.is_some_and(|k| !k.has_rooms()),
    ) {
        scope.error(
            value.span(),
            "presence_events",
            "`presence_events` applies to room and hub channels only; remove it",
        );
    }
    let auth = channel_auth(&raw, kind, auth_table, scope);
    let limits = limits::channel(
        raw.limits.as_ref(),
        global_limits,
        &mut scope.table("limits"),
    );
    let compression = compression::table(raw.compression.as_ref(), &mut scope.table("compression"))
        .resolve(global_compression, kind);

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
        max_rooms_per_connection,
        presence_events: raw.presence_events.is_some_and(Spanned::into_inner),
        auth,
        limits,
        compression,
    })
}

/// `auth` and `rooms`. A channel that does not say requires an identity when
/// the file has an `[auth]` table: adding one cannot leave a channel open by
/// an oversight. Without the table there is nothing to verify with, so
/// `"required"` and `"optional"` are errors.
fn channel_auth(
    raw: &RawChannel,
    kind: Option<ChannelKind>,
    auth_table: bool,
    scope: &mut Scope<'_, '_>,
) -> ChannelAuth {
    let default = if auth_table {
        AuthMode::Required
    } else {
        AuthMode::None
    };
    let mode = match (fields::keyword(raw.auth.as_ref(), "auth", scope), &raw.auth) {
        (Some(mode @ (AuthMode::Required | AuthMode::Optional)), Some(value)) if !auth_table => {
            scope.error(
                value.span(),
                "auth",
                format!(
                    "auth = {:?} needs an [auth] table that says how identities are verified; add one, or remove `auth`",
                    keyword::words::<AuthMode>()[mode as usize]
                ),
            );
            default
        }
        (mode, _) => mode.unwrap_or(default),
    };
    let rooms = match (
        fields::keyword(raw.rooms.as_ref(), "rooms", scope),
        &raw.rooms,
    ) {
        (Some(_), Some(value)) if kind.is_some_and(|k| !k.has_rooms()) => {
            scope.error(
                value.span(),
                "rooms",
                "`rooms` applies to room and hub channels only; remove it",
            );
            Rooms::Shared
        }
        (Some(Rooms::PerUser), Some(value)) if mode == AuthMode::None => {
            scope.error(value.span(), "rooms", "\"per_user\" rooms belong to the users they are named after, so the channel must know who connects: it needs auth = \"required\" or \"optional\" (and an [auth] table)");
            Rooms::Shared
        }
        (rooms, _) => rooms.unwrap_or(Rooms::Shared),
    };
    ChannelAuth { mode, rooms }
}

fn origin_policy(raw: &RawChannel, scope: &mut Scope<'_, '_>) -> OriginPolicy {
    let Some(list) = raw.origins.as_ref() else {
        return OriginPolicy::Any;
    };
    let allow_missing = raw
        .allow_missing_origin
        .as_ref()
        .is_some_and(|a| *a.get_ref());
    let entries = list.get_ref();
    if entries.is_empty() {
        scope.error(list.span(), "origins", "an empty list would refuse every browser; omit `origins` to allow any origin, or list the allowed ones");
        return OriginPolicy::Any;
    }
    if entries.iter().any(|e| e.get_ref() == "*") {
        if entries.len() > 1 {
            scope.error(
                list.span(),
                "origins",
                "\"*\" already allows every origin; remove the other entries or remove \"*\"",
            );
        }
        return OriginPolicy::Any;
    }
    let patterns = entries
        .iter()
        .filter_map(|entry| {
            OriginPattern::parse(entry.get_ref())
                .map_err(|message| scope.error(entry.span(), "origins", message))
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
    scope: &mut Scope<'_, '_>,
) -> Vec<String> {
    let Some(list) = field else { return Vec::new() };
    let mut accepted: Vec<String> = Vec::new();
    for entry in list.get_ref() {
        let name = entry.get_ref();
        if !fields::is_token(name) {
            scope.error(entry.span(), "subprotocols", format!("{name:?} is not a subprotocol token; use letters, digits and !#$%&'*+-.^_`|~ such as \"chat.v1\""));
        } else if accepted.contains(name) {
            scope.error(
                entry.span(),
                "subprotocols",
                format!("{name:?} is listed twice"),
            );
        } else {
            accepted.push(name.clone());
        }
    }
    accepted
}

/// `max_members` or `max_rooms`: room channels only.
fn room_cap(
    field: Option<&Spanned<i64>>,
    name: &str,
    default: usize,
    kind: Option<ChannelKind>,
    scope: &mut Scope<'_, '_>,
) -> usize {
    if let (Some(value), true) = (field, kind.is_some_and(|k| !k.has_rooms())) {
        scope.error(
            value.span(),
            name,
            format!(
                "`{name}` applies to room and hub channels only; remove it or use kind = \"room\""
            ),
        );
    }
    fields::count(field, name, default, 1..=usize::MAX, scope)
}
