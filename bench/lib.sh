# Shared by bench/run.sh and bench/compare.sh (sourced, not run).

# wsedge_limits: the [limits] every benchmarked wsedge runs with.
wsedge_limits() {
    cat <<'TOML'
# The peers have no admission control: lift wsedge's limits far above the
# load (they are still checked on every handshake and message, so their cost
# is measured) and keep everything else at its default.
[limits]
max_connections = 1000000
max_connections_per_ip = 1000000
handshake_rate = { per_second = 1000000000, burst = 1000000000 }
message_rate = { per_second = 1000000000, burst = 1000000000 }
# The capacity scenario holds its connections silent (full: a minute) and
# reads nothing meanwhile, so it answers no ping: keep the idle timeout above
# the hold, so that what is measured is the server holding them.
idle_timeout = "5m"
TOML
}

# wsedge_channels: the [limits] and the channels every benchmarked wsedge
# serves, after a [server] section the caller writes.
wsedge_channels() {
    wsedge_limits
    cat <<'TOML'

[[channel]]
name = "echo"
path = "/echo"
kind = "echo"

[[channel]]
name = "news"
path = "/news"
kind = "broadcast"
publish = "clients"

[[channel]]
name = "chat"
path = "/chat/{room}"
kind = "room"
publish = "clients"
max_rooms = 100000
max_members = 100000

# hub-rooms: the same rooms over one connection each (bench/run.sh hub).
[[channel]]
name = "hub"
path = "/hub"
kind = "hub"
max_rooms = 100000
max_members = 100000
TOML
}

# raise_file_limit: lets this shell's children hold up to ~20,000 sockets
# each (the capacity scenario's 19,900), or the hard limit if lower.
raise_file_limit() {
    local hard
    hard=$(ulimit -Hn)
    if [[ "$hard" == unlimited ]] || ((hard >= 20000)); then ulimit -n 20000; else ulimit -n "$hard"; fi
}

# wait_port PORT [PID]: returns once something listens on 127.0.0.1:PORT,
# 1 after ten seconds or as soon as PID (if given) has exited.
wait_port() {
    for _ in $(seq 100); do
        if (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then return 0; fi
        if [[ -n ${2:-} ]] && ! kill -0 "$2" 2>/dev/null; then return 1; fi
        sleep 0.1
    done
    return 1
}

# reload_configs DIR BASE: writes the two configurations the soak and reload
# scenarios alternate between, DIR/a.toml (the one wsedge starts with) and
# DIR/b.toml, which changes every setting a reload applies (see README
# "Reload") while keeping the channels the load holds connections on
# (echo, news, chat: same name, kind and path) and its admin listener.
# Plain listener BASE+1, TLS BASE+2, admin BASE+5; BASE+6 is a plain
# listener that B puts behind PROXY protocol, BASE+7 one that only B has.
# Also writes the certificate, key and tokens the files name.
reload_configs() {
    local dir=$1 base=$2
    local main=127.0.0.1:$((base + 1)) tls=127.0.0.1:$((base + 2)) admin=127.0.0.1:$((base + 5))
    local extra=127.0.0.1:$((base + 6)) added=127.0.0.1:$((base + 7))
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -keyout "$dir/key.pem" -out "$dir/cert.pem" -subj /CN=localhost \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
    echo "token-of-config-a" >"$dir/a.token"
    echo "token-of-config-b" >"$dir/b.token"
    chmod 600 "$dir"/*.token "$dir/key.pem"
    cat >"$dir/a.toml" <<TOML
# Reload scenario, configuration A: the defaults where the load allows.
[server]
listen = ["$tls"]
plain = ["$main", "$extra"]
handshake_timeout = "10s"
drain_window = "10s"
shutdown_timeout = "30s"

[server.tls]
self_signed = ["localhost"]

# Limits lifted far above the load (still checked), as in run.sh.
[limits]
max_connections = 1000000
max_connections_per_ip = 1000000
ipv6_prefix = 64
handshake_rate = { per_second = 1000000000, burst = 1000000000 }
message_rate = { per_second = 1000000000, burst = 1000000000 }
max_payload = "64KiB"
send_buffer = "1MiB"
on_slow_consumer = "close"
ping_interval = "25s"
idle_timeout = "5m"
close_timeout = "5s"

[compression]
enabled = true
level = 6
threshold = "256B"

[admin]
listen = "$admin"
token_file = "a.token"

[[channel]]
name = "echo"
path = "/echo"
kind = "echo"

[[channel]]
name = "news"
path = "/news"
kind = "broadcast"
publish = "clients"

[[channel]]
name = "chat"
path = "/chat/{room}"
kind = "room"
publish = "clients"
max_rooms = 100000
max_members = 100000

# Changes its path at every reload.
[[channel]]
name = "moving"
path = "/moving-a"
kind = "broadcast"
publish = "api"

# Removed at every reload to B, added back at every reload to A.
[[channel]]
name = "spare-a"
path = "/spare-a"
kind = "echo"

# Changes its kind at every reload.
[[channel]]
name = "morph"
path = "/morph"
kind = "echo"
TOML
    cat >"$dir/b.toml" <<TOML
# Reload scenario, configuration B: every reloadable setting differs from A.
[server]
listen = ["$tls"]
plain = ["$main", "$extra", "$added"]
proxy_protocol = ["$extra"]
trusted_proxies = ["127.0.0.250/32"]
handshake_timeout = "8s"
drain_window = "5s"
shutdown_timeout = "20s"

[server.tls]
cert = "cert.pem"
key = "key.pem"

[limits]
max_connections = 900000
max_connections_per_ip = 900000
ipv6_prefix = 56
handshake_rate = { per_second = 900000000, burst = 900000000 }
message_rate = { per_second = 900000000, burst = 900000000, on_exceed = "close" }
byte_rate = { per_second = "1GiB", burst = "1GiB" }
max_payload = "128KiB"
send_buffer = "2MiB"
on_slow_consumer = "drop"
ping_interval = "20s"
idle_timeout = "4m"
close_timeout = "4s"

[compression]
mode = "dedicated"
level = 1
threshold = "512B"
server_max_window_bits = 12
client_max_window_bits = 12
server_no_context_takeover = true
client_no_context_takeover = true

[admin]
listen = "$admin"
token_file = "b.token"

[[channel]]
name = "echo"
path = "/echo"
kind = "echo"
origins = ["https://bench.example"]
allow_missing_origin = true
subprotocols = ["bench.v1"]
[channel.limits]
max_connections = 800000
max_payload = "48KiB"
ping_interval = "15s"
idle_timeout = "3m"
[channel.compression]
enabled = false

[[channel]]
name = "news"
path = "/news"
kind = "broadcast"
publish = "clients"
echo_to_sender = true
origins = ["https://bench.example"]
allow_missing_origin = true
subprotocols = ["bench.v1"]
[channel.limits]
max_connections = 800000
send_buffer = "4MiB"
[channel.compression]
mode = "shared"
level = 3

[[channel]]
name = "chat"
path = "/chat/{room}"
kind = "room"
publish = "clients"
echo_to_sender = true
max_rooms = 90000
max_members = 90000
[channel.limits]
message_rate = { per_second = 800000000, burst = 800000000 }

[[channel]]
name = "moving"
path = "/moving-b"
kind = "broadcast"
publish = "clients"

[[channel]]
name = "spare-b"
path = "/spare-b"
kind = "echo"

[[channel]]
name = "morph"
path = "/morph"
kind = "broadcast"
TOML
}

# auth_config DIR BASE: writes the keys of the auth scenario into DIR (an
# HS256 secret; RSA 2048, P-256 and Ed25519 key pairs, private PKCS#8 PEM
# for the load generator to sign with, public PEM for wsedge) and
# DIR/auth.toml: one wsedge whose [auth] accepts the four algorithms, /echo
# open (auth = "none") and /echo-auth requiring a token; plain listener
# BASE+1, TLS BASE+2, admin BASE+5 (the accepted-token counters).
auth_config() {
    local dir=$1 base=$2
    openssl rand -hex 32 >"$dir/hs256.secret"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/rs256.key.pem" 2>/dev/null
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/es256.key.pem"
    openssl genpkey -algorithm ED25519 -out "$dir/eddsa.key.pem"
    local alg
    for alg in rs256 es256 eddsa; do
        openssl pkey -in "$dir/$alg.key.pem" -pubout -out "$dir/$alg.pub.pem"
    done
    chmod 600 "$dir/hs256.secret" "$dir"/*.key.pem
    {
        cat <<TOML
[server]
listen = ["127.0.0.1:$((base + 2))"]
plain = ["127.0.0.1:$((base + 1))"]

[server.tls]
self_signed = ["localhost", "127.0.0.1"]

[admin]
listen = "127.0.0.1:$((base + 5))"

# One verifier for the four algorithms (the token's header picks one of
# them), checking what deployments check: issuer, audience, expiry, grants.
[auth]
algorithms = ["HS256", "RS256", "ES256", "EdDSA"]
secret_file = "hs256.secret"
public_keys = ["rs256.pub.pem", "es256.pub.pem", "eddsa.pub.pem"]
issuers = ["wsedge-bench"]
audiences = ["wsedge"]

TOML
        wsedge_limits
        cat <<'TOML'

# The unauthenticated baseline, on the same server.
[[channel]]
name = "echo"
path = "/echo"
kind = "echo"
auth = "none"

# auth = "required", the default with [auth].
[[channel]]
name = "echo-auth"
path = "/echo-auth"
kind = "echo"
TOML
    } >"$dir/auth.toml"
}

# wait_ready PORT: returns once wsedge's admin listener on 127.0.0.1:PORT
# answers /readyz with 200 (with [cluster]: the link to Redis is up), 1
# after ten seconds.
wait_ready() {
    local status
    for _ in $(seq 100); do
        status=$( (
            exec 3<>"/dev/tcp/127.0.0.1/$1"
            printf 'GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
            head -c 12 <&3
        ) 2>/dev/null) || true
        [[ "$status" == "HTTP/1.1 200" ]] && return 0
        sleep 0.1
    done
    return 1
}
