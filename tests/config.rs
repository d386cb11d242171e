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
        "[cluster] without a url",
        r#"[server]
plain = ["127.0.0.1:8080"]
[cluster]
prefix = "ws:"
"#,
        &["<string>:3:1: cluster.url: missing `url`; name the Redis"],
    ),
    (
        "every bad [cluster] key at its place",
        r#"[server]
plain = ["127.0.0.1:8080"]
[cluster]
engine = "kafka"
url = "redis://127.0.0.1:6379"
mode = "sharded"
prefix = "{ws}"
node_name = "node a"
probe_interval = "0s"
probe_timeout = "soon"
reconnect_min = "2s"
reconnect_max = "1s"
presence_ttl = "100ms"
"#,
        &[
            "<string>:4:10: cluster.engine: \"kafka\" is not a cluster engine; use \"redis\" (Redis pub/sub)",
            "<string>:6:8: cluster.mode: \"sharded\" is not a Redis mode; use \"standalone\" (one Redis, PUBLISH and SUBSCRIBE) or \"cluster\" (a Redis Cluster, sharded pub/sub)",
            "<string>:7:10: cluster.prefix: \"{ws}\" contains a brace",
            "<string>:8:13: cluster.node_name: \"node a\" is not a node name",
            "<string>:9:18: cluster.probe_interval: must be longer than zero",
            "<string>:10:17: cluster.probe_timeout: \"soon\" is not a duration",
            "<string>:12:17: cluster.reconnect_max: 1s is shorter than reconnect_min (2s)",
            "<string>:13:16: cluster.presence_ttl: 100ms is shorter than the minimum of 1s",
        ],
    ),
    (
        "a Redis Cluster has no databases and no unix sockets",
        r#"[server]
plain = ["127.0.0.1:8080"]
[cluster]
url = "redis://10.0.0.1:7000/3"
mode = "cluster"
"#,
        &["<string>:4:7: cluster.url: Redis Cluster has only database 0"],
    ),
    (
        "a [cluster] url that is not one",
        r#"[server]
plain = ["127.0.0.1:8080"]
[cluster]
url = "redis://app:secret@10.0.0.1"
"#,
        &[
            "<string>:4:7: cluster.url: \"redis://app:secret@10.0.0.1\" holds a password: remove it from the URL and put it in password_file",
        ],
    ),
    (
        "a CA file without TLS",
        r#"[server]
plain = ["127.0.0.1:8080"]
[cluster]
url = "redis://10.0.0.1"
ca_file = "ca.pem"
"#,
        &["<string>:5:11: cluster.ca_file: the authorities are for TLS; use a rediss:// URL"],
    ),
    (
        "unknown key inside [cluster]",
        r#"[server]
plain = ["127.0.0.1:8080"]
[cluster]
url = "redis://10.0.0.1"
password = "hunter2"
"#,
        &[
            "<string>:5:1: ",
            "unknown field `password`, expected one of `engine`, `url`, `password_file`",
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
        "unknown key inside [auth] and [auth.webhook]",
        r#"[server]
plain = ["127.0.0.1:8080"]
[auth]
algorithm = "RS256"
"#,
        &[
            "<string>:4:1: ",
            "unknown field `algorithm`, expected one of `algorithms`, `secret_file`",
        ],
    ),
    (
        "unknown key inside [auth.webhook]",
        r#"[server]
plain = ["127.0.0.1:8080"]
[auth.webhook]
url = "https://app.example.com/ws-auth"
method = "GET"
"#,
        &[
            "<string>:5:1: ",
            "unknown field `method`, expected one of `url`, `timeout`, `headers`, `ca_file`",
        ],
    ),
    (
        "[auth] without a verifier",
        r#"[server]
plain = ["127.0.0.1:8080"]
[auth]
absent_grants = "allow_all"
"#,
        &["<string>:3:1: auth: [auth] needs a verifier: set `algorithms`"],
    ),
    (
        "JWT keys without algorithms are one error, at the first of them",
        r#"[server]
plain = ["127.0.0.1:8080"]
[auth]
leeway = "10s"
jwks_url = "https://idp.example.com/jwks"
user_claim = "uid"
"#,
        &[
            "<string>:4:10: auth.algorithms: missing `algorithms`: `leeway` belongs to JWT verification, which needs the algorithms your tokens are signed with; use \"HS256\", \"HS384\", \"HS512\", \"RS256\", \"RS384\", \"RS512\", \"PS256\", \"ES256\", \"ES384\" or \"EdDSA\"",
        ],
    ),
    (
        "unknown, repeated and keyless algorithms",
        r#"[server]
plain = ["127.0.0.1:8080"]
[auth]
algorithms = ["RS256", "none", "HS256", "RS256", "ES256"]
public_keys = []
"#,
        &[
            "<string>:4:24: auth.algorithms: \"none\" is not a JWT algorithm this server verifies; use \"HS256\"",
            "<string>:4:32: auth.algorithms: HS256 verifies with a shared secret; set `secret_file`",
            "<string>:4:41: auth.algorithms: RS256 is listed twice",
            "<string>:5:15: auth.public_keys: an empty list names no key",
        ],
    ),
    (
        "asymmetric algorithms without public keys, and an empty list",
        r#"[server]
plain = ["127.0.0.1:8080"]
[[channel]]
name = "e"
path = "/e"
kind = "echo"
[auth]
algorithms = ["EdDSA"]
[auth.webhook]
url = "https://app.example.com/ws-auth"
"#,
        &[
            "<string>:8:15: auth.algorithms: EdDSA verifies with public keys; set `public_keys` (PEM files), `jwks_file` or `jwks_url`",
        ],
    ),
    (
        "an empty algorithms list",
        r#"[server]
plain = ["127.0.0.1:8080"]
[auth]
algorithms = []
jwks_url = "https://idp.example.com/jwks"
"#,
        &[
            "<string>:4:14: auth.algorithms: an empty list accepts no token",
            "<string>:5:12: auth.jwks_url: public keys verify RS*, PS256, ES* and EdDSA tokens, and `algorithms` lists none of them",
        ],
    ),
    (
        "a secret without HS*, public keys without their algorithms",
        r#"[server]
plain = ["127.0.0.1:8080"]
[auth]
algorithms = ["RS256"]
secret_file = "jwt.secret"
jwks_url = "https://idp.example.com/jwks"
[auth.webhook]
url = "https://app.example.com/ws-auth"
[[channel]]
name = "e"
path = "/e"
kind = "echo"
"#,
        &[
            "<string>:5:15: auth.secret_file: a secret verifies HS256, HS384 and HS512 tokens, and `algorithms` lists none of them; add one, or remove `secret_file`",
        ],
    ),
    (
        "public keys with only HS* accepted",
        r#"[server]
plain = ["127.0.0.1:8080"]
[auth]
algorithms = ["HS512"]
public_keys = ["rsa.pem"]
jwks_file = "keys.json"
"#,
        &[
            "<string>:4:15: auth.algorithms: HS512 verifies with a shared secret",
            "<string>:5:15: auth.public_keys: public keys verify RS*, PS256, ES* and EdDSA tokens, and `algorithms` lists none of them; add one, or remove `public_keys`",
            "<string>:6:13: auth.jwks_file: public keys verify",
        ],
    ),
    (
        "JWKS URL keys without jwks_url",
        r#"[server]
plain = ["127.0.0.1:8080"]
[auth]
algorithms = ["ES256"]
jwks_file = "/nonexistent/keys.json"
jwks_refresh = "1m"
jwks_min_refetch = "10s"
jwks_timeout = "1s"
ca_file = "ca.pem"
"#,
        &[
            "<string>:5:13: auth.jwks_file: cannot read /nonexistent/keys.json",
            "<string>:6:16: auth.jwks_refresh: `jwks_refresh` applies to `jwks_url`, which is not set; set it, or remove `jwks_refresh`",
            "<string>:7:20: auth.jwks_min_refetch: `jwks_min_refetch` applies to `jwks_url`",
            "<string>:8:16: auth.jwks_timeout: `jwks_timeout` applies to `jwks_url`",
            "<string>:9:11: auth.ca_file: `ca_file` applies to `jwks_url`",
        ],
    ),
    (
        "JWKS and webhook URLs that are not https or loopback http",
        r#"[server]
plain = ["127.0.0.1:8080"]
[auth]
algorithms = ["RS256"]
jwks_url = "http://idp.example.com/jwks"
jwks_refresh = "0s"
[auth.webhook]
url = "ftp://app.example.com/ws-auth"
"#,
        &[
            "<string>:5:12: auth.jwks_url: \"http://idp.example.com/jwks\" is plain HTTP to a non-loopback host; use https:// (plain http:// is for 127.0.0.1, [::1] and localhost only)",
            "<string>:6:16: auth.jwks_refresh: must be longer than zero",
            "<string>:8:7: auth.webhook.url: \"ftp://app.example.com/ws-auth\" is not an http:// or https:// URL",
        ],
    ),
    (
        "a CA file beside plain loopback http",
        r#"[server]
plain = ["127.0.0.1:8080"]
[auth]
algorithms = ["RS256"]
jwks_url = "http://127.0.0.1:8000/jwks"
ca_file = "ca.pem"
[auth.webhook]
url = "http://localhost:8000/ws-auth"
ca_file = "ca.pem"
"#,
        &[
            "<string>:6:11: auth.ca_file: `ca_file` verifies an https:// server, and `jwks_url` is plain http:// to this machine; remove `ca_file`, or use https://",
            "<string>:9:11: auth.webhook.ca_file: `ca_file` verifies an https:// server, and `url` is plain http://",
        ],
    ),
    (
        "bad durations in [auth] (the leeway may be zero)",
        r#"[server]
plain = ["127.0.0.1:8080"]
[auth]
algorithms = ["RS256"]
jwks_url = "https://idp.example.com/jwks"
jwks_timeout = "0s"
leeway = "a minute"
sources = ["first_message"]
first_message_timeout = "0s"
[auth.webhook]
url = "https://app.example.com/ws-auth"
timeout = "2 fortnights"
"#,
        &[
            "<string>:6:16: auth.jwks_timeout: must be longer than zero",
            "<string>:7:10: auth.leeway: \"a minute\" is not a duration",
            "<string>:8:12: auth.sources: with an [auth.webhook], a handshake without a token is decided by the webhook, so \"first_message\" would never be used; remove one of them",
            "<string>:9:25: auth.first_message_timeout: `first_message_timeout` applies to the \"first_message\" token source, which `sources` does not list",
            "<string>:9:25: auth.first_message_timeout: must be longer than zero",
            "<string>:12:11: auth.webhook.timeout: \"2 fortnights\" is not a duration",
        ],
    ),
    (
        "token sources: unknown, repeated, first message not last, empty",
        r#"[server]
plain = ["127.0.0.1:8080"]
[auth]
algorithms = ["ES384"]
jwks_url = "https://idp.example.com/jwks"
sources = ["first_message", "cookie", "header", "cookie"]
"#,
        &[
            "<string>:6:12: auth.sources: \"first_message\" must be the last source: the connection is upgraded to wait for it, so nothing is looked for after it; move it to the end",
            "<string>:6:39: auth.sources: \"header\" is not a token source; use \"bearer\" (the Authorization: Bearer header), \"cookie\"",
            "<string>:6:49: auth.sources: \"cookie\" is listed twice",
        ],
    ),
    (
        "an empty sources list",
        r#"[server]
plain = ["127.0.0.1:8080"]
[auth]
algorithms = ["ES384"]
jwks_url = "https://idp.example.com/jwks"
sources = []
"#,
        &["<string>:6:11: auth.sources: an empty list reads no token; use \"bearer\""],
    ),
    (
        "source names without their source, and bad names",
        r#"[server]
plain = ["127.0.0.1:8080"]
[auth]
algorithms = ["PS256"]
jwks_url = "https://idp.example.com/jwks"
sources = ["bearer", "cookie", "query"]
cookie = "my session"
protocol_marker = "token"
query_parameter = "t&x"
"#,
        &[
            "<string>:7:10: auth.cookie: \"my session\" is not a valid `cookie`; use letters, digits and !#$%&'*+-.^_`|~",
            "<string>:8:19: auth.protocol_marker: `protocol_marker` applies to the \"protocol\" token source, which `sources` does not list; add it there, or remove `protocol_marker`",
            "<string>:9:19: auth.query_parameter: \"t&x\" is not a valid `query_parameter`; use letters, digits and -._~",
        ],
    ),
    (
        "empty claim names, issuers and audiences; an unknown absent-grants policy",
        r#"[server]
plain = ["127.0.0.1:8080"]
[auth]
algorithms = ["RS384"]
jwks_url = "https://idp.example.com/jwks"
issuers = ["https://idp.example.com/", ""]
audiences = ["wsedge", "wsedge"]
user_claim = ""
absent_grants = "allow"
"#,
        &[
            "<string>:6:40: auth.issuers: an empty string is not an issuer",
            "<string>:7:24: auth.audiences: \"wsedge\" is listed twice",
            "<string>:8:14: auth.user_claim: an empty claim name matches no claim; name one such as \"sub\"",
            "<string>:9:17: auth.absent_grants: \"allow\" is not a policy for absent grants; use \"deny\" (a grant left out allows nothing) or \"allow_all\" (a grant left out allows everything)",
        ],
    ),
    (
        "webhook without url, and bad header names",
        r#"[server]
plain = ["127.0.0.1:8080"]
[auth.webhook]
headers = ["cookie", "X-Session", "x-session", "bad header"]
"#,
        &[
            "<string>:3:1: auth.webhook.url: missing `url`; the backend endpoint wsedge POSTs each handshake to",
            "<string>:4:35: auth.webhook.headers: \"x-session\" is listed twice (header names are case-insensitive)",
            "<string>:4:48: auth.webhook.headers: \"bad header\" is not a header name",
        ],
    ),
    (
        "channel auth without [auth], and rooms where they do not apply",
        r#"[server]
plain = ["127.0.0.1:8080"]
[[channel]]
name = "a"
path = "/a"
kind = "echo"
auth = "optional"
rooms = "shared"
[[channel]]
name = "b"
path = "/b/{room}"
kind = "room"
auth = "none"
rooms = "per_user"
[[channel]]
name = "c"
path = "/c/{room}"
kind = "room"
auth = "maybe"
rooms = "private"
"#,
        &[
            "<string>:7:8: channel[0].auth: auth = \"optional\" needs an [auth] table that says how identities are verified; add one, or remove `auth`",
            "<string>:8:9: channel[0].rooms: `rooms` applies to room and hub channels only; remove it",
            "<string>:14:9: channel[1].rooms: \"per_user\" rooms belong to the users they are named after, so the channel must know who connects: it needs auth = \"required\" or \"optional\" (and an [auth] table)",
            "<string>:19:8: channel[2].auth: \"maybe\" is not a channel auth mode; use \"required\" (no valid identity, no connection), \"optional\" (verified when given, anonymous otherwise) or \"none\" (credentials are not looked at)",
            "<string>:20:9: channel[2].rooms: \"private\" is not a room ownership; use \"shared\" (anyone the grants allow) or \"per_user\" (each room belongs to the user it is named after)",
        ],
    ),
    (
        "per-user rooms on a channel that opts out of [auth]",
        r#"[server]
plain = ["127.0.0.1:8080"]
[auth.webhook]
url = "https://app.example.com/ws-auth"
[[channel]]
name = "inbox"
path = "/inbox"
kind = "hub"
auth = "none"
rooms = "per_user"
"#,
        &["<string>:10:9: channel[0].rooms: \"per_user\" rooms belong to the users"],
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

/// Key material for `[auth]`, written into `dir`: public keys in PEM
/// (Ed25519, P-256), a JWKS file with a P-384 key, a 64-byte secret, and the
/// wrong things people put in their place (a private key, a certificate, a
/// short secret).
struct AuthFiles {
    dir: tempfile::TempDir,
}

impl AuthFiles {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let write =
            |name: &str, contents: &[u8]| std::fs::write(dir.path().join(name), contents).unwrap();
        let ed25519 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        write("ed25519.pub.pem", ed25519.public_key_pem().as_bytes());
        write("p256.pub.pem", p256.public_key_pem().as_bytes());
        write("p256.key.pem", p256.serialize_pem().as_bytes());
        // An uncompressed point: 0x04, then x and y.
        let point = &p384.public_key_raw()[1..];
        let b64 = |bytes: &[u8]| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        };
        let jwks = format!(
            r#"{{"keys":[{{"kty":"EC","crv":"P-384","kid":"k1","x":"{}","y":"{}"}}]}}"#,
            b64(&point[..48]),
            b64(&point[48..])
        );
        write("keys.json", jwks.as_bytes());
        write("empty.json", br#"{"keys":[]}"#);
        write("jwt.secret", format!("{}\n", "s".repeat(64)).as_bytes());
        write("short.secret", "s".repeat(40).as_bytes());
        let cert = rcgen::generate_simple_self_signed(vec!["idp.example.com".to_owned()]).unwrap();
        write("ca.pem", cert.cert.pem().as_bytes());
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Writes `toml` as `wsedge.toml` beside the keys and loads it.
    fn load(&self, toml: &str) -> Result<Config, ConfigError> {
        let file = self.dir.path().join("wsedge.toml");
        std::fs::write(&file, toml).unwrap();
        Config::from_file(&file)
    }
}

/// Every `[auth]` key, relative paths, and channels that take the default,
/// opt out, and own their rooms.
const AUTH_JWT: &str = r#"[server]
plain = ["127.0.0.1:8080"]

[auth]
algorithms = ["HS384", "EdDSA", "ES256", "ES384", "RS256"]
secret_file = "jwt.secret"
public_keys = ["ed25519.pub.pem", "p256.pub.pem"]
jwks_file = "keys.json"
jwks_url = "https://idp.example.com/.well-known/jwks.json"
jwks_refresh = "10m"
jwks_min_refetch = "1m"
jwks_timeout = "3s"
ca_file = "ca.pem"
leeway = "0s"
issuers = ["https://idp.example.com/"]
audiences = ["wsedge", "chat"]
require_exp = false
sources = ["bearer", "protocol", "query", "cookie", "first_message"]
cookie = "session"
protocol_marker = "jwt"
query_parameter = "token"
first_message_timeout = "3s"
user_claim = "uid"
join_claim = "rooms"
publish_claim = "talk"
absent_grants = "allow_all"

[[channel]]
name = "chat"
path = "/chat/{room}"
kind = "room"

[[channel]]
name = "inbox"
path = "/inbox/{room}"
kind = "room"
auth = "optional"
rooms = "per_user"

[[channel]]
name = "health"
path = "/health"
kind = "echo"
auth = "none"
"#;

/// The connect webhook with every key, beside JWT on one key.
const AUTH_WEBHOOK: &str = r#"[server]
plain = ["127.0.0.1:8080"]

[auth]
algorithms = ["EdDSA"]
public_keys = ["ed25519.pub.pem"]

[auth.webhook]
url = "https://app.example.com/ws-auth"
timeout = "500ms"
headers = ["Cookie", "x-session"]
ca_file = "ca.pem"

[[channel]]
name = "hub"
path = "/hub"
kind = "hub"
rooms = "per_user"
"#;

/// Loads `toml` (next to the key files), prints it, and checks that the
/// printed form loads from anywhere and prints the same.
fn round_trip(files: &AuthFiles, toml: &str) -> String {
    let config = files
        .load(toml)
        .unwrap_or_else(|e| panic!("a valid [auth] was rejected:\n{e}\n---\n{toml}"));
    let printed = config.to_toml_string();
    let reparsed = Config::from_toml_str(&printed)
        .unwrap_or_else(|e| panic!("printed config does not parse:\n{e}\n---\n{printed}"));
    assert_eq!(reparsed.to_toml_string(), printed);
    assert_eq!(reparsed.channels, config.channels, "{printed}");
    printed
}

#[test]
fn auth_with_every_key_loads_and_round_trips() {
    let files = AuthFiles::new();
    let printed = round_trip(&files, AUTH_JWT);
    for line in [
        format!("secret_file = {:?}", files.path("jwt.secret")),
        format!(
            "public_keys = [{:?}, {:?}]",
            files.path("ed25519.pub.pem"),
            files.path("p256.pub.pem")
        ),
        format!("jwks_file = {:?}", files.path("keys.json")),
        format!("ca_file = {:?}", files.path("ca.pem")),
        "jwks_refresh = \"10m\"".to_owned(),
        "leeway = \"0s\"".to_owned(),
        "require_exp = false".to_owned(),
        "sources = [\"bearer\", \"protocol\", \"query\", \"cookie\", \"first_message\"]".to_owned(),
        "protocol_marker = \"jwt\"".to_owned(),
        "first_message_timeout = \"3s\"".to_owned(),
        "absent_grants = \"allow_all\"".to_owned(),
        // The channel that does not say requires an identity.
        "path = \"/chat/{room}\"\nkind = \"room\"\n".to_owned(),
        "max_rooms = 10000\npresence_events = false\nauth = \"required\"\nrooms = \"shared\"\n"
            .to_owned(),
        "auth = \"optional\"\nrooms = \"per_user\"".to_owned(),
        "auth = \"none\"".to_owned(),
    ] {
        assert!(printed.contains(&line), "missing {line:?} in:\n{printed}");
    }

    let printed = round_trip(&files, AUTH_WEBHOOK);
    for line in [
        "[auth.webhook]\nurl = \"https://app.example.com/ws-auth\"\ntimeout = \"500ms\"\nheaders = [\"cookie\", \"x-session\"]".to_owned(),
        format!("ca_file = {:?}", files.path("ca.pem")),
        "auth = \"required\"\nrooms = \"per_user\"".to_owned(),
    ] {
        assert!(printed.contains(&line), "missing {line:?} in:\n{printed}");
    }
}

#[test]
fn auth_defaults_are_written_out() {
    let files = AuthFiles::new();
    let printed = round_trip(
        &files,
        "[server]\nplain = [\"127.0.0.1:8080\"]\n[auth]\nalgorithms = [\"RS256\"]\njwks_url = \"https://idp.example.com/jwks\"\n[[channel]]\nname = \"e\"\npath = \"/e\"\nkind = \"echo\"\n",
    );
    let expected = r#"[auth]
algorithms = ["RS256"]
jwks_url = "https://idp.example.com/jwks"
jwks_refresh = "5m"
jwks_min_refetch = "30s"
jwks_timeout = "5s"
leeway = "1m"
issuers = []
audiences = []
require_exp = true
sources = ["bearer", "cookie", "protocol"]
cookie = "access_token"
protocol_marker = "bearer"
user_claim = "sub"
join_claim = "join"
publish_claim = "publish"
absent_grants = "deny"
"#;
    assert!(
        printed.contains(expected),
        "expected\n{expected}\nin:\n{printed}"
    );
    assert!(
        printed.contains(
            "kind = \"echo\"\norigins = [\"*\"]\nsubprotocols = []\nauth = \"required\"\n"
        ),
        "{printed}"
    );

    let printed = round_trip(
        &files,
        "[server]\nplain = [\"127.0.0.1:8080\"]\n[auth.webhook]\nurl = \"http://127.0.0.1:8000/ws-auth\"\n",
    );
    let expected = "[auth]\nabsent_grants = \"deny\"\n\n[auth.webhook]\nurl = \"http://127.0.0.1:8000/ws-auth\"\ntimeout = \"2s\"\nheaders = [\"cookie\", \"authorization\"]\n";
    assert!(
        printed.contains(expected),
        "expected\n{expected}\nin:\n{printed}"
    );
}

#[test]
fn unusable_auth_files_are_reported_at_their_keys() {
    let files = AuthFiles::new();
    let toml = r#"[server]
plain = ["127.0.0.1:8080"]
[auth]
algorithms = ["HS512", "EdDSA"]
secret_file = "short.secret"
public_keys = [
  "p256.key.pem",
  "ca.pem",
  "missing.pem",
  "p256.pub.pem",
  "ed25519.pub.pem",
]
jwks_file = "empty.json"
[auth.webhook]
url = "https://app.example.com/ws-auth"
ca_file = "jwt.secret"
"#;
    let error = files.load(toml).expect_err("every file is wrong");
    let text = error.to_string();
    let file = files.path("wsedge.toml");
    let expected = [
        format!("{file}:5:15: auth.secret_file: the secret is 40 bytes; HS512 needs at least 64"),
        format!(
            "{file}:7:3: auth.public_keys: {}: this is a private key; give the public key (`openssl pkey -pubout` prints it)",
            files.path("p256.key.pem")
        ),
        format!(
            "{file}:8:3: auth.public_keys: {}: this is a certificate; give its public key (`openssl x509 -pubkey -noout` prints it)",
            files.path("ca.pem")
        ),
        format!(
            "{file}:9:3: auth.public_keys: cannot read {}: ",
            files.path("missing.pem")
        ),
        format!(
            "{file}:10:3: auth.public_keys: {}: none of the accepted algorithms verifies with its P-256 key; accept one that does, or remove the key",
            files.path("p256.pub.pem")
        ),
        format!(
            "{file}:13:13: auth.jwks_file: {}: the JWKS document has no usable signing key",
            files.path("empty.json")
        ),
        format!(
            "{file}:16:11: auth.webhook.ca_file: CA file {}: no \"-----BEGIN CERTIFICATE-----\" block",
            files.path("jwt.secret")
        ),
    ];
    for line in &expected {
        assert!(text.contains(line.as_str()), "missing {line:?} in:\n{text}");
    }
    assert_eq!(error.issues().len(), expected.len(), "{text}");
}

#[test]
fn an_algorithm_no_key_verifies_is_reported_at_its_entry() {
    let files = AuthFiles::new();
    let toml = "[server]\nplain = [\"127.0.0.1:8080\"]\n[auth]\nalgorithms = [\"EdDSA\", \"ES384\"]\npublic_keys = [\"ed25519.pub.pem\"]\n";
    let error = files.load(toml).expect_err("ES384 has no key");
    let file = files.path("wsedge.toml");
    let expected = format!(
        "{file}:4:24: auth.algorithms: ES384 is accepted but none of the public keys (PEM files, JWKS file) verifies ES384 tokens, and no JWKS URL may bring one that does; add its public key, or stop accepting ES384"
    );
    assert_eq!(error.to_string(), expected);
    // A JWKS URL may bring the key later: it is not fetched to find out.
    let with_url = format!("{toml}jwks_url = \"http://127.0.0.1:1/jwks\"\n");
    files
        .load(&with_url)
        .unwrap_or_else(|e| panic!("a JWKS URL may serve ES384 keys: {e}"));
}

#[test]
fn a_missing_jwks_ca_file_is_reported_at_ca_file() {
    let files = AuthFiles::new();
    let error = files
        .load("[server]\nplain = [\"127.0.0.1:8080\"]\n[auth]\nalgorithms = [\"RS256\"]\njwks_url = \"https://idp.example.com/jwks\"\nca_file = \"corp-ca.pem\"\n")
        .expect_err("no such CA file");
    let expected = format!(
        "{}:6:11: auth.ca_file: CA file {}: cannot read it: ",
        files.path("wsedge.toml"),
        files.path("corp-ca.pem")
    );
    assert!(error.to_string().starts_with(&expected), "{error}");
    assert_eq!(error.issues().len(), 1, "{error}");
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

/// A `[cluster]` table over `rediss://` naming `password_file` (its value
/// at 5:17) and `ca_file` (at 6:11), relative to the configuration file.
const CLUSTER_FILES: &str = "[server]\nplain = [\"127.0.0.1:8080\"]\n[cluster]\nurl = \"rediss://redis.internal:6380\"\npassword_file = \"redis.password\"\nca_file = \"redis-ca.pem\"\n";

/// Writes `wsedge.toml` with `text` into `dir` and loads it.
fn load_in(dir: &Path, text: &str) -> Result<Config, ConfigError> {
    let file = dir.join("wsedge.toml");
    std::fs::write(&file, text).unwrap();
    Config::from_file(&file)
}

#[test]
fn cluster_files_that_cannot_be_used_are_reported_at_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let located = |error: ConfigError| -> Vec<String> {
        error
            .issues()
            .iter()
            .map(|i| format!("{}:{}:{} {}", i.line, i.column, i.key, i.message))
            .collect()
    };
    let missing = located(load_in(dir.path(), CLUSTER_FILES).unwrap_err());
    assert_eq!(
        missing,
        [format!(
            "5:17:cluster.password_file cannot read {}: No such file or directory (os error 2)",
            path("redis.password")
        )],
        "a file that cannot be read stops the table there"
    );
    std::fs::write(dir.path().join("redis.password"), "\n").unwrap();
    let empty = located(load_in(dir.path(), CLUSTER_FILES).unwrap_err());
    assert!(
        empty[0].starts_with("5:17:cluster.password_file ") && empty[0].contains("is empty"),
        "{empty:?}"
    );
    std::fs::write(dir.path().join("redis.password"), "s3cret\n").unwrap();
    std::fs::write(dir.path().join("redis-ca.pem"), "not a certificate\n").unwrap();
    let no_certificate = located(load_in(dir.path(), CLUSTER_FILES).unwrap_err());
    assert_eq!(
        no_certificate,
        [format!(
            "6:11:cluster.ca_file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path("redis-ca.pem")
        )]
    );
}

#[test]
fn cluster_table_round_trips_with_its_defaults_and_never_prints_the_password() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("redis.password"), "s3cret\n").unwrap();
    let (ca, _, _) = write_rcgen_pair(dir.path(), "ca");
    std::fs::rename(&ca, dir.path().join("redis-ca.pem")).unwrap();
    let config = load_in(dir.path(), CLUSTER_FILES).unwrap_or_else(|e| panic!("{e}"));
    let printed = config.to_toml_string();
    assert!(!printed.contains("s3cret"), "{printed}");
    let password_file = dir.path().join("redis.password").display().to_string();
    for line in [
        "[cluster]".to_owned(),
        "engine = \"redis\"".to_owned(),
        "url = \"rediss://redis.internal:6380\"".to_owned(),
        format!("password_file = {password_file:?}"),
        "prefix = \"wsedge:\"".to_owned(),
        "mode = \"standalone\"".to_owned(),
        "probe_interval = \"1s\"".to_owned(),
        "probe_timeout = \"2s\"".to_owned(),
        "reconnect_min = \"100ms\"".to_owned(),
        "reconnect_max = \"5s\"".to_owned(),
        "presence_ttl = \"15s\"".to_owned(),
    ] {
        assert!(
            printed.lines().any(|l| l == line),
            "missing {line:?} in:\n{printed}"
        );
    }
    // The default node name is made by each process: not written out.
    assert!(!printed.contains("node_name"), "{printed}");
    let reparsed = Config::from_toml_str(&printed)
        .unwrap_or_else(|e| panic!("printed config does not parse:\n{e}\n---\n{printed}"));
    assert_eq!(reparsed.to_toml_string(), printed);

    let named = Config::from_toml_str(
        "[server]\nplain = [\"127.0.0.1:8080\"]\n[cluster]\nurl = \"redis://10.0.0.1\"\nnode_name = \"edge-1\"\nmode = \"cluster\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let printed = named.to_toml_string();
    for line in ["node_name = \"edge-1\"", "mode = \"cluster\""] {
        assert!(
            printed.lines().any(|l| l == line),
            "{line:?} in:\n{printed}"
        );
    }
}
