//! `[cluster]`: the Redis link between nodes. Every key but `url` has a
//! default; the password and CA files are read later, by the load step,
//! and the default node name (host name and process id) is made there too,
//! as it reads the host name.
//!
//! The rules of each setting are the link's own
//! ([`ClusterSettings::validate`]): this module reads the keys, asks the
//! link, and reports each refusal at the key it is about.

use std::{ops::Range, path::PathBuf};

use toml::Spanned;

use super::fields;
use crate::{
    cluster::{
        Address, ClusterSettings, DEFAULT_PREFIX, DEFAULT_PRESENCE_TTL, DEFAULT_PROBE_INTERVAL,
        DEFAULT_PROBE_TIMEOUT, DEFAULT_RECONNECT_MAX, DEFAULT_RECONNECT_MIN, Engine, Mode,
        RedisUrl, TlsRoots,
    },
    config::{
        Loaded, Stage,
        keyword::{Keyword, Word},
        load::Unread,
        raw::{Field, RawCluster},
        report::Scope,
        units,
    },
};

/// The validated `[cluster]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClusterConfig<S: Stage = Loaded> {
    /// What the link runs with. Before the load step it has no password,
    /// the system's trust store, and an empty node name when none is set.
    pub(crate) settings: ClusterSettings,
    /// The URL as written (for print-config).
    pub(crate) url: String,
    /// The node name as written; `None` for the default.
    pub(crate) node_name: Option<String>,
    /// The file the password is read from.
    pub(crate) password_file: Option<PathBuf>,
    /// The file of the authorities a `rediss://` server must be signed by.
    pub(crate) ca_file: Option<PathBuf>,
    /// Where those files were named (before the load step).
    pub(crate) files: S::ClusterFiles,
}

/// Where `password_file` and `ca_file` were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClusterFileSpans {
    pub(crate) password: Option<Range<usize>>,
    pub(crate) ca: Option<Range<usize>>,
}

impl Keyword for Engine {
    const NOUN: &'static str = "cluster engine";

    fn meaning(self) -> Option<&'static str> {
        Some(match self {
            Self::Redis => "Redis pub/sub",
        })
    }
}

impl Keyword for Mode {
    const NOUN: &'static str = "Redis mode";

    fn meaning(self) -> Option<&'static str> {
        Some(match self {
            Self::Standalone => "one Redis, PUBLISH and SUBSCRIBE",
            Self::Cluster => "a Redis Cluster, sharded pub/sub",
        })
    }
}

/// A node name that passes the link's rule, standing for the default one
/// while the settings are checked: the default is made by the load step,
/// and it always passes the rule.
const DEFAULT_NAME_STAND_IN: &str = "default";

/// Validates `[cluster]`; `None` without the table, or when its URL is
/// missing or unusable (reported). `scope` is the table's.
pub(super) fn validate(
    raw: Field<RawCluster>,
    base_dir: &std::path::Path,
    scope: &mut Scope<'_, '_>,
) -> Option<ClusterConfig<Unread>> {
    let table = raw?;
    let span = table.span();
    let raw = table.into_inner();
    let engine = fields::keyword(raw.engine.as_ref(), "engine", scope).unwrap_or(Engine::Redis);
    let mode = fields::keyword(raw.mode.as_ref(), "mode", scope).unwrap_or(Mode::Standalone);
    let duration = |field: &Field<String>, name, default, scope: &mut Scope<'_, '_>| {
        fields::duration(field.as_ref(), name, default, scope)
    };
    let probe_interval = duration(
        &raw.probe_interval,
        "probe_interval",
        DEFAULT_PROBE_INTERVAL,
        scope,
    );
    let probe_timeout = duration(
        &raw.probe_timeout,
        "probe_timeout",
        DEFAULT_PROBE_TIMEOUT,
        scope,
    );
    let reconnect_min = duration(
        &raw.reconnect_min,
        "reconnect_min",
        DEFAULT_RECONNECT_MIN,
        scope,
    );
    let reconnect_max = duration(
        &raw.reconnect_max,
        "reconnect_max",
        DEFAULT_RECONNECT_MAX,
        scope,
    );
    let presence_ttl = duration(
        &raw.presence_ttl,
        "presence_ttl",
        DEFAULT_PRESENCE_TTL,
        scope,
    );
    let path = |field: &Field<String>| {
        field
            .as_ref()
            .map(|path| fields::resolve(base_dir, path.get_ref()))
    };
    let (password_file, ca_file) = (path(&raw.password_file), path(&raw.ca_file));
    let Some(url_field) = raw.url.as_ref() else {
        fields::require(
            raw.url.as_ref(),
            &span,
            "url",
            "name the Redis, such as url = \"redis://127.0.0.1:6379\"",
            scope,
        );
        return None;
    };
    let url = match RedisUrl::parse(url_field.get_ref()) {
        Ok(url) => url,
        Err(message) => {
            scope.error(url_field.span(), "url", message);
            return None;
        }
    };
    let tls = matches!(url.address, Address::Tcp { tls: true, .. });
    let mut ca = raw.ca_file.as_ref().map(|ca| (ca_file.clone(), ca.span()));
    if let (Some((_, span)), false) = (&ca, tls) {
        scope.error(
            span.clone(),
            "ca_file",
            "the authorities are for TLS; use a rediss:// URL or remove ca_file",
        );
        // Reported once: the file is not read.
        ca = None;
    }
    let node_name = raw.node_name.as_ref().map(|name| name.get_ref().clone());
    let settings = ClusterSettings {
        engine,
        url,
        password: None,
        tls_roots: TlsRoots::System,
        prefix: raw
            .prefix
            .as_ref()
            .map_or(DEFAULT_PREFIX, |prefix| prefix.get_ref())
            .to_owned(),
        node_name: node_name.clone().unwrap_or_default(),
        mode,
        probe_interval,
        probe_timeout,
        reconnect_min,
        reconnect_max,
        presence_ttl,
    };
    let checked = ClusterSettings {
        node_name: node_name
            .clone()
            .unwrap_or_else(|| DEFAULT_NAME_STAND_IN.to_owned()),
        ..settings.clone()
    };
    if let Err(errors) = checked.validate() {
        for error in errors.0 {
            // At the key when it is written, else (a default that does not
            // fit a written key) at the table.
            let at = written(&raw, error.key).unwrap_or_else(|| span.clone());
            scope.error(at, error.key, error.message);
        }
    }
    Some(ClusterConfig {
        url: url_field.get_ref().clone(),
        settings,
        node_name,
        password_file,
        ca_file: ca.as_ref().and_then(|(file, _)| file.clone()),
        files: ClusterFileSpans {
            password: raw.password_file.as_ref().map(Spanned::span),
            ca: ca.map(|(_, span)| span),
        },
    })
}

/// Where the key `name` was written, if it was.
fn written(raw: &RawCluster, name: &str) -> Option<Range<usize>> {
    let field = match name {
        "url" => &raw.url,
        "prefix" => &raw.prefix,
        "node_name" => &raw.node_name,
        "probe_interval" => &raw.probe_interval,
        "probe_timeout" => &raw.probe_timeout,
        "reconnect_min" => &raw.reconnect_min,
        "reconnect_max" => &raw.reconnect_max,
        "presence_ttl" => &raw.presence_ttl,
        _ => return None,
    };
    field.as_ref().map(Spanned::span)
}

impl ClusterConfig {
    /// The table as print-config writes it: every default written out but
    /// the node name (the default is made per process), the password never.
    pub(crate) fn to_raw(&self) -> RawCluster {
        let some = |value: String| Some(Spanned::new(0..0, value));
        let settings = &self.settings;
        RawCluster {
            engine: Some(Spanned::new(0..0, Word::Known(settings.engine))),
            url: some(self.url.clone()),
            password_file: self
                .password_file
                .as_ref()
                .and_then(|file| some(file.display().to_string())),
            ca_file: self
                .ca_file
                .as_ref()
                .and_then(|file| some(file.display().to_string())),
            prefix: some(settings.prefix.clone()),
            node_name: self.node_name.clone().and_then(some),
            mode: Some(Spanned::new(0..0, Word::Known(settings.mode))),
            probe_interval: some(units::format_duration(settings.probe_interval)),
            probe_timeout: some(units::format_duration(settings.probe_timeout)),
            reconnect_min: some(units::format_duration(settings.reconnect_min)),
            reconnect_max: some(units::format_duration(settings.reconnect_max)),
            presence_ttl: some(units::format_duration(settings.presence_ttl)),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        cluster::{Address, Mode, Password, TlsRoots, default_node_name},
        config::Config,
    };

    #[test]
    fn the_loaded_table_holds_the_password_the_roots_and_the_default_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\r\n").unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["redis.internal".to_owned()]).unwrap();
        std::fs::write(dir.path().join("ca.pem"), cert.cert.pem().repeat(2)).unwrap();
        let text = "[server]\nplain = [\"127.0.0.1:8080\"]\n[cluster]\nurl = \"rediss://app@redis.internal:6380\"\npassword_file = \"pw\"\nca_file = \"ca.pem\"\nmode = \"cluster\"\n";
        std::fs::write(dir.path().join("wsedge.toml"), text).unwrap();
        let config = Config::from_file(dir.path().join("wsedge.toml")).unwrap();
        let cluster = config.cluster.expect("[cluster]");
        let settings = &cluster.settings;
        assert_eq!(settings.password, Some(Password::new("s3cret")));
        assert!(
            matches!(&settings.tls_roots, TlsRoots::Custom(roots) if roots.len() == 2),
            "{:?}",
            settings.tls_roots
        );
        assert_eq!(settings.url.username.as_deref(), Some("app"));
        assert!(matches!(
            &settings.url.address,
            Address::Tcp {
                port: 6380,
                tls: true,
                ..
            }
        ));
        assert_eq!(settings.mode, Mode::Cluster);
        assert_eq!(settings.node_name, default_node_name());
        assert_eq!(cluster.node_name, None);
        settings.validate().unwrap();
    }
}
