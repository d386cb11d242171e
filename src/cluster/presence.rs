//! Cluster-wide presence: each node keeps its own share in Redis, and any
//! node can add up the shares of the live nodes.
//!
//! In Redis:
//! - `{prefix}presence:{node}`, a hash per node: for each target with
//!   local members, its topic name → this node's connection count and user
//!   list; plus an empty field name, always present while the node lives,
//!   so the hash exists even when the node has no members. The whole hash
//!   expires `presence_ttl` after the node's last refresh (every third of
//!   the TTL), so a node that died stops counting within the TTL.
//! - `{prefix}nodes`, the set of node names with a share. A reader that
//!   finds a node's hash gone removes the name.
//!
//! Writes are coalesced for [`PRESENCE_FLUSH`]: what the totals report
//! lags local changes by about that much. A change may name a
//! [`PresenceSource`] instead of the share itself: the source is read once
//! per flush, however many changes the window saw, so a burst of joins
//! costs one copy of a target's user list, not one per join. Each flush
//! checks that the hash still exists (it does not after Redis lost its
//! data, say on a restart without persistence), and rewrites the whole
//! share when it does not; the first write of a link rewrites it too. A
//! rewrite replaces the hash in one transaction, so that fields a previous
//! process of the same node name left behind do not outlive it, and no
//! reader sees the node without its hash. A share's user list is written
//! whole on every change of that target: cheap for the small rooms
//! presence lists are for, costly for a target with a hundred thousand
//! users on one node.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::{sync::Notify, time::Instant};

use super::{Shared, envelope::Target, error::LinkError, resp::Value};
use crate::sync::lock;

/// How long local presence changes gather before they are written: a
/// burst of joins becomes one pipeline, and totals lag by at most this.
pub const PRESENCE_FLUSH: Duration = Duration::from_millis(100);

/// How soon a failed write is retried (on top of the next change).
const PRESENCE_RETRY: Duration = Duration::from_secs(1);

/// The most field/value pairs in one HSET of a rewrite.
const FIELDS_PER_HSET: usize = 1000;

/// The field that marks a node's hash as alive.
const ALIVE: &[u8] = b"";

/// The cluster-wide presence of one target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceTotals {
    /// Connections on every live node.
    pub connections: u64,
    /// Distinct users on every live node, sorted.
    pub users: Vec<String>,
    /// How many live nodes have a share of this target.
    pub nodes: usize,
}

/// Reads this node's current share of one target when the link is about
/// to write it. Called on the link's task, without any lock of the link's
/// held: it may take the node's own (short) locks.
pub trait PresenceSource: Send + Sync + 'static {
    /// This node's connections to the target and their distinct users.
    fn share(&self) -> (u64, Vec<Arc<str>>);
}

/// This node's share, as the link last wrote it or will write it.
pub(crate) struct Presence {
    local: Mutex<Local>,
    changed: Notify,
}

struct Local {
    /// Topic name → encoded share.
    shares: HashMap<String, Bytes>,
    /// Topics changed since the last write.
    dirty: HashSet<String>,
    /// Topics whose share is to be read from their source at the next write.
    pending: HashMap<String, Arc<dyn PresenceSource>>,
    /// Whether the next write must rewrite the whole share.
    rewrite: bool,
}

impl Local {
    fn store(&mut self, topic: String, connections: u64, users: &[impl AsRef<str>]) {
        if connections == 0 {
            self.shares.remove(&topic);
        } else {
            self.shares
                .insert(topic.clone(), encode_share(connections, users));
        }
        self.dirty.insert(topic);
    }
}

impl Presence {
    pub(crate) fn new() -> Self {
        Self {
            local: Mutex::new(Local {
                shares: HashMap::new(),
                dirty: HashSet::new(),
                pending: HashMap::new(),
                rewrite: true,
            }),
            changed: Notify::new(),
        }
    }

    /// Records this node's share of `target`; zero connections removes it.
    pub(crate) fn set(&self, topic: String, connections: u64, users: &[String]) {
        let mut local = lock(&self.local);
        local.pending.remove(&topic);
        local.store(topic, connections, users);
        drop(local);
        self.changed.notify_one();
    }

    /// Records that this node's share of `target` changed: `source` is
    /// read at the next write (the latest source of a topic wins).
    pub(crate) fn changed(&self, topic: String, source: Arc<dyn PresenceSource>) {
        lock(&self.local).pending.insert(topic, source);
        self.changed.notify_one();
    }

    /// Reads the pending sources (outside the lock: they take locks of
    /// their own) and stores what they say.
    fn read_sources(&self) {
        let pending = std::mem::take(&mut lock(&self.local).pending);
        if pending.is_empty() {
            return;
        }
        let shares: Vec<_> = pending
            .into_iter()
            .map(|(topic, source)| (topic, source.share()))
            .collect();
        let mut local = lock(&self.local);
        for (topic, (connections, users)) in shares {
            // A direct `set` since the read is newer than the source.
            if !local.pending.contains_key(&topic) {
                local.store(topic, connections, &users);
            }
        }
    }
}

fn node_key(shared: &Shared, node: &str) -> String {
    format!("{}presence:{node}", shared.settings.prefix)
}

fn nodes_key(shared: &Shared) -> String {
    format!("{}nodes", shared.settings.prefix)
}

/// Writes this node's share until the link stops.
pub(crate) async fn run(shared: Arc<Shared>) {
    let refresh_every = shared.settings.presence_ttl / 3;
    let mut next_refresh = Instant::now();
    loop {
        tokio::select! {
            () = shared.cancel.cancelled() => return,
            () = shared.presence.changed.notified() => {
                tokio::select! {
                    () = shared.cancel.cancelled() => return,
                    () = tokio::time::sleep(PRESENCE_FLUSH) => {}
                }
            }
            () = tokio::time::sleep_until(next_refresh) => {}
        }
        match write(&shared).await {
            Ok(()) => next_refresh = Instant::now() + refresh_every,
            Err(error) => {
                tracing::debug!("cannot write the presence share: {error:#}");
                lock(&shared.presence.local).rewrite = true;
                next_refresh = Instant::now() + refresh_every.min(PRESENCE_RETRY);
            }
        }
    }
}

/// One write: the changed fields (or everything, when the hash is gone or
/// a write failed) and the TTL.
async fn write(shared: &Shared) -> Result<(), LinkError> {
    let key = node_key(shared, &shared.settings.node_name);
    let ttl = shared.settings.presence_ttl.as_millis().to_string();
    let id = shared.node_id.to_string();
    shared.presence.read_sources();
    loop {
        let (rewrite, set, removed) = {
            let mut local = lock(&shared.presence.local);
            let rewrite = std::mem::take(&mut local.rewrite);
            let dirty = std::mem::take(&mut local.dirty);
            let fields: Vec<String> = if rewrite {
                local.shares.keys().cloned().collect()
            } else {
                dirty
                    .iter()
                    .filter(|f| local.shares.contains_key(*f))
                    .cloned()
                    .collect()
            };
            let set: Vec<(String, Bytes)> = fields
                .into_iter()
                .map(|field| {
                    let value = local.shares[&field].clone();
                    (field, value)
                })
                .collect();
            let removed: Vec<String> = if rewrite {
                Vec::new()
            } else {
                dirty
                    .into_iter()
                    .filter(|f| !local.shares.contains_key(f))
                    .collect()
            };
            (rewrite, set, removed)
        };
        let mut commands: Vec<Vec<&[u8]>> = Vec::new();
        if rewrite {
            commands.push(vec![b"MULTI"]);
            commands.push(vec![b"DEL", key.as_bytes()]);
        } else {
            // Whether the hash survived: if not, what follows is partial.
            commands.push(vec![b"PEXPIRE", key.as_bytes(), ttl.as_bytes()]);
        }
        let mut pairs = set
            .iter()
            .map(|(field, value)| (field.as_bytes(), &value[..]));
        let mut first = rewrite;
        loop {
            let mut command: Vec<&[u8]> = vec![b"HSET", key.as_bytes()];
            if first {
                command.extend([ALIVE, id.as_bytes()]);
                first = false;
            }
            for (field, value) in pairs.by_ref().take(FIELDS_PER_HSET) {
                command.extend([field, value]);
            }
            if command.len() == 2 {
                break;
            }
            commands.push(command);
        }
        if !removed.is_empty() {
            let mut command: Vec<&[u8]> = vec![b"HDEL", key.as_bytes()];
            command.extend(removed.iter().map(|field| field.as_bytes()));
            commands.push(command);
        }
        commands.push(vec![b"PEXPIRE", key.as_bytes(), ttl.as_bytes()]);
        if rewrite {
            commands.push(vec![b"EXEC"]);
        }
        let replies = shared.call(&key, &commands).await?;
        let survived = rewrite || replies.first().and_then(Value::as_integer) == Some(1);
        let nodes = nodes_key(shared);
        shared
            .call(
                &nodes,
                &[vec![
                    b"SADD",
                    nodes.as_bytes(),
                    shared.settings.node_name.as_bytes(),
                ]],
            )
            .await?;
        if survived {
            return Ok(());
        }
        tracing::debug!("the presence share was gone from redis: rewriting it");
        lock(&shared.presence.local).rewrite = true;
    }
}

/// The sum of every live node's share of `target`.
pub(crate) async fn totals(shared: &Shared, target: &Target) -> Result<PresenceTotals, LinkError> {
    let field = target.topic(&shared.settings.prefix);
    let nodes_key = nodes_key(shared);
    let members = shared
        .call(&nodes_key, &[vec![b"SMEMBERS", nodes_key.as_bytes()]])
        .await?;
    let names: Vec<String> = members
        .first()
        .and_then(Value::as_array)
        .ok_or_else(|| LinkError::Protocol("SMEMBERS did not answer a list".into()))?
        .iter()
        .filter_map(|name| Some(String::from_utf8_lossy(name.as_bytes()?).into_owned()))
        .collect();
    // Every read is queued before any is awaited: one round trip in all.
    let mut reads = Vec::with_capacity(names.len());
    for name in &names {
        let key = node_key(shared, name);
        let commands = [vec![
            b"HMGET" as &[u8],
            key.as_bytes(),
            ALIVE,
            field.as_bytes(),
        ]];
        reads.push(shared.start_call(&key, &commands));
    }
    let mut totals = PresenceTotals::default();
    let mut users = BTreeSet::new();
    for (name, read) in names.iter().zip(reads) {
        let replies = super::finish_call(read?).await?;
        let values = replies
            .first()
            .and_then(Value::as_array)
            .unwrap_or_default();
        match values {
            [Value::Bulk(None), ..] => {
                // The hash expired: the node is gone.
                let command = [vec![
                    b"SREM" as &[u8],
                    nodes_key.as_bytes(),
                    name.as_bytes(),
                ]];
                let _ = shared.start_call(&nodes_key, &command);
            }
            [_, Value::Bulk(Some(share))] => {
                if let Some((connections, node_users)) = decode_share(share.clone()) {
                    totals.connections += connections;
                    totals.nodes += 1;
                    users.extend(node_users);
                }
            }
            _ => {}
        }
    }
    totals.users = users.into_iter().collect();
    Ok(totals)
}

/// Removes this node's share (a clean shutdown), best effort.
pub(crate) async fn remove(shared: &Shared) {
    let key = node_key(shared, &shared.settings.node_name);
    let nodes = nodes_key(shared);
    let _ = shared.call(&key, &[vec![b"DEL", key.as_bytes()]]).await;
    let _ = shared
        .call(
            &nodes,
            &[vec![
                b"SREM",
                nodes.as_bytes(),
                shared.settings.node_name.as_bytes(),
            ]],
        )
        .await;
}

/// Connections (u64 BE), the number of users (u32 BE), each user as a u16
/// BE length and its bytes.
fn encode_share(connections: u64, users: &[impl AsRef<str>]) -> Bytes {
    let users: Vec<&[u8]> = users
        .iter()
        .map(|user| {
            let user = user.as_ref().as_bytes();
            &user[..user.len().min(usize::from(u16::MAX))]
        })
        .collect();
    let size = 12 + users.iter().map(|user| 2 + user.len()).sum::<usize>();
    let mut out = BytesMut::with_capacity(size);
    out.put_u64(connections);
    out.put_u32(users.len() as u32);
    for user in users {
        out.put_u16(user.len() as u16);
        out.put_slice(user);
    }
    out.freeze()
}

fn decode_share(mut wire: Bytes) -> Option<(u64, Vec<String>)> {
    if wire.len() < 12 {
        return None;
    }
    let connections = wire.get_u64();
    let count = wire.get_u32() as usize;
    let mut users = Vec::with_capacity(count.min(wire.len() / 2));
    for _ in 0..count {
        if wire.len() < 2 {
            return None;
        }
        let len = usize::from(wire.get_u16());
        if wire.len() < len {
            return None;
        }
        users.push(String::from_utf8(wire.split_to(len).to_vec()).ok()?);
    }
    Some((connections, users))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_round_trip_and_truncations_are_rejected() {
        let users = vec!["ann".to_owned(), String::new(), "bö".to_owned()];
        let wire = encode_share(5, &users);
        assert_eq!(decode_share(wire.clone()), Some((5, users)));
        for cut in 0..wire.len() {
            assert_eq!(decode_share(wire.slice(..cut)), None, "cut at {cut}");
        }
        assert_eq!(
            decode_share(encode_share(1, &[] as &[&str])),
            Some((1, vec![]))
        );
    }
}
