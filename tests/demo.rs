//! The demo app in `examples/demo/` in headless Chromium (playwright-core,
//! `tests/peers/chromium_demo.mjs`), against a real server running
//! `config.example.toml` with an admin listener: two pages chat with each
//! other in a room, ticker lines published through the admin API reach both,
//! and when a reload removes the ticker's channel (close 1001) and a second
//! one restores it, both pages reconnect by themselves and receive the next
//! line while their chat connection stays up. The page is screenshotted
//! along the way (the README shows one such screenshot, docs/demo.png).

mod common;

use std::path::{Path, PathBuf};

use common::{
    browser::{Browser, assert_screenshot},
    eventually, example_config, peers,
};

/// Ticker lines published before the chat; the last one is what the pages
/// are asked to show.
const TICKER_LINES: [&str; 3] = [
    "09:30:00  ACME       100.00  ▲ 0.00%",
    "09:30:02  GLOBX       42.17  ▲ 0.40%",
    "09:30:04  INITECH     73.41  ▼ 0.12%",
];

/// config.example.toml without its `news` channel.
fn without_news(config: &str) -> String {
    let start = config
        .find("[[channel]]\nname = \"news\"")
        .expect("config.example.toml declares the news channel");
    let end = start
        + 1
        + config[start + 1..]
            .find("[[channel]]")
            .expect("a channel follows news");
    format!("{}{}", &config[..start], &config[end..])
}

fn news_connections(stats: &wsedge::Stats) -> Option<usize> {
    stats
        .channels
        .iter()
        .find(|channel| channel.name == "news")
        .map(|channel| channel.connections)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pages_chat_and_the_ticker_survives_a_1001() {
    let Some(node) = peers::chromium() else {
        return;
    };
    let example = example_config();
    let server = common::start_with_admin(&example).await;
    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("demo.png");
    let _ = std::fs::remove_file(&screenshot);
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo");
    let ws_base = format!("ws://{}", server.ws);
    let mut browser = Browser::start(
        &node,
        "chromium_demo.mjs",
        &[
            demo.to_str().unwrap(),
            &ws_base,
            screenshot.to_str().unwrap(),
        ],
    );

    browser.expect("READY").await;
    for line in TICKER_LINES {
        assert_eq!(
            server.publish_text("news", line).await,
            2,
            "both pages on /news"
        );
    }
    browser
        .tell(&format!("TICKER {}", TICKER_LINES[TICKER_LINES.len() - 1]))
        .await;
    browser.expect("CHATTED").await;

    // A reload that removes /news closes its connections with 1001; the
    // pages' attempts meanwhile get 404. The next reload restores it.
    server.reload(&without_news(&example)).await;
    eventually(&server.handle, |stats| {
        stats.traffic.disconnects.get(&("1001", "server")) == Some(&2)
    })
    .await;
    server.reload(&example).await;
    eventually(&server.handle, |stats| news_connections(stats) == Some(2)).await;
    let after = "09:31:00  ACME       100.25  ▲ 0.25%";
    assert_eq!(server.publish_text("news", after).await, 2);
    browser.tell(&format!("TICKER {after}")).await;
    browser.finish().await;
    assert_screenshot(&screenshot);

    // Two joins and two chat lines, and nothing more: a chat that had
    // reconnected would have sent its join again. The pages never publish
    // on /news.
    let stats = eventually(&server.handle, |stats| stats.connections == 0).await;
    assert_eq!(stats.traffic.messages_received["room"], 4, "{stats:#?}");
    assert_eq!(
        stats.traffic.messages_received["broadcast"], 0,
        "{stats:#?}"
    );
}
