//! permessage-deflate (RFC 7692) against peers nobody here wrote, and against
//! a raw client written in this file.
//!
//! The peers live in `tests/peers/` and are installed by
//! `tests/peers/install.sh` (which `.ci/run` calls): Python's `websockets`,
//! Node's `ws`, and Debian's headless Chromium driven by playwright-core.
//! Each peer script exits 0 only when everything it sent came back intact and
//! prints what it checked; the tests here assert the exit status and the
//! negotiated `Sec-WebSocket-Extensions`. A missing peer fails the test under
//! CI (`CI` set) and is skipped with a loud note elsewhere.
//!
//! The raw client (TCP, a hand-written upgrade, frames written and read by
//! hand, deflate with flate2) covers what no library client lets a test do:
//! counting shared-mode compressions, decompression bombs, corrupt data,
//! misplaced RSV1 bits, context takeover on the wire, and a property test that
//! writes random frame sequences in random-sized chunks.

mod common;

use std::{
    io::Read,
    path::Path,
    process::{Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use common::{
    deflate::{Deflater, Inflater, TRAILER, deflate_sync, inflate_all},
    peers::{chromium, node_ws, peers_dir, python},
    *,
};
use flate2::{Compress, Compression, Decompress};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use wsedge::Message as Outgoing;

/// An echo channel compressing per connection, a broadcast channel
/// compressing once per message (clients may publish), the same broadcast
/// compressing per recipient, and an echo channel whose server imposes
/// smaller windows and no client context takeover.
const CONFIG: &str = r#"
[limits]
max_payload = "1MiB"
send_buffer = "4MiB"
handshake_rate = { per_second = 1000, burst = 1000 }
message_rate = { per_second = 100000, burst = 100000 }

[[channel]]
name = "echo"
path = "/echo"
kind = "echo"
compression = { mode = "dedicated" }

[[channel]]
name = "news"
path = "/news"
kind = "broadcast"
publish = "clients"
compression = { mode = "shared" }

[[channel]]
name = "dnews"
path = "/dnews"
kind = "broadcast"
publish = "clients"
compression = { mode = "dedicated" }

[[channel]]
name = "narrow"
path = "/narrow"
kind = "echo"
compression = { mode = "dedicated", server_max_window_bits = 11, client_max_window_bits = 10, client_no_context_takeover = true }
"#;

/// The default `compression.threshold`: smaller messages go out uncompressed.
const THRESHOLD: usize = 256;

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

// ---------------------------------------------------------------------------
// External peers
// ---------------------------------------------------------------------------

/// What a peer process printed and how it ended.
struct PeerRun {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl PeerRun {
    /// The rest of the first line starting with `prefix`.
    fn line(&self, prefix: &str) -> Option<&str> {
        self.stdout
            .lines()
            .find_map(|line| line.strip_prefix(prefix))
    }

    /// The line starting with `prefix`, which must be there.
    fn expect_line(&self, prefix: &str) -> &str {
        self.line(prefix).unwrap_or_else(|| {
            panic!(
                "no line starting with {prefix:?}\n--- stdout\n{}\n--- stderr\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Compressed wire size the peer reported for the message labelled `label`.
    fn wire_size(&self, label: &str) -> usize {
        let tag = format!("[{label}]");
        let line = self
            .stdout
            .lines()
            .find(|line| line.contains(&tag))
            .unwrap_or_else(|| panic!("no line for {label}:\n{}", self.stdout));
        let size = line
            .split("yes (")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("{label} was not compressed by the server: {line}"));
        size.parse().unwrap()
    }
}

/// Runs a peer from `tests/peers` in its own process group, killing the group
/// after `timeout`, and asserts that it exited 0.
async fn run_peer(program: &Path, args: &[String], timeout: Duration) -> PeerRun {
    let program = program.to_owned();
    let args = args.to_vec();
    let shown = format!("{} {}", program.display(), args.join(" "));
    let started = Instant::now();
    let run = tokio::task::spawn_blocking(move || run_blocking(&program, &args, timeout))
        .await
        .expect("the peer runner does not panic");
    let run = run.unwrap_or_else(|(stdout, stderr)| {
        panic!("{shown} did not finish within {timeout:?}; killed\n--- stdout\n{stdout}\n--- stderr\n{stderr}")
    });
    println!(
        "$ {shown}  ({:.1} s)\n{}{}",
        started.elapsed().as_secs_f64(),
        run.stdout,
        run.stderr
    );
    assert!(
        run.status.success(),
        "{shown} failed with {}\n--- stdout\n{}\n--- stderr\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
    run
}

/// The blocking half of [`run_peer`]: `Err` with the output so far on a timeout.
fn run_blocking(
    program: &Path,
    args: &[String],
    timeout: Duration,
) -> Result<PeerRun, (String, String)> {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(program)
        .args(args)
        .current_dir(peers_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so that a timeout also ends what it started (Chromium).
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    // Read both pipes while the peer runs, so that neither fills up.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waitpid") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if status.is_none() {
        // The child is not reaped yet, so its group id is still ours: end
        // the whole group (node and the Chromium it started).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = child.kill();
        let _ = child.wait();
    }
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    match status {
        Some(status) => Ok(PeerRun {
            status,
            stdout,
            stderr,
        }),
        None => Err((stdout, stderr)),
    }
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

#[test]
fn a_hung_peer_and_its_children_are_killed() {
    // The background sleep keeps the pipes open: only killing the whole
    // group lets the readers finish.
    let started = Instant::now();
    let run = run_blocking(
        Path::new("sh"),
        &strings(&["-c", "echo started; sleep 30 & sleep 30"]),
        Duration::from_millis(300),
    );
    let Err((stdout, _)) = run else {
        panic!("a peer that sleeps 30 s finished within 300 ms")
    };
    assert_eq!(stdout, "started\n");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// The test certificate as a PEM file, for peers that verify it.
fn write_pem(server: &TestServer, dir: &tempfile::TempDir) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let der: &[u8] = server.cert.as_ref();
    let mut base64 = String::new();
    for chunk in der.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                base64.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                base64.push('=');
            }
        }
    }
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in base64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let path = dir.path().join("cert.pem");
    std::fs::write(&path, pem).unwrap();
    path.display().to_string()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

const PEER_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `python_client.py` with `args` after the URL.
async fn python_client(python: &Path, url: &str, args: &[&str]) -> PeerRun {
    let threshold = THRESHOLD.to_string();
    let mut all = strings(&["python_client.py", url, "--threshold", &threshold]);
    all.extend(strings(args));
    run_peer(python, &all, PEER_TIMEOUT).await
}

#[tokio::test]
async fn python_default_offer_round_trips_over_ws_and_wss() {
    let Some(python) = python() else { return };
    let server = start(CONFIG).await;
    let dir = tempfile::tempdir().unwrap();
    let cafile = write_pem(&server, &dir);
    let plain = format!("ws://{}/echo", server.ws);
    let secure = format!("wss://localhost:{}/echo", server.wss.port());
    for run in [
        python_client(&python, &plain, &[]).await,
        python_client(&python, &secure, &["--cafile", &cafile]).await,
    ] {
        assert_eq!(
            run.expect_line("client offer: "),
            "permessage-deflate; client_max_window_bits"
        );
        assert_eq!(run.expect_line("client extensions: "), "permessage-deflate");
        // The server keeps its context: a repeat costs a fraction of the first.
        let (first, second) = (
            run.wire_size("2 KiB text, 1st time"),
            run.wire_size("2 KiB text, 2nd time"),
        );
        assert!(second * 4 < first, "2nd {second} bytes vs 1st {first}");
    }
}

/// The suite (64 KiB messages among them: several TLS records each way)
/// over each TLS version the server offers, negotiated by OpenSSL.
#[tokio::test]
async fn python_round_trips_over_tls_1_2_and_1_3() {
    let Some(python) = python() else { return };
    let server = start(CONFIG).await;
    let dir = tempfile::tempdir().unwrap();
    let cafile = write_pem(&server, &dir);
    let secure = format!("wss://localhost:{}/echo", server.wss.port());
    for (version, named) in [("1.2", "TLSv1.2"), ("1.3", "TLSv1.3")] {
        let run = python_client(
            &python,
            &secure,
            &["--cafile", &cafile, "--tls-version", version],
        )
        .await;
        assert!(
            run.expect_line("client tls: ").starts_with(named),
            "TLS {version}: {}",
            run.stdout
        );
        assert_eq!(run.expect_line("client extensions: "), "permessage-deflate");
    }
}

#[tokio::test]
async fn python_client_max_window_bits_9_to_15() {
    let Some(python) = python() else { return };
    let server = start(CONFIG).await;
    let url = format!("ws://{}/echo", server.ws);
    for bits in 9..=15 {
        let bits = bits.to_string();
        let run = python_client(
            &python,
            &url,
            &["--offer", "custom", "--client-max-window-bits", &bits],
        )
        .await;
        assert_eq!(
            run.expect_line("client offer: "),
            format!("permessage-deflate; client_max_window_bits={bits}")
        );
        // The server's own limit is 15: it leaves the client's choice alone.
        assert_eq!(run.expect_line("client extensions: "), "permessage-deflate");
    }
}

#[tokio::test]
async fn python_server_max_window_bits_9_to_15() {
    let Some(python) = python() else { return };
    let server = start(CONFIG).await;
    let url = format!("ws://{}/echo", server.ws);
    for bits in 9..=15 {
        let bits = bits.to_string();
        let run = python_client(
            &python,
            &url,
            &["--offer", "custom", "--server-max-window-bits", &bits],
        )
        .await;
        assert_eq!(
            run.expect_line("client extensions: "),
            format!("permessage-deflate; server_max_window_bits={bits}")
        );
    }
}

#[tokio::test]
async fn python_no_context_takeover_either_side() {
    let Some(python) = python() else { return };
    let server = start(CONFIG).await;
    let url = format!("ws://{}/echo", server.ws);

    let run = python_client(
        &python,
        &url,
        &["--offer", "custom", "--server-no-context-takeover"],
    )
    .await;
    assert_eq!(
        run.expect_line("client extensions: "),
        "permessage-deflate; server_no_context_takeover"
    );
    // A server that resets per message compresses a repeat to the same size.
    let first = run.wire_size("2 KiB text, 1st time");
    assert_eq!(run.wire_size("2 KiB text, 2nd time"), first);
    assert_eq!(run.wire_size("2 KiB text, 3rd time"), first);

    let run = python_client(
        &python,
        &url,
        &["--offer", "custom", "--client-no-context-takeover"],
    )
    .await;
    assert_eq!(
        run.expect_line("client extensions: "),
        "permessage-deflate; client_no_context_takeover"
    );
    let (first, second) = (
        run.wire_size("2 KiB text, 1st time"),
        run.wire_size("2 KiB text, 2nd time"),
    );
    assert!(second * 4 < first, "the server still keeps its own context");

    let run = python_client(
        &python,
        &url,
        &[
            "--offer",
            "custom",
            "--server-no-context-takeover",
            "--client-no-context-takeover",
            "--client-max-window-bits",
            "9",
            "--server-max-window-bits",
            "10",
        ],
    )
    .await;
    assert_eq!(
        run.expect_line("client extensions: "),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"
    );
}

#[tokio::test]
async fn python_offer_the_server_cannot_honour_is_declined() {
    let Some(python) = python() else { return };
    let server = start(CONFIG).await;
    // zlib cannot compress with a 256-byte window: no compression, no failure.
    let run = python_client(
        &python,
        &format!("ws://{}/echo", server.ws),
        &["--offer", "custom", "--server-max-window-bits", "8"],
    )
    .await;
    assert_eq!(
        run.expect_line("client offer: "),
        "permessage-deflate; server_max_window_bits=8; client_max_window_bits"
    );
    assert_eq!(run.expect_line("client extensions: "), "(none)");
    assert_eq!(server.handle.stats().compressions, 0);
}

#[tokio::test]
async fn python_honours_limits_the_server_imposes() {
    let Some(python) = python() else { return };
    let server = start(CONFIG).await;
    let run = python_client(&python, &format!("ws://{}/narrow", server.ws), &[]).await;
    assert_eq!(
        run.expect_line("client extensions: "),
        "permessage-deflate; client_no_context_takeover; server_max_window_bits=11; client_max_window_bits=10"
    );
}

#[tokio::test]
async fn python_without_compression_gets_plain_frames() {
    let Some(python) = python() else { return };
    let server = start(CONFIG).await;
    let run = python_client(
        &python,
        &format!("ws://{}/echo", server.ws),
        &["--offer", "none"],
    )
    .await;
    assert_eq!(run.expect_line("client offer: "), "(none)");
    assert_eq!(run.expect_line("client extensions: "), "(none)");
    assert!(!run.stdout.contains("compressed by server: yes"));
    assert_eq!(server.handle.stats().compressions, 0);
}

#[tokio::test]
async fn python_broadcast_delivers_compressed_once_per_message() {
    let Some(python) = python() else { return };
    let server = start(CONFIG).await;
    let before = server.handle.stats();
    let run = python_client(
        &python,
        &format!("ws://{}/news", server.ws),
        &["--scenario", "broadcast", "--plain-receiver"],
    )
    .await;
    assert_eq!(
        run.expect_line("receiver extensions: "),
        "permessage-deflate; server_no_context_takeover"
    );
    assert_eq!(run.expect_line("plain receiver extensions: "), "(none)");
    let compressible: u64 = run
        .expect_line("published ")
        .split(", ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(compressible >= 5);
    let after = server.handle.stats();
    assert_eq!(
        after.compressions - before.compressions,
        compressible,
        "one compression per message of at least {THRESHOLD} bytes, whatever the number of recipients"
    );
    assert!(
        after.compressed_to - before.compressed_to < after.compressed_from - before.compressed_from
    );
}

#[tokio::test]
async fn python_empty_messages_and_fragments() {
    let Some(python) = python() else { return };
    let server = start(CONFIG).await;
    python_client(
        &python,
        &format!("ws://{}/echo", server.ws),
        &["--with-empty"],
    )
    .await;
}

#[tokio::test]
async fn node_ws_per_message_deflate_round_trips() {
    let Some(node) = node_ws() else { return };
    let server = start(CONFIG).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write_pem(&server, &dir);
    let threshold = THRESHOLD.to_string();
    let echo = |url: String, extra: &[&str]| {
        let mut args = strings(&["node_client.mjs", &url, "--threshold", &threshold]);
        args.extend(strings(extra));
        args
    };
    for args in [
        echo(format!("ws://{}/echo", server.ws), &[]),
        echo(
            format!("wss://localhost:{}/echo", server.wss.port()),
            &["--ca", &ca],
        ),
    ] {
        let run = run_peer(&node, &args, PEER_TIMEOUT).await;
        assert_eq!(
            run.expect_line("client offer: "),
            "permessage-deflate; client_max_window_bits"
        );
        assert_eq!(run.expect_line("client extensions: "), "permessage-deflate");
        assert_eq!(run.expect_line("ws.extensions: "), "permessage-deflate");
        assert_eq!(run.expect_line("closed: "), "1000");
    }
    let run = run_peer(
        &node,
        &echo(format!("ws://{}/narrow", server.ws), &[]),
        PEER_TIMEOUT,
    )
    .await;
    assert_eq!(
        run.expect_line("client extensions: "),
        "permessage-deflate; client_no_context_takeover; server_max_window_bits=11; client_max_window_bits=10"
    );
}

#[tokio::test]
async fn node_ws_empty_messages() {
    let Some(node) = node_ws() else { return };
    let server = start(CONFIG).await;
    run_peer(
        &node,
        &strings(&[
            "node_client.mjs",
            &format!("ws://{}/echo", server.ws),
            "--with-empty",
        ]),
        PEER_TIMEOUT,
    )
    .await;
}

#[tokio::test]
async fn chromium_echoes_text_and_binary_over_wss() {
    let Some(node) = chromium() else { return };
    let server = start(CONFIG).await;
    let url = format!("wss://127.0.0.1:{}/echo", server.wss.port());
    let run = run_peer(
        &node,
        &strings(&["chromium_echo.mjs", &url]),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(run.expect_line("handshake: "), "HTTP 101");
    assert_eq!(
        run.expect_line("client offer: "),
        "permessage-deflate; client_max_window_bits"
    );
    assert_eq!(run.expect_line("client extensions: "), "permessage-deflate");
    assert_eq!(run.expect_line("ws.extensions: "), "permessage-deflate");
    assert!(run.expect_line("text: ").ends_with("intact: true"));
    assert!(run.expect_line("binary: ").ends_with("intact: true"));
    // Both echoes were compressed by this connection's own compressor.
    assert_eq!(server.handle.stats().compressions, 2);
}

// ---------------------------------------------------------------------------
// A raw client
// ---------------------------------------------------------------------------

/// What the server agreed to, parsed from its `Sec-WebSocket-Extensions`.
#[derive(Debug, Clone, Copy, Default)]
struct Agreed {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    client_max_window_bits: Option<u8>,
}

impl Agreed {
    fn parse(header: &str) -> Self {
        let mut parts = header.split(';').map(str::trim);
        assert_eq!(parts.next(), Some("permessage-deflate"), "{header}");
        let mut agreed = Self::default();
        for part in parts {
            match part.split_once('=') {
                None if part == "server_no_context_takeover" => {
                    agreed.server_no_context_takeover = true
                }
                None if part == "client_no_context_takeover" => {
                    agreed.client_no_context_takeover = true
                }
                Some(("server_max_window_bits", bits)) => {
                    agreed.server_max_window_bits = Some(bits.parse().unwrap())
                }
                Some(("client_max_window_bits", bits)) => {
                    agreed.client_max_window_bits = Some(bits.parse().unwrap())
                }
                _ => panic!("unexpected parameter {part:?} in {header:?}"),
            }
        }
        agreed
    }
}

/// One server frame.
#[derive(Debug)]
struct Frame {
    first: u8,
    payload: Vec<u8>,
}

impl Frame {
    fn opcode(&self) -> u8 {
        self.first & 0x0F
    }
}

/// Reads one server frame; `None` at the end of the stream.
async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Option<Frame> {
    let mut head = [0u8; 2];
    reader.read_exact(&mut head).await.ok()?;
    assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
    let len = match head[1] & 0x7F {
        126 => u64::from(reader.read_u16().await.ok()?),
        127 => reader.read_u64().await.ok()?,
        n => u64::from(n),
    };
    let mut payload = vec![0u8; usize::try_from(len).unwrap()];
    reader.read_exact(&mut payload).await.ok()?;
    Some(Frame {
        first: head[0],
        payload,
    })
}

/// A message as received.
#[derive(Debug)]
struct Received {
    opcode: u8,
    /// Inflated if it was compressed.
    payload: Vec<u8>,
    compressed: bool,
    /// Payload bytes on the wire.
    wire_len: usize,
    /// Pong payloads received before it, in order.
    pongs: Vec<Vec<u8>>,
}

/// Reads the next data message, inflating it if RSV1 says so; panics on a
/// close frame, the end of the stream or PATIENCE.
async fn read_message<R: AsyncRead + Unpin>(
    reader: &mut R,
    inflater: Option<&mut Inflater>,
) -> Received {
    let read = async {
        let mut pongs = Vec::new();
        let mut message: Option<(u8, bool, Vec<u8>)> = None;
        loop {
            let frame = read_frame(reader).await.expect("a frame, not the end");
            assert_eq!(frame.first & 0x30, 0, "RSV2 and RSV3 are never set");
            let ends_message = frame.first & FIN != 0 && frame.opcode() & 0x8 == 0;
            match frame.opcode() {
                OP_PONG => pongs.push(frame.payload),
                OP_PING => {}
                OP_CLOSE => panic!(
                    "unexpected close {:?}",
                    String::from_utf8_lossy(&frame.payload)
                ),
                OP_TEXT | OP_BINARY => {
                    assert!(message.is_none(), "a new message inside a fragmented one");
                    message = Some((frame.opcode(), frame.first & RSV1 != 0, frame.payload));
                }
                OP_CONTINUATION => {
                    assert_eq!(frame.first & RSV1, 0, "RSV1 on a continuation frame");
                    message
                        .as_mut()
                        .expect("a continuation inside a message")
                        .2
                        .extend_from_slice(&frame.payload);
                }
                other => panic!("unexpected opcode {other}"),
            }
            if ends_message {
                let (opcode, compressed, payload) = message.take().unwrap();
                return (opcode, compressed, payload, pongs);
            }
        }
    };
    let (opcode, compressed, wire, pongs) = tokio::time::timeout(PATIENCE, read)
        .await
        .expect("a message within PATIENCE");
    let payload = if compressed {
        inflater
            .expect("RSV1 only when permessage-deflate was negotiated")
            .inflate(&wire)
    } else {
        wire.clone()
    };
    Received {
        opcode,
        payload,
        compressed,
        wire_len: wire.len(),
        pongs,
    }
}

/// A raw connection that has completed its upgrade.
struct RawClient {
    stream: TcpStream,
    /// The server's `Sec-WebSocket-Extensions`, if any.
    extensions: Option<String>,
    deflater: Option<Deflater>,
    inflater: Option<Inflater>,
}

impl RawClient {
    /// Upgrades on `path` offering `offer` (a `Sec-WebSocket-Extensions`
    /// value), and sets up deflate as agreed. The client compresses with
    /// `client_window` bits, or what the server imposes.
    async fn connect(server: &TestServer, path: &str, offer: Option<&str>) -> Self {
        Self::connect_with_window(server, path, offer, 15).await
    }

    async fn connect_with_window(
        server: &TestServer,
        path: &str,
        offer: Option<&str>,
        client_window: u8,
    ) -> Self {
        let mut stream = TcpStream::connect(server.ws).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let header = offer.map_or(String::new(), |offer| {
            format!("Sec-WebSocket-Extensions: {offer}\r\n")
        });
        stream
            .write_all(upgrade_request(path, &header).as_bytes())
            .await
            .unwrap();
        // Byte by byte, so that no frame is read with the head.
        let mut head = Vec::new();
        let read_head = async {
            while !head.ends_with(b"\r\n\r\n") {
                head.push(stream.read_u8().await.expect("an upgrade response"));
            }
        };
        tokio::time::timeout(PATIENCE, read_head)
            .await
            .expect("the server answers the upgrade");
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101 "), "upgrade refused: {head}");
        let extensions = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-extensions")
                .then(|| value.trim().to_owned())
        });
        let agreed = extensions.as_deref().map(Agreed::parse);
        Self {
            stream,
            deflater: agreed.map(|a| {
                Deflater::new(
                    a.client_max_window_bits.unwrap_or(15).min(client_window),
                    a.client_no_context_takeover,
                )
            }),
            inflater: agreed.map(|a| {
                Inflater::new(
                    a.server_max_window_bits.unwrap_or(15),
                    a.server_no_context_takeover,
                )
            }),
            extensions,
        }
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Sends one unfragmented message, compressed if `compress`.
    async fn send(&mut self, opcode: u8, payload: &[u8], compress: bool) {
        let frame = if compress {
            let data = self
                .deflater
                .as_mut()
                .expect("deflate agreed")
                .compress(payload);
            client_frame(FIN | RSV1 | opcode, data.len() as u64, &data)
        } else {
            client_frame(FIN | opcode, payload.len() as u64, payload)
        };
        self.send_raw(&frame).await;
    }

    async fn receive(&mut self) -> Received {
        read_message(&mut self.stream, self.inflater.as_mut()).await
    }

    /// Reads to the server's close frame and returns its code and reason.
    async fn close_frame(&mut self) -> (u16, String) {
        let read = async {
            loop {
                let frame = read_frame(&mut self.stream)
                    .await
                    .expect("a close frame before the end");
                if frame.opcode() == OP_CLOSE {
                    let code = u16::from_be_bytes([frame.payload[0], frame.payload[1]]);
                    return (
                        code,
                        String::from_utf8_lossy(&frame.payload[2..]).into_owned(),
                    );
                }
            }
        };
        tokio::time::timeout(PATIENCE, read)
            .await
            .expect("a close frame within PATIENCE")
    }
}

/// Text that deflate likes but that does not repeat itself within 2 KiB.
fn prose(len: usize, seed: u64) -> String {
    const WORDS: [&str; 12] = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
        "juliett", "kilo", "lima",
    ];
    let mut rng = Rng::new(seed);
    let mut text = String::with_capacity(len + 16);
    while text.len() < len {
        text.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
        text.push_str(&rng.below(100).to_string());
        text.push(' ');
    }
    text.truncate(len);
    text
}

/// A fresh connection on /echo still echoes: the server is alive.
async fn assert_alive(server: &TestServer) {
    let mut client = RawClient::connect(server, "/echo", Some("permessage-deflate")).await;
    let text = prose(1000, 1);
    client.send(OP_TEXT, text.as_bytes(), true).await;
    let echo = client.receive().await;
    assert_eq!((echo.opcode, echo.payload), (OP_TEXT, text.into_bytes()));
}

#[tokio::test]
async fn shared_mode_compresses_each_fan_out_message_once() {
    let server = start(CONFIG).await;
    let mut subscribers = Vec::new();
    for _ in 0..20 {
        let client = RawClient::connect(&server, "/news", Some("permessage-deflate")).await;
        assert_eq!(
            client.extensions.as_deref(),
            Some("permessage-deflate; server_no_context_takeover")
        );
        subscribers.push(client);
    }
    let mut plain = RawClient::connect(&server, "/news", None).await;
    assert_eq!(plain.extensions, None);

    let before = server.handle.stats();
    let messages: Vec<Outgoing> = (0..10)
        .map(|i| {
            let text = prose(THRESHOLD + i * 5_000, i as u64);
            if i % 2 == 0 {
                Outgoing::text(text)
            } else {
                Outgoing::binary(text.into_bytes())
            }
        })
        .collect();
    for message in &messages {
        assert_eq!(server.handle.publish("news", None, message.clone()), Ok(21));
    }
    let after = server.handle.stats();
    let total: usize = messages.iter().map(|m| m.payload().len()).sum();
    assert_eq!(
        after.compressions - before.compressions,
        10,
        "one compression per message, whatever the number of subscribers"
    );
    assert_eq!(after.compressed_from - before.compressed_from, total as u64);
    assert!(after.compressed_to - before.compressed_to < total as u64 / 2);

    // Everyone gets every message intact; the compressed bytes are the same
    // for every subscriber, the plain subscriber gets them uncompressed.
    let mut wire_lens: Option<Vec<usize>> = None;
    for client in &mut subscribers {
        let mut lens = Vec::new();
        for message in &messages {
            let received = client.receive().await;
            assert!(received.compressed);
            let opcode = if message.kind() == wsedge::MessageKind::Text {
                OP_TEXT
            } else {
                OP_BINARY
            };
            assert_eq!(received.opcode, opcode);
            assert_eq!(received.payload, message.payload().as_ref());
            lens.push(received.wire_len);
        }
        assert_eq!(*wire_lens.get_or_insert_with(|| lens.clone()), lens);
    }
    for message in &messages {
        let received = plain.receive().await;
        assert!(!received.compressed);
        assert_eq!(received.payload, message.payload().as_ref());
    }

    // Below the threshold nothing is compressed.
    assert_eq!(
        server
            .handle
            .publish("news", None, Outgoing::text("x".repeat(THRESHOLD - 1))),
        Ok(21)
    );
    assert_eq!(server.handle.stats().compressions, after.compressions);
    let small = subscribers[0].receive().await;
    assert!(!small.compressed);
    assert_eq!(small.payload.len(), THRESHOLD - 1);
}

#[tokio::test]
async fn dedicated_mode_compresses_once_per_recipient() {
    let server = start(CONFIG).await;
    let mut subscribers = Vec::new();
    for _ in 0..3 {
        let client = RawClient::connect(&server, "/dnews", Some("permessage-deflate")).await;
        assert_eq!(client.extensions.as_deref(), Some("permessage-deflate"));
        subscribers.push(client);
    }
    let before = server.handle.stats().compressions;
    let text = prose(2_000, 9);
    for _ in 0..2 {
        assert_eq!(
            server
                .handle
                .publish("dnews", None, Outgoing::text(text.clone())),
            Ok(3)
        );
    }
    for client in &mut subscribers {
        let (first, second) = (client.receive().await, client.receive().await);
        assert_eq!(first.payload, text.as_bytes());
        assert_eq!(second.payload, text.as_bytes());
        // Each connection keeps its own context.
        assert!(second.wire_len * 4 < first.wire_len);
    }
    assert_eq!(server.handle.stats().compressions - before, 6);
}

#[tokio::test]
async fn decompression_bomb_closes_1009_and_the_server_lives() {
    let server = start(CONFIG).await;
    // 64 MiB of zeros: 1 MiB compressed once and its blocks (each ending in
    // a sync flush, each referring only to zeros) repeated 64 times is one
    // valid deflate stream, at a fraction of the cost of compressing 64 MiB
    // in a debug build.
    let mut compress = Compress::new_with_window_bits(Compression::new(9), false, 15);
    let mebibyte = deflate_sync(&mut compress, &vec![0u8; 1 << 20]);
    let mut bomb = mebibyte.repeat(64);
    bomb.truncate(bomb.len() - TRAILER.len());
    let inflated = inflate_all(
        &mut Decompress::new_with_window_bits(false, 15),
        &[&bomb[..], &TRAILER].concat(),
    );
    assert!(inflated.len() == 64 << 20 && inflated.iter().all(|&b| b == 0));
    drop(inflated);
    assert!(bomb.len() < 128 * 1024, "{} bytes", bomb.len());

    let mut client = RawClient::connect(&server, "/echo", Some("permessage-deflate")).await;
    let started = Instant::now();
    client
        .send_raw(&client_frame(
            FIN | RSV1 | OP_BINARY,
            bomb.len() as u64,
            &bomb,
        ))
        .await;
    assert_eq!(
        client.close_frame().await,
        (1009, "message too big".to_owned())
    );
    wait_eof(&mut client.stream).await;
    println!(
        "bomb of {} bytes refused in {:?}",
        bomb.len(),
        started.elapsed()
    );
    let stats = server.handle.stats();
    assert_eq!(stats.enforced["too_big"], 1);
    assert_eq!(stats.enforced["protocol"], 0);
    assert_alive(&server).await;
}

#[tokio::test]
async fn corrupt_deflate_data_closes_1007() {
    let server = start(CONFIG).await;
    let mut client = RawClient::connect(&server, "/echo", Some("permessage-deflate")).await;
    // BFINAL set, block type 3: reserved, never valid.
    let garbage = [0xFF, 0xFF, 0xFF, 0x00, 0x12];
    client
        .send_raw(&client_frame(FIN | RSV1 | OP_BINARY, 5, &garbage))
        .await;
    assert_eq!(client.close_frame().await.0, 1007);
    wait_eof(&mut client.stream).await;
    assert_eq!(server.handle.stats().enforced["protocol"], 1);

    // Valid deflate of invalid UTF-8 in a text message: 1007 as well.
    let mut client = RawClient::connect(&server, "/echo", Some("permessage-deflate")).await;
    client.send(OP_TEXT, &[b'a', 0xC3, 0x28, b'b'], true).await;
    assert_eq!(client.close_frame().await.0, 1007);
    assert_eq!(server.handle.stats().enforced["protocol"], 2);
    assert_alive(&server).await;
}

#[tokio::test]
async fn rsv1_on_a_continuation_frame_closes_1002() {
    let server = start(CONFIG).await;
    let mut client = RawClient::connect(&server, "/echo", Some("permessage-deflate")).await;
    let data = client
        .deflater
        .as_mut()
        .unwrap()
        .compress(prose(3000, 2).as_bytes());
    let (head, tail) = data.split_at(data.len() / 2);
    client
        .send_raw(&client_frame(RSV1 | OP_TEXT, head.len() as u64, head))
        .await;
    client
        .send_raw(&client_frame(
            FIN | RSV1 | OP_CONTINUATION,
            tail.len() as u64,
            tail,
        ))
        .await;
    assert_eq!(client.close_frame().await.0, 1002);
    assert_eq!(server.handle.stats().enforced["protocol"], 1);
    assert_alive(&server).await;
}

#[tokio::test]
async fn rsv1_on_a_ping_closes_1002() {
    let server = start(CONFIG).await;
    let mut client = RawClient::connect(&server, "/echo", Some("permessage-deflate")).await;
    client
        .send_raw(&client_frame(FIN | RSV1 | OP_PING, 4, b"ping"))
        .await;
    assert_eq!(client.close_frame().await.0, 1002);
    assert_eq!(server.handle.stats().enforced["protocol"], 1);
    assert_alive(&server).await;
}

#[tokio::test]
async fn rsv1_without_permessage_deflate_closes_1002() {
    let server = start(CONFIG).await;
    let mut client = RawClient::connect(&server, "/echo", None).await;
    assert_eq!(client.extensions, None);
    let mut compress = Compress::new_with_window_bits(Compression::new(6), false, 15);
    let mut data = deflate_sync(&mut compress, b"hello hello hello");
    data.truncate(data.len() - TRAILER.len());
    client
        .send_raw(&client_frame(
            FIN | RSV1 | OP_TEXT,
            data.len() as u64,
            &data,
        ))
        .await;
    assert_eq!(client.close_frame().await.0, 1002);
    assert_alive(&server).await;
}

#[tokio::test]
async fn context_takeover_is_kept_in_dedicated_echo() {
    let server = start(CONFIG).await;
    let mut client = RawClient::connect(&server, "/echo", Some("permessage-deflate")).await;
    assert_eq!(client.extensions.as_deref(), Some("permessage-deflate"));
    let text = prose(2048, 3);
    let deflater = client.deflater.as_mut().unwrap();
    let first = deflater.compress(text.as_bytes());
    let second = deflater.compress(text.as_bytes());
    // Our compressor kept its window: the repeat is a back-reference.
    assert!(
        second.len() * 4 < first.len(),
        "{} vs {}",
        second.len(),
        first.len()
    );
    for data in [&first, &second] {
        client
            .send_raw(&client_frame(FIN | RSV1 | OP_TEXT, data.len() as u64, data))
            .await;
    }
    // The server inflated the second with the first's window, and compressed
    // its echoes the same way.
    let (echo1, echo2) = (client.receive().await, client.receive().await);
    assert_eq!(echo1.payload, text.as_bytes());
    assert_eq!(echo2.payload, text.as_bytes());
    assert!(echo1.compressed && echo2.compressed);
    assert!(
        echo2.wire_len * 4 < echo1.wire_len,
        "server: {} then {}",
        echo1.wire_len,
        echo2.wire_len
    );
}

#[tokio::test]
async fn no_context_takeover_is_reset_as_negotiated() {
    let server = start(CONFIG).await;
    let text = prose(2048, 4);

    // The client resets: each message is compressed alone, the server's
    // echoes still share a window.
    let mut client = RawClient::connect(
        &server,
        "/echo",
        Some("permessage-deflate; client_no_context_takeover"),
    )
    .await;
    assert_eq!(
        client.extensions.as_deref(),
        Some("permessage-deflate; client_no_context_takeover")
    );
    let deflater = client.deflater.as_mut().unwrap();
    let (first, second) = (
        deflater.compress(text.as_bytes()),
        deflater.compress(text.as_bytes()),
    );
    assert_eq!(first, second);
    client.send(OP_TEXT, text.as_bytes(), true).await;
    client.send(OP_TEXT, text.as_bytes(), true).await;
    let (echo1, echo2) = (client.receive().await, client.receive().await);
    assert_eq!(
        (echo1.payload.as_slice(), echo2.payload.as_slice()),
        (text.as_bytes(), text.as_bytes())
    );
    assert!(echo2.wire_len * 4 < echo1.wire_len);

    // The server resets: its echoes are the same size, each inflated alone.
    let mut client = RawClient::connect(
        &server,
        "/echo",
        Some("permessage-deflate; server_no_context_takeover"),
    )
    .await;
    assert_eq!(
        client.extensions.as_deref(),
        Some("permessage-deflate; server_no_context_takeover")
    );
    client.send(OP_TEXT, text.as_bytes(), true).await;
    client.send(OP_TEXT, text.as_bytes(), true).await;
    let (echo1, echo2) = (client.receive().await, client.receive().await);
    assert_eq!(
        (echo1.payload.as_slice(), echo2.payload.as_slice()),
        (text.as_bytes(), text.as_bytes())
    );
    assert!(echo1.compressed && echo2.compressed);
    assert_eq!(echo1.wire_len, echo2.wire_len);

    // The channel asks for client_no_context_takeover itself.
    let client = RawClient::connect(&server, "/narrow", Some("permessage-deflate")).await;
    assert_eq!(
        client.extensions.as_deref(),
        Some("permessage-deflate; client_no_context_takeover; server_max_window_bits=11")
    );
}

#[tokio::test]
async fn an_empty_message_is_echoed_and_the_session_goes_on() {
    let server = start(CONFIG).await;
    for offer in [None, Some("permessage-deflate")] {
        let mut client = RawClient::connect(&server, "/echo", offer).await;
        // One at a time: the empty echo is the last thing the writer has.
        client.send(OP_TEXT, b"", offer.is_some()).await;
        let empty = client.receive().await;
        assert_eq!((empty.opcode, empty.payload.len()), (OP_TEXT, 0));
        client.send(OP_BINARY, b"after", false).await;
        let after = client.receive().await;
        assert_eq!(after.payload, b"after", "{offer:?}");
    }
    // The same through a broadcast that frames per recipient.
    let mut subscriber = RawClient::connect(&server, "/dnews", Some("permessage-deflate")).await;
    for payload in ["", "after"] {
        assert_eq!(
            server
                .handle
                .publish("dnews", None, Outgoing::text(payload)),
            Ok(1)
        );
        assert_eq!(subscriber.receive().await.payload, payload.as_bytes());
    }
}

// ---------------------------------------------------------------------------
// Property test: random frame sequences through the frame reader
// ---------------------------------------------------------------------------

/// xorshift64*: small, deterministic, no crate.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// In `low..=high`.
    fn range(&mut self, low: usize, high: usize) -> usize {
        low + self.below((high - low + 1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A message size: all three header length forms, mostly small enough for a
/// debug build's deflate.
fn random_size(rng: &mut Rng, min: usize) -> usize {
    let size = match rng.below(100) {
        0..=44 => rng.range(0, 125),
        45..=84 => rng.range(126, 8_191),
        85..=94 => rng.range(8_192, 32_767),
        _ => rng.range(65_536, 70_000),
    };
    size.max(min)
}

/// Valid UTF-8 of exactly `len` bytes (1- to 4-byte characters).
fn random_text(rng: &mut Rng, len: usize) -> Vec<u8> {
    const PIECES: [&str; 8] = ["a", "b", "the ", "é", "ü", "✓", "日本", "𝄞"];
    let mut text = String::with_capacity(len + 4);
    while text.len() < len {
        text.push_str(PIECES[rng.below(PIECES.len() as u64) as usize]);
    }
    while text.len() > len {
        text.pop();
    }
    while text.len() < len {
        text.push('z');
    }
    text.into_bytes()
}

fn random_binary(rng: &mut Rng, len: usize) -> Vec<u8> {
    if rng.chance(30) {
        (0..len).map(|_| rng.next() as u8).collect()
    } else {
        // Runs and a small alphabet: compressible, not trivially.
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let byte = b"ACGT\x00\xFF"[rng.below(6) as usize];
            let run = rng.range(1, 12).min(len - out.len());
            out.extend(std::iter::repeat_n(byte, run));
        }
        out
    }
}

/// Splits `payload` into `count` pieces at random points (pieces may be empty).
fn split_randomly(rng: &mut Rng, payload: &[u8], count: usize) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = (1..count).map(|_| rng.range(0, payload.len())).collect();
    cuts.sort_unstable();
    let mut pieces = Vec::with_capacity(count);
    let mut start = 0;
    for cut in cuts.into_iter().chain([payload.len()]) {
        pieces.push(payload[start..cut].to_vec());
        start = cut;
    }
    pieces
}

/// One generated case: the offer, the bytes to write, and what must come back.
struct Case {
    offer: Option<String>,
    client_window: u8,
    /// (opcode, payload) in order.
    messages: Vec<(u8, Vec<u8>)>,
    /// Ping payloads sent after the previous message and before this one
    /// was complete: their pongs arrive before its echo.
    pings_before: Vec<Vec<Vec<u8>>>,
    /// What `encode` wrote: data frames, compressed messages.
    frames: usize,
    compressed: usize,
}

/// Generates case `index` (its offer and messages) and the generator to
/// frame and write it with.
fn generate(index: u64, min_size: usize) -> (Case, Rng) {
    let mut rng = Rng::new(0x5EED_0000 + index);
    let client_window = rng.range(9, 15) as u8;
    let offer = match rng.below(6) {
        0 => None,
        1 | 2 => Some("permessage-deflate".to_owned()),
        3 => Some("permessage-deflate; client_no_context_takeover".to_owned()),
        4 => Some(format!(
            "permessage-deflate; server_no_context_takeover; server_max_window_bits={}",
            rng.range(9, 15)
        )),
        _ => Some(format!(
            "permessage-deflate; client_max_window_bits={client_window}"
        )),
    };
    let count = rng.range(1, 6);
    let messages = (0..count)
        .map(|_| {
            let size = random_size(&mut rng, min_size);
            if rng.chance(50) {
                (OP_TEXT, random_text(&mut rng, size))
            } else {
                (OP_BINARY, random_binary(&mut rng, size))
            }
        })
        .collect();
    (
        Case {
            offer,
            client_window,
            messages,
            pings_before: Vec::new(),
            frames: 0,
            compressed: 0,
        },
        rng,
    )
}

/// Frames every message of `case` (compressing some when `deflater` is
/// given), with pings between fragments and between messages.
fn encode(case: &mut Case, rng: &mut Rng, mut deflater: Option<&mut Deflater>) -> Vec<u8> {
    let mut wire = Vec::new();
    let mut pings = Vec::new();
    for (opcode, payload) in &case.messages {
        let compress = deflater.is_some() && rng.chance(70);
        case.compressed += usize::from(compress);
        let data = match &mut deflater {
            Some(deflater) if compress => deflater.compress(payload),
            _ => payload.clone(),
        };
        let count = rng.range(1, 5);
        let fragments = split_randomly(rng, &data, count);
        let last = fragments.len() - 1;
        for (i, fragment) in fragments.iter().enumerate() {
            let mut first = if i == 0 { *opcode } else { OP_CONTINUATION };
            if i == 0 && compress {
                first |= RSV1;
            }
            if i == last {
                first |= FIN;
            }
            wire.extend(client_frame(first, fragment.len() as u64, fragment));
            case.frames += 1;
            if i != last && rng.chance(30) {
                let ping: Vec<u8> = (0..rng.range(0, 125)).map(|_| rng.next() as u8).collect();
                wire.extend(client_frame(FIN | OP_PING, ping.len() as u64, &ping));
                pings.push(ping);
            }
        }
        case.pings_before.push(std::mem::take(&mut pings));
        if rng.chance(20) {
            let ping = rng.next().to_be_bytes().to_vec();
            wire.extend(client_frame(FIN | OP_PING, 8, &ping));
            pings.push(ping);
        }
    }
    // Pings after the last message are answered before the close.
    case.pings_before.push(pings);
    wire.extend(client_frame(FIN | OP_CLOSE, 2, &1000u16.to_be_bytes()));
    wire
}

/// Runs `cases` generated sequences against the echo channel, one connection
/// each; messages are at least `min_size` bytes.
async fn random_sequences_echo_intact(cases: u64, min_size: usize) {
    let server = start(CONFIG).await;
    let started = Instant::now();
    let (mut messages, mut bytes, mut compressed_echoes) = (0, 0, 0);
    let (mut frames, mut pings, mut compressed_sent) = (0, 0, 0);
    for index in 0..cases {
        let (mut case, mut rng) = generate(index, min_size);
        let mut client = RawClient::connect_with_window(
            &server,
            "/echo",
            case.offer.as_deref(),
            case.client_window,
        )
        .await;
        let wire = encode(&mut case, &mut rng, client.deflater.as_mut());
        let mut inflater = client.inflater.take();
        let (mut reader, mut writer) = client.stream.split();
        let write = async {
            let mut at = 0;
            while at < wire.len() {
                let n = rng.range(1, 4096).min(wire.len() - at);
                writer.write_all(&wire[at..at + n]).await.unwrap();
                at += n;
                // Let the server read this chunk on its own.
                tokio::task::yield_now().await;
            }
        };
        let read = async {
            for (i, (opcode, payload)) in case.messages.iter().enumerate() {
                let echo = read_message(&mut reader, inflater.as_mut()).await;
                let context = || {
                    format!(
                        "case {index} ({:?}), message {i} of {}: {} bytes",
                        case.offer,
                        case.messages.len(),
                        payload.len()
                    )
                };
                assert_eq!(echo.opcode, *opcode, "{}", context());
                assert!(echo.payload == *payload, "{}: payload differs", context());
                assert_eq!(echo.pongs, case.pings_before[i], "{}: pongs", context());
                assert_eq!(
                    echo.compressed,
                    inflater.is_some() && payload.len() >= THRESHOLD,
                    "{}",
                    context()
                );
                compressed_echoes += usize::from(echo.compressed);
            }
            // Then the last pongs and our close, echoed.
            let mut pongs = Vec::new();
            loop {
                let frame = tokio::time::timeout(PATIENCE, read_frame(&mut reader))
                    .await
                    .expect("the close within PATIENCE")
                    .expect("the close before the end");
                match frame.opcode() {
                    OP_PONG => pongs.push(frame.payload),
                    OP_CLOSE => {
                        assert_eq!(frame.payload[..2], 1000u16.to_be_bytes());
                        break;
                    }
                    other => panic!("case {index}: unexpected opcode {other} after the echoes"),
                }
            }
            assert_eq!(&pongs, case.pings_before.last().unwrap());
        };
        tokio::join!(write, read);
        messages += case.messages.len();
        frames += case.frames;
        pings += case.pings_before.iter().map(Vec::len).sum::<usize>();
        compressed_sent += case.compressed;
        bytes += case.messages.iter().map(|(_, p)| p.len()).sum::<usize>();
    }
    println!(
        "{cases} sequences: {messages} messages ({compressed_sent} compressed) in {frames} data frames \
         with {pings} pings, {bytes} bytes; {compressed_echoes} compressed echoes; {:?}",
        started.elapsed()
    );
    let stats = server.handle.stats();
    assert_eq!(stats.messages_received, messages as u64);
    assert_eq!(stats.enforced["protocol"] + stats.enforced["too_big"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_frame_sequences_echo_intact() {
    // Sizes from 0: empty messages and empty fragments included.
    random_sequences_echo_intact(200, 0).await;
}

/// A reload that widens a shared channel's window must not reach the
/// connections that agreed to the narrower one: each keeps receiving frames
/// its own window can inflate, and each window is compressed once.
#[tokio::test]
async fn a_reload_never_changes_what_a_connection_negotiated() {
    let narrow = CONFIG.replace(
        "compression = { mode = \"shared\" }",
        "compression = { mode = \"shared\", server_max_window_bits = 10 }",
    );
    let server = start(&narrow).await;
    let mut before = RawClient::connect(&server, "/news", Some("permessage-deflate")).await;
    assert_eq!(
        before.extensions.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=10")
    );
    let wide = server
        .config_text
        .replace("server_max_window_bits = 10", "server_max_window_bits = 15");
    server
        .handle
        .reload(wsedge::Config::from_toml_str(&wide).unwrap())
        .await
        .unwrap();
    let mut after = RawClient::connect(&server, "/news", Some("permessage-deflate")).await;
    assert_eq!(
        after.extensions.as_deref(),
        Some("permessage-deflate; server_no_context_takeover")
    );

    // 3 KiB of noise twice: with a 32 KiB window the second copy is one
    // back-reference 3 KiB away, which a 1 KiB window cannot follow.
    let mut rng = Rng::new(0x5EED);
    let noise: Vec<u8> = (0..3 * 1024).map(|_| rng.next() as u8).collect();
    let payload = [noise.clone(), noise].concat();
    let compressions = server.handle.stats().compressions;
    assert_eq!(
        server
            .handle
            .publish("news", None, Outgoing::binary(payload.clone())),
        Ok(2)
    );
    for client in [&mut before, &mut after] {
        let received = client.receive().await;
        assert!(received.compressed);
        assert_eq!(
            received.payload, payload,
            "inflated with the window it agreed"
        );
    }
    assert_eq!(
        server.handle.stats().compressions - compressions,
        2,
        "one compression per window"
    );
}
