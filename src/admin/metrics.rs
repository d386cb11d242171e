//! `GET /metrics`: the server's statistics in the OpenMetrics text format
//! (which Prometheus scrapes natively), through prometheus-client.
//!
//! Nothing is counted twice: one [`Collector`] reads a [`Stats`] snapshot at
//! scrape time from the counters the hot path already keeps. Labels come
//! from closed sets (result, reason, code, initiator, channel kind) or from
//! the configuration (channel names); never from a client's address, user
//! or room.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `wsedge_connections_active` | gauge | |
//! | `wsedge_clients_active` | gauge | |
//! | `wsedge_users_active` | gauge | |
//! | `wsedge_connections_accepted_total` | counter | |
//! | `wsedge_handshakes_total` | counter | `result`, `reason` |
//! | `wsedge_disconnects_total` | counter | `code`, `initiator` |
//! | `wsedge_messages_received_total` | counter | `channel_kind` |
//! | `wsedge_messages_sent_total` | counter | `channel_kind` |
//! | `wsedge_messages_dropped_total` | counter | |
//! | `wsedge_auth_total` | counter | `result`, `reason` |
//! | `wsedge_jwks_fetches_total`, `wsedge_jwks_fetch_failures_total`, `wsedge_jwks_refetches_limited_total` | counter | |
//! | `wsedge_jwks_keys` | gauge | |
//! | `wsedge_auth_webhook_allowed_total`, `wsedge_auth_webhook_denied_total`, `wsedge_auth_webhook_failures_total` | counter | |
//! | `wsedge_payload_received_bytes_total`, `wsedge_payload_sent_bytes_total` | counter | |
//! | `wsedge_wire_received_bytes_total`, `wsedge_wire_sent_bytes_total` | counter | |
//! | `wsedge_compressions_total`, `wsedge_compression_input_bytes_total`, `wsedge_compression_output_bytes_total` | counter | |
//! | `wsedge_limits_enforced_total` | counter | `reason` |
//! | `wsedge_channel_connections` | gauge | `channel`, `channel_kind` |
//! | `wsedge_channel_rooms` | gauge | `channel` |
//! | `wsedge_config_last_reload_successful` | gauge | |
//! | `wsedge_config_last_reload_success_timestamp_seconds` | gauge | |
//! | `wsedge_config_reload_failures_total` | counter | |
//! | `wsedge_config_generation` | gauge | |
//! | `wsedge_build_info` | info | `version` |
//!
//! With `[cluster]`, the link to the other nodes (absent without one):
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `wsedge_cluster_link_state` | gauge | (0 down, 1 degraded, 2 up) |
//! | `wsedge_cluster_shards`, `wsedge_cluster_shards_up` | gauge | |
//! | `wsedge_cluster_published_total`, `wsedge_cluster_publish_lost_total`, `wsedge_cluster_publish_errors_total` | counter | |
//! | `wsedge_cluster_received_total`, `wsedge_cluster_delivered_total`, `wsedge_cluster_ignored_own_total`, `wsedge_cluster_malformed_total` | counter | |
//! | `wsedge_cluster_interest`, `wsedge_cluster_subscriptions` | gauge | |
//! | `wsedge_cluster_subscribe_commands_total`, `wsedge_cluster_reconnects_total`, `wsedge_cluster_topology_refreshes_total` | counter | |
//! | `wsedge_cluster_probes_total` | counter | `result` (`ok`, `missed`) |
//! | `wsedge_cluster_probe_rtt_last_seconds`, `wsedge_cluster_probe_rtt_max_seconds` | gauge | |
//! | `wsedge_cluster_probe_rtt_seconds_total` | counter | (the probe round trips added up) |

use std::fmt;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric, text::encode},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::{cluster::LinkStats, server::handle::Handle, stats::Stats};

/// The media type of the OpenMetrics text format.
pub(super) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A registry whose only collector reads the server's statistics at each scrape.
pub(super) fn registry(handle: Handle) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ServerCollector { handle }));
    registry
}

/// Encodes every metric, ending with `# EOF`.
pub(super) fn render(registry: &Registry) -> String {
    let mut text = String::new();
    encode(&mut text, registry).expect("writing to a String cannot fail");
    text
}

struct ServerCollector {
    handle: Handle,
}

impl fmt::Debug for ServerCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerCollector")
    }
}

impl Collector for ServerCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        encode_stats(&self.handle.totals(), encoder)
    }
}

/// Writes `stats` as metric families. Counter names are given without
/// `_total`: the encoder appends it to the sample.
fn encode_stats(stats: &Stats, mut encoder: DescriptorEncoder) -> fmt::Result {
    let traffic = &stats.traffic;
    let e = &mut encoder;
    gauge(
        e,
        "wsedge_connections_active",
        "Open TCP connections on the WebSocket listeners holding a connection slot, handshaking or upgraded.",
        stats.connections,
    )?;
    gauge(
        e,
        "wsedge_clients_active",
        "Distinct clients (IPv4 addresses or IPv6 prefixes) holding connections.",
        stats.clients,
    )?;
    gauge(
        e,
        "wsedge_users_active",
        "Distinct authenticated users with a connection on this node.",
        stats.users,
    )?;
    counter(
        e,
        "wsedge_connections_accepted",
        "TCP connections accepted on the WebSocket listeners, before any cap.",
        traffic.connections_accepted,
    )?;
    counters(
        e,
        "wsedge_handshakes",
        "WebSocket handshakes by result and reason.",
        traffic
            .handshakes
            .iter()
            .map(|(&(result, reason), &n)| ([("result", result), ("reason", reason)], n)),
    )?;
    counters(
        e,
        "wsedge_disconnects",
        "Ended WebSocket connections by the code of the first close frame (1006: none) and who sent it.",
        traffic
            .disconnects
            .iter()
            .map(|(&(code, initiator), &n)| ([("code", code), ("initiator", initiator)], n)),
    )?;
    counters(
        e,
        "wsedge_messages_received",
        "Data messages received from clients, by channel kind.",
        traffic
            .messages_received
            .iter()
            .map(|(&kind, &n)| ([("channel_kind", kind)], n)),
    )?;
    counters(
        e,
        "wsedge_messages_sent",
        "Messages queued for clients, one per recipient, by channel kind.",
        traffic
            .messages_sent
            .iter()
            .map(|(&kind, &n)| ([("channel_kind", kind)], n)),
    )?;
    counters(
        e,
        "wsedge_auth",
        "Authentication outcomes: accepted (by token source, webhook or message), rejected (by reason), anonymous, refreshed, expired.",
        stats
            .auth
            .iter()
            .map(|(&(result, reason), &n)| ([("result", result), ("reason", reason)], n)),
    )?;
    let backends = &stats.auth_backends;
    for (name, help, value) in [
        (
            "wsedge_jwks_fetches",
            "JWKS fetches that succeeded.",
            backends.jwks_fetches,
        ),
        (
            "wsedge_jwks_fetch_failures",
            "JWKS fetches that failed; the last good key set was kept.",
            backends.jwks_failures,
        ),
        (
            "wsedge_jwks_refetches_limited",
            "Early JWKS fetches for an unknown kid refused by the rate limit.",
            backends.jwks_rate_limited,
        ),
        (
            "wsedge_auth_webhook_allowed",
            "Connect-webhook calls answered allow.",
            backends.webhook_allowed,
        ),
        (
            "wsedge_auth_webhook_denied",
            "Connect-webhook calls answered deny.",
            backends.webhook_denied,
        ),
        (
            "wsedge_auth_webhook_failures",
            "Connect-webhook calls that failed (timeout, connection, bad answer): the handshake was answered 503.",
            backends.webhook_failed,
        ),
    ] {
        counter(e, name, help, value)?;
    }
    gauge(
        e,
        "wsedge_jwks_keys",
        "Keys in the current JWKS key sets.",
        backends.jwks_keys,
    )?;
    counter(
        e,
        "wsedge_messages_dropped",
        "Messages dropped for slow consumers on channels with on_slow_consumer = drop.",
        stats.messages_dropped,
    )?;
    for (name, help, value) in [
        (
            "wsedge_payload_received_bytes",
            "Payload bytes of the messages received, after inflating.",
            traffic.payload_bytes_received,
        ),
        (
            "wsedge_payload_sent_bytes",
            "Payload bytes of the messages sent, once per recipient, before compressing.",
            traffic.payload_bytes_sent,
        ),
        (
            "wsedge_wire_received_bytes",
            "Bytes read from client sockets of the WebSocket listeners (TLS, HTTP and framing included).",
            traffic.wire_bytes_received,
        ),
        (
            "wsedge_wire_sent_bytes",
            "Bytes written to client sockets of the WebSocket listeners.",
            traffic.wire_bytes_sent,
        ),
        (
            "wsedge_compressions",
            "Outbound permessage-deflate compressions.",
            stats.compressions,
        ),
        (
            "wsedge_compression_input_bytes",
            "Payload bytes taken in by outbound compressions.",
            stats.compressed_from,
        ),
        (
            "wsedge_compression_output_bytes",
            "Bytes produced by outbound compressions.",
            stats.compressed_to,
        ),
    ] {
        counter(e, name, help, value)?;
    }
    counters(
        e,
        "wsedge_limits_enforced",
        "Refusals and enforced closes by limit.",
        stats
            .enforced
            .iter()
            .map(|(&reason, &n)| ([("reason", reason)], n)),
    )?;
    gauges(
        e,
        "wsedge_channel_connections",
        "Open connections per configured channel.",
        stats.channels.iter().map(|channel| {
            (
                [
                    ("channel", channel.name.as_str()),
                    ("channel_kind", channel.kind.as_str()),
                ],
                channel.connections,
            )
        }),
    )?;
    gauges(
        e,
        "wsedge_channel_rooms",
        "Open rooms per room channel.",
        stats
            .channels
            .iter()
            .filter(|channel| channel.kind == crate::config::ChannelKind::Room)
            .map(|channel| ([("channel", channel.name.as_str())], channel.room_count)),
    )?;
    gauge(
        e,
        "wsedge_config_last_reload_successful",
        "1 if the last configuration load or reload succeeded, else 0.",
        u64::from(stats.last_reload_successful),
    )?;
    gauge(
        e,
        "wsedge_config_last_reload_success_timestamp_seconds",
        "When the running configuration was applied, in seconds since the Unix epoch.",
        stats.last_reload_success_unix,
    )?;
    counter(
        e,
        "wsedge_config_reload_failures",
        "Reloads refused; the running configuration stayed.",
        stats.reload_failures,
    )?;
    gauge(
        e,
        "wsedge_config_generation",
        "Configurations applied: 1 at start, one more per successful reload.",
        stats.generation,
    )?;
    if let Some(link) = &stats.cluster {
        encode_link(link, e)?;
    }
    let mut info = encoder.encode_descriptor(
        "wsedge_build",
        "The running wsedge build.",
        None,
        MetricType::Info,
    )?;
    info.encode_info(&[("version", env!("CARGO_PKG_VERSION"))])
}

/// The cluster link's families.
fn encode_link(link: &LinkStats, e: &mut DescriptorEncoder) -> fmt::Result {
    gauge(
        e,
        "wsedge_cluster_link_state",
        "The cluster link: 2 up (every shard probed in time), 1 degraded, 0 down. /readyz answers 503 below 2.",
        link.state as u8 as u64,
    )?;
    gauge(
        e,
        "wsedge_cluster_shards",
        "Redis shards in the topology (1 standalone).",
        link.shards,
    )?;
    gauge(
        e,
        "wsedge_cluster_shards_up",
        "Shards whose latest probe came back in time.",
        link.shards_up,
    )?;
    for (name, help, value) in [
        (
            "wsedge_cluster_published",
            "Messages published to Redis for other nodes, acknowledged.",
            link.published,
        ),
        (
            "wsedge_cluster_publish_lost",
            "Messages for other nodes dropped: the link was down, its queue full, or the connection failed before Redis acknowledged them.",
            link.publish_lost,
        ),
        (
            "wsedge_cluster_publish_errors",
            "Publishes Redis answered with an error.",
            link.publish_errors,
        ),
        (
            "wsedge_cluster_received",
            "Messages received from Redis (probes excluded): what other nodes' traffic for local members costs.",
            link.received,
        ),
        (
            "wsedge_cluster_delivered",
            "Received messages from other nodes handed to local delivery.",
            link.delivered,
        ),
        (
            "wsedge_cluster_ignored_own",
            "Received messages this node published itself, not delivered twice.",
            link.ignored_own,
        ),
        (
            "wsedge_cluster_malformed",
            "Received messages that were not readable envelopes.",
            link.malformed,
        ),
        (
            "wsedge_cluster_subscribe_commands",
            "SUBSCRIBE and UNSUBSCRIBE commands sent (batched).",
            link.subscribe_commands,
        ),
        (
            "wsedge_cluster_reconnects",
            "Redis sessions re-established after one was lost.",
            link.reconnects,
        ),
        (
            "wsedge_cluster_topology_refreshes",
            "Redis Cluster topology reads.",
            link.topology_refreshes,
        ),
    ] {
        counter(e, name, help, value)?;
    }
    gauge(
        e,
        "wsedge_cluster_interest",
        "Channels, rooms and users with local members, which this node subscribes to.",
        link.wanted,
    )?;
    gauge(
        e,
        "wsedge_cluster_subscriptions",
        "Subscriptions Redis confirmed.",
        link.subscriptions,
    )?;
    counters(
        e,
        "wsedge_cluster_probes",
        "Probe messages through each subscriber connection, by whether they came back within probe_timeout.",
        [
            ([("result", "ok")], link.probes_ok),
            ([("result", "missed")], link.probes_missed),
        ],
    )?;
    gauge(
        e,
        "wsedge_cluster_probe_rtt_last_seconds",
        "The latest probe's round trip, publisher to Redis to subscriber: the path of every cross-node message.",
        link.probe_rtt_last.as_secs_f64(),
    )?;
    gauge(
        e,
        "wsedge_cluster_probe_rtt_max_seconds",
        "The longest probe round trip seen.",
        link.probe_rtt_max.as_secs_f64(),
    )?;
    let metric = e.encode_descriptor(
        "wsedge_cluster_probe_rtt_seconds",
        "Probe round trips added up; over wsedge_cluster_probes_total{result=\"ok\"}, the mean.",
        None,
        MetricType::Counter,
    )?;
    ConstCounter::new(link.probe_rtt_sum.as_secs_f64()).encode(metric)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

fn gauge<N: EncodeGaugeValue>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: N,
) -> fmt::Result {
    let metric = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

fn counters<L: EncodeLabelSet>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, u64)>,
) -> fmt::Result {
    let mut metric = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauges<L: EncodeLabelSet, N: EncodeGaugeValue>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, N)>,
) -> fmt::Result {
    let mut metric = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{config::ChannelKind, stats::ChannelStats};

    #[derive(Debug)]
    struct Fixed(Stats);

    impl Collector for Fixed {
        fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
            encode_stats(&self.0, encoder)
        }
    }

    fn sample_stats() -> Stats {
        let counters = crate::stats::Counters::default();
        counters.traffic.record_accepted();
        counters.traffic.record_disconnect(None);
        let mut stats = counters.snapshot(
            vec![ChannelStats {
                name: "chat".to_owned(),
                kind: ChannelKind::Room,
                connections: 2,
                room_count: 1,
                rooms: BTreeMap::new(),
            }],
            crate::stats::Gauges {
                connections: 2,
                clients: 1,
                ..Default::default()
            },
        );
        stats.last_reload_successful = true;
        stats
    }

    #[test]
    fn exposition_is_openmetrics_with_the_documented_names() {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Fixed(sample_stats())));
        let text = render(&registry);
        for line in [
            "# TYPE wsedge_connections_active gauge",
            "wsedge_connections_active 2",
            "wsedge_connections_accepted_total 1",
            "wsedge_handshakes_total{result=\"accepted\",reason=\"none\"} 0",
            "wsedge_disconnects_total{code=\"1006\",initiator=\"client\"} 1",
            "wsedge_messages_received_total{channel_kind=\"echo\"} 0",
            "wsedge_messages_sent_total{channel_kind=\"room\"} 0",
            "wsedge_payload_received_bytes_total 0",
            "wsedge_wire_sent_bytes_total 0",
            "wsedge_channel_connections{channel=\"chat\",channel_kind=\"room\"} 2",
            "wsedge_channel_rooms{channel=\"chat\"} 1",
            "wsedge_config_last_reload_successful 1",
            "# TYPE wsedge_config_last_reload_success_timestamp_seconds gauge",
            "# TYPE wsedge_build info",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        assert!(text.contains(&format!(
            "wsedge_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(text.ends_with("# EOF\n"));
        // No room names in labels.
        assert!(!text.contains("lobby"), "{text}");
        assert!(
            !text.contains("wsedge_cluster_"),
            "no link, no cluster families"
        );
    }

    #[test]
    fn the_cluster_link_is_exported_when_one_runs() {
        let mut stats = sample_stats();
        stats.cluster = Some(crate::cluster::LinkStats {
            state: crate::cluster::LinkState::Degraded,
            shards: 3,
            shards_up: 2,
            published: 10,
            publish_lost: 4,
            publish_errors: 1,
            received: 7,
            delivered: 6,
            ignored_own: 0,
            malformed: 1,
            wanted: 5,
            subscriptions: 4,
            subscribe_commands: 2,
            reconnects: 1,
            probes_ok: 20,
            probes_missed: 3,
            probe_rtt_last: std::time::Duration::from_micros(250),
            probe_rtt_max: std::time::Duration::from_millis(2),
            probe_rtt_sum: std::time::Duration::from_millis(5),
            topology_refreshes: 2,
        });
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Fixed(stats)));
        let text = render(&registry);
        for line in [
            "wsedge_cluster_link_state 1",
            "wsedge_cluster_shards 3",
            "wsedge_cluster_shards_up 2",
            "wsedge_cluster_published_total 10",
            "wsedge_cluster_publish_lost_total 4",
            "wsedge_cluster_received_total 7",
            "wsedge_cluster_interest 5",
            "wsedge_cluster_subscriptions 4",
            "wsedge_cluster_reconnects_total 1",
            "wsedge_cluster_probes_total{result=\"ok\"} 20",
            "wsedge_cluster_probes_total{result=\"missed\"} 3",
            "wsedge_cluster_probe_rtt_last_seconds 0.00025",
            "wsedge_cluster_probe_rtt_max_seconds 0.002",
            "wsedge_cluster_probe_rtt_seconds_total 0.005",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
    }
}
