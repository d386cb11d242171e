//! The link's validated settings: where Redis is, how to authenticate,
//! how topics and keys are named, and the timings of probes, reconnection
//! and presence, each with a named default.

use std::{fmt, path::PathBuf, sync::Arc, time::Duration};

use tokio_rustls::rustls::RootCertStore;

/// Redis's default port.
pub const DEFAULT_PORT: u16 = 6379;

/// Every Redis channel and key the link uses starts with this, so wsedge
/// can share a Redis with other applications (and two deployments one Redis
/// under different prefixes).
pub const DEFAULT_PREFIX: &str = "wsedge:";

/// How often each subscriber connection is probed. With the default
/// timeout, a subscriber that stopped delivering is noticed within three
/// seconds, and the probe costs one tiny message per second per shard.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// How long a probe, a connect, the handshake or any reply may take before
/// the connections to that Redis are considered dead. Redis answers in well
/// under a millisecond when healthy; two seconds rides out a busy moment
/// without leaving a dead link undetected for long.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The first reconnection delay: short, because most failures (a restart,
/// a failover) are over in moments.
pub const DEFAULT_RECONNECT_MIN: Duration = Duration::from_millis(100);

/// The longest reconnection delay: every node retries at least this often,
/// so an outage ends for all of them within seconds of Redis coming back.
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(5);

/// How long a node's presence share outlives its last refresh (refreshed
/// every third of it): a node that died stops counting within this time.
pub const DEFAULT_PRESENCE_TTL: Duration = Duration::from_secs(15);

/// The shortest presence TTL accepted: refreshed every third, a shorter
/// one would spend Redis round trips on refreshes.
pub const MIN_PRESENCE_TTL: Duration = Duration::from_secs(1);

/// The engine carrying messages between nodes (`engine` in `[cluster]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Redis pub/sub (standalone) or sharded pub/sub (Redis Cluster).
    Redis,
}

/// How the Redis behind the URL is deployed (`mode` in `[cluster]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One Redis (or a proxy presenting one): `PUBLISH` and `SUBSCRIBE`.
    Standalone,
    /// A Redis Cluster (7.0 or later), the URL naming any of its nodes:
    /// `SPUBLISH` and `SSUBSCRIBE` on the shard owning each topic's slot, so
    /// pub/sub traffic spreads over the shards instead of being broadcast
    /// over the cluster bus to every node.
    Cluster,
}

/// Where a Redis listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// TCP, with TLS for `rediss://`.
    Tcp {
        /// A host name or an IP address (without brackets).
        host: String,
        /// The port.
        port: u16,
        /// Whether to speak TLS.
        tls: bool,
    },
    /// A unix socket.
    Unix(PathBuf),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { host, port, tls } => {
                let scheme = if *tls { "rediss" } else { "redis" };
                if host.contains(':') {
                    write!(f, "{scheme}://[{host}]:{port}")
                } else {
                    write!(f, "{scheme}://{host}:{port}")
                }
            }
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

/// A parsed Redis URL: `redis://[user@]host[:port][/db]`,
/// `rediss://...` (TLS) or `unix:///path/to/redis.sock`. A password in the
/// URL is refused: it belongs in the password file, out of the
/// configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// Where Redis listens.
    pub address: Address,
    /// The ACL user to authenticate as, if not `default`.
    pub username: Option<String>,
    /// The logical database (standalone only).
    pub database: u32,
}

impl RedisUrl {
    /// Parses `url`; the error says what is wrong and what would be valid.
    pub fn parse(url: &str) -> Result<Self, String> {
        const FORMS: &str =
            "use redis://host:port, rediss://host:port (TLS) or unix:///path/to/redis.sock";
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url:?} is not a URL; {FORMS}"))?;
        if rest.contains('?') || rest.contains('#') {
            return Err(format!("{url:?}: query strings are not supported; {FORMS}"));
        }
        if scheme == "unix" {
            if !rest.starts_with('/') {
                return Err(format!(
                    "{url:?}: a unix socket needs an absolute path, such as unix:///run/redis/redis.sock"
                ));
            }
            return Ok(Self {
                address: Address::Unix(PathBuf::from(rest)),
                username: None,
                database: 0,
            });
        }
        let tls = match scheme {
            "redis" => false,
            "rediss" => true,
            other => return Err(format!("{url:?}: unknown scheme {other:?}; {FORMS}")),
        };
        let (authority, path) = match rest.split_once('/') {
            Some((authority, path)) => (authority, path),
            None => (rest, ""),
        };
        let (username, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => {
                if userinfo.contains(':') {
                    return Err(format!(
                        "{url:?} holds a password: remove it from the URL and put it in password_file"
                    ));
                }
                (
                    Some(userinfo.to_owned()).filter(|u| !u.is_empty()),
                    host_port,
                )
            }
            None => (None, authority),
        };
        let (host, port) = split_host_port(host_port)
            .ok_or_else(|| format!("{url:?}: cannot read host and port; {FORMS}"))?;
        let database = if path.is_empty() {
            0
        } else {
            path.parse().map_err(|_| {
                format!("{url:?}: the path must be a database number such as /0, not {path:?}")
            })?
        };
        Ok(Self {
            address: Address::Tcp {
                host: host.to_owned(),
                port,
                tls,
            },
            username,
            database,
        })
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(text: &str) -> Option<(&str, u16)> {
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        match after {
            "" => (host, None),
            after => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(port) => port.parse().ok().filter(|&port| port != 0)?,
        None => DEFAULT_PORT,
    };
    Some((host, port))
}

/// A Redis password (or ACL user password), read from a file by the caller
/// and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// The password as read from the file, without a trailing newline.
    pub fn new(text: &str) -> Self {
        Self(text.trim_end_matches(['\r', '\n']).to_owned())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Which certificate authorities a `rediss://` server must be signed by.
#[derive(Clone)]
pub enum TlsRoots {
    /// The system's trust store.
    System,
    /// These authorities only (a private CA, as Redis deployments often use).
    Custom(Arc<RootCertStore>),
}

/// The same trust: the same authorities in the same order (a reload that
/// changes them restarts the link).
impl PartialEq for TlsRoots {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::System, Self::System) => true,
            (Self::Custom(a), Self::Custom(b)) => a.roots == b.roots,
            _ => false,
        }
    }
}

impl Eq for TlsRoots {}

impl fmt::Debug for TlsRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::System => f.write_str("System"),
            Self::Custom(roots) => write!(f, "Custom({} certificates)", roots.len()),
        }
    }
}

/// Everything the link needs, validated by [`ClusterSettings::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// The engine (Redis is the only one).
    pub engine: Engine,
    /// Where Redis is (in cluster mode: any node of the cluster).
    pub url: RedisUrl,
    /// The password, if Redis requires one.
    pub password: Option<Password>,
    /// Trusted authorities for `rediss://`.
    pub tls_roots: TlsRoots,
    /// The prefix of every Redis channel and key.
    pub prefix: String,
    /// This node's name: its presence share and its probe topic are named
    /// after it, so names must be unique among the nodes.
    pub node_name: String,
    /// Standalone or Redis Cluster.
    pub mode: Mode,
    /// How often each subscriber connection is probed.
    pub probe_interval: Duration,
    /// How long a probe, connect or reply may take.
    pub probe_timeout: Duration,
    /// The first reconnection delay (doubling, with jitter).
    pub reconnect_min: Duration,
    /// The longest reconnection delay.
    pub reconnect_max: Duration,
    /// How long a node's presence share outlives its last refresh.
    pub presence_ttl: Duration,
}

/// One setting that is not valid, with the setting's name and what would be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SettingError {
    /// The setting, named as in the `[cluster]` table.
    pub key: &'static str,
    /// What is wrong and what would be valid.
    pub message: String,
}

/// Every setting that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct SettingsError(pub Vec<SettingError>);

impl ClusterSettings {
    /// Settings for the Redis at `url`, every other setting at its default.
    pub fn new(url: &str, mode: Mode) -> Result<Self, SettingsError> {
        let url = RedisUrl::parse(url).map_err(|message| {
            SettingsError(vec![SettingError {
                key: "url",
                message,
            }])
        })?;
        let settings = Self {
            engine: Engine::Redis,
            url,
            password: None,
            tls_roots: TlsRoots::System,
            prefix: DEFAULT_PREFIX.to_owned(),
            node_name: default_node_name(),
            mode,
            probe_interval: DEFAULT_PROBE_INTERVAL,
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
            reconnect_min: DEFAULT_RECONNECT_MIN,
            reconnect_max: DEFAULT_RECONNECT_MAX,
            presence_ttl: DEFAULT_PRESENCE_TTL,
        };
        settings.validate()?;
        Ok(settings)
    }

    /// Checks every setting, reporting all that are invalid.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let mut errors = Vec::new();
        let mut fail = |key, message: String| errors.push(SettingError { key, message });
        if self.mode == Mode::Cluster {
            if self.url.database != 0 {
                fail(
                    "url",
                    "Redis Cluster has only database 0; remove the /database from the URL".into(),
                );
            }
            if matches!(self.url.address, Address::Unix(_)) {
                fail("url", "a Redis Cluster is reached over TCP; a unix socket works in standalone mode only".into());
            }
        }
        if self.prefix.contains(['{', '}']) {
            fail(
                "prefix",
                format!(
                    "{:?} contains a brace: in Redis Cluster that would put every topic in one slot; use letters, digits and ':._-'",
                    self.prefix
                ),
            );
        }
        if self.prefix.chars().any(char::is_whitespace) {
            fail("prefix", format!("{:?} contains whitespace", self.prefix));
        }
        if !is_node_name(&self.node_name) {
            fail(
                "node_name",
                format!(
                    "{:?} is not a node name; use 1-64 letters, digits, '_', '.' and '-'",
                    self.node_name
                ),
            );
        }
        for (key, value) in [
            ("probe_interval", self.probe_interval),
            ("probe_timeout", self.probe_timeout),
            ("reconnect_min", self.reconnect_min),
        ] {
            if value.is_zero() {
                fail(key, "must be longer than zero, such as \"1s\"".into());
            }
        }
        if self.reconnect_max < self.reconnect_min {
            fail(
                "reconnect_max",
                format!(
                    "{:?} is shorter than reconnect_min ({:?})",
                    self.reconnect_max, self.reconnect_min
                ),
            );
        }
        if self.presence_ttl < MIN_PRESENCE_TTL {
            fail(
                "presence_ttl",
                format!(
                    "{:?} is shorter than the minimum of {MIN_PRESENCE_TTL:?}",
                    self.presence_ttl
                ),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(SettingsError(errors))
        }
    }
}

fn is_node_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// The host name (as the kernel reports it, cut to what a node name allows)
/// and the process id: unique per process on a machine and readable in
/// Redis's `CLIENT LIST`.
pub fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(48)
        .collect();
    let host = if host.is_empty() {
        "node".to_owned()
    } else {
        host
    };
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16, tls: bool) -> Address {
        Address::Tcp {
            host: host.into(),
            port,
            tls,
        }
    }

    #[test]
    fn parses_every_url_form() {
        let table: &[(&str, Address, Option<&str>, u32)] = &[
            ("redis://localhost", tcp("localhost", 6379, false), None, 0),
            (
                "redis://10.0.0.1:7000/",
                tcp("10.0.0.1", 7000, false),
                None,
                0,
            ),
            (
                "rediss://cache.example:6380/2",
                tcp("cache.example", 6380, true),
                None,
                2,
            ),
            ("redis://app@h:1", tcp("h", 1, false), Some("app"), 0),
            ("redis://[::1]:6390", tcp("::1", 6390, false), None, 0),
            ("redis://[::1]", tcp("::1", 6379, false), None, 0),
            (
                "unix:///run/redis.sock",
                Address::Unix("/run/redis.sock".into()),
                None,
                0,
            ),
        ];
        for (text, address, username, database) in table {
            let url = RedisUrl::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(&url.address, address, "{text}");
            assert_eq!(url.username.as_deref(), *username, "{text}");
            assert_eq!(url.database, *database, "{text}");
        }
    }

    #[test]
    fn refuses_urls_with_the_reason() {
        let table = [
            ("localhost:6379", "not a URL"),
            ("http://h", "unknown scheme"),
            ("redis://u:secret@h", "password_file"),
            ("redis://h:0", "host and port"),
            ("redis://h:port", "host and port"),
            ("redis://:6379", "host and port"),
            ("redis://h/db", "database number"),
            ("redis://h?timeout=1", "query strings"),
            ("unix://relative.sock", "absolute path"),
        ];
        for (text, reason) in table {
            let error = RedisUrl::parse(text).unwrap_err();
            assert!(error.contains(reason), "{text}: {error}");
        }
    }

    #[test]
    fn defaults_are_the_named_constants() {
        let settings = ClusterSettings::new("redis://h", Mode::Standalone).unwrap();
        assert_eq!(settings.prefix, DEFAULT_PREFIX);
        assert_eq!(settings.probe_interval, DEFAULT_PROBE_INTERVAL);
        assert_eq!(settings.probe_timeout, DEFAULT_PROBE_TIMEOUT);
        assert_eq!(settings.reconnect_min, DEFAULT_RECONNECT_MIN);
        assert_eq!(settings.reconnect_max, DEFAULT_RECONNECT_MAX);
        assert_eq!(settings.presence_ttl, DEFAULT_PRESENCE_TTL);
        assert!(is_node_name(&settings.node_name), "{}", settings.node_name);
        assert!(
            settings
                .node_name
                .ends_with(&format!("-{}", std::process::id()))
        );
    }

    #[test]
    fn validation_reports_every_bad_setting_by_key() {
        let mut settings = ClusterSettings::new("redis://h/3", Mode::Standalone).unwrap();
        settings.mode = Mode::Cluster;
        settings.prefix = "{ws}".into();
        settings.node_name = "a b".into();
        settings.probe_interval = Duration::ZERO;
        settings.reconnect_min = Duration::from_secs(2);
        settings.reconnect_max = Duration::from_secs(1);
        settings.presence_ttl = Duration::from_millis(10);
        let keys: Vec<&str> = settings
            .validate()
            .unwrap_err()
            .0
            .iter()
            .map(|error| error.key)
            .collect();
        assert_eq!(
            keys,
            [
                "url",
                "prefix",
                "node_name",
                "probe_interval",
                "reconnect_max",
                "presence_ttl"
            ]
        );
        let unix = ClusterSettings::new("unix:///s", Mode::Cluster).unwrap_err();
        assert_eq!(unix.0[0].key, "url");
    }

    #[test]
    fn passwords_are_trimmed_and_never_printed() {
        let password = Password::new("s3cret\n");
        assert_eq!(password.expose(), "s3cret");
        assert!(!format!("{password:?}").contains("s3cret"));
    }
}
