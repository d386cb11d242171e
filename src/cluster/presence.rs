//! Cluster-wide presence: each node keeps its own share in Redis, and any
//! node can read the totals of the live nodes without reading any node's
//! whole user list.
//!
//! In Redis:
//! - `{prefix}presence:{node}`, a hash per node: for each target with
//!   local members, its topic name → this node's connection count; plus an
//!   empty field name, always present while the node lives, so the hash
//!   exists even when the node has no members. The whole hash expires
//!   `presence_ttl` after the node's last refresh (every third of the TTL),
//!   so a node that died stops counting within the TTL.
//! - `{prefix}nodes`, the set of node names with a share. A reader that
//!   finds a node's hash gone removes the name.
//! - per target, the distinct users of every node together:
//!   `{prefix}presence-users:{TOPIC}`, a hash of user → the names of the
//!   nodes that have that user (comma-separated), and
//!   `{prefix}presence-index:{TOPIC}`, a sorted set of the same users, all
//!   scored 0, so that members sort by id: its `ZCARD` is the distinct
//!   user count and `ZRANGEBYLEX` a page, O(log n + page) however big the
//!   room. The braces make both one hash slot in a Redis Cluster. Both are
//!   changed only by [`USERS_SCRIPT`], atomically: a user is in the index
//!   while some node names it, and adding or removing a node's name twice
//!   changes nothing, so a write that is retried or replayed in whole
//!   cannot miscount.
//! - `{prefix}presence-targets:{node}`, the topics a node has users in, so
//!   that a reader that finds the node dead (its hash expired) can take
//!   its name off every target's users at once, before it answers: the
//!   distinct users of a dead node age out with its connections, within
//!   the TTL. A node that finds its list gone while it has users (it was
//!   taken for dead while its link was down) writes them again in whole.
//!
//! Writes are coalesced for [`PRESENCE_FLUSH`]: what the totals report
//! lags local changes by about that much. A change may name a
//! [`PresenceSource`] instead of the share itself: the source is read once
//! per flush, however many changes the window saw. A flush writes each
//! changed target's connection count and only the users that came or went
//! since the last write (a join costs one user, not a copy of the room).
//! The counts go first and the users right after, in separate keys (they
//! may live on different shards), so for the moment between the two a
//! reader may see a target's connection count a flush ahead of its users.
//! Each flush checks that the node's hash still exists (it does not after
//! Redis lost its data, say on a restart without persistence), and
//! rewrites the whole share when it does not; the first write of a link
//! and the one after a failed write rewrite it too. A rewrite replaces the
//! hash in one transaction, so that fields a previous process of the same
//! node name left behind do not outlive it, and no reader sees the node
//! without its hash; and it replaces the node's name in each target's
//! users with exactly the users it has, dropping it from targets it no
//! longer has.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

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

/// The most users one call of [`USERS_SCRIPT`] adds or removes: a burst of
/// ten thousand joins is a few calls, none of which holds Redis long.
const USERS_PER_CALL: usize = 2000;

/// Users hash fields a `purge` step of [`USERS_SCRIPT`] looks at: a dead
/// node is taken off a room of 100,000 users in steps of a few
/// milliseconds each, never one call that holds Redis for hundreds.
const PURGE_STEP: &str = "1000";

/// The field that marks a node's hash as alive.
const ALIVE: &[u8] = b"";

/// Changes a node's name in one target's users: `KEYS[1]` the users hash,
/// `KEYS[2]` the index; `ARGV[1]` the node, `ARGV[2]` the mode, then users.
/// `add`: the node has these users; `remove`: it has them no more; `sync`:
/// it has exactly these (its name is first taken off every user); these
/// answer the distinct user count. `purge` (then a `HSCAN` cursor and a
/// count): one step of taking the node's name off every user; answers the
/// next cursor, `0` when done.
const USERS_SCRIPT: &str = r#"
local node = ARGV[1]
local function strip(owners)
  local kept = {}
  for name in string.gmatch(owners, '[^,]+') do
    if name ~= node then kept[#kept + 1] = name end
  end
  return table.concat(kept, ',')
end
local function add(user)
  local owners = redis.call('HGET', KEYS[1], user)
  if not owners then
    redis.call('HSET', KEYS[1], user, node)
    redis.call('ZADD', KEYS[2], 0, user)
  elseif strip(owners) == owners then
    redis.call('HSET', KEYS[1], user, owners .. ',' .. node)
  end
end
local function remove(user, owners)
  owners = owners or redis.call('HGET', KEYS[1], user)
  if not owners then return end
  local rest = strip(owners)
  if rest == '' then
    redis.call('HDEL', KEYS[1], user)
    redis.call('ZREM', KEYS[2], user)
  elseif rest ~= owners then
    redis.call('HSET', KEYS[1], user, rest)
  end
end
local mode = ARGV[2]
if mode == 'purge' then
  local scan = redis.call('HSCAN', KEYS[1], ARGV[3], 'COUNT', ARGV[4])
  local fields = scan[2]
  for i = 1, #fields, 2 do remove(fields[i], fields[i + 1]) end
  return scan[1]
end
if mode == 'sync' then
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do remove(all[i], all[i + 1]) end
end
if mode == 'add' or mode == 'sync' then
  for i = 3, #ARGV do add(ARGV[i]) end
elseif mode == 'remove' then
  for i = 3, #ARGV do remove(ARGV[i]) end
end
return redis.call('ZCARD', KEYS[2])
"#;

/// The cluster-wide presence of one target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceTotals {
    /// Connections on every live node.
    pub connections: u64,
    /// Distinct users on every live node.
    pub users: u64,
    /// The page of user ids asked for, in id order.
    pub list: Vec<String>,
    /// The cursor of the next page (the page's last id), `None` on the last.
    pub next: Option<String>,
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

/// One target's share on this node.
struct Share {
    connections: u64,
    users: HashSet<Arc<str>>,
}

struct Local {
    /// Topic name → this node's share.
    shares: HashMap<String, Share>,
    /// Topic name → the users last written to Redis.
    written: HashMap<String, HashSet<Arc<str>>>,
    /// Topics changed since the last write.
    dirty: HashSet<String>,
    /// Topics whose share is to be read from their source at the next write.
    pending: HashMap<String, Arc<dyn PresenceSource>>,
    /// Whether the next write must rewrite the whole share.
    rewrite: bool,
}

impl Local {
    fn store(&mut self, topic: String, connections: u64, users: Vec<Arc<str>>) {
        if connections == 0 {
            self.shares.remove(&topic);
        } else {
            let users = users.into_iter().collect();
            self.shares
                .insert(topic.clone(), Share { connections, users });
        }
        self.dirty.insert(topic);
    }
}

impl Presence {
    pub(crate) fn new() -> Self {
        Self {
            local: Mutex::new(Local {
                shares: HashMap::new(),
                written: HashMap::new(),
                dirty: HashSet::new(),
                pending: HashMap::new(),
                rewrite: true,
            }),
            changed: Notify::new(),
        }
    }

    /// Records this node's share of `target`; zero connections removes it.
    pub(crate) fn set(&self, topic: String, connections: u64, users: &[String]) {
        let users = users.iter().map(|user| Arc::from(user.as_str())).collect();
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
                local.store(topic, connections, users);
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

fn targets_key(shared: &Shared, node: &str) -> String {
    format!("{}presence-targets:{node}", shared.settings.prefix)
}

/// The users hash and the index of the target whose topic is `topic`.
fn users_keys(prefix: &str, topic: &str) -> (String, String) {
    (
        format!("{prefix}presence-users:{{{topic}}}"),
        format!("{prefix}presence-index:{{{topic}}}"),
    )
}

/// Runs [`USERS_SCRIPT`] on `topic`'s users for `node`, `users` at most
/// [`USERS_PER_CALL`] at a time (`sync` in one call, since it replaces the
/// node's whole part).
async fn change_users(
    shared: &Shared,
    topic: &str,
    node: &str,
    mode: &str,
    users: &[Arc<str>],
) -> Result<(), LinkError> {
    let (hash, index) = users_keys(&shared.settings.prefix, topic);
    let parts: Vec<&[Arc<str>]> = if mode == "sync" || users.is_empty() {
        vec![users]
    } else {
        users.chunks(USERS_PER_CALL).collect()
    };
    for part in parts {
        let mut command: Vec<&[u8]> = vec![
            b"EVAL",
            USERS_SCRIPT.as_bytes(),
            b"2",
            hash.as_bytes(),
            index.as_bytes(),
            node.as_bytes(),
            mode.as_bytes(),
        ];
        command.extend(part.iter().map(|user| user.as_bytes()));
        shared.call(&hash, &[command]).await?;
    }
    Ok(())
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

/// What one write sends for one target's users.
struct UsersChange {
    topic: String,
    /// `sync` (a rewrite: exactly `added`), or a difference.
    sync: bool,
    added: Vec<Arc<str>>,
    removed: Vec<Arc<str>>,
    /// The users written once this succeeds (`None`: the target is gone).
    now: Option<HashSet<Arc<str>>>,
}

/// One write: the changed targets (or everything, when the hash is gone or
/// a write failed) and the TTL.
async fn write(shared: &Shared) -> Result<(), LinkError> {
    let node = &shared.settings.node_name;
    let key = node_key(shared, node);
    let targets = targets_key(shared, node);
    let ttl = shared.settings.presence_ttl.as_millis().to_string();
    let id = shared.node_id.to_string();
    shared.presence.read_sources();
    loop {
        let rewrite = std::mem::take(&mut lock(&shared.presence.local).rewrite);
        // The targets a rewrite must take this node's name off: those
        // Redis lists for it, from this process or a previous one.
        let listed: Vec<String> = if rewrite {
            let replies = shared
                .call(&targets, &[vec![b"SMEMBERS", targets.as_bytes()]])
                .await?;
            replies
                .first()
                .and_then(Value::as_array)
                .unwrap_or_default()
                .iter()
                .filter_map(|topic| Some(String::from_utf8_lossy(topic.as_bytes()?).into_owned()))
                .collect()
        } else {
            Vec::new()
        };
        let (counts, removed_topics, changes) = {
            let mut local = lock(&shared.presence.local);
            let dirty = std::mem::take(&mut local.dirty);
            let topics: HashSet<String> = if rewrite {
                local.shares.keys().cloned().chain(listed).collect()
            } else {
                dirty
            };
            let mut counts = Vec::new();
            let mut removed_topics = Vec::new();
            let mut changes = Vec::new();
            for topic in topics {
                let share = local.shares.get(&topic);
                match share {
                    Some(share) => counts.push((topic.clone(), share.connections.to_string())),
                    None => removed_topics.push(topic.clone()),
                }
                let now = share.map(|share| share.users.clone());
                let empty = HashSet::new();
                let new = now.as_ref().unwrap_or(&empty);
                let change = if rewrite {
                    UsersChange {
                        topic,
                        sync: true,
                        added: new.iter().cloned().collect(),
                        removed: Vec::new(),
                        now,
                    }
                } else {
                    let old = local.written.get(&topic).unwrap_or(&empty);
                    UsersChange {
                        added: new.difference(old).cloned().collect(),
                        removed: old.difference(new).cloned().collect(),
                        topic,
                        sync: false,
                        now,
                    }
                };
                changes.push(change);
            }
            (counts, removed_topics, changes)
        };
        let mut commands: Vec<Vec<&[u8]>> = Vec::new();
        if rewrite {
            commands.push(vec![b"MULTI"]);
            commands.push(vec![b"DEL", key.as_bytes()]);
        } else {
            // Whether the hash survived: if not, what follows is partial.
            commands.push(vec![b"PEXPIRE", key.as_bytes(), ttl.as_bytes()]);
        }
        let mut pairs = counts
            .iter()
            .map(|(field, value)| (field.as_bytes(), value.as_bytes()));
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
        if !rewrite && !removed_topics.is_empty() {
            let mut command: Vec<&[u8]> = vec![b"HDEL", key.as_bytes()];
            command.extend(removed_topics.iter().map(|field| field.as_bytes()));
            commands.push(command);
        }
        commands.push(vec![b"PEXPIRE", key.as_bytes(), ttl.as_bytes()]);
        if rewrite {
            commands.push(vec![b"EXEC"]);
        }
        let replies = shared.call(&key, &commands).await?;
        let survived = rewrite || replies.first().and_then(Value::as_integer) == Some(1);
        if !survived {
            tracing::debug!("the presence share was gone from redis: rewriting it");
            lock(&shared.presence.local).rewrite = true;
            continue;
        }
        // A reader that found this node dead (its hash had expired while
        // its link was down) took its name off its targets' users and
        // deleted its target list, perhaps after this node came back: then
        // its users are written again in whole.
        let has_users = !lock(&shared.presence.local).written.is_empty();
        if !rewrite && has_users {
            let replies = shared
                .call(&targets, &[vec![b"EXISTS", targets.as_bytes()]])
                .await?;
            if replies.first().and_then(Value::as_integer) == Some(0) {
                tracing::debug!("this node's presence users were purged: rewriting them");
                lock(&shared.presence.local).rewrite = true;
                continue;
            }
        }
        let nodes = nodes_key(shared);
        shared
            .call(&nodes, &[vec![b"SADD", nodes.as_bytes(), node.as_bytes()]])
            .await?;
        write_users(shared, &targets, changes).await?;
        return Ok(());
    }
}

/// Writes the users part of one write: the target list first (so that a
/// reader that finds this node dead can always find what to take its name
/// off), then each target's change, then the targets it no longer has off
/// the list.
async fn write_users(
    shared: &Shared,
    targets: &str,
    changes: Vec<UsersChange>,
) -> Result<(), LinkError> {
    let node = &shared.settings.node_name;
    let kept: Vec<&[u8]> = changes
        .iter()
        .filter(|change| change.now.is_some())
        .map(|change| change.topic.as_bytes())
        .collect();
    if !kept.is_empty() {
        let mut command: Vec<&[u8]> = vec![b"SADD", targets.as_bytes()];
        command.extend(kept);
        shared.call(targets, &[command]).await?;
    }
    let mut gone = Vec::new();
    for change in changes {
        if change.sync {
            match change.now {
                Some(_) => change_users(shared, &change.topic, node, "sync", &change.added).await?,
                None => purge_users(shared, &change.topic, node).await?,
            }
        } else {
            if !change.added.is_empty() {
                change_users(shared, &change.topic, node, "add", &change.added).await?;
            }
            if !change.removed.is_empty() {
                change_users(shared, &change.topic, node, "remove", &change.removed).await?;
            }
        }
        let mut local = lock(&shared.presence.local);
        match change.now {
            Some(users) => {
                local.written.insert(change.topic, users);
            }
            None => {
                local.written.remove(&change.topic);
                gone.push(change.topic);
            }
        }
    }
    if !gone.is_empty() {
        let mut command: Vec<&[u8]> = vec![b"SREM", targets.as_bytes()];
        command.extend(gone.iter().map(|topic| topic.as_bytes()));
        shared.call(targets, &[command]).await?;
    }
    Ok(())
}

/// Takes a dead `node`'s (its hash expired) name off the users of every
/// target it listed, and the node off the node set. Idempotent: two
/// readers that both found the node dead change nothing twice.
async fn purge(shared: &Shared, node: &str) -> Result<(), LinkError> {
    let targets = targets_key(shared, node);
    let replies = shared
        .call(&targets, &[vec![b"SMEMBERS", targets.as_bytes()]])
        .await?;
    let topics: Vec<String> = replies
        .first()
        .and_then(Value::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(|topic| Some(String::from_utf8_lossy(topic.as_bytes()?).into_owned()))
        .collect();
    for topic in &topics {
        purge_users(shared, topic, node).await?;
    }
    forget(shared, node).await
}

/// Deletes `node`'s target list and takes it off the node set.
async fn forget(shared: &Shared, node: &str) -> Result<(), LinkError> {
    let targets = targets_key(shared, node);
    shared
        .call(&targets, &[vec![b"DEL", targets.as_bytes()]])
        .await?;
    let nodes = nodes_key(shared);
    shared
        .call(&nodes, &[vec![b"SREM", nodes.as_bytes(), node.as_bytes()]])
        .await?;
    Ok(())
}

/// Takes `node`'s name off every user of `topic`, [`PURGE_STEP`] fields
/// per call: for a node whose users are not known here (a dead one).
async fn purge_users(shared: &Shared, topic: &str, node: &str) -> Result<(), LinkError> {
    let (hash, index) = users_keys(&shared.settings.prefix, topic);
    let mut cursor = b"0".to_vec();
    loop {
        let command: Vec<&[u8]> = vec![
            b"EVAL",
            USERS_SCRIPT.as_bytes(),
            b"2",
            hash.as_bytes(),
            index.as_bytes(),
            node.as_bytes(),
            b"purge",
            &cursor,
            PURGE_STEP.as_bytes(),
        ];
        let replies = shared.call(&hash, &[command]).await?;
        let next = replies
            .first()
            .and_then(Value::as_bytes)
            .ok_or_else(|| LinkError::Protocol("a purge step answered no cursor".into()))?;
        if next.as_ref() == b"0" {
            return Ok(());
        }
        cursor = next.to_vec();
    }
}

/// The totals of `target` over every live node, with up to `limit` user
/// ids after `after`: the node names, then in one round trip each live
/// node's connection count, the distinct users and the page. A node found
/// dead is purged first, and the users read again.
pub(crate) async fn totals(
    shared: &Shared,
    target: &Target,
    after: Option<&str>,
    limit: usize,
) -> Result<PresenceTotals, LinkError> {
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
    let users = start_users(shared, &field, after, limit);
    let mut totals = PresenceTotals::default();
    let mut dead = Vec::new();
    for (name, read) in names.iter().zip(reads) {
        let replies = super::finish_call(read?).await?;
        let values = replies
            .first()
            .and_then(Value::as_array)
            .unwrap_or_default();
        match values {
            // The hash expired: the node is gone.
            [Value::Bulk(None), ..] => dead.push(name),
            [_, count] => {
                if let Some(connections) = count.as_integer() {
                    totals.connections += u64::try_from(connections).unwrap_or(0);
                    totals.nodes += 1;
                }
            }
            _ => {}
        }
    }
    let mut users = super::finish_call(users?).await?;
    if !dead.is_empty() {
        for name in dead {
            purge(shared, name).await?;
        }
        users = super::finish_call(start_users(shared, &field, after, limit)?).await?;
    }
    totals.users = users
        .first()
        .and_then(Value::as_integer)
        .map_or(0, |count| u64::try_from(count).unwrap_or(0));
    if let Some(page) = users.get(1).and_then(Value::as_array) {
        let mut list: Vec<String> = page
            .iter()
            .filter_map(|user| Some(String::from_utf8_lossy(user.as_bytes()?).into_owned()))
            .collect();
        if list.len() > limit {
            list.truncate(limit);
            totals.next = list.last().cloned();
        }
        totals.list = list;
    }
    Ok(totals)
}

/// Queues the distinct user count of `topic` and, with a `limit`, the
/// page of up to `limit` ids after `after` (one more, to tell whether
/// there is a next page).
fn start_users(
    shared: &Shared,
    topic: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<tokio::sync::oneshot::Receiver<Result<Vec<Value>, LinkError>>, LinkError> {
    let (_, index) = users_keys(&shared.settings.prefix, topic);
    let start = after.map_or_else(
        || b"-".to_vec(),
        |cursor| [b"(", cursor.as_bytes()].concat(),
    );
    let count = (limit + 1).to_string();
    let mut commands = vec![vec![b"ZCARD" as &[u8], index.as_bytes()]];
    if limit > 0 {
        commands.push(vec![
            b"ZRANGEBYLEX",
            index.as_bytes(),
            &start,
            b"+",
            b"LIMIT",
            b"0",
            count.as_bytes(),
        ]);
    }
    shared.start_call(&index, &commands)
}

/// Removes this node's share (a clean shutdown), best effort: its
/// connection counts, then its name off the users it wrote (known here, so
/// a big room costs this node's users, not the room's).
pub(crate) async fn remove(shared: &Shared) {
    let node = &shared.settings.node_name;
    let key = node_key(shared, node);
    let _ = shared.call(&key, &[vec![b"DEL", key.as_bytes()]]).await;
    let written = std::mem::take(&mut lock(&shared.presence.local).written);
    for (topic, users) in written {
        let users: Vec<Arc<str>> = users.into_iter().collect();
        let _ = change_users(shared, &topic, node, "remove", &users).await;
    }
    let _ = forget(shared, node).await;
}

#[cfg(test)]
mod tests {
    use super::{super::slot::slot, *};

    #[test]
    fn a_targets_users_and_index_share_its_topics_hash_slot() {
        let topic = "wsedge:room:chat:lobby";
        let (hash, index) = users_keys("wsedge:", topic);
        assert_eq!(hash, "wsedge:presence-users:{wsedge:room:chat:lobby}");
        assert_eq!(slot(hash.as_bytes()), slot(topic.as_bytes()));
        assert_eq!(slot(index.as_bytes()), slot(topic.as_bytes()));
    }
}
