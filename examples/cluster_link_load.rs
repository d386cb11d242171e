//! Measures the Redis link alone: two links (nodes) in this process on one
//! redis-server, node A publishing to a room node B subscribed to; first at
//! a fixed rate (latency from A's publish call to B's inbound hook, p50 /
//! p99 / max), then saturating (deliveries per second, losses), with the
//! CPU time this process and Redis spent per message.
//!
//! ```sh
//! cargo run --release --example cluster_link_load            # starts its own redis-server
//! cargo run --release --example cluster_link_load -- redis://127.0.0.1:6390
//! ```
//!
//! Loopback only; every loop is bounded in count and time.

#[path = "support/mod.rs"]
mod support;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use support::{cpu, percentile, start_redis};
use wsedge::{
    Message,
    cluster::{ClusterSettings, Link, LinkState, Mode, Target},
};

/// Messages per second in the fixed-rate phase.
const RATE: u64 = 20_000;
/// How long the fixed-rate phase runs.
const RATE_PHASE: Duration = Duration::from_secs(5);
/// Messages in the saturating phase.
const BURST: u64 = 500_000;
/// Bytes of payload per message (a small chat message).
const PAYLOAD: usize = 64;
/// How long anything may take before the run gives up.
const PATIENCE: Duration = Duration::from_secs(60);

fn settings(url: &str, name: &str) -> ClusterSettings {
    let mut settings = ClusterSettings::new(url, Mode::Standalone).unwrap();
    settings.node_name = name.to_owned();
    settings.prefix = "load:".to_owned();
    settings
}

async fn wait(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn message(epoch: Instant) -> Message {
    let mut payload = vec![b'x'; PAYLOAD];
    let nanos = epoch.elapsed().as_nanos() as u64;
    payload[..8].copy_from_slice(&nanos.to_be_bytes());
    Message::binary(payload)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (redis, url) = match std::env::args().nth(1) {
        Some(url) => (None, url),
        None => {
            let (redis, url) = start_redis();
            (Some(redis), url)
        }
    };
    let redis_pid = redis.as_ref().map(|r| r.pid());
    let epoch = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(200_000)));
    let record = Arc::new(AtomicU64::new(1));
    let b = {
        let (received, latencies, record) = (received.clone(), latencies.clone(), record.clone());
        Link::start(
            settings(&url, "load-b"),
            move |envelope: wsedge::cluster::Envelope| {
                let sent = u64::from_be_bytes(
                    envelope.message().unwrap().payload()[..8]
                        .try_into()
                        .unwrap(),
                );
                if record.load(Ordering::Relaxed) == 1 {
                    let now = epoch.elapsed().as_nanos() as u64;
                    latencies.lock().unwrap().push(now.saturating_sub(sent));
                }
                received.fetch_add(1, Ordering::Relaxed);
            },
        )
        .unwrap()
    };
    let a = Link::start(settings(&url, "load-a"), |_| {}).unwrap();
    wait("both links up", || {
        a.state() == LinkState::Up && b.state() == LinkState::Up
    })
    .await;
    let room = Target::Room {
        channel: "chat".into(),
        room: "load".into(),
    };
    b.subscribe(&room);
    wait("the subscription", || b.stats().subscriptions == 1).await;

    // Fixed rate, in ticks of 1 ms.
    let per_tick = RATE / 1000;
    let start = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    let mut sent = 0u64;
    while start.elapsed() < RATE_PHASE {
        ticker.tick().await;
        for _ in 0..per_tick {
            a.publish(&room, &message(epoch), None);
            sent += 1;
        }
    }
    wait("the fixed-rate messages", || {
        received.load(Ordering::Relaxed) >= sent - a.stats().publish_lost
    })
    .await;
    let mut sorted = std::mem::take(&mut *latencies.lock().unwrap());
    sorted.sort_unstable();
    println!(
        "fixed rate {RATE}/s for {RATE_PHASE:?}: sent {sent}, received {}, lost {}",
        received.load(Ordering::Relaxed),
        a.stats().publish_lost
    );
    println!(
        "  latency publish -> inbound hook: p50 {:?}  p99 {:?}  max {:?}",
        percentile(&sorted, 0.50),
        percentile(&sorted, 0.99),
        percentile(&sorted, 1.0)
    );
    let stats = a.stats();
    println!(
        "  probe rtt: last {:?}  max {:?}  mean {:?} over {} probes",
        stats.probe_rtt_last,
        stats.probe_rtt_max,
        stats.probe_rtt_sum / u32::try_from(stats.probes_ok.max(1)).unwrap(),
        stats.probes_ok
    );

    // Saturating.
    record.store(0, Ordering::Relaxed);
    let before = received.load(Ordering::Relaxed);
    let lost_before = a.stats().publish_lost;
    let cpu_self = cpu(std::process::id());
    let cpu_redis = redis_pid.map(cpu);
    let start = Instant::now();
    for i in 0..BURST {
        a.publish(&room, &message(epoch), None);
        if i % 256 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let lost = a.stats().publish_lost - lost_before;
    wait("the burst", || {
        received.load(Ordering::Relaxed) - before >= BURST - lost
    })
    .await;
    let elapsed = start.elapsed();
    let delivered = received.load(Ordering::Relaxed) - before;
    let per = |d: Duration| d.as_secs_f64() * 1e6 / delivered.max(1) as f64;
    println!(
        "saturating {BURST} messages: {delivered} delivered in {elapsed:.2?} = {:.0}/s, lost {lost}",
        delivered as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  cpu per message: this process (both nodes) {:.2} µs",
        per(cpu(std::process::id()) - cpu_self)
    );
    if let (Some(pid), Some(before)) = (redis_pid, cpu_redis) {
        println!("  cpu per message: redis {:.2} µs", per(cpu(pid) - before));
    }
    a.shutdown().await;
    b.shutdown().await;
}
