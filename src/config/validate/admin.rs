//! `[admin]`: the admin listener's address and the file of its bearer token
//! (read later, by the load step).

use std::{net::SocketAddr, path::Path};

use toml::Spanned;

use super::fields;
use crate::config::{
    AdminSettings, DEFAULT_ADMIN_LISTEN, ServerSettings,
    load::Unread,
    raw::{Field, RawAdmin},
    report::Scope,
};

/// Validates `[admin]` against the WebSocket listeners of `server`; `None`
/// without the table, or when its address is unusable (reported). `scope`
/// is the table's.
pub(super) fn validate(
    raw: Field<RawAdmin>,
    server: &ServerSettings<Unread>,
    base_dir: &Path,
    scope: &mut Scope<'_, '_>,
) -> Option<AdminSettings<Unread>> {
    let table = raw?;
    let span = table.span();
    let raw = table.into_inner();
    let listen = match raw.listen.as_ref() {
        None => DEFAULT_ADMIN_LISTEN,
        Some(addr) => {
            match addr.get_ref().parse::<SocketAddr>() {
                Ok(addr) => addr,
                Err(_) => {
                    scope.error(addr.span(), "listen", format!("{:?} is not a socket address; write IP:PORT such as \"127.0.0.1:9090\"", addr.get_ref()));
                    return None;
                }
            }
        }
    };
    let clashes = server
        .listen
        .iter()
        .chain(&server.plain)
        .any(|addr| *addr == listen && addr.port() != 0);
    if clashes {
        // At the address if it is written, else at the table that left the
        // default in place.
        let (at, what) = match raw.listen.as_ref() {
            Some(addr) => (addr.span(), listen.to_string()),
            None => (span, format!("{listen} (the default admin address)")),
        };
        scope.error(
            at,
            "listen",
            format!("{what} is also a WebSocket listener; give the admin API its own address"),
        );
    }
    let token_file = raw
        .token_file
        .as_ref()
        .map(|path| fields::resolve(base_dir, path.get_ref()));
    Some(AdminSettings {
        listen,
        token_file,
        token: raw.token_file.as_ref().map(Spanned::span),
    })
}
