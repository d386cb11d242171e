//! Turns the raw TOML mirror into a validated [`Config`], one module per
//! table, collecting every problem with its location instead of stopping at
//! the first.
//!
//! Validation is pure: it reads no file and no environment. Paths are
//! resolved against a base directory the caller made absolute, and the files
//! they name are read afterwards, by the load step.
//!
//! Each table's module exposes one function that takes the table's raw
//! mirror, whatever it depends on from tables validated before it, and the
//! [`Scope`] of its key path, and returns the table's validated settings; it
//! reports every problem relative to that scope, and returns a usable value
//! (defaults in place of bad values) so that later tables are checked too.
//!
//! A new table, say `[auth]`, is:
//! - its mirror (`RawAuth`) in `raw`, and its field in `RawConfig`;
//! - a module here, `auth.rs`, with `validate(raw, .., scope) -> AuthSettings`
//!   (shared value readers are in `fields`);
//! - one line in [`validate`], and its field in [`Config`];
//! - its keys written back in `print`, and, if it names files, their reading
//!   in `load`.
//!
//! `[auth]` is validated before the channels, whose default `auth` mode
//! depends on whether the table exists.

mod admin;
mod auth;
mod channel;
pub(super) mod cluster;
mod compression;
mod fields;
mod limits;
mod server;
mod tls;

use std::path::Path;

use super::{
    Config,
    load::{AuthFiles, Unread},
    raw::RawConfig,
    report::Scope,
};

/// Validates `raw`; relative paths are resolved against `base_dir`, which is
/// absolute. Beside the configuration, where `[auth]` named its files.
pub(super) fn validate(
    raw: RawConfig,
    base_dir: &Path,
    root: &mut Scope<'_, '_>,
) -> (Config<Unread>, AuthFiles) {
    let server = server::validate(raw.server, base_dir, &mut root.table("server"));
    let (admission, limits) = limits::global(raw.limits.as_ref(), &mut root.table("limits"));
    let compression = compression::table(raw.compression.as_ref(), &mut root.table("compression"));
    let auth_table = raw.auth.is_some();
    let (auth, auth_files) = auth::validate(raw.auth, base_dir, &mut root.table("auth"))
        .map_or((None, AuthFiles::default()), |(settings, files)| {
            (Some(settings), files)
        });
    let channels = channel::validate_all(raw.channels, &limits, &compression, auth_table, root);
    let admin = admin::validate(raw.admin, &server, base_dir, &mut root.table("admin"));
    let cluster = cluster::validate(raw.cluster, base_dir, &mut root.table("cluster"));
    let config = Config {
        server,
        admission,
        limits,
        channels,
        admin,
        auth,
        cluster,
        warnings: Vec::new(),
    };
    (config, auth_files)
}
