//! Realistic JSON messages for the compression scenario, generated
//! deterministically (the same bytes on every run and every machine):
//! two of three are market-data order-book updates, one of three a chat
//! message, each 500 B to 2 KiB. Keys repeat from message to message, values
//! vary (prices, sizes, ids, timestamps, words), as in a real feed; nothing
//! is padded with repeated filler, which would compress unrealistically well.

use std::fmt::Write as _;

/// xorshift64*: small, fast and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `low..=high`.
    fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.next() as usize % items.len()]
    }
}

const SYMBOLS: [(&str, u64); 8] = [
    ("AAPL", 18_942),
    ("MSFT", 41_517),
    ("NVDA", 87_503),
    ("AMZN", 17_866),
    ("GOOGL", 15_231),
    ("META", 49_012),
    ("TSLA", 17_548),
    ("AMD", 16_290),
];
const VENUES: [&str; 4] = ["XNAS", "XNYS", "BATS", "ARCX"];
const ROOMS: [&str; 5] = ["general", "random", "support", "release-planning", "ops"];
const NAMES: [&str; 8] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
];
const SURNAMES: [&str; 6] = ["Martin", "Nguyen", "Schmidt", "Garcia", "Okafor", "Rossi"];
const WORDS: [&str; 64] = [
    "the",
    "deploy",
    "is",
    "done",
    "and",
    "the",
    "dashboard",
    "looks",
    "good",
    "but",
    "latency",
    "on",
    "eu-west",
    "went",
    "up",
    "after",
    "we",
    "rolled",
    "out",
    "new",
    "build",
    "can",
    "you",
    "check",
    "logs",
    "for",
    "the",
    "gateway",
    "I",
    "think",
    "it",
    "is",
    "related",
    "to",
    "connection",
    "pool",
    "size",
    "let's",
    "revert",
    "if",
    "error",
    "rate",
    "keeps",
    "growing",
    "thanks",
    "will",
    "do",
    "ticket",
    "updated",
    "with",
    "graphs",
    "customer",
    "reported",
    "timeouts",
    "since",
    "morning",
    "meeting",
    "moved",
    "to",
    "3pm",
    "please",
    "review",
    "my",
    "PR",
];
const EMOJI: [&str; 6] = [
    "thumbsup",
    "eyes",
    "rocket",
    "tada",
    "white_check_mark",
    "pray",
];

/// `count` messages; message `i` is the same on every call.
pub fn events(count: usize) -> Vec<String> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (0..count)
        .map(|seq| {
            if seq % 3 == 2 {
                chat(&mut rng, seq)
            } else {
                book_update(&mut rng, seq)
            }
        })
        .collect()
}

/// A timestamp 37 ms (on average) after the previous message.
fn timestamp(seq: usize, rng: &mut Rng, micros: bool) -> String {
    let ms = 9 * 3_600_000 + seq as u64 * 37 + rng.range(0, 36);
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    if micros {
        format!(
            "2025-03-14T{h:02}:{m:02}:{s:02}.{milli:03}{:03}Z",
            rng.range(0, 999)
        )
    } else {
        format!("2025-03-14T{h:02}:{m:02}:{s:02}.{milli:03}Z")
    }
}

fn price(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// An order-book update: 4 to 18 levels a side.
fn book_update(rng: &mut Rng, seq: usize) -> String {
    let (symbol, base) = SYMBOLS[rng.next() as usize % SYMBOLS.len()];
    let mid = base + rng.range(0, 400) - 200;
    let levels = rng.range(4, 18);
    let mut out = String::with_capacity(2048);
    let _ = write!(
        out,
        r#"{{"type":"book.update","seq":{},"ts":"{}","venue":"{}","symbol":"{symbol}","currency":"USD","bids":["#,
        1_000_000 + seq,
        timestamp(seq, rng, true),
        rng.pick(&VENUES),
    );
    for side in 0..2 {
        if side == 1 {
            out.push_str(r#"],"asks":["#);
        }
        let mut level_price = mid;
        for level in 0..levels {
            level_price = if side == 0 {
                level_price - rng.range(1, 3)
            } else {
                level_price + rng.range(1, 3)
            };
            if level > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                r#"{{"price":"{}","size":"{}","orders":{}}}"#,
                price(level_price),
                rng.range(1, 60) * 100,
                rng.range(1, 25)
            );
        }
    }
    let _ = write!(
        out,
        r#"],"last_trade":{{"price":"{}","size":"{}","side":"{}","trade_id":"T{:010}"}}}}"#,
        price(mid),
        rng.range(1, 20) * 100,
        if rng.next() % 2 == 0 { "buy" } else { "sell" },
        rng.range(0, 9_999_999_999)
    );
    out
}

/// A chat message of 24 to 220 words, with its author and reactions.
fn chat(rng: &mut Rng, seq: usize) -> String {
    let user = rng.range(10_000, 99_999);
    let name = rng.pick(&NAMES);
    let mut text = String::new();
    for i in 0..rng.range(24, 220) {
        if i > 0 {
            text.push(' ');
        }
        text.push_str(rng.pick(&WORDS));
    }
    let mut out = String::with_capacity(2048);
    let _ = write!(
        out,
        r#"{{"type":"chat.message","id":"msg_{:016x}","seq":{},"room":"{}","sent_at":"{}","user":{{"id":"u_{user}","name":"{name}","display_name":"{}{} {}","avatar_url":"https://cdn.example.com/avatars/u_{user}.png","roles":["{}"]}},"text":"{text}","mentions":["#,
        rng.next(),
        1_000_000 + seq,
        rng.pick(&ROOMS),
        timestamp(seq, rng, false),
        name[..1].to_ascii_uppercase(),
        &name[1..],
        rng.pick(&SURNAMES),
        if rng.next() % 5 == 0 {
            "moderator"
        } else {
            "member"
        },
    );
    for i in 0..rng.range(0, 2) {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, r#""u_{}""#, rng.range(10_000, 99_999));
    }
    out.push_str(r#"],"reactions":["#);
    for i in 0..rng.range(0, 3) {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            r#"{{"emoji":"{}","count":{}}}"#,
            rng.pick(&EMOJI),
            rng.range(1, 12)
        );
    }
    let _ = write!(
        out,
        r#"],"thread":{{"reply_count":{},"last_reply_at":"{}"}},"edited":{}}}"#,
        rng.range(0, 9),
        timestamp(seq + 40, rng, false),
        rng.next() % 7 == 0
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Smallest and largest message, in bytes.
    const MIN_SIZE: usize = 500;
    const MAX_SIZE: usize = 2048;

    #[test]
    fn messages_are_valid_json_of_the_promised_size_and_deterministic() {
        let events = events(600);
        assert_eq!(events, super::events(600));
        for (i, event) in events.iter().enumerate() {
            assert!(
                (MIN_SIZE..=MAX_SIZE).contains(&event.len()),
                "message {i} is {} bytes: {event}",
                event.len()
            );
            serde_json::from_str::<serde_json::Value>(event)
                .unwrap_or_else(|e| panic!("message {i} is not JSON ({e}): {event}"));
        }
        let chats = events.iter().filter(|e| e.contains("chat.message")).count();
        assert_eq!(chats, 200);
    }
}
