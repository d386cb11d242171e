//! The third-party peers in `tests/peers/` (installed by
//! `tests/peers/install.sh`): where they are, and whether they are
//! installed. A missing peer fails the test under CI (`CI` set) and is
//! skipped with a loud note elsewhere.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// `tests/peers/`: the peer scripts, their venv and node_modules.
pub fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

/// Whether this runs under CI (`CI` set, and not to "false" or "0").
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "false" && value != "0")
}

/// Whether `what` is installed: `program args` runs and exits 0. If not: under CI a
/// failure, elsewhere a loud note and `false` (the test returns early).
pub fn installed(what: &str, program: &Path, args: &[&str]) -> bool {
    let ok = Command::new(program)
        .args(args)
        .current_dir(peers_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if ok {
        return true;
    }
    let message = format!(
        "{what} is not installed (`{} {}` failed): run tests/peers/install.sh",
        program.display(),
        args.join(" ")
    );
    assert!(!in_ci(), "{message}");
    // Straight to the process's stderr: libtest would swallow `eprintln!`
    // of a passing test.
    let _ = writeln!(
        std::io::stderr(),
        "\n**********\n** NOTE: skipping this test: {message}\n**********"
    );
    false
}

/// The venv's Python with `websockets`, if installed.
pub fn python() -> Option<PathBuf> {
    let python = peers_dir().join(".venv/bin/python");
    installed("Python websockets", &python, &["-c", "import websockets"]).then_some(python)
}

/// Node, if Node's `ws` is installed.
pub fn node_ws() -> Option<PathBuf> {
    let node = PathBuf::from("node");
    installed("Node ws", &node, &["-e", "require.resolve('ws')"]).then_some(node)
}

/// Node, if playwright-core and Debian's Chromium are installed.
pub fn chromium() -> Option<PathBuf> {
    let node = node_ws()?;
    if !installed(
        "playwright-core",
        &node,
        &["-e", "require.resolve('playwright-core')"],
    ) || !installed("Chromium", Path::new("/usr/bin/chromium"), &["--version"])
    {
        return None;
    }
    Some(node)
}
