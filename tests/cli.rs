//! The `wsedge` binary as an operator uses it: `check` and `print-config` exit
//! codes and output, and `run` shutting down gracefully on SIGTERM.

mod common;

use common::KillOnDrop;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc as tokio_mpsc, oneshot};
use tokio_tungstenite::tungstenite::{Message, protocol::frame::coding::CloseCode};
use wsedge::Config;

/// Upper bound for anything a test waits for.
const PATIENCE: Duration = Duration::from_secs(20);

fn example_path() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

fn wsedge() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wsedge"));
    // The log lines the tests read must not depend on the caller's environment.
    command.env("RUST_LOG", "info").env("NO_COLOR", "1");
    command
}

/// Runs `wsedge args...` to completion, bounded by [`PATIENCE`].
fn run_cli(args: &[&str]) -> Output {
    let child = wsedge()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the wsedge binary starts");
    let mut guard = KillOnDrop {
        pid: child.id(),
        exited: false,
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let output = rx
        .recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("wsedge {} did not exit within {PATIENCE:?}", args.join(" ")))
        .expect("wsedge output is readable");
    guard.exited = true;
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_accepts_the_example() {
    let example = example_path();
    let output = run_cli(&["check", "-c", example.to_str().unwrap()]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr:\n{}",
        text(&output.stderr)
    );
    assert!(
        text(&output.stdout).contains("configuration is valid"),
        "stdout:\n{}",
        text(&output.stdout)
    );
}

#[test]
fn check_lists_every_error_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.toml");
    std::fs::write(
        &file,
        r#"[server]
plain = ["127.0.0.1:8080"]
handshake_timeout = "soon"

[[channel]]
name = "news"
path = "/news"
kind = "fanout"
"#,
    )
    .unwrap();
    let output = run_cli(&["check", "-c", file.to_str().unwrap()]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr:\n{stderr}");
    let file = file.display();
    for expected in [
        format!("{file}:3:21: server.handshake_timeout: \"soon\" is not a duration"),
        format!("{file}:8:8: channel[0].kind: \"fanout\" is not a channel kind"),
    ] {
        assert!(
            stderr.contains(&expected),
            "missing {expected:?} in stderr:\n{stderr}"
        );
    }
    assert!(
        text(&output.stdout).is_empty(),
        "nothing on stdout for an invalid file"
    );
}

#[test]
fn check_reports_a_missing_auth_key_file_at_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wsedge.toml");
    std::fs::write(
        &file,
        r#"[server]
plain = ["127.0.0.1:8080"]

[auth]
algorithms = ["HS256"]
secret_file = "jwt.secret"
"#,
    )
    .unwrap();
    let output = run_cli(&["check", "-c", file.to_str().unwrap()]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr:\n{stderr}");
    let expected = format!(
        "{}:6:15: auth.secret_file: cannot read {}: ",
        file.display(),
        dir.path().join("jwt.secret").display()
    );
    assert!(
        stderr.contains(&expected),
        "missing {expected:?} in stderr:\n{stderr}"
    );

    std::fs::write(dir.path().join("jwt.secret"), "x".repeat(32)).unwrap();
    let output = run_cli(&["check", "-c", file.to_str().unwrap()]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "with the file in place: {}",
        text(&output.stderr)
    );
}

#[test]
fn check_names_a_missing_file() {
    let output = run_cli(&["check", "-c", "/nonexistent.toml"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains("cannot read configuration file /nonexistent.toml"),
        "stderr:\n{stderr}"
    );
}

#[test]
fn print_config_output_parses_back() {
    let example = example_path();
    let output = run_cli(&["print-config", "-c", example.to_str().unwrap()]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr:\n{}",
        text(&output.stderr)
    );
    let printed = text(&output.stdout);
    let config = Config::from_toml_str(&printed)
        .unwrap_or_else(|e| panic!("print-config output is invalid:\n{e}\n---\n{printed}"));
    assert_eq!(config.channels.len(), 3, "{printed}");
    assert_eq!(
        config.to_toml_string(),
        printed,
        "printing the printed config changes nothing"
    );
}

/// A running `wsedge run`: its stderr lines and, once it has exited, its status.
struct Server {
    guard: KillOnDrop,
    lines: tokio_mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
    status: oneshot::Receiver<std::io::Result<ExitStatus>>,
}

impl Server {
    fn spawn(config: &Path) -> Self {
        let mut child: Child = wsedge()
            .args(["run", "-c", config.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the wsedge binary starts");
        let guard = KillOnDrop {
            pid: child.id(),
            exited: false,
        };
        let stderr = child.stderr.take().unwrap();
        let (line_tx, lines) = tokio_mpsc::unbounded_channel();
        let (status_tx, status) = oneshot::channel();
        // Forwards stderr until the child closes it, then reaps the child.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = line_tx.send(line);
            }
            let _ = status_tx.send(child.wait());
        });
        Self {
            guard,
            lines,
            seen: Vec::new(),
            status,
        }
    }

    /// Waits for a stderr line containing all of `parts`.
    async fn wait_for_line(&mut self, parts: &[&str]) {
        loop {
            match tokio::time::timeout(PATIENCE, self.lines.recv()).await {
                Ok(Some(line)) => {
                    let found = parts.iter().all(|p| line.contains(p));
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Ok(None) => panic!(
                    "wsedge closed stderr before logging {parts:?}; stderr:\n{}",
                    self.seen.join("\n")
                ),
                Err(_) => panic!(
                    "no line with {parts:?} within {PATIENCE:?}; stderr:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits (at most [`PATIENCE`] in all) for the child to exit, reading the
    /// rest of its stderr.
    async fn exit_status(&mut self) -> ExitStatus {
        let (lines, seen, status) = (&mut self.lines, &mut self.seen, &mut self.status);
        let exited = tokio::time::timeout(PATIENCE, async {
            while let Some(line) = lines.recv().await {
                seen.push(line);
            }
            status.await
        })
        .await;
        let status = exited
            .unwrap_or_else(|_| {
                panic!(
                    "wsedge did not exit within {PATIENCE:?}; stderr:\n{}",
                    self.seen.join("\n")
                )
            })
            .expect("the reaper thread reports")
            .expect("wait for wsedge");
        self.guard.exited = true;
        status
    }
}

#[tokio::test]
async fn sigterm_closes_connections_with_1001_and_exits_0() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wsedge.toml");
    std::fs::write(
        &config,
        format!("[server]\nplain = [\"127.0.0.1:{port}\"]\ndrain_window = \"100ms\"\n\n[[channel]]\nname = \"echo\"\npath = \"/echo\"\nkind = \"echo\"\n"),
    )
    .unwrap();
    let mut server = Server::spawn(&config);
    server
        .wait_for_line(&["listening", &format!("127.0.0.1:{port}")])
        .await;

    let (mut ws, _) = tokio::time::timeout(
        PATIENCE,
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/echo")),
    )
    .await
    .expect("the handshake completes within PATIENCE")
    .expect("the server accepts the upgrade");
    tokio::time::timeout(PATIENCE, ws.send(Message::text("hello")))
        .await
        .expect("send within PATIENCE")
        .unwrap();
    let echoed = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("an echo within PATIENCE");
    assert_eq!(
        echoed.expect("stream open").expect("no protocol error"),
        Message::text("hello")
    );

    let kill = Command::new("kill")
        .args(["-TERM", &server.guard.pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(kill.success(), "kill -TERM failed");

    let close = loop {
        match tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a close frame within PATIENCE")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    let close = close.expect("the close frame carries a code");
    assert_eq!(close.code, CloseCode::Away, "reason: {:?}", close.reason);
    // Keep reading so that the client's close reply is sent and the server
    // sees the connection end.
    while let Ok(Some(Ok(_))) = tokio::time::timeout(PATIENCE, ws.next()).await {}
    // The server half-closed after the handshake and waits for our side to
    // close too, as a well-behaved client does once the stream has ended.
    drop(ws);

    let status = server.exit_status().await;
    assert!(
        status.success(),
        "wsedge exited with {status}; stderr:\n{}",
        server.seen.join("\n")
    );
    assert!(
        server.seen.iter().any(|l| l.contains("stopped")),
        "no \"stopped\" line; stderr:\n{}",
        server.seen.join("\n")
    );
}
