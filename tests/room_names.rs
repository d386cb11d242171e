//! Room names a proxy and the server could read two ways are refused before
//! anything is upgraded: names made of dots, or starting with one, which
//! proxies normalise into other paths.

mod common;

use common::*;

const CHANNELS: &str = r#"
[[channel]]
name = "chat"
path = "/chat/{room}"
kind = "room"
"#;

#[tokio::test]
async fn room_names_made_of_dots_or_starting_with_one_are_400() {
    let server = start(CHANNELS).await;
    for room in [".", "..", "...", ".hidden", "..x"] {
        let answer = server
            .raw_http(&upgrade_request(&format!("/chat/{room}"), ""))
            .await;
        assert_eq!(answer.status, 400, "room {room:?}: {answer:?}");
        assert!(
            answer.body.contains("do not start with '.'"),
            "room {room:?}: {}",
            answer.body
        );
    }
    assert_eq!(server.handle.stats().connections, 0);
    // Dots elsewhere in a name are fine.
    for room in ["a.", "v1.2", "a..b"] {
        let answer = server
            .raw_http(&upgrade_request(&format!("/chat/{room}"), ""))
            .await;
        assert_eq!(answer.status, 101, "room {room:?}: {answer:?}");
    }
}
