//! Hot reload: what changed between two configurations (a pure function with
//! table tests) and the report of one applied reload.
//!
//! Applying is the server's job (`server::Shared::reload`): it binds the new
//! listeners and builds the new snapshot first, so that any error leaves the
//! running configuration untouched, then swaps the one `ArcSwap`.

use std::{collections::BTreeSet, net::SocketAddr};

use crate::config::{Config, ServerSettings};

/// One listener as the configuration declares it. A change of TLS or PROXY
/// on the same address is a close and an open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ListenerSpec {
    pub(crate) addr: SocketAddr,
    pub(crate) tls: bool,
    pub(crate) proxy_protocol: bool,
}

impl ListenerSpec {
    /// The listeners `settings` declares.
    pub(crate) fn all(settings: &ServerSettings) -> BTreeSet<Self> {
        let spec = |addr: &SocketAddr, tls| Self {
            addr: *addr,
            tls,
            proxy_protocol: settings.proxy_protocol.contains(addr),
        };
        settings
            .listen
            .iter()
            .map(|a| spec(a, true))
            .chain(settings.plain.iter().map(|a| spec(a, false)))
            .collect()
    }
}

/// The difference between the running configuration and a new one.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ConfigDiff {
    /// Channels only the new configuration has (or whose kind changed).
    pub(crate) added: Vec<String>,
    /// Channels only the old one has (or whose kind changed): their
    /// connections are closed with 1001.
    pub(crate) removed: Vec<String>,
    /// Channels of the same name and kind whose settings changed: they keep
    /// their connections and take the new policy.
    pub(crate) changed: Vec<String>,
    /// Listeners to open.
    pub(crate) opened: Vec<ListenerSpec>,
    /// Listeners to close (their established connections stay).
    pub(crate) closed: Vec<ListenerSpec>,
    /// `[cluster]` was added, removed or changed (its files' contents
    /// included): the link is replaced.
    pub(crate) cluster: bool,
}

/// Compares two validated configurations.
pub(crate) fn diff(old: &Config, new: &Config) -> ConfigDiff {
    let mut result = ConfigDiff::default();
    for channel in &new.channels {
        match old.channels.iter().find(|o| o.name == channel.name) {
            None => result.added.push(channel.name.clone()),
            Some(previous) if previous.kind != channel.kind => {
                result.removed.push(channel.name.clone());
                result.added.push(channel.name.clone());
            }
            Some(previous) if previous != channel => result.changed.push(channel.name.clone()),
            Some(_) => {}
        }
    }
    for channel in &old.channels {
        if !new.channels.iter().any(|n| n.name == channel.name) {
            result.removed.push(channel.name.clone());
        }
    }
    let (before, after) = (
        ListenerSpec::all(&old.server),
        ListenerSpec::all(&new.server),
    );
    result.opened = after.difference(&before).copied().collect();
    result.closed = before.difference(&after).copied().collect();
    result.cluster = old.cluster != new.cluster;
    result
}

/// What one successful reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// The configuration generation now running (1 at start).
    pub generation: u64,
    /// Channels added.
    pub added: Vec<String>,
    /// Channels removed (their connections got 1001).
    pub removed: Vec<String>,
    /// Channels whose settings changed.
    pub changed: Vec<String>,
    /// Listener addresses opened.
    pub opened: Vec<SocketAddr>,
    /// Listener addresses closed.
    pub closed: Vec<SocketAddr>,
    /// Whether a different certificate is now served.
    pub certificate_changed: bool,
    /// Whether the cluster link was replaced (`[cluster]` added, removed or
    /// changed): it reconnects, restores every subscription and rewrites
    /// this node's presence share.
    pub cluster_restarted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[server]
listen = ["127.0.0.1:8443"]
plain = ["127.0.0.1:8080"]
[server.tls]
self_signed = ["localhost"]
[[channel]]
name = "echo"
path = "/echo"
kind = "echo"
[[channel]]
name = "news"
path = "/news"
kind = "broadcast"
"#;

    fn config(text: &str) -> Config {
        Config::from_toml_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn spec(addr: &str, tls: bool, proxy_protocol: bool) -> ListenerSpec {
        ListenerSpec {
            addr: addr.parse().unwrap(),
            tls,
            proxy_protocol,
        }
    }

    #[test]
    fn diffs() {
        let chat = "[[channel]]\nname = \"chat\"\npath = \"/chat/{room}\"\nkind = \"room\"\n";
        let cases: Vec<(&str, String, ConfigDiff)> = vec![
            ("identical", BASE.to_owned(), ConfigDiff::default()),
            ("a channel added", format!("{BASE}{chat}"), ConfigDiff { added: names(&["chat"]), ..ConfigDiff::default() }),
            (
                "a channel removed",
                BASE.replace("[[channel]]\nname = \"news\"\npath = \"/news\"\nkind = \"broadcast\"\n", ""),
                ConfigDiff { removed: names(&["news"]), ..ConfigDiff::default() },
            ),
            (
                "a policy changed",
                BASE.replace("kind = \"broadcast\"", "kind = \"broadcast\"\npublish = \"clients\""),
                ConfigDiff { changed: names(&["news"]), ..ConfigDiff::default() },
            ),
            (
                "a path changed",
                BASE.replace("path = \"/news\"", "path = \"/headlines\""),
                ConfigDiff { changed: names(&["news"]), ..ConfigDiff::default() },
            ),
            (
                "a kind changed",
                BASE.replace("path = \"/news\"\nkind = \"broadcast\"", "path = \"/news/{room}\"\nkind = \"room\""),
                ConfigDiff { added: names(&["news"]), removed: names(&["news"]), ..ConfigDiff::default() },
            ),
            (
                "a limit changed globally changes every channel",
                format!("{BASE}[limits]\nmax_payload = \"16KiB\"\n"),
                ConfigDiff { changed: names(&["echo", "news"]), ..ConfigDiff::default() },
            ),
            (
                "a listener moved",
                BASE.replace("127.0.0.1:8080", "127.0.0.1:8081"),
                ConfigDiff { opened: vec![spec("127.0.0.1:8081", false, false)], closed: vec![spec("127.0.0.1:8080", false, false)], ..ConfigDiff::default() },
            ),
            (
                "PROXY turned on",
                BASE.replace("plain = [\"127.0.0.1:8080\"]", "plain = [\"127.0.0.1:8080\"]\ntrusted_proxies = [\"10.0.0.0/8\"]\nproxy_protocol = [\"127.0.0.1:8080\"]"),
                ConfigDiff { opened: vec![spec("127.0.0.1:8080", false, true)], closed: vec![spec("127.0.0.1:8080", false, false)], ..ConfigDiff::default() },
            ),
            ("a timeout changed", BASE.replace("[server]\n", "[server]\nhandshake_timeout = \"3s\"\n"), ConfigDiff::default()),
            ("[cluster] added", format!("{BASE}[cluster]\nurl = \"redis://10.0.0.1\"\n"), ConfigDiff { cluster: true, ..ConfigDiff::default() }),
        ];
        let base = config(BASE);
        for (name, text, expected) in cases {
            assert_eq!(diff(&base, &config(&text)), expected, "{name}");
        }
        let clustered = config(&format!("{BASE}[cluster]\nurl = \"redis://10.0.0.1\"\n"));
        let cluster_cases = [
            (
                "[cluster] unchanged",
                "[cluster]\nurl = \"redis://10.0.0.1\"\n",
                false,
            ),
            ("[cluster] removed", "", true),
            (
                "a cluster setting changed",
                "[cluster]\nurl = \"redis://10.0.0.1\"\nprobe_interval = \"2s\"\n",
                true,
            ),
            (
                "the node renamed",
                "[cluster]\nurl = \"redis://10.0.0.1\"\nnode_name = \"edge-2\"\n",
                true,
            ),
        ];
        for (name, table, restart) in cluster_cases {
            let plan = diff(&clustered, &config(&format!("{BASE}{table}")));
            assert_eq!(plan.cluster, restart, "{name}");
        }
    }
}
