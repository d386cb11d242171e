//! Small and odd `max_payload` values against compressed, fragmented and
//! empty messages: every message that fits is echoed intact, every one that
//! does not is closed 1009, and no session panics (a panicking session would
//! drop its connection without a close frame, and the hook installed here
//! records every panic raised in the library's own source).

mod common;

use std::sync::Mutex;

use common::{deflate::Deflater, *};
use tokio::{io::AsyncWriteExt, net::TcpStream};

/// The sweep: tiny limits, the edges of the 7-bit and 16-bit length forms
/// (125/126/127), deflate's smallest output buffers (62/63/64/65), and a
/// roomy one.
const LIMITS: [usize; 12] = [1, 2, 3, 7, 62, 63, 64, 65, 125, 126, 127, 1000];

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;

/// One echo channel per limit, at `/p{limit}`. The server never compresses
/// its echoes (the threshold is above every limit), so they read as sent.
fn config() -> String {
    let mut config = String::from(
        r#"
[limits]
handshake_rate = { per_second = 10000, burst = 10000 }
message_rate = { per_second = 10000, burst = 10000 }
close_timeout = "1s"
"#,
    );
    for limit in LIMITS {
        config.push_str(&format!(
            r#"
[[channel]]
name = "p{limit}"
path = "/p{limit}"
kind = "echo"
compression = {{ mode = "dedicated", threshold = "1MiB" }}
[channel.limits]
max_payload = "{limit}B"
"#
        ));
    }
    config
}

/// Panics raised in the library's source (`src/...`), by message.
static LIBRARY_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records library panics, then lets the default hook print them.
fn watch_library_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info
            .location()
            .is_some_and(|l| l.file().starts_with("src/"))
        {
            LIBRARY_PANICS.lock().unwrap().push(info.to_string());
        }
        default(info);
    }));
}

/// What the client sends: one message as frames, and what it expects back.
struct Case {
    name: String,
    frames: Vec<u8>,
    expect: Expect,
}

enum Expect {
    /// The message comes back intact: this opcode and payload.
    Echo(u8, Vec<u8>),
    /// The server closes with this code.
    Close(u16),
}

/// Splits `data` into `parts` frames of the message: the first carries the
/// opcode (and RSV1 if compressed), the rest are continuations; the last
/// has FIN. Parts may be empty.
fn fragments(opcode: u8, compressed: bool, data: &[u8], parts: usize) -> Vec<u8> {
    let mut frames = Vec::new();
    let step = data.len().div_ceil(parts).max(1);
    let mut chunks: Vec<&[u8]> = data.chunks(step).collect();
    chunks.resize(parts, &[]);
    for (i, chunk) in chunks.iter().enumerate() {
        let mut first = if i == 0 { opcode } else { OP_CONTINUATION };
        if i == 0 && compressed {
            first |= RSV1;
        }
        if i == parts - 1 {
            first |= FIN;
        }
        frames.extend(client_frame(first, chunk.len() as u64, chunk));
    }
    frames
}

fn compress(data: &[u8]) -> Vec<u8> {
    Deflater::new(15, true).compress(data)
}

/// Text of `len` ASCII bytes that deflate shrinks.
fn text(len: usize) -> Vec<u8> {
    b"abc".iter().copied().cycle().take(len).collect()
}

fn cases(limit: usize) -> Vec<Case> {
    let echo = |name: &str, frames: Vec<u8>, opcode: u8, payload: Vec<u8>| Case {
        name: name.to_owned(),
        frames,
        expect: Expect::Echo(opcode, payload),
    };
    let too_big = |name: &str, frames: Vec<u8>| Case {
        name: name.to_owned(),
        frames,
        expect: Expect::Close(1009),
    };
    let fits = text(limit);
    let over = text(limit + 1);
    let zeros = vec![0u8; 64 * 1024];
    vec![
        echo("empty", fragments(OP_TEXT, false, b"", 1), OP_TEXT, vec![]),
        echo(
            "empty, compressed",
            fragments(OP_BINARY, true, &compress(b""), 1),
            OP_BINARY,
            vec![],
        ),
        echo(
            "empty, compressed, in three fragments",
            fragments(OP_TEXT, true, &compress(b""), 3),
            OP_TEXT,
            vec![],
        ),
        echo(
            "max_payload bytes",
            fragments(OP_BINARY, false, &fits, 1),
            OP_BINARY,
            fits.clone(),
        ),
        echo(
            "max_payload bytes in three fragments",
            fragments(OP_TEXT, false, &fits, 3),
            OP_TEXT,
            fits.clone(),
        ),
        echo(
            "max_payload bytes, compressed",
            fragments(OP_TEXT, true, &compress(&fits), 1),
            OP_TEXT,
            fits.clone(),
        ),
        echo(
            "max_payload bytes, compressed, in three fragments",
            fragments(OP_BINARY, true, &compress(&fits), 3),
            OP_BINARY,
            fits.clone(),
        ),
        too_big("one byte over", fragments(OP_BINARY, false, &over, 1)),
        too_big(
            "one byte over in three fragments",
            fragments(OP_TEXT, false, &over, 3),
        ),
        too_big(
            "one byte over, compressed",
            fragments(OP_TEXT, true, &compress(&over), 1),
        ),
        too_big(
            "one byte over, compressed, in three fragments",
            fragments(OP_BINARY, true, &compress(&over), 3),
        ),
        too_big(
            "64 KiB of zeros, compressed",
            fragments(OP_BINARY, true, &compress(&zeros), 1),
        ),
    ]
}

/// Runs one case on a fresh connection; panics with the case's name.
async fn run(server: &TestServer, limit: usize, case: &Case) {
    let context = format!("max_payload {limit}, {}", case.name);
    let mut stream = TcpStream::connect(server.ws).await.unwrap();
    assert_eq!(
        upgrade_status(
            &mut stream,
            &format!("/p{limit}"),
            "Sec-WebSocket-Extensions: permessage-deflate\r\n"
        )
        .await,
        101,
        "{context}: upgrade"
    );
    match &case.expect {
        Expect::Echo(opcode, payload) => {
            // Twice: the session goes on after the first, with its context.
            for round in 0..2 {
                stream.write_all(&case.frames).await.unwrap();
                let echo = read_server_frame(&mut stream).await;
                assert_eq!(
                    echo,
                    Some((FIN | opcode, payload.clone())),
                    "{context}: echo {round}"
                );
            }
            // A clean close proves the session is alive and well.
            stream
                .write_all(&client_frame(FIN | OP_CLOSE, 2, &1000u16.to_be_bytes()))
                .await
                .unwrap();
            assert_eq!(
                read_close_code(&mut stream).await,
                Some(1000),
                "{context}: close"
            );
        }
        Expect::Close(code) => {
            stream.write_all(&case.frames).await.unwrap();
            assert_eq!(
                read_close_code(&mut stream).await,
                Some(*code),
                "{context}: close code"
            );
        }
    }
    wait_eof(&mut stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_and_odd_max_payloads_close_properly_and_never_panic() {
    watch_library_panics();
    let server = start(&config()).await;
    let mut too_big = 0;
    for limit in LIMITS {
        for case in cases(limit) {
            run(&server, limit, &case).await;
            too_big += u64::from(matches!(case.expect, Expect::Close(1009)));
        }
    }
    assert_eq!(*LIBRARY_PANICS.lock().unwrap(), Vec::<String>::new());
    let stats = server.handle.stats();
    assert_eq!(stats.enforced["too_big"], too_big);
    assert_eq!(stats.enforced["protocol"], 0);
}
