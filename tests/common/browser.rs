//! A browser script from `tests/peers/` (Node with playwright-core driving
//! headless Chromium) run as a child process and driven line by line: the
//! test writes commands to its stdin and waits for the lines it prints.

use std::{path::Path, process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout},
};

use super::peers;

/// Bound for each step the browser reports; a step includes Chromium's
/// start, or a reconnection after 1001 (at most the demo client's 5 s
/// window).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(90);

/// The browser script as a child process in its own process group, so that
/// a failing test also ends the Chromium it started.
pub struct Browser {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    /// Everything it printed so far, for failure messages.
    transcript: String,
}

impl Browser {
    /// Starts `node SCRIPT ARGS...` in `tests/peers/`.
    pub fn start(node: &Path, script: &str, args: &[&str]) -> Self {
        let mut child = tokio::process::Command::new(node)
            .arg(script)
            .args(args)
            .current_dir(peers::peers_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node {script}: {e}"));
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child,
            stdin,
            stdout,
            transcript: String::new(),
        }
    }

    /// Reads lines until one equals `expected`; panics on FAIL, on the end
    /// of the output, or after [`STEP_TIMEOUT`].
    pub async fn expect(&mut self, expected: &str) {
        let read = async {
            while let Some(line) = self.stdout.next_line().await.expect("readable stdout") {
                println!("browser: {line}");
                self.transcript.push_str(&line);
                self.transcript.push('\n');
                if line.starts_with("FAIL:") || line == expected {
                    return Some(line);
                }
            }
            None
        };
        let line = tokio::time::timeout(STEP_TIMEOUT, read)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {expected} within {STEP_TIMEOUT:?}:\n{}",
                    self.transcript
                )
            });
        assert_eq!(
            line.as_deref(),
            Some(expected),
            "the browser script failed:\n{}",
            self.transcript
        );
    }

    /// Writes one command line.
    pub async fn tell(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("the browser script reads its stdin");
    }

    /// Waits for the final OK and a successful exit.
    pub async fn finish(mut self) {
        self.expect("OK").await;
        let status = tokio::time::timeout(STEP_TIMEOUT, self.child.wait())
            .await
            .expect("the browser script exits after OK")
            .unwrap();
        assert!(status.success(), "{status}:\n{}", self.transcript);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // Not reaped yet, so the group id is still ours.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Asserts that `path` holds a PNG screenshot of a rendered page (not an
/// empty or blank one).
pub fn assert_screenshot(path: &Path) {
    let png = std::fs::read(path).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} is not a screenshot of a page ({} bytes)",
        path.display(),
        png.len()
    );
}
