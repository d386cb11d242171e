//! Tokens made by an independent implementation: `tests/peers/sign_jwt.py`
//! (PyJWT with `cryptography`), over keys it generates into a temporary
//! directory for each test binary. The server never signs what it verifies.

use std::{
    io::{BufRead, BufReader, Write},
    path::PathBuf,
    process::{Command, Stdio},
    sync::OnceLock,
    time::{SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

use super::peers::{installed, peers_dir};

/// The signer and its keys.
pub struct Signer {
    python: PathBuf,
    dir: tempfile::TempDir,
}

/// The signer, its keys generated on first use; `None` (after a note, or a
/// failure under CI) when PyJWT is not installed.
pub fn signer() -> Option<&'static Signer> {
    static SIGNER: OnceLock<Option<Signer>> = OnceLock::new();
    SIGNER
        .get_or_init(|| {
            let python = peers_dir().join(".venv/bin/python");
            if !installed("PyJWT", &python, &["-c", "import jwt, cryptography"]) {
                return None;
            }
            let dir = tempfile::tempdir().unwrap();
            let status = Command::new(&python)
                .arg(peers_dir().join("sign_jwt.py"))
                .arg("keygen")
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "sign_jwt.py keygen failed");
            Some(Signer { python, dir })
        })
        .as_ref()
}

impl Signer {
    /// A generated file: `rsa.pub.pem`, `p256.key.pem`, `hmac.secret`...
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Signs each request (see `sign_jwt.py`) in one run of the signer.
    pub fn sign(&self, requests: &[Value]) -> Vec<String> {
        let mut child = Command::new(&self.python)
            .arg(peers_dir().join("sign_jwt.py"))
            .arg("sign")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        for request in requests {
            writeln!(stdin, "{request}").unwrap();
        }
        drop(stdin);
        let tokens: Vec<String> = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map(Result::unwrap)
            .collect();
        assert!(child.wait().unwrap().success(), "sign_jwt.py sign failed");
        assert_eq!(tokens.len(), requests.len());
        tokens
    }

    /// One HS256 token with `claims` (over `hmac.secret`).
    pub fn hs256(&self, claims: Value) -> String {
        self.sign(&[
            serde_json::json!({"alg": "HS256", "key": self.path("hmac.secret"), "claims": claims}),
        ])
        .remove(0)
    }
}

/// A token for `user`, valid for ten minutes, that may join and publish
/// where `grants` say (channel names or `channel:room` patterns).
pub fn user_token(signer: &Signer, user: &str, grants: &[&str]) -> String {
    signer.hs256(
        serde_json::json!({"sub": user, "exp": unix_now(600), "join": grants, "publish": grants}),
    )
}

/// Seconds since the epoch, `offset` from now: claim times.
pub fn unix_now(offset: i64) -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + offset
}
