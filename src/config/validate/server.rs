//! `[server]`: listeners, PROXY protocol, trusted proxies, timeouts; its
//! `[server.tls]` sub-table is validated by the `tls` module.

use std::{collections::HashMap, net::SocketAddr, path::Path};

use toml::Spanned;

use super::{
    fields::{self, Located},
    tls,
};
use crate::config::{
    Cidr, DEFAULT_DRAIN_WINDOW, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT,
    ServerSettings,
    load::Unread,
    raw::{Field, RawServer},
    report::Scope,
    units,
};

/// Validates `[server]`, which is required; `scope` is the table's.
pub(super) fn validate(
    raw: Field<RawServer>,
    base_dir: &Path,
    scope: &mut Scope<'_, '_>,
) -> ServerSettings<Unread> {
    let Some(raw) = raw else {
        // There is no key to point at: the whole file lacks it.
        scope.error(0..0, "", "missing [server] table; add one with `listen = [\"0.0.0.0:8443\"]` and a [server.tls] table, or `plain = [\"127.0.0.1:8080\"]`");
        return ServerSettings::default();
    };
    let span = raw.span();
    let raw = raw.into_inner();
    let listen = addresses(raw.listen.as_ref(), "listen", scope);
    let plain = addresses(raw.plain.as_ref(), "plain", scope);
    let mut seen: HashMap<SocketAddr, &str> = HashMap::new();
    for (addr, name) in listen
        .iter()
        .map(|a| (a, "listen"))
        .chain(plain.iter().map(|a| (a, "plain")))
    {
        // Port 0 asks the kernel for a fresh port each time, so it may repeat.
        if addr.value.port() == 0 {
            continue;
        }
        if let Some(first) = seen.insert(addr.value, name) {
            let first = scope.key(first);
            scope.error(
                addr.span.clone(),
                name,
                format!(
                    "{} is already listed in {first}; each address may be bound once",
                    addr.value
                ),
            );
        }
    }
    for addr in &plain {
        if !addr.value.ip().is_loopback() {
            scope.warning(addr.span.clone(), "plain", format!("{} serves unencrypted ws:// beyond this machine; put it behind a TLS proxy or use `listen`", addr.value));
        }
    }
    let trusted_proxies = networks(raw.trusted_proxies.as_ref(), scope);
    let proxy_protocol = addresses(raw.proxy_protocol.as_ref(), "proxy_protocol", scope);
    for addr in &proxy_protocol {
        if !listen.iter().chain(&plain).any(|l| l.value == addr.value) {
            scope.error(addr.span.clone(), "proxy_protocol", format!("{} is not one of the `listen` or `plain` addresses; list here the listeners that sit behind a PROXY-protocol load balancer", addr.value));
        }
    }
    if let (Some(first), true) = (proxy_protocol.first(), trusted_proxies.is_empty()) {
        scope.error(first.span.clone(), "proxy_protocol", "PROXY headers are believed only from `trusted_proxies`; list your load balancers' networks there, such as [\"10.0.0.0/8\"]");
    }
    if listen.is_empty() && plain.is_empty() {
        scope.error(span.clone(), "", "no listener: set `listen = [\"0.0.0.0:8443\"]` (wss://) or `plain = [\"127.0.0.1:8080\"]` (ws://)");
    }
    let handshake_timeout = fields::duration(
        raw.handshake_timeout.as_ref(),
        "handshake_timeout",
        DEFAULT_HANDSHAKE_TIMEOUT,
        scope,
    );
    let drain_window = fields::duration(
        raw.drain_window.as_ref(),
        "drain_window",
        DEFAULT_DRAIN_WINDOW,
        scope,
    );
    let shutdown_timeout = fields::duration(
        raw.shutdown_timeout.as_ref(),
        "shutdown_timeout",
        DEFAULT_SHUTDOWN_TIMEOUT,
        scope,
    );
    if shutdown_timeout <= drain_window {
        let at = raw
            .shutdown_timeout
            .as_ref()
            .or(raw.drain_window.as_ref())
            .map_or(span.clone(), Spanned::span);
        scope.error(
            at,
            "shutdown_timeout",
            format!(
                "shutdown_timeout ({}) must be longer than drain_window ({}): the last closes of the drain need time to complete",
                units::format_duration(shutdown_timeout),
                units::format_duration(drain_window)
            ),
        );
    }
    let tls_table_present = raw.tls.is_some();
    let tls = raw
        .tls
        .and_then(|tls| tls::validate(tls, base_dir, &mut scope.table("tls")));
    // A [server.tls] table that is present but broken has been reported already.
    if !tls_table_present && !listen.is_empty() {
        scope.error(span, "tls", "`listen` serves wss:// and needs a [server.tls] table with `cert` and `key`, or `self_signed = [\"localhost\"]` for development");
    }
    ServerSettings {
        listen: listen.into_iter().map(|a| a.value).collect(),
        plain: plain.into_iter().map(|a| a.value).collect(),
        proxy_protocol: proxy_protocol.into_iter().map(|a| a.value).collect(),
        trusted_proxies,
        handshake_timeout,
        drain_window,
        shutdown_timeout,
        tls,
    }
}

/// A list of socket addresses; the bad ones are reported and left out.
fn addresses(
    field: Option<&Spanned<Vec<Spanned<String>>>>,
    name: &str,
    scope: &mut Scope<'_, '_>,
) -> Vec<Located<SocketAddr>> {
    let Some(list) = field else { return Vec::new() };
    list.get_ref()
        .iter()
        .filter_map(|entry| match entry.get_ref().parse::<SocketAddr>() {
            Ok(value) => Some(Located { value, span: entry.span() }),
            Err(_) => {
                scope.error(entry.span(), name, format!("{:?} is not a socket address; write IP:PORT such as \"0.0.0.0:8443\" or \"[::]:8443\"", entry.get_ref()));
                None
            }
        })
        .collect()
}

/// `trusted_proxies`: networks; the bad ones are reported and left out.
fn networks(field: Option<&Spanned<Vec<Spanned<String>>>>, scope: &mut Scope<'_, '_>) -> Vec<Cidr> {
    let Some(list) = field else { return Vec::new() };
    list.get_ref()
        .iter()
        .filter_map(|entry| {
            Cidr::parse(entry.get_ref())
                .map_err(|message| scope.error(entry.span(), "trusted_proxies", message))
                .ok()
        })
        .collect()
}
