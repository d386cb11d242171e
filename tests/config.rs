//! Configuration loading as a user sees it: every invalid fixture is rejected
//! with each problem at its `file:line:column` and key path, certificate files
//! are loaded in every supported key format, and `config.example.toml` loads
//! and round-trips through `to_toml_string`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use rustls_pki_types::pem::PemObject;
use wsedge::{
    Config, ConfigError,
    config::{Admission, ChannelKind, Compression, Limits, TlsSettings},
};

/// Invalid configurations: `(name, toml, expected_fragments)`.
///
/// Every fragment must appear in the rendered error. Fragments that start with
/// `<string>:` name one issue each (location, key and, usually, the start of
/// the message), and the error must hold exactly that many issues, so an extra
/// or a missing error fails the case as well as a wrong location.
///
/// The fixtures start at column 0 so that the line and column in the fragments
/// can be read off the text: line 1 is the line after `r#"`.
const INVALID: &[(&str, &str, &[&str])] = &[
    (
        "unknown key at top level",
        r#"# top-level keys come before the first table
log_level = "debug"
[server]
plain = ["127.0.0.1:8080"]
"#,
        &[
            "<string>:2:1: ",
            "unknown field `log_level`, expected one of `server`",
        ],
    ),
    (
        "unknown key inside [[channel]]",
        r#"[server]
plain = ["127.0.0.1:8080"]

[[channel]]
name = "echo"
path = "/echo"
kind = "echo"
  colour = "red"
"#,
        &[
            "<string>:8:3: ",
            "unknown field `colour`, expected one of `name`, `path`, `kind`",
        ],
    ),
    (
        "unknown key inside [server.tls]",
        r#"[server]
listen = ["127.0.0.1:8443"]

[server.tls]
self_signed = ["localhost"]
password = "hunter2"
"#,
        &[
            "<string>:6:1: ",
            "unknown field `password`, expected one of `cert`, `key`, `self_signed`",
        ],
    ),
    (
        "TOML syntax error",
        r#"[server]
plain = ["127.0.0.1:8080"
"#,
        &["<string>:2:26: toml: unclosed array"],
    ),
    (
        "bad duration",
        r#"[server]
plain = ["127.0.0.1:8080"]
handshake_timeout = "10 parsecs"
"#,
        &["<string>:3:21: server.handshake_timeout: \"10 parsecs\" is not a duration"],
    ),
    (
        "zero duration",
        r#"[server]
plain = ["127.0.0.1:8080"]
handshake_timeout = "0s"
"#,
        &["<string>:3:21: server.handshake_timeout: must be longer than zero"],
    ),
    (
        "bad size in [limits]",
        r#"[server]
plain = ["127.0.0.1:8080"]
[limits]
max_payload = "64 kilos"
"#,
        &["<string>:4:15: limits.max_payload: \"64 kilos\" is not a size"],
    ),
    (
        "bad size in [channel.limits]",
        r#"[server]
plain = ["127.0.0.1:8080"]
[[channel]]
name = "echo"
path = "/echo"
kind = "echo"
[channel.limits]
send_buffer = "1.5MiB"
"#,
        &["<string>:8:15: channel[0].limits.send_buffer: \"1.5MiB\" is not a size"],
    ),
    (
        "max_payload larger than send_buffer",
        r#"[server]
plain = ["127.0.0.1:8080"]
[limits]
send_buffer = "1MiB"
max_payload = "2MiB"
"#,
        &[
            "<string>:5:15: limits.max_payload: max_payload (2MiB) is larger than send_buffer (1MiB)",
        ],
    ),
    (
        "channel max_payload larger than the inherited send_buffer",
        r#"[server]
plain = ["127.0.0.1:8080"]
[limits]
send_buffer = "256KiB"
[[channel]]
name = "echo"
path = "/echo"
kind = "echo"
[channel.limits]
max_payload = "512KiB"
"#,
        &[
            "<string>:10:15: channel[0].limits.max_payload: max_payload (512KiB) is larger than send_buffer (256KiB)",
        ],
    ),
    (
        "bad socket address",
        r#"[server]
plain = ["127.0.0.1:8080", "localhost:80"]
"#,
        &["<string>:2:28: server.plain: \"localhost:80\" is not a socket address"],
    ),
    (
        "address listed twice",
        r#"[server]
listen = ["127.0.0.1:8443"]
plain = ["127.0.0.1:8443"]
[server.tls]
self_signed = ["localhost"]
"#,
        &["<string>:3:10: server.plain: 127.0.0.1:8443 is already listed in server.listen"],
    ),
    (
        "no [server] table",
        r#"[[channel]]
name = "echo"
path = "/echo"
kind = "echo"
"#,
        &["<string>:1:1: server: missing [server] table"],
    ),
    (
        "no listener at all",
        r#"[limits]
max_payload = "64KiB"

[server]
listen = []
plain = []
handshake_timeout = "5s"
"#,
        &["<string>:4:1: server: no listener"],
    ),
    (
        "listen without a [server.tls] table",
        r#"[limits]
max_payload = "64KiB"

[server]
listen = ["127.0.0.1:8443"]
"#,
        &["<string>:4:1: server.tls: `listen` serves wss:// and needs a [server.tls] table"],
    ),
    (
        "[server.tls] with cert but no key",
        r#"[server]
listen = ["127.0.0.1:8443"]
[server.tls]
cert = "cert.pem"
"#,
        &["<string>:3:1: server.tls: set both `cert` and `key`"],
    ),
    (
        "both self_signed and cert/key",
        r#"[server]
listen = ["127.0.0.1:8443"]
[server.tls]
cert = "cert.pem"
key = "key.pem"
self_signed = ["localhost"]
"#,
        &[
            "<string>:6:15: server.tls.self_signed: `self_signed` generates a certificate and cannot be combined with `cert`/`key`",
        ],
    ),
    (
        "empty self_signed list",
        r#"[server]
listen = ["127.0.0.1:8443"]
[server.tls]
self_signed = []
"#,
        &["<string>:4:15: server.tls.self_signed: list the host names or IP addresses"],
    ),
    (
        "duplicate channel names",
        r#"[server]
plain = ["127.0.0.1:8080"]
[[channel]]
name = "echo"
path = "/a"
kind = "echo"
[[channel]]
name = "other"
path = "/b"
kind = "echo"
[[channel]]
name = "echo"
path = "/c"
kind = "echo"
"#,
        &["<string>:11:1: channel[2].name: channel name \"echo\" is already used by channel[0]"],
    ),
    (
        "duplicate path",
        r#"[server]
plain = ["127.0.0.1:8080"]
[[channel]]
name = "a"
path = "/live"
kind = "echo"
[[channel]]
name = "b"
path = "/live"
kind = "broadcast"
"#,
        &["<string>:7:1: channel[1].path: path /live overlaps /live of channel \"a\""],
    ),
    (
        "overlapping paths",
        r#"[server]
plain = ["127.0.0.1:8080"]
[[channel]]
name = "chat"
path = "/chat/{room}"
kind = "room"
[[channel]]
name = "lobby"
path = "/chat/lobby"
kind = "broadcast"
"#,
        &[
            "<string>:7:1: channel[1].path: path /chat/lobby overlaps /chat/{room} of channel \"chat\"",
        ],
    ),
    (
        "malformed template",
        r#"[server]
plain = ["127.0.0.1:8080"]
[[channel]]
name = "chat"
path = "/chat/{room"
kind = "room"
"#,
        &["<string>:5:8: channel[0].path: path \"/chat/{room\" contains '{'"],
    ),
    (
        "room kind without a template",
        r#"[server]
plain = ["127.0.0.1:8080"]
[[channel]]
name = "chat"
path = "/chat"
kind = "room"
"#,
        &[
            "<string>:5:8: channel[0].path: room channels need a template with a {room} segment, such as \"/chat/{room}\"",
        ],
    ),
    (
        "template on a broadcast channel",
        r#"[server]
plain = ["127.0.0.1:8080"]
[[channel]]
name = "news"
path = "/news/{room}"
kind = "broadcast"
"#,
        &["<string>:5:8: channel[0].path: only room channels may use a {room} segment"],
    ),
    (
        "unknown kind",
        r#"[server]
plain = ["127.0.0.1:8080"]
[[channel]]
name = "news"
path = "/news"
kind = "fanout"
"#,
        &["<string>:6:8: channel[0].kind: \"fanout\" is not a channel kind"],
    ),
    (
        "missing name and path",
        r#"[server]
plain = ["127.0.0.1:8080"]
[[channel]]
kind = "echo"
"#,
        &[
            "<string>:3:1: channel[0].name: missing `name`",
            "<string>:3:1: channel[0].path: missing `path`",
        ],
    ),
    (
        "malformed origins",
        r#"[server]
plain = ["127.0.0.1:8080"]
[[channel]]
name = "echo"
path = "/echo"
kind = "echo"
origins = ["https://ok.example", "example.com", "https://x.example/path"]
"#,
        &[
            "<string>:7:34: channel[0].origins: origin \"example.com\" has no scheme",
            "<string>:7:49: channel[0].origins: origin \"https://x.example/path\" has an invalid host",
        ],
    ),
    (
        "\"*\" mixed with other origins",
        r#"[server]
plain = ["127.0.0.1:8080"]
[[channel]]
name = "echo"
path = "/echo"
kind = "echo"
origins = ["https://ok.example", "*"]
"#,
        &["<string>:7:11: channel[0].origins: \"*\" already allows every origin"],
    ),
    (
        "publish on an echo channel",
        r#"[server]
plain = ["127.0.0.1:8080"]
[[channel]]
name = "echo"
path = "/echo"
kind = "echo"
publish = "clients"
"#,
        &[
            "<string>:7:11: channel[0].publish: `publish` applies to broadcast and room channels only",
        ],
    ),
    (
        "max_members = 0",
        r#"[server]
plain = ["127.0.0.1:8080"]
[[channel]]
name = "chat"
path = "/chat/{room}"
kind = "room"
max_members = 0
"#,
        &["<string>:7:15: channel[0].max_members: 0 is "],
    ),
    (
        "bad subprotocol token",
        r#"[server]
plain = ["127.0.0.1:8080"]
[[channel]]
name = "echo"
path = "/echo"
kind = "echo"
subprotocols = ["chat.v1", "chat v2"]
"#,
        &["<string>:7:28: channel[0].subprotocols: \"chat v2\" is not a subprotocol token"],
    ),
    (
        "admin address that is also a WebSocket listener",
        r#"[server]
plain = ["127.0.0.1:8080"]
[admin]
listen = "127.0.0.1:8080"
"#,
        &["<string>:4:10: admin.listen: 127.0.0.1:8080 is also a WebSocket listener"],
    ),
    (
        "default admin address that is also a WebSocket listener",
        r#"[server]
plain = ["127.0.0.1:9090"]

[admin]
"#,
        &[
            "<string>:4:1: admin.listen: 127.0.0.1:9090 (the default admin address) is also a WebSocket listener",
        ],
    ),
    (
        "bad [compression] value with no channel",
        r#"[server]
plain = ["127.0.0.1:8080"]
[compression]
level = 12
"#,
        &["<string>:4:9: compression.level: 12 is not a zlib level"],
    ),
    (
        "bad [compression] value reported once, not once per channel",
        r#"[server]
plain = ["127.0.0.1:8080"]
[compression]
server_max_window_bits = 8
[[channel]]
name = "a"
path = "/a"
kind = "echo"
[[channel]]
name = "b"
path = "/b"
kind = "broadcast"
"#,
        &["<string>:4:26: compression.server_max_window_bits: 8 is not a window size"],
    ),
    (
        "bad max_connections in [limits] reported once",
        r#"[server]
plain = ["127.0.0.1:8080"]
[limits]
max_connections = 0
"#,
        &["<string>:4:19: limits.max_connections: 0 is out of range"],
    ),
    (
        "unknown keywords list the valid words",
        r#"[server]
plain = ["127.0.0.1:8080"]
[limits]
on_slow_consumer = "later"
message_rate = { per_second = 5, on_exceed = "wait" }
[[channel]]
name = "news"
path = "/news"
kind = "broadcast"
publish = "everyone"
[channel.compression]
mode = "fast"
"#,
        &[
            "<string>:4:20: limits.on_slow_consumer: \"later\" is not a slow-consumer policy; use \"close\" (close with 1013) or \"drop\" (drop what does not fit)",
            "<string>:5:46: limits.message_rate.on_exceed: \"wait\" is not a policy; use \"throttle\"",
            "<string>:10:11: channel[0].publish: \"everyone\" is not a publish mode; use \"clients\" (clients and the API publish) or \"api\" (only the API publishes)",
            "<string>:12:8: channel[0].compression.mode: \"fast\" is not a compression mode; use \"shared\"",
        ],
    ),
    (
        // The column counts characters: "bücher.pem" is 11 bytes but 10
        // characters, so a byte offset would say 3:45.
        "column counts characters, not bytes",
        r#"[server]
listen = ["127.0.0.1:8443"]
tls = { cert = "bücher.pem", self_signed = ["localhost"] }
"#,
        &["<string>:3:44: server.tls.self_signed: `self_signed` generates a certificate"],
    ),
];

/// Loads `toml` and returns the rendered `ConfigError::Invalid` with its issue
/// count, or a description of what happened instead.
fn rejection(toml: &str) -> Result<(String, usize), String> {
    match Config::from_toml_str(toml) {
        Ok(config) => Err(format!(
            "was accepted; effective config:\n{}",
            config.to_toml_string()
        )),
        Err(error @ ConfigError::Invalid { .. }) => Ok((error.to_string(), error.issues().len())),
        Err(other) => Err(format!(
            "failed with {other:?} instead of ConfigError::Invalid"
        )),
    }
}

/// Checks `toml` against `fragments` as described on [`INVALID`].
fn check_rejected(toml: &str, fragments: &[&str]) -> Result<(), String> {
    let (text, issues) = rejection(toml)?;
    let missing: Vec<&&str> = fragments.iter().filter(|f| !text.contains(**f)).collect();
    let expected_issues = fragments
        .iter()
        .filter(|f| f.starts_with("<string>:"))
        .count();
    if !missing.is_empty() || issues != expected_issues {
        return Err(format!(
            "expected {expected_issues} issue(s) containing {missing:?}, got {issues}:\n{text}"
        ));
    }
    Ok(())
}

#[test]
fn invalid_configurations_are_reported_at_their_location() {
    assert!(INVALID.len() >= 25, "the table lost cases");
    let failures: Vec<String> = INVALID
        .iter()
        .filter_map(|(name, toml, fragments)| {
            check_rejected(toml, fragments)
                .err()
                .map(|why| format!("--- {name}: {why}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        INVALID.len(),
        failures.join("\n")
    );
}

#[test]
fn every_independent_error_is_reported_not_only_the_first() {
    let toml = r#"[server]
plain = ["127.0.0.1:8080"]
handshake_timeout = "soon"

[[channel]]
name = "news"
path = "/news"
kind = "fanout"

[[channel]]
name = "chat"
path = "/chat/{room}"
kind = "room"
max_members = -5
"#;
    let error = Config::from_toml_str(toml).expect_err("three errors");
    let located: Vec<String> = error
        .issues()
        .iter()
        .map(|i| format!("{}:{}:{}", i.line, i.column, i.key))
        .collect();
    assert_eq!(
        located,
        [
            "3:21:server.handshake_timeout",
            "8:8:channel[0].kind",
            "14:15:channel[1].max_members"
        ],
        "all three problems, in file order:\n{error}"
    );
    let text = error.to_string();
    assert_eq!(text.lines().count(), 3, "one line per problem:\n{text}");
    for fragment in [
        "\"soon\" is not a duration",
        "\"fanout\" is not a channel kind",
        "channel[1].max_members: -5 is ",
    ] {
        assert!(text.contains(fragment), "missing {fragment:?} in:\n{text}");
    }
}

/// A `[server]` section with a TLS listener on the given PEM files. The cert
/// value starts at 4:8 and the key value at 5:7.
fn tls_files_config(cert: &Path, key: &Path) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:8443\"]\n[server.tls]\ncert = {:?}\nkey = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    )
}

/// Writes a certificate for localhost and its PKCS#8 key (what rcgen writes)
/// as `{stem}.cert.pem` and `{stem}.key.pem`; returns the paths and the DER.
fn write_rcgen_pair(dir: &Path, stem: &str) -> (PathBuf, PathBuf, Vec<u8>) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (
        dir.join(format!("{stem}.cert.pem")),
        dir.join(format!("{stem}.key.pem")),
    );
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, signing_key.serialize_pem()).unwrap();
    (cert_path, key_path, cert.der().to_vec())
}

/// Loads a config serving `cert`/`key` and returns the DER of the leaf it loaded.
fn loaded_leaf(toml: &str) -> Vec<u8> {
    let config = Config::from_toml_str(toml)
        .unwrap_or_else(|e| panic!("valid TLS files were rejected:\n{e}\n---\n{toml}"));
    match &config.server.tls {
        Some(TlsSettings::Files { identity, .. }) => identity.leaf().to_vec(),
        other => panic!("expected TLS from files, got {other:?}"),
    }
}

#[test]
fn pkcs8_certificate_and_key_files_load() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, der) = write_rcgen_pair(dir.path(), "a");
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----"),
        "rcgen writes PKCS#8"
    );
    assert_eq!(loaded_leaf(&tls_files_config(&cert, &key)), der);
}

#[test]
fn relative_certificate_paths_resolve_against_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, der) = write_rcgen_pair(dir.path(), "a");
    let file = dir.path().join("wsedge.toml");
    std::fs::write(
        &file,
        tls_files_config(Path::new("a.cert.pem"), Path::new("a.key.pem")),
    )
    .unwrap();
    let config = Config::from_file(&file).unwrap_or_else(|e| panic!("{e}"));
    let Some(TlsSettings::Files { identity, cert, .. }) = &config.server.tls else {
        panic!("expected TLS files")
    };
    assert_eq!(identity.leaf().as_ref(), der.as_slice());
    assert_eq!(cert, &dir.path().join("a.cert.pem"));
}

#[test]
fn sec1_ec_key_file_loads() {
    // rcgen (on ring) writes only PKCS#8; the SEC1 `ECPrivateKey` is the
    // OCTET STRING inside it, so it is cut out here rather than converted by
    // an external tool.
    let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key_pair)
        .unwrap();
    let sec1 = sec1_from_pkcs8(&key_pair.serialize_der());
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, pem("EC PRIVATE KEY", &sec1)).unwrap();
    assert_eq!(
        loaded_leaf(&tls_files_config(&cert_path, &key_path)),
        cert.der().to_vec()
    );
}

#[test]
fn pkcs1_rsa_and_openssl_sec1_key_files_load() {
    if !Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        println!(
            "note: the openssl CLI is not installed; PKCS#1 RSA and openssl SEC1 keys are not tested"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();

    // OpenSSL 3 writes PKCS#8 unless told -traditional; 1.1 has no such flag
    // and writes PKCS#1 by default.
    if !openssl(&[
        "genrsa",
        "-traditional",
        "-out",
        &path("rsa.key.pem"),
        "2048",
    ]) {
        assert!(
            openssl(&["genrsa", "-out", &path("rsa.key.pem"), "2048"]),
            "openssl genrsa failed"
        );
    }
    let key = std::fs::read_to_string(path("rsa.key.pem")).unwrap();
    assert!(
        key.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "expected a PKCS#1 key, got:\n{key}"
    );
    assert!(openssl(&[
        "req",
        "-new",
        "-x509",
        "-key",
        &path("rsa.key.pem"),
        "-subj",
        "/CN=localhost",
        "-days",
        "1",
        "-out",
        &path("rsa.cert.pem")
    ]));

    // `ecparam -genkey` writes an EC PARAMETERS block, then the SEC1 key.
    assert!(openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-out",
        &path("ec.key.pem")
    ]));
    let key = std::fs::read_to_string(path("ec.key.pem")).unwrap();
    assert!(
        key.contains("-----BEGIN EC PRIVATE KEY-----") && !key.contains("BEGIN PRIVATE KEY"),
        "expected a SEC1 key, got:\n{key}"
    );
    assert!(openssl(&[
        "req",
        "-new",
        "-x509",
        "-key",
        &path("ec.key.pem"),
        "-subj",
        "/CN=localhost",
        "-days",
        "1",
        "-out",
        &path("ec.cert.pem")
    ]));

    for stem in ["rsa", "ec"] {
        let (cert, key) = (
            dir.path().join(format!("{stem}.cert.pem")),
            dir.path().join(format!("{stem}.key.pem")),
        );
        let der = rustls_pki_types::CertificateDer::from_pem_file(&cert).unwrap();
        assert_eq!(
            loaded_leaf(&tls_files_config(&cert, &key)),
            der.to_vec(),
            "{stem}"
        );
    }
}

fn openssl(args: &[&str]) -> bool {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    if !output.status.success() {
        println!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output.status.success()
}

#[test]
fn missing_certificate_file_is_reported_at_cert() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (
        dir.path().join("nowhere/cert.pem"),
        dir.path().join("nowhere/key.pem"),
    );
    let text = rejection(&tls_files_config(&cert, &key))
        .unwrap_or_else(|why| panic!("{why}"))
        .0;
    let expected = format!(
        "<string>:4:8: server.tls.cert: cannot read certificate chain from {}",
        cert.display()
    );
    assert!(
        text.starts_with(&expected),
        "expected {expected:?}, got:\n{text}"
    );
    assert_eq!(text.lines().count(), 1, "{text}");
}

#[test]
fn certificate_and_key_that_do_not_match_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_a, _, _) = write_rcgen_pair(dir.path(), "a");
    let (_, key_b, _) = write_rcgen_pair(dir.path(), "b");
    let fragments =
        ["<string>:4:8: server.tls.cert: the private key does not match the certificate"];
    check_rejected(&tls_files_config(&cert_a, &key_b), &fragments)
        .unwrap_or_else(|why| panic!("{why}"));
}

#[test]
fn files_without_the_expected_pem_section_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = write_rcgen_pair(dir.path(), "a");
    // Key file given for both: no certificate in the "certificate" file.
    let fragments = [
        "<string>:4:8: server.tls.cert: cannot read certificate chain from",
        "no CERTIFICATE section found",
    ];
    check_rejected(&tls_files_config(&key, &key), &fragments).unwrap_or_else(|why| panic!("{why}"));
    // Certificate file given for both: no key in the "key" file.
    let fragments = [
        "<string>:5:7: server.tls.key: cannot read private key from",
        "no matching PEM section found",
    ];
    check_rejected(&tls_files_config(&cert, &cert), &fragments)
        .unwrap_or_else(|why| panic!("{why}"));
}

/// The SEC1 `ECPrivateKey` inside a PKCS#8 `PrivateKeyInfo`:
/// `SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING key }`.
fn sec1_from_pkcs8(pkcs8: &[u8]) -> Vec<u8> {
    let (info, _) = der_read(pkcs8, 0x30);
    let (_version, rest) = der_read(info, 0x02);
    let (_algorithm, rest) = der_read(rest, 0x30);
    let (key, _) = der_read(rest, 0x04);
    let (_ec_private_key, trailing) = der_read(key, 0x30);
    assert!(
        trailing.is_empty(),
        "the OCTET STRING holds exactly one ECPrivateKey"
    );
    key.to_vec()
}

/// Reads one DER element with tag `tag`; returns its contents and what follows.
fn der_read(input: &[u8], tag: u8) -> (&[u8], &[u8]) {
    assert_eq!(input[0], tag, "unexpected DER tag");
    let (len, header) = match input[1] {
        short if short < 0x80 => (usize::from(short), 2),
        long => {
            let count = usize::from(long & 0x7f);
            (
                input[2..2 + count]
                    .iter()
                    .fold(0, |acc, b| acc << 8 | usize::from(*b)),
                2 + count,
            )
        }
    };
    input[header..].split_at(len)
}

/// PEM armour: base64 in 64-character lines between BEGIN and END.
fn pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut encoded = String::new();
    for chunk in der.chunks(3) {
        let bits = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            encoded.push(if i <= chunk.len() {
                char::from(ALPHABET[(bits >> (18 - 6 * i) & 63) as usize])
            } else {
                '='
            });
        }
    }
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(64)
        .map(|line| std::str::from_utf8(line).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn example_path() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

#[test]
fn example_config_loads_with_its_three_channels() {
    let config = Config::from_file(example_path())
        .unwrap_or_else(|e| panic!("config.example.toml is invalid:\n{e}"));
    let channels: Vec<(ChannelKind, String)> = config
        .channels
        .iter()
        .map(|c| (c.kind, c.path.to_string()))
        .collect();
    assert_eq!(
        channels,
        [
            (ChannelKind::Echo, "/echo".to_owned()),
            (ChannelKind::Broadcast, "/news".to_owned()),
            (ChannelKind::Room, "/chat/{room}".to_owned()),
        ]
    );
    assert!(
        config.warnings().is_empty(),
        "the example should load without warnings: {:?}",
        config.warnings()
    );
}

#[test]
fn example_config_round_trips_through_to_toml_string() {
    let printed = Config::from_file(example_path())
        .unwrap_or_else(|e| panic!("{e}"))
        .to_toml_string();
    let reparsed = Config::from_toml_str(&printed)
        .unwrap_or_else(|e| panic!("printed config does not parse:\n{e}\n---\n{printed}"));
    assert_eq!(reparsed.to_toml_string(), printed);
    // The printed form has every default written out.
    for key in [
        "handshake_timeout = \"10s\"",
        "max_members = 500",
        "max_rooms = 1000",
        "max_payload = \"16KiB\"",
        "self_signed = [\"localhost\", \"127.0.0.1\"]",
    ] {
        assert!(printed.contains(key), "missing {key:?} in:\n{printed}");
    }
}

#[test]
fn printed_defaults_parse_back_to_the_same_settings() {
    let config = Config::from_toml_str(
        "[server]\nplain = [\"127.0.0.1:8080\"]\n\n[[channel]]\nname = \"e\"\npath = \"/e\"\nkind = \"echo\"\n\n[[channel]]\nname = \"c\"\npath = \"/c/{room}\"\nkind = \"room\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let printed = config.to_toml_string();
    let reparsed = Config::from_toml_str(&printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
    assert_eq!(reparsed.admission, config.admission, "{printed}");
    assert_eq!(reparsed.limits, config.limits, "{printed}");
    assert_eq!(reparsed.channels, config.channels, "{printed}");
}

#[test]
fn example_config_writes_out_the_defaults() {
    let config = Config::from_file(example_path()).unwrap_or_else(|e| panic!("{e}"));
    // The example's [limits] and [compression] tables show each default.
    assert_eq!(config.admission, Admission::default());
    assert_eq!(config.limits, Limits::default());
    let echo = &config.channels[0];
    assert_eq!(
        (echo.kind, &echo.limits),
        (ChannelKind::Echo, &Limits::default())
    );
    assert_eq!(echo.compression, Compression::default());
}
