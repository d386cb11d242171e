//! The systemd notification protocol as the `wsedge` binary speaks it: a unix
//! datagram socket stands in for systemd's NOTIFY_SOCKET, and the test checks
//! every datagram, in order, across start, a good reload, a refused reload and
//! SIGTERM, while WebSocket clients check that serving goes on throughout.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Command, ExitStatus, Stdio},
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use tokio::{
    net::{TcpStream, UnixDatagram},
    sync::oneshot,
};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{Message, protocol::frame::coding::CloseCode},
};

/// Upper bound for anything the test waits for, so that a hung server fails
/// the test instead of hanging CI.
const PATIENCE: Duration = Duration::from_secs(20);

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The wsedge process; killed if the test fails before it exits.
struct Wsedge {
    pid: u32,
    /// Completed by a thread blocked in `wait()`.
    exit: oneshot::Receiver<std::io::Result<ExitStatus>>,
    exited: bool,
    log: std::path::PathBuf,
}

impl Wsedge {
    fn start(config: &Path, notify_socket: &Path, log: std::path::PathBuf) -> Self {
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_wsedge"))
            .args(["run", "-c"])
            .arg(config)
            .env("NOTIFY_SOCKET", notify_socket)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            // Not under a watchdog: no WATCHDOG=1 datagrams in the sequence.
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("the wsedge binary starts");
        let pid = child.id();
        let (tx, exit) = oneshot::channel();
        std::thread::spawn(move || tx.send(child.wait()));
        Self {
            pid,
            exit,
            exited: false,
            log,
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {} failed", self.pid);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit, bounded by [`PATIENCE`].
    async fn wait(&mut self) -> ExitStatus {
        let Ok(status) = tokio::time::timeout(PATIENCE, &mut self.exit).await else {
            panic!(
                "wsedge did not exit within {PATIENCE:?}; its log:\n{}",
                self.log()
            )
        };
        let status = status
            .expect("the waiter thread reports")
            .expect("wait for wsedge");
        self.exited = true;
        status
    }
}

impl Drop for Wsedge {
    fn drop(&mut self) {
        if !self.exited {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
    }
}

/// One notification datagram, as its `KEY=VALUE` lines.
struct Notification(String);

impl Notification {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
    }

    fn has(&self, key: &str, value: &str) -> bool {
        self.get(key) == Some(value)
    }

    /// The configuration generation the STATUS line names.
    fn generation(&self) -> u64 {
        let status = self
            .get("STATUS")
            .unwrap_or_else(|| panic!("no STATUS in {:?}", self.0));
        status
            .strip_prefix("generation ")
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|digits| digits.parse().ok())
            .unwrap_or_else(|| panic!("STATUS does not name a generation: {status:?}"))
    }
}

/// The fake systemd end of NOTIFY_SOCKET.
struct NotifySocket {
    socket: UnixDatagram,
}

impl NotifySocket {
    /// The next datagram, bounded by [`PATIENCE`]; fails at once if wsedge
    /// exits instead (a port taken meanwhile, a crash).
    async fn next(&self, server: &mut Wsedge, expecting: &str) -> Notification {
        let mut buffer = vec![0u8; 4096];
        let received = tokio::time::timeout(PATIENCE, async {
            tokio::select! {
                biased;
                received = self.socket.recv(&mut buffer) => received,
                status = &mut server.exit => {
                    server.exited = true;
                    panic!(
                        "wsedge exited ({status:?}) while {expecting} was awaited; its log:\n{}",
                        server.log()
                    )
                }
            }
        })
        .await;
        let n = received
            .unwrap_or_else(|_| {
                panic!(
                    "no notification ({expecting}) within {PATIENCE:?}; wsedge's log:\n{}",
                    server.log()
                )
            })
            .expect("recv on the notify socket");
        let text = String::from_utf8(buffer[..n].to_vec()).expect("notifications are UTF-8");
        // Shown if the test fails: the sequence so far.
        eprintln!("notification: {text:?}");
        Notification(text)
    }

    /// The next datagram must be RELOADING=1 with MONOTONIC_USEC in the same
    /// message, as Type=notify-reload requires.
    async fn expect_reloading(&self, server: &mut Wsedge) {
        let reloading = self.next(server, "RELOADING=1").await;
        assert!(
            reloading.has("RELOADING", "1"),
            "expected RELOADING=1, got {:?}",
            reloading.0
        );
        let usec = reloading
            .get("MONOTONIC_USEC")
            .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC: {:?}", reloading.0));
        let usec: u64 = usec
            .parse()
            .unwrap_or_else(|_| panic!("MONOTONIC_USEC is not a number: {usec:?}"));
        assert!(usec > 0, "MONOTONIC_USEC=0");
        assert!(
            reloading.get("READY").is_none(),
            "READY in the RELOADING datagram: {:?}",
            reloading.0
        );
    }

    /// The next datagram must be READY=1 with a STATUS line; returns it.
    async fn expect_ready(&self, server: &mut Wsedge) -> Notification {
        let ready = self.next(server, "READY=1").await;
        assert!(
            ready.has("READY", "1"),
            "expected READY=1, got {:?}",
            ready.0
        );
        assert!(
            ready.get("STATUS").is_some(),
            "READY=1 without STATUS: {:?}",
            ready.0
        );
        ready
    }
}

fn config(port: u16, channels: &[&str]) -> String {
    let mut text = format!(
        "[server]\nplain = [\"127.0.0.1:{port}\"]\ndrain_window = \"200ms\"\nshutdown_timeout = \"2s\"\n"
    );
    for name in channels {
        text.push_str(&format!(
            "\n[[channel]]\nname = \"{name}\"\npath = \"/{name}\"\nkind = \"echo\"\n"
        ));
    }
    text
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

async fn connect(addr: SocketAddr, path: &str) -> Client {
    let url = format!("ws://{addr}{path}");
    let (client, _) = tokio::time::timeout(PATIENCE, connect_async(url.as_str()))
        .await
        .unwrap_or_else(|_| panic!("connecting to {url} took longer than {PATIENCE:?}"))
        .unwrap_or_else(|e| panic!("connecting to {url} failed: {e}"));
    client
}

async fn next_message(client: &mut Client) -> Message {
    loop {
        let message = tokio::time::timeout(PATIENCE, client.next())
            .await
            .expect("a message within PATIENCE")
            .expect("the connection is open")
            .expect("a valid frame");
        if !matches!(message, Message::Ping(_) | Message::Pong(_)) {
            return message;
        }
    }
}

async fn assert_echoes(client: &mut Client, text: &str) {
    tokio::time::timeout(PATIENCE, client.send(Message::text(text)))
        .await
        .expect("send within PATIENCE")
        .expect("send");
    assert_eq!(next_message(client).await, Message::text(text));
}

#[tokio::test]
async fn notifications_across_start_reloads_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let notify = NotifySocket {
        socket: UnixDatagram::bind(&socket_path).expect("bind the notify socket"),
    };
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let config_path = dir.path().join("wsedge.toml");
    std::fs::write(&config_path, config(port, &["echo"])).unwrap();

    let mut server = Wsedge::start(&config_path, &socket_path, dir.path().join("wsedge.log"));

    // Start: READY=1 once the listener is bound, generation 1.
    let ready = notify.expect_ready(&mut server).await;
    assert_eq!(ready.generation(), 1, "{:?}", ready.0);
    let mut first = connect(addr, "/echo").await;
    assert_echoes(&mut first, "before any reload").await;

    // A good reload: a second channel.
    std::fs::write(&config_path, config(port, &["echo", "second"])).unwrap();
    server.signal("HUP");
    notify.expect_reloading(&mut server).await;
    let ready = notify.expect_ready(&mut server).await;
    assert_eq!(ready.generation(), 2, "{:?}", ready.0);
    assert!(
        !ready.get("STATUS").unwrap().contains("failed"),
        "{:?}",
        ready.0
    );
    let mut second = connect(addr, "/second").await;
    assert_echoes(&mut second, "on the new channel").await;
    assert_echoes(&mut first, "after the good reload").await;

    // A refused reload: the file does not validate; generation 2 stays.
    std::fs::write(
        &config_path,
        "[server]\nplain = [\"not an address\"]\n[[channel]]\nname = \"echo\"\n",
    )
    .unwrap();
    server.signal("HUP");
    notify.expect_reloading(&mut server).await;
    let ready = notify.expect_ready(&mut server).await;
    let status = ready.get("STATUS").unwrap();
    assert!(status.contains("last reload failed"), "{status:?}");
    assert_eq!(ready.generation(), 2, "{status:?}");
    assert_echoes(&mut first, "after the refused reload").await;
    assert_echoes(&mut second, "still on the new channel").await;
    let mut third = connect(addr, "/second").await;
    assert_echoes(&mut third, "a new connection after the refused reload").await;

    // SIGTERM: STOPPING=1, every client gets 1001, exit status 0.
    server.signal("TERM");
    let stopping = notify.next(&mut server, "STOPPING=1").await;
    assert!(
        stopping.has("STOPPING", "1"),
        "expected STOPPING=1, got {:?}",
        stopping.0
    );
    for mut client in [first, second, third] {
        match next_message(&mut client).await {
            Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Away),
            other => panic!("expected close 1001, got {other:?}"),
        }
        // Reading on sends tungstenite's close reply and sees the server
        // close the TCP connection; dropping the client then closes ours.
        // The close handshake completes as a browser's would, and the drain
        // need not wait for shutdown_timeout.
        let end = tokio::time::timeout(PATIENCE, client.next())
            .await
            .expect("the server closes the connection within PATIENCE");
        assert!(
            !matches!(end, Some(Ok(_))),
            "a message after the close frame: {end:?}"
        );
    }
    let status = server.wait().await;
    assert!(
        status.success(),
        "wsedge exited with {status}; its log:\n{}",
        server.log()
    );

    // The clients answered the close frames, so the drain ended by itself,
    // not by dropping connections at shutdown_timeout (2 s; it takes well
    // under half a second).
    let log = server.log();
    assert!(
        !log.contains("shutdown_timeout reached"),
        "the drain waited for shutdown_timeout; the log:\n{log}"
    );

    // Nothing after STOPPING=1 (a stray READY=1 would tell systemd the
    // service is running again).
    let mut buffer = [0u8; 4096];
    match notify.socket.try_recv(&mut buffer) {
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok(n) => panic!(
            "notification after STOPPING=1: {:?}",
            String::from_utf8_lossy(&buffer[..n])
        ),
        Err(error) => panic!("recv on the notify socket: {error}"),
    }
}
