//! Redis Cluster topology: which master serves which slots, read with
//! `CLUSTER SHARDS` from any reachable node, and applied by swapping the
//! routing: workers of masters that stay are kept (and resynced), new
//! masters get workers, workers of masters that left are stopped.
//!
//! A refresh runs when a worker asks (a lost connection, a MOVED reply,
//! a subscription Redis ended because its slot moved) and every
//! [`TOPOLOGY_REFRESH`] in any case, at most once per
//! [`TOPOLOGY_MIN_INTERVAL`] so that a failing cluster is not flooded.

use std::{sync::Arc, time::Duration};

use super::{
    Shared, backoff::Backoff, error::LinkError, resp::Value, routing::SlotRanges,
    settings::Address, shard::Routing, shard::ShardHandle,
};

/// How often the topology is read even when nothing asked: catches a
/// change no connection noticed (a replica added, a master that came back).
pub const TOPOLOGY_REFRESH: Duration = Duration::from_secs(10);

/// The least time between two reads: a failover makes every worker ask at
/// once, and one read answers them all.
pub const TOPOLOGY_MIN_INTERVAL: Duration = Duration::from_millis(250);

/// One shard as the cluster describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardInfo {
    /// Inclusive slot ranges.
    pub(crate) ranges: SlotRanges,
    /// The master's address.
    pub(crate) master: Address,
    /// The name the master's certificate must carry.
    pub(crate) tls_name: String,
}

/// Reads and applies the topology until the link stops.
pub(crate) async fn run(shared: Arc<Shared>) {
    let settings = &shared.settings;
    let mut backoff = Backoff::new(settings.reconnect_min, settings.reconnect_max);
    loop {
        let wait = match fetch(&shared).await {
            Ok(shards) => {
                backoff.reset();
                apply(&shared, shards);
                TOPOLOGY_REFRESH
            }
            Err(error) => {
                tracing::warn!("cannot read the redis cluster topology: {error:#}");
                backoff.next_delay()
            }
        };
        shared
            .counters
            .topology_refreshes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::select! {
            () = shared.cancel.cancelled() => return,
            () = tokio::time::sleep(TOPOLOGY_MIN_INTERVAL) => {}
        }
        tokio::select! {
            () = shared.cancel.cancelled() => return,
            () = shared.refresh.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Asks the configured node, then every known master, until one answers.
async fn fetch(shared: &Shared) -> Result<Vec<ShardInfo>, LinkError> {
    let seed = &shared.settings.url.address;
    let seed_host = match seed {
        Address::Tcp { host, .. } => host.clone(),
        Address::Unix(_) => String::new(),
    };
    let mut candidates = vec![(seed.clone(), seed_host.clone())];
    for shard in shared.routing.load().shards() {
        if !candidates
            .iter()
            .any(|(address, _)| address == shard.address())
        {
            candidates.push((shard.address().clone(), seed_host.clone()));
        }
    }
    let mut last = LinkError::Down;
    for (address, tls_name) in candidates {
        let reply = async {
            let mut connection = shared
                .connector
                .connect(&address, &tls_name, "topology")
                .await?;
            connection.call(&[b"CLUSTER", b"SHARDS"]).await
        };
        match reply.await {
            Ok(reply) => return parse_shards(&reply, seed, &seed_host),
            Err(error) => last = error,
        }
    }
    Err(last)
}

/// Swaps in the routing for `shards`, keeping the workers of masters that stay.
fn apply(shared: &Arc<Shared>, shards: Vec<ShardInfo>) {
    let old = shared.routing.load_full();
    let mut kept: Vec<Arc<ShardHandle>> = Vec::new();
    let mut entries = Vec::with_capacity(shards.len());
    for shard in shards {
        let existing = old
            .shards()
            .iter()
            .find(|handle| handle.address() == &shard.master && !handle.is_stopped());
        let handle = match existing {
            Some(handle) => {
                kept.push(Arc::clone(handle));
                Arc::clone(handle)
            }
            None => ShardHandle::spawn(shared, shard.master, shard.tls_name),
        };
        entries.push((handle, shard.ranges));
    }
    let routing = Routing::cluster(entries);
    let same = routing.shards().len() == old.shards().len()
        && routing
            .shards()
            .iter()
            .zip(old.shards())
            .all(|(new, old)| Arc::ptr_eq(new, old))
        && routing.slot_owners() == old.slot_owners();
    if same {
        return;
    }
    tracing::info!(
        shards = routing.shards().len(),
        covered = routing.covers_every_slot(),
        "redis cluster topology changed"
    );
    shared.routing.store(Arc::new(routing));
    for handle in old.shards() {
        if !kept.iter().any(|kept| Arc::ptr_eq(kept, handle)) {
            handle.stop();
        }
    }
    for handle in kept {
        handle.request_resync();
    }
}

/// Reads a `CLUSTER SHARDS` reply (RESP2: every map a flat list of names
/// and values): per shard its slot ranges and its master, if the master is
/// online. A shard whose master failed is left out, so its slots are
/// unserved until a replica takes over.
pub(crate) fn parse_shards(
    reply: &Value,
    seed: &Address,
    seed_host: &str,
) -> Result<Vec<ShardInfo>, LinkError> {
    let bad = |what: &str| LinkError::Protocol(format!("CLUSTER SHARDS: {what}"));
    let tls = matches!(seed, Address::Tcp { tls: true, .. });
    let mut shards = Vec::new();
    for shard in reply.as_array().ok_or_else(|| bad("not an array"))? {
        let shard = fields(shard).ok_or_else(|| bad("a shard is not a map"))?;
        let slots = field(&shard, "slots")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("a shard without slots"))?;
        let mut ranges = Vec::new();
        for pair in slots.chunks(2) {
            let [start, end] = pair else {
                return Err(bad("an odd number of slot bounds"));
            };
            let (Some(start), Some(end)) = (start.as_integer(), end.as_integer()) else {
                return Err(bad("a slot bound is not a number"));
            };
            let (Ok(start), Ok(end)) = (u16::try_from(start), u16::try_from(end)) else {
                return Err(bad("a slot bound out of range"));
            };
            ranges.push((start, end));
        }
        let nodes = field(&shard, "nodes")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("a shard without nodes"))?;
        let master = nodes.iter().filter_map(fields).find(|node| {
            text(node, "role").as_deref() == Some("master")
                && text(node, "health").as_deref() == Some("online")
        });
        let (Some(master), false) = (master, ranges.is_empty()) else {
            continue;
        };
        let host = text(&master, "endpoint")
            .filter(|endpoint| !endpoint.is_empty() && endpoint != "?")
            .or_else(|| text(&master, "ip"))
            .ok_or_else(|| bad("a master without an address"))?;
        let port = field(&master, if tls { "tls-port" } else { "port" })
            .and_then(Value::as_integer)
            .and_then(|port| u16::try_from(port).ok())
            .ok_or_else(|| bad("a master without a port"))?;
        let tls_name = text(&master, "hostname")
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| seed_host.to_owned());
        shards.push(ShardInfo {
            ranges,
            master: Address::Tcp { host, port, tls },
            tls_name,
        });
    }
    Ok(shards)
}

/// A flat RESP2 map as name/value pairs.
fn fields(value: &Value) -> Option<Vec<(&[u8], &Value)>> {
    let items = value.as_array()?;
    items
        .chunks(2)
        .map(|pair| match pair {
            [name, value] => Some((&name.as_bytes()?[..], value)),
            _ => None,
        })
        .collect()
}

fn field<'a>(fields: &[(&[u8], &'a Value)], name: &str) -> Option<&'a Value> {
    fields
        .iter()
        .find(|(key, _)| *key == name.as_bytes())
        .map(|(_, value)| *value)
}

fn text(fields: &[(&[u8], &Value)], name: &str) -> Option<String> {
    let bytes = field(fields, name)?.as_bytes()?;
    Some(String::from_utf8_lossy(bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn bulk(text: &str) -> Value {
        Value::Bulk(Some(Bytes::copy_from_slice(text.as_bytes())))
    }

    fn node(port: i64, role: &str, health: &str) -> Value {
        Value::Array(Some(vec![
            bulk("id"),
            bulk("abc"),
            bulk("port"),
            Value::Integer(port),
            bulk("ip"),
            bulk("127.0.0.1"),
            bulk("endpoint"),
            bulk("127.0.0.1"),
            bulk("role"),
            bulk(role),
            bulk("health"),
            bulk(health),
        ]))
    }

    fn shard(slots: &[i64], nodes: Vec<Value>) -> Value {
        Value::Array(Some(vec![
            bulk("slots"),
            Value::Array(Some(slots.iter().map(|&s| Value::Integer(s)).collect())),
            bulk("nodes"),
            Value::Array(Some(nodes)),
        ]))
    }

    #[test]
    fn reads_masters_and_ranges_and_skips_failed_masters() {
        let reply = Value::Array(Some(vec![
            shard(
                &[0, 5460, 10000, 10001],
                vec![
                    node(7001, "replica", "online"),
                    node(7000, "master", "online"),
                ],
            ),
            shard(&[5461, 9999], vec![node(7002, "master", "failed")]),
            shard(&[10002, 16383], vec![node(7003, "master", "online")]),
        ]));
        let seed = Address::Tcp {
            host: "seed".into(),
            port: 7000,
            tls: false,
        };
        let shards = parse_shards(&reply, &seed, "seed").unwrap();
        assert_eq!(shards.len(), 2);
        assert_eq!(shards[0].ranges, [(0, 5460), (10000, 10001)]);
        assert_eq!(
            shards[0].master,
            Address::Tcp {
                host: "127.0.0.1".into(),
                port: 7000,
                tls: false
            }
        );
        assert_eq!(shards[0].tls_name, "seed");
        assert_eq!(shards[1].ranges, [(10002, 16383)]);
    }

    #[test]
    fn refuses_a_reply_that_is_not_a_shard_list() {
        let seed = Address::Unix("/s".into());
        assert!(parse_shards(&Value::Integer(1), &seed, "").is_err());
        let odd = Value::Array(Some(vec![shard(&[0], vec![node(1, "master", "online")])]));
        assert!(parse_shards(&odd, &seed, "").is_err());
    }
}
