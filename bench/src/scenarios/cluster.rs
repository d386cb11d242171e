//! Fan-out through several nodes: the subscribers spread evenly over the
//! nodes of a setup (two nodes sharing one Redis, or one node alone), the
//! publisher on the first node. Each node's subscribers are measured on
//! their own, so that the first node's give the local path and the others'
//! the path through Redis, in the same run; each node's CPU time and
//! Redis's are read from /proc.

use std::time::Duration;

use hdrhistogram::Histogram;

use super::{Delivery, FanoutPlan, Wire, fan_out, histogram};
use crate::{client::Target, procfs::CpuUse, record::Record};

/// Connections opened at once while setting up, as the main run does.
const CONNECT_CONCURRENCY: usize = 128;

/// One server process of a setup.
pub struct Node {
    pub pid: Option<u32>,
    pub target: Target,
}

/// What is measured: the nodes of one product (the publisher connects to
/// the first), and the Redis they share, if more than one.
pub struct Setup {
    pub name: String,
    pub wire: Wire,
    pub nodes: Vec<Node>,
    pub redis: Option<u32>,
}

/// How each node is named in a record's metrics: `a_p99_ms`, `b_p99_ms`...
pub fn node_label(index: usize) -> char {
    (b'a' + index as u8) as char
}

/// `subscribers` spread over the setup's nodes; the publisher on node A
/// sends `rate` messages a second of `size` bytes for `duration`, or with
/// `rate` 0 as fast as the subscribers receive with `window` messages per
/// subscriber in flight.
pub async fn cluster(
    setup: &Setup,
    subscribers: usize,
    rate: u32,
    window: u64,
    size: usize,
    duration: Duration,
    drain: Duration,
) -> Record {
    let mut record = cluster_record(setup, subscribers, rate, window, size);
    let nodes = setup.nodes.len();
    let groups: Vec<(Target, usize)> = setup
        .nodes
        .iter()
        .enumerate()
        .map(|(index, node)| {
            let share = subscribers / nodes + usize::from(index < subscribers % nodes);
            (node.target.clone(), share)
        })
        .collect();
    // Redis only where the nodes share one.
    let redis = setup.redis.filter(|_| nodes > 1);
    let mut pids: Vec<Option<u32>> = setup.nodes.iter().map(|node| node.pid).collect();
    pids.extend(redis.map(Some));
    let outcome = fan_out(&FanoutPlan {
        wire: setup.wire,
        publisher: &setup.nodes[0].target,
        groups: &groups,
        rate,
        window,
        size,
        duration,
        drain,
        connect_concurrency: CONNECT_CONCURRENCY,
        pids: &pids,
    })
    .await;
    record.notes.extend(outcome.notes);
    for (index, group) in outcome.groups.iter().enumerate() {
        if group.failures > 0 {
            record.notes.push(format!(
                "node {}: {} of {} subscribers failed to connect; first error: {}",
                node_label(index).to_ascii_uppercase(),
                group.failures,
                group.wanted,
                group.first_error.clone().unwrap_or_default()
            ));
        }
    }
    let connected: u64 = outcome.groups.iter().map(|g| g.connected).sum();
    record.metric("connections", connected as f64);
    let Some(run) = outcome.run else {
        return record;
    };
    let window_s = run.window.as_secs_f64().max(1e-9);
    // The CPU figures of the nodes alone; Redis apart.
    let node_pcts = &run.each_cpu[..nodes.min(run.each_cpu.len())];
    let nodes_pct = (setup.nodes.iter().all(|n| n.pid.is_some()))
        .then(|| node_pcts.iter().copied().sum::<Option<f64>>())
        .flatten();
    record.cpu(CpuUse {
        server: nodes_pct,
        ..run.cpu
    });
    record
        .metric("sent", run.sent as f64)
        .metric("drain_ms", run.drained.as_secs_f64() * 1e3)
        .metric("window_s", window_s);
    let mut all = histogram();
    let mut received = 0;
    let mut closed = 0;
    let mut first_send = None;
    let mut last_receive = None;
    for (index, group) in outcome.groups.iter().enumerate() {
        let label = node_label(index);
        let delivery = &group.delivery;
        let got = delivery.received.get();
        received += got;
        closed += delivery.closed.get();
        all.add(&*delivery.hist.borrow()).ok();
        first_send = first_send.or(delivery.first_send.get());
        last_receive = last_receive.max(delivery.last_receive.get());
        let expected = run.sent * group.connected;
        record
            .metric(&format!("{label}_connections"), group.connected as f64)
            .metric(&format!("{label}_received"), got as f64)
            .metric(
                &format!("{label}_lost"),
                expected.saturating_sub(got) as f64,
            );
        if let Some(rate) = rate_of(delivery) {
            record.metric(&format!("{label}_delivered_per_s"), rate);
        }
        latencies(&mut record, &format!("{label}_"), &delivery.hist.borrow());
        if let Some(Some(pct)) = run.each_cpu.get(index) {
            record.metric(&format!("{label}_cpu_pct"), *pct);
            if got > 0 {
                record.metric(
                    &format!("{label}_cpu_us_per_delivery"),
                    pct / 100.0 * window_s * 1e6 / got as f64,
                );
            }
        }
    }
    let expected = run.sent * connected;
    record
        .metric("expected", expected as f64)
        .metric("received", received as f64)
        .metric("lost", expected.saturating_sub(received) as f64);
    if let (Some(first), Some(last)) = (first_send, last_receive) {
        let seconds = (last - first).as_secs_f64().max(1e-9);
        record.metric("delivered_per_s", received as f64 / seconds);
    }
    latencies(&mut record, "", &all);
    if let Some(pct) = nodes_pct.filter(|_| received > 0) {
        let cpu_seconds = pct / 100.0 * window_s;
        record
            .metric("server_cpu_us_per_op", cpu_seconds * 1e6 / received as f64)
            .metric("deliveries_per_cpu_s", received as f64 / cpu_seconds);
    }
    if redis.is_some() {
        if let Some(Some(pct)) = run.each_cpu.get(nodes) {
            record.metric("redis_cpu_pct", *pct);
            if run.sent > 0 {
                record.metric(
                    "redis_cpu_us_per_msg",
                    pct / 100.0 * window_s * 1e6 / run.sent as f64,
                );
            }
        }
    }
    if closed > 0 {
        record.metric("receivers_closed", closed as f64);
        record
            .notes
            .push(format!("{closed} subscribers were disconnected"));
    }
    record
}

/// `cluster`'s record of a measurement, with its id and parameters (and
/// nothing measured yet).
pub fn cluster_record(
    setup: &Setup,
    subscribers: usize,
    rate: u32,
    window: u64,
    size: usize,
) -> Record {
    let nodes = setup.nodes.len();
    let mode = if rate > 0 {
        format!("rate={rate}/s")
    } else {
        format!("saturate window={window}")
    };
    // The same id for every setup: the report compares them.
    let id = format!("cluster subs={subscribers} {mode} size={size}B");
    let headline = if rate > 0 {
        "p99_ms"
    } else {
        "delivered_per_s"
    };
    let mut record = Record::new(&setup.name, "cluster", id, headline, rate == 0);
    record
        .param("nodes", nodes)
        .param("subscribers", subscribers)
        .param("rate", rate)
        .param("window", window)
        .param("size", size)
        .param(
            "wire",
            match setup.wire {
                Wire::WebSocket => "websocket",
                Wire::SocketIo => "socket.io",
            },
        );
    record
}

/// A node's deliveries per second, from the first send to its last
/// delivery.
fn rate_of(delivery: &Delivery) -> Option<f64> {
    let (first, last) = (delivery.first_send.get()?, delivery.last_receive.get()?);
    Some(delivery.received.get() as f64 / (last - first).as_secs_f64().max(1e-9))
}

/// `{prefix}p50_ms`, `{prefix}p99_ms` and `{prefix}max_ms`.
fn latencies(record: &mut Record, prefix: &str, hist: &Histogram<u64>) {
    if hist.is_empty() {
        return;
    }
    for (name, quantile) in [("p50", 0.5), ("p99", 0.99)] {
        record.metric(
            &format!("{prefix}{name}_ms"),
            hist.value_at_quantile(quantile) as f64 / 1e6,
        );
    }
    record.metric(&format!("{prefix}max_ms"), hist.max() as f64 / 1e6);
}
