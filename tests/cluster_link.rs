//! The Redis link between nodes against real `redis-server` processes: a
//! standalone server and a three-master Redis Cluster, started by the
//! tests on free ports. Each test runs two or three links (nodes) in this
//! process and observes what a node would: the envelopes its inbound hook
//! receives, its counters and state, and what Redis itself reports
//! (`PUBSUB NUMSUB`, `INFO commandstats`). Failures are real: the server is
//! killed, restarted and paused with SIGSTOP.
//!
//! A missing redis-server fails these tests under CI and skips them (with
//! a note) elsewhere; tests/peers/install-redis.sh installs it.

mod redis_server;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use redis_server::{RedisCluster, RedisServer, installed};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::mpsc,
};
use tokio_rustls::rustls::RootCertStore;
use wsedge::{
    Message,
    cluster::{
        ClusterSettings, DEFAULT_PRESENCE_TTL, Envelope, Link, LinkState, Mode, Password,
        PresenceSource, SUBSCRIBE_COALESCE, Target, TlsRoots,
    },
};

/// Upper bound for anything a test awaits.
const PATIENCE: Duration = Duration::from_secs(20);

/// The probe timings of these tests: shorter than the defaults, so that a
/// failure is detected within `PROBE_INTERVAL + PROBE_TIMEOUT`.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);
const PROBE_TIMEOUT: Duration = Duration::from_millis(750);

/// Scheduling slack on top of a documented bound: the machine has two
/// cores shared with other work.
const SLACK: Duration = Duration::from_millis(750);

/// The presence page these tests read: every user of their small rooms.
const PAGE: usize = 1000;

struct Node {
    link: Link,
    inbox: mpsc::UnboundedReceiver<Envelope>,
}

fn settings(url: &str, mode: Mode, name: &str) -> ClusterSettings {
    let mut settings = ClusterSettings::new(url, mode).unwrap();
    settings.node_name = name.to_owned();
    settings.prefix = "test:".to_owned();
    settings.probe_interval = PROBE_INTERVAL;
    settings.probe_timeout = PROBE_TIMEOUT;
    settings.reconnect_min = Duration::from_millis(50);
    settings.reconnect_max = Duration::from_millis(400);
    settings
}

fn start(settings: ClusterSettings) -> Node {
    let (sender, inbox) = mpsc::unbounded_channel();
    let link = Link::start(settings, move |envelope| {
        let _ = sender.send(envelope);
    })
    .unwrap();
    Node { link, inbox }
}

fn node(url: &str, mode: Mode, name: &str) -> Node {
    start(settings(url, mode, name))
}

/// Polls `done` until it holds, failing after [`PATIENCE`].
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn up(nodes: &[&Node]) {
    for node in nodes {
        let deadline = Instant::now() + PATIENCE;
        while node.link.state() != LinkState::Up {
            assert!(
                Instant::now() < deadline,
                "{} not up: {:?}",
                node.link.node_name(),
                node.link.stats()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn next(node: &mut Node) -> Envelope {
    tokio::time::timeout(PATIENCE, node.inbox.recv())
        .await
        .unwrap_or_else(|_| panic!("{} received nothing", node.link.node_name()))
        .unwrap()
}

fn room(name: &str) -> Target {
    Target::Room {
        channel: "chat".into(),
        room: name.into(),
    }
}

fn text(envelope: &Envelope) -> &str {
    std::str::from_utf8(envelope.message().unwrap().payload()).unwrap()
}

/// Waits until Redis counts `count` subscribers of `topic`.
async fn numsub(redis: &RedisServer, topic: &str, count: i64) {
    until(&format!("{count} subscribers of {topic}"), || {
        let out = redis.cli(&["PUBSUB", "NUMSUB", topic]);
        out.lines()
            .nth(1)
            .and_then(|n| n.trim().parse::<i64>().ok())
            == Some(count)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_reach_interested_nodes_once_and_never_their_origin() {
    if !installed() {
        return;
    }
    let redis = RedisServer::standalone();
    let mut a = node(&redis.url(), Mode::Standalone, "node-a");
    let mut b = node(&redis.url(), Mode::Standalone, "node-b");
    let mut c = node(&redis.url(), Mode::Standalone, "node-c");
    up(&[&a, &b, &c]).await;

    let lobby = room("lobby");
    let fence = room("fence");
    // a and b have members in the lobby; c has none there, only in another room.
    a.link.subscribe(&lobby);
    b.link.subscribe(&lobby);
    c.link.subscribe(&fence);
    let topic = a.link.topic(&lobby);
    numsub(&redis, &topic, 2).await;
    numsub(&redis, &a.link.topic(&fence), 1).await;

    const COUNT: u64 = 200;
    for i in 0..COUNT {
        let except = (i % 2 == 0).then_some(i);
        assert!(
            a.link
                .publish(&lobby, &Message::text(format!("m{i}")), except)
        );
    }
    assert!(
        a.link
            .publish(&lobby, &Message::binary(vec![0u8, 255]), None)
    );
    // After the lobby traffic, one message c is interested in.
    assert!(a.link.publish(&fence, &Message::text("fence"), None));

    for i in 0..COUNT {
        let envelope = next(&mut b).await;
        assert_eq!(envelope.origin, a.link.node_id());
        assert_eq!(envelope.seq, i + 1, "sequence numbers count a's publishes");
        assert_eq!(envelope.target, lobby);
        assert_eq!(text(&envelope), format!("m{i}"));
        assert_eq!(envelope.except, (i % 2 == 0).then_some(i));
    }
    let binary = next(&mut b).await;
    assert_eq!(binary.message(), Some(&Message::binary(vec![0u8, 255])));

    // Redis delivers in order on each connection: once c has the fence,
    // any lobby message would have reached it before.
    let fenced = next(&mut c).await;
    assert_eq!(text(&fenced), "fence");
    assert_eq!(
        c.link.stats().received,
        1,
        "c received nothing of the lobby"
    );

    // a got its own messages back from Redis and delivered none of them.
    until("a's echoes", || a.link.stats().ignored_own == COUNT + 1).await;
    let a_stats = a.link.stats();
    assert_eq!(a_stats.delivered, 0);
    assert!(a.inbox.try_recv().is_err());
    assert_eq!(a_stats.published, COUNT + 2);
    assert_eq!(a_stats.publish_lost, 0);
    assert_eq!(a_stats.subscriptions, 1);
    assert!(a_stats.probes_ok >= 1 && a_stats.probe_rtt_last > Duration::ZERO);
    // Nothing more arrives for b (the fence was not its topic).
    assert!(b.inbox.try_recv().is_err());
    assert_eq!(b.link.stats().received, COUNT + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interest_changes_are_coalesced_into_few_commands() {
    if !installed() {
        return;
    }
    let redis = RedisServer::standalone();
    let a = node(&redis.url(), Mode::Standalone, "node-a");
    up(&[&a]).await;
    let baseline = a.link.stats().subscribe_commands;
    assert_eq!(baseline, 1, "the session subscribed its probe topic");
    let calls = redis.command_calls("subscribe");

    // A reconnect storm: 2,500 rooms get their first member at once, and
    // one room is joined and left within the window.
    const ROOMS: u64 = 2500;
    let flicker = room("flicker");
    for i in 0..ROOMS {
        a.link.subscribe(&room(&format!("r{i}")));
    }
    a.link.subscribe(&flicker);
    a.link.unsubscribe(&flicker);
    until("every room subscribed", || {
        a.link.stats().subscriptions == ROOMS
    })
    .await;
    let subscribed = a.link.stats().subscribe_commands - baseline;
    // 1,000 channels a command: three commands if the loop fit one window;
    // a slow machine may split it over a window boundary or two.
    assert!(
        (3..=5).contains(&subscribed),
        "{subscribed} SUBSCRIBE commands for {ROOMS} rooms"
    );
    assert_eq!(redis.command_calls("subscribe") - calls, subscribed);
    let channels = redis.cli(&["PUBSUB", "CHANNELS", "test:room:*"]);
    assert_eq!(channels.lines().count() as u64, ROOMS);
    assert!(
        !channels.contains("flicker"),
        "a room joined and left within the window cost nothing"
    );

    // The last members leave: as few UNSUBSCRIBE commands.
    let unsubscribe_calls = redis.command_calls("unsubscribe");
    for i in 0..ROOMS {
        a.link.unsubscribe(&room(&format!("r{i}")));
    }
    until("every room unsubscribed", || {
        a.link.stats().subscriptions == 0
    })
    .await;
    let unsubscribed = redis.command_calls("unsubscribe") - unsubscribe_calls;
    assert!(
        (3..=5).contains(&unsubscribed),
        "{unsubscribed} UNSUBSCRIBE commands"
    );
    assert_eq!(redis.cli(&["PUBSUB", "CHANNELS", "test:room:*"]).trim(), "");
    assert_eq!(a.link.stats().wanted, 0);

    // Each change waited for the window (and not much more).
    let started = Instant::now();
    a.link.subscribe(&room("late"));
    until("the late room", || a.link.stats().subscriptions == 1).await;
    assert!(started.elapsed() >= SUBSCRIBE_COALESCE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_and_restarted_redis_counts_losses_then_restores_everything() {
    if !installed() {
        return;
    }
    let mut redis = RedisServer::standalone();
    let a = node(&redis.url(), Mode::Standalone, "node-a");
    let mut b = node(&redis.url(), Mode::Standalone, "node-b");
    up(&[&a, &b]).await;
    let lobby = room("lobby");
    b.link.subscribe(&lobby);
    b.link.subscribe(&room("second"));
    a.link.set_presence(&lobby, 3, &["ann".into()]);
    numsub(&redis, &a.link.topic(&lobby), 1).await;
    assert!(a.link.publish(&lobby, &Message::text("before"), None));
    assert_eq!(text(&next(&mut b).await), "before");
    until("a's presence share", || {
        redis.cli(&["HLEN", "test:presence:node-a"]).trim() == "2"
    })
    .await;

    redis.kill();
    let killed = Instant::now();
    until("both links down", || {
        a.link.state() == LinkState::Down && b.link.state() == LinkState::Down
    })
    .await;
    assert!(
        killed.elapsed() <= PROBE_INTERVAL + PROBE_TIMEOUT + SLACK,
        "a closed connection is noticed at once, took {:?}",
        killed.elapsed()
    );
    let lost_before = a.link.stats().publish_lost;
    for i in 0..10 {
        assert!(
            !a.link
                .publish(&lobby, &Message::text(format!("lost{i}")), None)
        );
    }
    assert_eq!(a.link.stats().publish_lost, lost_before + 10);
    assert_eq!(b.link.stats().subscriptions, 0);
    assert!(matches!(
        a.link.presence(&lobby, None, PAGE).await,
        Err(wsedge::cluster::LinkError::Down)
    ));

    redis.restart();
    up(&[&a, &b]).await;
    let stats = b.link.stats();
    assert!(stats.reconnects >= 1, "{stats:?}");
    until("b's subscriptions restored", || {
        b.link.stats().subscriptions == 2
    })
    .await;
    numsub(&redis, &a.link.topic(&lobby), 1).await;
    numsub(&redis, &a.link.topic(&room("second")), 1).await;
    assert!(a.link.publish(&lobby, &Message::text("after"), None));
    let after = next(&mut b).await;
    assert_eq!(
        text(&after),
        "after",
        "nothing sent while down arrives late"
    );
    // The restarted Redis lost a's presence share; a rewrites it.
    until("a's presence share rewritten", || {
        redis.cli(&["HLEN", "test:presence:node-a"]).trim() == "2"
    })
    .await;
    let totals = b.link.presence(&lobby, None, PAGE).await.unwrap();
    assert_eq!(
        (totals.connections, totals.users, totals.list),
        (3, 1, vec!["ann".to_owned()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_is_detected_by_the_probe_and_recovers_after_sigcont() {
    if !installed() {
        return;
    }
    let redis = RedisServer::standalone();
    let a = node(&redis.url(), Mode::Standalone, "node-a");
    let mut b = node(&redis.url(), Mode::Standalone, "node-b");
    up(&[&a, &b]).await;
    let lobby = room("lobby");
    b.link.subscribe(&lobby);
    numsub(&redis, &a.link.topic(&lobby), 1).await;

    redis.pause();
    let paused = Instant::now();
    // Nothing closes: only the probe (and overdue replies) can tell.
    until("b sees the pause", || b.link.state() != LinkState::Up).await;
    let detected = paused.elapsed();
    assert!(
        detected <= PROBE_INTERVAL + PROBE_TIMEOUT + SLACK,
        "detected after {detected:?}, bound {:?}",
        PROBE_INTERVAL + PROBE_TIMEOUT
    );
    until("a sees the pause", || a.link.state() != LinkState::Up).await;
    until("both down", || {
        a.link.state() == LinkState::Down && b.link.state() == LinkState::Down
    })
    .await;
    assert!(!a.link.publish(&lobby, &Message::text("while paused"), None));

    redis.resume();
    up(&[&a, &b]).await;
    until("b resubscribed", || b.link.stats().subscriptions == 1).await;
    assert!(a.link.publish(&lobby, &Message::text("resumed"), None));
    let envelope = next(&mut b).await;
    assert_eq!(text(&envelope), "resumed");
    let stats = b.link.stats();
    assert!(
        stats.probes_missed + a.link.stats().probes_missed >= 1,
        "{stats:?}"
    );
    assert!(stats.reconnects >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_adds_up_over_nodes_and_a_dead_node_ages_out_within_the_ttl() {
    if !installed() {
        return;
    }
    const TTL: Duration = Duration::from_secs(2);
    let redis = RedisServer::standalone();
    let with_ttl = |name: &str| {
        let mut settings = settings(&redis.url(), Mode::Standalone, name);
        settings.presence_ttl = TTL;
        start(settings)
    };
    let a = with_ttl("node-a");
    let b = with_ttl("node-b");
    let c = with_ttl("node-c");
    up(&[&a, &b, &c]).await;
    let lobby = room("lobby");
    a.link.set_presence(&lobby, 2, &["u1".into(), "u2".into()]);
    b.link.set_presence(&lobby, 1, &["u2".into()]);
    c.link.set_presence(&lobby, 1, &["u3".into()]);
    c.link.set_presence(&room("other"), 5, &["u9".into()]);

    let users = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    let mut totals: (u64, Vec<String>, usize) = Default::default();
    let deadline = Instant::now() + PATIENCE;
    while totals != (4, users(&["u1", "u2", "u3"]), 3) {
        assert!(Instant::now() < deadline, "totals stayed {totals:?}");
        let read = a.link.presence(&lobby, None, PAGE).await.unwrap();
        assert_eq!(read.users, read.list.len() as u64);
        totals = (read.connections, read.list, read.nodes);
    }
    let other = b.link.presence(&room("other"), None, PAGE).await.unwrap();
    assert_eq!((other.connections, other.nodes), (5, 1));

    // A clean shutdown takes c's share away at once.
    c.link.shutdown().await;
    let read = a.link.presence(&lobby, None, PAGE).await.unwrap();
    assert_eq!(
        (read.connections, read.list.clone()),
        (3, users(&["u1", "u2"]))
    );

    // b dies (dropped without cleanup, as a crash would leave it): its
    // share outlives it until its TTL runs out.
    drop(b);
    let died = Instant::now();
    loop {
        let read = a.link.presence(&lobby, None, PAGE).await.unwrap();
        if read.connections == 2 {
            assert_eq!((read.users, read.list), (2, users(&["u1", "u2"])));
            break;
        }
        assert!(died.elapsed() < TTL + SLACK, "b's share outlived its TTL");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let aged = died.elapsed();
    // The share was refreshed at most a third of the TTL before b died.
    assert!(
        aged >= TTL * 2 / 3 - Duration::from_millis(100),
        "aged out after {aged:?}"
    );
    let nodes = redis.cli(&["SMEMBERS", "test:nodes"]);
    assert_eq!(nodes.trim(), "node-a", "the reader removed the dead node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_overlapping_shares_count_distinct_users_page_in_order_and_a_dead_nodes_users_age_out()
{
    if !installed() {
        return;
    }
    const TTL: Duration = Duration::from_secs(2);
    let redis = RedisServer::standalone();
    let with_ttl = |name: &str| {
        let mut settings = settings(&redis.url(), Mode::Standalone, name);
        settings.presence_ttl = TTL;
        start(settings)
    };
    let a = with_ttl("node-a");
    let b = with_ttl("node-b");
    up(&[&a, &b]).await;
    let big = room("big");
    let ids = |range: std::ops::Range<usize>| range.map(|n| format!("u{n:05}")).collect::<Vec<_>>();
    // 1,000 users on both nodes: 5,000 distinct, 6,000 connections.
    a.link.set_presence(&big, 3000, &ids(0..3000));
    b.link.set_presence(&big, 3000, &ids(2000..5000));
    let deadline = Instant::now() + PATIENCE;
    loop {
        let read = a.link.presence(&big, None, 0).await.unwrap();
        if (read.connections, read.users, read.nodes) == (6000, 5000, 2) {
            assert!(
                read.list.is_empty() && read.next.is_none(),
                "{:?}",
                read.next
            );
            break;
        }
        assert!(Instant::now() < deadline, "totals stayed {read:?}");
    }
    // Pages of 1,000 in id order, the cursor the last id of each.
    let mut walked = Vec::new();
    let mut after = None;
    loop {
        let page = b.link.presence(&big, after.as_deref(), PAGE).await.unwrap();
        assert_eq!(page.users, 5000);
        walked.extend(page.list);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(walked, ids(0..5000));

    // a loses its first 1,000 users and gains one: only the difference is
    // written, and the count stays exact (u02000.. are b's as well).
    let mut now_a = ids(1000..3000);
    now_a.push("u09999".to_owned());
    a.link.set_presence(&big, 2001, &now_a);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let read = b.link.presence(&big, None, 2).await.unwrap();
        if read.users == 4001 {
            assert_eq!(read.connections, 5001);
            assert_eq!(read.list, ["u01000", "u01001"]);
            break;
        }
        assert!(Instant::now() < deadline, "totals stayed {read:?}");
    }

    // b dies without cleanup: its users that a does not have age out
    // with its connections, within the TTL, and nothing of it is left.
    drop(b);
    let died = Instant::now();
    loop {
        let read = a.link.presence(&big, None, PAGE).await.unwrap();
        if read.connections == 2001 {
            assert_eq!(read.users, 2001);
            assert_eq!(read.list.first().map(String::as_str), Some("u01000"));
            break;
        }
        assert!(
            died.elapsed() < TTL + SLACK,
            "b's share outlived its TTL: {read:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        redis
            .cli(&["EXISTS", "test:presence-targets:node-b"])
            .trim(),
        "0"
    );
    let owners = redis.cli(&["HGET", "test:presence-users:{test:room:chat:big}", "u02500"]);
    assert_eq!(owners.trim(), "node-a");

    // A clean shutdown leaves no users behind.
    a.link.shutdown().await;
    assert_eq!(
        redis
            .cli(&[
                "EXISTS",
                "test:presence-users:{test:room:chat:big}",
                "test:presence-index:{test:room:chat:big}"
            ])
            .trim(),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_users_were_purged_while_it_lived_writes_them_again() {
    if !installed() {
        return;
    }
    const TTL: Duration = Duration::from_secs(2);
    let redis = RedisServer::standalone();
    let mut settings = settings(&redis.url(), Mode::Standalone, "node-a");
    settings.presence_ttl = TTL;
    let a = start(settings);
    up(&[&a]).await;
    let lobby = room("lobby");
    a.link.set_presence(&lobby, 2, &["u1".into(), "u2".into()]);
    let deadline = Instant::now() + PATIENCE;
    while a.link.presence(&lobby, None, 0).await.unwrap().users != 2 {
        assert!(Instant::now() < deadline, "the share was not written");
    }
    // What a reader does when it takes a node for dead (its hash expired
    // while its link was down), done while the node is back: its name off
    // the users, its target list deleted.
    redis.cli(&[
        "DEL",
        "test:presence-targets:node-a",
        "test:presence-users:{test:room:chat:lobby}",
        "test:presence-index:{test:room:chat:lobby}",
    ]);
    assert_eq!(a.link.presence(&lobby, None, 0).await.unwrap().users, 0);
    let purged = Instant::now();
    loop {
        let read = a.link.presence(&lobby, None, PAGE).await.unwrap();
        if read.users == 2 {
            assert_eq!(read.list, ["u1", "u2"]);
            break;
        }
        assert!(
            purged.elapsed() < TTL / 3 + SLACK,
            "the users stayed purged: {read:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A presence source that counts how often the link reads it.
struct Counted {
    share: (u64, Vec<Arc<str>>),
    reads: Arc<AtomicUsize>,
}

impl PresenceSource for Counted {
    fn share(&self) -> (u64, Vec<Arc<str>>) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.share.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_presence_changes_reads_its_source_once_per_flush() {
    if !installed() {
        return;
    }
    let redis = RedisServer::standalone();
    let a = node(&redis.url(), Mode::Standalone, "node-a");
    let b = node(&redis.url(), Mode::Standalone, "node-b");
    up(&[&a, &b]).await;
    let lobby = room("lobby");
    let reads = Arc::new(AtomicUsize::new(0));
    const CHANGES: u64 = 200;
    for connections in 1..=CHANGES {
        let users: Vec<Arc<str>> = (0..connections).map(|i| format!("u{i}").into()).collect();
        a.link.presence_changed(
            &lobby,
            Arc::new(Counted {
                share: (connections, users),
                reads: reads.clone(),
            }),
        );
    }
    let deadline = Instant::now() + PATIENCE;
    loop {
        // The counts and the users are written one after the other: wait
        // for both.
        let read = b.link.presence(&lobby, None, PAGE).await.unwrap();
        if read.connections == CHANGES && read.users == CHANGES {
            assert_eq!(read.list.len(), CHANGES as usize);
            break;
        }
        assert!(Instant::now() < deadline, "b read {read:?}");
    }
    // The changes came within one flush window; only the latest source
    // is read (twice at most, had a flush begun in the middle).
    assert!(reads.load(Ordering::Relaxed) <= 2, "{reads:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_under_its_name_replaces_its_share_long_before_the_ttl() {
    if !installed() {
        return;
    }
    let redis = RedisServer::standalone();
    let reader = node(&redis.url(), Mode::Standalone, "reader");
    let crashed = node(&redis.url(), Mode::Standalone, "node-a");
    up(&[&reader, &crashed]).await;
    let (lobby, other) = (room("lobby"), room("other"));
    crashed.link.set_presence(&lobby, 2, &["u1".into()]);
    crashed.link.set_presence(&other, 1, &["u2".into()]);
    let deadline = Instant::now() + PATIENCE;
    while reader
        .link
        .presence(&other, None, PAGE)
        .await
        .unwrap()
        .connections
        != 1
    {
        assert!(Instant::now() < deadline, "the first share was not written");
    }
    // A crash (no cleanup), and the node back under the same name with
    // members in the lobby only: its share is the new one at its first
    // write, not the old one's fields refreshed forever.
    drop(crashed);
    let restarted = node(&redis.url(), Mode::Standalone, "node-a");
    up(&[&restarted]).await;
    let started = Instant::now();
    restarted.link.set_presence(&lobby, 1, &["u3".into()]);
    loop {
        let (now_lobby, now_other) = (
            reader.link.presence(&lobby, None, PAGE).await.unwrap(),
            reader.link.presence(&other, None, PAGE).await.unwrap(),
        );
        if now_lobby.connections == 1 && now_other.connections == 0 {
            assert_eq!(
                (now_lobby.users, now_lobby.list),
                (1, vec!["u3".to_owned()])
            );
            break;
        }
        assert!(
            started.elapsed() < DEFAULT_PRESENCE_TTL / 3,
            "the old share is still read: lobby {now_lobby:?}, other {now_other:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_carries_sharded_pubsub_on_the_owning_shards() {
    if !installed() {
        return;
    }
    let cluster = RedisCluster::start(3);
    let a = node(&cluster.url(), Mode::Cluster, "node-a");
    let mut b = node(&cluster.url(), Mode::Cluster, "node-b");
    up(&[&a, &b]).await;
    assert_eq!(a.link.stats().shards, 3);
    assert_eq!(a.link.stats().shards_up, 3);

    const ROOMS: usize = 30;
    let rooms: Vec<Target> = (0..ROOMS).map(|i| room(&format!("r{i}"))).collect();
    for target in &rooms {
        b.link.subscribe(target);
    }
    until("b subscribed every room", || {
        b.link.stats().subscriptions == ROOMS as u64
    })
    .await;

    // Each room's shard channel lives on the master owning its slot, and
    // the rooms spread over all three.
    let mut per_node = [0usize; 3];
    for target in &rooms {
        let topic = b.link.topic(target);
        let owner = cluster.owner(&topic);
        let listed = cluster.nodes[owner].cli(&["PUBSUB", "SHARDCHANNELS", &topic]);
        assert_eq!(listed.trim(), topic, "{topic} on node {owner}");
        per_node[owner] += 1;
    }
    assert!(
        per_node.iter().all(|&n| n > 0),
        "rooms per master: {per_node:?}"
    );
    assert_eq!(
        cluster
            .nodes
            .iter()
            .map(|n| n.command_calls("subscribe"))
            .sum::<u64>(),
        0,
        "no plain SUBSCRIBE in cluster mode"
    );

    for (i, target) in rooms.iter().enumerate() {
        assert!(
            a.link
                .publish(target, &Message::text(format!("m{i}")), None)
        );
    }
    let mut seen = [false; ROOMS];
    for _ in 0..ROOMS {
        let envelope = next(&mut b).await;
        let i: usize = text(&envelope)[1..].parse().unwrap();
        assert_eq!(envelope.target, rooms[i]);
        assert!(!std::mem::replace(&mut seen[i], true), "m{i} twice");
    }
    until("a's publishes acknowledged", || {
        a.link.stats().published == ROOMS as u64
    })
    .await;
    assert_eq!(
        cluster
            .nodes
            .iter()
            .map(|n| n.command_calls("publish"))
            .sum::<u64>(),
        0,
        "no plain PUBLISH (broadcast over the cluster bus) in cluster mode"
    );
    assert_eq!(
        a.link.stats().received,
        0,
        "a has no interest and received nothing"
    );

    // Presence: each room's users and index share its slot, whichever
    // master owns it, and add up over both nodes.
    for (i, target) in rooms.iter().enumerate() {
        a.link
            .set_presence(target, 1, &[format!("u{i}"), "both".to_owned()]);
        b.link.set_presence(target, 2, &["both".to_owned()]);
    }
    for target in &rooms {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let read = b.link.presence(target, None, PAGE).await.unwrap();
            if (read.connections, read.users, read.nodes) == (3, 2, 2) {
                assert_eq!(read.list[0], "both");
                break;
            }
            assert!(Instant::now() < deadline, "{target:?}: {read:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_cluster_master_is_detected_and_its_shard_recovers_when_it_returns() {
    if !installed() {
        return;
    }
    let mut cluster = RedisCluster::start(3);
    let a = node(&cluster.url(), Mode::Cluster, "node-a");
    let mut b = node(&cluster.url(), Mode::Cluster, "node-b");
    up(&[&a, &b]).await;

    // Two rooms on different masters; the first one's master will go.
    let rooms: Vec<Target> = (0..30).map(|i| room(&format!("r{i}"))).collect();
    let doomed = cluster.owner(&a.link.topic(&rooms[0]));
    let survivor = rooms
        .iter()
        .find(|target| cluster.owner(&a.link.topic(target)) != doomed)
        .unwrap()
        .clone();
    let lost_room = rooms[0].clone();
    b.link.subscribe(&lost_room);
    b.link.subscribe(&survivor);
    until("b subscribed", || b.link.stats().subscriptions == 2).await;

    cluster.nodes[doomed].kill();
    let killed = Instant::now();
    until("the loss seen", || {
        a.link.state() != LinkState::Up && b.link.state() != LinkState::Up
    })
    .await;
    assert!(killed.elapsed() <= PROBE_INTERVAL + PROBE_TIMEOUT + SLACK);
    assert_eq!(
        a.link.state(),
        LinkState::Degraded,
        "the other shards still serve"
    );

    // The surviving shard still carries its room.
    assert!(
        a.link
            .publish(&survivor, &Message::text("still here"), None)
    );
    assert_eq!(text(&next(&mut b).await), "still here");
    // The lost shard's room is counted as lost, not queued.
    let lost = a.link.stats().publish_lost;
    assert!(!a.link.publish(&lost_room, &Message::text("gone"), None));
    assert_eq!(a.link.stats().publish_lost, lost + 1);

    cluster.nodes[doomed].restart();
    cluster.wait_ok();
    up(&[&a, &b]).await;
    until("b's subscriptions restored", || {
        b.link.stats().subscriptions == 2
    })
    .await;
    assert!(a.link.publish(&lost_room, &Message::text("back"), None));
    assert_eq!(text(&next(&mut b).await), "back");
    assert!(b.link.stats().reconnects >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_a_unix_socket_and_a_password_file_all_reach_the_same_redis() {
    if !installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_file = dir.path().join("redis.crt");
    let key_file = dir.path().join("redis.key");
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, signing_key.serialize_pem()).unwrap();
    let socket = dir.path().join("redis.sock");
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "s3cret\n").unwrap();
    let redis = RedisServer::with_args(&[
        "--tls-port",
        "{free:tls}",
        "--tls-cert-file",
        cert_file.to_str().unwrap(),
        "--tls-key-file",
        key_file.to_str().unwrap(),
        "--tls-auth-clients",
        "no",
        "--unixsocket",
        socket.to_str().unwrap(),
        "--requirepass",
        "s3cret",
    ]);
    let password = Password::new(&std::fs::read_to_string(&password_file).unwrap());

    let tls_url = format!("rediss://localhost:{}", redis.extra_port("tls"));
    let mut over_tls = settings(&tls_url, Mode::Standalone, "node-tls");
    let mut roots = RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    over_tls.tls_roots = TlsRoots::Custom(Arc::new(roots));
    over_tls.password = Some(password.clone());
    let mut a = start(over_tls);

    let unix_url = format!("unix://{}", socket.display());
    let mut over_unix = settings(&unix_url, Mode::Standalone, "node-unix");
    over_unix.password = Some(password);
    let mut b = start(over_unix);

    let mut wrong = settings(&redis.url(), Mode::Standalone, "node-wrong");
    wrong.password = Some(Password::new("not it"));
    let c = start(wrong);
    // Trusting only the system store, the self-signed certificate is refused.
    let mut untrusted = settings(&tls_url, Mode::Standalone, "node-untrusted");
    untrusted.password = Some(Password::new("s3cret"));
    let untrusted = start(untrusted);

    up(&[&a, &b]).await;
    let lobby = room("lobby");
    a.link.subscribe(&lobby);
    b.link.subscribe(&lobby);
    until("both subscribed", || {
        a.link.stats().subscriptions == 1 && b.link.stats().subscriptions == 1
    })
    .await;
    assert!(a.link.publish(&lobby, &Message::text("from tls"), None));
    assert!(b.link.publish(&lobby, &Message::text("from unix"), None));
    assert_eq!(text(&next(&mut b).await), "from tls");
    assert_eq!(text(&next(&mut a).await), "from unix");

    // Both have been retrying all along, and never got a session.
    assert_eq!(c.link.state(), LinkState::Down);
    assert_eq!(untrusted.link.state(), LinkState::Down);
    assert_eq!(c.link.stats().probes_ok, 0);
    assert_eq!(untrusted.link.stats().probes_ok, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_the_shard_follows_the_promoted_replica() {
    if !installed() {
        return;
    }
    let mut cluster = RedisCluster::with_replicas(3, 1);
    let a = node(&cluster.url(), Mode::Cluster, "node-a");
    let mut b = node(&cluster.url(), Mode::Cluster, "node-b");
    up(&[&a, &b]).await;
    assert_eq!(a.link.stats().shards, 3, "masters only");
    let lobby = room("lobby");
    b.link.subscribe(&lobby);
    until("b subscribed", || b.link.stats().subscriptions == 1).await;
    let master = cluster.owner(&a.link.topic(&lobby));
    let refreshes = b.link.stats().topology_refreshes;

    // The lobby's master dies for good; its replica takes over.
    cluster.nodes[master].kill();
    until("the loss seen", || b.link.state() != LinkState::Up).await;
    cluster.wait_ok();
    up(&[&a, &b]).await;
    until("b resubscribed on the new master", || {
        b.link.stats().subscriptions == 1
    })
    .await;
    assert!(b.link.stats().topology_refreshes > refreshes);
    let promoted = cluster.owner(&a.link.topic(&lobby));
    assert_ne!(promoted, master);
    let listed = cluster.nodes[promoted].cli(&["PUBSUB", "SHARDCHANNELS", &a.link.topic(&lobby)]);
    assert_eq!(listed.trim(), a.link.topic(&lobby));

    assert!(
        a.link
            .publish(&lobby, &Message::text("after failover"), None)
    );
    assert_eq!(text(&next(&mut b).await), "after failover");
    assert_eq!(a.link.stats().shards, 3);
}

/// A TCP proxy in front of Redis that can silently stop relaying Redis's
/// bytes to subscriber connections (those that named themselves `*-sub`
/// with CLIENT SETNAME), while the sockets stay open and every other
/// connection works: a subscriber connection that stopped delivering with
/// nothing closed, as a half-open connection or a wedged proxy leaves it.
struct Blackhole {
    port: u16,
    active: Arc<AtomicBool>,
}

impl Blackhole {
    async fn start(redis_port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let active = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&active);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let flag = Arc::clone(&flag);
                tokio::spawn(async move {
                    let Ok(server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", redis_port)).await
                    else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let subscriber = Arc::new(AtomicBool::new(false));
                    let seen = Arc::clone(&subscriber);
                    let upstream = tokio::spawn(async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        let mut head = Vec::new();
                        loop {
                            let n = match client_read.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if head.len() < 4096 {
                                head.extend_from_slice(&buf[..n]);
                                if head.windows(4).any(|w| w == b"-sub") {
                                    seen.store(true, Ordering::SeqCst);
                                }
                            }
                            if server_write.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match server_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if subscriber.load(Ordering::SeqCst) && flag.load(Ordering::SeqCst) {
                            continue; // swallowed: the client never hears
                        }
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    upstream.abort();
                });
            }
        });
        Self { port, active }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_silently_stopped_delivering_is_caught_by_the_probe_alone() {
    if !installed() {
        return;
    }
    let redis = RedisServer::standalone();
    let proxy = Blackhole::start(redis.port).await;
    let a = node(&redis.url(), Mode::Standalone, "node-a");
    let mut b = node(
        &format!("redis://127.0.0.1:{}", proxy.port),
        Mode::Standalone,
        "node-b",
    );
    up(&[&a, &b]).await;
    let lobby = room("lobby");
    b.link.subscribe(&lobby);
    numsub(&redis, &a.link.topic(&lobby), 1).await;
    assert!(a.link.publish(&lobby, &Message::text("before"), None));
    assert_eq!(text(&next(&mut b).await), "before");

    // b's subscriber connection goes silent; Redis, b's publisher
    // connection and every socket are fine, and Redis still counts b as
    // subscribed: only the probe can tell.
    let missed = b.link.stats().probes_missed;
    proxy.active.store(true, Ordering::SeqCst);
    let silenced = Instant::now();
    assert!(
        a.link
            .publish(&lobby, &Message::text("into the void"), None)
    );
    until("b sees its subscriber is silent", || {
        b.link.state() != LinkState::Up
    })
    .await;
    let detected = silenced.elapsed();
    assert!(
        detected <= PROBE_INTERVAL + PROBE_TIMEOUT + SLACK,
        "detected after {detected:?}, bound {:?}",
        PROBE_INTERVAL + PROBE_TIMEOUT
    );
    assert_eq!(
        b.link.stats().probes_missed,
        missed + 1,
        "the probe caught it"
    );
    assert_eq!(
        a.link.state(),
        LinkState::Up,
        "a, on the same Redis, is fine"
    );

    // Relaying again: b's next session is through the proxy too, and works.
    proxy.active.store(false, Ordering::SeqCst);
    up(&[&b]).await;
    until("b resubscribed", || b.link.stats().subscriptions == 1).await;
    assert!(a.link.publish(&lobby, &Message::text("after"), None));
    assert_eq!(text(&next(&mut b).await), "after");
}

/// The node shares one link between every connection task.
#[test]
fn a_link_can_be_shared_between_tasks() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Link>();
    shareable::<Envelope>();
}
