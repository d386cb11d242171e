//! The fuzz harness: property tests over everything that parses what a
//! client (or a config file) hands the server, on the stable toolchain.
//!
//! - the whole reading path (frame reader, message assembly) on random and
//!   mutated byte streams in random chunkings, and on random frame
//!   sequences, valid ones included;
//! - permessage-deflate negotiation on random `Sec-WebSocket-Extensions`
//!   values, and the inflater on random bytes with random limits;
//! - the handshake checks (upgrade headers, subprotocols, origins, paths and
//!   room names) on random headers;
//! - PROXY protocol headers on random and mutated bytes (that property lives
//!   beside the reader, in `server/proxy.rs`, whose module is private to
//!   `server`, and uses the strategies here);
//! - the TOML configuration (`Config::from_toml_str`) on mutated documents.
//!
//! Every property says at least "never panics": each input ends in a value
//! or a typed error. Inputs are seeded with the byte sequences
//! `tests/abuse.rs` and `tests/fail_fast.rs` attack with, and with the
//! example configuration.
//!
//! `cargo test --lib fuzz` runs [`CASES`] cases of each property (all of
//! them in well under 20 s in a debug build). To fuzz for real, raise the
//! count and build optimised:
//!
//! ```text
//! PROPTEST_CASES=1000000 cargo test --release --lib fuzz
//! ```
//!
//! A failure is shrunk to a minimal input, printed, and its seed saved under
//! `proptest-regressions/`: commit that file so the case is replayed first
//! from then on.

use bytes::Bytes;
use hyper::{
    HeaderMap, Method, Version,
    header::{HeaderName, HeaderValue},
};
use proptest::{collection::vec, prelude::*, sample::select, test_runner::Config as Cases};

use crate::{
    config::{Compression, CompressionMode},
    http::{
        handshake::{check_upgrade, select_subprotocol},
        origin::{OriginPattern, OriginPolicy},
        route::{PathPattern, is_valid_room_name},
    },
    message::MessageKind,
    protocol::{
        close,
        frame::{
            FIN, MAX_CONTROL_PAYLOAD, OPCODE_BINARY, OPCODE_CONTINUATION, OPCODE_PING, OPCODE_TEXT,
            RSV1,
        },
        window_bits,
    },
    ws::{
        deflate::{
            codec::{Deflater, Inflater},
            negotiate::negotiate,
        },
        reader::{
            Activity, Checker, FrameReader,
            tests::{Pieces, frame, whole},
        },
        receive::{Assembler, Failure, Received, close_for},
    },
};

/// Cases per property in a plain `cargo test`; `PROPTEST_CASES` overrides.
const CASES: u32 = 128;

/// The case count for each property: [`CASES`], or `PROPTEST_CASES`.
pub(crate) fn cases() -> Cases {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(CASES);
    Cases {
        cases,
        ..Cases::default()
    }
}

// ---------------------------------------------------------------------------
// Seeds and mutations
// ---------------------------------------------------------------------------

/// The frame sequences of `tests/abuse.rs` and `tests/fail_fast.rs`.
fn attack_seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![
        // A binary frame announcing 1 GiB, with no body.
        frame(0x82, 1 << 30, &[]),
        // Text that is not UTF-8.
        whole(0x81, &[0xC3, 0x28]),
        // Unmasked.
        vec![0x81, 0x05, b'h', b'e', b'l', b'l', b'o'],
        // RSV1, RSV2, RSV3.
        whole(0xC1, b"hi"),
        whole(0xA1, b"hi"),
        whole(0x91, b"hi"),
        // A 126-byte ping.
        whole(0x89, &[0x50; 126]),
        // 10 MB announced, 4 KiB sent.
        frame(0x82, 10_000_000, &[0x55; 4096]),
        // Two 40 KiB fragments, the second as its header only.
        [whole(0x02, &[0xAA; 40 * 1024]), frame(0x80, 40 * 1024, &[])].concat(),
        // A data frame inside a fragmented message.
        [whole(0x01, b"hel"), whole(0x81, b"new"), whole(0x80, b"lo")].concat(),
        // A fragmented message inside a fragmented message.
        [whole(0x01, b"hel"), whole(0x01, b"new"), whole(0x80, b"lo")].concat(),
        // A text ending mid-character.
        [whole(0x01, b"a"), whole(0x80, &[0xC3])].concat(),
        // A stray continuation after a large message.
        [whole(0x81, &[b'a'; 40 * 1024]), frame(0x80, 40 * 1024, &[])].concat(),
        // Invalid UTF-8 in a first fragment, then a ping.
        [whole(0x01, b"a\xFFb"), whole(0x89, b"ping")].concat(),
        // A final stored block followed by junk, compressed.
        whole(
            0xC2,
            &[0x01, 0x02, 0x00, 0xFD, 0xFF, b'h', b'i', b'j', b'k'],
        ),
        // Six pings.
        (0..6u8).flat_map(|i| whole(0x89, &[i])).collect(),
    ];
    for code in [1005u16, 999, 5000, 1006, 1015, 1000] {
        seeds.push(whole(0x88, &code.to_be_bytes()));
    }
    seeds
}

/// One edit of a seed.
#[derive(Debug, Clone)]
enum Edit {
    Flip { at: usize, bit: u8 },
    Set { at: usize, byte: u8 },
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, len: usize },
    Truncate { at: usize },
    Duplicate { at: usize, len: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    let at = any::<usize>();
    prop_oneof![
        (at, 0..8u8).prop_map(|(at, bit)| Edit::Flip { at, bit }),
        (at, any::<u8>()).prop_map(|(at, byte)| Edit::Set { at, byte }),
        (at, vec(any::<u8>(), 1..16)).prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
        (at, 1..64usize).prop_map(|(at, len)| Edit::Remove { at, len }),
        at.prop_map(|at| Edit::Truncate { at }),
        (at, 1..64usize).prop_map(|(at, len)| Edit::Duplicate { at, len }),
    ]
}

/// Applies `edits` to `bytes`; positions wrap around the current length.
fn mutate(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let len = bytes.len();
        let pos = |at: usize| if len == 0 { 0 } else { at % len };
        match edit {
            Edit::Flip { at, bit } if len > 0 => bytes[pos(*at)] ^= 1 << bit,
            Edit::Set { at, byte } if len > 0 => bytes[pos(*at)] = *byte,
            Edit::Insert { at, bytes: new } => {
                let at = if len == 0 { 0 } else { at % (len + 1) };
                bytes.splice(at..at, new.iter().copied());
            }
            Edit::Remove { at, len: count } if len > 0 => {
                let at = pos(*at);
                bytes.drain(at..(at + count).min(len));
            }
            Edit::Truncate { at } => bytes.truncate(if len == 0 { 0 } else { at % (len + 1) }),
            Edit::Duplicate { at, len: count } if len > 0 => {
                let at = pos(*at);
                let copy = bytes[at..(at + count).min(len)].to_vec();
                bytes.splice(at..at, copy);
            }
            _ => {}
        }
    }
    bytes
}

/// A seed from `seeds`, mutated by a few edits (or none).
pub(crate) fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (select(seeds), vec(edit(), 0..6)).prop_map(|(seed, edits)| mutate(seed, &edits))
}

// ---------------------------------------------------------------------------
// Client frames
// ---------------------------------------------------------------------------

/// One frame as a hostile client might write it.
#[derive(Debug, Clone)]
struct RawFrame {
    first: u8,
    masked: bool,
    /// A length to announce instead of the payload's own.
    announced: Option<u64>,
    payload: Vec<u8>,
}

impl RawFrame {
    fn encode(&self) -> Vec<u8> {
        let len = self.announced.unwrap_or(self.payload.len() as u64);
        let mut bytes = frame(self.first, len, &self.payload);
        if !self.masked {
            // Unmask: clear the bit, drop the key, restore the payload.
            let header = bytes.len() - self.payload.len() - 4;
            bytes[1] &= 0x7F;
            bytes.truncate(header);
            bytes.extend_from_slice(&self.payload);
        }
        bytes
    }
}

/// First header bytes weighted towards what a server sees: data,
/// continuation and control opcodes with FIN, now and then RSV bits or a
/// reserved opcode.
fn first_byte() -> impl Strategy<Value = u8> {
    let opcode = prop_oneof![
        4 => select(vec![0x0u8, 0x1, 0x2]),
        2 => select(vec![0x8u8, 0x9, 0xA]),
        1 => 0..16u8,
    ];
    let bits = prop_oneof![
        6 => select(vec![0x80u8, 0x00]),
        1 => select(vec![0xC0u8, 0x40, 0xA0, 0x90]),
        1 => any::<u8>().prop_map(|b| b & 0xF0),
    ];
    (bits, opcode).prop_map(|(bits, opcode)| bits | opcode)
}

fn raw_frame() -> impl Strategy<Value = RawFrame> {
    let announced = prop_oneof![
        8 => Just(None),
        1 => select(vec![0u64, 1, 125, 126, 127, 65_535, 65_536, 1 << 20, u64::MAX]).prop_map(Some),
        1 => any::<u64>().prop_map(Some),
    ];
    (
        first_byte(),
        prop_oneof![9 => Just(true), 1 => Just(false)],
        announced,
        vec(any::<u8>(), 0..300),
    )
        .prop_map(|(first, masked, announced, payload)| RawFrame {
            first,
            masked,
            announced,
            payload,
        })
}

/// What a client sends: a mutated attack, random frames, or noise.
fn client_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => mutated(attack_seeds()),
        3 => vec(raw_frame(), 0..12)
            .prop_map(|frames| frames.iter().flat_map(RawFrame::encode).collect()),
        1 => vec(any::<u8>(), 0..600),
    ]
}

/// Read sizes: a reader delivers the stream in pieces of these sizes, in turn.
fn read_sizes() -> impl Strategy<Value = Vec<usize>> {
    vec(prop_oneof![1..4usize, 1..64usize, 1..5000usize], 1..8)
}

// ---------------------------------------------------------------------------
// The whole reading path
// ---------------------------------------------------------------------------

/// How reading a stream ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The stream ended (cleanly or inside a frame): nothing to send.
    Gone,
    /// The client closed.
    Closed,
    /// The server closes with this failure.
    Failed(Failure),
}

/// Reads `stream` as a session does (frame reader, assembly) and returns
/// what it received and how it ended.
fn receive(
    runtime: &tokio::runtime::Runtime,
    stream: Vec<u8>,
    sizes: Vec<usize>,
    max_payload: usize,
    deflate: Option<bool>,
) -> (Vec<Received>, End) {
    runtime.block_on(async {
        let activity = Activity::new();
        let checker = Checker::new(max_payload, deflate.is_some());
        let mut reader = FrameReader::new(Pieces::new(stream, sizes), checker, &activity);
        let mut assembler = Assembler::new(max_payload, deflate);
        let mut received = Vec::new();
        loop {
            let frame = match reader.frame().await {
                Ok(frame) => frame,
                Err(error) => return (received, close_for(error).map_or(End::Gone, End::Failed)),
            };
            match assembler.frame(frame) {
                Ok(Received::Close(_)) => return (received, End::Closed),
                Ok(Received::Nothing) => {}
                Ok(event) => received.push(event),
                Err(failure) => return (received, End::Failed(failure)),
            }
        }
    })
}

/// A runtime to drive async readers in a property.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
}

/// One message a well-behaved client sends: its kind and payload, whether it
/// is compressed, the sizes of its fragments, and pings between them.
#[derive(Debug, Clone)]
struct Message {
    text: bool,
    payload: Vec<u8>,
    compressed: bool,
    fragments: Vec<usize>,
    pings: Vec<Vec<u8>>,
}

fn message() -> impl Strategy<Value = Message> {
    let payload = prop_oneof![
        any::<String>().prop_map(|text| (true, text.into_bytes())),
        vec(any::<u8>(), 0..400).prop_map(|bytes| (false, bytes)),
        vec(select(vec![0u8, b'a', b'b']), 0..3000).prop_map(|bytes| (false, bytes)),
    ];
    (
        payload,
        any::<bool>(),
        vec(0..200usize, 0..4),
        vec(vec(any::<u8>(), 0..=MAX_CONTROL_PAYLOAD as usize), 0..2),
    )
        .prop_map(|((text, payload), compressed, fragments, pings)| Message {
            text,
            payload,
            compressed,
            fragments,
            pings,
        })
}

/// Encodes `messages` as a client would, compressing with `deflater`.
fn encode(messages: &[Message], deflater: &mut Deflater) -> Vec<u8> {
    let mut stream = Vec::new();
    for message in messages {
        let data = if message.compressed {
            deflater.compress(&message.payload).to_vec()
        } else {
            message.payload.clone()
        };
        let mut pieces = Vec::new();
        let mut rest = &data[..];
        for &size in &message.fragments {
            let (piece, tail) = rest.split_at(size.min(rest.len()));
            pieces.push(piece);
            rest = tail;
        }
        pieces.push(rest);
        for (i, piece) in pieces.iter().enumerate() {
            let mut first = match (i, message.text) {
                (0, true) => OPCODE_TEXT,
                (0, false) => OPCODE_BINARY,
                _ => OPCODE_CONTINUATION,
            };
            if i == 0 && message.compressed {
                first |= RSV1;
            }
            if i == pieces.len() - 1 {
                first |= FIN;
            }
            stream.extend(whole(first, piece));
            if let Some(ping) = message.pings.get(i) {
                stream.extend(whole(FIN | OPCODE_PING, ping));
            }
        }
    }
    stream
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn any_stream_ends_in_messages_and_a_close_code(
        stream in client_bytes(),
        sizes in read_sizes(),
        max_payload in prop_oneof![1..200usize, Just(64 * 1024)],
        deflate in prop_oneof![Just(None), any::<bool>().prop_map(Some)],
    ) {
        let (received, end) = receive(&runtime(), stream, sizes, max_payload, deflate);
        for event in &received {
            if let Received::Message((kind, payload)) = event {
                prop_assert!(payload.len() <= max_payload);
                if *kind == MessageKind::Text {
                    prop_assert!(std::str::from_utf8(payload).is_ok());
                }
            }
        }
        if let End::Failed(failure) = end {
            prop_assert!(
                [close::PROTOCOL_ERROR, close::INVALID_PAYLOAD, close::TOO_BIG]
                    .contains(&failure.code),
                "{failure:?}"
            );
        }
    }

    #[test]
    fn a_stream_is_judged_the_same_in_any_chunking(
        stream in client_bytes(),
        sizes in read_sizes(),
        max_payload in prop_oneof![1..200usize, Just(64 * 1024)],
        deflate in prop_oneof![Just(None), any::<bool>().prop_map(Some)],
    ) {
        let runtime = runtime();
        let whole = receive(&runtime, stream.clone(), vec![usize::MAX], max_payload, deflate);
        let pieces = receive(&runtime, stream, sizes, max_payload, deflate);
        prop_assert_eq!(pieces, whole);
    }

    #[test]
    fn valid_messages_come_out_intact_in_any_chunking(
        messages in vec(message(), 1..6),
        sizes in read_sizes(),
        window in window_bits::MIN..=window_bits::MAX,
        reset in any::<bool>(),
    ) {
        let mut deflater = Deflater::new(6, window, reset);
        let stream = encode(&messages, &mut deflater);
        let (received, end) = receive(&runtime(), stream, sizes, 1 << 20, Some(reset));
        prop_assert_eq!(end, End::Gone);
        let mut expected = Vec::new();
        for message in &messages {
            let kind = if message.text { MessageKind::Text } else { MessageKind::Binary };
            // A ping written after a fragment arrives before the message,
            // unless that fragment is the last.
            let pieces = message.fragments.len() + 1;
            let mut after = Vec::new();
            for (i, ping) in message.pings.iter().enumerate().take(pieces) {
                let ping = Received::Ping(Bytes::copy_from_slice(ping));
                if i + 1 < pieces {
                    expected.push(ping);
                } else {
                    after.push(ping);
                }
            }
            expected.push(Received::Message((kind, Bytes::copy_from_slice(&message.payload))));
            expected.extend(after);
        }
        prop_assert_eq!(received, expected);
    }
}

// ---------------------------------------------------------------------------
// permessage-deflate
// ---------------------------------------------------------------------------

/// Pieces of `Sec-WebSocket-Extensions` values, glued at random.
const EXTENSION_TOKENS: [&str; 22] = [
    "permessage-deflate",
    "x-webkit-deflate-frame",
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
    "=",
    "\"",
    ";",
    ",",
    " ",
    "\t",
    "8",
    "9",
    "12",
    "15",
    "16",
    "0",
    "010",
    "-1",
    "99999999999999999999",
    "PerMessage-Deflate",
];

fn extension_value() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        6 => select(EXTENSION_TOKENS.to_vec()).prop_map(|t| t.as_bytes().to_vec()),
        1 => vec(any::<u8>(), 1..4),
    ];
    vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

fn compression_settings() -> impl Strategy<Value = Compression> {
    (
        any::<bool>(),
        window_bits::MIN..=window_bits::MAX,
        window_bits::MIN..=window_bits::MAX,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(shared, server, client, server_reset, client_reset)| Compression {
                mode: if shared {
                    CompressionMode::Shared
                } else {
                    CompressionMode::Dedicated
                },
                server_max_window_bits: server,
                client_max_window_bits: client,
                server_no_context_takeover: server_reset,
                client_no_context_takeover: client_reset,
                ..Compression::default()
            },
        )
}

fn extension_headers(values: &[Vec<u8>]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for value in values {
        // Bytes no client could send in a header are not the point here.
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(hyper::header::SEC_WEBSOCKET_EXTENSIONS, value);
        }
    }
    headers
}

/// Compressed data to corrupt: real messages of several windows.
fn deflate_seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![
        vec![0x00],
        vec![0x01, 0x02, 0x00, 0xFD, 0xFF, b'h', b'i'],
        vec![0xFF; 8],
    ];
    for window in [9, 12, 15] {
        let mut deflater = Deflater::new(9, window, false);
        for text in [&b"hello hello hello hello"[..], &[0; 70_000], b""] {
            seeds.push(deflater.compress(text).to_vec());
        }
    }
    seeds
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn negotiation_agrees_within_the_settings_or_declines(
        values in vec(extension_value(), 0..3),
        settings in compression_settings(),
    ) {
        let headers = extension_headers(&values);
        let Some(agreement) = negotiate(&headers, &settings) else {
            return Ok(());
        };
        let response = agreement.response();
        prop_assert!(HeaderValue::from_str(&response).is_ok(), "{response}");
        prop_assert!(
            (window_bits::MIN..=settings.server_max_window_bits)
                .contains(&agreement.server_max_window_bits),
            "{response}"
        );
        if let Some(bits) = agreement.client_max_window_bits {
            prop_assert!((window_bits::MIN..=settings.client_max_window_bits).contains(&bits));
        }
        prop_assert!(agreement.server_no_context_takeover >= settings.server_no_context_takeover);
        prop_assert!(agreement.client_no_context_takeover >= settings.client_no_context_takeover);
        if settings.mode == CompressionMode::Shared {
            prop_assert!(agreement.server_no_context_takeover);
        }
        // The answer, offered back, is agreed as it stands.
        let again = negotiate(&extension_headers(&[response.into_bytes()]), &settings);
        prop_assert_eq!(again, Some(agreement));
    }

    #[test]
    fn the_inflater_never_passes_its_limit(
        data in prop_oneof![mutated(deflate_seeds()), vec(any::<u8>(), 0..400)],
        pieces in read_sizes(),
        limit in prop_oneof![0..100usize, 0..5000usize, Just(1 << 20)],
        reset in any::<bool>(),
    ) {
        let mut inflater = Inflater::new(reset);
        // Twice: a second message follows whatever the first left behind.
        for _ in 0..2 {
            let mut out = Vec::new();
            let mut result = Ok(());
            let (mut at, mut turn) = (0, 0);
            while at < data.len() && result.is_ok() {
                let end = (at + pieces[turn % pieces.len()]).min(data.len());
                turn += 1;
                result = inflater.inflate_part(&data[at..end], &mut out, limit);
                at = end;
            }
            if result.is_ok() {
                result = inflater.finish(&mut out, limit);
            }
            if result.is_ok() {
                prop_assert!(out.len() <= limit);
            }
        }
    }

    #[test]
    fn compressed_messages_inflate_exactly_up_to_the_limit(
        data in prop_oneof![
            vec(any::<u8>(), 0..3000),
            vec(select(vec![0u8, 1, b'x']), 0..20_000),
        ],
        level in 0..=9u32,
        window in window_bits::MIN..=window_bits::MAX,
        pieces in read_sizes(),
        limit in 0..25_000usize,
    ) {
        let compressed = Deflater::new(level, window, true).compress(&data);
        let mut inflater = Inflater::new(true);
        let mut out = Vec::new();
        let mut result = Ok(());
        let (mut at, mut turn) = (0, 0);
        while at < compressed.len() && result.is_ok() {
            let end = (at + pieces[turn % pieces.len()]).min(compressed.len());
            turn += 1;
            result = inflater.inflate_part(&compressed[at..end], &mut out, limit);
            at = end;
        }
        let result = result.and_then(|()| inflater.finish(&mut out, limit));
        if data.len() <= limit {
            prop_assert_eq!(result, Ok(()));
            prop_assert_eq!(out, data);
        } else {
            prop_assert_eq!(result, Err(crate::ws::deflate::codec::InflateError::TooBig));
        }
    }
}

// ---------------------------------------------------------------------------
// The handshake
// ---------------------------------------------------------------------------

/// Header names an upgrade is judged by, and a few it is not.
const HEADER_NAMES: [&str; 11] = [
    "upgrade",
    "connection",
    "sec-websocket-version",
    "sec-websocket-key",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "content-length",
    "transfer-encoding",
    "origin",
    "host",
    "x-forwarded-for",
];

/// Values that pass some check, to be mixed with noise.
const HEADER_VALUES: [&str; 14] = [
    "websocket",
    "WebSocket, h2c",
    "Upgrade",
    "keep-alive, upgrade",
    "13",
    "8",
    "dGhlIHNhbXBsZSBub25jZQ==",
    "dGhlIHNhbXBsZSBub25jZQ=",
    "chat.v1, chat.v2",
    "0",
    "5",
    "chunked",
    "https://example.com",
    "",
];

fn header() -> impl Strategy<Value = (String, Vec<u8>)> {
    let name = prop_oneof![
        4 => select(HEADER_NAMES.to_vec()).prop_map(str::to_owned),
        1 => "[a-z-]{1,12}",
    ];
    let value = prop_oneof![
        3 => select(HEADER_VALUES.to_vec()).prop_map(|v| v.as_bytes().to_vec()),
        1 => vec(any::<u8>(), 0..40),
    ];
    (name, value)
}

fn request_headers(pairs: &[(String, Vec<u8>)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    headers
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn the_upgrade_checks_judge_any_request(
        method in select(vec![Method::GET, Method::POST, Method::HEAD, Method::CONNECT]),
        version in select(vec![Version::HTTP_10, Version::HTTP_11, Version::HTTP_2]),
        pairs in vec(header(), 0..10),
        accepted in vec(select(vec!["chat.v1", "chat.v2", "mqtt"]), 0..3),
    ) {
        let headers = request_headers(&pairs);
        if check_upgrade(&method, version, &headers).is_ok() {
            prop_assert_eq!(&method, &Method::GET);
            prop_assert_eq!(version, Version::HTTP_11);
            let key = headers.get(hyper::header::SEC_WEBSOCKET_KEY);
            prop_assert_eq!(key.map(|key| key.len()), Some(24));
        }
        let accepted: Vec<String> = accepted.into_iter().map(str::to_owned).collect();
        if let Some(chosen) = select_subprotocol(&headers, &accepted) {
            prop_assert!(accepted.iter().any(|name| name == chosen));
        }
    }

    #[test]
    fn paths_rooms_and_origins_parse_or_refuse(
        pattern in "(/([a-z.]{0,3}|\\{room\\}|[ -~]{0,3})){0,3}",
        path in "(/([a-z.%]{0,4}|[ -~]{0,4})){0,4}",
        origin_pattern in "[a-z]{1,5}://(\\*\\.)?[a-z.:*0-9]{0,12}",
        origin in vec(any::<u8>(), 0..30),
    ) {
        if let Ok(pattern) = PathPattern::parse(&pattern) {
            prop_assert!(PathPattern::parse(&pattern.to_string()).is_ok());
            if let Some(Some(room)) = pattern.matches(&path) {
                prop_assert!(!room.contains('/'));
                if is_valid_room_name(room) {
                    prop_assert!(!room.starts_with('.') && !room.is_empty() && room.len() <= 64);
                }
            }
        }
        if let Ok(allowed) = OriginPattern::parse(&origin_pattern) {
            let policy = OriginPolicy::Only { patterns: vec![allowed], allow_missing: false };
            let _ = policy.allows(Some(&origin));
            prop_assert!(!policy.allows(None));
        }
    }
}

// ---------------------------------------------------------------------------
// The configuration
// ---------------------------------------------------------------------------

/// Configurations to mutate: the example, and a small one with every table.
fn config_seeds() -> Vec<Vec<u8>> {
    vec![
        include_bytes!("../config.example.toml").to_vec(),
        br#"
[server]
listen = ["127.0.0.1:0"]
plain = ["127.0.0.1:0"]
trusted_proxies = ["10.0.0.0/8"]

[limits]
max_payload = "16KiB"
message_rate = { per_second = 10, burst = 20, on_exceed = "close" }

[compression]
level = 3
server_max_window_bits = 12

[[channel]]
name = "chat"
path = "/chat/{room}"
kind = "room"
origins = ["https://*.example.com"]
[channel.limits]
send_buffer = "256KiB"
"#
        .to_vec(),
    ]
}

/// A line-level edit: the kind of change a person makes to a config file.
#[derive(Debug, Clone)]
enum LineEdit {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
}

fn mutated_config() -> impl Strategy<Value = String> {
    let line_edit = prop_oneof![
        any::<usize>().prop_map(LineEdit::Delete),
        any::<usize>().prop_map(LineEdit::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| LineEdit::Swap(a, b)),
    ];
    (mutated(config_seeds()), vec(line_edit, 0..4)).prop_map(|(bytes, edits)| {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let mut lines: Vec<&str> = text.lines().collect();
        for edit in edits {
            if lines.is_empty() {
                break;
            }
            let len = lines.len();
            match edit {
                LineEdit::Delete(at) => {
                    lines.remove(at % len);
                }
                LineEdit::Duplicate(at) => lines.insert(at % len, lines[at % len]),
                LineEdit::Swap(a, b) => lines.swap(a % len, b % len),
            }
        }
        lines.join("\n")
    })
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn any_config_document_parses_or_is_refused_with_an_error(text in mutated_config()) {
        match crate::Config::from_toml_str(&text) {
            Ok(config) => {
                let printed = config.to_toml_string();
                let _ = crate::Config::from_toml_str(&printed);
            }
            Err(error) => {
                prop_assert!(!error.to_string().is_empty());
            }
        }
    }
}
